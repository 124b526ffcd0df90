"""The change-sensor loop every connector shares: which connections are polled, what a failing poll
does to the others, and which cursors survive a tick."""

import json
from datetime import UTC, datetime

import dagster as dg

from dfx_pipelines.connectors.salesforce.cdc import (
    salesforce_nightly_daily_schedule,
    salesforce_nightly_snapshot_schedule,
)
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.sync import poll_active_connections
from dfx_pipelines_tests.platform.test_registry import salesforce


def test_polls_active_connections_with_a_partition_and_isolates_failures(platform: Platform) -> None:
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="owner@acme.test"))
    for slug in ("sf-ok", "sf-broken", "sf-new", "sf-gone"):
        platform.registry.add_connection(parse_connection(salesforce(id=slug)))
    platform.registry.set_status("sf-gone", ConnectionStatus.REMOVED)
    polled: list[str] = []

    def poll(connection, cursor):
        polled.append(connection.id)
        if connection.id == "sf-broken":
            raise ConnectorError("Salesforce query: HTTP 503 after 5 attempts")
        return [dg.RunRequest(run_key=f"{connection.id}:{cursor}")], (cursor or 0) + 1, "note"

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions(
            "salesforce_connections", ["sf-ok", "sf-broken", "sf-gone"]
        )  # sf-new's is not there yet
        previous = {"sf-ok": 4, "sf-broken": 7, "sf-gone": 9}
        with dg.build_sensor_context(instance=instance, cursor=json.dumps(previous)) as context:
            result = poll_active_connections(context, platform, "salesforce", poll)

    assert sorted(polled) == ["sf-broken", "sf-ok"]  # not the one without a partition, never the removed one
    assert [r.run_key for r in result.run_requests] == ["sf-ok:4"]  # the failure did not stop sf-ok
    # sf-ok advanced, sf-broken kept its cursor for the next tick, sf-gone's cursor is dropped.
    assert json.loads(result.cursor) == {"sf-ok": 5, "sf-broken": 7}


def test_a_quiet_tick_says_why_it_skipped(platform: Platform) -> None:
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="owner@acme.test"))
    platform.registry.add_connection(parse_connection(salesforce(id="sf-new")))
    with dg.instance_for_test() as instance, dg.build_sensor_context(instance=instance) as context:
        result = poll_active_connections(context, platform, "salesforce", lambda connection, cursor: ([], cursor, None))
    assert result.run_requests == [] and result.skip_reason.skip_message == "sf-new: waiting for its partition"


def _restrict(platform: Platform, email: str) -> None:
    from dfx_pipelines.lifecycle.subject_data import record_request, restrict_subject

    request = record_request(platform.engine, "restriction", "gdpr", email)
    restrict_subject(platform, email, request.id, "restriction")


def test_a_restricted_workspace_is_neither_polled_nor_scheduled_but_keeps_its_cursor(platform: Platform) -> None:
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="Owner@Acme.test"))
    platform.registry.upsert_workspace(Workspace(id="beta", name="Beta", owner_email="owner@beta.test"))
    platform.registry.add_connection(parse_connection(salesforce(id="sf-acme")))
    platform.registry.add_connection(parse_connection(salesforce(id="sf-beta", workspace_id="beta")))
    _restrict(platform, "owner@acme.test")  # the owner asked for restriction: acme's data is not processed
    polled: list[str] = []

    def poll(connection, cursor):
        polled.append(connection.id)
        return [], (cursor or 0) + 1, None

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("salesforce_connections", ["sf-acme", "sf-beta"])
        with dg.build_sensor_context(instance=instance, cursor=json.dumps({"sf-acme": 3, "sf-beta": 3})) as context:
            result = poll_active_connections(context, platform, "salesforce", poll)
        assert polled == ["sf-beta"]
        assert json.loads(result.cursor) == {"sf-acme": 3, "sf-beta": 4}  # acme resumes from 3 once lifted
        assert "sf-acme: processing restricted" in result.skip_reason.skip_message

        snapshot_schedule, daily_schedule = (
            salesforce_nightly_snapshot_schedule,
            salesforce_nightly_daily_schedule,
        )  # built by nightly_schedules
        resources = {
            "platform": PlatformResource(
                home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
            )
        }
        for schedule in (snapshot_schedule, daily_schedule):
            context = dg.build_schedule_context(
                instance=instance,
                resources=resources,
                scheduled_execution_time=datetime(2026, 11, 26, 2, 15, tzinfo=UTC),
            )
            assert [r.tags["dfx/connection"] for r in schedule(context)] == ["sf-beta"]
