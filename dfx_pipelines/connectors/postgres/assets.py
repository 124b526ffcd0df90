"""The PostgreSQL metric asset and its key-count check. The asset computes every customer-defined metric
spec of a connection per day: partitioned by connection × day, a backfill over a range is one run
(single-run backfill policy) sending ONE aggregate `GROUP BY day` SELECT per spec for the whole range —
each through the shared SQL gate and the EXPLAIN cost guard before the first runs — and, per tracked
table with a key column, one `COUNT(key) GROUP BY day` whose counts are stored beside the metrics.

The check `key_counts_match_source` (run nightly by `postgres_key_count_job`, one run per connection)
counts the keys per day again and compares them with what the last computation stored: a day with fewer
keys lost rows to a hard delete, which no watermark column can show; the check fails naming those days,
and the nightly recompute that follows heals them.
"""

import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from dfx_pipelines.connectors.postgres.metrics import (
    KEY_COUNT_METRIC,
    MetricSpec,
    by_day,
    key_count_drift,
    key_count_rows,
    results_markdown,
    specs_of,
    to_metric_rows,
    tracking_of,
)
from dfx_pipelines.connectors.postgres.queries import key_count_query, metric_query
from dfx_pipelines.connectors.postgres.resource import KIND, GatedQuery, PostgresResource
from dfx_pipelines.platform.errors import ConfigError, ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.freshness import METRIC_FRESHNESS
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.partitions import (
    CONNECTOR_EXECUTOR,
    connection_daily_partitions,
    history_range,
    run_partitions,
)
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource

GROUP = "postgres"
DAILY_PARTITIONS = connection_daily_partitions(KIND)
METRICS_KEY = dg.AssetKey([KIND, "metric_specs"])
KEY_COUNT_CHECK = "key_counts_match_source"
SOURCE_KEY = dg.AssetKey([KIND, "source", "selected_tables"])
SOURCE_SPEC = dg.AssetSpec(
    SOURCE_KEY,
    group_name=GROUP,
    kinds={"postgres"},
    description="The tables and views each connection selected in its PostgreSQL database (read only through the SQL gate; nothing is copied).",
)


def time_type(connection: Connection, table: str, column: str) -> str:
    """The column's type as connect found it in the catalog."""
    columns = ((connection.discovered.get("tables") or {}).get(table) or {}).get("columns") or {}
    if column not in columns:
        raise ConfigError(f"{table}.{column} is not in the catalog connect recorded: reconnect to refresh it")
    return str(columns[column])


def _partitions(context: dg.AssetExecutionContext) -> tuple[str, list[date]]:
    partitions = run_partitions(context)
    connections = {p.connection_id for p in partitions}
    if len(connections) != 1:
        raise ConnectorError(f"one run covers one connection; got {sorted(connections)} (backfill per connection)")
    return connections.pop(), sorted(p.day for p in partitions if p.day is not None)


def metric_queries(connection: Connection, first: date, last: date) -> list[tuple[MetricSpec | str, GatedQuery]]:
    """One query per spec and one per tracked table with a key column, each for the whole range."""
    days = (last - first).days + 1
    queries: list[tuple[MetricSpec | str, GatedQuery]] = [
        (
            spec,
            GatedQuery(
                metric_query(spec, first, last, time_type(connection, spec.table, spec.time_column)), spec.name, days
            ),
        )
        for spec in specs_of(connection)
    ]
    for entry in tracking_of(connection):
        if entry.key_column:
            sql = key_count_query(entry, first, last, time_type(connection, entry.table, entry.time_column))
            queries.append((entry.table, GatedQuery(sql, f"{KEY_COUNT_METRIC} {entry.table}", days)))
    return queries


with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)  # single-run backfills: a range is one query per spec

    @dg.asset(
        key=METRICS_KEY,
        group_name=GROUP,
        kinds={"postgres"},
        deps=[SOURCE_KEY],
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        freshness_policy=METRIC_FRESHNESS,
        tags={"dfx/api": KIND},
        pool=KIND,  # the customer database's concurrency pool (its limit: the plugin's pool_limit)
        description=(
            "The connection's customer-defined metric specs (SUM / COUNT / COUNT DISTINCT / AVG / MIN / MAX of a "
            "selected column, by optional group-by columns, per UTC day of a date or timestamp column): one aggregate "
            "query per spec for a whole range, through the shared SQL gate and an EXPLAIN cost ceiling; plus each "
            "tracked table's keys per day, for the hard-delete check."
        ),
    )
    def postgres_metric_specs(
        context: dg.AssetExecutionContext, platform: PlatformResource, postgres: PostgresResource
    ) -> Iterator[Any]:
        with step_errors(context):  # no secret text escapes; permanent errors are not retried
            yield from _metric_specs(context, platform, postgres)


def _metric_specs(
    context: dg.AssetExecutionContext, platform: PlatformResource, postgres: PostgresResource
) -> Iterator[Any]:
    connection_id, days = _partitions(context)
    connection = platform.active_connection(connection_id, KIND)  # before the password is read
    services = platform.get()
    first, last = days[0], days[-1]
    queries = metric_queries(connection, first, last)
    if not queries:
        context.log.warning(f"{connection.id} defines no metric specs: nothing to compute")
        for day in days:
            context.add_asset_metadata(
                {"dagster/row_count": dg.MetadataValue.int(0)}, partition_key=f"{connection.id}|{day.isoformat()}"
            )
        yield dg.MaterializeResult(metadata={"status": "no metric specs"})
        return
    with postgres.gated(services, connection) as gated:
        outcome = gated.run([query for _, query in queries])
    rows_by_day: dict[date, list[MetricRow]] = {day: [] for day in days}
    written_by_day: dict[date, int] = dict.fromkeys(days, 0)
    key_rows: list[MetricRow] = []
    for (what, query), result in zip(queries, outcome.results):
        if isinstance(what, str):  # a tracked table's key counts: written together below
            key_rows += key_count_rows(what, result.rows)
            continue
        per_day = by_day(to_metric_rows(what, result.rows))
        for day in days:  # every day gets a batch, empty days too: a rerun replaces stale values
            provenance = Provenance(
                context.run.run_id,
                query.sql + ("" if first == last else f"\n-- one query for {len(days)} days ({first}..{last})"),
                api_calls=1 if day == first else 0,  # the range's one query is charged to its first day
                records_read=len(per_day.get(day, [])),
                bytes_read=0,
            )
            stored = services.metric_store.write(
                connection, what.name, f"{connection.id}|{day.isoformat()}", per_day.get(day, []), provenance
            ).rows_written
            written_by_day[day] += stored
            rows_by_day[day] += per_day.get(day, [])
    if any(isinstance(what, str) for what, _ in queries):
        key_by_day = by_day(key_rows)
        for day in days:
            services.metric_store.write(
                connection,
                KEY_COUNT_METRIC,
                f"{connection.id}|{day.isoformat()}",
                key_by_day.get(day, []),
                Provenance(
                    context.run.run_id, "key counts per tracked table", records_read=len(key_by_day.get(day, []))
                ),
            )
    estimate_cost = sum(e.total_cost for e in outcome.estimates)
    scanned = sum(e.scanned_rows for e in outcome.estimates)
    for day, day_rows in rows_by_day.items():
        context.add_asset_metadata(
            {
                "dagster/row_count": dg.MetadataValue.int(written_by_day[day]),
                "result": dg.MetadataValue.md(results_markdown(day_rows)),
                "range": f"{first.isoformat()}..{last.isoformat()}",
                "plan_cost_charged": dg.MetadataValue.float(round(estimate_cost, 2) if day == first else 0.0),
                "charged_to": f"{connection.id}|{first.isoformat()}",
            },
            partition_key=f"{connection.id}|{day.isoformat()}",
        )
    yield dg.MaterializeResult(
        metadata={
            "connection": connection.id,
            "days_in_run": len(days),
            "metric_specs": sum(1 for what, _ in queries if not isinstance(what, str)),
            "queries": len(outcome.results),  # one per spec (and per tracked table), whatever the number of days
            "statements": outcome.statements,
            "estimated_plan_cost": dg.MetadataValue.float(round(estimate_cost, 2)),
            "estimated_rows_scanned": dg.MetadataValue.int(scanned),
            "result_rows": dg.MetadataValue.int(sum(len(r.rows) for r in outcome.results)),
            "query_seconds": dg.MetadataValue.float(round(sum(r.seconds for r in outcome.results), 3)),
            "rows_written_in_run": sum(written_by_day.values()),
            "sql": dg.MetadataValue.md("\n\n".join(f"```sql\n{q.sql}\n```" for _, q in queries)),
        }
    )


@dg.asset_check(
    asset=METRICS_KEY,
    name=KEY_COUNT_CHECK,
    pool=KIND,
    description="Nightly: each tracked table's keys per day counted again and compared with the counts stored "
    "when the days were computed; fewer keys on a day means rows were hard-deleted (no watermark shows that).",
)
def postgres_key_count_check(
    context: dg.AssetCheckExecutionContext, platform: PlatformResource, postgres: PostgresResource
) -> dg.AssetCheckResult:
    with step_errors(context.op_execution_context):
        connection_id = context.run.tags.get("dfx/connection")
        if not connection_id:
            raise ConfigError("the key-count check runs per connection: tag the run dfx/connection=<id>")
        connection = platform.active_connection(connection_id, KIND)
        return key_count_result(platform.get(), postgres, connection, datetime.now(UTC).date())


def key_count_result(
    services: Any, postgres: PostgresResource, connection: Connection, today: date
) -> dg.AssetCheckResult:
    tracked = [entry for entry in tracking_of(connection) if entry.key_column]
    if not tracked:
        return dg.AssetCheckResult(
            passed=True, metadata={"connection": connection.id, "status": "no tracked key column"}
        )
    first, last = history_range(connection.settings.history_days, today)
    stored_rows = services.metric_store.read(
        connection_id=connection.id, metric=KEY_COUNT_METRIC, period_from=first, period_to=last
    )
    computed = {
        date.fromisoformat(batch["partition_key"].partition("|")[2])
        for batch in services.metric_store.batches(connection.id)
        if batch["metric"] == KEY_COUNT_METRIC
    }
    queries = [
        GatedQuery(
            key_count_query(e, first, last, time_type(connection, e.table, e.time_column)),
            f"{KEY_COUNT_METRIC} {e.table}",
        )
        for e in tracked
    ]
    with postgres.gated(services, connection) as gated:
        outcome = gated.run(queries)
    drifts = []
    for entry, result in zip(tracked, outcome.results):
        stored = {
            row["period"]: int(row["value"]) for row in stored_rows if row["dimensions"].get("table") == entry.table
        }
        now = {row.period: int(row.value or 0) for row in key_count_rows(entry.table, result.rows) if row.period}
        drifts += key_count_drift(entry.table, stored, now, [d for d in computed if first <= d <= last])
    deleted = [d for d in drifts if d.now < d.stored]
    lines = [f"| {d.table} | {d.day} | {d.stored} | {d.now} |" for d in drifts[:60]]
    return dg.AssetCheckResult(
        passed=not drifts,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "connection": connection.id,
            "days_compared": len(computed),
            "days_with_fewer_keys": dg.MetadataValue.text(", ".join(sorted({str(d.day) for d in deleted})) or "none"),
            "keys_missing": dg.MetadataValue.int(sum(d.stored - d.now for d in deleted)),
            "days_changed": len({d.day for d in drifts}),
            "drift": dg.MetadataValue.md(
                "| table | day | stored | now |\n|---|---|---:|---:|\n" + "\n".join(lines) if lines else "_none_"
            ),
        },
    )


postgres_metrics_job = dg.define_asset_job(
    "postgres_metrics_job",
    selection=dg.AssetSelection.assets(METRICS_KEY),
    description="The PostgreSQL metric specs of one connection for one day or a range of days, through the SQL gate.",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)

postgres_key_count_job = dg.define_asset_job(
    "postgres_key_count_job",
    selection=dg.AssetSelection.checks(postgres_key_count_check),
    description="The hard-delete check of one PostgreSQL connection (run tag dfx/connection).",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
