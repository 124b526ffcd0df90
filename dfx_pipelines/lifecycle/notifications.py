"""Transactional sync-error notifications (P35): when a run for a connection fails, its workspace owner gets
one email naming the connection, the asset(s) or step that failed, and a safe error summary; optionally
the same text goes to a Slack webhook.

- Which connection: the run's `dfx/connection` tag, else `dagster/partition/connection`, else a
  `dagster/partition` (or partition-range start) whose connection part is a registered connection.
  Runs for no connection, privacy-lifecycle runs (tagged `dfx/lifecycle`, e.g. a deletion run carrying
  `dfx/connection`), and runs of connections no longer active (revoked/removed) send nothing.
- One per failed run, never lost: the sensor reads failed runs in batches from Dagster's event log
  (its cursor is the event storage id) and *queues* each in `sent_notifications`, keyed by run id, so
  a re-evaluation (sensor reset, daemon restart) never queues or sends twice. Delivery then sends what
  is due, a batch per tick over one SMTP connection. A failed delivery (SMTP not configured, relay
  down, refused) stays queued with its attempts, the redacted reason and a next attempt after an
  exponential backoff (1 min doubling to 1 h, never given up), and the tick's skip reason says what
  failed and when it is retried. A run Dagster will retry automatically (`dagster/will_retry=true`)
  sends nothing: only the last attempt of a sync speaks.
- Safe summary: the first line of the failing step's own exception message (not Dagster's wrapper),
  passed through `redact` and cut to 240 characters. Never a stack trace, locals, or the error's cause
  chain; the whole body is redacted once more before it leaves.
- SMTP credentials and the Slack webhook URL (itself a secret) come from the environment — `EnvVar` in
  the resource config, or the DFX_SMTP_* / DFX_SLACK_WEBHOOK_URL variables — never literals; both are
  registered with the redaction layer. Credentials are only sent over STARTTLS unless the host is
  loopback.
"""

import ipaddress
import os
import re
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid

import dagster as dg
import requests
import sqlalchemy as sa
from dagster._core.events import DagsterEventType

from dfx_pipelines.platform import identifiers, tables
from dfx_pipelines.platform.endpoints import HostPolicy, check_endpoint
from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.errors import ConfigError, IdentifierError, UnsafeDestinationError
from dfx_pipelines.platform.redaction import redact, register_secret
from dfx_pipelines.platform.registry import Connection, Registry, utcnow
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings

SUMMARY_LIMIT = 240
_QUALIFIED = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]*\.)+([A-Za-z_][A-Za-z0-9_]*:)")
_WRAPPERS = ("DagsterExecutionStepExecutionError", "DagsterUserCodeExecutionError", "DagsterExecutionInterruptedError")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class SmtpResource(dg.ConfigurableResource):
    """The SMTP relay. Unset fields fall back to DFX_SMTP_HOST, DFX_SMTP_PORT, DFX_SMTP_FROM,
    DFX_SMTP_USERNAME and DFX_SMTP_PASSWORD; give credentials only as `EnvVar`s."""

    host: str | None = None
    port: int | None = None  # unset: DFX_SMTP_PORT, else 587
    sender: str | None = None
    starttls: bool = True
    username: str | None = None
    password: str | None = None
    timeout_seconds: float = 15.0

    def _value(self, field: str, env: str) -> str | None:
        value = resolved(getattr(self, field))  # an EnvVar read outside a run is its name, not its value
        return str(value) if value not in (None, "") else (os.environ.get(env) or None)

    def configured(self) -> bool:
        return bool(self._value("host", "DFX_SMTP_HOST") and self._value("sender", "DFX_SMTP_FROM"))

    def send(self, message: EmailMessage) -> None:
        with self.batch() as sender:
            sender.send(message)

    @contextmanager
    def batch(self) -> Iterator["_SmtpBatch"]:
        """Send several messages over one connection, opened at the first message."""
        sender = _SmtpBatch(self)
        try:
            yield sender
        finally:
            sender.close()

    def _open(self) -> smtplib.SMTP:
        host, sender = self._value("host", "DFX_SMTP_HOST"), self._value("sender", "DFX_SMTP_FROM")
        if not host or not sender:
            raise ConfigError("SMTP is not configured: set DFX_SMTP_HOST and DFX_SMTP_FROM (or the smtp resource)")
        port = int(self._value("port", "DFX_SMTP_PORT") or 587)
        username, password = self._value("username", "DFX_SMTP_USERNAME"), self._value("password", "DFX_SMTP_PASSWORD")
        register_secret(password)
        if username and not self.starttls and not _is_loopback(host):
            raise ConfigError(f"refusing to send SMTP credentials to {host} without STARTTLS")
        smtp = smtplib.SMTP(host, port, timeout=self.timeout_seconds)
        try:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
        except BaseException:
            smtp.close()
            raise
        return smtp

    def sender_address(self) -> str | None:
        return self._value("sender", "DFX_SMTP_FROM")


class _SmtpBatch:
    """One SMTP connection for a batch. `unusable` after a failure to configure or reach the relay: the
    rest of the batch would fail the same way, so the caller stops and retries at the next tick."""

    def __init__(self, resource: SmtpResource):
        self._resource = resource
        self._smtp: smtplib.SMTP | None = None
        self.unusable = False

    def send(self, message: EmailMessage) -> None:
        if self._smtp is None:
            try:
                self._smtp = self._resource._open()
            except Exception:
                self.unusable = True
                raise
        del message["From"]
        message["From"] = self._resource.sender_address()
        try:
            self._smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused:
            raise  # this recipient only: the connection is fine for the others
        except Exception:
            self.unusable = True  # connection state unknown: reconnect at the next tick
            self.close()
            raise

    def close(self) -> None:
        if self._smtp is not None:
            try:
                self._smtp.quit()
            except Exception:  # noqa: BLE001 - closing a dead connection
                self._smtp.close()
            self._smtp = None


SLACK_WEBHOOK_HOST = "hooks.slack.com"


def check_webhook_url(url: str, allowed_hosts: frozenset[str] = frozenset(), *, sandbox_allowed: bool) -> str:
    """The webhook URL to post to, or ConfigError: https on `hooks.slack.com` under `/services/` (or on
    a host the operator allow-listed), parsed and resolved by `platform.endpoints` like every endpoint
    a secret goes to — so no userinfo trick, private, loopback (outside the sandbox) or metadata host.
    The messages never quote the URL: its path is the secret."""
    policy = HostPolicy(
        exact=frozenset({SLACK_WEBHOOK_HOST}) | allowed_hosts,
        description=f"{SLACK_WEBHOOK_HOST} or an allow-listed host (DFX_SLACK_WEBHOOK_HOSTS)",
    )
    try:
        checked = check_endpoint(
            url,
            what="the Slack webhook URL",
            policy=policy,
            sandbox_allowed=sandbox_allowed,
            path=None,
            sandbox_schemes=("https", "http"),
        )
    except UnsafeDestinationError as exc:
        raise ConfigError(f"{exc} (an incoming webhook is https://{SLACK_WEBHOOK_HOST}/services/…)") from None
    if checked.host == SLACK_WEBHOOK_HOST and not checked.path.startswith("/services/"):
        raise ConfigError(f"the Slack webhook URL must be https://{SLACK_WEBHOOK_HOST}/services/…")
    return checked.url


class SlackWebhookResource(dg.ConfigurableResource):
    """An optional Slack incoming webhook (the URL is a secret: `EnvVar("DFX_SLACK_WEBHOOK_URL")`).
    Only `https://hooks.slack.com/services/…` unless `allowed_hosts` (or DFX_SLACK_WEBHOOK_HOSTS,
    comma-separated) names another host, e.g. a company's outbound relay."""

    url: str | None = None  # unset: DFX_SLACK_WEBHOOK_URL; neither: no Slack message
    allowed_hosts: str | None = None  # unset: DFX_SLACK_WEBHOOK_HOSTS
    timeout_seconds: float = 10.0

    def _allowed_hosts(self) -> frozenset[str]:
        text = self.allowed_hosts if self.allowed_hosts is not None else os.environ.get("DFX_SLACK_WEBHOOK_HOSTS", "")
        return frozenset(host.lower() for host in text.split(",") if host)

    def resolved_url(self) -> str | None:
        url = resolved(self.url) or os.environ.get("DFX_SLACK_WEBHOOK_URL") or None
        register_secret(url)
        return url

    def post(self, text: str) -> None:
        url = self.resolved_url()
        if not url:
            return
        checked = check_webhook_url(url, self._allowed_hosts(), sandbox_allowed=Settings.from_env().sandbox_allowed)
        response = requests.post(checked, json={"text": text}, timeout=self.timeout_seconds, allow_redirects=False)
        if response.status_code >= 300:
            raise ConfigError(f"Slack webhook answered {response.status_code}")


# ------------------------------------------------------------------------------ what to say


def _slug(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return identifiers.connection_slug(value)
    except IdentifierError:
        return None


def connection_for_run(tags: dict[str, str], registry: Registry) -> Connection | None:
    """The registered connection a run was for, from its tags; None for runs that are no connection's."""
    candidates = [tags.get("dfx/connection"), tags.get("dagster/partition/connection")]
    for tag in ("dagster/partition", "dagster/asset_partition_range_start"):
        value = tags.get(tag)
        if value:  # single-dimension key, or "connection|date" (the dimensions sort by name)
            candidates.append(value.split("|", 1)[0])
    for candidate in candidates:
        slug = _slug(candidate)
        connection = registry.find(slug) if slug else None
        if connection is not None:
            return connection
    return None


def safe_summary_text(text: str) -> str:
    """First line only (a message's later lines are where payloads and details tend to go), redacted, cut."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary = _QUALIFIED.sub(r"\1", lines[0]) if lines else "the run failed"  # module path of the class: noise
    summary = redact(summary)
    return summary if len(summary) <= SUMMARY_LIMIT else summary[: SUMMARY_LIMIT - 1] + "…"


def safe_summary(error) -> str:
    """The failing code's own message: first line, redacted, truncated. No trace, no locals, no cause."""
    while error is not None and error.cls_name in _WRAPPERS and error.cause is not None:
        error = error.cause  # Dagster's wrapper says only "error occurred while executing op ..."
    if error is None:
        return "unknown error"
    return safe_summary_text(error.message or error.cls_name or "error")


def failed_assets(instance: dg.DagsterInstance, run: dg.DagsterRun, step_keys: list[str]) -> list[str]:
    """The assets the failed steps were materializing (their step keys where a step is not an asset)."""
    names: list[str] = []
    snapshot = (
        instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    )
    for step_key in step_keys:
        step = next((s for s in snapshot.steps if s.key == step_key), None) if snapshot else None
        keys = (
            sorted(
                {
                    o.properties.asset_key.to_user_string()
                    for o in step.outputs
                    if o.properties and o.properties.asset_key
                }
            )
            if step
            else []
        )
        names.extend(keys or [step_key])
    return names


def compose(
    connection: Connection,
    workspace_name: str,
    owner: str,
    run: dg.DagsterRun,
    assets: list[str],
    summaries: list[str],
    failed_at: datetime | None = None,
) -> EmailMessage:
    partition = run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start") or ""
    what = ", ".join(dict.fromkeys(assets)) or run.job_name
    body = "\n".join(
        [
            "Hello,",
            "",
            (
                f'A data sync for your connection "{connection.display_name}" ({connection.id}, {connection.kind}) in workspace '
                f'"{workspace_name}" failed.'
            ),
            "",
            f"What failed: {what}",
            *([f"Partition: {partition}"] if partition else []),
            f"When: {failed_at or utcnow():%Y-%m-%d %H:%M} UTC",
            "Error: " + ("; ".join(dict.fromkeys(summaries)) or "the run failed before any step ran"),
            f"Run id: {run.run_id}",
            "",
            (
                "If this was a passing problem at the provider, the next scheduled sync catches up on its own. If it keeps "
                "failing, check the connection in DataFlow-Xpert (reconnect it if its access was revoked) or contact "
                "support quoting the run id."
            ),
            "",
            "DataFlow-Xpert",
        ]
    )
    message = EmailMessage()
    message["To"] = owner
    message["Subject"] = redact(f"Sync failed: {connection.display_name} ({connection.id})")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="dataflow-xpert.invalid")
    message["Auto-Submitted"] = "auto-generated"  # transactional: no out-of-office replies
    message["X-DFX-Run-Id"] = run.run_id
    message.set_content(redact(body))
    return message


# ------------------------------------------------------------------------------ the outbox
#
# A failed run is first *queued* (a row in `sent_notifications`, keyed by run id, so it is queued once),
# then delivered. Delivery failures (no SMTP configured, relay down, refused) leave the row queued with
# the redacted reason and a next attempt after an exponential backoff; the tick's skip reason says what
# failed and when it is retried. Nothing raises out of the sensor, so its cursor always advances and a
# broken relay never loses a failure: the backlog is delivered, in batches, once the relay is back.

QUEUE_BATCH = 500  # failed runs read per tick
DELIVERY_BATCH = 50  # messages sent per tick (one SMTP connection)
BACKOFF_SECONDS = 60  # first retry after this; doubled per attempt
MAX_BACKOFF_SECONDS = 3600  # never longer than this between attempts: a notification is never given up
SENDING_LEASE = timedelta(minutes=10)  # a row left "sending" by a crashed process is retried after this
FIRST_TICK_LOOKBACK = timedelta(hours=24)  # a new sensor cursor notifies failures of the last day, not all history
_ERROR_LIMIT = 500

QUEUED, SENDING, SENT, SENT_SLACK_FAILED, DROPPED = "queued", "sending", "sent", "sent-slack-failed", "dropped"


def backoff(attempts: int) -> timedelta:
    """Delay before the next attempt after `attempts` failed ones: 1, 2, 4, ... minutes, at most an hour."""
    return timedelta(seconds=min(MAX_BACKOFF_SECONDS, BACKOFF_SECONDS * 2 ** max(0, attempts - 1)))


def _why_not_notified(run: dg.DagsterRun, connection: Connection | None) -> str | None:
    if run.tags.get("dagster/will_retry") == "true":
        return "will be retried: only its last attempt notifies"
    if "dfx/lifecycle" in run.tags:  # our own revocation/deletion/retention runs are operators' business
        return "is a privacy-lifecycle run: operators are alerted, not the customer"
    if connection is None:
        return "is for no registered connection: nothing to send"
    if not connection.is_active:  # revoked/removed by the customer: a failing run is expected, not news
        return f"is for connection {connection.id}, which is {connection.status.value}: nothing to send"
    return None


def queue_run_failure(platform: Platform, run: dg.DagsterRun, now: datetime | None = None) -> str:
    """Queue the failed run's notification (once per run); returns what happened."""
    connection = connection_for_run(dict(run.tags), platform.registry)
    reason = _why_not_notified(run, connection)
    if reason is not None:
        return f"run {run.run_id} {reason}"
    assert connection is not None
    now = now or utcnow()
    owner = platform.registry.get_workspace(connection.workspace_id).owner_email
    try:
        with platform.engine.begin() as db:
            db.execute(tables.sent_notifications.insert().values(
                run_id=run.run_id, connection_id=connection.id, recipient=owner, channels="email", status=QUEUED, at=now, attempts=0, next_attempt_at=now,
            ))  # fmt: skip
    except sa.exc.IntegrityError:
        return f"run {run.run_id}: already queued"
    return f"run {run.run_id}: queued for {connection.id}'s owner"


def _claim(engine: sa.Engine, run_id: str, now: datetime) -> bool:
    """Take a due row for sending (a lease: a crash leaves it due again after SENDING_LEASE)."""
    n = tables.sent_notifications
    with engine.begin() as db:
        claimed = db.execute(
            n.update()
            .where(n.c.run_id == run_id, n.c.status.in_((QUEUED, SENDING)), n.c.next_attempt_at <= now)
            .values(status=SENDING, next_attempt_at=now + SENDING_LEASE)
        )
    return claimed.rowcount == 1


def _finish(engine: sa.Engine, run_id: str, **values: object) -> None:
    with engine.begin() as db:
        db.execute(
            tables.sent_notifications.update().where(tables.sent_notifications.c.run_id == run_id).values(**values)
        )


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> tuple[list, str]:
    """The run's step failures and its run-failure message, from Dagster's event log."""
    steps = [
        r.event_log_entry.dagster_event
        for r in instance.get_records_for_run(run_id=run_id, of_type=DagsterEventType.STEP_FAILURE).records
    ]
    runs = instance.get_records_for_run(run_id=run_id, of_type=DagsterEventType.RUN_FAILURE).records
    run_failure = runs[-1].event_log_entry.dagster_event if runs else None
    return [e for e in steps if e is not None], (run_failure.message or "") if run_failure is not None else ""


def _message_for(platform: Platform, instance: dg.DagsterInstance, run_id: str) -> tuple[EmailMessage | None, str]:
    """The email for a queued run, or None and why it is no longer to be sent (run deleted, connection revoked)."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return None, "the run no longer exists"
    connection = connection_for_run(dict(run.tags), platform.registry)
    reason = _why_not_notified(run, connection)
    if reason is not None:
        return None, f"the run {reason}"
    assert connection is not None
    workspace = platform.registry.get_workspace(connection.workspace_id)
    step_failures, run_failure_message = _failure_message(instance, run_id)
    summaries = [safe_summary(event.step_failure_data.error) for event in step_failures if event.step_failure_data]
    if not summaries and run_failure_message:
        summaries = [safe_summary_text(run_failure_message)]
    assets = failed_assets(instance, run, [e.step_key for e in step_failures if e.step_key])
    record = instance.get_run_record_by_id(run_id)
    failed_at = datetime.fromtimestamp(record.end_time, tz=UTC) if record and record.end_time else None
    return compose(connection, workspace.name, workspace.owner_email, run, assets, summaries, failed_at), ""


@dataclass
class DeliveryReport:
    sent: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)  # "run id: reason; retry at ..."
    slack_failed: list[str] = field(default_factory=list)
    deferred: int = 0  # due but left for the next tick (batch full, or the relay is down)

    def summary(self) -> str:
        parts = [f"{len(self.sent)} sent"]
        if self.dropped:
            parts.append(f"{len(self.dropped)} dropped")
        if self.deferred:
            parts.append(f"{self.deferred} still due")
        text = "notifications: " + ", ".join(parts)
        if self.failed:
            text += f"; DELIVERY FAILED for {len(self.failed)}: " + " | ".join(self.failed)
        if self.slack_failed:
            text += "; Slack failed for " + " | ".join(self.slack_failed)
        return text


def _due(engine: sa.Engine, now: datetime, limit: int) -> list[str]:
    n = tables.sent_notifications
    with engine.connect() as db:
        query = (
            sa.select(n.c.run_id)
            .where(n.c.status.in_((QUEUED, SENDING)), n.c.next_attempt_at <= now)
            .order_by(n.c.next_attempt_at, n.c.at)
            .limit(limit)
        )
        return list(db.execute(query).scalars())


def deliver_due(
    platform: Platform,
    instance: dg.DagsterInstance,
    smtp: SmtpResource,
    slack: SlackWebhookResource | None = None,
    now: datetime | None = None,
    limit: int = DELIVERY_BATCH,
) -> DeliveryReport:
    """Send up to `limit` due notifications over one SMTP connection. A failure is recorded on its row
    (attempts, redacted reason, next attempt after `backoff`); when the relay itself is unreachable or
    not configured, the rest of the batch waits for the next tick instead of failing one by one."""
    now = now or utcnow()
    report = DeliveryReport()
    due = _due(platform.engine, now, limit + 1)
    report.deferred = max(0, len(due) - limit)
    engine = platform.engine
    n = tables.sent_notifications
    with smtp.batch() as sender:
        for position, run_id in enumerate(due[:limit]):
            if not _claim(engine, run_id, now):
                continue  # another evaluation took it
            message, why_not = _message_for(platform, instance, run_id)
            if message is None:
                _finish(engine, run_id, status=DROPPED, next_attempt_at=None, last_error=why_not[:_ERROR_LIMIT])
                report.dropped.append(f"{run_id}: {why_not}")
                continue
            try:
                sender.send(message)
            except Exception as exc:  # noqa: BLE001 - any failure to hand the message over is retried
                with engine.connect() as db:
                    attempts = (db.execute(sa.select(n.c.attempts).where(n.c.run_id == run_id)).scalar() or 0) + 1
                retry_at = now + backoff(attempts)
                reason = safe_summary_text(f"{type(exc).__name__}: {exc}")
                _finish(
                    engine,
                    run_id,
                    status=QUEUED,
                    attempts=attempts,
                    next_attempt_at=retry_at,
                    last_error=reason[:_ERROR_LIMIT],
                )
                report.failed.append(
                    f"run {run_id}: {reason} (attempt {attempts}, next at {retry_at:%Y-%m-%d %H:%M:%S} UTC)"
                )
                if sender.unusable:
                    report.deferred += len(due[:limit]) - position - 1
                    break
                continue
            channels = "email"
            slack_url = slack.resolved_url() if slack is not None else None
            status = SENT
            if slack_url and slack is not None:
                try:  # the email went: a Slack failure is recorded, never a reason to email again
                    slack.post(f"*{message['Subject']}*\n{message.get_content()}")
                    channels = "email+slack"
                except Exception as exc:  # noqa: BLE001
                    status = SENT_SLACK_FAILED
                    report.slack_failed.append(f"run {run_id}: {redact(exc)}")
            with engine.connect() as db:
                attempts = (db.execute(sa.select(n.c.attempts).where(n.c.run_id == run_id)).scalar() or 0) + 1
            _finish(
                engine,
                run_id,
                status=status,
                channels=channels,
                recipient=message["To"],
                attempts=attempts,
                next_attempt_at=None,
                last_error=None,
                at=utcnow(),
            )
            report.sent.append(run_id)
    return report


def _failure_events(
    instance: dg.DagsterInstance, cursor: int | None, now: datetime, limit: int
) -> tuple[list, int | None]:
    """RUN_FAILURE events after the storage-id cursor (or, for a new cursor, of the last day), oldest first."""
    records_filter = dg.RunStatusChangeRecordsFilter(
        event_type=DagsterEventType.RUN_FAILURE,
        after_storage_id=cursor,
        after_timestamp=None if cursor is not None else (now - FIRST_TICK_LOOKBACK).timestamp(),
    )
    result = instance.fetch_run_status_changes(records_filter, limit=limit, ascending=True)
    records = list(result.records)
    return records, (records[-1].storage_id if records else cursor)


def evaluate_notifications(
    platform: Platform,
    instance: dg.DagsterInstance,
    cursor: str | None,
    smtp: SmtpResource,
    slack: SlackWebhookResource | None = None,
    now: datetime | None = None,
) -> tuple[str, str | None, DeliveryReport]:
    """One tick: queue the next batch of failed runs, then deliver what is due. Returns the tick's
    summary, the new cursor and the delivery report. Never raises for a delivery problem."""
    now = now or utcnow()
    # A cursor that is not a storage id (the JSON one Dagster's run-failure sensor, this sensor's former
    # kind, left behind) starts afresh from the lookback; queueing is idempotent, so nothing is sent twice.
    storage_id = int(cursor) if cursor and cursor.isdigit() else None
    records, new_cursor = _failure_events(instance, storage_id, now, QUEUE_BATCH)
    queued = 0
    for record in records:
        run = instance.get_run_by_id(record.event_log_entry.run_id)
        if run is not None and queue_run_failure(platform, run, now).endswith("owner"):
            queued += 1
    report = deliver_due(platform, instance, smtp, slack, now)
    summary = f"{len(records)} failed runs read, {queued} queued; {report.summary()}"
    return summary, (str(new_cursor) if new_cursor is not None else cursor), report


@dg.sensor(
    name="sync_failure_notification_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Emails a connection's workspace owner once per failed sync run (and Slack, if configured); "
    "undeliverable notifications stay queued and are retried with backoff (the tick says why).",
)
def sync_failure_notification_sensor(
    context: dg.SensorEvaluationContext, platform: PlatformResource, smtp: SmtpResource, slack: SlackWebhookResource
) -> dg.SkipReason:
    summary, cursor, report = evaluate_notifications(platform.get(), context.instance, context.cursor, smtp, slack)
    if cursor is not None and cursor != context.cursor:
        context.update_cursor(cursor)
    (context.log.warning if report.failed else context.log.info)(summary)
    return dg.SkipReason(summary)


NOTIFICATION_SENSORS = [sync_failure_notification_sensor]
NOTIFICATION_RESOURCES = {"smtp": SmtpResource(), "slack": SlackWebhookResource()}
