"""The row-count contract of metric materializations, read back through Dagster's public instance APIs:
every materialization of a metric asset carries `dagster/row_count`, equal to the metric rows the
metric store holds for that (connection, partition) of the asset's metric(s)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable

import dagster as dg

from dfx_pipelines.platform.metric_store import MetricStore


def materializations(instance: dg.DagsterInstance, key: dg.AssetKey) -> list[dg.AssetMaterialization]:
    """Every materialization of the asset, oldest first (all partitions)."""
    records, cursor = [], None
    while True:
        page = instance.fetch_materializations(key, limit=500, cursor=cursor, ascending=True)
        records += [record.asset_materialization for record in page.records]
        if not page.has_more:
            return [m for m in records if m is not None]
        cursor = page.cursor


def assert_row_counts_are_stored(
    instance: dg.DagsterInstance,
    store: MetricStore,
    keys: Iterable[dg.AssetKey],
    connection_id: str,
    metric_of: Callable[[dg.AssetKey], str | None] = lambda key: key.path[-1],
) -> int:
    """Asserts the contract for every materialization of `keys` and returns how many were checked.
    `metric_of` names the store's metric of an asset (None: every metric of the partition, for an asset
    computing several). Only the connection's partitions are compared. Each must have been materialized once, so each count is compared
    with the batch it wrote."""
    checked = 0
    for key in keys:
        every = materializations(instance, key)
        assert all(m.partition for m in every), f"{key.to_user_string()}: a metric materialization without partition"
        found = [m for m in every if str(m.partition).split("|")[0] == connection_id]
        assert found, f"{key.to_user_string()} was never materialized for {connection_id}"
        partitions = Counter(m.partition for m in found)
        assert max(partitions.values()) == 1, f"{key.to_user_string()}: a partition materialized twice"
        latest = instance.get_latest_materialization_event(key)
        assert latest is not None and latest.asset_materialization is not None
        assert latest.asset_materialization.metadata.get("dagster/row_count") is not None
        for materialization in found:
            row_count = materialization.metadata.get("dagster/row_count")
            assert row_count is not None, f"{key.to_user_string()} {materialization.partition}: no dagster/row_count"
            stored = store.read(
                connection_id=connection_id, metric=metric_of(key), partition_key=str(materialization.partition)
            )
            assert row_count.value == len(stored), (key.to_user_string(), materialization.partition)
            checked += 1
    return checked
