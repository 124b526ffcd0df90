"""Customer-defined BigQuery metrics: a spec (an allowlisted aggregate of one column of a selected
table, optional group-by columns, a DATE or TIMESTAMP time column) turned into GoogleSQL, and the rows
it returns turned into `MetricRow`s. Pure: no Dagster, no client.

Identifiers are never escaped into SQL: each must match its strict pattern (`platform.identifiers`,
so a backtick or a semicolon is refused), and is then backtick-quoted. The time filter is a BETWEEN on
the time column with DATE parameters, so BigQuery prunes partitions when that column is the table's
partitioning column (connect checks it is, or says the query will scan every partition). A TIMESTAMP
column's day is `DATE(ts)` (UTC) in the SELECT and the GROUP BY, and its filter is on the column itself
(`ts >= TIMESTAMP(@first_day) AND ts < TIMESTAMP(DATE_ADD(@last_day, INTERVAL 1 DAY))`), the form BigQuery
documents pruning for (the sandbox prices DATE partitioning only).

Specs live in `connection.endpoint["metric_specs"]` for now (non-secret configuration; a typed field
on `Connection` would be the cleaner home).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import ConfigError, IdentifierError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.warehouse_results import PERIOD_ALIAS as PERIOD_ALIAS
from dfx_pipelines.platform.warehouse_results import VALUE_ALIAS as VALUE_ALIAS
from dfx_pipelines.platform.warehouse_results import by_day as by_day
from dfx_pipelines.platform.warehouse_results import result_rows
from dfx_pipelines.platform.warehouse_results import results_markdown as results_markdown

MEASURES = ("SUM", "COUNT", "COUNT_DISTINCT", "AVG")
MAX_GROUP_BY = 4
FIRST_DAY, LAST_DAY = "first_day", "last_day"  # the query parameters of the time filter
NUMERIC_TYPES = {"INTEGER", "INT64", "FLOAT", "FLOAT64", "NUMERIC", "BIGNUMERIC"}
TIME_TYPES = ("DATE", "TIMESTAMP")  # the day of a TIMESTAMP is its UTC date


class MetricSpec(BaseModel):
    """One metric a customer defined over a selected table."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # never trimmed: exactly as written, or refused

    name: str
    table: str  # dataset.table
    measure: str  # SUM, COUNT, COUNT_DISTINCT (or "COUNT DISTINCT"), AVG
    column: str | None = None  # COUNT without a column counts rows
    group_by: tuple[str, ...] = Field(default=())
    time_column: str
    description: str = Field(default="", max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return identifiers.sql_identifier(value)

    @field_validator("table")
    @classmethod
    def _table(cls, value: str) -> str:
        dataset, dot, table = value.partition(".")
        if not dot:
            raise IdentifierError(f"invalid metric table {value!r}: expected dataset.table")
        identifiers.bigquery_dataset(dataset)
        identifiers.bigquery_table(table)
        return value

    @field_validator("measure")
    @classmethod
    def _measure(cls, value: str) -> str:
        normalized = "_".join(value.upper().split())
        if normalized not in MEASURES:
            raise ValueError(f"measure {value!r} is not one of {', '.join(MEASURES)}")
        return normalized

    @field_validator("column", "time_column")
    @classmethod
    def _column(cls, value: str | None) -> str | None:
        return None if value is None else identifiers.bigquery_column(value)

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for column in value:
            identifiers.bigquery_column(column)
            if column.lower().startswith("dfx_"):
                raise ValueError(f"group-by column {column!r}: names starting with dfx_ are reserved")
        if len({c.lower() for c in value}) != len(value):
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
    def dataset(self) -> str:
        return self.table.partition(".")[0]

    @property
    def table_name(self) -> str:
        return self.table.partition(".")[2]

    @property
    def measure_name(self) -> str:
        """The metric store's `measure`: `count`, `sum_amount`, `count_distinct_session_id`, …"""
        return "count" if self.column is None else f"{self.measure.lower()}_{self.column.lower()}"

    @property
    def columns(self) -> set[str]:
        return {c for c in (self.column, self.time_column, *self.group_by) if c}


def parse_specs(raw: Any) -> list[MetricSpec]:
    """Specs from untrusted JSON, with one clear error for all that is wrong."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ConfigError("metric_specs must be a list of metric specs")
    specs = []
    for index, item in enumerate(raw):
        try:
            specs.append(MetricSpec.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"metric spec #{index + 1}: {problems}") from None
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"metric spec names repeat: {names}")
    return specs


def specs_of(connection: Connection) -> list[MetricSpec]:
    return parse_specs(connection.endpoint.get("metric_specs", []))


@dataclass(frozen=True)
class TableInfo:
    """What connect learned about a table (kept in `connection.discovered`)."""

    columns: Mapping[str, str]  # name -> BigQuery type
    partition_field: str | None = None
    policy_tagged: Mapping[str, Sequence[str]] = dataclass_field(default_factory=dict)  # column -> policy tags


def spec_problems(
    spec: MetricSpec, selection: BigQuerySelection, tables: Mapping[str, TableInfo], granted_tags: Iterable[str] = ()
) -> list[str]:
    """Everything wrong with one spec against the selection and the table's schema."""
    if spec.table_name not in selection.datasets.get(spec.dataset, []):
        return [f"metric {spec.name}: table {spec.table} is not selected"]
    info = tables.get(spec.table)
    if info is None:
        return [f"metric {spec.name}: no schema known for {spec.table}"]
    problems = []
    known = {name.lower(): kind for name, kind in info.columns.items()}
    narrowed = selection.objects.get(spec.table)
    granted = set(granted_tags)
    tagged = {c.lower() for c, tags in info.policy_tagged.items() if not set(tags) <= granted}
    for column in sorted(spec.columns):
        if column.lower() not in known:
            problems.append(f"metric {spec.name}: column {spec.table}.{column} does not exist")
        elif narrowed is not None and column.lower() not in {c.lower() for c in narrowed}:
            problems.append(f"metric {spec.name}: column {spec.table}.{column} is not selected")
        elif column.lower() in tagged:
            problems.append(
                f"metric {spec.name}: column {spec.table}.{column} carries a policy tag this connection was not granted"
            )
    time_type = known.get(spec.time_column.lower())
    if time_type is not None and time_type not in TIME_TYPES:
        problems.append(
            f"metric {spec.name}: time column {spec.time_column} is {time_type}; a DATE or TIMESTAMP column is required"
        )
    if info.partition_field is not None and spec.time_column.lower() != info.partition_field.lower():
        problems.append(
            f"metric {spec.name}: time column {spec.time_column} is not {spec.table}'s partitioning column "
            f"{info.partition_field}: every day would scan the whole table"
        )
    if (
        spec.measure in ("SUM", "AVG")
        and spec.column
        and known.get(spec.column.lower(), "INTEGER") not in NUMERIC_TYPES
    ):
        problems.append(
            f"metric {spec.name}: {spec.measure} needs a numeric column, {spec.column} is {known.get(spec.column.lower())}"
        )
    return problems


def _quote(name: str) -> str:
    # Only ever called on identifiers already matched by a strict pattern (no backtick can occur).
    return f"`{name}`"


def _aggregate(spec: MetricSpec) -> str:
    if spec.column is None:
        return "COUNT(*)"
    column = _quote(spec.column)
    return {
        "SUM": f"SUM({column})",
        "COUNT": f"COUNT({column})",
        "COUNT_DISTINCT": f"COUNT(DISTINCT {column})",
        "AVG": f"AVG({column})",
    }[spec.measure]


@dataclass(frozen=True)
class MetricQuery:
    spec: MetricSpec
    sql: str
    params: dict[str, date]


def time_type_of(connection: Connection, spec: MetricSpec) -> str:
    """The type of a spec's time column as connect discovered it (DATE when unknown, as before)."""
    table = (connection.discovered.get("tables") or {}).get(spec.table) or {}
    columns = {name.lower(): kind for name, kind in (table.get("columns") or {}).items()}
    return columns.get(spec.time_column.lower(), "DATE")


def day_expression(spec: MetricSpec, time_type: str = "DATE") -> str:
    """The spec's day: a DATE column itself, a TIMESTAMP column's date in UTC (`DATE(ts)`: BigQuery's
    default zone is UTC). Written so the same text reads the same in PostgreSQL and Snowflake."""
    if time_type not in TIME_TYPES:
        raise ConfigError(f"metric {spec.name}: time column type {time_type} is not one of {', '.join(TIME_TYPES)}")
    column = _quote(spec.time_column)
    return column if time_type == "DATE" else f"DATE({column})"


def day_filter(spec: MetricSpec, time_type: str = "DATE") -> str:
    """The range filter, on the column itself: BigQuery documents pruning for a filter on the partitioning
    column, so a TIMESTAMP's range is a half-open interval of instants, not a test of `DATE(ts)`."""
    column = _quote(spec.time_column)
    if day_expression(spec, time_type) == column:
        return f"{column} BETWEEN @{FIRST_DAY} AND @{LAST_DAY}"
    return f"{column} >= TIMESTAMP(@{FIRST_DAY}) AND {column} < TIMESTAMP(DATE_ADD(@{LAST_DAY}, INTERVAL 1 DAY))"


def build_query(spec: MetricSpec, project: str, first: date, last: date, time_type: str = "DATE") -> MetricQuery:
    """One aggregate SELECT for a day or a whole range of days, grouped by day (and the spec's group-by
    columns): priced and gated as one, its rows split per day by the caller. The days are parameters
    (`@first_day`, `@last_day`), never spliced into the text."""
    if last < first:
        raise ConfigError(f"empty day range {first} .. {last}")
    identifiers.bigquery_project(project)
    day = day_expression(spec, time_type)
    groups = [_quote(c) for c in spec.group_by]
    select = ", ".join(
        [
            f"{day} AS {_quote(PERIOD_ALIAS)}",
            *(f"{g} AS {g}" for g in groups),
            f"{_aggregate(spec)} AS {_quote(VALUE_ALIAS)}",
        ]
    )
    sql = (
        f"SELECT {select}\n"
        f"FROM `{project}.{spec.dataset}.{spec.table_name}`\n"
        f"WHERE {day_filter(spec, time_type)}\n"
        f"GROUP BY {', '.join([day, *groups])}"
    )
    return MetricQuery(spec, sql, {FIRST_DAY: first, LAST_DAY: last})


def to_metric_rows(spec: MetricSpec, rows: Iterable[Mapping[str, Any]]) -> list[MetricRow]:
    """Result rows (one per day and group) as metric rows; the day comes from `dfx_period` (PERIOD_ALIAS)."""
    return result_rows(spec.name, spec.measure_name, spec.group_by, rows)
