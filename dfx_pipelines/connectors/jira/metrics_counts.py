"""Counting reducers over Jira issues, worklogs and service-management SLAs: issue counts per dimension
value, created vs resolved per day, logged hours per day by project, component and epic, and SLA
cycles met / breached / ongoing per SLA. Each reducer reads its iterable once and keeps only counters.
Pure: no I/O, no Dagster, no client library."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from dfx_pipelines.connectors.jira.metrics_common import (
    JsonObject,
    days_in_range,
    optional_name,
    parse_jira_timestamp,
    parse_optional_timestamp,
    required,
    utc_day,
)
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow

# The bucket of issues without a value in a dimension (no component, no epic, no priority): a named row
# a person can read, not an empty `component=`.
NO_VALUE = "(none)"
BUILT_IN_DIMENSIONS = ("project", "issue_type", "status_category", "priority", "component", "epic")
EPIC_HIERARCHY_LEVEL = 1

Dimensions = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class IssueAttributes:
    """What the counting reducers need about one issue; multi-valued dimensions hold every value."""

    id: str
    key: str
    project: str
    issue_type: str
    status_category: str  # statusCategory.key: "new", "indeterminate" or "done" (stable, not localised)
    priority: str | None
    components: tuple[str, ...]
    epic: str | None  # the epic's issue key
    created: datetime
    resolved: datetime | None
    mapped: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (dimension name, values) of mapped fields

    def dimension_values(self) -> Iterable[tuple[str, tuple[str, ...]]]:
        """Each dimension with its values; an issue without a value counts once under `NO_VALUE`."""
        single = {
            "project": self.project,
            "issue_type": self.issue_type,
            "status_category": self.status_category,
            "priority": self.priority,
            "epic": self.epic,
        }
        for name, value in single.items():
            yield name, (value or NO_VALUE,)
        yield "component", self.components or (NO_VALUE,)
        for name, values in self.mapped:
            yield name, values or (NO_VALUE,)


def _epic_key(issue_fields: JsonObject, epic_link_field_id: str | None) -> str | None:
    # Classic projects (and Data Center) link epics through the "Epic Link" custom field; newer Cloud
    # projects make the epic the parent. A sub-task's parent is a story, so it gets no epic here.
    if epic_link_field_id and issue_fields.get(epic_link_field_id):
        return optional_name(issue_fields[epic_link_field_id])
    parent = issue_fields.get("parent") or {}
    parent_type = (parent.get("fields") or {}).get("issuetype") or {}
    level = parent_type.get("hierarchyLevel")
    is_epic = level == EPIC_HIERARCHY_LEVEL if level is not None else parent_type.get("name") == "Epic"
    return parent.get("key") if is_epic else None


def _field_values(value: object) -> tuple[str, ...]:
    values = value if isinstance(value, list) else [value]
    names = (optional_name(v) for v in values)
    return tuple(dict.fromkeys(name for name in names if name is not None))


def issue_attributes(
    issue_json: JsonObject, *, dimension_fields: Mapping[str, str] | None = None, epic_link_field_id: str | None = None
) -> IssueAttributes:
    """Adapter from a search/issue JSON. `dimension_fields` maps a dimension name to a mapped field id,
    e.g. `{"team": "customfield_10001"}`; option, user and list values are read by `optional_name`."""
    dimension_fields = dimension_fields or {}
    clashes = set(dimension_fields) & set(BUILT_IN_DIMENSIONS)
    if clashes:
        raise ConfigError(f"mapped dimension names clash with built-in ones: {sorted(clashes)}")
    issue_fields = issue_json.get("fields") or {}
    status = issue_fields.get("status") or {}
    return IssueAttributes(
        id=str(required(issue_json, "id")),
        key=str(required(issue_json, "key")),
        project=str((issue_fields.get("project") or {}).get("key") or ""),
        issue_type=str((issue_fields.get("issuetype") or {}).get("name") or ""),
        status_category=str((status.get("statusCategory") or {}).get("key") or ""),
        priority=optional_name(issue_fields.get("priority")),
        components=_field_values(issue_fields.get("components") or []),
        epic=_epic_key(issue_fields, epic_link_field_id),
        created=parse_jira_timestamp(required(issue_json, "fields", "created")),
        resolved=parse_optional_timestamp(issue_fields.get("resolutiondate")),
        mapped=tuple(
            (name, _field_values(issue_fields.get(field_id))) for name, field_id in sorted(dimension_fields.items())
        ),
    )


def issue_count_rows(issues: Iterable[IssueAttributes], period: date | None = None) -> list[MetricRow]:
    """Metric `issue_count`, measure `issues`: the total (no dimensions) and one row per (dimension,
    value) seen. A multi-valued dimension counts an issue once under each of its values, so its counts
    can add up to more than the total."""
    total = 0
    counts: Counter[tuple[str, str]] = Counter()
    for issue in issues:
        total += 1
        for name, values in issue.dimension_values():
            counts.update((name, value) for value in values)
    return issue_count_rows_of(total, counts, period)


def open_dimension_values(
    issue_json: JsonObject, *, dimension_fields: Mapping[str, str] | None = None, epic_link_field_id: str | None = None
) -> list[tuple[str, tuple[str, ...]]]:
    """An issue's priority, epic and mapped dimensions, read as `issue_attributes` reads them (the
    dimensions `issue_count` cannot count by JQL: no API lists their values)."""
    issue_fields = issue_json.get("fields") or {}
    found: list[tuple[str, tuple[str, ...]]] = [
        ("priority", (optional_name(issue_fields.get("priority")) or NO_VALUE,)),
        ("epic", (_epic_key(issue_fields, epic_link_field_id) or NO_VALUE,)),
    ]
    for name, field_id in sorted((dimension_fields or {}).items()):
        found.append((name, _field_values(issue_fields.get(field_id)) or (NO_VALUE,)))
    return found


def issue_count_rows_of(
    total: int, counts: Mapping[tuple[str, str], int], period: date | None = None
) -> list[MetricRow]:
    """`issue_count_rows` from the tallies themselves: the total, and issues per (dimension, value)."""
    rows = [MetricRow("issue_count", "issues", float(total), period=period)]
    rows += [
        MetricRow("issue_count", "issues", float(n), period=period, dimensions=((name, value),))
        for (name, value), n in sorted(counts.items())
        if n
    ]
    return rows


def created_vs_resolved_rows(issues: Iterable[IssueAttributes], first_day: date, last_day: date) -> list[MetricRow]:
    """Metric `created_vs_resolved`, measures `created` and `resolved` per UTC day, 0 for none. Resolved
    is the current `resolutiondate`: a reopened issue no longer counts as resolved on its old day."""
    days = list(days_in_range(first_day, last_day))
    created = dict.fromkeys(days, 0)
    resolved = dict.fromkeys(days, 0)
    for issue in issues:
        created_day = utc_day(issue.created)
        if created_day in created:
            created[created_day] += 1
        if issue.resolved is not None and utc_day(issue.resolved) in resolved:
            resolved[utc_day(issue.resolved)] += 1
    rows = []
    for day in days:
        rows.append(MetricRow("created_vs_resolved", "created", float(created[day]), period=day))
        rows.append(MetricRow("created_vs_resolved", "resolved", float(resolved[day]), period=day))
    return rows


def worklog_hours_rows(worklogs: Iterable[JsonObject], issues_by_id: Mapping[str, IssueAttributes]) -> list[MetricRow]:
    """Metric `worklog_hours`, measure `hours`, per UTC day of `started`: the total (no dimensions) and
    by project, by component and by epic. Worklogs are `{issueId, timeSpentSeconds, started}` dicts;
    those of issues not in `issues_by_id` (projects not selected) are skipped. An issue's hours count in
    full under each of its components; no component or epic counts under `NO_VALUE`."""
    seconds: dict[tuple[date, Dimensions], int] = defaultdict(int)
    for worklog in worklogs:
        issue = issues_by_id.get(str(worklog.get("issueId")))
        if issue is None:
            continue
        day = utc_day(parse_jira_timestamp(worklog["started"]))
        spent = int(worklog.get("timeSpentSeconds") or 0)
        seconds[(day, ())] += spent
        seconds[(day, MetricRow.dims(project=issue.project))] += spent
        seconds[(day, MetricRow.dims(epic=issue.epic or NO_VALUE))] += spent
        for component in issue.components or (NO_VALUE,):
            seconds[(day, MetricRow.dims(component=component))] += spent
    return [
        MetricRow("worklog_hours", "hours", spent / 3600, period=day, dimensions=dimensions)
        for (day, dimensions), spent in sorted(seconds.items())
    ]


def sla_status_rows(sla_values: Iterable[JsonObject], period: date | None = None) -> list[MetricRow]:
    """Metric `sla_status` per SLA name, from the `values` of `/rest/servicedeskapi/request/{key}/sla`.
    Every cycle falls in exactly one measure: a completed cycle not breached is `met`, a completed
    breached one `breached`; the ongoing cycle is `ongoing` (paused or not) unless already breached,
    then `ongoing_breached`. `met_rate` = met / (met + breached), None when no cycle completed."""
    tallies: dict[str, Counter[str]] = defaultdict(Counter)
    for sla in sla_values:
        tally = tallies[str(sla.get("name") or "")]
        for cycle in sla.get("completedCycles") or ():
            tally["breached" if cycle.get("breached") else "met"] += 1
        ongoing = sla.get("ongoingCycle")
        if ongoing:
            tally["ongoing_breached" if ongoing.get("breached") else "ongoing"] += 1
    rows = []
    for name in sorted(tallies):
        tally, dimensions = tallies[name], MetricRow.dims(sla=name)
        for measure in ("met", "breached", "ongoing", "ongoing_breached"):
            rows.append(MetricRow("sla_status", measure, float(tally[measure]), period=period, dimensions=dimensions))
        completed = tally["met"] + tally["breached"]
        met_rate = tally["met"] / completed if completed else None
        rows.append(MetricRow("sla_status", "met_rate", met_rate, period=period, dimensions=dimensions))
    return rows
