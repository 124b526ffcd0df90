"""PostgreSQL's sync wiring: the change sensor, the nightly recompute and the nightly key-count check.

`postgres_changes_sensor` polls each active connection's tracked tables (`platform.sync.poll_active_
connections`): one aggregate query per table through the gate — the days whose rows' watermark column
(`updated_at`) moved past the cursor, how many, and the newest watermark — and requests runs only for
those days, nearby days (a gap of at most one day) sharing one range run. The cursor re-reads a lookback
(`settings.lookback_minutes`) behind the newest watermark, so rows committed late by a long transaction
are still seen; a run's key is a digest of its days' changed-row counts and newest watermarks, so the
rows of that band, polled again, make the same key and Dagster launches their run once (a late row
changes the count and makes a new one). A new connection's first poll requests its whole history
window (its first sync) and starts the cursor at the newest watermark.

What a watermark cannot show — a row moved to another day keeps only its new day, a hard delete leaves no
row — the nightly recompute (`postgres_nightly_schedule`: the whole history window, one query per spec)
heals, and the key-count check (`postgres_key_count_schedule`, before it) reports.
"""

import hashlib
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg

from dfx_pipelines.connectors.postgres.assets import postgres_key_count_job, postgres_metrics_job, time_type
from dfx_pipelines.connectors.postgres.metrics import PERIOD_ALIAS, tracking_of
from dfx_pipelines.connectors.postgres.queries import CHANGED_ALIAS, WATERMARK_ALIAS, changes_query
from dfx_pipelines.connectors.postgres.resource import KIND, GatedQuery, PostgresResource
from dfx_pipelines.platform.partitions import DAILY_START, history_range, range_tags
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sync import poll_active_connections, schedulable_connections, skip_reason

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def day_runs(days: list[date]) -> list[tuple[date, date]]:
    """Touched days as ranges: a gap of one untouched day is cheaper to recompute than a second run."""
    runs: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if runs and (day - runs[-1][1]).days <= 2:
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs


def _request(connection: Connection, first: date, last: date, reason: str, key: str) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=f"{connection.id}:{reason}:{key}:{first}:{last}",
        job_name=postgres_metrics_job.name,
        tags={
            "dfx/connection": connection.id,
            "dfx/api": KIND,
            "dfx/sync": reason,
            **range_tags(connection.id, first, last),
        },
    )


def poll_changes(
    services: Any, postgres: PostgresResource, connection: Connection, cursor: dict[str, str] | None, today: date
) -> tuple[list[dg.RunRequest], dict[str, str], str | None]:
    """One connection's poll: (run requests, new cursor, note)."""
    tracked = tracking_of(connection)
    if not tracked:
        return [], cursor or {}, "no change tracking configured"
    window_first, window_last = history_range(connection.settings.history_days, today)
    lookback = timedelta(minutes=connection.settings.lookback_minutes)
    first_poll = cursor is None
    cursor = dict(cursor or {})
    queries = []
    for entry in tracked:
        since = datetime.fromisoformat(cursor[entry.table]) - lookback if entry.table in cursor else EPOCH
        queries.append(
            GatedQuery(
                changes_query(
                    entry,
                    since,
                    time_type(connection, entry.table, entry.time_column),
                    time_type(connection, entry.table, entry.watermark_column),
                ),
                f"changes of {entry.table}",
            )
        )
    with postgres.gated(services, connection) as gated:
        outcome = gated.run(queries)
    touched: list[date] = []
    digest: dict[date, list[str]] = {}
    for entry, result in zip(tracked, outcome.results):
        marks = [row[WATERMARK_ALIAS] for row in result.rows if row[WATERMARK_ALIAS] is not None]
        if marks:
            newest = max(marks)
            newest = newest if isinstance(newest, datetime) else datetime.combine(newest, datetime.min.time())
            cursor[entry.table] = (newest if newest.tzinfo else newest.replace(tzinfo=UTC)).isoformat()
        for row in result.rows:
            if isinstance(row[PERIOD_ALIAS], date):
                touched.append(row[PERIOD_ALIAS])
                digest.setdefault(row[PERIOD_ALIAS], []).append(
                    f"{entry.table}:{row[CHANGED_ALIAS]}:{row[WATERMARK_ALIAS]}"
                )
    if first_poll:
        return [_request(connection, window_first, window_last, "first-sync", "window")], cursor, "first sync"
    start = max(window_first, date.fromisoformat(DAILY_START))
    in_window = [day for day in touched if start <= day <= window_last]
    requests = []
    for first, last in day_runs(in_window):
        text = "|".join(f"{day}={','.join(sorted(digest[day]))}" for day in sorted(digest) if first <= day <= last)
        requests.append(_request(connection, first, last, "changes", hashlib.sha256(text.encode()).hexdigest()[:16]))
    note = None if requests else "no changed rows"
    return requests, cursor, note


@dg.sensor(
    name="postgres_changes_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=postgres_metrics_job,
    description="Per active PostgreSQL connection: the days whose rows' watermark column moved since the cursor "
    "(one aggregate query per tracked table, through the gate), recomputed as range runs of nearby days.",
)
def postgres_changes_sensor(
    context: dg.SensorEvaluationContext, platform: PlatformResource, postgres: PostgresResource
) -> dg.SensorResult:
    services = platform.get()
    today = datetime.now(UTC).date()
    return poll_active_connections(
        context, services, KIND, lambda connection, cursor: poll_changes(services, postgres, connection, cursor, today)
    )


@dg.schedule(
    name="postgres_nightly_schedule",
    cron_schedule="40 2 * * *",
    execution_timezone="UTC",
    job=postgres_metrics_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly, per active PostgreSQL connection: its whole history window in one run (one query per "
    "spec), healing what the change sensor cannot see (moved rows, hard deletes).",
)
def postgres_nightly_schedule(
    context: dg.ScheduleEvaluationContext, platform: PlatformResource
) -> list[dg.RunRequest] | dg.SkipReason:
    today = (context.scheduled_execution_time or datetime.now(UTC)).date()
    connections, notes = schedulable_connections(context.instance, platform.get(), KIND)
    requests = [
        _request(connection, *history_range(connection.settings.history_days, today), "nightly", str(today))
        for connection in connections
    ]
    return requests or skip_reason(KIND, notes)


@dg.schedule(
    name="postgres_key_count_schedule",
    cron_schedule="20 2 * * *",
    execution_timezone="UTC",
    job=postgres_key_count_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly, before the recompute: each active PostgreSQL connection's key counts per day against "
    "the stored ones (hard deletes).",
)
def postgres_key_count_schedule(
    context: dg.ScheduleEvaluationContext, platform: PlatformResource
) -> list[dg.RunRequest] | dg.SkipReason:
    today = (context.scheduled_execution_time or datetime.now(UTC)).date()
    connections, notes = schedulable_connections(context.instance, platform.get(), KIND)
    requests = [
        dg.RunRequest(
            run_key=f"{connection.id}:key-count:{today}",
            job_name=postgres_key_count_job.name,
            tags={"dfx/connection": connection.id, "dfx/api": KIND},
        )
        for connection in connections
        if any(entry.key_column for entry in tracking_of(connection))
    ]
    return requests or skip_reason(KIND, notes)
