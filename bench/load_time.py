"""How long the code location takes to load, against a bare Dagster + dagster-gcp location, in one run.

Measures (median of N cold interpreter starts) the import of each definitions module and the
`dagster definitions validate` command for each, with no DFX_*/DAGSTER_* variables set.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
BARE = '''"""A bare code location: Dagster and dagster-gcp imported, nothing else."""
import dagster as dg
import dagster_gcp  # noqa: F401
defs = dg.Definitions()
'''


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))}
    env["PYTHONPATH"] = f"{REPO}{os.pathsep}{tmp}"
    return env


def _median_seconds(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    times = []
    for _ in range(RUNS):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, env=env, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        (tmp / "bare_location.py").write_text(BARE)
        (tmp / "bare_workspace.yaml").write_text("load_from:\n  - python_module: bare_location\n")
        env = _env(tmp)
        dagster = str(Path(sys.executable).with_name("dagster"))
        rows = []
        for label, module, workspace in (
            ("bare dagster + dagster-gcp", "bare_location", tmp / "bare_workspace.yaml"),
            ("dfx_pipelines.definitions", "dfx_pipelines.definitions", REPO / "workspace.yaml"),
        ):
            imported = _median_seconds([sys.executable, "-c", f"import {module}"], tmp, env)
            validated = _median_seconds([dagster, "definitions", "validate", "-w", str(workspace)], tmp, env)
            rows.append((label, imported, validated))
        print(f"median of {RUNS} cold starts each")
        print(f"{'location':30s} {'import (s)':>10s} {'validate (s)':>12s}")
        for label, imported, validated in rows:
            print(f"{label:30s} {imported:10.2f} {validated:12.2f}")
        (_, bare_import, bare_validate), (_, our_import, our_validate) = rows
        print(
            f"ratio import {our_import / bare_import:.2f}x, validate {our_validate / bare_validate:.2f}x (budget 1.5x)"
        )


if __name__ == "__main__":
    main()
