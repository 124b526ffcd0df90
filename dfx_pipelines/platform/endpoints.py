"""The one check every URL goes through before a credential (or a secret webhook URL) is sent to it:
parsed, never prefix-matched, then resolved, and every address it resolves to judged.

Why parse: `https://127.0.0.1:1@evil.example` *starts with* the sandbox's origin yet connects to
evil.example; `https://login.salesforce.com.evil.example` *ends with* nothing we trust but contains it.
So a URL is split by `urllib.parse` and then held to a strict grammar — no userinfo, no backslash, no
percent-encoding, control character or non-ASCII character anywhere (an IDNA host is written in its
`xn--` form), no query or fragment, a port in 1–65535 written in ASCII digits, a host that is either a
DNS name of ASCII labels without a trailing dot, a canonical dotted-quad IPv4 address, or a bracketed
IPv6 address. Numeric hosts in any other spelling (`2852039166`, `0251.0376.0251.0376`, `0xa9fea9fe`,
`127.1`) are refused: resolvers read them as IPv4 addresses, and nobody means them as names.

Then the host must fit the caller's `HostPolicy` (exact vendor hosts, vendor subdomains, or any public
host for a customer's own server), and it is resolved (`socket.getaddrinfo`); *every* address must be
acceptable. IPv4 addresses embedded in IPv6 ones (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`,
NAT64 `64:ff9b::/96` and `64:ff9b:1::/48`, 6to4, Teredo) are judged as the IPv4 address they carry:
- link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata addresses: never, whatever
  the connection allows (they answer with the host's cloud credentials);
- the unspecified address (0.0.0.0, ::), multicast and reserved addresses: never;
- loopback: only for the local sandbox, outside production;
- other non-public addresses (private networks, CGNAT, ULA): only with the connection's
  `allow_private_address` (a Data Center server on the customer's network).

What this cannot close: a name may resolve differently a moment later when the HTTP library connects
(DNS rebinding). For vendor hosts TLS verification then fails; for a customer's own server the check is
as strong as the customer's DNS.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import urllib.parse
from dataclasses import dataclass, field

from dfx_pipelines.platform.errors import UnsafeDestinationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Answer with the machine's cloud credentials: AWS IMDS (IPv4 and IPv6), its DNS and NTP resolvers,
# ECS/EKS container credentials, Alibaba Cloud's metadata service. The IPv4 ones are link-local anyway;
# listed so the IPv6 and CGNAT ones, which look like an ordinary private network, are never allowed.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254", "169.254.169.253", "169.254.169.123", "169.254.170.2", "169.254.170.23",
        "fd00:ec2::254", "fd00:ec2::253", "fd00:ec2::123", "fd00:ec2::23",
        "100.100.100.200",
    )
)  # fmt: skip
LOOPBACK_NAMES = frozenset({"localhost"})
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_DOTTED_QUAD = re.compile(
    r"^(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])){3}$"
)
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class HostPolicy:
    """Which hosts a URL may name. `exact` and `suffixes` are vendor hosts (a suffix starts with a dot and
    matches subdomains only); `any_public_host` admits a customer's own server, IP literals included."""

    exact: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    any_public_host: bool = False
    ports: frozenset[int] | None = frozenset({443})  # None: any port
    description: str = ""  # for messages: "a Salesforce domain (.salesforce.com, …)"

    def admits(self, host: str) -> bool:
        return (
            self.any_public_host
            or host in self.exact
            or any(host.endswith(s) and len(host) > len(s) for s in self.suffixes)
        )


ANY_PUBLIC_HOST = HostPolicy(any_public_host=True, ports=None, description="a public host")


@dataclass(frozen=True)
class Endpoint:
    """A URL that passed `check_endpoint`: use `url`/`origin` (rebuilt from the parsed parts), never the
    text that was checked, so what is connected to is what was judged."""

    scheme: str
    host: str  # lower-case; an IPv6 address without brackets
    port: int | None
    path: str  # "" or "/…" without a trailing slash
    addresses: tuple[IPAddress, ...] = field(default=())
    sandbox: bool = False  # accepted as the local sandbox (loopback, outside production)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + (f":{self.port}" if self.port is not None else "")

    @property
    def url(self) -> str:
        return self.origin + self.path


# ------------------------------------------------------------------------------ syntax


def _refuse(what: str, problem: str) -> UnsafeDestinationError:
    return UnsafeDestinationError(f"{what} {problem}")


def parse_url(url: object, *, what: str, schemes: tuple[str, ...] = ("https",)) -> Endpoint:
    """Split `url` strictly (see the module docstring). No resolution; messages never echo userinfo."""
    if not isinstance(url, str) or not url:
        raise _refuse(what, "must use https://, got an empty value")
    if any(ord(c) < 0x21 or ord(c) > 0x7E for c in url):
        raise _refuse(
            what, "contains a space, control or non-ASCII character; write an internationalised host in its xn-- form"
        )
    if "\\" in url:
        raise _refuse(what, "contains a backslash, which browsers and libraries read differently")
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. an unbalanced or invalid bracketed host
        raise _refuse(what, "is not a well-formed URL") from None
    scheme = parts.scheme.lower()
    if not url.lower().startswith(f"{scheme}://") or scheme not in schemes:
        raise _refuse(what, f"must use {' or '.join(s + '://' for s in schemes)}, got {scheme or 'no scheme'}")
    netloc = parts.netloc
    if "@" in netloc:
        raise _refuse(what, "must carry no user name or password (userinfo before '@')")
    if "%" in netloc:
        raise _refuse(what, "has a percent-encoded host")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise _refuse(what, "must carry no query or fragment")
    if netloc.startswith("["):
        literal, _, rest = netloc[1:].partition("]")
        try:
            host = str(ipaddress.IPv6Address(literal))
        except ValueError:
            raise _refuse(what, "has a malformed IPv6 literal") from None
        port_text = rest[1:] if rest.startswith(":") else None
        if rest and port_text is None:
            raise _refuse(what, "has text after its IPv6 literal")
    else:
        host, colon, port_text_ = netloc.rpartition(":") if ":" in netloc else (netloc, "", "")
        port_text = port_text_ if colon else None
        host = host.lower()
        _check_host_name(host, what)
    port = None
    if port_text is not None:
        if not _PORT.fullmatch(port_text) or not 0 < int(port_text) <= 65535:
            raise _refuse(what, f"has an invalid port {port_text!r} (1-65535)")
        port = int(port_text)
    path = parts.path
    if path and not path.startswith("/"):
        raise _refuse(what, "has a malformed path")
    if any(segment in (".", "..") for segment in path.split("/")):
        raise _refuse(what, "has a dot-segment ('..') in its path")
    return Endpoint(scheme, host, port, path.rstrip("/"))


def _check_host_name(host: str, what: str) -> None:
    if not host:
        raise _refuse(what, "has no host")
    if host.endswith("."):
        raise _refuse(what, f"host {host!r} ends with a dot; write it without the trailing dot")
    labels = host.split(".")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):  # WHATWG: a numeric last label makes the host an IPv4 address
        if not _DOTTED_QUAD.fullmatch(host):
            raise _refuse(
                what, f"host {host!r} is an IPv4 address in a non-canonical form (decimal, octal, hex or shortened)"
            )
        return
    if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
        raise _refuse(what, f"host {host!r} is not a valid DNS name")


# ------------------------------------------------------------------------------ addresses


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, NAT64, 6to4, Teredo client), if any."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    value = int(address)
    if value >> 32 == 0 and value > 1:  # IPv4-compatible ::a.b.c.d (deprecated, still routed by some stacks)
        return ipaddress.IPv4Address(value)
    if value >> 32 == 0xFFFF0000:  # IPv4-translated ::ffff:0:a.b.c.d (SIIT)
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if any(address in network for network in _NAT64):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def classify(address: IPAddress) -> str:
    """ "metadata", "link-local", "unspecified", "multicast", "loopback", "private" or "public" — the most
    dangerous of the address itself and the IPv4 address it carries."""
    order = ("metadata", "link-local", "unspecified", "multicast", "loopback", "private", "public")
    candidates = [address] + ([inner] if (inner := embedded_ipv4(address)) is not None else [])
    return min((_classify_one(a) for a in candidates), key=order.index)


def _classify_one(address: IPAddress) -> str:
    if address in METADATA_ADDRESSES:
        return "metadata"
    if address.is_link_local:
        return "link-local"
    if address.is_unspecified:
        return "unspecified"
    if address.is_multicast:
        return "multicast"
    if address.is_loopback:
        return "loopback"
    if address.is_reserved or not address.is_global:
        return "private"
    return "public"


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """Every address `host` resolves to (an IP literal is its own address). The network edge: tests
    replace `socket.getaddrinfo`, nothing else."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    infos = socket.getaddrinfo(host, port or 443, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))


def is_loopback_host(host: str | None) -> bool:
    """`localhost` or a loopback IP literal: where the sandboxes listen. A parsed host, never a prefix."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str | None) -> bool:
    """Whether a URL's parsed host is loopback (for choosing sandbox behaviour, never for trust)."""
    try:
        return is_loopback_host(urllib.parse.urlsplit(url or "").hostname)
    except ValueError:
        return False


# ------------------------------------------------------------------------------ the check


def check_endpoint(
    url: object,
    *,
    what: str,
    policy: HostPolicy,
    sandbox_allowed: bool,
    allow_private_address: bool = False,
    path: str | None = "",
    sandbox_schemes: tuple[str, ...] = ("https",),
) -> Endpoint:
    """Parse `url`, check scheme, host and port against `policy`, resolve the host and judge every
    address. `path`: "" for a bare origin, a string for exactly that path, None for any path.
    `sandbox_allowed` (embedded mode) admits loopback hosts as the local sandbox; production never does.
    Returns the `Endpoint` to use; raises `UnsafeDestinationError` naming the problem."""
    schemes = tuple(dict.fromkeys(("https", *sandbox_schemes)))
    endpoint = parse_url(url, what=what, schemes=schemes)
    sandbox = is_loopback_host(endpoint.host)
    if sandbox and not sandbox_allowed:
        raise _refuse(
            what, f"points at loopback host {endpoint.host}, allowed only for the sandbox (not in production)"
        )
    if endpoint.scheme != "https" and not sandbox:
        raise _refuse(what, f"must use https://, got {endpoint.scheme}://{endpoint.host}")
    if path is not None and endpoint.path != path.rstrip("/"):
        expected = f"path {path!r}" if path else "no path (a bare origin)"
        raise _refuse(what, f"must have {expected}, got path {endpoint.path!r}")
    if not sandbox:
        if not policy.any_public_host and _is_ip_literal(endpoint.host):
            raise _refuse(
                what, f"is a bare IP address ({endpoint.host}), not {policy.description or 'an allowed host'}"
            )
        if not policy.admits(endpoint.host):
            raise _refuse(what, f"host {endpoint.host!r} is not {policy.description or 'an allowed host'}")
        if policy.ports is not None and (endpoint.port or 443) not in policy.ports:
            raise _refuse(
                what,
                f"port {endpoint.port} is not allowed for {endpoint.host} (only {', '.join(map(str, sorted(policy.ports)))})",
            )
    try:
        addresses = resolve(endpoint.host, endpoint.port)
    except (OSError, UnicodeError) as exc:
        raise _refuse(
            what,
            f"host {endpoint.host!r} cannot be resolved to check where it points ({getattr(exc, 'strerror', None) or type(exc).__name__})",
        ) from None
    if not addresses:
        raise _refuse(what, f"host {endpoint.host!r} resolves to no address")
    for address in addresses:
        kind = classify(address)
        if kind in ("metadata", "link-local"):
            raise _refuse(
                what, f"host {endpoint.host!r} resolves to a link-local or cloud metadata address ({address}): refused"
            )
        if kind in ("unspecified", "multicast"):
            raise _refuse(what, f"host {endpoint.host!r} resolves to the {kind} address {address}: refused")
        if kind == "loopback" and not sandbox_allowed:
            raise _refuse(
                what,
                f"host {endpoint.host!r} resolves to loopback ({address}); allowed only for the sandbox (not in production)",
            )
        if kind == "private" and not allow_private_address:
            raise _refuse(
                what,
                f"host {endpoint.host!r} resolves to a non-public address ({address}); "
                "set settings.allow_private_address on this connection to allow a private network",
            )
        if sandbox and kind != "loopback":
            raise _refuse(what, f"host {endpoint.host!r} is named as loopback but resolves to {address}")
    return Endpoint(endpoint.scheme, endpoint.host, endpoint.port, endpoint.path, tuple(addresses), sandbox)


def _is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


_HOST_TEXT = re.compile(r"^[A-Za-z0-9.\-]{1,253}$")


def check_host(
    host: object,
    port: object,
    *,
    what: str,
    sandbox_allowed: bool,
    allow_private_address: bool = False,
) -> Endpoint:
    """A customer's server named by host and port rather than a URL (a database): the same grammar and
    address rules as `check_endpoint` with a public-host policy — a DNS name or an IP literal, no
    userinfo, no path, no second host — every resolved address judged. Connect to `addresses[0]` (libpq's
    `hostaddr`) so what is reached is what was judged, while TLS still verifies the name."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise _refuse(what, f"port must be a number in 1–65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise _refuse(what, f"host must be a DNS name or an IP address, got {host!r}")
    if _is_ip_literal(host) and ":" in host:
        literal = f"[{host}]"
    elif _HOST_TEXT.fullmatch(host):
        literal = host
    else:  # `user@host`, `host/db`, `h1,h2`, `/var/run/postgresql`, `host:5432`, percent-encoding, …
        raise _refuse(
            what, f"host {host!r} must be a single DNS name or IP address (no user, port, path, list or socket)"
        )
    return check_endpoint(
        f"https://{literal}:{port}",
        what=what,
        policy=ANY_PUBLIC_HOST,
        sandbox_allowed=sandbox_allowed,
        allow_private_address=allow_private_address,
    )
