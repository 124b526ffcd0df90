"""What a Jira sync costs the client for a large site (200,000 issues by default), in one run.

The connector's real metrics path (`compute.METRICS`, as the metric assets run it minus Dagster), over the
demo selection (projects ALPHA, BETA, OPS; boards 1 scrum and 2 kanban; story points, team and both
Service Management SLA fields mapped, so `sla_status` reads SLAs from one paged search):
every asset, one client each (throughput and WIP are one multi-asset: one client, one pass over each
board's changelogs, one row `throughput + wip`; cycle time and sprint velocity likewise, one row), the daily ones over the last `BENCH_DAYS` days in one pass
(as a single-run backfill does), the snapshots once, each partition written to the metric store.

Figures, per metric and in total: wall time (tracemalloc off), client-side peak memory (tracemalloc peak
of a second, identical pass; `BENCH_TRACE=0` skips it), API calls, records and bytes read
(`JiraClient.api_calls` / `.records_read` / `.bytes_read`), and the throughput of the pure part alone:
each metric's client answers are recorded in a third pass, then the metric is computed again against
that recording (adapters and reducers, no I/O) and timed; issues/s = issues fed in / that time. Printed,
never asserted.

The sandbox site runs in a child process: tracemalloc counts every thread of a process, and the
sandbox's JSON rendering would otherwise be counted as the client's. Its generation (~30 s for 200,000
issues) is not measured. `BENCH_ISSUES=5000` runs it small.
"""

import multiprocessing
import os
import tempfile
import time
import tracemalloc
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ISSUES = int(os.environ.get("BENCH_ISSUES", "200000"))
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
TRACE = os.environ.get("BENCH_TRACE", "1") != "0"
REDUCERS = os.environ.get("BENCH_REDUCERS", "1") != "0"  # `0` skips the third pass (issues/s columns show -)
MIB = 1024 * 1024


# ---------------------------------------------------------------- the sandbox, in its own process


def _serve(pipe: Any, issues: int, now_iso: str, ca_dir: str) -> None:
    """Child process: generate the site, serve it (Cloud flavour), and stop when told."""
    from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
    from dfx_pipelines.connectors.jira.sandbox.server import start_jira_sandbox
    from dfx_pipelines.platform.sandbox import SandboxCA

    started = time.perf_counter()
    site = JiraSite(seed=11, issues=issues, now=datetime.fromisoformat(now_iso))
    generated = time.perf_counter() - started
    running = start_jira_sandbox(site, flavour="cloud", ca=SandboxCA(Path(ca_dir)))
    pipe.send(
        (running.url, running.ca_pem_path, running.app.oauth.client_id, running.app.oauth.client_secret, generated)
    )
    while True:
        command = pipe.recv()
        if command == "stop":
            running.stop()
            pipe.send("stopped")
            return


class SandboxProcess:
    def __init__(self, issues: int, now: datetime, ca_dir: Path):
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, issues, now.isoformat(), str(ca_dir)), daemon=True)
        self._process.start()
        self.url, self.ca_pem_path, self.client_id, self.client_secret, self.generation_seconds = self._pipe.recv()

    def stop(self) -> None:
        try:
            self._pipe.send("stop")
            self._pipe.recv()
        finally:
            self._process.join(timeout=10)


# ---------------------------------------------------------------- recording and replaying a client

GENERATORS = ("search", "issue_worklogs")
RECORDED = GENERATORS + (
    "request_slas",
    "statuses",
    "board_configuration",
    "board_sprints",
    "count",
    "issue_types",
    "components",
)


class Recording:
    """Passes every call through to a real `JiraClient` and keeps what the metric was given."""

    def __init__(self, client: Any):
        self._client = client
        self.answers: dict[tuple[str, str], Any] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self._client, name)
        if name not in RECORDED:
            return target

        def call(*args: Any) -> Any:
            result = target(*args)
            if name in GENERATORS:
                result = list(result)
            self.answers[(name, repr(args))] = result
            return iter(result) if name in GENERATORS else result

        return call

    def issues_given(self) -> int:
        return sum(len(page.issues) for (name, _), pages in self.answers.items() if name == "search" for page in pages)


class Replay:
    """Answers exactly as recorded: the metric's pure work (adapters, reducers) without any I/O."""

    def __init__(self, answers: dict[tuple[str, str], Any]):
        self._answers = answers
        self.records_read = 0  # counted by some metrics as they read (SLA values from search)

    def __getattr__(self, name: str) -> Any:
        if name not in RECORDED:
            raise AttributeError(f"the replay has no {name!r}: the benchmark must record it")

        def call(*args: Any) -> Any:
            result = self._answers[(name, repr(args))]
            return iter(result) if name in GENERATORS else result

        return call


# ---------------------------------------------------------------- measuring


@dataclass
class MetricFigures:
    name: str
    partitions: int = 0
    rows: int = 0
    calls: int = 0
    records: int = 0
    bytes: int = 0
    seconds: float = 0.0
    peak_bytes: int = 0
    issues: int = 0
    reducer_seconds: float = 0.0


def _write(platform: Any, connection: Any, metric: Any, rows: list, days: list[date], run_id: str) -> int:
    """As the asset does: one batch per partition (each day of the range, or the connection's snapshot)."""
    from dfx_pipelines.platform.metric_store import Provenance

    if not metric.daily:
        platform.metric_store.write(connection, metric.name, connection.id, rows, Provenance(run_id, metric.name))
        return 1
    by_day: dict[date | None, list] = defaultdict(list)
    for row in rows:
        by_day[row.period].append(row)
    for day in days:
        platform.metric_store.write(
            connection, metric.name, f"{connection.id}|{day}", by_day.get(day, []), Provenance(run_id, metric.name)
        )
    return len(days)


def groups() -> list[tuple[Any, ...]]:
    """The metrics as the assets compute them: each alone, except throughput and WIP, which one multi-asset
    computes in one pass (`compute.flow_metrics`) whenever a run selects both, as the daily job does, and
    cycle time and sprint velocity, another multi-asset (`compute.board_snapshots`), as the snapshot job
    runs them."""
    from dfx_pipelines.connectors.jira.assets import FLOW_DAILY
    from dfx_pipelines.connectors.jira.compute import BOARD_SNAPSHOTS, METRICS

    found: list[tuple[Any, ...]] = []
    for metric in METRICS.values():
        for shared in (FLOW_DAILY, BOARD_SNAPSHOTS):
            if metric.name in shared:
                if metric.name == shared[0]:
                    found.append(tuple(METRICS[name] for name in shared))
                break
        else:
            found.append((metric,))
    return found


def compute_group(group: tuple[Any, ...], client: Any, connection: Any, days: list[date]) -> dict[str, Any]:
    from dfx_pipelines.connectors.jira.compute import board_snapshots, flow_metrics

    first, last = (days[0], days[-1]) if group[0].daily else (None, None)
    if len(group) > 1 and group[0].daily:
        return flow_metrics(client, connection, first, last, [m.name for m in group])
    if len(group) > 1:
        return board_snapshots(client, connection, [m.name for m in group])
    return {group[0].name: group[0].compute(client, connection, first, last)}


def sync(
    platform: Any, resource: Any, connection: Any, days: list[date], figures: dict[str, MetricFigures], *, traced: bool
) -> None:
    """Every metric once, with a fresh client per asset (a run per asset, as Dagster runs them; throughput
    and WIP are one multi-asset and share one client and one pass)."""
    for group in groups():
        label = " + ".join(m.name for m in group)
        row = figures.setdefault(label, MetricFigures(label))
        if traced:
            tracemalloc.reset_peak()
        started = time.perf_counter()
        client = resource.client(platform, connection)
        results = compute_group(group, client, connection, days)
        partitions = rows = 0
        for metric in group:
            result = results[metric.name]
            partitions += _write(platform, connection, metric, result.rows, days, "bench-traced" if traced else "bench")
            rows += len(result.rows)
        if traced:
            row.peak_bytes = tracemalloc.get_traced_memory()[1]
            continue
        row.seconds = time.perf_counter() - started
        row.partitions, row.rows = partitions, rows
        row.calls, row.records, row.bytes = client.api_calls, client.records_read, client.bytes_read
        print(f"  {label}: {row.seconds:.1f}s, {row.calls:,} calls", flush=True)


def reducers(
    platform: Any, resource: Any, connection: Any, days: list[date], figures: dict[str, MetricFigures]
) -> None:
    """Per asset: record the client's answers, then time the metrics computed from the recording alone."""
    for group in groups():
        label = " + ".join(m.name for m in group)
        recording = Recording(resource.client(platform, connection))
        recorded = compute_group(group, recording, connection, days)
        started = time.perf_counter()
        replayed = compute_group(group, Replay(recording.answers), connection, days)
        seconds = time.perf_counter() - started
        if any(replayed[name].rows != recorded[name].rows for name in recorded):
            print(f"  warning: {label} replayed to different rows than it computed", flush=True)
        figures[label].issues, figures[label].reducer_seconds = recording.issues_given(), seconds
        del recording, recorded, replayed


# ---------------------------------------------------------------- main


def main() -> None:
    from dfx_pipelines.connectors.jira.connect import connect_jira_cloud
    from dfx_pipelines.connectors.jira.plugin import DEMO_FIELD_MAPPER, DEMO_SELECTION
    from dfx_pipelines.connectors.jira.resource import JiraResource
    from dfx_pipelines.connectors.jira.sandbox.server import DEFAULT_REDIRECT_URI, complete_consent
    from dfx_pipelines.platform.db import dispose_engine
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    begun = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    last = now.date()
    days = [last - timedelta(days=DAYS - 1 - n) for n in range(DAYS)]
    figures: dict[str, MetricFigures] = {}
    traced_total = 0
    with tempfile.TemporaryDirectory(prefix="dfx-bench-jira-") as folder:
        home = Path(folder)
        print(f"generating a {ISSUES:,}-issue Jira Cloud site in a child process ...", flush=True)
        sandbox = SandboxProcess(ISSUES, now, home / "ca")
        settings = Settings.from_env({"DFX_HOME": str(home / "dfx_home")})  # nothing from the caller's DFX_*
        try:
            print(f"  generated in {sandbox.generation_seconds:.0f}s (not measured)", flush=True)
            platform = Platform(settings)
            platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="bench@example.test"))
            resource = JiraResource(
                client_id=sandbox.client_id, client_secret=sandbox.client_secret, sandbox_ca_path=sandbox.ca_pem_path
            )
            connection = connect_jira_cloud(
                platform,
                config={"id": "jira-bench", "workspace_id": "bench", "display_name": "Bench site",
                        "selection": DEMO_SELECTION, "field_mapper": DEMO_FIELD_MAPPER},
                session=resource.session(platform), token_session=resource.token_session(platform),
                client_id=sandbox.client_id, client_secret=sandbox.client_secret, redirect_uri=DEFAULT_REDIRECT_URI,
                receive_code=lambda url: complete_consent(url, ca_pem_path=sandbox.ca_pem_path),
                auth_url=sandbox.url, api_origin=sandbox.url,
            )  # fmt: skip

            print(f"full sync, timed ({len(days)} days for the daily metrics) ...", flush=True)
            sync(platform, resource, connection, days, figures, traced=False)
            if TRACE:
                print("full sync again, under tracemalloc (peak memory) ...", flush=True)
                tracemalloc.start()
                try:
                    sync(platform, resource, connection, days, figures, traced=True)
                    traced_total = tracemalloc.get_traced_memory()[1]
                finally:
                    tracemalloc.stop()
            if REDUCERS:
                print("recording each metric's answers, then timing the reducers on them ...", flush=True)
                reducers(platform, resource, connection, days, figures)
        finally:
            sandbox.stop()
            dispose_engine(settings.metrics_db_url)

    rows = list(figures.values())
    total = MetricFigures(
        "total", *(sum(getattr(r, f) for r in rows) for f in ("partitions", "rows", "calls", "records", "bytes")),
        seconds=sum(r.seconds for r in rows), peak_bytes=max([traced_total] + [r.peak_bytes for r in rows]),
        issues=sum(r.issues for r in rows), reducer_seconds=sum(r.reducer_seconds for r in rows),
    )  # fmt: skip
    selection = (
        f"projects {', '.join(DEMO_SELECTION['projects'])}; boards {', '.join(map(str, DEMO_SELECTION['boards']))}"
    )
    print()
    print(
        f"Jira Cloud sync, {ISSUES:,}-issue site, {selection}, daily metrics over {DAYS} days "
        f"(site generated in {sandbox.generation_seconds:.0f}s, not measured)"
    )
    width = max(20, *(len(r.name) for r in rows))
    header = (f"{'metric':{width}s} {'partitions':>10s} {'rows':>6s} {'API calls':>9s} {'records':>9s} {'MiB read':>9s} "
              f"{'wall s':>7s} {'peak MiB':>8s} {'issues in':>9s} {'reduce s':>8s} {'issues/s':>9s}")  # fmt: skip
    print(header)
    print("-" * len(header))
    for r in rows + [total]:
        if r is total:
            print("-" * len(header))
        peak = f"{r.peak_bytes / MIB:8.1f}" if TRACE else f"{'-':>8s}"
        rate = f"{r.issues / r.reducer_seconds:9,.0f}" if r.issues and r.reducer_seconds else f"{'-':>9s}"
        print(f"{r.name:{width}s} {r.partitions:10,d} {r.rows:6,d} {r.calls:9,d} {r.records:9,d} {r.bytes / MIB:9.2f} "
              f"{r.seconds:7.2f} {peak} {r.issues:9,d} {r.reducer_seconds:8.2f} {rate}")  # fmt: skip
    print()
    print(
        "peak MiB: tracemalloc peak of the client process during that metric (total: of the whole sync); "
        "issues in: issues the metric's searches returned; reduce s: the metric recomputed from its recorded answers (no I/O)"
    )
    print(f"whole benchmark: {time.perf_counter() - begun:.0f}s")


if __name__ == "__main__":
    main()
