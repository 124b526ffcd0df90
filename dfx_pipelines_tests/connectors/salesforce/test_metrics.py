"""Reducers against independent computations over seeded random records.

For each pushed-down metric the test plays Salesforce: it reads the SELECT list and GROUP BY of the query
the builder produced, groups the random records itself (with SOQL's null rules: SUM over only nulls is
null, COUNT(field) skips nulls) and feeds those aggregate rows to the reducer. For streamed metrics the
records themselves are fed, once, through a generator. Expected values are computed separately with
pandas, straight from the records, in the way the metric is defined (not the way it is computed).
"""

from __future__ import annotations

import ast
import math
import random
import re
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dfx_pipelines.connectors.salesforce import metrics as metrics_module
from dfx_pipelines.connectors.salesforce.metrics import (
    SALES_METRICS,
    IntegerDistribution,
    metrics_table_markdown,
    reduce_campaign_responses,
    reduce_campaign_sourced_pipeline,
    reduce_case_milestone_sla,
    reduce_case_resolution_time,
    reduce_case_volume,
    reduce_event_activity_counts,
    reduce_lead_conversion,
    reduce_lead_time_to_convert,
    reduce_open_pipeline_by_stage,
    reduce_sales_cycle_length,
    reduce_task_activity_counts,
    reduce_win_rate,
)
from dfx_pipelines.connectors.salesforce.queries import AggregateAlias, Cadence, Strategy
from dfx_pipelines.platform.metric_rows import MetricRow

DAYS = [date(2024, 3, 1) + timedelta(days=offset) for offset in range(5)]
QUIET_DAY = date(2024, 3, 9)  # nothing happens on it
PERIODS = [*DAYS, QUIET_DAY]
UTC = UTC

FULL_SELECTION = {
    "Opportunity": {
        "StageName",
        "Probability",
        "ExpectedRevenue",
        "Amount",
        "IsClosed",
        "IsWon",
        "CloseDate",
        "CreatedDate",
        "CampaignId",
    },
    "Lead": {"IsConverted", "CreatedDate", "ConvertedDate"},
    "Case": {"Status", "Priority", "CreatedDate", "ClosedDate"},
    "CaseMilestone": {"IsCompleted", "IsViolated", "CompletionDate", "TargetDate", "MilestoneType.Name"},
    "CampaignMember": {"CampaignId", "HasResponded"},
    "Task": {"ActivityDate", "Type", "TaskSubtype"},
    "Event": {"ActivityDate", "Type"},
}


# --- Salesforce-shaped random data ----------------------------------------------------------------------


def sf_datetime(moment: datetime) -> str:
    """As the REST API writes a datetime: milliseconds and a +0000 offset."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def random_moment(rng: random.Random, first: date, last: date) -> datetime:
    span = (last - first).days + 1
    start = datetime(first.year, first.month, first.day, tzinfo=UTC)
    return start + timedelta(seconds=rng.randrange(span * 86400), milliseconds=rng.randrange(1000))


def make_opportunities(rng: random.Random, n: int = 420) -> list[dict]:
    stages = {"Prospecting": 10, "Qualification": 20, "Proposal/Price Quote": 75, "Negotiation|Review": 90}
    records = []
    for _ in range(n):
        closed = rng.random() < 0.6
        won = closed and rng.random() < 0.45
        if closed:
            stage, probability = ("Closed Won", 100) if won else ("Closed Lost", 0)
        else:
            stage = rng.choice(list(stages))
            # Probability is usually the stage default, sometimes overridden, rarely null.
            probability = rng.choice([stages[stage], stages[stage], rng.randrange(0, 101), None])
        amount = None if rng.random() < 0.15 else round(rng.uniform(0, 50_000), 2)
        close_date = rng.choice(DAYS)
        created = random_moment(rng, close_date - timedelta(days=120), close_date + timedelta(days=2))
        records.append(
            {
                "attributes": {"type": "Opportunity"},
                "StageName": stage,
                "Probability": probability,
                "Amount": amount,
                # Salesforce's own Amount × Probability / 100, kept to the currency's scale per record
                "ExpectedRevenue": None
                if amount is None or probability is None
                else round(amount * probability / 100, 2),
                "IsClosed": closed,
                "IsWon": won,
                "CloseDate": close_date.isoformat(),
                "CreatedDate": sf_datetime(created),
                "CampaignId": rng.choice([None, None, "701000000000001", "701000000000002", "701000000000003"]),
            }
        )
    return records


def make_leads(rng: random.Random, n: int = 360) -> list[dict]:
    records = []
    for _ in range(n):
        created = random_moment(rng, DAYS[0], DAYS[-1])
        converted = rng.random() < 0.3
        converted_on = created.date() + timedelta(days=rng.randrange(0, 60)) if converted else None
        records.append(
            {
                "IsConverted": converted,
                "CreatedDate": sf_datetime(created),
                "ConvertedDate": converted_on.isoformat() if converted_on else None,
            }
        )
    return records


def make_cases(rng: random.Random, n: int = 360) -> list[dict]:
    records = []
    for _ in range(n):
        created = random_moment(rng, DAYS[0] - timedelta(days=20), DAYS[-1])
        closed = created + timedelta(seconds=rng.randrange(60, 20 * 86400)) if rng.random() < 0.7 else None
        records.append(
            {
                "Status": rng.choice(["New", "Working", "Escalated", "Closed"]),
                "Priority": rng.choice(["Low", "Medium", "High", None]),
                "CreatedDate": sf_datetime(created),
                "ClosedDate": sf_datetime(closed) if closed else None,
            }
        )
    return records


def make_milestones(rng: random.Random, n: int = 360) -> list[dict]:
    now = datetime(2024, 3, 4, 12, tzinfo=UTC)  # some targets are still ahead: pending milestones exist
    records = []
    for _ in range(n):
        target = random_moment(rng, DAYS[0] - timedelta(days=2), DAYS[-1] + timedelta(days=1))
        completed = rng.random() < 0.65
        completion = target + timedelta(hours=rng.uniform(-48, 24)) if completed else None
        if completion and completion > now:
            completed, completion = False, None
        violated = completion > target if completed else target < now
        name = rng.choice(["First Response", "Resolution", "Escalation"])
        records.append(
            {
                "IsCompleted": completed,
                "IsViolated": violated,
                "CompletionDate": sf_datetime(completion) if completion else None,
                "TargetDate": sf_datetime(target),
                "MilestoneType": {"attributes": {"type": "MilestoneType"}, "Name": name},
            }
        )
    return records


def make_campaign_members(rng: random.Random, n: int = 300) -> list[dict]:
    return [
        {
            "CampaignId": rng.choice(["701000000000001", "701000000000002", "701000000000004"]),
            "HasResponded": rng.random() < 0.4,
        }
        for _ in range(n)
    ]


def make_activities(rng: random.Random, n: int = 300, subtypes: bool = True) -> list[dict]:
    records = []
    for _ in range(n):
        record = {
            "ActivityDate": rng.choice(DAYS).isoformat() if rng.random() < 0.9 else None,
            "Type": rng.choice(["Call", "Email", "Meeting", None]),
        }
        if subtypes:
            record["TaskSubtype"] = rng.choice(["Task", "Email", "Call"])
        records.append(record)
    return records


@pytest.fixture(scope="module")
def org():
    rng = random.Random(7)
    objects = {
        "Opportunity": make_opportunities(rng),
        "Lead": make_leads(rng),
        "Case": make_cases(rng),
        "CaseMilestone": make_milestones(rng),
        "CampaignMember": make_campaign_members(rng),
        "Task": make_activities(rng),
        "Event": make_activities(rng, subtypes=False),
    }
    for object_name, records in objects.items():
        for number, record in enumerate(records):
            record["Id"] = f"{object_name[:3]}{number:015d}"  # COUNT(Id) counts records with an Id
    return objects


# --- playing Salesforce's aggregate SOQL ----------------------------------------------------------------


def field_value(record: dict, path: str):
    value = record
    for part in path.split("."):
        value = None if value is None else value.get(part)
    return value


def salesforce_aggregate(soql: str, records: list[dict], where, seed: int = 0) -> list[dict]:
    """Aggregate rows as Salesforce would return them for this query's SELECT and GROUP BY; the WHERE is
    given as a Python predicate (the SOQL text of every WHERE is pinned in test_queries)."""
    match = re.fullmatch(r"SELECT (.+?) FROM \w+(?: WHERE .+?)?(?: GROUP BY (.+))?", soql)
    assert match, soql
    items = match.group(1).split(", ")
    group_by = match.group(2).split(", ") if match.group(2) else []
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in filter(where, records):
        groups[tuple(field_value(record, path) for path in group_by)].append(record)
    if not group_by:
        groups.setdefault((), [])  # an aggregate without GROUP BY answers one row, even over nothing
    rows = []
    for members in groups.values():
        row = {"attributes": {"type": "AggregateResult"}}
        for item in items:
            function = re.fullmatch(r"(COUNT|SUM)\(([\w.]+)\) (\w+)", item)
            if function:
                name, path, alias = function.groups()
                values = [field_value(member, path) for member in members]
                present = [value for value in values if value is not None]
                if name == "COUNT":
                    row[alias] = len(present)
                else:
                    row[alias] = sum(present) if present else None
            else:
                path, _, alias = item.partition(" ")
                row[alias or path] = field_value(members[0], path)
        rows.append(row)
    random.Random(seed).shuffle(rows)  # Salesforce promises no order
    return rows


def aggregate_rows_for(metric_name: str, org: dict, period: date | None, where) -> list[dict]:
    metric = SALES_METRICS[metric_name]
    query = metric.build(FULL_SELECTION, period)
    assert query.aggregate
    return salesforce_aggregate(query.soql, org[metric.object_name], where)


class OnePass:
    """An iterable that can be iterated once, as a REST record stream can."""

    def __init__(self, records):
        self._records = records
        self.used = False
        self.yielded = 0

    def __iter__(self):
        assert not self.used, "the reducer iterated its input twice"
        self.used = True
        for record in self._records:
            self.yielded += 1
            yield dict(record)


def as_map(rows: list[MetricRow]) -> dict:
    keys = [(row.measure, row.dimensions) for row in rows]
    assert len(keys) == len(set(keys)), "duplicate (measure, dimensions)"
    return {(row.measure, row.dimensions): row.value for row in rows}


def assert_rows(rows: list[MetricRow], expected: dict, metric: str, period, abs_tol: float = 1e-6):
    assert all(isinstance(row, MetricRow) and row.metric == metric and row.period == period for row in rows)
    assert all(row.value is None or math.isfinite(row.value) for row in rows), "NaN or inf in output"
    got = as_map(rows)
    assert set(got) == set(expected)
    for key, value in expected.items():
        if value is None:
            assert got[key] is None, key
        else:
            assert got[key] == pytest.approx(value, abs=abs_tol, rel=1e-9), key


def none_if_nan(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def dims(**values) -> tuple:
    return MetricRow.dims(**values)


def utc_day(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series, utc=True).dt.date


# --- pushed-down metrics --------------------------------------------------------------------------------


@pytest.mark.parametrize("pushdown", [True, False], ids=["sum_expected_revenue", "streamed"])
def test_open_pipeline_by_stage_matches_row_level_weighting(org, pushdown):
    frame = pd.DataFrame(org["Opportunity"])
    open_deals = frame[~frame["IsClosed"]].copy()
    open_deals["amount"] = open_deals["Amount"].astype(float).fillna(0.0)
    open_deals["weighted"] = open_deals["amount"] * open_deals["Probability"].astype(float).fillna(0.0) / 100
    expected = {}
    for stage, group in open_deals.groupby("StageName"):
        expected[("count", dims(stage=stage))] = len(group)
        expected[("amount", dims(stage=stage))] = group["amount"].sum()
        expected[("weighted_amount", dims(stage=stage))] = group["weighted"].sum()
    expected[("total_count", ())] = len(open_deals)
    expected[("total_amount", ())] = open_deals["amount"].sum()
    expected[("total_weighted_amount", ())] = open_deals["weighted"].sum()

    if pushdown:
        rows = aggregate_rows_for("open_pipeline_by_stage", org, None, lambda r: r["IsClosed"] is False)
        assert len(rows) == len(open_deals.groupby("StageName"))
        # ExpectedRevenue is rounded to the cent per record: at most half a cent each
        tolerance = 0.005 * len(open_deals)
    else:
        selection = {"Opportunity": FULL_SELECTION["Opportunity"] - {"ExpectedRevenue"}}
        query = SALES_METRICS["open_pipeline_by_stage"].build(selection, None)
        assert not query.aggregate
        rows = OnePass(
            {"StageName": r["StageName"], "Amount": r["Amount"], "Probability": r["Probability"]}
            for r in org["Opportunity"]
            if not r["IsClosed"]
        )
        tolerance = 1e-6
    assert_rows(reduce_open_pipeline_by_stage(rows), expected, "open_pipeline_by_stage", None, abs_tol=tolerance)


@pytest.mark.parametrize("day", PERIODS)
def test_win_rate_matches_definitions(org, day):
    frame = pd.DataFrame(org["Opportunity"])
    closed = frame[frame["IsClosed"] & (frame["CloseDate"] == day.isoformat())]
    won, lost = closed[closed["IsWon"]], closed[~closed["IsWon"]]
    won_amount, lost_amount = won["Amount"].astype(float).sum(), lost["Amount"].astype(float).sum()
    expected = {
        ("won_count", ()): len(won),
        ("lost_count", ()): len(lost),
        ("won_amount", ()): won_amount,
        ("lost_amount", ()): lost_amount,
        ("win_rate_by_count", ()): len(won) / len(closed) if len(closed) else None,
        ("win_rate_by_amount", ()): won_amount / (won_amount + lost_amount) if len(closed) else None,
        ("average_deal_size", ()): none_if_nan(won["Amount"].astype(float).mean()),
    }
    rows = aggregate_rows_for(
        "win_rate", org, day, lambda r: r["IsClosed"] is True and r["CloseDate"] == day.isoformat()
    )
    assert_rows(reduce_win_rate(rows, day), expected, "win_rate", day)


@pytest.mark.parametrize("day", PERIODS)
def test_lead_conversion_matches_definitions(org, day):
    frame = pd.DataFrame(org["Lead"])
    cohort = frame[utc_day(frame["CreatedDate"]) == day]
    expected = {
        ("lead_count", ()): len(cohort),
        ("converted_count", ()): int(cohort["IsConverted"].sum()),
        ("conversion_rate", ()): cohort["IsConverted"].mean() if len(cohort) else None,
    }
    rows = aggregate_rows_for(
        "lead_conversion", org, day, lambda r: datetime.fromisoformat(r["CreatedDate"]).date() == day
    )
    assert_rows(reduce_lead_conversion(rows, day), expected, "lead_conversion", day)


@pytest.mark.parametrize("day", PERIODS)
def test_case_volume_matches_definitions(org, day):
    frame = pd.DataFrame(org["Case"])
    created = frame[utc_day(frame["CreatedDate"]) == day]
    expected = {
        ("count", dims(status=status, priority=priority)): len(group)
        for (status, priority), group in created.fillna({"Priority": ""}).groupby(["Status", "Priority"])
    }
    expected[("total_count", ())] = len(created)
    rows = aggregate_rows_for("case_volume", org, day, lambda r: datetime.fromisoformat(r["CreatedDate"]).date() == day)
    assert_rows(reduce_case_volume(rows, day), expected, "case_volume", day)


def decided_on(record: dict, day: date) -> bool:
    moment = record["CompletionDate"] if record["IsCompleted"] else record["TargetDate"]
    return datetime.fromisoformat(moment).date() == day


@pytest.mark.parametrize("day", [*DAYS, DAYS[-1] + timedelta(days=1), QUIET_DAY])
def test_case_milestone_sla_matches_definitions(org, day):
    outcomes = defaultdict(Counter)
    for record in org["CaseMilestone"]:
        if not decided_on(record, day):
            continue
        if record["IsCompleted"] and not record["IsViolated"]:
            outcome = "met"
        elif record["IsViolated"]:
            outcome = "violated"
        else:
            outcome = "pending"
        outcomes[record["MilestoneType"]["Name"]][outcome] += 1
        outcomes[None][outcome] += 1
    expected = {}
    for name, counts in outcomes.items():
        prefix, key = ("total_", ()) if name is None else ("", dims(milestone_type=name))
        for outcome in ("met", "violated", "pending"):
            expected[(prefix + outcome, key)] = counts[outcome]
        decided = counts["met"] + counts["violated"]
        expected[(prefix + "compliance_rate", key)] = counts["met"] / decided if decided else None
    if None not in outcomes:
        expected.update({(f"total_{m}", ()): 0 for m in ("met", "violated", "pending")})
        expected[("total_compliance_rate", ())] = None
    rows = aggregate_rows_for("case_milestone_sla", org, day, lambda r: decided_on(r, day))
    assert_rows(reduce_case_milestone_sla(rows, day), expected, "case_milestone_sla", day)


def test_some_milestone_days_have_all_three_outcomes(org):
    # Guards the test data itself: the SLA test above would be weak without pending and violated cases.
    seen = Counter()
    for record in org["CaseMilestone"]:
        seen["violated" if record["IsViolated"] else "met" if record["IsCompleted"] else "pending"] += 1
    assert min(seen.values()) >= 20, seen


def test_campaign_influence_matches_definitions(org):
    responded = Counter(m["CampaignId"] for m in org["CampaignMember"] if m["HasResponded"])
    expected = {("responses", dims(campaign_id=c)): n for c, n in responded.items()}
    expected[("total_responses", ())] = sum(responded.values())
    rows = aggregate_rows_for("campaign_responses", org, None, lambda r: r["HasResponded"] is True)
    assert_rows(reduce_campaign_responses(rows), expected, "campaign_responses", None)

    frame = pd.DataFrame(org["Opportunity"])
    sourced = frame[frame["CampaignId"].notna()]
    expected = {}
    for campaign, group in sourced.groupby("CampaignId"):
        expected[("opportunity_count", dims(campaign_id=campaign))] = len(group)
        expected[("amount", dims(campaign_id=campaign))] = group["Amount"].astype(float).sum()
    expected[("total_opportunity_count", ())] = len(sourced)
    expected[("total_amount", ())] = sourced["Amount"].astype(float).sum()
    rows = aggregate_rows_for("campaign_sourced_pipeline", org, None, lambda r: r["CampaignId"] is not None)
    assert_rows(reduce_campaign_sourced_pipeline(rows), expected, "campaign_sourced_pipeline", None)


@pytest.mark.parametrize("day", PERIODS)
def test_activity_counts_match_definitions(org, day):
    tasks = pd.DataFrame(org["Task"]).fillna({"Type": ""})
    on_day = tasks[tasks["ActivityDate"] == day.isoformat()]
    expected = {
        ("count", dims(activity_type=t, activity_subtype=s)): len(g)
        for (t, s), g in on_day.groupby(["Type", "TaskSubtype"])
    }
    expected[("total_count", ())] = len(on_day)
    rows = aggregate_rows_for("task_activity_counts", org, day, lambda r: r["ActivityDate"] == day.isoformat())
    assert_rows(reduce_task_activity_counts(rows, day), expected, "task_activity_counts", day)

    events = [e for e in org["Event"] if e["ActivityDate"] == day.isoformat()]
    expected = {("count", dims(activity_type=t or "")): n for t, n in Counter(e["Type"] for e in events).items()}
    expected[("total_count", ())] = len(events)
    rows = aggregate_rows_for("event_activity_counts", org, day, lambda r: r["ActivityDate"] == day.isoformat())
    assert_rows(reduce_event_activity_counts(rows, day), expected, "event_activity_counts", day)


def test_activity_counts_without_breakdowns_give_only_the_total(org):
    day = DAYS[1]
    query = SALES_METRICS["task_activity_counts"].build({"Task": {"ActivityDate"}}, day)
    rows = salesforce_aggregate(query.soql, org["Task"], lambda r: r["ActivityDate"] == day.isoformat())
    expected_total = sum(1 for t in org["Task"] if t["ActivityDate"] == day.isoformat())
    assert as_map(reduce_task_activity_counts(rows, day)) == {("total_count", ()): expected_total}
    empty = salesforce_aggregate(query.soql, [], lambda r: True)
    assert as_map(reduce_task_activity_counts(empty, day)) == {("total_count", ()): 0}


# --- streamed metrics -----------------------------------------------------------------------------------


def distribution_expectation(values: pd.Series, unit: str) -> dict:
    return {
        ("count", ()): len(values),
        (f"mean_{unit}", ()): none_if_nan(values.mean()) if len(values) else None,
        (f"median_{unit}", ()): none_if_nan(values.median()) if len(values) else None,
        (f"p90_{unit}", ()): none_if_nan(values.quantile(0.9)) if len(values) else None,
    }


@pytest.mark.parametrize("day", PERIODS)
def test_sales_cycle_length_matches_pandas(org, day):
    frame = pd.DataFrame(org["Opportunity"])
    won = frame[frame["IsWon"] & (frame["CloseDate"] == day.isoformat())]
    created_day = pd.to_datetime(won["CreatedDate"], utc=True).dt.tz_localize(None).dt.normalize()
    days = (pd.to_datetime(won["CloseDate"]) - created_day).dt.days.astype(float)
    expected = distribution_expectation(days, "days")

    stream = OnePass(
        {"CreatedDate": r["CreatedDate"], "CloseDate": r["CloseDate"]}
        for r in org["Opportunity"]
        if r["IsWon"] and r["CloseDate"] == day.isoformat()
    )
    rows = reduce_sales_cycle_length(stream, day)
    assert stream.used and stream.yielded == len(won)
    assert_rows(rows, expected, "sales_cycle_length", day)


@pytest.mark.parametrize("day", PERIODS)
def test_lead_time_to_convert_matches_pandas(org, day):
    frame = pd.DataFrame(org["Lead"])
    cohort = frame[frame["IsConverted"] & (utc_day(frame["CreatedDate"]) == day)]
    days = pd.Series(
        [(date.fromisoformat(c) - d).days for c, d in zip(cohort["ConvertedDate"], utc_day(cohort["CreatedDate"]))],
        dtype=float,
    )
    expected = distribution_expectation(days, "days")
    stream = OnePass(
        r for r in org["Lead"] if r["IsConverted"] and datetime.fromisoformat(r["CreatedDate"]).date() == day
    )
    assert_rows(reduce_lead_time_to_convert(stream, day), expected, "lead_time_to_convert", day)


@pytest.mark.parametrize("day", PERIODS)
def test_case_resolution_time_matches_pandas_within_a_minute(org, day):
    frame = pd.DataFrame(org["Case"]).dropna(subset=["ClosedDate"])
    closed = frame[utc_day(frame["ClosedDate"]) == day]
    hours = pd.to_datetime(closed["ClosedDate"], utc=True) - pd.to_datetime(closed["CreatedDate"], utc=True)
    hours = hours.dt.total_seconds() / 3600
    expected = distribution_expectation(hours, "hours")
    stream = OnePass(
        r for r in org["Case"] if r["ClosedDate"] and datetime.fromisoformat(r["ClosedDate"]).date() == day
    )
    rows = reduce_case_resolution_time(stream, day)
    # quantiles come from whole-minute buckets: within half a minute of exact
    assert_rows(rows, expected, "case_resolution_time", day, abs_tol=0.5 / 60 + 1e-9)
    assert as_map(rows)[("mean_hours", ())] == pytest.approx(expected[("mean_hours", ())], rel=1e-12)


def test_case_resolution_time_is_exact_for_whole_minutes():
    rng = random.Random(3)
    start = datetime(2024, 3, 1, 8, tzinfo=UTC)
    minutes = [rng.randrange(1, 5000) for _ in range(301)]
    records = [
        {"CreatedDate": sf_datetime(start - timedelta(minutes=m)), "ClosedDate": sf_datetime(start)} for m in minutes
    ]
    got = as_map(reduce_case_resolution_time(iter(records), start.date()))
    hours = np.array(minutes) / 60
    assert got[("median_hours", ())] == pytest.approx(np.median(hours), abs=1e-12)
    assert got[("p90_hours", ())] == pytest.approx(np.percentile(hours, 90), abs=1e-12)


def test_durations_use_the_utc_date_of_a_datetime():
    # 23:30 at UTC-2 on the 30th is 01:30 UTC on the 31st: three days to a close on Feb 3rd.
    records = [{"CreatedDate": "2024-01-30T23:30:00.000-0200", "CloseDate": "2024-02-03"}]
    got = as_map(reduce_sales_cycle_length(records, date(2024, 2, 3)))
    assert got[("median_days", ())] == 3
    # and native values (e.g. from a sandbox) work the same way
    records = [{"CreatedDate": datetime(2024, 1, 31, 1, 30, tzinfo=UTC), "CloseDate": date(2024, 2, 3)}]
    assert as_map(reduce_sales_cycle_length(records, date(2024, 2, 3)))[("mean_days", ())] == 3


def test_backdated_close_gives_a_negative_cycle_that_is_kept():
    records = [
        {"CreatedDate": "2024-03-10T09:00:00.000+0000", "CloseDate": "2024-03-05"},
        {"CreatedDate": "2024-03-01T09:00:00.000+0000", "CloseDate": "2024-03-05"},
    ]
    got = as_map(reduce_sales_cycle_length(records, date(2024, 3, 5)))
    assert got[("count", ())] == 2 and got[("mean_days", ())] == -0.5 and got[("median_days", ())] == -0.5


def test_streamed_reducers_keep_memory_to_distinct_durations():
    base = datetime(2023, 1, 1, tzinfo=UTC)
    n = 20_000

    def stream():
        for i in range(n):
            yield {"CreatedDate": sf_datetime(base + timedelta(days=i % 90, hours=i % 24)), "CloseDate": "2023-06-30"}

    got = as_map(reduce_sales_cycle_length(stream(), date(2023, 6, 30)))
    assert got[("count", ())] == n
    distribution = IntegerDistribution()
    for i in range(n):
        distribution.add(i % 90)
    assert distribution.count == n and distribution.distinct == 90


# --- quantiles ------------------------------------------------------------------------------------------


def test_integer_distribution_quantiles_equal_numpy_linear():
    rng = random.Random(11)
    for size in (1, 2, 3, 10, 101, 1000):
        values = [rng.randint(-20, 200) for _ in range(size)]
        distribution = IntegerDistribution()
        for value in values:
            distribution.add(value)
        for q in (0.0, 0.1, 0.25, 0.5, 0.85, 0.9, 0.95, 1.0):
            assert distribution.quantile(q) == pytest.approx(np.quantile(values, q), abs=1e-12), (size, q)


def test_integer_distribution_edges():
    distribution = IntegerDistribution()
    assert distribution.quantile(0.5) is None
    with pytest.raises(ValueError):
        distribution.quantile(1.5)
    distribution.add(4)
    assert distribution.quantile(0.0) == distribution.quantile(0.9) == 4


# --- edge cases -----------------------------------------------------------------------------------------

EMPTY_EXPECTATIONS = {
    "open_pipeline_by_stage": {"total_count": 0, "total_amount": 0, "total_weighted_amount": 0},
    "win_rate": {
        "won_count": 0, "lost_count": 0, "won_amount": 0, "lost_amount": 0,
        "win_rate_by_count": None, "win_rate_by_amount": None, "average_deal_size": None,
    },
    "sales_cycle_length": {"count": 0, "mean_days": None, "median_days": None, "p90_days": None},
    "lead_conversion": {"lead_count": 0, "converted_count": 0, "conversion_rate": None},
    "lead_time_to_convert": {"count": 0, "mean_days": None, "median_days": None, "p90_days": None},
    "case_volume": {"total_count": 0},
    "case_resolution_time": {"count": 0, "mean_hours": None, "median_hours": None, "p90_hours": None},
    "case_milestone_sla": {"total_met": 0, "total_violated": 0, "total_pending": 0, "total_compliance_rate": None},
    "campaign_responses": {"total_responses": 0},
    "campaign_sourced_pipeline": {"total_opportunity_count": 0, "total_amount": 0},
    "task_activity_counts": {"total_count": 0},
    "event_activity_counts": {"total_count": 0},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EMPTY_EXPECTATIONS))
def test_empty_input_gives_zero_totals_and_undefined_ratios(name):
    metric = SALES_METRICS[name]
    period = DAYS[0] if metric.cadence is Cadence.DAILY else None
    rows = metric.reduce(iter(()), period)
    assert_rows(rows, {(m, ()): v for m, v in EMPTY_EXPECTATIONS[name].items()}, name, period)


def test_all_null_amounts_count_but_add_nothing():
    day = DAYS[0]
    won = {
        "IsWon": True,
        AggregateAlias.RECORD_COUNT: 3,
        AggregateAlias.AMOUNT_SUM: None,
        AggregateAlias.AMOUNT_COUNT: 0,
    }
    lost = {
        "IsWon": False,
        AggregateAlias.RECORD_COUNT: 2,
        AggregateAlias.AMOUNT_SUM: None,
        AggregateAlias.AMOUNT_COUNT: 0,
    }
    got = as_map(reduce_win_rate([won, lost], day))
    assert got[("won_count", ())] == 3 and got[("lost_count", ())] == 2
    assert got[("won_amount", ())] == 0 and got[("lost_amount", ())] == 0
    assert got[("win_rate_by_count", ())] == pytest.approx(0.6)
    assert got[("win_rate_by_amount", ())] is None  # 0 / 0
    assert got[("average_deal_size", ())] is None  # no won deal has an Amount

    aggregated = [
        {"StageName": "Proposal", AggregateAlias.RECORD_COUNT: 4, AggregateAlias.AMOUNT_SUM: None,
         AggregateAlias.EXPECTED_REVENUE_SUM: None}
    ]  # fmt: skip
    streamed = [{"StageName": "Proposal", "Amount": None, "Probability": 50.0}] * 4
    for pipeline in (aggregated, streamed):
        got = as_map(reduce_open_pipeline_by_stage(pipeline))
        assert got[("count", dims(stage="Proposal"))] == 4 and got[("total_count", ())] == 4
        assert got[("amount", dims(stage="Proposal"))] == 0 and got[("weighted_amount", dims(stage="Proposal"))] == 0


def test_average_deal_size_is_over_won_deals_with_an_amount_only():
    won = {
        "IsWon": True,
        AggregateAlias.RECORD_COUNT: 4,
        AggregateAlias.AMOUNT_SUM: 300.0,
        AggregateAlias.AMOUNT_COUNT: 2,
    }
    got = as_map(reduce_win_rate([won], DAYS[0]))
    assert got[("average_deal_size", ())] == 150.0  # not 300 / 4
    assert got[("win_rate_by_count", ())] == 1.0 and got[("win_rate_by_amount", ())] == 1.0


def test_only_lost_deals_and_zero_denominators():
    lost = {
        "IsWon": False,
        AggregateAlias.RECORD_COUNT: 2,
        AggregateAlias.AMOUNT_SUM: 10.0,
        AggregateAlias.AMOUNT_COUNT: 2,
    }
    got = as_map(reduce_win_rate([lost], DAYS[0]))
    assert got[("win_rate_by_count", ())] == 0.0 and got[("win_rate_by_amount", ())] == 0.0
    assert got[("average_deal_size", ())] is None

    pending_only = [{"IsCompleted": False, "IsViolated": False, AggregateAlias.RECORD_COUNT: 5}]
    got = as_map(reduce_case_milestone_sla(pending_only, DAYS[0]))
    assert got[("total_pending", ())] == 5 and got[("total_compliance_rate", ())] is None

    no_leads = [{"IsConverted": False, AggregateAlias.RECORD_COUNT: 0}]
    assert as_map(reduce_lead_conversion(no_leads, DAYS[0]))[("conversion_rate", ())] is None


def test_null_probability_weighs_nothing_and_null_stage_is_an_empty_dimension():
    records = [
        {"StageName": None, "Probability": None, "Amount": 100.0},
        {"StageName": None, "Probability": 25.0, "Amount": 100.0},
    ]
    got = as_map(reduce_open_pipeline_by_stage(iter(records)))
    assert got[("weighted_amount", dims(stage=""))] == 25.0 and got[("amount", dims(stage=""))] == 200.0
    assert got[("count", dims(stage=""))] == 2


def test_rows_of_the_same_group_add_up(org):
    # Salesforce sends each group once, but a runner that splits a query (to stay under the 2,000-group
    # limit of aggregate results) hands a reducer the same group more than once: it must add, not replace.
    day = DAYS[2]
    rows = aggregate_rows_for("case_volume", org, day, lambda r: datetime.fromisoformat(r["CreatedDate"]).date() == day)
    once, twice = as_map(reduce_case_volume(rows, day)), as_map(reduce_case_volume(rows + rows, day))
    assert twice == {key: 2 * value for key, value in once.items()}
    pipeline = aggregate_rows_for("campaign_sourced_pipeline", org, None, lambda r: r["CampaignId"] is not None)
    once, twice = (
        as_map(reduce_campaign_sourced_pipeline(pipeline)),
        as_map(reduce_campaign_sourced_pipeline(pipeline * 2)),
    )
    assert twice == pytest.approx({key: 2 * value for key, value in once.items()})
    responses = [
        {"CampaignId": "701A", AggregateAlias.RECORD_COUNT: 2},
        {"CampaignId": "701A", AggregateAlias.RECORD_COUNT: 3},
    ]
    assert as_map(reduce_campaign_responses(responses))[("responses", dims(campaign_id="701A"))] == 5
    tasks = [{"Type": "Call", AggregateAlias.RECORD_COUNT: 2}, {"Type": "Call", AggregateAlias.RECORD_COUNT: 4}]
    assert as_map(reduce_task_activity_counts(tasks, day))[("count", dims(activity_type="Call"))] == 6


def test_milestones_grouped_by_type_id_use_the_id_as_the_dimension():
    rows = [
        {"IsCompleted": True, "IsViolated": False, "MilestoneTypeId": "557000000000001", AggregateAlias.RECORD_COUNT: 2}
    ]
    got = as_map(reduce_case_milestone_sla(rows, DAYS[0]))
    assert got[("met", dims(milestone_type="557000000000001"))] == 2 and got[("total_met", ())] == 2


# --- registry -------------------------------------------------------------------------------------------


def test_registry_entries_are_consistent():
    assert len(SALES_METRICS) == 12
    families = Counter(metric.family for metric in SALES_METRICS.values())
    assert families["campaign_influence"] == 2 and families["activity_counts"] == 2
    for name, metric in SALES_METRICS.items():
        assert metric.name == name == metric.fields.metric
        assert (metric.cadence is Cadence.SNAPSHOT) == (metric.period_field is None)
        query = metric.build(FULL_SELECTION, DAYS[0] if metric.cadence is Cadence.DAILY else None)
        assert query.aggregate == (metric.strategy is not Strategy.STREAMED)  # adaptive: pushdown when allowed
        if metric.period_field:
            assert any(part in query.soql for part in metric.period_field.split("/"))
        assert metric.reduce.__name__ == f"reduce_{name}"


def test_pure_modules_import_no_framework_client_or_io_library():
    forbidden = {"dagster", "simple_salesforce", "requests", "urllib", "http", "socket", "pandas", "sqlalchemy", "os"}
    package = Path(metrics_module.__file__).parent
    for module in ("metrics.py", "queries.py", "selection.py"):
        tree = ast.parse((package / module).read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{module} imports {name}"


# --- markdown -------------------------------------------------------------------------------------------


def test_metrics_table_markdown_renders_rows():
    rows = [
        MetricRow("win_rate", "won_count", 1234, date(2024, 1, 31)),
        MetricRow("win_rate", "win_rate_by_amount", 0.123456, date(2024, 1, 31)),
        MetricRow("win_rate", "average_deal_size", None, date(2024, 1, 31)),
        MetricRow("open_pipeline_by_stage", "amount", 2500.0, None, MetricRow.dims(stage="Negotiation|Review")),
        MetricRow("case_volume", "count", 3, date(2024, 1, 31), MetricRow.dims(status="New\nline", priority="High")),
    ]
    assert metrics_table_markdown(rows) == "\n".join(
        [
            "| metric | measure | period | dimensions | value |",
            "|---|---|---|---|---:|",
            "| win_rate | won_count | 2024-01-31 |  | 1,234 |",
            "| win_rate | win_rate_by_amount | 2024-01-31 |  | 0.1235 |",
            "| win_rate | average_deal_size | 2024-01-31 |  | – |",
            "| open_pipeline_by_stage | amount | snapshot | stage=Negotiation\\|Review | 2,500 |",
            "| case_volume | count | 2024-01-31 | priority=High, status=New line | 3 |",
        ]
    )


def test_metrics_table_markdown_empty_and_truncated():
    assert metrics_table_markdown([]) == "_no metric rows_"
    rows = [MetricRow("m", f"x{i}", i) for i in range(5)]
    table = metrics_table_markdown(rows, max_rows=2)
    assert table.count("\n| m |") == 2 and table.endswith("_… 3 more rows_")
