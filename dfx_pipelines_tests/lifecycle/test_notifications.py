"""Sync-error notifications through a real SMTP server (aiosmtpd on 127.0.0.1) and a local Slack-webhook
stand-in: exactly one message per failed connection run, to that connection's workspace owner, naming
the connection and the asset, with a planted secret shown as [REDACTED] and no stack trace; re-evaluating
the sensor never sends again; runs for no connection, or that Dagster will retry, send nothing; a failed
send is retried on the next tick without duplicating."""

import json
import socket
import threading
import uuid
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from dagster._core.events import DagsterEventType

from dfx_pipelines.lifecycle.notifications import SlackWebhookResource, SmtpResource, sync_failure_notification_sensor
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.errors import ConfigError, ConnectorError
from dfx_pipelines.platform.redaction import register_secret
from dfx_pipelines.platform.registry import Connection, Workspace
from dfx_pipelines.platform.resources import PlatformResource

CANARY = f"canary-{uuid.uuid4().hex}"
register_secret(CANARY)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    def __init__(self) -> None:
        self.messages: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: ANN001, N802 - aiosmtpd's hook
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.original_content or envelope.content, policy=policy.default)))
        return "250 OK"


@pytest.fixture
def smtp_server() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield inbox, controller.port
    controller.stop()


@pytest.fixture
def slack_server() -> Iterator[tuple[list[dict], str]]:
    posts: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:  # noqa: ANN002
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield posts, f"http://127.0.0.1:{server.server_port}/services/T000/B000/{uuid.uuid4().hex}"
    server.shutdown()


connections_partitions = dg.DynamicPartitionsDefinition(name="salesforce_connections")


@dg.asset(key_prefix=["salesforce"])
def open_pipeline_by_stage() -> None:
    session = CANARY  # a local holding a secret: must never travel with the error  # noqa: F841
    raise ConnectorError(f"Salesforce rejected session {CANARY} for SELECT Amount FROM Opportunity")


@dg.asset(key_prefix=["salesforce"], partitions_def=connections_partitions)
def win_rate(context: dg.AssetExecutionContext) -> None:
    raise ConnectorError(f"win_rate for {context.partition_key} failed: credential {CANARY} refused\nsecond line with more detail")


@dg.asset
def housekeeping() -> None:
    raise RuntimeError("not a sync")


@pytest.fixture
def owners(platform):  # noqa: ANN001, ANN201
    registry = platform.registry
    registry.upsert_workspace(Workspace(id="acme", name="Acme Corp", owner_email="owner@acme.test"))
    registry.upsert_workspace(Workspace(id="beta", name="Beta Ltd", owner_email="boss@beta.test"))
    registry.add_connection(Connection(id="sf-acme", workspace_id="acme", kind="salesforce", display_name="Acme Salesforce"))
    registry.add_connection(Connection(id="sf-beta", workspace_id="beta", kind="salesforce", display_name="Beta Salesforce"))
    return platform


def evaluate(instance: dg.DagsterInstance, run_id: str, resources: dict) -> dg.SkipReason:
    run = instance.get_run_by_id(run_id)
    [record] = instance.get_records_for_run(run_id=run_id, of_type=DagsterEventType.RUN_FAILURE).records
    context = dg.build_run_status_sensor_context(
        sensor_name="sync_failure_notification_sensor", dagster_event=record.event_log_entry.dagster_event,
        dagster_instance=instance, dagster_run=run, resources=resources,
    ).for_run_failure()
    return sync_failure_notification_sensor(context)


def failed_run(instance: dg.DagsterInstance, assets: list, **kwargs) -> str:  # noqa: ANN003
    result = dg.materialize(assets, instance=instance, raise_on_error=False, resources={}, **kwargs)
    assert not result.success
    return result.run_id


def test_one_safe_email_per_failed_run_to_the_owner(owners, smtp_server, slack_server, tmp_path: Path) -> None:  # noqa: ANN001
    inbox, port = smtp_server
    posts, hook_url = slack_server
    resources = {
        "platform": PlatformResource(),
        "smtp": SmtpResource(host="127.0.0.1", port=port, sender="alerts@dataflow-xpert.test", starttls=False),
        "slack": SlackWebhookResource(url=hook_url),
    }
    home = tmp_path / "dh"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions("salesforce_connections", ["sf-beta"])
        tagged = failed_run(instance, [open_pipeline_by_stage], tags={"dfx/connection": "sf-acme"})
        partitioned = failed_run(instance, [win_rate], partition_key="sf-beta")
        unrelated = failed_run(instance, [housekeeping])
        lifecycle = failed_run(instance, [housekeeping], tags={"dfx/connection": "sf-acme", "dfx/lifecycle": "privacy"})
        retried = failed_run(instance, [open_pipeline_by_stage], tags={"dfx/connection": "sf-acme"})
        instance.add_run_tags(retried, {"dagster/will_retry": "true"})  # as the run-retry daemon marks it

        for _ in range(2):  # a second evaluation of the same failures sends nothing new
            for run_id in (tagged, partitioned, unrelated, lifecycle, retried):
                evaluate(instance, run_id, resources)

    assert len(inbox.messages) == 2 and len(posts) == 2
    by_recipient = {tuple(rcpt): msg for rcpt, msg in inbox.messages}
    acme, beta = by_recipient[("owner@acme.test",)], by_recipient[("boss@beta.test",)]
    for message, connection, name, asset, run_id in (
        (acme, "sf-acme", "Acme Salesforce", "salesforce/open_pipeline_by_stage", tagged),
        (beta, "sf-beta", "Beta Salesforce", "salesforce/win_rate", partitioned),
    ):
        body = message.get_content()
        assert message["To"] == message["To"] and message["From"] == "alerts@dataflow-xpert.test"
        assert connection in message["Subject"] and name in message["Subject"]
        assert name in body and connection in body and asset in body and run_id in body
        assert "[REDACTED]" in body and CANARY not in message.as_string()
        assert "Traceback" not in body and 'File "' not in body and "second line" not in body
        assert "DagsterExecutionStepExecutionError" not in body
    assert "Partition: sf-beta" in beta.get_content()
    assert "Error: ConnectorError: Salesforce rejected session [REDACTED] for SELECT" in acme.get_content()
    for post in posts:
        assert CANARY not in json.dumps(post) and "[REDACTED]" in post["text"]
    assert {p["text"].split("\n", 1)[0] for p in posts} == {"*Sync failed: Acme Salesforce (sf-acme)*", "*Sync failed: Beta Salesforce (sf-beta)*"}

    with owners.engine.connect() as db:
        sent = {r.run_id: r for r in db.execute(sa.select(tables.sent_notifications))}
    assert set(sent) == {tagged, partitioned} and {r.status for r in sent.values()} == {"sent"}
    assert {r.channels for r in sent.values()} == {"email+slack"}


def test_failed_send_is_retried_next_tick_without_duplicates(owners, smtp_server, tmp_path: Path) -> None:  # noqa: ANN001
    inbox, port = smtp_server
    home = tmp_path / "dh"
    home.mkdir()
    good = {"platform": PlatformResource(), "smtp": SmtpResource(host="127.0.0.1", port=port, sender="alerts@dfx.test", starttls=False), "slack": SlackWebhookResource()}
    down = {**good, "smtp": SmtpResource(host="127.0.0.1", port=free_port(), sender="alerts@dfx.test", starttls=False, timeout_seconds=2)}
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_id = failed_run(instance, [open_pipeline_by_stage], tags={"dagster/partition/connection": "sf-acme"})
        with pytest.raises(Exception):  # noqa: B017 - the relay is down: the tick errors, nothing recorded
            evaluate(instance, run_id, down)
        assert inbox.messages == []
        for _ in range(3):
            evaluate(instance, run_id, good)
    assert [rcpt for rcpt, _ in inbox.messages] == [["owner@acme.test"]]


def test_credentials_never_go_over_plain_text_to_a_remote_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFX_SMTP_PASSWORD", "smtp-password-from-env")
    smtp = SmtpResource(host="smtp.example.test", port=25, sender="a@b.test", starttls=False, username="mailer")
    from email.message import EmailMessage

    with pytest.raises(ConfigError, match="without STARTTLS"):
        smtp.send(EmailMessage())
    with pytest.raises(ConfigError, match="https"):
        SlackWebhookResource(url="http://hooks.example.test/x").post("hello")
