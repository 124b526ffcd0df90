"""Sprint velocity, as Fivetran's dbt_jira frames it: story points committed at sprint start against story
points completed within the sprint, plus scope added and removed during it, and a rolling average of
completed points over the last three closed sprints of each board.

Per sprint, with start = `startDate` and end = `completeDate` (or `endDate` while the sprint is open):
- an issue is in the sprint at a moment when it existed then and the Sprint field, replayed from the
  changelog, held the sprint (Jira keeps closed sprints in the field, so carried-over issues stay in);
- committed = issues in the sprint at start, with their story points at start;
- added = in at end but not at start (points at end); removed = in at start but not at end (points at
  start, the amount that had been committed);
- completed = in the sprint at end and done at end, having become done (resolved, or in a done-category
  status) at or after start; points at end. Issues done before the sprint began do not count;
- final = issues in the sprint at end, points at end. A change at exactly start or end counts as made by
  then. Missing story points count as 0, as in dbt_jira.
The story-points and Sprint fields are discovered custom fields: their ids are parameters.
Pure: no I/O, no Dagster, no client library."""

from __future__ import annotations

import bisect
import re
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from typing import cast

from dfx_pipelines.connectors.jira.metrics_common import (
    JiraDataError,
    JsonObject,
    Timeline,
    change_histories,
    field_timeline,
    parse_jira_timestamp,
    parse_optional_timestamp,
    required,
    utc_day,
)
from dfx_pipelines.platform.metric_rows import MetricRow

ROLLING_WINDOW = 3
# Data Center renders sprints in the field as "com.atlassian.greenhopper.service.sprint.Sprint@1f[id=12,...]".
_DATA_CENTER_SPRINT_ID = re.compile(r"\bid=(\d+)")


@dataclass(frozen=True, slots=True)
class Sprint:
    id: str
    name: str
    state: str  # "future" | "active" | "closed"
    board_id: str | None
    start: datetime | None
    end: datetime | None
    complete: datetime | None

    @property
    def scope_end(self) -> datetime | None:
        return self.complete or self.end


def sprint_from_json(sprint_json: JsonObject) -> Sprint:
    """Adapter from `/rest/agile/1.0/board/{id}/sprint` values."""
    board_id = sprint_json.get("originBoardId")
    return Sprint(
        id=str(sprint_json["id"]),
        name=str(sprint_json.get("name") or ""),
        state=str(sprint_json.get("state") or "").lower(),
        board_id=None if board_id is None else str(board_id),
        start=parse_optional_timestamp(sprint_json.get("startDate")),
        end=parse_optional_timestamp(sprint_json.get("endDate")),
        complete=parse_optional_timestamp(sprint_json.get("completeDate")),
    )


def done_status_ids_from_statuses(statuses_json: Iterable[JsonObject]) -> frozenset[str]:
    """The ids of done-category statuses, from `/rest/api/3/status` (`statusCategory.key == "done"`)."""
    return frozenset(
        str(status["id"]) for status in statuses_json if (status.get("statusCategory") or {}).get("key") == "done"
    )


@dataclass(frozen=True, slots=True)
class SprintIssueHistory:
    """The compact facts velocity needs about one issue."""

    key: str
    created: datetime
    sprint_ids: Timeline[frozenset[str]]
    story_points: Timeline[float | None]
    done: Timeline[bool]  # changes only when done-ness flips

    def in_sprint_at(self, sprint_id: str, moment: datetime) -> bool:
        return self.created <= moment and sprint_id in self.sprint_ids.value_at(moment)

    def points_at(self, moment: datetime) -> float:
        return self.story_points.value_at(moment) or 0.0

    def done_since(self, moment: datetime) -> datetime | None:
        """When the issue last became done, if it is done at `moment`; None if it is not."""
        if not self.done.value_at(moment):
            return None
        flips_applied = bisect.bisect_right(self.done.change_times, moment)
        return self.done.change_times[flips_applied - 1] if flips_applied else self.created


def _sprint_ids(value: object) -> frozenset[str]:
    """Sprint ids from a changelog side ("12, 13") or the current field (objects, or DC strings)."""
    if value in (None, ""):
        return frozenset()
    if isinstance(value, str):
        return frozenset(part.strip() for part in value.split(",") if part.strip())
    ids = set()
    for sprint in cast(Iterable[object], value):  # a list of sprint objects (Cloud) or strings (old DC)
        if isinstance(sprint, Mapping):
            ids.add(str(sprint["id"]))
        else:
            match = _DATA_CENTER_SPRINT_ID.search(str(sprint))
            if match:
                ids.add(match.group(1))
    return frozenset(ids)


def _optional_id(value: object) -> str | None:
    return None if value is None else str(value)


def _points(value: object, key: str) -> float | None:
    if value in (None, ""):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise JiraDataError(f"issue {key}: story points value {value!r} is not a number") from None


def sprint_issue_history(
    issue_json: JsonObject,
    *,
    sprint_field_id: str,
    story_points_field_id: str,
    done_status_ids: Collection[str],
    sprint_field_name: str | None = "Sprint",
    story_points_field_name: str | None = None,
    histories: Sequence[JsonObject] | None = None,
) -> SprintIssueHistory:
    """Adapter from a search/issue JSON with `fields` created, status, resolution, the Sprint field and the
    story-points field, and the changelog. The `*_field_name`s match Data Center change items, which
    carry the field's display name but no `fieldId`."""
    key = str(required(issue_json, "key"))
    issue_fields = issue_json.get("fields") or {}
    created = parse_jira_timestamp(required(issue_json, "fields", "created"))
    ordered = change_histories(issue_json, histories)
    sprints = field_timeline(
        ordered,
        sprint_field_id,
        sprint_field_name,
        read_value=lambda item, side: _sprint_ids(item.get(side)),
        current_value=_sprint_ids(issue_fields.get(sprint_field_id)),
    )
    points = field_timeline(
        ordered,
        story_points_field_id,
        story_points_field_name,
        read_value=lambda item, side: _points(item.get(f"{side}String", item.get(side)), key),
        current_value=_points(issue_fields.get(story_points_field_id), key),
    )
    status = field_timeline(
        ordered,
        "status",
        "status",
        read_value=lambda item, side: _optional_id(item.get(side)),
        current_value=_optional_id((issue_fields.get("status") or {}).get("id")),
    )
    resolved = field_timeline(
        ordered,
        "resolution",
        "resolution",
        read_value=lambda item, side: bool(item.get(side) or item.get(f"{side}String")),
        current_value=issue_fields.get("resolution") is not None,
    )
    done_ids = {str(i) for i in done_status_ids}

    def done_at(moment: datetime) -> bool:
        return status.value_at(moment) in done_ids or resolved.value_at(moment)

    initial_done = status.initial in done_ids or resolved.initial
    flip_times: list[datetime] = []
    flip_values: list[bool] = []
    previous = initial_done
    for moment in sorted(set(status.change_times) | set(resolved.change_times)):
        now_done = done_at(moment)
        if now_done != previous:
            flip_times.append(moment)
            flip_values.append(now_done)
            previous = now_done
    done = Timeline(initial_done, tuple(flip_times), tuple(flip_values))
    return SprintIssueHistory(key, created, sprints, points, done)


@dataclass
class _SprintTally:
    committed_issues: int = 0
    committed_points: float = 0.0
    added_issues: int = 0
    added_points: float = 0.0
    removed_issues: int = 0
    removed_points: float = 0.0
    completed_issues: int = 0
    completed_points: float = 0.0
    final_issues: int = 0
    final_points: float = 0.0


def _tally_issue(tally: _SprintTally, issue: SprintIssueHistory, sprint: Sprint) -> None:
    start, end = sprint.start, sprint.scope_end
    assert start is not None and end is not None
    in_at_start, in_at_end = issue.in_sprint_at(sprint.id, start), issue.in_sprint_at(sprint.id, end)
    if in_at_start:
        tally.committed_issues += 1
        tally.committed_points += issue.points_at(start)
        if not in_at_end:
            tally.removed_issues += 1
            tally.removed_points += issue.points_at(start)
    if in_at_end:
        tally.final_issues += 1
        tally.final_points += issue.points_at(end)
        if not in_at_start:
            tally.added_issues += 1
            tally.added_points += issue.points_at(end)
        done_since = issue.done_since(end)
        if done_since is not None and done_since >= start:
            tally.completed_issues += 1
            tally.completed_points += issue.points_at(end)


def sprint_velocity_rows(issues: Iterable[SprintIssueHistory], sprints: Iterable[Sprint]) -> list[MetricRow]:
    """Metric `sprint_velocity` per started sprint (active or closed; future ones are skipped), period
    = sprint start day, dimensions board_id, sprint_id, sprint_name, sprint_state. Measures: the tallies
    above, and for closed sprints `completed_points_rolling_avg_3`: the mean completed points of this
    sprint and up to two closed sprints before it on the same board (by completion time; fewer while
    the board has fewer)."""
    # A future sprint may carry planned dates, but nothing has been committed to it yet.
    started = {
        s.id: s
        for s in sprints
        if s.state != "future" and s.start is not None and s.scope_end is not None and s.scope_end >= s.start
    }
    tallies = {sprint_id: _SprintTally() for sprint_id in started}
    for issue in issues:
        for sprint_id in frozenset().union(*issue.sprint_ids.all_values()):
            if sprint_id in started:
                _tally_issue(tallies[sprint_id], issue, started[sprint_id])

    rolling: dict[str, float] = {}
    closed_by_board: dict[str | None, list[Sprint]] = defaultdict(list)
    for sprint in started.values():
        if sprint.state == "closed" and sprint.complete is not None:
            closed_by_board[sprint.board_id].append(sprint)
    for board_sprints in closed_by_board.values():
        board_sprints.sort(key=lambda s: (s.complete, s.id))
        for position, sprint in enumerate(board_sprints):
            window = board_sprints[max(0, position - ROLLING_WINDOW + 1) : position + 1]
            rolling[sprint.id] = sum(tallies[s.id].completed_points for s in window) / len(window)

    rows = []
    for sprint in sorted(started.values(), key=lambda s: (s.start, s.id)):
        dimensions = MetricRow.dims(
            board_id=sprint.board_id, sprint_id=sprint.id, sprint_name=sprint.name, sprint_state=sprint.state
        )
        period = utc_day(sprint.start)  # type: ignore[arg-type]
        tally = tallies[sprint.id]
        for measure in fields(tally):
            value = float(getattr(tally, measure.name))
            rows.append(MetricRow("sprint_velocity", measure.name, value, period=period, dimensions=dimensions))
        if sprint.id in rolling:
            rolling_measure = f"completed_points_rolling_avg_{ROLLING_WINDOW}"
            rows.append(
                MetricRow("sprint_velocity", rolling_measure, rolling[sprint.id], period=period, dimensions=dimensions)
            )
    return rows
