"""Deleting everything cached from a removed connection, provably, and spotting deletions that are late.

Every step is idempotent, so a deletion interrupted halfway is completed by the next attempt, and the
audit shows each attempt. What goes:
- the connection's data key and any ciphertext left in the vault;
- its metric rows and batches (and SQLite free pages, so deleted values are not left on disk);
- data its connector keeps elsewhere (the plugin's optional `delete_cached_data`);
- Dagster's records of it: every run that ran for it (run storage, event log, logs), any remaining
  materialization events of its partitions, and its dynamic partition.
The registry keeps a tombstone (id, status, timestamps) and the audit keeps counts: neither holds data.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dagster as dg
import sqlalchemy as sa

from dfx_pipelines.lifecycle import audit
from dfx_pipelines.platform.plugins import ConnectorPlugin
from dfx_pipelines.platform.registry import Connection, ConnectionStatus, utcnow
from dfx_pipelines.platform.services import Platform

log = logging.getLogger(__name__)

DELETION_DEADLINE = timedelta(days=30)  # the promise (P10, P17, P22, P27): cached data gone within 30 days
_PARTITION_TAGS = ("dagster/partition", "dagster/partition/connection")
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


@dataclass
class DeletionReport:
    connection_id: str
    data_key_id: str | None = None
    secrets_deleted: int = 0
    metric_values_deleted: int = 0
    connector_data_deleted: dict[str, int] = field(default_factory=dict)
    runs_deleted: int = 0
    partition_events_wiped: int = 0
    partition_removed: bool = False
    seconds: float = 0.0

    def as_details(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "connection_id"}


def run_is_for(tags: dict[str, str], connection_id: str) -> bool:
    """Whether a run's tags say it ran for this connection (ours, or Dagster's partition tags)."""
    if tags.get("dfx/connection") == connection_id:
        return True
    if any(tags.get(tag) == connection_id for tag in _PARTITION_TAGS):
        return True
    prefix = f"{connection_id}|"
    return any(tags.get(tag, "").startswith(prefix) for tag in (*_RANGE_TAGS, "dagster/partition"))


def _delete_runs(instance: dg.DagsterInstance, connection_id: str) -> int:
    deleted, cursor = 0, None
    while True:
        records = instance.get_run_records(limit=500, cursor=cursor)
        if not records:
            return deleted
        for record in records:
            if run_is_for(record.dagster_run.tags, connection_id):
                run_id = record.dagster_run.run_id
                instance.delete_run(run_id)  # the run, its tags and its event log
                _delete_compute_logs(instance, run_id)  # captured stdout/stderr are kept apart
                deleted += 1
        cursor = records[-1].dagster_run.run_id


def _delete_compute_logs(instance: dg.DagsterInstance, run_id: str) -> None:
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except NotImplementedError:  # a manager that cannot delete (e.g. a no-op one) holds nothing to delete
        log.info("compute log manager %s cannot delete logs", type(instance.compute_log_manager).__name__)


class DeletionIncomplete(RuntimeError):
    """Something derived from the connection could not be erased: the deletion is not done."""


def _connection_partitions(instance: dg.DagsterInstance, key: dg.AssetKey, connection_id: str) -> list[str]:
    return [p for p in instance.get_materialized_partitions(key) if p == connection_id or p.startswith(f"{connection_id}|")]


def _wipe_partition_events(instance: dg.DagsterInstance, kind: str, connection_id: str) -> int:
    """Materializations of this connection's partitions that outlived their runs' deletion."""
    wiped = 0
    for key in instance.get_asset_keys(prefix=[kind]):
        partitions = _connection_partitions(instance, key, connection_id)
        if not partitions:
            continue
        try:
            instance.wipe_asset_partitions(key, partitions)
        except NotImplementedError:
            # Dagster's SQL event storages cannot wipe single partitions: delete the runs that
            # recorded these materializations instead (every run covers one connection).
            run_ids: set[str] = set()
            cursor = None
            while True:  # Dagster pages event records 10,000 at a time
                page = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key, asset_partitions=partitions), limit=10_000, cursor=cursor)
                run_ids |= {record.run_id for record in page.records if record.run_id}
                if not page.has_more:
                    break
                cursor = page.cursor
            for run_id in run_ids:
                instance.delete_run(run_id)
                _delete_compute_logs(instance, run_id)
        left = _connection_partitions(instance, key, connection_id)
        if left:
            raise DeletionIncomplete(f"{len(left)} materializations of {key.to_user_string()} for {connection_id} could not be erased (runless events)")
        wiped += len(partitions)
    return wiped


def _compact_sqlite(engine: sa.Engine) -> None:
    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(sa.text("VACUUM"))


def delete_connection_data(platform: Platform, plugin: ConnectorPlugin, instance: dg.DagsterInstance, connection_id: str, *, actor: str) -> DeletionReport:
    """Erase everything cached from a removed (or revoked) connection. Refuses an active one."""
    connection = platform.registry.get(connection_id)
    if connection.status is ConnectionStatus.ACTIVE:
        raise ValueError(f"{connection_id} is active: revoke or remove it before deleting its data")
    started = time.monotonic()
    report = DeletionReport(connection.id)
    audit.record(platform.engine, "deletion_started", connection, actor, {"status_before": connection.status.value})
    try:
        receipt = platform.vault.destroy_connection(connection.workspace_id, connection.id)
        report.data_key_id, report.secrets_deleted = receipt.data_key_id, receipt.secrets_deleted
        report.metric_values_deleted = platform.metric_store.delete_connection(connection.id)
        extra = getattr(plugin, "delete_cached_data", None)
        if callable(extra):
            report.connector_data_deleted = dict(extra(platform, connection))
        report.runs_deleted = _delete_runs(instance, connection.id)
        report.partition_events_wiped = _wipe_partition_events(instance, connection.kind, connection.id)
        partitions_name = f"{connection.kind}_connections"
        if instance.has_dynamic_partition(partitions_name, connection.id):
            instance.delete_dynamic_partition(partitions_name, connection.id)
            report.partition_removed = True
        platform.registry.set_status(connection.id, ConnectionStatus.DELETED)
        _compact_sqlite(platform.engine)
    except Exception as exc:
        audit.record(platform.engine, "deletion_failed", connection, actor, {**report.as_details(), "error": type(exc).__name__})
        raise
    report.seconds = round(time.monotonic() - started, 3)
    audit.record(platform.engine, "deletion_completed", connection, actor, report.as_details())
    return report


def due_for_deletion(platform: Platform, now: datetime | None = None, grace: timedelta = timedelta(0)) -> list[Connection]:
    """Removed connections whose grace period is over (grace 0: the next nightly run deletes them)."""
    if not timedelta(0) <= grace <= DELETION_DEADLINE:
        raise ValueError(f"grace must be between 0 and {DELETION_DEADLINE.days} days, got {grace}")
    now = now or utcnow()
    return [c for c in platform.registry.list(statuses=[ConnectionStatus.REMOVED]) if c.removed_at and c.removed_at + grace <= now]


def overdue(platform: Platform, now: datetime | None = None) -> list[Connection]:
    """Removed connections still holding data past the 30-day promise."""
    now = now or utcnow()
    return [c for c in platform.registry.list(statuses=[ConnectionStatus.REMOVED]) if c.removed_at and c.removed_at + DELETION_DEADLINE <= now]
