"""BigQuery's nightly schedule: every active connection gets one budget-gated run, over the days of its
history window not yet computed (the whole window on the first night), else yesterday and today; a
tick with nothing to run says why."""

from datetime import UTC, date, datetime

import dagster as dg

from dfx_pipelines.connectors.bigquery.assets import METRICS_KEY
from dfx_pipelines.connectors.bigquery.schedules import bigquery_nightly_schedule, recompute_from
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.resources import PlatformResource

WHEN = datetime(2024, 12, 31, 2, 30, tzinfo=UTC)
RANGE = ("dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def tick(instance: dg.DagsterInstance, platform):
    resources = {
        "platform": PlatformResource(home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url)
    }
    return bigquery_nightly_schedule(
        dg.build_schedule_context(instance=instance, scheduled_execution_time=WHEN, resources=resources)
    )


def test_first_night_covers_the_window_then_only_what_is_missing_and_late(
    platform, workspace, bq_connection, dagster_instance
) -> None:
    assert tick(dagster_instance, platform).skip_message == "bq-acme: waiting for its partition"
    sync_partitions(dagster_instance, platform.registry, ["bigquery"])
    [first_night] = tick(dagster_instance, platform)
    assert [first_night.tags[t] for t in RANGE] == ["bq-acme|2024-10-03", "bq-acme|2024-12-31"]  # 90 days
    assert first_night.tags["dfx/connection"] == "bq-acme" and first_night.job_name == "bigquery_metrics_job"
    for day in range(3, 32):  # October computed; November and December not
        dagster_instance.report_runless_asset_event(
            dg.AssetMaterialization(METRICS_KEY, partition=f"bq-acme|2024-10-{day:02d}")
        )
    [next_night] = tick(dagster_instance, platform)
    assert [next_night.tags[t] for t in RANGE] == ["bq-acme|2024-11-01", "bq-acme|2024-12-31"]


def test_when_everything_is_computed_only_yesterday_and_today_are_recomputed() -> None:
    done = {f"c|{date(2024, 12, d).isoformat()}" for d in range(1, 32)}
    assert recompute_from(done, "c", date(2024, 12, 1), date(2024, 12, 31)) == date(2024, 12, 30)
    assert recompute_from(set(), "c", date(2024, 12, 1), date(2024, 12, 31)) == date(2024, 12, 1)
    assert recompute_from(done - {"c|2024-12-10"}, "c", date(2024, 12, 1), date(2024, 12, 31)) == date(2024, 12, 10)
    assert recompute_from(set(), "c", date(2024, 12, 31), date(2024, 12, 31)) == date(2024, 12, 31)  # a one-day window


def test_a_new_connection_gets_its_first_sync_without_waiting_for_the_night(
    platform, workspace, bq_connection, dagster_instance
) -> None:
    from datetime import timedelta

    from dfx_pipelines.connectors.bigquery.schedules import bigquery_first_sync_sensor

    resources = {
        "platform": PlatformResource(home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url)
    }
    sync_partitions(dagster_instance, platform.registry, ["bigquery"])
    with dg.build_sensor_context(instance=dagster_instance, resources=resources) as context:
        [request] = bigquery_first_sync_sensor(context).run_requests
    today = datetime.now(UTC).date()
    assert request.run_key == "bq-acme:first-sync" and request.tags["dfx/sync"] == "first-sync"
    assert [request.tags[t] for t in RANGE] == [f"bq-acme|{today - timedelta(days=89)}", f"bq-acme|{today}"]
    dagster_instance.report_runless_asset_event(dg.AssetMaterialization(METRICS_KEY, partition=f"bq-acme|{today}"))
    with dg.build_sensor_context(instance=dagster_instance, resources=resources) as context:
        result = bigquery_first_sync_sensor(context)
    assert not result.run_requests and result.skip_reason.skip_message == "every connection has had its first sync"
