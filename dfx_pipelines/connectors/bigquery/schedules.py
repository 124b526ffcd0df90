"""BigQuery's nightly recompute and first sync, through the budget gate like every BigQuery run: per active connection,
one run from the first day of its history window not yet computed (all of it on the first night) to
today, and at least yesterday and today, whose late rows change. Within budget it runs; over budget the
run stops before any billed query and queues an approval (`dfx bigquery approve`), as any run does.
A new connection does not wait for the night: its first sync (the same run) is requested within a minute."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dfx_pipelines.connectors.bigquery.assets import KIND, METRICS_KEY, bigquery_metrics_job
from dfx_pipelines.platform.partitions import history_range, range_tags
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sync import schedulable_connections, skip_reason

LATE_DAYS = 2  # today and yesterday are recomputed every night: their rows still arrive


def recompute_from(materialized: set[str], connection_id: str, first: date, last: date) -> date:
    """The first day the nightly run covers: the earliest day of `first..last` never materialized,
    else the start of the late-arriving days."""
    day = first
    while day <= last and f"{connection_id}|{day.isoformat()}" in materialized:
        day += timedelta(days=1)
    return max(first, min(day, last - timedelta(days=LATE_DAYS - 1)))


def window_request(connection, materialized: set[str], today: date, reason: str) -> dg.RunRequest:
    first, last = history_range(connection.settings.history_days, today)
    start = recompute_from(materialized, connection.id, first, last)
    tags = {
        "dfx/connection": connection.id,
        "dfx/api": KIND,
        "dfx/sync": reason,
        **range_tags(connection.id, start, last),
    }
    key = f"{connection.id}:{reason}" if reason == "first-sync" else f"{connection.id}:{reason}:{today}"
    return dg.RunRequest(run_key=key, job_name=bigquery_metrics_job.name, tags=tags)


def _materialized(instance: dg.DagsterInstance) -> set[str]:
    return {str(key) for key in instance.get_materialized_partitions(METRICS_KEY)}


@dg.schedule(
    name="bigquery_nightly_schedule",
    cron_schedule="30 2 * * *",
    execution_timezone="UTC",
    job=bigquery_metrics_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly, per active BigQuery connection: the days of its history window not yet computed, "
    "and yesterday and today, in one run through the budget gate (over budget: an approval is queued).",
)
def bigquery_nightly_schedule(
    context: dg.ScheduleEvaluationContext, platform: PlatformResource
) -> list[dg.RunRequest] | dg.SkipReason:
    today = (context.scheduled_execution_time or datetime.now(UTC)).date()
    connections, notes = schedulable_connections(context.instance, platform.get(), KIND)
    materialized = _materialized(context.instance)
    requests = [window_request(connection, materialized, today, "nightly") for connection in connections]
    return requests or skip_reason(KIND, notes)


@dg.sensor(
    name="bigquery_first_sync_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=bigquery_metrics_job,
    description="A new BigQuery connection's history window, computed once right away (budget-gated) instead of at night.",
)
def bigquery_first_sync_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    connections, notes = schedulable_connections(context.instance, platform.get(), KIND)
    materialized = _materialized(context.instance)
    today = datetime.now(UTC).date()
    new = [c for c in connections if not any(key.startswith(f"{c.id}|") for key in materialized)]
    # The run key makes it once per connection: the daemon never launches a run key twice.
    requests = [window_request(connection, materialized, today, "first-sync") for connection in new]
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=None if requests else ("; ".join(notes) or "every connection has had its first sync"),
    )
