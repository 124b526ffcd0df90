"""The shape every metric reducer returns: one aggregated number for one metric, measure, period and
set of dimensions. Plain data, no I/O, so reducers stay pure and the metric store stays generic."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass(frozen=True)
class MetricRow:
    metric: str  # what is measured, e.g. "open_pipeline_by_stage"
    measure: str  # which number of it, e.g. "count", "amount", "weighted_amount"
    value: float | None  # None when undefined (a rate over zero cases), never NaN
    period: date | None = None  # the day (or period start) the number belongs to; None for snapshots
    dimensions: tuple[tuple[str, str], ...] = field(default=())  # sorted (name, value) pairs

    @staticmethod
    def dims(**values: object) -> tuple[tuple[str, str], ...]:
        """Dimensions in canonical form: sorted, values as strings, None as ''."""
        return tuple(sorted((key, "" if value is None else str(value)) for key, value in values.items()))

    @property
    def dimension_dict(self) -> dict[str, str]:
        return dict(self.dimensions)
