"""What a query touches, read from its SQL before BigQuery sees it: one SELECT only, which tables it
names, and which columns of each it reads — checked against the connection's selection and the
columns that carry policy tags. Pure (sqlglot only); the resource feeds it table schemas.

The rules themselves are the platform's SQL gate (`platform.sql_gate.check`), shared with every warehouse
connector; what is BigQuery's here is its dialect, its identifier rules (`project.dataset.table`) and its
source of restricted columns (policy tags the connection was not granted). Refusals keep BigQuery's own
error type, `QueryRefused`.

This is the parsed-SQL half of the table check; the dry run's `referencedTables` is the other half
(views expand there to the tables under them). Both must pass.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from sqlglot import exp

from dfx_pipelines.connectors.bigquery.gate import QueryRefused
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import IdentifierError
from dfx_pipelines.platform.sql_gate import check as shared
from dfx_pipelines.platform.sql_gate.check import MAX_SQL_CHARS, SqlRefused

DIALECT = "bigquery"
BIGQUERY = shared.Dialect(DIALECT, "GoogleSQL", "BigQuery")
TAG_REFUSAL = "carries a policy tag this connection was not granted"
__all__ = ["MAX_SQL_CHARS", "TableRef", "check_columns", "check_tables", "parse_select", "read_columns", "table_refs"]


@contextlib.contextmanager
def _as_query_refused() -> Iterator[None]:
    """The shared gate's refusal, as the BigQuery connector's own (callers and approvals know that one)."""
    try:
        yield
    except SqlRefused as exc:
        raise QueryRefused(str(exc)) from None


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
    with _as_query_refused():
        return shared.parse_select(sql, BIGQUERY)


def table_refs(tree: exp.Expr, default_project: str) -> list[TableRef]:
    """Every stored table or view the query names, fully qualified; identifiers checked strictly."""
    found: set[TableRef] = set()
    with _as_query_refused():
        nodes = shared.stored_tables(tree, BIGQUERY)
    for node in nodes:
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
    outside = [str(ref) for ref in shared.outside_selection(refs, lambda ref: is_selected(ref, selection, project))]
    if outside:
        raise QueryRefused(f"{source} names tables outside the connection's selection: {', '.join(sorted(outside))}")


# ---------------------------------------------------------------- columns


Schema = Mapping[str, str]  # column name -> GoogleSQL type, for sqlglot's qualifier


def read_columns(
    tree: exp.Query, schemas: Mapping[TableRef, Schema], default_project: str
) -> tuple[dict[TableRef, set[str]], dict[tuple[TableRef, str], str]]:
    """Which columns of which table the query reads, and for each the expression that reads it
    (the shared gate's `read_columns`: what cannot be resolved is refused, naming it)."""
    with _as_query_refused():
        return shared.read_columns(
            tree, schemas, lambda ref: (ref.project, ref.dataset, ref.table), BIGQUERY, default_project
        )


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
    restricted = {
        ref: {column: TAG_REFUSAL for column, tags in by_column.items() if not set(tags) <= granted}
        for ref, by_column in tagged.items()
    }
    with _as_query_refused():
        shared.check_columns(
            columns, lambda ref: selection.objects.get(ref.key), restricted, lambda ref: ref.key, evidence
        )
