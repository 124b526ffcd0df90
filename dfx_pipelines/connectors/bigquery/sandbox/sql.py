"""GoogleSQL in, DuckDB SQL out: parse with sqlglot, refuse anything but a query, bind parameters,
resolve `project.dataset.table` references against the catalog, and rewrite them to DuckDB tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, UnsupportedError

from . import errors
from .catalog import Catalog, Table


@dataclass(frozen=True)
class QueryContext:
    """Where unqualified names resolve: the job's project and an optional default dataset."""

    project: str
    default_dataset: str | None = None
    location: str = "US"


def parse_query(sql: str) -> exp.Query:
    """Parse one GoogleSQL statement and accept it only if it is a query (SELECT / WITH / set operation)."""
    if not sql or not sql.strip():
        raise errors.invalid_query("Syntax error: Unexpected end of script at [1:1]")
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = f" at [{first.get('line', 1)}:{first.get('col', 1)}]" if first else ""
        raise errors.invalid_query(f"Syntax error: {first.get('description', str(exc))}{where}") from None
    if len(statements) != 1:
        raise errors.invalid_query("Multi-statement queries are not supported by this sandbox: send one SELECT")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise errors.invalid_query(
            f"{_statement_kind(statement)} statements are not allowed: this BigQuery sandbox is read-only "
            "(SELECT queries only)"
        )
    for select in statement.find_all(exp.Select):
        if not select.expressions:
            raise errors.invalid_query("Syntax error: SELECT list must not be empty")
    return statement


def _statement_kind(statement: exp.Expr) -> str:
    if isinstance(statement, exp.Command):
        return str(statement.this).upper()
    if isinstance(statement, (exp.Create, exp.Drop)):
        kind = statement.args.get("kind") or ""
        return f"{type(statement).__name__.upper()} {kind}".strip()
    return type(statement).__name__.upper()


# ---------------------------------------------------------------- query parameters


def _scalar_literal(type_name: str, value: Any) -> exp.Expr:
    if value is None:
        return exp.cast(exp.Null(), type_name, dialect="bigquery")
    if type_name in ("INT64", "INTEGER", "FLOAT64", "FLOAT"):
        return exp.Literal.number(value)
    if type_name in ("BOOL", "BOOLEAN"):
        return exp.Boolean(this=str(value).lower() == "true")
    if type_name == "STRING":
        return exp.Literal.string(str(value))
    if type_name in ("NUMERIC", "BIGNUMERIC", "DATE", "DATETIME", "TIME", "TIMESTAMP"):
        return exp.cast(exp.Literal.string(str(value)), type_name, dialect="bigquery")
    raise errors.invalid(f"Query parameter type {type_name} is not supported by this sandbox")


def parameter_literal(parameter: dict[str, Any]) -> exp.Expr:
    """A REST `QueryParameter` (scalar or array of scalars) as a constant expression."""
    type_info = parameter.get("parameterType") or {}
    value_info = parameter.get("parameterValue") or {}
    if type_info.get("type") == "ARRAY":
        element_type = (type_info.get("arrayType") or {}).get("type", "STRING")
        values = [item.get("value") for item in value_info.get("arrayValues") or []]
        return exp.Array(expressions=[_scalar_literal(element_type, v) for v in values])
    return _scalar_literal(type_info.get("type", "STRING"), value_info.get("value"))


def bind_parameters(tree: exp.Query, parameters: list[dict[str, Any]] | None) -> exp.Query:
    """Replace `@name` / `?` with literals, so pricing sees constants (BigQuery prunes on them too)."""
    parameters = parameters or []
    named = {str(p["name"]).lower(): p for p in parameters if p.get("name")}
    positional = [p for p in parameters if not p.get("name")]
    tree = tree.copy()
    for node in list(tree.find_all(exp.Parameter)):
        name = node.name.lower()
        if name not in named:
            raise errors.invalid_query(f"Query parameter '{node.name}' not found")
        node.replace(parameter_literal(named[name]))
    placeholders = list(tree.find_all(exp.Placeholder, bfs=False))
    if len(placeholders) > len(positional):
        raise errors.invalid_query(
            f"Query has {len(placeholders)} positional parameters but {len(positional)} were given"
        )
    for placeholder, parameter in zip(placeholders, positional):
        placeholder.replace(parameter_literal(parameter))
    return tree


# ---------------------------------------------------------------- table references


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def table_nodes(tree: exp.Expr) -> Iterable[exp.Table]:
    """Every `FROM`/`JOIN` reference to a stored table or view (not CTEs, not UNNEST or functions)."""
    ctes = _cte_names(tree)
    for node in tree.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):
            continue
        if not node.args.get("db") and node.name.lower() in ctes:
            continue
        yield node


def resolve(node: exp.Table, catalog: Catalog, context: QueryContext) -> Table:
    project = node.catalog or context.project
    dataset = node.db or context.default_dataset
    if not dataset:
        raise errors.invalid_query(f'Table "{node.name}" must be qualified with a dataset (e.g. dataset.table).')
    if not catalog.has_dataset(project, dataset):
        raise errors.dataset_not_found(project, dataset, context.location)
    table = catalog.get(project, dataset, node.name)
    if table is None:
        raise errors.table_not_found(project, dataset, node.name, context.location)
    return table


def resolve_all(tree: exp.Expr, catalog: Catalog, context: QueryContext) -> list[tuple[exp.Table, Table]]:
    return [(node, resolve(node, catalog, context)) for node in table_nodes(tree)]


# ---------------------------------------------------------------- to DuckDB


def _name_anonymous_columns(tree: exp.Query) -> None:
    """BigQuery names unnamed result columns f0_, f1_, ...; DuckDB would name them after the expression."""
    select = tree
    while isinstance(select, (exp.SetOperation, exp.Subquery)):
        select = select.this
    if not isinstance(select, exp.Select):
        return
    counter = 0
    for projection in list(select.expressions):
        if isinstance(projection, (exp.Alias, exp.Column, exp.Star)):
            continue
        projection.replace(exp.alias_(projection.copy(), f"f{counter}_"))
        counter += 1


def _widen_numeric_casts(tree: exp.Expr) -> None:
    """GoogleSQL NUMERIC is DECIMAL(38, 9); DuckDB's bare DECIMAL would be (18, 3)."""
    for node in list(tree.find_all(exp.DataType)):
        if node.this in (exp.DataType.Type.DECIMAL, exp.DataType.Type.BIGDECIMAL) and not node.expressions:
            node.replace(exp.DataType.build("DECIMAL(38, 9)", dialect="duckdb"))


def _float_literals(tree: exp.Expr) -> None:
    """`1.5` is FLOAT64 in GoogleSQL but DECIMAL in DuckDB."""
    for node in list(tree.find_all(exp.Literal)):
        if not node.is_string and any(mark in node.this for mark in ".eE"):
            node.replace(exp.cast(node.copy(), "DOUBLE", dialect="duckdb"))


def to_duckdb(tree: exp.Query, catalog: Catalog, context: QueryContext) -> str:
    """The DuckDB SQL for a (parameter-bound) query: table references point at the stored tables."""
    tree = tree.copy()
    for node, table in resolve_all(tree, catalog, context):
        if not node.alias:  # keep `orders.status` working once the table is renamed
            node.set("alias", exp.TableAlias(this=exp.to_identifier(node.name, quoted=True)))
        node.set("catalog", None)
        node.set("db", None)
        node.set("this", exp.to_identifier(table.storage_name, quoted=True))
    _name_anonymous_columns(tree)
    _widen_numeric_casts(tree)
    _float_literals(tree)
    try:
        return tree.sql(dialect="duckdb", unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:  # say so, rather than run an approximation of the query
        raise errors.invalid_query(f"Not supported by the BigQuery sandbox (DuckDB engine): {exc}") from None
