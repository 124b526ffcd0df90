"""OAuth 2.0 web-server flow with PKCE against the sandbox: consent, code exchange, refresh, revoke, expiry."""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from simple_salesforce.exceptions import SalesforceExpiredSession, SalesforceRefusedRequest

from dfx_pipelines.connectors.salesforce.sandbox.launch import (
    DEFAULT_REDIRECT_URI,
    complete_authorization,
    parse_redirect,
)
from dfx_pipelines.connectors.salesforce.sandbox.oauth import pkce_challenge

from .conftest import client


def _authorize(sandbox, verifier: str, state: str = "st-1", **options):
    url = sandbox.authorize_url(state=state, code_challenge=pkce_challenge(verifier), **options)
    return parse_redirect(complete_authorization(sandbox.session(), url))


def _exchange(sandbox, code: str, verifier: str | None, redirect_uri: str = DEFAULT_REDIRECT_URI):
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": "dfx-sandbox-client",
        "redirect_uri": redirect_uri,
    }
    if verifier is not None:
        form["code_verifier"] = verifier
    return sandbox.session().post(f"{sandbox.url}/services/oauth2/token", data=form)


def test_pkce_flow_issues_tokens_that_work_with_simple_salesforce(sandbox):
    verifier = secrets.token_urlsafe(48)
    redirect = _authorize(sandbox, verifier, state="abc123")
    assert redirect["state"] == "abc123"
    response = _exchange(sandbox, redirect["code"], verifier)
    assert response.status_code == 200
    tokens = response.json()
    assert set(tokens) == {
        "access_token",
        "refresh_token",
        "instance_url",
        "id",
        "issued_at",
        "signature",
        "scope",
        "token_type",
    }
    assert tokens["token_type"] == "Bearer"
    assert tokens["instance_url"] == sandbox.url
    assert tokens["scope"] == "api refresh_token cdp_query_api"
    sf = client(sandbox, tokens["access_token"])
    assert sf.query("SELECT COUNT() FROM Account")["totalSize"] == sandbox.org.count("Account")


def test_consent_page_then_post_approve(sandbox):
    verifier = secrets.token_urlsafe(48)
    url = sandbox.authorize_url(state="s", code_challenge=pkce_challenge(verifier))
    page = sandbox.session().get(url, allow_redirects=False)
    assert page.status_code == 200 and "<form" in page.text and 'name="approve"' in page.text
    denied = parse_redirect(complete_authorization(sandbox.session(), url, approve=False))
    assert denied["error"] == "access_denied" and denied["state"] == "s"


def test_auto_approve_redirects_straight_away(sandbox):
    verifier = secrets.token_urlsafe(48)
    url = sandbox.authorize_url(state="s2", code_challenge=pkce_challenge(verifier), auto_approve="1")
    response = sandbox.session().get(url, allow_redirects=False)
    assert response.status_code == 302
    assert parse_redirect(response.headers["Location"])["state"] == "s2"


@pytest.mark.parametrize("verifier", [None, "wrong-" + "x" * 50])
def test_missing_or_wrong_verifier_is_invalid_grant(sandbox, verifier):
    good = secrets.token_urlsafe(48)
    code = _authorize(sandbox, good)["code"]
    response = _exchange(sandbox, code, verifier)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


def test_code_is_single_use_and_replay_revokes_what_it_issued(sandbox):
    verifier = secrets.token_urlsafe(48)
    code = _authorize(sandbox, verifier)["code"]
    first = _exchange(sandbox, code, verifier)
    assert first.status_code == 200
    replay = _exchange(sandbox, code, verifier)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    with pytest.raises(SalesforceExpiredSession):
        client(sandbox, first.json()["access_token"]).limits()


def test_redirect_uri_must_match(sandbox):
    verifier = secrets.token_urlsafe(48)
    code = _authorize(sandbox, verifier)["code"]
    response = _exchange(sandbox, code, verifier, redirect_uri="https://evil.example/cb")
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("method", [None, "plain"])
def test_authorize_requires_s256_challenge(sandbox, method):
    url = sandbox.authorize_url(state="st", code_challenge=pkce_challenge("v" * 43), method=method)
    redirect = parse_redirect(complete_authorization(sandbox.session(), url))
    assert redirect["error"] == "invalid_request" and redirect["state"] == "st"
    missing = sandbox.authorize_url(state="st", code_challenge="")
    assert parse_redirect(complete_authorization(sandbox.session(), missing))["error"] == "invalid_request"


def test_unknown_client_is_an_error_page_not_a_redirect(sandbox):
    url = sandbox.authorize_url(state="st", code_challenge=pkce_challenge("v" * 43)).replace(
        "dfx-sandbox-client", "other"
    )
    response = sandbox.session().get(url, allow_redirects=False)
    assert response.status_code == 400 and "Location" not in response.headers


def test_refresh_returns_new_access_token_without_refresh_token(sandbox):
    tokens = sandbox.login()
    response = sandbox.session().post(
        f"{sandbox.url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "dfx-sandbox-client",
        },
    )
    assert response.status_code == 200
    refreshed = response.json()
    assert "refresh_token" not in refreshed and refreshed["access_token"] != tokens["access_token"]
    assert client(sandbox, refreshed["access_token"]).limits()["DailyApiRequests"]["Max"] == 15000


def test_revoking_refresh_token_revokes_its_access_tokens(sandbox):
    tokens = sandbox.login()
    sf = client(sandbox, tokens["access_token"])
    sf.limits()
    revoke = sandbox.session().post(f"{sandbox.url}/services/oauth2/revoke", data={"token": tokens["refresh_token"]})
    assert revoke.status_code == 200
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.limits()
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
    refresh = sandbox.session().post(
        f"{sandbox.url}/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": "dfx-sandbox-client",
        },
    )
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_access_token_expires_after_ttl_on_the_org_clock(make_sandbox):
    sandbox = make_sandbox(access_token_ttl=timedelta(minutes=30))
    sf = client(sandbox, sandbox.login()["access_token"])
    sf.query("SELECT Id FROM User LIMIT 1")
    sandbox.org.advance(timedelta(minutes=31))
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.query("SELECT Id FROM User LIMIT 1")
    assert raised.value.status == 401
    assert raised.value.content == [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def test_granted_scopes_are_configurable_and_api_scope_is_required(sandbox):
    sandbox.app.granted_scopes = "refresh_token cdp_query_api"
    tokens = sandbox.login()
    assert tokens["scope"] == "refresh_token cdp_query_api"
    with pytest.raises(SalesforceRefusedRequest):
        client(sandbox, tokens["access_token"]).limits()
    sandbox.app.granted_scopes = "api"
    assert "refresh_token" not in sandbox.login()  # no refresh_token scope, no refresh token


def test_missing_or_unknown_bearer_token_is_401(sandbox):
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = sandbox.session().get(f"{sandbox.url}/services/data/v59.0/limits", headers=headers)
        assert response.status_code == 401
        assert response.json()[0]["errorCode"] == "INVALID_SESSION_ID"


def test_expire_token_fault_uses_the_salesforce_401(sandbox, sf):
    sandbox.server.faults.inject("expire_token")
    with pytest.raises(SalesforceExpiredSession) as raised:
        sf.limits()
    assert raised.value.content[0]["errorCode"] == "INVALID_SESSION_ID"
