"""Connecting Jira: Cloud OAuth 3LO (state, PKCE, read-only scopes, cloud id) and Data Center tokens, the
selection checked against the site, custom fields discovered, and nothing stored — and no request sent
where none should go — when something is wrong."""

from pathlib import Path

import pytest

from dfx_pipelines.connectors.jira.sandbox.server import READ_SCOPES
from dfx_pipelines.platform.errors import AuthError, ConfigError, IdentifierError, UnsafeDestinationError
from dfx_pipelines.platform.registry import Workspace

from .conftest import connect_cloud, connect_datacenter, make_sandbox, sandbox_paths


def assert_nothing_stored(platform, slug: str = "jira-acme") -> None:
    assert platform.registry.find(slug) is None
    assert platform.vault.data_key_id("acme", slug) is None


def test_cloud_oauth_connect_keeps_tokens_only_in_the_vault_and_discovers_fields(
    platform, workspace: Workspace, jira_cloud
) -> None:
    connection = connect_cloud(platform, jira_cloud)
    assert connection.endpoint["api_base"] == f"{jira_cloud.url}/ex/jira/{jira_cloud.cloud_id}"
    assert connection.endpoint["cloud_id"] == jira_cloud.cloud_id
    fields = connection.discovered["fields"]
    assert (
        fields["customfield_10016"]["name"] == "Story point estimate"
        and fields["customfield_10016"]["schema"]["type"] == "number"
    )
    assert fields["customfield_10001"]["name"] == "Team" and "summary" not in fields  # custom fields only
    assert connection.discovered["sprint_field"] == "customfield_10020"
    assert connection.discovered["boards"]["1"] == {"project": "ALPHA", "type": "scrum", "name": "ALPHA board"}
    assert connection.discovered["projects"]["OPS"]["type"] == "service_desk"
    access = platform.vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
    refresh = platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value()
    assert jira_cloud.app.oauth.access_grant(access) is not None
    raw = Path(platform.settings.metrics_db_url.removeprefix("sqlite:///")).read_bytes()
    assert access.encode() not in raw and refresh.encode() not in raw
    # The 3LO flow as Atlassian wants it: state + S256 challenge on authorize, the verifier on exchange.
    authorize = next(r for r in jira_cloud.requests if r.path == "/authorize")
    assert (
        authorize.arg("code_challenge_method") == "S256"
        and authorize.arg("state")
        and authorize.arg("audience") == "api.atlassian.com"
    )
    assert set(authorize.arg("scope").split()) <= set(READ_SCOPES.split())
    token_call = [r for r in jira_cloud.requests if r.path == "/oauth/token"][-1]
    assert len(token_call.json()["code_verifier"]) >= 43


def test_datacenter_token_connect(platform, workspace: Workspace) -> None:
    with make_sandbox("datacenter") as datacenter:
        connection = connect_datacenter(platform, datacenter)
        assert connection.endpoint == {"flavour": "datacenter", "auth": "pat", "api_base": datacenter.url}
        assert (
            platform.vault.get(connection.secret_ref("api_token")).get_secret_value()
            == datacenter.personal_access_token
        )
        assert connection.discovered["fields"]["customfield_10016"]["name"] == "Story Points"
        assert connection.discovered["epic_link_field"] == "customfield_10014"
        with pytest.raises(AuthError, match="401"):
            connect_datacenter(platform, datacenter, personal_access_token="not-the-token", config={"id": "jira-dc2"})
        assert_nothing_stored(platform, "jira-dc2")


@pytest.mark.parametrize("extra", ["write:jira-work", "manage:jira-project", "write:sprint:jira-software"])
def test_a_grant_with_a_write_scope_is_refused_before_it_is_used(platform, workspace: Workspace, extra: str) -> None:
    with make_sandbox(granted_scopes=f"{READ_SCOPES} {extra}") as sandbox:
        with pytest.raises(AuthError, match=rf"write/manage scopes \['{extra}'\]"):
            connect_cloud(platform, sandbox)
        assert_nothing_stored(platform)
        paths = sandbox_paths(sandbox)
        assert paths[-1] == "/oauth/token"  # nothing after the token: no accessible-resources, no API call
        assert not any(path.startswith("/ex/jira/") for path in paths)


def test_a_grant_missing_a_needed_scope_is_refused(platform, workspace: Workspace) -> None:
    with make_sandbox(granted_scopes="read:jira-work offline_access") as sandbox:
        with pytest.raises(AuthError, match="missing"):
            connect_cloud(platform, sandbox)
        assert_nothing_stored(platform)


@pytest.mark.parametrize(
    "selection, error",
    [
        ({"projects": ['ABC" OR project is not EMPTY']}, "Jira project key"),
        ({"projects": ["ALPHA", "alpha) OR (1=1"]}, "Jira project key"),
        ({"projects": ["ALPHA"], "boards": ["1; DROP"]}, "board"),
        ({"projects": ["ALPHA"], "boards": [-1]}, "board"),
    ],
)
def test_hostile_project_keys_and_board_ids_are_refused_before_any_request(
    platform, workspace: Workspace, jira_cloud, selection: dict, error: str
) -> None:
    before = len(jira_cloud.requests)
    with pytest.raises((ConfigError, IdentifierError), match=error):
        connect_cloud(platform, jira_cloud, config={"selection": selection})
    with pytest.raises((ConfigError, IdentifierError), match=error):
        connect_datacenter(platform, jira_cloud, config={"selection": selection})
    assert jira_cloud.requests[before:] == []
    assert_nothing_stored(platform)


@pytest.mark.parametrize(
    "base_url, allow, error",
    [
        ("https://10.20.30.40", False, "non-public address"),
        ("https://192.168.1.10/jira", False, "non-public address"),
        ("https://[fd12::1]", False, "non-public address"),
        ("https://169.254.169.254", False, "metadata"),
        ("https://169.254.169.254", True, "metadata"),  # never, whatever the allowance
        ("http://jira.example.com", True, "https"),
        ("https://user:pw@jira.example.com", True, "no user name or password"),
    ],
)
def test_datacenter_urls_on_private_or_metadata_addresses_are_refused_with_no_request(
    platform, workspace: Workspace, jira_cloud, base_url: str, allow: bool, error: str
) -> None:
    before = len(jira_cloud.requests)
    with pytest.raises(UnsafeDestinationError, match=error):
        connect_datacenter(
            platform, jira_cloud, base_url=base_url, config={"settings": {"allow_private_address": allow}}
        )
    assert jira_cloud.requests[before:] == []
    assert_nothing_stored(platform, "jira-dc")


@pytest.mark.parametrize(
    "where, url, error",
    [
        ("auth_url", "https://auth.atlassian.com.evil.test", "is not auth.atlassian.com"),
        ("api_origin", "https://evil.test", "is not api.atlassian.com"),
        ("auth_url", "http://127.0.0.1:1", "https"),
    ],
)
def test_oauth_hosts_other_than_atlassians_are_refused_before_consent(
    platform, workspace: Workspace, jira_cloud, where: str, url: str, error: str
) -> None:
    before = len(jira_cloud.requests)
    with pytest.raises(UnsafeDestinationError, match=error):
        connect_cloud(platform, jira_cloud, **{where: url})
    assert jira_cloud.requests[before:] == []


@pytest.mark.parametrize(
    "config, problem",
    [
        (
            {"field_mapper": [{"target": "story_points", "source": "customfield_99999"}]},
            "customfield_99999: not a custom field discovered",
        ),
        (
            {"field_mapper": [{"target": "story_points", "source": "customfield_10001"}]},
            "story points must map a number field",
        ),
        (
            {"selection": {"projects": ["ALPHA"], "boards": [2]}},
            "board 2 belongs to project BETA, which is not selected",
        ),
        ({"selection": {"projects": ["ALPHA", "NOPE"]}}, "project NOPE is not visible"),
        ({"selection": {"projects": ["ALPHA"], "boards": [99]}}, "board 99 is not visible"),
    ],
)
def test_selection_and_field_mapper_are_checked_against_the_site(
    platform, workspace: Workspace, jira_cloud, config: dict, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        connect_cloud(platform, jira_cloud, config={"field_mapper": [], **config})
    assert_nothing_stored(platform)


def test_a_project_hidden_from_the_account_is_refused(platform, workspace: Workspace) -> None:
    with make_sandbox(hidden_projects=("BETA",)) as sandbox:
        with pytest.raises(ConfigError, match=r"project BETA is not visible.*board 2 is not visible"):
            connect_cloud(platform, sandbox)
        assert_nothing_stored(platform)


def test_the_plugin_connects_the_demo_through_oauth(platform, workspace: Workspace, tmp_path) -> None:
    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.platform.sandbox import SandboxCA

    jira = plugin("jira")
    sandbox = jira.start_sandbox(SandboxCA(tmp_path / "ca"), scale=120)
    try:
        connection = jira.connect_demo(platform, sandbox, "acme")
        assert connection.endpoint["auth"] == "oauth" and connection.mapped_field("story_points") == "customfield_10016"
        assert connection.id == jira.connect_demo(platform, sandbox, "acme").id  # reconnecting the demo re-authorizes
        runs = jira.demo_runs(connection, 7)
        assert [run.job_name for run in runs] == ["jira_snapshot_job", "jira_daily_job"]
        revocation = jira.revoke_at_provider(platform, connection)
        assert not revocation.provider_revoked and "no revoke endpoint" in revocation.detail
    finally:
        sandbox.stop()
