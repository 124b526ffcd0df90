"""Partitions shared by every connector: one dynamic "connection" dimension per connector kind, and a
daily dimension for time-bucketed metrics, kept in step with the registry.

Per kind (not one global set) so a Salesforce asset never shows a Jira connection's partition.
Partition keys are connection slugs, which never contain `|` (Dagster's multi-partition separator) or `,`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dfx_pipelines.platform.executor import connector_executor
from dfx_pipelines.platform.registry import Registry

# The days a daily asset has: the product's history window, ending today. A connection's first sync
# and every nightly recompute fill exactly this window (`history_range`), so the UI shows no partition
# as "missing" that nothing intends to fill. Computed when the code location loads; DFX_DAILY_START
# (YYYY-MM-DD) pins a fixed first day instead (the tests' sandboxes live on fixed past days).
HISTORY_WINDOW_DAYS = 90


def daily_start(today: date | None = None, environ: Mapping[str, str] = os.environ) -> str:
    pinned = environ.get("DFX_DAILY_START")
    if pinned:
        try:
            return date.fromisoformat(pinned).isoformat()
        except ValueError as exc:
            raise ValueError(f"DFX_DAILY_START must be a date YYYY-MM-DD, got {pinned!r}") from exc
    today = today or datetime.now(UTC).date()
    return (today - timedelta(days=HISTORY_WINDOW_DAYS - 1)).isoformat()


DAILY_START = daily_start()

# Connector jobs run their steps in the run's own process by default: the steps of one connection share
# one API and one rate limit and are I/O-bound, so a process per step (the multiprocess default) only adds
# code location loads. Runs of different connections still run in parallel, within the instance's tag
# limits. A deployment that outgrows one machine sets DFX_EXECUTOR=celery (platform.executor).
CONNECTOR_EXECUTOR = connector_executor()


def connection_partitions_name(kind: str) -> str:
    """The name of a kind's dynamic "connection" partitions (its plugin's `partitions_name`)."""
    return f"{kind}_connections"


def registered_partitions_name(kind: str) -> str:
    """The partitions a registered kind's plugin says its assets use (what sync and deletion act on)."""
    from dfx_pipelines.platform import catalogue

    return catalogue.plugin(kind).partitions_name


def connection_partitions(kind: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=connection_partitions_name(kind))


def daily_partitions(start_date: str = DAILY_START) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today is a partition too, so a change made this morning reaches today's metrics
    # through the change-data-capture sensor within minutes instead of waiting for tomorrow.
    return dg.DailyPartitionsDefinition(start_date=start_date, end_offset=1)


def connection_daily_partitions(kind: str, start_date: str = DAILY_START) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition(
        {"connection": connection_partitions(kind), "date": daily_partitions(start_date)}
    )


def connection_of(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    """The connection slug of the partition being run, whether single- or multi-dimensional."""
    key = context.partition_key
    if isinstance(key, dg.MultiPartitionKey):
        return key.keys_by_dimension["connection"]
    return key


@dataclass(frozen=True)
class PartitionChanges:
    kind: str
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def requests(self) -> list[dg.AddDynamicPartitionsRequest | dg.DeleteDynamicPartitionsRequest]:
        name = registered_partitions_name(self.kind)
        requests: list = []
        if self.added:
            requests.append(dg.AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=list(self.added)))
        if self.removed:
            requests.append(
                dg.DeleteDynamicPartitionsRequest(partitions_def_name=name, partition_keys=list(self.removed))
            )
        return requests


def partition_changes(instance: dg.DagsterInstance, registry: Registry, kind: str) -> PartitionChanges:
    name = registered_partitions_name(kind)
    wanted = set(registry.partition_keys(kind))
    existing = set(instance.get_dynamic_partitions(name))
    return PartitionChanges(kind, tuple(sorted(wanted - existing)), tuple(sorted(existing - wanted)))


def sync_partitions(instance: dg.DagsterInstance, registry: Registry, kinds: list[str]) -> list[PartitionChanges]:
    """Apply the registry to the instance now (the CLI does this right after it changes a connection)."""
    changes = []
    for kind in kinds:
        change = partition_changes(instance, registry, kind)
        name = registered_partitions_name(kind)
        if change.added:
            instance.add_dynamic_partitions(name, list(change.added))
        for key in change.removed:
            instance.delete_dynamic_partition(name, key)
        changes.append(change)
    return changes


# ---------------------------------------------------------------- runs over partitions

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


@dataclass(frozen=True)
class RunPartition:
    key: str  # as stored in the metric store: "slug" or "slug|YYYY-MM-DD"
    connection_id: str
    day: date | None  # None for connection-only (snapshot) partitions


def run_partitions(context: dg.AssetExecutionContext) -> list[RunPartition]:
    """Every partition of this run: one, or a single-run backfill's range (always one connection)."""
    keys = context.partition_keys if context.has_partition_key_range else [context.partition_key]
    found = []
    for key in keys:
        text = str(key)
        if isinstance(key, dg.MultiPartitionKey) or "|" in text:
            connection_id, _, day = text.partition("|")
            dims = (
                key.keys_by_dimension
                if isinstance(key, dg.MultiPartitionKey)
                else {"connection": connection_id, "date": day}
            )
            found.append(RunPartition(text, dims["connection"], date.fromisoformat(dims["date"])))
        else:
            found.append(RunPartition(text, text, None))
    return found


def range_tags(connection_id: str, first: date, last: date) -> dict[str, str]:
    """Run tags that make one run cover a connection's days `first..last` (single-run backfill)."""
    return {
        RANGE_START_TAG: f"{connection_id}|{first.isoformat()}",
        RANGE_END_TAG: f"{connection_id}|{last.isoformat()}",
    }


def history_range(history_days: int, today: date) -> tuple[date, date]:
    """The days a full recompute covers: the connection's history window, within the partitions."""
    first = max(today - timedelta(days=history_days - 1), date.fromisoformat(DAILY_START))
    return first, today
