"""Connecting a Salesforce org: OAuth + PKCE against the sandbox, scopes, state, selection checked
against describe, and nothing half-written (or any request sent) when something is wrong."""

import urllib.parse
from pathlib import Path

import pytest

from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import complete_authorization
from dfx_pipelines.platform.errors import AuthError, ConfigError, IdentifierError, UnsafeDestinationError
from dfx_pipelines.platform.registry import Workspace

from .conftest import connect, make_sandbox


def paths(sandbox) -> list[str]:
    return [request.path for request in sandbox.server.requests]


def assert_nothing_stored(platform, slug: str = "sf-acme") -> None:
    assert platform.registry.find(slug) is None
    assert platform.vault.data_key_id("acme", slug) is None


def test_connect_stores_tokens_only_in_the_vault(platform, workspace: Workspace, sf_sandbox, sf_resource) -> None:
    connection = connect(platform, sf_sandbox, sf_resource)
    assert connection.endpoint["instance_url"] == sf_sandbox.url
    assert connection.endpoint["login_url"] == sf_sandbox.url
    stored = platform.registry.get("sf-acme")
    assert stored.selection.objects["Opportunity"] == connection.selection.objects["Opportunity"]
    access = platform.vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
    refresh = platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value()
    assert sf_sandbox.app.oauth.access_grant(access) is not None
    database = platform.settings.metrics_db_url.removeprefix("sqlite:///")
    raw = Path(database).read_bytes()
    assert access.encode() not in raw and refresh.encode() not in raw
    # The PKCE exchange really happened: the authorize call carried an S256 challenge, the token call a verifier.
    authorize = next(r for r in sf_sandbox.server.requests if r.path == "/services/oauth2/authorize")
    assert authorize.arg("code_challenge_method") == "S256"
    token_call = [r for r in sf_sandbox.server.requests if r.path == "/services/oauth2/token"][-1]
    assert len(token_call.form()["code_verifier"]) >= 43
    assert "password" not in token_call.form()  # never the username-password flow (P4)


def test_wider_scopes_are_refused_and_the_token_revoked(platform, workspace: Workspace, sf_resource) -> None:
    sandbox = make_sandbox(granted_scopes="api refresh_token cdp_query_api full")
    try:
        with pytest.raises(AuthError, match=r"unexpected \['full'\]"):
            connect(
                platform,
                sandbox,
                SalesforceResource(client_id=sf_resource.client_id, sandbox_ca_path=sandbox.ca_pem_path),
            )
        assert_nothing_stored(platform)
        assert "/services/oauth2/revoke" in paths(sandbox)
        assert not any(path.startswith("/services/data/") for path in paths(sandbox))
    finally:
        sandbox.stop()


def test_narrower_scopes_are_refused(platform, workspace: Workspace, sf_resource) -> None:
    sandbox = make_sandbox(granted_scopes="api refresh_token")
    try:
        with pytest.raises(AuthError, match=r"missing \['cdp_query_api'\]"):
            connect(
                platform,
                sandbox,
                SalesforceResource(client_id=sf_resource.client_id, sandbox_ca_path=sandbox.ca_pem_path),
            )
        assert_nothing_stored(platform)
    finally:
        sandbox.stop()


def test_forged_state_is_refused_before_the_code_is_exchanged(
    platform, workspace: Workspace, sf_sandbox, sf_resource
) -> None:
    session = sf_resource.session(platform)

    def attacker_redirect(url: str) -> str:
        location = complete_authorization(session, url)
        return location.replace("state=", "state=forged")

    before = len(sf_sandbox.server.requests)
    with pytest.raises(AuthError, match="state does not match"):
        connect(platform, sf_sandbox, sf_resource, receive_code=attacker_redirect)
    assert "/services/oauth2/token" not in [r.path for r in sf_sandbox.server.requests[before:]]
    assert_nothing_stored(platform)


def test_replayed_code_is_refused(platform, workspace: Workspace, sf_sandbox, sf_resource) -> None:
    session = sf_resource.session(platform)
    seen: list[str] = []

    def first_time(url: str) -> str:
        seen.append(complete_authorization(session, url))
        return seen[0]

    connect(platform, sf_sandbox, sf_resource, receive_code=first_time)
    old_code = urllib.parse.parse_qs(urllib.parse.urlsplit(seen[0]).query)["code"][0]

    def replay(url: str) -> str:
        state = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["state"][0]
        return f"{url}&code={old_code}&state={state}".split("?", 1)[1]

    with pytest.raises(AuthError, match="invalid_grant"):
        connect(platform, sf_sandbox, sf_resource, receive_code=replay, config={"id": "sf-replay"})
    assert_nothing_stored(platform, "sf-replay")


def test_instance_url_elsewhere_is_refused(platform, workspace: Workspace, sf_resource) -> None:
    sandbox = make_sandbox()
    sandbox.app.bind("https://evil.example.com")  # the token response now names another host
    try:
        with pytest.raises(UnsafeDestinationError, match="not a Salesforce domain"):
            connect(
                platform,
                sandbox,
                SalesforceResource(client_id=sf_resource.client_id, sandbox_ca_path=sandbox.ca_pem_path),
            )
        assert_nothing_stored(platform)
        assert not any(path.startswith("/services/data/") for path in paths(sandbox))
        assert "/services/oauth2/revoke" in paths(sandbox)  # revoked at the login host we trust
    finally:
        sandbox.stop()


@pytest.mark.parametrize(
    "objects, error",
    [
        ({"Opportunity WHERE 1=1": ["Id"]}, "Salesforce API name"),
        ({"Opportunity": ["Name, (SELECT Id FROM Contacts)"]}, "Salesforce field path"),
        ({"Opportunity": ["Amount;"]}, "Salesforce field path"),
    ],
)
def test_hostile_names_are_refused_before_any_request(
    platform, workspace: Workspace, sf_sandbox, sf_resource, objects: dict, error: str
) -> None:
    before = len(sf_sandbox.server.requests)
    with pytest.raises((ConfigError, IdentifierError), match=error):
        connect(platform, sf_sandbox, sf_resource, config={"selection": {"objects": objects}, "write_back": []})
    assert sf_sandbox.server.requests[before:] == []
    assert_nothing_stored(platform)


@pytest.mark.parametrize(
    "objects, problem",
    [
        ({"Widget__c": ["Id"]}, "object Widget__c does not exist"),
        ({"OpportunityChangeEvent": ["Id"]}, "not queryable"),
        ({"Opportunity": ["Amount", "Secret_Margin__c"]}, "field Opportunity.Secret_Margin__c does not exist"),
        ({"Opportunity": ["Account.Nonexistent"]}, "field Nonexistent does not exist on Account"),
    ],
)
def test_selection_is_checked_against_describe(
    platform, workspace: Workspace, sf_sandbox, sf_resource, objects: dict, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        connect(platform, sf_sandbox, sf_resource, config={"selection": {"objects": objects}, "write_back": []})
    assert_nothing_stored(platform)
    revoked = [r for r in sf_sandbox.server.requests if r.path == "/services/oauth2/revoke"]
    assert revoked, "the token we will not keep is revoked at Salesforce"


def test_non_updateable_write_back_field_is_refused(platform, workspace: Workspace, sf_sandbox, sf_resource) -> None:
    config = {
        "selection": {"objects": {"Opportunity": ["Amount", "Weighted_Amount__c"]}},
        "write_back": [
            {"object": "Opportunity", "field": "Weighted_Amount__c", "metric": "win_rate", "measure": "won_amount"}
        ],
    }
    with pytest.raises(ConfigError, match="Weighted_Amount__c is not updateable"):
        connect(platform, sf_sandbox, sf_resource, config=config)
    assert_nothing_stored(platform)


def test_reauthorize_replaces_tokens_and_keeps_the_connection(
    platform, workspace: Workspace, sf_sandbox, sf_resource
) -> None:
    first = connect(platform, sf_sandbox, sf_resource)
    old = platform.vault.get(first.secret_ref("oauth_refresh_token")).get_secret_value()
    with pytest.raises(ConfigError, match="already exists"):
        connect(platform, sf_sandbox, sf_resource)
    again = connect(platform, sf_sandbox, sf_resource, reauthorize=True)
    assert again.created_at == first.created_at
    assert platform.vault.get(first.secret_ref("oauth_refresh_token")).get_secret_value() != old
