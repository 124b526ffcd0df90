"""Jira metrics materialized through the real assets, client, OAuth connection and Cloud sandbox equal an
independent computation over the sandbox site's generated records (`expected.py`), including an issue
whose changelog is longer than search would embed."""

from datetime import date, timedelta
from types import SimpleNamespace

import dagster as dg
import pytest

from dfx_pipelines.connectors.jira.compute import METRICS
from dfx_pipelines.platform.db import dispose_engine
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings

from . import expected
from .conftest import Materializer, connect_cloud, make_sandbox, range_tags, resource_for, stored

LAST = date(2025, 6, 2)  # the sandbox site's clock (generate.DEFAULT_NOW)
FIRST = LAST - timedelta(days=6)  # each daily partition costs Dagster ~0.1 s per asset: a week is enough
DAYS = [FIRST + timedelta(days=n) for n in range(7)]
SNAPSHOT = [name for name, metric in METRICS.items() if not metric.daily]
DAILY = [name for name, metric in METRICS.items() if metric.daily]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One connection, every metric materialized once (snapshot + a 7-day range); tests read the store."""
    tmp = tmp_path_factory.mktemp("jira_values")
    sandbox = make_sandbox("cloud")
    (tmp / "dagster").mkdir()
    # The run's PlatformResource reads its vault and master key from the environment, as in production.
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test(temp_dir=str(tmp / "dagster")) as instance:
        env.setenv("DFX_HOME", str(tmp / "dfx"))
        platform = Platform(Settings.from_env())
        platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
        connection = connect_cloud(platform, sandbox)
        materialize = Materializer(platform, resource_for(sandbox), instance)
        snapshot = materialize(SNAPSHOT, partition_key=connection.id)
        daily = materialize(DAILY, tags=range_tags(connection.id, FIRST, LAST))
    yield SimpleNamespace(
        platform=platform, sandbox=sandbox, site=sandbox.site, connection=connection, snapshot=snapshot, daily=daily
    )
    sandbox.stop()
    dispose_engine(platform.settings.metrics_db_url)


def test_issue_counts_by_every_dimension(world) -> None:
    values = stored(world.platform, "jira-acme", "issue_count")
    want = expected.issue_counts(world.site, ("ALPHA", "BETA", "OPS"))
    assert want[()] > 200
    for dims, count in want.items():
        assert values[(None, "issues", (dims,) if dims else ())] == count, dims
    assert len(values) == len(want), "no dimension value the site does not have"
    assert any(dims and dims[0] == "team" and dims[1] for dims in want)  # the mapped custom field is a dimension
    # What a person sees: what was read, and the result as a table.
    metadata = world.snapshot.asset_materializations_for_node("jira__issue_count")[0].metadata
    assert (
        metadata["api_calls"].value >= 1
        and metadata["records_read"].value == want[()]
        and metadata["bytes_read"].value > 0
    )
    assert (
        "| now | issues | (total) |" in metadata["result"].value
        # one search per project for the dimensions read from issues, JQL counts for the others
        and all(f'project in ("{key}") ORDER BY' in metadata["jql"].value for key in ("ALPHA", "BETA", "OPS"))
        and 'project in ("ALPHA", "BETA", "OPS") AND (issuetype in (' in metadata["jql"].value
    )


def test_created_vs_resolved_per_day(world) -> None:
    values = stored(world.platform, "jira-acme", "created_vs_resolved")
    records = expected.issues(world.site, "ALPHA", "BETA", "OPS")
    for day in DAYS:
        assert values[(day, "created", ())] == sum(expected.day(r.created) == day for r in records)
        assert values[(day, "resolved", ())] == sum(
            r.resolved is not None and expected.day(r.resolved) == day for r in records
        )
    assert sum(values[(d, "resolved", ())] for d in DAYS) > 0
    assert len(world.platform.metric_store.batches("jira-acme")) >= len(DAYS)  # one batch per daily partition


def test_cycle_time_uses_the_full_changelog(world) -> None:
    site = world.site
    long_issues = [r for r in expected.issues(site, "ALPHA") if len(site.histories(r)) > 40]
    assert long_issues, "the site has an issue whose changelog search would truncate"
    assert any(expected.cycle_dates(site, r) != expected.cycle_dates(site, r, last=40) for r in long_issues), (
        "truncating the changelog would change a cycle time: the check below is sensitive to it"
    )
    values = stored(world.platform, "jira-acme", "cycle_time_days")
    for board, project in ((1, "ALPHA"), (2, "BETA")):
        want = expected.cycle_time_summary(site, project)
        assert want[""]["count"] >= 10
        for issue_type, summary in want.items():
            dims = tuple(sorted((("board_id", str(board)),) + ((("issue_type", issue_type),) if issue_type else ())))
            for measure, value in summary.items():
                assert values[(None, measure, dims)] == pytest.approx(value), (board, issue_type, measure)
    assert world.sandbox.app.calls["POST api/changelog/bulkfetch"] >= 2
    # Cycle time is computed with sprint velocity in one multi-asset (`jira__board_snapshots`).
    metadata = next(
        m.metadata
        for m in world.snapshot.asset_materializations_for_node("jira__board_snapshots")
        if m.asset_key.path[-1] == "cycle_time_days"
    )
    assert "committed: In Progress, done: Done" in metadata["board 1 stages"].value


def test_throughput_and_wip_per_day_and_board(world) -> None:
    throughput, wip = stored(world.platform, "jira-acme", "throughput"), stored(world.platform, "jira-acme", "wip")
    for board, project in ((1, "ALPHA"), (2, "BETA")):
        done, in_progress = expected.throughput_and_wip(world.site, project, DAYS)
        dims = (("board_id", str(board)),)
        assert {d: throughput[(d, "completed_issues", dims)] for d in DAYS} == done
        assert {d: wip[(d, "issues", dims)] for d in DAYS} == in_progress
        assert sum(in_progress.values()) > 0


def test_worklog_hours_by_project_component_and_epic(world) -> None:
    values = stored(world.platform, "jira-acme", "worklog_hours")
    want = expected.worklog_hours(world.site, ("ALPHA", "BETA", "OPS"), DAYS)
    assert want, "some work was logged in the range"
    assert {(d, m, dims): v for (d, m, dims), v in values.items()} == {
        (d, "hours", dims): pytest.approx(v) for (d, dims), v in want.items()
    }


def test_sla_status_per_sla_name(world) -> None:
    values = stored(world.platform, "jira-acme", "sla_status")
    want = expected.sla_tallies(world.site, "OPS")
    assert set(want) == {"Time to first response", "Time to resolution"}
    for name, tally in want.items():
        dims = (("sla", name),)
        for measure in ("met", "breached", "ongoing", "ongoing_breached"):
            assert values[(None, measure, dims)] == tally[measure], (name, measure)
        assert values[(None, "met_rate", dims)] == pytest.approx(tally["met"] / (tally["met"] + tally["breached"]))


def test_sprint_velocity_committed_and_completed_points(world) -> None:
    values = stored(world.platform, "jira-acme", "sprint_velocity")
    by_sprint = {dict(dims)["sprint_id"]: {} for (_, _, dims) in values}
    for (_, measure, dims), value in values.items():
        by_sprint[dict(dims)["sprint_id"]][measure] = value
    want = expected.velocity(world.site, 1)
    assert len(want) >= 20 and sum(completed for _, completed in want.values()) > 0
    for sprint_id, (committed, completed) in want.items():
        assert by_sprint[sprint_id]["committed_points"] == pytest.approx(committed), sprint_id
        assert by_sprint[sprint_id]["completed_points"] == pytest.approx(completed), sprint_id
    assert set(by_sprint) == set(want), "only board 1 is scrum: the kanban board has no sprints"


def test_each_day_of_a_range_run_shows_its_own_rows(world) -> None:
    batches = {
        b["partition_key"]: b
        for b in world.platform.metric_store.batches("jira-acme")
        if b["metric"] == "created_vs_resolved"
    }
    events = {
        str(m.partition): m.metadata for m in world.daily.asset_materializations_for_node("jira__created_vs_resolved")
    }
    first = f"jira-acme|{FIRST}"
    assert sorted(events) == sorted(batches) and len(events) > 1
    for key, metadata in events.items():
        day = key.partition("|")[2]
        assert metadata["dagster/row_count"].value == batches[key]["row_count"]
        assert all(f"| {day} |" in line for line in metadata["result"].value.splitlines()[2:])  # that day's rows only
        if key == first:  # one pass read the whole range: counted on its first day, as in the store
            assert (
                metadata["api_calls"].value == batches[key]["api_calls"]
                and metadata["records_read"].value == batches[key]["records_read"]
            )
        else:
            assert metadata["read_counted_on"].value == first and "api_calls" not in metadata
