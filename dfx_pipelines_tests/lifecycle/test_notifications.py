"""Sync-error notifications through a real SMTP server (aiosmtpd on 127.0.0.1) and a local Slack-webhook
stand-in: exactly one message per failed connection run, to that connection's workspace owner, naming
the connection and the asset, with a planted secret shown as [REDACTED] and no stack trace; re-evaluating
the sensor never sends again; runs for no connection, or that Dagster will retry, send nothing. Delivery
failures (relay down, SMTP not configured) are recorded, named by the tick, retried with backoff and
never lost; a backlog is drained in batches."""

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller

from dfx_pipelines.lifecycle import notifications
from dfx_pipelines.lifecycle.notifications import (
    SlackWebhookResource,
    SmtpResource,
    evaluate_notifications,
    sync_failure_notification_sensor,
)
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.errors import ConfigError, ConnectorError
from dfx_pipelines.platform.redaction import register_secret
from dfx_pipelines.platform.registry import Connection, Workspace, utcnow
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

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(
            (
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.original_content or envelope.content, policy=policy.default),
            )
        )
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
        def do_POST(self) -> None:
            posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
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
    raise ConnectorError(
        f"win_rate for {context.partition_key} failed: credential {CANARY} refused\nsecond line with more detail"
    )


@dg.asset
def housekeeping() -> None:
    raise RuntimeError("not a sync")


@pytest.fixture
def owners(platform):
    registry = platform.registry
    registry.upsert_workspace(Workspace(id="acme", name="Acme Corp", owner_email="owner@acme.test"))
    registry.upsert_workspace(Workspace(id="beta", name="Beta Ltd", owner_email="boss@beta.test"))
    registry.add_connection(
        Connection(id="sf-acme", workspace_id="acme", kind="salesforce", display_name="Acme Salesforce")
    )
    registry.add_connection(
        Connection(id="sf-beta", workspace_id="beta", kind="salesforce", display_name="Beta Salesforce")
    )
    return platform


def tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None = None) -> tuple[str, str | None]:
    """One evaluation of the sensor as the daemon runs it: its skip reason and the cursor it leaves."""
    context = dg.build_sensor_context(
        instance=instance, resources=resources, cursor=cursor, sensor_name="sync_failure_notification_sensor"
    )
    result = sync_failure_notification_sensor(context)
    assert isinstance(result, dg.SkipReason)
    return result.skip_message or "", context.cursor


def outbox(platform) -> dict:
    with platform.engine.connect() as db:
        return {r.run_id: r for r in db.execute(sa.select(tables.sent_notifications))}


def failed_run(instance: dg.DagsterInstance, assets: list, **kwargs) -> str:
    result = dg.materialize(assets, instance=instance, raise_on_error=False, resources={}, **kwargs)
    assert not result.success
    return result.run_id


def test_one_safe_email_per_failed_run_to_the_owner(owners, smtp_server, slack_server, tmp_path: Path) -> None:
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

        _, cursor = tick(instance, resources)
        tick(instance, resources, cursor)  # the next tick: nothing new
        tick(instance, resources, None)  # a reset cursor re-reads the same failures: nothing sent twice
        tick(
            instance, resources, '{"__class__": "RunStatusSensorCursor", "record_id": 1}'
        )  # the former sensor's cursor: same

    assert len(inbox.messages) == 2 and len(posts) == 2
    by_recipient = {tuple(rcpt): msg for rcpt, msg in inbox.messages}
    acme, beta = by_recipient[("owner@acme.test",)], by_recipient[("boss@beta.test",)]
    for message, to, connection, name, asset, run_id in (
        (acme, "owner@acme.test", "sf-acme", "Acme Salesforce", "salesforce/open_pipeline_by_stage", tagged),
        (beta, "boss@beta.test", "sf-beta", "Beta Salesforce", "salesforce/win_rate", partitioned),
    ):
        body = message.get_content()
        assert message["To"] == to and message["From"] == "alerts@dataflow-xpert.test"
        assert connection in message["Subject"] and name in message["Subject"]
        assert name in body and connection in body and asset in body and run_id in body
        assert "[REDACTED]" in body and CANARY not in message.as_string()
        assert "Traceback" not in body and 'File "' not in body and "second line" not in body
        assert "DagsterExecutionStepExecutionError" not in body
    assert "Partition: sf-beta" in beta.get_content()
    assert "Error: ConnectorError: Salesforce rejected session [REDACTED] for SELECT" in acme.get_content()
    for post in posts:
        assert CANARY not in json.dumps(post) and "[REDACTED]" in post["text"]
    assert {p["text"].split("\n", 1)[0] for p in posts} == {
        "*Sync failed: Acme Salesforce (sf-acme)*",
        "*Sync failed: Beta Salesforce (sf-beta)*",
    }

    with owners.engine.connect() as db:
        sent = {r.run_id: r for r in db.execute(sa.select(tables.sent_notifications))}
    assert not {unrelated, lifecycle, retried} & set(sent)  # no owner, a lifecycle run, a run to be retried
    assert set(sent) == {tagged, partitioned} and {r.status for r in sent.values()} == {"sent"}
    assert {r.channels for r in sent.values()} == {"email+slack"}


def test_failed_send_is_retried_next_tick_without_duplicates(owners, smtp_server, tmp_path: Path) -> None:
    """A failed delivery is named by the tick, stays queued (never lost) and is retried at the first tick
    after its backoff (1 min, then 2, ...), exactly once."""
    inbox, port = smtp_server
    home = tmp_path / "dh"
    home.mkdir()
    good = {
        "platform": PlatformResource(),
        "smtp": SmtpResource(host="127.0.0.1", port=port, sender="alerts@dfx.test", starttls=False),
        "slack": SlackWebhookResource(),
    }
    down = {
        **good,
        "smtp": SmtpResource(
            host="127.0.0.1", port=free_port(), sender="alerts@dfx.test", starttls=False, timeout_seconds=2
        ),
    }
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_id = failed_run(instance, [open_pipeline_by_stage], tags={"dagster/partition/connection": "sf-acme"})
        said, cursor = tick(instance, down)  # the relay is down: the tick does not error, it says why
        assert "DELIVERY FAILED for 1" in said and "ConnectionRefusedError" in said and "attempt 1" in said
        row = outbox(owners)[run_id]
        assert row.status == "queued" and row.attempts == 1 and "ConnectionRefusedError" in row.last_error
        assert (
            timedelta(seconds=55)
            <= row.next_attempt_at.replace(tzinfo=None) - row.at.replace(tzinfo=None)
            <= timedelta(seconds=65)
        )

        said, cursor = tick(instance, good, cursor)  # backoff not over yet: not tried again
        assert inbox.messages == [] and "0 sent" in said
        later = utcnow() + timedelta(seconds=61)
        down_smtp = down["smtp"]
        said, _, _ = evaluate_notifications(
            owners, instance, cursor, down_smtp, now=later
        )  # second failure: the backoff doubles
        row = outbox(owners)[run_id]
        assert row.attempts == 2 and row.next_attempt_at.replace(tzinfo=None) - later.replace(tzinfo=None) == timedelta(
            seconds=120
        )
        for _ in range(2):
            evaluate_notifications(owners, instance, cursor, good["smtp"], now=later + timedelta(seconds=121))
    assert [rcpt for rcpt, _ in inbox.messages] == [["owner@acme.test"]]
    row = outbox(owners)[run_id]
    assert row.status == "sent" and row.attempts == 3 and row.last_error is None


def test_without_smtp_the_failure_is_queued_and_sent_once_smtp_is_configured(
    owners, smtp_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inbox, port = smtp_server
    home = tmp_path / "dh"
    home.mkdir()
    resources = {"platform": PlatformResource(), "smtp": SmtpResource(starttls=False), "slack": SlackWebhookResource()}
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_id = failed_run(instance, [open_pipeline_by_stage], tags={"dfx/connection": "sf-acme"})
        said, cursor = tick(instance, resources)
        assert "SMTP is not configured" in said and "DELIVERY FAILED" in said
        assert outbox(owners)[run_id].status == "queued"  # recorded, not lost
        monkeypatch.setenv("DFX_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("DFX_SMTP_PORT", str(port))
        monkeypatch.setenv("DFX_SMTP_FROM", "alerts@dfx.test")
        evaluate_notifications(owners, instance, cursor, resources["smtp"], now=utcnow() + timedelta(minutes=2))
    assert [rcpt for rcpt, _ in inbox.messages] == [["owner@acme.test"]]
    assert outbox(owners)[run_id].status == "sent"


def test_a_backlog_is_drained_in_batches(owners, smtp_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dagster's run-failure sensor handles one failed run per tick when its function returns a skip
    reason; 120 failures would take two hours. Ours queues them all and sends DELIVERY_BATCH per tick."""
    inbox, port = smtp_server
    home = tmp_path / "dh"
    home.mkdir()
    resources = {
        "platform": PlatformResource(),
        "smtp": SmtpResource(host="127.0.0.1", port=port, sender="alerts@dfx.test", starttls=False),
        "slack": SlackWebhookResource(),
    }
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        run_ids = []
        for index in range(120):
            run = instance.add_run(
                dg.DagsterRun(
                    job_name="salesforce_daily_job",
                    run_id=uuid.uuid4().hex,
                    tags={"dfx/connection": "sf-acme" if index % 2 else "sf-beta"},
                )
            )
            instance.report_run_failed(run, message=f"failure {index}")
            run_ids.append(run.run_id)
        sent_per_tick, cursor = [], None
        for _ in range(3):
            before = len(inbox.messages)
            _, cursor = tick(instance, resources, cursor)
            sent_per_tick.append(len(inbox.messages) - before)
    assert sent_per_tick == [
        notifications.DELIVERY_BATCH,
        notifications.DELIVERY_BATCH,
        120 - 2 * notifications.DELIVERY_BATCH,
    ]
    assert sorted(m["X-DFX-Run-Id"] for _, m in inbox.messages) == sorted(run_ids)  # each exactly once
    assert {r.status for r in outbox(owners).values()} == {"sent"}


def test_credentials_never_go_over_plain_text_to_a_remote_relay(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DFX_SMTP_PASSWORD", "smtp-password-from-env")
    smtp = SmtpResource(host="smtp.example.test", port=25, sender="a@b.test", starttls=False, username="mailer")
    from email.message import EmailMessage

    with pytest.raises(ConfigError, match="without STARTTLS"):
        smtp.send(EmailMessage())
    with pytest.raises(ConfigError, match="https"):
        SlackWebhookResource(url="http://hooks.example.test/x").post("hello")
