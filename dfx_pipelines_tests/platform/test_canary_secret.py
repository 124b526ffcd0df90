"""A canary secret planted in a failing run is found nowhere: not in logs, event storage, run storage,
compute logs, the metric database or any file the project writes (the vault holds only ciphertext)."""

import logging
import uuid
from pathlib import Path

import dagster as dg
import pytest

from dfx_pipelines.platform.http import build_session, check_response, translate_errors
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.redaction import redacted_exceptions
from dfx_pipelines.platform.registry import Workspace, parse_connection
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sandbox import EchoApp, SandboxServer

from .escaped_forms import escaped_forms

CANARY = f"canary-{uuid.uuid4().hex}-secret"
# Characters that JSON, URL encoding and base64 all change: each escaped form differs from the canary.
ESCAPED_CANARY = f'canary/{uuid.uuid4().hex}+s3cr"t=&\\x é?'


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.parametrize("failure", ["http_error", "dropped_connection", "library_error"])
def test_canary_secret_appears_nowhere(
    failure: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    dfx_home, dagster_home = tmp_path / "dfx_home", tmp_path / "dagster_home"
    platform_resource = PlatformResource(home=str(dfx_home))
    platform = platform_resource.get()
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    connection = platform.registry.add_connection(
        parse_connection({"id": "echo-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "Echo"}),
        vault=platform.vault,
        secrets={"oauth_access_token": CANARY},
    )

    with SandboxServer(EchoApp(CANARY)) as server:

        @dg.asset
        def leaky_sync(context: dg.AssetExecutionContext, platform: PlatformResource) -> None:
            services = platform.get()
            token = services.vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
            # Every careless thing a connector might do with a token:
            context.log.info(f"using token {token}")
            logging.getLogger("dfx_pipelines.connectors.test").warning("Authorization: Bearer %s", token)
            services.metric_store.write(
                connection,
                "pings",
                "echo-acme",
                [MetricRow("pings", "count", 1.0)],
                Provenance(context.run.run_id, "GET /v1/ping"),
            )
            session = build_session(sandbox_ca=server.ca_pem_path)
            if failure == "dropped_connection":
                server.faults.inject("drop", count=None)
            if failure == "library_error":  # any exception quoting the token, caught at the step boundary
                with redacted_exceptions():
                    raise ValueError(f"echo sync failed: unexpected payload for token {token}")
            with translate_errors("echo sync"):
                response = session.get(
                    f"{server.url}/v1/missing?access_token={token}", headers={"Authorization": f"Bearer {token}"}
                )
                check_response(response, "echo sync")

        dagster_home.mkdir()
        with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
            result = dg.materialize(
                [leaky_sync], instance=instance, resources={"platform": platform_resource}, raise_on_error=False
            )
            assert not result.success
            failure_event = result.get_step_failure_events()[0]
            assert "echo sync failed" in failure_event.step_failure_data.error.to_string()
            events = instance.all_logs(result.run_id)
            run = instance.get_run_by_id(result.run_id)
            stored = "\n".join(str(event) for event in events) + str(run)

    needle = CANARY.encode()
    assert CANARY not in stored
    assert files_containing(dagster_home, needle) == []
    assert files_containing(dfx_home, needle) == []  # metric database and vault (ciphertext only)
    assert CANARY not in caplog.text
    out, err = capfd.readouterr()
    assert CANARY not in out + err
    # And the run really did log and store what it was meant to (the search above was not vacuous).
    assert "using token [REDACTED]" in stored
    assert platform.metric_store.read(connection_id="echo-acme")[0]["value"] == 1.0


def test_the_canarys_escaped_forms_appear_nowhere(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    """The canary planted in each escaped form (JSON-escaped, URL-encoded with either case of hex, base64
    whole and inside a longer base64 text) in log records, `context.log` and the failure's exception
    text: no form is found in event storage, run storage, any file, the captured logs or the output."""
    forms = escaped_forms(ESCAPED_CANARY)
    assert all(form != ESCAPED_CANARY for name, form in forms.items() if name != "json, non-ASCII kept")
    dfx_home, dagster_home = tmp_path / "dfx_home", tmp_path / "dagster_home"
    platform_resource = PlatformResource(home=str(dfx_home))
    platform = platform_resource.get()
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    connection = platform.registry.add_connection(
        parse_connection({"id": "echo-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "Echo"}),
        vault=platform.vault,
        secrets={"oauth_access_token": ESCAPED_CANARY},
    )

    @dg.asset
    def leaky_escapes(context: dg.AssetExecutionContext, platform: PlatformResource) -> None:
        token = platform.get().vault.get(connection.secret_ref("oauth_access_token")).get_secret_value()
        planted = escaped_forms(token)
        for name, form in planted.items():
            context.log.info(f"request body ({name}): {form}")
            logging.getLogger("dfx_pipelines.connectors.test").warning("query string (%s): %s", name, form)
        with redacted_exceptions():
            raise ValueError("escape sync failed: " + " | ".join(planted.values()))

    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        result = dg.materialize(
            [leaky_escapes], instance=instance, resources={"platform": platform_resource}, raise_on_error=False
        )
        assert not result.success
        assert "escape sync failed" in result.get_step_failure_events()[0].step_failure_data.error.to_string()
        stored = "\n".join(str(event) for event in instance.all_logs(result.run_id)) + str(
            instance.get_run_by_id(result.run_id)
        )

    out, err = capfd.readouterr()
    leaks = {
        name: where
        for name, form in {"raw": ESCAPED_CANARY, **forms}.items()
        for where, found in (
            ("event or run storage", form in stored),
            ("a file under DAGSTER_HOME", bool(files_containing(dagster_home, form.encode()))),
            ("a file under DFX_HOME", bool(files_containing(dfx_home, form.encode()))),
            ("captured logs", form in caplog.text),
            ("stdout/stderr", form in out + err),
        )
        if found
    }
    assert leaks == {}
    assert stored.count("request body (") == len(
        forms
    )  # the search above was not vacuous: every form was logged, masked
