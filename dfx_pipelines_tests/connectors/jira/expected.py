"""Independent answers for the Jira metric tests, computed straight from the sandbox site's generated
records (`JiraSite`: issue records, replayed histories, sprints, worklogs): no HTTP, no connector code, no
reducers. Each follows the rule its metric documents (jira-agile-metrics replay, dbt_jira velocity)."""

import math
from collections import Counter, defaultdict
from datetime import UTC, date, datetime
from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog, sla
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite

STAGES = [status.id for _, (status,) in catalog.SOFTWARE_COLUMNS]  # one status per column in the sandbox
COMMITTED, DONE = 2, 4  # In Progress, Done


def day(seconds: float) -> date:
    return datetime.fromtimestamp(seconds, UTC).date()


def key(site: JiraSite, record) -> str:
    return site.key_of(record)


def project_key(record) -> str:
    return catalog.PROJECTS[record.project].key


def issues(site: JiraSite, *projects: str) -> list:
    return [r for r in site.issues if project_key(r) in projects]


NONE = "(none)"  # the connector's bucket for an issue without a value


def epic_of(site: JiraSite, record) -> str:
    if record.parent < 0 or catalog.ISSUE_TYPES[record.type].subtask:
        return NONE
    parent = site.issues[record.parent]
    return site.key_of(parent) if catalog.ISSUE_TYPES[parent.type] is catalog.EPIC else NONE


def issue_counts(site: JiraSite, projects: tuple[str, ...]) -> Counter:
    counts: Counter = Counter()
    for r in issues(site, *projects):
        spec = catalog.PROJECTS[r.project]
        counts[()] += 1
        counts[("project", spec.key)] += 1
        counts[("issue_type", catalog.ISSUE_TYPES[r.type].name)] += 1
        counts[("status_category", catalog.STATUS_BY_ID[r.status_id].category.key)] += 1
        counts[("priority", catalog.PRIORITIES[r.priority].name)] += 1
        counts[("epic", epic_of(site, r))] += 1
        counts[("team", catalog.TEAMS[r.team][1] if r.team >= 0 else NONE)] += 1
        for component in [spec.components[i] for i in r.components] or [NONE]:
            counts[("component", component)] += 1
    return counts


def status_moves(site: JiraSite, record, last: int | None = None) -> list[tuple[float, str]]:
    """(when, status id) from creation; `last` keeps only the newest N histories (a truncated changelog)."""
    histories = site.histories(record)
    if last is not None:
        histories = histories[-last:]
    moves = [(h.at, item) for h in histories for item in h.items if item[0] == "status"]
    initial = moves[0][1][1] if moves else record.status_id
    return [(record.created, str(initial))] + [(at, str(item[3])) for at, item in moves]


def cycle_dates(site: JiraSite, record, last: int | None = None) -> tuple[date | None, date | None]:
    """(committed date, done date) by first entry, backward moves clearing later stages, backfill."""
    dates: list[date | None] = [None] * len(STAGES)
    for at, status in status_moves(site, record, last):
        if status not in STAGES:
            continue
        index = STAGES.index(status)
        dates[index] = dates[index] or day(at)
        dates[index + 1 :] = [None] * (len(STAGES) - index - 1)
    following = None
    for index in reversed(range(len(STAGES))):
        dates[index] = following = dates[index] or following
    return dates[COMMITTED], dates[DONE]


def percentile(values: list[int], p: float) -> float:
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def cycle_time_summary(site: JiraSite, project: str, last: int | None = None) -> dict[str, dict[str, float]]:
    """Per issue type (and '' for all): count, mean, p50, p85, p95 of done − committed in days."""
    by_type: dict[str, list[int]] = defaultdict(list)
    for record in issues(site, project):
        committed, done = cycle_dates(site, record, last)
        if committed and done:
            days = (done - committed).days
            by_type[catalog.ISSUE_TYPES[record.type].name].append(days)
            by_type[""].append(days)
    return {
        name: {"count": len(v), "mean": sum(v) / len(v), **{f"p{p}": percentile(v, p) for p in (50, 85, 95)}}
        for name, v in by_type.items()
    }


def throughput_and_wip(site: JiraSite, project: str, days: list[date]) -> tuple[dict[date, int], dict[date, int]]:
    done_on: Counter = Counter()
    wip: Counter = Counter()
    for record in issues(site, project):
        committed, done = cycle_dates(site, record)
        if done:
            done_on[done] += 1
        for d in days:
            if committed and committed <= d and not (done and done <= d):
                wip[d] += 1
    return {d: done_on[d] for d in days}, {d: wip[d] for d in days}


def worklog_hours(site: JiraSite, projects: tuple[str, ...], days: list[date]) -> dict[tuple, float]:
    seconds: Counter = Counter()
    for record in issues(site, *projects):
        spec = catalog.PROJECTS[record.project]
        for worklog in site.worklogs(record):
            d = day(worklog.started)
            if d not in days:
                continue
            seconds[(d, ())] += worklog.seconds
            seconds[(d, (("project", spec.key),))] += worklog.seconds
            seconds[(d, (("epic", epic_of(site, record)),))] += worklog.seconds
            for component in [spec.components[i] for i in record.components] or [NONE]:
                seconds[(d, (("component", component),))] += worklog.seconds
    return {k: v / 3600 for k, v in seconds.items()}


def sla_tallies(site: JiraSite, project: str) -> dict[str, Counter]:
    """Per SLA name: met / breached / ongoing / ongoing_breached, from the site's status histories and the
    service desk's own goals (the provider's rules, not the connector's)."""
    tallies: dict[str, Counter] = defaultdict(Counter)
    for record in issues(site, project):
        timeline = status_moves(site, record)
        for name, (completed, ongoing) in (
            ("Time to first response", sla.first_response(timeline, site.now_epoch)),
            ("Time to resolution", sla.resolution(timeline, site.now_epoch)),
        ):
            for cycle in completed:
                tallies[name]["breached" if cycle["breached"] else "met"] += 1
            if ongoing:
                tallies[name]["ongoing_breached" if ongoing["breached"] else "ongoing"] += 1
    return tallies


def _timeline(site: JiraSite, record, field: str, initial, parse):
    """[(when, value)] of one field from creation: the first change's `from` side, else the current value."""
    changes = [(h.at, item) for h in site.histories(record) for item in h.items if item[0] == field]
    start = parse(changes[0][1], "from") if changes else initial
    return [(record.created, start)] + [(at, parse(item, "to")) for at, item in changes]


def _at(timeline: list, moment: float):
    value = timeline[0][1]
    for at, new in timeline:
        if at <= moment:
            value = new
    return value


def velocity(site: JiraSite, board_id: int) -> dict[str, tuple[float, float]]:
    """Per started sprint of the board: (committed points at start, completed points within the sprint)."""

    def sprint_ids(item: Any, side: str) -> frozenset[str]:
        return frozenset(s.strip() for s in str(item[1 if side == "from" else 3] or "").split(",") if s.strip())

    points = lambda item, side: float(item[2 if side == "from" else 4]) if item[2 if side == "from" else 4] else None  # noqa: E731
    done_ids = {s.id for s in catalog.STATUSES if s.category is catalog.CATEGORY_DONE}
    result = {}
    for sprint in [s for s in site.sprints if s.board_id == board_id and s.state != "future"]:
        start, end = sprint.start, sprint.complete or sprint.end
        committed = completed = 0.0
        for record in site.issues:
            in_sprint = _timeline(
                site, record, catalog.SPRINT_FIELD, frozenset(str(s) for s in record.sprints), sprint_ids
            )
            if not any(str(sprint.id) in value for _, value in in_sprint):
                continue
            estimate = _timeline(site, record, catalog.STORY_POINTS_FIELD, record.points, points)
            status = _timeline(
                site, record, "status", record.status_id, lambda item, side: str(item[1 if side == "from" else 3])
            )
            resolved = _timeline(
                site,
                record,
                "resolution",
                record.resolution >= 0,
                lambda item, side: bool(item[1 if side == "from" else 3]),
            )
            if record.created <= start and str(sprint.id) in _at(in_sprint, start):
                committed += _at(estimate, start) or 0.0
            if record.created <= end and str(sprint.id) in _at(in_sprint, end):
                flips = sorted({at for at, _ in status[1:]} | {at for at, _ in resolved[1:]})
                # used within this iteration only: the loop variables it reads are the current ones
                is_done = lambda t: _at(status, t) in done_ids or _at(resolved, t)  # noqa: E731, B023
                if is_done(end):
                    became = max(
                        [t for t in flips if t <= end and is_done(t) and not is_done(t - 0.0005)] or [record.created]
                    )
                    if became >= start:
                        completed += _at(estimate, end) or 0.0
        result[str(sprint.id)] = (committed, completed)
    return result
