"""Deleting a record does what it does in Salesforce: an Account takes its Contacts and Opportunities (and
their activities, history and campaign memberships) to the Recycle Bin — queryAll sees them with
IsDeleted = true and getDeleted reports them — a lookup to it is emptied, and an Account or Contact that
still has Cases refuses with DELETE_FAILED and changes nothing. No live record is left pointing at a
deleted one, whether the delete came through REST, the random-activity generator or the seeded data.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from dfx_pipelines.connectors.salesforce.sandbox.mutations import MUTABLE_OBJECTS
from dfx_pipelines.connectors.salesforce.sandbox.org import SalesforceOrg
from dfx_pipelines.connectors.salesforce.sandbox.schema import CASCADE, CLEAR, OBJECTS, RESTRICT, STORED_OBJECTS

from .conftest import client


def ids(org: SalesforceOrg, sql: str, *params: object) -> set[str]:
    return {row[0] for row in org.run_sql(sql, params)}


def account_with(org: SalesforceOrg, *, cases: bool) -> str:
    """A live account with live contacts and opportunities, and with or without live cases."""
    condition = "EXISTS" if cases else "NOT EXISTS"
    rows = org.run_sql(
        f"SELECT a.Id FROM Account a WHERE a.IsDeleted = 0 "
        f'AND {condition} (SELECT 1 FROM "Case" c WHERE c.AccountId = a.Id AND c.IsDeleted = 0) '
        "AND EXISTS (SELECT 1 FROM Opportunity o WHERE o.AccountId = a.Id AND o.IsDeleted = 0) "
        "AND EXISTS (SELECT 1 FROM Contact c WHERE c.AccountId = a.Id AND c.IsDeleted = 0) ORDER BY a.Id LIMIT 1"
    )
    assert rows, f"the seeded org has no account {'with' if cases else 'without'} cases"
    return rows[0][0]


def dangling_references(org: SalesforceOrg) -> list[tuple[str, str, str, str]]:
    """(object, field, record, target) for every live record whose cascade/restrict/clear reference names a
    deleted record — what Salesforce never leaves behind."""
    found = []
    for obj in STORED_OBJECTS:
        for f in obj.fields:
            if f.type != "reference" or f.on_delete not in (CASCADE, RESTRICT, CLEAR):
                continue
            for target in f.reference_to:
                rows = org.run_sql(
                    f'SELECT child."Id", child."{f.name}" FROM "{obj.name}" child JOIN "{target}" parent '
                    f'ON parent."Id" = child."{f.name}" WHERE child."IsDeleted" = 0 AND parent."IsDeleted" = 1'
                )
                found += [(obj.name, f.name, row[0], row[1]) for row in rows]
    return found


def deleted_endpoint(sf, obj: str, start) -> set[str]:
    return {r["id"] for r in getattr(sf, obj).deleted(start, start + timedelta(days=1))["deletedRecords"]}


def test_deleting_an_account_through_rest_takes_its_contacts_and_opportunities_to_the_recycle_bin(sandbox, sf):
    org = sandbox.org
    org.advance(timedelta(minutes=5))  # past every generated timestamp
    start = org.now
    account = account_with(org, cases=False)
    contacts = ids(org, "SELECT Id FROM Contact WHERE AccountId = ? AND IsDeleted = 0", account)
    opportunities = ids(org, "SELECT Id FROM Opportunity WHERE AccountId = ? AND IsDeleted = 0", account)
    history = ids(
        org,
        "SELECT Id FROM OpportunityHistory WHERE IsDeleted = 0 AND OpportunityId IN (SELECT Id FROM Opportunity WHERE AccountId = ?)",
        account,
    )
    tasks = ids(
        org,
        "SELECT Id FROM Task WHERE IsDeleted = 0 AND (WhatId = ? OR WhatId IN (SELECT Id FROM Opportunity WHERE AccountId = ?) "
        "OR WhoId IN (SELECT Id FROM Contact WHERE AccountId = ?))",
        account,
        account,
        account,
    )
    earlier = {
        obj: ids(org, f"SELECT Id FROM {obj} WHERE AccountId = ? AND IsDeleted = 1", account)
        for obj in ("Opportunity", "Contact")
    }
    child = org.create("Account", {"Name": "Subsidiary Ltd", "ParentId": account})
    assert contacts and opportunities and history

    sf.Account.delete(account)
    org.advance(timedelta(minutes=5))  # past the replication lag

    # query no longer sees them; queryAll does, with IsDeleted = true.
    assert not sf.query(f"SELECT Id FROM Opportunity WHERE AccountId = '{account}'")["records"]
    for obj, live in (("Opportunity", opportunities), ("Contact", contacts)):
        gone = sf.query_all(f"SELECT Id, IsDeleted FROM {obj} WHERE AccountId = '{account}'", include_deleted=True)[
            "records"
        ]
        assert all(r["IsDeleted"] for r in gone)
        assert {r["Id"] for r in gone} == live | earlier[obj]  # the ones deleted before are there too

    # getDeleted reports every cascaded record under its own object, and getUpdated none of them.
    assert deleted_endpoint(sf, "Account", start) == {account}
    assert deleted_endpoint(sf, "Opportunity", start) == opportunities
    assert deleted_endpoint(sf, "Contact", start) == contacts
    assert deleted_endpoint(sf, "OpportunityHistory", start) == history
    assert deleted_endpoint(sf, "Task", start) == tasks
    assert not set(sf.Opportunity.updated(start, org.now)["ids"]) & opportunities

    # The subsidiary stays, its ParentId emptied (and that is a change getUpdated reports).
    assert sf.Account.get(child)["ParentId"] is None
    assert child in sf.Account.updated(start, org.now)["ids"]
    assert dangling_references(org) == []


def test_an_account_with_cases_is_not_deleted_and_nothing_changes(sandbox, sf):
    org = sandbox.org
    account = account_with(org, cases=True)
    name = org.get("Account", account)["Name"]
    numbers = sorted(
        r[0] for r in org.run_sql('SELECT CaseNumber FROM "Case" WHERE AccountId = ? AND IsDeleted = 0', (account,))
    )
    before = org.run_sql('SELECT COUNT(*) FROM "_deleted_log"'), [org.count(obj.name) for obj in STORED_OBJECTS]

    with pytest.raises(SalesforceMalformedRequest) as raised:  # what simple-salesforce raises for HTTP 400
        sf.Account.delete(account)

    assert raised.value.status == 400
    (error,) = raised.value.content
    assert (
        set(error) == {"errorCode", "message", "fields"}
        and error["errorCode"] == "DELETE_FAILED"
        and error["fields"] == []
    )
    assert error["message"].startswith(
        f"Your attempt to delete {name} could not be completed because it is associated with the following cases.: "
    )
    assert error["message"].rsplit(".: ", 1)[1].split(", ") == numbers
    assert (
        org.run_sql('SELECT COUNT(*) FROM "_deleted_log"'),
        [org.count(obj.name) for obj in STORED_OBJECTS],
    ) == before
    assert org.get("Account", account) is not None
    audit = sandbox.app.write_audit[-1]
    assert (audit.method, audit.record_id, audit.outcome, audit.status) == ("DELETE", account, "DELETE_FAILED", 400)


def test_a_case_reached_through_a_contact_also_blocks_the_account(sandbox, sf):
    org = sandbox.org
    account = account_with(org, cases=False)
    contact = sorted(ids(org, "SELECT Id FROM Contact WHERE AccountId = ? AND IsDeleted = 0", account))[0]
    case = org.create("Case", {"Subject": "Broken", "Status": "New", "ContactId": contact})  # no AccountId
    number = org.get("Case", case)["CaseNumber"]
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Account.delete(account)
    assert raised.value.content[0]["errorCode"] == "DELETE_FAILED" and raised.value.content[0]["message"].endswith(
        f".: {number}"
    )
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Contact.delete(contact)
    assert raised.value.content[0]["errorCode"] == "DELETE_FAILED"
    # Once the case is gone, the account goes, and the contact with it.
    sf.Case.delete(case)
    sf.Account.delete(account)
    assert org.get("Contact", contact) is None and org.get("Contact", contact, include_deleted=True)["IsDeleted"] == 1


def test_a_lookup_to_a_deleted_record_is_refused(sandbox, sf):
    org = sandbox.org
    account = account_with(org, cases=False)
    sf.Account.delete(account)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Contact.create({"LastName": "Late", "AccountId": account})
    assert raised.value.content == [
        {"message": "entity is deleted", "errorCode": "ENTITY_IS_DELETED", "fields": ["AccountId"]}
    ]
    live = org.random_id("Opportunity", __import__("random").Random(2))
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(live, {"AccountId": account})
    assert raised.value.content[0]["errorCode"] == "ENTITY_IS_DELETED"
    missing = account[:-6] + "ZZZZZZ"  # an account id of the right shape that names no record
    with pytest.raises(SalesforceMalformedRequest) as raised:
        sf.Opportunity.update(live, {"AccountId": missing})
    assert raised.value.content[0]["errorCode"] == "INVALID_CROSS_REFERENCE_KEY"


def test_the_seeded_org_leaves_no_live_record_pointing_at_a_deleted_one(make_sandbox):
    org = make_sandbox(opportunities=3000).org
    deleted_opportunities = ids(org, "SELECT Id FROM Opportunity WHERE IsDeleted = 1")
    assert deleted_opportunities  # the seed deletes some, and their history went with them
    assert not ids(
        org,
        "SELECT Id FROM OpportunityHistory WHERE IsDeleted = 0 AND OpportunityId IN (SELECT Id FROM Opportunity WHERE IsDeleted = 1)",
    )
    assert dangling_references(org) == []
    # Every seeded delete, cascaded ones included, is in the delete log exactly once, at or after creation.
    for obj in STORED_OBJECTS:
        soft = ids(org, f'SELECT Id FROM "{obj.name}" WHERE IsDeleted = 1')
        logged = org.run_sql('SELECT id FROM "_deleted_log" WHERE object = ?', (obj.name,))
        assert sorted(row[0] for row in logged) == sorted(soft), obj.name
    assert not org.run_sql(
        'SELECT 1 FROM "_deleted_log" l JOIN Task t ON t.Id = l.id WHERE l.deleted_date < t.CreatedDate'
    )


def test_random_activity_cascades_and_reports_what_it_deleted(make_sandbox):
    sandbox = make_sandbox(opportunities=400, seed=5)
    org = sandbox.org
    org.advance(timedelta(minutes=5))
    # Without cases, the generator's Account and Contact deletes cascade instead of being refused.
    for case in ids(org, 'SELECT Id FROM "Case" WHERE IsDeleted = 0'):
        org.delete("Case", case)
    org.advance(timedelta(minutes=5))
    start = org.now
    already = ids(org, "SELECT Id FROM Opportunity WHERE IsDeleted = 1")
    summary = org.mutate(600, seed=2)
    assert summary.total == 600
    org.advance(timedelta(minutes=5))
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    direct = set(summary.deleted.get("Account", []))
    cascaded = set(summary.deleted.get("Opportunity", [])) | set(summary.deleted.get("Contact", []))
    assert direct, "the generator deleted no account: pick another seed"
    theirs = (
        ids(org, "SELECT Id FROM Opportunity WHERE AccountId IN ({})".format(",".join("?" * len(direct))), *direct)
        - already
    )
    assert theirs and theirs <= cascaded
    for obj in (
        "Account",
        "Contact",
        "Opportunity",
        "Case",
        "Task",
        "Event",
        "Lead",
        "OpportunityHistory",
        "CampaignMember",
    ):
        assert deleted_endpoint(sf, obj, start) == set(summary.deleted.get(obj, [])), obj
        if obj in MUTABLE_OBJECTS:  # (history rows are written by opportunity updates, not by the summary)
            changed = set(summary.created.get(obj, [])) | set(summary.updated.get(obj, []))
            assert set(getattr(sf, obj).updated(start, org.now)["ids"]) == changed - set(
                summary.deleted.get(obj, [])
            ), obj
    assert dangling_references(org) == []


def test_describe_says_which_children_cascade_and_which_restrict(sf):
    relationships = {(r["childSObject"], r["field"]): r for r in sf.Account.describe()["childRelationships"]}
    assert relationships[("Contact", "AccountId")]["cascadeDelete"] is True
    assert relationships[("Opportunity", "AccountId")]["cascadeDelete"] is True
    assert relationships[("Case", "AccountId")]["restrictedDelete"] is True
    assert relationships[("Case", "AccountId")]["cascadeDelete"] is False
    assert (
        relationships[("Account", "ParentId")]["cascadeDelete"]
        is relationships[("Account", "ParentId")]["restrictedDelete"]
        is False
    )
    assert OBJECTS["Case"].field("AccountId").on_delete == RESTRICT
