"""What every connector's sync wiring shares: full-resync run requests (a snapshot run plus one run
over the connection's daily history) and the pair of nightly schedules built from them."""

from datetime import date, datetime, timezone
from typing import Any

import dagster as dg

from dfx_pipelines.platform.partitions import connection_partitions, history_range, range_tags
from dfx_pipelines.platform.registry import Connection, ConnectionStatus
from dfx_pipelines.platform.resources import PlatformResource

JobLike = Any  # an asset job (resolved or not) or a job: anything with a `.name`


def full_resync_requests(connection: Connection, today: date, reason: str, *, snapshot_job: JobLike, daily_job: JobLike) -> list[dg.RunRequest]:
    """A snapshot run and one single-run range over the connection's whole daily history."""
    first, last = history_range(connection.settings.history_days, today)
    tags = {"dfx/connection": connection.id, "dfx/api": connection.kind, "dfx/sync": reason}
    return [
        dg.RunRequest(run_key=f"{connection.id}:snapshot:{reason}:{today}", job_name=snapshot_job.name, partition_key=connection.id, tags=tags),
        dg.RunRequest(run_key=f"{connection.id}:daily:{reason}:{today}", job_name=daily_job.name, tags={**tags, **range_tags(connection.id, first, last)}),
    ]


def nightly_schedules(kind: str, *, snapshot_job: JobLike, daily_job: JobLike, hour: int = 2, minute: int = 0) -> list[dg.ScheduleDefinition]:
    """Two schedules recomputing every active connection of a kind in full: snapshot metrics, then
    (15 minutes later) each connection's whole daily history in one run."""

    def build(job: JobLike, at_minute: int, what: str) -> dg.ScheduleDefinition:
        def requests(context: dg.ScheduleEvaluationContext, platform: PlatformResource) -> list[dg.RunRequest]:
            today = (context.scheduled_execution_time or datetime.now(timezone.utc)).date()
            known = set(context.instance.get_dynamic_partitions(connection_partitions(kind).name))
            return [
                request
                for connection in platform.get().registry.list(kind=kind, statuses=[ConnectionStatus.ACTIVE])
                if connection.id in known
                for request in full_resync_requests(connection, today, "nightly", snapshot_job=snapshot_job, daily_job=daily_job)
                if request.job_name == job.name
            ]

        requests.__name__ = f"{kind}_nightly_{what}_schedule"
        return dg.schedule(
            name=requests.__name__, cron_schedule=f"{at_minute % 60} {hour + at_minute // 60} * * *", execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING, job=job,
            description=f"Nightly: recomputes {what} metrics of every active {kind} connection"
            + (", each connection's whole daily history in one run." if what == "daily" else "."),
        )(requests)

    return [build(snapshot_job, minute, "snapshot"), build(daily_job, minute + 15, "daily")]

