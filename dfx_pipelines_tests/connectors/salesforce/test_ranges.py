"""Range queries (issue 19): a daily metric over a set of days is one query set grouped (or ordered) by
day, and its values equal the per-day computation row for row, on the sandbox org; past Salesforce's
2,000-group limit the range is re-run by halves (really exceeded on a larger generated org, not mocked),
without ever asking queryMore for an aggregate result; the CDC sensor's clusters of touched days."""

from collections.abc import Iterator
from datetime import date, timedelta

import pytest

from dfx_pipelines.connectors.salesforce import metrics as m
from dfx_pipelines.connectors.salesforce.assets import compute_metric, compute_metric_days
from dfx_pipelines.connectors.salesforce.cdc import day_clusters
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS, SalesMetric
from dfx_pipelines.connectors.salesforce.plugin import DEMO_SELECTION
from dfx_pipelines.connectors.salesforce.queries import AGGREGATE_ROW_LIMIT, Cadence, Days
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import RunningSalesforceSandbox
from dfx_pipelines.connectors.salesforce.selection import Selection
from dfx_pipelines.platform.registry import Connection

from .conftest import ORG_NOW, connect, make_sandbox

DAILY = [metric for metric in SALES_METRICS.values() if metric.cadence is Cadence.DAILY]


def per_day(client, metric: SalesMetric, connection: Connection, days: Days) -> dict[date, list]:
    return {day: compute_metric(client, metric, connection, day)[1] for day in days}


def keyed(rows: list) -> list[tuple]:
    return [(r.metric, r.measure, r.period, r.dimensions, r.value) for r in rows]


# ---------------------------------------------------------------- pure parts


def test_days_render_as_intervals_and_halve() -> None:
    days = Days([date(2026, 1, 5), date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), date(2026, 1, 2)])
    assert days.days == (date(2026, 1, 1), date(2026, 1, 2), date(2026, 1, 3), date(2026, 1, 5))
    assert days.intervals() == [(date(2026, 1, 1), date(2026, 1, 3)), (date(2026, 1, 5), date(2026, 1, 5))]
    earlier, later = days.halves()
    assert earlier.days + later.days == days.days and len(earlier) == 2
    with pytest.raises(ValueError):
        Days([])
    with pytest.raises(ValueError):
        Days([date(2026, 1, 1)]).halves()

    win_rate = SALES_METRICS["win_rate"].build_days(DEMO_SELECTION, days)[0].soql
    assert "((CloseDate >= 2026-01-01 AND CloseDate <= 2026-01-03) OR CloseDate = 2026-01-05)" in win_rate
    assert win_rate.endswith("GROUP BY IsWon, CloseDate")
    leads = SALES_METRICS["lead_conversion"].build_days(DEMO_SELECTION, days)[0].soql
    assert (
        "((CreatedDate >= 2026-01-01T00:00:00Z AND CreatedDate < 2026-01-04T00:00:00Z) OR "
        "(CreatedDate >= 2026-01-05T00:00:00Z AND CreatedDate < 2026-01-06T00:00:00Z))" in leads
    )
    assert "DAY_ONLY(CreatedDate) periodDay" in leads and leads.endswith("GROUP BY IsConverted, DAY_ONLY(CreatedDate)")
    cycle = SALES_METRICS["sales_cycle_length"].build_days(DEMO_SELECTION, days)[0]
    assert not cycle.aggregate and cycle.soql.endswith("ORDER BY CloseDate") and cycle.day_key == "CloseDate"
    milestones = SALES_METRICS["case_milestone_sla"].build_days(DEMO_SELECTION, days)
    assert [q.day_field for q in milestones] == ["CompletionDate", "TargetDate"]
    # One day still builds today's one-day text.
    one = SALES_METRICS["win_rate"].build(DEMO_SELECTION, date(2026, 1, 1)).soql
    assert "CloseDate = 2026-01-01" in one and "GROUP BY IsWon" in one and one.count("CloseDate") == 1


def test_a_streamed_range_is_split_lazily_and_refuses_disorder() -> None:
    metric = SALES_METRICS["sales_cycle_length"]
    days = Days.between(date(2026, 1, 1), date(2026, 1, 4))
    (query,) = metric.build_days(DEMO_SELECTION, days)
    seen: list[date] = []

    def records() -> Iterator[dict]:
        for day, durations in ((date(2026, 1, 2), (3, 5)), (date(2026, 1, 3), (1,))):
            for duration in durations:
                seen.append(day)
                yield {"CreatedDate": f"{day - timedelta(days=duration)}T10:00:00.000+0000", "CloseDate": str(day)}

    split = m.reduce_days(metric.reduce, [(query, records())], days)
    first_day, first_rows = next(split)
    assert first_day == date(2026, 1, 1) and seen == [date(2026, 1, 2)]  # an empty day; one record read
    assert first_rows == m.reduce_sales_cycle_length([], date(2026, 1, 1))
    rest = dict(split)
    assert rest[date(2026, 1, 2)] == m.reduce_sales_cycle_length(
        [
            {"CreatedDate": "2025-12-30T10:00:00.000+0000", "CloseDate": "2026-01-02"},
            {"CreatedDate": "2025-12-28T10:00:00.000+0000", "CloseDate": "2026-01-02"},
        ],
        date(2026, 1, 2),
    )
    assert rest[date(2026, 1, 4)] == m.reduce_sales_cycle_length([], date(2026, 1, 4))

    unordered = [{"CreatedDate": "2026-01-01T00:00:00Z", "CloseDate": str(d)} for d in ("2026-01-03", "2026-01-02")]
    with pytest.raises(ValueError, match="not ordered"):
        dict(m.reduce_days(metric.reduce, [(query, unordered)], days))
    outside = [{"CreatedDate": "2026-01-01T00:00:00Z", "CloseDate": "2026-02-01"}]
    with pytest.raises(ValueError, match="outside"):
        dict(m.reduce_days(metric.reduce, [(query, outside)], days))


def test_touched_days_cluster_across_small_gaps() -> None:
    d = date(2026, 3, 1)
    days = [d, d + timedelta(days=8), d + timedelta(days=2), d + timedelta(days=17), d + timedelta(days=30)]
    assert day_clusters(days, 7) == [
        (d, d + timedelta(days=8)),  # 7 untouched days between the 3rd and the 9th: one range
        (d + timedelta(days=17), d + timedelta(days=17)),  # 8 between: a new one
        (d + timedelta(days=30), d + timedelta(days=30)),
    ]
    assert day_clusters([], 7) == [] and day_clusters(days, 0) == [(x, x) for x in sorted(days)]


# ---------------------------------------------------------------- on the sandbox org


def test_every_daily_metric_over_a_range_equals_its_per_day_computation(
    platform, sf_connection: Connection, sf_resource: SalesforceResource, sf_sandbox: RunningSalesforceSandbox
) -> None:
    # 60 days with holes (so the OR of intervals is exercised) and the days after the org's now (future
    # target dates of open milestones, tasks and events).
    last = ORG_NOW.date() + timedelta(days=10)
    days = Days(d for d in (last - timedelta(days=n) for n in range(70)) if d.day not in (3, 4, 17))
    selection = Selection(sf_connection.selection.objects)
    non_empty = 0
    for metric in DAILY:
        client = sf_resource.client(platform, sf_connection)
        queries_run, by_day = compute_metric_days(client, metric, selection, days)
        assert client.api_calls == len(queries_run) == len(metric.build_days(selection, days))  # one page each
        assert list(by_day) == list(days)
        expected = per_day(sf_resource.client(platform, sf_connection), metric, sf_connection, days)
        for day in days:
            assert keyed(by_day[day]) == keyed(expected[day]), (metric.name, day)
        non_empty += sum(1 for rows in expected.values() if any(r.value for r in rows))
    assert non_empty >= 100, "the org should have data on many of these days"


@pytest.fixture(scope="module")
def big_sandbox() -> Iterator[RunningSalesforceSandbox]:
    # 50,000 opportunities come with 10,000 cases over two years: case_volume grouped by status, priority
    # and creation day has more than 2,000 groups over those two years.
    running = make_sandbox(50_000)
    yield running
    running.stop()


def test_a_range_past_the_group_limit_is_halved_and_still_exact(platform, workspace, big_sandbox) -> None:
    resource = SalesforceResource(client_id=big_sandbox.app.oauth.client_id, sandbox_ca_path=big_sandbox.ca_pem_path)
    connection = connect(platform, big_sandbox, resource)
    metric = SALES_METRICS["case_volume"]
    days = Days.between(ORG_NOW.date() - timedelta(days=729), ORG_NOW.date())
    groups = big_sandbox.org.run_sql(
        "SELECT COUNT(DISTINCT Status || '|' || Priority || '|' || date(CreatedDate, 'unixepoch')) FROM \"Case\" "
        "WHERE IsDeleted = 0"
    )[0][0]
    assert groups > AGGREGATE_ROW_LIMIT  # really past the limit, on the org itself

    client = resource.client(platform, connection)
    before = len(big_sandbox.server.requests)
    queries_run, by_day = compute_metric_days(client, metric, Selection(connection.selection.objects), days)
    # The whole range overflowed once; its halves fit: three queries, one call each, no queryMore.
    assert [len(q.days or ()) for q in queries_run] == [730, 365, 365]
    assert client.api_calls == 3
    paths = [r.path for r in big_sandbox.server.requests[before:]]
    assert sum(1 for p in paths if p.endswith(("/query/", "/query"))) == 3
    assert not [p for p in paths if "/query/01g" in p], "queryMore was asked for an aggregate result"

    expected = per_day(resource.client(platform, connection), metric, connection, days)
    assert list(by_day) == list(days)
    for day in days:
        assert keyed(by_day[day]) == keyed(expected[day]), day
    assert sum(r.value for rows in by_day.values() for r in rows if r.measure == "total_count") > 5_000
