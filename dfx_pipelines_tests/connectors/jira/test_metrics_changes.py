"""Which days a change to one issue can move (`metrics_changes`), on hand-made histories: a reopened
issue's old done day and every WIP day since, a resolution cleared, an issue created since."""

from datetime import UTC, date, datetime

from dfx_pipelines.connectors.jira.metrics_changes import flow_days_changed, resolved_days_changed
from dfx_pipelines.connectors.jira.metrics_common import ChangeHistory
from dfx_pipelines.connectors.jira.metrics_flow import IssueStatusHistory, StatusChange, workflow_from_config

WORKFLOW = workflow_from_config({
    "stages": [{"name": "Backlog", "statuses": ["Backlog"]}, {"name": "In Progress", "statuses": ["In Progress"]}, {"name": "Done", "statuses": ["Done"]}],
    "committed": "In Progress", "done": "Done",
})  # fmt: skip
SINCE = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
TODAY = date(2025, 6, 2)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2025, 5 if day > 2 else 6, day, hour, tzinfo=UTC)


def history(*changes: tuple[datetime, str]) -> IssueStatusHistory:
    return IssueStatusHistory(
        "A-1", "Story", "A", changes[0][0], tuple(StatusChange(when, None, name) for when, name in changes)
    )


def test_reopening_moves_the_old_done_day_and_every_wip_day_since() -> None:
    reopened = history((at(10), "Backlog"), (at(12), "In Progress"), (at(20), "Done"), (at(2, 10), "In Progress"))
    moved = flow_days_changed(reopened, WORKFLOW, SINCE, TODAY)
    assert moved["throughput"] == {date(2025, 5, 20)}
    # WIP before: May 12..19; after: May 12 onwards (committed date kept, done cleared).
    assert moved["wip"] == {date(2025, 5, d) for d in range(20, 32)} | {date(2025, 6, 1), date(2025, 6, 2)}


def test_nothing_moves_when_the_replayed_dates_are_the_same() -> None:
    unchanged = history((at(10), "Backlog"), (at(12), "In Progress"), (at(2, 10), "In Progress"))
    assert flow_days_changed(unchanged, WORKFLOW, SINCE, TODAY) == {"throughput": set(), "wip": set()}


def test_an_issue_created_since_moves_its_own_days() -> None:
    new = history((at(2, 9), "In Progress"), (at(2, 11), "Done"))
    assert flow_days_changed(new, WORKFLOW, datetime(2025, 6, 2, 8, tzinfo=UTC), TODAY) == {
        "throughput": {TODAY},
        "wip": set(),
    }


def test_a_cleared_resolution_moves_the_day_it_was_set() -> None:
    resolved_then = at(20)
    changes = [
        ChangeHistory(resolved_then, ({"fieldId": "resolution", "from": None, "to": "10000"},)),
        ChangeHistory(at(2, 10), ({"fieldId": "resolution", "from": "10000", "to": None},)),
    ]
    assert resolved_days_changed(changes, at(10), None, SINCE) == {date(2025, 5, 20)}
    # Resolved again since: both days.
    again = changes + [ChangeHistory(at(2, 11), ({"fieldId": "resolution", "from": None, "to": "10000"},))]
    assert resolved_days_changed(again, at(10), at(2, 11), SINCE) == {date(2025, 5, 20), TODAY}
    # No resolution change since: nothing.
    assert resolved_days_changed(changes[:1], at(10), resolved_then, SINCE) == set()
