"""What every connector's sync wiring shares: full-resync run requests (a snapshot run plus one run
over the connection's daily history), the pair of nightly schedules built from them, and the loop of a
change sensor over a kind's active connections."""

import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import dagster as dg

from dfx_pipelines.platform.errors import DfxError
from dfx_pipelines.platform.partitions import history_range, range_tags, registered_partitions_name
from dfx_pipelines.platform.registry import Connection, ConnectionStatus
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.restrictions import restricted_workspace_ids
from dfx_pipelines.platform.services import Platform

JobLike = Any  # an asset job (resolved or not) or a job: anything with a `.name`


def full_resync_requests(
    connection: Connection, today: date, reason: str, *, snapshot_job: JobLike, daily_job: JobLike
) -> list[dg.RunRequest]:
    """A snapshot run and one single-run range over the connection's whole daily history."""
    first, last = history_range(connection.settings.history_days, today)
    tags = {"dfx/connection": connection.id, "dfx/api": connection.kind, "dfx/sync": reason}
    return [
        dg.RunRequest(
            run_key=f"{connection.id}:snapshot:{reason}:{today}",
            job_name=snapshot_job.name,
            partition_key=connection.id,
            tags=tags,
        ),
        dg.RunRequest(
            run_key=f"{connection.id}:daily:{reason}:{today}",
            job_name=daily_job.name,
            tags={**tags, **range_tags(connection.id, first, last)},
        ),
    ]


def schedulable_connections(
    instance: dg.DagsterInstance, services: Platform, kind: str
) -> tuple[list[Connection], list[str]]:
    """The active connections of a kind a schedule may run now, and a note for each it may not."""
    known = set(instance.get_dynamic_partitions(registered_partitions_name(kind)))
    restricted = restricted_workspace_ids(services.engine)
    ready, notes = [], []
    for connection in services.registry.list(kind=kind, statuses=[ConnectionStatus.ACTIVE]):
        if connection.id not in known:
            notes.append(f"{connection.id}: waiting for its partition")
        elif connection.workspace_id in restricted:
            notes.append(f"{connection.id}: processing restricted")
        else:
            ready.append(connection)
    return ready, notes


def skip_reason(kind: str, notes: list[str]) -> dg.SkipReason:
    """Why a tick launched nothing, as the sensors say it, instead of an unexplained skip."""
    return dg.SkipReason("; ".join(notes) or f"no active {kind} connection")


def nightly_schedules(
    kind: str, *, snapshot_job: JobLike, daily_job: JobLike, hour: int = 2, minute: int = 0
) -> list[dg.ScheduleDefinition]:
    """Two schedules recomputing every active connection of a kind in full: snapshot metrics, then
    (15 minutes later) each connection's whole daily history in one run."""

    def build(job: JobLike, at_minute: int, what: str) -> dg.ScheduleDefinition:
        def requests(
            context: dg.ScheduleEvaluationContext, platform: PlatformResource
        ) -> list[dg.RunRequest] | dg.SkipReason:
            today = (context.scheduled_execution_time or datetime.now(UTC)).date()
            connections, notes = schedulable_connections(context.instance, platform.get(), kind)
            found = [
                request
                for connection in connections
                for request in full_resync_requests(
                    connection, today, "nightly", snapshot_job=snapshot_job, daily_job=daily_job
                )
                if request.job_name == job.name
            ]
            return found or skip_reason(kind, notes)

        requests.__name__ = f"{kind}_nightly_{what}_schedule"
        return dg.schedule(
            name=requests.__name__,
            cron_schedule=f"{at_minute % 60} {hour + at_minute // 60} * * *",
            execution_timezone="UTC",
            default_status=dg.DefaultScheduleStatus.RUNNING,
            job=job,
            description=f"Nightly: recomputes {what} metrics of every active {kind} connection"
            + (", each connection's whole daily history in one run." if what == "daily" else "."),
        )(requests)

    return [build(snapshot_job, minute, "snapshot"), build(daily_job, minute + 15, "daily")]


# One connection's poll: given the connection and its cursor (None on first sight), the run requests,
# its new cursor (JSON-serialisable) and an optional note for the tick's skip reason.
Poll = Callable[[Connection, Any], tuple[list[dg.RunRequest], Any, str | None]]


def poll_active_connections(
    context: dg.SensorEvaluationContext, services: Platform, kind: str, poll: Poll
) -> dg.SensorResult:
    """A change sensor's tick: poll every active connection of `kind` that has its partition, keeping
    one cursor per connection in the sensor cursor. A connection whose poll fails (a `DfxError`: auth,
    rate limit, bad response) keeps its cursor and does not stop the others; cursors of connections no
    longer active are dropped, so a revoked connection is never polled again. A connection whose
    workspace owner restricted processing is not polled but keeps its cursor: lifting the restriction
    resumes from there, so the changes made meanwhile are still found."""
    cursors: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    requests: list[dg.RunRequest] = []
    notes = []
    active = services.registry.list(kind=kind, statuses=[ConnectionStatus.ACTIVE])
    known_partitions = set(context.instance.get_dynamic_partitions(registered_partitions_name(kind)))
    restricted = restricted_workspace_ids(services.engine)
    for connection in active:
        if connection.id not in known_partitions:
            notes.append(f"{connection.id}: waiting for its partition")
            continue
        if connection.workspace_id in restricted:
            notes.append(f"{connection.id}: processing restricted")
            continue
        try:
            found, cursors[connection.id], note = poll(connection, cursors.get(connection.id))
        except DfxError as exc:
            context.log.warning(f"{connection.id}: change poll failed: {exc}")
            notes.append(f"{connection.id}: poll failed")
            continue
        if note:
            notes.append(f"{connection.id}: {note}")
        requests.extend(found)
    cursors = {cid: value for cid, value in cursors.items() if cid in {c.id for c in active}}
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursors, sort_keys=True),
        skip_reason=None if requests else ("; ".join(notes) or "no changes"),
    )
