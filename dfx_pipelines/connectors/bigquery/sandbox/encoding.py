"""Result schemas and row values as BigQuery's REST API writes them (`{"f": [{"v": ...}]}`, INT64 as a
string, TIMESTAMP as epoch microseconds or float seconds, NUMERIC as a plain decimal string, ...)."""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import duckdb

from .catalog import Column

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)

SCALAR_TYPES = {
    "tinyint": "INTEGER",
    "smallint": "INTEGER",
    "integer": "INTEGER",
    "bigint": "INTEGER",
    "hugeint": "INTEGER",
    "utinyint": "INTEGER",
    "usmallint": "INTEGER",
    "uinteger": "INTEGER",
    "ubigint": "INTEGER",
    "float": "FLOAT",
    "double": "FLOAT",
    "varchar": "STRING",
    "boolean": "BOOLEAN",
    "date": "DATE",
    "time": "TIME",
    "timestamp with time zone": "TIMESTAMP",
    "timestamp": "DATETIME",
    "timestamp_ns": "DATETIME",
    "timestamp_ms": "DATETIME",
    "timestamp_s": "DATETIME",
    "blob": "BYTES",
    "interval": "INTERVAL",
    "json": "JSON",
    "uuid": "STRING",
}


def column_from_duckdb(name: str, duck_type: Any) -> Column:
    """A result column's BigQuery field from its DuckDB type (a DuckDBPyType or its text)."""
    if isinstance(duck_type, str):
        duck_type = duckdb.sqltype(duck_type)
    kind = duck_type.id
    if kind == "list":
        element = column_from_duckdb(name, duck_type.children[0][1])
        return Column(name, element.type, "REPEATED", fields=element.fields)
    if kind == "struct":
        fields = tuple(column_from_duckdb(child, child_type) for child, child_type in duck_type.children)
        return Column(name, "RECORD", fields=fields)
    if kind == "decimal":
        precision, scale = (int(value) for _, value in duck_type.children)
        return Column(name, "NUMERIC" if precision - scale <= 29 and scale <= 9 else "BIGNUMERIC")
    return Column(name, SCALAR_TYPES.get(kind, "STRING"))


def schema_fields(columns: list[tuple[str, Any]]) -> list[Column]:
    return [column_from_duckdb(name, duck_type) for name, duck_type in columns]


def _micros(value: dt.datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return (value - EPOCH) // dt.timedelta(microseconds=1)


def _float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(float(value))


def _decimal(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0E-9") else text


def _timestamp(int64: bool) -> Callable[[Any], str]:
    if int64:
        return lambda v: str(_micros(v))
    return lambda v: repr(_micros(v) / 1_000_000)


def _datetime(value: Any) -> str:
    return value.isoformat() if isinstance(value, (dt.datetime, dt.time)) else str(value)


def scalar_encoder(column: Column, int64_timestamps: bool) -> Callable[[Any], Any]:
    kind = column.type
    if kind == "INTEGER":
        return lambda v: str(int(v))
    if kind == "FLOAT":
        return _float
    if kind in ("NUMERIC", "BIGNUMERIC"):
        return lambda v: _decimal(Decimal(v))
    if kind == "BOOLEAN":
        return lambda v: "true" if v else "false"
    if kind == "BYTES":
        return lambda v: base64.b64encode(bytes(v)).decode("ascii")
    if kind == "DATE":
        return lambda v: v.isoformat()
    if kind == "TIMESTAMP":
        return _timestamp(int64_timestamps)
    if kind in ("DATETIME", "TIME"):
        return _datetime
    if kind == "RECORD":
        children = [(f.name, cell_encoder(f, int64_timestamps)) for f in column.fields]
        return lambda v: {
            "f": [{"v": encode(v.get(name) if isinstance(v, dict) else None)} for name, encode in children]
        }
    return str


def cell_encoder(column: Column, int64_timestamps: bool) -> Callable[[Any], Any]:
    """A function from a DuckDB Python value to the JSON `v` of a cell; NULL stays null."""
    encode = scalar_encoder(column, int64_timestamps)
    if column.mode == "REPEATED":
        return lambda v: None if v is None else [{"v": None if x is None else encode(x)} for x in v]
    return lambda v: None if v is None else encode(v)


def encode_rows(columns: list[Column], rows: list[tuple[Any, ...]], int64_timestamps: bool) -> list[dict[str, Any]]:
    encoders = [cell_encoder(c, int64_timestamps) for c in columns]
    return [{"f": [{"v": encode(value)} for encode, value in zip(encoders, row)]} for row in rows]
