"""Credentials at run time: OAuth refresh with rotating refresh tokens stored before use, a rotated-away
refresh token failing clearly, a revoked connection failing before any request, and where tokens may go."""

import dataclasses
from datetime import timedelta

import pytest

from dfx_pipelines.connectors.jira import auth, oauth
from dfx_pipelines.connectors.jira.resource import checked_base
from dfx_pipelines.connectors.jira.sandbox.oauth import REUSE_LEEWAY
from dfx_pipelines.platform.errors import AuthError, UnsafeDestinationError
from dfx_pipelines.platform.registry import ConnectionSettings, ConnectionStatus
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, resource_for, sandbox_paths


def test_a_401_refreshes_and_the_rotated_refresh_token_is_stored(platform, cloud_connection, jira_cloud) -> None:
    refs = cloud_connection.secret_ref("oauth_refresh_token"), cloud_connection.secret_ref("oauth_access_token")
    old_refresh, old_access = (platform.vault.get(ref).get_secret_value() for ref in refs)
    jira_cloud.faults.inject("expire_token", count=1, path_prefix="/ex/jira/")
    client = resource_for(jira_cloud).client(platform, cloud_connection)
    assert client.fields()  # answered after one refresh
    new_refresh, new_access = (platform.vault.get(ref).get_secret_value() for ref in refs)
    assert client.refreshes == 1 and new_refresh != old_refresh and new_access != old_access
    assert jira_cloud.app.oauth.access_grant(new_access) is not None
    assert not jira_cloud.app.oauth.family_revoked(new_refresh)  # the stored token is the live one
    # A second client of the same connection starts from the vault: the rotated tokens, no refresh.
    assert (
        resource_for(jira_cloud).client(platform, cloud_connection).fields()
        and len([p for p in sandbox_paths(jira_cloud) if p == "/oauth/token"]) == 2
    )


def test_a_rotated_away_refresh_token_fails_with_a_clear_error(platform, cloud_connection, jira_cloud) -> None:
    ref = cloud_connection.secret_ref("oauth_refresh_token")
    stale = platform.vault.get(ref).get_secret_value()
    jira_cloud.faults.inject("expire_token", count=1, path_prefix="/ex/jira/")
    resource_for(jira_cloud).client(platform, cloud_connection).fields()  # rotates `stale` away
    platform.vault.put(ref, stale)  # e.g. a restored backup of the vault
    jira_cloud.site.advance(timedelta(seconds=REUSE_LEEWAY + 1))  # past Atlassian's reuse leeway
    jira_cloud.faults.inject("expire_token", count=1, path_prefix="/ex/jira/")
    with pytest.raises(
        AuthError, match=r"rotated away by another refresh or the grant was revoked.*authorized again"
    ) as error:
        resource_for(jira_cloud).client(platform, cloud_connection).fields()
    assert stale not in str(error.value)
    assert jira_cloud.app.oauth.family_revoked(stale)  # Atlassian treats reuse as a leak and kills the grant


TOKEN_FAULTS = [
    pytest.param({"kind": "drop", "when": "after"}, id="answer lost after Atlassian rotated"),
    pytest.param({"kind": "drop", "when": "before"}, id="connection dropped before Atlassian saw it"),
    pytest.param({"kind": "server_error", "status": 502}, id="502 from the token endpoint"),
    pytest.param({"kind": "slow", "delay": 0.3}, id="slow token endpoint"),
]


@pytest.mark.parametrize("fault", TOKEN_FAULTS)
def test_a_refresh_that_fails_in_transit_is_retried_without_burning_the_grant(
    platform, cloud_connection, jira_cloud, fault
) -> None:
    """The refresh POST is retried with the same refresh token. When Atlassian had already rotated it (the
    answer was lost), its reuse leeway answers the retry with a fresh pair; the grant lives on."""
    refs = cloud_connection.secret_ref("oauth_refresh_token"), cloud_connection.secret_ref("oauth_access_token")
    old_refresh = platform.vault.get(refs[0]).get_secret_value()
    jira_cloud.faults.inject("expire_token", count=1, path_prefix="/ex/jira/")
    jira_cloud.faults.inject(count=1, path_prefix="/oauth/token", **fault)
    mark = len(jira_cloud.requests)

    client = resource_for(jira_cloud).client(platform, cloud_connection)
    assert client.fields()

    presented = [r.json()["refresh_token"] for r in jira_cloud.requests[mark:] if r.path == "/oauth/token"]
    assert presented == ([old_refresh] * (1 if fault["kind"] == "slow" else 2))
    assert client.refreshes == 1
    new_refresh, new_access = (platform.vault.get(ref).get_secret_value() for ref in refs)
    assert new_refresh != old_refresh and not jira_cloud.app.oauth.family_revoked(new_refresh)
    assert jira_cloud.app.oauth.access_grant(new_access) is not None
    # The stored pair keeps working: the next refresh rotates it normally.
    jira_cloud.faults.inject("expire_token", count=1, path_prefix="/ex/jira/")
    assert resource_for(jira_cloud).client(platform, cloud_connection).fields()
    assert not jira_cloud.app.oauth.family_revoked(platform.vault.get(refs[0]).get_secret_value())


def test_a_token_refused_again_right_after_a_refresh_is_refreshed_again_but_not_forever(
    platform, cloud_connection, jira_cloud
) -> None:
    from dfx_pipelines.connectors.jira.client import MAX_REFRESHES_PER_CALL

    jira_cloud.faults.inject("expire_token", count=2, path_prefix="/ex/jira/")
    client = resource_for(jira_cloud).client(platform, cloud_connection)
    assert client.fields() and client.refreshes == 2
    jira_cloud.faults.inject("expire_token", count=None, path_prefix="/ex/jira/")
    mark = len(jira_cloud.requests)
    with pytest.raises(AuthError, match=f"refused even after {MAX_REFRESHES_PER_CALL} refreshes"):
        client.fields()
    assert sandbox_paths(jira_cloud, mark).count("/oauth/token") == MAX_REFRESHES_PER_CALL
    assert not jira_cloud.app.oauth.family_revoked(
        platform.vault.get(cloud_connection.secret_ref("oauth_refresh_token")).get_secret_value()
    )


def test_the_sandbox_honours_atlassians_reuse_leeway_and_no_more(platform, cloud_connection, jira_cloud) -> None:
    """Within 10 minutes the token just rotated away is exchanged again; past that, reuse kills the grant."""
    app, session = jira_cloud.app.oauth, oauth.token_session(jira_cloud.ca_pem_path)

    def refresh(token: str) -> str:
        tokens = oauth.refresh(
            session, jira_cloud.auth_url, app.client_id, app.client_secret, token, sandbox_allowed=True
        )
        return tokens.refresh_token.get_secret_value()

    original = platform.vault.get(cloud_connection.secret_ref("oauth_refresh_token")).get_secret_value()
    lost = refresh(original)  # Atlassian rotated; say its answer never arrived
    jira_cloud.site.advance(timedelta(seconds=REUSE_LEEWAY - 60))
    retried = refresh(original)  # within the leeway: a fresh pair of the same grant
    assert retried != lost and not app.family_revoked(retried)
    newer = refresh(retried)
    jira_cloud.site.advance(timedelta(seconds=REUSE_LEEWAY + 1))
    with pytest.raises(AuthError, match="invalid_grant"):
        refresh(retried)  # past the leeway: reuse of a rotated token is taken for a leak
    assert app.family_revoked(newer)


def test_a_revoked_connection_fails_at_the_first_step_with_no_request(
    platform, cloud_connection, jira_cloud, dagster_instance
) -> None:
    platform.registry.set_status(cloud_connection.id, ConnectionStatus.REVOKED)
    before = len(jira_cloud.requests)
    result = Materializer(platform, resource_for(jira_cloud), dagster_instance)(
        ["issue_count"], partition_key=cloud_connection.id, raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.event_specific_data.error
    assert (
        error.cause.cls_name == "ConnectionInactiveError"
        and "is revoked: no data is read from it" in error.cause.message
    )
    assert jira_cloud.requests[before:] == []


def test_tokens_go_only_to_atlassian_hosts(vendor_dns: list[str]) -> None:
    cloud_id = "c9e5fda1-f8a5-5b25-af2a-cf53be1f99d7"
    assert (
        auth.check_gateway_base(f"https://api.atlassian.com/ex/jira/{cloud_id}", sandbox_allowed=False)
        == f"https://api.atlassian.com/ex/jira/{cloud_id}"
    )
    for bad in (
        f"https://api.atlassian.com.evil.test/ex/jira/{cloud_id}",
        f"https://evil.test/ex/jira/{cloud_id}",
        "https://api.atlassian.com/ex/jira/../../steal",
        f"https://api.atlassian.com:8443/ex/jira/{cloud_id}",
        f"https://127.0.0.1:9/ex/jira/{cloud_id}",  # the sandbox host, in production
    ):
        with pytest.raises(UnsafeDestinationError):
            auth.check_gateway_base(bad, sandbox_allowed=False)
    assert auth.check_cloud_site("https://acme.atlassian.net", sandbox_allowed=False) == "https://acme.atlassian.net"
    for bad in (
        "https://atlassian.net",
        "https://acme.atlassian.net.evil.test",
        "http://acme.atlassian.net",
        "https://acme.atlassian.net/x?y=1",
    ):
        with pytest.raises(UnsafeDestinationError):
            auth.check_cloud_site(bad, sandbox_allowed=False)


def test_production_refuses_the_sandbox_and_private_addresses_need_the_allowance(platform: Platform) -> None:
    settings = ConnectionSettings()
    loopback = {"flavour": "datacenter", "auth": "pat", "api_base": "https://127.0.0.1:8443"}
    with pytest.raises(UnsafeDestinationError, match="loopback"):
        checked_base(loopback, settings, sandbox_allowed=False)
    private = {"flavour": "datacenter", "auth": "pat", "api_base": "https://10.0.0.7/jira"}
    with pytest.raises(UnsafeDestinationError, match="allow_private_address"):
        checked_base(private, settings, sandbox_allowed=False)
    assert (
        checked_base(private, ConnectionSettings(allow_private_address=True), sandbox_allowed=False)
        == "https://10.0.0.7/jira"
    )
    mapped_metadata = {**private, "api_base": "https://[::ffff:169.254.169.254]"}
    with pytest.raises(UnsafeDestinationError, match="metadata"):
        checked_base(mapped_metadata, ConnectionSettings(allow_private_address=True), sandbox_allowed=False)
    production = dataclasses.replace(platform.settings, mode="production")
    assert not production.sandbox_allowed


def test_scopes_allowlist() -> None:
    assert auth.check_scopes(auth.REQUIRED_SCOPES) == auth.REQUIRED_SCOPES
    assert auth.check_scopes(auth.REQUIRED_SCOPES | {"read:jql:jira"})  # read-only extras are fine
    for extra, message in (("delete:issue:jira", "write/manage"), ("read:me", "outside the read-only allowlist")):
        with pytest.raises(AuthError, match=message):
            auth.check_scopes(auth.REQUIRED_SCOPES | {extra})
