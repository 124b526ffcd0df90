"""Salesforce metric assets: one per metric in `SALES_METRICS`, partitioned by connection (and by day
where the metric is time-bucketed). Each run builds the metric's SOQL from the connection's validated
selection, pushes aggregation down or streams the minimum fields, reduces, and replaces the metric
store's batch for that partition. Nothing raw is kept: records live only inside the reducer's loop. A
daily batch carries its record bucket (the ids of the records its day counted, nothing else), written in
the same transaction, which change-data capture reads to find the day a record left.
"""

import itertools
import warnings
from collections.abc import Iterable, Iterator
from datetime import date
from typing import Any

import dagster as dg

from dfx_pipelines.connectors.salesforce.metrics import (
    SALES_METRICS,
    SalesMetric,
    metrics_table_markdown,
    record_buckets,
)
from dfx_pipelines.connectors.salesforce.queries import (
    AGGREGATE_ROW_LIMIT,
    Cadence,
    Days,
    SoqlQuery,
    record_days_query,
)
from dfx_pipelines.connectors.salesforce.resource import SalesforceClient, SalesforceResource
from dfx_pipelines.connectors.salesforce.selection import Selection, SelectionError
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.freshness import METRIC_FRESHNESS
from dfx_pipelines.platform.metric_store import Provenance, RecordBucket
from dfx_pipelines.platform.partitions import (
    CONNECTOR_EXECUTOR,
    connection_daily_partitions,
    connection_partitions,
    run_partitions,
)
from dfx_pipelines.platform.registry import Connection, utcnow
from dfx_pipelines.platform.resources import PlatformResource

KIND = "salesforce"
GROUP = "salesforce"
SNAPSHOT_PARTITIONS = connection_partitions(KIND)
DAILY_PARTITIONS = connection_daily_partitions(KIND)
SELECTION_CHECK = "fields_selected"  # the warning check of a metric the connection's selection cannot feed


def asset_key(metric: SalesMetric | str) -> dg.AssetKey:
    return dg.AssetKey([KIND, metric if isinstance(metric, str) else metric.name])


def source_key(object_name: str) -> dg.AssetKey:
    return dg.AssetKey([KIND, "source", object_name])


# The Salesforce objects the metrics read, as external assets upstream of them: the lineage page then
# shows which metric reads which object. Nothing here materializes them; they stay in the customer's org.
SOURCE_SPECS = [
    dg.AssetSpec(
        source_key(name),
        group_name=GROUP,
        kinds={"salesforce"},
        description=f"The {name} records of each connection's Salesforce org (only the selected fields are read; nothing is copied).",
    )
    for name in sorted({metric.object_name for metric in SALES_METRICS.values()})
]


def _guard_aggregate(rows: list[dict[str, Any]], soql: str) -> list[dict[str, Any]]:
    # REST cannot page an aggregate query past 2,000 groups: a full page may be a silently cut result.
    if len(rows) >= AGGREGATE_ROW_LIMIT:
        raise ConnectorError(
            f"aggregate query returned {len(rows)} groups, Salesforce's limit; result may be incomplete: {soql}"
        )
    return rows


def compute_metric(
    client: SalesforceClient, metric: SalesMetric, connection: Connection, day: date | None
) -> tuple[Any, list]:
    """Build, run and reduce one metric for one partition. Returns (query, metric rows)."""
    query = metric.build(Selection(connection.selection.objects), day)
    source: Iterable[dict[str, Any]] = (
        _guard_aggregate(client.aggregate(query.soql), query.soql) if query.aggregate else client.stream(query.soql)
    )
    return query, metric.reduce(source, day)


def compute_metric_days(
    client: SalesforceClient, metric: SalesMetric, selection: Selection, days: Days
) -> tuple[list[SoqlQuery], dict[date, list]]:
    """A daily metric for every day of `days` in as few queries as Salesforce allows: one per metric
    (two for case_milestone_sla), each covering all the days and grouped (or ordered) by day. REST cannot
    page an aggregate result: a query that comes back with AGGREGATE_ROW_LIMIT groups may be cut, so it
    is re-run on the two halves of the days, recursively; a single day that still overflows fails, as a
    one-day query does. Only the first page of an aggregate result is read (queryMore is never asked
    for an aggregate query, which Salesforce refuses). Returns (the queries run, rows per day)."""
    built = metric.build_days(selection, days)
    if not all(query.aggregate for query in built):
        # Streamed: the reducer consumes the stream while it is read, one day at a time.
        return built, metric.reduce_days([(query, client.stream(query.soql)) for query in built], days)
    results: list[tuple[SoqlQuery, list[dict[str, Any]]]] = []
    for query in built:
        rows = list(itertools.islice(client.stream(query.soql), AGGREGATE_ROW_LIMIT))
        if len(rows) >= AGGREGATE_ROW_LIMIT:
            if len(days) == 1:
                _guard_aggregate(rows, query.soql)
            earlier, later = days.halves()
            first_queries, first_rows = compute_metric_days(client, metric, selection, earlier)
            later_queries, later_rows = compute_metric_days(client, metric, selection, later)
            ran = [done for done, _ in results] + [query, *first_queries, *later_queries]
            return ran, {**first_rows, **later_rows}
        results.append((query, rows))
    return built, metric.reduce_days(results, days)


# Days whose record ids are read (and held, twice: before and after the values) at once in a range run,
# and whose values are one range query set. At 1,000,000 opportunities over two years a quarter's
# CloseDate index is ~126,000 ids: the two indexes hold ~23 MiB of sets plus the id strings (~17 MiB),
# ~40 MiB (measured with tracemalloc on record_buckets); a year would be ~160 MiB. A quarter also covers
# the 90-day history window (HISTORY_WINDOW_DAYS) in one chunk.
BUCKET_CHUNK_DAYS = 92


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def _record_buckets(
    client: SalesforceClient, metric: SalesMetric, connection: Connection, partitions: list
) -> dict[date, set[str]] | None:
    """Per day of these daily partitions, the ids of the live records the metric's period fields place
    on it; None for a snapshot metric."""
    days = [p.day for p in partitions if p.day is not None]
    if metric.cadence is not Cadence.DAILY or not days or not metric.period_fields:
        return None
    query = record_days_query(
        metric.fields, Selection(connection.selection.objects), metric.period_fields, min(days), max(days)
    )
    return record_buckets(client.stream(query.soql), metric.period_fields, min(days), max(days))


def selection_check(
    metric: SalesMetric, connection: Connection, partitions: list, missing: list[str], reason: str = ""
) -> dg.AssetCheckResult:
    """The metric's fields-selected check: passes when the selection holds every field the metric needs;
    otherwise a warning naming the missing fields (the metric was not computed for these partitions)."""
    metadata: dict[str, Any] = {
        "connection": connection.id,
        "object": metric.object_name,
        "missing_fields": dg.MetadataValue.json(missing),
    }
    if missing:
        first, last = partitions[0].key, partitions[-1].key
        metadata["partitions_not_computed"] = first if first == last else f"{first}..{last}"
        metadata["reason"] = reason
    return dg.AssetCheckResult(
        check_name=SELECTION_CHECK,
        asset_key=asset_key(metric),
        passed=not missing,
        severity=dg.AssetCheckSeverity.WARN,
        metadata=metadata,
    )


def materialize_metric(
    metric: SalesMetric, context: dg.AssetExecutionContext, platform: PlatformResource, salesforce: SalesforceResource
) -> dg.MaterializeResult | dg.AssetCheckResult:
    """One metric for the run's partitions (the body of every metric asset of this connector): its
    materialization with the fields-selected check passed, or only that check failed (a warning) when
    the connection does not select the fields the metric needs."""
    services = platform.get()
    partitions = run_partitions(context)
    connection_ids = {partition.connection_id for partition in partitions}
    if len(connection_ids) != 1:
        raise ConnectorError(f"one run covers one connection; got {sorted(connection_ids)} (backfill per connection)")
    # Refuses a revoked or removed connection here, before any token is read or request sent.
    connection = platform.active_connection(connection_ids.pop(), KIND)
    selection = Selection(connection.selection.objects)
    try:
        metric.fields.check(selection)
    except SelectionError as exc:
        # Not computed, so not materialized (no partition looks computed, no row count is claimed): the
        # warning check says why, naming the fields the customer would have to select.
        context.log.warning(f"{metric.name} not computed for {connection.id}: {exc}")
        return selection_check(metric, connection, partitions, metric.fields.missing(selection), str(exc))
    client = salesforce.client(services, connection)
    written = 0
    for chunk in _chunks(partitions, BUCKET_CHUNK_DAYS if metric.cadence is Cadence.DAILY else 1):
        usage_before = client.api_calls, client.stats.records_read, client.bytes_read
        # Daily batches carry the ids their day counted (read before and after the values, so a record
        # that moves while we compute is still in the index of the day it may have been counted on).
        before = _record_buckets(client, metric, connection, chunk)
        computed = []
        if len(chunk) > 1 and all(partition.day is not None for partition in chunk):
            # Several days: one range query set for all of them (not one query per day).
            # The values are as of the query's start: write-back's If-Unmodified-Since uses this instant, so
            # a record someone edits while we compute is not overwritten.
            began = utcnow()
            queries_run, by_day = compute_metric_days(
                client, metric, selection, Days(p.day for p in chunk if p.day is not None)
            )
            range_query = _RangeQuery(queries_run)
            for partition in chunk:
                assert partition.day is not None
                computed.append((partition, range_query, by_day[partition.day], began, (0, 0, 0)))
        else:
            for partition in chunk:
                began = utcnow()
                start = client.api_calls, client.stats.records_read, client.bytes_read
                query, rows = compute_metric(client, metric, connection, partition.day)
                own = (
                    client.api_calls - start[0],
                    client.stats.records_read - start[1],
                    client.bytes_read - start[2],
                )
                computed.append((partition, query, rows, began, own))
        after = _record_buckets(client, metric, connection, chunk)
        # The chunk's index queries (and a range's queries) are charged to its first batch, so sums over
        # batches stay true.
        spent = (
            client.api_calls - usage_before[0],
            client.stats.records_read - usage_before[1],
            client.bytes_read - usage_before[2],
        )
        index_usage = tuple(total - sum(c[4][i] for c in computed) for i, total in enumerate(spent))
        for index, (partition, query, rows, began, own) in enumerate(computed):
            calls, records, bytes_ = (o + (index_usage[i] if index == 0 else 0) for i, o in enumerate(own))
            provenance = Provenance(
                context.run.run_id,
                query.soql,
                api_calls=calls,
                records_read=records,
                bytes_read=bytes_,
                computed_at=began,
            )
            bucket = None
            if before is not None and after is not None and partition.day is not None:
                bucket = RecordBucket(
                    partition.day, frozenset(before.get(partition.day, set()) | after.get(partition.day, set()))
                )
            summary = services.metric_store.write(connection, metric.name, partition.key, rows, provenance, bucket)
            written += summary.rows_written
            # In a range run Dagster records one materialization per partition; this metadata is that
            # partition's own (its rows, reads and query), so per-partition plots and pages are true.
            context.add_asset_metadata(
                partition_metadata(query, summary.rows_written, rows, provenance), partition_key=partition.key
            )
    context.log.info(
        f"{metric.name}: {len(partitions)} partition(s) of {connection.id}, {written} rows, {client.api_calls} API calls"
    )
    return dg.MaterializeResult(
        metadata={
            "connection": connection.id,
            "token_refreshes": client.stats.refreshes,
            **org_usage_metadata(client.api_usage()),
        },
        check_results=[selection_check(metric, connection, partitions, [])],
    )


class _RangeQuery:
    """What a partition computed by range queries shows as its query: all of the range's SOQL."""

    def __init__(self, queries_run: list[SoqlQuery]):
        self.soql = "\n".join(query.soql for query in queries_run)
        self.aggregate = all(query.aggregate for query in queries_run)


def partition_metadata(query: Any, rows_written: int, rows: list, provenance: Provenance) -> dict[str, Any]:
    """What one partition's materialization shows: numbers a person plots, then the query and result.

    `dagster/row_count` is the metric rows the store holds for the partition after this write.
    `rows_returned` counts the rows the API returned: aggregate groups for a pushed-down query, source
    records only when records were streamed (then also reported as `source_records`)."""
    metadata: dict[str, Any] = {
        "dagster/row_count": dg.MetadataValue.int(rows_written),
        "rows_returned": dg.MetadataValue.int(provenance.records_read or 0),
        "api_calls": dg.MetadataValue.int(provenance.api_calls or 0),
        "bytes_read": dg.MetadataValue.int(provenance.bytes_read or 0),
        "soql": dg.MetadataValue.md(f"```sql\n{query.soql}\n```"),
        "result": dg.MetadataValue.md(metrics_table_markdown(rows)),
    }
    if not query.aggregate:
        metadata["source_records"] = dg.MetadataValue.int(provenance.records_read or 0)
    return metadata


def org_usage_metadata(usage: tuple[int, int] | None) -> dict[str, Any]:
    """The org's daily API usage as numbers (plottable), not "used/max" text."""
    if not usage or not usage[1]:
        return {}
    used, total = usage
    return {
        "org_api_requests_used": dg.MetadataValue.int(used),
        "org_api_requests_max": dg.MetadataValue.int(total),
        "org_api_usage_percent": dg.MetadataValue.float(round(100 * used / total, 2)),
    }


def build_metric_asset(metric: SalesMetric) -> dg.AssetsDefinition:
    daily = metric.cadence is Cadence.DAILY

    @dg.asset(
        key=asset_key(metric),
        group_name=GROUP,
        kinds={"salesforce"},
        deps=[source_key(metric.object_name)],
        partitions_def=DAILY_PARTITIONS if daily else SNAPSHOT_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run() if daily else None,
        description=f"{metric.description}\n\nReads {metric.object_name} fields {', '.join(sorted(metric.required_fields))}; {metric.strategy.value}.",
        tags={"dfx/api": KIND},
        pool=KIND,  # the Salesforce API's concurrency pool (its limit: the plugin's pool_limit)
        metadata={"family": metric.family, "cadence": metric.cadence.value, "strategy": metric.strategy.value},
        freshness_policy=METRIC_FRESHNESS,
        output_required=False,  # a metric whose fields are not selected is not computed: only its check reports
        check_specs=[
            dg.AssetCheckSpec(
                SELECTION_CHECK,
                asset=asset_key(metric),
                description=f"Warns when the connection's selection lacks the {metric.object_name} fields "
                f"{metric.name} needs, so it was not computed (the missing fields are in the metadata).",
            )
        ],
    )
    def _metric_asset(
        context: dg.AssetExecutionContext, platform: PlatformResource, salesforce: SalesforceResource
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        # Whatever escapes is stored without secret text; a permanent error is not retried as a new run.
        with step_errors(context):
            yield materialize_metric(metric, context, platform, salesforce)

    return _metric_asset


with warnings.catch_warnings():
    # The single-run backfill policy is marked beta; it is what lets one run cover a connection's days.
    warnings.simplefilter("ignore", dg.BetaWarning)
    METRIC_ASSETS = [build_metric_asset(metric) for metric in SALES_METRICS.values()]
SNAPSHOT_ASSET_KEYS = [asset_key(m) for m in SALES_METRICS.values() if m.cadence is Cadence.SNAPSHOT]
DAILY_ASSET_KEYS = [asset_key(m) for m in SALES_METRICS.values() if m.cadence is Cadence.DAILY]

salesforce_snapshot_job = dg.define_asset_job(
    "salesforce_snapshot_job",
    selection=dg.AssetSelection.assets(*SNAPSHOT_ASSET_KEYS),
    description="Snapshot sales metrics (open pipeline, campaign influence) for one connection.",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
salesforce_daily_job = dg.define_asset_job(
    "salesforce_daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS),
    description="Daily sales metrics (win rate, cycle length, leads, cases, activities) for one connection and day(s).",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
