"""Every access the privacy lifecycle makes to Dagster's private modules (`dagster._...`), in one place.

Deletion and retention must erase things Dagster's public API can only read (or cannot reach at all):
asset-check results, runless events, the per-asset copy of the latest materialization, sensor ticks,
SQLite's per-run files. Each function below says which public API is missing, and was checked against
dagster==1.13.27 (the version pinned in constraints.txt). When Dagster is upgraded, re-read the private
code each function names: the lifecycle tests (`dfx_pipelines_tests/lifecycle/`) assert the outcome
through Dagster's public read APIs, so a change underneath shows as a failing test, not as data left
behind. Nothing outside this module may import `dagster._`.

Every storage Dagster ships (SQLite, PostgreSQL, MySQL, and the in-memory one) is a SQL one; a storage
that is not cannot be searched, and the functions say so (`None`, or `StorageUnsupported`) instead of
reporting a deletion they could not do.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

# The run id of events reported outside any run (""). Missing public API: not exported (1.13.27).
from dagster._core.instance.utils import RUNLESS_RUN_ID

# Types of the sensor tick history and its error. Missing public API: none is exported by `dagster`
# (1.13.27), yet the public `DagsterInstance.update_tick` takes an `InstigatorTick`, and scrubbing a tick
# rebuilds its `TickData` (with its `DynamicPartitionsRequestResult`s and `SerializableErrorInfo`);
# `SensorInstigatorData` is the type of a sensor's state from the public `all_instigator_state`.
from dagster._core.scheduler.instigation import (
    DynamicPartitionsRequestResult,
    InstigatorTick,
    SensorInstigatorData,
    TickData,
)
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import (
    AssetCheckExecutionsTable,
    AssetEventTagsTable,
    AssetKeyTable,
    SqlEventLogStorageTable,
)
from dagster._core.storage.event_log.sqlite.sqlite_event_log import INDEX_SHARD_NAME
from dagster._core.storage.schedules import SqlScheduleStorage
from dagster._core.storage.schedules.schema import JobTickTable
from dagster._time import datetime_from_timestamp
from dagster._utils.error import SerializableErrorInfo  # see the tick types above

__all__ = [
    "RUNLESS_RUN_ID",
    "DynamicPartitionsRequestResult",
    "InstigatorTick",
    "SensorInstigatorData",
    "SerializableErrorInfo",
    "StorageUnsupported",
    "TickData",
]

_ASSET_EVENT_TYPES = (dg.DagsterEventType.ASSET_MATERIALIZATION.value, dg.DagsterEventType.ASSET_OBSERVATION.value)


class StorageUnsupported(RuntimeError):
    """The instance's storage is not one of Dagster's SQL storages: it cannot be searched or erased."""


# ---------------------------------------------------------------- runs


def delete_check_executions(instance: dg.DagsterInstance, run_id: str) -> None:
    """Asset-check results (with their metadata) of a run. Missing public API: `delete_run` leaves the
    `asset_check_executions` rows (1.13.27: `SqlEventLogStorage.delete_events` does not touch them) and
    nothing public deletes them."""
    storage = instance.event_log_storage
    if isinstance(storage, SqlEventLogStorage) and storage.has_table(AssetCheckExecutionsTable.name):
        with storage.index_connection() as db:
            db.execute(AssetCheckExecutionsTable.delete().where(AssetCheckExecutionsTable.c.run_id == run_id))


def delete_run_shard(instance: dg.DagsterInstance, run_id: str) -> None:
    """On SQLite each run's events have a file of their own, emptied but left behind by `delete_run` (its
    free pages could still hold them): remove it. Missing public API: the file's path
    (`SqliteEventLogStorage.path_for_shard`, 1.13.27) and a way to drop a run's shard."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        shard = storage.path_for_shard(run_id)
        for path in (shard, f"{shard}-wal", f"{shard}-shm"):
            Path(path).unlink(missing_ok=True)


# ---------------------------------------------------------------- events of a connection's partitions


def _of_connection(connection_id: str) -> sa.ColumnElement[bool]:
    partition = SqlEventLogStorageTable.c.partition
    return sa.or_(partition == connection_id, partition.startswith(f"{connection_id}|", autoescape=True))


def partition_event_run_ids(instance: dg.DagsterInstance, key: dg.AssetKey, connection_id: str) -> list[str]:
    """The run id (`RUNLESS_RUN_ID` when runless) of every materialization and observation of the
    connection's partitions (`connection` or `connection|...`) still in the event log. Missing public
    API: `fetch_materializations`/`fetch_observations` filter by exact partition keys only (1.13.27:
    `AssetRecordsFilter.asset_partitions`), and a deleted dynamic partition's daily keys cannot be listed;
    this reads the SQL storage's (asset_key, partition) index instead."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise StorageUnsupported(f"cannot search {type(storage).__name__} for events of {connection_id}")
    events = SqlEventLogStorageTable
    query = sa.select(events.c.run_id).where(
        events.c.asset_key == key.to_string(),
        events.c.dagster_event_type.in_(_ASSET_EVENT_TYPES),
        _of_connection(connection_id),
    )
    with storage.index_connection() as db:
        return [row[0] or RUNLESS_RUN_ID for row in db.execute(query)]


def delete_runless_partition_events(instance: dg.DagsterInstance, key: dg.AssetKey, connection_id: str) -> None:
    """Events reported outside any run (`report_runless_asset_event`) belong to no run that could be
    deleted. Missing public API: `wipe_asset_partitions` is not implemented by the SQL storages
    (1.13.27: `SqlEventLogStorage.wipe_asset_partitions` raises NotImplementedError), and `wipe_asset`
    would take every connection's history. Deletes their rows (and tags) from the event log tables:
    runless events live in the index and in the runless "run" shard on SQLite, in one table on
    PostgreSQL/MySQL."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        raise StorageUnsupported(f"cannot erase runless events from {type(storage).__name__}")
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


def set_latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey, latest: dg.EventLogRecord | None
) -> None:
    """Point Dagster's per-asset copy of the latest materialization (with its metadata) at `latest`.
    Missing public API: the `asset_keys` row keeps the copy after the event is deleted (1.13.27:
    `delete_events` does not update it) and only `wipe_asset` (every partition) resets it."""
    storage = instance.event_log_storage
    if not isinstance(storage, SqlEventLogStorage):
        return  # a storage without the copy
    with storage.index_connection() as db:
        db.execute(
            AssetKeyTable.update()
            .where(AssetKeyTable.c.asset_key == key.to_string())
            .values(
                last_materialization=dg.serialize_value(latest) if latest else None,
                last_run_id=latest.run_id if latest else None,
            )
        )


# ---------------------------------------------------------------- sensor and schedule tick history


def _schedule_storage(instance: dg.DagsterInstance) -> SqlScheduleStorage:
    storage = instance.schedule_storage
    if not isinstance(storage, SqlScheduleStorage):
        raise StorageUnsupported(f"cannot search {type(storage).__name__} for ticks")
    return storage


def check_tick_storage(instance: dg.DagsterInstance) -> None:
    """Raise `StorageUnsupported` unless the ticks can be searched and erased."""
    _schedule_storage(instance)


def ticks_containing(instance: dg.DagsterInstance, text: str, after_id: int, limit: int) -> list[tuple[int, TickData]]:
    """Ticks whose body contains `text`, in id order after `after_id`. Missing public API: ticks are
    read per instigator (`get_ticks(origin_id, selector_id)`, 1.13.27), with no search across
    instigators nor by content; this is a substring search on `job_ticks.tick_body`."""
    ticks, body = JobTickTable, JobTickTable.c.tick_body
    query = sa.select(ticks.c.id, body).where(body.contains(text, autoescape=True), ticks.c.id > after_id)
    with _schedule_storage(instance).connect() as db:
        return [
            (row[0], dg.deserialize_value(row[1], TickData))
            for row in db.execute(query.order_by(ticks.c.id).limit(limit))
        ]


def delete_tick(instance: dg.DagsterInstance, tick_id: int) -> None:
    """One tick. Missing public API: ticks are purged only by age and status per instigator
    (`purge_ticks(origin_id, selector_id, before, tick_statuses)`, 1.13.27), never one by id."""
    with _schedule_storage(instance).connect() as db:
        db.execute(JobTickTable.delete().where(JobTickTable.c.id == tick_id))


def purge_ticks_before(instance: dg.DagsterInstance, before: datetime, dry_run: bool) -> int:
    """Every tick (any instigator, any status) older than `before`; returns how many. Missing public API:
    `DagsterInstance.purge_ticks` needs one instigator's origin and selector ids (1.13.27) and a stopped or
    removed sensor's ticks stay; the timestamp is compared as Dagster writes it (`datetime_from_timestamp`)."""
    ticks = JobTickTable
    old = ticks.c.timestamp < datetime_from_timestamp(before.timestamp())
    with _schedule_storage(instance).connect() as db:
        if dry_run:
            return db.execute(sa.select(sa.func.count()).select_from(ticks).where(old)).scalar_one()
        return db.execute(ticks.delete().where(old)).rowcount


# ---------------------------------------------------------------- compaction


def sqlite_files(instance: dg.DagsterInstance, storages: Iterable[str]) -> list[Path]:
    """The SQLite files behind the instance's storages (the event log's index shard included), to be
    rewritten with VACUUM. Missing public API: storages do not expose their database file (1.13.27: the
    index shard's path is `SqliteEventLogStorage.path_for_shard(INDEX_SHARD_NAME)`, the run and schedule
    storages keep theirs in the private attribute `_conn_string`)."""
    paths = []
    if isinstance(instance.event_log_storage, SqliteEventLogStorage):
        paths.append(Path(instance.event_log_storage.path_for_shard(INDEX_SHARD_NAME)))
    for attribute in storages:
        url = getattr(getattr(instance, attribute), "_conn_string", "")
        if isinstance(url, str) and url.startswith("sqlite:///"):
            paths.append(Path(url.removeprefix("sqlite:///")))
    return list(dict.fromkeys(paths))


def postgres_url(instance: dg.DagsterInstance, storage: str) -> str | None:
    """The PostgreSQL URL of one of the instance's storages (`run_storage`, `event_log_storage`,
    `schedule_storage`), None when it is not on PostgreSQL. Missing public API: the storages' URL is an
    attribute of dagster-postgres's classes (`PostgresRunStorage.postgres_url`, 1.13.27), not of the
    storage interface."""
    url = getattr(getattr(instance, storage), "postgres_url", None)
    return url if isinstance(url, str) and url else None
