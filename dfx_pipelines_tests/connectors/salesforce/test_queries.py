"""SOQL builders: exact text per metric, selection enforcement, hostile identifiers, value quoting."""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from simple_salesforce import format_soql

from dfx_pipelines.connectors.salesforce import queries
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS, available_metrics, required_fields
from dfx_pipelines.connectors.salesforce.queries import (
    AggregateAlias,
    Cadence,
    Strategy,
    soql_literal,
)
from dfx_pipelines.connectors.salesforce.selection import MetricFields, Selection, SelectionError
from dfx_pipelines.platform.errors import ConfigError, IdentifierError

DAY = date(2024, 1, 31)
CREATED_ON_DAY = "CreatedDate >= 2024-01-31T00:00:00Z AND CreatedDate < 2024-02-01T00:00:00Z"

# Everything any metric can read, spelled as a customer's describe-based selection would be.
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
    "CaseMilestone": {
        "IsCompleted",
        "IsViolated",
        "CompletionDate",
        "TargetDate",
        "MilestoneType.Name",
        "MilestoneTypeId",
    },
    "CampaignMember": {"CampaignId", "HasResponded"},
    "Task": {"ActivityDate", "Type", "TaskSubtype"},
    "Event": {"ActivityDate", "Type"},
}

EXPECTED_SOQL = {
    "open_pipeline_by_stage": (
        "SELECT StageName, COUNT(Id) recordCount, SUM(Amount) amountSum, SUM(ExpectedRevenue) expectedRevenueSum "
        "FROM Opportunity WHERE IsClosed = false GROUP BY StageName"
    ),
    "win_rate": (
        "SELECT IsWon, COUNT(Id) recordCount, SUM(Amount) amountSum, COUNT(Amount) amountCount FROM Opportunity "
        "WHERE IsClosed = true AND CloseDate = 2024-01-31 GROUP BY IsWon"
    ),
    "sales_cycle_length": (
        "SELECT CreatedDate, CloseDate FROM Opportunity WHERE IsWon = true AND CloseDate = 2024-01-31"
    ),
    "lead_conversion": (
        f"SELECT IsConverted, COUNT(Id) recordCount FROM Lead WHERE {CREATED_ON_DAY} GROUP BY IsConverted"
    ),
    "lead_time_to_convert": (
        f"SELECT CreatedDate, ConvertedDate FROM Lead WHERE IsConverted = true AND {CREATED_ON_DAY}"
    ),
    "case_volume": (
        f"SELECT Status, Priority, COUNT(Id) recordCount FROM Case WHERE {CREATED_ON_DAY} GROUP BY Status, Priority"
    ),
    "case_resolution_time": (
        "SELECT CreatedDate, ClosedDate FROM Case "
        "WHERE ClosedDate >= 2024-01-31T00:00:00Z AND ClosedDate < 2024-02-01T00:00:00Z"
    ),
    "case_milestone_sla": (
        "SELECT IsCompleted, IsViolated, MilestoneType.Name milestoneTypeName, COUNT(Id) recordCount "
        "FROM CaseMilestone WHERE ("
        "(IsCompleted = true AND CompletionDate >= 2024-01-31T00:00:00Z AND CompletionDate < 2024-02-01T00:00:00Z)"
        " OR "
        "(IsCompleted = false AND TargetDate >= 2024-01-31T00:00:00Z AND TargetDate < 2024-02-01T00:00:00Z)"
        ") GROUP BY IsCompleted, IsViolated, MilestoneType.Name"
    ),
    "campaign_responses": (
        "SELECT CampaignId, COUNT(Id) recordCount FROM CampaignMember WHERE HasResponded = true GROUP BY CampaignId"
    ),
    "campaign_sourced_pipeline": (
        "SELECT CampaignId, COUNT(Id) recordCount, SUM(Amount) amountSum FROM Opportunity "
        "WHERE CampaignId != null GROUP BY CampaignId"
    ),
    "task_activity_counts": (
        "SELECT Type, TaskSubtype, COUNT(Id) recordCount FROM Task WHERE ActivityDate = 2024-01-31 "
        "GROUP BY Type, TaskSubtype"
    ),
    "event_activity_counts": (
        "SELECT Type, COUNT(Id) recordCount FROM Event WHERE ActivityDate = 2024-01-31 GROUP BY Type"
    ),
}


def period_for(metric) -> date | None:
    return DAY if metric.cadence is Cadence.DAILY else None


def selection_with(object_name: str, fields: set[str]) -> dict[str, set[str]]:
    return {object_name: set(fields)}


# --- exact SOQL -----------------------------------------------------------------------------------------


def test_registry_and_expected_soql_cover_the_same_metrics():
    assert set(SALES_METRICS) == set(EXPECTED_SOQL)


@pytest.mark.parametrize("name", sorted(EXPECTED_SOQL))
def test_each_metric_issues_exactly_this_soql_for_a_day(name):
    metric = SALES_METRICS[name]
    query = metric.build(FULL_SELECTION, period_for(metric))
    assert query.soql == EXPECTED_SOQL[name]
    assert query.metric == name
    assert query.object_name == metric.object_name
    assert query.period == period_for(metric)
    # the full selection allows every pushdown, adaptive ones included
    assert query.aggregate is (metric.strategy is not Strategy.STREAMED)


@pytest.mark.parametrize("name", sorted(EXPECTED_SOQL))
def test_queries_read_only_selected_fields_and_streams_do_not_read_id(name):
    metric = SALES_METRICS[name]
    query = metric.build(FULL_SELECTION, period_for(metric))
    selected = FULL_SELECTION[metric.object_name]
    assert set(query.fields_read) <= selected | {"Id"}
    assert metric.required_fields <= set(query.fields_read) | {"Id"}
    if not query.aggregate:
        assert "Id" not in query.fields_read
        assert "(" not in query.soql.split(" FROM ")[0]  # no aggregate function: plain records


def test_minimal_selection_builds_each_metric_without_its_optional_breakdowns():
    for metric in SALES_METRICS.values():
        alternatives = {group[-1] for group in metric.fields.one_of}
        minimal = selection_with(metric.object_name, set(metric.required_fields) | alternatives)
        query = metric.build(minimal, period_for(metric))
        assert set(query.fields_read) <= set(metric.required_fields) | alternatives | {"Id"}


def test_open_pipeline_streams_when_expected_revenue_is_not_selected():
    # Probability is a percent field: Salesforce refuses to GROUP BY it, and SUM() takes no expression.
    selection = selection_with("Opportunity", {"StageName", "Amount", "IsClosed", "Probability"})
    query = queries.open_pipeline_by_stage_query(selection)
    assert query.soql == "SELECT StageName, Amount, Probability FROM Opportunity WHERE IsClosed = false"
    assert not query.aggregate and query.fields_read == ("Amount", "IsClosed", "Probability", "StageName")
    assert SALES_METRICS["open_pipeline_by_stage"].strategy is Strategy.ADAPTIVE
    for metric in SALES_METRICS.values():
        assert "GROUP BY StageName, Probability" not in metric.build(FULL_SELECTION, period_for(metric)).soql


def test_open_pipeline_needs_expected_revenue_or_probability():
    selection = selection_with("Opportunity", {"StageName", "Amount", "IsClosed"})
    with pytest.raises(
        SelectionError, match=r"open_pipeline_by_stage needs .*: one of ExpectedRevenue or Probability$"
    ):
        queries.open_pipeline_by_stage_query(selection)
    assert available_metrics(selection) == []


def test_activity_counts_group_only_by_selected_breakdowns():
    only_date = queries.task_activity_counts_query(selection_with("Task", {"ActivityDate"}), DAY)
    assert only_date.soql == "SELECT COUNT(Id) recordCount FROM Task WHERE ActivityDate = 2024-01-31"
    assert only_date.aggregate
    with_type = queries.task_activity_counts_query(selection_with("Task", {"ActivityDate", "Type"}), DAY)
    assert with_type.soql == (
        "SELECT Type, COUNT(Id) recordCount FROM Task WHERE ActivityDate = 2024-01-31 GROUP BY Type"
    )
    events = queries.event_activity_counts_query(selection_with("Event", {"ActivityDate"}), DAY)
    assert events.soql == "SELECT COUNT(Id) recordCount FROM Event WHERE ActivityDate = 2024-01-31"


def test_milestone_type_prefers_the_name_then_the_id_then_nothing():
    base = {"IsCompleted", "IsViolated", "CompletionDate", "TargetDate"}
    by_id = queries.case_milestone_sla_query(selection_with("CaseMilestone", base | {"MilestoneTypeId"}), DAY)
    assert by_id.soql.startswith("SELECT IsCompleted, IsViolated, MilestoneTypeId, COUNT(Id) recordCount FROM")
    assert by_id.soql.endswith("GROUP BY IsCompleted, IsViolated, MilestoneTypeId")
    plain = queries.case_milestone_sla_query(selection_with("CaseMilestone", base), DAY)
    assert plain.soql.startswith("SELECT IsCompleted, IsViolated, COUNT(Id) recordCount FROM")
    assert plain.soql.endswith("GROUP BY IsCompleted, IsViolated")


@pytest.mark.parametrize(
    ("day", "start", "end"),
    [
        (date(2024, 12, 31), "2024-12-31T00:00:00Z", "2025-01-01T00:00:00Z"),
        (date(2024, 2, 28), "2024-02-28T00:00:00Z", "2024-02-29T00:00:00Z"),
        (date(2023, 2, 28), "2023-02-28T00:00:00Z", "2023-03-01T00:00:00Z"),
    ],
)
def test_datetime_day_bounds_roll_over_months_years_and_leap_days(day, start, end):
    query = queries.lead_conversion_query(FULL_SELECTION, day)
    assert f"WHERE CreatedDate >= {start} AND CreatedDate < {end} GROUP BY" in query.soql


def test_aliases_in_the_soql_are_the_shared_constants():
    soql = " ".join(m.build(FULL_SELECTION, period_for(m)).soql for m in SALES_METRICS.values())
    assert f"COUNT(Id) {AggregateAlias.RECORD_COUNT}" in soql
    assert f"SUM(Amount) {AggregateAlias.AMOUNT_SUM}" in soql
    assert f"COUNT(Amount) {AggregateAlias.AMOUNT_COUNT}" in soql
    assert f"MilestoneType.Name {AggregateAlias.MILESTONE_TYPE_NAME}" in soql


# --- periods --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [None, datetime(2024, 1, 31, tzinfo=UTC), "2024-01-31", 20240131])
def test_daily_builders_refuse_anything_but_a_date(bad):
    with pytest.raises(ValueError, match="win_rate is daily"):
        queries.win_rate_query(FULL_SELECTION, bad)


def test_snapshot_builders_refuse_a_period():
    with pytest.raises(ValueError, match="open_pipeline_by_stage is a snapshot"):
        queries.open_pipeline_by_stage_query(FULL_SELECTION, DAY)


# --- selection ------------------------------------------------------------------------------------------


def test_a_metric_needing_an_unselected_field_is_refused_by_name():
    selection = selection_with("Opportunity", {"IsWon", "IsClosed", "CloseDate"})  # no Amount
    with pytest.raises(SelectionError) as caught:
        queries.win_rate_query(selection, DAY)
    message = str(caught.value)
    assert "win_rate" in message and "Opportunity" in message and "Amount" in message
    assert "IsWon" not in message.split(":")[-1]
    assert isinstance(caught.value, ConfigError)


def test_an_unselected_object_is_named_with_all_missing_fields():
    with pytest.raises(
        SelectionError, match=r"lead_conversion needs Lead fields .*\(object not selected\): CreatedDate, IsConverted$"
    ):
        queries.lead_conversion_query(selection_with("Opportunity", {"Amount"}), DAY)


def test_required_fields_and_available_metrics():
    assert required_fields("open_pipeline_by_stage") == {"StageName", "Amount", "IsClosed"}
    assert required_fields(SALES_METRICS["case_volume"]) == {"Status", "Priority", "CreatedDate"}
    with pytest.raises(ConfigError, match="unknown sales metric 'nope'"):
        required_fields("nope")

    assert [m.name for m in available_metrics(FULL_SELECTION)] == list(SALES_METRICS)
    assert available_metrics({}) == []
    pipeline_only = selection_with("Opportunity", {"StageName", "Probability", "Amount", "IsClosed"})
    assert [m.name for m in available_metrics(pipeline_only)] == ["open_pipeline_by_stage"]
    pipeline_only["Opportunity"].add("CampaignId")
    assert [m.name for m in available_metrics(pipeline_only)] == ["open_pipeline_by_stage", "campaign_sourced_pipeline"]
    assert [m.name for m in available_metrics({"Task": {"ActivityDate"}})] == ["task_activity_counts"]


def test_selection_names_are_case_insensitive_but_soql_uses_canonical_spelling():
    lower = {"opportunity": {"stagename", "EXPECTEDREVENUE", "amount", "isclosed"}}
    assert [m.name for m in available_metrics(lower)] == ["open_pipeline_by_stage"]
    assert queries.open_pipeline_by_stage_query(lower).soql == EXPECTED_SOQL["open_pipeline_by_stage"]


@pytest.mark.parametrize(
    "bad",
    [
        "Amount",  # a bare string would otherwise be read as a set of letters
        b"Amount",
        42,
        None,
    ],
)
def test_malformed_field_collections_are_refused(bad):
    with pytest.raises(SelectionError, match="must be a collection of field names"):
        Selection({"Opportunity": bad})


def test_malformed_selections_are_refused():
    with pytest.raises(SelectionError, match="must map object names"):
        Selection([("Opportunity", {"Amount"})])
    with pytest.raises(SelectionError, match="selected twice"):
        Selection({"Opportunity": {"Amount"}, "OPPORTUNITY": {"StageName"}})


def test_selection_is_immutable_and_validated_once():
    selection = Selection({"Opportunity": ["Amount"]})
    assert Selection.of(selection) is selection
    with pytest.raises(TypeError):
        selection.objects["Lead"] = frozenset()  # type: ignore[index]
    assert selection.objects["Opportunity"] == frozenset({"Amount"})


def test_final_guard_refuses_a_query_text_that_strays_outside_the_selection():
    spec = MetricFields("probe", "Opportunity", frozenset({"Amount"}))
    selection = Selection({"Opportunity": {"Amount"}})
    text = queries._QueryText("Opportunity")
    text.pick("Amount")
    text.pick("Description")  # a builder bug: a field nobody selected
    with pytest.raises(SelectionError, match=r"probe would read unselected Opportunity fields: \['Description'\]"):
        queries._finish(spec, selection, text, None)


# --- hostile identifiers --------------------------------------------------------------------------------

HOSTILE_OBJECTS = ["Opportunity WHERE 1=1", "Opportunity;", "Opportunity--", "Opportunity Name", "", "Opp\nortunity"]
HOSTILE_FIELDS = [
    "Name, (SELECT Id FROM Contacts)",
    "Amount;",
    "Amount) FROM User --",
    "Amount ",
    " Amount",
    "Account..Name",
    "Amount\n",
    "COUNT(Id)",
    "Amount/*x*/",
    "Amount__c__c__c",
    "",
    7,
    None,
]


@pytest.fixture
def no_query_text(monkeypatch):
    """Proves refusal happens before any SOQL text is assembled."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("a query text was started despite a bad identifier")

    monkeypatch.setattr(queries, "_QueryText", refuse)


@pytest.mark.parametrize("bad_object", HOSTILE_OBJECTS)
def test_hostile_object_names_are_refused_before_any_soql_exists(bad_object, no_query_text):
    with pytest.raises(IdentifierError):
        Selection({bad_object: {"Amount"}})
    for metric in SALES_METRICS.values():
        selection = {**FULL_SELECTION, bad_object: {"Amount"}}
        with pytest.raises(IdentifierError):
            metric.build(selection, period_for(metric))
    with pytest.raises(IdentifierError):
        available_metrics({bad_object: {"Amount"}})


@pytest.mark.parametrize("bad_field", HOSTILE_FIELDS)
def test_hostile_field_names_are_refused_before_any_soql_exists(bad_field, no_query_text):
    with pytest.raises(IdentifierError):
        Selection({"Opportunity": {"Amount", bad_field}})
    for metric in SALES_METRICS.values():
        fields = set(FULL_SELECTION[metric.object_name]) | {bad_field}
        with pytest.raises(IdentifierError):
            metric.build({**FULL_SELECTION, metric.object_name: fields}, period_for(metric))


def test_metric_definitions_themselves_are_checked():
    with pytest.raises(IdentifierError):
        MetricFields("probe", "Opportunity WHERE 1=1", frozenset({"Amount"}))
    with pytest.raises(IdentifierError):
        MetricFields("probe", "Opportunity", frozenset({"Amount;"}))


# --- values ---------------------------------------------------------------------------------------------

PLAIN_VALUES = [
    "",
    "Closed Won",
    "O'Brien",
    "back\\slash",
    "\\'",
    "' OR Name != '",
    'double "quotes"',
    "line\nbreak\r\ttab\bbell\fform",
    "naïve ünïcödé — ✓ 日本",
    "100%_like",
    True,
    False,
    None,
    0,
    -17,
    12345678901234567890,
    1.5,
    -0.25,
    100.0,
    date(2024, 1, 31),
    date(1999, 12, 31),
    ["a", "b'c"],
    ("x",),
]


@pytest.mark.parametrize("value", PLAIN_VALUES, ids=repr)
def test_soql_literal_matches_simple_salesforce(value):
    assert soql_literal(value) == format_soql("{}", value)


def test_soql_literal_matches_simple_salesforce_on_random_strings():
    rng = random.Random(20240131)
    alphabet = "ab'\"\\\n\r\t\b\f %_(),;=-é✓"
    for _ in range(500):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert soql_literal(value) == format_soql("{}", value)
        assert unquote(soql_literal(value)) == value


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 1, 31, 0, 0, 0, tzinfo=UTC),
        datetime(2024, 1, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5))),
        datetime(2024, 2, 29, 12, 30, 0, tzinfo=timezone(timedelta(hours=5, minutes=30))),
    ],
)
def test_datetime_literals_are_utc_with_z_and_the_same_instant_as_simple_salesforce(moment):
    ours = soql_literal(moment)
    assert ours.endswith("Z") and len(ours) == len("2024-01-31T00:00:00Z")
    theirs = format_soql("{}", moment)  # simple_salesforce writes +00:00; same instant
    assert datetime.fromisoformat(ours) == datetime.fromisoformat(theirs) == moment
    assert ours == theirs.replace("+00:00", "Z")


def test_datetime_literal_examples():
    assert soql_literal(datetime(2024, 1, 31, 1, 2, 3, tzinfo=timezone(timedelta(hours=2)))) == "2024-01-30T23:02:03Z"


def test_soql_literal_refuses_what_it_cannot_render_exactly():
    with pytest.raises(ValueError, match="time zone"):
        soql_literal(datetime(2024, 1, 31))  # naive: simple_salesforce would read it in local time
    with pytest.raises(ValueError, match="whole seconds"):
        soql_literal(datetime(2024, 1, 31, 0, 0, 0, 500, tzinfo=UTC))
    for not_a_number in (float("nan"), float("inf"), float("-inf")):
        with pytest.raises(ValueError):
            soql_literal(not_a_number)
    with pytest.raises(ValueError, match="control characters"):
        soql_literal("nul\x00byte")
    with pytest.raises(ValueError, match="empty list"):
        soql_literal([])
    with pytest.raises(TypeError):
        soql_literal(object())
    with pytest.raises(TypeError):
        soql_literal({"a": 1})


def test_soql_literal_details():
    assert soql_literal(True) == "true" and soql_literal(1) == "1"  # bool is not rendered as an int
    assert soql_literal(1e16) == "10000000000000000"  # never exponent notation
    assert soql_literal(1e-7) == "0.0000001"
    names = {f"name{i:02d}" for i in range(30)}
    assert soql_literal(names) == "(" + ",".join(f"'{n}'" for n in sorted(names)) + ")"  # reproducible order


def unquote(literal: str) -> str:
    """Reads a SOQL string literal back the way Salesforce would, failing on anything unescaped."""
    assert literal[0] == literal[-1] == "'"
    escapes = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "r": "\r", "t": "\t", "b": "\b", "f": "\f"}
    out, body, index = [], literal[1:-1], 0
    while index < len(body):
        char = body[index]
        assert char != "'", f"unescaped quote would end the literal early: {literal!r}"
        if char == "\\":
            out.append(escapes[body[index + 1]])
            index += 2
        else:
            out.append(char)
            index += 1
    return "".join(out)


@pytest.mark.parametrize("value", [v for v in PLAIN_VALUES if isinstance(v, str)], ids=repr)
def test_string_literals_read_back_to_the_original_value(value):
    assert unquote(soql_literal(value)) == value
