"""BigQuery's logical data size per value, as DuckDB SQL, and the storage type of each BigQuery type.

Documented sizes (https://cloud.google.com/bigquery/pricing#data): INT64, FLOAT64, DATE, DATETIME, TIME
and TIMESTAMP 8 bytes; NUMERIC 16; BIGNUMERIC 32; BOOL 1; STRING and BYTES 2 + their (UTF-8) byte
length; STRUCT the sum of its fields; ARRAY the sum of its elements; NULL 0.
"""

from __future__ import annotations

from .catalog import Column

FIXED_SIZES = {
    "INTEGER": 8,
    "INT64": 8,
    "FLOAT": 8,
    "FLOAT64": 8,
    "DATE": 8,
    "DATETIME": 8,
    "TIME": 8,
    "TIMESTAMP": 8,
    "NUMERIC": 16,
    "BIGNUMERIC": 32,
    "BOOLEAN": 1,
    "BOOL": 1,
}

DUCKDB_TYPES = {
    "INTEGER": "BIGINT",
    "INT64": "BIGINT",
    "FLOAT": "DOUBLE",
    "FLOAT64": "DOUBLE",
    "NUMERIC": "DECIMAL(38,9)",
    "BIGNUMERIC": "DECIMAL(38,9)",  # DuckDB stops at 38 digits
    "BOOLEAN": "BOOLEAN",
    "BOOL": "BOOLEAN",
    "STRING": "VARCHAR",
    "BYTES": "BLOB",
    "DATE": "DATE",
    "DATETIME": "TIMESTAMP",
    "TIME": "TIME",
    "TIMESTAMP": "TIMESTAMPTZ",
}


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def duckdb_type(column: Column) -> str:
    if column.type in ("RECORD", "STRUCT"):
        inner = ", ".join(f"{quote(f.name)} {duckdb_type(f)}" for f in column.fields)
        base = f"STRUCT({inner})"
    else:
        base = DUCKDB_TYPES[column.type]
    return f"{base}[]" if column.mode == "REPEATED" else base


def _scalar_size(expr: str, column: Column) -> str:
    """Bytes of one (non-repeated) value held in `expr`; 0 for NULL."""
    if column.type in FIXED_SIZES:
        return f"(CASE WHEN {expr} IS NULL THEN 0 ELSE {FIXED_SIZES[column.type]} END)"
    if column.type == "STRING":
        return f"COALESCE(2 + strlen({expr}), 0)"  # strlen counts UTF-8 bytes, length() characters
    if column.type == "BYTES":
        return f"COALESCE(2 + octet_length({expr}), 0)"
    if column.type in ("RECORD", "STRUCT"):
        parts = [value_size_sql(f"{expr}.{quote(f.name)}", f) for f in column.fields]
        # A NULL struct is 0 bytes; a present one is the sum of its fields.
        return f"(CASE WHEN {expr} IS NULL THEN 0 ELSE {' + '.join(parts) or '0'} END)"
    raise ValueError(f"no logical size rule for BigQuery type {column.type}")


def value_size_sql(expr: str, column: Column) -> str:
    """A DuckDB expression for the logical bytes of `expr`, a value of `column`'s type and mode."""
    if column.mode == "REPEATED":
        element = Column("element", column.type, "NULLABLE", fields=column.fields)
        return f"COALESCE(list_sum(list_transform({expr}, x -> {_scalar_size('x', element)})), 0)"
    return _scalar_size(expr, column)
