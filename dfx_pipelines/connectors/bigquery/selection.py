"""The customer's BigQuery selection as stored: `datasets` = dataset -> tables, and optionally
`objects` = "dataset.table" -> the columns to narrow a table to.

Pure: the registry validates it through the plugin's `selection_model`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.registry import SelectionBase, unique_entries


class BigQuerySelection(SelectionBase):
    datasets: dict[str, list[str]] = Field(default_factory=dict)
    objects: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("objects", "datasets")
    @classmethod
    def _no_duplicates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return unique_entries(value)

    def check(self, endpoint: Mapping[str, Any]) -> None:
        for dataset, tables in self.datasets.items():
            identifiers.bigquery_dataset(dataset)
            for table in tables:
                identifiers.bigquery_table(table)
        for qualified, columns in self.objects.items():
            dataset, _, table = qualified.partition(".")
            identifiers.bigquery_dataset(dataset)
            identifiers.bigquery_table(table)
            for column in columns:
                identifiers.bigquery_column(column)
