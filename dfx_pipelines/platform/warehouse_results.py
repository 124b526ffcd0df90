"""What a SQL warehouse's metric query answers, as metric rows: shared by every connector whose customers
define aggregate specs (BigQuery, PostgreSQL, and Snowflake next). Pure: no client, no Dagster.

Each connector compiles a spec to one `GROUP BY day` query whose columns are the day (`PERIOD_ALIAS`),
the spec's group-by columns and the aggregate (`VALUE_ALIAS`); these functions read that shape.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from decimal import Decimal
from typing import Any

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow

PERIOD_ALIAS, VALUE_ALIAS = "dfx_period", "dfx_value"


def metric_number(value: Any, *, dates: bool = False) -> float | None:
    """An aggregate as the number stored; with `dates`, a date (MIN/MAX of a date column) as its ordinal."""
    if value is None:
        return None
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return float(value)
    if dates and isinstance(value, date):
        return float(value.toordinal())
    raise ConfigError(f"metric value {type(value).__name__} is not a number")


def result_rows(
    metric: str, measure: str, group_by: Sequence[str], rows: Iterable[Mapping[str, Any]], *, dates: bool = False
) -> list[MetricRow]:
    """Result rows (one per day and group) as metric rows, sorted by day and dimensions."""
    out = []
    for row in rows:
        period = row[PERIOD_ALIAS]
        if not isinstance(period, date):
            raise ConfigError(f"metric {metric}: period {period!r} is not a date")
        dims = MetricRow.dims(**{column: row[column] for column in group_by})
        out.append(MetricRow(metric, measure, metric_number(row[VALUE_ALIAS], dates=dates), period, dims))
    return sorted(out, key=lambda r: (r.period, r.dimensions))


def by_day(rows: Iterable[MetricRow]) -> dict[date, list[MetricRow]]:
    grouped: dict[date, list[MetricRow]] = defaultdict(list)
    for row in rows:
        assert row.period is not None
        grouped[row.period].append(row)
    return dict(grouped)


def results_markdown(rows: Sequence[MetricRow], limit: int = 40) -> str:
    """The result table a person sees in the UI (aggregates only)."""
    if not rows:
        return "_no rows: nothing matched in these days_"
    lines = ["| metric | measure | day | dimensions | value |", "|---|---|---|---|---:|"]  # numbers right-aligned
    for row in rows[:limit]:
        dims = ", ".join(f"{k}={v}" for k, v in row.dimensions) or "—"
        value = "—" if row.value is None else f"{row.value:,.4f}".rstrip("0").rstrip(".")
        lines.append(f"| {row.metric} | {row.measure} | {row.period} | {dims} | {value} |")
    if len(rows) > limit:
        lines.append(f"\n({len(rows) - limit} more rows)")
    return "\n".join(lines)
