"""`dfx sandbox serve` as a new user meets it: it prints, for each sandbox, a ready-to-paste connect
command with the credentials the sandbox accepts (the BigQuery key in a 0600 file under the sandbox
folder, Jira Cloud or Data Center), and pasting those lines into a shell connects every source. In
production it refuses to start, as the clients refuse the sandboxes there."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx_pipelines.cli import main

BIN = Path(sys.executable).parent


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "SALESFORCE_", "JIRA_"))}
    env.update(DFX_HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}")
    return env


def _serve(home: Path, *flags: str) -> tuple[subprocess.Popen, list[str]]:
    """Start `dfx sandbox serve` and return it with the commands it prints (until the last one)."""
    process = subprocess.Popen(
        [str(BIN / "dfx"), "sandbox", "serve", "--scale", "200", *flags],
        env=_environment(home),
        stdout=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + 120
    while (
        time.monotonic() < deadline
        and sum(line.lstrip().startswith(("dfx connect", "SALESFORCE_", "JIRA_", "DFX_POSTGRES_")) for line in lines)
        < 4
    ):
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
    return process, [line.strip() for line in lines if line.startswith("  ")]


def _paste(home: Path, command: str) -> subprocess.CompletedProcess:
    """Exactly what a user does: paste the printed line into a shell."""
    return subprocess.run(
        ["bash", "-c", command],
        env=_environment(home),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
        cwd=home,
    )


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_printed_connect_commands_connect_every_sandbox(tmp_path: Path, flavour: str) -> None:
    home = tmp_path / "home"
    process, commands = _serve(home, "--jira-flavour", flavour)
    try:
        assert len(commands) == 5, commands  # the workspace, then one per connector
        assert commands[0].startswith("dfx workspace create sandbox")
        [key_file] = [Path(c.split("--key-file ", 1)[1].split()[0]) for c in commands if "--key-file" in c]
        assert key_file.parent == home / "sandbox" and key_file.stat().st_mode & 0o777 == 0o600
        outputs = []
        # Data Center changes only Jira's line: the others are proven by the cloud case (saves minutes).
        for command in commands if flavour == "cloud" else commands[:1] + commands[2:3]:
            result = _paste(home, command)
            assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
            outputs.append(result.stdout)
        listed = _paste(home, "dfx connections list")
    finally:
        process.terminate()
        process.wait(timeout=30)
    if flavour == "datacenter":
        assert "JIRA_API_TOKEN=" in commands[2] and "--base-url" in commands[2]
        assert "connected jira-datacenter-sandbox to https://127.0.0.1:" in outputs[1]
        assert "jira-datacenter-sandbox" in listed.stdout
        return
    assert "--cloud" in commands[2] and "--approve-sandbox" in commands[2]
    assert "connected sf-sandbox to https://127.0.0.1:" in outputs[1]
    assert "connected jira-cloud-sandbox to https://127.0.0.1:" in outputs[2]
    assert "connected bq-sandbox to project" in outputs[3]
    assert "connected pg-sandbox to customer on 127.0.0.1 as dfx_reader" in outputs[4]
    for connection in ("sf-sandbox", "jira-cloud-sandbox", "bq-sandbox", "pg-sandbox"):
        assert connection in listed.stdout and "active" in listed.stdout


def test_the_sandbox_flags_are_documented_in_help() -> None:
    runner = CliRunner()
    assert "--approve-sandbox" in runner.invoke(main, ["connect", "salesforce", "--help"]).output
    jira = runner.invoke(main, ["connect", "jira", "--help"]).output
    assert "--sandbox-url" in jira and "--approve-sandbox" in jira
    assert "--api-endpoint" in runner.invoke(main, ["connect", "bigquery", "--help"]).output
    assert "--jira-flavour" in runner.invoke(main, ["sandbox", "serve", "--help"]).output


def test_serve_refuses_production(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DFX_MODE", "production")
    monkeypatch.setenv("DFX_MASTER_KEY", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
    monkeypatch.setenv("DFX_HOME", str(tmp_path / "prod"))
    monkeypatch.setenv("DFX_METRICS_DB_URL", "postgresql+psycopg2://dfx@127.0.0.1:1/dfx")  # never reached
    result = CliRunner().invoke(main, ["sandbox", "serve"])
    assert result.exit_code == 2 and "refused in DFX_MODE=production" in result.output
    assert not (tmp_path / "prod" / "sandbox").exists()  # nothing started, no CA written
