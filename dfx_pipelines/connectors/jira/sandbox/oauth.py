"""Atlassian OAuth 2.0 (3LO) as the sandbox plays it: authorize + consent (with state and PKCE S256),
token exchange, rotating refresh tokens with reuse detection, and access-token checks for the API.

Consent is programmatic: `GET /authorize?...` answers an HTML page whose form posts the same parameters
plus `approve=1` (or `deny=1`) to `POST /authorize`, which redirects (302) to `redirect_uri?code&state`.
`auto_approve=1` on the GET skips the page. A refresh token is returned only when `offline_access` was
requested, as Atlassian does. Each refresh returns a new refresh token and retires the old one; presenting
a retired one answers `invalid_grant` and revokes the whole family (every refresh and access token that
descends from the same consent) — except within Atlassian's reuse leeway: "Reuse of old tokens outside
the leeway interval invalidates all refresh tokens ... The leeway interval is 10 minutes" (Atlassian
developer community, "Deprecating persistent refresh tokens", 2022; Atlassian runs Auth0's refresh-token
rotation). Within the leeway the token just rotated away is exchanged again for a fresh pair, so a client
whose refresh response was lost on the way can retry. Atlassian answers token errors with 403
(invalid_grant) / 401 (client).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field

from dfx_pipelines.platform.sandbox import Request, Response

AUDIENCE = "api.atlassian.com"
CODE_TTL = 600.0  # seconds
ACCESS_TTL = 3600.0
REFRESH_INACTIVITY_TTL = 90 * 86400.0
REUSE_LEEWAY = 600.0  # seconds: Atlassian's leeway for presenting the refresh token just rotated away
KNOWN_SCOPES = frozenset({
    "offline_access", "read:jira-work", "read:jira-user", "write:jira-work", "manage:jira-project",
    "manage:jira-configuration", "manage:jira-webhook", "read:servicedesk-request", "read:board-scope:jira-software",
    "read:board-scope.admin:jira-software", "read:sprint:jira-software", "read:epic:jira-software",
    "read:issue:jira-software", "read:project:jira", "read:issue-details:jira", "read:jql:jira",
    "write:board-scope:jira-software", "write:sprint:jira-software", "write:issue:jira-software",
})  # fmt: skip
_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


def pkce_challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)) without padding (RFC 7636 S256)."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    scope: str
    issued_at: float
    family: str | None = None  # set once exchanged; a replay revokes it


@dataclass
class _Family:
    scope: str
    revoked: bool = False
    refresh_tokens: dict[str, float] = field(default_factory=dict)  # token -> last used (epoch)
    current_refresh: str | None = None
    previous_refresh: str | None = None  # rotated away at `rotated_at`: still good within REUSE_LEEWAY
    rotated_at: float = 0.0
    access_tokens: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class AccessGrant:
    token: str
    scopes: frozenset[str]
    expires_at: float
    family: str


def _token_error(error: str, description: str, status: int = 403) -> Response:
    return Response.json({"error": error, "error_description": description}, status=status)


def _append_query(url: str, params: dict[str, str]) -> str:
    return url + ("&" if "?" in url else "?") + urllib.parse.urlencode(params)


class AtlassianOAuth:
    """In-memory state behind /authorize and /oauth/token. `granted_scopes` (when set) replaces what the
    client asked for, so tests can hand a connector tokens with more (write) or fewer scopes."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str,
        redirect_uri: str | None,
        clock: Callable[[], float],
        granted_scopes: str | None = None,
        access_ttl: float = ACCESS_TTL,
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.clock = clock
        self.granted_scopes = granted_scopes
        self.access_ttl = access_ttl
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._families: dict[str, _Family] = {}
        self._refresh_owner: dict[str, str] = {}  # refresh token -> family
        self._access: dict[str, AccessGrant] = {}

    # ------------------------------------------------------------ authorize

    def _check_authorize(self, params: dict[str, str]) -> Response | None:
        if params.get("client_id") != self.client_id:
            return Response(
                400, b"<h1>Something went wrong</h1><p>Invalid client_id.</p>", {"Content-Type": "text/html"}
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or (self.redirect_uri is not None and redirect_uri != self.redirect_uri):
            return Response(
                400,
                b"<h1>Something went wrong</h1><p>redirect_uri is not registered.</p>",
                {"Content-Type": "text/html"},
            )
        state = params.get("state")

        def fail(error: str, description: str) -> Response:
            query = {"error": error, "error_description": description}
            if state is not None:
                query["state"] = state
            return Response.redirect(_append_query(redirect_uri, query))

        if params.get("audience") != AUDIENCE:
            return fail("invalid_request", f"audience must be {AUDIENCE}")
        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        if not state:
            return fail("invalid_request", "state is required")
        if params.get("code_challenge_method") != "S256" or not _PKCE_CHALLENGE.match(params.get("code_challenge", "")):
            return fail("invalid_request", "a code_challenge with code_challenge_method=S256 is required")
        requested = set(params.get("scope", "").split())
        if not requested or requested - KNOWN_SCOPES:
            return fail(
                "invalid_scope", f"unknown scopes: {' '.join(sorted(requested - KNOWN_SCOPES)) or '(none requested)'}"
            )
        return None

    def authorize_page(self, request: Request) -> Response:
        params = {key: values[0] for key, values in request.query.items()}
        problem = self._check_authorize(params)
        if problem is not None:
            return problem
        if params.get("auto_approve") == "1":
            return self._approve(params)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in params.items()
        )
        page = (
            "<!DOCTYPE html><html><head><title>Authorize app</title></head><body>"
            f"<h1>dfx sandbox app is requesting access</h1><p>Scopes: {html.escape(params.get('scope', ''))}</p>"
            f'<form method="POST" action="/authorize">{hidden}'
            '<button name="approve" value="1">Accept</button><button name="deny" value="1">Cancel</button></form></body></html>'
        )
        return Response(200, page.encode("utf-8"), {"Content-Type": "text/html;charset=UTF-8"})

    def authorize_decision(self, request: Request) -> Response:
        params = request.form()
        problem = self._check_authorize(params)
        if problem is not None:
            return problem
        if params.get("approve") == "1":
            return self._approve(params)
        return Response.redirect(
            _append_query(
                params["redirect_uri"],
                {"error": "access_denied", "error_description": "user denied access", "state": params["state"]},
            )
        )

    def _approve(self, params: dict[str, str]) -> Response:
        code = secrets.token_urlsafe(32)
        scope = self.granted_scopes if self.granted_scopes is not None else params["scope"]
        with self._lock:
            self._codes[code] = _Code(
                params["client_id"], params["redirect_uri"], params["code_challenge"], scope, self.clock()
            )
        return Response.redirect(_append_query(params["redirect_uri"], {"code": code, "state": params["state"]}))

    # ------------------------------------------------------------ token

    def token(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        try:
            body = request.json() if "json" in content_type else request.form()
        except (ValueError, UnicodeDecodeError):
            return _token_error("invalid_request", "the body is neither JSON nor a form", 400)
        if not isinstance(body, dict):
            return _token_error("invalid_request", "the body must be an object", 400)
        body = {key: str(value) for key, value in body.items()}
        if body.get("client_id") != self.client_id or not hmac.compare_digest(
            body.get("client_secret", "").encode(), self.client_secret.encode()
        ):
            return _token_error("access_denied", "Unauthorized", 401)
        grant_type = body.get("grant_type")
        with self._lock:
            if grant_type == "authorization_code":
                return self._exchange(body)
            if grant_type == "refresh_token":
                return self._refresh(body)
        return _token_error("unsupported_grant_type", "grant_type must be authorization_code or refresh_token", 400)

    def _exchange(self, body: dict[str, str]) -> Response:
        entry = self._codes.get(body.get("code", ""))
        if entry is None or self.clock() - entry.issued_at > CODE_TTL:
            return _token_error("invalid_grant", "Invalid authorization code")
        if entry.family is not None:
            # A replayed code: refuse it and revoke what its first exchange produced (RFC 6749 §4.1.2).
            self._revoke_family(entry.family)
            return _token_error("invalid_grant", "Invalid authorization code")
        if body.get("redirect_uri") != entry.redirect_uri:
            return _token_error("invalid_grant", "redirect_uri does not match the authorization request")
        verifier = body.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(pkce_challenge(verifier), entry.challenge):
            return _token_error("invalid_grant", "code_verifier does not match the code_challenge")
        family_id = secrets.token_hex(8)
        entry.family = family_id
        self._families[family_id] = _Family(entry.scope)
        return self._issue(family_id)

    def _refresh(self, body: dict[str, str]) -> Response:
        token = body.get("refresh_token", "")
        family_id = self._refresh_owner.get(token)
        family = self._families.get(family_id) if family_id else None
        if family_id is None or family is None or family.revoked:
            return _token_error("invalid_grant", "Unknown or invalid refresh token.")
        reused_within_leeway = token == family.previous_refresh and self.clock() - family.rotated_at <= REUSE_LEEWAY
        if token != family.current_refresh and not reused_within_leeway:
            self._revoke_family(family_id)  # reuse of a rotated token past the leeway: assume it leaked
            return _token_error("invalid_grant", "Unknown or invalid refresh token.")
        if self.clock() - family.refresh_tokens[token] > REFRESH_INACTIVITY_TTL:
            return _token_error("invalid_grant", "Unknown or invalid refresh token.")
        return self._issue(family_id)

    def _issue(self, family_id: str) -> Response:
        family = self._families[family_id]
        access = secrets.token_urlsafe(48)
        scopes = frozenset(family.scope.split())
        self._access[access] = AccessGrant(access, scopes, self.clock() + self.access_ttl, family_id)
        family.access_tokens.add(access)
        payload = {
            "access_token": access,
            "expires_in": int(self.access_ttl),
            "token_type": "Bearer",
            "scope": family.scope,
        }
        if "offline_access" in scopes:
            refresh = secrets.token_urlsafe(48)
            family.refresh_tokens[refresh] = self.clock()
            if family.current_refresh is not None:
                family.previous_refresh, family.rotated_at = family.current_refresh, self.clock()
            family.current_refresh = refresh
            self._refresh_owner[refresh] = family_id
            payload["refresh_token"] = refresh
        return Response(
            200, json.dumps(payload).encode(), {"Content-Type": "application/json", "Cache-Control": "no-store"}
        )

    def _revoke_family(self, family_id: str) -> None:
        family = self._families[family_id]
        family.revoked = True
        for access in family.access_tokens:
            self._access.pop(access, None)
        family.current_refresh = None

    # ------------------------------------------------------------ API side

    def access_grant(self, token: str | None) -> AccessGrant | None:
        """The live grant for a bearer token, or None when unknown, revoked or expired."""
        if not token:
            return None
        with self._lock:
            grant = self._access.get(token)
        if grant is None or self.clock() >= grant.expires_at:
            return None
        return grant

    def family_revoked(self, refresh_token: str) -> bool:
        family_id = self._refresh_owner.get(refresh_token)
        return bool(family_id and self._families[family_id].revoked)
