"""The customer's PostgreSQL selection as stored: `schemas` = schema -> tables and views, and optionally
`objects` = "schema.table" -> the columns to narrow a table to (without it every column of the table is
selected). Pure: the registry validates it through the plugin's `selection_model`; connect then checks
it against the server's own catalog (`pg_catalog`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import IdentifierError
from dfx_pipelines.platform.registry import SelectionBase, unique_entries


def split_table(qualified: str) -> tuple[str, str]:
    """`schema.table` as its two checked names (a bare table name is refused: the schema is explicit)."""
    schema, dot, table = qualified.partition(".") if isinstance(qualified, str) else ("", "", "")
    if not dot:
        raise IdentifierError(f"invalid PostgreSQL table {qualified!r}: expected schema.table")
    return identifiers.postgres_schema(schema), identifiers.postgres_name(table, "table name")


class PostgresSelection(SelectionBase):
    schemas: dict[str, list[str]] = Field(default_factory=dict)
    objects: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("objects", "schemas")
    @classmethod
    def _no_duplicates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return unique_entries(value)

    def check(self, endpoint: Mapping[str, Any]) -> None:
        for schema, tables in self.schemas.items():
            identifiers.postgres_schema(schema)
            for table in tables:
                identifiers.postgres_name(table, "table name")
        for qualified, columns in self.objects.items():
            split_table(qualified)
            for column in columns:
                identifiers.postgres_name(column, "column name")

    def tables(self) -> list[tuple[str, str]]:
        return sorted((schema, table) for schema, tables in self.schemas.items() for table in tables)

    def is_selected(self, schema: str, table: str) -> bool:
        return table in self.schemas.get(schema, [])

    def columns_of(self, schema: str, table: str) -> list[str] | None:
        """The narrowed columns of a table, or None when the whole table is selected."""
        return self.objects.get(f"{schema}.{table}")
