"""Flow metrics as the open-source jira-agile-metrics tool computes them: a workflow of stages mapped from
Jira statuses, each issue's status changelog replayed into the first date it entered each stage, and from
those dates cycle time (per issue type: count, mean, p50/p85/p95), throughput, WIP and issues by stage.

Replay rules (jira-agile-metrics `calculate_cycle_times`):
- the status at creation is the `from` of the first status change, or the current status if it never
  changed; it counts as entered on the creation date;
- each stage keeps the first date it was entered; any entry into a stage (a move backwards included)
  clears the dates of every later stage, so a later stage entered again gets its new, later date;
- statuses mapped to no stage are ignored (they neither set nor clear dates) and reported per record;
- after the replay, a stage with no date takes the date of the next later stage that has one (skipped
  stages are backfilled), so an issue moved straight from the backlog to done, or created in done, has
  committed date = done date and a cycle time of 0 days, as in jira-agile-metrics;
- dates are whole UTC days and cycle time = done date - committed date in whole days (the tool uses the
  change's local date; we use UTC so every connector buckets days alike).
WIP and issues-by-stage follow the tool's cumulative-flow view: they use the final replayed dates, so an
issue moved back out of done no longer counts as done on the days it was there.
Pure: no I/O, no Dagster, no client library."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from dfx_pipelines.connectors.jira.metrics_common import (
    JsonObject,
    change_histories,
    days_in_range,
    field_timeline,
    parse_jira_timestamp,
    required,
    utc_day,
)
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow

PERCENTILES = (50, 85, 95)


@dataclass(frozen=True)
class Stage:
    """One workflow stage and the Jira statuses it covers: by id (board columns give ids, stable across
    renames) and/or by name (explicit config; matched case-insensitively, as jira-agile-metrics does)."""

    name: str
    statuses: tuple[str, ...] = ()
    status_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Workflow:
    """Ordered stages; cycle time runs from entering `committed_stage` to entering `done_stage`."""

    stages: tuple[Stage, ...]
    committed_stage: str
    done_stage: str
    _index_by_status_id: dict[str, int] = field(init=False, repr=False, compare=False)
    _index_by_status_name: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = [stage.name for stage in self.stages]
        if not names:
            raise ConfigError("a workflow needs at least one stage")
        if len(set(names)) != len(names):
            raise ConfigError(f"workflow stage names repeat: {names}")
        for role, stage_name in (("committed", self.committed_stage), ("done", self.done_stage)):
            if stage_name not in names:
                raise ConfigError(f"{role} stage {stage_name!r} is not one of the workflow stages {names}")
        if names.index(self.committed_stage) >= names.index(self.done_stage):
            raise ConfigError(
                f"committed stage {self.committed_stage!r} must come before done stage {self.done_stage!r}"
            )
        by_id: dict[str, int] = {}
        by_name: dict[str, int] = {}
        for index, stage in enumerate(self.stages):
            status_ids, status_names = [str(i) for i in stage.status_ids], [s.lower() for s in stage.statuses]
            for lookup, keys in ((by_id, status_ids), (by_name, status_names)):
                for key in keys:
                    # A status in two stages would make the replay depend on dict order; refuse it.
                    if key in lookup and lookup[key] != index:
                        raise ConfigError(f"status {key!r} is mapped to two stages")
                    lookup[key] = index
        object.__setattr__(self, "_index_by_status_id", by_id)
        object.__setattr__(self, "_index_by_status_name", by_name)

    @property
    def stage_names(self) -> tuple[str, ...]:
        return tuple(stage.name for stage in self.stages)

    @property
    def committed_index(self) -> int:
        return self.stage_names.index(self.committed_stage)

    @property
    def done_index(self) -> int:
        return self.stage_names.index(self.done_stage)

    def stage_index(self, status_id: str | None, status_name: str | None) -> int | None:
        """The stage a status belongs to (by id first, then by name), or None when unmapped."""
        if status_id is not None and str(status_id) in self._index_by_status_id:
            return self._index_by_status_id[str(status_id)]
        if status_name is not None:
            return self._index_by_status_name.get(status_name.lower())
        return None


def workflow_from_config(config: Mapping[str, Any]) -> Workflow:
    """From explicit config: `{"stages": [{"name": "In Progress", "statuses": ["In Progress", "Review"],
    "status_ids": ["3"]}, ...], "committed": "In Progress", "done": "Done"}` (`status_ids` optional)."""
    try:
        stages = tuple(
            Stage(
                name=str(stage["name"]),
                statuses=tuple(str(s) for s in stage.get("statuses", ())),
                status_ids=tuple(str(s) for s in stage.get("status_ids", ())),
            )
            for stage in config["stages"]
        )
        return Workflow(stages, str(config["committed"]), str(config["done"]))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"workflow config needs stages[name, statuses], committed and done: missing {exc}") from None


def workflow_from_board_configuration(configuration: JsonObject, committed_stage: str, done_stage: str) -> Workflow:
    """From `/rest/agile/1.0/board/{id}/configuration`: one stage per column, in board order, covering the
    column's status ids."""
    columns = (configuration.get("columnConfig") or {}).get("columns") or []
    stages = tuple(
        Stage(name=column["name"], status_ids=tuple(str(status["id"]) for status in column.get("statuses") or ()))
        for column in columns
    )
    return Workflow(stages, committed_stage, done_stage)


@dataclass(frozen=True, slots=True)
class StatusChange:
    at: datetime
    status_id: str | None
    status_name: str | None


@dataclass(frozen=True, slots=True)
class IssueStatusHistory:
    """The compact facts cycle time needs; `statuses` starts with the status at creation."""

    key: str
    issue_type: str
    project: str
    created: datetime
    statuses: tuple[StatusChange, ...]


def _status_side(item: JsonObject, side: str) -> tuple[str | None, str | None]:
    status_id = item.get(side)
    return (None if status_id is None else str(status_id), item.get(f"{side}String"))


def issue_status_history(issue_json: JsonObject, histories: Sequence[JsonObject] | None = None) -> IssueStatusHistory:
    """Adapter from a search/issue JSON (`fields`: created, issuetype, project, status; `changelog`)."""
    fields = issue_json.get("fields") or {}
    created = parse_jira_timestamp(required(issue_json, "fields", "created"))
    current = fields.get("status") or {}
    timeline = field_timeline(
        change_histories(issue_json, histories),
        "status",
        "status",
        _status_side,
        (None if current.get("id") is None else str(current["id"]), current.get("name")),
    )
    statuses = [StatusChange(created, *timeline.initial)]
    statuses += [StatusChange(at, *value) for at, value in zip(timeline.change_times, timeline.change_values)]
    return IssueStatusHistory(
        key=str(required(issue_json, "key")),
        issue_type=str((fields.get("issuetype") or {}).get("name") or ""),
        project=str((fields.get("project") or {}).get("key") or ""),
        created=created,
        statuses=tuple(statuses),
    )


@dataclass(frozen=True, slots=True)
class CycleTimeRecord:
    key: str
    issue_type: str
    project: str
    stage_dates: tuple[date | None, ...]  # one per workflow stage, after backward wipes and backfill
    committed_date: date | None
    done_date: date | None
    cycle_time_days: int | None  # None unless both committed and done dates exist
    unmapped_statuses: tuple[str, ...]  # statuses seen but mapped to no stage (ignored, reported)


def cycle_time_record(history: IssueStatusHistory, workflow: Workflow) -> CycleTimeRecord:
    stage_count = len(workflow.stages)
    dates: list[date | None] = [None] * stage_count
    unmapped: list[str] = []
    for change in history.statuses:
        index = workflow.stage_index(change.status_id, change.status_name)
        if index is None:
            label = change.status_name or change.status_id or ""
            if label not in unmapped:
                unmapped.append(label)
            continue
        if dates[index] is None:
            dates[index] = utc_day(change.at)
        for later in range(index + 1, stage_count):
            dates[later] = None
    next_date: date | None = None
    for index in reversed(range(stage_count)):
        if dates[index] is not None:
            next_date = dates[index]
        else:
            dates[index] = next_date
    committed, done = dates[workflow.committed_index], dates[workflow.done_index]
    # Backfill makes committed <= done whenever done is set; both are still checked, as the tool does.
    cycle_days = (done - committed).days if committed is not None and done is not None else None
    return CycleTimeRecord(
        key=history.key,
        issue_type=history.issue_type,
        project=history.project,
        stage_dates=tuple(dates),
        committed_date=committed,
        done_date=done if cycle_days is not None else None,
        cycle_time_days=cycle_days,
        unmapped_statuses=tuple(unmapped),
    )


def cycle_times(histories: Iterable[IssueStatusHistory], workflow: Workflow) -> Iterator[CycleTimeRecord]:
    """One record per issue, streamed in input order."""
    for history in histories:
        yield cycle_time_record(history, workflow)


def linear_percentile(sorted_values: Sequence[float], percent: float) -> float:
    """numpy/pandas `linear` interpolation: position (n - 1) * p between the two nearest ranks."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    position = (len(sorted_values) - 1) * percent / 100
    lower = math.floor(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


def _summary_rows(metric: str, values: list[int], dimensions: tuple[tuple[str, str], ...]) -> list[MetricRow]:
    values.sort()
    rows = [
        MetricRow(metric, "count", float(len(values)), dimensions=dimensions),
        MetricRow(metric, "mean", sum(values) / len(values), dimensions=dimensions),
    ]
    rows += [MetricRow(metric, f"p{p}", linear_percentile(values, p), dimensions=dimensions) for p in PERCENTILES]
    return rows


def cycle_time_rows(records: Iterable[CycleTimeRecord]) -> list[MetricRow]:
    """Metric `cycle_time_days`: count, mean, p50, p85, p95 over completed issues, per issue type and
    overall (no dimensions). Issues never committed or not done are left out. No rows for no issues."""
    by_type: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record.cycle_time_days is not None:
            by_type[record.issue_type].append(record.cycle_time_days)
    return _cycle_time_rows_of(by_type)


def _cycle_time_rows_of(by_type: dict[str, list[int]]) -> list[MetricRow]:
    if not by_type:
        return []
    rows = _summary_rows("cycle_time_days", [v for values in by_type.values() for v in values], ())
    for issue_type in sorted(by_type):
        rows += _summary_rows("cycle_time_days", by_type[issue_type], MetricRow.dims(issue_type=issue_type))
    return rows


def throughput_rows(records: Iterable[CycleTimeRecord], first_day: date, last_day: date) -> list[MetricRow]:
    """Metric `throughput`, measure `completed_issues`: issues whose done date is each day, 0 for none."""
    days = list(days_in_range(first_day, last_day))
    completed = dict.fromkeys(days, 0)
    for record in records:
        if record.cycle_time_days is not None and record.done_date in completed:
            completed[record.done_date] += 1
    return [MetricRow("throughput", "completed_issues", float(completed[day]), period=day) for day in days]


def wip_rows(records: Iterable[CycleTimeRecord], first_day: date, last_day: date) -> list[MetricRow]:
    """Metric `wip`, measure `issues`: at the end of each day, issues that had entered committed and not
    yet done (the tool's committed-column count minus done-column count)."""
    days = list(days_in_range(first_day, last_day))
    # Difference array over the range: +1 on the day an issue enters WIP, -1 on the day it leaves.
    delta = [0] * (len(days) + 1)
    for record in records:
        _add_wip(delta, record, first_day, last_day)
    return _wip_rows_of(delta, days)


def _add_wip(delta: list[int], record: CycleTimeRecord, first_day: date, last_day: date) -> None:
    start, done = record.committed_date, record.done_date
    if start is None or start > last_day or (done is not None and done <= first_day):
        return
    delta[max((start - first_day).days, 0)] += 1
    if done is not None and done <= last_day:
        delta[(done - first_day).days] -= 1


def _wip_rows_of(delta: list[int], days: list[date]) -> list[MetricRow]:
    rows, running = [], 0
    for offset, day in enumerate(days):
        running += delta[offset]
        rows.append(MetricRow("wip", "issues", float(running), period=day))
    return rows


class FlowTallies:
    """Cycle time, throughput and WIP reduced together from one stream of records: each record is added
    once and dropped; only what the rows need is kept (cycle days per issue type, a count per day of the
    range, WIP's difference array). `rows()` equals `cycle_time_rows`, `throughput_rows` and `wip_rows`
    over the same records."""

    def __init__(self, first_day: date | None, last_day: date | None, names: Iterable[str]):
        self.names = tuple(names)
        self.first_day, self.last_day = first_day, last_day
        self.by_type: dict[str, list[int]] = defaultdict(list)
        self.days: list[date] = []
        if "throughput" in self.names or "wip" in self.names:
            assert first_day is not None and last_day is not None
            self.days = list(days_in_range(first_day, last_day))
        self.completed = dict.fromkeys(self.days, 0)
        self.delta = [0] * (len(self.days) + 1)

    def add(self, record: CycleTimeRecord) -> None:
        if record.cycle_time_days is not None:
            if "cycle_time_days" in self.names:
                self.by_type[record.issue_type].append(record.cycle_time_days)
            if record.done_date in self.completed:
                self.completed[record.done_date] += 1
        if "wip" in self.names and self.first_day is not None and self.last_day is not None:
            _add_wip(self.delta, record, self.first_day, self.last_day)

    def rows(self) -> dict[str, list[MetricRow]]:
        found: dict[str, list[MetricRow]] = {}
        if "cycle_time_days" in self.names:
            found["cycle_time_days"] = _cycle_time_rows_of(self.by_type)
        if "throughput" in self.names:
            found["throughput"] = [
                MetricRow("throughput", "completed_issues", float(self.completed[day]), period=day) for day in self.days
            ]
        if "wip" in self.names:
            found["wip"] = _wip_rows_of(self.delta, self.days)
        return found


def stage_of(record: CycleTimeRecord, on: date) -> int | None:
    """The stage an issue was in at the end of `on` by its replayed dates: the latest stage entered by
    then. None before it entered any mapped stage."""
    current = None
    for index, entered in enumerate(record.stage_dates):
        if entered is not None and entered <= on:
            current = index
    return current


def stage_count_rows(records: Iterable[CycleTimeRecord], workflow: Workflow, on: date) -> list[MetricRow]:
    """Metric `issues_by_stage`, measure `issues`: how many issues were in each stage at the end of `on`,
    every stage listed (0 included), in workflow order."""
    counts = [0] * len(workflow.stages)
    for record in records:
        index = stage_of(record, on)
        if index is not None:
            counts[index] += 1
    return [
        MetricRow("issues_by_stage", "issues", float(count), period=on, dimensions=MetricRow.dims(stage=name))
        for name, count in zip(workflow.stage_names, counts)
    ]
