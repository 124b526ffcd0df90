"""Launch → end of the Salesforce daily job through a real webserver and daemon, with the multiprocess
executor (Dagster's default, a process per step: the "before") and the in-process executor the
connector jobs use now (the "after"), in one run on one embedded instance and one sandbox.

The demo connection on a demo-sized sandbox; `BENCH_DAYS` days (default 30, the demo's range) in one
single-run range. Prints, for each executor: launch → end as the user waits for it, the run's own
start → end, and the summed step durations (the work), plus the ratio to the work. Nothing is asserted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
LOCATION, REPOSITORY = "bench_ui_defs", "__repository__"
BEFORE_JOB = "salesforce_daily_job_multiprocess"
# The same job with Dagster's default executor: the "before" of the executor change.
DEFINITIONS = f'''"""The project's definitions plus the Salesforce daily job on the multiprocess executor (bench only)."""
import dagster as dg
from dfx_pipelines import definitions as project  # a module: one Definitions at module scope here
from dfx_pipelines.connectors.salesforce.assets import DAILY_ASSET_KEYS

before = dg.define_asset_job("{BEFORE_JOB}", selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS), executor_def=dg.multiprocess_executor, tags={{"dfx/api": "salesforce"}})
defs = dg.Definitions.merge(project.defs, dg.Definitions(jobs=[before]))
'''


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _query(url: str, text: str, **variables: Any) -> dict[str, Any]:
    body = requests.post(f"{url}/graphql", json={"query": text, "variables": variables}, timeout=120).json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


def _run(url: str, job: str, tags: dict[str, str]) -> dict[str, float]:
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = time.time()
    result = _query(
        url,
        "mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
        p=params,
    )["launchRun"]
    if result["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(result)
    run_id = result["run"]["runId"]
    while True:
        run = _query(
            url,
            "query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime stepStats { startTime endTime } } } }",
            id=run_id,
        )["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    if run["status"] != "SUCCESS":
        raise RuntimeError(f"{job} ended {run['status']} (run {run_id})")
    steps = sum((s["endTime"] or 0) - (s["startTime"] or 0) for s in run["stepStats"])
    return {
        "launch_to_end": run["endTime"] - launched,
        "run": run["endTime"] - run["startTime"],
        "steps": steps,
        "n_steps": len(run["stepStats"]),
    }


def main() -> None:
    import dagster as dg

    from dfx_pipelines.cli import DEMO_WORKSPACE, embedded_dagster_home
    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "bench_ui_defs.py").write_text(DEFINITIONS)
        (root / "workspace.yaml").write_text(
            f"load_from:\n  - python_module:\n      module_name: {LOCATION}\n      working_directory: {REPO}\n"
        )
        os.environ.pop("DAGSTER_HOME", None)
        settings = Settings.from_env({"DFX_HOME": str(root / ".dfx")})
        home = embedded_dagster_home(settings)
        platform = Platform(settings)
        platform.registry.upsert_workspace(Workspace(id=DEMO_WORKSPACE, name="Demo", owner_email="owner@demo.test"))
        salesforce = plugin("salesforce")
        sandbox = salesforce.start_sandbox(SandboxCA(settings.sandbox_dir))
        processes: list[subprocess.Popen] = []
        try:
            connection = salesforce.connect_demo(platform, sandbox, DEMO_WORKSPACE)
            with dg.DagsterInstance.get() as instance:
                sync_partitions(instance, platform.registry, ["salesforce"])
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))}
            env.update(
                {"DFX_HOME": str(settings.home), "DAGSTER_HOME": str(home), "PYTHONPATH": f"{REPO}{os.pathsep}{root}"}
            )
            port = _free_port()
            exe = Path(sys.executable).parent
            log = (root / "servers.log").open("w")
            processes.append(
                subprocess.Popen(
                    [
                        str(exe / "dagster-webserver"),
                        "-w",
                        str(root / "workspace.yaml"),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                    ],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    entries = _query(
                        url,
                        "{ workspaceOrError { ... on Workspace { locationEntries { locationOrLoadError { __typename ... on PythonError { message } } } } } }",
                    )["workspaceOrError"]["locationEntries"]
                    loaded = entries[0]["locationOrLoadError"] if entries else None
                    if loaded and loaded["__typename"] == "PythonError":
                        raise RuntimeError(f"the code location failed to load: {loaded['message']}")
                    if loaded and loaded["__typename"] == "RepositoryLocation":
                        break
                except requests.ConnectionError:
                    pass
                time.sleep(1)
            _stop_automation(url)  # only the benchmark's runs
            processes.append(
                subprocess.Popen(
                    [str(exe / "dagster-daemon"), "run", "-w", str(root / "workspace.yaml")],
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            today = datetime.now(UTC).date()
            first = today - timedelta(days=DAYS - 1)
            tags = {
                "dfx/connection": connection.id,
                "dagster/asset_partition_range_start": f"{connection.id}|{first}",
                "dagster/asset_partition_range_end": f"{connection.id}|{today}",
            }
            print(f"salesforce daily job, {connection.id}, {DAYS} days in one run, through webserver + daemon")
            for label, job in (("multiprocess (before)", BEFORE_JOB), ("in-process (after)", "salesforce_daily_job")):
                figures = _run(url, job, tags)
                print(
                    f"  {label:22s} launch→end {figures['launch_to_end']:7.1f} s   run {figures['run']:7.1f} s   "
                    f"step work {figures['steps']:6.1f} s over {figures['n_steps']} steps   "
                    f"launch→end / step work = {figures['launch_to_end'] / max(figures['steps'], 1e-9):.1f}x",
                    flush=True,
                )
        finally:
            for process in reversed(processes):
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                    process.wait(20)
                except (ProcessLookupError, subprocess.TimeoutExpired):
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            sandbox.stop()


def _stop_automation(url: str) -> None:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}
    repo = _query(
        url,
        "query($s: RepositorySelector!) { repositoryOrError(repositorySelector: $s) { ... on Repository { sensors { sensorState { id status } } schedules { scheduleState { id status } } } } }",
        s=selector,
    )["repositoryOrError"]
    for sensor in repo["sensors"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            _query(url, "mutation($id: String) { stopSensor(id: $id) { __typename } }", id=sensor["sensorState"]["id"])
    for schedule in repo["schedules"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            _query(
                url,
                "mutation($id: String) { stopRunningSchedule(id: $id) { __typename } }",
                id=schedule["scheduleState"]["id"],
            )


if __name__ == "__main__":
    main()
