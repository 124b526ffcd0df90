"""getUpdated / getDeleted over REST: windows, coverage, the 30-day reach and the id limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from .conftest import FIXED_NOW, client


def test_updated_and_deleted_follow_mutations(sandbox, sf):
    org = sandbox.org
    org.advance(timedelta(minutes=5))  # past every generated timestamp
    start = org.now
    org.advance(timedelta(minutes=1))
    summary = org.mutate(40, seed=1)
    assert summary.total == 40
    org.advance(timedelta(minutes=5))
    updated = sf.Opportunity.updated(start, org.now)
    deleted = sf.Opportunity.deleted(start, org.now)
    changed = set(summary.created.get("Opportunity", [])) | set(summary.updated.get("Opportunity", []))
    removed = set(summary.deleted.get("Opportunity", []))
    assert set(updated["ids"]) == changed - removed
    assert {r["id"] for r in deleted["deletedRecords"]} == removed
    assert updated["latestDateCovered"] == (org.now - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:00.000+0000")
    assert deleted["earliestDateAvailable"] == (org.now - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:00.000+0000")


def test_latest_date_covered_is_end_rounded_down_and_next_window_starts_there(sandbox, sf):
    org = sandbox.org
    start = org.now - timedelta(days=2)
    end = org.now - timedelta(hours=1, seconds=42)
    first = sf.Account.updated(start, end)
    assert first["latestDateCovered"] == end.strftime("%Y-%m-%dT%H:%M:00.000+0000")
    record_id = org.random_id("Account", __import__("random").Random(1))
    org.advance(timedelta(minutes=3))
    org.update("Account", record_id, {"Rating": "Hot"})
    org.advance(timedelta(minutes=3))
    from datetime import datetime

    covered = datetime.strptime(first["latestDateCovered"], "%Y-%m-%dT%H:%M:%S.000%z")
    second = sf.Account.updated(covered, org.now)
    assert record_id in second["ids"]
    assert not set(first["ids"]) & set(second["ids"]) - {record_id}


def test_window_older_than_30_days_is_invalid_replication_date(sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.updated(FIXED_NOW - timedelta(days=31), FIXED_NOW)
    assert raised.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.deleted(FIXED_NOW - timedelta(days=31), FIXED_NOW)
    assert raised.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_end_must_follow_start(sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.updated(FIXED_NOW - timedelta(hours=1), FIXED_NOW - timedelta(hours=2))
    assert raised.value.content[0]["errorCode"] == "INVALID_REPLICATION_DATE"


def test_more_ids_than_the_limit_is_exceeded_id_limit(make_sandbox):
    sandbox = make_sandbox(org_options={"id_limit": 10})
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.updated(FIXED_NOW - timedelta(days=29), FIXED_NOW)
    assert raised.value.content[0]["errorCode"] == "EXCEEDED_ID_LIMIT"
    small = sf.Opportunity.updated(FIXED_NOW - timedelta(hours=6), FIXED_NOW)
    assert len(small["ids"]) <= 10


def test_generated_deletes_are_in_the_log(make_sandbox):
    sandbox = make_sandbox(opportunities=3000)
    sandbox.org.advance(timedelta(minutes=2))  # past the replication lag
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    deleted = sf.Opportunity.deleted(FIXED_NOW - timedelta(days=29), sandbox.org.now)["deletedRecords"]
    soft = {
        r["Id"]
        for r in sf.query_all("SELECT Id FROM Opportunity WHERE IsDeleted = true", include_deleted=True)["records"]
    }
    assert deleted and {r["id"] for r in deleted} == soft


def test_non_replicateable_object(sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.OpportunityChangeEvent.updated(FIXED_NOW - timedelta(hours=1), FIXED_NOW)
    assert raised.value.content[0]["errorCode"] == "INVALID_TYPE_FOR_OPERATION"
