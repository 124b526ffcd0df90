"""SOQL builders for the Salesforce sales metrics: one small, read-only query per metric and period.

Aggregation is pushed down to Salesforce wherever SOQL can express it (COUNT/SUM with GROUP BY), so only
a handful of aggregate rows ever leave the org; where it cannot (medians, percentiles, date arithmetic)
the query streams the fewest fields that answer the question, for the reducers in `metrics.py` to fold
in memory. Pure: builds strings, sends nothing.

Rules kept here:
- Identifiers come only from the metric definitions below, are checked with the platform identifier
  patterns, and a query is only built when the customer's selection covers every field it reads.
- Values reach SOQL only through `soql_literal`.
- Daily partitions are UTC days: `CloseDate = 2024-01-31` on date fields, and
  `CreatedDate >= 2024-01-31T00:00:00Z AND CreatedDate < 2024-02-01T00:00:00Z` on datetime fields.
- A daily builder also takes a set of days (`Days`): then the query covers all of them at once (an OR of
  contiguous intervals) and says per row which day it belongs to: an aggregate query groups by the day
  too (a date field by itself, a datetime field by `DAY_ONLY(field) periodDay`, which Salesforce computes
  in UTC, our days' zone), a streamed query selects its period field and is ordered by it, so the
  reducer can split the stream day by day without holding more than one day. `SoqlQuery.day_key` names
  the key a row carries its day under.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum

from dfx_pipelines.connectors.salesforce.selection import (
    IMPLICIT_FIELDS,
    MetricFields,
    OptionalDimension,
    Selection,
    SelectionError,
)
from dfx_pipelines.platform.identifiers import salesforce_field_path, salesforce_name

SelectionLike = Selection | Mapping[str, Iterable[str]]

# REST cannot page a GROUP BY result (no nextRecordsUrl): more groups than this and Salesforce refuses or
# truncates, so a runner should treat a full page from an aggregate query as a failure, not as the answer.
AGGREGATE_ROW_LIMIT = 2000


class AggregateAlias:
    """The keys aggregate rows carry, shared by the builders (which write them into the SOQL) and the
    reducers (which read them). Grouped plain fields keep their own API name as the key; relationship
    paths get an alias because Salesforce would otherwise key them by the last part only."""

    RECORD_COUNT = "recordCount"  # COUNT(Id): every record in the group
    AMOUNT_SUM = "amountSum"  # SUM(Amount): null when every Amount in the group is null
    AMOUNT_COUNT = "amountCount"  # COUNT(Amount): records whose Amount is not null
    EXPECTED_REVENUE_SUM = "expectedRevenueSum"  # SUM(ExpectedRevenue): Σ Amount × Probability / 100
    MILESTONE_TYPE_NAME = "milestoneTypeName"  # MilestoneType.Name
    PERIOD_DAY = "periodDay"  # DAY_ONLY(<datetime period field>) of a range query: the row's UTC day

    ALL = (RECORD_COUNT, AMOUNT_SUM, AMOUNT_COUNT, EXPECTED_REVENUE_SUM, MILESTONE_TYPE_NAME, PERIOD_DAY)


# Aliases obey the API-name rules too (and none is a SOQL keyword): checked once, at import.
for _alias in AggregateAlias.ALL:
    salesforce_name(_alias)
del _alias

_PATH_ALIASES = {"MilestoneType.Name": AggregateAlias.MILESTONE_TYPE_NAME}


def result_key(field_path: str) -> str:
    """The key under which an aggregate row carries a grouped field."""
    return _PATH_ALIASES.get(field_path, field_path)


class Cadence(str, Enum):
    DAILY = "daily"  # one partition per UTC day; the builder takes that day
    SNAPSHOT = "snapshot"  # the state now; the builder takes None


class Strategy(str, Enum):
    PUSHDOWN = "pushdown"  # aggregate SOQL: Salesforce returns grouped numbers only
    STREAMED = "streamed"  # plain SOQL of the fewest fields, reduced in memory and discarded
    ADAPTIVE = "adaptive"  # pushdown when the selection allows it, else streamed: SoqlQuery.aggregate says which


class Days:
    """A non-empty set of UTC days, sorted: what a range query covers. Pure value; its SOQL form is an OR
    of its contiguous intervals, so a run of 365 consecutive days is one condition."""

    __slots__ = ("days",)

    def __init__(self, days: Iterable[date]):
        found = set()
        for day in days:
            if not isinstance(day, date) or isinstance(day, datetime):
                raise ValueError(f"Days holds dates, not {day!r}")
            found.add(day)
        if not found:
            raise ValueError("Days needs at least one day")
        self.days: tuple[date, ...] = tuple(sorted(found))

    @classmethod
    def between(cls, first: date, last: date) -> Days:
        if last < first:
            raise ValueError(f"no days in {first}..{last}")
        return cls(first + timedelta(days=n) for n in range((last - first).days + 1))

    def __iter__(self) -> Iterator[date]:
        return iter(self.days)

    def __len__(self) -> int:
        return len(self.days)

    def __contains__(self, day: object) -> bool:
        return day in set(self.days)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Days) and other.days == self.days

    def __hash__(self) -> int:
        return hash(self.days)

    def __repr__(self) -> str:
        return f"Days({', '.join(f'{a}..{b}' if a != b else str(a) for a, b in self.intervals())})"

    @property
    def first(self) -> date:
        return self.days[0]

    @property
    def last(self) -> date:
        return self.days[-1]

    def intervals(self) -> list[tuple[date, date]]:
        """The maximal runs of consecutive days, in order."""
        runs: list[tuple[date, date]] = []
        for day in self.days:
            if runs and (day - runs[-1][1]).days == 1:
                runs[-1] = (runs[-1][0], day)
            else:
                runs.append((day, day))
        return runs

    def halves(self) -> tuple[Days, Days]:
        """The earlier and the later half (by count of days); for re-running a query that overflowed."""
        if len(self.days) < 2:
            raise ValueError("a single day cannot be halved")
        middle = len(self.days) // 2
        return Days(self.days[:middle]), Days(self.days[middle:])


@dataclass(frozen=True)
class SoqlQuery:
    """One query to run for one metric and period, plus what it touches (for audit and tests)."""

    metric: str
    object_name: str
    soql: str
    aggregate: bool
    fields_read: tuple[str, ...]  # every field referenced anywhere in the query, sorted
    period: date | None
    days: Days | None = None  # a range query's days (period is None then)
    day_key: str | None = None  # the row key carrying a range query's day (a date field or PERIOD_DAY)
    day_field: str | None = None  # the period field that day comes from


# --- values ---------------------------------------------------------------------------------------------

# The escapes Salesforce documents for quoted strings (the same table simple_salesforce uses). Why not
# simple_salesforce's `format_soql`/`quote_soql_value`: this module is pure (no client library, see
# test_architecture), and the library renders what SOQL cannot read or reads differently — 1e16 as
# `1e+16`, NaN as `nan`, an empty list as `()`, raw control characters, a naive datetime in the local
# zone, microseconds silently cut off a `<` bound. Where it does cover the need (strings, dates, aware
# datetimes) test_queries.py checks every literal here against `format_soql`.
_SOQL_STRING_ESCAPES = str.maketrans(
    {"\\": "\\\\", "'": "\\'", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}
)
_UNESCAPABLE_CONTROLS = frozenset(chr(c) for c in range(32) if chr(c) not in "\n\r\t\b\f") | {"\x7f"}


def soql_literal(value: object) -> str:
    """A SOQL literal for a value: strings quoted and escaped, booleans true/false, None null, dates
    YYYY-MM-DD, aware datetimes as UTC `YYYY-MM-DDThh:mm:ssZ`, finite numbers, and non-empty collections
    as `(a,b)` for IN. Anything it cannot render exactly is refused rather than approximated."""
    # bool before int: True is an int in Python and would otherwise render as 1.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        if any(char in _UNESCAPABLE_CONTROLS for char in value):
            raise ValueError("a SOQL string cannot carry control characters other than \\n \\r \\t \\b \\f")
        return "'" + value.translate(_SOQL_STRING_ESCAPES) + "'"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"SOQL has no literal for {value!r}")
        # Positional notation: str() would write 1e+16, which is no SOQL number.
        return format(Decimal(repr(value)), "f")
    if isinstance(value, datetime):  # before date: a datetime is a date
        if value.tzinfo is None or value.utcoffset() is None:
            # A naive datetime would be read in some server's local zone and shift the day boundaries.
            raise ValueError(f"a SOQL datetime needs a time zone: {value!r}")
        if value.microsecond:
            # SOQL datetimes have whole seconds; truncating would move a `<` bound silently.
            raise ValueError(f"a SOQL datetime has whole seconds: {value!r}")
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple, set, frozenset)):
        if not value:
            raise ValueError("SOQL has no empty list: IN () is malformed")
        items = [soql_literal(item) for item in value]
        # A set has no order of its own; sorting keeps the query text reproducible.
        return "(" + ",".join(sorted(items) if isinstance(value, (set, frozenset)) else items) + ")"
    raise TypeError(f"no SOQL literal for a {type(value).__name__}")


# --- query assembly -------------------------------------------------------------------------------------


@dataclass
class _QueryText:
    """Collects the parts of one SELECT and every field it references; identifiers are re-checked as
    they are added, so nothing unvalidated can reach the text."""

    object_name: str
    select: list[str] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    group_by: list[str] = field(default_factory=list)
    order_by: list[str] = field(default_factory=list)
    fields: set[str] = field(default_factory=set)
    aggregates: bool = False
    day_key: str | None = None
    day_field: str | None = None

    def ref(self, field_path: str) -> str:
        self.fields.add(salesforce_field_path(field_path))
        return field_path

    def pick(self, field_path: str) -> None:
        self.select.append(self.ref(field_path))

    def group(self, field_path: str) -> None:
        self.group_by.append(self.ref(field_path))
        alias = _PATH_ALIASES.get(field_path)
        self.select.append(f"{field_path} {alias}" if alias else field_path)

    def aggregate(self, function: str, field_path: str, alias: str) -> None:
        if function not in ("COUNT", "SUM"):
            raise ValueError(f"unsupported aggregate function {function!r}")
        self.aggregates = True
        self.select.append(f"{function}({self.ref(field_path)}) {salesforce_name(alias)}")

    def equals(self, field_path: str, value: object) -> str:
        return f"{self.ref(field_path)} = {soql_literal(value)}"

    def not_null(self, field_path: str) -> str:
        return f"{self.ref(field_path)} != {soql_literal(None)}"

    def on_day(self, date_field: str, day: date) -> str:
        return self.equals(date_field, day)

    def within_utc_day(self, datetime_field: str, day: date) -> str:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        end = start + timedelta(days=1)
        name = self.ref(datetime_field)
        return f"{name} >= {soql_literal(start)} AND {name} < {soql_literal(end)}"

    def in_days(self, period_field: str, days: Days) -> str:
        """The field falls on one of the days (UTC): an OR of the days' contiguous intervals."""
        name = self.ref(period_field)
        parts = []
        for first, last in days.intervals():
            if period_field in DATE_PERIOD_FIELDS:
                if first == last:
                    parts.append(f"{name} = {soql_literal(first)}")
                else:
                    parts.append(f"({name} >= {soql_literal(first)} AND {name} <= {soql_literal(last)})")
            else:
                start = datetime.combine(first, time(0), tzinfo=UTC)
                end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
                parts.append(f"({name} >= {soql_literal(start)} AND {name} < {soql_literal(end)})")
        return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"

    def group_by_day(self, period_field: str) -> None:
        """Aggregate rows per day of the period field: a date field groups by itself (rows keyed by its
        name), a datetime field by its UTC day, DAY_ONLY(field), keyed by the PERIOD_DAY alias."""
        if period_field in DATE_PERIOD_FIELDS:
            self.group(period_field)
            self.day_key = period_field
        else:
            name = self.ref(period_field)
            self.group_by.append(f"DAY_ONLY({name})")
            self.select.append(f"DAY_ONLY({name}) {salesforce_name(AggregateAlias.PERIOD_DAY)}")
            self.day_key = AggregateAlias.PERIOD_DAY
        self.day_field = period_field

    def order_by_day(self, period_field: str) -> None:
        """A streamed range query: records come ordered by their period field, so by day."""
        if period_field not in self.select:
            self.pick(period_field)
        self.order_by.append(self.ref(period_field))
        self.day_key = self.day_field = period_field

    def text(self) -> str:
        soql = f"SELECT {', '.join(self.select)} FROM {salesforce_name(self.object_name)}"
        if self.where:
            soql += " WHERE " + " AND ".join(self.where)
        if self.group_by:
            soql += " GROUP BY " + ", ".join(self.group_by)
        if self.order_by:
            soql += " ORDER BY " + ", ".join(self.order_by)
        return soql


def _finish(spec: MetricFields, selection: Selection, query: _QueryText, period: date | Days | None) -> SoqlQuery:
    # Last guard: the text must not reference anything the customer did not select, whatever the
    # builder above did (a mismatch here is a bug in this module, reported as a selection failure).
    stray = sorted(
        name for name in query.fields if name not in IMPLICIT_FIELDS and not selection.has_field(spec.object_name, name)
    )
    if stray:
        raise SelectionError(f"metric {spec.metric} would read unselected {spec.object_name} fields: {stray}")
    return SoqlQuery(
        metric=spec.metric,
        object_name=spec.object_name,
        soql=query.text(),
        aggregate=query.aggregates,
        fields_read=tuple(sorted(query.fields)),
        period=None if isinstance(period, Days) else period,
        days=period if isinstance(period, Days) else None,
        day_key=query.day_key,
        day_field=query.day_field,
    )


def _daily(spec: MetricFields, period: object) -> date | Days:
    if isinstance(period, Days):
        return period
    if not isinstance(period, date) or isinstance(period, datetime):
        raise ValueError(f"metric {spec.metric} is daily: its period must be a date or Days, not {period!r}")
    return period


def _on(query: _QueryText, period_field: str, day: date | Days) -> str:
    """The period condition for one day (today's text) or for a set of days (grouped/ordered by day)."""
    if isinstance(day, Days):
        if query.aggregates or query.group_by:
            query.group_by_day(period_field)
        else:
            query.order_by_day(period_field)
        return query.in_days(period_field, day)
    if period_field in DATE_PERIOD_FIELDS:
        return query.on_day(period_field, day)
    return query.within_utc_day(period_field, day)


def _snapshot(spec: MetricFields, period: object) -> None:
    if period is not None:
        raise ValueError(f"metric {spec.metric} is a snapshot: its period must be None, not {period!r}")


# --- what each metric reads -----------------------------------------------------------------------------

OPEN_PIPELINE_BY_STAGE_FIELDS = MetricFields(
    "open_pipeline_by_stage",
    "Opportunity",
    frozenset({"StageName", "Amount", "IsClosed"}),
    one_of=(("ExpectedRevenue", "Probability"),),
)
WIN_RATE_FIELDS = MetricFields("win_rate", "Opportunity", frozenset({"IsWon", "IsClosed", "Amount", "CloseDate"}))
SALES_CYCLE_LENGTH_FIELDS = MetricFields(
    "sales_cycle_length", "Opportunity", frozenset({"IsWon", "CreatedDate", "CloseDate"})
)
LEAD_CONVERSION_FIELDS = MetricFields("lead_conversion", "Lead", frozenset({"IsConverted", "CreatedDate"}))
LEAD_TIME_TO_CONVERT_FIELDS = MetricFields(
    "lead_time_to_convert", "Lead", frozenset({"IsConverted", "CreatedDate", "ConvertedDate"})
)
CASE_VOLUME_FIELDS = MetricFields("case_volume", "Case", frozenset({"Status", "Priority", "CreatedDate"}))
CASE_RESOLUTION_TIME_FIELDS = MetricFields("case_resolution_time", "Case", frozenset({"CreatedDate", "ClosedDate"}))
CASE_MILESTONE_SLA_FIELDS = MetricFields(
    "case_milestone_sla",
    "CaseMilestone",
    frozenset({"IsCompleted", "IsViolated", "CompletionDate", "TargetDate"}),
    optional=(OptionalDimension("milestone_type", ("MilestoneType.Name", "MilestoneTypeId")),),
)
CAMPAIGN_RESPONSES_FIELDS = MetricFields(
    "campaign_responses", "CampaignMember", frozenset({"CampaignId", "HasResponded"})
)
CAMPAIGN_SOURCED_PIPELINE_FIELDS = MetricFields(
    "campaign_sourced_pipeline", "Opportunity", frozenset({"CampaignId", "Amount"})
)
TASK_ACTIVITY_COUNTS_FIELDS = MetricFields(
    "task_activity_counts",
    "Task",
    frozenset({"ActivityDate"}),
    optional=(OptionalDimension("activity_type", ("Type",)), OptionalDimension("activity_subtype", ("TaskSubtype",))),
)
EVENT_ACTIVITY_COUNTS_FIELDS = MetricFields(
    "event_activity_counts",
    "Event",
    frozenset({"ActivityDate"}),
    optional=(OptionalDimension("activity_type", ("Type",)),),
)


# --- builders -------------------------------------------------------------------------------------------
_A = AggregateAlias

# Period fields that are plain dates (compared to a day); every other period field is a UTC datetime.
DATE_PERIOD_FIELDS = frozenset({"CloseDate", "ActivityDate"})


def record_days_query(
    spec: MetricFields, selection: SelectionLike, period_fields: Iterable[str], first: date, last: date
) -> SoqlQuery:
    """Ids of the live records whose period fields fall on any day of [first, last], with those fields:
    the record-bucket index a daily run stores beside its values, so change-data capture can later find
    the day a record left. Reads only Id and period fields the metric itself reads."""
    if (
        not isinstance(first, date)
        or not isinstance(last, date)
        or isinstance(first, datetime)
        or isinstance(last, datetime)
        or first > last
    ):
        raise ValueError(f"record days need a date range, not {first!r}..{last!r}")
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.pick("Id")
    conditions = []
    for period_field in sorted(set(period_fields)):
        query.pick(period_field)
        name = query.ref(period_field)
        if period_field in DATE_PERIOD_FIELDS:
            conditions.append(f"({name} >= {soql_literal(first)} AND {name} <= {soql_literal(last)})")
        else:
            start = datetime.combine(first, time(0), tzinfo=UTC)
            end = datetime.combine(last + timedelta(days=1), time(0), tzinfo=UTC)
            conditions.append(f"({name} >= {soql_literal(start)} AND {name} < {soql_literal(end)})")
    if not conditions:
        raise ValueError(f"metric {spec.metric} has no period field")
    query.where.append("(" + " OR ".join(conditions) + ")")
    return _finish(spec, selection, query, None)


# Salesforce stamps every record with this on each change (create, edit, delete, undelete, a cascade);
# getUpdated, which change-data capture already polls, is a scan of it. The change read below only
# compares it in WHERE: it reads no value of it, nor any field the customer did not select.
CHANGE_STAMP_FIELD = "SystemModstamp"


def record_changes_query(
    spec: MetricFields, selection: SelectionLike, period_fields: Iterable[str], since: datetime
) -> SoqlQuery:
    """Ids and period fields of the live records changed at or after `since` (whatever day they are on
    now): what an incremental refresh of the record-bucket index reads instead of every id of its days."""
    if not isinstance(since, datetime) or since.tzinfo is None:
        raise ValueError(f"record changes need an aware instant, not {since!r}")
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.pick("Id")
    fields = sorted(set(period_fields))
    if not fields:
        raise ValueError(f"metric {spec.metric} has no period field")
    for period_field in fields:
        query.pick(period_field)
    query.where.append(f"{CHANGE_STAMP_FIELD} >= {soql_literal(since.replace(microsecond=0))}")
    return _finish(spec, selection, query, None)


def open_pipeline_by_stage_query(selection: SelectionLike, period: None = None) -> SoqlQuery:
    """Open opportunities per stage with count, amount and weighted amount (Σ Amount × Probability/100).

    SOQL cannot SUM an expression, and Probability (a percent field) is not groupable, so GROUP BY
    StageName, Probability is refused. Salesforce does keep the product per record in ExpectedRevenue:
    when the customer selected it the whole metric is pushed down with SUM(ExpectedRevenue); otherwise
    the open opportunities' StageName, Amount and Probability are streamed and weighted in memory."""
    spec = OPEN_PIPELINE_BY_STAGE_FIELDS
    _snapshot(spec, period)
    selection = spec.check(selection)
    (weighting,) = spec.chosen_alternatives(selection)
    query = _QueryText(spec.object_name)
    if weighting == "ExpectedRevenue":
        query.group("StageName")
        query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
        query.aggregate("SUM", "Amount", _A.AMOUNT_SUM)
        query.aggregate("SUM", "ExpectedRevenue", _A.EXPECTED_REVENUE_SUM)
    else:
        query.pick("StageName")
        query.pick("Amount")
        query.pick("Probability")
    query.where.append(query.equals("IsClosed", False))
    return _finish(spec, selection, query, period)


def win_rate_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Closed opportunities of the day, won vs lost. COUNT(Amount) next to SUM(Amount) gives the mean won
    deal over non-null Amounts (what AVG(Amount) returns) in a form that still adds up across rows."""
    spec = WIN_RATE_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.group("IsWon")
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.aggregate("SUM", "Amount", _A.AMOUNT_SUM)
    query.aggregate("COUNT", "Amount", _A.AMOUNT_COUNT)
    query.where += [query.equals("IsClosed", True), _on(query, "CloseDate", day)]
    return _finish(spec, selection, query, day)


def sales_cycle_length_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Won opportunities closed that day, streamed: a median needs every duration, and SOQL cannot
    subtract dates. Only the two dates are read (not even Id)."""
    spec = SALES_CYCLE_LENGTH_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.pick("CreatedDate")
    query.pick("CloseDate")
    query.where += [query.equals("IsWon", True), _on(query, "CloseDate", day)]
    return _finish(spec, selection, query, day)


def lead_conversion_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Leads created that (UTC) day, converted or not: a cohort, so the rate can still rise later."""
    spec = LEAD_CONVERSION_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.group("IsConverted")
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.where.append(_on(query, "CreatedDate", day))
    return _finish(spec, selection, query, day)


def lead_time_to_convert_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Converted leads of the same creation-day cohort, streamed for the days-to-convert distribution."""
    spec = LEAD_TIME_TO_CONVERT_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.pick("CreatedDate")
    query.pick("ConvertedDate")
    query.where += [query.equals("IsConverted", True), _on(query, "CreatedDate", day)]
    return _finish(spec, selection, query, day)


def case_volume_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Cases created that (UTC) day by status and priority."""
    spec = CASE_VOLUME_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.group("Status")
    query.group("Priority")
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.where.append(_on(query, "CreatedDate", day))
    return _finish(spec, selection, query, day)


def case_resolution_time_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Cases closed that (UTC) day, streamed for the hours-to-close distribution."""
    spec = CASE_RESOLUTION_TIME_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.pick("CreatedDate")
    query.pick("ClosedDate")
    query.where.append(_on(query, "ClosedDate", day))
    return _finish(spec, selection, query, day)


def _milestone_outcome_counts(spec: MetricFields, selection: Selection) -> _QueryText:
    """The milestone query's shape, one day or a range: counts per outcome (and milestone type when selected)."""
    query = _QueryText(spec.object_name)
    query.group("IsCompleted")
    query.group("IsViolated")
    for _dimension, field_path in spec.chosen_dimensions(selection):
        query.group(field_path)
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    return query


def case_milestone_sla_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Milestones whose outcome was decided that (UTC) day: completed ones on their CompletionDate, open
    ones on their TargetDate (the moment an open milestone becomes violated). Grouped by IsCompleted as
    well so open-but-not-yet-due milestones are reported as pending instead of as met. When an open
    milestone is completed later it moves to its completion day: re-materialise recent partitions."""
    spec = CASE_MILESTONE_SLA_FIELDS
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _milestone_outcome_counts(spec, selection)
    if isinstance(day, Days):
        raise ValueError("case_milestone_sla over several days is two queries: case_milestone_sla_range_queries")
    completed = f"({query.equals('IsCompleted', True)} AND {query.within_utc_day('CompletionDate', day)})"
    still_open = f"({query.equals('IsCompleted', False)} AND {query.within_utc_day('TargetDate', day)})"
    query.where.append(f"({completed} OR {still_open})")
    return _finish(spec, selection, query, day)


def case_milestone_sla_range_queries(selection: SelectionLike, days: Days) -> list[SoqlQuery]:
    """case_milestone_sla over a set of days: a milestone's day comes from one of two fields (completed:
    CompletionDate; open: TargetDate), and a group has one day, so two aggregate queries, each grouped by
    its own field's UTC day. Per day their rows are exactly the one-day query's groups."""
    spec = CASE_MILESTONE_SLA_FIELDS
    if not isinstance(days, Days):
        raise ValueError(f"case_milestone_sla range queries take Days, not {days!r}")
    selection = spec.check(selection)
    built = []
    for completed, period_field in ((True, "CompletionDate"), (False, "TargetDate")):
        query = _milestone_outcome_counts(spec, selection)
        query.where.append(query.equals("IsCompleted", completed))
        query.where.append(_on(query, period_field, days))
        built.append(_finish(spec, selection, query, days))
    return built


def range_queries(
    builder: Callable[[SelectionLike, date | Days], SoqlQuery], selection: SelectionLike, days: Days
) -> list[SoqlQuery]:
    """The queries that answer a daily metric for every day of `days` (one, except case_milestone_sla)."""
    if builder is case_milestone_sla_query:
        return case_milestone_sla_range_queries(selection, days)
    return [builder(selection, days)]


def campaign_responses_query(selection: SelectionLike, period: None = None) -> SoqlQuery:
    """Responded campaign members per campaign (all time)."""
    spec = CAMPAIGN_RESPONSES_FIELDS
    _snapshot(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.group("CampaignId")
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.where.append(query.equals("HasResponded", True))
    return _finish(spec, selection, query, period)


def campaign_sourced_pipeline_query(selection: SelectionLike, period: None = None) -> SoqlQuery:
    """Opportunities per primary campaign (all stages), count and amount."""
    spec = CAMPAIGN_SOURCED_PIPELINE_FIELDS
    _snapshot(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    query.group("CampaignId")
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.aggregate("SUM", "Amount", _A.AMOUNT_SUM)
    query.where.append(query.not_null("CampaignId"))
    return _finish(spec, selection, query, period)


def _activity_counts_query(spec: MetricFields, selection: SelectionLike, period: date | Days) -> SoqlQuery:
    day = _daily(spec, period)
    selection = spec.check(selection)
    query = _QueryText(spec.object_name)
    # Type/subtype only when selected; without them this is one COUNT row for the day.
    for _dimension, field_path in spec.chosen_dimensions(selection):
        query.group(field_path)
    query.aggregate("COUNT", "Id", _A.RECORD_COUNT)
    query.where.append(_on(query, "ActivityDate", day))
    return _finish(spec, selection, query, day)


def task_activity_counts_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Tasks due (ActivityDate) that day, by Type and TaskSubtype when those are selected."""
    return _activity_counts_query(TASK_ACTIVITY_COUNTS_FIELDS, selection, period)


def event_activity_counts_query(selection: SelectionLike, period: date | Days) -> SoqlQuery:
    """Events on (ActivityDate) that day, by Type when selected."""
    return _activity_counts_query(EVENT_ACTIVITY_COUNTS_FIELDS, selection, period)
