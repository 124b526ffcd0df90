"""Salesforce OAuth 2.0 web-server flow with PKCE: authorize URL, code exchange, refresh, revoke, and
the checks that come before any token is sent anywhere (trusted host, exact scopes, state, verifier).

Salesforce's username/password flow is never used and no password is ever asked for (promise P4).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime

import requests
from pydantic import SecretStr

from dfx_pipelines.platform.endpoints import HostPolicy, check_endpoint
from dfx_pipelines.platform.errors import AuthError
from dfx_pipelines.platform.http import translate_errors
from dfx_pipelines.platform.oauth import PkcePair, challenge_for, code_from_redirect, new_state  # noqa: F401 - re-exported
from dfx_pipelines.platform.secret_input import accept_secret

# The product's minimum scopes (P7): CRM objects need only `api`; `refresh_token` keeps the connection
# alive; `cdp_query_api` is Data Cloud SQL. A token granted anything else is refused.
REQUIRED_SCOPES = frozenset({"api", "refresh_token", "cdp_query_api"})
SALESFORCE_HOST_SUFFIXES = (
    ".salesforce.com",
    ".force.com",
    ".cloudforce.com",
    ".database.com",
    ".salesforce.mil",
    ".salesforce-setup.com",
)
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SALESFORCE_HOSTS = HostPolicy(
    suffixes=SALESFORCE_HOST_SUFFIXES, description=f"a Salesforce domain ({', '.join(SALESFORCE_HOST_SUFFIXES)})"
)


def validate_salesforce_url(url: str, *, sandbox_allowed: bool, what: str = "instance_url") -> str:
    """Refuse any URL we would send a Salesforce token to unless it is https on a Salesforce host, port
    443, a bare origin that resolves to public addresses only (or, in sandbox mode only, https on
    loopback). Parsed and resolved by `platform.endpoints`; returns the origin rebuilt from the parse.
    Checked before every request that carries a token."""
    return check_endpoint(url, what=what, policy=SALESFORCE_HOSTS, sandbox_allowed=sandbox_allowed).origin


@dataclass(frozen=True)
class AuthorizationRequest:
    """One pending authorization: the URL to open, and what must come back with the code."""

    login_url: str
    client_id: str
    redirect_uri: str
    scopes: frozenset[str]
    state: str
    pkce: PkcePair

    @classmethod
    def start(
        cls, login_url: str, client_id: str, redirect_uri: str, scopes: frozenset[str] = REQUIRED_SCOPES
    ) -> AuthorizationRequest:
        return cls(login_url.rstrip("/"), client_id, redirect_uri, frozenset(scopes), new_state(), PkcePair.generate())

    @property
    def url(self) -> str:
        query = urllib.parse.urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(sorted(self.scopes)),
                "state": self.state,
                "code_challenge": self.pkce.challenge,
                "code_challenge_method": "S256",
            }
        )
        return f"{self.login_url}/services/oauth2/authorize?{query}"

    def code_from_redirect(self, redirect: str) -> str:
        return code_from_redirect(redirect, self.state)


@dataclass(frozen=True)
class TokenSet:
    access_token: SecretStr
    refresh_token: SecretStr | None
    instance_url: str
    scopes: frozenset[str]
    issued_at: datetime
    identity_url: str | None = None


def check_scopes(granted: frozenset[str], required: frozenset[str] = REQUIRED_SCOPES) -> None:
    """The granted scopes must equal the configured ones: wider is more access than promised, narrower
    breaks the connection later."""
    if granted != required:
        extra, missing = sorted(granted - required), sorted(required - granted)
        detail = "; ".join(
            part for part in (f"unexpected {extra}" if extra else "", f"missing {missing}" if missing else "") if part
        )
        raise AuthError(f"Salesforce granted scopes {sorted(granted)}, expected exactly {sorted(required)}: {detail}")


def _token_call(session: requests.Session, login_url: str, form: dict[str, str], what: str) -> dict:
    with translate_errors(f"Salesforce {what}"):
        response = session.post(
            f"{login_url.rstrip('/')}/services/oauth2/token", data=form, headers={"Accept": "application/json"}
        )
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    if not response.ok:
        error = (
            payload.get("error", f"HTTP {response.status_code}")
            if isinstance(payload, dict)
            else f"HTTP {response.status_code}"
        )
        description = payload.get("error_description", "") if isinstance(payload, dict) else ""
        raise AuthError(f"Salesforce {what} failed: {error}" + (f" ({description})" if description else ""))
    if not isinstance(payload, dict) or not payload.get("access_token"):
        raise AuthError(f"Salesforce {what} returned no access token")
    for key in ("access_token", "refresh_token"):
        if payload.get(key) is not None:  # registered, then judged: a token with a line break is refused
            accept_secret(payload[key], f"the {key} in Salesforce's {what} response", ascii_only=True)
    return payload


def _token_set(payload: dict, *, refresh_token: str | None) -> TokenSet:
    instance_url = (payload.get("instance_url") or "").rstrip("/")
    issued_ms = int(payload.get("issued_at") or 0)
    return TokenSet(
        access_token=SecretStr(payload["access_token"]),
        refresh_token=SecretStr(refresh_token) if refresh_token else None,
        instance_url=instance_url,
        scopes=frozenset((payload.get("scope") or "").split()),
        issued_at=datetime.fromtimestamp(issued_ms / 1000, UTC) if issued_ms else datetime.now(UTC),
        identity_url=payload.get("id"),
    )


def exchange_code(
    session: requests.Session,
    request: AuthorizationRequest,
    code: str,
    *,
    client_secret: str | None,
    sandbox_allowed: bool,
) -> TokenSet:
    validate_salesforce_url(request.login_url, sandbox_allowed=sandbox_allowed, what="login URL")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": request.client_id,
        "redirect_uri": request.redirect_uri,
        "code_verifier": request.pkce.verifier,
    }
    if client_secret:
        form["client_secret"] = client_secret
    payload = _token_call(session, request.login_url, form, "code exchange")
    return _token_set(payload, refresh_token=payload.get("refresh_token"))


def check_grant(tokens: TokenSet, request: AuthorizationRequest, *, sandbox_allowed: bool) -> None:
    """Before a new grant is kept or used: exact scopes, a refresh token, and a trusted instance host.
    The caller revokes the grant when this fails (it was issued; we will not keep it)."""
    check_scopes(tokens.scopes, request.scopes)
    if tokens.refresh_token is None:
        raise AuthError("Salesforce returned no refresh token: the connected app must allow the refresh_token scope")
    validate_salesforce_url(tokens.instance_url, sandbox_allowed=sandbox_allowed)


def refresh_access_token(
    session: requests.Session,
    login_url: str,
    client_id: str,
    refresh_token: str,
    *,
    client_secret: str | None,
    sandbox_allowed: bool,
) -> TokenSet:
    validate_salesforce_url(login_url, sandbox_allowed=sandbox_allowed, what="login URL")
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    if client_secret:
        form["client_secret"] = client_secret
    payload = _token_call(session, login_url, form, "token refresh")
    tokens = _token_set(payload, refresh_token=None)
    validate_salesforce_url(tokens.instance_url, sandbox_allowed=sandbox_allowed)
    return tokens


def revoke_token(session: requests.Session, login_url: str, token: str, *, sandbox_allowed: bool) -> bool:
    """Revoke at Salesforce; revoking the refresh token also kills every access token issued from it."""
    validate_salesforce_url(login_url, sandbox_allowed=sandbox_allowed, what="login URL")
    with translate_errors("Salesforce revoke"):
        response = session.post(f"{login_url.rstrip('/')}/services/oauth2/revoke", data={"token": token})
    if response.status_code == 200:
        return True
    raise AuthError(f"Salesforce revoke failed: HTTP {response.status_code}")
