"""The `dfx` command on the embedded default: metrics, connections, vault rotation, clear errors."""

import json
from datetime import date

import pytest
from click.testing import CliRunner

from dfx_pipelines.cli import main
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.registry import Workspace, parse_connection
from dfx_pipelines.platform.services import Platform, build_vault
from dfx_pipelines.platform.settings import Settings


@pytest.fixture
def seeded(platform: Platform, workspace: Workspace) -> Platform:
    connection = platform.registry.add_connection(
        parse_connection({"id": "sf-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "Acme SF"}),
        vault=platform.vault,
        secrets={"oauth_refresh_token": "refresh-token-for-rotation"},
    )
    platform.metric_store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        [MetricRow("win_rate", "win_rate_by_count", 0.25, date(2026, 11, 25), MetricRow.dims(owner="Ann"))],
        Provenance("run-1", "SELECT IsWon, COUNT(Id) n FROM Opportunity GROUP BY IsWon"),
    )
    return platform


def test_metrics_show_json(seeded: Platform) -> None:
    result = CliRunner().invoke(main, ["metrics", "show", "--json"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert (row["connection_id"], row["metric"], row["value"], row["dimensions"]) == (
        "sf-acme",
        "win_rate",
        0.25,
        {"owner": "Ann"},
    )


def test_metrics_show_table_and_unknown_connection(seeded: Platform) -> None:
    result = CliRunner().invoke(main, ["metrics", "show", "--connection", "sf-acme"])
    assert "win_rate_by_count" in result.output and "owner=Ann" in result.output
    result = CliRunner().invoke(main, ["metrics", "show", "--connection", "sf-ghost"])
    assert result.exit_code == 2 and "unknown connection 'sf-ghost'" in result.output


def test_connections_list(seeded: Platform) -> None:
    result = CliRunner().invoke(main, ["connections", "list", "--json"])
    assert json.loads(result.output) == [
        {"id": "sf-acme", "workspace": "acme", "kind": "salesforce", "name": "Acme SF", "status": "active"}
    ]


def test_vault_rotate_master_key_with_the_local_key_file(seeded: Platform, settings: Settings) -> None:
    before = build_vault(settings).keyring.active_id
    result = CliRunner().invoke(main, ["vault", "rotate-master-key"])
    assert result.exit_code == 0, result.output
    after = build_vault(settings)
    assert after.keyring.active_id != before and list(after.keyring.keys) == [after.keyring.active_id]
    connection = seeded.registry.get("sf-acme")
    assert after.get(connection.secret_ref("oauth_refresh_token")).get_secret_value() == "refresh-token-for-rotation"


def test_bad_environment_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFX_MODE", "staging")
    result = CliRunner().invoke(main, ["connections", "list"])
    assert result.exit_code == 2 and "DFX_MODE must be one of embedded, production" in result.output


def test_sandbox_serve_prints_its_servers_and_ca(tmp_path) -> None:
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))}
    env["DFX_HOME"] = str(tmp_path / "home")
    dfx = str(Path(sys.executable).with_name("dfx"))
    process = subprocess.Popen(
        [dfx, "sandbox", "serve", "--scale", "200", "--fault", "rate_limit:count=1,retry_after=0"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not any("CA certificate" in line for line in lines):
            lines.append(process.stdout.readline())
        output = "".join(lines)
        assert "echo" in output and "salesforce" in output and "https://127.0.0.1:" in output
        assert (tmp_path / "home/sandbox/sandbox-ca.pem").is_file()
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_every_connector_can_be_connected_from_dfx_connect() -> None:
    result = CliRunner().invoke(main, ["connect", "--help"])
    assert "salesforce" in result.output and "bigquery" in result.output
    assert "--key-file" in CliRunner().invoke(main, ["connect", "bigquery", "--help"]).output


def test_workspace_close_says_what_it_did_and_refuses_unknown_workspaces(
    platform: Platform, workspace: Workspace
) -> None:
    result = CliRunner().invoke(main, ["workspace", "close", "acme", "--actor", "ops"])
    assert result.exit_code == 0, result.output
    assert "workspace acme closed" in result.output and "no connection left to remove" in result.output
    assert "was already closed" in CliRunner().invoke(main, ["workspace", "close", "acme"]).output
    result = CliRunner().invoke(main, ["workspace", "close", "ghost"])
    assert result.exit_code == 2 and "unknown workspace 'ghost'" in result.output
