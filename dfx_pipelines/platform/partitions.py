"""Partitions shared by every connector: one dynamic "connection" dimension per connector kind, and a
daily dimension for time-bucketed metrics, kept in step with the registry.

Per kind (not one global set) so a Salesforce asset never shows a Jira connection's partition.
Partition keys are connection slugs, which never contain `|` (Dagster's multi-partition separator) or `,`.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from dfx_pipelines.platform.registry import Registry

DAILY_START = "2024-01-01"


def connection_partitions(kind: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=f"{kind}_connections")


def daily_partitions(start_date: str = DAILY_START) -> dg.DailyPartitionsDefinition:
    # end_offset=1: today is a partition too, so a change made this morning reaches today's metrics
    # through the change-data-capture sensor within minutes instead of waiting for tomorrow.
    return dg.DailyPartitionsDefinition(start_date=start_date, end_offset=1)


def connection_daily_partitions(kind: str, start_date: str = DAILY_START) -> dg.MultiPartitionsDefinition:
    return dg.MultiPartitionsDefinition({"connection": connection_partitions(kind), "date": daily_partitions(start_date)})


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
        name = connection_partitions(self.kind).name
        requests: list = []
        if self.added:
            requests.append(dg.AddDynamicPartitionsRequest(partitions_def_name=name, partition_keys=list(self.added)))
        if self.removed:
            requests.append(dg.DeleteDynamicPartitionsRequest(partitions_def_name=name, partition_keys=list(self.removed)))
        return requests


def partition_changes(instance: dg.DagsterInstance, registry: Registry, kind: str) -> PartitionChanges:
    name = connection_partitions(kind).name
    wanted = set(registry.partition_keys(kind))
    existing = set(instance.get_dynamic_partitions(name))
    return PartitionChanges(kind, tuple(sorted(wanted - existing)), tuple(sorted(existing - wanted)))


def sync_partitions(instance: dg.DagsterInstance, registry: Registry, kinds: list[str]) -> list[PartitionChanges]:
    """Apply the registry to the instance now (the CLI does this right after it changes a connection)."""
    changes = []
    for kind in kinds:
        change = partition_changes(instance, registry, kind)
        name = connection_partitions(kind).name
        if change.added:
            instance.add_dynamic_partitions(name, list(change.added))
        for key in change.removed:
            instance.delete_dynamic_partition(name, key)
        changes.append(change)
    return changes
