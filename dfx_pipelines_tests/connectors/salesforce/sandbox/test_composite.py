"""`POST /composite` as Salesforce documents it: subrequests run in order as ONE API call, each answering
as its own request would; the series' limits (25 subrequests, 5 queries), reference ids, inherited
headers and allOrNone are enforced, and a malformed series runs nothing."""

from __future__ import annotations

import urllib.parse
from datetime import timedelta
from typing import Any

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

V = "/services/data/v59.0"


def composite(sf: Any, subrequests: list[dict[str, Any]], all_or_none: bool = False) -> list[dict[str, Any]]:
    answer = sf.restful("composite", method="POST", json={"allOrNone": all_or_none, "compositeRequest": subrequests})
    return answer["compositeResponse"]


def get(reference: str, path: str, **params: str) -> dict[str, Any]:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return {"method": "GET", "url": f"{V}/{path}{query}", "referenceId": reference}


def window(org: Any) -> dict[str, str]:
    return {
        "start": (org.now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "end": org.now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    }


def test_subrequests_answer_as_their_own_requests_and_count_as_one_call(sandbox, sf):
    org = sandbox.org
    org.advance(timedelta(minutes=5))
    org.mutate(30, seed=2)
    org.advance(timedelta(minutes=5))
    soql = "SELECT Id, StageName FROM Opportunity WHERE IsClosed = false ORDER BY Id"
    used = sandbox.app.usage.used

    results = composite(
        sf,
        [
            get("upd", "sobjects/Opportunity/updated/", **window(org)),
            get("del", "sobjects/Opportunity/deleted/", **window(org)),
            get("q", "query/", q=soql),
            get("qa", "queryAll/", q="SELECT Id FROM Lead WHERE IsDeleted = true"),
        ],
    )

    assert sandbox.app.usage.used == used + 1  # the whole series is one call toward the daily limit
    by_ref = {r["referenceId"]: r for r in results}
    assert [r["referenceId"] for r in results] == ["upd", "del", "q", "qa"]  # in order
    assert all(r["httpStatusCode"] == 200 for r in results)
    start, end = (org.now - timedelta(days=1)), org.now
    assert by_ref["upd"]["body"] == sf.Opportunity.updated(start, end)
    assert by_ref["del"]["body"] == sf.Opportunity.deleted(start, end)
    direct = sf.query(soql)
    assert [r["Id"] for r in by_ref["q"]["body"]["records"]] == [r["Id"] for r in direct["records"]]
    assert by_ref["q"]["body"]["totalSize"] == direct["totalSize"]
    assert (
        by_ref["qa"]["body"]["totalSize"]
        == sf.query("SELECT Id FROM Lead WHERE IsDeleted = true", include_deleted=True)["totalSize"]
    )


def test_a_query_subrequest_pages_like_a_query(shared_sandbox, shared_sf):
    # 2,500 opportunities: the first page holds 2,000 and names its locator; queryMore reads the rest.
    (result,) = composite(shared_sf, [get("q", "query/", q="SELECT Id FROM Opportunity")])
    first = result["body"]
    assert first["done"] is False and len(first["records"]) == 2000
    rest = shared_sf.query_more(first["nextRecordsUrl"], identifier_is_url=True)
    assert rest["done"] is True and len(first["records"]) + len(rest["records"]) == first["totalSize"]


@pytest.mark.parametrize(
    ("subrequests", "code", "names"),
    [
        ([get(f"r{n}", "sobjects/Account/describe") for n in range(26)], "LIMIT_EXCEEDED", "25"),
        ([get(f"q{n}", "query/", q="SELECT Id FROM Account") for n in range(6)], "LIMIT_EXCEEDED", "5"),
        (
            [get("same", "sobjects/Account/describe"), get("same", "sobjects/Lead/describe")],
            "INVALID_INPUT",
            "Duplicate",
        ),
        ([get("1bad", "sobjects/Account/describe")], "INVALID_INPUT", "referenceId"),
        ([{**get("a", "sobjects/Account/describe"), "method": "get"}], "INVALID_INPUT", "case-sensitive"),
        (
            [{**get("a", "sobjects/Account/describe"), "httpHeaders": {"Authorization": "Bearer x"}}],
            "INVALID_INPUT",
            "Authorization",
        ),
        (
            [{**get("a", "sobjects/Account/describe"), "url": "/services/data/v62.0/sobjects/Account/describe"}],
            "INVALID_INPUT",
            "62.0",
        ),
        ([{**get("a", "x"), "url": "https://evil.example/services/data/v59.0/limits"}], "INVALID_INPUT", "path"),
        ([get("a", "limits")], "INVALID_INPUT", "not supported"),
        ([get("a", "sobjects/Account/describe"), get("b", "query/", q="@{a.name}")], "INVALID_INPUT", "Unsupported"),
    ],
)
def test_a_malformed_series_is_refused_whole_and_runs_nothing(sandbox, sf, subrequests, code, names):
    audit = len(sandbox.app.write_audit)
    with pytest.raises(SalesforceMalformedRequest) as raised:
        composite(
            sf,
            subrequests
            + [{"method": "DELETE", "url": f"{V}/sobjects/Account/001000000000001AAA", "referenceId": "zz"}],
        )
    (error,) = raised.value.content
    assert error["errorCode"] == code and names in error["message"]
    assert len(sandbox.app.write_audit) == audit  # the trailing DELETE never ran


def test_all_or_none_halts_after_the_first_failure_otherwise_the_rest_run(sandbox, sf):
    series = [
        get("ok", "sobjects/Account/describe"),
        get("bad", "query/", q="SELECT NoSuchField FROM Account"),
        get("after", "sobjects/Lead/describe"),
    ]
    independent = {r["referenceId"]: r for r in composite(sf, series)}
    assert independent["ok"]["httpStatusCode"] == 200 and independent["after"]["httpStatusCode"] == 200
    assert independent["bad"]["httpStatusCode"] == 400
    assert independent["bad"]["body"][0]["errorCode"] == "INVALID_FIELD"

    halted = {r["referenceId"]: r for r in composite(sf, series, all_or_none=True)}
    assert halted["ok"]["httpStatusCode"] == 200 and halted["bad"]["httpStatusCode"] == 400
    assert halted["after"]["httpStatusCode"] == 400
    assert halted["after"]["body"][0]["errorCode"] == "PROCESSING_HALTED"


def test_a_replication_window_error_is_the_subrequests_own(sandbox, sf):
    org = sandbox.org
    too_old = {
        "start": (org.now - timedelta(days=40)).strftime("%Y-%m-%dT%H:%M:%S+00:00"),
        "end": org.now.strftime("%Y-%m-%dT%H:%M:%S+00:00"),
    }
    results = {
        r["referenceId"]: r
        for r in composite(
            sf, [get("old", "sobjects/Lead/deleted/", **too_old), get("fine", "sobjects/Lead/deleted/", **window(org))]
        )
    }
    assert results["old"]["httpStatusCode"] == 400
    assert results["old"]["body"][0]["errorCode"] == "INVALID_REPLICATION_DATE"
    assert results["fine"]["httpStatusCode"] == 200


def test_composite_needs_a_valid_session_and_post(sandbox, sf):
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceExpiredSession

    from .conftest import client

    stranger: Salesforce = client(sandbox, "00D000000000000!not-a-token")
    with pytest.raises(SalesforceExpiredSession):
        composite(stranger, [get("a", "sobjects/Account/describe")])
    with pytest.raises(Exception) as raised:
        sf.restful("composite", method="GET")
    assert "METHOD_NOT_ALLOWED" in str(raised.value)
