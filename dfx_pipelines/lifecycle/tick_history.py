"""Dagster's tick history (the `job_ticks` table behind every sensor's and schedule's history in the UI):
erasing a deleted connection from it, and purging ticks past the retention period.

A sensor tick records what one evaluation did: the run requests it made (tags and partition keys name the
connection), their reserved run ids, the run ids and run keys it launched (ours start with the connection
id), the cursor it left (the change sensors keep `{connection id: cursor}`), its skip reason ("sf-acme:
poll failed; ..."), its error, the dynamic partitions it added or deleted, and the key of its captured
log. One tick covers every connection of a kind, so deletion *scrubs* the ticks that name the connection:
its requests, run ids, run keys, cursor entry, skip-reason parts and partition keys go, an error naming
it is reduced to its class, the tick's captured log is deleted; other connections' parts stay. A tick
that would still name it afterwards is deleted whole. The sensors' live state (cursor, last run key) is
scrubbed the same way.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime
from typing import Any

import dagster as dg

from dfx_pipelines.lifecycle import dagster_private
from dfx_pipelines.lifecycle.dagster_private import (
    DynamicPartitionsRequestResult,
    InstigatorTick,
    SensorInstigatorData,
    SerializableErrorInfo,
    StorageUnsupported,
    TickData,
)

log = logging.getLogger(__name__)

ERASED = "(erased with a deleted connection)"


TickStorageUnsupported = StorageUnsupported  # the schedule storage is not a SQL one: ticks cannot be searched


class _Mentions:
    """Whether text names the connection: its id, not a longer id it begins (sf-acme is not sf-acme-2)."""

    def __init__(self, connection_id: str):
        self.connection_id = connection_id
        self._pattern = re.compile(rf"(?<![a-z0-9-]){re.escape(connection_id)}(?![a-z0-9-])")

    def __call__(self, value: Any) -> bool:
        text = value if isinstance(value, str) else dg.serialize_value(value)
        return bool(self._pattern.search(text))


def _scrub_cursor(cursor: str | None, mentions: _Mentions) -> str | None:
    if cursor is None or not mentions(cursor):
        return cursor
    try:
        parsed = json.loads(cursor)
    except ValueError:
        return None
    if isinstance(parsed, dict):
        return json.dumps(
            {k: v for k, v in parsed.items() if not mentions(k) and not mentions(json.dumps(v))}, sort_keys=True
        )
    if isinstance(parsed, list):
        return json.dumps([item for item in parsed if not mentions(json.dumps(item))])
    return None


def _scrub_reason(reason: str | None, mentions: _Mentions) -> str | None:
    if reason is None or not mentions(reason):
        return reason
    kept = [part for part in reason.split("; ") if not mentions(part)]  # sync.py joins one note per connection
    return "; ".join(kept) if kept else ERASED


def _scrub_partitions(results: Any, mentions: _Mentions) -> list[DynamicPartitionsRequestResult]:
    def keep(keys: Any) -> list[str] | None:
        return None if keys is None else [k for k in keys if not mentions(k)]

    return [
        DynamicPartitionsRequestResult(
            r.partitions_def_name,
            keep(r.added_partitions),
            keep(r.deleted_partitions),
            keep(r.skipped_partitions) or [],
        )
        for r in results or []
    ]


def scrub_tick(data: TickData, mentions: _Mentions, gone_run_ids: set[str]) -> TickData:
    """The tick without the connection's parts. `gone_run_ids`: run ids that no longer exist."""
    requests, reserved = list(data.run_requests or []), list(data.reserved_run_ids or [])
    dropped = [i for i, request in enumerate(requests) if mentions(request)]
    dropped_ids = {reserved[i] for i in dropped if i < len(reserved)} - {None}
    dropped_keys = {requests[i].run_key for i in dropped} - {None}
    drop_id = lambda run_id: run_id in gone_run_ids or run_id in dropped_ids or mentions(run_id)  # noqa: E731
    error = data.error
    if error is not None and mentions(error):
        error = SerializableErrorInfo(message=ERASED, stack=[], cls_name=error.cls_name)
    return data._replace(
        run_requests=[r for i, r in enumerate(requests) if i not in dropped] if data.run_requests is not None else None,
        reserved_run_ids=[r for i, r in enumerate(reserved) if i not in dropped]
        if data.reserved_run_ids is not None
        else None,
        run_ids=[r for r in data.run_ids or [] if not drop_id(r)],
        origin_run_ids=[r for r in data.origin_run_ids or [] if not drop_id(r)],
        run_keys=[k for k in data.run_keys or [] if k not in dropped_keys and not mentions(k)],
        cursor=_scrub_cursor(data.cursor, mentions),
        skip_reason=_scrub_reason(data.skip_reason, mentions),
        error=error,
        dynamic_partitions_request_results=_scrub_partitions(data.dynamic_partitions_request_results, mentions),
        log_key=None,  # the captured log of a tick that named the connection is deleted with it
    )


def _delete_tick_log(instance: dg.DagsterInstance, log_key: Any) -> None:
    if not log_key:
        return
    try:
        instance.compute_log_manager.delete_logs(log_key=list(log_key))
    except NotImplementedError:  # a manager that cannot delete holds nothing to delete
        log.info("compute log manager %s cannot delete tick logs", type(instance.compute_log_manager).__name__)


def erase_connection_from_ticks(instance: dg.DagsterInstance, connection_id: str) -> int:
    """Scrub (or delete) every tick naming the connection; returns how many ticks changed."""
    dagster_private.check_tick_storage(instance)
    mentions = _Mentions(connection_id)
    changed, after_id = 0, -1
    while True:
        # Candidates by a substring search in the database, page by page in id order; `mentions` then
        # decides precisely (a tick of sf-acme-2 contains "sf-acme" but does not name it).
        rows = dagster_private.ticks_containing(instance, connection_id, after_id, limit=200)
        if not rows:
            return changed
        after_id = rows[-1][0]
        named = [(tick_id, data) for tick_id, data in rows if mentions(data)]
        run_ids = {r for _, data in named for r in (*(data.run_ids or []), *(data.origin_run_ids or []))}
        existing = set(instance.get_run_ids(dg.RunsFilter(run_ids=sorted(run_ids)))) if run_ids else set()
        for tick_id, data in named:
            scrubbed = scrub_tick(data, mentions, run_ids - existing)
            _delete_tick_log(instance, data.log_key)
            if mentions(scrubbed):  # something we do not know how to take apart: the whole tick goes
                dagster_private.delete_tick(instance, tick_id)
            else:
                instance.update_tick(InstigatorTick(tick_id, scrubbed))
            changed += 1


def erase_connection_from_sensor_state(instance: dg.DagsterInstance, connection_id: str) -> int:
    """Drop the connection from every sensor's live cursor and last run key (the change sensors drop a
    removed connection's cursor at their next tick, but a stopped sensor has none)."""
    dagster_private.check_tick_storage(instance)
    mentions, changed = _Mentions(connection_id), 0
    for state in instance.all_instigator_state():
        data = state.instigator_data
        if not isinstance(data, SensorInstigatorData) or not mentions(data):
            continue
        last_run_key = None if data.last_run_key and mentions(data.last_run_key) else data.last_run_key
        instance.update_instigator_state(
            state.with_data(data._replace(cursor=_scrub_cursor(data.cursor, mentions), last_run_key=last_run_key))
        )
        changed += 1
    return changed


def purge_ticks(instance: dg.DagsterInstance, before: datetime, dry_run: bool) -> int:
    """Every tick (any sensor or schedule, any status) older than `before`; returns how many."""
    return dagster_private.purge_ticks_before(instance, before, dry_run)
