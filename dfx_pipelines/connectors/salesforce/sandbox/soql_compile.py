"""Turns a parsed SOQL query into parameterised SQLite over the org's tables, checking it the way Salesforce does.

Identifiers reach SQL only after they were found in the describe metadata (and are then written in their
canonical spelling, double-quoted); every value is a `?` parameter. Relationship paths become LEFT JOINs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Any

from .ids import to_18
from .schema import NUMERIC_TYPES, OBJECTS, TEXT_TYPES, FieldDef, ObjectDef, find_object
from .soql_ast import BoolOp, Comparison, Condition, Expr, FieldRef, FuncCall, Literal, Not, Query
from .soql_dates import date_range
from .soql_errors import bad_relationship, invalid_field, malformed, no_such_column, query_error, unsupported_type
from .values import json_value, parse_datetime_text, store_datetime

MAX_OFFSET = 2000

# SQL for the date functions over stored `YYYY-MM-DD` / `YYYY-MM-DDTHH:MM:SS` text; NULL stays NULL.
_DATE_FUNCTION_SQL: dict[str, Callable[[str], str]] = {
    "CALENDAR_YEAR": lambda x: f"CAST(substr({x}, 1, 4) AS INTEGER)",
    "FISCAL_YEAR": lambda x: f"CAST(substr({x}, 1, 4) AS INTEGER)",
    "CALENDAR_MONTH": lambda x: f"CAST(substr({x}, 6, 2) AS INTEGER)",
    "CALENDAR_QUARTER": lambda x: f"((CAST(substr({x}, 6, 2) AS INTEGER) + 2) / 3)",
    "FISCAL_QUARTER": lambda x: f"((CAST(substr({x}, 6, 2) AS INTEGER) + 2) / 3)",
    "DAY_IN_MONTH": lambda x: f"CAST(substr({x}, 9, 2) AS INTEGER)",
    "DAY_IN_WEEK": lambda x: f"(CAST(strftime('%w', {x}) AS INTEGER) + 1)",
    "DAY_IN_YEAR": lambda x: f"CAST(strftime('%j', {x}) AS INTEGER)",
    "WEEK_IN_YEAR": lambda x: f"((CAST(strftime('%j', {x}) AS INTEGER) - 1) / 7 + 1)",
    "HOUR_IN_DAY": lambda x: f"CAST(substr({x}, 12, 2) AS INTEGER)",
    "DAY_ONLY": lambda x: f"substr({x}, 1, 10)",
}
_DATETIME_ONLY_FUNCTIONS = frozenset({"DAY_ONLY", "HOUR_IN_DAY"})


def quote_identifier(name: str) -> str:
    """Names come from the schema (checked there), so quoting is only belt and braces."""
    if '"' in name:
        raise ValueError(f"bad identifier {name!r}")
    return f'"{name}"'


@dataclass
class Typed:
    """A compiled expression: its SQL, the value type it yields, and the field it reads (if any)."""

    sql: str
    type: str
    field: FieldDef | None = None
    label: str = ""  # what error messages call it


@dataclass
class RecordColumn:
    names: tuple[str, ...]  # relationship names then the field name, canonical
    type: str
    index: int


@dataclass
class Plan:
    """What the executor runs. kind: records (paged by rowid), aggregate (rows), or count (COUNT() only)."""

    obj: ObjectDef
    kind: str
    sql: str
    params: list[Any]
    page_sql: str = ""  # records: SELECT ... WHERE t0.rowid IN (<ids>)
    columns: list[RecordColumn] = field(default_factory=list)
    relations: dict[tuple[str, ...], tuple[str, int]] = field(default_factory=dict)
    outputs: list[tuple[str, Callable[[Any], Any]]] = field(default_factory=list)  # aggregate keys and converters


class Compiler:
    def __init__(self, query: Query, today: date, include_deleted: bool):
        self.query = query
        self.text = query.text
        self.today = today
        self.include_deleted = include_deleted
        obj = find_object(query.object_name)
        if obj is None:
            raise unsupported_type(self.text, query.object_pos, query.object_name)
        if not obj.queryable:
            raise query_error(
                "INVALID_TYPE_FOR_OPERATION",
                self.text,
                query.object_pos,
                f"entity type {obj.name} does not support query",
            )
        self.obj = obj
        self.joins: dict[tuple[str, ...], tuple[str, ObjectDef]] = {}
        self.join_sql: list[str] = []

    # ------------------------------------------------------------ names

    def resolve(self, ref: FieldRef) -> tuple[Typed, tuple[str, ...], tuple[str, ...]]:
        """The column for a field path, its canonical names, and the relationship chain it crosses."""
        path = list(ref.path)
        alias_names = {self.obj.name.lower()}
        if self.query.object_alias:
            alias_names.add(self.query.object_alias.lower())
        if len(path) > 1 and path[0].lower() in alias_names and self.obj.relationship(path[0]) is None:
            path = path[1:]
        current, table_alias = self.obj, "t0"
        chain: tuple[str, ...] = ()
        names: list[str] = []
        for part in path[:-1]:
            relation = current.relationship(part)
            if relation is None:
                raise bad_relationship(self.text, ref.pos, part)
            if relation.polymorphic:
                raise invalid_field(
                    self.text,
                    ref.pos,
                    f"polymorphic relationship '{relation.relationship_name}' is not supported by the sandbox; select {relation.name}",
                )
            target = OBJECTS[relation.reference_to[0]]
            assert relation.relationship_name is not None
            chain = chain + (relation.relationship_name,)
            names.append(relation.relationship_name)
            if chain not in self.joins:
                alias = f"t{len(self.joins) + 1}"
                self.joins[chain] = (alias, target)
                self.join_sql.append(
                    f"LEFT JOIN {quote_identifier(target.name)} AS {alias} "
                    f'ON {alias}."Id" = {table_alias}.{quote_identifier(relation.name)}'
                )
            table_alias, current = self.joins[chain][0], target
        f = current.field(path[-1])
        if f is None:
            raise no_such_column(self.text, ref.pos, path[-1], current.name)
        names.append(f.name)
        return Typed(f"{table_alias}.{quote_identifier(f.name)}", f.type, f, f.name), tuple(names), chain

    def expression(self, expr: Expr) -> Typed:
        if isinstance(expr, FieldRef):
            return self.resolve(expr)[0]
        assert expr.arg is not None or expr.name == "COUNT"
        if expr.arg is None:
            return Typed("COUNT(*)", "int", None, "COUNT()")
        inner = self.resolve(expr.arg)[0]
        f = inner.field
        assert f is not None
        if expr.name in _DATE_FUNCTION_SQL:
            allowed = ("datetime",) if expr.name in _DATETIME_ONLY_FUNCTIONS else ("date", "datetime")
            if f.type not in allowed:
                raise malformed(
                    self.text, expr.pos, f"Invalid field type {f.type} for date function {expr.name}: {f.name}"
                )
            result = "date" if expr.name == "DAY_ONLY" else "int"
            text = inner.sql if f.type == "date" else f"strftime('%Y-%m-%dT%H:%M:%S', {inner.sql}, 'unixepoch')"
            return Typed(_DATE_FUNCTION_SQL[expr.name](text), result, None, f"{expr.name}({f.name})")
        return self.aggregate(expr, inner, f)

    def aggregate(self, expr: FuncCall, inner: Typed, f: FieldDef) -> Typed:
        name = expr.name
        numeric = f.type in NUMERIC_TYPES
        ok = f.aggregatable and (numeric if name in ("SUM", "AVG") else True)
        if name in ("MIN", "MAX") and f.type in ("id", "reference"):
            ok = f.aggregatable
        if not ok:
            raise invalid_field(self.text, expr.pos, f"field {f.name} does not support aggregate operator {name}")
        if name == "COUNT":
            return Typed(f"COUNT({inner.sql})", "int", None, f"COUNT({f.name})")
        if name == "COUNT_DISTINCT":
            return Typed(f"COUNT(DISTINCT {inner.sql})", "int", None, f"COUNT_DISTINCT({f.name})")
        if name == "AVG":
            return Typed(f"AVG({inner.sql})", "double", None, f"AVG({f.name})")
        result_type = "double" if name == "SUM" and f.type == "percent" else f.type
        return Typed(f"{name}({inner.sql})", result_type, f, f"{name}({f.name})")

    # ------------------------------------------------------------ conditions

    def condition(self, cond: Condition, params: list[Any], *, having: bool = False) -> str:
        if isinstance(cond, BoolOp):
            return "(" + f" {cond.op} ".join(self.condition(item, params, having=having) for item in cond.items) + ")"
        if isinstance(cond, Not):
            # SOQL has two-valued logic: NOT of a comparison against null is true.
            return f"(NOT COALESCE({self.condition(cond.item, params, having=having)}, 0))"
        return self.comparison(cond, params, having)

    def comparison(self, cmp: Comparison, params: list[Any], having: bool) -> str:
        left = self.expression(cmp.left)
        if not having and isinstance(cmp.left, FieldRef) and left.field is not None and not left.field.filterable:
            raise invalid_field(self.text, cmp.left.pos, f"field '{left.field.name}' can not be filtered in query call")
        if having and isinstance(cmp.left, FieldRef):
            self.require_grouped(cmp.left, "Field must be grouped or aggregated")
        op = cmp.op
        if op in ("INCLUDES", "EXCLUDES"):
            raise malformed(self.text, cmp.pos, f"{op} is only valid on multi-select picklist fields")
        if op in ("IN", "NOT IN"):
            assert isinstance(cmp.right, tuple)
            return self.in_list(left, cmp, cmp.right, params)
        assert isinstance(cmp.right, Literal)
        literal = cmp.right
        if literal.kind == "null":
            if op not in ("=", "!="):
                raise malformed(self.text, literal.pos, f"invalid operator {op} for null")
            return f"({left.sql} IS {'NOT ' if op == '!=' else ''}NULL)"
        if op == "LIKE":
            if left.type not in TEXT_TYPES or literal.kind != "string":
                raise invalid_field(
                    self.text, cmp.pos, f"invalid operator on field {left.label}: LIKE is only valid on string fields"
                )
            params.append(literal.like_pattern)
            return f"({left.sql} LIKE ? ESCAPE '\\')"
        if literal.kind == "dateliteral":
            return self.date_range_condition(left, op, literal, params)
        value = self.value_for(left, literal)
        if left.type == "boolean" and op not in ("=", "!="):
            raise malformed(self.text, cmp.pos, f"invalid operator {op} on boolean field {left.label}")
        collate = " COLLATE NOCASE" if left.type in TEXT_TYPES and left.type not in ("id", "reference") else ""
        params.append(value)
        if op == "!=":
            return f"({left.sql} IS NULL OR {left.sql} != ?{collate})"
        return f"({left.sql} {op} ?{collate})"

    def in_list(self, left: Typed, cmp: Comparison, literals: tuple[Literal, ...], params: list[Any]) -> str:
        negate = cmp.op == "NOT IN"
        parts: list[str] = []
        values: list[Any] = []
        for literal in literals:
            if literal.kind == "null":
                parts.append(f"{left.sql} IS NULL")
            elif literal.kind == "dateliteral":
                parts.append(self.date_range_condition(left, "=", literal, params))
            else:
                values.append(self.value_for(left, literal))
        if values:
            collate = " COLLATE NOCASE" if left.type in TEXT_TYPES and left.type not in ("id", "reference") else ""
            params.extend(values)
            parts.append(f"{left.sql}{collate} IN ({', '.join('?' * len(values))})")
        matched = "(" + " OR ".join(parts) + ")"
        if negate:
            return f"(NOT COALESCE({matched}, 0))"
        return matched

    def value_for(self, left: Typed, literal: Literal) -> Any:
        """The SQL parameter for `literal` compared with `left`, or Salesforce's type error."""
        kind, t = literal.kind, left.type

        def wrong(expected: str, quoted: bool) -> Exception:
            hint = "should be enclosed in quotes" if quoted else "should not be enclosed in quotes"
            return invalid_field(
                self.text,
                literal.pos,
                f"value of filter criterion for field '{left.label}' must be of type {expected} and {hint}",
            )

        if t in ("id", "reference"):
            if kind != "string":
                raise wrong("id", True)
            full = to_18(literal.value)
            if full is None:
                raise query_error(
                    "INVALID_QUERY_FILTER_OPERATOR", self.text, literal.pos, f"invalid ID field: {literal.value}"
                )
            return full
        if t in TEXT_TYPES:
            if kind != "string":
                raise wrong("string", True)
            return literal.value
        if t in NUMERIC_TYPES:
            if kind != "number":
                raise wrong("double" if t != "int" else "int", False)
            return literal.value
        if t == "boolean":
            if kind != "boolean":
                raise wrong("boolean", False)
            return int(literal.value)
        if t == "date":
            if kind != "date":
                raise wrong("date", False)
            try:
                return date.fromisoformat(literal.value).isoformat()
            except ValueError:
                raise malformed(self.text, literal.pos, f"invalid date: {literal.value}") from None
        if t == "datetime":
            parsed = parse_datetime_text(literal.value, assume_utc=False) if kind == "datetime" else None
            if parsed is None:
                raise wrong("dateTime", False)
            return store_datetime(parsed)
        raise wrong(t, False)

    def date_range_condition(self, left: Typed, op: str, literal: Literal, params: list[Any]) -> str:
        if left.type not in ("date", "datetime"):
            raise invalid_field(
                self.text,
                literal.pos,
                f"value of filter criterion for field '{left.label}' must be of type {left.type} and should not be a date literal",
            )
        start, end = date_range(literal.value, literal.n, self.today)
        low: Any
        high: Any
        if left.type == "datetime":  # stored as epoch seconds; the org's day starts at 00:00 UTC
            low, high = (store_datetime(datetime.combine(day, time(), UTC)) for day in (start, end))
        else:
            low, high = start.isoformat(), end.isoformat()
        column = left.sql
        if op == "=":
            params.extend([low, high])
            return f"({column} >= ? AND {column} < ?)"
        if op == "!=":
            params.extend([low, high])
            return f"({column} IS NULL OR {column} < ? OR {column} >= ?)"
        bound = {"<": (low, "<"), "<=": (high, "<"), ">": (high, ">="), ">=": (low, ">=")}[op]
        params.append(bound[0])
        return f"({column} {bound[1]} ?)"

    # ------------------------------------------------------------ grouping

    def grouped_keys(self) -> set[str]:
        return {self.expr_key(expr) for expr in self.query.group_by}

    def expr_key(self, expr: Expr) -> str:
        """A canonical identity of an expression, so `account.name` and `Account.Name` compare equal."""
        if isinstance(expr, FieldRef):
            return ".".join(self.resolve(expr)[1]).lower()
        if expr.arg is None:
            return "COUNT()"
        return f"{expr.name}({'.'.join(self.resolve(expr.arg)[1]).lower()})"

    def require_grouped(self, expr: Expr, message: str) -> None:
        if isinstance(expr, FuncCall) and expr.is_aggregate:
            return
        if self.expr_key(expr) not in self.grouped_keys():
            label = ".".join(expr.path) if isinstance(expr, FieldRef) else expr.name
            raise malformed(self.text, expr.pos, f"{message}: {label}")

    # ------------------------------------------------------------ the whole query

    def base_where(self, params: list[Any]) -> str:
        clauses = [] if self.include_deleted else ['t0."IsDeleted" = 0']
        if self.query.where is not None:
            clauses.append(self.condition(self.query.where, params))
        return (" WHERE " + " AND ".join(clauses)) if clauses else ""

    def from_clause(self) -> str:
        return f"FROM {quote_identifier(self.obj.name)} AS t0 " + " ".join(self.join_sql)

    def limit_clause(self, params: list[Any]) -> str:
        query = self.query
        if query.offset is not None and query.offset > MAX_OFFSET:
            raise query_error(
                "NUMBER_OUTSIDE_VALID_RANGE", self.text, len(self.text), f"Maximum SOQL offset allowed is {MAX_OFFSET}"
            )
        if query.limit is None and query.offset is None:
            return ""
        params.extend([query.limit if query.limit is not None else -1, query.offset or 0])
        return " LIMIT ? OFFSET ?"

    def order_clause(self, aggregate: bool) -> str:
        parts = []
        for item in self.query.order_by:
            typed = self.expression(item.expr)
            if aggregate:
                self.require_grouped(item.expr, "Ordered field must be grouped or aggregated")
            elif isinstance(item.expr, FuncCall):
                raise malformed(
                    self.text, item.pos, "Aggregate and date functions can only be ordered in aggregate queries"
                )
            if typed.field is not None and not typed.field.sortable:
                raise invalid_field(
                    self.text, item.pos, f"field '{typed.field.name}' can not be sorted in a query call"
                )
            collate = " COLLATE NOCASE" if typed.type in TEXT_TYPES and typed.type not in ("id", "reference") else ""
            nulls = "LAST" if item.nulls_last else "FIRST"  # Salesforce sorts nulls first unless told otherwise
            parts.append(f"{typed.sql}{collate} {'DESC' if item.descending else 'ASC'} NULLS {nulls}")
        return (parts and " ORDER BY " + ", ".join(parts)) or ""

    def compile(self) -> Plan:
        query = self.query
        aggregate = bool(query.group_by) or any(
            isinstance(item.expr, FuncCall) and item.expr.is_aggregate for item in query.select
        )
        if aggregate:
            return self.compile_aggregate()
        return self.compile_records()

    def compile_records(self) -> Plan:
        select_sql = ["t0.rowid", 't0."Id"']
        columns: list[RecordColumn] = []
        relations: dict[tuple[str, ...], tuple[str, int]] = {}
        seen: set[str] = set()
        for item in self.query.select:
            if isinstance(item.expr, FuncCall):
                raise malformed(self.text, item.pos, f"{item.expr.name} can only be selected in an aggregate query")
            if item.alias:
                raise malformed(self.text, item.pos, f"unexpected token: '{item.alias}'")
            typed, names, chain = self.resolve(item.expr)
            key = ".".join(names).lower()
            if key in seen:
                raise malformed(self.text, item.pos, f"duplicate field selected: {'.'.join(names)}")
            seen.add(key)
            for depth in range(1, len(chain) + 1):
                sub_chain = chain[:depth]
                if sub_chain not in relations:
                    alias, target = self.joins[sub_chain]
                    select_sql.append(f'{alias}."Id"')
                    relations[sub_chain] = (target.name, len(select_sql) - 1)
            select_sql.append(typed.sql)
            columns.append(RecordColumn(names, typed.type, len(select_sql) - 1))
        params: list[Any] = []
        where = self.base_where(params)
        order = self.order_clause(aggregate=False)
        order = (order + ", t0.rowid") if order else " ORDER BY t0.rowid"
        limit = self.limit_clause(params)
        ids_sql = f"SELECT t0.rowid {self.from_clause()}{where}{order}{limit}"
        page_sql = f"SELECT {', '.join(select_sql)} {self.from_clause()} WHERE t0.rowid IN "
        return Plan(self.obj, "records", ids_sql, params, page_sql, columns, relations)

    def compile_aggregate(self) -> Plan:
        query = self.query
        for expr in query.group_by:
            typed = self.expression(expr)
            if isinstance(expr, FieldRef) and typed.field is not None and not typed.field.groupable:
                raise invalid_field(
                    self.text, expr.pos, f"field '{typed.field.name}' can not be grouped in a query call"
                )
        count_only = any(isinstance(i.expr, FuncCall) and i.expr.arg is None for i in query.select)
        if count_only and len(query.select) > 1:
            raise malformed(self.text, query.select[1].pos, "COUNT() must be the only element in the SELECT list")
        params: list[Any] = []
        select_sql: list[str] = []
        outputs: list[tuple[str, Callable[[Any], Any]]] = []
        expr_number = 0
        for item in query.select:
            expr = item.expr
            if query.group_by:
                self.require_grouped(expr, "Field must be grouped or aggregated")
            elif not (isinstance(expr, FuncCall) and expr.is_aggregate):
                label = ".".join(expr.path) if isinstance(expr, FieldRef) else expr.name
                raise malformed(self.text, item.pos, f"Field must be grouped or aggregated: {label}")
            typed = self.expression(expr)
            if item.alias:
                key = item.alias
            elif isinstance(expr, FieldRef):
                key = self.resolve(expr)[1][-1]
            else:
                key = f"expr{expr_number}"
                expr_number += 1
            if any(existing.lower() == key.lower() for existing, _ in outputs):
                raise malformed(self.text, item.pos, f"duplicate alias: {key}")
            select_sql.append(typed.sql)
            outputs.append((key, _converter(typed.type)))
        where = self.base_where(params)
        group = ""
        if query.group_by:
            group = " GROUP BY " + ", ".join(self.expression(expr).sql for expr in query.group_by)
        having = ""
        if query.having is not None:
            having = " HAVING " + self.condition(query.having, params, having=True)
        order = self.order_clause(aggregate=True)
        limit = self.limit_clause(params)
        if count_only:
            if query.group_by:
                sql = f"SELECT COUNT(*) FROM (SELECT 1 {self.from_clause()}{where}{group}{having}{limit})"
            else:
                sql = f"SELECT COUNT(*) FROM (SELECT 1 {self.from_clause()}{where}{limit})"
            return Plan(self.obj, "count", sql, params)
        sql = f"SELECT {', '.join(select_sql)} {self.from_clause()}{where}{group}{having}{order}{limit}"
        return Plan(self.obj, "aggregate", sql, params, outputs=outputs)


def _converter(value_type: str) -> Callable[[Any], Any]:
    return lambda value: json_value(value_type, value)
