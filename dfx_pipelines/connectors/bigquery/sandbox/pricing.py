"""On-demand pricing of a query from its SQL, by BigQuery's documented rules.

Bytes processed: for every base table the query scans (views are expanded to the tables under them),
the logical bytes of the columns it references (`SELECT *` = all of them, and so does a whole-row
reference, the table or its alias used as a value: `TO_JSON_STRING(t)`, `SELECT t`; columns a subquery projects
but nobody uses are pruned, as BigQuery does), counted only in the partitions that survive partition
pruning (literal comparisons of the DATE partition column in the WHERE of the scope that reads the
table: =, <, <=, >, >=, BETWEEN, IN). A table read twice counts each (partition, column) once.

Bytes billed, per referenced table: its bytes rounded up to the next MiB, at least 10 MiB; summed over
tables. "MB" in Google's rule is 2^20 bytes (BigQuery reports multiples of 1,048,576, the minimum as
10,485,760). A table of which nothing is read (COUNT(*) alone, or every partition pruned) costs 0,
not 10 MiB: BigQuery bills no bytes for a query that processes none.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.pushdown_predicates import pushdown_predicates
from sqlglot.optimizer.pushdown_projections import pushdown_projections
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from .catalog import Catalog, Column, Table
from .sql import QueryContext, parse_query, resolve_all
from .warehouse import PartitionKey, Warehouse

log = logging.getLogger(__name__)

MIB = 1 << 20
MIN_BILLED_PER_TABLE = 10 * MIB
MAX_VIEW_DEPTH = 16
BASE_TABLE = "dfx_base_table"


def billed_bytes(processed: int) -> int:
    """One table's bill: ceil to the MiB, at least 10 MiB; nothing read, nothing billed."""
    if processed <= 0:
        return 0
    return max(MIN_BILLED_PER_TABLE, math.ceil(processed / MIB) * MIB)


@dataclass(frozen=True)
class TableScan:
    table: Table
    columns: frozenset[str]
    partitions: frozenset[PartitionKey] | None  # None: every partition
    bytes_processed: int
    bytes_billed: int


@dataclass(frozen=True)
class Price:
    scans: tuple[TableScan, ...]
    exact: bool  # False: the column analysis failed and whole tables were priced (never under-bills)

    @property
    def bytes_processed(self) -> int:
        return sum(scan.bytes_processed for scan in self.scans)

    @property
    def bytes_billed(self) -> int:
        return sum(scan.bytes_billed for scan in self.scans)

    def referenced_tables(self) -> list[dict[str, str]]:
        return [scan.table.reference() for scan in self.scans]


# ---------------------------------------------------------------- views and schema


def _expand(
    tree: exp.Expr, catalog: Catalog, context: QueryContext, bases: dict[int, Table], depth: int = 0
) -> exp.Expr:
    """Inline views as subqueries and spell base tables out in full, remembering each base node."""
    if depth > MAX_VIEW_DEPTH:
        raise ValueError("views nested too deeply")
    for node, table in resolve_all(tree, catalog, context):
        alias = node.alias or node.name
        if table.is_view:
            inner = _expand(
                parse_query(table.view_sql),
                catalog,
                QueryContext(table.project, table.dataset, context.location),
                bases,
                depth + 1,
            )
            replacement = exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias)))
            if node is tree:
                return replacement
            node.replace(replacement)
            continue
        node.set("catalog", exp.to_identifier(table.project))
        node.set("db", exp.to_identifier(table.dataset))
        node.set("this", exp.to_identifier(table.name))
        if not node.alias:
            node.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
        node.meta[BASE_TABLE] = table  # survives the optimizer's copies, unlike node identity
        bases[id(table)] = table
    return tree


SQL_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}


def _sql_type(column: Column) -> str:
    if column.type in ("RECORD", "STRUCT"):
        base = "STRUCT<" + ", ".join(f"{f.name} {_sql_type(f)}" for f in column.fields) + ">"
    else:
        base = SQL_TYPES.get(column.type, column.type)
    return f"ARRAY<{base}>" if column.mode == "REPEATED" else base


def _schema(tables: list[Table]) -> dict[str, Any]:
    schema: dict[str, Any] = {}
    for table in tables:
        columns = {c.name: _sql_type(c) for c in table.columns}
        schema.setdefault(table.project, {}).setdefault(table.dataset, {})[table.name] = columns
    return schema


# ---------------------------------------------------------------- partition pruning


def _date_literal(node: exp.Expr) -> dt.date | None:
    if isinstance(node, exp.Cast) and node.to.is_type(exp.DataType.Type.DATE):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string and len(node.this) == 10:
        try:
            return dt.date.fromisoformat(node.this)
        except ValueError:
            return None
    return None


COMPARISONS: dict[type, tuple[Callable[[Any, Any], bool], Callable[[Any, Any], bool]]] = {
    # node type: (column OP literal, literal OP column)
    exp.EQ: (operator.eq, operator.eq),
    exp.GT: (operator.gt, operator.lt),
    exp.GTE: (operator.ge, operator.le),
    exp.LT: (operator.lt, operator.gt),
    exp.LTE: (operator.le, operator.ge),
}


def _partition_predicate(term: exp.Expr, is_partition: Callable[[exp.Expr], bool]) -> Callable[[dt.date], bool] | None:
    """A test on the partition date for one WHERE conjunct, or None if it does not prune."""
    if type(term) in COMPARISONS:
        forward, backward = COMPARISONS[type(term)]
        left, right = term.this, term.expression
        if is_partition(left) and (value := _date_literal(right)) is not None:
            return lambda day: forward(day, value)
        if is_partition(right) and (value := _date_literal(left)) is not None:
            return lambda day: backward(day, value)
    if isinstance(term, exp.Between) and is_partition(term.this):
        low, high = _date_literal(term.args["low"]), _date_literal(term.args["high"])
        if low is not None and high is not None:
            return lambda day: low <= day <= high
    if isinstance(term, exp.In) and is_partition(term.this):
        candidates = term.expressions
        unnest = term.args.get("unnest")
        if unnest is not None and len(unnest.expressions) == 1 and isinstance(unnest.expressions[0], exp.Array):
            candidates = unnest.expressions[0].expressions
        values = [_date_literal(v) for v in candidates]
        if values and all(v is not None for v in values):
            allowed = set(values)
            return lambda day: day in allowed
    return None


def _surviving_partitions(
    scope: Scope, alias: str, table: Table, all_keys: list[PartitionKey]
) -> frozenset[PartitionKey] | None:
    where = scope.expression.args.get("where") if isinstance(scope.expression, exp.Select) else None
    if where is None or not table.partition_field:
        return None
    field = table.partition_field.lower()

    def is_partition(node: exp.Expr) -> bool:
        return isinstance(node, exp.Column) and node.name.lower() == field and node.table == alias

    condition = where.this
    terms = list(condition.flatten()) if isinstance(condition, exp.And) else [condition]
    tests = [t for t in (_partition_predicate(term, is_partition) for term in terms) if t is not None]
    if not tests:
        return None
    return frozenset(k for k in all_keys if k is not None and all(test(k) for test in tests))


# ---------------------------------------------------------------- the price


def _owner(scope: Scope | None, alias: str) -> Scope | None:
    while scope is not None and alias not in scope.sources:
        scope = scope.parent
    return scope


def _row_aliases(scope: Scope) -> list[str]:
    """Aliases used as values in this scope: `TO_JSON_STRING(t)`, `SELECT t`, `t.*` inside an expression."""
    aliases = [node.name for node in scope.table_columns]
    return aliases + [node.table for node in scope.stars if isinstance(node, exp.Column) and node.table]


def price_query(tree: exp.Query, catalog: Catalog, warehouse: Warehouse, context: QueryContext) -> Price:
    """Price a parsed, parameter-bound query (its table references must already resolve)."""
    bases: dict[int, Table] = {}
    expanded = _expand(tree.copy(), catalog, context, bases)
    tables = bases
    reads: dict[int, list[tuple[set[str], frozenset[PartitionKey] | None]]] = {}  # per table: instance reads
    exact = True
    try:
        analysed = qualify(expanded, schema=_schema(list(tables.values())), dialect="bigquery")
        analysed = pushdown_projections(pushdown_predicates(analysed))
        instances: dict[int, tuple[Table, set[str], frozenset[PartitionKey] | None]] = {}
        scopes = list(traverse_scope(analysed))
        for scope in scopes:  # every table instance first: a correlated subquery's scope comes before its outer one
            for alias, source in scope.sources.items():
                table = source.meta.get(BASE_TABLE) if isinstance(source, exp.Table) else None
                if table is not None:
                    keys = warehouse.table_stats(table).partitions
                    instances[id(source)] = (table, set(), _surviving_partitions(scope, alias, table, keys))
        for scope in scopes:
            for column in scope.columns:
                owner = _owner(scope, column.table)
                read = owner.sources.get(column.table) if owner else None
                if isinstance(read, exp.Table) and id(read) in instances:
                    instances[id(read)][1].add(column.name.lower())
            # A table or its alias used as a value (`TO_JSON_STRING(c)`, `SELECT c`, `c.*` inside an
            # expression) is the whole row: every column of the table is scanned.
            for alias in _row_aliases(scope):
                owner = _owner(scope, alias)
                read = owner.sources.get(alias) if owner else None
                if isinstance(read, exp.Table) and id(read) in instances:
                    instances[id(read)][1].update(c.name.lower() for c in instances[id(read)][0].columns)
        for table, columns, partitions in instances.values():
            reads.setdefault(id(table), []).append((columns, partitions))
    except (SqlglotError, ValueError, KeyError) as exc:
        # Price every column of every partition rather than guess low: a cap set from this will hold.
        log.warning("BigQuery sandbox: column analysis failed (%s); pricing whole tables", exc)
        exact = False
        reads = {key: [({c.name.lower() for c in t.columns}, None)] for key, t in tables.items()}
    scans = [_scan(tables[key], instance_reads, warehouse) for key, instance_reads in reads.items()]
    scans.sort(key=lambda s: (s.table.project, s.table.dataset, s.table.name))
    return Price(tuple(scans), exact)


def _scan(
    table: Table, instance_reads: list[tuple[set[str], frozenset[PartitionKey] | None]], warehouse: Warehouse
) -> TableScan:
    stats = warehouse.table_stats(table)
    pairs: set[tuple[PartitionKey, str]] = set()
    for columns, partitions in instance_reads:
        keys = stats.partitions if partitions is None else partitions
        pairs.update((key, column) for key in keys for column in columns)
    processed = sum(stats.bytes.get(key, {}).get(column, 0) for key, column in pairs)
    all_columns = frozenset(c for cols, _ in instance_reads for c in cols)
    parts = [p for _, p in instance_reads]
    partitions = None if any(p is None for p in parts) else frozenset().union(*(p for p in parts if p is not None))
    return TableScan(table, all_columns, partitions, processed, billed_bytes(processed))
