"""`dfx jira connect` (and `dfx connect jira`) against the sandbox: the CLI path a data engineer uses."""

from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx_pipelines.cli import main
from dfx_pipelines.platform.services import get_platform

from .conftest import make_sandbox

SELECTION_ARGS = [
    "--project", "ALPHA", "--project", "BETA", "--project", "OPS", "--board", "1", "--board", "2",
    "--map", "story_points=customfield_10016", "--map", "team=customfield_10001",
]  # fmt: skip


def _trust_sandbox_ca(platform, sandbox, monkeypatch) -> None:
    """The resource trusts the sandbox CA from the embedded default's sandbox folder."""
    monkeypatch.setenv("DFX_HOME", str(platform.settings.home))
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(sandbox.ca_pem_path).read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(platform.settings.home / "dagster_home"))
    (platform.settings.home / "dagster_home").mkdir(parents=True, exist_ok=True)


def test_cloud_connect_through_the_cli(platform, workspace, jira_cloud, monkeypatch) -> None:
    _trust_sandbox_ca(platform, jira_cloud, monkeypatch)
    args = ["jira", "connect", "--workspace", "acme", "--id", "jira-cli", "--name", "CLI site", *SELECTION_ARGS,
            "--cloud", "--sandbox-url", jira_cloud.url, "--approve-sandbox"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "connected jira-cli" in result.output and "tokens encrypted in the vault" in result.output
    connection = get_platform().registry.get("jira-cli")
    assert connection.selection.projects == ["ALPHA", "BETA", "OPS"] and connection.selection.boards == [1, 2]
    assert (
        connection.mapped_field("story_points") == "customfield_10016"
        and connection.mapped_field("team") == "customfield_10001"
    )
    assert connection.endpoint["auth"] == "oauth" and connection.endpoint["cloud_id"] == jira_cloud.cloud_id
    assert connection.discovered["fields"]["customfield_10016"]["schema"]["type"] == "number"
    assert connection.discovered["boards"]["1"]["project"] == "ALPHA"
    access = get_platform().vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
    assert jira_cloud.app.oauth.access_grant(access) is not None
    assert access not in result.output


def test_datacenter_connect_takes_the_token_from_the_environment(platform, workspace, monkeypatch) -> None:
    with make_sandbox("datacenter") as datacenter:
        _trust_sandbox_ca(platform, datacenter, monkeypatch)
        monkeypatch.setenv("JIRA_API_TOKEN", datacenter.personal_access_token)
        result = CliRunner().invoke(
            main,
            [
                "connect",
                "jira",
                "--workspace",
                "acme",
                "--id",
                "jira-dc-cli",
                "--name",
                "DC",
                *SELECTION_ARGS[:6],
                "--base-url",
                datacenter.url,
            ],
        )
        assert result.exit_code == 0, result.output
        connection = get_platform().registry.get("jira-dc-cli")
        assert connection.endpoint == {"flavour": "datacenter", "auth": "pat", "api_base": datacenter.url}
        assert (
            get_platform().vault.get(connection.secret_ref("api_token")).get_secret_value()
            == datacenter.personal_access_token
        )
        assert datacenter.personal_access_token not in result.output


@pytest.mark.parametrize(
    "extra, error",
    [
        (["--cloud", "--map", "story_points"], "expected target=customfield_id"),
        (["--cloud", "--board", "1; DROP"], "expected a numeric board id"),
        ([], "give either --cloud (OAuth 3LO) or --base-url (token)"),
        (["--cloud", "--approve-sandbox"], "only with the local sandbox"),
        (["--cloud", "--sandbox-url", "https://jira.example.com", "--approve-sandbox"], "only with the local sandbox"),
        (["--base-url", "https://acme.atlassian.net"], "needs --username"),
    ],
)
def test_bad_input_is_one_clear_line(platform, workspace, extra, error) -> None:
    result = CliRunner().invoke(
        main, ["jira", "connect", "--workspace", "acme", "--id", "jira-x", "--name", "x", "--project", "ALPHA", *extra]
    )
    assert result.exit_code == 2, result.output
    assert error in result.output and len(result.output.strip().splitlines()) == 1
    assert get_platform().registry.find("jira-x") is None


@pytest.mark.parametrize(
    "bad_token",
    ["{pat}\nsecond-line", "{pat}\r\nsecond-line", "{pat}\x1b[2Jsecond-line", "{pat}\u2028second-line", "{pat}\n"],
)
def test_a_token_with_a_control_character_is_refused_and_never_echoed(
    platform, workspace, monkeypatch, bad_token
) -> None:
    """A Jira token with a newline used to be accepted, and the text after the newline reached stderr
    (`Bearer [REDACTED]\\nsecond-line`). Now it is refused at input, before any request."""
    with make_sandbox("datacenter") as datacenter:
        _trust_sandbox_ca(platform, datacenter, monkeypatch)
        monkeypatch.setenv("JIRA_API_TOKEN", bad_token.format(pat=datacenter.personal_access_token))
        before = len(datacenter.requests)
        result = CliRunner().invoke(
            main,
            [
                "connect",
                "jira",
                "--workspace",
                "acme",
                "--id",
                "jira-dc-nl",
                "--name",
                "DC",
                *SELECTION_ARGS[:6],
                "--base-url",
                datacenter.url,
            ],
        )
        assert result.exit_code == 2, result.output
        assert "control character" in result.output and "JIRA_API_TOKEN" in result.output
        assert "second-line" not in result.output and datacenter.personal_access_token not in result.output
        assert datacenter.requests[before:] == []  # refused before anything was sent
        assert get_platform().registry.find("jira-dc-nl") is None


def test_a_token_typed_at_the_prompt_with_a_control_character_is_refused(platform, workspace, monkeypatch) -> None:
    monkeypatch.delenv("JIRA_API_TOKEN", raising=False)
    result = CliRunner().invoke(
        main,
        [
            "connect",
            "jira",
            "--workspace",
            "acme",
            "--id",
            "jira-dc-p",
            "--name",
            "DC",
            "--project",
            "ALPHA",
            "--base-url",
            "https://127.0.0.1:9",
        ],
        input="typed-token\x1bsecond-line\n",
    )
    assert result.exit_code == 2 and "control character" in result.output and "second-line" not in result.output


@pytest.mark.parametrize("board", ["²", "1²", "١", "１", " 1", "1\n", "+1"])
def test_unicode_digits_in_a_board_id_are_one_clear_line_not_a_traceback(platform, workspace, board) -> None:
    result = CliRunner().invoke(
        main,
        [
            "jira",
            "connect",
            "--workspace",
            "acme",
            "--id",
            "jira-x",
            "--name",
            "x",
            "--project",
            "ALPHA",
            "--cloud",
            "--board",
            board,
        ],
    )
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # the CLI's own clean exit, not an escaped ValueError
    assert "expected a numeric board id" in result.output and len(result.output.strip().splitlines()) == 1
