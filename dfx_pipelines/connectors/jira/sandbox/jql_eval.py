"""JQL evaluation against a `JiraSite`: clauses compile to predicates over issue records, values are
resolved (and refused) the way Jira does, dates accept Jira's absolute and relative formats.

Supported fields: project, key/issuekey/id, issuetype/type, status, statusCategory, sprint, parent,
priority, component, resolution, created/createdDate, updated/updatedDate, resolved/resolutiondate, and
worklogDate (the started times of an issue's worklogs: a clause matches when any worklog matches it, as
Jira's index holds one date per worklog; each clause is matched on its own, so `worklogDate >= a AND
worklogDate < b` may match through two different worklogs, as in Jira). History search: `status CHANGED`
with `AFTER` and/or `BEFORE` (both exclusive); Jira's other history fields and predicates are refused.
Functions: openSprints(), closedSprints(), futureSprints(), now(), startOfDay([offset]).
Without ORDER BY results come newest first (created DESC, then id DESC).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.jql import BoolOp, Clause, Node, Not, Query, SortKey, Value, parse
from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError
from dfx_pipelines.connectors.jira.sandbox.records import IssueRecord

Predicate = Callable[[IssueRecord], bool]

FIELD_ALIASES = {
    "project": "project", "key": "key", "issuekey": "key", "id": "key", "issuetype": "issuetype", "type": "issuetype",
    "status": "status", "statuscategory": "statusCategory", "sprint": "sprint", "parent": "parent",
    "priority": "priority", "component": "component", "resolution": "resolution",
    "created": "created", "createddate": "created", "updated": "updated", "updateddate": "updated",
    "resolved": "resolved", "resolutiondate": "resolved", "worklogdate": "worklogDate",
}  # fmt: skip
DATE_FIELDS = {"created": "created", "updated": "updated", "resolved": "resolved"}
EMPTY = object()  # `field = EMPTY`, `resolution = Unresolved`: matches issues without a value
EQUALITY_OPERATORS = ("=", "!=", "in", "not in", "is", "is not")
_RELATIVE = re.compile(r"^([+-]?)\s*((?:\d+\s*[wdhm]\s*)+)$", re.IGNORECASE)
_RELATIVE_PART = re.compile(r"(\d+)\s*([wdhm])", re.IGNORECASE)
_UNIT_SECONDS = {"w": 7 * 86400, "d": 86400, "h": 3600, "m": 60}
_DATE_FORMATS = ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d")


def canonical_field(name: str) -> str:
    canonical = FIELD_ALIASES.get(name.lower())
    if canonical is None:
        raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
    return canonical


class Compiler:
    """`hidden_projects` (indexes) are projects the caller cannot browse: Jira answers as if they did not exist."""

    def __init__(self, site: JiraSite, hidden_projects: frozenset[int] = frozenset()):
        self.site = site
        self.hidden_projects = hidden_projects

    def compile(self, node: Node) -> Predicate:
        if isinstance(node, BoolOp):
            parts = [self.compile(operand) for operand in node.operands]
            if node.operator == "and":
                return lambda record: all(part(record) for part in parts)
            return lambda record: any(part(record) for part in parts)
        if isinstance(node, Not):
            inner = self.compile(node.operand)
            return lambda record: not inner(record)
        return self.clause(node)

    def clause(self, clause: Clause) -> Predicate:
        field = canonical_field(clause.field)
        operator = clause.operator
        if field in DATE_FIELDS:
            return self.date_clause(field, clause)
        if field == "worklogDate":
            return self.worklog_date_clause(clause)
        if operator == "changed":
            return self.changed_clause(field, clause)
        if operator not in EQUALITY_OPERATORS:
            raise JqlError(f"The operator '{operator}' is not supported by the '{clause.field}' field.")
        getter, resolver = self.equality_field(field)
        if operator in ("is", "is not"):
            empty = operator == "is"
            return lambda record: (not getter(record)) == empty
        wanted: set = set()
        for value in clause.values:
            if not value.quoted and value.function is None and value.text.upper() in ("EMPTY", "NULL"):
                wanted.add(EMPTY)
            else:
                wanted |= resolver(value, clause.field)

        def matches(record: IssueRecord) -> bool:
            actual = getter(record)
            return bool(actual & wanted) or (EMPTY in wanted and not actual)

        if operator in ("=", "in"):
            return matches
        return lambda record: not matches(record)

    # ------------------------------------------------------------ equality fields: getter -> set of keys

    def equality_field(self, field: str) -> tuple[Callable[[IssueRecord], set], Callable[[Value, str], set]]:
        if field == "project":
            return (lambda r: {r.project}), self.resolve_project
        if field == "key":
            return (lambda r: {r.num}), self.resolve_issue
        if field == "parent":
            return (lambda r: {r.parent} if r.parent >= 0 else set()), self.resolve_issue
        if field == "issuetype":
            return (lambda r: {r.type}), self.named(catalog.ISSUE_TYPES, "issuetype", lambda t: (t.id, t.name))
        if field == "status":
            return (lambda r: {r.status_id}), self.named(
                catalog.STATUSES, "status", lambda s: (s.id, s.name), key=lambda s: s.id
            )
        if field == "statusCategory":
            return (lambda r: {catalog.STATUS_BY_ID[r.status_id].category.id}), self.named(
                catalog.STATUS_CATEGORIES, "statusCategory", lambda c: (str(c.id), c.key, c.name), key=lambda c: c.id
            )
        if field == "priority":
            return (lambda r: {r.priority}), self.named(catalog.PRIORITIES, "priority", lambda p: (p.id, p.name))
        if field == "resolution":
            named = self.named(catalog.RESOLUTIONS, "resolution", lambda r: (r.id, r.name))

            def resolve_resolution(value: Value, name: str) -> set:
                return {EMPTY} if value.text.lower() == "unresolved" else named(value, name)

            return (lambda r: {r.resolution} if r.resolution >= 0 else set()), resolve_resolution
        if field == "component":

            def components(record: IssueRecord) -> set:
                return {(record.project, index) for index in record.components}

            def resolve_component(value: Value, name: str) -> set:
                found = {
                    (p, i)
                    for p, spec in enumerate(catalog.PROJECTS)
                    for i, c in enumerate(spec.components)
                    if c.lower() == value.text.lower()
                }
                if not found:
                    raise JqlError(f"The value '{value.text}' does not exist for the field '{name}'.")
                return found

            return components, resolve_component
        if field == "sprint":
            return (lambda r: set(r.sprints)), self.resolve_sprint
        raise JqlError(f"Field '{field}' does not exist or you do not have permission to view it.")

    def named(self, items, field: str, names: Callable, key: Callable | None = None) -> Callable[[Value, str], set]:
        def resolve(value: Value, _: str) -> set:
            text = value.text.lower()
            found = {(key or items.index)(item) for item in items if text in {str(n).lower() for n in names(item)}}
            if not found:
                raise JqlError(f"The value '{value.text}' does not exist for the field '{field}'.")
            return found

        return resolve

    def resolve_project(self, value: Value, field: str) -> set:
        text = value.text
        found = {
            i
            for i, p in enumerate(catalog.PROJECTS)
            if text.upper() == p.key or text == p.id or text.lower() == p.name.lower()
        }
        found -= self.hidden_projects
        if not found:
            raise JqlError(f"The value '{text}' does not exist for the field '{field}'.")
        return found

    def resolve_issue(self, value: Value, field: str) -> set:
        record = self.site.find(value.text)
        if record is None:
            raise JqlError(f"An issue with key '{value.text}' does not exist for field '{field}'.")
        return {record.num}

    def resolve_sprint(self, value: Value, field: str) -> set:
        states = {"opensprints": "active", "closedsprints": "closed", "futuresprints": "future"}
        if value.function is not None:
            state = states.get(value.function.lower())
            if state is None:
                raise JqlError(f"Unable to find JQL function '{value.function}()'.")
            return {s.id for s in self.site.sprints if s.state == state}
        found = {
            s.id
            for s in self.site.sprints
            if (value.text.isdigit() and s.id == int(value.text)) or s.name.lower() == value.text.lower()
        }
        if not found:
            raise JqlError(f"Sprint with id or name '{value.text}' does not exist.")
        return found

    # ------------------------------------------------------------ dates

    def date_clause(self, field: str, clause: Clause) -> Predicate:
        attribute = DATE_FIELDS[field]
        operator = clause.operator
        if operator in ("is", "is not"):
            empty = operator == "is"
            return lambda record: (getattr(record, attribute) is None) == empty
        if operator in ("~", "!~"):
            raise JqlError(f"The operator '{operator}' is not supported by the '{clause.field}' field.")
        moments = [self.date_value(value, clause.field) for value in clause.values]
        if operator in ("in", "not in"):
            wanted = set(moments)
            inside = operator == "in"
            return lambda record: (getattr(record, attribute) in wanted) == inside
        moment = moments[0]
        compare = {
            "=": lambda a: a == moment, "!=": lambda a: a != moment, "<": lambda a: a < moment,
            ">": lambda a: a > moment, "<=": lambda a: a <= moment, ">=": lambda a: a >= moment,
        }[operator]  # fmt: skip

        def predicate(record: IssueRecord) -> bool:
            actual = getattr(record, attribute)
            return actual is not None and compare(actual)

        return predicate

    def changed_clause(self, field: str, clause: Clause) -> Predicate:
        """`status CHANGED [AFTER t] [BEFORE t]`: some status change of the issue's changelog lies strictly
        between the bounds (a creation is not a change)."""
        if field != "status":
            raise JqlError(f"History searches are not supported for the '{clause.field}' field in this sandbox.")
        bounds: dict[str, float | None] = {"after": None, "before": None}
        for name, value in clause.predicates:
            if name not in bounds:
                raise JqlError(f"The '{name.upper()}' predicate of CHANGED is not supported in this sandbox.")
            bounds[name] = self.date_value(value, clause.field)
        after, before = bounds["after"], bounds["before"]
        site = self.site

        def predicate(record: IssueRecord) -> bool:
            # Any change, status included, updates the issue: one not updated since `after` has none later.
            if after is not None and record.updated <= after:
                return False
            return any(
                (after is None or history.at > after)
                and (before is None or history.at < before)
                and any(item[0] == "status" for item in history.items)
                for history in site.histories(record)
            )

        return predicate

    def worklog_date_clause(self, clause: Clause) -> Predicate:
        """`worklogDate`: multi-valued, one started time per worklog; EMPTY means no worklog at all."""
        operator = clause.operator
        site = self.site

        def started(record: IssueRecord) -> list[float]:
            return [worklog.started for worklog in site.worklogs(record)]

        if operator in ("is", "is not"):
            empty = operator == "is"
            return lambda record: (not started(record)) == empty
        if operator not in ("=", "<", ">", "<=", ">="):
            raise JqlError(f"The operator '{operator}' is not supported by the '{clause.field}' field.")
        moment = self.date_value(clause.values[0], clause.field)
        compare = {
            "=": lambda a: a == moment, "<": lambda a: a < moment, ">": lambda a: a > moment,
            "<=": lambda a: a <= moment, ">=": lambda a: a >= moment,
        }[operator]  # fmt: skip
        return lambda record: any(compare(moment_started) for moment_started in started(record))

    def date_value(self, value: Value, field: str) -> float:
        now = self.site.now_epoch
        if value.function is not None:
            name = value.function.lower()
            if name == "now":
                return now
            if name in ("startofday", "endofday"):
                day = datetime.fromtimestamp(now, tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
                offset = self.relative_seconds(value.arguments[0], field) if value.arguments else 0.0
                moment = day.timestamp() + offset
                return moment + (86400 - 0.001 if name == "endofday" else 0)
            raise JqlError(f"Unable to find JQL function '{value.function}()'.")
        text = value.text.strip()
        if text.isdigit():
            return int(text) / 1000.0  # Jira reads a bare number as epoch milliseconds
        for pattern in _DATE_FORMATS:
            try:
                return datetime.strptime(text, pattern).replace(tzinfo=UTC).timestamp()
            except ValueError:
                continue
        return now + self.relative_seconds(text, field)

    @staticmethod
    def relative_seconds(text: str, field: str) -> float:
        match = _RELATIVE.match(text.strip())
        if not match:
            raise JqlError(
                f"Date value '{text}' for field '{field}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
                "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
            )
        seconds = sum(int(n) * _UNIT_SECONDS[unit.lower()] for n, unit in _RELATIVE_PART.findall(match.group(2)))
        return -seconds if match.group(1) == "-" else float(seconds)


def _sort_value(site: JiraSite, field: str) -> Callable[[IssueRecord], object]:
    canonical = FIELD_ALIASES.get(field.lower(), field.lower())
    if canonical == "key":
        return lambda r: (catalog.PROJECTS[r.project].key, r.key_num)
    if canonical in DATE_FIELDS:
        return lambda r: getattr(r, DATE_FIELDS[canonical])
    if canonical == "priority":
        return lambda r: r.priority
    if canonical == "status":
        return lambda r: catalog.STATUS_BY_ID[r.status_id].name
    if canonical == "project":
        return lambda r: catalog.PROJECTS[r.project].key
    if canonical == "issuetype":
        return lambda r: catalog.ISSUE_TYPES[r.type].name
    raise JqlError(f"Field '{field}' does not exist or you do not have permission to view it.")


def sort_records(site: JiraSite, records: list[IssueRecord], order_by: tuple[SortKey, ...]) -> list[IssueRecord]:
    keys = order_by or (SortKey("created", True),)
    ordered = sorted(records, key=lambda r: r.num, reverse=not order_by)  # the tie-breaker: id
    for sort_key in reversed(keys):  # stable sorts, least significant first
        value = _sort_value(site, sort_key.field)
        # Empty values sort last ascending and first descending, as in Jira.
        ordered.sort(key=lambda r: (value(r) is None, value(r) or 0), reverse=sort_key.descending)
    return ordered


def run_query(site: JiraSite, query: Query) -> list[IssueRecord]:
    predicate = Compiler(site).compile(query.where) if query.where is not None else (lambda record: True)
    for sort_key in query.order_by:
        _sort_value(site, sort_key.field)  # refuse an unknown ORDER BY field before scanning
    with site.lock:
        matched = [record for record in site.issues if predicate(record)]
    return sort_records(site, matched, query.order_by)


def search(site: JiraSite, jql: str) -> list[IssueRecord]:
    return run_query(site, parse(jql))
