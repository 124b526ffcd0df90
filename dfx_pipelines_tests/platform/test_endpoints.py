"""Every URL a credential goes to is parsed, checked and resolved by one function
(`platform.endpoints.check_endpoint`): a table of hostile URLs against it, the same table against each
connector's checker (so none of them prefix-matches any more), and the address rules (metadata in
every spelling, link-local, loopback and 0.0.0.0 outside the sandbox, private networks only by
allowance). DNS is replaced at the network edge (`socket.getaddrinfo`) by a small fake zone."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from dfx_pipelines.connectors.bigquery.credentials import check_api_endpoint, check_token_uri
from dfx_pipelines.connectors.jira import auth
from dfx_pipelines.connectors.salesforce.oauth import validate_salesforce_url
from dfx_pipelines.lifecycle.notifications import check_webhook_url
from dfx_pipelines.platform.endpoints import ANY_PUBLIC_HOST, check_endpoint, classify, embedded_ipv4
from dfx_pipelines.platform.errors import ConfigError, UnsafeDestinationError

PUBLIC = "93.184.215.14"
ZONE = {
    "public.example": [PUBLIC],
    "private.example": ["10.1.2.3"],
    "mixed.example": [PUBLIC, "10.0.0.5"],
    "metadata.example": ["169.254.169.254"],
    "aws-dns.example": ["169.254.169.253"],
    "imds6.example": ["fd00:ec2::254"],
    "nat64.example": ["64:ff9b::a9fe:a9fe"],
    "mapped.example": ["::ffff:169.254.169.254"],
    "compat.example": ["::169.254.169.254"],
    "loop.example": ["127.0.0.1"],
    "zero.example": ["0.0.0.0"],
    "cgnat-metadata.example": ["100.100.100.200"],
    "rebind.example": ["::ffff:127.0.0.1"],
}
VENDOR_HOSTS = (
    "login.salesforce.com", "acme.my.salesforce.com", "acme--uat.sandbox.my.salesforce.com", "acme.lightning.force.com",
    "auth.atlassian.com", "api.atlassian.com", "acme.atlassian.net", "oauth2.googleapis.com", "hooks.slack.com",
)  # fmt: skip


@pytest.fixture(autouse=True)
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The network edge: names in ZONE (and the vendors' hosts, as public) resolve as listed; `localhost`
    is real; anything else does not resolve. Returns the names looked up."""
    real = socket.getaddrinfo
    looked_up: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        looked_up.append(host)
        if host == "localhost":
            return real(host, port, *args, **kwargs)
        addresses = ZONE.get(host) or ([PUBLIC] if host in VENDOR_HOSTS else None)
        if addresses is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port) if ":" not in a else (a, port, 0, 0),
            )
            for a in addresses
        ]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


# Refused by every checker, in sandbox mode (the most permissive) and in production.
HOSTILE = [
    # userinfo: the text starts like a trusted origin, the connection goes elsewhere
    "https://127.0.0.1:1@evil.example",
    "https://127.0.0.1:1@public.example",
    "https://user:pass@public.example",
    "https://login.salesforce.com@public.example",
    "https://public.example%2F@127.0.0.1",
    # backslashes, '@' after a path/query/fragment delimiter
    "https://public.example\\@127.0.0.1",
    "https://127.0.0.1\\@public.example",
    "https://public.example#@127.0.0.1",
    "https://public.example?@127.0.0.1",
    "https://127.0.0.1/@public.example?x",
    # percent-encoded and non-ASCII hosts (IDNA, fullwidth digits), whitespace and controls
    "https://%31%32%37.0.0.1/",
    "https://b\u00fccher.example/",
    "https://\uff11\uff12\uff17.0.0.1/",
    "https://public.example\n.evil.example/",
    "https://public.example /",
    "https://public.example\t/",
    "https://public.example\x00/",
    # IPv4 in non-canonical spellings (2852039166 = 169.254.169.254)
    "https://2852039166/",
    "https://0251.0376.0251.0376/",
    "https://0xa9fea9fe/",
    "https://0xa9.0xfe.0xa9.0xfe/",
    "https://169.254.43518/",
    "https://127.1/",
    "https://0177.0.0.1/",
    "https://010.0.0.1/",
    # metadata, link-local and unspecified addresses in every IPv4 and IPv6 spelling
    "https://169.254.169.254/",
    "https://169.254.169.253/",
    "https://[::ffff:169.254.169.254]/",
    "https://[::ffff:a9fe:a9fe]/",
    "https://[::169.254.169.254]/",
    "https://[64:ff9b::a9fe:a9fe]/",
    "https://[64:ff9b::169.254.169.253]/",
    "https://[64:ff9b:1::a9fe:a9fe]/",
    "https://[2002:a9fe:a9fe::1]/",
    "https://[::ffff:0:a9fe:a9fe]/",
    "https://[fd00:ec2::254]/",
    "https://[fe80::1]/",
    "https://[fe80::1%25eth0]/",
    "https://0.0.0.0/",
    "https://[::]/",
    "https://224.0.0.1/",
    "https://100.100.100.200/",
    # names that resolve there
    "https://metadata.example/",
    "https://aws-dns.example/",
    "https://imds6.example/",
    "https://nat64.example/",
    "https://mapped.example/",
    "https://compat.example/",
    "https://zero.example/",
    "https://cgnat-metadata.example/",
    "https://does-not-resolve.example/",
    # trailing dots, malformed names and ports
    "https://public.example./",
    "https://public..example/",
    "https://-public.example/",
    "https://public.example:0/",
    "https://public.example:65536/",
    "https://public.example:99999/",
    "https://public.example:-1/",
    "https://public.example:1\u00b2/",
    "https://public.example:abc/",
    "https://[::1/",
    "https://[not-ipv6]/",
    # schemes and shapes
    "http://public.example/",
    "HTTP://public.example/",
    "ftp://public.example/",
    "javascript:alert(1)//public.example",
    "//public.example/",
    "public.example",
    "https:/public.example/",
    "https:public.example",
    "https:///public.example",
    "",
]


@pytest.mark.parametrize("url", HOSTILE)
@pytest.mark.parametrize("sandbox_allowed", [True, False], ids=["sandbox", "production"])
def test_hostile_urls_are_refused_by_the_one_check(url: str, sandbox_allowed: bool) -> None:
    with pytest.raises(UnsafeDestinationError):
        check_endpoint(url, what="test URL", policy=ANY_PUBLIC_HOST, sandbox_allowed=sandbox_allowed, path=None)


CHECKERS = {
    "salesforce instance/login URL": lambda url, sandbox: validate_salesforce_url(url, sandbox_allowed=sandbox),
    "atlassian auth origin": lambda url, sandbox: auth.check_atlassian_origin(
        url, auth.ATLASSIAN_AUTH_ORIGIN, sandbox_allowed=sandbox, what="auth"
    ),
    "atlassian API gateway": lambda url, sandbox: auth.check_gateway_base(
        url.rstrip("/") + "/ex/jira/c9e5fda1-f8a5-5b25-af2a-cf53be1f99d7", sandbox_allowed=sandbox
    ),
    "jira cloud site": lambda url, sandbox: auth.check_cloud_site(url, sandbox_allowed=sandbox),
    "jira data center": lambda url, sandbox: auth.check_datacenter_url(
        url, allow_private_address=False, sandbox_allowed=sandbox
    ),
    "jira data center, private allowed": lambda url, sandbox: auth.check_datacenter_url(
        url, allow_private_address=True, sandbox_allowed=sandbox
    ),
    "google token_uri": lambda url, sandbox: check_token_uri(url.rstrip("/") + "/token", sandbox_allowed=sandbox),
    "bigquery api endpoint": lambda url, sandbox: check_api_endpoint(url, sandbox_allowed=sandbox),
    "slack webhook": lambda url, sandbox: check_webhook_url(
        url.rstrip("/") + "/services/T0/B0/x", sandbox_allowed=sandbox
    ),
}


@pytest.mark.parametrize("checker", sorted(CHECKERS))
@pytest.mark.parametrize("sandbox_allowed", [True, False], ids=["sandbox", "production"])
def test_every_connector_check_refuses_the_hostile_table(checker: str, sandbox_allowed: bool) -> None:
    accepted = []
    for url in HOSTILE:
        try:
            CHECKERS[checker](url, sandbox_allowed)
        except (UnsafeDestinationError, ConfigError):
            continue
        accepted.append(url)
    assert accepted == []


def test_the_issues_example_no_longer_passes_the_bigquery_endpoint_check() -> None:
    """`https://127.0.0.1:1@evil.example` began with the sandbox's origin and connected to evil.example."""
    with pytest.raises(UnsafeDestinationError, match="user name or password"):
        check_api_endpoint("https://127.0.0.1:1@evil.example", sandbox_allowed=True)
    with pytest.raises(UnsafeDestinationError):
        check_token_uri("https://127.0.0.1:1@evil.example/token", sandbox_allowed=True)


def test_accepted_urls_come_back_rebuilt_from_the_parse(fake_dns: list[str]) -> None:
    checked = check_endpoint(
        "HTTPS://Public.Example:8443/jira/", what="DC", policy=ANY_PUBLIC_HOST, sandbox_allowed=False, path=None
    )
    assert checked.url == "https://public.example:8443/jira" and checked.addresses == (ipaddress.ip_address(PUBLIC),)
    assert "public.example" in fake_dns  # resolved before anything is sent
    assert (
        validate_salesforce_url("https://acme.my.salesforce.com/", sandbox_allowed=False)
        == "https://acme.my.salesforce.com"
    )
    assert (
        auth.check_datacenter_url(
            "https://[2606:4700::1111]:8443/jira", allow_private_address=False, sandbox_allowed=False
        )
        == "https://[2606:4700::1111]:8443/jira"
    )
    assert (
        check_token_uri("https://oauth2.googleapis.com/token", sandbox_allowed=False)
        == "https://oauth2.googleapis.com/token"
    )
    assert (
        check_webhook_url("https://hooks.slack.com/services/T0/B0/abc", sandbox_allowed=False)
        == "https://hooks.slack.com/services/T0/B0/abc"
    )


def test_the_sandbox_is_loopback_and_only_outside_production() -> None:
    for url in ("https://127.0.0.1:8443", "https://localhost:8443", "https://[::1]:8443"):
        assert validate_salesforce_url(url, sandbox_allowed=True).endswith(":8443")
        assert check_api_endpoint(url, sandbox_allowed=True) == url
        with pytest.raises(UnsafeDestinationError, match="loopback"):
            validate_salesforce_url(url, sandbox_allowed=False)
        with pytest.raises(UnsafeDestinationError, match="sandbox"):
            check_api_endpoint(url, sandbox_allowed=False)
    with pytest.raises(UnsafeDestinationError, match="https"):
        validate_salesforce_url(
            "http://127.0.0.1:8443", sandbox_allowed=True
        )  # plain http only where a caller opts in (a test webhook)
    assert (
        check_webhook_url("http://127.0.0.1:9/services/T/B/x", sandbox_allowed=True)
        == "http://127.0.0.1:9/services/T/B/x"
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://metadata.example", "https://169.254.169.254", "https://169.254.169.253", "https://[fd00:ec2::254]",
        "https://[::ffff:169.254.169.254]", "https://[64:ff9b::a9fe:a9fe]", "https://100.100.100.200", "https://cgnat-metadata.example",
        "https://[fe80::1]", "https://0.0.0.0", "https://zero.example",
    ],
)  # fmt: skip
@pytest.mark.parametrize("sandbox_allowed", [True, False], ids=["sandbox", "production"])
def test_allow_private_address_never_allows_metadata_link_local_or_unspecified(url: str, sandbox_allowed: bool) -> None:
    with pytest.raises(UnsafeDestinationError, match=r"link-local|metadata|unspecified"):
        auth.check_datacenter_url(url, allow_private_address=True, sandbox_allowed=sandbox_allowed)


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1",
        "https://[::1]",
        "https://localhost",
        "https://loop.example",
        "https://rebind.example",
        "https://[::ffff:127.0.0.1]",
    ],
)
def test_allow_private_address_never_allows_loopback_in_production(url: str) -> None:
    with pytest.raises(UnsafeDestinationError, match="loopback"):
        auth.check_datacenter_url(url, allow_private_address=True, sandbox_allowed=False)


def test_private_networks_need_the_allowance() -> None:
    for url in (
        "https://private.example/jira",
        "https://mixed.example",
        "https://10.0.0.7",
        "https://[fd12:3456::1]",
        "https://[::ffff:10.0.0.7]",
    ):
        with pytest.raises(UnsafeDestinationError, match="allow_private_address"):
            auth.check_datacenter_url(url, allow_private_address=False, sandbox_allowed=False)
        assert auth.check_datacenter_url(url, allow_private_address=True, sandbox_allowed=False)


def test_vendor_checks_want_the_vendors_hosts_on_443() -> None:
    for url, checker in (
        ("https://public.example", "salesforce instance/login URL"),
        ("https://salesforce.com.public.example", "salesforce instance/login URL"),
        ("https://acme.my.salesforce.com:8443", "salesforce instance/login URL"),
        ("https://93.184.215.14", "salesforce instance/login URL"),
        ("https://auth.atlassian.com.public.example", "atlassian auth origin"),
        ("https://atlassian.net", "jira cloud site"),
        ("https://public.example", "google token_uri"),
        ("https://public.example", "bigquery api endpoint"),
        ("https://public.example", "slack webhook"),
        ("https://hooks.slack.com.public.example", "slack webhook"),
    ):
        with pytest.raises((UnsafeDestinationError, ConfigError)):
            CHECKERS[checker](url, False)
    with pytest.raises(ConfigError, match="services"):
        check_webhook_url("https://hooks.slack.com/api/other", sandbox_allowed=False)
    assert (
        check_webhook_url("https://public.example/hook", frozenset({"public.example"}), sandbox_allowed=False)
        == "https://public.example/hook"
    )


def test_embedded_ipv4_is_judged_as_the_address_it_carries() -> None:
    metadata = ipaddress.IPv4Address("169.254.169.254")
    for spelling in (
        "::ffff:169.254.169.254",
        "::169.254.169.254",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "::ffff:0:a9fe:a9fe",
    ):
        address = ipaddress.ip_address(spelling)
        assert embedded_ipv4(address) == metadata, spelling
        assert classify(address) == "metadata", spelling
    assert (
        classify(ipaddress.ip_address("2001:0:4136:e378:8000:63bf:5601:5601")) == "metadata"
    )  # Teredo, client 169.254.169.254 obfuscated
    assert classify(ipaddress.ip_address("169.254.1.1")) == "link-local"
    assert classify(ipaddress.ip_address(PUBLIC)) == "public"
