"""The dialect-independent half of the SQL gate every warehouse connector sends its queries through.
Pure: sqlglot only, no client, no Dagster. A connector supplies its dialect, its identifier rules (to
turn a parsed table into its own table reference), the tables' live schemas, what its customer selected
and what its source says is restricted (BigQuery: policy tags); it keeps to itself only what differs —
the estimate step (BigQuery's dry run, PostgreSQL's EXPLAIN) and the budget unit (bytes/USD, plan cost).

The checks, in the order a connector runs them, each refusing with `SqlRefused` naming the problem:
`parse_select` (exactly one read-only query, nothing that writes hidden inside), `stored_tables` (every
stored table the query names; table functions refused), `read_columns` (every expression resolved to the
columns it reads, by `column_reads`' allow-list, or refused naming the expression), `column_problems`
(unselected and restricted columns), `require_aggregate` (the result is an aggregate: every projection an
aggregate or a grouping key) and `check_row_bound` (the rows that came back stay under the bound).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.sql_gate.column_reads import Schema, TableKey, UnresolvedExpression, resolve_column_reads

MAX_SQL_CHARS = 100_000
K = TypeVar("K", bound=Hashable)
# Nodes that write or run something other than a read, refused wherever they hide in a query.
_WRITES = (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Command, exp.Into)


class SqlRefused(ConnectorError):
    """The shared gate refused a query before the source saw it (a connector may re-raise it as its own)."""

    permanent = True  # the same query is refused the same way until a person changes something


@dataclass(frozen=True)
class Dialect:
    """How a source's SQL is parsed and named in messages."""

    sqlglot: str  # sqlglot's dialect name: "bigquery", "postgres", "snowflake"
    language: str  # "GoogleSQL", "PostgreSQL SQL"
    connector: str  # "BigQuery", "PostgreSQL"


def parse_select(sql: str, dialect: Dialect) -> exp.Query:
    """Exactly one read-only query (SELECT, WITH … SELECT, set operations), or `SqlRefused`."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRefused("empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRefused(f"query of {len(sql)} characters is longer than the {MAX_SQL_CHARS} allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect.sqlglot) if s is not None]
    except SqlglotError as exc:
        raise SqlRefused(f"query does not parse as {dialect.language}: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise SqlRefused(f"one statement per query, got {len(statements)}: the connector sends single SELECTs only")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise SqlRefused(
            f"{type(statement).__name__.upper()} statements are refused: the {dialect.connector} connector is read-only (SELECT only)"
        )
    # A SELECT can still hide a write or a side door (SELECT … INTO, a writing CTE): refuse the nodes that do.
    for node in statement.walk():
        if isinstance(node, _WRITES):
            raise SqlRefused(f"{type(node).__name__.upper()} inside a query is refused: SELECT only")
        if isinstance(node, exp.Lock):  # FOR UPDATE / FOR SHARE takes row locks: not a read
            raise SqlRefused("locking clauses (FOR UPDATE/SHARE) are refused: SELECT only")
    return statement


def cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def stored_tables(tree: exp.Expr, dialect: Dialect) -> list[exp.Table]:
    """Every node naming a stored table or view (CTE references skipped); table functions refused.
    The connector turns each into its own qualified reference with its identifier rules."""
    ctes = cte_names(tree)
    found = []
    for node in tree.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):  # UNNEST, table functions: no stored table
            if isinstance(node.this, (exp.Anonymous, exp.Func)):
                raise SqlRefused(f"table functions are refused ({node.this.sql(dialect=dialect.sqlglot)[:80]})")
            continue
        if not node.args.get("db") and node.name.lower() in ctes:
            continue
        found.append(node)
    return found


def outside_selection(refs: Iterable[K], selected: Callable[[K], bool]) -> list[K]:
    return [ref for ref in refs if not selected(ref)]


def read_columns(
    tree: exp.Query,
    schemas: Mapping[K, Schema],
    key_of: Callable[[K], TableKey],
    dialect: Dialect,
    default_catalog: str | None,
) -> tuple[dict[K, set[str]], dict[tuple[K, str], str]]:
    """Which columns of which table the query reads (every scope; `*` expanded; a table or alias used as
    a value reads every column), lower-cased, and for each the expression that reads it.

    What cannot be resolved to columns is refused with the expression named: a privacy check that
    guesses is not a check (the rules: `column_reads`)."""
    by_key = {key_of(ref): ref for ref in schemas}
    try:
        reads = resolve_column_reads(
            tree,
            {key: schemas[ref] for key, ref in by_key.items()},
            dialect=dialect.sqlglot,
            default_catalog=default_catalog,
        )
    except UnresolvedExpression as exc:
        raise SqlRefused(f"column check refused the query: {exc}; name the columns the query needs") from None
    except SqlglotError as exc:
        raise SqlRefused(
            f"could not attribute every column to a table ({str(exc).splitlines()[0][:200]}); name columns with their table"
        ) from None
    columns = {by_key[key]: set(names) for key, names in reads.columns.items()}
    evidence = {(by_key[key], name): text for (key, name), text in reads.evidence.items()}
    return columns, evidence


def column_problems(
    columns: Mapping[K, set[str]],
    allowed: Callable[[K], Iterable[str] | None],
    restricted: Mapping[K, Mapping[str, str]],
    label: Callable[[K], str],
    evidence: Mapping[tuple[K, str], str] | None = None,
) -> list[str]:
    """Columns outside the table's selected ones (`allowed` returns None when the whole table is
    selected) and columns the source restricts (column -> why, e.g. "carries a policy tag this connection
    was not granted"), each with the expression that reads it."""
    evidence = evidence or {}
    problems: list[str] = []

    def by(ref: K, column: str) -> str:
        text = evidence.get((ref, column.lower()))
        return f" (read by `{text}`)" if text else ""

    for ref, names in sorted(columns.items()):  # every key type used is orderable
        selected = allowed(ref)
        if selected is not None:
            extra = sorted(names - {c.lower() for c in selected})
            if extra:
                problems.append(f"{label(ref)} columns {', '.join(extra)} are not selected{by(ref, extra[0])}")
        for column, why in (restricted.get(ref) or {}).items():
            if column.lower() in names:
                problems.append(f"{label(ref)}.{column} {why}{by(ref, column)}")
    return problems


def check_columns(
    columns: Mapping[K, set[str]],
    allowed: Callable[[K], Iterable[str] | None],
    restricted: Mapping[K, Mapping[str, str]],
    label: Callable[[K], str],
    evidence: Mapping[tuple[K, str], str] | None = None,
) -> None:
    """`column_problems`, refused as one message."""
    problems = column_problems(columns, allowed, restricted, label, evidence)
    if problems:
        raise SqlRefused("column check failed: " + "; ".join(problems))


# ---------------------------------------------------------------- the result: an aggregate, bounded


def _branches(tree: exp.Query) -> list[exp.Select]:
    if isinstance(tree, exp.SetOperation):
        return [*_branches(tree.left), *_branches(tree.right)]
    if isinstance(tree, exp.Subquery):
        return _branches(tree.unnest())  # type: ignore[arg-type]
    if isinstance(tree, exp.Select):
        return [tree]
    raise SqlRefused(f"a {type(tree).__name__} result the aggregate check does not follow")


def _has_plain_aggregate(projection: exp.Expr) -> bool:
    """An aggregate function of this SELECT: not a window function, not inside a subquery."""
    for found in projection.find_all(exp.AggFunc):
        node: exp.Expr | None = found
        while node is not None and node is not projection:
            node = node.parent
            if isinstance(node, (exp.Window, exp.Query)):
                break
        if node is projection:
            return True
    return False


def require_aggregate(tree: exp.Query, dialect: Dialect) -> None:
    """The result must be an aggregate: in each top-level SELECT at least one aggregate function, and every
    projection either an aggregate or one of the GROUP BY keys. A query that returns table rows as they
    are (`SELECT email FROM t`, `SELECT DISTINCT id …`, a window over every row) is refused."""
    for select in _branches(tree):
        group = select.args.get("group")
        keys = {key.sql(dialect=dialect.sqlglot) for key in (group.expressions if group else [])}
        aliases = {p.alias_or_name for p in select.expressions}
        projections = select.expressions
        if not any(_has_plain_aggregate(p) for p in projections):
            raise SqlRefused(
                "the result must be an aggregate (SUM, COUNT, AVG, MIN, MAX … grouped by a few keys): "
                f"`{' '.join(select.sql(dialect=dialect.sqlglot).split())[:160]}` returns rows as they are"
            )
        for projection in projections:
            inner = projection.this if isinstance(projection, exp.Alias) else projection
            text = inner.sql(dialect=dialect.sqlglot)
            if _has_plain_aggregate(projection) or text in keys or isinstance(inner, exp.Literal):
                continue
            if isinstance(inner, exp.Column) and not inner.table and inner.name in keys & aliases:
                continue
            positions = {
                int(k.name) for k in (group.expressions if group else []) if isinstance(k, exp.Literal) and k.is_int
            }
            if projections.index(projection) + 1 in positions:  # GROUP BY 1, 2: positions name projections
                continue
            raise SqlRefused(
                f"projection `{text[:120]}` is neither an aggregate nor a GROUP BY key: results are aggregates only"
            )


def check_row_bound(rows: int, max_rows: int, *, what: str, days: int = 1) -> None:
    """A metric is an aggregate; more rows than the bound means raw rows (a spec grouped by an id). The
    bound is per query, so a range query (one row per day and group) is held to the same number of rows
    as one day: a range that exceeds it is refused, never silently truncated."""
    if rows <= max_rows:
        return
    if days > 1:
        raise SqlRefused(
            f"{what} over a range of {days} days returned more than {max_rows} rows (the bound holds for the "
            "whole range query, one row per day and group). Nothing was stored; backfill a shorter range, or "
            "group by fewer, lower-cardinality columns."
        )
    raise SqlRefused(
        f"{what} returned more than {max_rows} rows; a metric query must aggregate "
        "(group by fewer, lower-cardinality columns). Nothing was stored."
    )


__all__ = [
    "Dialect",
    "SqlRefused",
    "check_columns",
    "check_row_bound",
    "column_problems",
    "cte_names",
    "outside_selection",
    "parse_select",
    "read_columns",
    "require_aggregate",
    "stored_tables",
]
