"""How long deleting a removed connection takes when it holds a year of daily partitions.

Builds, on a real on-disk setup (a SQLite Dagster instance, like the embedded default), one
Salesforce-kind connection (no network: the provider revocation step is not part of deletion) with
365 days x 9 daily metrics of metric-store batches (12 values each), plus a bystander connection with
the same metric volume so the deletes run against a shared table; and Dagster history for the year:
one real run per day tagged with the connection, each recording a materialization per metric asset for
its `connection|day` partition (what a daily sync records). Then it removes the connection and times
`delete_connection_data`, phase by phase: vault, metric rows, runs (with event logs and compute
logs), leftover partition events (and Dagster's per-asset summaries), dynamic partition, compaction
of the metric database and of Dagster's storage (SQLite VACUUM, PostgreSQL VACUUM FULL), sensor tick
history, the rest (audit, registry).

Three times if PostgreSQL answers on 127.0.0.1:5432 (db `test`, trust auth; override with
BENCH_PG_ADMIN_URL): once with the metric database on SQLite (the embedded default), once on a
PostgreSQL database created for the run and dropped afterwards, and once as in production, Dagster's
run and event storage on PostgreSQL too. Prints figures; asserts nothing.
BENCH_DAYS shortens the year for a quick look.

Then (`scaling`, PostgreSQL only) how deletion grows with the runs of *other* connections: one removed
connection with BENCH_OWN_RUNS real runs, deleted while 0, 10,000 and 100,000 (BENCH_OTHER_RUNS, comma-
separated) runs of 1,000 other connections sit in the same run storage; once through the old code path
(`_delete_runs_before`, kept here: every run in the instance read, page by page, and its tags tested) and
once through the current one (Dagster's run filters on the connection's tags). Reported: the runs phase,
the whole deletion with and without compaction (VACUUM FULL rewrites whole tables: it grows with their
size whatever the deletion reads), run records read from run storage, and SQL statements run.
`python -m bench.lifecycle_deletion scaling` runs only this part; `finding` times the search alone (no
erasing), with the rows PostgreSQL's plans scan.
"""

import os
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

DAYS = int(os.environ.get("BENCH_DAYS", "365"))
METRICS = [f"metric_{n}" for n in range(9)]
VALUES_PER_BATCH = 12
PG_ADMIN_URL = os.environ.get("BENCH_PG_ADMIN_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


@contextmanager
def _postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database's URL, dropped afterwards; None when the server does not answer."""
    import sqlalchemy as sa

    from dfx_pipelines.platform.db import dispose_engine

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dfx_bench_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as db:
            db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        print(f"PostgreSQL not reachable ({type(exc).__name__}): skipping the PostgreSQL figures")
        admin.dispose()
        yield None
        return
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        dispose_engine(url)
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


class _Phases:
    """Wall-clock seconds spent in each wrapped callable, by label."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, attribute: str, label: str) -> None:
        original = getattr(owner, attribute)
        in_instance_dict = attribute in getattr(owner, "__dict__", {})

        def timed(*args: Any, **kwargs: Any) -> Any:
            began = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - began

        setattr(owner, attribute, timed)
        self._undo.append(
            (lambda: setattr(owner, attribute, original)) if in_instance_dict else (lambda: delattr(owner, attribute))
        )

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()


def _sync_day(instance: Any, daily_sync: Any, connection_id: str, partition: str) -> None:
    """One day's run of the bench's sync job for a connection, tagged as the connector's runs are."""
    daily_sync.execute_in_process(
        instance=instance,
        run_config={
            "ops": {"sync_day": {"config": {"partition": partition}}},
            "loggers": {"console": {"config": {"log_level": "ERROR"}}},
        },
        tags={"dfx/connection": connection_id, "dagster/partition/connection": connection_id},
    )


def _measure(root: Path, metrics_db_url: str | None, dagster_pg_url: str | None = None) -> dict[str, Any]:
    import dagster as dg

    from dfx_pipelines.connectors.salesforce.plugin import PLUGIN
    from dfx_pipelines.lifecycle import deletion
    from dfx_pipelines.platform.db import dispose_engine
    from dfx_pipelines.platform.metric_rows import MetricRow
    from dfx_pipelines.platform.metric_store import Provenance
    from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    env = {"DFX_HOME": str(root / "dfx")}
    if metrics_db_url:
        env["DFX_METRICS_DB_URL"] = metrics_db_url
    platform = Platform(Settings.from_env(env))
    platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="o@bench.test"))
    connection, bystander = (
        platform.registry.add_connection(
            parse_connection({"id": slug, "workspace_id": "bench", "kind": "salesforce", "display_name": slug}),
            vault=platform.vault,
            secrets={
                "oauth_refresh_token": f"bench-refresh-token-{slug}",
                "oauth_access_token": f"bench-access-token-{slug}",
            },
        )
        for slug in ("sf-year", "sf-other")
    )
    first = date.today() - timedelta(days=DAYS - 1)
    days = [first + timedelta(days=n) for n in range(DAYS)]
    measures = ("count", "amount", "rate") * (VALUES_PER_BATCH // 3)
    (root / "dagster").mkdir()
    figures: dict[str, Any] = {
        "metric_db": "PostgreSQL" if metrics_db_url else "SQLite",
        "dagster_db": "PostgreSQL" if dagster_pg_url else "SQLite on disk",
    }
    storage = {"storage": {"postgres": {"postgres_url": dagster_pg_url}}} if dagster_pg_url else None
    with dg.instance_for_test(temp_dir=str(root / "dagster"), overrides=storage) as instance:
        instance.add_dynamic_partitions("salesforce_connections", [connection.id, bystander.id])
        began = time.perf_counter()
        for owner in (connection, bystander):
            for day in days:
                key = f"{owner.id}|{day.isoformat()}"
                for metric in METRICS:
                    rows = [
                        MetricRow(metric, measure, float(n), day, MetricRow.dims(stage=f"s{n}"))
                        for n, measure in enumerate(measures)
                    ]
                    platform.metric_store.write(owner, metric, key, rows, Provenance("bench", "SELECT ..."))
        figures["setup_metrics_s"] = time.perf_counter() - began

        @dg.op(config_schema={"partition": str})
        def sync_day(context: dg.OpExecutionContext) -> None:
            # What a daily run records: one materialization per metric asset for its partition.
            for metric in METRICS:
                context.log_event(
                    dg.AssetMaterialization(
                        asset_key=["salesforce", metric],
                        partition=context.op_config["partition"],
                        metadata={"rows": VALUES_PER_BATCH},
                    )
                )

        @dg.job(executor_def=dg.in_process_executor)
        def daily_sync() -> None:
            sync_day()

        began = time.perf_counter()
        for day in days:
            key = f"{connection.id}|{day.isoformat()}"
            _sync_day(instance, daily_sync, connection.id, key)
        figures["setup_runs_s"] = time.perf_counter() - began
        figures["values"] = len(platform.metric_store.read(connection_id=connection.id))
        figures["runs_before"] = len(instance.get_run_records())
        figures["materializations_before"] = sum(
            len(instance.get_materialized_partitions(key)) for key in instance.get_asset_keys(prefix=["salesforce"])
        )
        figures["event_db_mb"] = sum(p.stat().st_size for p in (root / "dagster").rglob("*.db")) / 2**20  # SQLite only
        platform.registry.set_status(connection.id, ConnectionStatus.REMOVED)

        phases = _Phases()
        phases.wrap(platform.vault, "destroy_connection", "vault (data key, secrets)")
        phases.wrap(platform.metric_store, "delete_connection", "metric rows (values, batches)")
        phases.wrap(deletion, "_delete_runs", "runs (rows, events, checks, compute logs)")
        phases.wrap(deletion, "_wipe_partition_events", "leftover partition events")
        phases.wrap(instance, "delete_dynamic_partition", "dynamic partition")
        phases.wrap(deletion, "erase_connection_from_ticks", "sensor tick history")
        phases.wrap(deletion, "compact_metric_db", "metric db compaction (VACUUM [FULL])")
        phases.wrap(deletion, "compact_dagster_storage", "Dagster compaction (VACUUM [FULL])")
        try:
            started = time.perf_counter()
            report = deletion.delete_connection_data(platform, PLUGIN, instance, connection.id, actor="bench")
            figures["total_s"] = time.perf_counter() - started
        finally:
            phases.restore()
        figures["phases"] = dict(phases.seconds)
        figures["report"] = report
        figures["runs_after"] = len(instance.get_run_records())
    dispose_engine(platform.settings.metrics_db_url)
    return figures


def _print(figures: dict[str, Any]) -> None:
    report = figures["report"]
    counts = {
        "vault (data key, secrets)": f"{report.secrets_deleted} secrets",
        "metric rows (values, batches)": f"{report.metric_values_deleted} values",
        "runs (rows, events, checks, compute logs)": f"{report.runs_deleted} runs",
        "leftover partition events": f"{report.partition_events_wiped} events",
        "dynamic partition": "1 partition" if report.partition_removed else "none",
    }
    print(
        f"\nmetric database {figures['metric_db']}, Dagster instance {figures['dagster_db']}: {DAYS} days x {len(METRICS)} metrics "
        f"= {DAYS * len(METRICS)} batches, {figures['values']} metric values (a bystander connection holds as many again), "
        f"{figures['runs_before']} runs, {figures['materializations_before']} materialized partitions, "
        f"event storage {figures['event_db_mb']:.1f} MiB on disk; setup {figures['setup_metrics_s']:.0f} s metrics + {figures['setup_runs_s']:.0f} s runs"
    )
    print(f"  {'phase':44s} {'seconds':>8s}  deleted")
    accounted = 0.0
    for label, seconds in figures["phases"].items():
        accounted += seconds
        print(f"  {label:44s} {seconds:8.2f}  {counts.get(label, '')}")
    print(f"  {'audit, registry, the rest':44s} {figures['total_s'] - accounted:8.2f}")
    print(f"  {'total':44s} {figures['total_s']:8.2f}  ({figures['runs_after']} runs left in the instance)")


# ---------------------------------------------------------------- scaling with other connections' runs

OWN_RUNS = int(os.environ.get("BENCH_OWN_RUNS", "20"))
OTHER_RUNS = [int(n) for n in os.environ.get("BENCH_OTHER_RUNS", "0,10000,100000").split(",")]
OTHER_CONNECTIONS = 1000
_TEMPLATE = "sf-template"


def _delete_runs_before(instance: Any, connection_id: str, *_: Any) -> int:
    """The runs step as it was before the run filters (deletion.py at cd0f75e), kept to measure it."""
    from dfx_pipelines.lifecycle.deletion import erase_run, run_is_for

    deleted, cursor = 0, None
    while True:
        records = instance.get_run_records(limit=500, cursor=cursor)
        if not records:
            return deleted
        for record in records:
            if run_is_for(record.dagster_run.tags, connection_id):
                erase_run(instance, record.dagster_run.run_id)
                deleted += 1
        cursor = records[-1].dagster_run.run_id


def _seed_other_runs(instance: Any, dagster_url: str, count: int) -> float:
    """`count` runs of OTHER_CONNECTIONS other Salesforce connections, half snapshot runs (partition
    `slug`) and half daily range runs (`slug|day` .. `slug|day`), as our schedules request them, each on
    a night of its own (its range starts on another day: tag values are nearly unique, as in production,
    where each night's range starts a day later). Two
    template runs are written through the run storage's own `add_run` (rows in `runs` and `run_tags`
    exactly as Dagster writes them), then copied in SQL with a fresh run id, another connection's slug
    and another first day substituted in every column and tag (the run body stays a valid serialized run: only string values
    inside it change). One `add_run` per run would take ~3 ms x 100,000 on this machine; the copies are
    the same rows, indexed the same way. ANALYZE afterwards, as autovacuum would."""
    import dagster as dg

    from dfx_pipelines.platform.partitions import range_tags

    began = time.perf_counter()
    day = date.today()
    first = day - timedelta(days=89)
    common = {"dfx/connection": _TEMPLATE, "dfx/api": "salesforce"}
    templates = {
        "snapshot": {**common, "dfx/sync": "nightly", "dagster/partition": _TEMPLATE},
        "daily": {**common, "dfx/sync": "nightly", **range_tags(_TEMPLATE, first, day)},
    }
    ids = {}
    for name, tags in templates.items():
        run = dg.DagsterRun(job_name=f"salesforce_{name}_job", run_id=str(uuid.uuid4()), tags=tags)
        instance.run_storage.add_run(run.with_status(dg.DagsterRunStatus.SUCCESS))
        ids[name] = run.run_id
    engine = sa.create_engine(dagster_url)
    columns = ("snapshot_id", "pipeline_name", "mode", "status", "partition", "partition_set")
    columns += ("create_timestamp", "update_timestamp", "start_time", "end_time", "backfill_id")
    copied = ", ".join(f'REPLACE(t."{c}", :tmpl, g.slug)' if c == "partition" else f't."{c}"' for c in columns)
    with engine.begin() as db:
        db.execute(
            sa.text(
                "CREATE TEMP TABLE seed AS SELECT gen_random_uuid()::text AS run_id, "
                "'sf-other-' || (n % :others) AS slug, CASE WHEN n % 2 = 0 THEN :snap ELSE :daily END AS tmpl_id, "
                "to_char(CAST(:first AS date) - (n / :others), 'YYYY-MM-DD') AS first_day "
                "FROM generate_series(1, :count) AS n"
            ),
            {
                "others": OTHER_CONNECTIONS,
                "snap": ids["snapshot"],
                "daily": ids["daily"],
                "count": count,
                "first": first.isoformat(),
            },
        )
        db.execute(
            sa.text(
                f"INSERT INTO runs (run_id, run_body, {', '.join(columns)}) "
                f"SELECT g.run_id, REPLACE(REPLACE(REPLACE(t.run_body, t.run_id, g.run_id), :tmpl, g.slug), :first, g.first_day), "
                f"{copied} "
                "FROM seed g JOIN runs t ON t.run_id = g.tmpl_id ORDER BY random()"
            ),
            {"tmpl": _TEMPLATE, "first": first.isoformat()},
        )
        db.execute(
            sa.text(
                "INSERT INTO run_tags (run_id, key, value) "
                "SELECT g.run_id, t.key, REPLACE(REPLACE(t.value, :tmpl, g.slug), :first, g.first_day) "
                "FROM seed g JOIN run_tags t ON t.run_id = g.tmpl_id"
            ),
            {"tmpl": _TEMPLATE, "first": first.isoformat()},
        )
        for name in ids.values():  # the templates go: only the copies remain
            db.execute(sa.text("DELETE FROM run_tags WHERE run_id = :id"), {"id": name})
            db.execute(sa.text("DELETE FROM runs WHERE run_id = :id"), {"id": name})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        db.execute(sa.text("ANALYZE runs"))
        db.execute(sa.text("ANALYZE run_tags"))
    engine.dispose()
    return time.perf_counter() - began


class _Reads:
    """Run records returned by the run storage, and SQL statements executed, while counting."""

    def __init__(self, run_storage: Any) -> None:
        self.records = self.statements = 0
        self.counting = False
        for name in ("get_run_records", "get_runs", "get_run_ids"):
            original = getattr(run_storage, name)

            def counted(*args: Any, _original: Callable = original, **kwargs: Any) -> Any:
                result = _original(*args, **kwargs)
                if self.counting:
                    self.records += len(result)
                return result

            setattr(run_storage, name, counted)
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._statement)

    def _statement(self, *args: Any) -> None:
        if self.counting:
            self.statements += 1

    def close(self) -> None:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", self._statement)


def _measure_scaling(root: Path, dagster_url: str, others: int, path: str) -> dict[str, Any]:
    import dagster as dg

    from dfx_pipelines.connectors.salesforce.plugin import PLUGIN
    from dfx_pipelines.lifecycle import deletion
    from dfx_pipelines.platform.db import dispose_engine
    from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    platform = Platform(Settings.from_env({"DFX_HOME": str(root / "dfx")}))
    platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="o@bench.test"))
    connection = platform.registry.add_connection(
        parse_connection({"id": "sf-gone", "workspace_id": "bench", "kind": "salesforce", "display_name": "x"}),
        vault=platform.vault,
        secrets={"oauth_refresh_token": "bench-refresh-token"},
    )
    figures: dict[str, Any] = {"others": others, "path": path}
    storage = {"storage": {"postgres": {"postgres_url": sa_url_for_dagster(dagster_url)}}}
    (root / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "dagster"), overrides=storage) as instance:
        instance.add_dynamic_partitions("salesforce_connections", [connection.id])

        @dg.op(config_schema={"partition": str})
        def sync_day(context: dg.OpExecutionContext) -> None:
            for metric in METRICS:
                context.log_event(
                    dg.AssetMaterialization(asset_key=["salesforce", metric], partition=context.op_config["partition"])
                )

        @dg.job(executor_def=dg.in_process_executor)
        def daily_sync() -> None:
            sync_day()

        # The removed connection's runs first (the oldest), then everyone else's.
        for n in range(OWN_RUNS):
            key = f"{connection.id}|{(date.today() - timedelta(days=n)).isoformat()}"
            _sync_day(instance, daily_sync, connection.id, key)
        figures["seed_s"] = _seed_other_runs(instance, dagster_url, others) if others else 0.0
        figures["runs_before"] = instance.get_runs_count()
        platform.registry.set_status(connection.id, ConnectionStatus.REMOVED)

        phases = _Phases()
        original = deletion._delete_runs
        if path == "before":
            deletion._delete_runs = _delete_runs_before
        phases.wrap(deletion, "_delete_runs", "runs")
        phases.wrap(deletion, "compact_metric_db", "compaction")
        phases.wrap(deletion, "compact_dagster_storage", "compaction")
        reads = _Reads(instance.run_storage)
        reads.counting = True
        try:
            started = time.perf_counter()
            report = deletion.delete_connection_data(platform, PLUGIN, instance, connection.id, actor="bench")
            figures["total_s"] = time.perf_counter() - started
        finally:
            reads.counting = False
            reads.close()
            phases.restore()
            deletion._delete_runs = original
        figures.update(
            runs_s=phases.seconds["runs"],
            compaction_s=phases.seconds["compaction"],
            runs_deleted=report.runs_deleted,
            records_read=reads.records,
            statements=reads.statements,
            runs_after=instance.get_runs_count(),
        )
    dispose_engine(platform.settings.metrics_db_url)
    return figures


def scaling() -> None:
    rows = []
    for others in OTHER_RUNS:
        for path in ("before", "after"):
            with _postgres_database() as dagster_url:
                if not dagster_url:
                    return
                with tempfile.TemporaryDirectory() as folder:
                    figures = _measure_scaling(Path(folder), dagster_url, others, path)
            rows.append(figures)
            print(
                f"  other runs {others:>7,d}  {path:6s}  runs phase {figures['runs_s']:7.3f} s  "
                f"total {figures['total_s']:7.2f} s  without compaction {figures['total_s'] - figures['compaction_s']:7.3f} s  "
                f"run records read {figures['records_read']:>7,d}  SQL statements {figures['statements']:>6,d}  "
                f"deleted {figures['runs_deleted']} of its {OWN_RUNS} runs; {figures['runs_after']:,d} runs left "
                f"(seeded in {figures['seed_s']:.1f} s)",
                flush=True,
            )


def _nodes(plan: dict[str, Any]) -> list[str]:
    name = plan["Node Type"] + (f" on {plan['Index Name']}" if "Index Name" in plan else "")
    return [name, *(node for child in plan.get("Plans", []) for node in _nodes(child))]


def _scanned(plan: dict[str, Any]) -> int:
    """Rows a plan's scan nodes read (returned, times loops, plus those their filter removed)."""
    rows = 0
    if "Scan" in plan["Node Type"]:
        rows += (plan["Actual Rows"] + plan.get("Rows Removed by Filter", 0)) * plan["Actual Loops"]
    return rows + sum(_scanned(child) for child in plan.get("Plans", []))


def _find_before(instance: Any, connection_id: str) -> tuple[set[str], int]:
    """The old path's search, without the erasing: every run record, page by page, its tags tested."""
    from dfx_pipelines.lifecycle.deletion import run_is_for

    found, read, cursor = set(), 0, None
    while records := instance.get_run_records(limit=500, cursor=cursor):
        read += len(records)
        found |= {r.dagster_run.run_id for r in records if run_is_for(r.dagster_run.tags, connection_id)}
        cursor = records[-1].dagster_run.run_id
    return found, read


def _find_after(instance: Any, connection_id: str, first_day: date) -> tuple[set[str], int]:
    from dfx_pipelines.lifecycle import deletion

    found, read = set(), 0
    for runs_filter in deletion.connection_run_filters(instance, connection_id, first_day):
        records = instance.get_run_records(filters=runs_filter, limit=500)
        read += len(records)
        found |= {r.dagster_run.run_id for r in records}
    return found, read


def finding() -> None:
    """Finding the connection's runs alone (no erasing, so the figure is not drowned by the per-run
    erase), old path versus current, as other connections' runs are added (0, 10,000, 100,000): seconds
    (best of BENCH_REPEAT), run records read, and for the current path the rows PostgreSQL's plans scan
    (each statement Dagster sent, captured, under EXPLAIN ANALYZE). The connection, a year old, has
    BENCH_OWN_RUNS runs: half ours (`dfx/connection`), a quarter launched from the UI (`dagster/partition`),
    a quarter single-run backfills (range tags only)."""
    import dagster as dg

    from dfx_pipelines.platform.partitions import range_tags

    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    first_day = date.today() - timedelta(days=365)
    print(f"\nfinding the runs of a connection with {OWN_RUNS} runs (PostgreSQL; best of {repeat})")
    print(f"  {'other runs':>10s}  {'path':6s}  {'seconds':>8s}  {'records read':>12s}  {'rows scanned':>12s}  found")
    with _postgres_database() as url, tempfile.TemporaryDirectory() as folder:
        if not url:
            return
        storage = {"storage": {"postgres": {"postgres_url": sa_url_for_dagster(url)}}}
        with dg.instance_for_test(temp_dir=folder, overrides=storage) as instance:
            for n in range(OWN_RUNS):
                day = date.today() - timedelta(days=n)
                tags = (
                    {"dfx/connection": "sf-gone"}
                    if n % 2 == 0
                    else {"dagster/partition": "sf-gone"}
                    if n % 4 == 1
                    else range_tags("sf-gone", day - timedelta(days=30), day)
                )
                instance.add_run(dg.DagsterRun(job_name="daily_sync", run_id=str(uuid.uuid4()), tags=tags))
            seeded = 0
            for others in sorted(OTHER_RUNS):
                if others > seeded:
                    _seed_other_runs(instance, url, others - seeded)
                    seeded = others
                for path in ("before", "after"):
                    best = float("inf")
                    for _ in range(1 if path == "before" and others >= 100_000 else repeat):
                        began = time.perf_counter()
                        found, read = (
                            _find_before(instance, "sf-gone")
                            if path == "before"
                            else _find_after(instance, "sf-gone", first_day)
                        )
                        best = min(best, time.perf_counter() - began)
                    scanned = _rows_scanned(instance, url, first_day) if path == "after" else read
                    print(
                        f"  {others:>10,d}  {path:6s}  {best:8.3f}  {read:>12,d}  {scanned:>12,d}  {len(found)}",
                        flush=True,
                    )


def _rows_scanned(instance: Any, url: str, first_day: date) -> int:
    """Rows the plans of the current path's statements scan, as PostgreSQL's EXPLAIN ANALYZE counts them."""
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        captured.append((statement, parameters))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", capture)
    try:
        _find_after(instance, "sf-gone", first_day)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", capture)
    engine = sa.create_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        total = 0
        for statement, parameters in captured:
            if statement.lstrip().upper().startswith("SELECT") and "run_tags" in statement:  # not the catalog
                cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0][0]["Plan"]
                total += _scanned(plan)
                if os.environ.get("BENCH_PLANS"):
                    print(f"      {_scanned(plan):>8,d} {', '.join(_nodes(plan))} {str(parameters)[:120]}")
        return total
    finally:
        raw.close()
        engine.dispose()


def main(parts: list[str] | None = None) -> None:
    parts = parts or ["year", "scaling", "finding"]
    if "finding" in parts:
        finding()
    if "scaling" in parts:
        print(f"\nscaling: deleting a connection with {OWN_RUNS} runs among other connections' runs (PostgreSQL)")
        scaling()
    if "year" not in parts:
        return
    with tempfile.TemporaryDirectory() as folder:
        _print(_measure(Path(folder), None))
    with _postgres_database() as url:
        if url:
            with tempfile.TemporaryDirectory() as folder:
                _print(_measure(Path(folder), url))
    # Production: the metric database and Dagster's storage (dagster.yaml) both on PostgreSQL.
    with _postgres_database() as url, _postgres_database() as dagster_url:
        if url and dagster_url:
            with tempfile.TemporaryDirectory() as folder:
                _print(_measure(Path(folder), url, sa_url_for_dagster(dagster_url)))


def sa_url_for_dagster(url: str) -> str:
    """dagster-postgres wants a plain `postgresql://` URL (it picks psycopg2 itself)."""
    import sqlalchemy as sa

    return sa.engine.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
