"""Jira metric assets: one per metric in `compute.METRICS`, partitioned by connection (`jira_connections`)
and, for time-bucketed metrics, by day too. A run refuses a revoked connection before any request, computes
the metric for its partition (or a whole day range in one pass), and replaces the metric store's batch for
each partition. Metadata shows what was read (API calls, records, bytes, JQL) and the result as a table.
"""

import warnings

import dagster as dg

from dfx_pipelines.connectors.jira.compute import METRICS, JiraMetric
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.freshness import METRIC_FRESHNESS
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.partitions import (
    CONNECTOR_EXECUTOR,
    connection_daily_partitions,
    connection_partitions,
    run_partitions,
)
from dfx_pipelines.platform.resources import PlatformResource

KIND = "jira"
GROUP = "jira"
SNAPSHOT_PARTITIONS = connection_partitions(KIND)
DAILY_PARTITIONS = connection_daily_partitions(KIND)
TABLE_ROWS = 40


def asset_key(metric: JiraMetric | str) -> dg.AssetKey:
    return dg.AssetKey([KIND, metric if isinstance(metric, str) else metric.name])


# What each metric scope reads, for its description and its upstream source asset.
SCOPE_READS = {
    "projects": ("projects", "the connection's selected projects"),
    "boards": ("boards", "the projects of the connection's selected boards"),
    "service_desk": ("projects", "the connection's selected service-desk projects"),
}


def source_key(source: str) -> dg.AssetKey:
    return dg.AssetKey([KIND, "source", source])


# The selected projects and boards as external assets upstream of the metrics that read them.
SOURCE_SPECS = [
    dg.AssetSpec(
        source_key("projects"),
        group_name=GROUP,
        kinds={"jira"},
        description="The issues (explicit fields, worklogs, changelogs, SLAs) of each connection's selected Jira projects.",
    ),
    dg.AssetSpec(
        source_key("boards"),
        group_name=GROUP,
        kinds={"jira"},
        description="The columns, sprints and issues of each connection's selected Jira boards.",
    ),
]


def markdown_table(rows: list[MetricRow]) -> str:
    """The rows as a table a person can read in the UI (first `TABLE_ROWS`)."""
    if not rows:
        return "_no rows_"
    lines = ["| period | measure | dimensions | value |", "|---|---|---|---:|"]
    for row in rows[:TABLE_ROWS]:
        dims = ", ".join(f"{k}={v}" for k, v in row.dimensions) or "(total)"
        value = "—" if row.value is None else f"{row.value:,.2f}".rstrip("0").rstrip(".")
        lines.append(f"| {row.period or 'now'} | {row.measure} | {dims} | {value} |")
    if len(rows) > TABLE_ROWS:
        lines.append(f"| … | {len(rows) - TABLE_ROWS} more rows | | |")
    return "\n".join(lines)


def materialize_metric(
    metric: JiraMetric, context: dg.AssetExecutionContext, platform: PlatformResource, jira: JiraResource
) -> dg.MaterializeResult:
    """One metric for the run's partitions (the body of every metric asset of this connector)."""
    partitions = run_partitions(context)
    connection_ids = {partition.connection_id for partition in partitions}
    if len(connection_ids) != 1:
        raise ConnectorError(f"one run covers one connection; got {sorted(connection_ids)} (backfill per connection)")
    # Refuses a revoked or removed connection here, before any token is read or request sent.
    connection = platform.active_connection(connection_ids.pop(), KIND)
    services = platform.get()
    client = jira.client(services, connection)
    days = sorted(p.day for p in partitions if p.day is not None)
    result = metric.compute(client, connection, days[0] if days else None, days[-1] if days else None)
    source = " ; ".join(client.queries)[:4000] or "(no query)"
    usage = Provenance(
        context.run.run_id,
        source,
        api_calls=client.api_calls,
        records_read=client.records_read,
        bytes_read=client.bytes_read,
    )
    # One pass read every day of a range: its usage is recorded once, on the first partition, so sums
    # over batches stay true; the others say where the reading was counted.
    shared = Provenance(
        context.run.run_id,
        f"{source} (read once for {partitions[0].key} .. {partitions[-1].key}; usage on the first)"[:4000],
    )
    written = 0
    jql = "\n".join(dict.fromkeys(client.queries)) or "(none)"
    for index, partition in enumerate(partitions):
        rows = [row for row in result.rows if row.period == partition.day] if metric.daily else result.rows
        stored = services.metric_store.write(
            connection, metric.name, partition.key, rows, usage if index == 0 else shared
        ).rows_written
        written += stored
        # Each partition's materialization shows its own rows (the count the store now holds for it);
        # what was read is shown where the store counts it (the first partition of a range), the others
        # name that partition.
        own: dict = {
            "dagster/row_count": dg.MetadataValue.int(stored),
            "result": dg.MetadataValue.md(markdown_table(rows)),
        }
        if index == 0:
            own.update(
                {
                    "api_calls": dg.MetadataValue.int(client.api_calls),
                    "records_read": dg.MetadataValue.int(client.records_read),
                    "bytes_read": dg.MetadataValue.int(client.bytes_read),
                    "jql": dg.MetadataValue.md(f"```\n{jql}\n```"),
                }
            )
        else:
            own["read_counted_on"] = dg.MetadataValue.text(partitions[0].key)
        context.add_asset_metadata(own, partition_key=partition.key)
    context.log.info(
        f"{metric.name}: {len(partitions)} partition(s) of {connection.id}, {written} rows, {client.api_calls} API calls"
    )
    return dg.MaterializeResult(
        metadata={
            "connection": connection.id,
            "token_refreshes": client.refreshes,
            **{key: str(value) for key, value in result.notes.items()},
        }
    )


def build_metric_asset(metric: JiraMetric) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(metric),
        group_name=GROUP,
        kinds={"jira"},
        deps=[source_key(SCOPE_READS[metric.scope][0])],
        partitions_def=DAILY_PARTITIONS if metric.daily else SNAPSHOT_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run() if metric.daily else None,
        description=f"{metric.description}\n\nReads {SCOPE_READS[metric.scope][1]}; "
        "explicit fields only, never descriptions, comments or attachments.",
        tags={"dfx/api": KIND},
        metadata={"cadence": "daily" if metric.daily else "snapshot", "reads": metric.scope},
        freshness_policy=METRIC_FRESHNESS,
    )
    def _metric_asset(
        context: dg.AssetExecutionContext, platform: PlatformResource, jira: JiraResource
    ) -> dg.MaterializeResult:
        # Whatever escapes is stored without secret text; a permanent error is not retried as a new run.
        with step_errors(context):
            return materialize_metric(metric, context, platform, jira)

    return _metric_asset


with warnings.catch_warnings():
    # The single-run backfill policy is marked beta; it is what lets one run cover a connection's days.
    warnings.simplefilter("ignore", dg.BetaWarning)
    METRIC_ASSETS = [build_metric_asset(metric) for metric in METRICS.values()]
SNAPSHOT_ASSET_KEYS = [asset_key(m) for m in METRICS.values() if not m.daily]
DAILY_ASSET_KEYS = [asset_key(m) for m in METRICS.values() if m.daily]

jira_snapshot_job = dg.define_asset_job(
    "jira_snapshot_job",
    selection=dg.AssetSelection.assets(*SNAPSHOT_ASSET_KEYS),
    description="Snapshot Jira metrics (issue counts, cycle time, sprint velocity, SLA status) for one connection.",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
jira_daily_job = dg.define_asset_job(
    "jira_daily_job",
    selection=dg.AssetSelection.assets(*DAILY_ASSET_KEYS),
    description="Daily Jira metrics (created vs resolved, throughput, WIP, worklog hours) for one connection and day(s).",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
