"""Where a Jira credential may be sent, and which OAuth scopes a connection may hold: the checks that run
before any token leaves the process.

- Cloud OAuth 2.0 (3LO): tokens only to `https://auth.atlassian.com` (token endpoint) and
  `https://api.atlassian.com` (accessible-resources and the `/ex/jira/{cloudId}` gateway).
- Cloud API tokens (basic auth): only to `https://<site>.atlassian.net`.
- Data Center: https only; a host that resolves to a private, loopback, link-local or otherwise
  non-public address only with the connection's `settings.allow_private_address`; cloud metadata
  addresses (169.254.169.254, fd00:ec2::254, ...) never.
- Sandbox (embedded mode only): every Atlassian host above is played by one loopback HTTPS server, so a
  loopback https origin is accepted in their place when `sandbox_allowed`; in production it never is.

Scopes: a grant must lie inside `ALLOWED_SCOPES` (read-only) and hold `REQUIRED_SCOPES`; anything with
write/manage/delete (or any scope we do not know) is refused and the token is not kept.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse

from dfx_pipelines.platform.errors import AuthError, UnsafeDestinationError

ATLASSIAN_AUTH_ORIGIN = "https://auth.atlassian.com"
ATLASSIAN_API_ORIGIN = "https://api.atlassian.com"
CLOUD_SITE_SUFFIX = ".atlassian.net"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
CLOUD_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# The minimum the connector asks for. The promise lists `read:jira-work read:jira-user offline_access`;
# Jira Software's agile endpoints (boards, board configuration, sprints) and Service Management SLAs
# are not covered by those classic scopes, so their read-only granular scopes are added.
REQUIRED_SCOPES = frozenset({
    "read:jira-work",
    "read:jira-user",
    "offline_access",
    "read:board-scope:jira-software",
    "read:board-scope.admin:jira-software",  # GET board/{id}/configuration needs it; it is read-only
    "read:project:jira",
    "read:sprint:jira-software",
    "read:servicedesk-request",
})
# What a grant may hold at most: the above plus a few read-only granular scopes a site admin may add.
ALLOWED_SCOPES = REQUIRED_SCOPES | frozenset({
    "read:epic:jira-software",
    "read:issue:jira-software",
    "read:issue-details:jira",
    "read:jql:jira",
})
_WRITE_MARKERS = ("write:", "manage:", "delete:", "admin:")

# Addresses that answer with cloud credentials: never a Jira, whatever the allowance says.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "169.254.170.2", "fd00:ec2::254", "100.100.100.200")
)


def check_scopes(granted: frozenset[str] | set[str], *, required: frozenset[str] = REQUIRED_SCOPES) -> frozenset[str]:
    """Refuse a grant with any scope outside the read-only allowlist, or missing one we need."""
    granted = frozenset(granted)
    writes = sorted(s for s in granted if s.startswith(_WRITE_MARKERS))
    if writes:
        raise AuthError(f"Jira granted write/manage scopes {writes}: this product reads only; the grant is refused and not kept")
    unknown = sorted(granted - ALLOWED_SCOPES)
    if unknown:
        raise AuthError(f"Jira granted scopes outside the read-only allowlist: {unknown}; the grant is refused and not kept")
    missing = sorted(required - granted)
    if missing:
        raise AuthError(f"Jira did not grant the scopes the connector needs: missing {missing}")
    return granted


def _origin(url: str, what: str) -> tuple[urllib.parse.SplitResult, str]:
    parsed = urllib.parse.urlsplit(url or "")
    host = (parsed.hostname or "").lower()
    if parsed.scheme != "https":
        raise UnsafeDestinationError(f"{what} must use https, got {parsed.scheme or 'no scheme'}://{host}")
    if not host:
        raise UnsafeDestinationError(f"{what} has no host: {url!r}")
    if parsed.username or parsed.password or parsed.query or parsed.fragment:
        raise UnsafeDestinationError(f"{what} must carry no credentials, query or fragment (host {host})")
    return parsed, host


def _loopback_ok(host: str, sandbox_allowed: bool, what: str) -> bool:
    if host in LOOPBACK_HOSTS:
        if sandbox_allowed:
            return True
        raise UnsafeDestinationError(f"{what} points at loopback host {host}, allowed only for the sandbox (not in production)")
    return False


def check_atlassian_origin(url: str, expected: str, *, sandbox_allowed: bool, what: str) -> str:
    """`url` must be exactly the Atlassian origin `expected` (or the sandbox's loopback origin)."""
    parsed, host = _origin(url, what)
    if parsed.path not in ("", "/"):
        raise UnsafeDestinationError(f"{what} must be a bare origin, got path {parsed.path!r}")
    if _loopback_ok(host, sandbox_allowed, what):
        return url.rstrip("/")
    if f"https://{parsed.netloc.lower()}" != expected:
        raise UnsafeDestinationError(f"{what} host {host!r} is not {urllib.parse.urlsplit(expected).hostname}: OAuth tokens go only there")
    return expected


def check_gateway_base(url: str, *, sandbox_allowed: bool) -> str:
    """The Cloud API base for OAuth tokens: `https://api.atlassian.com/ex/jira/{cloudId}`."""
    parsed, _ = _origin(url, "Jira API base")
    origin = check_atlassian_origin(f"{parsed.scheme}://{parsed.netloc}", ATLASSIAN_API_ORIGIN, sandbox_allowed=sandbox_allowed, what="Jira API base")
    match = re.fullmatch(r"/ex/jira/([^/]+)/?", parsed.path)
    if not match or not CLOUD_ID.match(match.group(1)):
        raise UnsafeDestinationError(f"Jira API base must be {ATLASSIAN_API_ORIGIN}/ex/jira/<cloud id>, got path {parsed.path!r}")
    return f"{origin}/ex/jira/{match.group(1)}"


def check_cloud_site(url: str, *, sandbox_allowed: bool) -> str:
    """Where a Cloud API token (basic auth) may go: `https://<site>.atlassian.net` only."""
    parsed, host = _origin(url, "Jira Cloud site URL")
    if parsed.path not in ("", "/"):
        raise UnsafeDestinationError(f"Jira Cloud site URL must be a bare origin, got path {parsed.path!r}")
    if _loopback_ok(host, sandbox_allowed, "Jira Cloud site URL"):
        return url.rstrip("/")
    if not host.endswith(CLOUD_SITE_SUFFIX) or host == CLOUD_SITE_SUFFIX[1:] or parsed.port not in (None, 443):
        raise UnsafeDestinationError(f"Jira Cloud API tokens go only to https://*{CLOUD_SITE_SUFFIX}, not {host!r}")
    return f"https://{host}"


def _resolve(host: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)
    except OSError as exc:
        raise UnsafeDestinationError(f"cannot resolve Jira host {host!r} to check where it points: {exc.strerror or exc}") from None
    return [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]


def _non_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return (
        address.is_private or address.is_loopback or address.is_link_local or address.is_reserved
        or address.is_multicast or address.is_unspecified or not address.is_global
    )


def check_datacenter_url(url: str, *, allow_private_address: bool, sandbox_allowed: bool) -> str:
    """A Data Center base URL (a context path like `/jira` is allowed). Every address the host resolves
    to is checked: one private address is enough to need the allowance; a metadata address is refused."""
    parsed, host = _origin(url, "Jira Data Center URL")
    if host in LOOPBACK_HOSTS and sandbox_allowed:
        return url.rstrip("/")
    for address in _resolve(host):
        if address in METADATA_ADDRESSES or (isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped in METADATA_ADDRESSES):
            raise UnsafeDestinationError(f"Jira Data Center host {host!r} resolves to a cloud metadata address ({address}): refused")
        if address.is_loopback and not sandbox_allowed and not allow_private_address:
            raise UnsafeDestinationError(f"Jira Data Center host {host!r} resolves to loopback ({address}); allowed only for the sandbox")
        if _non_public(address) and not allow_private_address:
            raise UnsafeDestinationError(
                f"Jira Data Center host {host!r} resolves to a non-public address ({address}); "
                "set settings.allow_private_address on this connection to allow a private network"
            )
    return url.rstrip("/")
