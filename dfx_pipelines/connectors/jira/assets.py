"""Jira metric assets: one per metric in `compute.METRICS`, partitioned by connection (`jira_connections`)
and, for time-bucketed metrics, by day too. A run refuses a revoked connection before any request, computes
the metric for its partition (or a whole day range in one pass), and replaces the metric store's batch for
each partition. Metadata shows what was read (API calls, records, bytes, JQL) and the result as a table.
"""

import warnings
from collections.abc import Iterator

import dagster as dg

from dfx_pipelines.connectors.jira.compute import (
    BOARD_SNAPSHOTS,
    FLOW,
    METRICS,
    JiraMetric,
    board_snapshots,
    flow_metrics,
)
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


def materialize_metrics(
    metrics: list[JiraMetric],
    context: dg.AssetExecutionContext,
    platform: PlatformResource,
    jira: JiraResource,
) -> Iterator[dg.MaterializeResult]:
    """One or more metrics for the run's partitions, read with one client: each metric alone computes
    itself; the flow metrics selected together come from one pass (`compute.flow_metrics`), and so do
    cycle time and sprint velocity (`compute.board_snapshots`)."""
    partitions = run_partitions(context)
    connection_ids = {partition.connection_id for partition in partitions}
    if len(connection_ids) != 1:
        raise ConnectorError(f"one run covers one connection; got {sorted(connection_ids)} (backfill per connection)")
    # Refuses a revoked or removed connection here, before any token is read or request sent.
    connection = platform.active_connection(connection_ids.pop(), KIND)
    services = platform.get()
    client = jira.client(services, connection)
    days = sorted(p.day for p in partitions if p.day is not None)
    first, last = (days[0], days[-1]) if days else (None, None)
    names = [metric.name for metric in metrics]
    if len(metrics) > 1 and set(names) <= set(FLOW):
        results = flow_metrics(client, connection, first, last, names)
    elif len(metrics) > 1 and set(names) <= set(BOARD_SNAPSHOTS):
        results = board_snapshots(client, connection, names)
    elif len(metrics) == 1:
        results = {metrics[0].name: metrics[0].compute(client, connection, first, last)}
    else:
        raise ConnectorError(f"metrics {names} do not share a pass; select them as separate assets")
    source = " ; ".join(client.queries)[:4000] or "(no query)"
    jql = "\n".join(dict.fromkeys(client.queries)) or "(none)"
    # What was read is recorded once, on the first partition of the first metric, so sums over batches
    # stay true; every other batch (another day of a range, or the other metric of one pass) says where
    # the reading was counted.
    counted_on = f"{metrics[0].name} {partitions[0].key}"
    usage = Provenance(
        context.run.run_id,
        source,
        api_calls=client.api_calls,
        records_read=client.records_read,
        bytes_read=client.bytes_read,
    )
    shared = Provenance(
        context.run.run_id,
        f"{source} (read once for {', '.join(names)} {partitions[0].key} .. {partitions[-1].key}; usage on {counted_on})"[
            :4000
        ],
    )
    for number, metric in enumerate(metrics):
        result = results[metric.name]
        written = 0
        for index, partition in enumerate(partitions):
            counted = number == 0 and index == 0
            rows = [row for row in result.rows if row.period == partition.day] if metric.daily else result.rows
            stored = services.metric_store.write(
                connection, metric.name, partition.key, rows, usage if counted else shared
            ).rows_written
            written += stored
            # Each partition's materialization shows its own rows (the count the store now holds for it);
            # what was read is shown where the store counts it, the others name that place.
            own: dict = {
                "dagster/row_count": dg.MetadataValue.int(stored),
                "result": dg.MetadataValue.md(markdown_table(rows)),
            }
            if counted:
                own.update(
                    {
                        "api_calls": dg.MetadataValue.int(client.api_calls),
                        "records_read": dg.MetadataValue.int(client.records_read),
                        "bytes_read": dg.MetadataValue.int(client.bytes_read),
                        "jql": dg.MetadataValue.md(f"```\n{jql}\n```"),
                    }
                )
            else:
                own["read_counted_on"] = dg.MetadataValue.text(counted_on if number else partitions[0].key)
            context.add_asset_metadata(own, asset_key=asset_key(metric), partition_key=partition.key)
        context.log.info(
            f"{metric.name}: {len(partitions)} partition(s) of {connection.id}, {written} rows, "
            f"{client.api_calls} API calls" + (f" (one pass for {', '.join(names)})" if len(names) > 1 else "")
        )
        yield dg.MaterializeResult(
            asset_key=asset_key(metric),
            metadata={
                "connection": connection.id,
                "token_refreshes": client.refreshes,
                **{key: str(value) for key, value in result.notes.items()},
            },
        )


def materialize_metric(
    metric: JiraMetric, context: dg.AssetExecutionContext, platform: PlatformResource, jira: JiraResource
) -> dg.MaterializeResult:
    """One metric for the run's partitions (the body of every single-metric asset of this connector)."""
    [result] = materialize_metrics([metric], context, platform, jira)
    return result


def _description(metric: JiraMetric) -> str:
    return (
        f"{metric.description}\n\nReads {SCOPE_READS[metric.scope][1]}; "
        "explicit fields only, never descriptions, comments or attachments."
    )


def build_metric_asset(metric: JiraMetric) -> dg.AssetsDefinition:
    @dg.asset(
        key=asset_key(metric),
        group_name=GROUP,
        kinds={"jira"},
        deps=[source_key(SCOPE_READS[metric.scope][0])],
        partitions_def=DAILY_PARTITIONS if metric.daily else SNAPSHOT_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run() if metric.daily else None,
        description=_description(metric),
        tags={"dfx/api": KIND},
        pool=KIND,  # the Jira API's concurrency pool (its limit: the plugin's pool_limit)
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


# Throughput and WIP are one multi-asset: both replay each board's status changelogs into the same
# per-issue dates, so a run materializing both (the daily job, every sensor range that touches both) pages
# each board's issues and changelogs ONCE and feeds both reducers from each reduced record. Each spec keeps
# its own key, partitions, description, metadata and freshness, so the UI and the snapshot still show two
# assets, and `can_subset` lets either run alone (one pass, for that metric only).
# cycle_time_days computes through the same one-pass function but is not among them: it is a snapshot
# (connection-partitioned, multi-run backfills) while these are daily (connection x day, single-run
# backfills); Dagster runs only assets of one partitions definition together, so no run could hold all
# three, and one multi-asset carries one backfill policy, which would make a snapshot backfill over
# several connections one run (refused: one run covers one connection).
FLOW_DAILY = ("throughput", "wip")


def build_flow_daily_asset(metrics: list[JiraMetric]) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            asset_key(metric),
            group_name=GROUP,
            kinds={"jira"},
            deps=[source_key(SCOPE_READS[metric.scope][0])],
            partitions_def=DAILY_PARTITIONS,
            description=_description(metric),
            tags={"dfx/api": KIND},
            metadata={"cadence": "daily", "reads": metric.scope, "computed_with": ", ".join(FLOW_DAILY)},
            freshness_policy=METRIC_FRESHNESS,
        )
        for metric in metrics
    ]

    @dg.multi_asset(
        name=f"{KIND}__flow_daily",
        specs=specs,
        can_subset=True,
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        op_tags={"dfx/api": KIND},
        pool=KIND,
        description="Throughput and WIP per board from one pass over each board's status changelogs.",
    )
    def _flow_daily(
        context: dg.AssetExecutionContext, platform: PlatformResource, jira: JiraResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = [metric for metric in metrics if asset_key(metric) in context.selected_asset_keys]
        with step_errors(context):
            yield from materialize_metrics(selected, context, platform, jira)

    return _flow_daily


# Cycle time and sprint velocity are one multi-asset too: both are snapshots of a board's issues
# replayed from their changelogs, and a scrum board's project would otherwise be searched and its status
# changelogs fetched twice per snapshot run (the larger part of a full sync's bytes). Both are
# connection-partitioned with multi-run backfills, like every other snapshot, so one multi-asset holds
# them; each keeps its own key, description, metadata and freshness, and `can_subset` lets either run
# alone (then it reads only what it needs).
def build_board_snapshot_asset(metrics: list[JiraMetric]) -> dg.AssetsDefinition:
    specs = [
        dg.AssetSpec(
            asset_key(metric),
            group_name=GROUP,
            kinds={"jira"},
            deps=[source_key(SCOPE_READS[metric.scope][0])],
            partitions_def=SNAPSHOT_PARTITIONS,
            description=_description(metric),
            tags={"dfx/api": KIND},
            metadata={"cadence": "snapshot", "reads": metric.scope, "computed_with": ", ".join(BOARD_SNAPSHOTS)},
            freshness_policy=METRIC_FRESHNESS,
        )
        for metric in metrics
    ]

    @dg.multi_asset(
        name=f"{KIND}__board_snapshots",
        specs=specs,
        can_subset=True,
        partitions_def=SNAPSHOT_PARTITIONS,
        op_tags={"dfx/api": KIND},
        pool=KIND,
        description="Cycle time and sprint velocity per board from one pass over each board's issues and changelogs.",
    )
    def _board_snapshots(
        context: dg.AssetExecutionContext, platform: PlatformResource, jira: JiraResource
    ) -> Iterator[dg.MaterializeResult]:
        selected = [metric for metric in metrics if asset_key(metric) in context.selected_asset_keys]
        with step_errors(context):
            yield from materialize_metrics(selected, context, platform, jira)

    return _board_snapshots


with warnings.catch_warnings():
    # The single-run backfill policy is marked beta; it is what lets one run cover a connection's days.
    warnings.simplefilter("ignore", dg.BetaWarning)
    METRIC_ASSETS = [
        build_metric_asset(metric)
        for metric in METRICS.values()
        if metric.name not in FLOW_DAILY and metric.name not in BOARD_SNAPSHOTS
    ]
    METRIC_ASSETS.append(build_flow_daily_asset([METRICS[name] for name in FLOW_DAILY]))
    METRIC_ASSETS.append(build_board_snapshot_asset([METRICS[name] for name in BOARD_SNAPSHOTS]))
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
