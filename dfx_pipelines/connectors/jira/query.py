"""What the connector may ask Jira for: JQL built only from validated project keys with every value quoted
and escaped, and issue fields from an explicit allowlist (never `*all`/`*navigable`, never description,
comment or attachment), plus the custom fields discovered at connection time.

Each metric names the fields and the changelog fields it needs (`FieldPlan`); nothing else is requested.
The `worklog` field is never in a field list: a plan asks for it with `worklogs=True`, and the client
then requests it and reduces each embedded worklog on arrival, dropping its comment.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.registry import Connection

# Standard fields the reducers read. Anything else standard (description, comment, attachment,
# worklog, environment, ...) is simply not in this list and so can never be requested.
STANDARD_FIELDS = frozenset({
    "created", "updated", "issuetype", "project", "status", "priority", "resolution", "resolutiondate",
    "components", "parent", "labels",
})  # fmt: skip
NEVER = frozenset({"description", "comment", "attachment", "worklog", "environment", "summary"})
SPRINT_PLUGIN = "com.pyxis.greenhopper.jira:gh-sprint"
EPIC_LINK_PLUGIN = "com.pyxis.greenhopper.jira:gh-epic-link"
STORY_POINTS_TARGET = "story_points"
# Jira Service Management SLAs are custom fields of this type. A field-mapper target starting with
# `SLA_TARGET_PREFIX` (e.g. `sla_time_to_resolution`) maps one; `sla_status` then reads the mapped SLA
# fields from search instead of one SLA call per request.
SLA_PLUGIN = "com.atlassian.servicedesk:sd-sla-field"
SLA_TARGET_PREFIX = "sla_"


def quote(value: str) -> str:
    """A JQL string literal: backslash and double quote escaped, control characters refused."""
    if any(ord(ch) < 32 for ch in value):
        raise ConfigError(f"JQL value {value!r} contains control characters")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def project_clause(keys: Iterable[str]) -> str:
    checked = sorted({identifiers.jira_project_key(key) for key in keys})
    if not checked:
        raise ConfigError("a Jira query needs at least one selected project")
    return f"project in ({', '.join(quote(key) for key in checked)})"


def date_literal(moment: datetime | date) -> str:
    """Jira's minute-precision date literal (UTC); a `date` means its midnight."""
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(0), tzinfo=UTC)
    return quote(moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M"))


def issues_jql(projects: Iterable[str], *conditions: str, order_by: str = "created ASC") -> str:
    """`project in (...) AND (cond) AND ... ORDER BY ...`; conditions come only from this module's builders."""
    parts = [project_clause(projects)] + [f"({c})" for c in conditions]
    return " AND ".join(parts) + f" ORDER BY {order_by}"


def updated_since(moment: datetime | date) -> str:
    return f"updated >= {date_literal(moment)}"


def worklog_started_between(first: date, last: date) -> str:
    """Issues with a worklog started on a day of `first..last` (JQL `worklogDate`: the worklogs' started
    dates), widened by a day on each side: Jira reads a date literal in the searching user's time zone,
    and a widened window still holds every worklog started on those UTC days. The caller keeps only the
    worklogs started on the range's days, so the extra day changes no value."""
    return f"worklogDate >= {date_literal(first - timedelta(days=1))} AND worklogDate < {date_literal(last + timedelta(days=2))}"


def status_changed_since(first: date) -> str:
    """Issues whose status changed, or that were created, since `first` (JQL's history search, on Cloud
    and Data Center), widened by a day: Jira reads a date literal in the searching user's time zone. A
    status change is what can move an issue's replayed stage dates; an edit, a comment or a worklog,
    which also make it `updated`, cannot."""
    since = date_literal(first - timedelta(days=1))
    return f"status CHANGED AFTER {since} OR created >= {since}"


def created_or_resolved_between(first: date, end_exclusive: date) -> str:
    a, b = date_literal(first), date_literal(end_exclusive)
    return f"created >= {a} AND created < {b} OR resolved >= {a} AND resolved < {b}"


def status_not_in(status_ids: Iterable[str]) -> str:
    """`status not in (10003, ...)` by status id (from the board configuration, so a renamed status still
    matches). Ids are unquoted, as JQL takes ids (a quoted value is looked up as a name first), and so
    must be ASCII digits only: anything else is refused, never sent."""
    checked = sorted({str(status_id) for status_id in status_ids}, key=lambda text: (len(text), text))
    if not checked or not all(status_id.isascii() and status_id.isdigit() for status_id in checked):
        raise ConfigError(f"status ids must be non-empty digit strings, got {checked}")
    return f"status not in ({', '.join(checked)})"


def ids_in(field: str, ids: Iterable[str]) -> str:
    """`issuetype in (10001, ...)` / `statusCategory in (2)` by id: ids are unquoted, as JQL takes them
    (a quoted value is looked up as a name first), so they must be ASCII digits; the field is one of a
    fixed few."""
    if field not in ("issuetype", "statusCategory"):
        raise ConfigError(f"refusing to build a JQL id clause for field {field!r}")
    checked = sorted({str(i) for i in ids}, key=lambda text: (len(text), text))
    if not checked or not all(i.isascii() and i.isdigit() for i in checked):
        raise ConfigError(f"{field} ids must be non-empty digit strings, got {checked}")
    return f"{field} in ({', '.join(checked)})"


def component_is(name: str | None) -> str:
    """`component = "name"` (quoted, escaped), or `component is EMPTY` for None."""
    return "component is EMPTY" if name is None else f"component = {quote(name)}"


def created_before(end_exclusive: date) -> str:
    return f"created < {date_literal(end_exclusive)}"


# ---------------------------------------------------------------- fields


def custom_field(connection: Connection, plugin: str) -> str | None:
    """The discovered custom field of a Jira Software plugin type (Sprint, Epic Link), if any."""
    for field_id, meta in sorted((connection.discovered.get("fields") or {}).items()):
        if (meta.get("schema") or {}).get("custom") == plugin:
            return field_id
    return None


def field_name(connection: Connection, field_id: str) -> str | None:
    return ((connection.discovered.get("fields") or {}).get(field_id) or {}).get("name")


def is_sla_target(target: str) -> bool:
    return target.startswith(SLA_TARGET_PREFIX)


def dimension_fields(connection: Connection) -> dict[str, str]:
    """Mapped custom fields used as count dimensions: every mapping except story points and SLAs."""
    return {
        m.target: m.source
        for m in connection.field_mapper
        if m.target != STORY_POINTS_TARGET and not is_sla_target(m.target)
    }


def sla_fields(connection: Connection) -> list[str]:
    """The SLA custom fields the customer mapped (discovered ones of type `SLA_PLUGIN` only), sorted."""
    discovered = connection.discovered.get("fields") or {}
    return sorted({
        m.source
        for m in connection.field_mapper
        if is_sla_target(m.target) and ((discovered.get(m.source) or {}).get("schema") or {}).get("custom") == SLA_PLUGIN
    })  # fmt: skip


def safe_fields(connection: Connection, requested: Iterable[str]) -> list[str]:
    """The `fields` list to send: standard allowlisted fields and discovered custom fields only."""
    discovered = connection.discovered.get("fields") or {}
    chosen: list[str] = []
    for field_id in requested:
        if field_id in NEVER or field_id.startswith(("*", "-")):
            raise ConfigError(f"refusing to request Jira field {field_id!r}: the connector never reads it")
        if field_id not in STANDARD_FIELDS and field_id not in discovered:
            raise ConfigError(
                f"Jira field {field_id!r} is neither an allowlisted standard field nor a discovered custom field"
            )
        if field_id not in chosen:
            chosen.append(field_id)
    if not chosen:
        # An empty list means "navigable fields" on Data Center (description included): never send it.
        raise ConfigError("an explicit, non-empty field list is required")
    return chosen


@dataclass(frozen=True)
class FieldPlan:
    """The issue fields one metric requests, and the fields whose change history it replays."""

    fields: tuple[str, ...]
    changelog: tuple[str, ...] = ()  # field ids whose histories are replayed
    changelog_names: tuple[str, ...] = ()  # their display names, for Data Center's change items
    worklogs: bool = False  # embed each issue's worklogs (`JiraClient.search` reduces them on arrival)


def count_plan(connection: Connection) -> FieldPlan:
    """Every `issue_count` dimension read from the issues (the fallback when counting by JQL does not add
    up). Not `project`: the metric searches one project at a time and knows it; not `resolutiondate`: a
    count of issues now does not read it."""
    fields = ["created", "issuetype", "status", "priority", "components", "parent"]
    epic_link = custom_field(connection, EPIC_LINK_PLUGIN)
    if epic_link:
        fields.append(epic_link)
    fields += sorted(set(dimension_fields(connection).values()))
    return FieldPlan(tuple(safe_fields(connection, fields)))


def open_count_plan(connection: Connection) -> FieldPlan:
    """The `issue_count` dimensions whose values no API lists (epic, priority, mapped fields): read from
    the issues. Type, status category and component are counted by JQL instead (`JiraClient.count`)."""
    fields = ["priority", "parent"]
    epic_link = custom_field(connection, EPIC_LINK_PLUGIN)
    if epic_link:
        fields.append(epic_link)
    fields += sorted(set(dimension_fields(connection).values()))
    return FieldPlan(tuple(safe_fields(connection, fields)))


def dates_plan(connection: Connection) -> FieldPlan:
    """`created_vs_resolved` reads an issue's created and resolved times and nothing else."""
    return FieldPlan(tuple(safe_fields(connection, ["created", "resolutiondate"])))


def worklog_plan(connection: Connection) -> FieldPlan:
    """What `worklog_hours` groups by (components; epic: `parent` and the Epic Link field; the project is
    the one each search names) with the issues' worklogs embedded: search carries an issue's first
    worklogs, which spares most issues a worklog call of their own. Type, status, priority and mapped
    dimensions are not read, so not asked for (each is a few hundred bytes of JSON per issue)."""
    fields = ["created", "components", "parent"]
    epic_link = custom_field(connection, EPIC_LINK_PLUGIN)
    if epic_link:
        fields.append(epic_link)
    return FieldPlan(tuple(safe_fields(connection, fields)), worklogs=True)


def flow_plan(connection: Connection) -> FieldPlan:
    return FieldPlan(tuple(safe_fields(connection, ["created", "issuetype", "project", "status"])), ("status",))


def velocity_plan(connection: Connection, story_points: str, sprint: str) -> FieldPlan:
    fields = safe_fields(connection, ["created", "status", "resolution", sprint, story_points])
    names = tuple(name for name in (field_name(connection, sprint), field_name(connection, story_points)) if name)
    return FieldPlan(tuple(fields), ("status", "resolution", sprint, story_points), names)


def sla_plan(connection: Connection) -> FieldPlan:
    """Exactly the mapped SLA fields: `sla_status` reads nothing else of an issue."""
    return FieldPlan(tuple(safe_fields(connection, sla_fields(connection))))


def key_plan(connection: Connection) -> FieldPlan:
    """Just enough to name issues (SLA and worklog look-ups)."""
    return FieldPlan(tuple(safe_fields(connection, ["created"])))
