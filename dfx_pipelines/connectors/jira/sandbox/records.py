"""Compact in-memory records of the sandbox site (issues, sprints, change items) and Jira's timestamp format."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

# A change item as Jira's ChangeDetails: (fieldId, from, fromString, to, toString); None = Jira's null.
ChangeItem = tuple[str, "str | None", "str | None", "str | None", "str | None"]


@dataclass(frozen=True, slots=True)
class History:
    """One changelog entry: when, by whom (index into catalog.USERS), and the field changes it made."""

    at: float  # epoch seconds, millisecond precision
    author: int
    items: tuple[ChangeItem, ...]


@dataclass(frozen=True, slots=True)
class WorklogRecord:
    id: int
    started: float
    seconds: int
    created: float
    updated: float
    author: int


@dataclass(frozen=True, slots=True)
class CommentRecord:
    id: int
    created: float
    author: int


@dataclass(slots=True)
class SprintRecord:
    id: int
    board_id: int
    name: str
    state: str  # "closed" | "active" | "future"
    start: float | None
    end: float | None
    complete: float | None
    created: float
    goal: str = ""


class IssueRecord:
    """One issue, compactly: creation attributes (which seed its generated history) and current values.

    Histories, worklogs and comments of generated issues are not stored: they are replayed on demand from
    the issue's seed (`plan.plan_issue`); only mutations made afterwards are kept, in `extra_*`."""

    __slots__ = (
        "assignee",
        "components",
        "created",
        "extra_histories",
        "extra_worklogs",
        "generated",
        "key_num",
        "labels",
        "num",
        "parent",
        "planned_histories",
        "points",
        "priority",
        "project",
        "reporter",
        "resolution",
        "resolved",
        "sprints",
        "status_changed",
        "status_id",
        "team",
        "tier",
        "type",
        "updated",
    )  # fmt: skip

    def __init__(self, **values: object):
        self.parent = -1
        self.generated = True
        self.planned_histories = 0
        self.extra_histories: list[History] | None = None
        self.extra_worklogs: list[WorklogRecord] | None = None
        for name, value in values.items():
            setattr(self, name, value)

    num: int  # position in the site's issue list; id = 10000 + num
    project: int  # index into catalog.PROJECTS
    key_num: int
    type: int  # index into catalog.ISSUE_TYPES
    created: float
    parent: int  # num of the parent issue, -1 for none
    components: tuple[int, ...]
    priority: int
    assignee: int
    reporter: int
    team: int  # -1 for none
    tier: int  # -1 for none
    labels: tuple[str, ...]
    generated: bool
    status_id: str
    resolution: int  # index into catalog.RESOLUTIONS, -1 for unresolved
    resolved: float | None
    points: float | None
    sprints: tuple[int, ...]
    updated: float
    status_changed: float
    planned_histories: int

    @property
    def id(self) -> int:
        return 10000 + self.num


@dataclass
class IssuePlan:
    """Everything the generator decides about one issue's life, replayable from its seed."""

    histories: list[History] = field(default_factory=list)
    worklogs: list[WorklogRecord] = field(default_factory=list)
    comments: list[CommentRecord] = field(default_factory=list)
    initial_points: float | None = None


def epoch(moment: datetime) -> float:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the sandbox works in aware UTC")
    return round(moment.timestamp(), 3)


def from_epoch(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


def jira_time(seconds: float | None) -> str | None:
    """Jira's REST timestamp: `2024-01-31T10:00:00.000+0000`."""
    if seconds is None:
        return None
    moment = from_epoch(seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def jira_date(seconds: float | None) -> str | None:
    return None if seconds is None else from_epoch(seconds).strftime("%Y-%m-%d")


def points_text(points: float | None) -> str | None:
    return None if points is None else f"{points:g}"
