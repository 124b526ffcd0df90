"""Fixtures: a running Salesforce sandbox (HTTPS, local CA) and real simple-salesforce clients against it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from simple_salesforce import Salesforce

from dfx_pipelines.connectors.salesforce.sandbox.launch import RunningSalesforceSandbox, start_salesforce_sandbox
from dfx_pipelines.connectors.salesforce.sandbox.org import SalesforceOrg
from dfx_pipelines.platform.http import NO_RETRY, build_session
from dfx_pipelines.platform.sandbox import SandboxCA

# A Sunday in mid-June, so THIS_WEEK, THIS_MONTH and THIS_QUARTER are easy to reason about.
FIXED_NOW = datetime(2025, 6, 15, 12, 30, 0, tzinfo=UTC)


def client(sandbox: RunningSalesforceSandbox, access_token: str, version: str = "59.0") -> Salesforce:
    return Salesforce(
        instance_url=sandbox.url,
        session_id=access_token,
        session=build_session(sandbox_ca=sandbox.ca_pem_path, retry=NO_RETRY),
        version=version,
    )


@pytest.fixture(scope="session")
def sandbox_ca() -> SandboxCA:
    return SandboxCA()


@pytest.fixture(scope="session")
def started_sandboxes() -> Iterator[list[RunningSalesforceSandbox]]:
    """Every sandbox the session started; stopped together at the end (each stop waits ~0.5 s for its loop)."""
    started: list[RunningSalesforceSandbox] = []
    yield started
    stoppers = [threading.Thread(target=sandbox.stop) for sandbox in started]
    for thread in stoppers:
        thread.start()
    for thread in stoppers:
        thread.join()


@pytest.fixture(scope="session")
def shared_sandbox(sandbox_ca, started_sandboxes) -> RunningSalesforceSandbox:
    """Read-mostly: 2,500 opportunities (more than one 2,000-record page). Tests that write use their own."""
    sandbox = start_salesforce_sandbox(SalesforceOrg(seed=11, opportunities=2500, now=FIXED_NOW), ca=sandbox_ca)
    started_sandboxes.append(sandbox)
    return sandbox


@pytest.fixture(scope="session")
def shared_sf(shared_sandbox: RunningSalesforceSandbox) -> Salesforce:
    return client(shared_sandbox, shared_sandbox.app.issue_tokens()["access_token"])


@pytest.fixture
def make_sandbox(sandbox_ca, started_sandboxes) -> Callable[..., RunningSalesforceSandbox]:
    """A fresh small sandbox per test, for tests that write, move the clock or spend the API limit."""

    def make(
        opportunities: int = 200, seed: int = 3, org_options: dict | None = None, **app_options
    ) -> RunningSalesforceSandbox:
        org = SalesforceOrg(seed=seed, opportunities=opportunities, now=FIXED_NOW, **(org_options or {}))
        sandbox = start_salesforce_sandbox(org, ca=sandbox_ca, **app_options)
        started_sandboxes.append(sandbox)
        return sandbox

    return make


@pytest.fixture
def sandbox(make_sandbox: Callable[..., RunningSalesforceSandbox]) -> RunningSalesforceSandbox:
    return make_sandbox()


@pytest.fixture
def sf(sandbox: RunningSalesforceSandbox) -> Salesforce:
    return client(sandbox, sandbox.app.issue_tokens()["access_token"])
