"""Load test of the Celery setup (issue 18): `BENCH_CONNECTIONS` connections (default 100) spread over the
registered connectors' sandboxes, every nightly schedule fired at once through the queued run
coordinator with a real `dagster-daemon`, the runs' steps on `BENCH_WORKERS` Celery workers (default 2,
`BENCH_WORKER_CONCURRENCY` steps each, default 2) through the local Redis, the instance and the metric
store on a PostgreSQL database of its own.

Figures (printed, never asserted): runs per minute, queue wait p50/p95 (run created -> run started),
peak concurrent steps per vendor against its pool, peak PostgreSQL connections, peak memory (RSS) of the
daemon with its code server, of the run workers, and of the Celery workers, and whether every run
finished. The ceiling on this machine is what stops the growth first (see the end of the output).

How the schedules fire: exactly as the scheduler daemon does on a tick (`get_schedule_execution_data`
in the code server, `_create_scheduler_run`, `submit_run`), for all nightly schedules at the same
instant rather than at their cron times 15 minutes apart; the daemon's queued run coordinator then
launches them under the instance's run limits (20 at once, one per connection, per-API caps).

Needs Redis on 127.0.0.1:6379 and PostgreSQL on 127.0.0.1:5432 (`DFX_TEST_PG_URL` to change it). Every
connection of a kind reads the same sandbox (`BENCH_SCALE`, default 200 Salesforce opportunities; Jira
and BigQuery at their demo size): the load is runs and steps, not data volume.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "100"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "2"))
SCALE = int(os.environ.get("BENCH_SCALE", "200"))
DAYS = int(os.environ.get("BENCH_DAYS", "7"))  # the daily history each nightly run recomputes (prod: 90)
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "3600"))
PG_ADMIN_URL = os.environ.get("DFX_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
MIB = 1024 * 1024


# ---------------------------------------------------------------- processes and their memory


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                tree[ppid].append(int(entry.name))
    return tree


def _rss(pid: int) -> int:
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def _tree(pid: int, tree: dict[int, list[int]]) -> list[int]:
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(tree.get(current, []))
    return found


# ---------------------------------------------------------------- setup


@contextlib.contextmanager
def _database() -> Iterator[str]:
    import sqlalchemy as sa

    name = f"dfx_scale_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        from dfx_pipelines.platform.db import dispose_engine

        dispose_engine(sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False))
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _connect_as(plugin: Any, platform: Any, sandbox: Any, workspace_id: str, connection_id: str) -> Any:
    """The plugin's own demo connect flow (OAuth consent, key upload, describe), under another id: the demo
    flow names its connection by its module's DEMO_CONNECTION, swapped for the call."""
    module = importlib.import_module(type(plugin).__module__)
    demo_id = module.DEMO_CONNECTION
    module.DEMO_CONNECTION = connection_id
    try:
        return plugin.connect_demo(platform, sandbox, workspace_id)
    finally:
        module.DEMO_CONNECTION = demo_id


def _fire_nightly_schedules(instance: Any) -> int:
    """Evaluate every nightly schedule in a code server and submit its runs, as the scheduler does."""
    from dagster._core.definitions.selector import JobSubsetSelector
    from dagster._core.definitions.timestamp import TimestampWithTimezone
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget
    from dagster._scheduler.scheduler import _create_scheduler_run

    now = datetime.now(UTC)
    submitted = 0
    with WorkspaceProcessContext(instance, WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])) as workspace:
        context = workspace.create_request_context()
        (location_name,) = context.code_location_names
        location = context.get_code_location(location_name)
        (repository,) = location.get_repositories().values()
        for schedule in repository.get_schedules():
            if "_nightly_" not in schedule.name:
                continue
            data = location.get_schedule_execution_data(
                instance, repository.handle, schedule.name, TimestampWithTimezone(now.timestamp(), "UTC"), None
            )
            for request in data.run_requests or []:
                job = location.get_job(
                    JobSubsetSelector(
                        location_name=location_name,
                        repository_name=repository.name,
                        job_name=schedule.job_name,
                        op_selection=None,
                        asset_selection=request.asset_selection,
                        asset_check_selection=request.asset_check_keys,
                    )
                )
                run = _create_scheduler_run(instance, now, location, schedule, job, request)
                instance.submit_run(run.run_id, workspace.create_request_context())
                submitted += 1
    return submitted


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def _peak(intervals: list[tuple[float, float]]) -> int:
    points = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    peak = current = 0
    for _, change in points:
        current += change
        peak = max(peak, current)
    return peak


def main() -> None:
    import dagster as dg
    import redis
    import sqlalchemy as sa
    from dagster._core.storage.dagster_run import RunsFilter

    # Dagster takes SIGINT for itself; a SIGTERM still ends the benchmark through its clean-up below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    root = Path(tempfile.mkdtemp(prefix="dfx-scale-"))
    queue = f"dfx-scale-{uuid.uuid4().hex[:8]}"
    processes: dict[str, subprocess.Popen] = {}
    sandboxes: list[Any] = []
    with _database() as database:
        url = sa.engine.make_url(PG_ADMIN_URL).set(database=database)
        celery = yaml.safe_load((REPO / "deploy" / "celery" / "celery.yaml").read_text())
        celery["execution"]["config"]["config_source"].update(
            task_default_queue=queue, worker_concurrency=WORKER_CONCURRENCY
        )
        (root / "celery.yaml").write_text(yaml.safe_dump(celery))
        home = root / "dagster_home"
        home.mkdir()
        shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))}
        env.update(
            PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            DAGSTER_HOME=str(home),
            DAGSTER_PG_HOST=url.host or "127.0.0.1",
            DAGSTER_PG_PORT=str(url.port or 5432),
            DAGSTER_PG_USERNAME=url.username or "postgres",
            DAGSTER_PG_PASSWORD=url.password or "",
            DAGSTER_PG_DB=database,
            DFX_HOME=str(root / "dfx_home"),
            DFX_METRICS_DB_URL=url.render_as_string(hide_password=False),
            DFX_DAILY_START=(datetime.now(UTC).date() - timedelta(days=DAYS - 1)).isoformat(),
            DFX_EXECUTOR="celery",
            DFX_CELERY_CONFIG=str(root / "celery.yaml"),
            DFX_CELERY_BROKER_URL=REDIS_URL,
            DFX_CELERY_BACKEND_URL=REDIS_URL,
        )
        os.environ.clear()
        os.environ.update(env)  # this process evaluates the schedules: the same environment as the rest

        from dfx_pipelines.platform import catalogue
        from dfx_pipelines.platform.instance_concurrency import apply_pool_limits
        from dfx_pipelines.platform.partitions import sync_partitions
        from dfx_pipelines.platform.registry import Workspace
        from dfx_pipelines.platform.sandbox import SandboxCA
        from dfx_pipelines.platform.services import Platform
        from dfx_pipelines.platform.settings import Settings

        settings = Settings.from_env()
        platform = Platform(settings)
        platform.registry.upsert_workspace(Workspace(id="scale", name="Scale", owner_email="owner@scale.test"))
        plugins = catalogue.plugins()
        try:
            began = time.perf_counter()
            ca = SandboxCA(settings.sandbox_dir)
            running = {}
            for plugin in plugins:
                running[plugin.kind] = plugin.start_sandbox(ca, scale=SCALE if plugin.kind == "salesforce" else None)
                sandboxes.append(running[plugin.kind])
            per_kind: dict[str, int] = defaultdict(int)
            for index in range(CONNECTIONS):
                plugin = plugins[index % len(plugins)]
                _connect_as(plugin, platform, running[plugin.kind], "scale", f"{plugin.kind[:2]}-{index:05d}")
                per_kind[plugin.kind] += 1
            print(f"{CONNECTIONS} connections ({dict(per_kind)}) in {time.perf_counter() - began:.0f}s", flush=True)

            with dg.DagsterInstance.get() as instance:
                sync_partitions(instance, platform.registry, catalogue.kinds())
                pools = apply_pool_limits(instance)
                for index in range(WORKERS):
                    name = f"w{index}"
                    processes[name] = subprocess.Popen(
                        [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                         "-y", str(root / "celery.yaml"), "-q", queue, "-n", name, "--loglevel", "WARNING"],
                        cwd=REPO, env=env, stdout=(root / f"{name}.log").open("w"), stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )  # fmt: skip
                processes["daemon"] = subprocess.Popen(
                    [str(BIN / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
                    cwd=REPO, env=env, stdout=(root / "daemon.log").open("w"), stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip

                fired_at = time.time()
                submitted = _fire_nightly_schedules(instance)
                print(f"{submitted} runs submitted in {time.time() - fired_at:.1f}s", flush=True)

                engine = sa.create_engine(PG_ADMIN_URL, poolclass=sa.pool.NullPool)
                peaks = {"pg_connections": 0, "daemon": 0, "run_workers": 0, "celery_workers": 0, "run_workers_n": 0}
                finished_statuses = {
                    dg.DagsterRunStatus.SUCCESS,
                    dg.DagsterRunStatus.FAILURE,
                    dg.DagsterRunStatus.CANCELED,
                }
                deadline = time.monotonic() + TIMEOUT
                last_report = 0.0
                while time.monotonic() < deadline:
                    runs = instance.get_runs()
                    done = [r for r in runs if r.status in finished_statuses]
                    with engine.connect() as db:
                        count = db.execute(
                            sa.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :d"), {"d": database}
                        ).scalar_one()
                    peaks["pg_connections"] = max(peaks["pg_connections"], int(count))
                    tree = _children()
                    daemon_pids = _tree(processes["daemon"].pid, tree)
                    run_workers = [p for p in daemon_pids if "execute_run" in _cmdline(p)]
                    run_worker_pids = {q for p in run_workers for q in _tree(p, tree)}
                    peaks["daemon"] = max(
                        peaks["daemon"], sum(_rss(p) for p in daemon_pids if p not in run_worker_pids)
                    )
                    peaks["run_workers"] = max(peaks["run_workers"], sum(_rss(p) for p in run_worker_pids))
                    peaks["run_workers_n"] = max(peaks["run_workers_n"], len(run_workers))
                    workers = sum(
                        _rss(p) for name, proc in processes.items() if name != "daemon" for p in _tree(proc.pid, tree)
                    )
                    peaks["celery_workers"] = max(peaks["celery_workers"], workers)
                    if time.monotonic() - last_report > 30:
                        last_report = time.monotonic()
                        print(f"  {time.time() - fired_at:5.0f}s: {len(done)}/{len(runs)} runs finished", flush=True)
                    if len(runs) >= submitted and len(done) == len(runs):
                        break
                    time.sleep(1.0)
                engine.dispose()

                records = instance.get_run_records(RunsFilter())
                statuses: dict[str, int] = defaultdict(int)
                waits, ends = [], []
                intervals: dict[str, list[tuple[float, float]]] = defaultdict(list)
                origins: dict[str, int] = defaultdict(int)
                for record in records:
                    statuses[record.dagster_run.status.value] += 1
                    tags = record.dagster_run.tags
                    origin = (
                        "retry" if "dagster/parent_run_id" in tags
                        else f"sensor {tags['dagster/sensor_name']}" if "dagster/sensor_name" in tags
                        else "schedule" if "dagster/schedule_name" in tags
                        else "other"
                    )  # fmt: skip
                    origins[f"{record.dagster_run.job_name} ({origin})"] += 1
                    if record.start_time:
                        waits.append(record.start_time - record.create_timestamp.timestamp())
                    if record.end_time:
                        ends.append(record.end_time)
                    starts: dict[str, float] = {}
                    for entry in instance.all_logs(
                        record.dagster_run.run_id,
                        of_type={
                            dg.DagsterEventType.STEP_START,
                            dg.DagsterEventType.STEP_SUCCESS,
                            dg.DagsterEventType.STEP_FAILURE,
                        },
                    ):
                        key = entry.step_key or ""
                        if entry.dagster_event and entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                            starts.setdefault(key, entry.timestamp)
                        elif key in starts:
                            intervals[key.split("__")[0]].append((starts.pop(key), entry.timestamp))
                elapsed = (max(ends) - fired_at) if ends else float("nan")
                print(
                    f"\nconnections {CONNECTIONS}, {DAYS} days of history, runs {len(records)}, "
                    f"Celery workers {WORKERS} x {WORKER_CONCURRENCY}"
                )
                print(
                    f"  every run finished: {len(ends) == len(records)} ({len(ends)} of {len(records)}: {submitted} "
                    f"scheduled, the rest launched by the daemon's sensors or retries)  statuses: {dict(statuses)}"
                )
                print("  runs: " + ", ".join(f"{name} {count}" for name, count in sorted(origins.items())))
                print(f"  wall time {elapsed:.0f}s, runs/minute {60 * len(ends) / elapsed:.1f}")
                print(f"  queue wait p50 {_percentile(waits, 0.5):.1f}s, p95 {_percentile(waits, 0.95):.1f}s")
                for vendor, spans in sorted(intervals.items()):
                    print(
                        f"  peak concurrent {vendor} steps: {_peak(spans)} (pool {pools.get(vendor, '-')}, {len(spans)} steps)"
                    )
                print(f"  peak PostgreSQL connections: {peaks['pg_connections']}")
                print(
                    f"  peak RSS: daemon + code server {peaks['daemon'] / MIB:.0f} MiB, "
                    f"run workers {peaks['run_workers'] / MIB:.0f} MiB ({peaks['run_workers_n']} at once), "
                    f"Celery workers {peaks['celery_workers'] / MIB:.0f} MiB"
                )
        finally:
            for process in processes.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
            for sandbox in sandboxes:
                sandbox.stop()
            client = redis.Redis.from_url(REDIS_URL)
            client.delete(queue, *client.keys(f"{queue}*"))
            print(f"  (logs in {root})")


if __name__ == "__main__":
    main()
