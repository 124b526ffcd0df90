"""Salesforce metric assets: one per metric in `SALES_METRICS`, partitioned by connection (and by day
where the metric is time-bucketed). Each run builds the metric's SOQL from the connection's validated
selection, pushes aggregation down or streams the minimum fields, reduces, and replaces the metric
store's batch for that partition. Nothing raw is kept: records live only inside the reducer's loop. A
daily batch carries its record bucket (the ids of the records its day counted, nothing else), written in
the same transaction, which change-data capture reads to find the day a record left; after a first full
read, buckets are patched from the records changed since (`RecordIndex`), so a run's index costs its
changes, not its days' records.
"""

import hashlib
import itertools
import warnings
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from dfx_pipelines.connectors.salesforce.metrics import (
    SALES_METRICS,
    SalesMetric,
    metrics_table_markdown,
    record_buckets,
    record_days_by_id,
)
from dfx_pipelines.connectors.salesforce.queries import (
    AGGREGATE_ROW_LIMIT,
    Cadence,
    Days,
    SoqlQuery,
    record_changes_query,
    record_days_query,
)
from dfx_pipelines.connectors.salesforce.resource import SalesforceClient, SalesforceResource
from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection, Selection, SelectionError
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.freshness import METRIC_FRESHNESS
from dfx_pipelines.platform.metric_store import BucketMark, MetricStore, Provenance, RecordBucket
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
    query = metric.build(Selection(connection.selection.narrowed(SalesforceSelection).objects), day)
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


# Days whose record-bucket index is read at once in a range run, and whose values are one range query set.
# Read in full (a first sync, a weekly rebuild), the index holds every id of these days twice (before and
# after the values): at 1,000,000 opportunities over two years a quarter's CloseDate index is ~126,000 ids,
# ~40 MiB (measured with tracemalloc on record_buckets); a year would be ~160 MiB. Refreshed incrementally
# it holds only the records changed since. A quarter also covers the 90-day history window
# (HISTORY_WINDOW_DAYS) in one chunk.
BUCKET_CHUNK_DAYS = 92

# An incremental refresh re-reads records changed since (its mark's instant − this). SystemModstamp is set
# when a transaction starts and becomes visible when it commits: a change committed after our last read but
# stamped before it would otherwise never be read. Also covers the `Date` header's whole seconds. Longer
# than Salesforce lets a transaction run (10 minutes for the longest, asynchronous Apex and Bulk batches).
INDEX_MARGIN = timedelta(minutes=15)
# A day's bucket is read in full again once its last full read is this old. Extra ids never make a value
# wrong, but some changes move no SystemModstamp: a sharing rule or role change that shows the integration
# user records it could not see (the values count them from then on), a record purged from the recycle
# bin (a ghost id). A weekly rebuild bounds how long such a record can be missing from a bucket, at a
# seventh of the old cost of reading every id at every run.
INDEX_REBUILD_AFTER = timedelta(days=7)
# Changed records a first (before-the-values) incremental read may hold before it gives up for a full
# read: ~50 pages, more than a quarter's CloseDate ids at 1,000,000 opportunities (~126,000 over two
# reads). The second read is not capped: it cannot switch (the first decided), and it is the first's size
# plus what changed during the run.
INDEX_CHANGES_LIMIT = 100_000
_SOURCE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def _chunks(items: list, size: int) -> list[list]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def index_source(metric: SalesMetric, selection: Selection) -> str:
    """A digest of the query the metric's index changes are read with: a stored bucket is patched only by
    the same query (the same object, period fields and selection), else read in full."""
    query = record_changes_query(metric.fields, selection, metric.period_fields, _SOURCE_EPOCH)
    return hashlib.sha256(query.soql.encode()).hexdigest()


class RecordIndex:
    """One chunk of days' record-bucket index for one daily metric: read before and after the values (so a
    record that moves while they are computed is in the bucket of each day it may have been counted on),
    then turned into the buckets written with the values.

    Incremental when every day of the chunk has a stored bucket marked by the same change query and read
    in full less than INDEX_REBUILD_AFTER ago: each read then fetches only the records changed since the
    oldest mark (minus INDEX_MARGIN), wherever they are now, and the stored buckets are patched: a changed
    record leaves a day it is on in neither read and joins the days it is on in either. Otherwise both reads
    fetch every id of the chunk's days (a first sync, a bucket stored before marks existed, a rebuild).

    Kept: for every stored value, every record it counted is in its day's bucket (more ids are harmless:
    they only cause a recomputation). A record not changed since the mark is where the bucket says; a
    changed one is read. Deleted records are not read (the query sees live records only, and reads no field
    beyond Id and the period fields): they stay in buckets until the next rebuild, which is harmless and
    also covers an undelete that would not move SystemModstamp."""

    def __init__(
        self,
        client: SalesforceClient,
        store: MetricStore,
        metric: SalesMetric,
        connection: Connection,
        days: Iterable[date],
        *,
        incremental: bool = True,
    ):
        self.client, self.store, self.metric, self.connection = client, store, metric, connection
        self.days = sorted(set(days))
        self.selection = Selection(connection.selection.narrowed(SalesforceSelection).objects)
        self.source = index_source(metric, self.selection)
        self.marks = store.bucket_marks(connection.id, metric.name, self.days) if incremental else {}
        self.since: datetime | None = None
        if (
            self.days
            and len(self.marks) == len(self.days)
            and all(mark.source == self.source for mark in self.marks.values())
        ):
            self.since = min(mark.as_of for mark in self.marks.values()) - INDEX_MARGIN
        self.as_of: datetime | None = None
        self._full: list[dict[date, set[str]]] = []
        self._changed: list[dict[str, frozenset[date]]] = []

    @property
    def incremental(self) -> bool:
        return self.since is not None

    def read(self) -> None:
        """One read (call it before and after the values)."""
        period_fields = self.metric.period_fields
        if self.since is None:
            query = record_days_query(self.metric.fields, self.selection, period_fields, self.days[0], self.days[-1])
        else:
            query = record_changes_query(self.metric.fields, self.selection, period_fields, self.since)
        records = self.client.stream(query.soql)
        first = next(records, None)
        if self.as_of is None:
            # The org's time at the first read's first answer: every change after it is read next time.
            self.as_of = self.client.server_time
            if self.since is not None and (
                self.as_of is None
                or self.as_of - min(mark.rebuilt_at for mark in self.marks.values()) >= INDEX_REBUILD_AFTER
            ):
                # Due for a rebuild by the org's clock (known from this first answer; one page spent), or
                # the org gave no time to mark the buckets with: read in full instead.
                records.close()
                self.since, self.as_of = None, None
                self.read()
                return
        stream = itertools.chain([] if first is None else [first], records)
        if self.since is None:
            self._full.append(record_buckets(stream, period_fields, self.days[0], self.days[-1]))
            return
        if self._changed:
            self._changed.append(record_days_by_id(stream, period_fields))
            return
        read = list(itertools.islice(stream, INDEX_CHANGES_LIMIT + 1))
        if len(read) > INDEX_CHANGES_LIMIT:
            # A mass change (a data load, a reassignment): reading every id of the days costs less.
            records.close()
            self.since, self.as_of = None, None
            self.read()
            return
        self._changed.append(record_days_by_id(read, period_fields))

    def buckets(self) -> dict[date, RecordBucket]:
        """Per day of the chunk, the bucket to write with its value (whole, or a patch of the stored one)."""
        if self.since is None:
            if len(self._full) != 2:
                raise RuntimeError("the record index is read twice, before and after the values")
            before, after = self._full
            mark = None if self.as_of is None else BucketMark(self.as_of, self.as_of, self.source)
            return {day: RecordBucket(day, frozenset(before[day] | after[day]), mark=mark) for day in self.days}
        if len(self._changed) != 2:
            raise RuntimeError("the record index is read twice, before and after the values")
        before_days, after_days = self._changed
        changed = before_days.keys() | after_days.keys()
        stored = self.store.bucket_members(self.connection.id, self.metric.name, self.days, changed)
        stored_days: dict[str, set[date]] = {}
        for day, ids in stored.items():
            for record_id in ids:
                stored_days.setdefault(record_id, set()).add(day)
        wanted = set(self.days)
        added: dict[date, set[str]] = {day: set() for day in self.days}
        removed: dict[date, set[str]] = {day: set() for day in self.days}
        for record_id in changed:
            was_on = stored_days.get(record_id, set())
            # Not in a read: unchanged since the mark when that read ran, so where the stored bucket says.
            on_before = before_days.get(record_id, was_on)
            on_after = after_days.get(record_id, on_before)
            now_on = set(on_before) | set(on_after)
            for day in (was_on | now_on) & wanted:
                if day in now_on and day not in was_on:
                    added[day].add(record_id)
                elif day in was_on and day not in now_on:
                    removed[day].add(record_id)
        return {
            day: RecordBucket(
                day,
                frozenset(added[day]),
                frozenset(removed[day]),
                patch=True,
                mark=None if self.as_of is None else BucketMark(self.as_of, self.marks[day].rebuilt_at, self.source),
            )
            for day in self.days
        }


def record_index(
    client: SalesforceClient, store: MetricStore, metric: SalesMetric, connection: Connection, partitions: list
) -> RecordIndex | None:
    """The record-bucket index of these daily partitions; None for a snapshot metric."""
    days = [p.day for p in partitions if p.day is not None]
    if metric.cadence is not Cadence.DAILY or not days or not metric.period_fields:
        return None
    return RecordIndex(client, store, metric, connection, days)


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
    selection = Selection(connection.selection.narrowed(SalesforceSelection).objects)
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
        bucket_index = record_index(client, services.metric_store, metric, connection, chunk)
        if bucket_index is not None:
            bucket_index.read()
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
        buckets: dict[date, RecordBucket] = {}
        if bucket_index is not None:
            bucket_index.read()
            buckets = bucket_index.buckets()
            context.log.debug(
                f"{metric.name}: record index of {len(chunk)} day(s) "
                + (
                    f"patched from changes since {bucket_index.since:%Y-%m-%dT%H:%M:%SZ}"
                    if bucket_index.since
                    else "read in full"
                )
            )
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
            bucket = buckets.get(partition.day) if partition.day is not None else None
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
