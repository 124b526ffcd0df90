"""Random but plausible activity for `SalesforceOrg.mutate`: deals move stage, cases close, records come and go."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .errors import SalesforceApiError
from .schema import LEAD_SOURCES, OPPORTUNITY_STAGES, REGIONS

if TYPE_CHECKING:
    from .cascade import DeletePlan
    from .org import SalesforceOrg

MUTABLE_OBJECTS = ("Opportunity", "Account", "Contact", "Lead", "Case", "Task", "Event", "Deal_Review__c")
_WEIGHTS = (5, 1, 1, 2, 2, 2, 1, 1)
_OPEN_STAGES = [s[0] for s in OPPORTUNITY_STAGES if not s[3]]


def random_change(org: SalesforceOrg, rng: random.Random) -> tuple[str, str, str, DeletePlan | None]:
    """One random create, update or delete; returns (kind, object, id, the delete's cascade or None).

    A delete the org refuses (an Account or Contact that still has Cases: DELETE_FAILED) becomes an
    update of the same record, as a user who met the error would do something else with it."""
    obj = rng.choices(MUTABLE_OBJECTS, weights=_WEIGHTS)[0]
    roll = rng.random()
    if roll < 0.30:
        return "created", obj, org.create(obj, _new_fields(org, obj, rng)), None
    record_id = org.random_id(obj, rng)
    if record_id is None:
        return "created", obj, org.create(obj, _new_fields(org, obj, rng)), None
    if roll >= 0.85:
        try:
            return "deleted", obj, record_id, org.delete(obj, record_id)
        except SalesforceApiError as error:
            if error.error_code != "DELETE_FAILED":
                raise
    org.update(obj, record_id, _changed_fields(org, obj, record_id, rng))
    return "updated", obj, record_id, None


def _today_plus(org: SalesforceOrg, days: int) -> str:
    return (org.now + timedelta(days=days)).date().isoformat()


def _new_fields(org: SalesforceOrg, obj: str, rng: random.Random) -> dict[str, Any]:
    account = org.random_id("Account", rng)
    contact = org.random_id("Contact", rng)
    builders: dict[str, Callable[[], dict[str, Any]]] = {
        "Opportunity": lambda: {
            "Name": f"New deal {rng.randint(1000, 9999)}",
            "AccountId": account,
            "StageName": rng.choice(_OPEN_STAGES[:3]),
            "CloseDate": _today_plus(org, rng.randint(14, 120)),
            "Amount": float(rng.randrange(1_000, 200_000, 100)),
            "LeadSource": rng.choice(LEAD_SOURCES),
            "Region__c": rng.choice(REGIONS),
        },
        "Account": lambda: {
            "Name": f"Newco {rng.randint(1000, 9999)} Ltd",
            "Industry": "Technology",
            "Type": "Prospect",
        },
        "Contact": lambda: {"LastName": rng.choice(("Ng", "Berg", "Costa")), "FirstName": "Sam", "AccountId": account},
        "Lead": lambda: {
            "LastName": "Prospect",
            "Company": f"Lead Co {rng.randint(1, 999)}",
            "Status": "Open - Not Contacted",
        },
        "Case": lambda: {
            "Subject": "New issue",
            "Status": "New",
            "Priority": rng.choice(("High", "Medium", "Low")),
            "AccountId": account,
        },
        "Task": lambda: {
            "Subject": "Call",
            "Status": "Not Started",
            "Priority": "Normal",
            "Type": "Call",
            "WhoId": contact,
            "ActivityDate": _today_plus(org, 3),
        },
        "Event": lambda: {"Subject": "Demo", "Type": "Meeting", "DurationInMinutes": 60, "WhoId": contact},
        "Deal_Review__c": lambda: {
            "Name": f"DR-N{rng.randint(1, 99999):05d}",
            "Risk_Level__c": "Medium",
            "Score__c": 5.0,
        },
    }
    return builders[obj]()


def _changed_fields(org: SalesforceOrg, obj: str, record_id: str, rng: random.Random) -> dict[str, Any]:
    if obj == "Opportunity":
        row = org.get(obj, record_id) or {}
        if row.get("IsClosed"):
            return {"Forecast_Score__c": round(rng.uniform(0, 100), 1)}
        stage = row.get("StageName")
        position = _OPEN_STAGES.index(stage) if stage in _OPEN_STAGES else 0
        if rng.random() < 0.3:
            return {"StageName": rng.choice(("Closed Won", "Closed Lost")), "CloseDate": org.now.date().isoformat()}
        next_stage = _OPEN_STAGES[min(position + 1, len(_OPEN_STAGES) - 1)]
        return {"StageName": next_stage, "Amount": float(rng.randrange(1_000, 250_000, 100))}
    choices: dict[str, Callable[[], dict[str, Any]]] = {
        "Account": lambda: {"Rating": rng.choice(("Hot", "Warm", "Cold")), "NumberOfEmployees": rng.randint(5, 5000)},
        "Contact": lambda: {"Title": rng.choice(("CTO", "Head of Sales", "Buyer"))},
        "Lead": lambda: {"Status": rng.choice(("Working - Contacted", "Closed - Not Converted"))},
        "Case": lambda: {"Status": rng.choice(("Working", "Closed", "Escalated"))},
        "Task": lambda: {"Status": "Completed"},
        "Event": lambda: {"Location": rng.choice(("Zoom", "HQ"))},
        "Deal_Review__c": lambda: {"Score__c": round(rng.uniform(1, 10), 1), "Approved__c": rng.random() < 0.5},
    }
    return choices[obj]()
