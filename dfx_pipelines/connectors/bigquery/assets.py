"""The BigQuery metric asset: every customer-defined metric spec of a connection, per day, computed
through the budget gate. Partitioned by connection × day; a backfill over a range is one run
(single-run backfill policy) whose queries — one per spec, each covering the whole range grouped by
day — are dry-run and priced as a whole and gated once before the first runs.

Over budget, the step ends without materializing anything: BigQuery ran only dry runs, a pending
approval is queued, and the step logs a warning, records an `AssetObservation` carrying the
approval's metadata (id, fingerprint, projected bytes and cost, month-to-date spend), tags the run
`dfx/bigquery_awaiting_approval=<id>`, and reports the budget check. It is a *successful* step on
purpose: a failure would be re-run by the instance's run retries (dagster.yaml) for a stop that only a
person can lift, and a materialization would mark days as computed that were not. The partition stays
missing until the approval's run (launched by `bigquery_approvals_sensor`) materializes it.
"""

import warnings
from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.metrics import (
    build_query,
    by_day,
    results_markdown,
    specs_of,
    time_type_of,
    to_metric_rows,
)
from dfx_pipelines.connectors.bigquery.resource import AwaitingApproval, BigQueryResource, GatedQuery
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.freshness import METRIC_FRESHNESS
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.partitions import CONNECTOR_EXECUTOR, connection_daily_partitions, run_partitions
from dfx_pipelines.platform.partitions import RANGE_END_TAG as RANGE_END  # noqa: F401 - re-exported
from dfx_pipelines.platform.partitions import RANGE_START_TAG as RANGE_START  # noqa: F401 - re-exported
from dfx_pipelines.platform.resources import PlatformResource

KIND = "bigquery"
GROUP = "bigquery"
DAILY_PARTITIONS = connection_daily_partitions(KIND)
METRICS_KEY = dg.AssetKey([KIND, "metric_specs"])
BUDGET_CHECK = "monthly_budget_below_80_percent"
APPROVAL_TAG = "dfx/bigquery_approval"  # set by the approvals sensor: the run may spend this approval
AWAITING_TAG = "dfx/bigquery_awaiting_approval"  # added to a run that stopped over budget
# The selected tables as one external asset upstream of the metric specs: which tables a connection
# selects is its own configuration, not known when the code location loads.
SOURCE_KEY = dg.AssetKey([KIND, "source", "selected_tables"])
SOURCE_SPEC = dg.AssetSpec(
    SOURCE_KEY,
    group_name=GROUP,
    kinds={"bigquery"},
    description="The tables each connection selected in its BigQuery project (read only through the budget gate; nothing is copied).",
)


def partition_label(connection_id: str, first: date, last: date) -> str:
    """How an approval names the partitions that asked: one key, or `first..last` keys of a range."""
    if first == last:
        return f"{connection_id}|{first.isoformat()}"
    return f"{connection_id}|{first.isoformat()}..{connection_id}|{last.isoformat()}"


def parse_partition_label(label: str) -> tuple[str, date, date]:
    start, _, end = label.partition("..")
    connection_id, _, first = start.partition("|")
    last = end.partition("|")[2] if end else first
    return connection_id, date.fromisoformat(first), date.fromisoformat(last)


def _partitions(context: dg.AssetExecutionContext) -> tuple[str, list[date]]:
    """(connection, days) of this run: one partition, or a single-run backfill's range."""
    partitions = run_partitions(context)
    connections = {p.connection_id for p in partitions}
    if len(connections) != 1:
        raise ConnectorError(f"one run covers one connection; got {sorted(connections)} (backfill per connection)")
    return connections.pop(), sorted(p.day for p in partitions if p.day is not None)


def budget_metadata(month_to_date_usd: float, budget_usd: float | None) -> dict[str, Any]:
    """The spend figures, identical on the materialization and on the budget check, and numeric so
    they plot. Without a budget there is no share to show (and no query may run)."""
    share = gate.budget_share(month_to_date_usd, budget_usd)
    metadata: dict[str, Any] = {"month_to_date_usd": dg.MetadataValue.float(round(month_to_date_usd, 8))}
    if budget_usd is not None:
        metadata["monthly_budget_usd"] = dg.MetadataValue.float(float(budget_usd))
    if share is not None:
        metadata["budget_used_percent"] = dg.MetadataValue.float(round(100 * share, 3))
    return metadata


def budget_check(month_to_date_usd: float, budget_usd: float | None) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=BUDGET_CHECK,
        passed=not gate.warns(month_to_date_usd, budget_usd),
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            **budget_metadata(month_to_date_usd, budget_usd),
            "warning_at_percent": dg.MetadataValue.int(round(100 * gate.WARNING_SHARE)),
        },
    )


def _spend(store: BudgetStore, connection_id: str, price: float) -> float:
    return gate.cost_usd(store.month_to_date_bytes(connection_id), price)


with warnings.catch_warnings():
    # The single-run backfill policy is marked beta; it is what lets a range be priced as a whole.
    warnings.simplefilter("ignore", dg.BetaWarning)

    @dg.asset(
        key=METRICS_KEY,
        group_name=GROUP,
        kinds={"bigquery"},
        deps=[SOURCE_KEY],
        partitions_def=DAILY_PARTITIONS,
        backfill_policy=dg.BackfillPolicy.single_run(),
        output_required=False,  # over budget: no materialization, see the module docstring
        freshness_policy=METRIC_FRESHNESS,
        check_specs=[
            dg.AssetCheckSpec(
                BUDGET_CHECK,
                asset=METRICS_KEY,
                description="Warns when month-to-date BigQuery spend reaches 80% of the connection's monthly budget.",
            )
        ],
        tags={"dfx/api": KIND},
        pool=KIND,  # the BigQuery API's concurrency pool (its limit: the plugin's pool_limit)
        description=(
            "The connection's customer-defined metric specs (SUM / COUNT / COUNT DISTINCT / AVG of a selected column, "
            "by optional group-by columns, per day of a DATE partition column), computed through the budget gate: "
            "dry run, projected bytes and cost, monthly ledger and budget, then run under maximum_bytes_billed "
            "or wait for `dfx bigquery approve`."
        ),
    )
    def bigquery_metric_specs(
        context: dg.AssetExecutionContext, platform: PlatformResource, bigquery: BigQueryResource
    ) -> Iterator[Any]:
        # No secret text escapes; a permanent error (refused key, gate refusal) is not retried as a new run.
        with step_errors(context):
            yield from _metric_specs(context, platform, bigquery)

    def _metric_specs(
        context: dg.AssetExecutionContext, platform: PlatformResource, bigquery: BigQueryResource
    ) -> Iterator[Any]:
        connection_id, days = _partitions(context)
        # Refuses a revoked or removed connection here, before the key is read or any request is sent.
        connection = platform.active_connection(connection_id, KIND)
        services = platform.get()
        store = BudgetStore(services.engine)
        budget, price = connection.settings.monthly_budget_usd, connection.settings.price_per_tib_usd
        specs = specs_of(connection)
        if not specs:
            context.log.warning(f"{connection.id} defines no metric specs: nothing to compute")
            for day in days:  # no spec, so no metric row is stored for any of these days
                context.add_asset_metadata(
                    {"dagster/row_count": dg.MetadataValue.int(0)}, partition_key=f"{connection.id}|{day.isoformat()}"
                )
            yield dg.MaterializeResult(
                metadata={"status": "no metric specs"},
                check_results=[budget_check(_spend(store, connection.id, price), budget)],
            )
            return
        first, last = days[0], days[-1]
        label = partition_label(connection.id, first, last)
        # One GROUP BY day query per spec for the whole range: O(specs) queries, whatever the number of days.
        queries = [
            build_query(spec, connection.endpoint["project"], first, last, time_type_of(connection, spec))
            for spec in specs
        ]
        gated = bigquery.gated(services, connection)
        try:
            outcome = gated.run_gated_batch(
                [GatedQuery(q.sql, q.params, label=q.spec.name, days=len(days)) for q in queries],
                asset=METRICS_KEY.to_user_string(),
                partition=label,
                approval_id=context.run.tags.get(APPROVAL_TAG),
                run_id=context.run.run_id,
            )
        except AwaitingApproval as waiting:
            approval = waiting.approval
            context.log.warning(str(waiting))
            context.log_event(
                dg.AssetObservation(
                    asset_key=METRICS_KEY,
                    partition=label if first == last else None,
                    metadata={
                        **{k: v for k, v in approval.metadata().items() if v is not None},
                        "status": "awaiting approval",
                        "approve_with": f"dfx bigquery approve {approval.id}",
                        "sql": dg.MetadataValue.md(f"```sql\n{approval.sql_excerpt}\n```"),
                    },
                )
            )
            context.instance.add_run_tags(context.run.run_id, {AWAITING_TAG: approval.id})
            yield budget_check(waiting.decision.month_to_date_usd, budget)
            return
        finally:
            gated.close()
        written = 0
        rows_by_day: dict[date, list] = {day: [] for day in days}
        written_by_day: dict[date, int] = dict.fromkeys(days, 0)
        for index, (query, result) in enumerate(zip(queries, outcome.results)):
            rows = to_metric_rows(query.spec, result.rows)
            per_day = by_day(rows)
            for day in days:  # every day gets a batch, empty days too: a rerun replaces stale values
                # One query covers the whole range: its bytes (and, on the first spec, the run's round
                # trips) are charged to the range's first day, so summing batches gives the true totals.
                charged = day == first
                provenance = Provenance(
                    context.run.run_id,
                    query.sql
                    + f"\n-- @first_day = {first}, @last_day = {last}; job {result.job_id}"
                    + (
                        ""
                        if first == last
                        else f"\n-- one query for {len(days)} days: bytes and calls charged to {first}"
                    ),
                    api_calls=(outcome.round_trips if index == 0 else 0) if charged else 0,
                    records_read=len(per_day.get(day, [])),
                    bytes_read=result.bytes_processed if charged else 0,
                )
                stored = services.metric_store.write(
                    connection, query.spec.name, f"{connection.id}|{day.isoformat()}", per_day.get(day, []), provenance
                ).rows_written
                written += stored
                written_by_day[day] += stored
                rows_by_day[day] += per_day.get(day, [])
        billed = outcome.bytes_billed
        # Each day's materialization shows that day's rows (over every spec, as the store now holds them)
        # and what it was charged: the range's queries run once, their bill is charged to its first day
        # (0 on the others), so per-partition sums equal the ledger. The run's totals are on the result.
        for day, day_rows in rows_by_day.items():
            charged = day == first
            context.add_asset_metadata(
                {
                    "dagster/row_count": dg.MetadataValue.int(written_by_day[day]),
                    "result": dg.MetadataValue.md(results_markdown(day_rows)),
                    "range": f"{first.isoformat()}..{last.isoformat()}",
                    "range_queries": dg.MetadataValue.text(", ".join(r.job_id for r in outcome.results)),
                    "bytes_billed_charged": dg.MetadataValue.int(billed if charged else 0),
                    "cost_usd_charged": dg.MetadataValue.float(
                        round(gate.cost_usd(billed, price), 8) if charged else 0.0
                    ),
                    "charged_to": f"{connection.id}|{first.isoformat()}",
                },
                partition_key=f"{connection.id}|{day.isoformat()}",
            )
        yield dg.MaterializeResult(
            metadata={
                "connection": connection.id,
                "days_in_run": len(days),
                "metric_specs": len(specs),
                "projected_bytes": dg.MetadataValue.int(outcome.projection.bytes_processed),
                "projected_billed_bytes": dg.MetadataValue.int(outcome.projection.billed_bytes),
                "projected_cost_usd": dg.MetadataValue.float(round(outcome.projection.cost_usd, 8)),
                "maximum_bytes_billed": dg.MetadataValue.int(outcome.projection.cap_bytes),
                "queries": len(outcome.results),  # one per spec, whatever the number of days
                "dry_runs": outcome.dry_runs,  # priced as a whole: one dry run per query
                "bytes_billed": dg.MetadataValue.int(billed),
                "cost_usd": dg.MetadataValue.float(round(gate.cost_usd(billed, price), 8)),
                **budget_metadata(outcome.month_to_date_usd, budget),
                "approval_id": outcome.approval_id or "none (within budget)",
                "bigquery_jobs": dg.MetadataValue.text(", ".join(r.job_id for r in outcome.results)),
                "round_trips": outcome.round_trips,
                "gate_round_trips": outcome.gate_round_trips,
                "gate_ms": dg.MetadataValue.float(round(outcome.gate_seconds * 1000, 1)),
                "rows_written_in_run": written,
                "sql": dg.MetadataValue.md(
                    "\n\n".join(f"```sql\n{q.sql}\n```" for q in queries)
                    + f"\n\n`@first_day` = {first}, `@last_day` = {last}"
                ),
            },
            check_results=[budget_check(outcome.month_to_date_usd, budget)],
        )


bigquery_metrics_job = dg.define_asset_job(
    "bigquery_metrics_job",
    selection=dg.AssetSelection.assets(METRICS_KEY),
    description="The BigQuery metric specs of one connection for one day or a range of days, through the budget gate.",
    tags={"dfx/api": KIND},
    executor_def=CONNECTOR_EXECUTOR,
)
