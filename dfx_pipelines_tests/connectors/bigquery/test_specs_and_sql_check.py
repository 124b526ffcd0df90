"""Metric specs → SQL, and what the gate reads from SQL before BigQuery sees it (SELECT only, tables,
columns, policy tags). Pure: sqlglot and pydantic only, no sandbox."""

from datetime import date
from decimal import Decimal

import pytest

from dfx_pipelines.connectors.bigquery.gate import QueryRefused
from dfx_pipelines.connectors.bigquery.metrics import (
    MetricSpec,
    TableInfo,
    build_query,
    parse_specs,
    results_markdown,
    spec_problems,
    to_metric_rows,
)
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection as Selection
from dfx_pipelines.connectors.bigquery.sql_check import (
    TableRef,
    check_columns,
    check_tables,
    parse_select,
    referenced_columns,
    table_refs,
)
from dfx_pipelines.platform.errors import ConfigError, IdentifierError

P = "dfx-demo-project"
ORDERS = TableRef(P, "shop", "orders")
CUSTOMERS = TableRef(P, "shop", "customers")
SCHEMAS = {
    ORDERS: {
        "order_id": "INT64",
        "customer_id": "INT64",
        "status": "STRING",
        "amount": "NUMERIC",
        "order_date": "DATE",
    },
    CUSTOMERS: {"customer_id": "INT64", "email": "STRING", "country": "STRING"},
}
PII = f"projects/{P}/locations/us/taxonomies/1/policyTags/pii"
SELECTION = Selection(datasets={"shop": ["orders", "customers"]})


def spec(**changes) -> MetricSpec:
    return MetricSpec.model_validate(
        {
            "name": "revenue",
            "table": "shop.orders",
            "measure": "SUM",
            "column": "amount",
            "group_by": ["status"],
            "time_column": "order_date",
            **changes,
        }
    )


# ---------------------------------------------------------------- specs


def test_spec_becomes_quoted_sql_with_a_pruning_date_filter() -> None:
    query = build_query(spec(), P, date(2024, 6, 1), date(2024, 6, 30))
    assert query.sql == (
        "SELECT `order_date` AS `dfx_period`, `status` AS `status`, SUM(`amount`) AS `dfx_value`\n"
        f"FROM `{P}.shop.orders`\n"
        "WHERE `order_date` BETWEEN @first_day AND @last_day\n"
        "GROUP BY `order_date`, `status`"
    )
    assert query.params == {"first_day": date(2024, 6, 1), "last_day": date(2024, 6, 30)}


def test_a_timestamp_time_column_is_grouped_by_its_utc_date_and_the_days_stay_parameters() -> None:
    query = build_query(spec(time_column="created_at"), P, date(2024, 6, 1), date(2024, 6, 30), "TIMESTAMP")
    assert query.sql == (
        "SELECT DATE(`created_at`) AS `dfx_period`, `status` AS `status`, SUM(`amount`) AS `dfx_value`\n"
        f"FROM `{P}.shop.orders`\n"
        # Filtered on the column itself (what BigQuery prunes on), half-open over the last day.
        "WHERE `created_at` >= TIMESTAMP(@first_day) AND `created_at` < TIMESTAMP(DATE_ADD(@last_day, INTERVAL 1 DAY))\n"
        "GROUP BY DATE(`created_at`), `status`"
    )
    assert "2024" not in query.sql and query.params == {"first_day": date(2024, 6, 1), "last_day": date(2024, 6, 30)}
    parse_select(query.sql)  # still one SELECT for the gate's check
    with pytest.raises(ConfigError, match="not one of DATE, TIMESTAMP"):
        build_query(spec(time_column="status"), P, date(2024, 6, 1), date(2024, 6, 1), "STRING")


@pytest.mark.parametrize(
    ("measure", "column", "expression"),
    [
        ("SUM", "amount", "SUM(`amount`)"),
        ("AVG", "amount", "AVG(`amount`)"),
        ("COUNT", None, "COUNT(*)"),
        ("COUNT", "order_id", "COUNT(`order_id`)"),
        ("COUNT DISTINCT", "customer_id", "COUNT(DISTINCT `customer_id`)"),
        ("count_distinct", "customer_id", "COUNT(DISTINCT `customer_id`)"),
    ],
)
def test_measures_come_from_an_allowlist(measure: str, column: str | None, expression: str) -> None:
    assert (
        expression
        in build_query(spec(measure=measure, column=column, group_by=[]), P, date(2024, 1, 1), date(2024, 1, 1)).sql
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"column": "amount`) FROM x; --"},
        {"column": "amount;"},
        {"group_by": ["status`"]},
        {"time_column": "order_date; DROP"},
        {"table": "shop.orders`"},
        {"table": "shop;orders"},
        {"table": "orders"},
    ],
)
def test_identifiers_with_backticks_or_semicolons_are_refused(changes: dict) -> None:
    with pytest.raises(IdentifierError):
        spec(**changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"measure": "MAX"}, "not one of SUM, COUNT, COUNT_DISTINCT, AVG"),
        ({"measure": "SUM", "column": None}, "SUM needs a column"),
        ({"group_by": ["status", "status"]}, "repeats"),
        ({"group_by": ["dfx_value"]}, "reserved"),
        ({"group_by": ["a", "b", "c", "d", "e"]}, "at most 4"),
        ({"name": "Revenue Total"}, None),
    ],
)
def test_bad_specs_are_clear_config_errors(changes: dict, message: str | None) -> None:
    with pytest.raises((ConfigError, IdentifierError), match=message):
        parse_specs([spec().model_dump() | changes])


def test_spec_names_are_unique_and_the_list_is_a_list() -> None:
    with pytest.raises(ConfigError, match="repeat"):
        parse_specs([spec().model_dump(), spec().model_dump()])
    with pytest.raises(ConfigError, match="must be a list"):
        parse_specs({"name": "x"})
    assert parse_specs(None) == []


def test_spec_problems_against_schema_selection_and_tags() -> None:
    tables = {
        "shop.orders": TableInfo(
            {"amount": "NUMERIC", "status": "STRING", "order_date": "DATE", "created_at": "TIMESTAMP"}, "order_date"
        ),
        "shop.customers": TableInfo(
            {"email": "STRING", "signed_up_on": "DATE", "country": "STRING"}, None, {"email": (PII,)}
        ),
    }
    assert spec_problems(spec(), SELECTION, tables) == []
    assert "does not exist" in spec_problems(spec(column="discount"), SELECTION, tables)[0]
    # A TIMESTAMP time column is accepted (its UTC date is the day), but still must be the partitioning column.
    assert "DATE or TIMESTAMP column is required" not in " ".join(
        spec_problems(spec(time_column="created_at"), SELECTION, tables)
    )
    assert "a DATE or TIMESTAMP column is required" in " ".join(
        spec_problems(spec(time_column="status"), SELECTION, tables)
    )
    assert "not shop.orders's partitioning column" in " ".join(
        spec_problems(spec(time_column="created_at"), SELECTION, tables)
    )
    assert "needs a numeric column" in " ".join(spec_problems(spec(column="status"), SELECTION, tables))
    assert "is not selected" in spec_problems(spec(table="shop.web_events"), SELECTION, tables)[0]
    narrowed = Selection(datasets={"shop": ["orders"]}, objects={"shop.orders": ["amount", "order_date"]})
    assert "shop.orders.status is not selected" in " ".join(spec_problems(spec(), narrowed, tables))
    tagged = spec(
        table="shop.customers",
        measure="COUNT_DISTINCT",
        column="email",
        group_by=["country"],
        time_column="signed_up_on",
    )
    assert "policy tag" in " ".join(spec_problems(tagged, SELECTION, tables))
    assert spec_problems(tagged, SELECTION, tables, granted_tags=[PII]) == []
    unpartitioned = {"shop.orders": TableInfo({"amount": "NUMERIC", "status": "STRING", "created_at": "TIMESTAMP"})}
    assert spec_problems(spec(time_column="created_at"), SELECTION, unpartitioned) == []


def test_result_rows_become_metric_rows_per_day_and_group() -> None:
    rows = [
        {"dfx_period": date(2024, 6, 2), "status": "paid", "dfx_value": Decimal("10.50")},
        {"dfx_period": date(2024, 6, 1), "status": None, "dfx_value": 3},
        {"dfx_period": date(2024, 6, 1), "status": "paid", "dfx_value": None},
    ]
    out = to_metric_rows(spec(), rows)
    assert [(r.period, r.dimensions, r.value, r.measure, r.metric) for r in out] == [
        (date(2024, 6, 1), (("status", ""),), 3.0, "sum_amount", "revenue"),
        (date(2024, 6, 1), (("status", "paid"),), None, "sum_amount", "revenue"),
        (date(2024, 6, 2), (("status", "paid"),), 10.5, "sum_amount", "revenue"),
    ]
    assert "| revenue | sum_amount | 2024-06-02 | status=paid | 10.5 |" in results_markdown(out)
    with pytest.raises(ConfigError, match="not a number"):
        to_metric_rows(spec(), [{"dfx_period": date(2024, 6, 1), "status": "x", "dfx_value": "12"}])


# ---------------------------------------------------------------- SELECT only


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM shop.orders WHERE TRUE",
        "UPDATE shop.orders SET amount = 0 WHERE TRUE",
        "DROP TABLE shop.orders",
        "INSERT INTO shop.orders (order_id) VALUES (1)",
        "CREATE TABLE shop.x AS SELECT 1 AS a",
        "SELECT 1 AS a; DROP TABLE shop.orders",
        "SELECT 1 AS a; SELECT 2 AS b",
        "MERGE shop.orders t USING shop.orders s ON FALSE WHEN NOT MATCHED THEN INSERT ROW",
        "",
        "   ",
        "SELEC 1",
    ],
)
def test_anything_but_one_select_is_refused(sql: str) -> None:
    with pytest.raises(QueryRefused):
        parse_select(sql)


def test_tables_named_in_sql_are_qualified_and_checked_against_the_selection() -> None:
    tree = parse_select(
        "WITH recent AS (SELECT * FROM shop.orders) SELECT COUNT(*) AS n FROM recent JOIN `dfx-demo-project.shop.customers` c ON TRUE"
    )
    assert table_refs(tree, P) == [CUSTOMERS, ORDERS]  # the CTE is not a table
    check_tables(table_refs(tree, P), SELECTION, P, "the query")
    with pytest.raises(QueryRefused, match=r"finance.invoices"):
        check_tables(table_refs(parse_select("SELECT amount FROM finance.invoices"), P), SELECTION, P, "the query")
    with pytest.raises(QueryRefused, match="other-project"):
        check_tables(
            table_refs(parse_select("SELECT amount FROM `other-project.shop.orders`"), P), SELECTION, P, "the query"
        )
    with pytest.raises(QueryRefused, match="qualified with its dataset"):
        table_refs(parse_select("SELECT amount FROM orders"), P)
    with pytest.raises(QueryRefused, match="table reference refused"):
        table_refs(parse_select("SELECT amount FROM `shop.orders_*`"), P)


def test_columns_are_attributed_to_their_tables_with_stars_expanded() -> None:
    def columns(sql: str) -> dict:
        return referenced_columns(parse_select(sql), SCHEMAS, P)

    assert columns("SELECT COUNT(*) AS n FROM shop.orders") == {}
    assert columns("SELECT * FROM shop.orders")[ORDERS] == set(SCHEMAS[ORDERS])
    assert columns("SELECT o.* FROM shop.orders o")[ORDERS] == set(SCHEMAS[ORDERS])
    joined = columns(
        "SELECT c.country, SUM(o.amount) AS v FROM shop.orders o JOIN shop.customers c USING (customer_id) GROUP BY c.country ORDER BY v"
    )
    assert joined == {ORDERS: {"amount", "customer_id"}, CUSTOMERS: {"country", "customer_id"}}
    # A subquery that selects a column nobody uses still reads it: the check stays conservative.
    assert columns("SELECT n FROM (SELECT country AS n, email FROM shop.customers)")[CUSTOMERS] == {"country", "email"}
    with pytest.raises(QueryRefused, match="could not attribute"):
        columns("SELECT customer_id FROM shop.orders, shop.customers")  # ambiguous


def test_tagged_and_unselected_columns_are_refused_unless_granted() -> None:
    tagged = {CUSTOMERS: {"email": (PII,)}}

    def check(sql: str, selection: Selection = SELECTION, granted: tuple = ()) -> None:
        check_columns(referenced_columns(parse_select(sql), SCHEMAS, P), selection, tagged, granted)

    check("SELECT country, COUNT(*) AS n FROM shop.customers GROUP BY country")
    for sql in (
        "SELECT email FROM shop.customers",
        "SELECT * FROM shop.customers",
        "SELECT COUNT(DISTINCT LOWER(email)) AS n FROM shop.customers",
        "WITH x AS (SELECT email AS e FROM shop.customers) SELECT COUNT(*) AS n FROM x WHERE e LIKE '%@x'",
    ):
        with pytest.raises(QueryRefused, match="policy tag"):
            check(sql)
    check("SELECT email FROM shop.customers", granted=(PII,))
    narrowed = Selection(datasets={"shop": ["orders"]}, objects={"shop.orders": ["amount", "order_date"]})
    check("SELECT SUM(amount) AS v FROM shop.orders WHERE order_date = '2024-01-01'", narrowed)
    with pytest.raises(QueryRefused, match="status are not selected"):
        check("SELECT status FROM shop.orders", narrowed)
