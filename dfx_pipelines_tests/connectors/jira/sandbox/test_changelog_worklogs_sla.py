"""Changelogs (embedded and truncated, per issue, bulk), worklogs (updated since, list) and SLAs in the sandbox."""

from __future__ import annotations

import pytest

from dfx_pipelines.connectors.jira.metrics_common import JiraDataError
from dfx_pipelines.connectors.jira.metrics_flow import issue_status_history
from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.records import jira_time


def _generator_history(site, record) -> list[tuple[str, list[tuple]]]:
    return [(jira_time(h.at), [item[0] for item in h.items]) for h in site.histories(record)]


def _wire_history(histories) -> list[tuple[str, list[tuple]]]:
    return [(h["created"], [item["fieldId"] for item in h["items"]]) for h in histories]


@pytest.fixture(scope="module")
def long_issue(cloud):
    record = next(
        r for r in cloud.site.issues if len(cloud.site.histories(r)) > 60 and cloud.site.key_of(r).startswith("ALPHA")
    )
    return record


def test_embedded_changelog_is_truncated_and_the_reducers_refuse_it(cloud, cloud_jira, long_issue):
    key = cloud.site.key_of(long_issue)
    raw = cloud_jira.enhanced_search_issues(
        f"key = {key}", fields=["created", "status", "issuetype", "project"], expand="changelog", json_result=True
    )
    changelog = raw["issues"][0]["changelog"]
    total = len(cloud.site.histories(long_issue))
    assert changelog["total"] == total > 40 == len(changelog["histories"])
    assert _wire_history(changelog["histories"]) == _generator_history(cloud.site, long_issue)[-40:]  # the newest 40
    with pytest.raises(JiraDataError, match="embedded changelog holds 40"):
        issue_status_history(raw["issues"][0])


def test_full_changelog_pages_and_bulkfetch_match_the_generator(cloud, cloud_http, long_issue):
    key = cloud.site.key_of(long_issue)
    values, start = [], 0
    while True:
        page = cloud_http.get(
            f"{cloud.url}/rest/api/3/issue/{key}/changelog", params={"startAt": start, "maxResults": 25}
        ).json()
        values += page["values"]
        start += 25
        if page["isLast"]:
            break
    assert page["total"] == len(values)
    expected = _generator_history(cloud.site, long_issue)
    assert _wire_history(values) == expected

    other = cloud.site.find("ALPHA-3")
    bulk: dict[str, list] = {}
    token = None
    while True:
        body = {"issueIdsOrKeys": [key, "ALPHA-3"], "maxResults": 30, **({"nextPageToken": token} if token else {})}
        page = cloud_http.post(f"{cloud.url}/rest/api/3/changelog/bulkfetch", json=body).json()
        for entry in page["issueChangeLogs"]:
            bulk.setdefault(entry["issueId"], []).extend(entry["changeHistories"])
        token = page.get("nextPageToken")
        if not token:
            break
    assert _wire_history(bulk[str(long_issue.id)]) == expected
    assert _wire_history(bulk[str(other.id)]) == _generator_history(cloud.site, other)

    status_only = cloud_http.post(
        f"{cloud.url}/rest/api/3/changelog/bulkfetch", json={"issueIdsOrKeys": [key], "fieldIds": ["status"]}
    ).json()
    items = [i for h in status_only["issueChangeLogs"][0]["changeHistories"] for i in h["items"]]
    assert {i["fieldId"] for i in items} == {"status"}

    # With the full histories the flow reducer replays the issue.
    issue = cloud_http.get(
        f"{cloud.url}/rest/api/3/issue/{key}", params={"fields": "created,status,issuetype,project"}
    ).json()
    replayed = issue_status_history(issue, histories=values)
    assert replayed.statuses[-1].status_id == long_issue.status_id
    assert len(replayed.statuses) == 1 + sum(
        1 for h in cloud.site.histories(long_issue) for i in h.items if i[0] == "status"
    )


def test_worklogs_updated_then_listed(cloud, cloud_http):
    site = cloud.site
    since_ms = int((site.now_epoch - 60 * 86400) * 1000)
    ids, url = [], f"{cloud.url}/rest/api/3/worklog/updated?since={since_ms}"
    while url:
        page = cloud_http.get(url).json()
        ids += [v["worklogId"] for v in page["values"]]
        url = None if page["lastPage"] else page["nextPage"]
    expected = sorted(
        w.id for r in site.issues for w in site.worklogs(r) if since_ms / 1000 < w.updated <= site.now_epoch - 60
    )
    assert sorted(ids) == expected and expected
    listed = cloud_http.post(f"{cloud.url}/rest/api/3/worklog/list", json={"ids": ids}).json()
    assert sorted(int(w["id"]) for w in listed) == expected
    sample = listed[0]
    record = site.find(sample["issueId"])
    truth = next(w for w in site.worklogs(record) if w.id == int(sample["id"]))
    assert sample["timeSpentSeconds"] == truth.seconds and sample["started"] == jira_time(truth.started)
    too_many = cloud_http.post(f"{cloud.url}/rest/api/3/worklog/list", json={"ids": list(range(1001))})
    assert too_many.status_code == 400 and too_many.json()["errorMessages"]


def test_worklog_updated_pages_at_1000(cloud, cloud_http):
    first = cloud_http.get(f"{cloud.url}/rest/api/3/worklog/updated", params={"since": 0}).json()
    total = sum(len(cloud.site.worklogs(r)) for r in cloud.site.issues)
    assert len(first["values"]) == min(total, 1000) and first["lastPage"] is (total <= 1000)
    if not first["lastPage"]:
        assert first["nextPage"].endswith(f"since={first['until']}")


def test_sla_cycles_for_service_requests(cloud, cloud_http):
    site = cloud.site
    resolved = next(r for r in site.issues_in_projects("OPS") if r.resolved is not None)
    open_request = next(r for r in site.issues_in_projects("OPS") if r.resolved is None)
    body = cloud_http.get(f"{cloud.url}/rest/servicedeskapi/request/{site.key_of(resolved)}/sla").json()
    by_name = {v["name"]: v for v in body["values"]}
    assert set(by_name) == {"Time to first response", "Time to resolution"}
    cycle = by_name["Time to resolution"]["completedCycles"][-1]
    assert cycle["stopTime"]["epochMillis"] == int(round(resolved.resolved * 1000))
    assert cycle["goalDuration"]["millis"] == 48 * 3600 * 1000 and isinstance(cycle["breached"], bool)
    ongoing = cloud_http.get(f"{cloud.url}/rest/servicedeskapi/request/{site.key_of(open_request)}/sla").json()
    cycle = {v["name"]: v for v in ongoing["values"]}["Time to resolution"]["ongoingCycle"]
    assert cycle["paused"] is (open_request.status_id == catalog.WAITING_FOR_CUSTOMER.id) and "remainingTime" in cycle
    missing = cloud_http.get(f"{cloud.url}/rest/servicedeskapi/request/ALPHA-1/sla")
    assert missing.status_code == 404 and "errorMessage" in missing.json()
