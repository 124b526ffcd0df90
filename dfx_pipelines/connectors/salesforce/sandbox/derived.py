"""Fields Salesforce computes itself on every write: stage flags, names, closed flags, formula values.

`derive(obj, merged_row, changed, now)` returns the extra stored values implied by a write, so records
written through the API stay as consistent as the generated ones (a Closed Won opportunity is IsWon).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from .schema import STAGE_INFO
from .values import store_datetime


def derive(obj: str, row: dict[str, Any], changed: set[str], now: datetime) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if obj == "Opportunity":
        extra.update(_opportunity(row, changed))
    elif obj in ("Contact", "Lead", "User") and changed & {"FirstName", "LastName"}:
        extra["Name"] = " ".join(part for part in (row.get("FirstName"), row.get("LastName")) if part)
    elif obj == "Case" and "Status" in changed:
        closed = row.get("Status") == "Closed"
        extra["IsClosed"] = int(closed)
        if closed and not row.get("ClosedDate"):
            extra["ClosedDate"] = store_datetime(now)
        elif not closed:
            extra["ClosedDate"] = None
    elif obj == "Task" and "Status" in changed:
        extra["IsClosed"] = int(row.get("Status") == "Completed")
    elif obj == "CampaignMember" and "Status" in changed:
        responded = row.get("Status") == "Responded"
        extra["HasResponded"] = int(responded)
        if responded and not row.get("FirstRespondedDate"):
            extra["FirstRespondedDate"] = now.date().isoformat()
    elif obj == "CaseMilestone" and "CompletionDate" in changed:
        extra["IsCompleted"] = int(row.get("CompletionDate") is not None)
    return extra


def _opportunity(row: dict[str, Any], changed: set[str]) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    stage = STAGE_INFO.get(row.get("StageName") or "")
    if "StageName" in changed and stage is not None:
        _, probability, forecast, is_closed, is_won = stage
        extra.update(IsClosed=int(is_closed), IsWon=int(is_won), ForecastCategoryName=forecast)
        if "Probability" not in changed:
            extra["Probability"] = float(probability)
    percent = extra.get("Probability", row.get("Probability"))
    amount = row.get("Amount")
    expected = None if amount is None or percent is None else round(amount * percent / 100.0, 2)
    extra["ExpectedRevenue"] = expected
    extra["Weighted_Amount__c"] = expected
    if "CloseDate" in changed and row.get("CloseDate"):
        close = date.fromisoformat(row["CloseDate"])
        extra["FiscalYear"] = close.year
        extra["FiscalQuarter"] = (close.month - 1) // 3 + 1
    return extra


def opportunity_history_row(row: dict[str, Any]) -> dict[str, Any]:
    """The OpportunityHistory snapshot Salesforce writes when stage, amount, probability or close date change."""
    return {
        "OpportunityId": row["Id"],
        "StageName": row.get("StageName"),
        "Amount": row.get("Amount"),
        "ExpectedRevenue": row.get("ExpectedRevenue"),
        "CloseDate": row.get("CloseDate"),
        "Probability": row.get("Probability"),
        "ForecastCategory": row.get("ForecastCategoryName"),
    }


HISTORY_TRIGGERS = frozenset({"StageName", "Amount", "CloseDate", "Probability"})
