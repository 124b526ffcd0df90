"""The nightly schedules recompute every active connection in full: one snapshot run and one run over
its whole daily history, never for revoked connections or ones without a partition yet."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from dfx_pipelines.connectors.salesforce.cdc import (
    salesforce_nightly_daily_schedule,
    salesforce_nightly_snapshot_schedule,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import ConnectionStatus
from dfx_pipelines.platform.resources import PlatformResource

from .conftest import connect


def evaluate(schedule, instance, platform, when):
    context = dg.build_schedule_context(
        instance=instance,
        scheduled_execution_time=when,
        resources={
            "platform": PlatformResource(
                home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
            )
        },
    )
    return list(schedule(context))


def test_nightly_runs_cover_each_active_connection(
    platform, workspace, sf_sandbox, sf_resource, dagster_instance
) -> None:
    connect(platform, sf_sandbox, sf_resource)
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-beta", "display_name": "Beta"})
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-gone", "display_name": "Gone"})
    sync_partitions(dagster_instance, platform.registry, ["salesforce"])
    platform.registry.set_status("sf-gone", ConnectionStatus.REVOKED)
    when = datetime(2026, 11, 26, 2, 15, tzinfo=UTC)

    snapshot = evaluate(salesforce_nightly_snapshot_schedule, dagster_instance, platform, when)
    assert sorted(r.partition_key for r in snapshot) == ["sf-acme", "sf-beta"]
    daily = evaluate(salesforce_nightly_daily_schedule, dagster_instance, platform, when)
    ranges = {
        r.tags["dfx/connection"]: (
            r.tags["dagster/asset_partition_range_start"],
            r.tags["dagster/asset_partition_range_end"],
        )
        for r in daily
    }
    first = (when.date() - timedelta(days=89)).isoformat()  # settings.history_days defaults to 90
    assert ranges == {
        "sf-acme": (f"sf-acme|{first}", "sf-acme|2026-11-26"),
        "sf-beta": (f"sf-beta|{first}", "sf-beta|2026-11-26"),
    }
    assert all(r.tags["dfx/sync"] == "nightly" and r.run_key for r in snapshot + daily)


def test_a_nightly_tick_that_launches_nothing_says_why(
    platform, workspace, sf_sandbox, sf_resource, dagster_instance
) -> None:
    when = datetime(2026, 11, 26, 2, 15, tzinfo=UTC)
    context = dg.build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=when,
        resources={
            "platform": PlatformResource(
                home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
            )
        },
    )
    nothing = salesforce_nightly_daily_schedule(context)
    assert isinstance(nothing, dg.SkipReason) and nothing.skip_message == "no active salesforce connection"
    connect(platform, sf_sandbox, sf_resource)  # connected, but the partitions sensor has not added it yet
    waiting = salesforce_nightly_snapshot_schedule(context)
    assert isinstance(waiting, dg.SkipReason) and waiting.skip_message == "sf-acme: waiting for its partition"
