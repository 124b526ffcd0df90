"""Runs SOQL against a `SalesforceOrg`: parse, compile, execute, and hand back a server-side cursor to page through.

A records query snapshots the matching rowids in order when it runs (so paging is stable and cheap even
over a million rows) and reads the selected columns page by page. Aggregate queries are small: their
rows are materialised at once.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING, Any

from .soql_compile import Compiler, Plan
from .soql_parser import parse
from .values import json_value

if TYPE_CHECKING:
    from .org import SalesforceOrg

DEFAULT_API_VERSION = "59.0"


class QueryResult:
    """The result of one query: `total_size` rows, read with `page(start, size)`."""

    def __init__(self, org: SalesforceOrg, plan: Plan, version: str):
        self.org = org
        self.plan = plan
        self.version = version
        self.object_name = plan.obj.name
        self._rowids = array("q")
        self._rows: list[dict[str, Any]] = []
        if plan.kind == "records":
            self._rowids = array("q", (row[0] for row in org.run_sql(plan.sql, plan.params)))
            self.total_size = len(self._rowids)
        elif plan.kind == "aggregate":
            self._rows = [self._aggregate_record(row) for row in org.run_sql(plan.sql, plan.params)]
            self.total_size = len(self._rows)
        else:  # COUNT(): Salesforce answers with the count as totalSize and no records
            self.total_size = int(org.run_sql(plan.sql, plan.params)[0][0])

    @property
    def returns_records(self) -> bool:
        return self.plan.kind != "count"

    @property
    def row_count(self) -> int:
        """How many records there are to page through (0 for COUNT())."""
        return self.total_size if self.returns_records else 0

    def page(self, start: int, size: int) -> list[dict[str, Any]]:
        if self.plan.kind == "aggregate":
            return self._rows[start : start + size]
        if self.plan.kind == "count":
            return []
        rowids = self._rowids[start : start + size].tolist()
        if not rowids:
            return []
        rows = self.org.run_sql(self.plan.page_sql + f"({', '.join('?' * len(rowids))})", rowids)
        by_rowid = {row[0]: row for row in rows}
        return [self._record(by_rowid[rowid]) for rowid in rowids if rowid in by_rowid]

    def all_records(self) -> list[dict[str, Any]]:
        return self.page(0, self.row_count)

    def _url(self, object_name: str, record_id: str) -> str:
        return f"/services/data/v{self.version}/sobjects/{object_name}/{record_id}"

    def _record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        plan = self.plan
        record: dict[str, Any] = {"attributes": {"type": plan.obj.name, "url": self._url(plan.obj.name, row[1])}}
        for column in plan.columns:
            target: dict[str, Any] | None = record
            for depth in range(len(column.names) - 1):
                assert target is not None
                key = column.names[depth]
                if key not in target:
                    object_name, id_index = plan.relations[column.names[: depth + 1]]
                    related_id = row[id_index]
                    target[key] = (
                        None
                        if related_id is None
                        else {"attributes": {"type": object_name, "url": self._url(object_name, related_id)}}
                    )
                target = target[key]
                if target is None:
                    break
            if target is not None:
                target[column.names[-1]] = json_value(column.type, row[column.index])
        return record

    def _aggregate_record(self, row: tuple[Any, ...]) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": "AggregateResult"}}
        for (key, convert), value in zip(self.plan.outputs, row):
            record[key] = convert(value)
        return record


def execute(
    org: SalesforceOrg, text: str, *, include_deleted: bool = False, version: str = DEFAULT_API_VERSION
) -> QueryResult:
    """Parse, check and run `text`; raises `SalesforceApiError` exactly where Salesforce would answer 400."""
    query = parse(text)
    plan = Compiler(query, org.now.date(), include_deleted).compile()
    return QueryResult(org, plan, version)
