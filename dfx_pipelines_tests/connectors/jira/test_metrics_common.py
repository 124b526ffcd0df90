"""Shared readers (timestamps, field timelines) and the design rule that the metric modules stay pure."""

from __future__ import annotations

import ast
from datetime import UTC, datetime
from pathlib import Path

import pytest

import dfx_pipelines.connectors.jira.metrics as metrics
from dfx_pipelines.connectors.jira.metrics import JiraDataError, Timeline, parse_jira_timestamp, utc_day

UTC = UTC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-31T12:34:56.000+0000", datetime(2024, 1, 31, 12, 34, 56, tzinfo=UTC)),
        ("2024-01-31T12:34:56Z", datetime(2024, 1, 31, 12, 34, 56, tzinfo=UTC)),
        ("2024-01-31T12:34:56.250+01:00", datetime(2024, 1, 31, 11, 34, 56, 250000, tzinfo=UTC)),
        ("2024-01-31T21:00:00.000-0500", datetime(2024, 2, 1, 2, 0, tzinfo=UTC)),
    ],
)
def test_jira_timestamps_become_aware_utc(text: str, expected: datetime) -> None:
    parsed = parse_jira_timestamp(text)
    assert parsed == expected and parsed.utcoffset().total_seconds() == 0
    assert utc_day(parsed) == expected.date()


@pytest.mark.parametrize("text", ["2024-01-31T12:34:56", "yesterday", "", None])
def test_timestamps_without_offset_or_unreadable_are_refused(text: str | None) -> None:
    with pytest.raises(JiraDataError):
        parse_jira_timestamp(text)  # type: ignore[arg-type]


def test_timeline_value_at_applies_changes_made_at_or_before_the_moment() -> None:
    t1, t2 = datetime(2024, 1, 2, tzinfo=UTC), datetime(2024, 1, 5, tzinfo=UTC)
    timeline = Timeline("a", (t1, t2), ("b", "c"))
    assert timeline.value_at(datetime(2024, 1, 1, tzinfo=UTC)) == "a"
    assert timeline.value_at(t1) == "b"
    assert timeline.value_at(datetime(2024, 1, 4, tzinfo=UTC)) == "b"
    assert timeline.value_at(t2) == "c"


ALLOWED_TOP_LEVEL = {
    "__future__",
    "bisect",
    "collections",
    "dataclasses",
    "datetime",
    "math",
    "re",
    "typing",
    "dfx_pipelines",
}
ALLOWED_PROJECT = (
    "dfx_pipelines.platform.errors",
    "dfx_pipelines.platform.metric_rows",
    "dfx_pipelines.connectors.jira.metrics",
)


def test_metric_modules_import_no_dagster_client_library_or_io() -> None:
    files = sorted(Path(metrics.__file__).parent.glob("metrics*.py"))
    assert len(files) >= 5
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] in ALLOWED_TOP_LEVEL, f"{path.name} imports {name}"
                if name.startswith("dfx_pipelines"):
                    assert name.startswith(ALLOWED_PROJECT), f"{path.name} imports {name}"
