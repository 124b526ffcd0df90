"""The lifecycle's Dagster side: revoke/remove/close-workspace jobs for operators in the UI, the nightly
deletion job, and a sensor that raises the alarm (and requests the deletion) when a removed connection's
data outlives the 30-day promise. Connectors are reached only through their plugin interface."""

from datetime import timedelta

import dagster as dg

from dfx_pipelines.connectors import plugin as connector_plugin
from dfx_pipelines.lifecycle.app_data import AppDatabaseResource
from dfx_pipelines.lifecycle.deletion import delete_connection_data, due_for_deletion, overdue
from dfx_pipelines.lifecycle.notifications import NOTIFICATION_RESOURCES, NOTIFICATION_SENSORS
from dfx_pipelines.lifecycle.retention import RETENTION_JOBS, RETENTION_SCHEDULES
from dfx_pipelines.lifecycle.revocation import close_workspace, revoke_connection
from dfx_pipelines.lifecycle.subject_requests import SUBJECT_REQUEST_JOBS, SUBJECT_REQUEST_SENSORS
from dfx_pipelines.platform.resources import PlatformResource

LIFECYCLE_TAGS = {"dfx/lifecycle": "privacy"}


class ConnectionActionConfig(dg.Config):
    connection_id: str
    actor: str = "dagster-operator"


def _revoke(
    context: dg.OpExecutionContext, config: ConnectionActionConfig, platform: PlatformResource, remove: bool
) -> dg.Output[dict]:
    services = platform.get()
    connection = services.registry.get(config.connection_id)
    report = revoke_connection(
        services, connector_plugin(connection.kind), connection.id, remove=remove, actor=config.actor
    )
    context.log.info(report.summary())
    return dg.Output(
        report.__dict__,
        metadata={
            "summary": report.summary(),
            "data_key_destroyed": report.data_key_id or "none",
            "provider_revoked": report.provider_revoked,
        },
    )


@dg.op(tags=LIFECYCLE_TAGS)
def revoke_connection_op(
    context: dg.OpExecutionContext, config: ConnectionActionConfig, platform: PlatformResource
) -> dg.Output[dict]:
    return _revoke(context, config, platform, remove=False)


@dg.op(tags=LIFECYCLE_TAGS)
def remove_connection_op(
    context: dg.OpExecutionContext, config: ConnectionActionConfig, platform: PlatformResource
) -> dg.Output[dict]:
    return _revoke(context, config, platform, remove=True)


@dg.job(
    tags=LIFECYCLE_TAGS,
    description="Revoke a connection now: provider revocation, credentials and data key destroyed, syncs stopped.",
)
def revoke_connection_job() -> None:
    revoke_connection_op()


@dg.job(
    tags=LIFECYCLE_TAGS,
    description="Remove a connection now (revocation, then its cached data is deleted by the next deletion run).",
)
def remove_connection_job() -> None:
    remove_connection_op()


class WorkspaceActionConfig(dg.Config):
    workspace_id: str
    actor: str = "dagster-operator"


@dg.op(tags=LIFECYCLE_TAGS)
def close_workspace_op(
    context: dg.OpExecutionContext, config: WorkspaceActionConfig, platform: PlatformResource
) -> dg.Output[dict]:
    report = close_workspace(platform.get(), config.workspace_id, connector_plugin, actor=config.actor)
    context.log.info(report.summary())
    table = "| connection | provider revoked | data key destroyed |\n|---|---|---|\n" + "\n".join(
        f"| {r.connection_id} | {'yes' if r.provider_revoked else 'no'} | {r.data_key_id or '-'} |"
        for r in report.removed
    )
    return dg.Output(
        {
            "workspace_id": report.workspace_id,
            "closed_at": report.closed_at.isoformat(),
            "removed": [r.connection_id for r in report.removed],
        },
        metadata={
            "summary": report.summary(),
            "connections_removed": len(report.removed),
            "removed": dg.MetadataValue.md(table),
        },
    )


@dg.job(
    tags=LIFECYCLE_TAGS,
    description="Close a customer's workspace (account closure): every connection is removed now; the deletion job erases their data.",
)
def close_workspace_job() -> None:
    close_workspace_op()


class DeletionConfig(dg.Config):
    grace_days: int = 0  # 0: the next nightly run deletes; at most 30 (the promise)
    actor: str = "nightly-deletion"


@dg.op(tags=LIFECYCLE_TAGS)
def delete_removed_connections(
    context: dg.OpExecutionContext, config: DeletionConfig, platform: PlatformResource
) -> dg.Output[list]:
    services = platform.get()
    reports = []
    for connection in due_for_deletion(services, grace=timedelta(days=config.grace_days)):
        report = delete_connection_data(
            services, connector_plugin(connection.kind), context.instance, connection.id, actor=config.actor
        )
        context.log.info(
            f"deleted {connection.id}: {report.metric_values_deleted} metric values, {report.runs_deleted} runs, data key {report.data_key_id}"
        )
        reports.append(report.__dict__)
    table = (
        "| connection | metric values | runs | partition events | data key | seconds |\n|---|---:|---:|---:|---|---:|\n"
        + "\n".join(
            f"| {r['connection_id']} | {r['metric_values_deleted']} | {r['runs_deleted']} | {r['partition_events_wiped']} | {r['data_key_id'] or '-'} | {r['seconds']} |"
            for r in reports
        )
    )
    return dg.Output(reports, metadata={"connections_deleted": len(reports), "deletions": dg.MetadataValue.md(table)})


@dg.job(tags=LIFECYCLE_TAGS, description="Erase everything cached from removed connections whose grace period is over.")
def connection_deletion_job() -> None:
    delete_removed_connections()


connection_deletion_schedule = dg.ScheduleDefinition(
    name="connection_deletion_schedule",
    cron_schedule="0 3 * * *",
    execution_timezone="UTC",
    job=connection_deletion_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Nightly: deletes removed connections' cached data (well inside the 30-day promise).",
)


@dg.sensor(
    name="deletion_overdue_sensor",
    minimum_interval_seconds=3600,
    default_status=dg.DefaultSensorStatus.RUNNING,
    job=connection_deletion_job,
    description="Alerts when a removed connection still holds data 30 days after removal, and requests its deletion.",
)
def deletion_overdue_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    late = overdue(platform.get())
    if not late:
        return dg.SensorResult(skip_reason="no deletion is overdue")
    names = ", ".join(f"{c.id} (removed {c.removed_at:%Y-%m-%d})" for c in late)
    context.log.error(f"DELETION OVERDUE past the 30-day promise: {names}")
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"overdue:{c.id}:{c.removed_at:%Y%m%d}",
                tags={**LIFECYCLE_TAGS, "dfx/alert": "deletion-overdue", "dfx/connection": c.id},
            )
            for c in late
        ],
    )


def lifecycle_definitions() -> dg.Definitions:
    return dg.Definitions(
        jobs=[
            revoke_connection_job,
            remove_connection_job,
            close_workspace_job,
            connection_deletion_job,
            *RETENTION_JOBS,
            *SUBJECT_REQUEST_JOBS,
        ],
        schedules=[connection_deletion_schedule, *RETENTION_SCHEDULES],
        sensors=[deletion_overdue_sensor, *SUBJECT_REQUEST_SENSORS, *NOTIFICATION_SENSORS],
        resources={"app_db": AppDatabaseResource(), **NOTIFICATION_RESOURCES},
    )
