"""Aggregate SOQL compared with the same numbers computed in Python over every row."""

from __future__ import annotations

from collections import defaultdict
from datetime import date

import pytest


@pytest.fixture(scope="module")
def opportunities(shared_sandbox):
    rows = shared_sandbox.org.run_sql(
        'SELECT "StageName", "Amount", "IsWon", "IsClosed", "CloseDate", "AccountId", "Probability" '
        'FROM "Opportunity" WHERE "IsDeleted" = 0'
    )
    return [dict(zip(("stage", "amount", "won", "closed", "close", "account", "probability"), row)) for row in rows]


def test_group_by_stage_with_aliases_and_exprn(shared_sf, opportunities):
    result = shared_sf.query(
        "SELECT StageName, SUM(Amount) total, COUNT(Id), MAX(Amount) FROM Opportunity GROUP BY StageName"
    )
    expected: dict[str, list] = defaultdict(lambda: [0.0, 0, None])
    for row in opportunities:
        bucket = expected[row["stage"]]
        bucket[0] += row["amount"] or 0
        bucket[1] += 1
        if row["amount"] is not None:
            bucket[2] = max(bucket[2] or 0, row["amount"])
    assert result["totalSize"] == len(expected)
    for record in result["records"]:
        assert record["attributes"] == {"type": "AggregateResult"}
        assert list(record)[1:] == ["StageName", "total", "expr0", "expr1"]
        total, count, maximum = expected[record["StageName"]]
        assert record["total"] == pytest.approx(total)
        assert record["expr0"] == count
        assert record["expr1"] == maximum


def test_aggregate_without_group_by_is_one_row(shared_sf, opportunities):
    record = shared_sf.query(
        "SELECT COUNT(Id) n, SUM(Amount) pipeline, AVG(Amount), COUNT_DISTINCT(AccountId), MIN(CloseDate) FROM Opportunity WHERE IsClosed = false"
    )["records"]
    [row] = record
    open_rows = [r for r in opportunities if not r["closed"]]
    amounts = [r["amount"] for r in open_rows if r["amount"] is not None]
    assert row["n"] == len(open_rows)
    assert row["pipeline"] == pytest.approx(sum(amounts))
    assert row["expr0"] == pytest.approx(sum(amounts) / len(amounts))
    assert row["expr1"] == len({r["account"] for r in open_rows if r["account"]})
    assert row["expr2"] == min(r["close"] for r in open_rows)


def test_empty_aggregate_still_returns_a_row(shared_sf):
    [row] = shared_sf.query("SELECT SUM(Amount) total, COUNT(Id) n FROM Opportunity WHERE Name = 'no such deal'")[
        "records"
    ]
    assert row["total"] is None and row["n"] == 0


def test_group_by_calendar_functions_and_having(shared_sf, opportunities):
    result = shared_sf.query(
        "SELECT CALENDAR_YEAR(CloseDate) yr, CALENDAR_MONTH(CloseDate) mo, SUM(Amount) won FROM Opportunity "
        "WHERE IsWon = true GROUP BY CALENDAR_YEAR(CloseDate), CALENDAR_MONTH(CloseDate) "
        "HAVING COUNT(Id) > 2 ORDER BY CALENDAR_YEAR(CloseDate), CALENDAR_MONTH(CloseDate)"
    )
    expected: dict[tuple[int, int], list] = defaultdict(lambda: [0.0, 0])
    for row in opportunities:
        if row["won"]:
            day = date.fromisoformat(row["close"])
            expected[(day.year, day.month)][0] += row["amount"] or 0
            expected[(day.year, day.month)][1] += 1
    wanted = sorted((key, value[0]) for key, value in expected.items() if value[1] > 2)
    got = [((r["yr"], r["mo"]), r["won"]) for r in result["records"]]
    assert [key for key, _ in got] == [key for key, _ in wanted]
    for (_, got_sum), (_, want_sum) in zip(got, wanted):
        assert got_sum == pytest.approx(want_sum)


def test_day_only_groups_datetimes(shared_sf, shared_sandbox):
    records = shared_sf.query(
        "SELECT DAY_ONLY(CreatedDate) day, COUNT(Id) n FROM Case GROUP BY DAY_ONLY(CreatedDate) ORDER BY DAY_ONLY(CreatedDate) DESC LIMIT 3"
    )["records"]
    assert len(records) == 3
    for record in records:
        date.fromisoformat(record["day"])
    unaliased = shared_sf.query("SELECT DAY_ONLY(CreatedDate), COUNT(Id) n FROM Case GROUP BY DAY_ONLY(CreatedDate)")[
        "records"
    ]
    assert all(set(r) == {"attributes", "expr0", "n"} for r in unaliased)  # the date function is expr0
    assert sum(r["n"] for r in unaliased) == shared_sandbox.org.count("Case")


def test_count_only_returns_total_size_and_no_records(shared_sf, shared_sandbox):
    result = shared_sf.query("SELECT COUNT() FROM Lead WHERE IsConverted = true")
    expected = shared_sandbox.org.run_sql('SELECT COUNT(*) FROM "Lead" WHERE "IsConverted" = 1 AND "IsDeleted" = 0')[0][
        0
    ]
    assert result == {"totalSize": expected, "done": True, "records": []}


def test_group_by_relationship_field(shared_sf, shared_sandbox):
    records = shared_sf.query("SELECT Account.Industry, COUNT(Id) FROM Opportunity GROUP BY Account.Industry")[
        "records"
    ]
    assert all(set(r) == {"attributes", "Industry", "expr0"} for r in records)
    assert sum(r["expr0"] for r in records) == shared_sandbox.org.count("Opportunity")
