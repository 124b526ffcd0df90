"""The connector jobs on Celery: real `dagster-celery` workers (two processes, started here with the
documented `dagster-celery worker start`) on the real Redis at 127.0.0.1:6379, the instance on the real
PostgreSQL (the production dagster.yaml, in a database of its own), the demo Salesforce org in its
sandbox. The runs' orchestrators are separate processes with DFX_EXECUTOR=celery, as a run worker of a
deployment is.

- The snapshot and daily jobs, run at once, finish on both workers with the metric values an in-process
  run stores, and no more Salesforce steps ever run at once than the pool allows (from the event log).
- A worker killed (SIGKILL, with its pool child) in the middle of a step: the step is handed to the other
  worker (acks-late; Redis restores the unacked task after the visibility timeout) and the run succeeds
  with the same values; everything waits under explicit timeouts, so a lost step fails the test, never
  hangs it.

Isolation from parallel test sessions: a Redis database number and a queue name of this module's own,
and its own PostgreSQL database for the Dagster instance and the metric store."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from dfx_pipelines.connectors.salesforce.plugin import PLUGIN
from dfx_pipelines.platform import catalogue
from dfx_pipelines.platform.instance_concurrency import apply_pool_limits
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines.platform.sandbox import SandboxCA
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings
from dfx_pipelines_tests.conftest import PG_ADMIN_URL

# One setup (a sandbox, two workers) for both tests: kept on one xdist worker (`--dist loadgroup`). Were
# they split, each worker would start its own setup, isolated as below, at twice the cost.
pytestmark = pytest.mark.xdist_group("celery")

pytest.importorskip("dagster_celery")
redis = pytest.importorskip("redis")

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
CONNECTION = "sf-demo"
QUERY = "/services/data/v59.0/query"
T = TypeVar("T")

# The orchestrator of one run, as a run worker of a deployment: the project's definitions loaded with
# DFX_EXECUTOR=celery, the run executed against DAGSTER_HOME; prints the run's id and outcome.
ORCHESTRATOR = """
import json, sys
import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableRepository

job_name, tags = sys.argv[1], json.loads(sys.argv[2])
job = ReconstructableRepository.for_module("dfx_pipelines.definitions", "defs").get_reconstructable_job(job_name)
with dg.DagsterInstance.get() as instance:
    with dg.execute_job(job, instance=instance, tags=tags, raise_on_error=False) as result:
        print(json.dumps({"run_id": result.run_id, "success": result.success}))
"""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def redis_available() -> bool:
    try:
        return bool(redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=2).ping())
    except redis.exceptions.RedisError:
        return False


@dataclass
class Cluster:
    """Two Celery workers, their shared config, the environment every process of the setup runs with."""

    root: Path
    env: dict[str, str]
    config: Path
    queue: str
    platform: Platform
    sandbox: Any
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str) -> None:
        log = (self.root / f"worker-{name}.log").open("a")
        self.workers[name] = subprocess.Popen(
            [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app", "-y", str(self.config),
             "-q", self.queue, "-n", name, "--loglevel", "INFO"],
            cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def wait_workers_ready(self) -> None:
        from dagster_celery.make_app import make_app

        app = make_app({"broker": self.env["DFX_CELERY_BROKER_URL"], "backend": self.env["DFX_CELERY_BACKEND_URL"]})
        names = {f"{name}@" for name in self.workers}

        def ready() -> bool:
            dead = [name for name, process in self.workers.items() if process.poll() is not None]
            if dead:
                raise AssertionError(f"worker {dead} exited")
            replies = app.control.ping(timeout=1.0) or []
            seen = {next(iter(reply)).split("@")[0] + "@" for reply in replies}
            return names <= seen

        try:
            wait_for("both Celery workers to answer a ping", ready, 120, every=0.5)
        except AssertionError as exc:
            logs = {name: (self.root / f"worker-{name}.log").read_text()[-2000:] for name in self.workers}
            raise AssertionError(f"workers not ready ({exc}); logs: {logs}") from None

    def ensure_workers(self) -> None:
        for name, process in list(self.workers.items()):
            if process.poll() is not None:
                self.start_worker(name)
        self.wait_workers_ready()

    def kill_worker(self, name: str) -> None:
        """SIGKILL the worker and its pool children (its own process group): nothing gets to clean up."""
        process = self.workers[name]
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.workers.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.workers.values():
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    def launch(self, job_name: str, tags: dict[str, str]) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", ORCHESTRATOR, job_name, json.dumps(tags)],
            cwd=REPO, env={**self.env, "DFX_EXECUTOR": "celery"}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip

    @staticmethod
    def outcome(process: subprocess.Popen, timeout: float = 240) -> dict[str, Any]:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            raise AssertionError(f"run did not finish within {timeout:.0f}s: {err[-3000:]}") from None
        assert process.returncode == 0 and out.strip(), err[-3000:]
        return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, pg_database: dict[str, str]) -> Iterator[Cluster]:
    if not redis_available():
        pytest.fail(f"Redis is not running on {REDIS_HOST}:{REDIS_PORT} (.ci/run starts it)")
    root = tmp_path_factory.mktemp("celery")
    # A database of this module's own: the instance and the metric store (other tests empty the shared one).
    name = f"dfx_celery_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    metrics_url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")  # the production instance, PostgreSQL storage
    # Its own Redis database (1-15, by process) and queue: parallel sessions never take each other's tasks.
    redis_db = 1 + os.getpid() % 15
    queue = f"dfx-test-{uuid.uuid4().hex[:8]}"
    broker = f"redis://{REDIS_HOST}:{REDIS_PORT}/{redis_db}"
    production = yaml.safe_load((REPO / "deploy" / "celery" / "celery.yaml").read_text())
    config_source = production["execution"]["config"]["config_source"]
    config_source.update(
        task_default_queue=queue,
        worker_concurrency=2,  # two steps per worker: four slots, more than the pools allow
        # Short enough for the killed worker's step to come back within the test; every step here takes
        # well under it (a step outliving it would run twice, see deploy/celery/celery.yaml).
        broker_transport_options={
            "visibility_timeout": 20,
            "unacked_restore_interval": 1,
            "unacked_restore_throttle": 1,
        },
        result_expires=600,  # this module's results leave the shared Redis database soon after it ends
    )
    config = root / "celery.yaml"
    config.write_text(yaml.safe_dump(production))
    settings = Settings.from_env({"DFX_HOME": str(root / "dfx_home"), "DFX_METRICS_DB_URL": metrics_url})
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))},
        # `dagster-celery worker start` runs `celery` from PATH: this interpreter's.
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": pg_database["host"],
        "DAGSTER_PG_PORT": pg_database["port"],
        "DAGSTER_PG_USERNAME": pg_database["username"],
        "DAGSTER_PG_PASSWORD": pg_database["password"],
        "DAGSTER_PG_DB": name,
        "DFX_HOME": str(settings.home),
        "DFX_METRICS_DB_URL": metrics_url,
        "DFX_CELERY_CONFIG": str(config),
        "DFX_CELERY_BROKER_URL": broker,
        "DFX_CELERY_BACKEND_URL": broker,
    }
    platform = Platform(settings)
    platform.registry.upsert_workspace(Workspace(id="demo", name="Demo", owner_email="owner@demo.test"))
    sandbox = PLUGIN.start_sandbox(SandboxCA(settings.sandbox_dir), scale=300)
    cluster = Cluster(root, env, config, queue, platform, sandbox)
    try:
        PLUGIN.connect_demo(platform, sandbox, "demo")
        for worker in ("alpha", "beta"):
            cluster.start_worker(worker)
        cluster.wait_workers_ready()
        yield cluster
    finally:
        cluster.stop()
        sandbox.stop()
        client = redis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=redis_db)
        client.delete(queue, *client.keys(f"{queue}*"))
        from dfx_pipelines.platform.db import dispose_engine

        dispose_engine(metrics_url)
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def instance(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[dg.DagsterInstance]:
    """The setup's instance, seen from the test; its pools at the plugins' limits, the partitions synced,
    both workers up (a test may have killed one), the sandbox without faults."""
    for key in ("DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD"):
        monkeypatch.setenv(key, cluster.env[key])
    monkeypatch.setenv("DAGSTER_PG_DB", cluster.env["DAGSTER_PG_DB"])
    monkeypatch.setenv("DFX_HOME", cluster.env["DFX_HOME"])
    monkeypatch.setenv("DFX_METRICS_DB_URL", cluster.env["DFX_METRICS_DB_URL"])
    cluster.sandbox.servers[0].faults.clear()
    cluster.ensure_workers()
    with dg.DagsterInstance.get() as instance:
        apply_pool_limits(instance)
        sync_partitions(instance, cluster.platform.registry, catalogue.kinds())
        yield instance


def values(platform: Platform) -> set[tuple]:
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items())), r["value"])
        for r in platform.metric_store.read(connection_id=CONNECTION)
    }


def demo_runs(platform: Platform) -> list[tuple[str, dict[str, str]]]:
    """The demo connection's snapshot run and a three-day daily range run, as (job, tags)."""
    runs = []
    for run in PLUGIN.demo_runs(platform.registry.get(CONNECTION), days=3):
        tags = dict(run.tags)
        if run.partition_key is not None:
            tags["dagster/partition"] = run.partition_key
        runs.append((run.job_name, tags))
    return runs


def in_process_values(cluster: Cluster, instance: dg.DagsterInstance, runs: list[tuple[str, dict]]) -> set[tuple]:
    """What these runs store when their steps run in one process (the default executor); then emptied."""
    from dfx_pipelines.definitions import defs

    for job_name, tags in runs:
        assert defs.resolve_job_def(job_name).execute_in_process(instance=instance, tags=tags).success
    clean = values(cluster.platform)
    assert clean and cluster.platform.metric_store.delete_connection(CONNECTION) > 0
    return clean


@dataclass(frozen=True)
class Step:
    run_id: str
    key: str
    started: float
    ended: float | None
    workers: tuple[str, ...]  # every Celery worker that took the step, in order
    succeeded: bool


def steps(instance: dg.DagsterInstance, run_id: str) -> list[Step]:
    found: dict[str, dict[str, Any]] = {}
    for entry in instance.all_logs(run_id):
        event = entry.dagster_event
        if event is None or entry.step_key is None:
            continue
        step = found.setdefault(entry.step_key, {"started": None, "ended": None, "workers": [], "ok": False})
        if event.event_type == dg.DagsterEventType.STEP_START and step["started"] is None:
            step["started"] = entry.timestamp
        elif event.event_type in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
            step["ended"], step["ok"] = entry.timestamp, event.event_type == dg.DagsterEventType.STEP_SUCCESS
        elif event.event_type == dg.DagsterEventType.ENGINE_EVENT and "in celery worker" in (event.message or ""):
            worker = event.event_specific_data.metadata["Celery worker"].value  # type: ignore[union-attr]
            step["workers"].append(str(worker).split("@")[0])
    return [
        Step(run_id, key, s["started"], s["ended"], tuple(s["workers"]), s["ok"])
        for key, s in found.items()
        if s["started"] is not None
    ]


def peak_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (at a tie, an end comes before a start)."""
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, change in points:
        current += change
        peak = max(peak, current)
    return peak


@pytest.mark.timeout(420)
def test_the_jobs_run_on_two_workers_with_in_process_values_within_the_pool(
    cluster: Cluster, instance: dg.DagsterInstance
) -> None:
    runs = demo_runs(cluster.platform)
    clean = in_process_values(cluster, instance, runs)
    limit = 2  # below the four worker slots, so the pool, not the workers, is what holds the steps back
    apply_pool_limits(instance, {"salesforce": limit})

    launched = [cluster.launch(job_name, tags) for job_name, tags in runs]  # both runs at once
    outcomes = [Cluster.outcome(process) for process in launched]
    assert all(o["success"] for o in outcomes), outcomes
    assert values(cluster.platform) == clean

    ran = [step for o in outcomes for step in steps(instance, o["run_id"])]
    assert ran and all(step.succeeded and step.ended is not None for step in ran)
    assert all(len(step.workers) == 1 for step in ran)  # every step went to a Celery worker, once
    assert {step.workers[0] for step in ran} == {"alpha", "beta"}, "both workers took steps"
    peak = peak_overlap([(step.started, step.ended) for step in ran if step.ended is not None])
    print(f"\n{len(ran)} steps in 2 runs on 2 workers; peak concurrent Salesforce steps {peak} (pool {limit})")
    assert peak == limit  # never above the pool; reaching it shows the steps did run in parallel


@pytest.mark.timeout(420)
def test_a_worker_killed_mid_step_hands_the_step_to_the_other_worker(
    cluster: Cluster, instance: dg.DagsterInstance
) -> None:
    job_name, tags = demo_runs(cluster.platform)[0]  # the snapshot run
    assert job_name == "salesforce_snapshot_job"
    clean = in_process_values(cluster, instance, [(job_name, tags)])
    # One Salesforce step at a time, and its first query hangs: the step in flight is known when it hangs.
    apply_pool_limits(instance, {"salesforce": 1})
    cluster.sandbox.servers[0].faults.inject("slow", count=1, delay=6.0, path_prefix=QUERY)
    marker = {**tags, "dfx/test-run": uuid.uuid4().hex}
    process = cluster.launch(job_name, marker)

    def hanging_step() -> Step | None:
        if not [kind for kind, _ in cluster.sandbox.servers[0].faults.log if kind == "slow"]:
            return None
        runs = instance.get_runs(filters=dg.RunsFilter(tags={"dfx/test-run": marker["dfx/test-run"]}))
        in_flight = [s for s in steps(instance, runs[0].run_id) if s.ended is None and s.workers] if runs else []
        return in_flight[0] if len(in_flight) == 1 else None

    step = wait_for("a step to hang on its first query", hanging_step, 120)
    victim = step.workers[0]
    cluster.kill_worker(victim)
    killed_at = time.monotonic()

    outcome = Cluster.outcome(process, timeout=180)
    print(f"\nworker {victim} killed mid-step -> run finished {time.monotonic() - killed_at:.1f}s later")
    assert outcome["success"], outcome
    retried = next(s for s in steps(instance, outcome["run_id"]) if s.key == step.key)
    survivor = ({"alpha", "beta"} - {victim}).pop()
    assert retried.succeeded and retried.workers == (victim, survivor)  # the same task, taken again
    assert values(cluster.platform) == clean
