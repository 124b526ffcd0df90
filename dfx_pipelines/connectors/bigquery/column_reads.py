"""Kept for the BigQuery tests and benchmarks that import it from here: the column-read rules now live in
`platform.sql_gate.column_reads`, shared by every warehouse connector."""

from __future__ import annotations

from dfx_pipelines.platform.sql_gate.column_reads import (
    ColumnReads,
    Schema,
    TableKey,
    UnresolvedExpression,
    resolve_column_reads,
)

__all__ = ["ColumnReads", "Schema", "TableKey", "UnresolvedExpression", "resolve_column_reads"]
