"""Fixtures for the Jira connector: running Cloud and Data Center sandboxes, the resource that trusts their
CA, connections made through the real connect flows (OAuth 3LO + PKCE, or a personal access token), and a
helper that materializes metric assets with real Dagster."""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.jira.assets import METRIC_ASSETS
from dfx_pipelines.connectors.jira.connect import connect_jira_cloud, connect_jira_token
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.server import (
    DEFAULT_REDIRECT_URI,
    RunningJiraSandbox,
    complete_consent,
    start_jira_sandbox,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Connection, Workspace
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

SEED, ISSUES = 11, 300
SELECTION = {"projects": ["ALPHA", "BETA", "OPS"], "boards": [1, 2]}
FIELD_MAPPER = [
    {"target": "story_points", "source": "customfield_10016"},
    {"target": "team", "source": "customfield_10001"},
]


def make_sandbox(flavour: str = "cloud", issues: int = ISSUES, **options: Any) -> RunningJiraSandbox:
    return start_jira_sandbox(JiraSite(seed=SEED, issues=issues), flavour=flavour, **options)


@pytest.fixture(scope="module")
def jira_cloud() -> Iterator[RunningJiraSandbox]:
    """A Cloud site shared by a module's tests; tests that mutate it or change its grants make their own."""
    running = make_sandbox("cloud")
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset_jira_faults(request: pytest.FixtureRequest) -> None:
    if "jira_cloud" in request.fixturenames:
        request.getfixturevalue("jira_cloud").faults.clear()


def resource_for(sandbox: RunningJiraSandbox) -> JiraResource:
    return JiraResource(
        client_id=sandbox.app.oauth.client_id,
        client_secret=sandbox.app.oauth.client_secret,
        sandbox_ca_path=sandbox.ca_pem_path,
    )


def connect_cloud(platform: Platform, sandbox: RunningJiraSandbox, **overrides: Any) -> Connection:
    """The real 3LO flow: authorize URL with state + PKCE, programmatic consent, code exchange,
    accessible-resources, selection checks and field discovery."""
    resource = resource_for(sandbox)
    config = {
        "id": "jira-acme",
        "workspace_id": "acme",
        "display_name": "Acme Jira",
        "selection": SELECTION,
        "field_mapper": FIELD_MAPPER,
        **overrides.pop("config", {}),
    }
    return connect_jira_cloud(
        platform, config=config, session=resource.session(platform), token_session=resource.token_session(platform),
        client_id=resource.client_id, client_secret=resource.client_secret, redirect_uri=DEFAULT_REDIRECT_URI,
        receive_code=overrides.pop("receive_code", lambda url: complete_consent(url, ca_pem_path=sandbox.ca_pem_path)),
        auth_url=overrides.pop("auth_url", sandbox.auth_url), api_origin=overrides.pop("api_origin", sandbox.url), **overrides,
    )  # fmt: skip


def connect_datacenter(platform: Platform, sandbox: RunningJiraSandbox, **overrides: Any) -> Connection:
    config = {
        "id": "jira-dc",
        "workspace_id": "acme",
        "display_name": "Acme Jira DC",
        "selection": SELECTION,
        "field_mapper": FIELD_MAPPER,
        **overrides.pop("config", {}),
    }
    return connect_jira_token(
        platform,
        config=config,
        session=resource_for(sandbox).session(platform),
        base_url=overrides.pop("base_url", sandbox.url),
        personal_access_token=overrides.pop("personal_access_token", sandbox.personal_access_token),
        **overrides,
    )


def sandbox_paths(sandbox: RunningJiraSandbox, since: int = 0) -> list[str]:
    return [request.path for request in sandbox.requests[since:]]


@pytest.fixture
def cloud_connection(platform: Platform, workspace: Workspace, jira_cloud: RunningJiraSandbox) -> Connection:
    return connect_cloud(platform, jira_cloud)


class Materializer:
    """Materializes Jira metric assets for one partition (or a range) with the real resources."""

    def __init__(self, platform: Platform, resource: JiraResource, instance: dg.DagsterInstance):
        self.platform, self.resource, self.instance = platform, resource, instance

    def __call__(
        self,
        metrics: list[str],
        partition_key: Any = None,
        tags: dict[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        sync_partitions(self.instance, self.platform.registry, ["jira"])
        # A multi-asset (throughput + WIP) holds several metrics: take the definitions that hold any
        # requested metric and select exactly the requested keys.
        keys = [dg.AssetKey(["jira", metric]) for metric in metrics]
        selected = [a for a in METRIC_ASSETS if set(a.keys) & set(keys)]
        assert {k for a in selected for k in a.keys} >= set(keys), f"unknown metrics in {metrics}"
        resources = {
            "platform": PlatformResource(
                home=str(self.platform.settings.home), metrics_db_url=self.platform.settings.metrics_db_url
            ),
            "jira": self.resource,
        }
        return dg.materialize(
            selected,
            selection=keys,
            partition_key=partition_key,
            instance=self.instance,
            tags=tags,
            raise_on_error=raise_on_error,
            resources=resources,
        )


@pytest.fixture(scope="module")
def dagster_instance(tmp_path_factory) -> Iterator[dg.DagsterInstance]:
    """One Dagster instance per test module: creating one (SQLite storage, migrations) takes seconds."""
    home = tmp_path_factory.mktemp("dagster_home")
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


def range_tags(connection_id: str, first: Any, last: Any) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": f"{connection_id}|{first}",
        "dagster/asset_partition_range_end": f"{connection_id}|{last}",
    }


def stored(platform: Platform, connection_id: str, metric: str) -> dict[tuple, float | None]:
    """(period, measure, dims) -> value for one metric of a connection."""
    return {
        (row["period"], row["measure"], tuple(sorted(row["dimensions"].items()))): row["value"]
        for row in platform.metric_store.read(connection_id=connection_id, metric=metric)
    }
