"""The platform's SQL gate is dialect-independent: the same rules, in BigQuery's and PostgreSQL's dialects,
refuse the same writes, hidden statements, non-aggregate results and oversized results, and resolve the
same columns; each connector adds only its identifiers, restricted columns and estimate."""

import pytest

from dfx_pipelines.platform.sql_gate import check
from dfx_pipelines.platform.sql_gate.check import SqlRefused

DIALECTS = {
    "bigquery": check.Dialect("bigquery", "GoogleSQL", "BigQuery"),
    "postgres": check.Dialect("postgres", "PostgreSQL SQL", "PostgreSQL"),
}
SCHEMA = {("c", "s", "orders"): {"status": "TEXT", "amount": "NUMERIC", "email": "TEXT", "day": "DATE"}}


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS)
@pytest.mark.parametrize(
    ("sql", "problem"),
    [
        ("DELETE FROM s.orders WHERE TRUE", "DELETE statements are refused"),
        ("SELECT COUNT(*) AS n FROM s.orders; DROP TABLE s.orders", "one statement per query"),
        ("SELECT email FROM s.orders", "must be an aggregate"),
        ("SELECT status, SUM(amount) OVER () AS x FROM s.orders", "must be an aggregate"),
        ("SELECT status, COUNT(*) AS n FROM s.orders", "neither an aggregate nor a GROUP BY key"),
        ("SELECT (SELECT MAX(amount) FROM s.orders) AS m, email FROM s.orders", "must be an aggregate"),
    ],
)
def test_the_same_rules_in_every_dialect(dialect: check.Dialect, sql: str, problem: str) -> None:
    with pytest.raises(SqlRefused, match=problem):
        check.require_aggregate(check.parse_select(sql, dialect), dialect)


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "SELECT status, SUM(amount) AS v FROM s.orders GROUP BY status",
        "SELECT day, status, COUNT(*) AS n FROM s.orders GROUP BY 1, 2",
        "SELECT COUNT(DISTINCT email) AS n FROM s.orders",
    ],
)
def test_aggregates_pass_and_their_columns_are_resolved(dialect: check.Dialect, sql: str) -> None:
    tree = check.parse_select(sql, dialect)
    check.require_aggregate(tree, dialect)
    columns, evidence = check.read_columns(
        tree, {"orders": SCHEMA[("c", "s", "orders")]}, lambda _: ("c", "s", "orders"), dialect, "c"
    )
    problems = check.column_problems(columns, lambda _: ["status", "amount", "day"], {}, lambda _: "s.orders", evidence)
    assert ("email" in sql) == any("columns email are not selected" in p for p in problems)


def test_the_row_bound_holds_a_range_to_the_rows_of_one_day() -> None:
    check.check_row_bound(10, 10, what="q")
    with pytest.raises(SqlRefused, match="q returned more than 10 rows"):
        check.check_row_bound(11, 10, what="q")
    with pytest.raises(SqlRefused, match="over a range of 30 days returned more than 10 rows"):
        check.check_row_bound(11, 10, what="q", days=30)
