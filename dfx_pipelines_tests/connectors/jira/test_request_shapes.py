"""What each Jira metric asks for, so a regression in bytes fails here: only the fields a metric reads,
counts where a count does, status changelogs once per board and snapshot run, and searches narrowed to the
issues that can move a value (a worklog started in the range, a status changed in it) — with the values
unchanged (each path equals the metric computed from every issue's fields)."""

from datetime import UTC, datetime, timedelta

import pytest

from dfx_pipelines.connectors.jira import compute, metrics, query
from dfx_pipelines.connectors.jira.client import JiraClient
from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.jql_eval import search
from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError
from dfx_pipelines.platform.registry import Workspace

from .conftest import Materializer, connect_cloud, connect_datacenter, make_sandbox, resource_for, stored
from .test_flow_one_pass import LAST, bulkfetch_ids, first_searches

EPIC_LINK, TEAM = "customfield_10014", "customfield_10001"


def searches_since(sandbox, since: int) -> list[dict]:
    return [r.json() for r in sandbox.requests[since:] if r.path.endswith(("/search/jql", "/rest/api/2/search"))]


def every_field_read(client: JiraClient, connection, projects) -> list[metrics.IssueAttributes]:
    """The old way: every dimension read from the issues' own fields."""
    plan = query.count_plan(connection)
    return [
        metrics.issue_attributes(
            issue,
            dimension_fields=query.dimension_fields(connection),
            epic_link_field_id=query.custom_field(connection, query.EPIC_LINK_PLUGIN),
        )
        for page in client.search(query.issues_jql(projects), query.FieldPlan((*plan.fields, "project")))
        for issue in page.issues
    ]


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_issue_count_counts_listed_dimensions_by_jql_and_reads_only_the_others(
    platform, workspace: Workspace, flavour: str
) -> None:
    with make_sandbox(flavour) as sandbox:
        connection = (connect_cloud if flavour == "cloud" else connect_datacenter)(platform, sandbox)
        resource = resource_for(sandbox)
        since = len(sandbox.requests)
        client = resource.client(platform, connection)
        result = compute.issue_count(client, connection, None, None)
        assert result.notes["counted_by"] == "JQL counts and issue fields"
        bodies = searches_since(sandbox, since)
        read = resource.client(platform, connection)
        want = metrics.issue_count_rows(every_field_read(read, connection, ["ALPHA", "BETA", "OPS"]))
        assert result.rows == want
        counts = [b for b in bodies if b["fields"] == ["id"]]
        reads = [b for b in bodies if b["fields"] != ["id"]]
        # The issues' own fields: only what no API lists; never type, status, components or project.
        assert reads and {tuple(b["fields"]) for b in reads} <= {
            ("priority", "parent", EPIC_LINK, TEAM),
            ("priority", "parent", TEAM),
        }
        assert {b["jql"].split(" ORDER BY")[0] for b in reads if "nextPageToken" not in b} == {
            'project in ("ALPHA")',
            'project in ("BETA")',
            'project in ("OPS")',
        }
        assert any("issuetype in (" in b["jql"] for b in counts) and any(
            "statusCategory in (" in b["jql"] for b in counts
        )
        assert any("component is EMPTY" in b["jql"] for b in counts)
        if flavour == "cloud":
            assert all(b["maxResults"] == 5000 for b in counts)  # ids only: the largest page, ~20 bytes an issue
            # Far fewer bytes than reading every dimension from the issues.
            assert client.bytes_read < 0.7 * read.bytes_read
        else:
            assert all(b["maxResults"] == 0 for b in counts)  # Data Center states the total: one call per count


def test_issue_count_reads_every_field_when_the_jql_counts_do_not_add_up(platform, workspace: Workspace) -> None:
    with make_sandbox("cloud") as sandbox:
        connection = connect_cloud(platform, sandbox)
        resource = resource_for(sandbox)
        client = resource.client(platform, connection)

        # An issue created between the issues' search and the JQL counts: the counts no longer add up.
        def created_meanwhile(response, *args, **kwargs):
            if response.request.path_url.endswith("/issuetype") and not created:
                created.append(sandbox.site.create_issue("ALPHA", issuetype="Task"))

        created: list = []
        client.session.hooks["response"].append(created_meanwhile)
        result = compute.issue_count(client, connection, None, None)
        assert created and result.notes["counted_by"].startswith("issue fields")
        want = metrics.issue_count_rows(
            every_field_read(resource.client(platform, connection), connection, ["ALPHA", "BETA", "OPS"])
        )
        assert result.rows == want  # the issue created meanwhile is counted in every dimension


def test_daily_searches_ask_only_for_what_they_read(platform, workspace: Workspace) -> None:
    first = LAST - timedelta(days=29)
    with make_sandbox("cloud") as sandbox:
        connection = connect_cloud(platform, sandbox)
        client = resource_for(sandbox).client(platform, connection)
        since = len(sandbox.requests)
        compute.created_vs_resolved(client, connection, first, LAST)
        assert {tuple(b["fields"]) for b in searches_since(sandbox, since)} == {("created", "resolutiondate")}

        since = len(sandbox.requests)
        compute.worklog_hours(client, connection, first, LAST)
        bodies = searches_since(sandbox, since)
        assert {tuple(b["fields"]) for b in bodies} == {("created", "components", "parent", EPIC_LINK, "worklog")}
        assert all("worklogDate >= " in b["jql"] and "worklogDate < " in b["jql"] for b in bodies)

        since = len(sandbox.requests)
        compute.flow_metrics(client, connection, first, LAST, ["throughput", "wip"])
        jqls = first_searches(sandbox, since)
        assert len(jqls) == 2 and all("status CHANGED AFTER" in jql and "updated" not in jql for jql in jqls)
        assert {tuple(r.json()["fieldIds"]) for r in sandbox.requests[since:] if r.path.endswith("bulkfetch")} == {
            ("status",)
        }


def test_a_snapshot_run_reads_each_scrum_boards_issues_and_changelogs_once(
    platform, workspace: Workspace, dagster_instance
) -> None:
    with make_sandbox("cloud") as sandbox:
        connection = connect_cloud(platform, sandbox)
        resource = resource_for(sandbox)
        materialize = Materializer(platform, resource, dagster_instance)
        since = len(sandbox.requests)
        assert materialize(["cycle_time_days", "sprint_velocity"], partition_key=connection.id).success
        searches = first_searches(sandbox, since)
        # ALPHA (scrum board 1) once for both metrics; BETA (kanban) for cycle time, without the issues
        # currently before its done column.
        assert len(searches) == 2, searches
        alpha = [jql for jql in searches if jql.startswith('project in ("ALPHA")')]
        assert alpha == ['project in ("ALPHA") ORDER BY created ASC']
        assert any(jql.startswith('project in ("BETA") AND (status not in (') for jql in searches)
        ids = bulkfetch_ids(sandbox, since)
        assert ids and len(ids) == len(set(ids)), "an issue's changelog was fetched twice in one run"

        # The values: each metric computed alone, from its own reads.
        for name, alone in (("cycle_time_days", compute.cycle_time), ("sprint_velocity", compute.sprint_velocity)):
            want = alone(resource.client(platform, connection), connection, None, None)
            assert stored(platform, connection.id, name) == {
                (r.period, r.measure, r.dimensions): r.value for r in want.rows
            }, name

        # Subsetted to one, it runs alone and reads only what that metric needs.
        since = len(sandbox.requests)
        assert materialize(["sprint_velocity"], partition_key=connection.id).success
        assert [jql.split(" ORDER BY")[0] for jql in first_searches(sandbox, since)] == ['project in ("ALPHA")']


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_board_snapshots_equal_each_metric_alone(platform, workspace: Workspace, flavour: str) -> None:
    with make_sandbox(flavour) as sandbox:
        connection = (connect_cloud if flavour == "cloud" else connect_datacenter)(platform, sandbox)
        resource = resource_for(sandbox)
        together = compute.board_snapshots(resource.client(platform, connection), connection)
        cycle = compute.cycle_time(resource.client(platform, connection), connection, None, None)
        velocity = compute.sprint_velocity(resource.client(platform, connection), connection, None, None)
        assert together["cycle_time_days"].rows == cycle.rows and cycle.rows
        assert together["sprint_velocity"].rows == velocity.rows and velocity.rows
        with pytest.raises(ValueError, match="board snapshots"):
            compute.board_snapshots(resource.client(platform, connection), connection, ["wip"])


def test_sandbox_worklog_date_and_status_changed_search_as_jira_does() -> None:
    with make_sandbox("cloud") as sandbox:
        site = sandbox.site
        moment = site.now_epoch - 20 * 86400
        text = '"' + datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%d %H:%M") + '"'
        alpha = [r for r in site.issues if catalog.PROJECTS[r.project].key == "ALPHA"]
        assert {r.num for r in search(site, f"project = ALPHA AND worklogDate >= {text}")} == {
            r.num for r in alpha if any(w.started >= int(moment // 60) * 60 for w in site.worklogs(r))
        }
        assert {r.num for r in search(site, "project = ALPHA AND worklogDate is EMPTY")} == {
            r.num for r in alpha if not site.worklogs(r)
        }
        changed = {r.num for r in search(site, f"project = ALPHA AND status CHANGED AFTER {text}")}
        assert changed == {
            r.num
            for r in alpha
            if any(h.at > int(moment // 60) * 60 and any(i[0] == "status" for i in h.items) for h in site.histories(r))
        }
        assert changed and changed < {r.num for r in search(site, f"project = ALPHA AND updated > {text}")}
        for refused in (
            "project = ALPHA AND status CHANGED BY currentUser()",
            "project = ALPHA AND summary CHANGED",
            "project = ALPHA AND worklogDate ~ x",
        ):
            with pytest.raises(JqlError):
                search(site, refused)
