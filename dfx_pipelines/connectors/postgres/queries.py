"""The SQL the PostgreSQL connector sends, composed with `psycopg.sql`: every identifier an
`sql.Identifier` (quoted by psycopg, after it matched `platform.identifiers.postgres_name`), every value an
`sql.Literal` (adapted by psycopg). `render` turns a composition into the exact text that is gated
(`resource.GatedPostgres`) and then sent: what the gate judged is what runs.

Each metric query is ONE aggregate SELECT for a whole range of days, grouped by day (`dfx_period`) and the
spec's group-by columns. A date column is its own day; a timestamp's day is its UTC date, and its filter is
a half-open interval on the column itself, so an index on the column serves it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from psycopg import sql

from dfx_pipelines.connectors.postgres.metrics import (
    PERIOD_ALIAS,
    TIME_TYPES,
    VALUE_ALIAS,
    ChangeTracking,
    MetricSpec,
    base_type,
)
from dfx_pipelines.connectors.postgres.selection import split_table
from dfx_pipelines.platform.errors import ConfigError

CHANGED_ALIAS, WATERMARK_ALIAS = "dfx_changed", "dfx_watermark"


def render(composed: sql.Composable) -> str:
    """The text psycopg sends for `composed` (no connection needed: identifiers and literals only)."""
    return composed.as_string(None)


def table_identifier(table: str) -> sql.Composable:
    schema, name = split_table(table)
    return sql.Identifier(schema, name)


def _time_kind(time_type: str) -> str:
    kind = base_type(time_type)
    if kind not in TIME_TYPES:
        raise ConfigError(f"time column type {time_type} is not one of {', '.join(TIME_TYPES)}")
    return kind


def day_expression(column: str, time_type: str) -> sql.Composable:
    """A date column as it is; a timestamp's UTC date (a `timestamptz` converted to UTC first, whatever
    the session's TimeZone)."""
    kind, ident = _time_kind(time_type), sql.Identifier(column)
    if kind == "date":
        return ident
    if kind == "timestamp with time zone":
        return sql.SQL("CAST(({} AT TIME ZONE 'UTC') AS DATE)").format(ident)
    return sql.SQL("CAST({} AS DATE)").format(ident)


def instant(value: date | datetime, time_type: str) -> sql.Composable:
    """A day boundary (or a cursor) as a literal of the column's own type."""
    kind = _time_kind(time_type)
    if kind == "date":
        return sql.SQL("CAST({} AS DATE)").format(
            sql.Literal((value if not isinstance(value, datetime) else value.date()).isoformat())
        )
    moment = value if isinstance(value, datetime) else datetime.combine(value, time(0), UTC)
    if kind == "timestamp with time zone":
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        return sql.SQL("CAST({} AS TIMESTAMPTZ)").format(sql.Literal(aware.astimezone(UTC).isoformat()))
    naive = moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment
    return sql.SQL("CAST({} AS TIMESTAMP)").format(sql.Literal(naive.isoformat()))


def day_filter(column: str, time_type: str, first: date, last: date) -> sql.Composable:
    """`first <= column < last + 1 day`, on the column itself."""
    ident = sql.Identifier(column)
    return sql.SQL("{} >= {} AND {} < {}").format(
        ident, instant(first, time_type), ident, instant(last + timedelta(days=1), time_type)
    )


def _aggregate(spec: MetricSpec) -> sql.Composable:
    if spec.column is None:
        return sql.SQL("COUNT(*)")
    column = sql.Identifier(spec.column)
    if spec.measure == "COUNT_DISTINCT":
        return sql.SQL("COUNT(DISTINCT {})").format(column)
    return sql.SQL("{}({})").format(sql.SQL(spec.measure), column)  # one of MEASURES, never customer text


def _positions(count: int) -> sql.Composable:
    return sql.SQL(", ").join(sql.SQL(str(n)) for n in range(1, count + 1))


def metric_query(spec: MetricSpec, first: date, last: date, time_type: str) -> str:
    """One aggregate SELECT for the days `first..last`, grouped by day and the spec's group-by columns."""
    if last < first:
        raise ConfigError(f"empty day range {first} .. {last}")
    select = [
        sql.SQL("{} AS {}").format(day_expression(spec.time_column, time_type), sql.Identifier(PERIOD_ALIAS)),
        *(sql.SQL("{} AS {}").format(sql.Identifier(c), sql.Identifier(c)) for c in spec.group_by),
        sql.SQL("{} AS {}").format(_aggregate(spec), sql.Identifier(VALUE_ALIAS)),
    ]
    return render(
        sql.SQL("SELECT {select} FROM {table} WHERE {where} GROUP BY {groups}").format(
            select=sql.SQL(", ").join(select),
            table=table_identifier(spec.table),
            where=day_filter(spec.time_column, time_type, first, last),
            groups=_positions(1 + len(spec.group_by)),
        )
    )


def key_count_query(tracking: ChangeTracking, first: date, last: date, time_type: str) -> str:
    """The tracked table's keys per day (`COUNT(key)`): compared night by night, a drop is a hard delete."""
    assert tracking.key_column is not None
    return render(
        sql.SQL("SELECT {day} AS {period}, COUNT({key}) AS {value} FROM {table} WHERE {where} GROUP BY 1").format(
            day=day_expression(tracking.time_column, time_type),
            period=sql.Identifier(PERIOD_ALIAS),
            key=sql.Identifier(tracking.key_column),
            value=sql.Identifier(VALUE_ALIAS),
            table=table_identifier(tracking.table),
            where=day_filter(tracking.time_column, time_type, first, last),
        )
    )


def changes_query(tracking: ChangeTracking, since: datetime | date, time_type: str, watermark_type: str) -> str:
    """The days rows changed on since the cursor, how many, and the newest watermark: an aggregate too,
    so the change sensor reads no row either."""
    return render(
        sql.SQL(
            "SELECT {day} AS {period}, COUNT(*) AS {changed}, MAX({mark}) AS {watermark} FROM {table} "
            "WHERE {mark} > {since} GROUP BY 1"
        ).format(
            day=day_expression(tracking.time_column, time_type),
            period=sql.Identifier(PERIOD_ALIAS),
            changed=sql.Identifier(CHANGED_ALIAS),
            mark=sql.Identifier(tracking.watermark_column),
            watermark=sql.Identifier(WATERMARK_ALIAS),
            table=table_identifier(tracking.table),
            since=instant(since, watermark_type),
        )
    )
