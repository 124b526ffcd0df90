"""The generated site (determinism, shapes the reducers read, mutations), JQL parsing, TLS trust and faults."""

from __future__ import annotations

import time

import pytest
import requests
from jira import JIRA, JIRAError

from dfx_pipelines.connectors.jira.metrics_counts import issue_attributes, sla_status_rows
from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.jql import Clause, parse
from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http


def _fingerprint(site: JiraSite) -> list:
    return [
        (site.key_of(r), r.status_id, r.created, r.updated, r.points, r.sprints, r.resolved,
         [(h.at, h.items) for h in site.histories(r)], [(w.id, w.updated) for w in site.worklogs(r)])
        for r in site.issues
    ]  # fmt: skip


def test_same_seed_same_site_other_seed_other_site():
    assert _fingerprint(JiraSite(seed=7, issues=150)) == _fingerprint(JiraSite(seed=7, issues=150))
    assert _fingerprint(JiraSite(seed=7, issues=150)) != _fingerprint(JiraSite(seed=8, issues=150))


def test_site_has_the_variety_the_metrics_need(shared_site):
    site = shared_site
    histories = {site.key_of(r): site.histories(r) for r in site.issues}
    status_moves = [(i[1], i[3]) for hs in histories.values() for h in hs for i in h.items if i[0] == "status"]
    order = {s.id: n for n, s in enumerate(catalog.SOFTWARE_WORKFLOW)}
    software = [(order[a], order[b]) for a, b in status_moves if a in order and b in order]
    assert any(b < a for a, b in software) and any(b - a >= 2 for a, b in software)  # backward moves, skipped stages
    assert {s.state for s in site.sprints} == {"closed", "active", "future"}
    sprint_sides = [i for hs in histories.values() for h in hs for i in h.items if i[0] == catalog.SPRINT_FIELD]
    assert any("," in (i[3] or "") for i in sprint_sides) and any(
        i[1] and not i[3] for i in sprint_sides
    )  # carried over, removed
    assert any(i[0] == catalog.STORY_POINTS_FIELD and i[2] for hs in histories.values() for h in hs for i in h.items)
    assert any(len(hs) > 40 for hs in histories.values())
    assert any(r.parent >= 0 and site.issues[r.parent].type == 0 for r in site.issues)  # stories under epics


def test_search_output_feeds_the_counting_reducers(cloud, cloud_http, shared_site):
    page = cloud_http.get(f"{cloud.url}/rest/api/3/search/jql", params={
        "jql": "project = ALPHA AND parent is not EMPTY", "maxResults": 100,
        "fields": "created,resolutiondate,issuetype,project,status,priority,components,parent,customfield_10001",
    }).json()  # fmt: skip
    attributes = [issue_attributes(i, dimension_fields={"team": "customfield_10001"}) for i in page["issues"]]
    stories = [a for a in attributes if a.issue_type != "Sub-task"]
    assert stories and all(a.epic and a.epic.startswith("ALPHA-") for a in stories)
    assert {a.status_category for a in attributes} <= {"new", "indeterminate", "done"}
    ops = shared_site.issues_in_projects("OPS")[0]
    slas = cloud_http.get(f"{cloud.url}/rest/servicedeskapi/request/{shared_site.key_of(ops)}/sla").json()["values"]
    rows = {(r.dimensions, r.measure): r.value for r in sla_status_rows(slas)}
    assert sum(v for (d, m), v in rows.items() if m != "met_rate" and d == (("sla", "Time to resolution"),)) >= 1


def test_mutations_record_changelog_like_jira():
    site = JiraSite(seed=2, issues=30)
    record = site.create_issue("BETA", points=2)
    key = site.key_of(record)
    site.update_issue(key, status="Done")
    assert record.resolved == site.now_epoch and record.resolution == 0
    site.update_issue(key, status="In Progress", points=None)
    last = site.histories(record)[-1]
    assert [i[0] for i in last.items] == ["status", "resolution", catalog.STORY_POINTS_FIELD]
    assert record.resolved is None and record.points is None


def test_jql_parser_handles_quotes_escapes_and_precedence():
    query = parse(
        'project = "AL\\"PHA" OR status = \'In Progress\' AND NOT key in (A-1, "B-2") ORDER BY created DESC, key'
    )
    assert query.where.operator == "or"
    first = query.where.operands[0]
    assert isinstance(first, Clause) and first.values[0].text == 'AL"PHA'
    assert query.where.operands[1].operator == "and"
    assert [(k.field, k.descending) for k in query.order_by] == [("created", True), ("key", False)]
    with pytest.raises(JqlError, match="character 11"):
        parse("project = (")


def test_jira_library_trusts_the_sandbox_ca_only_when_told(cloud, monkeypatch):
    # The trap: with REQUESTS_CA_BUNDLE set, plain requests ignores Session.verify.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())
    with pytest.raises(requests.exceptions.SSLError):
        JIRA(
            server=cloud.url,
            basic_auth=(cloud.email, cloud.api_token),
            options={"rest_api_version": "3"},
            max_retries=0,
        )
    # ResilientSession passes `verify` on every request, so options["verify"] wins over REQUESTS_CA_BUNDLE.
    client = JIRA(
        server=cloud.url,
        basic_auth=(cloud.email, cloud.api_token),
        options={"rest_api_version": "3", "verify": cloud.ca_pem_path},
    )
    assert client.server_info()["deploymentType"] == "Cloud"


def test_429_carries_retry_after_and_the_jira_library_retries(cloud, cloud_jira, cloud_http):
    cloud.faults.inject("rate_limit", count=1, retry_after=1, path_prefix="/rest/api/3/field")
    limited = cloud_http.get(f"{cloud.url}/rest/api/3/field")
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "1"
    assert limited.headers["RateLimit-Reason"] and limited.headers["X-RateLimit-Reset"].endswith("Z")
    cloud.faults.inject("rate_limit", count=1, retry_after=1, path_prefix="/rest/api/3/status")
    started = time.monotonic()
    assert len(cloud_jira.statuses()) == len(catalog.STATUSES)
    assert (
        time.monotonic() - started >= 0.9
    )  # it honoured Retry-After (the library waits 2 x Retry-After x jitter[0.5, 1])


def test_injected_token_expiry_is_a_jira_401(datacenter, dc_jira):
    datacenter.faults.inject("expire_token", count=1, path_prefix="/rest/api/2/myself")
    with pytest.raises(JIRAError) as raised:
        dc_jira.myself()
    assert raised.value.status_code == 401
    assert raised.value.response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert dc_jira.myself()["name"] == "mia"


def test_datacenter_shapes_differ_where_jira_does(datacenter, dc_http):
    site = datacenter.site
    story = next(r for r in site.issues if r.parent >= 0 and site.issues[r.parent].type == 0 and r.sprints)
    issue = dc_http.get(
        f"{datacenter.url}/rest/api/2/issue/{site.key_of(story)}",
        params={"fields": "parent,customfield_10014,customfield_10020,description"},
    ).json()
    fields = issue["fields"]
    assert fields["parent"] is None and fields["customfield_10014"] == site.key_of(site.issues[story.parent])
    assert fields["customfield_10020"][0].startswith("com.atlassian.greenhopper.service.sprint.Sprint@")
    assert isinstance(fields["description"], str)
    assert http(datacenter, ("mia", "sandbox-password")).get(f"{datacenter.url}/rest/api/2/myself").status_code == 200
    assert http(datacenter, ("mia", "wrong")).get(f"{datacenter.url}/rest/api/2/myself").status_code == 401
