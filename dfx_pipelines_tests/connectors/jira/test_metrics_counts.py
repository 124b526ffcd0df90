"""Issue counts per dimension, created vs resolved, worklog hours and SLA status counts."""

from __future__ import annotations

from datetime import date

import pytest

from dfx_pipelines.connectors.jira.metrics import (
    IssueAttributes,
    created_vs_resolved_rows,
    issue_attributes,
    issue_count_rows,
    sla_status_rows,
    worklog_hours_rows,
)
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow

TEAM_FIELD = "customfield_10001"
LABELS_FIELD = "customfield_10050"
EPIC_LINK_FIELD = "customfield_10014"


def issue(
    issue_id: str,
    *,
    project: str = "APP",
    issue_type: str = "Story",
    category: str = "indeterminate",
    priority: str | None = "High",
    components: tuple[str, ...] = (),
    parent: dict | None = None,
    created: str = "2024-01-02T10:00:00.000+0000",
    resolved: str | None = None,
    team: dict | None = None,
    labels: list | None = None,
) -> dict:
    return {
        "id": issue_id,
        "key": f"{project}-{issue_id}",
        "fields": {
            "project": {"id": "100", "key": project, "name": "Application"},
            "issuetype": {"id": "1", "name": issue_type},
            "status": {
                "id": "3",
                "name": "In Progress",
                "statusCategory": {"id": 4, "key": category, "name": "In Progress"},
            },
            "priority": {"id": "2", "name": priority} if priority else None,
            "components": [{"id": str(n), "name": name} for n, name in enumerate(components)],
            "parent": parent,
            "created": created,
            "resolutiondate": resolved,
            TEAM_FIELD: team,
            LABELS_FIELD: labels,
            "description": {"type": "doc", "content": []},
        },
    }


EPIC_PARENT = {"id": "9", "key": "APP-9", "fields": {"issuetype": {"name": "Epic", "hierarchyLevel": 1}}}
STORY_PARENT = {"id": "8", "key": "APP-8", "fields": {"issuetype": {"name": "Story", "hierarchyLevel": 0}}}


def attributes(raw: dict) -> IssueAttributes:
    return issue_attributes(raw, dimension_fields={"team": TEAM_FIELD, "label_option": LABELS_FIELD})


def test_adapter_reads_epics_components_and_mapped_fields() -> None:
    labels = [{"value": "a"}, {"value": "b"}, {"value": "a"}]
    story = attributes(
        issue("1", components=("API", "Web"), parent=EPIC_PARENT, team={"id": "7", "value": "Core"}, labels=labels)
    )
    assert (story.project, story.issue_type, story.status_category, story.priority) == (
        "APP",
        "Story",
        "indeterminate",
        "High",
    )
    assert story.components == ("API", "Web")
    assert story.epic == "APP-9"
    assert dict(story.mapped) == {"label_option": ("a", "b"), "team": ("Core",)}
    sub_task = attributes(issue("2", issue_type="Sub-task", parent=STORY_PARENT))
    assert sub_task.epic is None
    classic = issue("3")
    classic["fields"][EPIC_LINK_FIELD] = "APP-4"
    assert issue_attributes(classic, epic_link_field_id=EPIC_LINK_FIELD).epic == "APP-4"


def test_mapped_dimension_may_not_shadow_a_built_in_one() -> None:
    with pytest.raises(ConfigError, match="project"):
        issue_attributes(issue("1"), dimension_fields={"project": TEAM_FIELD})


def test_issue_counts_per_dimension_value_in_one_pass() -> None:
    raws = [
        issue("1", components=("API", "Web"), parent=EPIC_PARENT, team={"value": "Core"}),
        issue("2", project="OPS", issue_type="Bug", category="done", priority="Low", components=("API",)),
        issue("3", issue_type="Bug", priority=None, team={"value": "Core"}),
    ]
    consumed = []

    def stream():
        for raw in raws:
            consumed.append(raw["id"])
            yield attributes(raw)

    rows = issue_count_rows(stream(), period=date(2024, 2, 1))
    assert consumed == ["1", "2", "3"]
    counts = {row.dimensions: row.value for row in rows}
    assert counts[()] == 3
    assert counts[(("project", "APP"),)] == 2 and counts[(("project", "OPS"),)] == 1
    assert counts[(("issue_type", "Bug"),)] == 2 and counts[(("issue_type", "Story"),)] == 1
    assert counts[(("status_category", "done"),)] == 1 and counts[(("status_category", "indeterminate"),)] == 2
    assert counts[(("priority", "(none)"),)] == 1 and counts[(("priority", "High"),)] == 1
    assert (
        counts[(("component", "API"),)] == 2
        and counts[(("component", "Web"),)] == 1
        and counts[(("component", "(none)"),)] == 1
    )
    assert counts[(("epic", "APP-9"),)] == 1 and counts[(("epic", "(none)"),)] == 2
    assert counts[(("team", "Core"),)] == 2 and counts[(("team", "(none)"),)] == 1
    assert counts[(("label_option", "(none)"),)] == 3
    assert {(row.metric, row.measure, row.period) for row in rows} == {("issue_count", "issues", date(2024, 2, 1))}


def test_created_vs_resolved_per_utc_day_zero_filled() -> None:
    issues = [
        attributes(
            issue("1", created="2024-01-01T23:30:00.000-0200", resolved="2024-01-03T08:00:00Z")
        ),  # created Jan 2 UTC
        attributes(issue("2", created="2024-01-02T00:10:00.000+0100", resolved=None)),  # Jan 1 UTC
        attributes(issue("3", created="2023-12-20T10:00:00.000+0000", resolved="2024-01-03T23:00:00.000+0000")),
        attributes(issue("4", created="2024-01-09T10:00:00.000+0000")),
    ]
    rows = created_vs_resolved_rows(issues, date(2024, 1, 1), date(2024, 1, 4))
    table = {(row.period.day, row.measure): row.value for row in rows}
    assert table == {
        (1, "created"): 1,
        (1, "resolved"): 0,
        (2, "created"): 1,
        (2, "resolved"): 0,
        (3, "created"): 0,
        (3, "resolved"): 2,
        (4, "created"): 0,
        (4, "resolved"): 0,
    }


def test_worklog_hours_per_day_by_project_component_and_epic() -> None:
    issues = {
        "1": attributes(issue("1", components=("API", "Web"), parent=EPIC_PARENT)),
        "2": attributes(issue("2", project="OPS")),
    }
    worklogs = [
        {"issueId": "1", "timeSpentSeconds": 3600, "started": "2024-01-02T09:00:00.000+0000", "comment": "never read"},
        {"issueId": "1", "timeSpentSeconds": 1800, "started": "2024-01-02T23:30:00.000-0100"},  # Jan 3 UTC
        {"issueId": "2", "timeSpentSeconds": 5400, "started": "2024-01-02T12:00:00Z"},
        {"issueId": "99", "timeSpentSeconds": 7200, "started": "2024-01-02T12:00:00Z"},  # project not selected
    ]
    rows = worklog_hours_rows(worklogs, issues)
    hours = {(row.period.day, row.dimensions): row.value for row in rows}
    assert hours[(2, ())] == 2.5
    assert hours[(2, MetricRow.dims(project="APP"))] == 1 and hours[(2, MetricRow.dims(project="OPS"))] == 1.5
    assert hours[(2, MetricRow.dims(component="API"))] == 1 and hours[(2, MetricRow.dims(component="Web"))] == 1
    assert hours[(2, MetricRow.dims(component="(none)"))] == 1.5
    assert hours[(2, MetricRow.dims(epic="APP-9"))] == 1 and hours[(2, MetricRow.dims(epic="(none)"))] == 1.5
    assert hours[(3, ())] == 0.5 and hours[(3, MetricRow.dims(epic="APP-9"))] == 0.5
    assert {(row.metric, row.measure) for row in rows} == {("worklog_hours", "hours")}


def cycle(breached: bool) -> dict:
    return {
        "breached": breached,
        "goalDuration": {"millis": 14_400_000},
        "elapsedTime": {"millis": 3_600_000 if not breached else 20_000_000},
    }


def test_sla_cycles_fall_in_exactly_one_category() -> None:
    slas = [
        {"id": "1", "name": "Time to first response", "completedCycles": [cycle(False)]},
        {"id": "1", "name": "Time to first response", "completedCycles": [cycle(True)]},
        {
            "id": "2",
            "name": "Time to resolution",
            "completedCycles": [cycle(False), cycle(True)],
            "ongoingCycle": {"breached": False, "paused": True, "remainingTime": {"millis": 1000}},
        },
        {
            "id": "2",
            "name": "Time to resolution",
            "completedCycles": [],
            "ongoingCycle": {"breached": True, "paused": False, "remainingTime": {"millis": -5000}},
        },
        {
            "id": "2",
            "name": "Time to resolution",
            "completedCycles": [],
            "ongoingCycle": {"breached": False, "paused": False, "remainingTime": {"millis": 5000}},
        },
        {
            "id": "3",
            "name": "Time to approve",
            "completedCycles": [],
            "ongoingCycle": {"breached": False, "paused": False},
        },
    ]
    table = {(row.dimension_dict["sla"], row.measure): row.value for row in sla_status_rows(slas)}
    assert [
        table[("Time to first response", m)] for m in ("met", "breached", "ongoing", "ongoing_breached", "met_rate")
    ] == [1, 1, 0, 0, 0.5]
    assert [table[("Time to resolution", m)] for m in ("met", "breached", "ongoing", "ongoing_breached")] == [
        1,
        1,
        2,
        1,
    ]
    assert table[("Time to approve", "met_rate")] is None and table[("Time to approve", "ongoing")] == 1
