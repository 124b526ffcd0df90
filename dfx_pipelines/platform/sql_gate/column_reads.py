"""Which columns of which stored tables a query reads, for a column-level privacy check. Pure: sqlglot
only, no warehouse client; the SQL dialect and the tables' schemas are parameters, so the same rules
serve any dialect sqlglot qualifies (BigQuery and PostgreSQL today, through `platform.sql_gate`).

The rule is an allow-list. After sqlglot's qualifier has expanded `*` and attributed every column to a
source, each node of the query that can name data must resolve, or the query is refused with the
expression named (`UnresolvedExpression`):

- a column `t.c` of a stored table reads `t.c`; of a subquery, CTE or UNNEST it reads what that scope
  reads, and every scope's reads are counted whether or not anything outside uses them;
- a whole-row reference — the table or its alias used as a value (`TO_JSON_STRING(c)`, `SELECT c`,
  `STRUCT(c.*)`, `[c]`, `ANY_VALUE(c).email`) — reads every column of that table;
- a bare name that is both a column and a visible table alias counts as both readings;
- `*` is expanded by the qualifier; one left over is accepted only as `COUNT(*)`, which reads no column;
- a table must be a FROM/JOIN source of a scope, and every query must be a scope the traversal reaches.

Anything else that could name data (a column with no source, an unexpanded star, a table in an
argument, a query the scope walk does not reach, a bare word that collides with a table or column
name) is what the checker does not understand, and is refused.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from dfx_pipelines.platform.errors import DfxError

TableKey = tuple[str, str, str]  # (catalog/project, schema/dataset, table), as the schema mapping names it
Schema = Mapping[str, str]  # column name -> SQL type in the dialect (struct and array types included)
EXCERPT_CHARS = 160
_BARE = "dfx_bare_name"  # marks columns written without a qualifier (survives the qualifier's copies)
# The clauses an expression is named by: a reported expression is the whole projection or condition.
_CLAUSES = (
    exp.Select,
    exp.Where,
    exp.Having,
    exp.Qualify,
    exp.Group,
    exp.Order,
    exp.Join,
    exp.From,
    exp.Unnest,
    exp.Window,
)


class UnresolvedExpression(DfxError):
    """An expression the column check cannot resolve to the columns it reads (refused, not guessed)."""

    def __init__(self, expression: str, reason: str):
        self.expression = expression
        self.reason = reason
        super().__init__(f"cannot resolve `{expression}` to the columns it reads: {reason}")


@dataclass(frozen=True)
class ColumnReads:
    """Columns read per stored table (lower-cased), and for each the first expression that reads it."""

    columns: dict[TableKey, set[str]] = field(default_factory=dict)
    evidence: dict[tuple[TableKey, str], str] = field(default_factory=dict)


def _nested(schemas: Mapping[TableKey, Schema]) -> dict[str, Any]:  # catalog -> db -> table -> column -> type
    nested: dict[str, dict[str, dict[str, dict[str, str]]]] = {}
    for (catalog, db, table), columns in schemas.items():
        nested.setdefault(catalog, {}).setdefault(db, {})[table] = dict(columns)
    return nested


def _excerpt(node: exp.Expr, dialect: str) -> str:
    """The projection or condition holding `node`, as SQL (the qualified form the check read)."""
    top = node
    while top.parent is not None and not isinstance(top.parent, _CLAUSES) and not isinstance(top, exp.Query):
        top = top.parent
    if isinstance(top, exp.Alias):
        top = top.this
    try:
        text = " ".join(top.sql(dialect=dialect).split())
    except SqlglotError:  # the generator refuses some constructs; the node's class still names it
        text = type(top).__name__
    return text if len(text) <= EXCERPT_CHARS else text[: EXCERPT_CHARS - 1] + "…"


class _Resolver:
    def __init__(self, schemas: Mapping[TableKey, Schema], dialect: str, default_catalog: str | None):
        self.dialect = dialect
        self.default_catalog = default_catalog
        self.columns = {key: {name.lower() for name in cols} for key, cols in schemas.items()}
        self.by_lower = {tuple(part.lower() for part in key): key for key in schemas}
        self.reads = ColumnReads()

    # ---------------------------------------------------------------- recording

    def refuse(self, node: exp.Expr, reason: str) -> UnresolvedExpression:
        return UnresolvedExpression(_excerpt(node, self.dialect), reason)

    def table_key(self, table: exp.Table, node: exp.Expr) -> TableKey:
        key = (table.catalog or self.default_catalog or "", table.db, table.name)
        if key in self.columns:
            return key
        folded = self.by_lower.get(tuple(part.lower() for part in key))
        if folded is None:
            raise self.refuse(node, f"no schema is known for table {'.'.join(p for p in key if p)}")
        return folded

    def read(self, key: TableKey, column: str, node: exp.Expr) -> None:
        name = column.lower()
        if name not in self.columns[key]:
            raise self.refuse(node, f"{'.'.join(key[1:])} has no column {column!r}")
        self.reads.columns.setdefault(key, set()).add(name)
        self.reads.evidence.setdefault((key, name), _excerpt(node, self.dialect))

    def read_row(self, scope: Scope, name: str, node: exp.Expr) -> None:
        """`name` used as a value: a stored table's every column, or a scope whose reads are counted."""
        source = _source(scope, name)
        if source is None:
            raise self.refuse(node, f"{name!r} names no table, subquery or column in scope")
        if isinstance(source, exp.Table):
            key = self.table_key(source, node)
            for column in sorted(self.columns[key]):
                self.read(key, column, node)
        elif not isinstance(source, Scope):
            raise self.refuse(node, f"{name!r} names a {type(source).__name__} source the check does not follow")

    # ---------------------------------------------------------------- the nodes that can name data

    def column(self, scope: Scope, node: exp.Column) -> None:
        if isinstance(node.this, exp.Star):  # `t.*` the qualifier left as is (inside STRUCT(...), say)
            if not node.table:
                raise self.refuse(node, "a `*` the check cannot expand")
            self.read_row(scope, node.table, node)
            return
        if node.meta.get(_BARE) and _source(scope, node.name) is not None:
            self.read_row(scope, node.name, node)  # a table alias used as a value (and perhaps a column too)
            if not node.table:
                return
        if not node.table:
            if _is_projection_alias(node):
                return  # ORDER BY / GROUP BY / HAVING naming a projection: what it reads is counted there
            raise self.refuse(node, f"column {node.name!r} cannot be attributed to a table")
        if node.args.get("db") or node.args.get("catalog"):
            raise self.refuse(node, "a column path the qualifier did not reduce to table.column")
        source = _source(scope, node.table)
        if isinstance(source, exp.Table):
            self.read(self.table_key(source, node), node.name, node)
        elif not isinstance(source, Scope):
            raise self.refuse(node, f"{node.table!r} names no table or subquery in scope")

    def check_var(self, scope: Scope, node: exp.Var) -> None:
        """A bare word the parser kept as a keyword must not also name a table or a column."""
        name = node.name.lower()
        visible = _visible_sources(scope)
        if name in {alias.lower() for alias in visible}:
            raise self.refuse(node, f"{node.name!r} may name the table {node.name!r}")
        for source in visible.values():
            if isinstance(source, exp.Table) and name in self.columns.get(self.table_key(source, node), set()):
                raise self.refuse(node, f"{node.name!r} may name a column")


def _source(scope: Scope | None, name: str) -> exp.Expr | Scope | None:
    """The source `name` refers to, from the innermost scope outwards (correlated references too)."""
    while scope is not None:
        if name in scope.sources:
            return scope.sources[name]
        lowered = {alias.lower(): source for alias, source in scope.sources.items()}
        if name.lower() in lowered:
            return lowered[name.lower()]
        scope = scope.parent
    return None


def _visible_sources(scope: Scope | None) -> dict[str, exp.Expr | Scope]:
    visible: dict[str, exp.Expr | Scope] = {}
    while scope is not None:
        for alias, source in scope.sources.items():
            visible.setdefault(alias, source)
        scope = scope.parent
    return visible


def _is_projection_alias(node: exp.Column) -> bool:
    clause = node.find_ancestor(exp.Order, exp.Group, exp.Having, exp.Qualify, exp.Select)
    if clause is None or isinstance(clause, exp.Select):
        return False
    select = clause.parent
    return isinstance(select, exp.Select) and node.name in select.named_selects


def resolve_column_reads(
    tree: exp.Expr,
    schemas: Mapping[TableKey, Schema],
    *,
    dialect: str,
    default_catalog: str | None = None,
) -> ColumnReads:
    """Every column of every stored table `tree` reads (see the module docstring for the rules).

    `schemas` must hold every stored table the query names. Raises `UnresolvedExpression` naming the
    first expression that cannot be resolved; the qualifier's own refusals (an unknown or ambiguous
    column) come through as sqlglot errors for the caller to word."""
    marked = tree.copy()
    for column in marked.find_all(exp.Column):
        if not column.table and not isinstance(column.this, exp.Star):
            column.meta[_BARE] = True
    qualified = qualify(
        marked,
        schema=_nested(schemas),
        dialect=dialect,
        catalog=default_catalog,
        validate_qualify_columns=True,
        quote_identifiers=False,
    )
    scopes = list(traverse_scope(qualified))
    resolver = _Resolver(schemas, dialect, default_catalog)
    owner: dict[int, Scope] = {}
    scope: Scope | None
    for scope in scopes:  # innermost first: a node belongs to the first scope that walks it
        for node in scope.walk():
            owner.setdefault(id(node), scope)
    scope_roots = {id(scope.expression) for scope in scopes}
    scope_roots |= {id(scope.expression.unnest()) for scope in scopes if isinstance(scope.expression, exp.Subquery)}
    sources = {id(source) for scope in scopes for source in scope.sources.values() if isinstance(source, exp.Table)}

    for node in qualified.walk():
        if isinstance(node, (exp.Select, exp.SetOperation)) and id(node) not in scope_roots:
            raise resolver.refuse(node, "a query in a position the check does not follow")
        if not isinstance(node, (exp.Column, exp.TableColumn, exp.Star, exp.Table, exp.Var)):
            continue
        scope = owner.get(id(node))
        if scope is None:
            if isinstance(node, exp.Star) and isinstance(node.parent, exp.Column):
                continue  # the `*` of `t.*`, handled with its column
            raise resolver.refuse(node, f"a {type(node).__name__.lower()} outside every query scope")
        if isinstance(node, exp.TableColumn):
            resolver.read_row(scope, node.name, node)
        elif isinstance(node, exp.Column):
            resolver.column(scope, node)
        elif isinstance(node, exp.Star):
            if not isinstance(node.parent, (exp.Count, exp.Column)):
                raise resolver.refuse(node, "a `*` the check cannot expand; name the columns")
        elif isinstance(node, exp.Table):
            if not isinstance(node.this, exp.Identifier):
                raise resolver.refuse(node, "table functions are not followed by the check")
            if id(node) not in sources and not _is_cte_reference(node, scope):
                raise resolver.refuse(node, "a table used outside FROM/JOIN")
        elif isinstance(node, exp.Var):
            resolver.check_var(scope, node)
    return resolver.reads


def _is_cte_reference(node: exp.Table, scope: Scope) -> bool:
    return not node.db and isinstance(_source(scope, node.alias_or_name), Scope)


__all__ = ["ColumnReads", "Schema", "TableKey", "UnresolvedExpression", "resolve_column_reads"]
