"""One generated issue's life, replayed from its seed: status moves, sprint scope changes, points, worklogs.

`plan_issue` is a pure function of the issue's creation attributes and the site's frozen sprint calendar,
so the site stores only current values and replays histories when a response needs them (200,000 issues
would not fit as dicts). The walk follows a workflow forwards with skipped stages, backward moves and
reopenings; a few "churn" issues bounce between In Progress and In Review often enough that Jira's
embedded changelog truncates them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.records import (
    ChangeItem,
    CommentRecord,
    History,
    IssuePlan,
    IssueRecord,
    WorklogRecord,
    points_text,
)

HOUR = 3600.0
DAY = 24 * HOUR
POINT_CHOICES = (1.0, 2.0, 3.0, 5.0, 8.0, 13.0)
WORKLOG_SECONDS = (900, 1800, 3600, 5400, 7200, 14400, 28800)
ESTIMABLE_TYPE_IDS = frozenset({catalog.STORY.id, catalog.TASK.id, catalog.BUG.id})
CHURN_EVERY = 37  # issue nums with num % CHURN_EVERY == CHURN_AT churn
CHURN_AT = 5
CHURN_BOUNCES = 26  # 52 status histories: more than the 40 an embedded changelog holds


@dataclass(frozen=True, slots=True)
class SprintSlot:
    """A sprint's calendar as frozen at generation, so replays do not depend on later sprint edits."""

    id: int
    name: str
    start: float | None
    complete: float | None  # None while active or future


@dataclass(frozen=True)
class PlanContext:
    seed: int
    horizon: float  # the site's clock at generation: nothing happens after it
    sprints_by_project: dict[int, tuple[SprintSlot, ...]]  # scrum-board projects only, by start


def issue_rng(seed: int, num: int) -> random.Random:
    return random.Random(seed * 1_000_003 + num)


def workflow_of(record: IssueRecord) -> tuple[catalog.Status, ...]:
    project = catalog.PROJECTS[record.project]
    return catalog.SERVICE_WORKFLOW if project.type_key == "service_desk" else catalog.SOFTWARE_WORKFLOW


def status_item(old: catalog.Status, new: catalog.Status) -> ChangeItem:
    return ("status", old.id, old.name, new.id, new.name)


def resolution_item(old: catalog.Resolution | None, new: catalog.Resolution | None) -> ChangeItem:
    return (
        "resolution",
        old.id if old else None,
        old.name if old else None,
        new.id if new else None,
        new.name if new else None,
    )


def points_item(old: float | None, new: float | None) -> ChangeItem:
    # Number custom fields carry their values in the *String sides only, as Jira does.
    return (catalog.STORY_POINTS_FIELD, None, points_text(old), None, points_text(new))


def sprint_item(old: tuple[SprintSlot, ...], new: tuple[SprintSlot, ...]) -> ChangeItem:
    # The Sprint field's sides are comma-separated ids and names; an empty side is "" in Jira.
    return (
        catalog.SPRINT_FIELD,
        ", ".join(str(s.id) for s in old),
        ", ".join(s.name for s in old),
        ", ".join(str(s.id) for s in new),
        ", ".join(s.name for s in new),
    )


def _status_walk(rng: random.Random, record: IssueRecord, context: PlanContext) -> list[tuple[float, int, int, int]]:
    """(at, from index, to index, resolution index or -1) per move through the workflow."""
    workflow = workflow_of(record)
    last = len(workflow) - 1
    issue_type = catalog.ISSUE_TYPES[record.type]
    # Most issues flow in days; a third stall for weeks, so a site always has work in progress.
    pace = (rng.uniform(0.4, 3.0) if rng.random() < 0.67 else rng.uniform(5.0, 40.0)) * DAY
    pace *= 4 if issue_type is catalog.EPIC else 1
    churn = record.num % CHURN_EVERY == CHURN_AT and workflow is catalog.SOFTWARE_WORKFLOW
    moves: list[tuple[float, int, int, int]] = []
    at, index, bounces = record.created, 0, 0
    while True:
        at += rng.expovariate(1.0 / pace) + 60.0
        if at >= context.horizon:
            break
        roll = rng.random()
        if churn and index == 3 and bounces < CHURN_BOUNCES:
            target = 2  # In Review back to In Progress, over and over
            bounces += 1
            at = min(at, moves[-1][0] + rng.uniform(0.2, 3.0) * HOUR) if moves else at
        elif churn and index == 2 and 0 < bounces < CHURN_BOUNCES:
            target = 3
            at = min(at, moves[-1][0] + rng.uniform(0.2, 3.0) * HOUR)
        elif index == last:
            if roll >= 0.08:
                break
            target = 2  # reopened
        elif roll < 0.10 and index > 1:
            target = index - 1
        elif roll < 0.22 and index + 2 <= last:
            target = index + 2
        else:
            target = index + 1
        resolution = (0 if rng.random() < 0.9 else 1) if target == last else -1
        moves.append((round(at, 3), index, target, resolution))
        index = target
    return moves


def _sprint_scope(
    rng: random.Random,
    record: IssueRecord,
    moves: list[tuple[float, int, int, int]],
    sprints: tuple[SprintSlot, ...],
    points: float | None,
    histories: list[History],
) -> float | None:
    """Adds Sprint-field and story-point histories; returns the points after them."""
    selected_at = next((at for at, _, target, _ in moves if target >= 1), None)
    if selected_at is None or not sprints:
        return points
    done_index = len(catalog.SOFTWARE_WORKFLOW) - 1

    def done_at(moment: float) -> bool:
        state = 0
        for at, _, target, _ in moves:
            if at > moment:
                break
            state = target
        return state == done_index

    started = [(s.start, s) for s in sprints if s.start is not None]
    upcoming = [s for start, s in started if start > selected_at]
    running = [s for start, s in started if start <= selected_at and (s.complete is None or s.complete > selected_at)]
    if rng.random() < 0.7 and upcoming:
        sprint = upcoming[0]  # planned before the sprint starts: committed scope
    elif running:
        sprint = running[0]  # pulled in mid-sprint: added scope
    else:
        return points
    author = record.assignee
    if points is None and rng.random() < 0.4:
        new_points = rng.choice(POINT_CHOICES)
        histories.append(History(round(selected_at, 3), author, (points_item(None, new_points),)))
        points = new_points
    member: tuple[SprintSlot, ...] = (sprint,)
    histories.append(History(round(selected_at + 1, 3), author, (sprint_item((), member),)))
    position = sprints.index(sprint)
    while True:
        window_start = max(sprint.start or selected_at, selected_at) + 1
        window_end = sprint.complete
        if window_end is None:
            break
        roll = rng.random()
        if roll < 0.05:
            at = rng.uniform(window_start, window_end)
            histories.append(History(round(at, 3), author, (sprint_item(member, member[:-1]),)))
            break
        if roll < 0.17 and points is not None:
            new_points = rng.choice([p for p in POINT_CHOICES if p != points])
            at = rng.uniform(window_start, window_end)
            histories.append(History(round(at, 3), author, (points_item(points, new_points),)))
            points = new_points
        if done_at(window_end) or position + 1 >= len(sprints) or sprints[position + 1].start is None:
            break
        position += 1
        sprint = sprints[position]
        carried = member + (sprint,)  # Jira keeps the closed sprint in the field and adds the next
        histories.append(History(round(window_end + 1, 3), author, (sprint_item(member, carried),)))
        member = carried
    return points


def plan_issue(record: IssueRecord, context: PlanContext) -> IssuePlan:
    rng = issue_rng(context.seed, record.num)
    issue_type = catalog.ISSUE_TYPES[record.type]
    workflow = workflow_of(record)
    estimable = issue_type.id in ESTIMABLE_TYPE_IDS and workflow is catalog.SOFTWARE_WORKFLOW
    initial_points = rng.choice(POINT_CHOICES) if estimable and rng.random() < 0.75 else None
    moves = _status_walk(rng, record, context)
    histories: list[History] = []
    for at, old, new, resolution in moves:
        items = [status_item(workflow[old], workflow[new])]
        if new == len(workflow) - 1:
            items.append(resolution_item(None, catalog.RESOLUTIONS[resolution]))
        elif old == len(workflow) - 1:
            items.append(resolution_item(catalog.RESOLUTION_DONE, None))
        histories.append(History(at, record.assignee, tuple(items)))
    points = initial_points
    sprints = context.sprints_by_project.get(record.project, ())
    if estimable and issue_type is not catalog.EPIC:
        points = _sprint_scope(rng, record, moves, sprints, points, histories)
    histories.sort(key=lambda history: history.at)

    worklogs: list[WorklogRecord] = []
    work_start = next((at for at, _, new, _ in moves if workflow[new].category is catalog.CATEGORY_IN_PROGRESS), None)
    if work_start is not None and issue_type is not catalog.EPIC:
        work_end = next((at for at, _, new, _ in moves if new == len(workflow) - 1), context.horizon - 120)
        for index in range(rng.choice((0, 1, 1, 2, 3))):
            started = round(rng.uniform(work_start, max(work_start, work_end)), 3)
            seconds = rng.choice(WORKLOG_SECONDS)
            created = round(min(started + seconds, context.horizon - 120), 3)
            updated = created if rng.random() < 0.9 else round(rng.uniform(created, context.horizon - 120), 3)
            author = rng.randrange(len(catalog.USERS))
            worklogs.append(WorklogRecord((record.num + 1) * 100 + index, started, seconds, created, updated, author))
    comments = [
        CommentRecord(
            (record.num + 1) * 10 + index, round(rng.uniform(record.created, context.horizon - 60), 3), record.reporter
        )
        for index in range(rng.choice((1, 1, 2)))
    ]
    return IssuePlan(histories, worklogs, comments, initial_points)
