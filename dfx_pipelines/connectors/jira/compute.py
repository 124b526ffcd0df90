"""Each Jira metric as one function: query the connection's selected projects/boards through `JiraClient`,
feed the pure reducers (`metrics`), return metric rows. Raw issue JSON lives only inside these loops.

`METRICS` lists them with what they read (`scope`), which the sensor uses to request runs only for the
metrics a changed project can affect. Dagster-free, so tests and benchmarks can call them directly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import date, timedelta
from typing import Any

from dfx_pipelines.connectors.jira import metrics, query
from dfx_pipelines.connectors.jira.client import IssuePage, JiraClient, reduced_sla
from dfx_pipelines.connectors.jira.metrics_counts import NO_VALUE
from dfx_pipelines.connectors.jira.selection import JiraSelection
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.registry import Connection

SCOPES = ("projects", "boards", "service_desk")


@dataclass(frozen=True)
class Result:
    rows: list[MetricRow]
    notes: dict[str, Any]  # shown as metadata: workflow stages, skipped boards, ...


Compute = Callable[[JiraClient, Connection, date | None, date | None], Result]


@dataclass(frozen=True)
class JiraMetric:
    name: str
    daily: bool
    scope: str  # which selected projects it reads: all, the selected boards' projects, service desks
    description: str
    compute: Compute


# ---------------------------------------------------------------- what a metric reads


def projects_of(connection: Connection, scope: str) -> list[str]:
    if scope == "projects":
        return list(connection.selection.narrowed(JiraSelection).projects)
    if scope == "boards":
        boards = connection.discovered.get("boards") or {}
        return sorted(
            {boards[str(b)]["project"] for b in connection.selection.narrowed(JiraSelection).boards if str(b) in boards}
        )
    projects = connection.discovered.get("projects") or {}
    return [
        key
        for key in connection.selection.narrowed(JiraSelection).projects
        if (projects.get(key) or {}).get("type") == "service_desk"
    ]


def boards_of(connection: Connection, board_type: str | None = None) -> list[tuple[int, str]]:
    """(board id, its project key) of the selected boards, optionally only scrum or kanban ones."""
    boards = connection.discovered.get("boards") or {}
    return [
        (int(b), boards[str(b)]["project"])
        for b in connection.selection.narrowed(JiraSelection).boards
        if str(b) in boards and (board_type is None or boards[str(b)]["type"] == board_type)
    ]


def _issues(client: JiraClient, jql: str, plan: query.FieldPlan) -> Iterator[tuple[dict[str, Any], list | None]]:
    for page in client.search(jql, plan):
        for issue in page.issues:
            yield issue, (page.histories.get(str(issue["id"])) if plan.changelog else None)


def _pages_by_project(
    client: JiraClient, projects: Iterable[str], plan: query.FieldPlan, *conditions: str
) -> Iterator[IssuePage]:
    """One search per project instead of one over all of them, so `project` need not be requested: each
    issue's project is the one its search named (Jira's project object, with its avatar URLs, is the
    largest field of an issue). The searches together return the same issues as one over every project."""
    for project in sorted(set(projects)):
        for page in client.search(query.issues_jql([project], *conditions), plan):
            for issue in page.issues:
                issue.setdefault("fields", {}).setdefault("project", {"key": project})
            yield page


def _attributes(client: JiraClient, connection: Connection) -> Iterator[metrics.IssueAttributes]:
    dims, epic_link = query.dimension_fields(connection), query.custom_field(connection, query.EPIC_LINK_PLUGIN)
    for page in _pages_by_project(
        client, connection.selection.narrowed(JiraSelection).projects, query.count_plan(connection)
    ):
        for issue in page.issues:
            yield metrics.issue_attributes(issue, dimension_fields=dims, epic_link_field_id=epic_link)


def _with_board(rows: list[MetricRow], board_id: int) -> list[MetricRow]:
    return [replace(row, dimensions=tuple(sorted(row.dimensions + (("board_id", str(board_id)),)))) for row in rows]


# ---------------------------------------------------------------- counts


def issue_count(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    """Issues now, per dimension value. The dimensions whose values Jira lists (issue type, status
    category, component) are counted by JQL, one id-only count per value (`JiraClient.count`: ~20
    bytes an issue); the others (priority, epic, mapped fields) and the total and per-project counts
    come from one search per project that asks for only those fields. Each issue has exactly one type
    and one status category, so each of those dimensions' counts must add up to the total; if either
    does not (an issue changed between the searches, or has a type the issue-type list does not show),
    every dimension is read from the issues instead (`counted_by: issue fields`)."""
    projects = sorted(set(connection.selection.narrowed(JiraSelection).projects))
    dims, epic_link = query.dimension_fields(connection), query.custom_field(connection, query.EPIC_LINK_PLUGIN)
    total, counts = 0, Counter[tuple[str, str]]()
    for page in _pages_by_project(client, projects, query.open_count_plan(connection)):
        for issue in page.issues:
            total += 1
            counts[("project", str(issue["fields"]["project"]["key"]))] += 1
            for name, values in metrics.open_dimension_values(
                issue, dimension_fields=dims, epic_link_field_id=epic_link
            ):
                counts.update((name, value) for value in values)
    counted = _jql_counts(client, projects, total)
    if counted is None:
        rows = metrics.issue_count_rows(_attributes(client, connection))
        return Result(rows, {"counted_by": "issue fields (the JQL counts did not add up)"})
    counts.update(counted)
    return Result(metrics.issue_count_rows_of(total, counts), {"counted_by": "JQL counts and issue fields"})


def _jql_counts(client: JiraClient, projects: list[str], total: int) -> Counter[tuple[str, str]] | None:
    """Issues per issue type (by name: several types may share one), status category (by key) and
    component (by name, per project; none: `NO_VALUE`), each counted by JQL. None when the types' or
    the categories' counts do not add up to `total`."""
    counts = Counter[tuple[str, str]]()
    types: dict[str, set[str]] = {}
    for issue_type in client.issue_types():
        types.setdefault(str(issue_type.get("name") or ""), set()).add(str(issue_type["id"]))
    categories: dict[str, set[str]] = {}
    for status in client.statuses():
        category = status.get("statusCategory") or {}
        categories.setdefault(str(category.get("key") or ""), set()).add(str(category["id"]))
    for dimension, field, values in (
        ("issue_type", "issuetype", types),
        ("status_category", "statusCategory", categories),
    ):
        found = 0
        for value, ids in sorted(values.items()):
            count = client.count(query.issues_jql(projects, query.ids_in(field, ids)))
            counts[(dimension, value)] += count
            found += count
        if found != total:
            return None
    for project in projects:
        for name in sorted({str(c["name"]) for c in client.components(project)}):
            counts[("component", name)] += client.count(query.issues_jql([project], query.component_is(name)))
    counts[("component", NO_VALUE)] += client.count(query.issues_jql(projects, query.component_is(None)))
    return counts


def created_vs_resolved(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    assert first is not None and last is not None
    jql = query.issues_jql(
        connection.selection.narrowed(JiraSelection).projects,
        query.created_or_resolved_between(first, last + timedelta(days=1)),
    )
    issues = (
        metrics.issue_attributes(issue) for issue, _ in _issues(client, jql, query.dates_plan(connection))
    )  # only `created` and `resolved` are read of these attributes: only those fields are requested
    return Result(metrics.created_vs_resolved_rows(issues, first, last), {})


def worklog_hours(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    """Work started on each day. Only issues of selected projects are read for worklogs, found by
    `updated >= first day` (logging work updates the issue) and a worklog started in the range
    (`worklogDate`), one search per project, so no other project's worklog is read.
    Search embeds each issue's worklogs, reduced as each page arrives; only an issue with more than
    search embeds is asked for its own, after the search."""
    assert first is not None and last is not None
    epic_link = query.custom_field(connection, query.EPIC_LINK_PLUGIN)
    # The reducer looks an issue up as it takes each worklog, so `attributes` holds only the issues it
    # may still ask about (this page's, and those waiting for their own call), not every issue found.
    attributes: dict[str, metrics.IssueAttributes] = {}
    seen: set[str] = set()

    def worklogs() -> Iterator[dict[str, Any]]:
        incomplete = []
        # Logging work updates the issue, and only issues with a worklog started in the range can add
        # hours: an issue updated for any other reason is not read (nor its embedded worklogs).
        conditions = (query.updated_since(first), query.worklog_started_between(first, last))
        plan = query.worklog_plan(connection)
        for page in _pages_by_project(client, connection.selection.narrowed(JiraSelection).projects, plan, *conditions):
            done = []
            for issue in page.issues:
                issue_attributes = metrics.issue_attributes(issue, epic_link_field_id=epic_link)
                issue_id = issue_attributes.id
                if issue_id in seen:  # returned twice while paging (it changed meanwhile): count it once
                    continue
                seen.add(issue_id)
                attributes[issue_id] = issue_attributes
                embedded = page.worklogs.get(issue_id)
                if embedded is None:
                    incomplete.append(issue_id)
                else:
                    done.append(issue_id)
                    yield from _started_between(embedded, first, last)
            for issue_id in done:
                del attributes[issue_id]
        for issue_id in incomplete:
            yield from _started_between(client.issue_worklogs(issue_id), first, last)

    rows = metrics.worklog_hours_rows(worklogs(), attributes)
    return Result(rows, {"issues_checked": len(seen)})


def _started_between(worklogs: Iterable[dict[str, Any]], first: date, last: date) -> list[dict[str, Any]]:
    return [w for w in worklogs if first <= metrics.utc_day(metrics.parse_jira_timestamp(w["started"])) <= last]


def sla_status(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    """SLA cycles of every request of the selected service desks. When the connection maps SLA fields
    (`sla_...` targets → `sd-sla-field` custom fields), ONE search reads exactly those fields, a page at a
    time, each SLA reduced on arrival to its name and breach flags (`sla_source: search-fields`); the
    values equal the per-request path's for those SLAs. Otherwise each request costs one
    `/rest/servicedeskapi/request/{key}/sla` call (`sla_source: per-request`)."""
    projects = projects_of(connection, "service_desk")
    if not projects:
        return Result([], {"status": "no service-desk project selected"})
    jql = query.issues_jql(projects)
    sla_fields = query.sla_fields(connection)

    def per_request() -> Iterator[dict[str, Any]]:
        for issue, _ in _issues(client, jql, query.key_plan(connection)):
            yield from client.request_slas(str(issue["id"]))

    def from_search() -> Iterator[dict[str, Any]]:
        seen: set[str] = set()
        for issue, _ in _issues(client, jql, query.sla_plan(connection)):
            fields = issue.get("fields") or {}
            if str(issue["id"]) in seen:  # returned twice while paging (it changed meanwhile): count it once
                continue
            seen.add(str(issue["id"]))
            for field_id in sla_fields:
                value = fields.get(field_id)
                if isinstance(value, dict):  # null: no such SLA on this request
                    client.records_read += 1
                    yield reduced_sla(value)

    notes = {"service_desks": ", ".join(projects), "sla_source": "search-fields" if sla_fields else "per-request"}
    if sla_fields:
        notes["sla_fields"] = ", ".join(sla_fields)
    return Result(metrics.sla_status_rows(from_search() if sla_fields else per_request()), notes)


# ---------------------------------------------------------------- flow (per board)


def board_workflow(client: JiraClient, board_id: int) -> metrics.Workflow:
    """Stages = the board's columns. Committed = the first column holding an in-progress-category status;
    done = the first column after it holding a done-category status (jira-agile-metrics' usual setup)."""
    configuration = client.board_configuration(board_id)
    categories = {str(s["id"]): (s.get("statusCategory") or {}).get("key") for s in client.statuses()}
    columns = (configuration.get("columnConfig") or {}).get("columns") or []

    def first_column(category: str, after: int = -1) -> str | None:
        for index, column in enumerate(columns):
            if index > after and any(categories.get(str(s["id"])) == category for s in column.get("statuses") or ()):
                return column["name"]
        return None

    committed = first_column("indeterminate")
    done = first_column("done", [c["name"] for c in columns].index(committed) if committed else -1)
    if committed is None or done is None:
        raise ConfigError(f"board {board_id}: no in-progress column before a done column; cannot map cycle-time stages")
    return metrics.workflow_from_board_configuration(configuration, committed, done)


FLOW = ("cycle_time_days", "throughput", "wip")


def _stages(workflow: metrics.Workflow) -> str:
    return " → ".join(workflow.stage_names) + f" (committed: {workflow.committed_stage}, done: {workflow.done_stage})"


def _status_ids(stages: Iterable[metrics.Stage]) -> list[str]:
    return sorted({status_id for stage in stages for status_id in stage.status_ids})


def _flow_conditions(workflow: metrics.Workflow, names: set[str], first: date | None, last: date | None) -> list[str]:
    """The one JQL condition a board's pass needs for `names` (none when every issue is needed): the
    issues any of them can count, each metric's set found from the issue's current status alone.

    A replay ends in the stage of the issue's last mapped status change, and entering a stage clears
    every later one (skipped stages take the next date from later ones, which are cleared), so an issue
    whose current status is mapped to a stage before X has no date for X. Hence:
    - cycle time needs every issue except those currently before the done stage (no done date, no cycle
      time); an issue in an unmapped status is read (its last mapped change may be into done);
    - throughput and WIP never count an issue currently before the committed stage (no committed date),
      and over `first..last` they need no issue whose current status is in the done stage or later and
      whose status has not changed since `first` nor was it created since (`status CHANGED AFTER`, not
      `updated`: edits, comments and worklogs move no stage date): its last status change (into that
      stage), or its creation in it, was before `first`, so its replayed done date is before `first`
      too, and it neither completes on a day of the range nor is in progress at the end of one
      (throughput alone: a done day in the range is a change, or a creation, then). Issues created
      after `last` enter no stage by then; reading them changes nothing, so no `created <` clause is
      needed."""
    wanted: list[str | None] = []  # one condition per metric; None: every issue
    before_committed = _status_ids(workflow.stages[: workflow.committed_index])
    if "cycle_time_days" in names:
        before_done = _status_ids(workflow.stages[: workflow.done_index])
        wanted.append(query.status_not_in(before_done) if before_done else None)
    if "throughput" in names or "wip" in names:
        assert first is not None and last is not None
        done_ids = _status_ids(workflow.stages[workflow.done_index :])
        if "wip" not in names:
            daily = query.status_changed_since(first)
        else:
            daily = f"{query.status_not_in(done_ids)} OR {query.status_changed_since(first)}" if done_ids else ""
        started = query.status_not_in(before_committed) if before_committed else ""
        wanted.append(" AND ".join(f"({c})" for c in (started, daily) if c) or None)
    if any(condition is None for condition in wanted):
        return []
    return [" OR ".join(f"({c})" for c in wanted if c)] if len(wanted) > 1 else [c for c in wanted if c]


def flow_metrics(
    client: JiraClient, connection: Connection, first: date | None, last: date | None, names: Iterable[str] = FLOW
) -> dict[str, Result]:
    """Cycle time, throughput and WIP (any subset of `FLOW`) from ONE pass per selected board: its
    workflow is read, its issues searched once with their status changelogs (Cloud: one bulkfetch per
    page, filtered to `status`), and each issue's history is reduced on arrival to a `CycleTimeRecord`
    (a few dates, no changelog JSON) that feeds every requested reducer at once; only the reducers'
    tallies outlive the page. Nothing is written anywhere. Values equal computing each metric alone."""
    wanted = [name for name in FLOW if name in set(names)]
    if not wanted:
        raise ValueError(f"no flow metric among {sorted(set(names))}; known: {', '.join(FLOW)}")
    if ("throughput" in wanted or "wip" in wanted) and (first is None or last is None):
        raise ValueError("throughput and WIP need a day range")
    rows: dict[str, list[MetricRow]] = {name: [] for name in wanted}
    notes: dict[str, dict[str, Any]] = {name: {} for name in wanted}
    # Issue type only groups cycle time; project is the board's own (the JQL names it): neither is
    # requested when not needed, which keeps every search page smaller.
    fields = ["created", "status"] + (["issuetype"] if "cycle_time_days" in wanted else [])
    plan = query.FieldPlan(tuple(query.safe_fields(connection, fields)), ("status",))
    for board_id, project in boards_of(connection):
        workflow = board_workflow(client, board_id)
        jql = query.issues_jql([project], *_flow_conditions(workflow, set(wanted), first, last))
        tallies = metrics.FlowTallies(first, last, wanted)
        for issue, full in _issues(client, jql, plan):
            issue.setdefault("fields", {}).setdefault("project", {"key": project})
            tallies.add(metrics.cycle_time_record(metrics.issue_status_history(issue, histories=full), workflow))
        for name, board_rows in tallies.rows().items():
            rows[name] += _with_board(board_rows, board_id)
        if "cycle_time_days" in wanted:
            notes["cycle_time_days"][f"board {board_id} stages"] = _stages(workflow)
    return {name: Result(rows[name], notes[name]) for name in wanted}


def cycle_time(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    return flow_metrics(client, connection, first, last, ["cycle_time_days"])["cycle_time_days"]


def throughput(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    return flow_metrics(client, connection, first, last, ["throughput"])["throughput"]


def wip(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    return flow_metrics(client, connection, first, last, ["wip"])["wip"]


# ---------------------------------------------------------------- sprints


def _velocity_fields(connection: Connection) -> tuple[str, str] | Result:
    """(story points field, Sprint field), or the empty result saying why velocity cannot be computed."""
    story_points = connection.mapped_field(query.STORY_POINTS_TARGET)
    sprint_field = query.custom_field(connection, query.SPRINT_PLUGIN)
    if story_points is None or sprint_field is None:
        return Result(
            [], {"status": "story points not mapped" if story_points is None else "no Sprint field on this site"}
        )
    return story_points, sprint_field


def _sprint_histories(
    connection: Connection,
    issues: Iterable[tuple[dict[str, Any], list | None]],
    story_points: str,
    sprint_field: str,
    done_ids: frozenset[str],
) -> Iterator[metrics.SprintIssueHistory]:
    for issue, full in issues:
        yield metrics.sprint_issue_history(
            issue, sprint_field_id=sprint_field, story_points_field_id=story_points, done_status_ids=done_ids,
            sprint_field_name=query.field_name(connection, sprint_field), story_points_field_name=query.field_name(connection, story_points),
            histories=full,
        )  # fmt: skip


def sprint_velocity(client: JiraClient, connection: Connection, first: date | None, last: date | None) -> Result:
    fields = _velocity_fields(connection)
    if isinstance(fields, Result):
        return fields
    story_points, sprint_field = fields
    done_ids = metrics.done_status_ids_from_statuses(client.statuses())
    plan = query.velocity_plan(connection, story_points, sprint_field)
    rows = []
    for board_id, project in boards_of(connection, "scrum"):
        sprints = [metrics.sprint_from_json(s) for s in client.board_sprints(board_id)]
        issues = _issues(client, query.issues_jql([project]), plan)
        rows += metrics.sprint_velocity_rows(
            _sprint_histories(connection, issues, story_points, sprint_field, done_ids), sprints
        )
    return Result(rows, {"story_points_field": story_points})


# ---------------------------------------------------------------- cycle time and velocity in one pass

BOARD_SNAPSHOTS = ("cycle_time_days", "sprint_velocity")


def board_snapshots(
    client: JiraClient, connection: Connection, names: Iterable[str] = BOARD_SNAPSHOTS
) -> dict[str, Result]:
    """Cycle time and sprint velocity (any subset of `BOARD_SNAPSHOTS`), each scrum board's project read
    ONCE for both: both replay the same issues' status changelogs, so one search asks for the union of
    their fields (velocity's plus issue type) and one bulkfetch per page for the union of their changelog
    fields (status, resolution, Sprint, story points), and each issue feeds a `CycleTimeRecord` to the
    cycle-time tallies and a `SprintIssueHistory` to the velocity reducer as it arrives. Each reducer
    reads only its own fields and change items, so the values equal each metric computed alone. A
    kanban board (no sprints) is read for cycle time alone, as `flow_metrics` reads it."""
    wanted = [name for name in BOARD_SNAPSHOTS if name in set(names)]
    if not wanted or set(names) - set(BOARD_SNAPSHOTS):
        raise ValueError(f"board snapshots are {', '.join(BOARD_SNAPSHOTS)}; got {sorted(set(names))}")
    if "sprint_velocity" not in wanted:
        return flow_metrics(client, connection, None, None, ["cycle_time_days"])
    if "cycle_time_days" not in wanted:
        return {"sprint_velocity": sprint_velocity(client, connection, None, None)}
    fields = _velocity_fields(connection)
    if isinstance(fields, Result):
        return {**flow_metrics(client, connection, None, None, ["cycle_time_days"]), "sprint_velocity": fields}
    story_points, sprint_field = fields
    done_ids = metrics.done_status_ids_from_statuses(client.statuses())
    velocity = query.velocity_plan(connection, story_points, sprint_field)
    shared = replace(velocity, fields=tuple(query.safe_fields(connection, [*velocity.fields, "issuetype"])))
    cycle_plan = query.FieldPlan(tuple(query.safe_fields(connection, ["created", "status", "issuetype"])), ("status",))
    scrum = {board_id for board_id, _ in boards_of(connection, "scrum")}
    cycle_rows: list[MetricRow] = []
    velocity_rows: list[MetricRow] = []
    notes: dict[str, Any] = {}
    for board_id, project in boards_of(connection):
        workflow = board_workflow(client, board_id)
        tallies = metrics.FlowTallies(None, None, ["cycle_time_days"])
        if board_id in scrum:
            sprints = [metrics.sprint_from_json(s) for s in client.board_sprints(board_id)]

            def issues(
                workflow: metrics.Workflow = workflow, tallies: metrics.FlowTallies = tallies, project: str = project
            ) -> Iterator[tuple[dict[str, Any], list | None]]:
                for issue, full in _issues(client, query.issues_jql([project]), shared):
                    issue.setdefault("fields", {}).setdefault("project", {"key": project})
                    history = metrics.issue_status_history(issue, histories=full)
                    tallies.add(metrics.cycle_time_record(history, workflow))
                    yield issue, full

            velocity_rows += metrics.sprint_velocity_rows(
                _sprint_histories(connection, issues(), story_points, sprint_field, done_ids), sprints
            )
        else:
            jql = query.issues_jql([project], *_flow_conditions(workflow, {"cycle_time_days"}, None, None))
            for issue, full in _issues(client, jql, cycle_plan):
                issue.setdefault("fields", {}).setdefault("project", {"key": project})
                tallies.add(metrics.cycle_time_record(metrics.issue_status_history(issue, histories=full), workflow))
        cycle_rows += _with_board(tallies.rows()["cycle_time_days"], board_id)
        notes[f"board {board_id} stages"] = _stages(workflow)
    return {
        "cycle_time_days": Result(cycle_rows, notes),
        "sprint_velocity": Result(velocity_rows, {"story_points_field": story_points}),
    }


METRICS: dict[str, JiraMetric] = {
    m.name: m
    for m in (
        JiraMetric(
            "issue_count",
            False,
            "projects",
            "Issues by project, type, status category, priority, component, epic and mapped fields (now).",
            issue_count,
        ),
        JiraMetric(
            "created_vs_resolved", True, "projects", "Issues created and resolved per day.", created_vs_resolved
        ),
        JiraMetric(
            "worklog_hours",
            True,
            "projects",
            "Hours of work started per day, by project, component and epic.",
            worklog_hours,
        ),
        JiraMetric(
            "sla_status",
            False,
            "service_desk",
            "Service-management SLA cycles met / breached / ongoing per SLA name.",
            sla_status,
        ),
        JiraMetric(
            "cycle_time_days",
            False,
            "boards",
            "Cycle time per issue type and board (count, mean, p50/p85/p95), stages from each board's columns.",
            cycle_time,
        ),
        JiraMetric("throughput", True, "boards", "Issues reaching the done stage per day, per board.", throughput),
        JiraMetric("wip", True, "boards", "Issues between committed and done at the end of each day, per board.", wip),
        JiraMetric(
            "sprint_velocity",
            False,
            "boards",
            "Story points committed at sprint start vs completed in the sprint, per sprint, with a rolling average.",
            sprint_velocity,
        ),
    )
}
