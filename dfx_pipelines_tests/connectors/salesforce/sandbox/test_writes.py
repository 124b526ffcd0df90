"""PATCH write-back: updateable fields only, If-Unmodified-Since, and the audit of every attempt."""

from __future__ import annotations

import email.utils
from datetime import timedelta

import pytest
from simple_salesforce.exceptions import SalesforceError, SalesforceMalformedRequest, SalesforceResourceNotFound


def _some_open_opportunity(sf) -> dict:
    return sf.query("SELECT Id, LastModifiedDate, StageName FROM Opportunity WHERE IsClosed = false LIMIT 1")[
        "records"
    ][0]


def test_patch_updateable_field(sandbox, sf):
    record = _some_open_opportunity(sf)
    sandbox.org.advance(timedelta(minutes=1))
    assert sf.Opportunity.update(record["Id"], {"Forecast_Score__c": 77.5}) == 204
    after = sf.Opportunity.get(record["Id"])
    assert after["Forecast_Score__c"] == 77.5
    assert after["LastModifiedDate"] > record["LastModifiedDate"]
    [audit] = sandbox.app.write_audit
    assert (audit.object, audit.record_id, audit.fields, audit.outcome, audit.status) == (
        "Opportunity",
        record["Id"],
        {"Forecast_Score__c": 77.5},
        "updated",
        204,
    )


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"Weighted_Amount__c": 1.0}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"IsWon": True}, "INVALID_FIELD_FOR_INSERT_UPDATE"),
        ({"No_Such__c": 1}, "INVALID_FIELD"),
        ({"Forecast_Score__c": "high"}, "JSON_PARSER_ERROR"),
    ],
)
def test_patch_refused_fields(sandbox, sf, fields, code):
    record = _some_open_opportunity(sf)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(record["Id"], fields)
    assert raised.value.content[0]["errorCode"] == code
    assert sandbox.app.write_audit[-1].outcome == code
    assert sf.Opportunity.get(record["Id"])["LastModifiedDate"] == record["LastModifiedDate"]


def test_if_unmodified_since(sandbox, sf):
    record = _some_open_opportunity(sf)
    org = sandbox.org
    stale = email.utils.format_datetime(org.now - timedelta(days=800), usegmt=True)
    with pytest.raises(SalesforceError) as raised:
        sf.Opportunity.update(record["Id"], {"Forecast_Score__c": 1.0}, headers={"If-Unmodified-Since": stale})
    assert raised.value.status == 412
    assert sandbox.app.write_audit[-1].status == 412
    fresh = email.utils.format_datetime(org.now, usegmt=True)
    assert (
        sf.Opportunity.update(record["Id"], {"Forecast_Score__c": 2.0}, headers={"If-Unmodified-Since": fresh}) == 204
    )


def test_stage_change_keeps_derived_fields_consistent(sandbox, sf):
    record = _some_open_opportunity(sf)
    sf.Opportunity.update(record["Id"], {"StageName": "Closed Won"})
    after = sf.Opportunity.get(record["Id"])
    assert (after["IsClosed"], after["IsWon"], after["Probability"], after["ForecastCategoryName"]) == (
        True,
        True,
        100.0,
        "Closed",
    )
    history = sf.query(
        f"SELECT StageName FROM OpportunityHistory WHERE OpportunityId = '{record['Id']}' ORDER BY CreatedDate DESC, Id DESC LIMIT 1"
    )
    assert history["records"][0]["StageName"] == "Closed Won"


def test_patch_unknown_or_deleted_record(sandbox, sf):
    record = _some_open_opportunity(sf)
    sandbox.org.delete("Opportunity", record["Id"])
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(record["Id"], {"Forecast_Score__c": 1.0})
    assert raised.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    missing = record["Id"][:9] + "zzzzzz"
    with pytest.raises(SalesforceResourceNotFound):
        sf.Opportunity.update(missing, {"Forecast_Score__c": 1.0})


def test_get_record_with_fields(sandbox, sf):
    record = _some_open_opportunity(sf)
    got = sf.Opportunity.get(record["Id"], params={"fields": "Name,Amount"})
    assert set(got) == {"attributes", "Name", "Amount"}
