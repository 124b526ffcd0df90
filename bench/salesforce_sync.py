"""What a Salesforce sync costs the client for a large org (1,000,000 opportunities by default), in one run.

Phases, each with its own `SalesforceClient`s, as the metric assets would run them (minus Dagster; the
record-bucket index in rows of its own):
- full sync, aggregate push-down (the connector's real path): every sales metric, the daily ones for each
  of the last `BENCH_DAYS` days, the snapshots once, written to the metric store; again for each length
  in `BENCH_FULL_DAYS` (default "30,365") that differs. Where the code has range queries
  (`assets.compute_metric_days`) the daily metrics run as the assets do, one range per chunk of
  `BUCKET_CHUNK_DAYS`; otherwise one query per day (the code before issue 19);
- the Opportunity metrics alone (win_rate, sales_cycle_length daily; open_pipeline_by_stage,
  campaign_sourced_pipeline), push-down, against the same figures computed by pulling every
  opportunity's needed fields (`SELECT <fields> FROM Opportunity`, the snapshots need them all) and
  reducing in Python;
- a CDC sync after `org.mutate(100)`: one `poll_connection` and only the partitions it asks for (one
  partition, or a range run's days, computed as above);
- the record-bucket index (`assets.RecordIndex`, read before and after the values, written to the store):
  of the 30-day sync read in full (a first sync, a weekly rebuild, every run before the incremental
  refresh); after 100 more changes, of the next 30-day sync and of the CDC sync's partitions refreshed
  from the changes; and of the CDC partitions read in full, as the CDC cycle did before.

Figures: wall time (tracemalloc off), client-side peak memory (tracemalloc peak of a second, identical
pass), API calls, records and bytes read (`SalesforceClient.api_calls` / `.bytes_read`). Printed, never
asserted.

The sandbox org runs in a child process: tracemalloc counts every thread of a process, and the sandbox's
SQLite and JSON work would otherwise be counted as the client's. Its generation (~60 s and ~1.7 GB for
1M opportunities) is not measured. `BENCH_OPPORTUNITIES=20000` runs it small.
"""

import multiprocessing
import os
import tempfile
import time
import tracemalloc
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

OPPORTUNITIES = int(os.environ.get("BENCH_OPPORTUNITIES", "1000000"))
DAYS = int(os.environ.get("BENCH_DAYS", "30"))
FULL_DAYS = [int(n) for n in os.environ.get("BENCH_FULL_DAYS", "30,365").split(",") if n.strip()]
CHANGES = int(os.environ.get("BENCH_CHANGES", "100"))
OPPORTUNITY_METRICS = ("win_rate", "sales_cycle_length", "open_pipeline_by_stage", "campaign_sourced_pipeline")
PULL_FIELDS = ("StageName", "Amount", "Probability", "IsClosed", "IsWon", "CloseDate", "CreatedDate", "CampaignId")
MIB = 1024 * 1024


# ---------------------------------------------------------------- the sandbox, in its own process


def _serve(pipe: Any, opportunities: int, now_iso: str, ca_dir: str) -> None:
    """Child process: generate the org, serve it, and obey (mutate / advance / now / stop) over the pipe."""
    from dfx_pipelines.connectors.salesforce.sandbox import SalesforceOrg, start_salesforce_sandbox

    started = time.perf_counter()
    org = SalesforceOrg(seed=7, opportunities=opportunities, now=datetime.fromisoformat(now_iso))
    generated = time.perf_counter() - started
    # A limit no benchmark reaches: the budget guard is the tests' business, not a cost to measure.
    running = start_salesforce_sandbox(org, ca_directory=Path(ca_dir), daily_api_limit=10**9)
    pipe.send((running.url, running.ca_pem_path, generated))
    while True:
        command, argument = pipe.recv()
        if command == "mutate":
            pipe.send(org.mutate(argument, seed=1).as_dict())
        elif command == "advance":
            pipe.send(org.advance(timedelta(seconds=argument)).isoformat())
        elif command == "now":
            pipe.send(org.now.isoformat())
        elif command == "stop":
            running.stop()
            pipe.send("stopped")
            return


class SandboxProcess:
    def __init__(self, opportunities: int, now: datetime, ca_dir: Path):
        context = multiprocessing.get_context("spawn")
        self._pipe, child = context.Pipe()
        self._process = context.Process(
            target=_serve, args=(child, opportunities, now.isoformat(), str(ca_dir)), daemon=True
        )
        self._process.start()
        self.url, self.ca_pem_path, self.generation_seconds = self._pipe.recv()

    def ask(self, command: str, argument: Any = None) -> Any:
        self._pipe.send((command, argument))
        return self._pipe.recv()

    def now(self) -> datetime:
        return datetime.fromisoformat(self.ask("now"))

    def stop(self) -> None:
        try:
            self.ask("stop")
        finally:
            self._process.join(timeout=10)


# ---------------------------------------------------------------- measuring


@dataclass
class Tally:
    """What the clients of one phase did."""

    calls: int = 0
    records: int = 0
    bytes: int = 0
    partitions: int = 0
    rows: list = field(default_factory=list)
    store_seconds: float = 0.0  # of the wall time, spent in the metric store (index phases)

    def add_client(self, client: Any) -> None:
        self.calls += client.api_calls
        self.records += client.stats.records_read
        self.bytes += client.bytes_read


@dataclass
class Figures:
    label: str
    tally: Tally
    seconds: float
    peak_bytes: int


def measure(label: str, phase: Callable[[], Tally]) -> Figures:
    """Run the phase twice: timed without tracemalloc (it slows allocation-heavy code), then traced."""
    started = time.perf_counter()
    tally = phase()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    try:
        phase()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    print(f"  {label}: {seconds:.1f}s", flush=True)
    return Figures(label, tally, seconds, peak)


# ---------------------------------------------------------------- the phases


def _compute(
    platform: Any, resource: Any, connection: Any, work: Iterable[tuple[Any, list[date | None]]], run_id: str
) -> Tally:
    """What the metric assets do per run: one client per metric, compute each partition (several days
    at once where the code has range queries), write it."""
    from dfx_pipelines.connectors.salesforce import assets
    from dfx_pipelines.platform.metric_store import Provenance

    ranged = getattr(assets, "compute_metric_days", None)
    tally = Tally()
    for metric, days in work:
        client = resource.client(platform, connection)
        if ranged is not None and len(days) > 1 and None not in days:
            from dfx_pipelines.connectors.salesforce.queries import Days
            from dfx_pipelines.connectors.salesforce.selection import Selection

            ordered = sorted(days)
            for start in range(0, len(ordered), assets.BUCKET_CHUNK_DAYS):
                chunk = ordered[start : start + assets.BUCKET_CHUNK_DAYS]
                queries_run, by_day = ranged(client, metric, Selection(connection.selection.objects), Days(chunk))
                soql = "\n".join(q.soql for q in queries_run)
                for day in chunk:
                    rows = by_day[day]
                    key = f"{connection.id}|{day}"
                    platform.metric_store.write(connection, metric.name, key, rows, Provenance(run_id, soql))
                    tally.rows += rows
                    tally.partitions += 1
        else:
            for day in days:
                query, rows = assets.compute_metric(client, metric, connection, day)
                key = f"{connection.id}|{day}" if day else connection.id
                platform.metric_store.write(connection, metric.name, key, rows, Provenance(run_id, query.soql))
                tally.rows += rows
                tally.partitions += 1
        tally.add_client(client)
    return tally


def _bucket_index(
    platform: Any, resource: Any, connection: Any, work: Iterable[tuple[Any, list]], *, incremental: bool
) -> Tally:
    """What the values phases leave out: the record-bucket index a daily asset run reads beside its values
    (read before and after the values, per chunk of BUCKET_CHUNK_DAYS days), for each daily metric and its
    days, and written to the store (with empty values: only the index is measured). `incremental=False`
    reads every id of the days, as the first sync, a weekly rebuild and the code before the incremental
    refresh do; `incremental=True` patches the stored buckets from the records changed since their mark
    (where every day has one). Counted on its own so the value figures stay comparable with earlier runs."""
    from dfx_pipelines.connectors.salesforce import assets
    from dfx_pipelines.platform.metric_store import Provenance

    tally = Tally()
    for metric, days in work:
        if None in days:
            continue
        client = resource.client(platform, connection)
        ordered = sorted(days)
        for start in range(0, len(ordered), assets.BUCKET_CHUNK_DAYS):
            chunk = ordered[start : start + assets.BUCKET_CHUNK_DAYS]
            if not metric.period_fields:
                continue
            index = assets.RecordIndex(
                client, platform.metric_store, metric, connection, chunk, incremental=incremental
            )
            index.read()
            index.read()
            started = time.perf_counter()
            for day, bucket in index.buckets().items():
                tally.rows.append(len(bucket.record_ids) + len(bucket.removed))
                key = f"{connection.id}|{day}"
                platform.metric_store.write(
                    connection, metric.name, key, [], Provenance("bench-index", "index"), bucket
                )
            # The store's share (bucket lookups and one transaction per partition, which a real run shares
            # with the partition's values): reported apart, the API's share is the rest of the wall time.
            tally.store_seconds += time.perf_counter() - started
        tally.partitions += len(days)
        tally.add_client(client)
    return tally


def _pull_every_opportunity(client: Any, first: date, last: date) -> list:
    """The baseline: every opportunity's needed fields, reduced in Python into the same metric rows."""
    from dfx_pipelines.connectors.salesforce import metrics as m
    from dfx_pipelines.connectors.salesforce.queries import AggregateAlias as A

    won_lost: dict[tuple[date, bool], list] = defaultdict(lambda: [0, 0.0, 0])  # count, amount sum, amounts seen
    cycles: dict[date, list] = defaultdict(list)
    stages: dict[Any, list] = defaultdict(lambda: [0, 0.0, 0.0])
    campaigns: dict[Any, list] = defaultdict(lambda: [0, 0.0])
    for record in client.stream(f"SELECT {', '.join(PULL_FIELDS)} FROM Opportunity"):
        amount = record["Amount"]
        if record["IsClosed"]:
            day = date.fromisoformat(record["CloseDate"])
            if first <= day <= last:
                group = won_lost[(day, record["IsWon"])]
                group[0] += 1
                group[1] += amount or 0.0
                group[2] += amount is not None
                if record["IsWon"]:
                    cycles[day].append({"CreatedDate": record["CreatedDate"], "CloseDate": record["CloseDate"]})
        else:
            stage = stages[record["StageName"]]
            stage[0] += 1
            stage[1] += amount or 0.0
            stage[2] += (amount or 0.0) * (record["Probability"] or 0.0) / 100.0
        if record["CampaignId"] is not None:
            campaign = campaigns[record["CampaignId"]]
            campaign[0] += 1
            campaign[1] += amount or 0.0
    rows: list = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        groups = [
            {"IsWon": won, A.RECORD_COUNT: n, A.AMOUNT_SUM: s, A.AMOUNT_COUNT: c}
            for (d, won), (n, s, c) in won_lost.items()
            if d == day
        ]
        rows += m.reduce_win_rate(groups, day) + m.reduce_sales_cycle_length(cycles.get(day, []), day)
    rows += m.reduce_open_pipeline_by_stage(
        [
            {"StageName": s, A.RECORD_COUNT: n, A.AMOUNT_SUM: a, A.EXPECTED_REVENUE_SUM: w}
            for s, (n, a, w) in stages.items()
        ]
    )
    rows += m.reduce_campaign_sourced_pipeline(
        [{"CampaignId": c, A.RECORD_COUNT: n, A.AMOUNT_SUM: a} for c, (n, a) in campaigns.items()]
    )
    return rows


def _same_rows(left: list, right: list) -> bool:
    def keyed(rows: list) -> dict:
        return {(r.metric, r.period, r.measure, r.dimensions): r.value for r in rows}

    a, b = keyed(left), keyed(right)
    if a.keys() != b.keys():
        return False
    return all(
        (x is None and y is None) or (x is not None and y is not None and abs(x - y) <= 1e-9 * max(1.0, abs(x), abs(y)))
        for x, y in ((a[k], b[k]) for k in a)
    )


# ---------------------------------------------------------------- main


def main() -> None:
    import dagster as dg

    from dfx_pipelines.connectors.salesforce.cdc import poll_connection
    from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
    from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS
    from dfx_pipelines.connectors.salesforce.plugin import DEMO_SELECTION, DEMO_WRITE_BACK
    from dfx_pipelines.connectors.salesforce.queries import Cadence
    from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
    from dfx_pipelines.connectors.salesforce.sandbox import complete_authorization
    from dfx_pipelines.platform.db import dispose_engine
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    begun = time.perf_counter()
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    last = now.date()
    first = last - timedelta(days=DAYS - 1)
    days = [first + timedelta(days=n) for n in range(DAYS)]
    with tempfile.TemporaryDirectory(prefix="dfx-bench-sf-") as folder:
        home = Path(folder)
        print(f"generating a {OPPORTUNITIES:,}-opportunity org in a child process ...", flush=True)
        sandbox = SandboxProcess(OPPORTUNITIES, now, home / "ca")
        settings = Settings.from_env({"DFX_HOME": str(home / "dfx_home")})  # nothing from the caller's DFX_*
        try:
            print(f"  generated in {sandbox.generation_seconds:.0f}s (not measured)", flush=True)
            platform = Platform(settings)
            platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="bench@example.test"))
            resource = SalesforceResource(client_id="dfx-sandbox-client", sandbox_ca_path=sandbox.ca_pem_path)
            session = resource.session(platform)
            connection = connect_salesforce(
                platform,
                session,
                config={
                    "id": "sf-bench",
                    "workspace_id": "bench",
                    "display_name": "Bench org",
                    "selection": {"objects": DEMO_SELECTION},
                    "write_back": DEMO_WRITE_BACK,
                },
                login_url=sandbox.url,
                client_id="dfx-sandbox-client",
                client_secret=None,
                redirect_uri="https://localhost/oauth/callback",
                receive_code=lambda url: complete_authorization(session, url),
            )
            daily = [mt for mt in SALES_METRICS.values() if mt.cadence is Cadence.DAILY]
            snapshot = [mt for mt in SALES_METRICS.values() if mt.cadence is Cadence.SNAPSHOT]
            everything = [(mt, list(days)) for mt in daily] + [(mt, [None]) for mt in snapshot]
            opportunity = [
                (SALES_METRICS[name], list(days) if SALES_METRICS[name].cadence is Cadence.DAILY else [None])
                for name in OPPORTUNITY_METRICS
            ]

            def pull() -> Tally:
                client = resource.client(platform, connection)
                tally = Tally(rows=_pull_every_opportunity(client, first, last), partitions=2 * DAYS + 2)
                tally.add_client(client)
                return tally

            print("measuring (each phase runs twice: timed, then under tracemalloc) ...", flush=True)
            extra = []
            for length in FULL_DAYS:
                if length == DAYS:
                    continue
                span = [last - timedelta(days=n) for n in range(length)][::-1]
                work = [(mt, list(span)) for mt in daily] + [(mt, [None]) for mt in snapshot]
                extra.append(
                    measure(
                        f"full sync, push-down ({len(work)} metrics, {length} days)",
                        lambda work=work: _compute(platform, resource, connection, work, "bench-full"),
                    )
                )
            results = [
                measure(
                    f"full sync, push-down ({len(everything)} metrics, {DAYS} days)",
                    lambda: _compute(platform, resource, connection, everything, "bench-full"),
                ),
                measure(
                    "Opportunity metrics, push-down",
                    lambda: _compute(platform, resource, connection, opportunity, "bench-opp"),
                ),
                measure("Opportunity metrics, pull every record", pull),
            ]
            same = _same_rows(results[1].tally.rows, results[2].tally.rows)

            # CDC: the first poll only sets the cursor (no call); then changes; then one poll and only its partitions.
            cursor = poll_connection(
                resource.client(platform, connection), connection, {}, sandbox.now(), platform.metric_store
            )[1]
            sandbox.ask("advance", 60)
            changes = sandbox.ask("mutate", CHANGES)
            polled_at = datetime.fromisoformat(sandbox.ask("advance", 300))

            runs: list[int] = []
            cdc_work: list[list[tuple[Any, list]]] = []  # per CDC pass, its (metric, days) work
            poll_calls: list[int] = []  # the poll's own calls (updated/deleted per object, the changed records' days)

            def cdc() -> Tally:
                client = resource.client(platform, connection)
                requests, _, resync = poll_connection(client, connection, cursor, polled_at, platform.metric_store)
                if resync:
                    raise RuntimeError(f"the poll asked for a full resync ({resync}); the benchmark expects a CDC sync")
                # Per run, per metric: its partitions (a range run: its days), computed as that run would.
                work: list[tuple[Any, list]] = []
                for request in requests:
                    key = request.partition_key
                    if isinstance(key, dg.MultiPartitionKey):
                        run_days: list = [date.fromisoformat(key.keys_by_dimension["date"])]
                    elif key is None and "dagster/asset_partition_range_start" in request.tags:
                        first_day = date.fromisoformat(request.tags["dagster/asset_partition_range_start"][-10:])
                        last_day = date.fromisoformat(request.tags["dagster/asset_partition_range_end"][-10:])
                        run_days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
                    else:
                        run_days = [None]
                    for asset in sorted(request.asset_selection or [], key=str):
                        work.append((SALES_METRICS[asset.path[-1]], run_days))
                runs.append(len(requests))
                cdc_work.append(work)
                poll_calls.append(client.api_calls)
                tally = _compute(platform, resource, connection, work, "bench-cdc")
                tally.add_client(client)
                return tally

            results.append(measure(f"CDC sync after {CHANGES} changes (1 poll + touched partitions)", cdc))
            results.extend(extra)

            # The record-bucket index beside the values (not in the rows above). Read in full: a first sync,
            # a weekly rebuild, and every run before the incremental refresh. An hour later (past the
            # generator's stamps at the org's creation and the refresh's margin), CHANGES more changes,
            # then the next 30-day sync's index and the index of the CDC sync's partitions, refreshed from
            # the changes; the CDC partitions' index read in full too (what the CDC cycle read before).
            index_days = [(mt, list(days)) for mt in daily]
            sandbox.ask("advance", 3600)
            results.append(
                measure(
                    f"index, {DAYS}-day sync, read in full",
                    lambda: _bucket_index(platform, resource, connection, index_days, incremental=False),
                )
            )
            cdc_days = [(mt, ds) for mt, ds in cdc_work[-1] if None not in ds] if cdc_work else []
            # The CDC partitions outside those days were stored by earlier syncs too (not measured).
            _bucket_index(platform, resource, connection, cdc_days, incremental=False)
            sandbox.ask("advance", 3600)
            later = sandbox.ask("mutate", CHANGES)
            sandbox.ask("advance", 300)
            results.append(
                measure(
                    f"index, {DAYS}-day sync, after {CHANGES} changes, incremental",
                    lambda: _bucket_index(platform, resource, connection, index_days, incremental=True),
                )
            )
            results.append(
                measure(
                    "index, CDC partitions, incremental",
                    lambda: _bucket_index(platform, resource, connection, cdc_days, incremental=True),
                )
            )
            results.append(
                measure(
                    "index, CDC partitions, read in full (as before)",
                    lambda: _bucket_index(platform, resource, connection, cdc_days, incremental=False),
                )
            )
            print(
                "  second batch of changes: "
                + ", ".join(f"{sum(by_object.values())} {kind}" for kind, by_object in later.items()),
                flush=True,
            )
        finally:
            sandbox.stop()
            dispose_engine(settings.metrics_db_url)

    print()
    print(
        f"Salesforce sync, {OPPORTUNITIES:,} opportunities, last {DAYS} days (org generated in {sandbox.generation_seconds:.0f}s, not measured)"
    )
    header = f"{'phase':58s} {'partitions':>10s} {'API calls':>9s} {'records':>10s} {'MiB read':>9s} {'wall s':>7s} {'peak MiB':>8s}"
    print(header)
    print("-" * len(header))
    for f in results:
        t = f.tally
        print(
            f"{f.label:58s} {t.partitions:10,d} {t.calls:9,d} {t.records:10,d} {t.bytes / MIB:9.2f} {f.seconds:7.2f} {f.peak_bytes / MIB:8.2f}"
        )
    full, push, pulled, cdc_figures = results[:4]
    print()
    print(
        f"pull-every-record vs push-down (Opportunity metrics): {pulled.tally.calls / max(push.tally.calls, 1):.1f}x calls, "
        f"{pulled.tally.bytes / max(push.tally.bytes, 1):.0f}x bytes, {pulled.seconds / max(push.seconds, 1e-9):.1f}x time; "
        f"same metric rows: {'yes' if same else 'NO'}"
    )
    print(
        f"CDC vs full sync: {cdc_figures.tally.calls / max(full.tally.calls, 1):.2f}x calls, "
        f"{cdc_figures.tally.bytes / max(full.tally.bytes, 1):.2f}x bytes, {cdc_figures.seconds / max(full.seconds, 1e-9):.2f}x time; "
        f"changes: "
        + ", ".join(f"{sum(by_object.values())} {kind}" for kind, by_object in changes.items())
        + f"; {runs[0] if runs else 0} runs requested; the poll itself {poll_calls[0] if poll_calls else 0} calls"
    )
    for other in (f for f in results[4:] if f.label.startswith("full sync")):
        print(
            f"CDC vs {other.label}: {cdc_figures.tally.calls / max(other.tally.calls, 1):.3f}x calls, "
            f"{cdc_figures.seconds / max(other.seconds, 1e-9):.3f}x time"
        )
    for f in results:
        if f.label.startswith("index"):
            print(f"{f.label}: {f.tally.store_seconds:.2f}s of its wall time in the metric store")
    print(f"whole benchmark: {time.perf_counter() - begun:.0f}s")


if __name__ == "__main__":
    main()
