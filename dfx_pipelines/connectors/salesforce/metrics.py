"""Reducers for the Salesforce sales metrics, and the registry the Dagster assets are generated from.

A reducer turns what one query of `queries.py` returns into `MetricRow`s: either the few aggregate rows of
a pushed-down query (dicts keyed by the aliases in `queries.AggregateAlias`), or a stream of plain records
that it consumes exactly once, in bounded memory, keeping nothing but running totals. Raw records are never
stored. Pure functions: this module imports neither Dagster nor any client library, and does no I/O.

Conventions every reducer follows (definitions as in Fivetran's dbt_salesforce):
- A null Amount counts in every count but adds 0 to every sum (SUM() in SOQL skips nulls the same way);
  a mean of amounts is over non-null Amounts only.
- A ratio over nothing (0 denominator) is None, never NaN or an exception.
- Measures named `total_*` carry no dimensions and are always emitted, so an empty day reads as zero
  rather than as missing; dimensioned measures exist only for the groups that occur.
- Medians and p90s interpolate linearly between order statistics (like numpy/pandas' default), over
  whole-unit buckets held in a Counter: whole days for the sales and lead cycles (exact: those durations
  are whole days), whole minutes for case resolution (within half a minute of exact), so memory grows with
  the number of distinct durations, not with the number of records. Means use the exact values.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from types import MappingProxyType
from typing import Any

from dfx_pipelines.connectors.salesforce import queries
from dfx_pipelines.connectors.salesforce.queries import (
    AggregateAlias,
    Cadence,
    Days,
    SelectionLike,
    SoqlQuery,
    Strategy,
    result_key,
)
from dfx_pipelines.connectors.salesforce.selection import MetricFields, Selection
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow

Record = Mapping[str, Any]


# --- small helpers --------------------------------------------------------------------------------------


def _ratio(numerator: float, denominator: float) -> float | None:
    return None if denominator == 0 else numerator / denominator


def _amount(value: object) -> float:
    """An aggregate or record amount; null (no Amount, or SUM over only nulls) adds nothing."""
    return 0.0 if value is None else float(value)  # type: ignore[arg-type]


def _count(value: object) -> int:
    return 0 if value is None else int(value)  # type: ignore[call-overload]


def _utc_datetime(value: object) -> datetime | None:
    """A Salesforce datetime (`2024-01-31T10:15:00.000+0000`) in UTC. Salesforce always sends an offset;
    a naive value is taken as UTC."""
    if value is None:
        return None
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _date(value: object) -> date | None:
    """A Salesforce date (`2024-01-31`)."""
    if value is None:
        return None
    if isinstance(value, datetime):
        raise TypeError(f"expected a date, got a datetime: {value!r}")
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def record_day(field_name: str, value: object) -> date | None:
    """The UTC day a period field's value places a record on (None for a null)."""
    if value is None or value == "":
        return None
    if field_name in queries.DATE_PERIOD_FIELDS:
        return _date(value)
    moment = _utc_datetime(value)
    return None if moment is None else moment.date()


def record_buckets(
    records: Iterable[Record], period_fields: Sequence[str], first: date, last: date
) -> dict[date, set[str]]:
    """Each day of [first, last] and the ids of the records a period field places on it (every day of
    the range is present, empty or not: an empty bucket still replaces a stale one)."""
    buckets: dict[date, set[str]] = {}
    day = first
    while day <= last:
        buckets[day] = set()
        day = date.fromordinal(day.toordinal() + 1)
    for record in records:
        for name in period_fields:
            on = record_day(name, record.get(name))
            if on is not None and on in buckets:
                buckets[on].add(str(record["Id"]))
    return buckets


def record_days_by_id(records: Iterable[Record], period_fields: Sequence[str]) -> dict[str, frozenset[date]]:
    """Each record's id and the days its period fields place it on (any day; none for a record whose
    period fields are all empty): the changed records an incremental record-bucket refresh reads."""
    found: dict[str, frozenset[date]] = {}
    for record in records:
        days = {record_day(name, record.get(name)) for name in period_fields}
        days.discard(None)
        found[str(record["Id"])] = frozenset(day for day in days if day is not None)
    return found


def _days_between(start: object, end: object) -> int | None:
    """Whole days from a datetime (taken as its UTC date) to a date: CloseDate − date(CreatedDate in UTC).
    Negative when the end date was backdated before the record existed; kept, as dbt_salesforce does."""
    start_at, end_on = _utc_datetime(start), _date(end)
    if start_at is None or end_on is None:
        return None
    return (end_on - start_at.date()).days


class IntegerDistribution:
    """A multiset of whole numbers as a Counter: O(distinct values) memory for any number of values,
    with linear-interpolation quantiles that are exact for the values added."""

    __slots__ = ("_counts", "count")

    def __init__(self) -> None:
        self._counts: Counter[int] = Counter()
        self.count = 0

    def add(self, value: int) -> None:
        self._counts[value] += 1
        self.count += 1

    @property
    def distinct(self) -> int:
        return len(self._counts)

    def quantile(self, q: float) -> float | None:
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile must be within [0, 1], not {q}")
        if self.count == 0:
            return None
        position = (self.count - 1) * q
        lower_rank = int(position)
        upper_rank = min(lower_rank + 1, self.count - 1)
        lower = upper = None
        seen = 0
        for value in sorted(self._counts):
            seen += self._counts[value]
            if lower is None and seen > lower_rank:
                lower = value
            if seen > upper_rank:
                upper = value
                break
        assert lower is not None and upper is not None
        return lower + (position - lower_rank) * (upper - lower)


def _distribution_rows(
    metric: str, unit: str, distribution: IntegerDistribution, total: float, scale: float, period: date | None
) -> list[MetricRow]:
    """count, mean, median, p90 of a distribution held in buckets of 1/scale `unit`."""
    median, p90 = distribution.quantile(0.5), distribution.quantile(0.9)
    return [
        MetricRow(metric, "count", distribution.count, period),
        MetricRow(metric, f"mean_{unit}", _ratio(total, distribution.count), period),
        MetricRow(metric, f"median_{unit}", None if median is None else median / scale, period),
        MetricRow(metric, f"p90_{unit}", None if p90 is None else p90 / scale, period),
    ]


# --- pushed-down metrics: aggregate rows in -------------------------------------------------------------

_A = AggregateAlias


def reduce_open_pipeline_by_stage(rows: Iterable[Record], period: None = None) -> list[MetricRow]:
    """Per StageName of open opportunities: count, amount, and weighted_amount = Σ Amount × Probability/100;
    plus the same as total_*. Takes either shape open_pipeline_by_stage_query produces: aggregate rows per
    stage (weighted = SUM(ExpectedRevenue), which Salesforce rounds per record to the currency's scale) or
    streamed records (weighted exactly here; a null Probability weighs 0)."""
    metric = "open_pipeline_by_stage"
    by_stage: dict[object, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    for row in rows:
        stage = by_stage[row.get("StageName")]
        if _A.RECORD_COUNT in row:
            stage[0] += _count(row.get(_A.RECORD_COUNT))
            stage[1] += _amount(row.get(_A.AMOUNT_SUM))
            stage[2] += _amount(row.get(_A.EXPECTED_REVENUE_SUM))
        else:
            amount = _amount(row.get("Amount"))
            stage[0] += 1
            stage[1] += amount
            stage[2] += amount * _amount(row.get("Probability")) / 100.0
    out: list[MetricRow] = []
    totals = [0, 0.0, 0.0]
    for stage_name, (count, amount, weighted) in sorted(by_stage.items(), key=lambda item: str(item[0] or "")):
        dims = MetricRow.dims(stage=stage_name)
        out += [
            MetricRow(metric, "count", count, period, dims),
            MetricRow(metric, "amount", amount, period, dims),
            MetricRow(metric, "weighted_amount", weighted, period, dims),
        ]
        totals = [totals[0] + count, totals[1] + amount, totals[2] + weighted]
    out += [
        MetricRow(metric, "total_count", totals[0], period),
        MetricRow(metric, "total_amount", totals[1], period),
        MetricRow(metric, "total_weighted_amount", totals[2], period),
    ]
    return out


def reduce_win_rate(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Closed deals of the day grouped by IsWon: won/lost counts and amounts, win_rate_by_count,
    win_rate_by_amount = won amount / (won + lost amount), average_deal_size = mean non-null won Amount."""
    metric = "win_rate"
    won_count = lost_count = won_with_amount = 0
    won_amount = lost_amount = 0.0
    for row in rows:
        count, amount = _count(row.get(_A.RECORD_COUNT)), _amount(row.get(_A.AMOUNT_SUM))
        if row.get("IsWon") is True:
            won_count += count
            won_amount += amount
            won_with_amount += _count(row.get(_A.AMOUNT_COUNT))
        else:
            lost_count += count
            lost_amount += amount
    return [
        MetricRow(metric, "won_count", won_count, period),
        MetricRow(metric, "lost_count", lost_count, period),
        MetricRow(metric, "won_amount", won_amount, period),
        MetricRow(metric, "lost_amount", lost_amount, period),
        MetricRow(metric, "win_rate_by_count", _ratio(won_count, won_count + lost_count), period),
        MetricRow(metric, "win_rate_by_amount", _ratio(won_amount, won_amount + lost_amount), period),
        MetricRow(metric, "average_deal_size", _ratio(won_amount, won_with_amount), period),
    ]


def reduce_lead_conversion(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Leads created that day: lead_count, converted_count, conversion_rate = converted / all."""
    metric = "lead_conversion"
    leads = converted = 0
    for row in rows:
        count = _count(row.get(_A.RECORD_COUNT))
        leads += count
        if row.get("IsConverted") is True:
            converted += count
    return [
        MetricRow(metric, "lead_count", leads, period),
        MetricRow(metric, "converted_count", converted, period),
        MetricRow(metric, "conversion_rate", _ratio(converted, leads), period),
    ]


def reduce_case_volume(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Cases created that day: count per (status, priority), and total_count."""
    metric = "case_volume"
    counts: Counter[tuple[tuple[str, str], ...]] = Counter()
    for row in rows:
        counts[MetricRow.dims(status=row.get("Status"), priority=row.get("Priority"))] += _count(
            row.get(_A.RECORD_COUNT)
        )
    out = [MetricRow(metric, "count", count, period, dims) for dims, count in sorted(counts.items())]
    out.append(MetricRow(metric, "total_count", sum(counts.values()), period))
    return out


_MILESTONE_TYPE_KEYS = tuple(result_key(path) for path in ("MilestoneType.Name", "MilestoneTypeId"))


def reduce_case_milestone_sla(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Milestones decided that day: met (completed in time), violated (completed late, or open past its
    target), pending (open, not yet due), compliance_rate = met / (met + violated); per milestone_type when
    the query grouped by one, and always as total_*."""
    metric = "case_milestone_sla"
    outcomes: dict[tuple[tuple[str, str], ...], Counter[str]] = defaultdict(Counter)
    totals: Counter[str] = Counter()
    for row in rows:
        if row.get("IsViolated") is True:
            outcome = "violated"
        elif row.get("IsCompleted") is True:
            outcome = "met"
        else:
            outcome = "pending"
        count = _count(row.get(_A.RECORD_COUNT))
        totals[outcome] += count
        type_key = next((key for key in _MILESTONE_TYPE_KEYS if key in row), None)
        if type_key is not None:
            outcomes[MetricRow.dims(milestone_type=row[type_key])][outcome] += count

    def measures(counts: Counter[str], prefix: str, dims: tuple[tuple[str, str], ...]) -> list[MetricRow]:
        rate = _ratio(counts["met"], counts["met"] + counts["violated"])
        return [
            *(
                MetricRow(metric, f"{prefix}{outcome}", counts[outcome], period, dims)
                for outcome in ("met", "violated", "pending")
            ),
            MetricRow(metric, f"{prefix}compliance_rate", rate, period, dims),
        ]

    out: list[MetricRow] = []
    for dims, counts in sorted(outcomes.items()):
        out += measures(counts, "", dims)
    return out + measures(totals, "total_", ())


def reduce_campaign_responses(rows: Iterable[Record], period: None = None) -> list[MetricRow]:
    """Responded members per campaign_id, and total_responses."""
    metric = "campaign_responses"
    counts: Counter[str] = Counter()
    for row in rows:
        counts[row.get("CampaignId") or ""] += _count(row.get(_A.RECORD_COUNT))
    out = [
        MetricRow(metric, "responses", count, period, MetricRow.dims(campaign_id=campaign))
        for campaign, count in sorted(counts.items())
    ]
    out.append(MetricRow(metric, "total_responses", sum(counts.values()), period))
    return out


def reduce_campaign_sourced_pipeline(rows: Iterable[Record], period: None = None) -> list[MetricRow]:
    """Opportunities per primary campaign_id: opportunity_count and amount; and their total_*."""
    metric = "campaign_sourced_pipeline"
    per_campaign: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for row in rows:
        campaign = per_campaign[row.get("CampaignId") or ""]
        campaign[0] += _count(row.get(_A.RECORD_COUNT))
        campaign[1] += _amount(row.get(_A.AMOUNT_SUM))
    out: list[MetricRow] = []
    for campaign_id, (count, amount) in sorted(per_campaign.items()):
        dims = MetricRow.dims(campaign_id=campaign_id)
        out += [
            MetricRow(metric, "opportunity_count", count, period, dims),
            MetricRow(metric, "amount", amount, period, dims),
        ]
    out += [
        MetricRow(metric, "total_opportunity_count", sum(c for c, _ in per_campaign.values()), period),
        MetricRow(metric, "total_amount", sum((a for _, a in per_campaign.values()), 0.0), period),
    ]
    return out


def _reduce_activity_counts(spec: MetricFields, rows: Iterable[Record], period: date) -> list[MetricRow]:
    # The query groups by whichever optional fields were selected; a row carries exactly those keys.
    counts: Counter[tuple[tuple[str, str], ...]] = Counter()
    total = 0
    for row in rows:
        count = _count(row.get(_A.RECORD_COUNT))
        total += count
        dims = {}
        for dimension in spec.optional:
            key = next((result_key(c) for c in dimension.candidates if result_key(c) in row), None)
            if key is not None:
                dims[dimension.dimension] = row[key]
        if dims:
            counts[MetricRow.dims(**dims)] += count
    out = [MetricRow(spec.metric, "count", count, period, dims) for dims, count in sorted(counts.items())]
    out.append(MetricRow(spec.metric, "total_count", total, period))
    return out


def reduce_task_activity_counts(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Tasks due that day: count per activity_type/activity_subtype (when selected), and total_count."""
    return _reduce_activity_counts(queries.TASK_ACTIVITY_COUNTS_FIELDS, rows, period)


def reduce_event_activity_counts(rows: Iterable[Record], period: date) -> list[MetricRow]:
    """Events that day: count per activity_type (when selected), and total_count."""
    return _reduce_activity_counts(queries.EVENT_ACTIVITY_COUNTS_FIELDS, rows, period)


# --- streamed metrics: records in, consumed once --------------------------------------------------------


def _day_durations(records: Iterable[Record], start_field: str, end_field: str) -> tuple[IntegerDistribution, int]:
    distribution, total = IntegerDistribution(), 0
    for record in records:
        days = _days_between(record.get(start_field), record.get(end_field))
        if days is not None:  # cannot happen under the query's filters; skipped rather than guessed
            distribution.add(days)
            total += days
    return distribution, total


def reduce_sales_cycle_length(records: Iterable[Record], period: date) -> list[MetricRow]:
    """Won deals closed that day: count, mean/median/p90 of CloseDate − date(CreatedDate in UTC), in days."""
    distribution, total = _day_durations(records, "CreatedDate", "CloseDate")
    return _distribution_rows("sales_cycle_length", "days", distribution, total, 1.0, period)


def reduce_lead_time_to_convert(records: Iterable[Record], period: date) -> list[MetricRow]:
    """Converted leads created that day: count, mean/median/p90 of ConvertedDate − date(CreatedDate in UTC)."""
    distribution, total = _day_durations(records, "CreatedDate", "ConvertedDate")
    return _distribution_rows("lead_time_to_convert", "days", distribution, total, 1.0, period)


def reduce_case_resolution_time(records: Iterable[Record], period: date) -> list[MetricRow]:
    """Cases closed that day: count, mean/median/p90 of ClosedDate − CreatedDate in hours (the mean exact,
    the quantiles over whole-minute buckets)."""
    distribution, total_hours = IntegerDistribution(), 0.0
    for record in records:
        created, closed = _utc_datetime(record.get("CreatedDate")), _utc_datetime(record.get("ClosedDate"))
        if created is None or closed is None:
            continue
        seconds = (closed - created).total_seconds()
        distribution.add(round(seconds / 60))
        total_hours += seconds / 3600
    return _distribution_rows("case_resolution_time", "hours", distribution, total_hours, 60.0, period)


# --- ranges: one query's rows, split per day ------------------------------------------------------------


def _row_day(query: SoqlQuery, row: Record) -> date | None:
    assert query.day_key is not None and query.day_field is not None
    value = row.get(query.day_key)
    # An aggregate row's day is a date (a date field's value, or DAY_ONLY's); a streamed record's is
    # its period field's value, placed on its UTC day.
    return _date(value) if query.aggregate else record_day(query.day_field, value)


def reduce_days(
    reduce: Reducer, results: Iterable[tuple[SoqlQuery, Iterable[Record]]], days: Days
) -> Iterator[tuple[date, list[MetricRow]]]:
    """(day, rows) for EVERY day of `days`, in order, from the results of a metric's range queries, each
    day reduced by the metric's own per-day reducer, so values equal a per-day computation (an empty
    day gets its zero/total rows, as a one-day query with no result would).

    Aggregate results (at most a few thousand groups) are split by their day key; the metric's queries'
    rows for one day are reduced together (case_milestone_sla: completed and open groups). A streamed
    result must be the metric's only query and come ordered by its period field: it is split lazily, so
    memory stays what the reducer holds for one day. A row on a day outside `days`, or a stream out of
    order, is an error rather than a silently wrong value."""
    results = list(results)
    wanted = set(days)
    if all(query.aggregate for query, _ in results):
        by_day: dict[date, list[Record]] = defaultdict(list)
        for query, rows in results:
            for row in rows:
                day = _row_day(query, row)
                if day not in wanted:
                    raise ValueError(f"{query.metric}: a row on {day}, outside the days asked for")
                by_day[day].append(row)
        for day in days:
            yield day, reduce(by_day.pop(day, []), day)
        return
    if len(results) != 1:
        raise ValueError("a streamed range is one query")
    query, records = results[0]
    remaining = iter(days)
    upcoming: date | None = next(remaining, None)
    for day, group in itertools.groupby(records, key=lambda record: _row_day(query, record)):
        if day not in wanted:
            raise ValueError(f"{query.metric}: a record on {day}, outside the days asked for")
        while upcoming is not None and upcoming < day:  # days without records
            yield upcoming, reduce([], upcoming)
            upcoming = next(remaining, None)
        if upcoming != day:
            raise ValueError(f"{query.metric}: records are not ordered by {query.day_field} (again {day})")
        yield day, reduce(group, day)
        upcoming = next(remaining, None)
    while upcoming is not None:
        yield upcoming, reduce([], upcoming)
        upcoming = next(remaining, None)


# --- rendering ------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    # A pipe would end the cell and a newline the row.
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _format_value(value: float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4f}".rstrip("0").rstrip(".")


def metrics_table_markdown(rows: Sequence[MetricRow], max_rows: int = 50) -> str:
    """A small markdown table of metric rows for Dagster metadata (at most max_rows, then a note)."""
    if not rows:
        return "_no metric rows_"
    lines = ["| metric | measure | period | dimensions | value |", "|---|---|---|---|---:|"]
    for row in rows[:max_rows]:
        dims = ", ".join(f"{name}={value}" for name, value in row.dimensions)
        period = row.period.isoformat() if row.period else "snapshot"
        cells = (row.metric, row.measure, period, dims, _format_value(row.value))
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    if len(rows) > max_rows:
        lines.append(f"\n_… {len(rows) - max_rows} more rows_")
    return "\n".join(lines)


# --- registry -------------------------------------------------------------------------------------------

# The second argument is the partition's day for daily metrics and None for snapshots: each builder and
# reducer takes the one its cadence gives, so the alias cannot be narrower than Any there.
Builder = Callable[[SelectionLike, Any], SoqlQuery]
Reducer = Callable[[Iterable[Record], Any], list[MetricRow]]


@dataclass(frozen=True)
class SalesMetric:
    """Everything an asset factory needs: which query to build for a partition and how to fold its result."""

    name: str
    family: str  # the dashboard metric it belongs to (campaign_influence spans two objects, so two queries)
    fields: MetricFields
    cadence: Cadence
    strategy: Strategy
    period_field: str | None  # the field the daily partition filters on; None for snapshots
    build: Builder
    reduce: Reducer
    description: str

    @property
    def object_name(self) -> str:
        return self.fields.object_name

    @property
    def required_fields(self) -> frozenset[str]:
        return self.fields.required

    @property
    def period_fields(self) -> tuple[str, ...]:
        """The fields that place a record on a day (a milestone: its completion day, or its target day
        while open); none for snapshots."""
        return tuple(self.period_field.split("/")) if self.period_field else ()

    def build_days(self, selection: SelectionLike, days: Days) -> list[SoqlQuery]:
        """The queries that answer this daily metric for every day of `days` at once."""
        if self.cadence is not Cadence.DAILY:
            raise ValueError(f"{self.name} is a snapshot: it has no days")
        return queries.range_queries(self.build, selection, days)

    def reduce_days(self, results: Iterable[tuple[SoqlQuery, Iterable[Record]]], days: Days) -> dict[date, list]:
        """Every day's metric rows from the range queries' results (see `reduce_days`)."""
        return dict(reduce_days(self.reduce, results, days))


def _metric(
    fields: MetricFields,
    family: str,
    cadence: Cadence,
    strategy: Strategy,
    period_field: str | None,
    build: Builder,
    reduce: Reducer,
    description: str,
) -> SalesMetric:
    return SalesMetric(fields.metric, family, fields, cadence, strategy, period_field, build, reduce, description)


_D, _S = Cadence.DAILY, Cadence.SNAPSHOT
_P, _T, _ADAPT = Strategy.PUSHDOWN, Strategy.STREAMED, Strategy.ADAPTIVE

SALES_METRICS: Mapping[str, SalesMetric] = MappingProxyType(
    {
        metric.name: metric
        for metric in (
            _metric(queries.OPEN_PIPELINE_BY_STAGE_FIELDS, "open_pipeline_by_stage", _S, _ADAPT, None,
                    queries.open_pipeline_by_stage_query, reduce_open_pipeline_by_stage,
                    "Open opportunities per stage: count, amount, probability-weighted amount."),
            _metric(queries.WIN_RATE_FIELDS, "win_rate", _D, _P, "CloseDate",
                    queries.win_rate_query, reduce_win_rate,
                    "Deals closed that day: won/lost, win rate by count and by amount, average deal size."),
            _metric(queries.SALES_CYCLE_LENGTH_FIELDS, "sales_cycle_length", _D, _T, "CloseDate",
                    queries.sales_cycle_length_query, reduce_sales_cycle_length,
                    "Won deals closed that day: days from creation to close (mean, median, p90)."),
            _metric(queries.LEAD_CONVERSION_FIELDS, "lead_conversion", _D, _P, "CreatedDate",
                    queries.lead_conversion_query, reduce_lead_conversion,
                    "Leads created that day: how many, how many converted, conversion rate."),
            _metric(queries.LEAD_TIME_TO_CONVERT_FIELDS, "lead_conversion", _D, _T, "CreatedDate",
                    queries.lead_time_to_convert_query, reduce_lead_time_to_convert,
                    "Converted leads created that day: days from creation to conversion (mean, median, p90)."),
            _metric(queries.CASE_VOLUME_FIELDS, "case_volume", _D, _P, "CreatedDate",
                    queries.case_volume_query, reduce_case_volume,
                    "Cases created that day per status and priority."),
            _metric(queries.CASE_RESOLUTION_TIME_FIELDS, "case_resolution_time", _D, _T, "ClosedDate",
                    queries.case_resolution_time_query, reduce_case_resolution_time,
                    "Cases closed that day: hours from creation to close (mean, median, p90)."),
            _metric(queries.CASE_MILESTONE_SLA_FIELDS, "case_milestone_sla", _D, _P, "CompletionDate/TargetDate",
                    queries.case_milestone_sla_query, reduce_case_milestone_sla,
                    "Milestones decided that day: met, violated, pending, compliance rate, per milestone type."),
            _metric(queries.CAMPAIGN_RESPONSES_FIELDS, "campaign_influence", _S, _P, None,
                    queries.campaign_responses_query, reduce_campaign_responses,
                    "Responded campaign members per campaign."),
            _metric(queries.CAMPAIGN_SOURCED_PIPELINE_FIELDS, "campaign_influence", _S, _P, None,
                    queries.campaign_sourced_pipeline_query, reduce_campaign_sourced_pipeline,
                    "Opportunities (count, amount) per primary campaign."),
            _metric(queries.TASK_ACTIVITY_COUNTS_FIELDS, "activity_counts", _D, _P, "ActivityDate",
                    queries.task_activity_counts_query, reduce_task_activity_counts,
                    "Tasks due that day, per type and subtype when selected."),
            _metric(queries.EVENT_ACTIVITY_COUNTS_FIELDS, "activity_counts", _D, _P, "ActivityDate",
                    queries.event_activity_counts_query, reduce_event_activity_counts,
                    "Events that day, per type when selected."),
        )
    }
)  # fmt: skip


def _resolve(metric: str | SalesMetric) -> SalesMetric:
    if isinstance(metric, SalesMetric):
        return metric
    try:
        return SALES_METRICS[metric]
    except KeyError:
        raise ConfigError(f"unknown sales metric {metric!r}; known: {', '.join(SALES_METRICS)}") from None


def required_fields(metric: str | SalesMetric) -> frozenset[str]:
    """The fields of the metric's object that must be selected for it to run."""
    return _resolve(metric).required_fields


def available_metrics(selection: SelectionLike) -> list[SalesMetric]:
    """The metrics the selection allows, in registry order (invalid names raise IdentifierError)."""
    selection = Selection.of(selection)
    return [metric for metric in SALES_METRICS.values() if not metric.fields.missing(selection)]
