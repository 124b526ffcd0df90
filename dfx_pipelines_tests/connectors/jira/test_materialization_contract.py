"""Every Jira metric materialization carries `dagster/row_count`, equal to the rows the metric store holds
for its partition, read back through Dagster's instance APIs (a snapshot run and a range run)."""

from datetime import date, timedelta

from dfx_pipelines.connectors.jira.assets import asset_key
from dfx_pipelines.connectors.jira.compute import METRICS

from ...row_counts import assert_row_counts_are_stored
from .conftest import Materializer, range_tags, resource_for

LAST = date(2025, 6, 2)  # the sandbox site's clock (generate.DEFAULT_NOW)
FIRST = LAST - timedelta(days=2)
SNAPSHOT = [name for name, metric in METRICS.items() if not metric.daily]
DAILY = [name for name, metric in METRICS.items() if metric.daily]


def test_every_materialization_carries_the_row_count_the_store_holds(
    platform, cloud_connection, jira_cloud, dagster_instance
) -> None:
    materialize = Materializer(platform, resource_for(jira_cloud), dagster_instance)
    assert materialize(SNAPSHOT, partition_key=cloud_connection.id).success
    assert materialize(DAILY, tags=range_tags(cloud_connection.id, FIRST, LAST)).success

    keys = [asset_key(name) for name in METRICS]
    checked = assert_row_counts_are_stored(dagster_instance, platform.metric_store, keys, cloud_connection.id)
    assert checked == len(SNAPSHOT) + 3 * len(DAILY)
    assert len(platform.metric_store.read(connection_id=cloud_connection.id)) > 0
