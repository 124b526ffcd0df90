"""A run whose worker dies does not stay STARTED: with a real `dagster-daemon` (and the code server it
starts for this code location) on the instance `dfx dev`/`dfx demo` use, the demo Salesforce connection's
snapshot job is launched through the queue, its worker is killed with SIGKILL mid-request, the run is
marked failed (releasing the connection's only slot) and `run_retries` runs it again to success with the
values a clean run stores. The embedded and production instances both enable run monitoring."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import RunsFilter

from dfx_pipelines.connectors.salesforce.plugin import PLUGIN
from dfx_pipelines.platform import catalogue
from dfx_pipelines.platform.instance import (
    RUN_MONITORING,
    RUN_RETRIES,
    embedded_instance_config,
    run_launcher,
    write_embedded_instance,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines.platform.sandbox import SandboxCA

REPO = Path(__file__).resolve().parents[2]
LOCATION = ["-f", str(Path(__file__).with_name("recovery_location.py"))]
BIN = Path(sys.executable).parent
JOB, CONNECTION = "salesforce_snapshot_job", "sf-demo"
TAGS = {"dagster/partition": CONNECTION, "dfx/connection": CONNECTION, "dfx/api": "salesforce"}
IN_PROCESS: dict = {}  # connector jobs use the in-process executor: the steps live and die with the run worker
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def values(platform) -> set[tuple]:
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items())), r["value"])
        for r in platform.metric_store.read(connection_id=CONNECTION)
    }


def test_the_embedded_instance_enables_run_monitoring_and_retries(tmp_path: Path) -> None:
    home = write_embedded_instance(tmp_path / "dagster_home").parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        assert instance.run_monitoring_enabled and instance.run_retries_enabled
        assert instance.run_monitoring_start_timeout_seconds == RUN_MONITORING["start_timeout_seconds"]
        assert instance.run_monitoring_cancel_timeout_seconds == RUN_MONITORING["cancel_timeout_seconds"]
        assert instance.run_monitoring_max_resume_run_attempts == 0  # the default launcher cannot resume
        assert instance.run_retries_max_retries == RUN_RETRIES["max_retries"]
        # A dead run's pool slots are freed by the daemon, or its API's pool would shrink for good.
        assert instance.run_monitoring_settings["free_slots_after_run_end_seconds"] == 60
        limits = instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
        assert {"key": "dfx/connection", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in limits
    # A file an older dfx wrote is brought up to date; a file someone else wrote is not touched.
    (home / "dagster.yaml").write_text(
        "# Embedded default instance: Dagster's SQLite storage in this folder (made by `dfx`).\ntelemetry:\n  enabled: false\n"
    )
    write_embedded_instance(home)
    assert '"run_monitoring"' in (home / "dagster.yaml").read_text()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    write_embedded_instance(home)
    assert (home / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"


def test_the_production_instance_monitors_runs_like_the_embedded_one() -> None:
    import yaml

    production = yaml.safe_load((REPO / "dagster.yaml").read_text())
    embedded = embedded_instance_config()
    assert production["run_monitoring"] == embedded["run_monitoring"]
    assert production["run_retries"] == embedded["run_retries"]
    assert production["run_launcher"] == run_launcher(
        check_in_process_runs=False
    )  # production runs go through code servers


IN_PROCESS_RUN = """
import time

import dagster as dg


@dg.asset
def slow_sync() -> int:
    time.sleep(600)
    return 1


dg.materialize([slow_sync], instance=dg.DagsterInstance.get(), tags={"dfx/connection": "sf-demo"})
"""


@pytest.mark.timeout(600)
def test_a_killed_in_process_run_is_failed_by_the_monitoring_daemon(tmp_path: Path) -> None:
    """`dfx demo` runs jobs in its own process: when that process is killed there is no code server to
    notice, and the run would stay STARTED, holding the connection's slot. The daemon's run monitoring,
    through the launcher's pid check, fails it."""
    home = write_embedded_instance(tmp_path / "dagster_home", poll_interval_seconds=1).parent
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    script = tmp_path / "demo_like_run.py"
    script.write_text(IN_PROCESS_RUN)
    worker = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    daemon = None
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            run = wait_for(
                "the in-process run to start",
                lambda: next(iter(instance.get_runs(filters=RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))), None),
                120,
            )
            wait_for("its step", lambda: instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START), 60)
            worker.kill()
            worker.wait(timeout=30)
            killed_at = time.monotonic()
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", "--empty-workspace"],
                cwd=tmp_path,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            failed = wait_for(
                "the dead run to be marked failed",
                lambda: (r := instance.get_run_by_id(run.run_id)) and r.status == dg.DagsterRunStatus.FAILURE and r,
                180,
                every=0.2,
            )
            print(
                f"\nin-process run killed -> marked failed by run monitoring in {time.monotonic() - killed_at:.2f}s (daemon start included)"
            )
            assert failed.status == dg.DagsterRunStatus.FAILURE
            failures = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert any(
                f"run worker process {worker.pid} is gone" in (e.dagster_event.message or "")
                for e in failures
                if e.dagster_event
            )
    finally:
        worker.kill()
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)


def test_the_health_check_knows_live_dead_and_remote_workers(tmp_path: Path) -> None:
    from dagster._core.launcher import WorkerStatus
    from dagster._core.storage.tags import GRPC_INFO_TAG

    from dfx_pipelines.platform.run_launcher import LocalWorkerRunLauncher

    home = write_embedded_instance(tmp_path / "dagster_home").parent
    with dg.DagsterInstance.from_config(str(home)) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalWorkerRunLauncher) and launcher.supports_check_run_worker_health
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        for pid, tags, expected in (
            (os.getpid(), {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}, WorkerStatus.RUNNING),
            (dead.pid, {GRPC_INFO_TAG: json.dumps({"host": "localhost", "port": 4266})}, WorkerStatus.FAILED),
            (dead.pid, {}, WorkerStatus.FAILED),  # in process, checked on the embedded instance
            (
                dead.pid,
                {GRPC_INFO_TAG: json.dumps({"host": "code-server.internal", "port": 4266})},
                WorkerStatus.RUNNING,
            ),  # another host
            (None, {}, WorkerStatus.RUNNING),  # no pid recorded yet
        ):
            run = instance.create_run_for_job(dg.GraphDefinition("noop").to_job(), tags=tags)
            if pid is not None:
                instance.report_engine_event(f"Started process for run (pid: {pid}).", run)
            assert launcher.check_run_worker_health(run).status is expected, (pid, tags)


@pytest.mark.timeout(600)  # a daemon, a code server and two runs on a shared 2-core machine
def test_a_killed_run_worker_fails_its_run_and_the_retry_stores_the_same_values(
    tmp_path: Path, platform, settings
) -> None:
    from dfx_pipelines_tests.platform.recovery_location import defs

    # The killed run's step held the Salesforce pool's slot (a pool of one: no limit applied here): the
    # retry starts only once the daemon frees the dead run's slots (a minute in production; 2 s here).
    home = write_embedded_instance(
        tmp_path / "dagster_home", poll_interval_seconds=1, free_slots_after_run_end_seconds=2
    ).parent
    env = {**os.environ, "DAGSTER_HOME": str(home), "DFX_HOME": str(settings.home)}
    platform.registry.upsert_workspace(Workspace(id="demo", name="Demo", owner_email="owner@demo.test"))
    sandbox = PLUGIN.start_sandbox(SandboxCA(settings.sandbox_dir), scale=300)
    server = sandbox.servers[0]
    daemon = None
    try:
        PLUGIN.connect_demo(platform, sandbox, "demo")
        with dg.DagsterInstance.from_config(str(home)) as instance:
            sync_partitions(instance, platform.registry, catalogue.kinds())
            clean_run = defs.resolve_job_def(JOB).execute_in_process(
                instance=instance, partition_key=CONNECTION, tags=TAGS
            )
            assert clean_run.success
            clean = values(platform)
            assert clean and platform.metric_store.delete_connection(CONNECTION) > 0

            # The first query of the launched run hangs for a while: time to kill its worker mid-request.
            server.faults.inject("slow", count=1, delay=5.0, path_prefix="/services/data/v59.0/query")
            daemon_log = (tmp_path / "daemon.log").open("w")
            daemon = subprocess.Popen(
                [str(BIN / "dagster-daemon"), "run", *LOCATION],
                cwd=REPO,
                env=env,
                stdout=daemon_log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            run_id = str(uuid.uuid4())
            launch = subprocess.run(
                [str(BIN / "dagster"), "job", "launch", *LOCATION, "-j", JOB, "--run-id", run_id,
                 "--tags", json.dumps(TAGS), "--config-json", json.dumps(IN_PROCESS)],
                cwd=REPO, env=env, capture_output=True, text=True, check=False, timeout=180,
            )  # fmt: skip
            assert launch.returncode == 0, launch.stderr[-2000:]
            run = wait_for("the launched run", lambda: instance.get_run_by_id(run_id), 60)

            def worker_pid() -> int | None:
                for entry in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
                    message = entry.dagster_event.message if entry.dagster_event else ""
                    found = re.search(r"Started process for run \(pid: (\d+)\)", message or "")
                    if found:
                        return int(found.group(1))
                return None

            try:
                pid = wait_for("the run worker to start", worker_pid, 120)
            except AssertionError:
                status = instance.get_run_by_id(run.run_id).status
                raise AssertionError(
                    f"run {status}; daemon log: {(tmp_path / 'daemon.log').read_text()[-3000:]}"
                ) from None
            wait_for("the worker's first query", lambda: [kind for kind, _ in server.faults.log if kind == "slow"], 120)
            os.kill(pid, signal.SIGKILL)
            killed_at = time.monotonic()

            failed = wait_for(
                "the dead run to be marked failed",
                lambda: (r := instance.get_run_by_id(run.run_id)) and r.status == dg.DagsterRunStatus.FAILURE and r,
                60,
                every=0.05,
            )
            detected = time.monotonic() - killed_at
            print(f"\nworker killed -> run marked failed in {detected:.2f}s")
            assert failed.status == dg.DagsterRunStatus.FAILURE and detected < 30

            def finished_retry() -> dg.DagsterRun | None:
                retries = instance.get_runs(filters=RunsFilter(tags={"dagster/parent_run_id": run.run_id}))
                return next((r for r in retries if r.is_finished), None)

            retry = wait_for("the retry to finish", finished_retry, 240, every=0.5)
            assert retry.status == dg.DagsterRunStatus.SUCCESS, [
                e.user_message for e in instance.all_logs(retry.run_id)
            ][-5:]
            assert retry.tags["dfx/connection"] == CONNECTION and retry.tags["dagster/partition"] == CONNECTION
            assert values(platform) == clean
            assert {r["run_id"] for r in platform.metric_store.read(connection_id=CONNECTION)} == {retry.run_id}
    finally:
        if daemon is not None:
            os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(daemon.pid, signal.SIGKILL)
        sandbox.stop()
