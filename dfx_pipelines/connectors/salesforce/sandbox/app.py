"""`SalesforceSandbox`: the HTTP face of the sandbox org — OAuth endpoints and REST v59.0–v62.0 — as a SandboxApp.

instance_url: the URL handed out in token responses and used in `id`. Call `bind(server.url)` once the
server listens (`start_salesforce_sandbox` does); until then it is read from the request's Host header.
"""

from __future__ import annotations

import email.utils
import json
import re
import secrets
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dfx_pipelines.platform.sandbox import Headers, Request, Response, SandboxApp

from .errors import SalesforceApiError, invalid_session, not_found
from .ids import BASE62
from .oauth import OAuthServer
from .org import SalesforceOrg
from .schema import describe_global, find_object
from .soql import QueryResult, execute
from .values import parse_datetime_text

SUPPORTED_VERSIONS = ("59.0", "60.0", "61.0", "62.0")
DEFAULT_BATCH_SIZE = 2000
MIN_BATCH_SIZE, MAX_BATCH_SIZE = 200, 2000
LOCATOR_TTL = timedelta(minutes=15)  # Salesforce closes an idle query cursor after 15 minutes
MAX_OPEN_LOCATORS = 200
_DATA_PATH = re.compile(r"^/services/data/v(\d+\.\d)(/.*)?$")
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
# Composite (`/composite`): the whole series is one API call; at most 25 subrequests, of which at most 5
# query/queryAll (or sObject collection) operations; a reference id starts with a letter and holds
# letters, digits and underscores; Accept, Authorization and Content-Type are inherited, never set per
# subrequest (REST API Developer Guide, "Composite" and "Composite Request Body").
COMPOSITE_MAX_SUBREQUESTS, COMPOSITE_MAX_QUERIES = 25, 5
_REFERENCE_ID = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_INHERITED_HEADERS = frozenset({"accept", "authorization", "content-type"})
_COMPOSITE_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")


@dataclass
class WriteAudit:
    """One attempted write through the REST API, whatever its outcome."""

    at: datetime
    method: str
    object: str
    record_id: str | None
    fields: dict[str, Any]
    outcome: str  # created / updated / deleted, or the errorCode that refused it
    status: int


@dataclass
class _Cursor:
    result: QueryResult
    endpoint: str  # query or queryAll
    version: str
    batch_size: int
    last_used: datetime


@dataclass
class ApiUsage:
    """The org's daily API request counter, as /limits and Sforce-Limit-Info report it."""

    limit: int
    used: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def header(self) -> str:
        return f"api-usage={self.used}/{self.limit}"


class SalesforceSandbox(SandboxApp):
    """A SandboxApp serving one `SalesforceOrg`.

    Endpoints: /services/oauth2/{authorize,token,revoke}; under /services/data/v59.0..v62.0: /, /limits,
    /query and /queryAll (+ /query/<locator>-<offset>), /sobjects, /sobjects/{Obj}[/describe|/updated|/deleted],
    GET|PATCH|DELETE /sobjects/{Obj}/{Id}, POST /sobjects/{Obj}. Every REST answer carries Sforce-Limit-Info.
    """

    name = "salesforce"

    def __init__(
        self,
        org: SalesforceOrg,
        *,
        client_id: str = "dfx-sandbox-client",
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        access_token_ttl: timedelta = timedelta(hours=2),
        granted_scopes: str = "api refresh_token cdp_query_api",
        daily_api_limit: int = 15000,
        instance_url: str | None = None,
        clock: Callable[[], datetime] | None = None,
    ):
        self.org = org
        self.instance_url = instance_url
        self.clock = clock or (lambda: org.now)  # token expiry and cursor idling follow the org's clock
        self.usage = ApiUsage(daily_api_limit)
        self.write_audit: list[WriteAudit] = []
        # Called with each query's text before it runs: a test changes the org "while" a run reads it.
        self.query_hooks: list[Callable[[str], None]] = []
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()
        self.oauth = OAuthServer(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            access_token_ttl=access_token_ttl,
            granted_scopes=granted_scopes,
            clock=self.clock,
            org_id=org.org_id,
            user_id=org.integration_user_id,
            instance_url=self._instance_url_for,
        )

    # ------------------------------------------------------------ configuration

    def bind(self, base_url: str) -> SalesforceSandbox:
        """Set instance_url to the running server's URL (e.g. `https://127.0.0.1:54321`)."""
        self.instance_url = base_url.rstrip("/")
        return self

    def response_headers(self) -> Mapping[str, str]:
        # Salesforce answers with its own time in `Date`; here the org's clock, which tests move (the
        # connector takes its record-bucket index's as-of instant from it, not from its own clock).
        return {"Date": email.utils.format_datetime(self.clock().astimezone(UTC), usegmt=True)}

    @property
    def granted_scopes(self) -> str:
        return self.oauth.granted_scopes

    @granted_scopes.setter
    def granted_scopes(self, value: str) -> None:
        self.oauth.granted_scopes = value

    def issue_tokens(self) -> dict[str, Any]:
        """A token response without the OAuth dance, for tests that are about something else."""
        return self.oauth.issue_tokens()

    def set_api_usage(self, used: int) -> None:
        with self.usage.lock:
            self.usage.used = used

    @property
    def api_calls(self) -> int:
        return self.usage.used

    def _instance_url_for(self, request: Request | None) -> str:
        if self.instance_url:
            return self.instance_url
        host = request.headers.get("host") if request is not None else None
        return f"https://{host}" if host else "https://127.0.0.1"

    # ------------------------------------------------------------ SandboxApp protocol

    def unauthorized(self, request: Request) -> Response:
        return self._error(invalid_session())

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        """What the harness's rate_limit fault answers: a transient, retryable 429 in Salesforce's error shape."""
        error = SalesforceApiError(429, "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded.")
        response = self._error(error)
        response.headers["Retry-After"] = f"{retry_after:g}"
        return response

    def handle(self, request: Request) -> Response:
        path = request.path
        if path.startswith("/services/oauth2/"):
            return self._oauth(request)
        if path in ("/services/data", "/services/data/"):
            return Response.json(
                [{"label": f"API {v}", "url": f"/services/data/v{v}", "version": v} for v in SUPPORTED_VERSIONS]
            )
        match = _DATA_PATH.match(path)
        if match is None or match.group(1) not in SUPPORTED_VERSIONS:
            return self._error(not_found())
        try:
            return self._rest(request, match.group(1), (match.group(2) or "/").strip("/"))
        except SalesforceApiError as error:
            return self._error(error)

    def _error(self, error: SalesforceApiError) -> Response:
        return Response.json(error.body(), status=error.status, headers={"Sforce-Limit-Info": self.usage.header})

    def _json(self, payload: Any, status: int = 200) -> Response:
        return Response.json(payload, status=status, headers={"Sforce-Limit-Info": self.usage.header})

    # ------------------------------------------------------------ OAuth

    def _oauth(self, request: Request) -> Response:
        endpoint = request.path.rstrip("/").rsplit("/", 1)[-1]
        if endpoint == "authorize" and request.method == "GET":
            return self.oauth.authorize_page(request)
        if endpoint == "authorize" and request.method == "POST":
            return self.oauth.authorize_decision(request)
        if endpoint == "token" and request.method == "POST":
            return self.oauth.token(request)
        if endpoint == "revoke" and request.method in ("POST", "GET"):
            return self.oauth.revoke(request)
        return Response.json({"error": "not_found", "error_description": "unknown OAuth endpoint"}, status=404)

    # ------------------------------------------------------------ REST

    def _authenticate_and_count(self, request: Request) -> None:
        grant = self.oauth.access_grant(request.bearer_token())
        if grant is None:
            raise invalid_session()
        if "api" not in grant.scopes and "full" not in grant.scopes:
            raise SalesforceApiError(403, "INVALID_SESSION_ID", "This session is not valid for use with the REST API")
        with self.usage.lock:
            if self.usage.used >= self.usage.limit:
                raise SalesforceApiError(403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
            self.usage.used += 1

    def _rest(self, request: Request, version: str, rest: str) -> Response:
        self._authenticate_and_count(request)
        if rest == "composite":
            self._allow(request.method, "POST")
            return self._composite(request, version)
        return self._resource(request, version, rest)

    def _resource(self, request: Request, version: str, rest: str) -> Response:
        """One REST resource, already authenticated and counted (a request's own, or a composite's subrequest)."""
        parts = [part for part in rest.split("/") if part] if rest else []
        method = request.method
        if not parts:
            return self._json(
                {
                    name: f"/services/data/v{version}/{name}"
                    for name in ("sobjects", "query", "queryAll", "limits", "composite")
                }
            )
        head = parts[0]
        if head == "limits" and len(parts) == 1:
            self._allow(method, "GET")
            return self._json(self._limits())
        if head in ("query", "queryAll"):
            self._allow(method, "GET")
            if len(parts) == 1:
                return self._start_query(request, version, head)
            if len(parts) == 2:
                return self._query_more(parts[1])
        if head == "sobjects":
            return self._sobjects(request, version, parts[1:])
        raise not_found()

    # ------------------------------------------------------------ composite

    def _composite(self, request: Request, version: str) -> Response:
        """`POST /composite`: subrequests run in order as one API call; each answers in its own entry.

        A malformed series is refused as a whole (400, nothing runs). With `allOrNone`, the first failed
        subrequest stops the rest (PROCESSING_HALTED); reads have nothing to roll back. The `@{ref.field}`
        references between subrequests are not supported by this sandbox (refused, never ignored)."""
        body = self._body(request)
        subrequests = body.get("compositeRequest")
        all_or_none = body.get("allOrNone", False)
        if not isinstance(subrequests, list) or not subrequests:
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "compositeRequest is required and must be a list")
        if not isinstance(all_or_none, bool):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "allOrNone must be a boolean")
        if len(subrequests) > COMPOSITE_MAX_SUBREQUESTS:
            raise SalesforceApiError(
                400,
                "LIMIT_EXCEEDED",
                f"Composite request has {len(subrequests)} subrequests; the limit is {COMPOSITE_MAX_SUBREQUESTS}",
            )
        parsed = [self._composite_subrequest(sub, version) for sub in subrequests]
        references = [reference for reference, *_ in parsed]
        if len(set(references)) != len(references):
            raise SalesforceApiError(400, "INVALID_INPUT", "Duplicate referenceId in the composite request")
        queries = sum(1 for _, sub, _, rest in parsed if rest.split("/", 1)[0] in ("query", "queryAll"))
        if queries > COMPOSITE_MAX_QUERIES:
            raise SalesforceApiError(
                400,
                "LIMIT_EXCEEDED",
                f"Composite request has {queries} query operations; the limit is {COMPOSITE_MAX_QUERIES}",
            )
        results: list[dict[str, Any]] = []
        halted = False
        for reference, sub, sub_version, rest in parsed:
            if halted:
                error = SalesforceApiError(
                    400, "PROCESSING_HALTED", "The transaction was rolled back since another operation failed"
                )
                results.append(self._sub_result(reference, error.status, error.body()))
                continue
            try:
                response = self._resource(sub, sub_version, rest)
            except SalesforceApiError as error:
                results.append(self._sub_result(reference, error.status, error.body()))
                halted = all_or_none
                continue
            payload = json.loads(response.body) if response.body else None
            results.append(self._sub_result(reference, response.status, payload))
            halted = all_or_none and response.status >= 400
        return self._json({"compositeResponse": results})

    def _composite_subrequest(self, sub: Any, version: str) -> tuple[str, Request, str, str]:
        if not isinstance(sub, dict):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "Each composite subrequest must be a JSON object")
        method, url, reference = sub.get("method"), sub.get("url"), sub.get("referenceId")
        if method not in _COMPOSITE_METHODS:
            raise SalesforceApiError(
                400,
                "INVALID_INPUT",
                f"Invalid method {method!r}: one of {', '.join(_COMPOSITE_METHODS)} (case-sensitive)",
            )
        if not isinstance(reference, str) or not _REFERENCE_ID.match(reference):
            raise SalesforceApiError(400, "INVALID_INPUT", f"Invalid referenceId {reference!r}")
        headers = sub.get("httpHeaders") or {}
        if not isinstance(headers, dict) or _INHERITED_HEADERS & {str(k).lower() for k in headers}:
            raise SalesforceApiError(
                400, "INVALID_INPUT", "A subrequest may not set Accept, Authorization or Content-Type"
            )
        if not isinstance(url, str) or "@{" in urllib.parse.unquote(url):
            raise SalesforceApiError(400, "INVALID_INPUT", f"Unsupported subrequest url for {reference}")
        split = urllib.parse.urlsplit(url)
        match = _DATA_PATH.match(urllib.parse.unquote(split.path))
        if split.scheme or split.netloc or match is None:
            raise SalesforceApiError(400, "INVALID_INPUT", f"The url of {reference} is not a /services/data path")
        sub_version = match.group(1)
        if sub_version not in SUPPORTED_VERSIONS or float(sub_version) > float(version):
            raise SalesforceApiError(
                400, "INVALID_INPUT", f"The url of {reference} names API {sub_version}, above the request's {version}"
            )
        rest = (match.group(2) or "/").strip("/")
        if rest.split("/", 1)[0] not in ("sobjects", "query", "queryAll"):
            raise SalesforceApiError(400, "INVALID_INPUT", f"The resource of {reference} is not supported in composite")
        body = sub.get("body")
        request = Request(
            method=method,
            path=urllib.parse.unquote(split.path),
            query=urllib.parse.parse_qs(split.query, keep_blank_values=True),
            headers=Headers({str(k): str(v) for k, v in headers.items()}),
            body=json.dumps(body).encode("utf-8") if body is not None else b"",
            raw_path=url,
        )
        return reference, request, sub_version, rest

    def _sub_result(self, reference: str, status: int, body: Any) -> dict[str, Any]:
        return {"body": body, "httpHeaders": {}, "httpStatusCode": status, "referenceId": reference}

    @staticmethod
    def _allow(method: str, *allowed: str) -> None:
        if method not in allowed:
            raise SalesforceApiError(
                405, "METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed. Allowed are {','.join(allowed)}"
            )

    def _limits(self) -> dict[str, Any]:
        used, limit = self.usage.used, self.usage.limit
        return {
            "DailyApiRequests": {"Max": limit, "Remaining": max(0, limit - used)},
            "DailyBulkApiBatches": {"Max": 15000, "Remaining": 15000},
            "DataStorageMB": {"Max": 1024, "Remaining": 1024},
        }

    # ------------------------------------------------------------ query and paging

    def _batch_size(self, request: Request) -> int:
        match = _BATCH_SIZE.search(request.headers.get("sforce-query-options", "") or "")
        if not match:
            return DEFAULT_BATCH_SIZE
        return max(MIN_BATCH_SIZE, min(MAX_BATCH_SIZE, int(match.group(1))))

    def _start_query(self, request: Request, version: str, endpoint: str) -> Response:
        text = request.arg("q")
        if not text or not text.strip():
            raise SalesforceApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        for hook in list(self.query_hooks):
            hook(text)
        result = execute(self.org, text, include_deleted=endpoint == "queryAll", version=version)
        cursor = _Cursor(result, endpoint, version, self._batch_size(request), self.clock())
        return self._json(self._page(cursor, self._new_locator(), 0))

    def _query_more(self, locator_and_offset: str) -> Response:
        locator, _, offset_text = locator_and_offset.partition("-")
        with self._lock:
            self._expire_cursors()
            cursor = self._cursors.get(locator)
        if cursor is None or not offset_text.isdigit():
            raise SalesforceApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        cursor.last_used = self.clock()
        return self._json(self._page(cursor, locator, int(offset_text)))

    def _page(self, cursor: _Cursor, locator: str, offset: int) -> dict[str, Any]:
        result = cursor.result
        records = result.page(offset, cursor.batch_size)
        next_offset = offset + cursor.batch_size
        payload: dict[str, Any] = {"totalSize": result.total_size, "done": next_offset >= result.row_count}
        with self._lock:
            if payload["done"]:
                self._cursors.pop(locator, None)  # Salesforce closes a cursor once it is read to the end
            else:
                self._cursors[locator] = cursor
                self._cursors.move_to_end(locator)
                while len(self._cursors) > MAX_OPEN_LOCATORS:
                    self._cursors.popitem(last=False)
                payload["nextRecordsUrl"] = (
                    f"/services/data/v{cursor.version}/{cursor.endpoint}/{locator}-{next_offset}"
                )
        payload["records"] = records
        return payload

    def _new_locator(self) -> str:
        return "01g" + "".join(secrets.choice(BASE62) for _ in range(15))

    def _expire_cursors(self) -> None:
        now = self.clock()
        for locator in [key for key, cursor in self._cursors.items() if now - cursor.last_used > LOCATOR_TTL]:
            del self._cursors[locator]

    def open_cursors(self) -> int:
        with self._lock:
            return len(self._cursors)

    # ------------------------------------------------------------ sobjects

    def _sobjects(self, request: Request, version: str, parts: list[str]) -> Response:
        method = request.method
        if not parts:
            self._allow(method, "GET")
            return self._json(describe_global(version))
        objdef = find_object(parts[0])
        if objdef is None:
            raise not_found()
        if len(parts) == 1:
            if method == "POST":
                return self._create(request, objdef.name)
            self._allow(method, "GET", "POST")
            return self._json({"objectDescribe": objdef.summary(version), "recentItems": []})
        action = parts[1]
        if len(parts) == 2 and action == "describe":
            self._allow(method, "GET")
            return self._json(objdef.describe(version))
        if len(parts) == 2 and action in ("updated", "deleted"):
            self._allow(method, "GET")
            start, end = self._window_arg(request, "start"), self._window_arg(request, "end")
            if action == "updated":
                return self._json(self.org.updated(objdef.name, start, end))
            return self._json(self.org.deleted(objdef.name, start, end))
        if len(parts) == 2:
            record_id = action
            if method == "GET":
                return self._get_record(request, version, objdef.name, record_id)
            if method == "PATCH":
                return self._update(request, objdef.name, record_id)
            if method == "DELETE":
                return self._delete(objdef.name, record_id)
            self._allow(method, "GET", "PATCH", "DELETE", "HEAD")
        raise not_found()

    @staticmethod
    def _window_arg(request: Request, name: str) -> datetime:
        raw = request.arg(name)
        if not raw:
            raise SalesforceApiError(400, "MISSING_ARGUMENT", f"Missing required parameter: {name}")
        # A '+' sent unencoded arrives as a space; simple-salesforce sends naive datetimes with a trailing ':'.
        text = raw.strip().replace(" ", "+").rstrip(":")
        parsed = parse_datetime_text(text)
        if parsed is None:
            raise SalesforceApiError(400, "INVALID_REPLICATION_DATE", f"Invalid {name} date: {raw}")
        return parsed

    def _get_record(self, request: Request, version: str, obj: str, record_id: str) -> Response:
        fields_arg = request.arg("fields")
        names = [name.strip() for name in fields_arg.split(",") if name.strip()] if fields_arg else None
        objdef = find_object(obj)
        assert objdef is not None
        for name in names or []:
            if objdef.field(name) is None:
                raise SalesforceApiError(
                    400,
                    "INVALID_FIELD",
                    f"No such column '{name}' on entity '{objdef.name}'. If you are attempting to "
                    "use a custom field, be sure to append the '__c' after the custom field name. Please reference "
                    "your WSDL or the describe call for the appropriate names.",
                )
        record = self.org.record_json(obj, record_id, names, version=version)
        if record is None:
            raise not_found()
        return self._json(record)

    def _body(self, request: Request) -> dict[str, Any]:
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            raise SalesforceApiError(400, "JSON_PARSER_ERROR", "The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise SalesforceApiError(
                400, "JSON_PARSER_ERROR", "Cannot deserialize the request body: expected a JSON object"
            )
        return body

    def _audited(
        self,
        method: str,
        obj: str,
        record_id: str | None,
        fields: dict[str, Any],
        action: Callable[[], Any],
        outcome: str,
    ) -> Any:
        try:
            result = action()
        except SalesforceApiError as error:
            self.write_audit.append(
                WriteAudit(self.clock(), method, obj, record_id, fields, error.error_code, error.status)
            )
            raise
        self.write_audit.append(
            WriteAudit(
                self.clock(),
                method,
                obj,
                record_id if record_id else result,
                fields,
                outcome,
                201 if outcome == "created" else 204,
            )
        )
        return result

    def _update(self, request: Request, obj: str, record_id: str) -> Response:
        try:
            fields = self._body(request)
        except SalesforceApiError as error:
            self.write_audit.append(
                WriteAudit(self.clock(), "PATCH", obj, record_id, {}, error.error_code, error.status)
            )
            raise
        condition = _http_date(request.headers.get("if-unmodified-since"))
        self._audited(
            "PATCH", obj, record_id, fields, lambda: self.org.update(obj, record_id, fields, condition), "updated"
        )
        return Response(204, b"", {"Sforce-Limit-Info": self.usage.header})

    def _create(self, request: Request, obj: str) -> Response:
        fields = self._body(request)
        new_id = self._audited("POST", obj, None, fields, lambda: self.org.create(obj, fields), "created")
        return self._json({"id": new_id, "success": True, "errors": []}, status=201)

    def _delete(self, obj: str, record_id: str) -> Response:
        self._audited("DELETE", obj, record_id, {}, lambda: self.org.delete(obj, record_id), "deleted")
        return Response(204, b"", {"Sforce-Limit-Info": self.usage.header})


def _http_date(value: str | None) -> datetime | None:
    """An HTTP-date, or None; RFC 9110 says to ignore an If-Unmodified-Since that is not a valid date."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
