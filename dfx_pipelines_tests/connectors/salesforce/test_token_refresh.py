"""A Salesforce token refresh that fails in transit (connection dropped before or after the org acted, a
5xx, a slow answer) is retried, and the run goes on with the new access token stored. Safe because a
Salesforce refresh does not retire the refresh token it was given."""

import pytest

from dfx_pipelines.connectors.salesforce.resource import SalesforceResource

TOKEN_PATH = "/services/oauth2/token"


@pytest.mark.parametrize("fault", [
    pytest.param({"kind": "drop", "when": "before"}, id="dropped before the org saw it"),
    pytest.param({"kind": "drop", "when": "after"}, id="answer lost after the org refreshed"),
    pytest.param({"kind": "server_error", "status": 500}, id="500 from the token endpoint"),
    pytest.param({"kind": "rate_limit", "retry_after": 0}, id="429 from the token endpoint"),
])  # fmt: skip
def test_a_refresh_that_fails_in_transit_is_retried(platform, sf_sandbox, sf_connection, fault) -> None:
    access_ref = sf_connection.secret_ref("oauth_access_token")
    old_access = platform.vault.get(access_ref).get_secret_value()
    sf_sandbox.app.oauth.expire_all_access_tokens()
    sf_sandbox.server.faults.inject(count=1, path_prefix=TOKEN_PATH, **fault)
    mark = len(sf_sandbox.server.requests)
    resource = SalesforceResource(
        client_id=sf_sandbox.app.oauth.client_id, sandbox_ca_path=sf_sandbox.ca_pem_path, retry_backoff_seconds=0.01
    )
    client = resource.client(platform, sf_connection)

    rows = client.aggregate("SELECT COUNT(Id) recordCount FROM Opportunity")

    assert rows and rows[0]["recordCount"] > 0
    assert client.stats.refreshes == 1
    token_calls = [r.form()["grant_type"] for r in sf_sandbox.server.requests[mark:] if r.path == TOKEN_PATH]
    assert token_calls == ["refresh_token", "refresh_token"]
    new_access = platform.vault.get(access_ref).get_secret_value()
    assert new_access != old_access and sf_sandbox.app.oauth.access_grant(new_access) is not None
    assert client.api_calls == len(sf_sandbox.server.requests) - mark  # the token calls are counted too


def test_a_token_expiring_again_right_after_a_refresh_is_refreshed_again_but_not_forever(
    platform, sf_sandbox, sf_connection
) -> None:
    from dfx_pipelines.connectors.salesforce.resource import MAX_REFRESHES_PER_CALL
    from dfx_pipelines.platform.errors import AuthError

    resource = SalesforceResource(
        client_id=sf_sandbox.app.oauth.client_id, sandbox_ca_path=sf_sandbox.ca_pem_path, retry_backoff_seconds=0.01
    )
    sf_sandbox.server.faults.inject("expire_token", count=2, path_prefix="/services/data/")
    client = resource.client(platform, sf_connection)
    assert client.aggregate("SELECT COUNT(Id) recordCount FROM Opportunity")[0]["recordCount"] > 0
    assert client.stats.refreshes == 2

    sf_sandbox.server.faults.inject("expire_token", count=None, path_prefix="/services/data/")
    mark = len(sf_sandbox.server.requests)
    with pytest.raises(AuthError, match=f"still invalid after {MAX_REFRESHES_PER_CALL} token refreshes"):
        client.aggregate("SELECT COUNT(Id) recordCount FROM Opportunity")
    token_calls = [r for r in sf_sandbox.server.requests[mark:] if r.path == TOKEN_PATH]
    assert len(token_calls) == MAX_REFRESHES_PER_CALL
