"""A connected app with a client secret, as production configures it: `SALESFORCE_CLIENT_SECRET` in the
environment. `dfx connect salesforce` must send the secret itself (not the variable's name) in the code
exchange, and a run must send it when it refreshes the access token; the sandbox's token endpoint checks
the secret as Salesforce does, so a wrong, missing or unexpected one fails with `invalid_client`."""

import secrets
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from dfx_pipelines.cli import main
from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource
from dfx_pipelines.connectors.salesforce.sandbox.launch import (
    DEFAULT_REDIRECT_URI,
    complete_authorization,
    parse_redirect,
)
from dfx_pipelines.connectors.salesforce.sandbox.oauth import pkce_challenge
from dfx_pipelines.platform.registry import ConnectionStatus

from .conftest import Materializer, make_sandbox


def _token_calls(sandbox) -> list[dict[str, str]]:
    return [r.form() for r in sandbox.server.requests if r.path == "/services/oauth2/token"]


@pytest.fixture
def confidential_sandbox():
    running = make_sandbox(client_secret="cs-" + secrets.token_urlsafe(24))
    yield running
    running.stop()


def test_cli_connects_with_the_secret_from_the_environment_and_a_run_refreshes_with_it(
    platform,
    workspace,
    confidential_sandbox,
    monkeypatch,
    tmp_path: Path,
) -> None:
    sandbox, secret = confidential_sandbox, confidential_sandbox.app.oauth.client_secret
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", secret)
    monkeypatch.setenv("DFX_HOME", str(platform.settings.home))
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)  # the resource trusts the embedded sandbox CA
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(sandbox.ca_pem_path).read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()

    args = [
        "connect",
        "salesforce",
        "--workspace",
        "acme",
        "--id",
        "sf-secret",
        "--name",
        "Confidential app org",
        "--login-url",
        sandbox.url,
        "--select",
        "Opportunity:StageName,Amount,Probability,IsClosed",
        "--approve-sandbox",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [exchange] = _token_calls(sandbox)
    assert exchange["grant_type"] == "authorization_code" and exchange["client_secret"] == secret
    connection = platform.registry.get("sf-secret")
    assert connection.status is ConnectionStatus.ACTIVE

    # A run (the resource as the code location builds it, from the environment) refreshes with the secret.
    sandbox.app.oauth.expire_all_access_tokens()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        run = Materializer(platform, salesforce_resource(), instance)(
            ["open_pipeline_by_stage"], partition_key="sf-secret"
        )
    assert run.success
    refreshes = [form for form in _token_calls(sandbox) if form["grant_type"] == "refresh_token"]
    assert len(refreshes) == 1 and refreshes[0]["client_secret"] == secret


def test_a_wrong_name_for_the_secret_fails_the_connect_clearly(
    platform, workspace, confidential_sandbox, monkeypatch
) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_SECRET", "not-the-secret")
    monkeypatch.setenv("DFX_HOME", str(platform.settings.home))
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(confidential_sandbox.ca_pem_path).read_bytes())
    args = [
        "connect",
        "salesforce",
        "--workspace",
        "acme",
        "--id",
        "sf-wrong",
        "--name",
        "x",
        "--login-url",
        confidential_sandbox.url,
        "--select",
        "Opportunity:Amount",
        "--approve-sandbox",
    ]
    result = CliRunner().invoke(main, args)
    # The provider refused the exchange: a failed operation (exit 1), not input dfx could have refused.
    assert result.exit_code == 1 and "invalid_client" in result.output and "not-the-secret" not in result.output
    assert platform.registry.find("sf-wrong") is None


def _exchange(sandbox, client_secret: str | None):
    verifier = secrets.token_urlsafe(48)
    url = sandbox.authorize_url(state="s", code_challenge=pkce_challenge(verifier))
    code = parse_redirect(complete_authorization(sandbox.session(), url))["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "client_id": sandbox.app.oauth.client_id,
        "redirect_uri": DEFAULT_REDIRECT_URI,
        "code_verifier": verifier,
    }
    if client_secret is not None:
        form["client_secret"] = client_secret
    return sandbox.session().post(f"{sandbox.url}/services/oauth2/token", data=form)


def test_the_sandbox_checks_client_secrets_as_salesforce_does(confidential_sandbox) -> None:
    secret = confidential_sandbox.app.oauth.client_secret
    for presented in (None, "SALESFORCE_CLIENT_SECRET", secret + "x"):
        refused = _exchange(confidential_sandbox, presented)
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client", presented
    assert _exchange(confidential_sandbox, secret).status_code == 200

    public = make_sandbox()  # no consumer secret: PKCE alone, and any secret presented is a wrong one
    try:
        assert _exchange(public, None).status_code == 200
        refused = _exchange(public, "SALESFORCE_CLIENT_SECRET")
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_client"
    finally:
        public.stop()
