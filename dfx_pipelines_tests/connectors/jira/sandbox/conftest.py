"""Fixtures for the Jira sandbox tests: running Cloud and Data Center sandboxes, real clients, OAuth tokens."""

from __future__ import annotations

import secrets
import urllib.parse

import pytest
from jira import JIRA

from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.oauth import pkce_challenge
from dfx_pipelines.connectors.jira.sandbox.server import READ_SCOPES, complete_consent, start_jira_sandbox
from dfx_pipelines.platform.http import NO_RETRY, build_session


@pytest.fixture(scope="session")
def shared_site() -> JiraSite:
    """Read-only tests share one site; tests that mutate or move the clock build their own."""
    return JiraSite(seed=11, issues=300)


@pytest.fixture(scope="session")
def cloud(shared_site):
    with start_jira_sandbox(shared_site, flavour="cloud") as running:
        yield running


@pytest.fixture(scope="session")
def datacenter(shared_site):
    with start_jira_sandbox(shared_site, flavour="datacenter") as running:
        yield running


def http(running, auth=None):
    """A plain requests session that trusts the sandbox CA (loopback only) and never retries."""
    session = build_session(sandbox_ca=running.ca_pem_path, retry=NO_RETRY)
    session.auth = auth
    return session


@pytest.fixture(scope="session")
def cloud_http(cloud):
    return http(cloud, (cloud.email, cloud.api_token))


@pytest.fixture(scope="session")
def dc_http(datacenter):
    session = http(datacenter)
    session.headers["Authorization"] = f"Bearer {datacenter.personal_access_token}"
    return session


@pytest.fixture(scope="session")
def cloud_jira(cloud) -> JIRA:
    """The real jira client against the Cloud site with API-token basic auth."""
    return JIRA(
        server=cloud.url,
        basic_auth=(cloud.email, cloud.api_token),
        options={"rest_api_version": "3", "verify": cloud.ca_pem_path},
    )


@pytest.fixture(scope="session")
def dc_jira(datacenter) -> JIRA:
    return JIRA(
        server=datacenter.url, token_auth=datacenter.personal_access_token, options={"verify": datacenter.ca_pem_path}
    )


def oauth_tokens(running, scope: str = READ_SCOPES) -> dict:
    """Runs the whole 3LO flow (consent posted programmatically) and returns the token response."""
    verifier = secrets.token_urlsafe(48)
    state = secrets.token_urlsafe(8)
    redirected = complete_consent(
        running.authorize_url(state=state, code_challenge=pkce_challenge(verifier), scope=scope),
        ca_pem_path=running.ca_pem_path,
    )
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(redirected).query)
    assert query["state"] == [state]
    response = http(running).post(
        f"{running.auth_url}/oauth/token",
        json={
            "grant_type": "authorization_code",
            "client_id": running.app.oauth.client_id,
            "client_secret": running.app.oauth.client_secret,
            "code": query["code"][0],
            "redirect_uri": "https://127.0.0.1/dfx/oauth/callback",
            "code_verifier": verifier,
        },
    )
    assert response.status_code == 200, response.text
    return response.json()
