"""Salesforce's OAuth 2.0 web-server flow with PKCE (S256 only): authorize + consent, token, refresh, revoke.

Consent is programmatic: `GET /services/oauth2/authorize` answers an HTML consent page whose form posts
the same parameters plus `approve=1` (or `deny=1`) back to `/services/oauth2/authorize`; the POST
redirects (302) to `redirect_uri?code=...&state=...`. `auto_approve=1` on the GET skips the page. The
scope a token carries is the connected app's policy (`granted_scopes`), whatever was requested, so tests
can hand the connector a token with too few or too many scopes. Client authentication on the token
endpoint: an app made with a `client_secret` is confidential and needs it exactly on every token call;
one without takes PKCE alone and refuses any secret presented (`invalid_client` either way).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import re
import secrets
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dfx_pipelines.platform.sandbox import Request, Response

KNOWN_SCOPES = frozenset({"api", "refresh_token", "offline_access", "cdp_query_api", "full", "id", "openid", "web"})
CODE_TTL = timedelta(minutes=15)
_PKCE_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_PKCE_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")


def pkce_challenge(verifier: str) -> str:
    """base64url(SHA-256(verifier)) without padding, as RFC 7636 S256 defines it."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    challenge: str
    issued_at: datetime
    used: bool = False
    issued_tokens: list[str] = field(default_factory=list)  # revoked if the code is replayed


@dataclass
class RefreshGrant:
    token: str
    scope: str
    revoked: bool = False


@dataclass
class AccessGrant:
    token: str
    scope: str
    expires_at: datetime
    refresh_token: str | None
    revoked: bool = False

    @property
    def scopes(self) -> frozenset[str]:
        return frozenset(self.scope.split())


def _token_error(error: str, description: str, status: int = 400) -> Response:
    return Response.json({"error": error, "error_description": description}, status=status)


class OAuthServer:
    """The state behind /services/oauth2/*: codes, refresh tokens and access tokens, all in memory."""

    def __init__(
        self,
        *,
        client_id: str,
        client_secret: str | None,
        redirect_uri: str | None,
        access_token_ttl: timedelta,
        granted_scopes: str,
        clock: Callable[[], datetime],
        org_id: str,
        user_id: str,
        instance_url: Callable[[Request], str],
    ):
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.access_token_ttl = access_token_ttl
        self.granted_scopes = granted_scopes
        self.clock = clock
        self.org_id = org_id
        self.user_id = user_id
        self.instance_url = instance_url
        self._lock = threading.Lock()
        self._codes: dict[str, AuthorizationCode] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._access: dict[str, AccessGrant] = {}

    # ------------------------------------------------------------ authorize

    def _authorize_checks(self, params: dict[str, str]) -> Response | None:
        """None when the request may proceed; else the error Salesforce shows (page) or redirects with."""
        client_id = params.get("client_id", "")
        redirect_uri = params.get("redirect_uri", "")
        # RFC 6749 4.1.2.1: never redirect to an unverified client or redirect URI; show the error instead.
        if client_id != self.client_id:
            return Response(400, b"error=invalid_client_id: client identifier invalid", {"Content-Type": "text/html"})
        if not redirect_uri or (self.redirect_uri is not None and redirect_uri != self.redirect_uri):
            return Response(
                400,
                b"error=redirect_uri_mismatch: redirect_uri must match configuration",
                {"Content-Type": "text/html"},
            )
        state = params.get("state")
        if params.get("response_type") != "code":
            return self._error_redirect(redirect_uri, "unsupported_response_type", "response type not supported", state)
        challenge = params.get("code_challenge", "")
        if not challenge:
            return self._error_redirect(redirect_uri, "invalid_request", "missing required code challenge", state)
        if params.get("code_challenge_method", "plain") != "S256":
            return self._error_redirect(redirect_uri, "invalid_request", "code_challenge_method must be S256", state)
        if not _PKCE_CHALLENGE.match(challenge):
            return self._error_redirect(redirect_uri, "invalid_request", "invalid code challenge", state)
        requested = set(params.get("scope", "").split())
        if requested - KNOWN_SCOPES:
            return self._error_redirect(redirect_uri, "invalid_scope", "the requested scope is not allowed", state)
        return None

    @staticmethod
    def _error_redirect(redirect_uri: str, error: str, description: str, state: str | None) -> Response:
        query = {"error": error, "error_description": description}
        if state is not None:
            query["state"] = state
        return Response.redirect(_append_query(redirect_uri, query))

    def authorize_page(self, request: Request) -> Response:
        params = {key: values[0] for key, values in request.query.items()}
        problem = self._authorize_checks(params)
        if problem is not None:
            return problem
        if params.get("auto_approve") == "1":
            return self._approve(params)
        hidden = "".join(
            f'<input type="hidden" name="{html.escape(key)}" value="{html.escape(value)}">'
            for key, value in params.items()
        )
        page = (
            "<!DOCTYPE html><html><head><title>Allow Access?</title></head><body>"
            f"<h1>Allow Access?</h1><p>dfx sandbox app is requesting: {html.escape(self.granted_scopes)}</p>"
            f'<form method="POST" action="/services/oauth2/authorize">{hidden}'
            '<button name="approve" value="1">Allow</button><button name="deny" value="1">Deny</button>'
            "</form></body></html>"
        )
        return Response(200, page.encode("utf-8"), {"Content-Type": "text/html;charset=UTF-8"})

    def authorize_decision(self, request: Request) -> Response:
        params = request.form()
        problem = self._authorize_checks(params)
        if problem is not None:
            return problem
        if params.get("approve") == "1":
            return self._approve(params)
        return self._error_redirect(
            params["redirect_uri"], "access_denied", "end-user denied authorization", params.get("state")
        )

    def _approve(self, params: dict[str, str]) -> Response:
        code = "aPrx" + secrets.token_urlsafe(48)
        with self._lock:
            self._codes[code] = AuthorizationCode(
                code, params["client_id"], params["redirect_uri"], params["code_challenge"], self.clock()
            )
        query = {"code": code}
        if "state" in params:
            query["state"] = params["state"]
        return Response.redirect(_append_query(params["redirect_uri"], query))

    # ------------------------------------------------------------ token

    def token(self, request: Request) -> Response:
        form = request.form()
        if form.get("client_id") != self.client_id:
            return _token_error("invalid_client_id", "client identifier invalid")
        if not self._client_authenticated(form.get("client_secret") or None):
            return _token_error("invalid_client", "invalid client credentials")
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._exchange_code(request, form)
        if grant_type == "refresh_token":
            return self._refresh_access(request, form)
        return _token_error("unsupported_grant_type", "grant type not supported")

    def _client_authenticated(self, presented: str | None) -> bool:
        """A confidential app (one with a consumer secret, "Require Secret for Web Server Flow" on)
        needs its secret on every token call, exactly. An app without one takes PKCE alone, but a secret
        presented anyway is a wrong one (the caller's configuration is broken, e.g. it sends a variable's
        name): Salesforce checks any secret it is given and answers `invalid_client`, and so does this."""
        if self.client_secret is None:
            return presented is None
        return presented is not None and hmac.compare_digest(presented.encode(), self.client_secret.encode())

    def _exchange_code(self, request: Request, form: dict[str, str]) -> Response:
        with self._lock:
            entry = self._codes.get(form.get("code", ""))
            if entry is None:
                return _token_error("invalid_grant", "invalid authorization code")
            if entry.used:
                # A replayed code: refuse it and revoke whatever it already produced (RFC 6749 4.1.2).
                for token in entry.issued_tokens:
                    self._revoke_locked(token)
                return _token_error("invalid_grant", "invalid authorization code")
            entry.used = True  # single use, even when this attempt fails below
            if self.clock() - entry.issued_at > CODE_TTL:
                return _token_error("invalid_grant", "expired authorization code")
            if form.get("redirect_uri") != entry.redirect_uri:
                return _token_error("invalid_grant", "redirect_uri must match the one used to request the code")
            verifier = form.get("code_verifier", "")
            if not verifier:
                return _token_error("invalid_grant", "code verifier required")
            if not _PKCE_VERIFIER.match(verifier) or not hmac.compare_digest(pkce_challenge(verifier), entry.challenge):
                return _token_error("invalid_grant", "invalid code verifier")
            payload = self._issue_locked(request, with_refresh=True)
            entry.issued_tokens.extend(t for t in (payload.get("access_token"), payload.get("refresh_token")) if t)
        return Response.json(payload)

    def _refresh_access(self, request: Request, form: dict[str, str]) -> Response:
        with self._lock:
            grant = self._refresh.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                return _token_error("invalid_grant", "expired access/refresh token")
            payload = self._issue_locked(request, with_refresh=False, refresh_token=grant.token, scope=grant.scope)
        return Response.json(payload)

    def issue_tokens(self, request: Request | None = None) -> dict[str, Any]:
        """Mint a token pair without the browser dance (for tests that are not about OAuth)."""
        with self._lock:
            return self._issue_locked(request, with_refresh=True)

    def _issue_locked(
        self, request: Request | None, *, with_refresh: bool, refresh_token: str | None = None, scope: str | None = None
    ) -> dict[str, Any]:
        scope = scope if scope is not None else self.granted_scopes
        now = self.clock()
        instance_url = self.instance_url(request) if request is not None else self.instance_url(None)  # type: ignore[arg-type]
        payload: dict[str, Any] = {}
        if with_refresh and "refresh_token" in scope.split():
            refresh_token = "5Aep861" + secrets.token_urlsafe(60)
            self._refresh[refresh_token] = RefreshGrant(refresh_token, scope)
            payload["refresh_token"] = refresh_token
        access_token = f"{self.org_id}!" + secrets.token_urlsafe(72)
        self._access[access_token] = AccessGrant(access_token, scope, now + self.access_token_ttl, refresh_token)
        issued_at = str(int(now.timestamp() * 1000))
        identity = f"{instance_url}/id/{self.org_id}/{self.user_id}"
        key = (self.client_secret or self.client_id).encode()
        signature = base64.b64encode(hmac.new(key, (identity + issued_at).encode(), hashlib.sha256).digest()).decode()
        payload.update(
            access_token=access_token,
            signature=signature,
            scope=scope,
            instance_url=instance_url,
            id=identity,
            token_type="Bearer",
            issued_at=issued_at,
        )
        return payload

    # ------------------------------------------------------------ revoke and checks

    def revoke(self, request: Request) -> Response:
        token = request.form().get("token") or request.arg("token") or ""
        with self._lock:
            if not self._revoke_locked(token):
                return _token_error("invalid_token", "invalid token")
        return Response(200, b"", {"Content-Type": "text/html"})

    def _revoke_locked(self, token: str) -> bool:
        if token in self._refresh:
            self._refresh[token].revoked = True
            for grant in self._access.values():
                if grant.refresh_token == token:
                    grant.revoked = True
            return True
        if token in self._access:
            self._access[token].revoked = True
            return True
        return False

    def access_grant(self, token: str | None) -> AccessGrant | None:
        """The live grant behind a bearer token; None if unknown, revoked or expired."""
        if not token:
            return None
        with self._lock:
            grant = self._access.get(token)
            if grant is None or grant.revoked or self.clock() >= grant.expires_at:
                return None
            return grant

    def expire_all_access_tokens(self) -> None:
        """Make every access token expire now (refresh tokens stay valid), for refresh tests."""
        with self._lock:
            now = self.clock()
            for grant in self._access.values():
                grant.expires_at = min(grant.expires_at, now)


def _append_query(url: str, params: dict[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(params)
    return urllib.parse.urlunsplit(parts._replace(query=query))
