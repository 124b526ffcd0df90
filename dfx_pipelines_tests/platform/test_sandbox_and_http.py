"""The sandbox harness and the HTTP session factory: TLS trust in sandbox mode only, injected faults,
and retries that honour Retry-After."""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator

import pytest
import requests

from dfx_pipelines.platform.errors import AuthError, ConfigError, ConnectorError
from dfx_pipelines.platform.http import RetryPolicy, api_calls, build_session, check_response, parse_retry_after
from dfx_pipelines.platform.sandbox import EchoApp, Faults, SandboxServer

TOKEN = "echo-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer(EchoApp(TOKEN)) as running:
        yield running


@pytest.fixture(autouse=True)
def _clear_faults(server: SandboxServer) -> None:
    server.faults.clear()


def session_for(server: SandboxServer, sleeps: Sleeps | None = None, **policy) -> requests.Session:
    return build_session(
        sandbox_ca=server.ca_pem_path, retry=RetryPolicy(sleep=sleeps if sleeps is not None else Sleeps(), **policy)
    )


def test_trusts_the_sandbox_ca_despite_the_environment_bundle(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trap: REQUESTS_CA_BUNDLE makes requests ignore Session.verify; our adapter forces verify per request.
    monkeypatch.setenv(
        "REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    )
    response = session_for(server).get(f"{server.url}/v1/ping", headers=AUTH)
    assert response.json() == {"pong": True}


def test_refuses_a_certificate_it_was_not_told_to_trust(server: SandboxServer) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        build_session().get(f"{server.url}/v1/ping", headers=AUTH)
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{server.url}/v1/ping", headers=AUTH, timeout=5)


def test_sandbox_ca_is_not_trusted_for_other_hosts(server: SandboxServer) -> None:
    session = session_for(server)
    assert session.get_adapter(f"{server.url}/").ca_bundle == server.ca_pem_path
    assert session.get_adapter("https://acme.my.salesforce.com/").ca_bundle is None


def test_server_speaks_tls_1_2_or_newer_only(server: SandboxServer) -> None:
    import socket

    assert server.ca.server_context().minimum_version == ssl.TLSVersion.TLSv1_2
    context = ssl.create_default_context(cafile=server.ca_pem_path)
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock,
        context.wrap_socket(sock, server_hostname="127.0.0.1") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_rate_limit_retries_after_the_servers_delay(server: SandboxServer) -> None:
    sleeps = Sleeps()
    server.faults.inject("rate_limit", count=2, retry_after=3)
    session = session_for(server, sleeps)
    assert session.get(f"{server.url}/v1/ping", headers=AUTH).status_code == 200
    assert sleeps == [3.0, 3.0]
    assert api_calls(session) == 3


def test_retry_after_beyond_the_cap_is_returned_not_slept(server: SandboxServer) -> None:
    sleeps = Sleeps()
    server.faults.inject("rate_limit", count=1, retry_after=3600)
    response = session_for(server, sleeps).get(f"{server.url}/v1/ping", headers=AUTH)
    assert response.status_code == 429 and sleeps == []


def test_server_errors_retry_idempotent_calls_only(server: SandboxServer) -> None:
    server.faults.inject("server_error", count=2, status=502)
    assert session_for(server).get(f"{server.url}/v1/ping", headers=AUTH).status_code == 200
    server.faults.inject("server_error", count=1, status=502)
    assert session_for(server).post(f"{server.url}/v1/ping", headers=AUTH).status_code == 502


def test_dropped_connections_are_retried(server: SandboxServer) -> None:
    server.faults.inject("drop", count=2)
    assert session_for(server).get(f"{server.url}/v1/ping", headers=AUTH).json() == {"pong": True}
    assert [kind for kind, _ in server.faults.log] == ["drop", "drop"]


def test_gives_up_after_max_attempts(server: SandboxServer) -> None:
    server.faults.inject("server_error", count=None, status=503)
    response = session_for(server, max_attempts=3).get(f"{server.url}/v1/ping", headers=AUTH)
    assert response.status_code == 503 and len(server.faults.log) == 3


def test_slow_responses_hit_the_read_timeout(server: SandboxServer) -> None:
    server.faults.inject("slow", count=1, delay=1.0)
    session = build_session(sandbox_ca=server.ca_pem_path, retry=RetryPolicy(max_attempts=1), timeout=(2, 0.3))
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.get(f"{server.url}/v1/ping", headers=AUTH)


def test_expired_token_fault_uses_the_apps_401(server: SandboxServer) -> None:
    server.faults.inject("expire_token", count=1)
    response = session_for(server).get(f"{server.url}/v1/ping", headers=AUTH)
    assert response.status_code == 401 and response.json() == {"error": "invalid_token"}


def test_faults_are_path_scoped_and_seeded() -> None:
    faults = Faults(seed=42)
    faults.inject("server_error", count=None, probability=0.5, path_prefix="/v1/items")
    fired = [faults.next_fault("/v1/items") is not None for _ in range(20)]
    again = Faults(seed=42)
    again.inject("server_error", count=None, probability=0.5, path_prefix="/v1/items")
    assert fired == [again.next_fault("/v1/items") is not None for _ in range(20)]
    assert 0 < sum(fired) < 20
    assert faults.next_fault("/v1/ping") is None
    assert Faults.parse("rate_limit:count=3,retry_after=2").retry_after == 2
    with pytest.raises(ConfigError, match=r"unknown kind .meteor."):
        Faults.parse("meteor:count=1")


def test_check_response_names_the_call_and_hides_the_query(server: SandboxServer) -> None:
    response = session_for(server).get(f"{server.url}/v1/nope?access_token={TOKEN}", headers=AUTH)
    with pytest.raises(ConnectorError) as info:
        check_response(response, "echo lookup")
    assert "echo lookup failed: HTTP 404" in str(info.value) and TOKEN not in str(info.value)
    with pytest.raises(AuthError):
        check_response(requests.get(f"{server.url}/v1/ping", verify=server.ca_pem_path, timeout=5), "echo ping")


def test_retry_after_http_date() -> None:
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 <= (parse_retry_after(future) or 0) <= 30
    assert parse_retry_after("garbage") is None and parse_retry_after("2") == 2.0


def test_paging_through_the_echo_api(server: SandboxServer) -> None:
    session, items, url = session_for(server), [], f"{server.url}/v1/items"
    while url:
        page = session.get(url, headers=AUTH).json()
        items += page["items"]
        url = f"{server.url}{page['next']}" if page["next"] else None
    assert items == list(range(25))


def test_the_sandbox_ca_is_forced_only_for_a_parsed_loopback_host(
    server: SandboxServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sandbox adapter is mounted by URL prefix, and `https://127.0.0.1.evil.example` or
    `https://127.0.0.1:1@evil.example` share that prefix: the CA must follow the parsed host, not the text."""
    verify_by_url: dict[str, object] = {}

    def network_edge(self, request, **kwargs):
        verify_by_url[request.url] = kwargs.get("verify")
        raise requests.ConnectionError("nothing is sent in this test")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", network_edge)
    session = session_for(server, max_attempts=1)
    lookalikes = [
        "https://127.0.0.1.evil.example/",
        "https://127.0.0.1:1@evil.example/",
        "https://localhost.evil.example/",
        "https://127.0.0.1@evil.example/",
    ]
    for url in [*lookalikes, f"{server.url}/v1/ping"]:
        with pytest.raises(requests.ConnectionError):
            session.get(url)
    # Normal verification (the default store, or the environment's bundle), never the sandbox CA, never off.
    assert {
        url: verify_by_url[url] for url in lookalikes if verify_by_url[url] in (server.ca_pem_path, False, None)
    } == {}
    assert verify_by_url[f"{server.url}/v1/ping"] == server.ca_pem_path


class CountingApp(EchoApp):
    """The echo API, counting the requests it actually handled."""

    handled = 0

    def handle(self, request):
        CountingApp.handled += 1
        return super().handle(request)


@pytest.mark.parametrize("when, handled", [("before", 0), ("after", 1)])
def test_a_drop_happens_before_or_after_the_server_acts(when: str, handled: int) -> None:
    CountingApp.handled = 0
    with SandboxServer(CountingApp(TOKEN)) as counting:
        counting.faults.inject("drop", count=1, when=when)
        with pytest.raises(requests.ConnectionError):
            build_session(sandbox_ca=counting.ca_pem_path, retry=RetryPolicy(max_attempts=1)).post(
                f"{counting.url}/v1/ping", headers=AUTH
            )
    assert CountingApp.handled == handled
    assert Faults.parse("drop:when=after").when == "after"
    with pytest.raises(ConfigError, match=r"before.*after"):
        Faults.parse("drop:when=sometimes")


def test_post_retries_a_lost_answer_only_when_told_to(server: SandboxServer) -> None:
    server.faults.inject("drop", count=1, when="after")
    with pytest.raises(requests.ConnectionError):
        session_for(server).post(f"{server.url}/v1/ping", headers=AUTH)  # not idempotent: not retried
    server.faults.inject("drop", count=1, when="after")
    assert session_for(server, retry_all_methods=True).post(f"{server.url}/v1/ping", headers=AUTH).json() == {
        "pong": True
    }


def test_retry_logs_never_carry_a_query_string(server: SandboxServer, caplog: pytest.LogCaptureFixture) -> None:
    """urllib3 logs every retry with the request's path and query; an OAuth state, a code or a SOQL value
    in the query must not reach the logs."""
    server.faults.inject("drop", count=2)
    with caplog.at_level("DEBUG"):
        response = session_for(server).get(
            f"{server.url}/v1/ping?state=state-canary-7f3a&code=code-canary-91", headers=AUTH
        )
    assert response.json() == {"pong": True}
    assert "Retrying" in caplog.text or "retry" in caplog.text.lower()  # the retries were logged
    assert "state-canary-7f3a" not in caplog.text and "code-canary-91" not in caplog.text
