"""`JiraSandbox`: the SandboxApp that answers like Jira Cloud or Jira Data Center over the harness.

One server plays every host. Cloud: `/authorize` and `/oauth/token` (auth.atlassian.com),
`/oauth/token/accessible-resources` and `/ex/jira/{cloudId}/rest/...` with Bearer tokens
(api.atlassian.com), and `/rest/...` on the site URL with API-token basic auth (email:token).
Data Center: `/rest/...` with a personal access token (Bearer) or basic auth (username:password).
Every API call is counted (`calls`) and every `fields`/`expand` asked for is kept (`field_requests`).
"""

from __future__ import annotations

import base64
import hmac
import math
import threading
import uuid
from collections import Counter, OrderedDict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog, routes_agile, routes_platform, routes_search, sla
from dfx_pipelines.connectors.jira.sandbox.api import ApiError, Call, Route
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.oauth import AtlassianOAuth
from dfx_pipelines.connectors.jira.sandbox.records import from_epoch
from dfx_pipelines.connectors.jira.sandbox.render import RenderContext, avatar_urls
from dfx_pipelines.platform.sandbox import Request, Response, SandboxApp

ROUTES: list[Route] = routes_search.ROUTES + routes_platform.ROUTES + routes_agile.ROUTES + sla.ROUTES
FLAVOURS = ("cloud", "datacenter")
DEFAULT_EMAIL, DEFAULT_API_TOKEN = "mia@example.com", "sandbox-api-token"
DEFAULT_PAT = "sandbox-personal-access-token"
DEFAULT_PASSWORDS = {"mia": "sandbox-password"}
SEARCH_CACHE_SIZE = 32


@dataclass(frozen=True)
class FieldRequest:
    """What one call asked for: the route, the `fields` entries as sent, the expansions."""

    route: str
    fields: tuple[str, ...]
    expand: tuple[str, ...]


def cloud_id_for(seed: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://dfx-sandbox.atlassian.net/{seed}"))


class JiraSandbox(SandboxApp):
    """Jira over HTTP for one `JiraSite`.

    `embedded_changelog_limit`: histories an embedded changelog (search, sprint issues) holds at most;
    default 40 on Cloud, unlimited on Data Center. `hidden_projects`: keys the account cannot browse
    (absent from search and listings, 404 for the project, 403 for its boards). `live_nulls`: change
    items carry null sides as live Jira sends them, instead of omitting them as the published schema
    requires. `granted_scopes`: what every OAuth token gets, whatever was asked for.
    """

    name = "jira"

    def __init__(
        self,
        site: JiraSite,
        *,
        flavour: str = "cloud",
        client_id: str = "dfx-jira-client",
        client_secret: str = "dfx-jira-secret",
        redirect_uri: str | None = None,
        granted_scopes: str | None = None,
        access_token_ttl: timedelta = timedelta(hours=1),
        api_tokens: dict[str, str] | None = None,
        personal_access_tokens: tuple[str, ...] = (DEFAULT_PAT,),
        passwords: dict[str, str] | None = None,
        embedded_changelog_limit: int | str | None = "default",
        hidden_projects: tuple[str, ...] = (),
        live_nulls: bool = False,
        require_project_in_jql: bool = False,
    ):
        if flavour not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {flavour!r}")
        self.site = site
        self.flavour = flavour
        self.cloud = flavour == "cloud"
        self.cloud_id = cloud_id_for(site.seed)
        self.oauth = AtlassianOAuth(
            client_id=client_id,
            client_secret=client_secret,
            redirect_uri=redirect_uri,
            clock=lambda: site.now_epoch,
            granted_scopes=granted_scopes,
            access_ttl=access_token_ttl.total_seconds(),
        )
        self.api_tokens = dict(api_tokens if api_tokens is not None else {DEFAULT_EMAIL: DEFAULT_API_TOKEN})
        self.personal_access_tokens = tuple(personal_access_tokens)
        self.passwords = dict(passwords if passwords is not None else DEFAULT_PASSWORDS)
        if embedded_changelog_limit == "default":
            embedded_changelog_limit = 40 if self.cloud else None
        self.embedded_changelog_limit: int | None = embedded_changelog_limit  # type: ignore[assignment]
        self.hidden_project_indexes = frozenset(i for i, p in enumerate(catalog.PROJECTS) if p.key in hidden_projects)
        self.live_nulls = live_nulls
        self.require_project_in_jql = require_project_in_jql
        self.calls: Counter[str] = Counter()
        self.field_requests: list[FieldRequest] = []
        self._lock = threading.Lock()
        self._search_cache: OrderedDict[tuple[str, int, float], list] = OrderedDict()

    # ------------------------------------------------------------ harness protocol

    def unauthorized(self, request: Request) -> Response:
        if request.path.startswith("/ex/jira/"):
            return Response.json(
                {"code": 401, "message": "Unauthorized"},
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="api.atlassian.com"'},
            )
        headers = {"WWW-Authenticate": 'OAuth realm="https%3A%2F%2Fjira"'}
        if not self.cloud:
            headers["X-Seraph-LoginReason"] = "AUTHENTICATED_FAILED"
        return Response.json(
            {
                "errorMessages": ["You are not authenticated. Authentication required to perform this operation."],
                "errors": {},
            },
            status=401,
            headers=headers,
        )

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        seconds = max(1, math.ceil(retry_after))  # the jira library reads Retry-After as an int
        reset = from_epoch(self.site.now_epoch + seconds).strftime("%Y-%m-%dT%H:%M:%SZ")
        headers = {
            "Retry-After": str(seconds), "X-RateLimit-Reset": reset, "RateLimit-Reason": "jira-quota-tenant-based",
            "X-RateLimit-Limit": "350", "X-RateLimit-Remaining": "0", "X-RateLimit-NearLimit": "true",
        }  # fmt: skip
        return Response.json({"errorMessages": ["Rate limit exceeded."], "errors": {}}, status=429, headers=headers)

    def response_headers(self) -> dict[str, str]:
        return {"X-AREQUESTID": uuid.uuid4().hex[:12], "X-Content-Type-Options": "nosniff"}

    # ------------------------------------------------------------ dispatch

    def handle(self, request: Request) -> Response:
        host = f"https://{request.headers.get('host', '127.0.0.1')}"
        path = request.path
        try:
            if self.cloud:
                if path == "/authorize":
                    return (
                        self.oauth.authorize_page(request)
                        if request.method == "GET"
                        else self.oauth.authorize_decision(request)
                    )
                if path == "/oauth/token" and request.method == "POST":
                    return self.oauth.token(request)
                if path == "/oauth/token/accessible-resources":
                    return self._accessible_resources(request, host)
                if path.startswith("/ex/jira/"):
                    cloud_id, _, rest = path[len("/ex/jira/") :].partition("/")
                    grant = self.oauth.access_grant(request.bearer_token())
                    if grant is None:
                        return self.unauthorized(request)
                    if cloud_id != self.cloud_id:
                        return Response.json({"code": 404, "message": "Not Found"}, status=404)
                    return self._api(request, "/" + rest, f"{host}/ex/jira/{cloud_id}", grant.scopes)
            if path.startswith("/rest/"):
                if not self._site_credentials_ok(request) and not path.rstrip("/").endswith("/serverInfo"):
                    return self.unauthorized(request)
                return self._api(request, path, host, None)
            raise ApiError(404, "null for uri: " + path)
        except ApiError as error:
            return error.response()

    def _site_credentials_ok(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                user, _, secret = base64.b64decode(header[6:].strip()).decode("utf-8").partition(":")
            except (ValueError, UnicodeDecodeError):
                return False
            known = self.api_tokens if self.cloud else self.passwords
            return user in known and hmac.compare_digest(known[user].encode(), secret.encode())
        token = request.bearer_token()
        # Cloud sites take OAuth bearer tokens only through api.atlassian.com; Data Center takes PATs.
        return (
            not self.cloud
            and token is not None
            and any(hmac.compare_digest(token.encode(), pat.encode()) for pat in self.personal_access_tokens)
        )

    def _api(self, request: Request, path: str, base_url: str, scopes: frozenset[str] | None) -> Response:
        if not path.startswith("/rest/"):
            raise ApiError(404, "null for uri: " + path)
        tail = path[len("/rest/") :].rstrip("/")
        for candidate in ROUTES:
            if candidate.method != request.method or self.flavour not in candidate.flavours:
                continue
            match = candidate.pattern.match(tail)
            if match is None:
                continue
            params = match.groupdict()
            version = params.pop("v", None) or "2"
            if version == "latest":
                version = "2"
            if version == "3" and not self.cloud:
                break  # Data Center has no v3
            if scopes is not None and not set(candidate.scopes) <= scopes:
                return Response.json({"code": 401, "message": "Unauthorized; scope does not match"}, status=401)
            with self._lock:
                self.calls[candidate.name] += 1
            ctx = RenderContext(self.site, base_url, self.cloud, version, self.live_nulls)
            return candidate.handler(Call(self, request, params, ctx))
        raise ApiError(404, "null for uri: " + path)

    def _accessible_resources(self, request: Request, host: str) -> Response:
        grant = self.oauth.access_grant(request.bearer_token())
        if grant is None:
            return self.unauthorized(request)
        resource: dict[str, Any] = {
            "id": self.cloud_id, "url": host, "name": "dfx-sandbox",
            "scopes": sorted(grant.scopes - {"offline_access"}),
            "avatarUrl": avatar_urls(host, "site", "dfx")["48x48"],
        }  # fmt: skip
        return Response.json([resource])

    # ------------------------------------------------------------ for routes

    def visible(self, record) -> bool:
        return record.project not in self.hidden_project_indexes

    def record_fields(self, call: Call, requested: list[str], expand: frozenset[str]) -> None:
        name = f"{call.request.method} {call.request.path}"
        with self._lock:
            self.field_requests.append(FieldRequest(name, tuple(requested), tuple(sorted(expand))))

    def search_cache_get(self, key: tuple[str, int, float]) -> list | None:
        with self._lock:
            hit = self._search_cache.get(key)
            if hit is not None:
                self._search_cache.move_to_end(key)
            return hit

    def search_cache_put(self, key: tuple[str, int, float], records: list) -> None:
        with self._lock:
            self._search_cache[key] = records
            while len(self._search_cache) > SEARCH_CACHE_SIZE:
                self._search_cache.popitem(last=False)
