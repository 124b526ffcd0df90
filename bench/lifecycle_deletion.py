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
            daily_sync.execute_in_process(
                instance=instance,
                run_config={
                    "ops": {"sync_day": {"config": {"partition": key}}},
                    "loggers": {"console": {"config": {"log_level": "ERROR"}}},
                },
                tags={"dfx/connection": connection.id, "dagster/partition/connection": connection.id},
            )
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


def main() -> None:
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
    main()
