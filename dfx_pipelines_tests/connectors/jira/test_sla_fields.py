"""Service Management SLAs as custom fields (`com.atlassian.servicedesk:sd-sla-field`): discovered at
connection time, mappable only under an `sla_...` target (and such a target only to an SLA field), and,
when mapped, `sla_status` reads them from ONE paged search with exactly those fields instead of one
`/rest/servicedeskapi/request/{key}/sla` call per request, with equal values, on Cloud and Data Center.
The sandbox serves both from one source of truth (`sandbox.sla.sla_values`)."""

import pytest

from dfx_pipelines.connectors.jira import compute, query
from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http

from . import expected
from .conftest import (
    FIELD_MAPPER,
    Materializer,
    connect_cloud,
    connect_datacenter,
    make_sandbox,
    resource_for,
    sandbox_paths,
    stored,
)

SLA_FIELDS = [catalog.FIRST_RESPONSE_SLA_FIELD, catalog.RESOLUTION_SLA_FIELD]
SLA_MAPPER = [
    {"target": "sla_time_to_first_response", "source": catalog.FIRST_RESPONSE_SLA_FIELD},
    {"target": "sla_time_to_resolution", "source": catalog.RESOLUTION_SLA_FIELD},
]
SLA_PATH = "/rest/servicedeskapi/request/"


def test_sla_fields_are_discovered_with_their_type(platform, workspace: Workspace, jira_cloud) -> None:
    connection = connect_cloud(platform, jira_cloud, config={"field_mapper": FIELD_MAPPER + SLA_MAPPER})
    discovered = connection.discovered["fields"]
    for field_id in SLA_FIELDS:
        assert discovered[field_id]["schema"]["custom"] == query.SLA_PLUGIN
        assert discovered[field_id]["schema"]["type"] == "sd-servicelevelagreement"
    assert query.sla_fields(connection) == SLA_FIELDS
    # An SLA is never a count dimension: issue_count's search does not ask for it.
    assert not set(SLA_FIELDS) & set(query.count_plan(connection).fields)
    assert query.sla_plan(connection).fields == tuple(SLA_FIELDS)


@pytest.mark.parametrize(
    ("mapping", "problem"),
    [
        ({"target": "sla_resolution", "source": catalog.STORY_POINTS_FIELD}, "must map, and only it may map"),
        ({"target": "region", "source": catalog.RESOLUTION_SLA_FIELD}, "must map, and only it may map"),
        ({"target": "sla_resolution", "source": "customfield_99999"}, "not a custom field discovered"),
    ],
)
def test_an_sla_mapping_must_name_a_discovered_sla_field(
    platform, workspace: Workspace, jira_cloud, mapping: dict, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        connect_cloud(platform, jira_cloud, config={"field_mapper": [mapping]})
    assert platform.registry.find("jira-acme") is None


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_sla_status_from_search_fields_equals_the_per_request_path(platform, workspace: Workspace, flavour) -> None:
    connect = connect_cloud if flavour == "cloud" else connect_datacenter
    with make_sandbox(flavour, issues=600) as sandbox:
        per_request = connect(platform, sandbox, config={"id": "jira-per-request"})
        mapped = connect(platform, sandbox, config={"id": "jira-sla", "field_mapper": FIELD_MAPPER + SLA_MAPPER})
        resource = resource_for(sandbox)

        client = resource.client(platform, per_request)
        before = len(sandbox.requests)
        old = compute.sla_status(client, per_request, None, None)
        old_calls = client.api_calls
        requests_served = sum(1 for path in sandbox_paths(sandbox, before) if SLA_PATH in path)

        client = resource.client(platform, mapped)
        before, asked_before = len(sandbox.requests), len(sandbox.app.field_requests)
        new = compute.sla_status(client, mapped, None, None)
        paths = sandbox_paths(sandbox, before)

        assert old.notes["sla_source"] == "per-request" and new.notes["sla_source"] == "search-fields"
        assert old.rows == new.rows and len(new.rows) == 10  # 2 SLAs x 5 measures
        # ... and both equal the provider's own rules replayed from the site's histories.
        want = expected.sla_tallies(sandbox.site, "OPS")
        got = {(r.dimension_dict["sla"], r.measure): r.value for r in new.rows if r.measure != "met_rate"}
        assert got == {
            (n, m): float(want[n][m]) for n in want for m in ("met", "breached", "ongoing", "ongoing_breached")
        }
        # One paged search, no per-request call; it asked for exactly the mapped SLA fields.
        assert not any(SLA_PATH in path for path in paths)
        assert requests_served == len(expected.issues(sandbox.site, "OPS")) > 100
        asked = sandbox.app.field_requests[asked_before:]
        assert asked and all(sorted(a.fields) == SLA_FIELDS and not a.expand for a in asked)
        assert client.api_calls == len(asked) == -(-requests_served // 100)  # pages of 100
        assert client.api_calls * 20 < old_calls


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_sandbox_search_serves_sla_fields_as_the_request_endpoint_does(flavour: str) -> None:
    """Raw HTTP: `/field` lists the SLA fields with their type; search returns each request's SLA objects
    exactly as `/request/{key}/sla` lists them (plus Jira's `slaDisplayFormat`), null outside a service
    desk, and only when the fields are named."""
    with make_sandbox(flavour) as sandbox:
        session = http(sandbox, (sandbox.email, sandbox.api_token) if flavour == "cloud" else None)
        if flavour == "datacenter":
            session.headers["Authorization"] = f"Bearer {sandbox.personal_access_token}"
        base, api = sandbox.url, "3" if flavour == "cloud" else "2"
        fields = session.get(f"{base}/rest/api/{api}/field").json()
        sla = {f["id"]: f for f in fields if (f.get("schema") or {}).get("custom") == query.SLA_PLUGIN}
        assert sorted(sla) == SLA_FIELDS and all(f["custom"] for f in sla.values())

        def search(jql: str, wanted: list[str]) -> list[dict]:
            if flavour == "cloud":
                body = {"jql": jql, "fields": wanted, "maxResults": 100}
                return session.post(f"{base}/rest/api/3/search/jql", json=body).json()["issues"]
            body = {"jql": jql, "fields": wanted, "maxResults": 1000}
            return session.post(f"{base}/rest/api/2/search", json=body).json()["issues"]

        found = search("project = OPS", SLA_FIELDS)
        assert len(found) > 40
        for issue in found[:40]:
            assert set(issue["fields"]) == set(SLA_FIELDS)
            served = session.get(f"{base}{SLA_PATH}{issue['id']}/sla").json()["values"]
            embedded = [issue["fields"][field_id] for field_id in SLA_FIELDS]
            assert all(e["slaDisplayFormat"] == "NEW_SLA_FORMAT" for e in embedded)
            assert [{k: v for k, v in e.items() if k != "slaDisplayFormat"} for e in embedded] == served
        assert all(i["fields"][f] is None for i in search("project = ALPHA", SLA_FIELDS) for f in SLA_FIELDS)
        assert not any(f in i["fields"] for i in search("project = OPS", ["created"]) for f in SLA_FIELDS)


def test_the_asset_says_where_its_slas_came_from_and_stores_equal_values(
    platform, workspace: Workspace, jira_cloud, dagster_instance
) -> None:
    """Materialized with real Dagster: the `sla_source` metadata names the path, and the stored rows of a
    connection mapping the SLA fields equal those of one that does not."""
    per_request = connect_cloud(platform, jira_cloud, config={"id": "jira-per-request"})
    mapped = connect_cloud(platform, jira_cloud, config={"id": "jira-sla", "field_mapper": FIELD_MAPPER + SLA_MAPPER})
    materialize = Materializer(platform, resource_for(jira_cloud), dagster_instance)
    for connection, source in ((per_request, "per-request"), (mapped, "search-fields")):
        result = materialize(["sla_status"], partition_key=connection.id)
        (event,) = result.get_asset_materialization_events()
        assert event.materialization.metadata["sla_source"].value == source
    assert stored(platform, "jira-sla", "sla_status") == stored(platform, "jira-per-request", "sla_status")
    assert len(stored(platform, "jira-sla", "sla_status")) == 10
