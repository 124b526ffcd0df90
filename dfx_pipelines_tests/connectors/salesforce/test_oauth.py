"""Salesforce OAuth pieces that need no server: PKCE, where a token may be sent, scopes, state."""

import urllib.parse

import pytest

from dfx_pipelines.connectors.salesforce import oauth
from dfx_pipelines.platform.errors import AuthError, UnsafeDestinationError


def test_pkce_matches_rfc_7636_and_is_random() -> None:
    # RFC 7636 appendix B test vector.
    assert (
        oauth.challenge_for("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    )
    first, second = oauth.PkcePair.generate(), oauth.PkcePair.generate()
    assert first.verifier != second.verifier and 43 <= len(first.verifier) <= 128
    assert set(first.verifier) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    with pytest.raises(ValueError):
        oauth.PkcePair.generate(42)


def test_authorize_url_asks_for_exactly_the_minimum_scopes() -> None:
    request = oauth.AuthorizationRequest.start(
        "https://login.salesforce.com", "client-1", "http://127.0.0.1:8765/callback"
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(request.url).query)
    assert query["scope"] == ["api cdp_query_api refresh_token"]
    assert query["code_challenge_method"] == ["S256"] and query["code_challenge"] == [request.pkce.challenge]
    assert query["state"] == [request.state] and query["response_type"] == ["code"]
    assert "code_verifier" not in query  # the verifier never leaves until the code exchange


@pytest.mark.parametrize(
    "url",
    [
        "https://acme.my.salesforce.com",
        "https://acme--uat.sandbox.my.salesforce.com",
        "https://acme.lightning.force.com/",
        "https://login.salesforce.com",
    ],
)
def test_salesforce_hosts_are_accepted(url: str, vendor_dns: list[str]) -> None:
    assert oauth.validate_salesforce_url(url, sandbox_allowed=False) == url.rstrip("/")
    assert vendor_dns == [url.split("/")[2]]  # resolved before any token is sent


@pytest.mark.parametrize(
    "url, message",
    [
        ("http://acme.my.salesforce.com", "must use https"),
        ("https://evil.example.com", "not a Salesforce domain"),
        ("https://salesforce.com.evil.example", "not a Salesforce domain"),
        ("https://acme.my.salesforce.com@evil.example", "no user name or password"),
        ("https://10.0.0.5", "bare IP address"),
        ("https://169.254.169.254", "bare IP address"),
        ("https://127.0.0.1:8443", "allowed only for the sandbox"),
        ("https://acme.my.salesforce.com/?next=https://evil", "no query or fragment"),
        ("https://acme.my.salesforce.com/services", "a bare origin"),
        ("", "must use https"),
    ],
)
def test_anywhere_else_is_refused(url: str, message: str) -> None:
    with pytest.raises(UnsafeDestinationError, match=message):
        oauth.validate_salesforce_url(url, sandbox_allowed=False)


def test_loopback_only_in_sandbox_mode() -> None:
    assert oauth.validate_salesforce_url("https://127.0.0.1:8443", sandbox_allowed=True) == "https://127.0.0.1:8443"
    with pytest.raises(UnsafeDestinationError):
        oauth.validate_salesforce_url("http://127.0.0.1:8443", sandbox_allowed=True)


def test_scopes_must_match_exactly() -> None:
    oauth.check_scopes(frozenset({"api", "refresh_token", "cdp_query_api"}))
    with pytest.raises(AuthError, match=r"unexpected \['full'\]"):
        oauth.check_scopes(frozenset({"api", "refresh_token", "cdp_query_api", "full"}))
    with pytest.raises(AuthError, match=r"missing \['cdp_query_api'\]"):
        oauth.check_scopes(frozenset({"api", "refresh_token"}))


def test_redirect_state_is_checked() -> None:
    request = oauth.AuthorizationRequest.start("https://login.salesforce.com", "c", "http://127.0.0.1:1/callback")
    good = f"http://127.0.0.1:1/callback?code=abc123&state={request.state}"
    assert request.code_from_redirect(good) == "abc123"
    assert request.code_from_redirect(f"code=abc123&state={request.state}") == "abc123"
    with pytest.raises(AuthError, match="state does not match"):
        request.code_from_redirect("http://127.0.0.1:1/callback?code=abc123&state=forged")
    with pytest.raises(AuthError, match="refused: access_denied"):
        request.code_from_redirect(f"http://127.0.0.1:1/callback?error=access_denied&state={request.state}")
    with pytest.raises(AuthError, match="no authorization code"):
        request.code_from_redirect(f"http://127.0.0.1:1/callback?state={request.state}")
