"""The column check against hostile queries: whole-row references (a table or alias used as a value) in
every position GoogleSQL allows, and constructs the checker does not understand. Each row says what the
query really reads of `shop.customers`, whose `email` carries a policy tag this connection was not
granted — so every query that reads `email` must be refused, and every one the check cannot resolve
must be refused with the expression named. Pure: sqlglot only, no sandbox."""

import pytest
import sqlglot

from dfx_pipelines.connectors.bigquery.column_reads import UnresolvedExpression, resolve_column_reads
from dfx_pipelines.connectors.bigquery.gate import QueryRefused
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection as Selection
from dfx_pipelines.connectors.bigquery.sql_check import (
    TableRef,
    check_columns,
    check_tables,
    parse_select,
    read_columns,
    table_refs,
)

P = "dfx-demo-project"
CUSTOMERS, ORDERS = TableRef(P, "shop", "customers"), TableRef(P, "shop", "orders")
SCHEMAS = {
    CUSTOMERS: {
        "customer_id": "INT64",
        "email": "STRING",
        "country": "STRING",
        "address": "STRUCT<city STRING, zip STRING>",
        "tags": "ARRAY<STRING>",
    },
    ORDERS: {
        "order_id": "INT64",
        "customer_id": "INT64",
        "status": "STRING",
        "amount": "NUMERIC",
        "order_date": "DATE",
    },
}
EVERY = frozenset(SCHEMAS[CUSTOMERS])  # a whole-row reference reads all of them
PII = f"projects/{P}/locations/us/taxonomies/1/policyTags/pii"
TAGGED = {CUSTOMERS: {"email": (PII,)}}
SELECTION = Selection(datasets={"shop": ["orders", "customers"]})


def gate_check(sql: str, granted: tuple[str, ...] = ()) -> dict[TableRef, set[str]]:
    """What the gate does before any request: SELECT only, tables, then columns and policy tags."""
    tree = parse_select(sql)
    refs = table_refs(tree, P)
    check_tables(refs, SELECTION, P, "the query")
    columns, evidence = read_columns(tree, {ref: SCHEMAS[ref] for ref in refs}, P)
    check_columns(columns, SELECTION, TAGGED, granted, evidence)
    return columns


# (query, what it reads of shop.customers). Every one of these reads `email`, so the gate refuses it.
WHOLE_ROW = [
    ("SELECT TO_JSON_STRING(c) FROM shop.customers c", EVERY),
    ("SELECT c FROM shop.customers c", EVERY),
    ("SELECT FORMAT('%t', c) AS s FROM shop.customers AS c", EVERY),
    ("SELECT TO_JSON_STRING(customers) FROM shop.customers", EVERY),  # the implicit alias
    ("SELECT TO_JSON_STRING(C) FROM shop.customers c", EVERY),  # aliases are case-insensitive
    ("SELECT TO_JSON(c) FROM shop.customers c", EVERY),
    ("SELECT CAST(c AS STRING) FROM shop.customers c", EVERY),
    ("SELECT STRUCT(c) FROM shop.customers c", EVERY),
    ("SELECT [c] FROM shop.customers c", EVERY),
    ("SELECT ARRAY_AGG(c) FROM shop.customers c", EVERY),
    ("SELECT AS STRUCT c FROM shop.customers c", EVERY),
    ("SELECT AS VALUE c FROM shop.customers c", EVERY),
    ("SELECT (SELECT AS STRUCT c.*) FROM shop.customers c", EVERY),
    ("SELECT TO_JSON_STRING(STRUCT(c.*)) FROM shop.customers c", EVERY),  # `t.*` the qualifier leaves as is
    ("SELECT ARRAY(SELECT AS STRUCT * FROM shop.customers)", EVERY),
    ("SELECT ARRAY(SELECT TO_JSON_STRING(c)) FROM shop.customers c", EVERY),
    ("SELECT ANY_VALUE(c).email FROM shop.customers c", EVERY),  # field access on an aggregated row
    ("SELECT MAX(c).country FROM shop.customers c", EVERY),
    ("SELECT (c).country FROM shop.customers c", EVERY),
    ("SELECT c IS NULL FROM shop.customers c", EVERY),
    ("SELECT COUNT(DISTINCT c) FROM shop.customers c", EVERY),
    ("SELECT APPROX_TOP_COUNT(c, 1) FROM shop.customers c", EVERY),
    ("SELECT FOO_UNKNOWN(c) FROM shop.customers c", EVERY),  # an unknown function: its argument still resolves
    ("SELECT SAFE.TO_JSON_STRING(c) FROM shop.customers c", EVERY),
    ("SELECT CONCAT(c.country, TO_JSON_STRING(c)) FROM shop.customers c", EVERY),
    # in every clause, not just the projection
    ("SELECT COUNT(*) FROM shop.customers c WHERE TO_JSON_STRING(c) LIKE '%@example.com%'", EVERY),
    ("SELECT 1 AS x FROM shop.customers c ORDER BY TO_JSON_STRING(c)", EVERY),
    ("SELECT TO_JSON_STRING(c) FROM shop.customers c GROUP BY c", EVERY),
    ("SELECT COUNT(*) FROM shop.customers c HAVING MAX(TO_JSON_STRING(c)) > ''", EVERY),
    ("SELECT COUNT(*) FROM shop.customers c QUALIFY ROW_NUMBER() OVER (ORDER BY TO_JSON_STRING(c)) = 1", EVERY),
    ("SELECT 1 AS x FROM shop.orders o JOIN shop.customers c ON TO_JSON_STRING(c) LIKE '%a%'", EVERY),
    # window functions
    ("SELECT LAST_VALUE(c) OVER (ORDER BY c.customer_id) FROM shop.customers c", EVERY),
    ("SELECT COUNT(*) OVER (PARTITION BY c.email) FROM shop.customers c", {"email"}),
    # subqueries, correlated or not, and CTEs
    (
        "SELECT (SELECT TO_JSON_STRING(c) FROM shop.orders o WHERE o.customer_id = c.customer_id) AS x FROM shop.customers c",
        EVERY,
    ),
    ("SELECT (SELECT c FROM shop.orders o LIMIT 1) AS x FROM shop.customers c", EVERY),
    ("SELECT IF(EXISTS(SELECT c), 1, 0) AS x FROM shop.customers c", EVERY),
    ("SELECT COUNT(*) FROM shop.customers c WHERE (SELECT AS STRUCT c.*) IS NOT NULL", EVERY),
    ("SELECT (SELECT ANY_VALUE(TO_JSON_STRING(x)) FROM (SELECT c AS x)) AS y FROM shop.customers c", EVERY),
    ("WITH x AS (SELECT * FROM shop.customers) SELECT TO_JSON_STRING(x) FROM x", EVERY),
    ("WITH x AS (SELECT c FROM shop.customers c) SELECT LENGTH(TO_JSON_STRING(x)) AS n FROM x", EVERY),
    ("SELECT TO_JSON_STRING(t) FROM (SELECT c FROM shop.customers c) t", EVERY),
    ("SELECT t.c.email FROM (SELECT c FROM shop.customers c) t", EVERY),
    ("SELECT TO_JSON_STRING(c) FROM shop.orders o, (SELECT * FROM shop.customers) c", EVERY),
    ("SELECT * FROM (SELECT c FROM shop.customers c)", EVERY),
    ("SELECT 'x' AS s UNION ALL (SELECT TO_JSON_STRING(c) FROM shop.customers c)", EVERY),
    # UNNEST over a row
    ("SELECT x.email FROM shop.customers c, UNNEST([c]) x", EVERY),
    ("SELECT x FROM UNNEST((SELECT ARRAY_AGG(c) FROM shop.customers c)) x", EVERY),
    ("SELECT 1 AS x FROM shop.customers c WHERE EXISTS (SELECT 1 FROM UNNEST([c]) u WHERE u.email LIKE 'a%')", EVERY),
    # stars and JOIN USING
    ("SELECT * FROM shop.customers", EVERY),
    ("SELECT c.* FROM shop.customers c", EVERY),
    ("SELECT customers.* FROM shop.customers", EVERY),
    ("SELECT * EXCEPT (country) FROM shop.customers", EVERY - {"country"}),
    ("SELECT TO_JSON_STRING(c) FROM shop.orders JOIN shop.customers c USING (customer_id)", EVERY),
    # struct field access through an alias is a column read, not a free pass
    ("SELECT c.email FROM shop.customers c", {"email"}),
    ("SELECT `c`.email FROM shop.customers c", {"email"}),
    ("SELECT shop.customers.email FROM shop.customers", {"email"}),
    ("SELECT LOWER(c.email) AS e FROM shop.customers c WINDOW w AS (PARTITION BY c.email)", {"email"}),
    ("SELECT STRUCT(c.country AS k, c AS v) AS s FROM shop.customers c", EVERY),
    ("SELECT JSON_EXTRACT(TO_JSON_STRING(c), '$.email') AS e FROM shop.customers c", EVERY),
    ("SELECT DISTINCT c FROM shop.customers c", EVERY),
    ("SELECT COUNT(*) OVER w AS n FROM shop.customers c WINDOW w AS (ORDER BY TO_JSON_STRING(c))", EVERY),
    (f"SELECT TO_JSON_STRING(c) FROM `{P}`.shop.customers c", EVERY),
    (f"SELECT TO_JSON_STRING(customers) FROM `{P}.shop.customers`", EVERY),
    ("SELECT * FROM shop.customers c LEFT JOIN UNNEST(c.tags) t", EVERY),
    ("SELECT country FROM shop.customers EXCEPT DISTINCT SELECT email FROM shop.customers", {"country", "email"}),
    # a bare name that is a column and a table alias at once counts as both
    ("SELECT customer_id FROM shop.customers AS customer_id", EVERY),
    ("SELECT country FROM shop.customers ORDER BY customers", EVERY),
]


@pytest.mark.parametrize(("sql", "reads"), WHOLE_ROW)
def test_whole_row_references_read_every_column_and_the_tag_refuses_them(sql: str, reads: frozenset) -> None:
    assert read_columns(parse_select(sql), SCHEMAS, P)[0][CUSTOMERS] == set(reads)
    with pytest.raises(
        QueryRefused, match=r"shop.customers.email carries a policy tag this connection was not granted \(read by `"
    ):
        gate_check(sql)
    gate_check(sql, granted=(PII,))  # the same query with the tag granted: nothing else stops it


# Queries that do not read email (or customers at all) pass, and say exactly what they read.
HARMLESS = [
    ("SELECT country, COUNT(*) AS n FROM shop.customers GROUP BY country ORDER BY n", {CUSTOMERS: {"country"}}),
    ("SELECT COUNT(*) AS n FROM shop.customers c", {}),
    ("SELECT TO_JSON_STRING(o) FROM shop.orders o", {ORDERS: set(SCHEMAS[ORDERS])}),
    ("SELECT TO_JSON_STRING(t) FROM (SELECT country FROM shop.customers) t", {CUSTOMERS: {"country"}}),
    ("SELECT c.address.city FROM shop.customers c", {CUSTOMERS: {"address"}}),
    ("SELECT e FROM shop.customers c, UNNEST(c.tags) e", {CUSTOMERS: {"tags"}}),
    ("SELECT x FROM shop.customers AS c CROSS JOIN UNNEST(c.address.zip) AS x", {CUSTOMERS: {"address"}}),
    ("SELECT country FROM shop.customers GROUP BY ALL", {CUSTOMERS: {"country"}}),
    (
        "SELECT DATE_TRUNC(order_date, MONTH) AS m, EXTRACT(DAY FROM order_date) AS d FROM shop.orders",
        {ORDERS: {"order_date"}},
    ),
    (
        "SELECT DATE_DIFF(order_date, order_date, DAY) AS d FROM shop.orders WHERE order_date > CURRENT_DATE() - INTERVAL 1 DAY",
        {ORDERS: {"order_date"}},
    ),
    ("SELECT COUNT(*) AS n FROM shop.customers TABLESAMPLE SYSTEM (10 PERCENT)", {}),
    ("SELECT * REPLACE ('x' AS email) FROM shop.customers", {CUSTOMERS: set(EVERY - {"email"})}),  # replaced, not read
    ("SELECT AS STRUCT * EXCEPT (email) FROM shop.customers", {CUSTOMERS: set(EVERY - {"email"})}),
    ("WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT n FROM r", {}),
    (
        (
            f"SELECT `order_date` AS `dfx_period`, `status` AS `status`, SUM(`amount`) AS `dfx_value` FROM `{P}.shop.orders` "
            "WHERE `order_date` BETWEEN @first_day AND @last_day GROUP BY `order_date`, `status`"
        ),
        {ORDERS: {"order_date", "status", "amount"}},
    ),
]


@pytest.mark.parametrize(("sql", "reads"), HARMLESS)
def test_queries_that_do_not_read_the_tagged_column_pass_with_exact_reads(sql: str, reads: dict) -> None:
    assert gate_check(sql) == reads


# What the checker does not understand is refused, and the message names the expression.
NOT_UNDERSTOOD = [
    ("SELECT * FROM ML.PREDICT(MODEL shop.m, TABLE shop.customers)", r"table functions are refused"),
    ("SELECT * FROM shop.some_tvf(1)", r"table functions are refused"),
    (
        "SELECT * FROM shop.customers PIVOT(COUNT(*) FOR country IN ('a', 'b'))",
        r"cannot resolve `.+` to the columns it reads",
    ),
    (
        "SELECT * FROM shop.customers, UNNEST(tags)",
        r"cannot resolve `\*` to the columns it reads: a `\*` the check cannot expand",
    ),
    (
        "SELECT TIMESTAMP_TRUNC(CURRENT_TIMESTAMP(), email) AS t FROM shop.customers",
        r"cannot resolve `TIMESTAMP_TRUNC\(.*\)` .*may name a column",
    ),
    (
        "SELECT TO_JSON_STRING(z) FROM shop.customers c",
        r"could not attribute every column to a table \(Column 'z' could not be resolved",
    ),
    ("SELECT TO_JSON_STRING(shop.customers) FROM shop.customers", r"could not attribute every column"),
    ("SELECT customer_id FROM shop.orders, shop.customers", r"could not attribute every column"),  # ambiguous
    ("SELECT (SELECT AS STRUCT * FROM UNNEST([c])) AS s FROM shop.customers c", r"could not attribute every column"),
]


@pytest.mark.parametrize(("sql", "message"), NOT_UNDERSTOOD)
def test_what_the_check_cannot_resolve_is_refused_naming_the_expression(sql: str, message: str) -> None:
    with pytest.raises(QueryRefused, match=message):
        gate_check(sql, granted=(PII,))  # refused even with every tag granted: not understood is not allowed


def test_an_unresolved_expression_is_named_in_the_error() -> None:
    tree = sqlglot.parse_one(
        "SELECT country, TIMESTAMP_TRUNC(CURRENT_TIMESTAMP(), email) AS t FROM shop.customers", read="bigquery"
    )
    with pytest.raises(UnresolvedExpression) as refused:
        resolve_column_reads(
            tree, {(P, "shop", "customers"): SCHEMAS[CUSTOMERS]}, dialect="bigquery", default_catalog=P
        )
    assert refused.value.expression == "TIMESTAMP_TRUNC(CURRENT_TIMESTAMP(), EMAIL)"
    assert "may name a column" in refused.value.reason


def test_unselected_columns_read_through_a_row_reference_are_refused() -> None:
    narrowed = Selection(datasets={"shop": ["orders"]}, objects={"shop.orders": ["amount", "order_date"]})
    columns, evidence = read_columns(parse_select("SELECT TO_JSON_STRING(o) FROM shop.orders o"), SCHEMAS, P)
    with pytest.raises(
        QueryRefused,
        match=r"shop.orders columns customer_id, order_id, status are not selected \(read by `TO_JSON_STRING\(o\)`\)",
    ):
        check_columns(columns, narrowed, {}, (), evidence)


@pytest.mark.parametrize(
    ("dialect", "sql", "reads"),
    [
        ("postgres", "SELECT row_to_json(c) FROM shop.customers c", EVERY),
        ("postgres", "SELECT c FROM shop.customers AS c", EVERY),
        ("postgres", "SELECT (c).country FROM shop.customers c", EVERY),
        ("postgres", "SELECT country FROM shop.customers", {"country"}),
        ("snowflake", "SELECT OBJECT_CONSTRUCT(c.*) FROM shop.customers c", EVERY),
        ("snowflake", "SELECT c.country FROM shop.customers c", {"country"}),
    ],
)
def test_the_resolution_is_dialect_parameterised(dialect: str, sql: str, reads: frozenset) -> None:
    schemas = {
        ("db", "shop", "customers"): {
            "customer_id": "INT",
            "email": "TEXT",
            "country": "TEXT",
            "address": "TEXT",
            "tags": "TEXT",
        }
    }
    found = resolve_column_reads(sqlglot.parse_one(sql, read=dialect), schemas, dialect=dialect, default_catalog="db")
    assert found.columns == {("db", "shop", "customers"): set(reads)}
