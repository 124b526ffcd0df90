"""Where a Jira credential may be sent, and which OAuth scopes a connection may hold: the checks that run
before any token leaves the process.

- Cloud OAuth 2.0 (3LO): tokens only to `https://auth.atlassian.com` (token endpoint) and
  `https://api.atlassian.com` (accessible-resources and the `/ex/jira/{cloudId}` gateway).
- Cloud API tokens (basic auth): only to `https://<site>.atlassian.net`.
- Data Center: https only; a host that resolves to a private or otherwise non-public address only with
  the connection's `settings.allow_private_address`; link-local and cloud metadata addresses
  (169.254.169.254 in any spelling, fd00:ec2::254, ...) never, and loopback only for the sandbox.
Every URL goes through `platform.endpoints.check_endpoint` (parsed, never prefix-matched; resolved).
- Sandbox (embedded mode only): every Atlassian host above is played by one loopback HTTPS server, so a
  loopback https origin is accepted in their place when `sandbox_allowed`; in production it never is.

Scopes: a grant must lie inside `ALLOWED_SCOPES` (read-only) and hold `REQUIRED_SCOPES`; anything with
write/manage/delete (or any scope we do not know) is refused and the token is not kept.
"""

from __future__ import annotations

import re
import urllib.parse

from dfx_pipelines.platform.endpoints import ANY_PUBLIC_HOST, HostPolicy, check_endpoint
from dfx_pipelines.platform.errors import AuthError, UnsafeDestinationError

ATLASSIAN_AUTH_ORIGIN = "https://auth.atlassian.com"
ATLASSIAN_API_ORIGIN = "https://api.atlassian.com"
CLOUD_SITE_SUFFIX = ".atlassian.net"
CLOUD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The minimum the connector asks for. The promise lists `read:jira-work read:jira-user offline_access`;
# Jira Software's agile endpoints (boards, board configuration, sprints) and Service Management SLAs
# are not covered by those classic scopes, so their read-only granular scopes are added.
REQUIRED_SCOPES = frozenset(
    {
        "read:jira-work",
        "read:jira-user",
        "offline_access",
        "read:board-scope:jira-software",
        "read:board-scope.admin:jira-software",  # GET board/{id}/configuration needs it; it is read-only
        "read:project:jira",
        "read:sprint:jira-software",
        "read:servicedesk-request",
    }
)
# What a grant may hold at most: the above plus a few read-only granular scopes a site admin may add.
ALLOWED_SCOPES = REQUIRED_SCOPES | frozenset(
    {
        "read:epic:jira-software",
        "read:issue:jira-software",
        "read:issue-details:jira",
        "read:jql:jira",
    }
)
_WRITE_MARKERS = ("write:", "manage:", "delete:", "admin:")


def check_scopes(granted: frozenset[str] | set[str], *, required: frozenset[str] = REQUIRED_SCOPES) -> frozenset[str]:
    """Refuse a grant with any scope outside the read-only allowlist, or missing one we need."""
    granted = frozenset(granted)
    writes = sorted(s for s in granted if s.startswith(_WRITE_MARKERS))
    if writes:
        raise AuthError(
            f"Jira granted write/manage scopes {writes}: this product reads only; the grant is refused and not kept"
        )
    unknown = sorted(granted - ALLOWED_SCOPES)
    if unknown:
        raise AuthError(
            f"Jira granted scopes outside the read-only allowlist: {unknown}; the grant is refused and not kept"
        )
    missing = sorted(required - granted)
    if missing:
        raise AuthError(f"Jira did not grant the scopes the connector needs: missing {missing}")
    return granted


def _vendor(host: str) -> HostPolicy:
    return HostPolicy(exact=frozenset({host}), description=host)


CLOUD_SITES = HostPolicy(suffixes=(CLOUD_SITE_SUFFIX,), description=f"a Jira Cloud site (https://*{CLOUD_SITE_SUFFIX})")


def check_atlassian_origin(url: str, expected: str, *, sandbox_allowed: bool, what: str) -> str:
    """`url` must be exactly the Atlassian origin `expected` (or the sandbox's loopback origin)."""
    host = urllib.parse.urlsplit(expected).hostname or ""
    try:
        return check_endpoint(url, what=what, policy=_vendor(host), sandbox_allowed=sandbox_allowed).origin
    except UnsafeDestinationError as exc:
        if "is not" in str(exc):  # keep the sentence people act on
            raise UnsafeDestinationError(f"{exc}: OAuth tokens go only there") from None
        raise


def check_gateway_base(url: str, *, sandbox_allowed: bool) -> str:
    """The Cloud API base for OAuth tokens: `https://api.atlassian.com/ex/jira/{cloudId}`."""
    host = urllib.parse.urlsplit(ATLASSIAN_API_ORIGIN).hostname or ""
    checked = check_endpoint(
        url, what="Jira API base", policy=_vendor(host), sandbox_allowed=sandbox_allowed, path=None
    )
    match = re.fullmatch(r"/ex/jira/([^/]+)", checked.path)
    if not match or not CLOUD_ID.match(match.group(1)):
        raise UnsafeDestinationError(
            f"Jira API base must be {ATLASSIAN_API_ORIGIN}/ex/jira/<cloud id>, got path {checked.path!r}"
        )
    return f"{checked.origin}/ex/jira/{match.group(1)}"


def check_cloud_site(url: str, *, sandbox_allowed: bool) -> str:
    """Where a Cloud API token (basic auth) may go: `https://<site>.atlassian.net` only."""
    return check_endpoint(url, what="Jira Cloud site URL", policy=CLOUD_SITES, sandbox_allowed=sandbox_allowed).origin


def check_datacenter_url(url: str, *, allow_private_address: bool, sandbox_allowed: bool) -> str:
    """A Data Center base URL (a context path like `/jira` is allowed). Every address the host resolves
    to is checked (`platform.endpoints`): one private address is enough to need the allowance; a
    link-local or metadata address is refused whatever the allowance, and loopback outside the sandbox."""
    return check_endpoint(
        url,
        what="Jira Data Center URL",
        policy=ANY_PUBLIC_HOST,
        sandbox_allowed=sandbox_allowed,
        allow_private_address=allow_private_address,
        path=None,
    ).url
