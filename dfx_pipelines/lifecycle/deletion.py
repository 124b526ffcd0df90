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
from datetime import date, datetime, timedelta
from typing import Any

import dagster as dg

from dfx_pipelines.lifecycle import audit, dagster_private
from dfx_pipelines.lifecycle.compaction import compact_dagster_storage, compact_metric_db
from dfx_pipelines.lifecycle.tick_history import erase_connection_from_sensor_state, erase_connection_from_ticks
from dfx_pipelines.platform.partitions import DAILY_START, HISTORY_WINDOW_DAYS
from dfx_pipelines.platform.plugins import ConnectorPlugin
from dfx_pipelines.platform.registry import Connection, ConnectionStatus, utcnow
from dfx_pipelines.platform.services import Platform

log = logging.getLogger(__name__)

DELETION_DEADLINE = timedelta(days=30)  # the promise (P10, P17, P22, P27): cached data gone within 30 days
CONNECTION_TAG = "dfx/connection"
_PARTITION_TAGS = ("dagster/partition", "dagster/partition/connection")
_RANGE_TAGS = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")
_PAGE = 500
# A month of `connection|day` values per filter: PostgreSQL's planner estimates the rows of a longer list
# high enough to join by scanning every run (measured with a year's list, 367 values: a hash join over
# `runs`); with a month it probes the tag index and the matching runs only.
_DAYS_PER_FILTER = 31
RUNLESS_RUN_ID = dagster_private.RUNLESS_RUN_ID


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
    if tags.get(CONNECTION_TAG) == connection_id:
        return True
    if any(tags.get(tag) == connection_id for tag in _PARTITION_TAGS):
        return True
    prefix = f"{connection_id}|"
    return any(tags.get(tag, "").startswith(prefix) for tag in (*_RANGE_TAGS, "dagster/partition"))


def connection_run_filters(instance: dg.DagsterInstance, connection_id: str, first_day: date) -> list[dg.RunsFilter]:
    """Dagster run filters that, together, select the runs `run_is_for` the connection. Each is an exact
    match on an indexed run tag (`run_tags (key, value)`), so finding a connection's runs reads its runs
    only, however many runs other connections have:
    - `dfx/connection`: every run our code requests (schedules, sensors, `dfx demo`, CLI; a retry copies
      its parent's tags; a write-back run tags itself);
    - `dagster/partition` and `dagster/partition/connection`: runs launched from the UI or by a Dagster
      backfill, which carry Dagster's partition tags only (the key of connection-only assets, the
      connection dimension of daily assets);
    - a single-run backfill launched from the UI carries only its range, `connection|day` ..
      `connection|day` (and a run may carry a `dagster/partition` of `connection|day`): these are matched
      on every day from `first_day` to tomorrow (the daily partitions' last day), a list of exact values
      whose length is the connection's lifetime in days, not the number of runs. (Dagster's
      `get_run_tags(value_prefix=...)` would find the values by prefix, but its `LIKE` is not an index
      range on PostgreSQL: it read every range-tagged run's tags, measured in bench/lifecycle_deletion.py.)"""
    filters = [dg.RunsFilter(tags={tag: connection_id}) for tag in (CONNECTION_TAG, *_PARTITION_TAGS)]
    last_day = date.today() + timedelta(days=1)
    days = [first_day + timedelta(days=n) for n in range((last_day - first_day).days + 1)]
    values = [f"{connection_id}|{day.isoformat()}" for day in days]
    for tag in (*_RANGE_TAGS, "dagster/partition"):
        for start in range(0, len(values), _DAYS_PER_FILTER):
            filters.append(dg.RunsFilter(tags={tag: values[start : start + _DAYS_PER_FILTER]}))
    return filters


def first_possible_day(connection: Connection) -> date:
    """The earliest day a run of the connection can name: the daily partitions begin HISTORY_WINDOW_DAYS
    before the day the code location loaded (which was after the connection existed), or on the day
    DFX_DAILY_START pins (`DAILY_START`, as this code location loaded it). A pin moved later since runs
    were made would hide their earlier days: those runs are still erased by the events they recorded
    (`_wipe_partition_events`)."""
    return min(connection.created_at.date() - timedelta(days=HISTORY_WINDOW_DAYS), date.fromisoformat(DAILY_START))


def _delete_runs(instance: dg.DagsterInstance, connection_id: str, first_day: date) -> int:
    """Erase every run of the connection; returns how many. Each filter's first page is read again
    until it is empty (the runs read are erased, so no cursor is needed: a cursor naming an erased run
    would end the paging early)."""
    erased: set[str] = set()
    for runs_filter in connection_run_filters(instance, connection_id, first_day):
        while records := instance.get_run_records(filters=runs_filter, limit=_PAGE):
            for record in records:
                run = record.dagster_run
                if run.run_id in erased:
                    raise DeletionIncomplete(f"run {run.run_id} of {connection_id} is still there after its deletion")
                if not run_is_for(run.tags, connection_id):  # a filter selecting more than it should
                    raise DeletionIncomplete(f"run {run.run_id} was selected for {connection_id} but is not its")
                erase_run(instance, run.run_id)
                erased.add(run.run_id)
    return len(erased)


def erase_run(instance: dg.DagsterInstance, run_id: str) -> None:
    """A run and everything Dagster keeps of it (also used by the retention job)."""
    instance.delete_run(run_id)  # the run, its tags and its event log
    dagster_private.delete_check_executions(instance, run_id)  # asset-check results are kept apart
    _delete_compute_logs(instance, run_id)  # so are captured stdout/stderr
    dagster_private.delete_run_shard(instance, run_id)  # and, on SQLite, the run's own events file


def _delete_compute_logs(instance: dg.DagsterInstance, run_id: str) -> None:
    try:
        instance.compute_log_manager.delete_logs(prefix=[run_id])
    except NotImplementedError:  # a manager that cannot delete (e.g. a no-op one) holds nothing to delete
        log.info("compute log manager %s cannot delete logs", type(instance.compute_log_manager).__name__)


class DeletionIncomplete(RuntimeError):
    """Something derived from the connection could not be erased: the deletion is not done."""


def _partition_events(instance: dg.DagsterInstance, key: dg.AssetKey, connection_id: str) -> list[str]:
    """The run id ("" when runless) of every materialization and observation of this connection's
    partitions still in the event log. A storage that cannot be searched cannot prove the deletion."""
    try:
        return dagster_private.partition_event_run_ids(instance, key, connection_id)
    except dagster_private.StorageUnsupported as exc:
        raise DeletionIncomplete(str(exc)) from exc


def _refresh_asset_summary(instance: dg.DagsterInstance, key: dg.AssetKey) -> None:
    """Dagster keeps, per asset key, a copy of its latest materialization (with its metadata) and a
    cache of materialized partitions; neither goes with the events. Point the copy at the latest
    remaining materialization (or nothing) and drop the cache, which Dagster rebuilds from the events."""
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=key), limit=1).records
    dagster_private.set_latest_materialization(instance, key, latest[0] if latest else None)
    storage = instance.event_log_storage
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
                dagster_private.delete_runless_partition_events(instance, key, connection_id)
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
    "metric_bucket_marks",
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
        report.connector_data_deleted = dict(plugin.delete_cached_data(platform, connection))
        report.runs_deleted = _delete_runs(instance, connection.id, first_possible_day(connection))
        report.partition_events_wiped = _wipe_partition_events(instance, connection.kind, connection.id)
        partitions_name = plugin.partitions_name
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
