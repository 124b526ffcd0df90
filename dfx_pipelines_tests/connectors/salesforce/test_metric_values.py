"""Sales metrics materialized through the real assets, client and sandbox equal an independent
computation straight over the sandbox org's own tables (SQL, not SOQL, not the reducers)."""

import statistics
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest

from .conftest import ORG_NOW

DAY_SECONDS = 86_400
FIRST_DAY, LAST_DAY = (ORG_NOW - timedelta(days=29)).date(), ORG_NOW.date()


def stored(platform, metric: str) -> dict[tuple, float | None]:
    """(period, measure, dims) -> value for one metric of the connection."""
    return {
        (row["period"], row["measure"], tuple(sorted(row["dimensions"].items()))): row["value"]
        for row in platform.metric_store.read(connection_id="sf-acme", metric=metric)
    }


def day_bounds(day: date) -> tuple[int, int]:
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return start, start + DAY_SECONDS


def days() -> list[date]:
    return [FIRST_DAY + timedelta(days=n) for n in range((LAST_DAY - FIRST_DAY).days + 1)]


@pytest.fixture
def range_tags() -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": f"sf-acme|{FIRST_DAY}",
        "dagster/asset_partition_range_end": f"sf-acme|{LAST_DAY}",
    }


def test_open_pipeline_by_stage(platform, sf_connection, sf_sandbox, materialize) -> None:
    result = materialize(["open_pipeline_by_stage"], partition_key="sf-acme")
    expected = sf_sandbox.org.run_sql(
        "SELECT StageName, COUNT(*), SUM(COALESCE(Amount, 0)), SUM(COALESCE(Amount, 0) * Probability / 100.0) "
        "FROM Opportunity WHERE IsClosed = 0 AND IsDeleted = 0 GROUP BY StageName"
    )
    values = stored(platform, "open_pipeline_by_stage")
    assert len(expected) >= 4
    for stage, count, amount, weighted in expected:
        dims = (("stage", stage),)
        assert values[(None, "count", dims)] == count
        assert values[(None, "amount", dims)] == pytest.approx(amount)
        assert values[(None, "weighted_amount", dims)] == pytest.approx(weighted)
    assert values[(None, "total_count", ())] == sum(row[1] for row in expected)
    # What a person sees in the UI: the SOQL issued, what was read, and the result as a table.
    metadata = result.asset_materializations_for_node("salesforce__open_pipeline_by_stage")[0].metadata
    assert "FROM Opportunity" in metadata["soql"].value and metadata["api_calls"].value >= 1
    assert metadata["bytes_read"].value > 0 and "| open_pipeline_by_stage |" in metadata["result"].value


def test_win_rate_over_a_month_in_one_backfill_run(
    platform, sf_connection, sf_sandbox, materialize, range_tags
) -> None:
    result = materialize(["win_rate"], tags=range_tags)
    assert result.success
    values = stored(platform, "win_rate")
    checked = 0
    for day in days():
        rows = sf_sandbox.org.run_sql(
            "SELECT IsWon, COUNT(*), SUM(COALESCE(Amount, 0)) FROM Opportunity WHERE IsClosed = 1 AND IsDeleted = 0 AND CloseDate = ? GROUP BY IsWon",
            (day.isoformat(),),
        )
        by_won = {bool(won): (count, amount) for won, count, amount in rows}
        won, lost = by_won.get(True, (0, 0.0)), by_won.get(False, (0, 0.0))
        assert values[(day, "won_count", ())] == won[0]
        assert values[(day, "lost_count", ())] == lost[0]
        assert values[(day, "won_amount", ())] == pytest.approx(won[1])
        expected_rate = won[0] / (won[0] + lost[0]) if won[0] + lost[0] else None
        assert values[(day, "win_rate_by_count", ())] == (
            pytest.approx(expected_rate) if expected_rate is not None else None
        )
        checked += bool(rows)
    assert checked >= 5, "the test org should close deals on several of these days"
    # Each partition's materialization carries that day's own numbers, not the run's totals or the last day.
    by_partition = {
        str(m.partition): m.metadata for m in result.asset_materializations_for_node("salesforce__win_rate")
    }
    batches = {b["partition_key"]: b for b in platform.metric_store.batches() if b["metric"] == "win_rate"}
    assert len(by_partition) == len(days())
    for day in days():
        key = f"sf-acme|{day}"
        metadata, batch = by_partition[key], batches[key]
        assert metadata["dagster/row_count"].value == batch["row_count"]
        assert (metadata["api_calls"].value, metadata["rows_returned"].value, metadata["bytes_read"].value) == (
            batch["api_calls"],
            batch["records_read"],
            batch["bytes_read"],
        )
        # The whole run is one range query, grouped by day: every partition shows it (its calls are
        # charged to the first partition only, so the batches' sums stay true).
        assert f"(CloseDate >= {days()[0]} AND CloseDate <= {days()[-1]})" in metadata["soql"].value
        assert "GROUP BY IsWon, CloseDate" in metadata["soql"].value
        periods = {
            line.split(" | ")[2] for line in metadata["result"].value.splitlines()[2:] if line.startswith("| win_rate")
        }
        assert periods <= {day.isoformat()}


def test_lead_conversion_and_case_volume(platform, sf_connection, sf_sandbox, materialize, range_tags) -> None:
    assert materialize(["lead_conversion", "case_volume"], tags=range_tags).success
    leads, cases = stored(platform, "lead_conversion"), stored(platform, "case_volume")
    for day in days():
        start, end = day_bounds(day)
        total, converted = sf_sandbox.org.run_sql(
            "SELECT COUNT(*), COALESCE(SUM(IsConverted), 0) FROM Lead WHERE IsDeleted = 0 AND CreatedDate >= ? AND CreatedDate < ?",
            (start, end),
        )[0]
        assert leads[(day, "lead_count", ())] == total
        assert leads[(day, "converted_count", ())] == converted
        case_count = sf_sandbox.org.run_sql(
            'SELECT COUNT(*) FROM "Case" WHERE IsDeleted = 0 AND CreatedDate >= ? AND CreatedDate < ?', (start, end)
        )[0][0]
        assert cases[(day, "total_count", ())] == case_count


def test_sales_cycle_length_is_streamed_and_reduced(
    platform, sf_connection, sf_sandbox, materialize, range_tags
) -> None:
    assert materialize(["sales_cycle_length"], tags=range_tags).success
    values = stored(platform, "sales_cycle_length")
    seen = 0
    for day in days():
        created = sf_sandbox.org.run_sql(
            "SELECT CreatedDate FROM Opportunity WHERE IsWon = 1 AND IsDeleted = 0 AND CloseDate = ?",
            (day.isoformat(),),
        )
        lengths = [(day - datetime.fromtimestamp(ts, UTC).date()).days for (ts,) in created]
        assert values[(day, "count", ())] == len(lengths)
        if lengths:
            seen += 1
            assert values[(day, "median_days", ())] == pytest.approx(statistics.median(lengths))
            assert values[(day, "mean_days", ())] == pytest.approx(statistics.fmean(lengths))
    assert seen >= 3


def test_rerun_replaces_the_partition(platform, sf_connection, materialize) -> None:
    materialize(["open_pipeline_by_stage"], partition_key="sf-acme")
    first = len(platform.metric_store.read(connection_id="sf-acme"))
    materialize(["open_pipeline_by_stage"], partition_key="sf-acme")
    assert len(platform.metric_store.read(connection_id="sf-acme")) == first
    assert len(platform.metric_store.batches("sf-acme")) == 1


def test_daily_partition_key_by_itself(platform, sf_connection, materialize) -> None:
    day = LAST_DAY - timedelta(days=3)
    key = dg.MultiPartitionKey({"connection": "sf-acme", "date": day.isoformat()})
    assert materialize(["win_rate"], partition_key=key).success
    [batch] = platform.metric_store.batches("sf-acme")
    assert (
        batch["partition_key"] == f"sf-acme|{day}"
        and batch["records_read"] >= 0
        and "CloseDate = " + day.isoformat() in batch["source"]
    )
