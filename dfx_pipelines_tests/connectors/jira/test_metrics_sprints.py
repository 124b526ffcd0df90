"""Sprint velocity on hand-built issues whose Sprint and story-points fields change mid-sprint."""

from __future__ import annotations

import random

import pytest

from dfx_pipelines.connectors.jira.metrics import (
    JiraDataError,
    done_status_ids_from_statuses,
    parse_jira_timestamp,
    sprint_from_json,
    sprint_issue_history,
    sprint_velocity_rows,
)

SPRINT_FIELD = "customfield_10020"
POINTS_FIELD = "customfield_10016"
TO_DO, IN_PROGRESS, DONE = "1", "3", "5"
DONE_IDS = done_status_ids_from_statuses(
    [
        {"id": TO_DO, "name": "To Do", "statusCategory": {"key": "new"}},
        {"id": IN_PROGRESS, "name": "In Progress", "statusCategory": {"key": "indeterminate"}},
        {"id": DONE, "name": "Done", "statusCategory": {"key": "done"}},
    ]
)


def at(day: int, hour: int = 12, month: int = 1) -> str:
    return f"2024-{month:02d}-{day:02d}T{hour:02d}:00:00.000+0000"


def sprint_change(old: str, new: str) -> dict:
    return {
        "field": "Sprint",
        "fieldtype": "custom",
        "fieldId": SPRINT_FIELD,
        "from": old,
        "fromString": "n",
        "to": new,
        "toString": "n",
    }


def points_change(old: float | None, new: float | None) -> dict:
    return {
        "field": "Story point estimate",
        "fieldtype": "custom",
        "fieldId": POINTS_FIELD,
        "from": None,
        "fromString": None if old is None else str(old),
        "to": None,
        "toString": None if new is None else str(new),
    }


def status_change(old: str, new: str) -> dict:
    return {
        "field": "status",
        "fieldtype": "jira",
        "fieldId": "status",
        "from": old,
        "fromString": "s",
        "to": new,
        "toString": "s",
    }


def resolved_change() -> dict:
    return {
        "field": "resolution",
        "fieldtype": "jira",
        "fieldId": "resolution",
        "from": None,
        "fromString": None,
        "to": "10000",
        "toString": "Done",
    }


def sprint_issue(
    key: str,
    created: str,
    changes: list[tuple[str, list[dict]]],
    *,
    sprints: list,
    points: float | None,
    status: str,
    resolved: bool = False,
) -> dict:
    histories = [{"id": str(n), "created": when, "items": items} for n, (when, items) in enumerate(changes)]
    return {
        "id": key,
        "key": key,
        "fields": {
            "created": created,
            "status": {"id": status},
            "resolution": {"id": "10000", "name": "Done"} if resolved else None,
            SPRINT_FIELD: [{"id": s, "name": f"Sprint {s}", "state": "closed", "boardId": 7} for s in sprints] or None,
            POINTS_FIELD: points,
            "description": "never read",
        },
        "changelog": {"startAt": 0, "maxResults": len(histories), "total": len(histories), "histories": histories},
    }


def history(issue: dict, **kwargs):
    return sprint_issue_history(
        issue, sprint_field_id=SPRINT_FIELD, story_points_field_id=POINTS_FIELD, done_status_ids=DONE_IDS, **kwargs
    )


SPRINTS = [
    {
        "id": 1,
        "state": "closed",
        "name": "Sprint 1",
        "startDate": at(8, 9),
        "endDate": at(22, 9),
        "completeDate": at(22, 10),
        "originBoardId": 7,
    },
    {
        "id": 2,
        "state": "closed",
        "name": "Sprint 2",
        "startDate": at(22, 11),
        "endDate": at(5, 9, 2),
        "completeDate": at(5, 12, 2),
        "originBoardId": 7,
    },
    {"id": 3, "state": "future", "name": "Sprint 3", "originBoardId": 7},
    {
        "id": 4,
        "state": "future",
        "name": "Sprint 4 (planned dates)",
        "startDate": at(19, 9, 2),
        "endDate": at(1, 9, 3),
        "originBoardId": 7,
    },
]

ISSUES = [
    sprint_issue(
        "A",
        at(1),
        [(at(5), [sprint_change("", "1")]), (at(15), [status_change(IN_PROGRESS, DONE), resolved_change()])],
        sprints=[1],
        points=3,
        status=DONE,
        resolved=True,
    ),
    sprint_issue(
        "B",
        at(1),
        [
            (at(5), [sprint_change("", "1")]),
            (at(10), [points_change(5, 8)]),
            (at(20), [status_change(IN_PROGRESS, DONE)]),
        ],
        sprints=[1],
        points=8,
        status=DONE,
    ),
    # Re-estimated, then removed: removed scope is what had been committed.
    sprint_issue(
        "C",
        at(1),
        [(at(5), [sprint_change("", "1")]), (at(10), [points_change(2, 6)]), (at(12), [sprint_change("1", "")])],
        sprints=[],
        points=6,
        status=IN_PROGRESS,
    ),
    # Created mid-sprint straight into it: no Sprint change in the changelog.
    sprint_issue("D", at(9), [(at(21), [status_change(TO_DO, DONE)])], sprints=[1], points=1, status=DONE),
    sprint_issue(
        "E",
        at(1),
        [(at(10), [sprint_change("", "1")]), (at(11), [points_change(None, 5)])],
        sprints=[1],
        points=5,
        status=IN_PROGRESS,
    ),
    # Done before the sprint started: committed, never completed in it.
    sprint_issue(
        "F",
        at(1),
        [(at(3), [status_change(IN_PROGRESS, DONE), resolved_change()]), (at(5), [sprint_change("", "1")])],
        sprints=[1],
        points=1,
        status=DONE,
        resolved=True,
    ),
    # Carried over at sprint completion (Jira keeps the closed sprint in the field), done in sprint 2.
    sprint_issue(
        "G",
        at(1),
        [
            (at(5), [sprint_change("", "1")]),
            (at(22, 10), [sprint_change("1", "1, 2")]),
            (at(23), [status_change(IN_PROGRESS, DONE)]),
        ],
        sprints=[1, 2],
        points=2,
        status=DONE,
    ),
    # Done, then taken out of the sprint: removed, not completed.
    sprint_issue(
        "H",
        at(1),
        [
            (at(5), [sprint_change("", "1")]),
            (at(15), [status_change(IN_PROGRESS, DONE)]),
            (at(16), [sprint_change("1", "")]),
        ],
        sprints=[],
        points=1,
        status=DONE,
    ),
    sprint_issue(
        "I",
        at(1),
        [(at(23), [sprint_change("", "2")]), (at(6, 12, 2), [sprint_change("2", "2, 4")])],
        sprints=[2, 4],
        points=7,
        status=IN_PROGRESS,
    ),
    # Resolved while its status stays in an in-progress category: done.
    sprint_issue(
        "J",
        at(1),
        [(at(5), [sprint_change("", "1")]), (at(14), [resolved_change()])],
        sprints=[1],
        points=4,
        status=IN_PROGRESS,
        resolved=True,
    ),
]


def velocity(issues: list[dict], sprints: list[dict]) -> dict[str, dict[str, float | None]]:
    rows = sprint_velocity_rows((history(i) for i in issues), [sprint_from_json(s) for s in sprints])
    by_sprint: dict[str, dict[str, float | None]] = {}
    for row in rows:
        assert row.metric == "sprint_velocity"
        by_sprint.setdefault(row.dimension_dict["sprint_id"], {})[row.measure] = row.value
    return by_sprint


def test_velocity_with_scope_and_estimate_changes_mid_sprint() -> None:
    first = velocity(ISSUES, SPRINTS)["1"]
    assert (first["committed_issues"], first["committed_points"]) == (7, 18)  # A3 B5 C2 F1 G2 H1 J4
    assert (first["added_issues"], first["added_points"]) == (2, 6)  # D1 E5
    assert (first["removed_issues"], first["removed_points"]) == (2, 3)  # C2 H1
    assert (first["completed_issues"], first["completed_points"]) == (4, 16)  # A3 B8 (re-estimated) D1 J4
    assert (first["final_issues"], first["final_points"]) == (7, 24)


def test_carried_over_issue_counts_in_the_next_sprint() -> None:
    second = velocity(ISSUES, SPRINTS)["2"]
    assert (second["committed_issues"], second["committed_points"]) == (1, 2)  # G
    assert (second["completed_issues"], second["completed_points"]) == (1, 2)
    assert (second["added_issues"], second["added_points"]) == (1, 7)  # I


def test_rows_carry_sprint_dimensions_and_start_day_and_skip_future_sprints() -> None:
    rows = sprint_velocity_rows((history(i) for i in ISSUES), [sprint_from_json(s) for s in SPRINTS])
    assert {row.dimension_dict["sprint_id"] for row in rows} == {"1", "2"}
    first = next(row for row in rows if row.dimension_dict["sprint_id"] == "1")
    assert first.dimension_dict == {
        "board_id": "7",
        "sprint_id": "1",
        "sprint_name": "Sprint 1",
        "sprint_state": "closed",
    }
    assert str(first.period) == "2024-01-08"


def test_rolling_average_of_completed_points_over_last_three_closed_sprints_per_board() -> None:
    completed = [5, 7, 9, 2]
    sprints = [
        {
            "id": n + 1,
            "state": "closed",
            "name": f"S{n + 1}",
            "startDate": at(1 + 7 * n),
            "endDate": at(6 + 7 * n),
            "completeDate": at(6 + 7 * n, 18),
            "originBoardId": 7,
        }
        for n in range(4)
    ]
    sprints.append(
        {"id": 5, "state": "active", "name": "S5", "startDate": at(29), "endDate": at(3, 12, 2), "originBoardId": 7}
    )
    sprints.append(
        {
            "id": 9,
            "state": "closed",
            "name": "Other",
            "startDate": at(2),
            "endDate": at(9),
            "completeDate": at(9),
            "originBoardId": 8,
        }
    )
    issues = [
        sprint_issue(
            f"X-{n}",
            at(1),
            [(at(3 + 7 * n), [status_change(IN_PROGRESS, DONE)])],
            sprints=[n + 1],
            points=p,
            status=DONE,
        )
        for n, p in enumerate(completed)
    ]
    issues.append(
        sprint_issue("Y-1", at(1), [(at(4), [status_change(IN_PROGRESS, DONE)])], sprints=[9], points=11, status=DONE)
    )
    random.Random(3).shuffle(sprints)  # order comes from completion time, not input order
    result = velocity(issues, sprints)
    rolling = {sprint_id: measures.get("completed_points_rolling_avg_3") for sprint_id, measures in result.items()}
    assert rolling == {"1": 5, "2": 6, "3": 7, "4": pytest.approx(6.0), "5": None, "9": 11}
    assert [result[str(n + 1)]["completed_points"] for n in range(4)] == completed


def test_data_center_sprint_strings_and_story_point_items_without_field_id() -> None:
    issue = sprint_issue(
        "DC-1",
        at(1),
        [(at(5), [sprint_change("", "1")]), (at(10), [points_change(3, 5)])],
        sprints=[],
        points=5,
        status=IN_PROGRESS,
    )
    issue["fields"][SPRINT_FIELD] = [
        "com.atlassian.greenhopper.service.sprint.Sprint@14b1c359[id=1,rapidViewId=7,state=CLOSED,name=S1]"
    ]
    for entry in issue["changelog"]["histories"]:
        for item in entry["items"]:
            del item["fieldId"]
            if item["field"] == "Story point estimate":
                item["field"] = "Story Points"
    facts = history(issue, story_points_field_name="story points")
    assert facts.sprint_ids.value_at(parse_jira_timestamp(at(20))) == frozenset({"1"})
    assert facts.points_at(parse_jira_timestamp(at(8))) == 3
    assert facts.points_at(parse_jira_timestamp(at(20))) == 5


def test_story_points_must_be_numbers() -> None:
    issue = sprint_issue("BAD-1", at(1), [(at(5), [points_change(None, 5)])], sprints=[], points=5, status=IN_PROGRESS)
    issue["changelog"]["histories"][0]["items"][0]["toString"] = "five"
    with pytest.raises(JiraDataError, match="BAD-1"):
        history(issue)


def test_done_timeline_records_reopening() -> None:
    issue = sprint_issue(
        "R-1",
        at(1),
        [
            (at(3), [status_change(IN_PROGRESS, DONE)]),
            (at(5), [status_change(DONE, IN_PROGRESS)]),
            (at(7), [status_change(IN_PROGRESS, DONE)]),
        ],
        sprints=[],
        points=None,
        status=DONE,
    )
    facts = history(issue)
    assert facts.done_since(parse_jira_timestamp(at(4))) == parse_jira_timestamp(at(3))
    assert facts.done_since(parse_jira_timestamp(at(6))) is None
    assert facts.done_since(parse_jira_timestamp(at(9))) == parse_jira_timestamp(at(7))
    assert facts.points_at(parse_jira_timestamp(at(9))) == 0.0
