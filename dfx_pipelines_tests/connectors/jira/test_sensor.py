"""The incremental sync sensor against two live sites: a first full resync, then runs requested only for
the connection, metrics and days a change in a selected project touches; a revoked connection is never
polled again. And the nightly schedules request a full recompute per active connection."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dfx_pipelines.connectors.jira.sensors import (
    jira_nightly_daily_schedule,
    jira_nightly_snapshot_schedule,
    jira_sync_sensor,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import ConnectionStatus, Workspace
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sandbox import SandboxCA

from .conftest import connect_cloud, connect_datacenter, make_sandbox, resource_for

TODAY = "2025-06-02"  # the sandbox sites' day


def keys(request: dg.RunRequest) -> set[str]:
    return {key.path[-1] for key in request.asset_selection or ()}


def test_sensor_requests_runs_only_for_changed_projects(platform, workspace: Workspace, dagster_instance) -> None:
    ca = SandboxCA()
    with make_sandbox("cloud", ca=ca) as cloud, make_sandbox("datacenter", ca=ca) as datacenter:
        for site in (cloud.site, datacenter.site):
            site.advance(timedelta(hours=1))  # nothing generated changed in the last lookback window
        connect_cloud(
            platform, cloud, config={"id": "jira-a", "selection": {"projects": ["ALPHA", "OPS"], "boards": [1]}}
        )
        connect_datacenter(
            platform, datacenter, config={"id": "jira-b", "selection": {"projects": ["BETA"], "boards": [2]}}
        )
        sync_partitions(dagster_instance, platform.registry, ["jira"])
        resources = {"platform": PlatformResource(), "jira": resource_for(cloud)}
        cursor: list[str | None] = [None]

        def tick() -> list[dg.RunRequest]:
            with dg.build_sensor_context(instance=dagster_instance, cursor=cursor[0], resources=resources) as context:
                result = jira_sync_sensor(context)
            cursor[0] = result.cursor
            return result.run_requests or []

        first = tick()
        assert sorted((r.job_name, r.tags["dfx/connection"], r.tags["dfx/sync"]) for r in first) == [
            ("jira_daily_job", "jira-a", "initial"), ("jira_daily_job", "jira-b", "initial"),
            ("jira_snapshot_job", "jira-a", "initial"), ("jira_snapshot_job", "jira-b", "initial"),
        ]  # fmt: skip
        daily_a = next(r for r in first if r.job_name == "jira_daily_job" and r.tags["dfx/connection"] == "jira-a")
        assert daily_a.tags["dagster/asset_partition_range_end"] == f"jira-a|{TODAY}"
        assert tick() == []  # nothing changed

        cloud.site.advance(timedelta(minutes=10))
        cloud.site.update_issue(
            next(cloud.site.key_of(r) for r in cloud.site.issues_in_projects("ALPHA") if r.status_id == "10000"),
            status="In Progress",
        )
        changed = tick()
        assert [r.tags["dfx/connection"] for r in changed] == ["jira-a", "jira-a"]
        snapshot, daily = changed
        assert snapshot.partition_key == "jira-a" and keys(snapshot) == {
            "issue_count",
            "cycle_time_days",
            "sprint_velocity",
        }  # no SLA: OPS unchanged
        assert daily.partition_key == dg.MultiPartitionKey({"connection": "jira-a", "date": TODAY})
        assert keys(daily) == {"created_vs_resolved", "throughput", "wip", "worklog_hours"}
        assert len({r.run_key for r in first + changed}) == 6
        # The lookback reads the same change again on the next tick: same run keys, so Dagster runs it once.
        cloud.site.advance(timedelta(minutes=20))
        assert [r.run_key for r in tick()] == [r.run_key for r in changed]

        cloud.site.create_issue("OPS", issuetype="Service Request")
        snapshot, daily = tick()
        assert keys(snapshot) == {"issue_count", "sla_status"} and keys(daily) == {
            "created_vs_resolved",
            "worklog_hours",
        }

        # A revoked connection is not polled: no request reaches its site, and its cursor is dropped.
        platform.registry.set_status("jira-b", ConnectionStatus.REVOKED)
        datacenter.site.advance(timedelta(minutes=10))
        datacenter.site.update_issue(
            datacenter.site.key_of(datacenter.site.issues_in_projects("BETA")[0]), status="Done"
        )
        before = len(datacenter.requests)
        assert {r.tags["dfx/connection"] for r in tick()} == {"jira-a"}  # the OPS issue, re-read within the lookback
        assert datacenter.requests[before:] == [] and "jira-b" not in cursor[0]


def test_nightly_schedules_recompute_every_active_connection(platform, workspace: Workspace, dagster_instance) -> None:
    with make_sandbox("cloud") as cloud:
        connect_cloud(platform, cloud)
        sync_partitions(dagster_instance, platform.registry, ["jira"])
        when = datetime.now(UTC).replace(hour=2, minute=30)
        with dg.build_schedule_context(
            instance=dagster_instance, scheduled_execution_time=when, resources={"platform": PlatformResource()}
        ) as context:
            [snapshot] = jira_nightly_snapshot_schedule(context)
            [daily] = jira_nightly_daily_schedule(context)
        assert snapshot.partition_key == "jira-acme" and snapshot.tags["dfx/sync"] == "nightly"
        first = date.fromisoformat(daily.tags["dagster/asset_partition_range_start"].split("|")[1])
        assert (when.date() - first).days == 89  # settings.history_days = 90
