"""Every materialization of the BigQuery metric asset carries `dagster/row_count`, equal to the rows the
metric store holds for its day over every spec, read back through Dagster's instance APIs: a day, a range
run (per-day metadata), and a connection that defines no spec (nothing stored, a count of zero)."""

from datetime import date

from dfx_pipelines.connectors.bigquery.assets import METRICS_KEY
from dfx_pipelines.platform.partitions import range_tags

from ...row_counts import assert_row_counts_are_stored
from .conftest import connect

DAY = date(2024, 6, 1)


def test_every_materialization_carries_the_row_count_the_store_holds(
    platform, bq_connection, bq_sandbox, materialize, dagster_instance
) -> None:
    assert materialize(partition_key=f"bq-acme|{DAY}").success
    assert materialize(tags=range_tags("bq-acme", date(2024, 3, 1), date(2024, 3, 3))).success
    connect(platform, bq_sandbox, config={"id": "bq-empty"}, endpoint={"metric_specs": []})
    assert materialize(partition_key=f"bq-empty|{DAY}").success

    def every_metric(key: object) -> None:
        return None  # one asset computes every spec of its connection

    store = platform.metric_store
    assert assert_row_counts_are_stored(dagster_instance, store, [METRICS_KEY], "bq-acme", every_metric) == 4
    assert assert_row_counts_are_stored(dagster_instance, store, [METRICS_KEY], "bq-empty", every_metric) == 1
    assert len(store.read(connection_id="bq-acme")) > 0 and store.read(connection_id="bq-empty") == []
