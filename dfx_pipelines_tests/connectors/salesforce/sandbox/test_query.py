"""SOQL over REST with the real simple-salesforce client: paging, relationships, date literals, errors."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from simple_salesforce import format_soql
from simple_salesforce.exceptions import SalesforceMalformedRequest

from .conftest import FIXED_NOW


def test_query_all_iter_pages_through_next_records_url(shared_sandbox, shared_sf):
    live = shared_sandbox.org.run_sql('SELECT COUNT(*) FROM "Opportunity" WHERE "IsDeleted" = 0')[0][0]
    assert live > 2000  # more than one default batch
    before = len(shared_sandbox.server.requests)
    first = shared_sf.query("SELECT Id, Amount FROM Opportunity")
    assert first["totalSize"] == live and first["done"] is False and len(first["records"]) == 2000
    assert first["nextRecordsUrl"].startswith("/services/data/v59.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-2000")
    ids = [record["Id"] for record in shared_sf.query_all_iter("SELECT Id FROM Opportunity")]
    assert len(ids) == len(set(ids)) == live
    expected = {row[0] for row in shared_sandbox.org.run_sql('SELECT "Id" FROM "Opportunity" WHERE "IsDeleted" = 0')}
    assert set(ids) == expected
    assert len(shared_sandbox.server.requests) - before == 3  # query, then query + one queryMore


def test_batch_size_header_is_honoured(shared_sf):
    result = shared_sf.query("SELECT Id FROM Account", headers={"Sforce-Query-Options": "batchSize=200"})
    assert len(result["records"]) == 200 and result["nextRecordsUrl"].endswith("-200")


def test_unknown_query_locator(shared_sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        shared_sf.query_more("01gXXXXXXXXXXXXXXX-2000", identifier_is_url=False)
    assert raised.value.content[0]["errorCode"] == "INVALID_QUERY_LOCATOR"


def test_records_have_salesforce_shapes_and_nested_relationships(shared_sf):
    result = shared_sf.query(
        "SELECT Id, Name, Amount, CloseDate, CreatedDate, IsWon, Account.Name, Account.Owner.Name, Campaign.Name "
        "FROM Opportunity WHERE CampaignId = null LIMIT 5"
    )
    record = result["records"][0]
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v59.0/sobjects/Opportunity/{record['Id']}",
    }
    assert len(record["Id"]) == 18 and record["Id"].startswith("006")
    assert record["Campaign"] is None
    assert record["Account"]["attributes"]["type"] == "Account"
    assert isinstance(record["Account"]["Owner"]["Name"], str)
    assert isinstance(record["IsWon"], bool)
    date.fromisoformat(record["CloseDate"])
    assert record["CreatedDate"].endswith(".000+0000") and record["CreatedDate"][10] == "T"


def test_relationship_values_match_the_store(shared_sandbox, shared_sf):
    record = shared_sf.query("SELECT Id, AccountId, Account.Name FROM Opportunity WHERE AccountId != null LIMIT 1")[
        "records"
    ][0]
    name = shared_sandbox.org.run_sql('SELECT "Name" FROM "Account" WHERE "Id" = ?', (record["AccountId"],))[0][0]
    assert record["Account"]["Name"] == name


def test_custom_relationship_and_fields(shared_sf):
    record = shared_sf.query(
        "SELECT Name, Opportunity__r.Name, Opportunity__r.Region__c, Score__c FROM Deal_Review__c LIMIT 1"
    )["records"][0]
    assert record["Opportunity__r"]["Region__c"] in {"AMER", "EMEA", "APAC", "LATAM"}
    assert isinstance(record["Score__c"], float)


def test_where_operators_match_python(shared_sandbox, shared_sf):
    rows = shared_sandbox.org.run_sql(
        'SELECT "Id", "StageName", "Amount", "LeadSource", "Name" FROM "Opportunity" WHERE "IsDeleted" = 0'
    )

    def count(soql: str) -> int:
        return shared_sf.query(soql.replace("SELECT Id", "SELECT COUNT()"))["totalSize"]

    assert count("SELECT Id FROM Opportunity WHERE StageName IN ('Closed Won', 'Closed Lost')") == sum(
        r[1] in ("Closed Won", "Closed Lost") for r in rows
    )
    # SOQL's != and NOT IN keep nulls, unlike SQL.
    assert count("SELECT Id FROM Opportunity WHERE LeadSource NOT IN ('Web')") == sum(r[3] != "Web" for r in rows)
    assert count("SELECT Id FROM Opportunity WHERE Amount != 100") == sum(r[2] != 100 for r in rows)
    assert count(
        "SELECT Id FROM Opportunity WHERE (Amount > 50000 OR Amount = null) AND NOT StageName = 'Prospecting'"
    ) == sum((r[2] is None or r[2] > 50000) and r[1] != "Prospecting" for r in rows)
    assert count("SELECT Id FROM Opportunity WHERE Name LIKE '%renewal'") == sum(
        r[4].lower().endswith("renewal") for r in rows
    )
    assert count("SELECT Id FROM Opportunity WHERE stagename = 'closed won'") == sum(r[1] == "Closed Won" for r in rows)


def test_escaped_strings_via_format_soql(make_sandbox):
    sandbox = make_sandbox()
    from .conftest import client

    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    tricky = 'O\'Brien \\ 50% "quoted"\nline'
    sandbox.org.create("Account", {"Name": tricky})
    assert sf.query(format_soql("SELECT Id FROM Account WHERE Name = {}", tricky))["totalSize"] == 1
    assert (
        sf.query(format_soql("SELECT Id FROM Account WHERE Name LIKE '{:like}%'", "O'Brien \\ 50%"))["totalSize"] == 1
    )
    assert (
        sf.query(format_soql("SELECT Id FROM Account WHERE Name LIKE '{:like}%'", "O'Brien \\ 5_%"))["totalSize"] == 0
    )


def test_date_literals_against_fixed_now(shared_sandbox, shared_sf):
    today = FIXED_NOW.date()
    rows = shared_sandbox.org.run_sql('SELECT "CloseDate", "CreatedDate" FROM "Opportunity" WHERE "IsDeleted" = 0')
    closes = [date.fromisoformat(r[0]) for r in rows]
    created_days = [date.fromtimestamp(r[1] - r[1] % 86400 + 43200) for r in rows]  # noon avoids tz drift

    def count(where: str) -> int:
        return shared_sf.query(f"SELECT COUNT() FROM Opportunity WHERE {where}")["totalSize"]

    assert count("CloseDate = THIS_MONTH") == sum(d.year == 2025 and d.month == 6 for d in closes)
    assert count("CloseDate = LAST_MONTH") == sum(d.year == 2025 and d.month == 5 for d in closes)
    assert count("CloseDate = THIS_YEAR") == sum(d.year == 2025 for d in closes)
    assert count("CloseDate = LAST_YEAR") == sum(d.year == 2024 for d in closes)
    assert count("CloseDate = THIS_QUARTER") == sum(d.year == 2025 and 4 <= d.month <= 6 for d in closes)
    assert count("CloseDate < TODAY") == sum(d < today for d in closes)
    assert count("CloseDate = TODAY") == sum(d == today for d in closes)
    assert count("CloseDate = YESTERDAY") == sum(d == today - timedelta(days=1) for d in closes)
    assert count("CloseDate = TOMORROW") == sum(d == today + timedelta(days=1) for d in closes)
    # 2025-06-15 is a Sunday: THIS_WEEK is 15..21 June, LAST_WEEK 8..14 June.
    assert count("CloseDate = THIS_WEEK") == sum(date(2025, 6, 15) <= d <= date(2025, 6, 21) for d in closes)
    assert count("CloseDate = LAST_WEEK") == sum(date(2025, 6, 8) <= d <= date(2025, 6, 14) for d in closes)
    assert count("CreatedDate = LAST_N_DAYS:30") == sum(today - timedelta(days=30) <= d <= today for d in created_days)
    assert count("CloseDate = NEXT_N_DAYS:45") == sum(today < d <= today + timedelta(days=45) for d in closes)
    assert count("CreatedDate >= 2025-01-01T00:00:00Z") == sum(d >= date(2025, 1, 1) for d in created_days)
    assert count(format_soql("CloseDate >= {} AND CloseDate <= {}", date(2025, 1, 1), date(2025, 3, 31))) == sum(
        date(2025, 1, 1) <= d <= date(2025, 3, 31) for d in closes
    )


def test_query_excludes_and_query_all_includes_deleted_rows(make_sandbox):
    from .conftest import client

    sandbox = make_sandbox()
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    victim = sf.query("SELECT Id FROM Opportunity WHERE IsDeleted = false LIMIT 1")["records"][0]["Id"]
    before_live = sf.query("SELECT COUNT() FROM Opportunity")["totalSize"]
    before_all = sf.query_all("SELECT Id FROM Opportunity", include_deleted=True)["totalSize"]
    assert sf.Opportunity.delete(victim) == 204
    assert sf.query("SELECT COUNT() FROM Opportunity")["totalSize"] == before_live - 1
    everything = sf.query_all("SELECT Id, IsDeleted FROM Opportunity", include_deleted=True)["records"]
    assert len(everything) == before_all
    assert any(r["Id"] == victim and r["IsDeleted"] is True for r in everything)
    assert sf.query(format_soql("SELECT Id FROM Opportunity WHERE Id = {}", victim))["totalSize"] == 0


def test_order_by_with_nulls_and_offset(shared_sandbox, shared_sf):
    records = shared_sf.query(
        "SELECT Id, Amount FROM Opportunity ORDER BY Amount DESC NULLS LAST, Id LIMIT 10 OFFSET 5"
    )["records"]
    amounts = [r["Amount"] for r in records]
    expected = shared_sandbox.org.run_sql(
        'SELECT "Amount" FROM "Opportunity" WHERE "IsDeleted" = 0 ORDER BY "Amount" DESC NULLS LAST, "Id" LIMIT 10 OFFSET 5'
    )
    assert amounts == [row[0] for row in expected]
    first = shared_sf.query("SELECT Amount FROM Opportunity ORDER BY Amount LIMIT 1")["records"][0]
    assert first["Amount"] is None  # Salesforce sorts nulls first by default


@pytest.mark.parametrize(
    ("soql", "code", "fragment"),
    [
        ("SELECT Id FROM Opportunity WHERE 1=1", "MALFORMED_QUERY", "unexpected token"),
        ("SELECT Foo FROM Opportunity", "INVALID_FIELD", "No such column 'Foo' on entity 'Opportunity'"),
        ("SELECT Id FROM Foo", "INVALID_TYPE", "sObject type 'Foo' is not supported"),
        ("SELECT Id FROM Opportunity WHERE Amount = '5'", "INVALID_FIELD", "must be of type double"),
        ("SELECT Id FROM Opportunity WHERE CreatedDate > 2024-01-01", "INVALID_FIELD", "must be of type dateTime"),
        (
            "SELECT Id FROM Opportunity WHERE Amount > 1 AND Amount < 5 OR IsWon = true",
            "MALFORMED_QUERY",
            "unexpected token",
        ),
        ("SELECT Id, (SELECT Id FROM OpportunityLineItems) FROM Opportunity", "MALFORMED_QUERY", "sub-queries"),
        ("SELECT Foo__r.Name FROM Opportunity", "INVALID_FIELD", "Didn't understand relationship 'Foo__r'"),
        ("SELECT SUM(Name) FROM Opportunity", "INVALID_FIELD", "does not support aggregate operator SUM"),
        ("SELECT Name, COUNT(Id) FROM Opportunity", "MALFORMED_QUERY", "Field must be grouped or aggregated: Name"),
        ("SELECT Id FROM Opportunity WHERE Description = 'x'", "INVALID_FIELD", "can not be filtered"),
        ("SELECT Id FROM OpportunityChangeEvent", "INVALID_TYPE_FOR_OPERATION", "does not support query"),
        ("SELECT Id FROM Opportunity OFFSET 2001", "NUMBER_OUTSIDE_VALID_RANGE", "2000"),
        ("SELECT Id FROM Opportunity WHERE Name = 'unterminated", "MALFORMED_QUERY", "unterminated"),
        ("SELECT Id FROM Opportunity WHERE Id = 'not-an-id'", "INVALID_QUERY_FILTER_OPERATOR", "invalid ID field"),
    ],
)
def test_errors_surface_as_salesforce_malformed_request(shared_sf, soql, code, fragment):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        shared_sf.query(soql)
    assert raised.value.status == 400
    [error] = raised.value.content
    assert error["errorCode"] == code
    assert fragment in error["message"]


def test_malformed_message_points_at_the_culprit(shared_sf):
    with pytest.raises(SalesforceMalformedRequest) as raised:
        shared_sf.query("SELECT Id FROM Opportunity WHERE 1=1")
    message = raised.value.content[0]["message"]
    lines = message.split("\n")
    assert lines[1] == "SELECT Id FROM Opportunity WHERE 1=1"
    assert lines[2].index("^") == lines[1].index("1=1")
    assert "ERROR at Row:1:Column:34" in message


def test_unsupported_api_version_is_not_found(shared_sandbox, shared_sf):
    from .conftest import client

    old = client(shared_sandbox, shared_sf.session_id, version="58.0")
    from simple_salesforce.exceptions import SalesforceResourceNotFound

    with pytest.raises(SalesforceResourceNotFound) as raised:
        old.query("SELECT Id FROM Account LIMIT 1")
    assert raised.value.content[0]["errorCode"] == "NOT_FOUND"
    assert (
        client(shared_sandbox, shared_sf.session_id, version="62.0").query("SELECT Id FROM Account LIMIT 1")[
            "totalSize"
        ]
        == 1
    )
