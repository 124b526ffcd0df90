"""Fixtures for the Salesforce connector: a running sandbox org, the resource that trusts its CA, a
connection made through the real OAuth + PKCE flow, and a helper that materializes metric assets."""

import json
import urllib.parse
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.salesforce.assets import METRIC_ASSETS
from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
from dfx_pipelines.connectors.salesforce.plugin import DEMO_SELECTION, DEMO_WRITE_BACK
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    complete_authorization,
    start_salesforce_sandbox,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Connection, Workspace
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sandbox import Request
from dfx_pipelines.platform.services import Platform

ORG_NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
REDIRECT_URI = "https://localhost/oauth/callback"


def make_sandbox(opportunities: int = 300, **options: Any) -> RunningSalesforceSandbox:
    return start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=opportunities, now=ORG_NOW), **options)


@pytest.fixture(scope="module")
def sf_sandbox() -> Iterator[RunningSalesforceSandbox]:
    """A shared org for tests that only read; tests that change the org make their own."""
    running = make_sandbox()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset_sandbox_faults(request: pytest.FixtureRequest) -> None:
    if "sf_sandbox" in request.fixturenames:
        sandbox = request.getfixturevalue("sf_sandbox")
        sandbox.server.faults.clear()


@pytest.fixture
def sf_resource(sf_sandbox: RunningSalesforceSandbox) -> SalesforceResource:
    return SalesforceResource(client_id=sf_sandbox.app.oauth.client_id, sandbox_ca_path=sf_sandbox.ca_pem_path)


def connect(
    platform: Platform, sandbox: RunningSalesforceSandbox, resource: SalesforceResource, **overrides: Any
) -> Connection:
    """The real connect flow: authorize URL with PKCE, programmatic consent, code exchange, describe."""
    session = resource.session(platform)
    config = {
        "id": "sf-acme",
        "workspace_id": "acme",
        "display_name": "Acme Salesforce",
        "selection": {"objects": DEMO_SELECTION},
        "write_back": DEMO_WRITE_BACK,
        **overrides.pop("config", {}),
    }
    return connect_salesforce(
        platform,
        session,
        config=config,
        login_url=sandbox.url,
        client_id=sandbox.app.oauth.client_id,
        client_secret=None,
        redirect_uri=REDIRECT_URI,
        receive_code=overrides.pop("receive_code", lambda url: complete_authorization(session, url)),
        **overrides,
    )


@pytest.fixture
def sf_connection(
    platform: Platform, workspace: Workspace, sf_sandbox: RunningSalesforceSandbox, sf_resource: SalesforceResource
) -> Connection:
    return connect(platform, sf_sandbox, sf_resource)


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


class Materializer:
    """Materializes Salesforce metric assets for one partition (or a range) with the real resources."""

    def __init__(self, platform: Platform, resource: SalesforceResource, instance: dg.DagsterInstance):
        self.platform, self.resource, self.instance = platform, resource, instance

    def __call__(
        self,
        metrics: list[str],
        partition_key: str | None = None,
        tags: dict[str, str] | None = None,
        raise_on_error: bool = True,
    ) -> dg.ExecuteInProcessResult:
        sync_partitions(self.instance, self.platform.registry, ["salesforce"])
        selected = [a for a in METRIC_ASSETS if a.key.path[-1] in metrics]
        assert len(selected) == len(metrics), f"unknown metrics in {metrics}"
        return dg.materialize(
            selected,
            partition_key=partition_key,
            instance=self.instance,
            tags=tags,
            raise_on_error=raise_on_error,
            resources={
                "platform": PlatformResource(
                    home=str(self.platform.settings.home), metrics_db_url=self.platform.settings.metrics_db_url
                ),
                "salesforce": self.resource,
            },
        )


@pytest.fixture
def materialize(
    platform: Platform, sf_resource: SalesforceResource, dagster_instance: dg.DagsterInstance
) -> Materializer:
    return Materializer(platform, sf_resource, dagster_instance)


def requested_days(requests: list[dg.RunRequest]) -> dict[str, set[str]]:
    """Every daily partition the daily runs request ("sf-acme|day"), one-day runs and range runs alike,
    with the metrics requested for it."""
    found: dict[str, set[str]] = {}
    for request in requests:
        if request.job_name != "salesforce_daily_job":
            continue
        if request.partition_key is not None:
            keys = [str(request.partition_key)]
        else:
            connection, _, first = request.tags["dagster/asset_partition_range_start"].partition("|")
            last = date.fromisoformat(request.tags["dagster/asset_partition_range_end"].partition("|")[2])
            day, keys = date.fromisoformat(first), []
            while day <= last:
                keys.append(f"{connection}|{day}")
                day += timedelta(days=1)
        for key in keys:
            found.setdefault(key, set()).update({key.path[-1] for key in request.asset_selection or []})
    return found


def request_partition(request: dg.RunRequest) -> str | None:
    """The partition key to materialize a run request with: None for a range run (its tags say the range)."""
    return None if request.partition_key is None else str(request.partition_key)


def subrequests_of(requests: list) -> list:
    """Requests as the org acts on them: a `/composite` call stands for its subrequests (each inheriting
    the call's headers, as Salesforce does); other requests are themselves."""
    out = []
    for request in requests:
        if request.method == "POST" and request.path.endswith("/composite"):
            for sub in json.loads(request.body)["compositeRequest"]:
                split = urllib.parse.urlsplit(sub["url"])
                out.append(
                    Request(
                        method=sub["method"],
                        path=urllib.parse.unquote(split.path),
                        query=urllib.parse.parse_qs(split.query),
                        headers=request.headers,  # a subrequest is sent with its call's token
                    )
                )
        else:
            out.append(request)
    return out
