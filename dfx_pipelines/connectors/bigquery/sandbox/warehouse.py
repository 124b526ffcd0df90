"""The sandbox's storage: one in-memory DuckDB connection (behind a lock) holding every table and view,
plus per-partition, per-column logical byte totals computed once at load time so pricing is a lookup."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from .catalog import Catalog, Table
from .sizes import duckdb_type, quote, value_size_sql
from .sql import QueryContext, parse_query, to_duckdb

log = logging.getLogger(__name__)

PartitionKey = dt.date | None  # None: the single partition of an unpartitioned table


@dataclass
class TableStats:
    """Logical bytes of a base table, per partition and column, as BigQuery would price a scan."""

    num_rows: int = 0
    bytes: dict[PartitionKey, dict[str, int]] = field(default_factory=dict)
    rows: dict[PartitionKey, int] = field(default_factory=dict)

    @property
    def partitions(self) -> list[PartitionKey]:
        return list(self.bytes)

    @property
    def total_bytes(self) -> int:
        return sum(sum(columns.values()) for columns in self.bytes.values())

    def scanned_bytes(self, columns: Iterable[str], partitions: Iterable[PartitionKey] | None = None) -> int:
        wanted = [c.lower() for c in columns]
        keys = self.bytes.keys() if partitions is None else partitions
        return sum(self.bytes[key].get(name, 0) for key in keys if key in self.bytes for name in wanted)


@dataclass
class Execution:
    """A finished query: DuckDB column names and types, and the rows as Python values."""

    columns: list[tuple[str, str]]
    rows: list[tuple[Any, ...]]


class Warehouse:
    """Loads the frames (keyed `dataset.table`) of a catalog into DuckDB and answers SQL against them."""

    def __init__(self, catalog: Catalog, frames: Mapping[str, pd.DataFrame]):
        self.catalog = catalog
        self.stats: dict[tuple[str, str, str], TableStats] = {}
        self.executed: list[str] = []  # every statement run for a query job: dry runs never add one
        self._lock = threading.Lock()
        self._db = duckdb.connect(":memory:")
        self._db.execute("SET TimeZone = 'UTC'")  # TIMESTAMP is an absolute instant in BigQuery
        tables = list(catalog.tables.values())
        for table in (t for t in tables if not t.is_view):
            frame = frames.get(f"{table.dataset}.{table.name}")
            self._load(table, frame if frame is not None else pd.DataFrame(columns=[c.name for c in table.columns]))
            self.stats[self._key(table)] = self._measure(table)
        for table in (t for t in tables if t.is_view):
            view_sql = to_duckdb(parse_query(table.view_sql), catalog, QueryContext(table.project, table.dataset))
            self._db.execute(f"CREATE VIEW {quote(table.storage_name)} AS {view_sql}")

    def close(self) -> None:
        # Drop the connection object too: DuckDB objects still alive at interpreter exit make its
        # bindings (nanobind) print leak reports.
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None  # type: ignore[assignment]

    @staticmethod
    def _key(table: Table) -> tuple[str, str, str]:
        return (table.project.lower(), table.dataset.lower(), table.name.lower())

    def table_stats(self, table: Table) -> TableStats:
        return self.stats.get(self._key(table), TableStats())

    def _load(self, table: Table, frame: pd.DataFrame) -> None:
        # Decimals go in as text so DuckDB casts them exactly instead of guessing a float.
        staged = frame.copy(deep=False)
        for column in table.columns:
            if column.type in ("NUMERIC", "BIGNUMERIC") and column.mode != "REPEATED":
                staged[column.name] = staged[column.name].map(lambda v: None if v is None else str(v))
        selects = ", ".join(f"CAST({quote(c.name)} AS {duckdb_type(c)}) AS {quote(c.name)}" for c in table.columns)
        self._db.register("staged_frame", staged)
        try:
            self._db.execute(f"CREATE TABLE {quote(table.storage_name)} AS SELECT {selects} FROM staged_frame")
        finally:
            self._db.unregister("staged_frame")

    def _measure(self, table: Table) -> TableStats:
        partition = quote(table.partition_field) if table.partition_field else "NULL::DATE"
        sizes = ", ".join(f"SUM({value_size_sql(quote(c.name), c)})" for c in table.columns)
        query = f"SELECT {partition} AS p, COUNT(*), {sizes} FROM {quote(table.storage_name)} GROUP BY 1"
        stats = TableStats()
        for p, count, *column_bytes in self._db.execute(query).fetchall():
            stats.rows[p] = int(count)
            stats.bytes[p] = {c.name.lower(): int(b or 0) for c, b in zip(table.columns, column_bytes)}
        stats.num_rows = sum(stats.rows.values())
        return stats

    # ------------------------------------------------------------ queries

    def describe(self, sql: str) -> list[tuple[str, str]]:
        """Plan without running: the result's column names and DuckDB types (a dry run's schema)."""
        with self._lock:
            rows = self._db.execute(f"DESCRIBE {sql}").fetchall()
        return [(str(row[0]), str(row[1])) for row in rows]

    def execute(self, sql: str) -> Execution:
        with self._lock:
            self.executed.append(sql)
            cursor = self._db.execute(sql)
            columns = [(str(d[0]), str(d[1])) for d in cursor.description or []]
            rows = cursor.fetchall()
        return Execution(columns, rows)

    def read_rows(self, table: Table, start: int, count: int, fields: list[str] | None = None) -> list[tuple[Any, ...]]:
        """tabledata.list: rows in storage order (BigQuery promises no order either), no query, no bill."""
        names = fields or [c.name for c in table.columns]
        selects = ", ".join(quote(n) for n in names)
        with self._lock:
            return self._db.execute(
                f"SELECT {selects} FROM {quote(table.storage_name)} LIMIT ? OFFSET ?", [count, start]
            ).fetchall()
