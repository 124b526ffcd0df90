"""Deleting everything cached from a removed connection, provably, and spotting deletions that are late.

Every step is idempotent, so a deletion interrupted halfway is completed by the next attempt, and the
audit shows each attempt. What goes:
- the connection's data key and any ciphertext left in the vault;
- its metric rows and batches;
- data its connector keeps elsewhere (the plugin's optional `delete_cached_data`);
- Dagster's records of it: every run that ran for it (run storage, event log, asset-check results,
  compute logs, SQLite's per-run event file), any remaining materialization or observation events of
  its partitions (runless ones included), Dagster's per-asset copy of the latest materialization and
  its partition-status cache, its dynamic partition;
- its traces in sensor tick history: the connection's run requests, run ids and keys, cursor entries,
  skip-reason parts of every tick, and the sensors' live cursors (`tick_history`);
- the deleted rows' bytes: the touched tables are rewritten (SQLite VACUUM, PostgreSQL VACUUM FULL:
  `compaction`), so nothing lingers in free pages or dead tuples.
The registry keeps a tombstone (id, workspace, kind, status, timestamps: `Registry.tombstone`) and the
audit keeps counts: neither holds data.
"""

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import sqlalchemy as sa
from dagster._core.events import DagsterEventType
from dagster._core.instance.utils import RUNLESS_RUN_ID
from dagster._core.storage.event_log import EventLogStorage, SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._serdes import serialize_value

from dfx_pipelines.lifecycle import audit
from dfx_pipelines.lifecycle.compaction import compact_dagster_storage, compact_metric_db
from dfx_pipelines.lifecycle.tick_history import erase_connection_from_sensor_state, erase_connection_from_ticks
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
    ticks_scrubbed: int = 0
    sensor_states_scrubbed: int = 0
    seconds: float = 0.0

    def as_details(self) -> dict[str, Any]:
        return {key: value for key, value in self.__dict__.items() if key != "connection_id"}


def run_is_for(tags: Mapping[str, str], connection_id: str) -> bool:
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
                erase_run(instance, record.dagster_run.run_id)
                deleted += 1
        cursor = records[-1].dagster_run.run_id


def erase_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """A run and everything Dagster keeps of it (also used by the retention job)."""
    instance.delete_run(run_id)  # the run, its tags and its event log
    _delete_check_executions(instance, run_id)  # asset-check results (with their metadata) are kept apart
    _delete_compute_logs(instance, run_id)  # so are captured stdout/stderr
    _delete_run_shard(instance, run_id)


def _delete_run_shard(instance: dg.DagsterInstance, run_id: str) -> None:
    """On SQLite each run's events have a file of their own, emptied but left behind by `delete_run`
    (its free pages could still hold them): remove it."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        shard = storage.path_for_shard(run_id)
        for path in (shard, f"{shard}-wal", f"{shard}-shm"):
            Path(path).unlink(missing_ok=True)


def _delete_check_executions(instance: dg.DagsterInstance, run_id: str) -> None:
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage) and storage.has_table(AssetCheckExecutionsTable.name):
        with storage.index_connection() as db:
            db.execute(AssetCheckExecutionsTable.delete().where(AssetCheckExecutionsTable.c.run_id == run_id))


def _delete_compute_logs(instance: dg.DagsterInstance, run_id: str) -> None:
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except NotImplementedError:  # a manager that cannot delete (e.g. a no-op one) holds nothing to delete
        log.info("compute log manager %s cannot delete logs", type(instance.compute_log_manager).__name__)


class DeletionIncomplete(RuntimeError):
    """Something derived from the connection could not be erased: the deletion is not done."""


def _of_connection(connection_id: str) -> sa.ColumnElement[bool]:
    partition = SqlEventLogStorageTable.c.partition
    return sa.or_(partition == connection_id, partition.startswith(f"{connection_id}|", autoescape=True))


_ASSET_EVENT_TYPES = (DagsterEventType.ASSET_MATERIALIZATION.value, DagsterEventType.ASSET_OBSERVATION.value)


def _partition_events(instance: dg.DagsterInstance, key: dg.AssetKey, connection_id: str) -> list[str]:
    """The run id ("" when runless) of every materialization and observation of this connection's
    partitions still in the event log, from the SQL storage's asset/partition index. Every event
    storage Dagster ships (SQLite, PostgreSQL, MySQL, in-memory) is a SQL one; another cannot prove it."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise DeletionIncomplete(f"cannot search {type(storage).__name__} for events of {connection_id}")
    events = SqlEventLogStorageTable
    query = sa.select(events.c.run_id).where(
        events.c.asset_key == key.to_string(),
        events.c.dagster_event_type.in_(_ASSET_EVENT_TYPES),
        _of_connection(connection_id),
    )
    with storage.index_connection() as db:
        return [row[0] or RUNLESS_RUN_ID for row in db.execute(query)]


def _delete_runless_events(storage: EventLogStorage, key: dg.AssetKey, connection_id: str) -> None:
    """Events reported outside any run (`report_runless_asset_event`) belong to no run that could be
    deleted, and Dagster's SQL storages do not implement `wipe_asset_partitions`: delete their rows (and
    their tags) from the event log tables directly. Runless events live in the index and in the
    runless "run" shard on SQLite, in one table on PostgreSQL/MySQL."""
    if not isinstance(storage, SqlEventLogStorage):
        raise DeletionIncomplete(f"cannot delete runless events of {connection_id} from {type(storage).__name__}")
    events = SqlEventLogStorageTable
    mine = sa.and_(
        events.c.run_id == RUNLESS_RUN_ID, events.c.asset_key == key.to_string(), _of_connection(connection_id)
    )
    with storage.index_connection() as db:
        ids = [row[0] for row in db.execute(sa.select(events.c.id).where(mine))]
        if ids:
            db.execute(AssetEventTagsTable.delete().where(AssetEventTagsTable.c.event_id.in_(ids)))
        db.execute(events.delete().where(mine))
    with storage.run_connection(RUNLESS_RUN_ID) as db:  # the same database except on SQLite
        db.execute(events.delete().where(mine))


def _refresh_asset_summary(instance: dg.DagsterInstance, key: dg.AssetKey) -> None:
    """Dagster keeps, per asset key, a copy of its latest materialization (with its metadata) and a
    cache of materialized partitions; neither goes with the events. Point the copy at the latest
    remaining materialization (or nothing) and drop the cache, which Dagster rebuilds from the events."""
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage):
        latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
        with storage.index_connection() as db:
            db.execute(
                AssetKeyTable.update()
                .where(AssetKeyTable.c.asset_key == key.to_string())
                .values(
                    last_materialization=serialize_value(latest[0]) if latest else None,
                    last_run_id=latest[0].run_id if latest else None,
                )
            )
    if storage.can_read_asset_status_cache():
        storage.wipe_asset_cached_status(key)


def _wipe_partition_events(instance: dg.DagsterInstance, kind: str, connection_id: str) -> int:
    """Materializations and observations of this connection's partitions that outlived its runs'
    deletion (recorded by runs that did not name the connection, or by no run at all)."""
    wiped = 0
    for key in instance.get_asset_keys(prefix=[kind]):
        events = _partition_events(instance, key, connection_id)
        if events:
            # Every run covers one connection, so a run that recorded one of its partitions goes whole.
            for run_id in set(events) - {RUNLESS_RUN_ID}:
                erase_run(instance, run_id)
            if RUNLESS_RUN_ID in events:
                _delete_runless_events(instance.event_log_storage, key, connection_id)
            left = _partition_events(instance, key, connection_id)
            if left:
                raise DeletionIncomplete(
                    f"{len(left)} events of {key.to_user_string()} for {connection_id} could not be erased"
                )
            wiped += len(events)
        _refresh_asset_summary(instance, key)
    return wiped


_METRIC_TABLES = (
    "metric_values",
    "metric_batches",
    "metric_record_buckets",
    "connections",
)  # the tombstone's update leaves an old version


def delete_connection_data(
    platform: Platform, plugin: ConnectorPlugin, instance: dg.DagsterInstance, connection_id: str, *, actor: str
) -> DeletionReport:
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
        report.ticks_scrubbed = erase_connection_from_ticks(instance, connection.id)
        report.sensor_states_scrubbed = erase_connection_from_sensor_state(instance, connection.id)
        platform.registry.tombstone(connection.id)
        compact_metric_db(platform.engine, (*_METRIC_TABLES, *report.connector_data_deleted))
        compact_dagster_storage(instance)
    except Exception as exc:
        audit.record(
            platform.engine, "deletion_failed", connection, actor, {**report.as_details(), "error": type(exc).__name__}
        )
        raise
    report.seconds = round(time.monotonic() - started, 3)
    audit.record(platform.engine, "deletion_completed", connection, actor, report.as_details())
    return report


def due_for_deletion(
    platform: Platform, now: datetime | None = None, grace: timedelta = timedelta(0)
) -> list[Connection]:
    """Removed connections whose grace period is over (grace 0: the next nightly run deletes them)."""
    if not timedelta(0) <= grace <= DELETION_DEADLINE:
        raise ValueError(f"grace must be between 0 and {DELETION_DEADLINE.days} days, got {grace}")
    now = now or utcnow()
    return [
        c
        for c in platform.registry.list(statuses=[ConnectionStatus.REMOVED])
        if c.removed_at and c.removed_at + grace <= now
    ]


def overdue(platform: Platform, now: datetime | None = None) -> list[Connection]:
    """Removed connections still holding data past the 30-day promise."""
    now = now or utcnow()
    return [
        c
        for c in platform.registry.list(statuses=[ConnectionStatus.REMOVED])
        if c.removed_at and c.removed_at + DELETION_DEADLINE <= now
    ]
