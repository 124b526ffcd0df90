"""`SalesforceResource`: the Dagster resource that hands out a `SalesforceClient` for one connection.

The client is the only code that talks to Salesforce. It takes tokens from the vault, checks the
instance URL before a token leaves the process, refreshes on 401 (storing the new access token) through
a token session that retries the refresh POST after a dropped connection or a 5xx (safe: a Salesforce
refresh does not retire the refresh token it was given, so sending it again gets another access token),
retries REQUEST_LIMIT_EXCEEDED with backoff (429/5xx are retried by the shared session), stops before
a configured share of the org's daily API limit, and counts calls, records and bytes for metadata.
Errors come out as project errors with no token text.
"""

from __future__ import annotations

import email.utils
import functools
import logging
import re
import urllib.parse
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceRefusedRequest,
)

from dfx_pipelines.connectors.salesforce import oauth
from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.errors import AuthError, ConnectorError
from dfx_pipelines.platform.http import RetryPolicy, api_calls, build_session, bytes_received, translate_errors
from dfx_pipelines.platform.redaction import redact
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.secret_input import accept_optional_secret
from dfx_pipelines.platform.services import Platform

log = logging.getLogger(__name__)
T = TypeVar("T")

API_VERSION = "59.0"
MAX_REFRESHES_PER_CALL = 3
NEXT_RECORDS_PATH = re.compile(r"/services/data/v[0-9]{1,3}\.[0-9]/(?:query|queryAll)/[A-Za-z0-9]{15,18}-[0-9]{1,9}")
SANDBOX_CLIENT_ID = "dfx-sandbox-client"
# `/composite`: up to 25 subrequests, at most 5 of them queries, and the whole series counts as one API
# call toward the org's daily limit (REST API Developer Guide, "Composite"); `/composite/batch` counts
# each subrequest, so it would save round trips but not the limit.
COMPOSITE_MAX_SUBREQUESTS, COMPOSITE_MAX_QUERIES = 25, 5


@dataclass(frozen=True)
class SubResult:
    """One composite subrequest's answer."""

    status: int
    body: Any


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _sub_error_text(body: Any) -> str:
    """A subrequest's error as Salesforce states it (codes and messages, redacted), never the raw body."""
    errors = body if isinstance(body, list) else [body]
    parts = [
        f"{error.get('errorCode', 'ERROR')}: {error.get('message', '')}".strip()
        for error in errors
        if isinstance(error, dict)
    ]
    return redact("; ".join(parts) or "no error detail")


class ApiBudgetExhausted(ConnectorError):
    """The org's daily API usage reached the share this connection may use: stop, politely."""

    permanent = True  # retrying within minutes only spends more of the org's budget


def _error_text(exc: SalesforceError) -> str:
    content = getattr(exc, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        first = content[0]
        return redact(f"{first.get('errorCode', 'ERROR')}: {first.get('message', '')}")
    return redact(f"HTTP {getattr(exc, 'status', '?')}")


def _error_code(exc: SalesforceError) -> str | None:
    content = getattr(exc, "content", None)
    if isinstance(content, list) and content and isinstance(content[0], dict):
        return content[0].get("errorCode")
    return None


@dataclass
class CallStats:
    queries: list[str] = field(default_factory=list)
    records_read: int = 0
    refreshes: int = 0


class SalesforceClient:
    """One connection's Salesforce API, built per run by `SalesforceResource.client`."""

    def __init__(
        self,
        platform: Platform,
        connection: Connection,
        session: requests.Session,
        *,
        client_id: str,
        client_secret: str | None,
        api_version: str = API_VERSION,
        limit_retry_policy: RetryPolicy | None = None,
        token_session: requests.Session | None = None,
    ):
        self.platform = platform
        self.connection = connection
        self.session = session
        self.token_session = token_session if token_session is not None else session
        self.client_id = client_id
        self.client_secret = accept_optional_secret(
            client_secret, "the Salesforce client secret (SALESFORCE_CLIENT_SECRET)"
        )
        self.api_version = api_version
        self.sandbox_allowed = platform.settings.sandbox_allowed
        self.instance_url = oauth.validate_salesforce_url(
            connection.endpoint.get("instance_url", ""), sandbox_allowed=self.sandbox_allowed
        )
        self.login_url = oauth.validate_salesforce_url(
            connection.endpoint.get("login_url", ""), sandbox_allowed=self.sandbox_allowed, what="login URL"
        )
        self.limit_retry = limit_retry_policy or RetryPolicy(max_attempts=4, backoff_base=2.0)
        self.stats = CallStats()
        # The org's time as its last answer gave it (HTTP `Date`): the record-bucket index dates itself by
        # the server's clock, the one SystemModstamp is written with, not by this machine's.
        self.server_time: datetime | None = None
        session.hooks["response"].append(self._note_server_time)
        token = platform.vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
        self._sf = Salesforce(instance_url=self.instance_url, session_id=token, session=session, version=api_version)

    # -- accounting

    def _note_server_time(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        try:
            stamp = email.utils.parsedate_to_datetime(response.headers.get("Date", ""))
        except (TypeError, ValueError, IndexError):
            return  # no or malformed Date: keep the last one (the index then falls back to a full read)
        if stamp.tzinfo is not None:
            self.server_time = stamp.astimezone(UTC)

    @property
    def api_calls(self) -> int:
        return api_calls(self.session) + (
            api_calls(self.token_session) if self.token_session is not self.session else 0
        )

    @property
    def bytes_read(self) -> int:
        return bytes_received(self.session) + (
            bytes_received(self.token_session) if self.token_session is not self.session else 0
        )

    def api_usage(self) -> tuple[int, int] | None:
        usage = self._sf.api_usage.get("api-usage")
        return (usage.used, usage.total) if usage else None

    def _check_api_budget(self) -> None:
        usage = self.api_usage()
        if usage is None:
            return
        used, total = usage
        share = self.connection.settings.api_limit_share
        if total and used >= share * total:
            raise ApiBudgetExhausted(
                f"Salesforce org of {self.connection.id} has used {used}/{total} API calls today; this connection "
                f"stops at {share:.0%} of the daily limit (settings.api_limit_share) and will resume tomorrow"
            )

    # -- the call wrapper every request goes through

    def _refresh(self) -> None:
        refresh_token = self.platform.vault.get(self.connection.secret_ref("oauth_refresh_token")).get_secret_value()
        tokens = oauth.refresh_access_token(
            self.token_session,
            self.login_url,
            self.client_id,
            refresh_token,
            client_secret=self.client_secret,
            sandbox_allowed=self.sandbox_allowed,
        )
        if tokens.instance_url != self.instance_url:
            raise AuthError("token refresh moved the instance to another host; refusing to follow it")
        self.platform.vault.put(
            self.connection.secret_ref("oauth_access_token"), tokens.access_token.get_secret_value()
        )
        self._sf.session_id = tokens.access_token.get_secret_value()
        self._sf.headers["Authorization"] = "Bearer " + self._sf.session_id
        self.stats.refreshes += 1
        log.info("refreshed the Salesforce access token of %s", self.connection.id)

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        refreshes = 0
        attempt = 0
        while True:
            attempt += 1
            self._check_api_budget()
            try:
                with translate_errors(f"Salesforce {what}"):
                    return fn()
            except SalesforceExpiredSession:
                # A token can expire again right after a refresh (an org admin's "expire all sessions", a
                # short session timeout): refresh a few times, but not forever for a token that never works.
                if refreshes >= MAX_REFRESHES_PER_CALL:
                    raise AuthError(
                        f"Salesforce {what}: session still invalid after {refreshes} token refreshes (revoked?)"
                    ) from None
                refreshes += 1
                self._refresh()
            except SalesforceRefusedRequest as exc:
                if _error_code(exc) != "REQUEST_LIMIT_EXCEEDED":  # a 403: the user lacks a permission
                    raise AuthError(f"Salesforce {what} refused: {_error_text(exc)}") from None
                if attempt >= self.limit_retry.max_attempts:  # the org's daily API limit: over budget until it resets
                    raise ApiBudgetExhausted(f"Salesforce {what} refused: {_error_text(exc)}") from None
                delay = self.limit_retry.delay_for(attempt, None)
                log.warning("Salesforce %s: REQUEST_LIMIT_EXCEEDED; retry %d in %.1fs", what, attempt, delay)
                self.limit_retry.sleep(delay)
            except SalesforceError as exc:
                raise ConnectorError(f"Salesforce {what} failed: {_error_text(exc)}") from None

    def _sobject_call(self, what: str, sobject: str, action: Callable[[Any], T]) -> T:
        """A call through simple-salesforce's per-object `SFType`, which keeps the Sforce-Limit-Info it
        reads on itself: copy it to the client's, or describe/updated/deleted (all the CDC sensor sends)
        would never move the API budget check."""

        def call() -> T:
            sftype = getattr(self._sf, sobject)
            try:
                return action(sftype)
            finally:
                if sftype.api_usage:
                    self._sf.api_usage = sftype.api_usage

        return self._call(what, call)

    # -- the API, as the connector uses it

    def describe(self, sobject: str) -> dict[str, Any]:
        return self._sobject_call(f"describe {sobject}", sobject, lambda sftype: sftype.describe())

    def describe_global(self) -> dict[str, Any]:
        return self._call("describe global", lambda: self._sf.describe() or {})

    def stream(self, soql: str, *, include_deleted: bool = False) -> Generator[dict[str, Any], None, None]:
        """Records of a query, page by page (bounded memory); every page goes through `_call`."""
        self.stats.queries.append(soql)
        page = self._call("query", lambda: self._sf.query(soql, include_deleted=include_deleted))
        yield from self._pages(page)

    def _pages(self, page: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """A query's records from its first page on, following nextRecordsUrl (checked) page by page."""
        while True:
            records = page.get("records", [])
            self.stats.records_read += len(records)
            yield from records
            if page.get("done", True):
                return
            next_url = page.get("nextRecordsUrl")
            # simple-salesforce appends this to `https://<instance>`: anything but a query-locator path
            # (`@evil.example/…`, `.evil.example/…`) would send the session token to another host.
            if not isinstance(next_url, str) or not NEXT_RECORDS_PATH.fullmatch(next_url):
                raise ConnectorError(
                    "Salesforce answered a nextRecordsUrl that is not a query-locator path on the instance: refused"
                )
            page = self._call("query page", functools.partial(self._query_more, next_url))

    def _query_more(self, next_url: str) -> dict[str, Any]:
        # `self._sf` is read at each attempt: a session refresh replaces it
        return self._sf.query_more(next_url, identifier_is_url=True)

    def aggregate(self, soql: str) -> list[dict[str, Any]]:
        return list(self.stream(soql))

    def composite(self, what: str, subrequests: list[tuple[str, str]]) -> dict[str, SubResult]:
        """GET subrequests — (reference id, resource path under /services/data/vXX.X/) — as one `/composite`
        call, by reference id. The caller keeps within the limits (25 subrequests, 5 queries); a failed
        subrequest is its own answer (allOrNone false), for the caller to raise."""
        if not subrequests or len(subrequests) > COMPOSITE_MAX_SUBREQUESTS:
            raise ValueError(f"a composite call takes 1 to {COMPOSITE_MAX_SUBREQUESTS} subrequests")
        body = {
            "allOrNone": False,
            "compositeRequest": [
                {"method": "GET", "url": f"/services/data/v{self.api_version}/{path}", "referenceId": reference}
                for reference, path in subrequests
            ],
        }
        answer = self._call(what, lambda: self._post_read_only("composite", body))
        results = answer.get("compositeResponse") if isinstance(answer, dict) else None
        by_reference: dict[str, SubResult] = {}
        for result in results if isinstance(results, list) else []:
            if not isinstance(result, dict) or not isinstance(result.get("httpStatusCode"), int):
                break
            by_reference[str(result.get("referenceId"))] = SubResult(result["httpStatusCode"], result.get("body"))
        if set(by_reference) != {reference for reference, _ in subrequests}:
            raise ConnectorError(f"Salesforce {what}: the composite response does not answer each subrequest once")
        return by_reference

    def _post_read_only(self, path: str, body: dict[str, Any]) -> Any:
        # A composite of GETs changes nothing, but the shared session retries only idempotent methods:
        # sent through the session that retries every method (as the refresh POST is), a dropped
        # connection or a 5xx is retried like the GETs it carries.
        session = self._sf.session
        self._sf.session = self.token_session
        try:
            return self._sf.restful(path, method="POST", json=body)
        finally:
            self._sf.session = session

    def replication_windows(
        self, starts: dict[str, datetime], end: datetime
    ) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        """Per object, its `updated` and `deleted` answers for [start, end): the same replication resources
        the one-object calls read, for all objects in one composite call per 12 objects."""
        subrequests: list[tuple[str, str]] = []
        wanted: dict[str, tuple[str, str]] = {}
        for number, (sobject, start) in enumerate(sorted(starts.items())):
            window = urllib.parse.urlencode({"start": _iso_utc(start), "end": _iso_utc(end)})
            wanted[sobject] = (f"updated{number}", f"deleted{number}")
            subrequests += [
                (f"updated{number}", f"sobjects/{sobject}/updated/?{window}"),
                (f"deleted{number}", f"sobjects/{sobject}/deleted/?{window}"),
            ]
        answers: dict[str, SubResult] = {}
        step = COMPOSITE_MAX_SUBREQUESTS - COMPOSITE_MAX_SUBREQUESTS % 2  # an object's two stay together
        for first in range(0, len(subrequests), step):
            answers |= self.composite("updated/deleted", subrequests[first : first + step])
        windows = {}
        for sobject, (updated_ref, deleted_ref) in wanted.items():
            for action, reference in (("updated", updated_ref), ("deleted", deleted_ref)):
                answer = answers[reference]
                if answer.status >= 300 or not isinstance(answer.body, dict):
                    raise ConnectorError(f"Salesforce {action} {sobject} failed: {_sub_error_text(answer.body)}")
            windows[sobject] = (answers[updated_ref].body, answers[deleted_ref].body)
        return windows

    def stream_many(self, soqls: list[str], *, include_deleted: bool = False) -> Iterator[dict[str, Any]]:
        """The records of several queries, their first pages five to a composite call (later pages, if any,
        one call each as in `stream`)."""
        endpoint = "queryAll" if include_deleted else "query"
        for first in range(0, len(soqls), COMPOSITE_MAX_QUERIES):
            chunk = soqls[first : first + COMPOSITE_MAX_QUERIES]
            self.stats.queries.extend(chunk)
            answers = self.composite(
                endpoint,
                [(f"q{n}", f"{endpoint}/?{urllib.parse.urlencode({'q': soql})}") for n, soql in enumerate(chunk)],
            )
            for n in range(len(chunk)):
                answer = answers[f"q{n}"]
                if answer.status >= 300 or not isinstance(answer.body, dict):
                    raise ConnectorError(f"Salesforce {endpoint} failed: {_sub_error_text(answer.body)}")
                yield from self._pages(answer.body)

    def updated(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        return self._sobject_call(f"updated {sobject}", sobject, lambda sftype: sftype.updated(start, end))

    def deleted(self, sobject: str, start: datetime, end: datetime) -> dict[str, Any]:
        return self._sobject_call(f"deleted {sobject}", sobject, lambda sftype: sftype.deleted(start, end))

    def update_record(
        self, sobject: str, record_id: str, fields: dict[str, Any], *, if_unmodified_since: datetime | None = None
    ) -> int:
        headers = {}
        if if_unmodified_since is not None:
            headers["If-Unmodified-Since"] = if_unmodified_since.astimezone(UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
        return self._sobject_call(
            f"update {sobject}", sobject, lambda sftype: sftype.update(record_id, fields, headers=headers)
        )


class SalesforceResource(dg.ConfigurableResource):
    """Salesforce for the connections in the registry. The connected app's client secret, if it has
    one, comes from an environment variable (`EnvVar("SALESFORCE_CLIENT_SECRET")`), never a literal."""

    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str | None = None
    api_version: str = API_VERSION
    sandbox_ca_path: str | None = None  # defaults to the embedded default's sandbox CA, sandbox mode only
    # Retry knobs; the defaults are the platform's. Tests and benchmarks shorten the waits (a run under
    # injected faults should not sleep for minutes), operators may lengthen them for a busy org.
    retry_max_attempts: int = 5  # per request, for 429, 5xx and dropped connections (the shared session)
    retry_backoff_seconds: float = 0.5  # first wait, doubled per attempt with jitter; a Retry-After wins
    limit_retry_max_attempts: int = 4  # per call, for REQUEST_LIMIT_EXCEEDED (403), retried by the client
    limit_retry_backoff_seconds: float = 2.0

    def resolved_client_id(self) -> str:
        return resolved(self.client_id) or SANDBOX_CLIENT_ID

    def resolved_client_secret(self) -> str | None:
        """The secret itself, also when this resource was built outside a run (a CLI command), where the
        field still holds the `EnvVar` whose text is the variable's name."""
        return resolved(self.client_secret)

    def _sandbox_ca(self, platform: Platform) -> str | None:
        if not platform.settings.sandbox_allowed:
            return None
        candidate = (
            Path(self.sandbox_ca_path) if self.sandbox_ca_path else platform.settings.sandbox_dir / "sandbox-ca.pem"
        )
        return str(candidate) if candidate.exists() else None

    def session(self, platform: Platform) -> requests.Session:
        return build_session(
            sandbox_ca=self._sandbox_ca(platform),
            retry=RetryPolicy(max_attempts=self.retry_max_attempts, backoff_base=self.retry_backoff_seconds),
        )

    def token_session(self, platform: Platform) -> requests.Session:
        """For the refresh POST: retried like a GET (dropped connections and 5xx too), see the module docstring."""
        policy = RetryPolicy(
            max_attempts=self.retry_max_attempts, backoff_base=self.retry_backoff_seconds, retry_all_methods=True
        )
        return build_session(sandbox_ca=self._sandbox_ca(platform), retry=policy)

    def client(self, platform: Platform, connection: Connection) -> SalesforceClient:
        return SalesforceClient(
            platform,
            connection,
            self.session(platform),
            client_id=self.resolved_client_id(),
            client_secret=self.resolved_client_secret(),
            api_version=self.api_version,
            limit_retry_policy=RetryPolicy(
                max_attempts=self.limit_retry_max_attempts, backoff_base=self.limit_retry_backoff_seconds
            ),
            token_session=self.token_session(platform),
        )
