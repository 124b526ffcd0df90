"""Service-account keys in memory only: validate an uploaded key, and build google-auth credentials
and a BigQuery client from it without a key file and without GOOGLE_APPLICATION_CREDENTIALS.

dagster-gcp's `BigQueryResource(gcp_credentials=…)` writes the decoded key to a temp file and points
GOOGLE_APPLICATION_CREDENTIALS at it, process-wide. P11 forbids both, so nothing here touches the
file system or the environment: `from_service_account_info` reads the parsed dict.

The TLS wiring is the sandbox's recommended one (`sandbox/running.py`): the transport comes from
`platform.http.build_session`, which trusts the sandbox CA per request on loopback only, and only when
the platform is in sandbox mode. Errors name the problem, never a key field's value.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.endpoints import HostPolicy, check_endpoint
from dfx_pipelines.platform.errors import ConfigError, IdentifierError, UnsafeDestinationError
from dfx_pipelines.platform.http import NO_RETRY, build_session
from dfx_pipelines.platform.redaction import register_secret
from dfx_pipelines.platform.secret_input import has_control_character

if TYPE_CHECKING:
    import requests
    from google.cloud import bigquery

# Least privilege: BigQuery only (not cloud-platform). Read-only is enforced by the customer's IAM
# roles (Data Viewer + Job User) and by the gate's SELECT-only rule.
SCOPES = ("https://www.googleapis.com/auth/bigquery",)
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
REQUIRED_FIELDS = ("type", "project_id", "private_key_id", "private_key", "client_email", "token_uri")
MAX_KEY_BYTES = 64 * 1024
_PEM = re.compile(r"-----BEGIN (?:RSA )?PRIVATE KEY-----\n[A-Za-z0-9+/=\n]+-----END (?:RSA )?PRIVATE KEY-----\n?")
_EMAIL = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}@[a-z][a-z0-9.-]{2,200}\.gserviceaccount\.com$")


GOOGLE_TOKEN_HOSTS = HostPolicy(
    exact=frozenset({"oauth2.googleapis.com"}), description="Google's token endpoint (oauth2.googleapis.com)"
)
# The only custom API endpoint is the local sandbox: no public host is ever admitted.
SANDBOX_ONLY = HostPolicy(
    description="the local sandbox (a custom BigQuery endpoint is allowed only for it, in sandbox mode)"
)


def _has_control_character(value: object) -> bool:
    if isinstance(value, str):
        return has_control_character(value)
    if isinstance(value, dict):
        return any(_has_control_character(k) or _has_control_character(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_control_character(v) for v in value)
    return False


def _host_of(url: object) -> str:
    try:
        return urllib.parse.urlsplit(str(url)).hostname or "?"
    except ValueError:
        return "?"


def check_token_uri(token_uri: str, *, sandbox_allowed: bool) -> str:
    """Signed assertions go to Google's token endpoint only (the local sandbox's, in sandbox mode).
    Parsed and resolved by `platform.endpoints`: `https://127.0.0.1:1@evil.example/token` is evil.example."""
    try:
        checked = check_endpoint(
            token_uri,
            what="service-account key's token_uri",
            policy=GOOGLE_TOKEN_HOSTS,
            sandbox_allowed=sandbox_allowed,
            path=None,
        )
    except UnsafeDestinationError as exc:
        raise UnsafeDestinationError(
            f"service-account key's token_uri points at {_host_of(token_uri)}, not {GOOGLE_TOKEN_URI}: refused ({exc})"
        ) from None
    if not checked.sandbox and checked.path != "/token":
        raise UnsafeDestinationError(
            f"service-account key's token_uri must be {GOOGLE_TOKEN_URI}, got path {checked.path!r}: refused"
        )
    return checked.url


def check_api_endpoint(api_endpoint: str | None, *, sandbox_allowed: bool) -> str | None:
    """None is Google's BigQuery; anything else must be the loopback sandbox, in sandbox mode only."""
    if api_endpoint is None:
        return None
    if not sandbox_allowed:
        raise UnsafeDestinationError("a custom BigQuery endpoint is allowed only for the local sandbox in sandbox mode")
    return check_endpoint(
        api_endpoint, what="BigQuery API endpoint", policy=SANDBOX_ONLY, sandbox_allowed=True, path=None
    ).url


def parse_service_account_key(data: str | bytes, *, sandbox_allowed: bool) -> dict[str, str]:
    """The key as a dict, or a `ConfigError` that says what is wrong (never what the key contains).

    Its text is registered as a secret first, so anything logged while we look at it is masked."""
    if isinstance(data, bytes):
        if len(data) > MAX_KEY_BYTES:
            raise ConfigError(f"key file is {len(data)} bytes; a service-account key is a few KB of JSON")
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError("key file is not UTF-8 text: expected a service-account JSON key") from None
    if len(data) > MAX_KEY_BYTES:
        raise ConfigError("key is too large for a service-account key")
    register_secret(data)
    try:
        info = json.loads(data)
    except ValueError:
        raise ConfigError(
            "key file is not JSON: expected a service-account key (IAM → Service accounts → Keys → JSON)"
        ) from None
    if not isinstance(info, dict):
        raise ConfigError("key file is JSON but not an object: expected a service-account key")
    if info.get("type") != "service_account":
        kind = info.get("type")
        described = f"type {kind!r}" if isinstance(kind, str) and len(kind) < 40 else "no type"
        raise ConfigError(f"key file has {described}: only a service-account key (type 'service_account') is accepted")
    missing = [name for name in REQUIRED_FIELDS if not isinstance(info.get(name), str) or not info[name].strip()]
    if missing:
        raise ConfigError(f"service-account key lacks {', '.join(missing)}")
    register_secret(info["private_key"])
    # Control characters: none in any field (a line break in client_email or token_uri would reach a
    # header or a log line); the PEM's own line breaks are the only ones, and `_PEM` allows nothing else.
    bad = sorted(name for name, value in info.items() if name != "private_key" and _has_control_character(value))
    if bad:
        raise ConfigError(f"service-account key's {', '.join(bad)} contain(s) a control character: refused")
    if not _PEM.fullmatch(info["private_key"]):
        raise ConfigError("service-account key's private_key is not a PEM private key")
    if not re.fullmatch(r"[0-9a-f]{16,64}", info["private_key_id"]):
        raise ConfigError("service-account key's private_key_id is malformed")
    if not _EMAIL.match(info["client_email"]):
        raise ConfigError(
            "service-account key's client_email is not a service-account address (…@….gserviceaccount.com)"
        )
    try:
        identifiers.bigquery_project(info["project_id"])
    except IdentifierError:
        raise ConfigError("service-account key's project_id is not a valid project id") from None
    info["token_uri"] = check_token_uri(info["token_uri"], sandbox_allowed=sandbox_allowed)  # use what was judged
    return {str(k): v for k, v in info.items()}


def build_credentials(info: Mapping[str, Any]) -> Any:
    from google.oauth2 import service_account

    try:
        return service_account.Credentials.from_service_account_info(dict(info), scopes=list(SCOPES))
    except (ValueError, TypeError):
        raise ConfigError("service-account key could not be loaded (malformed private key?)") from None


def build_client(
    info: Mapping[str, Any],
    *,
    project: str,
    location: str | None,
    api_endpoint: str | None,
    sandbox_ca: str | None,
) -> tuple[bigquery.Client, requests.Session]:
    """A BigQuery client on in-memory credentials, and the transport whose requests it counts.

    Retries: none in our transport (google-cloud-bigquery and google-auth retry API calls themselves)."""
    from google.auth.transport.requests import AuthorizedSession, Request
    from google.cloud import bigquery

    credentials = build_credentials(info)
    transport = build_session(sandbox_ca=sandbox_ca, retry=NO_RETRY)
    session = AuthorizedSession(credentials, auth_request=Request(session=transport))
    for prefix, adapter in transport.adapters.items():
        session.mount(prefix, adapter)  # token refreshes and API calls share one counted, verified transport
    client = bigquery.Client(
        project=project,
        location=location,
        credentials=credentials,
        client_options={"api_endpoint": api_endpoint} if api_endpoint else None,
        _http=session,
    )
    return client, session
