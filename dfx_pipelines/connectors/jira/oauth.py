"""Atlassian OAuth 2.0 (3LO) for Jira Cloud: authorize URL with state and PKCE, code exchange, refresh with
rotating refresh tokens, and accessible-resources → cloud id. Every call checks its host first (`auth`).

Atlassian rotates refresh tokens: each refresh returns a new one and retires the old; presenting a
retired one fails with `invalid_grant` and revokes the whole grant — unless it is presented again within
Atlassian's 10-minute reuse leeway (see `sandbox/oauth.py` for the source). That leeway is what makes a
retry safe when the connection drops after Atlassian rotated but before its answer arrived: the same
refresh token is sent again (seconds later, well inside the leeway) and a fresh pair comes back. So token
calls retry dropped connections, timeouts and 5xx with backoff, and the caller stores the new refresh
token before it uses the new access token (`resource.VaultOAuthCredentials.refresh`).
Atlassian has no revoke endpoint for 3LO apps: "invalidate" means destroying our copy (the vault key).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests
from pydantic import SecretStr

from dfx_pipelines.connectors.jira import auth
from dfx_pipelines.platform.errors import AuthError
from dfx_pipelines.platform.http import RetryPolicy, build_session, translate_errors
from dfx_pipelines.platform.oauth import PkcePair, challenge_for, code_from_redirect, new_state
from dfx_pipelines.platform.secret_input import accept_secret

AUDIENCE = "api.atlassian.com"
# Every failure a retry can cure, for every method: 429/503 (the server did not act) and, thanks to the
# reuse leeway, dropped connections and other 5xx (it may have rotated; the old token still works for 10 min).
# The waits stay short (at most ~7 s in all), far inside the leeway.
TOKEN_RETRY = RetryPolicy(max_attempts=5, backoff_base=0.5, max_backoff=5.0, retry_all_methods=True)


def token_session(sandbox_ca: str | None) -> requests.Session:
    return build_session(sandbox_ca=sandbox_ca, retry=TOKEN_RETRY)


@dataclass(frozen=True)
class AuthorizationRequest:
    """One pending authorization: the URL to open, and what must come back with the code."""

    auth_url: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    state: str
    verifier: str

    @classmethod
    def start(
        cls, auth_url: str, client_id: str, redirect_uri: str, scopes: frozenset[str] = auth.REQUIRED_SCOPES
    ) -> AuthorizationRequest:
        return cls(
            auth_url.rstrip("/"), client_id, redirect_uri, frozenset(scopes), new_state(), PkcePair.generate().verifier
        )

    @property
    def url(self) -> str:
        query = urllib.parse.urlencode(
            {
                "audience": AUDIENCE,
                "client_id": self.client_id,
                "scope": " ".join(sorted(self.scopes)),
                "redirect_uri": self.redirect_uri,
                "state": self.state,
                "response_type": "code",
                "prompt": "consent",
                "code_challenge": challenge_for(self.verifier),
                "code_challenge_method": "S256",
            }
        )
        return f"{self.auth_url}/authorize?{query}"

    def code_from_redirect(self, redirect: str) -> str:
        return code_from_redirect(redirect, self.state)


@dataclass(frozen=True)
class TokenSet:
    access_token: SecretStr
    refresh_token: SecretStr | None
    scopes: frozenset[str]
    expires_in: int | None


def _token_call(
    session: requests.Session, auth_url: str, body: dict[str, str], what: str, *, sandbox_allowed: bool
) -> TokenSet:
    origin = auth.check_atlassian_origin(
        auth_url, auth.ATLASSIAN_AUTH_ORIGIN, sandbox_allowed=sandbox_allowed, what="Atlassian auth URL"
    )
    with translate_errors(f"Atlassian {what}"):
        response = session.post(f"{origin}/oauth/token", json=body, headers={"Accept": "application/json"})
    try:
        payload: Any = response.json()
    except ValueError:
        payload = {}
    payload = payload if isinstance(payload, dict) else {}
    if not response.ok:
        error = payload.get("error", f"HTTP {response.status_code}")
        if error == "invalid_grant" and body.get("grant_type") == "refresh_token":
            raise AuthError(
                "Atlassian refused the stored refresh token (invalid_grant): it was rotated away by another refresh "
                "or the grant was revoked. The connection must be authorized again (dfx connect jira --reauthorize)."
            )
        description = payload.get("error_description", "")
        raise AuthError(f"Atlassian {what} failed: {error}" + (f" ({description})" if description else ""))
    for key in ("access_token", "refresh_token"):
        if payload.get(key) is not None:  # registered, then judged: a token with a line break is refused
            accept_secret(payload[key], f"the {key} in Atlassian's {what} response", ascii_only=True)
    if not payload.get("access_token"):
        raise AuthError(f"Atlassian {what} returned no access token")
    return TokenSet(
        access_token=SecretStr(payload["access_token"]),
        refresh_token=SecretStr(payload["refresh_token"]) if payload.get("refresh_token") else None,
        scopes=frozenset(str(payload.get("scope") or "").split()),
        expires_in=payload.get("expires_in"),
    )


def exchange_code(
    session: requests.Session, request: AuthorizationRequest, code: str, *, client_secret: str, sandbox_allowed: bool
) -> TokenSet:
    body = {
        "grant_type": "authorization_code",
        "client_id": request.client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.verifier,
    }
    return _token_call(session, request.auth_url, body, "code exchange", sandbox_allowed=sandbox_allowed)


def refresh(
    session: requests.Session,
    auth_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    *,
    sandbox_allowed: bool,
) -> TokenSet:
    body = {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }
    tokens = _token_call(session, auth_url, body, "token refresh", sandbox_allowed=sandbox_allowed)
    if tokens.refresh_token is None:
        raise AuthError("Atlassian token refresh returned no new refresh token (offline_access missing?)")
    auth.check_scopes(tokens.scopes)  # a refresh must not come back wider than the grant we accepted
    return tokens


def accessible_resources(
    session: requests.Session, api_origin: str, access_token: str, *, sandbox_allowed: bool
) -> list[dict[str, Any]]:
    origin = auth.check_atlassian_origin(
        api_origin, auth.ATLASSIAN_API_ORIGIN, sandbox_allowed=sandbox_allowed, what="Atlassian API URL"
    )
    with translate_errors("Atlassian accessible-resources"):
        response = session.get(
            f"{origin}/oauth/token/accessible-resources",
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
        )
    if not response.ok:
        raise AuthError(f"Atlassian accessible-resources failed: HTTP {response.status_code}")
    resources = response.json()
    return resources if isinstance(resources, list) else []


def pick_cloud_id(resources: list[dict[str, Any]], site_url: str | None) -> tuple[str, str]:
    """(cloud id, site URL) of the one site the grant covers, or of `site_url` when it covers several.
    The resource's own scopes are checked too: they are what the gateway will honour."""
    candidates = [r for r in resources if site_url is None or str(r.get("url", "")).rstrip("/") == site_url.rstrip("/")]
    if len(candidates) != 1:
        sites = sorted(str(r.get("url")) for r in resources)
        raise AuthError(
            f"the grant covers {len(resources)} Jira site(s) {sites}; name the one to connect (site_url)"
            if candidates
            else f"the grant does not cover {site_url}; it covers {sites}"
        )
    chosen = candidates[0]
    auth.check_scopes(frozenset(chosen.get("scopes") or ()), required=auth.REQUIRED_SCOPES - {"offline_access"})
    cloud_id = str(chosen.get("id") or "")
    if not auth.CLOUD_ID.match(cloud_id):
        raise AuthError(f"accessible-resources returned a malformed cloud id {cloud_id!r}")
    return cloud_id, str(chosen.get("url") or "")
