"""The change-sensor loop every connector shares: which connections are polled, what a failing poll
does to the others, and which cursors survive a tick."""

import json

import dagster as dg

from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.sync import poll_active_connections
from dfx_pipelines_tests.platform.test_registry import salesforce


def test_polls_active_connections_with_a_partition_and_isolates_failures(platform: Platform) -> None:
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="owner@acme.test"))
    for slug in ("sf-ok", "sf-broken", "sf-new", "sf-gone"):
        platform.registry.add_connection(parse_connection(salesforce(id=slug)))
    platform.registry.set_status("sf-gone", ConnectionStatus.REMOVED)
    polled: list[str] = []

    def poll(connection, cursor):  # noqa: ANN001, ANN202
        polled.append(connection.id)
        if connection.id == "sf-broken":
            raise ConnectorError("Salesforce query: HTTP 503 after 5 attempts")
        return [dg.RunRequest(run_key=f"{connection.id}:{cursor}")], (cursor or 0) + 1, "note"

    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("salesforce_connections", ["sf-ok", "sf-broken", "sf-gone"])  # sf-new's is not there yet
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
