"""Each connector kind's dynamic "connection" partitions follow the registry."""

import dagster as dg

from dfx_pipelines.platform.definitions import connection_partitions_sensor
from dfx_pipelines.platform.partitions import connection_daily_partitions, sync_partitions
from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
from dfx_pipelines.platform.resources import PlatformResource


def add(platform, slug: str, kind: str = "salesforce") -> None:
    platform.registry.add_connection(
        parse_connection({"id": slug, "workspace_id": "acme", "kind": kind, "display_name": slug})
    )


def test_sync_adds_and_removes_per_kind(platform, workspace: Workspace) -> None:
    add(platform, "sf-one")
    add(platform, "sf-two")
    add(platform, "jira-one", "jira")
    with dg.instance_for_test() as instance:
        changes = {c.kind: c for c in sync_partitions(instance, platform.registry, ["salesforce", "jira"])}
        assert changes["salesforce"].added == ("sf-one", "sf-two")
        assert instance.get_dynamic_partitions("salesforce_connections") == ["sf-one", "sf-two"]
        assert instance.get_dynamic_partitions("jira_connections") == ["jira-one"]
        # Revoked keeps its partition (its cached data still exists); deleted loses it.
        platform.registry.set_status("sf-one", ConnectionStatus.REVOKED)
        platform.registry.set_status("sf-two", ConnectionStatus.DELETED)
        changes = {c.kind: c for c in sync_partitions(instance, platform.registry, ["salesforce", "jira"])}
        assert changes["salesforce"].removed == ("sf-two",) and changes["jira"].added == ()
        assert instance.get_dynamic_partitions("salesforce_connections") == ["sf-one"]


def test_sensor_requests_the_same_changes(platform, workspace: Workspace) -> None:
    add(platform, "sf-one")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("salesforce_connections", ["sf-gone"])
        context = dg.build_sensor_context(
            instance=instance,
            resources={
                "platform": PlatformResource(
                    metrics_db_url=platform.settings.metrics_db_url, home=str(platform.settings.home)
                )
            },
        )
        result = connection_partitions_sensor(context)
        requests = {type(r).__name__: r for r in result.dynamic_partitions_requests}
        assert requests["AddDynamicPartitionsRequest"].partition_keys == ["sf-one"]
        assert requests["DeleteDynamicPartitionsRequest"].partition_keys == ["sf-gone"]


def test_multi_partition_keys_carry_the_slug_intact(platform, workspace: Workspace) -> None:
    add(platform, "sf-one")
    partitions = connection_daily_partitions("salesforce", "2026-11-01")
    with dg.instance_for_test() as instance:
        sync_partitions(instance, platform.registry, ["salesforce"])
        keys = partitions.get_partition_keys(
            dynamic_partitions_store=instance, current_time=__import__("datetime").datetime(2026, 11, 3)
        )
        assert [k.keys_by_dimension for k in keys][:2] == [
            {"connection": "sf-one", "date": "2026-11-01"},
            {"connection": "sf-one", "date": "2026-11-02"},
        ]


def test_daily_partitions_are_the_history_window_unless_a_day_is_pinned() -> None:
    from datetime import date

    import pytest

    from dfx_pipelines.platform.partitions import HISTORY_WINDOW_DAYS, daily_start, history_range

    today = date(2026, 12, 1)
    assert daily_start(today, environ={}) == "2026-09-03"  # today and the 89 days before it
    assert HISTORY_WINDOW_DAYS == 90 and history_range(90, today) == (date(2026, 9, 3), today)
    assert daily_start(today, environ={"DFX_DAILY_START": "2024-01-01"}) == "2024-01-01"
    with pytest.raises(ValueError, match="DFX_DAILY_START must be a date"):
        daily_start(today, environ={"DFX_DAILY_START": "yesterday"})
