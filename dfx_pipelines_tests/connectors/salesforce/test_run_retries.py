"""Run retries against a real Dagster instance configured with the repository's `dagster.yaml` run
retries: a permanent failure (a revoked refresh token, an exhausted API budget) fails once — the
instance marks the run `dagster/will_retry=false` and the retry daemon's own decision function
declines it — and its failure notification is queued at once; a transient failure (503s outlasting the
client's backoff) is still retried. Every connector step is wrapped the same way."""

import ast
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._daemon.auto_run_reexecution.auto_run_reexecution import should_retry

from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import RunningSalesforceSandbox
from dfx_pipelines.lifecycle.notifications import queue_run_failure
from dfx_pipelines.platform.errors import AuthError, ConfigError, ConnectionInactiveError, ConnectorError, VaultError
from dfx_pipelines.platform.failures import is_permanent
from dfx_pipelines.platform.partitions import RANGE_END_TAG as RANGE_END
from dfx_pipelines.platform.partitions import RANGE_START_TAG as RANGE_START
from dfx_pipelines.platform.services import Platform

from .conftest import ORG_NOW, Materializer, connect, make_sandbox

ROOT = Path(__file__).resolve().parents[3]
DAY = ORG_NOW.date() - timedelta(days=1)
PARTITION = f"sf-acme|{DAY}"
WEEK = {RANGE_START: f"sf-acme|{DAY - timedelta(days=6)}", RANGE_END: f"sf-acme|{DAY}"}  # one run, seven queries
DATA = "/services/data/"


@pytest.fixture(scope="module")
def sf_sandbox() -> Iterator[RunningSalesforceSandbox]:
    running = make_sandbox()
    yield running
    running.stop()


@pytest.fixture
def sf_resource(sf_sandbox: RunningSalesforceSandbox) -> SalesforceResource:
    return SalesforceResource(
        client_id=sf_sandbox.app.oauth.client_id,
        sandbox_ca_path=sf_sandbox.ca_pem_path,
        retry_max_attempts=2,
        retry_backoff_seconds=0.01,
        limit_retry_max_attempts=2,
        limit_retry_backoff_seconds=0.01,
    )


@pytest.fixture
def production_retries(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance with exactly the run retries production runs with."""
    run_retries = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_retries"]
    assert run_retries["enabled"] and run_retries["max_retries"] == 2
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(overrides={"run_retries": run_retries}, temp_dir=str(tmp_path / "dagster")) as instance:
        yield instance


def _run(
    platform: Platform, sf_resource: SalesforceResource, instance: dg.DagsterInstance, week: bool = False
) -> dg.DagsterRun:
    materialize = Materializer(platform, sf_resource, instance)
    where = (
        {"tags": {"dfx/connection": "sf-acme", **WEEK}}
        if week
        else {"partition_key": PARTITION, "tags": {"dfx/connection": "sf-acme"}}
    )
    result = materialize(["win_rate"], raise_on_error=False, **where)
    assert not result.success
    return instance.get_run_by_id(result.run_id)


def test_a_revoked_credential_fails_once_and_notifies(
    platform, workspace, sf_sandbox, sf_resource, production_retries
) -> None:
    connection = connect(platform, sf_sandbox, sf_resource)
    refresh = platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value()
    assert (
        sf_sandbox.session().post(f"{sf_sandbox.url}/services/oauth2/revoke", data={"token": refresh}).status_code
        == 200
    )
    sf_sandbox.app.oauth.expire_all_access_tokens()

    run = _run(platform, sf_resource, production_retries)

    assert run.tags["dagster/will_retry"] == "false" and run.tags["dfx/failure"] == "permanent"
    assert should_retry(run, production_retries) is False  # what the run-retry daemon asks before re-launching
    assert queue_run_failure(platform, run).endswith("queued for sf-acme's owner")  # notified now, not after 3 runs


@pytest.mark.parametrize("spent", ["the connection's share", "the org's daily limit"])
def test_an_exhausted_api_budget_fails_once(
    platform, workspace, sf_sandbox, sf_resource, production_retries, spent: str
) -> None:
    connection = connect(platform, sf_sandbox, sf_resource)
    limit = sf_sandbox.app.usage.limit
    sf_sandbox.app.set_api_usage(
        int(connection.settings.api_limit_share * limit) if spent == "the connection's share" else limit
    )
    try:
        run = _run(platform, sf_resource, production_retries, week=True)  # the first response reports the usage
    finally:
        sf_sandbox.app.set_api_usage(0)
    assert run.tags["dagster/will_retry"] == "false" and should_retry(run, production_retries) is False


def test_a_missing_permission_fails_once(platform, workspace, sf_sandbox, sf_resource, production_retries) -> None:
    connect(platform, sf_sandbox, sf_resource)
    sf_sandbox.server.faults.inject("server_error", count=None, status=403, path_prefix=DATA)
    try:
        run = _run(platform, sf_resource, production_retries)
    finally:
        sf_sandbox.server.faults.clear()
    assert run.tags["dagster/will_retry"] == "false" and should_retry(run, production_retries) is False


def test_a_transient_failure_is_still_retried(platform, workspace, sf_sandbox, sf_resource, production_retries) -> None:
    connect(platform, sf_sandbox, sf_resource)
    sf_sandbox.server.faults.inject("server_error", count=None, status=503, path_prefix=DATA)
    try:
        run = _run(platform, sf_resource, production_retries)
    finally:
        sf_sandbox.server.faults.clear()
    assert "dfx/failure" not in run.tags
    assert run.tags["dagster/will_retry"] == "true" and should_retry(run, production_retries) is True
    assert queue_run_failure(platform, run).endswith("will be retried: only its last attempt notifies")


def test_which_errors_are_permanent() -> None:
    from dfx_pipelines.connectors.bigquery.gate import QueryRefused
    from dfx_pipelines.connectors.salesforce.resource import ApiBudgetExhausted

    for error in (
        AuthError("refused"),
        ConfigError("bad"),
        ConnectionInactiveError("revoked"),
        VaultError("key destroyed"),
        ApiBudgetExhausted("spent"),
        QueryRefused("no"),
    ):
        assert is_permanent(error), error
    for error in (ConnectorError("HTTP 503"), RuntimeError("bug"), OSError("reset")):
        assert not is_permanent(error), error


def _calls(node: ast.FunctionDef) -> set[str]:
    return {ast.unparse(call) for call in ast.walk(node) if isinstance(call, ast.Call)}


def test_every_connector_step_classifies_its_errors() -> None:
    """Every asset, op and asset check a connector defines runs its body inside `step_errors(context)`
    (an asset check's through its op context)."""
    missing = []
    for path in (ROOT / "dfx_pipelines" / "connectors").glob("*/*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef):
                continue
            decorators = [ast.unparse(d) for d in node.decorator_list]
            if any(d.startswith(("dg.asset", "dg.op", "dg.multi_asset")) for d in decorators) and (
                not {"step_errors(context)", "step_errors(context.op_execution_context)"} & _calls(node)
            ):
                missing.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert missing == []
