"""`dfx demo` on a fresh folder with no variable set: sandboxes, OAuth connect, sync jobs, stored metrics."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_demo_runs_end_to_end_on_the_embedded_default(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "SALESFORCE_"))}
    dfx = str(Path(sys.executable).with_name("dfx"))
    demo = subprocess.run(
        [dfx, "demo", "--days", "3", "--scale", "300"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "salesforce_snapshot_job [sf-demo] succeeded" in demo.stdout
    assert "salesforce_daily_job [sf-demo|" in demo.stdout and "FAILED" not in demo.stdout
    # Everything under one folder: Dagster's SQLite instance, the metric database, the vault and key.
    home = tmp_path / ".dfx"
    assert (home / "dagster_home").is_dir() and (home / "metrics.db").is_file() and (home / "vault").is_dir()
    assert oct((home / "master.key").stat().st_mode)[-3:] == "600"
    shown = subprocess.run(
        [dfx, "metrics", "show", "--connection", "sf-demo", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    rows = json.loads(shown.stdout)
    metrics = {row["metric"] for row in rows}
    assert {"open_pipeline_by_stage", "win_rate", "lead_conversion", "case_volume"} <= metrics
    assert {row["period"] for row in rows if row["metric"] == "win_rate"} and len(rows) > 50
    # A second demo reconnects (fresh sandbox, new tokens) and replaces instead of duplicating.
    again = subprocess.run(
        [dfx, "demo", "--days", "3", "--scale", "300"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    rows_again = json.loads(
        subprocess.run(
            [dfx, "metrics", "show", "--connection", "sf-demo", "--json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        ).stdout
    )
    keys = [(r["metric"], r["period"], r["measure"], json.dumps(r["dimensions"], sort_keys=True)) for r in rows_again]
    assert len(keys) == len(set(keys)) and {r["metric"] for r in rows_again} == metrics
