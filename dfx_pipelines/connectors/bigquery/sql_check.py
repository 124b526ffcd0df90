"""What a query touches, read from its SQL before BigQuery sees it: one SELECT only, which tables it
names, and which columns of each it reads — checked against the connection's selection and the
columns that carry policy tags. Pure (sqlglot only); the resource feeds it table schemas.

This is the parsed-SQL half of the table check; the dry run's `referencedTables` is the other half
(views expand there to the tables under them). Both must pass.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from dfx_pipelines.connectors.bigquery.column_reads import UnresolvedExpression, resolve_column_reads
from dfx_pipelines.connectors.bigquery.gate import QueryRefused
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import IdentifierError

MAX_SQL_CHARS = 100_000
DIALECT = "bigquery"


@dataclass(frozen=True, order=True)
class TableRef:
    project: str
    dataset: str
    table: str

    @property
    def key(self) -> str:
        """`dataset.table`, as the selection names it."""
        return f"{self.dataset}.{self.table}"

    def __str__(self) -> str:
        return f"{self.project}.{self.dataset}.{self.table}"


def parse_select(sql: str) -> exp.Query:
    """Exactly one read-only query (SELECT, WITH … SELECT, set operations), or `QueryRefused`."""
    if not isinstance(sql, str) or not sql.strip():
        raise QueryRefused("empty query")
    if len(sql) > MAX_SQL_CHARS:
        raise QueryRefused(f"query of {len(sql)} characters is longer than the {MAX_SQL_CHARS} allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except SqlglotError as exc:
        raise QueryRefused(f"query does not parse as GoogleSQL: {str(exc).splitlines()[0][:200]}") from None
    if len(statements) != 1:
        raise QueryRefused(f"one statement per query, got {len(statements)}: the connector sends single SELECTs only")
    statement = statements[0]
    if not isinstance(statement, exp.Query):
        raise QueryRefused(
            f"{type(statement).__name__.upper()} statements are refused: the BigQuery connector is read-only (SELECT only)"
        )
    # A SELECT can still hide a write or a side door: refuse the expressions that do.
    for node in statement.walk():
        if isinstance(
            node, (exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Command, exp.Into)
        ):
            raise QueryRefused(f"{type(node).__name__.upper()} inside a query is refused: SELECT only")
    return statement


def _cte_names(tree: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def table_refs(tree: exp.Expr, default_project: str) -> list[TableRef]:
    """Every stored table or view the query names, fully qualified; identifiers checked strictly."""
    ctes = _cte_names(tree)
    found: set[TableRef] = set()
    for node in tree.find_all(exp.Table):
        if not isinstance(node.this, exp.Identifier):  # UNNEST, table functions: no stored table
            if isinstance(node.this, (exp.Anonymous, exp.Func)):
                raise QueryRefused(f"table functions are refused ({node.this.sql(dialect='bigquery')[:80]})")
            continue
        if not node.args.get("db") and node.name.lower() in ctes:
            continue
        if not node.db:
            raise QueryRefused(f"table {node.name!r} must be qualified with its dataset (dataset.table)")
        try:
            ref = TableRef(
                identifiers.bigquery_project(node.catalog or default_project),
                identifiers.bigquery_dataset(node.db),
                identifiers.bigquery_table(node.name),
            )
        except IdentifierError as exc:
            raise QueryRefused(f"table reference refused: {exc}") from None
        found.add(ref)
    return sorted(found)


def is_selected(ref: TableRef, selection: BigQuerySelection, project: str) -> bool:
    return ref.project == project and ref.table in selection.datasets.get(ref.dataset, [])


def check_tables(refs: Iterable[TableRef], selection: BigQuerySelection, project: str, source: str) -> None:
    """Every table must be in the connection's selection (and in the connection's own project)."""
    outside = [str(ref) for ref in refs if not is_selected(ref, selection, project)]
    if outside:
        raise QueryRefused(f"{source} names tables outside the connection's selection: {', '.join(sorted(outside))}")


# ---------------------------------------------------------------- columns


Schema = Mapping[str, str]  # column name -> GoogleSQL type, for sqlglot's qualifier


def read_columns(
    tree: exp.Query, schemas: Mapping[TableRef, Schema], default_project: str
) -> tuple[dict[TableRef, set[str]], dict[tuple[TableRef, str], str]]:
    """Which columns of which table the query reads (every scope; `*` expanded; a table or alias used
    as a value reads every column), lower-cased, and for each the expression that reads it.

    What cannot be resolved to columns is refused with the expression named: a privacy check that
    guesses is not a check (the rules: `column_reads`)."""
    by_key = {(ref.project, ref.dataset, ref.table): ref for ref in schemas}
    try:
        reads = resolve_column_reads(
            tree, {key: schemas[ref] for key, ref in by_key.items()}, dialect=DIALECT, default_catalog=default_project
        )
    except UnresolvedExpression as exc:
        raise QueryRefused(f"column check refused the query: {exc}; name the columns the query needs") from None
    except SqlglotError as exc:
        raise QueryRefused(
            f"could not attribute every column to a table ({str(exc).splitlines()[0][:200]}); name columns with their table"
        ) from None
    columns = {by_key[key]: set(names) for key, names in reads.columns.items()}
    evidence = {(by_key[key], name): text for (key, name), text in reads.evidence.items()}
    return columns, evidence


def referenced_columns(
    tree: exp.Query, schemas: Mapping[TableRef, Schema], default_project: str
) -> dict[TableRef, set[str]]:
    """`read_columns` without the expressions."""
    return read_columns(tree, schemas, default_project)[0]


def check_columns(
    columns: Mapping[TableRef, set[str]],
    selection: BigQuerySelection,
    tagged: Mapping[TableRef, Mapping[str, tuple[str, ...]]],
    granted_tags: Iterable[str],
    evidence: Mapping[tuple[TableRef, str], str] | None = None,
) -> None:
    """Columns narrowed by `selection.objects` and columns carrying policy tags the connection was not
    granted are refused (P14: column-level security respected, not merely hoped for)."""
    granted = set(granted_tags)
    evidence = evidence or {}
    problems: list[str] = []

    def by(ref: TableRef, column: str) -> str:
        text = evidence.get((ref, column.lower()))
        return f" (read by `{text}`)" if text else ""

    for ref, names in sorted(columns.items()):
        allowed = selection.objects.get(ref.key)
        if allowed is not None:
            extra = sorted(names - {c.lower() for c in allowed})
            if extra:
                problems.append(f"{ref.key} columns {', '.join(extra)} are not selected{by(ref, extra[0])}")
        for column, tags in (tagged.get(ref) or {}).items():
            if column.lower() in names and not set(tags) <= granted:
                problems.append(
                    f"{ref.key}.{column} carries a policy tag this connection was not granted{by(ref, column)}"
                )
    if problems:
        raise QueryRefused("column check failed: " + "; ".join(problems))
