"""Sandbox responses validated against Atlassian's published OpenAPI documents with openapi-core.

One deliberate allowance: the specs type timestamps as RFC 3339 `date-time`, while Jira (live, and the
sandbox) writes `2024-01-31T10:00:00.000+0000` (no colon in the offset). The date-time check below
accepts exactly that and RFC 3339; every other schema rule applies as published. Sprint, sprint-issue
and epic responses carry no schema in the agile document, so they are checked with jsonschema against
its component schemas (SprintBean, SearchResults/IssueBean) or the documented example's keys.
"""

from __future__ import annotations

import copy
import gzip
import json
import re
from pathlib import Path

import jsonschema
import pytest
import requests
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse

from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.server import start_jira_sandbox
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http

SPECS = Path(__file__).with_name("specs")  # Atlassian's documents, Apache 2.0 (see specs/README.md)
JIRA_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:?\d\d)$")
CONFIG = Config(
    spec_validator_cls=None,  # the published documents themselves fail strict spec validation (enum defaults)
    extra_format_validators={
        "date-time": lambda value: not isinstance(value, str) or bool(JIRA_TIMESTAMP.match(value))
    },
)


def _load(name: str) -> dict:
    return json.loads(gzip.decompress((SPECS / f"{name}.gz").read_bytes()))


@pytest.fixture(scope="module")
def specs(cloud):
    platform, agile = _load("jira-platform-openapi-v3.json"), _load("jira-software-agile-openapi-v3.json")
    for spec in (platform, agile):
        spec["servers"] = [{"url": cloud.url}, {"url": cloud.api_url}]
    return OpenAPI.from_dict(platform, config=CONFIG), OpenAPI.from_dict(agile, config=CONFIG), agile


def _validate(openapi: OpenAPI, response) -> None:
    assert response.status_code < 500, response.text
    openapi.validate_response(RequestsOpenAPIRequest(response.request), RequestsOpenAPIResponse(response))


PLATFORM_CALLS = [
    (
        "GET",
        "/rest/api/3/search/jql",
        {
            "params": {
                "jql": "project = ALPHA",
                "fields": "summary,status,created,updated,resolutiondate,customfield_10016,customfield_10020,customfield_10001,parent,components,priority,issuetype,project",
                "expand": "changelog,names,schema",
                "maxResults": 20,
            }
        },
    ),
    ("POST", "/rest/api/3/search/jql", {"json": {"jql": "project = OPS", "fields": ["*all"], "maxResults": 5}}),
    (
        "POST",
        "/rest/api/3/search/jql",
        {"json": {"jql": "project = ALPHA", "fields": ["created", "worklog"], "maxResults": 50}},
    ),
    (  # Service Management SLA fields (sd-sla-field) as search returns them
        "POST",
        "/rest/api/3/search/jql",
        {"json": {"jql": "project = OPS", "fields": ["customfield_10040", "customfield_10041"], "maxResults": 50}},
    ),
    ("GET", "/rest/api/3/search/jql", {"params": {"jql": "project = NOPE"}}),  # the 400 ErrorCollection
    ("POST", "/rest/api/3/search/approximate-count", {"json": {"jql": "project = BETA"}}),
    ("GET", "/rest/api/3/field", {}),
    ("GET", "/rest/api/3/project", {}),
    ("GET", "/rest/api/3/project/search", {"params": {"maxResults": 2}}),
    ("GET", "/rest/api/3/project/ALPHA", {}),
    ("GET", "/rest/api/3/project/ALPHA/components", {}),
    ("GET", "/rest/api/3/status", {}),
    ("GET", "/rest/api/3/serverInfo", {}),
    ("GET", "/rest/api/3/myself", {}),
    ("GET", "/rest/api/3/issue/ALPHA-5", {"params": {"expand": "changelog"}}),
    ("GET", "/rest/api/3/issue/ALPHA-5/changelog", {"params": {"maxResults": 3}}),
    (
        "POST",
        "/rest/api/3/changelog/bulkfetch",
        {"json": {"issueIdsOrKeys": ["ALPHA-5", "BETA-7", "OPS-3"], "maxResults": 10}},
    ),
    ("GET", "/rest/api/3/worklog/updated", {"params": {"since": 0}}),
    ("GET", "/rest/api/3/issue/ALPHA-5/worklog", {}),
]


@pytest.mark.parametrize(("method", "path", "kwargs"), PLATFORM_CALLS, ids=[f"{m} {p}" for m, p, _ in PLATFORM_CALLS])
def test_platform_responses_match_the_published_schema(cloud, cloud_http, specs, method, path, kwargs):
    _validate(specs[0], cloud_http.request(method, cloud.url + path, **kwargs))


def test_worklog_list_matches_the_published_schema(cloud, cloud_http, specs):
    ids = [
        v["worklogId"]
        for v in cloud_http.get(f"{cloud.url}/rest/api/3/worklog/updated", params={"since": 0}).json()["values"][:50]
    ]
    response = cloud_http.post(f"{cloud.url}/rest/api/3/worklog/list", json={"ids": ids})
    assert len(response.json()) == len(ids)
    _validate(specs[0], response)


AGILE_CALLS = [
    ("/rest/agile/1.0/board", {}),
    ("/rest/agile/1.0/board/1", {}),
    ("/rest/agile/1.0/board/1/configuration", {}),
    ("/rest/agile/1.0/board/2/configuration", {}),
]


@pytest.mark.parametrize(("path", "kwargs"), AGILE_CALLS, ids=[p for p, _ in AGILE_CALLS])
def test_agile_responses_match_the_published_schema(cloud, cloud_http, specs, path, kwargs):
    _validate(specs[1], cloud_http.get(cloud.url + path, **kwargs))


def _component_validator(agile_spec: dict, schema: dict) -> jsonschema.Draft7Validator:
    document = {**schema, "components": agile_spec["components"]}
    checker = jsonschema.FormatChecker()
    checker.checks("date-time")(lambda value: not isinstance(value, str) or bool(JIRA_TIMESTAMP.match(value)))
    return jsonschema.Draft7Validator(document, format_checker=checker)


def test_sprints_and_sprint_issues_match_the_component_schemas(cloud, cloud_http, specs):
    agile_spec = specs[2]
    page = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/1/sprint").json()
    sprint_page = {"type": "object", "additionalProperties": False, "properties": {
        "isLast": {"type": "boolean"}, "maxResults": {"type": "integer"}, "startAt": {"type": "integer"}, "total": {"type": "integer"},
        "values": {"type": "array", "items": {"$ref": "#/components/schemas/SprintBean"}}}}  # fmt: skip
    _component_validator(agile_spec, sprint_page).validate(page)
    busiest = max(page["values"], key=lambda s: sum(1 for r in cloud.site.issues if s["id"] in r.sprints))
    issues = cloud_http.get(
        f"{cloud.url}/rest/agile/1.0/sprint/{busiest['id']}/issue",
        params={"fields": "status,created,customfield_10020", "expand": "changelog"},
    ).json()
    assert issues["issues"]
    _component_validator(agile_spec, {"$ref": "#/components/schemas/SearchResults"}).validate(issues)
    # The epic endpoint documents only an example: our values carry exactly its keys.
    example = json.loads(
        agile_spec["paths"]["/rest/agile/1.0/board/{boardId}/epic"]["get"]["responses"]["200"]["content"][
            "application/json"
        ]["example"]
    )
    epics = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/1/epic").json()
    assert set(epics) == set(example) and {k for v in epics["values"] for k in v} == {
        k for v in example["values"] for k in v
    } | {"key"}


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_worklogs_embedded_in_search_match_page_of_worklogs_and_the_worklog_endpoint(flavour):
    """Search's `worklog` field is a PageOfWorklogs (the issue fields are untyped in the spec, so it is
    checked against the component): the first 20 worklogs in the worklog endpoint's order, the true total;
    `*all` carries it, `*navigable` does not (Jira's `worklog` field is not navigable)."""
    site = JiraSite(seed=11, issues=60)
    busy = next(r for r in site.issues if site.key_of(r).startswith("ALPHA-"))
    for n in range(25 - len(site.worklogs(busy))):
        site.add_worklog(site.key_of(busy), 600 + n, started=site.now_epoch - 3600 * (n + 1))
    platform = _load("jira-platform-openapi-v3.json")
    page_of_worklogs = _component_validator(platform, {"$ref": "#/components/schemas/PageOfWorklogs"})
    with start_jira_sandbox(site, flavour=flavour) as running:
        api = "3" if flavour == "cloud" else "2"
        if flavour == "cloud":
            session = http(running, (running.email, running.api_token))
            search_path = "/rest/api/3/search/jql"
        else:
            session = http(running)
            session.headers["Authorization"] = f"Bearer {running.personal_access_token}"
            search_path = "/rest/api/2/search"

        def search(fields: list[str]) -> requests.Response:
            return session.post(
                f"{running.url}{search_path}", json={"jql": "project = ALPHA", "fields": fields, "maxResults": 100}
            )

        response = search(["created", "worklog"])
        if flavour == "cloud":
            platform["servers"] = [{"url": running.url}]
            _validate(OpenAPI.from_dict(platform, config=CONFIG), response)
        issues = response.json()["issues"]
        assert {i["key"] for i in issues} == {site.key_of(r) for r in site.issues_in_projects("ALPHA")}
        for issue in issues:
            embedded = issue["fields"]["worklog"]
            page_of_worklogs.validate(embedded)
            own = session.get(f"{running.url}/rest/api/{api}/issue/{issue['id']}/worklog").json()
            assert (embedded["startAt"], embedded["maxResults"], embedded["total"]) == (0, 20, own["total"])
            assert embedded["worklogs"] == own["worklogs"][:20]
        busy_worklogs = next(i for i in issues if i["id"] == str(busy.id))["fields"]["worklog"]
        assert busy_worklogs["total"] == 25 and len(busy_worklogs["worklogs"]) == 20
        everything = {i["id"]: i["fields"] for i in search(["*all"]).json()["issues"]}
        assert all(everything[i["id"]]["worklog"] == i["fields"]["worklog"] for i in issues)
        assert not any("worklog" in i["fields"] for i in search(["*navigable"]).json()["issues"])


def test_validation_can_fail_live_nulls_break_the_published_change_item_schema(specs):
    """`live_nulls=True` sends null change-item sides as live Jira does; the spec types them as strings."""
    with start_jira_sandbox(JiraSite(seed=11, issues=60), live_nulls=True) as running:
        specs_copy = _load("jira-platform-openapi-v3.json")
        specs_copy["servers"] = [{"url": running.url}]
        openapi = OpenAPI.from_dict(specs_copy, config=CONFIG)
        session = http(running, (running.email, running.api_token))
        done = next(r for r in running.site.issues if r.resolved is not None)
        response = session.get(f"{running.url}/rest/api/3/issue/{running.site.key_of(done)}/changelog")
        assert any(item.get("from", "") is None for h in response.json()["values"] for item in h["items"])
        with pytest.raises(Exception, match=r"InvalidData|not valid"):
            _validate(openapi, response)
        strict = copy.deepcopy(response.json())
        for history in strict["values"]:
            history["items"] = [{k: v for k, v in item.items() if v is not None} for item in history["items"]]
        assert strict != response.json()
