"""Issue search in the sandbox: Cloud search/jql paging and fields, the retired search, Data Center search, JQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from jira import JIRA, JIRAError

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.server import start_jira_sandbox
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http


def test_enhanced_search_pages_with_next_page_token_to_the_generator_count(cloud, cloud_jira):
    expected = {cloud.site.key_of(r) for r in cloud.site.issues_in_projects("ALPHA", "BETA")}
    before = cloud.app.calls["GET api/search/jql"]
    issues = cloud_jira.enhanced_search_issues(
        "project in (ALPHA, BETA) ORDER BY key ASC", maxResults=0, fields=["status"]
    )
    assert {i.key for i in issues} == expected and len(issues) == len(expected)
    # 100 per page with fields, so the library needed ceil(n / 100) calls.
    assert cloud.app.calls["GET api/search/jql"] - before == -(-len(expected) // 100)


def test_search_jql_raw_pages_no_total_and_id_only_default(cloud, cloud_http):
    url = f"{cloud.url}/rest/api/3/search/jql"
    first = cloud_http.get(url, params={"jql": "project = ALPHA", "maxResults": 50}).json()
    assert "total" not in first and first["isLast"] is False and first["issues"][0] == {"id": first["issues"][0]["id"]}
    seen = [i["id"] for i in first["issues"]]
    token = first["nextPageToken"]
    while token:
        page = cloud_http.post(url, json={"jql": "project = ALPHA", "maxResults": 50, "nextPageToken": token}).json()
        seen += [i["id"] for i in page["issues"]]
        token = page.get("nextPageToken")
        assert page["isLast"] is (token is None)
    assert sorted(seen) == sorted(str(r.id) for r in cloud.site.issues_in_projects("ALPHA"))
    big = cloud_http.get(url, params={"jql": "project = ALPHA", "maxResults": 10000}).json()
    assert len(big["issues"]) == len(seen)  # id-only pages go up to 5000
    capped = cloud_http.get(url, params={"jql": "project = ALPHA", "maxResults": 1000, "fields": "status"}).json()
    assert len(capped["issues"]) == 100


def test_only_requested_fields_cross_the_wire(cloud, cloud_jira):
    issues = cloud_jira.enhanced_search_issues(
        "project = OPS", maxResults=20, fields=["summary", "status"], json_result=True
    )
    for issue in issues["issues"]:
        assert set(issue["fields"]) == {"summary", "status"}
        assert cloud.site.canary not in str(issue)
    assert cloud.app.field_requests[-1].fields == ("summary", "status")
    everything = cloud_jira.enhanced_search_issues("project = OPS", maxResults=5, fields=["*all"], json_result=True)
    assert cloud.site.canary in str(everything)  # so the check above could fail
    without = cloud_jira.enhanced_search_issues(
        "project = OPS", maxResults=5, fields=["*all", "-description", "-comment", "-attachment"], json_result=True
    )
    assert cloud.site.canary not in str(without) and "description" not in without["issues"][0]["fields"]


def test_names_and_requested_empty_values(cloud_http, cloud):
    page = cloud_http.get(
        f"{cloud.url}/rest/api/3/search/jql",
        params={
            "jql": "project = BETA",
            "fields": "resolutiondate,customfield_10016",
            "expand": "names",
            "maxResults": 3,
        },
    ).json()
    assert page["names"] == {"resolutiondate": "Resolved", "customfield_10016": "Story point estimate"}
    assert all(set(i["fields"]) == {"resolutiondate", "customfield_10016"} for i in page["issues"])


def test_old_search_answers_410_on_cloud(cloud, cloud_http, cloud_jira):
    response = cloud_http.get(f"{cloud.url}/rest/api/3/search", params={"jql": "project = ALPHA"})
    assert response.status_code == 410 and "/rest/api/3/search/jql" in response.json()["errorMessages"][0]
    with pytest.raises(JIRAError):
        cloud_jira.search_issues("project = ALPHA", startAt=10)


def test_jql_errors_are_400_in_jira_shape(cloud, cloud_http):
    url = f"{cloud.url}/rest/api/3/search/jql"
    for jql, fragment in [
        ("project = NOPE", "The value 'NOPE' does not exist for the field 'project'."),
        ("nosuchfield = 1", "Field 'nosuchfield' does not exist"),
        ("project ALPHA", "Expecting operator but got 'ALPHA'"),
        ('updated >= "last tuesday"', "Date value 'last tuesday' for field 'updated' is invalid"),
    ]:
        response = cloud_http.get(url, params={"jql": jql})
        assert response.status_code == 400
        body = response.json()
        assert body["errors"] == {} and fragment in body["errorMessages"][0]


def test_unbounded_query_is_refused_on_cloud_search(cloud, cloud_http):
    for jql in ("", "ORDER BY created DESC"):
        response = cloud_http.post(f"{cloud.url}/rest/api/3/search/jql", json={"jql": jql})
        assert response.status_code == 400
        assert response.json()["errorMessages"] == [
            "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
        ]


def test_approximate_count(cloud_jira, cloud):
    assert cloud_jira.approximate_issue_count("project = GAMMA AND statusCategory != Done") == sum(
        1
        for r in cloud.site.issues_in_projects("GAMMA")
        if catalog.STATUS_BY_ID[r.status_id].category is not catalog.CATEGORY_DONE
    )


def test_jql_subset_against_independent_counts(cloud_jira, cloud):
    site = cloud.site

    def count(jql: str) -> int:
        return len(cloud_jira.enhanced_search_issues(jql, maxResults=0, fields=["id"]))

    assert count('project = ALPHA AND issuetype = "Epic"') == sum(
        1 for r in site.issues_in_projects("ALPHA") if r.type == 0
    )
    assert count("project = BETA AND status = 'In Progress'") == sum(
        1 for r in site.issues_in_projects("BETA") if r.status_id == "3"
    )
    active = next(s for s in site.sprints if s.state == "active" and s.board_id == 1)
    assert count(f"sprint = {active.id}") == sum(1 for r in site.issues if active.id in r.sprints)
    assert count("project = ALPHA AND sprint in openSprints()") == sum(
        1 for r in site.issues_in_projects("ALPHA") if active.id in r.sprints
    )
    cutoff = site.now_epoch - 30 * 86400
    assert count("project in (ALPHA, OPS) AND (updated >= -30d OR resolved is EMPTY)") == sum(
        1 for r in site.issues_in_projects("ALPHA", "OPS") if r.updated >= cutoff or r.resolved is None
    )
    assert count("project = OPS AND NOT statusCategory = Done") == sum(
        1 for r in site.issues_in_projects("OPS") if r.resolved is None
    )
    keys = [
        i.key
        for i in cloud_jira.enhanced_search_issues(
            "project = BETA ORDER BY created ASC", maxResults=5, fields=["created"]
        )
    ]
    assert keys == [site.key_of(r) for r in sorted(site.issues_in_projects("BETA"), key=lambda r: r.created)[:5]]


def test_mutations_show_up_with_relative_dates():
    site = JiraSite(seed=3, issues=80)
    with start_jira_sandbox(site) as running:
        client = JIRA(
            server=running.url,
            basic_auth=(running.email, running.api_token),
            options={"rest_api_version": "3", "verify": running.ca_pem_path},
        )
        site.advance(timedelta(hours=2))
        assert client.enhanced_search_issues("project = ALPHA AND updated >= -15m", maxResults=0, fields=["id"]) == []
        record = site.create_issue("ALPHA", points=3)
        key = site.key_of(record)
        site.advance(timedelta(minutes=5))
        site.update_issue(key, status="In Progress", points=5)
        found = client.enhanced_search_issues(
            "project = ALPHA AND updated >= -15m", maxResults=0, fields=["status", "customfield_10016"]
        )
        assert [i.key for i in found] == [key]
        assert (
            found[0].raw["fields"]["status"]["name"] == "In Progress"
            and found[0].raw["fields"]["customfield_10016"] == 5.0
        )
        history = client._get_json(f"issue/{key}/changelog")["values"]
        assert [i["fieldId"] for i in history[0]["items"]] == ["status", "customfield_10016"]


def test_datacenter_search_pages_with_start_at_and_total(datacenter, dc_jira, dc_http):
    expected = len(datacenter.site.issues_in_projects("ALPHA"))
    assert dc_jira.deploymentType == "Server"
    issues = dc_jira.search_issues("project = ALPHA", maxResults=False, fields="status,created")
    assert len(issues) == expected and issues.total == expected
    page = dc_http.get(
        f"{datacenter.url}/rest/api/2/search",
        params={"jql": "project = ALPHA", "startAt": 100, "maxResults": 50, "fields": "status", "expand": "changelog"},
    ).json()
    assert page["total"] == expected and page["startAt"] == 100 and len(page["issues"]) == expected - 100
    changelog = page["issues"][0]["changelog"]
    assert changelog["total"] == len(changelog["histories"])  # Data Center does not truncate here
    assert all("fieldId" not in item for h in changelog["histories"] for item in h["items"])
    assert dc_http.get(f"{datacenter.url}/rest/api/3/field").status_code == 404  # no v3 on Data Center


def test_optional_rule_requiring_a_project_clause():
    with start_jira_sandbox(JiraSite(seed=3, issues=40), require_project_in_jql=True) as running:
        session = http(running, (running.email, running.api_token))
        url = f"{running.url}/rest/api/3/search/jql"
        assert session.get(url, params={"jql": "updated >= -30d"}).status_code == 400
        assert (
            session.get(url, params={"jql": 'summary_free = 1 OR project = "ALPHA"'}).status_code == 400
        )  # unknown field
        assert session.get(url, params={"jql": "project = ALPHA AND updated >= -400d"}).status_code == 200
