"""Bad input gets one clear line and changes nothing. Every case runs the real `dfx` in a subprocess,
as a user would, and asserts the four rules at once: exit status 2 for bad input and 1 for a failed
operation; one line naming the problem (no traceback); no secret or OAuth `state` in it; and the
registry, vault and metric store byte-for-byte as before."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest

from dfx_pipelines.connectors.bigquery.sandbox.auth import generate_service_account_key
from dfx_pipelines.platform.db import dispose_engine
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.registry import Workspace, parse_connection
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings

CANARY_SECRET = "canary-refresh-token-8d1f"
PG_PASSWORD = "pgpasswordcanary55e2"
MASTER_KEY_CANARY = "not-base64-master-key-canary!!"


@pytest.fixture
def seeded(platform: Platform, workspace: Workspace, settings: Settings) -> Iterator[Settings]:
    """A home with a workspace, a connection holding a secret and a stored metric: the state to protect."""
    connection = platform.registry.add_connection(
        parse_connection({"id": "sf-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "Acme SF"}),
        vault=platform.vault,
        secrets={"oauth_refresh_token": CANARY_SECRET},
    )
    platform.metric_store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        [MetricRow("win_rate", "win_rate_by_count", 0.25, date(2026, 11, 25), MetricRow.dims(owner="Ann"))],
        Provenance("run-1", "SELECT IsWon, COUNT(Id) n FROM Opportunity GROUP BY IsWon"),
    )
    dispose_engine(settings.metrics_db_url)
    yield settings


def snapshot(home: Path) -> dict[str, str]:
    """Every file under the home (metric database, vault, master key) by content hash."""
    return {
        str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(home.rglob("*"))
        if p.is_file() and "sandbox" not in p.relative_to(home).parts
    }


class Blackhole:
    """A loopback TCP server that accepts connections and never answers: an unreachable host that hangs."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stopped = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                continue

    def close(self) -> None:
        self.stopped.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@dataclass
class Case:
    name: str
    args: list[str]
    exit_code: int
    says: str  # a fragment the one line must contain
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None
    within_s: float = 60.0  # generous: catches a hang, not a slow start on a busy machine


def _file_in_the_way(tmp: Path) -> None:
    (tmp / "afile").write_text("not a folder")


def _bad_json(tmp: Path) -> None:
    (tmp / "bad.json").write_text('{"Opportunity": ["Amount",]}')


def _corrupt_a_data_key(tmp: Path) -> None:
    home = tmp / "dfx_home"
    [record] = list((home / "vault" / "datakeys").rglob("*.json"))
    record.write_text(record.read_text().replace('"wrapped": "', '"wrapped": "AAAA'))


def _bigquery_key(tmp: Path, token_uri: str) -> None:
    (tmp / "key.json").write_text(json.dumps(generate_service_account_key("acme-analytics", token_uri)))


BQ_CONNECT = [
    "bigquery",
    "connect",
    "--workspace",
    "acme",
    "--id",
    "bq-acme",
    "--name",
    "BQ",
    "--select",
    "shop:orders",
]
SF_CONNECT = [
    "connect",
    "salesforce",
    "--workspace",
    "acme",
    "--id",
    "sf-new",
    "--name",
    "SF",
    "--select",
    "Opportunity:Amount",
]

CASES = [
    Case(
        "sqlite path not writable",
        ["connections", "list"],
        2,
        "DFX_METRICS_DB_URL",
        {"DFX_METRICS_DB_URL": "sqlite:///{tmp}/afile/metrics.db"},
        _file_in_the_way,
    ),
    Case(
        "postgresql host wrong",
        ["connections", "list"],
        2,
        "127.0.0.1:1",
        {"DFX_METRICS_DB_URL": f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:1/test"},
    ),
    Case(
        "postgresql database wrong",
        ["metrics", "show"],
        2,
        "dfx_no_such_database",
        {"DFX_METRICS_DB_URL": f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:5432/dfx_no_such_database"},
    ),
    Case(
        "metrics database url malformed",
        ["connections", "list"],
        2,
        "DFX_METRICS_DB_URL",
        {"DFX_METRICS_DB_URL": "not a url"},
    ),
    Case(
        "vault folder cannot be written",
        ["vault", "rotate-master-key"],
        2,
        "DFX_VAULT_DIR",
        {"DFX_VAULT_DIR": "{tmp}/afile/vault"},
        _file_in_the_way,
    ),
    Case(
        "selection file not JSON",
        SF_CONNECT + ["--selection-file", "{tmp}/bad.json", "--approve-sandbox", "--login-url", "https://127.0.0.1:1"],
        2,
        "bad.json",
        {},
        _bad_json,
    ),
    Case(
        "metric specs not JSON",
        BQ_CONNECT + ["--key-file", "{tmp}/bad.json", "--metric-specs", "{tmp}/bad.json"],
        2,
        "bad.json",
        {},
        _bad_json,
    ),
    Case("fault spec with a bad number", ["sandbox", "serve", "--fault", "rate_limit:count=three"], 2, "count"),
    Case(
        "fault spec with an unknown kind", ["sandbox", "serve", "--fault", "meteor_strike:count=1"], 2, "meteor_strike"
    ),
    Case(
        "fault spec with a probability above 1",
        ["sandbox", "serve", "--fault", "server_error:probability=7"],
        2,
        "probability",
    ),
    Case(
        "login url unreachable with sandbox consent",
        SF_CONNECT + ["--approve-sandbox", "--login-url", "https://127.0.0.1:1"],
        1,
        "127.0.0.1:1",
    ),
    Case(
        "budget infinite",
        BQ_CONNECT + ["--key-file", "{tmp}/key.json", "--budget-usd", "inf"],
        2,
        "--budget-usd",
        {},
        lambda t: _bigquery_key(t, "https://127.0.0.1:1/token"),
    ),
    Case(
        "budget not a number",
        BQ_CONNECT + ["--key-file", "{tmp}/key.json", "--budget-usd", "nan"],
        2,
        "--budget-usd",
        {},
        lambda t: _bigquery_key(t, "https://127.0.0.1:1/token"),
    ),
    Case(
        "budget negative",
        BQ_CONNECT + ["--key-file", "{tmp}/key.json", "--budget-usd", "-5"],
        2,
        "--budget-usd",
        {},
        lambda t: _bigquery_key(t, "https://127.0.0.1:1/token"),
    ),
    Case(
        "budget absurd",
        BQ_CONNECT + ["--key-file", "{tmp}/key.json", "--budget-usd", "1e300"],
        2,
        "--budget-usd",
        {},
        lambda t: _bigquery_key(t, "https://127.0.0.1:1/token"),
    ),
    Case(
        "price per TiB not finite",
        BQ_CONNECT + ["--key-file", "{tmp}/key.json", "--price-per-tib-usd", "inf"],
        2,
        "--price-per-tib-usd",
        {},
        lambda t: _bigquery_key(t, "https://127.0.0.1:1/token"),
    ),
    Case(
        "master key rotation that cannot complete",
        ["vault", "rotate-master-key"],
        1,
        "sf-acme",
        {},
        _corrupt_a_data_key,
    ),
    Case(
        "malformed master key in production",
        ["connections", "list"],
        2,
        "DFX_MASTER_KEY",
        {
            "DFX_MODE": "production",
            "DFX_MASTER_KEY": MASTER_KEY_CANARY,
            "DFX_METRICS_DB_URL": f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:5432/test",
        },
    ),
    Case(
        "production with the embedded SQLite metric database",
        ["connections", "list"],
        2,
        "DFX_METRICS_DB_URL",
        {"DFX_MODE": "production", "DFX_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8="},
    ),
    Case(
        "malformed master key, even for a command that opens no vault",
        ["metrics", "show"],
        2,
        "DFX_MASTER_KEY",
        {"DFX_MASTER_KEY": MASTER_KEY_CANARY},
    ),
]


def run_dfx(args: list[str], env: dict[str, str], timeout: float) -> tuple[subprocess.CompletedProcess[str], float]:
    import os

    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dfx_pipelines.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return result, time.monotonic() - began


def assert_one_clear_line(result: subprocess.CompletedProcess[str], case_says: str, exit_code: int) -> str:
    assert result.returncode == exit_code, (
        f"exit {result.returncode}, wanted {exit_code}\n{result.stdout}\n{result.stderr}"
    )
    errors = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("WARNING ")]
    assert len(errors) == 1, f"expected one line, got:\n{result.stderr}"
    [line] = errors
    assert line.startswith("error: "), line
    assert "Traceback" not in result.stderr + result.stdout
    assert case_says in line, f"{case_says!r} not named in: {line}"
    for secret in (CANARY_SECRET, PG_PASSWORD, MASTER_KEY_CANARY, "state="):
        assert secret not in result.stderr + result.stdout, f"{secret!r} leaked: {line}"
    return line


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_one_clear_line_and_changes_nothing(case: Case, seeded: Settings, tmp_path: Path) -> None:
    if case.prepare:
        case.prepare(tmp_path)
    before = snapshot(seeded.home)
    env = {k: v.replace("{tmp}", str(tmp_path)) for k, v in case.env.items()}
    args = [a.replace("{tmp}", str(tmp_path)) for a in case.args]
    result, seconds = run_dfx(args, env, timeout=case.within_s + 30)
    assert seconds < case.within_s, f"took {seconds:.1f}s"
    assert_one_clear_line(result, case.says, case.exit_code)
    assert snapshot(seeded.home) == before


def test_an_unreachable_google_fails_within_30_seconds_naming_the_host(seeded: Settings, tmp_path: Path) -> None:
    """Every network call has a timeout: a host that accepts and never answers fails the connect command
    quickly, naming the host, rather than hanging for Google's default retry deadline."""
    # The interpreter's own start and the imports the connect command loads (Dagster, the connectors' code and
    # clients), on this machine now: plugins import those only when a command needs them.
    began = time.monotonic()
    warm = "import dfx_pipelines.cli, dfx_pipelines.definitions, dfx_pipelines.connectors.bigquery.connect"
    subprocess.run([sys.executable, "-c", warm], check=True, capture_output=True, timeout=90)
    startup = time.monotonic() - began
    hole = Blackhole()
    try:
        _bigquery_key(tmp_path, f"https://127.0.0.1:{hole.port}/token")
        before = snapshot(seeded.home)
        args = BQ_CONNECT + [
            "--key-file",
            str(tmp_path / "key.json"),
            "--budget-usd",
            "10",
            "--api-endpoint",
            f"https://127.0.0.1:{hole.port}",
        ]
        result, seconds = run_dfx(args, {}, timeout=90)
    finally:
        hole.close()
    assert seconds - startup < 25, f"took {seconds:.1f}s ({startup:.1f}s of it starting Python)"
    assert_one_clear_line(result, f"127.0.0.1:{hole.port}", 1)
    assert snapshot(seeded.home) == before


def test_verbose_shows_the_traceback_redacted(seeded: Settings, tmp_path: Path) -> None:
    """-v is for the engineer debugging: the traceback appears, and still carries no secret."""
    url = f"postgresql+psycopg2://postgres:{PG_PASSWORD}@127.0.0.1:1/test"
    result, _ = run_dfx(["-v", "connections", "list"], {"DFX_METRICS_DB_URL": url}, timeout=60)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert PG_PASSWORD not in result.stderr + result.stdout
