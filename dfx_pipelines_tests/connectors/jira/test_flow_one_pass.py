"""Cycle time, throughput and WIP from one pass over each board's issues and status changelogs equal each
metric computed alone the way it used to be (its own search, its own changelogs, its own reducer), on
Cloud and Data Center, for any subset and any range; a Dagster run of throughput + WIP fetches each board's
changelogs once; and a range run costs the same searches as one day and stores the values of day-by-day
runs."""

from datetime import date, timedelta

import dagster as dg
import pytest

from dfx_pipelines.connectors.jira import compute, metrics, query
from dfx_pipelines.connectors.jira.client import JiraClient
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.registry import Connection, Workspace

from . import expected
from .conftest import Materializer, connect_cloud, connect_datacenter, make_sandbox, range_tags, resource_for, stored

LAST = date(2025, 6, 2)  # the sandbox site's clock (generate.DEFAULT_NOW)
RANGES = [
    (LAST - timedelta(days=6), LAST),  # a week up to today
    (LAST - timedelta(days=119), LAST),  # four months
    (date(2024, 11, 1), date(2024, 11, 30)),  # a month long past: most done issues are left out of the search
]
SUBSETS = [
    ("cycle_time_days", "throughput", "wip"),
    ("throughput", "wip"),
    ("cycle_time_days",),
    ("throughput",),
    ("wip",),
]


def per_metric(client: JiraClient, connection: Connection, name: str, first: date, last: date) -> list[MetricRow]:
    """The metric computed alone, as before the one pass: per board its own search (cycle time: every issue;
    throughput: updated since `first`; WIP: created by `last`), the flow plan's fields, its own reducer."""
    conditions = {
        "cycle_time_days": (),
        "throughput": (query.updated_since(first),),
        "wip": (query.created_before(last + timedelta(days=1)),),
    }[name]
    rows = []
    for board_id, project in compute.boards_of(connection):
        workflow = compute.board_workflow(client, board_id)
        records = metrics.cycle_times(
            (
                metrics.issue_status_history(issue, histories=page.histories.get(str(issue["id"])))
                for page in client.search(query.issues_jql([project], *conditions), query.flow_plan(connection))
                for issue in page.issues
            ),
            workflow,
        )
        if name == "cycle_time_days":
            board_rows = metrics.cycle_time_rows(records)
        elif name == "throughput":
            board_rows = metrics.throughput_rows(records, first, last)
        else:
            board_rows = metrics.wip_rows(records, first, last)
        rows += compute._with_board(board_rows, board_id)
    return rows


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_one_pass_equals_each_metric_computed_alone(platform, workspace: Workspace, flavour: str) -> None:
    with make_sandbox(flavour) as sandbox:
        connection = (connect_cloud if flavour == "cloud" else connect_datacenter)(platform, sandbox)
        resource = resource_for(sandbox)
        narrowed = False
        for first, last in RANGES:
            alone = {
                name: per_metric(resource.client(platform, connection), connection, name, first, last)
                for name in compute.FLOW
            }
            assert alone["cycle_time_days"] and sum(r.value or 0 for r in alone["wip"]) > 0
            for subset in SUBSETS:
                client = resource.client(platform, connection)
                together = compute.flow_metrics(client, connection, first, last, subset)
                assert set(together) == set(subset)
                for name in subset:
                    assert together[name].rows == alone[name], (flavour, first, last, subset, name)
                if subset == ("throughput", "wip"):
                    # Independently of the connector: the site's own records give the same days.
                    days = list(metrics.days_in_range(first, last))
                    for board, project in ((1, "ALPHA"), (2, "BETA")):
                        done, in_progress = expected.throughput_and_wip(sandbox.site, project, days)
                        mine = {
                            (r.metric, r.period): r.value
                            for r in together["throughput"].rows + together["wip"].rows
                            if ("board_id", str(board)) in r.dimensions
                        }
                        assert {d: mine[("throughput", d)] for d in days} == done
                        assert {d: mine[("wip", d)] for d in days} == in_progress
                    # Done issues not updated since `first` are not read at all.
                    read = client.records_read
                    every = sum(
                        len(page.issues)
                        for page in client.search(query.issues_jql(["ALPHA", "BETA"]), query.key_plan(connection))
                    )
                    narrowed |= read < every
        assert narrowed, "some range left done, untouched issues out of the search"


def bulkfetch_ids(sandbox, since: int) -> list[str]:
    """Issue ids of every changelog bulkfetch that starts a batch (a continuation page repeats its ids)."""
    return [
        str(issue_id)
        for request in sandbox.requests[since:]
        if request.path.endswith("/changelog/bulkfetch") and not (request.json() or {}).get("nextPageToken")
        for issue_id in request.json()["issueIdsOrKeys"]
    ]


def first_searches(sandbox, since: int) -> list[str]:
    """The JQL of every search that starts a query (not a next page)."""
    return [
        request.json()["jql"]
        for request in sandbox.requests[since:]
        if request.path.endswith("/search/jql") and not (request.json() or {}).get("nextPageToken")
    ]


def test_a_run_of_throughput_and_wip_reads_each_boards_changelogs_once(
    platform, workspace: Workspace, dagster_instance
) -> None:
    first = LAST - timedelta(days=29)
    with make_sandbox("cloud") as sandbox:
        connection = connect_cloud(platform, sandbox)
        materialize = Materializer(platform, resource_for(sandbox), dagster_instance)
        since = len(sandbox.requests)
        result = materialize(["throughput", "wip"], tags=range_tags(connection.id, first, LAST))
        ids = bulkfetch_ids(sandbox, since)
        assert ids and len(ids) == len(set(ids)), "an issue's changelog was fetched twice in one run"
        searches = first_searches(sandbox, since)
        assert len(searches) == 2 and {'project in ("ALPHA")', 'project in ("BETA")'} == {
            jql.split(" AND ")[0] for jql in searches
        }, searches
        configurations = [r for r in sandbox.requests[since:] if r.path.endswith("/configuration")]
        assert len(configurations) == 2  # one workflow read per board

        # Values: what each metric computes alone.
        client = resource_for(sandbox).client(platform, connection)
        for name in ("throughput", "wip"):
            want = per_metric(client, connection, name, first, LAST)
            values = stored(platform, connection.id, name)
            assert values == {(r.period, r.measure, r.dimensions): r.value for r in want}
        # Usage is counted once (on throughput's first day); WIP's batches say where.
        metadata = {
            (m.asset_key.path[-1], str(m.partition)): m.metadata
            for m in result.get_asset_materialization_events()
            for m in [m.materialization]
        }
        assert metadata[("throughput", f"{connection.id}|{first}")]["api_calls"].value > 0
        assert "api_calls" not in metadata[("wip", f"{connection.id}|{first}")]
        assert (
            metadata[("wip", f"{connection.id}|{first}")]["read_counted_on"].value
            == f"throughput {connection.id}|{first}"
        )

        # Subsetted to one of the two, it still runs, in one pass.
        since = len(sandbox.requests)
        materialize(["wip"], tags=range_tags(connection.id, first, LAST))
        assert len(first_searches(sandbox, since)) == 2
        ids = bulkfetch_ids(sandbox, since)
        assert ids and len(ids) == len(set(ids))


DAILY = ["created_vs_resolved", "worklog_hours", "throughput", "wip"]


def test_a_range_run_costs_the_searches_of_one_day_and_equals_day_by_day_runs(
    platform, workspace: Workspace, dagster_instance
) -> None:
    days = [LAST - timedelta(days=n) for n in range(4, -1, -1)]
    with make_sandbox("cloud") as sandbox:
        connection = connect_cloud(platform, sandbox)
        materialize = Materializer(platform, resource_for(sandbox), dagster_instance)
        per_day, searches_per_day = {}, []
        for day in days:
            since = len(sandbox.requests)
            materialize(DAILY, partition_key=dg.MultiPartitionKey({"connection": connection.id, "date": str(day)}))
            searches_per_day.append(len(first_searches(sandbox, since)))
        for name in DAILY:
            per_day[name] = stored(platform, connection.id, name)
        since = len(sandbox.requests)
        ranged_run = materialize(DAILY, tags=range_tags(connection.id, days[0], days[-1]))
        searches = first_searches(sandbox, since)
        # One search per metric and project or board whatever the number of days (created vs resolved;
        # worklogs, one per selected project so the project field is not read; one per board for
        # throughput + WIP together): no per-day query.
        assert len(searches) == 6 and set(searches_per_day) == {6}
        for name in DAILY:
            ranged = stored(platform, connection.id, name)
            assert ranged == per_day[name], name
            # Every day of the range gets its batch from the range run, an empty day an empty one.
            written = {
                b["partition_key"]
                for b in platform.metric_store.batches(connection.id)
                if b["metric"] == name and b["run_id"] == ranged_run.run_id
            }
            assert written == {f"{connection.id}|{day}" for day in days}, name


@pytest.mark.parametrize("hostile", ['10003") OR project in ("SECRET', "10003 OR 1=1", "١٠٠٠٣", "", "-1"])
def test_status_ids_in_jql_are_ascii_digits_or_refused(hostile: str) -> None:
    assert query.status_not_in(["10004", "10003", "9"]) == "status not in (9, 10003, 10004)"
    with pytest.raises(ConfigError):
        query.status_not_in(["10003", hostile])
