"""Atlassian OAuth 2.0 (3LO) in the sandbox: PKCE, state, code replay, rotating refresh tokens, gateway calls."""

from __future__ import annotations

import secrets
import urllib.parse
from datetime import timedelta

import pytest
from jira import JIRA, JIRAError

from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.oauth import REUSE_LEEWAY, pkce_challenge
from dfx_pipelines.connectors.jira.sandbox.server import DEFAULT_REDIRECT_URI, complete_consent, start_jira_sandbox
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http, oauth_tokens


@pytest.fixture
def fresh_cloud():
    with start_jira_sandbox(JiraSite(seed=5, issues=60), flavour="cloud") as running:
        yield running


def _code(running, verifier: str, state: str = "state-123", **extra) -> dict:
    redirected = complete_consent(
        running.authorize_url(state=state, code_challenge=pkce_challenge(verifier), **extra),
        ca_pem_path=running.ca_pem_path,
    )
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(redirected).query).items()}


def _exchange(running, code: str, verifier: str):
    return http(running).post(f"{running.auth_url}/oauth/token", json={
        "grant_type": "authorization_code", "client_id": running.app.oauth.client_id, "client_secret": running.app.oauth.client_secret,
        "code": code, "redirect_uri": DEFAULT_REDIRECT_URI, "code_verifier": verifier,
    })  # fmt: skip


def _refresh(running, refresh_token: str):
    return http(running).post(f"{running.auth_url}/oauth/token", data={
        "grant_type": "refresh_token", "client_id": running.app.oauth.client_id,
        "client_secret": running.app.oauth.client_secret, "refresh_token": refresh_token,
    })  # fmt: skip


def test_consent_page_then_code_with_state_echoed(fresh_cloud):
    verifier = secrets.token_urlsafe(48)
    url = fresh_cloud.authorize_url(state="xyz", code_challenge=pkce_challenge(verifier))
    page = http(fresh_cloud).get(url, allow_redirects=False)
    assert page.status_code == 200 and 'name="approve"' in page.text
    query = _code(fresh_cloud, verifier, state="xyz")
    assert query["state"] == "xyz" and query["code"]
    denied = complete_consent(url, ca_pem_path=fresh_cloud.ca_pem_path, approve=False)
    assert "error=access_denied" in denied and "state=xyz" in denied


def test_pkce_success_and_token_shape(fresh_cloud):
    tokens = oauth_tokens(fresh_cloud)
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 3600
    assert "read:jira-work" in tokens["scope"].split() and tokens["refresh_token"]


def test_wrong_verifier_is_refused(fresh_cloud):
    query = _code(fresh_cloud, secrets.token_urlsafe(48))
    response = _exchange(fresh_cloud, query["code"], secrets.token_urlsafe(48))
    assert response.status_code == 403 and response.json()["error"] == "invalid_grant"


def test_authorize_without_pkce_or_with_plain_method_is_refused(fresh_cloud):
    url = fresh_cloud.authorize_url(state="s", code_challenge="short") + "&auto_approve=1"
    location = http(fresh_cloud).get(url, allow_redirects=False).headers["Location"]
    assert "error=invalid_request" in location and "state=s" in location


def test_replayed_code_fails_and_revokes_what_it_issued(fresh_cloud):
    verifier = secrets.token_urlsafe(48)
    query = _code(fresh_cloud, verifier)
    first = _exchange(fresh_cloud, query["code"], verifier)
    assert first.status_code == 200
    replay = _exchange(fresh_cloud, query["code"], verifier)
    assert replay.status_code == 403 and replay.json()["error"] == "invalid_grant"
    access = first.json()["access_token"]
    assert (
        http(fresh_cloud)
        .get(f"{fresh_cloud.api_url}/rest/api/3/myself", headers={"Authorization": f"Bearer {access}"})
        .status_code
        == 401
    )


def test_refresh_rotates_and_reuse_revokes_the_family(fresh_cloud):
    tokens = oauth_tokens(fresh_cloud)
    first = _refresh(fresh_cloud, tokens["refresh_token"])
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tokens["refresh_token"] and rotated["scope"] == tokens["scope"]
    fresh_cloud.site.advance(timedelta(seconds=REUSE_LEEWAY + 1))  # past Atlassian's 10-minute reuse leeway
    reuse = _refresh(fresh_cloud, tokens["refresh_token"])  # the retired one
    assert reuse.status_code == 403 and reuse.json()["error"] == "invalid_grant"
    # The whole family is gone: the newest refresh token and its access token stop working too.
    assert _refresh(fresh_cloud, rotated["refresh_token"]).json()["error"] == "invalid_grant"
    headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert http(fresh_cloud).get(f"{fresh_cloud.api_url}/rest/api/3/field", headers=headers).status_code == 401


def test_no_refresh_token_without_offline_access(fresh_cloud):
    tokens = oauth_tokens(fresh_cloud, scope="read:jira-work read:jira-user")
    assert "refresh_token" not in tokens


def test_accessible_resources_and_gateway_calls_with_the_jira_library(fresh_cloud):
    tokens = oauth_tokens(fresh_cloud)
    resources = (
        http(fresh_cloud)
        .get(
            f"{fresh_cloud.auth_url}/oauth/token/accessible-resources",
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
        .json()
    )
    assert resources[0]["id"] == fresh_cloud.cloud_id and "read:jira-work" in resources[0]["scopes"]
    api_url = f"{fresh_cloud.url}/ex/jira/{resources[0]['id']}"
    client = JIRA(
        server=api_url,
        token_auth=tokens["access_token"],
        options={"rest_api_version": "3", "verify": fresh_cloud.ca_pem_path},
    )
    assert client.deploymentType == "Cloud"
    issues = client.enhanced_search_issues("project = ALPHA", maxResults=0, fields=["status"])
    assert len(issues) == len(fresh_cloud.site.issues_in_projects("ALPHA"))
    assert issues[0].raw["self"].startswith(api_url)
    assert [b.id for b in client.boards()] == [1, 2, 3]


def test_expired_access_token_gets_401(fresh_cloud):
    tokens = oauth_tokens(fresh_cloud)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    url = f"{fresh_cloud.api_url}/rest/api/3/field"
    assert http(fresh_cloud).get(url, headers=headers).status_code == 200
    fresh_cloud.site.advance(timedelta(seconds=3601))
    expired = http(fresh_cloud).get(url, headers=headers)
    assert expired.status_code == 401 and expired.json() == {"code": 401, "message": "Unauthorized"}
    renewed = _refresh(fresh_cloud, tokens["refresh_token"]).json()
    assert http(fresh_cloud).get(url, headers={"Authorization": f"Bearer {renewed['access_token']}"}).status_code == 200


def test_scopes_are_enforced_and_can_be_widened_for_tests():
    with start_jira_sandbox(
        JiraSite(seed=5, issues=20), granted_scopes="read:jira-work write:jira-work offline_access"
    ) as running:
        tokens = oauth_tokens(running, scope="read:jira-work offline_access")
        assert set(tokens["scope"].split()) == {"read:jira-work", "write:jira-work", "offline_access"}
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        board = http(running).get(f"{running.api_url}/rest/agile/1.0/board", headers=headers)
        assert board.status_code == 401 and board.json()["message"] == "Unauthorized; scope does not match"
        with pytest.raises(JIRAError) as raised:
            JIRA(
                server=running.api_url,
                token_auth=tokens["access_token"],
                options={"rest_api_version": "3", "verify": running.ca_pem_path},
            ).myself()
        assert raised.value.status_code == 401


def test_site_url_refuses_bad_basic_auth_and_bearer(cloud):
    assert http(cloud, (cloud.email, "wrong")).get(f"{cloud.url}/rest/api/3/field").status_code == 401
    assert (
        http(cloud).get(f"{cloud.url}/rest/api/3/field", headers={"Authorization": "Bearer anything"}).status_code
        == 401
    )
