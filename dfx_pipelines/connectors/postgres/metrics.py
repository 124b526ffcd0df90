"""Customer-defined PostgreSQL metrics: a spec (an allowlisted aggregate of one column of a selected table,
optional group-by columns, a date or timestamp column whose UTC day is the partition) checked against the
table's catalog entry, the change-tracking configuration (a selected watermark column such as
`updated_at`, and a key column whose per-day count notices hard deletes), and the aggregate rows a query
returns turned into `MetricRow`s. Pure: no Dagster, no psycopg — `queries.py` composes the SQL with
`psycopg.sql`, and every identifier reaching it has matched `platform.identifiers.postgres_name` here.

Specs and change tracking live in `connection.endpoint` (non-secret configuration), as BigQuery's do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dfx_pipelines.connectors.postgres.selection import PostgresSelection, split_table
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.warehouse_results import PERIOD_ALIAS as PERIOD_ALIAS
from dfx_pipelines.platform.warehouse_results import VALUE_ALIAS as VALUE_ALIAS
from dfx_pipelines.platform.warehouse_results import by_day as by_day
from dfx_pipelines.platform.warehouse_results import result_rows
from dfx_pipelines.platform.warehouse_results import results_markdown as results_markdown

MEASURES = ("SUM", "COUNT", "COUNT_DISTINCT", "AVG", "MIN", "MAX")
KEY_COUNT_METRIC = "dfx_key_count"  # per table and day: how many keys it holds (hard deletes show as a drop)
MAX_GROUP_BY = 4
NUMERIC_TYPES = {"smallint", "integer", "bigint", "numeric", "real", "double precision"}
TIME_TYPES = ("date", "timestamp without time zone", "timestamp with time zone")  # a timestamp's day is its UTC date
_TYPMOD = re.compile(r"\(\d+(?:,\d+)?\)")


def base_type(pg_type: str) -> str:
    """`numeric(12,2)` -> `numeric`, `timestamp(3) with time zone` -> `timestamp with time zone`."""
    return " ".join(_TYPMOD.sub("", pg_type).split())


def _column(value: str) -> str:
    name = identifiers.postgres_name(value, "column name")
    if name.startswith("dfx_"):
        raise ValueError(f"column {name!r}: names starting with dfx_ are reserved for the connector's aliases")
    return name


class MetricSpec(BaseModel):
    """One metric a customer defined over a selected table."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # exactly as written, or refused

    name: str
    table: str  # schema.table
    measure: str  # SUM, COUNT, COUNT_DISTINCT (or "COUNT DISTINCT"), AVG, MIN, MAX
    column: str | None = None  # COUNT without a column counts rows
    group_by: tuple[str, ...] = Field(default=())
    time_column: str
    description: str = Field(default="", max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        name = identifiers.sql_identifier(value)
        if name == KEY_COUNT_METRIC:
            raise ValueError(f"metric name {name!r} is reserved")
        return name

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        split_table(value)
        return value

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        normalized = "_".join(str(value).upper().split())
        if normalized not in MEASURES:
            raise ValueError(f"measure {value!r} is not one of {', '.join(MEASURES)}")
        return normalized

    @field_validator("column", "time_column")
    @classmethod
    def _columns(cls, value: str | None) -> str | None:
        return None if value is None else _column(value)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            _column(column)
        if len(set(value)) != len(value):
            raise ValueError(f"group_by repeats a column: {list(value)}")
        if len(value) > MAX_GROUP_BY:
            raise ValueError(f"at most {MAX_GROUP_BY} group-by columns")
        return value

    @model_validator(mode="after")
    def _needs_column(self) -> MetricSpec:
        if self.column is None and self.measure != "COUNT":
            raise ValueError(f"{self.measure} needs a column")
        return self

    @property
    def schema_table(self) -> tuple[str, str]:
        return split_table(self.table)

    @property
    def measure_name(self) -> str:
        """The metric store's `measure`: `count`, `sum_amount`, `count_distinct_customer_id`, …"""
        return "count" if self.column is None else f"{self.measure.lower()}_{self.column}"

    @property
    def columns(self) -> set[str]:
        return {c for c in (self.column, self.time_column, *self.group_by) if c}


class ChangeTracking(BaseModel):
    """How changes of one selected table are found: rows whose `watermark_column` moved past the cursor
    (inserts and updates), and `key_column`'s count per day (`time_column`), which falls when rows are
    hard-deleted — something no watermark can show."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    table: str
    watermark_column: str
    time_column: str
    key_column: str | None = None

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        split_table(value)
        return value

    @field_validator("watermark_column", "time_column", "key_column")
    @classmethod
    def _columns(cls, value: str | None) -> str | None:
        return None if value is None else _column(value)

    @property
    def schema_table(self) -> tuple[str, str]:
        return split_table(self.table)


def _parse_list(raw: Any, model: type[BaseModel], what: str) -> list[Any]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError(f"{what} must be a list")
    parsed = []
    for index, item in enumerate(raw):
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{what} #{index + 1}: {problems}") from None
    return parsed


def parse_specs(raw: Any) -> list[MetricSpec]:
    """Specs from untrusted JSON, with one clear error for all that is wrong."""
    specs: list[MetricSpec] = _parse_list(raw, MetricSpec, "metric spec")
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"metric spec names repeat: {names}")
    return specs


def parse_tracking(raw: Any) -> list[ChangeTracking]:
    tracking: list[ChangeTracking] = _parse_list(raw, ChangeTracking, "change tracking entry")
    tables = [t.table for t in tracking]
    if len(set(tables)) != len(tables):
        raise ConfigError(f"change tracking names a table twice: {tables}")
    return tracking


def specs_of(connection: Connection) -> list[MetricSpec]:
    return parse_specs(connection.endpoint.get("metric_specs", []))


def tracking_of(connection: Connection) -> list[ChangeTracking]:
    return parse_tracking(connection.endpoint.get("change_tracking", []))


@dataclass(frozen=True)
class TableInfo:
    """What the catalog says of a selected table: its columns (name -> type) and those the role may read."""

    columns: Mapping[str, str]
    readable: frozenset[str]
    kind: str = "table"


def _column_problems(
    what: str, table: str, columns: Iterable[str], selection: PostgresSelection, info: TableInfo
) -> list[str]:
    schema, name = split_table(table)
    narrowed = selection.columns_of(schema, name)
    problems = []
    for column in sorted(set(columns)):
        if column not in info.columns:
            problems.append(f"{what}: column {table}.{column} does not exist")
        elif narrowed is not None and column not in narrowed:
            problems.append(f"{what}: column {table}.{column} is not selected")
        elif column not in info.readable:
            problems.append(f"{what}: the role may not SELECT column {table}.{column}")
    return problems


def _time_problem(what: str, table: str, column: str, info: TableInfo) -> list[str]:
    kind = info.columns.get(column)
    if kind is not None and base_type(kind) not in TIME_TYPES:
        return [f"{what}: time column {column} of {table} is {kind}; a date or timestamp column is required"]
    return []


def spec_problems(spec: MetricSpec, selection: PostgresSelection, tables: Mapping[str, TableInfo]) -> list[str]:
    """Everything wrong with one spec against the selection and the table's catalog entry."""
    what = f"metric {spec.name}"
    if not selection.is_selected(*spec.schema_table):
        return [f"{what}: table {spec.table} is not selected"]
    info = tables.get(spec.table)
    if info is None:
        return [f"{what}: no catalog entry known for {spec.table}"]
    problems = _column_problems(what, spec.table, spec.columns, selection, info)
    problems += _time_problem(what, spec.table, spec.time_column, info)
    kind = info.columns.get(spec.column or "")  # a missing column is reported above
    if spec.measure in ("SUM", "AVG") and kind is not None and base_type(kind) not in NUMERIC_TYPES:
        problems.append(f"{what}: {spec.measure} needs a numeric column, {spec.column} is {kind}")
    return problems


def tracking_problems(
    tracking: ChangeTracking, selection: PostgresSelection, tables: Mapping[str, TableInfo]
) -> list[str]:
    what = f"change tracking of {tracking.table}"
    if not selection.is_selected(*tracking.schema_table):
        return [f"{what}: table {tracking.table} is not selected"]
    info = tables.get(tracking.table)
    if info is None:
        return [f"{what}: no catalog entry known for {tracking.table}"]
    columns = [tracking.watermark_column, tracking.time_column] + ([tracking.key_column] if tracking.key_column else [])
    problems = _column_problems(what, tracking.table, columns, selection, info)
    problems += _time_problem(what, tracking.table, tracking.time_column, info)
    problems += [
        p.replace("time column", "watermark column")
        for p in _time_problem(what, tracking.table, tracking.watermark_column, info)
    ]
    return problems


# ---------------------------------------------------------------- results


def key_count_rows(table: str, rows: Iterable[Mapping[str, Any]]) -> list[MetricRow]:
    """A tracked table's keys per day, stored beside the metrics so the nightly check can compare."""
    return sorted(
        (
            MetricRow(
                KEY_COUNT_METRIC, "count", float(row[VALUE_ALIAS]), row[PERIOD_ALIAS], MetricRow.dims(table=table)
            )
            for row in rows
        ),
        key=lambda r: (r.period, r.dimensions),
    )


@dataclass(frozen=True)
class KeyCountDrift:
    table: str
    day: date
    stored: int
    now: int


def key_count_drift(
    table: str, stored: Mapping[date, int], now: Mapping[date, int], days: Iterable[date]
) -> list[KeyCountDrift]:
    """Days whose key count now differs from the one stored when they were last computed: fewer keys
    means rows were hard-deleted (or moved to another day); more means rows arrived the watermark missed."""
    return [
        KeyCountDrift(table, day, stored.get(day, 0), now.get(day, 0))
        for day in sorted(days)
        if stored.get(day, 0) != now.get(day, 0)
    ]


def to_metric_rows(spec: MetricSpec, rows: Iterable[Mapping[str, Any]]) -> list[MetricRow]:
    """Result rows (one per day and group) as metric rows; the day comes from `dfx_period` (PERIOD_ALIAS)."""
    return result_rows(spec.name, spec.measure_name, spec.group_by, rows, dates=True)
