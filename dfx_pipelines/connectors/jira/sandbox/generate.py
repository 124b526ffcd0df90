"""`JiraSite`: a deterministic, seeded Jira site (projects, boards, sprints, issues, worklogs) with a clock.

Same seed, same size, same `now` → the same site, byte for byte. Issues are compact `IssueRecord`s; their
generated histories, worklogs and comments are replayed from per-issue seeds (`plan.plan_issue`) and
cached for the few issues a response is rendering. Mutations (`mutations.py`) append to the record.
"""

from __future__ import annotations

import bisect
import random
import threading
from array import array
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.mutations import SiteMutations
from dfx_pipelines.connectors.jira.sandbox.plan import DAY, PlanContext, SprintSlot, plan_issue
from dfx_pipelines.connectors.jira.sandbox.records import (
    CommentRecord,
    History,
    IssuePlan,
    IssueRecord,
    SprintRecord,
    WorklogRecord,
    epoch,
    from_epoch,
)

DEFAULT_NOW = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)  # fixed, so a seed alone fixes the data
WINDOW_DAYS = 365
SPRINT_DAYS = 14
FUTURE_SPRINTS = 2
TYPE_WEIGHTS_SOFTWARE = (
    (catalog.STORY, 45),
    (catalog.BUG, 22),
    (catalog.TASK, 15),
    (catalog.SUBTASK, 10),
    (catalog.EPIC, 4),
)
PLAN_CACHE_SIZE = 4096


class JiraSite(SiteMutations):
    """A generated Jira site. `now` defaults to a fixed instant (`DEFAULT_NOW`) so the seed alone decides
    the data; `advance` moves the clock (tokens expire, relative JQL dates move, mutations are stamped).

    `canary` is written into every issue's description, comments and attachment names (and a distinct
    `worklog_canary` into worklog comments) so tests can prove a client never fetched them."""

    def __init__(self, seed: int = 11, issues: int = 300, now: datetime | None = None, canary: str | None = None):
        if issues < 0:
            raise ValueError("issues must be >= 0")
        self.seed = seed
        self.canary = canary or f"DFX-CANARY-{seed}"
        self.worklog_canary = f"DFX-WORKLOG-CANARY-{seed}"
        self._now = epoch(now or DEFAULT_NOW)
        self.generated_at = self._now
        self.lock = threading.RLock()
        self.version = 0  # bumped by every mutation; search caches key on it
        self.issues: list[IssueRecord] = []
        self.sprints: list[SprintRecord] = []
        self._key_index: dict[tuple[int, int], int] = {}
        self.subtasks: dict[int, list[int]] = {}  # parent num -> sub-task nums, for the `subtasks` field
        self._plan_cache: OrderedDict[int, IssuePlan] = OrderedDict()
        self._worklog_updated = array("d")  # sorted by (updated, id): /worklog/updated pages through it
        self._worklog_ids = array("q")
        self._next_key = [1] * len(catalog.PROJECTS)
        rng = random.Random(seed)
        self._generate_sprints(rng)
        self.context = PlanContext(
            seed=seed,
            horizon=self._now,
            sprints_by_project={
                index: tuple(
                    SprintSlot(s.id, s.name, s.start, s.complete)
                    for s in self.sprints
                    if s.board_id == project.board[0]
                )
                for index, project in enumerate(catalog.PROJECTS)
                if project.board and project.board[2] == "scrum"
            },
        )
        self._generate_issues(rng, issues)

    # ------------------------------------------------------------ clock

    @property
    def now(self) -> datetime:
        return from_epoch(self._now)

    @property
    def now_epoch(self) -> float:
        return self._now

    def advance(self, delta: timedelta) -> datetime:
        if delta < timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        with self.lock:
            self._now = round(self._now + delta.total_seconds(), 3)
        return self.now

    # ------------------------------------------------------------ generation

    def _generate_sprints(self, rng: random.Random) -> None:
        window_start = self._now - WINDOW_DAYS * DAY
        sprint_id = 1
        for project in catalog.PROJECTS:
            if not project.board or project.board[2] != "scrum":
                continue
            board_id = project.board[0]
            start = window_start + rng.uniform(0, SPRINT_DAYS) * DAY
            number = 1
            future_left = FUTURE_SPRINTS
            while future_left:
                end = start + SPRINT_DAYS * DAY
                name = f"{project.key} Sprint {number}"
                if end <= self._now:
                    complete = min(end + rng.uniform(0, 6) * 3600, self._now)
                    record = SprintRecord(
                        sprint_id, board_id, name, "closed", start, end, round(complete, 3), start - 2 * DAY
                    )
                elif start <= self._now:
                    record = SprintRecord(sprint_id, board_id, name, "active", start, end, None, start - 2 * DAY)
                else:
                    # Future sprints carry no dates in Jira until someone plans them.
                    record = SprintRecord(sprint_id, board_id, name, "future", None, None, None, self._now - DAY)
                    future_left -= 1
                record.goal = f"Sprint goal {number}"
                for attr in ("start", "end", "created"):
                    value = getattr(record, attr)
                    setattr(record, attr, None if value is None else round(value, 3))
                self.sprints.append(record)
                sprint_id, number, start = sprint_id + 1, number + 1, end

    def _pick_type(self, rng: random.Random, project: catalog.ProjectSpec, key_num: int) -> catalog.IssueType:
        if project.type_key == "service_desk":
            return catalog.SERVICE_REQUEST
        if key_num <= 2:
            return catalog.EPIC  # every software project starts with epics to hang stories on
        types = [issue_type for issue_type, _ in TYPE_WEIGHTS_SOFTWARE]
        weights = [weight for _, weight in TYPE_WEIGHTS_SOFTWARE]
        return rng.choices(types, weights)[0]

    def _generate_issues(self, rng: random.Random, count: int) -> None:
        window_start = self._now - WINDOW_DAYS * DAY
        step = (WINDOW_DAYS * DAY - 3600) / max(count, 1)
        projects = catalog.PROJECTS
        weights = [p.weight for p in projects]
        epics: list[list[int]] = [[] for _ in projects]
        standard: list[list[int]] = [[] for _ in projects]
        worklog_index: list[tuple[float, int]] = []
        for num in range(count):
            project_index = rng.choices(range(len(projects)), weights)[0]
            project = projects[project_index]
            key_num = self._next_key[project_index]
            issue_type = self._pick_type(rng, project, key_num)
            if issue_type is catalog.SUBTASK and not standard[project_index]:
                issue_type = catalog.TASK
            parent = -1
            if issue_type is catalog.SUBTASK:
                parent = rng.choice(standard[project_index][-50:])
            elif issue_type is not catalog.EPIC and epics[project_index] and rng.random() < 0.6:
                parent = rng.choice(epics[project_index][-8:])
            created = round(window_start + num * step + rng.uniform(0, step * 0.9), 3)
            record = IssueRecord(
                num=num,
                project=project_index,
                key_num=key_num,
                type=catalog.ISSUE_TYPES.index(issue_type),
                created=created,
                parent=parent,
                components=tuple(sorted(rng.sample(range(len(project.components)), rng.choice((0, 1, 1, 2))))),
                priority=rng.choices(range(5), (5, 20, 50, 20, 5))[0],
                assignee=rng.randrange(len(catalog.USERS)),
                reporter=rng.randrange(len(catalog.USERS)),
                team=project_index % len(catalog.TEAMS) if rng.random() < 0.85 else -1,
                tier=rng.randrange(len(catalog.CUSTOMER_TIERS)) if rng.random() < 0.5 else -1,
                labels=tuple(sorted(rng.sample(catalog.LABELS, rng.choice((0, 1, 2))))),
            )
            self._register(record)
            plan = plan_issue(record, self.context)
            self._apply_plan(record, plan)
            for worklog in plan.worklogs:
                worklog_index.append((worklog.updated, worklog.id))
            if issue_type is catalog.EPIC:
                epics[project_index].append(num)
            elif issue_type is not catalog.SUBTASK:
                standard[project_index].append(num)
        worklog_index.sort()
        self._worklog_updated = array("d", (updated for updated, _ in worklog_index))
        self._worklog_ids = array("q", (worklog_id for _, worklog_id in worklog_index))

    def _register(self, record: IssueRecord) -> None:
        self.issues.append(record)
        self._key_index[(record.project, record.key_num)] = record.num
        self._next_key[record.project] = record.key_num + 1
        if record.parent >= 0 and catalog.ISSUE_TYPES[record.type].subtask:
            self.subtasks.setdefault(record.parent, []).append(record.num)

    def _apply_plan(self, record: IssueRecord, plan: IssuePlan) -> None:
        """Sets the record's current values from its replayed history."""
        workflow_first = (
            catalog.SERVICE_WORKFLOW
            if catalog.PROJECTS[record.project].type_key == "service_desk"
            else catalog.SOFTWARE_WORKFLOW
        )[0]
        record.status_id, record.resolution, record.resolved = workflow_first.id, -1, None
        record.points, record.sprints, record.status_changed = plan.initial_points, (), record.created
        record.planned_histories = len(plan.histories)
        for history in plan.histories:
            self._apply_history(record, history)
        latest = [record.created] + [h.at for h in plan.histories] + [w.updated for w in plan.worklogs]
        latest += [c.created for c in plan.comments]
        record.updated = max(latest)

    @staticmethod
    def _apply_history(record: IssueRecord, history: History) -> None:
        for field_id, _, _, to, to_string in history.items:
            if field_id == "status":
                old_category = catalog.STATUS_BY_ID[record.status_id].category
                record.status_id = str(to)
                if catalog.STATUS_BY_ID[record.status_id].category is not old_category:
                    record.status_changed = history.at
            elif field_id == "resolution":
                record.resolution = -1 if to is None else [r.id for r in catalog.RESOLUTIONS].index(to)
                record.resolved = None if to is None else history.at
            elif field_id == catalog.STORY_POINTS_FIELD:
                record.points = None if to_string in (None, "") else float(to_string)
            elif field_id == catalog.SPRINT_FIELD:
                record.sprints = tuple(int(part) for part in str(to or "").split(",") if part.strip())

    # ------------------------------------------------------------ lookups

    def plan(self, record: IssueRecord) -> IssuePlan:
        if not record.generated:
            return IssuePlan()
        with self.lock:
            cached = self._plan_cache.get(record.num)
            if cached is not None:
                self._plan_cache.move_to_end(record.num)
                return cached
        plan = plan_issue(record, self.context)
        with self.lock:
            self._plan_cache[record.num] = plan
            if len(self._plan_cache) > PLAN_CACHE_SIZE:
                self._plan_cache.popitem(last=False)
        return plan

    def key_of(self, record: IssueRecord) -> str:
        return f"{catalog.PROJECTS[record.project].key}-{record.key_num}"

    def find(self, key_or_id: str) -> IssueRecord | None:
        """An issue by key (`ALPHA-12`) or id (`10011`)."""
        text = str(key_or_id).strip()
        if text.isdigit():
            num = int(text) - 10000
            return self.issues[num] if 0 <= num < len(self.issues) else None
        project_key, _, number = text.upper().rpartition("-")
        project_index = next((i for i, p in enumerate(catalog.PROJECTS) if p.key == project_key), None)
        if project_index is None or not number.isdigit():
            return None
        index = self._key_index.get((project_index, int(number)))
        return None if index is None else self.issues[index]

    def histories(self, record: IssueRecord) -> list[History]:
        """The issue's whole changelog, oldest first."""
        return self.plan(record).histories + list(record.extra_histories or ())

    def worklogs(self, record: IssueRecord) -> list[WorklogRecord]:
        return self.plan(record).worklogs + list(record.extra_worklogs or ())

    def comments(self, record: IssueRecord) -> list[CommentRecord]:
        return self.plan(record).comments

    def worklog(self, worklog_id: int) -> tuple[IssueRecord, WorklogRecord] | None:
        num = worklog_id // 100 - 1
        if not 0 <= num < len(self.issues):
            return None
        record = self.issues[num]
        found = next((w for w in self.worklogs(record) if w.id == worklog_id), None)
        return None if found is None else (record, found)

    def worklogs_updated_since(self, since: float, until: float) -> list[tuple[float, int]]:
        """(updated, worklog id) with since < updated <= until, oldest first."""
        start = bisect.bisect_right(self._worklog_updated, since)
        stop = bisect.bisect_right(self._worklog_updated, until)
        return list(zip(self._worklog_updated[start:stop], self._worklog_ids[start:stop]))

    def sprint(self, sprint_id: int) -> SprintRecord | None:
        return next((s for s in self.sprints if s.id == sprint_id), None)

    def project_index(self, key_or_id: str) -> int | None:
        text = str(key_or_id)
        return next((i for i, p in enumerate(catalog.PROJECTS) if text in (p.key, p.id) or text.upper() == p.key), None)

    # ------------------------------------------------------------ independent answers for tests

    def issues_in_projects(self, *keys: str) -> list[IssueRecord]:
        wanted = {self.project_index(key) for key in keys}
        return [record for record in self.issues if record.project in wanted]
