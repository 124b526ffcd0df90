"""`JiraResource`: the Dagster resource that hands out a `JiraClient` for one registered connection.

The connection's `endpoint` says how to reach it (all non-secret):
- Cloud OAuth: `{"flavour": "cloud", "auth": "oauth", "auth_url", "api_origin", "cloud_id", "api_base", "site_url"}`
- Cloud API token: `{"flavour": "cloud", "auth": "basic", "api_base": "https://<site>.atlassian.net"}`
- Data Center: `{"flavour": "datacenter", "auth": "pat" | "basic", "api_base": "https://jira.example.com"}`
Every URL is checked (`auth`) before a credential is read from the vault. OAuth access tokens are
refreshed on 401; the rotated refresh token is written to the vault before the new access token is used,
so a crash in between leaves a refresh token that still works.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import requests

from dfx_pipelines.connectors.jira import auth, oauth
from dfx_pipelines.connectors.jira.client import JiraClient, StaticCredentials
from dfx_pipelines.platform.endpoints import is_loopback_url
from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.http import RetryPolicy, build_session
from dfx_pipelines.platform.registry import Connection, ConnectionSettings
from dfx_pipelines.platform.secret_input import accept_secret
from dfx_pipelines.platform.services import Platform

log = logging.getLogger(__name__)

SANDBOX_CLIENT_ID = "dfx-jira-client"
# The sandbox OAuth app's own secret (see sandbox/app.py): used only in sandbox mode, for a loopback
# auth server, when no JIRA_CLIENT_SECRET is configured. It opens nothing real.
SANDBOX_CLIENT_SECRET = "dfx-jira-secret"
# Every Jira call the connector makes reads (search/jql, bulkfetch and worklog/list are POSTs that only
# read), so dropped connections and 5xx may be retried for every method. Token calls use `oauth.TOKEN_RETRY`.
API_RETRY = RetryPolicy(max_attempts=6, backoff_base=0.2, retry_all_methods=True)


def checked_base(endpoint: dict[str, Any], settings: ConnectionSettings, *, sandbox_allowed: bool) -> str:
    """The API base URL a credential of this endpoint may be sent to, or UnsafeDestinationError."""
    flavour, mode = endpoint.get("flavour"), endpoint.get("auth")
    base = str(endpoint.get("api_base") or "")
    if flavour == "cloud" and mode == "oauth":
        auth.check_atlassian_origin(
            str(endpoint.get("auth_url") or ""),
            auth.ATLASSIAN_AUTH_ORIGIN,
            sandbox_allowed=sandbox_allowed,
            what="Atlassian auth URL",
        )
        return auth.check_gateway_base(base, sandbox_allowed=sandbox_allowed)
    if flavour == "cloud" and mode == "basic":
        return auth.check_cloud_site(base, sandbox_allowed=sandbox_allowed)
    if flavour == "datacenter" and mode in ("pat", "basic"):
        return auth.check_datacenter_url(
            base, allow_private_address=settings.allow_private_address, sandbox_allowed=sandbox_allowed
        )
    raise ConfigError(f"unknown Jira endpoint kind {flavour!r}/{mode!r}")


def basic_header(user: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode("ascii")


class VaultOAuthCredentials:
    """Access token from the vault; on 401, refresh with the stored refresh token and store both."""

    def __init__(
        self,
        platform: Platform,
        connection: Connection,
        token_session: requests.Session,
        *,
        client_id: str,
        client_secret: str,
        sandbox_allowed: bool,
    ):
        self.platform, self.connection, self.token_session = platform, connection, token_session
        self.client_id, self.client_secret, self.sandbox_allowed = client_id, client_secret, sandbox_allowed
        self._access: str | None = None
        self.refreshes = 0

    def header(self) -> str:
        if self._access is None:
            self._access = self.platform.vault.get(self.connection.secret_ref("oauth_access_token")).get_secret_value()
        return f"Bearer {self._access}"

    def refresh(self) -> bool:
        refs = self.connection.secret_ref("oauth_refresh_token"), self.connection.secret_ref("oauth_access_token")
        # Presenting a rotated-away refresh token revokes the whole grant, so two steps of one run must
        # never refresh at once: serialise per connection, and use a token another step already got.
        with _refresh_lock(self.platform, self.connection):
            stored_access = self.platform.vault.get(refs[1]).get_secret_value()
            if self._access is not None and stored_access != self._access:
                self._access = stored_access
                return True
            current = self.platform.vault.get(refs[0]).get_secret_value()
            tokens = oauth.refresh(
                self.token_session,
                self.connection.endpoint["auth_url"],
                self.client_id,
                self.client_secret,
                current,
                sandbox_allowed=self.sandbox_allowed,
            )
            assert tokens.refresh_token is not None
            # The old refresh token died the moment Atlassian answered: keep the new one before anything else.
            self.platform.vault.put(refs[0], tokens.refresh_token.get_secret_value())
            self.platform.vault.put(refs[1], tokens.access_token.get_secret_value())
        self._access = tokens.access_token.get_secret_value()
        self.refreshes += 1
        return True


@contextlib.contextmanager
def _refresh_lock(platform: Platform, connection: Connection) -> Iterator[None]:
    """A per-connection lock across this host's processes (Dagster's multiprocess executor). Runs of one
    connection are already serialised by the `dfx/connection` tag limit in dagster.yaml."""
    folder = platform.settings.home / "locks"
    folder.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(folder / f"jira-{connection.id}.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


_thread_lock = threading.Lock()


class JiraResource(dg.ConfigurableResource):
    """Jira for the connections in the registry. The OAuth client id is not secret; the client secret
    comes only from an environment variable (`EnvVar("JIRA_CLIENT_SECRET")`), never a literal."""

    client_id: str = SANDBOX_CLIENT_ID
    client_secret: str | None = None
    sandbox_ca_path: str | None = None  # defaults to the embedded default's sandbox CA, sandbox mode only
    # Retry knobs for API calls (429, 5xx, dropped connections); the defaults are `API_RETRY`'s.
    retry_max_attempts: int = API_RETRY.max_attempts
    retry_backoff_seconds: float = API_RETRY.backoff_base

    def sandbox_ca(self, platform: Platform) -> str | None:
        if not platform.settings.sandbox_allowed:
            return None  # production never trusts the sandbox CA, whatever is configured
        candidate = (
            Path(self.sandbox_ca_path) if self.sandbox_ca_path else platform.settings.sandbox_dir / "sandbox-ca.pem"
        )
        return str(candidate) if candidate.exists() else None

    def session(self, platform: Platform) -> requests.Session:
        policy = dataclasses.replace(
            API_RETRY, max_attempts=self.retry_max_attempts, backoff_base=self.retry_backoff_seconds
        )
        return build_session(sandbox_ca=self.sandbox_ca(platform), retry=policy)

    def token_session(self, platform: Platform) -> requests.Session:
        return oauth.token_session(self.sandbox_ca(platform))

    def resolved_client_id(self) -> str:
        return resolved(self.client_id) or SANDBOX_CLIENT_ID

    def resolved_client_secret(self) -> str | None:
        """The secret itself, also when this resource was built outside a run (a CLI command), where the
        field still holds the `EnvVar` whose text is the variable's name."""
        return resolved(self.client_secret)

    def oauth_client_secret(self, platform: Platform, connection: Connection) -> str:
        secret = self.resolved_client_secret()
        if secret:
            return accept_secret(secret, "the Jira client secret (JIRA_CLIENT_SECRET)")
        if platform.settings.sandbox_allowed and is_loopback_url(str(connection.endpoint.get("auth_url") or "")):
            return SANDBOX_CLIENT_SECRET
        raise ConfigError("Jira OAuth needs the app's client secret: set JIRA_CLIENT_SECRET")

    def client(self, platform: Platform, connection: Connection) -> JiraClient:
        sandbox_allowed = platform.settings.sandbox_allowed
        endpoint = connection.endpoint
        base = checked_base(endpoint, connection.settings, sandbox_allowed=sandbox_allowed)  # before any secret is read
        if endpoint["auth"] == "oauth":
            token_session = self.token_session(platform)
            credentials: Any = VaultOAuthCredentials(
                platform,
                connection,
                token_session,
                client_id=self.resolved_client_id(),
                client_secret=self.oauth_client_secret(platform, connection),
                sandbox_allowed=sandbox_allowed,
            )
            return JiraClient(self.session(platform), base, "cloud", credentials, extra_sessions=(token_session,))
        if endpoint["auth"] == "pat":
            token = platform.vault.get(connection.secret_ref("api_token")).get_secret_value()
            return JiraClient(self.session(platform), base, endpoint["flavour"], StaticCredentials(f"Bearer {token}"))
        user, _, secret = platform.vault.get(connection.secret_ref("basic_auth")).get_secret_value().partition(":")
        return JiraClient(
            self.session(platform), base, endpoint["flavour"], StaticCredentials(basic_header(user, secret))
        )
