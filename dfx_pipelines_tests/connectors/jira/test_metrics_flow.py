"""Flow metrics (stage replay, cycle time, throughput, WIP, issues by stage) on hand-built Jira issue
histories, plus a randomized comparison against a differently written replay."""

from __future__ import annotations

import itertools
import random
from collections import Counter
from datetime import UTC, date, datetime, timedelta, timezone

import numpy
import pandas
import pytest

from dfx_pipelines.connectors.jira.metrics import (
    CycleTimeRecord,
    FlowTallies,
    JiraDataError,
    Workflow,
    cycle_time_rows,
    cycle_times,
    issue_status_history,
    linear_percentile,
    stage_count_rows,
    throughput_rows,
    wip_rows,
    workflow_from_board_configuration,
    workflow_from_config,
)
from dfx_pipelines.platform.errors import ConfigError

STATUS_IDS = {
    "Backlog": "1",
    "Selected": "2",
    "In Progress": "3",
    "Review": "4",
    "Done": "5",
    "Closed": "6",
    "Blocked": "99",
}

WORKFLOW = workflow_from_config(
    {
        "stages": [
            {"name": "Backlog", "statuses": ["Backlog"]},
            {"name": "Committed", "statuses": ["Selected"]},
            {"name": "In Progress", "statuses": ["In Progress"]},
            {"name": "Review", "statuses": ["Review"]},
            {"name": "Done", "statuses": ["Done", "Closed"]},
        ],
        "committed": "Committed",
        "done": "Done",
    }
)


def jan(day: int, hour: int = 12) -> str:
    return f"2024-01-{day:02d}T{hour:02d}:00:00.000+0000"


def issue_json(
    key: str, created: str, moves: list[tuple[str, str, str]], current: str | None = None, issue_type: str = "Story"
) -> dict:
    """A search result with `expand=changelog`; `moves` are (timestamp, from status, to status)."""
    current = current or (moves[-1][2] if moves else "Backlog")
    histories = [
        {
            "id": str(n),
            "created": at,
            "items": [
                {
                    "field": "priority",
                    "fieldtype": "jira",
                    "fieldId": "priority",
                    "fromString": "Low",
                    "toString": "High",
                },
                {
                    "field": "status",
                    "fieldtype": "jira",
                    "fieldId": "status",
                    "from": STATUS_IDS[old],
                    "fromString": old,
                    "to": STATUS_IDS[new],
                    "toString": new,
                },
            ],
        }
        for n, (at, old, new) in enumerate(moves)
    ]
    return {
        "id": key.split("-")[1],
        "key": key,
        "fields": {
            "created": created,
            "issuetype": {"name": issue_type},
            "project": {"key": key.split("-")[0]},
            "status": {"id": STATUS_IDS[current], "name": current},
        },
        "changelog": {"startAt": 0, "maxResults": len(histories), "total": len(histories), "histories": histories},
    }


def record_of(issue: dict, workflow: Workflow = WORKFLOW) -> CycleTimeRecord:
    return next(cycle_times([issue_status_history(issue)], workflow))


def d(day: int) -> date:
    return date(2024, 1, day)


def test_straight_run_through_the_workflow() -> None:
    record = record_of(
        issue_json(
            "P-1",
            jan(1),
            [
                (jan(2), "Backlog", "Selected"),
                (jan(4), "Selected", "In Progress"),
                (jan(5), "In Progress", "Review"),
                (jan(8), "Review", "Done"),
            ],
        )
    )
    assert record.stage_dates == (d(1), d(2), d(4), d(5), d(8))
    assert (record.committed_date, record.done_date, record.cycle_time_days) == (d(2), d(8), 6)
    assert record.unmapped_statuses == ()


def test_backwards_move_clears_later_stages_and_reentry_takes_the_later_date() -> None:
    record = record_of(
        issue_json(
            "P-2",
            jan(1),
            [
                (jan(2), "Backlog", "Selected"),
                (jan(3), "Selected", "In Progress"),
                (jan(4), "In Progress", "Review"),
                (jan(5), "Review", "In Progress"),  # back: Review's Jan 4 is wiped, In Progress keeps Jan 3
                (jan(7), "In Progress", "Review"),
                (jan(9), "Review", "Done"),
            ],
        )
    )
    assert record.stage_dates == (d(1), d(2), d(3), d(7), d(9))
    assert record.cycle_time_days == 7


def test_move_back_to_backlog_restarts_the_cycle() -> None:
    record = record_of(
        issue_json(
            "P-3",
            jan(1),
            [
                (jan(2), "Backlog", "Selected"),
                (jan(3), "Selected", "In Progress"),
                (jan(4), "In Progress", "Backlog"),
                (jan(6), "Backlog", "Selected"),
                (jan(8), "Selected", "Done"),
            ],
        )
    )
    assert record.stage_dates == (d(1), d(6), d(8), d(8), d(8))
    assert record.cycle_time_days == 2


def test_reopened_issue_is_no_longer_done() -> None:
    record = record_of(
        issue_json(
            "P-4",
            jan(1),
            [(jan(2), "Backlog", "In Progress"), (jan(5), "In Progress", "Done"), (jan(6), "Done", "Review")],
        )
    )
    assert record.stage_dates == (d(1), d(2), d(2), d(6), None)
    assert (record.done_date, record.cycle_time_days) == (None, None)


def test_skipped_stages_take_the_next_entered_stage_date() -> None:
    record = record_of(issue_json("P-5", jan(1), [(jan(3), "Backlog", "In Progress"), (jan(6), "In Progress", "Done")]))
    assert record.stage_dates == (d(1), d(3), d(3), d(6), d(6))
    assert record.cycle_time_days == 3


def test_never_committed_issues_have_no_cycle_time_and_are_left_out() -> None:
    backlog_only = record_of(issue_json("P-6", jan(1), []))
    in_progress = record_of(issue_json("P-7", jan(1), [(jan(2), "Backlog", "Selected")]))
    done = record_of(issue_json("P-8", jan(1), [(jan(2), "Backlog", "Selected"), (jan(5), "Selected", "Done")]))
    assert (backlog_only.committed_date, backlog_only.cycle_time_days) == (None, None)
    assert (in_progress.committed_date, in_progress.cycle_time_days) == (d(2), None)
    rows = {(r.measure, r.dimensions): r.value for r in cycle_time_rows([backlog_only, in_progress, done])}
    assert rows[("count", ())] == 1.0 and rows[("mean", ())] == 3.0


def test_issue_created_in_a_later_status_enters_the_earlier_stages_on_its_creation_day() -> None:
    no_changes = record_of(issue_json("P-9", jan(3), [], current="In Progress"))
    assert no_changes.stage_dates == (d(3), d(3), d(3), None, None)
    # The status at creation is the first change's `from`, not the current status.
    changed_later = record_of(issue_json("P-10", jan(3), [(jan(5), "Review", "Done")]))
    assert changed_later.stage_dates == (d(3), d(3), d(3), d(3), d(5))
    assert changed_later.cycle_time_days == 2
    # Created straight in done: committed is backfilled from done, a 0-day cycle as in jira-agile-metrics.
    created_done = record_of(issue_json("P-11", jan(3), [], current="Done"))
    assert (created_done.committed_date, created_done.cycle_time_days) == (d(3), 0)


def test_unmapped_statuses_are_ignored_and_reported() -> None:
    record = record_of(
        issue_json(
            "P-12",
            jan(1),
            [
                (jan(3), "Backlog", "In Progress"),
                (jan(4), "In Progress", "Review"),
                (jan(5), "Review", "Blocked"),
                (jan(6), "Blocked", "Done"),
            ],
        )
    )
    assert record.stage_dates == (d(1), d(3), d(3), d(4), d(6))  # "Blocked" wiped nothing
    assert record.unmapped_statuses == ("Blocked",)


def test_days_are_utc_days_and_histories_are_replayed_in_time_order() -> None:
    issue = issue_json(
        "P-13",
        "2024-01-01T09:00:00.000+01:00",
        [("2024-01-05T12:00:00Z", "In Progress", "Done"), ("2024-01-02T23:30:00.000-0500", "Backlog", "In Progress")],
    )
    record = record_of(issue)
    # 23:30 at -05:00 is 04:30 UTC the next day.
    assert record.stage_dates == (d(1), d(3), d(3), d(5), d(5))


def test_status_ids_from_a_board_configuration_survive_a_status_rename() -> None:
    board = {
        "columnConfig": {
            "columns": [
                {"name": "To Do", "statuses": [{"id": "1", "self": "x"}, {"id": "2", "self": "x"}]},
                {"name": "Doing", "statuses": [{"id": "3", "self": "x"}, {"id": "4", "self": "x"}]},
                {"name": "Done", "statuses": [{"id": "5", "self": "x"}]},
            ]
        }
    }
    workflow = workflow_from_board_configuration(board, committed_stage="Doing", done_stage="Done")
    issue = issue_json("P-14", jan(1), [(jan(2), "Backlog", "In Progress"), (jan(4), "In Progress", "Done")])
    for history in issue["changelog"]["histories"]:
        history["items"][1]["toString"] = "Renamed since"
    record = record_of(issue, workflow)
    assert record.stage_dates == (d(1), d(2), d(4)) and record.cycle_time_days == 2


def test_truncated_embedded_changelog_is_refused_and_a_full_one_accepted() -> None:
    issue = issue_json("P-15", jan(1), [(jan(2), "Backlog", "In Progress"), (jan(4), "In Progress", "Done")])
    full = issue["changelog"]["histories"]
    issue["changelog"] = {"startAt": 0, "maxResults": 1, "total": 2, "histories": full[-1:]}
    with pytest.raises(JiraDataError, match="1 of 2"):
        issue_status_history(issue)
    assert next(cycle_times([issue_status_history(issue, full)], WORKFLOW)).cycle_time_days == 2


@pytest.mark.parametrize(
    "config",
    [
        {"stages": [{"name": "A", "statuses": ["x"]}, {"name": "A", "statuses": ["y"]}], "committed": "A", "done": "A"},
        {"stages": [{"name": "A", "statuses": ["x"]}, {"name": "B", "statuses": ["X"]}], "committed": "A", "done": "B"},
        {"stages": [{"name": "A"}, {"name": "B"}], "committed": "B", "done": "A"},
        {"stages": [{"name": "A"}, {"name": "B"}], "committed": "A", "done": "C"},
        {"stages": [{"name": "A"}, {"name": "B"}], "committed": "A"},
    ],
)
def test_invalid_workflow_config_is_refused(config: dict) -> None:
    with pytest.raises(ConfigError):
        workflow_from_config(config)


def record(key: str, committed: date | None, done: date | None, issue_type: str = "Story") -> CycleTimeRecord:
    cycle = (done - committed).days if committed and done else None
    return CycleTimeRecord(key, issue_type, "P", (committed, committed, done, done, done), committed, done, cycle, ())


def test_percentiles_match_numpy_and_pandas_linear_interpolation() -> None:
    rng = random.Random(7)
    days = {"Story": [rng.randint(0, 40) for _ in range(37)], "Bug": [3, 1, 4, 1, 5, 9, 2, 6]}
    records = [
        record(f"P-{i}", d(1), d(1) + timedelta(days=v), t) for t, values in days.items() for i, v in enumerate(values)
    ]
    rows = {(r.dimension_dict.get("issue_type"), r.measure): r.value for r in cycle_time_rows(records)}
    everything = days["Story"] + days["Bug"]
    for issue_type, values in (("Story", days["Story"]), ("Bug", days["Bug"]), (None, everything)):
        assert rows[(issue_type, "count")] == len(values)
        assert rows[(issue_type, "mean")] == pytest.approx(numpy.mean(values))
        for p in (50, 85, 95):
            assert rows[(issue_type, f"p{p}")] == pytest.approx(numpy.percentile(values, p, method="linear"))
            assert rows[(issue_type, f"p{p}")] == pytest.approx(
                pandas.Series(values).quantile(p / 100, interpolation="linear")
            )
    assert linear_percentile([1, 2, 3, 4], 50) == 2.5
    assert linear_percentile([10], 95) == 10
    assert cycle_time_rows([record("P-1", d(1), None)]) == []


def test_throughput_counts_completions_per_day_with_zero_days() -> None:
    records = [
        record("A", d(1), d(2)),
        record("B", d(1), d(2)),
        record("C", d(3), d(5)),
        record("D", d(2), None),
        record("E", d(1), d(9)),
    ]
    rows = throughput_rows(records, d(1), d(6))
    assert [(r.period, r.value) for r in rows] == [(d(1), 0), (d(2), 2), (d(3), 0), (d(4), 0), (d(5), 1), (d(6), 0)]
    assert {(r.metric, r.measure) for r in rows} == {("throughput", "completed_issues")}


def test_wip_counts_committed_not_yet_done_at_end_of_each_day() -> None:
    records = [
        record("A", d(2), d(5)),
        record("B", d(3), None),
        record("C", d(4), d(4)),  # same-day cycle: never in WIP at the end of a day
        record("D", date(2023, 12, 30), d(3)),  # committed before the range
        record("E", None, None),  # never committed
        record("F", d(9), d(10)),  # after the range
    ]
    rows = wip_rows(records, d(1), d(6))
    assert [r.value for r in rows] == [1, 2, 2, 2, 1, 1]
    assert [r.period for r in rows] == [d(n) for n in range(1, 7)]


def test_issue_counts_by_stage_at_a_date_agree_with_wip() -> None:
    issues = [
        issue_json(
            "P-1", jan(1), [(jan(2), "Backlog", "Selected"), (jan(4), "Selected", "Review"), (jan(6), "Review", "Done")]
        ),
        issue_json("P-2", jan(1), [(jan(3), "Backlog", "In Progress")]),
        issue_json("P-3", jan(2), []),
        issue_json("P-4", jan(1), [(jan(2), "Backlog", "Done")]),
        issue_json("P-5", jan(9), []),  # created after the date
    ]
    records = list(cycle_times(map(issue_status_history, issues), WORKFLOW))
    on_4th = {r.dimension_dict["stage"]: r.value for r in stage_count_rows(records, WORKFLOW, d(4))}
    assert on_4th == {"Backlog": 1, "Committed": 0, "In Progress": 1, "Review": 1, "Done": 1}
    for day in range(1, 9):
        counts = {r.dimension_dict["stage"]: r.value for r in stage_count_rows(records, WORKFLOW, d(day))}
        wip = wip_rows(records, d(day), d(day))[0].value
        assert counts["Committed"] + counts["In Progress"] + counts["Review"] == wip


# --- randomized comparison -------------------------------------------------------------------------

RANDOM_STATUSES = ["Backlog", "Selected", "In Progress", "Review", "Done", "Closed", "Blocked"]
STAGE_OF_STATUS = {"Backlog": 0, "Selected": 1, "In Progress": 2, "Review": 3, "Done": 4, "Closed": 4}


def random_issue(rng: random.Random, n: int) -> tuple[dict, list[tuple[datetime, str]]]:
    """A random issue JSON and its true (UTC moment, status) sequence, starting at creation."""
    moment = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 60 * 24 * 30))
    sequence = [(moment, rng.choice(RANDOM_STATUSES))]
    for _ in range(rng.randint(0, 9)):
        moment += timedelta(minutes=rng.randint(1, 60 * 24 * 4))
        sequence.append((moment, rng.choice([s for s in RANDOM_STATUSES if s != sequence[-1][1]])))

    def jira_text(at: datetime) -> str:
        offset = timedelta(minutes=rng.choice([0, 60, -300, 330, 600]))
        local = at.astimezone(timezone(offset))
        text = local.strftime("%Y-%m-%dT%H:%M:%S.000%z")
        return text.replace("+0000", "Z") if rng.random() < 0.2 else text

    moves = [(jira_text(at), old, new) for (_, old), (at, new) in itertools.pairwise(sequence)]
    rng.shuffle(moves)  # the replay must sort by time itself
    return issue_json(
        f"R-{n}", jira_text(sequence[0][0]), moves, current=sequence[-1][1], issue_type=rng.choice(["Story", "Bug"])
    ), sequence


def expected_stage_dates(sequence: list[tuple[datetime, str]]) -> list[date | None]:
    """Independent formulation: a stage's own date is its first entry after the last entry into any
    earlier stage; a stage without one takes the nearest later stage's own date."""
    mapped = [(STAGE_OF_STATUS[s], at.date()) for at, s in sequence if s in STAGE_OF_STATUS]
    own: list[date | None] = []
    for stage in range(5):
        last_earlier = max((i for i, (s, _) in enumerate(mapped) if s < stage), default=-1)
        entries = [day for s, day in mapped[last_earlier + 1 :] if s == stage]
        own.append(entries[0] if entries else None)
    return [next((own[t] for t in range(stage, 5) if own[t] is not None), None) for stage in range(5)]


def test_random_histories_match_an_independent_replay() -> None:
    rng = random.Random(20240131)
    generated = [random_issue(rng, n) for n in range(300)]
    records = list(cycle_times((issue_status_history(issue) for issue, _ in generated), WORKFLOW))
    expected_cycles = []
    for (issue, sequence), got in zip(generated, records):
        dates = expected_stage_dates(sequence)
        cycle = (dates[4] - dates[1]).days if dates[1] and dates[4] else None
        assert got.stage_dates == tuple(dates), issue["key"]
        assert got.cycle_time_days == cycle, issue["key"]
        expected_cycles.append((issue["fields"]["issuetype"]["name"], cycle, dates[1], dates[4]))
    done = [(t, c) for t, c, _, _ in expected_cycles if c is not None]
    assert 30 < len(done) < 290  # the generator exercises both outcomes

    frame = pandas.DataFrame(done, columns=["issue_type", "cycle"])
    rows = {(r.dimension_dict.get("issue_type"), r.measure): r.value for r in cycle_time_rows(records)}
    for issue_type, group in frame.groupby("issue_type"):
        assert rows[(issue_type, "p85")] == pytest.approx(group["cycle"].quantile(0.85, interpolation="linear"))
        assert rows[(issue_type, "mean")] == pytest.approx(group["cycle"].mean())

    first, last = d(1), date(2024, 3, 15)
    wip = [r.value for r in wip_rows(records, first, last)]
    throughput = [r.value for r in throughput_rows(records, first, last)]
    completions = Counter(done_day for _, c, _, done_day in expected_cycles if c is not None)
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        in_progress = sum(
            1 for _, _, start, end in expected_cycles if start and start <= day and not (end and end <= day)
        )
        assert wip[offset] == in_progress, day
        assert throughput[offset] == completions[day], day


@pytest.mark.parametrize(
    "names", [("cycle_time_days", "throughput", "wip"), ("throughput", "wip"), ("cycle_time_days",), ("wip",)]
)
def test_flow_tallies_fed_once_equal_each_reducer_over_the_records(names: tuple[str, ...]) -> None:
    """The one-pass reducer (each record added once, then dropped) gives the rows of each metric's own
    reducer over the same records, for any subset and ranges inside, around and after the records."""
    rng = random.Random(7)
    records = list(
        cycle_times((issue_status_history(issue) for issue, _ in (random_issue(rng, n) for n in range(300))), WORKFLOW)
    )
    for first, last in (
        (d(1), date(2024, 3, 15)),
        (d(20), d(20)),
        (date(2023, 12, 1), date(2024, 1, 10)),
        (date(2025, 1, 1), date(2025, 1, 3)),
    ):
        tallies = FlowTallies(first, last, names)
        for record in records:
            tallies.add(record)
        alone = {
            "cycle_time_days": cycle_time_rows(records),
            "throughput": throughput_rows(records, first, last),
            "wip": wip_rows(records, first, last),
        }
        assert tallies.rows() == {name: alone[name] for name in names}, (first, last)
