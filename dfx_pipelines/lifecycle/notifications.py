"""Transactional sync-error notifications (P35): when a run for a connection fails, its workspace owner gets
one email naming the connection, the asset(s) or step that failed, and a safe error summary; optionally
the same text goes to a Slack webhook.

- Which connection: the run's `dfx/connection` tag, else `dagster/partition/connection`, else a
  `dagster/partition` (or partition-range start) whose connection part is a registered connection.
  Runs for no connection, privacy-lifecycle runs (tagged `dfx/lifecycle`, e.g. a deletion run carrying
  `dfx/connection`), and runs of connections no longer active (revoked/removed) send nothing.
- One per failed run: a row in `sent_notifications`, keyed by run id, is claimed *before* sending, so a
  re-evaluation (sensor reset, daemon restart) never sends twice; a failed send releases the claim and
  errors the tick, so the next tick tries again. A run Dagster will retry automatically
  (`dagster/will_retry=true`) sends nothing: only the last attempt of a sync speaks.
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
from datetime import datetime, timezone
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Optional

import dagster as dg
import requests
import sqlalchemy as sa

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

    host: Optional[str] = None
    port: Optional[int] = None  # unset: DFX_SMTP_PORT, else 587
    sender: Optional[str] = None
    starttls: bool = True
    username: Optional[str] = None
    password: Optional[str] = None
    timeout_seconds: float = 15.0

    def _value(self, field: str, env: str) -> Optional[str]:
        value = resolved(getattr(self, field))  # an EnvVar read outside a run is its name, not its value
        return str(value) if value not in (None, "") else (os.environ.get(env) or None)

    def configured(self) -> bool:
        return bool(self._value("host", "DFX_SMTP_HOST") and self._value("sender", "DFX_SMTP_FROM"))

    def send(self, message: EmailMessage) -> None:
        host, sender = self._value("host", "DFX_SMTP_HOST"), self._value("sender", "DFX_SMTP_FROM")
        if not host or not sender:
            raise ConfigError("SMTP is not configured: set DFX_SMTP_HOST and DFX_SMTP_FROM (or the smtp resource)")
        port = int(self._value("port", "DFX_SMTP_PORT") or 587)
        username, password = self._value("username", "DFX_SMTP_USERNAME"), self._value("password", "DFX_SMTP_PASSWORD")
        register_secret(password)
        if username and not self.starttls and not _is_loopback(host):
            raise ConfigError(f"refusing to send SMTP credentials to {host} without STARTTLS")
        message["From"] = sender
        with smtplib.SMTP(host, port, timeout=self.timeout_seconds) as smtp:
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if username:
                smtp.login(username, password or "")
            smtp.send_message(message)


SLACK_WEBHOOK_HOST = "hooks.slack.com"


def check_webhook_url(url: str, allowed_hosts: frozenset[str] = frozenset(), *, sandbox_allowed: bool) -> str:
    """The webhook URL to post to, or ConfigError: https on `hooks.slack.com` under `/services/` (or on
    a host the operator allow-listed), parsed and resolved by `platform.endpoints` like every endpoint
    a secret goes to — so no userinfo trick, private, loopback (outside the sandbox) or metadata host.
    The messages never quote the URL: its path is the secret."""
    policy = HostPolicy(exact=frozenset({SLACK_WEBHOOK_HOST}) | allowed_hosts, description=f"{SLACK_WEBHOOK_HOST} or an allow-listed host (DFX_SLACK_WEBHOOK_HOSTS)")
    try:
        checked = check_endpoint(url, what="the Slack webhook URL", policy=policy, sandbox_allowed=sandbox_allowed, path=None, sandbox_schemes=("https", "http"))
    except UnsafeDestinationError as exc:
        raise ConfigError(f"{exc} (an incoming webhook is https://{SLACK_WEBHOOK_HOST}/services/…)") from None
    if checked.host == SLACK_WEBHOOK_HOST and not checked.path.startswith("/services/"):
        raise ConfigError(f"the Slack webhook URL must be https://{SLACK_WEBHOOK_HOST}/services/…")
    return checked.url


class SlackWebhookResource(dg.ConfigurableResource):
    """An optional Slack incoming webhook (the URL is a secret: `EnvVar("DFX_SLACK_WEBHOOK_URL")`).
    Only `https://hooks.slack.com/services/…` unless `allowed_hosts` (or DFX_SLACK_WEBHOOK_HOSTS,
    comma-separated) names another host, e.g. a company's outbound relay."""

    url: Optional[str] = None  # unset: DFX_SLACK_WEBHOOK_URL; neither: no Slack message
    allowed_hosts: Optional[str] = None  # unset: DFX_SLACK_WEBHOOK_HOSTS
    timeout_seconds: float = 10.0

    def _allowed_hosts(self) -> frozenset[str]:
        text = self.allowed_hosts if self.allowed_hosts is not None else os.environ.get("DFX_SLACK_WEBHOOK_HOSTS", "")
        return frozenset(host.lower() for host in text.split(",") if host)

    def resolved_url(self) -> Optional[str]:
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


def _slug(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    try:
        return identifiers.connection_slug(value)
    except IdentifierError:
        return None


def connection_for_run(tags: dict[str, str], registry: Registry) -> Optional[Connection]:
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


def safe_summary(error) -> str:  # noqa: ANN001 - SerializableErrorInfo
    """The failing code's own message: first line, redacted, truncated. No trace, no locals, no cause."""
    while error is not None and error.cls_name in _WRAPPERS and error.cause is not None:
        error = error.cause  # Dagster's wrapper says only "error occurred while executing op ..."
    if error is None:
        return "unknown error"
    return safe_summary_text(error.message or error.cls_name or "error")


def failed_assets(instance: dg.DagsterInstance, run: dg.DagsterRun, step_keys: list[str]) -> list[str]:
    """The assets the failed steps were materializing (their step keys where a step is not an asset)."""
    names: list[str] = []
    snapshot = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id) if run.execution_plan_snapshot_id else None
    for step_key in step_keys:
        step = next((s for s in snapshot.steps if s.key == step_key), None) if snapshot else None
        keys = sorted({o.properties.asset_key.to_user_string() for o in step.outputs if o.properties and o.properties.asset_key}) if step else []
        names.extend(keys or [step_key])
    return names


def compose(connection: Connection, workspace_name: str, owner: str, run: dg.DagsterRun, assets: list[str], summaries: list[str], failed_at: Optional[datetime] = None) -> EmailMessage:
    partition = run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start") or ""
    what = ", ".join(dict.fromkeys(assets)) or run.job_name
    body = "\n".join([
        "Hello,",
        "",
        f'A data sync for your connection "{connection.display_name}" ({connection.id}, {connection.kind}) in workspace '
        f'"{workspace_name}" failed.',
        "",
        f"What failed: {what}",
        *([f"Partition: {partition}"] if partition else []),
        f"When: {failed_at or utcnow():%Y-%m-%d %H:%M} UTC",
        "Error: " + ("; ".join(dict.fromkeys(summaries)) or "the run failed before any step ran"),
        f"Run id: {run.run_id}",
        "",
        "If this was a passing problem at the provider, the next scheduled sync catches up on its own. If it keeps "
        "failing, check the connection in DataFlow-Xpert (reconnect it if its access was revoked) or contact "
        "support quoting the run id.",
        "",
        "DataFlow-Xpert",
    ])
    message = EmailMessage()
    message["To"] = owner
    message["Subject"] = redact(f"Sync failed: {connection.display_name} ({connection.id})")
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain="dataflow-xpert.invalid")
    message["Auto-Submitted"] = "auto-generated"  # transactional: no out-of-office replies
    message["X-DFX-Run-Id"] = run.run_id
    message.set_content(redact(body))
    return message


def _claim(engine: sa.Engine, run_id: str, connection: Connection, recipient: str, channels: str) -> bool:
    """Take the run's notification slot; False when it was sent (or is being sent) already."""
    try:
        with engine.begin() as db:
            db.execute(tables.sent_notifications.insert().values(run_id=run_id, connection_id=connection.id, recipient=recipient, channels=channels, status="sending", at=utcnow()))
        return True
    except sa.exc.IntegrityError:
        return False


def notify_run_failure(
    platform: Platform, instance: dg.DagsterInstance, run: dg.DagsterRun, step_failures: list, run_failure_message: str,
    smtp: SmtpResource, slack: Optional[SlackWebhookResource] = None,
) -> str:
    """Send the failed run's notification (at most once); returns what happened, for the sensor's log."""
    if run.tags.get("dagster/will_retry") == "true":
        return f"run {run.run_id} will be retried: only its last attempt notifies"
    if "dfx/lifecycle" in run.tags:  # our own revocation/deletion/retention runs are operators' business
        return f"run {run.run_id} is a privacy-lifecycle run: operators are alerted, not the customer"
    connection = connection_for_run(dict(run.tags), platform.registry)
    if connection is None:
        return f"run {run.run_id} is for no registered connection: nothing to send"
    if not connection.is_active:  # revoked/removed by the customer: a failing run is expected, not news
        return f"run {run.run_id}: connection {connection.id} is {connection.status.value}: nothing to send"
    if not smtp.configured():
        raise ConfigError("SMTP is not configured: set DFX_SMTP_HOST and DFX_SMTP_FROM (or the smtp resource)")
    workspace = platform.registry.get_workspace(connection.workspace_id)
    slack_url = slack.resolved_url() if slack is not None else None
    channels = "email+slack" if slack_url else "email"
    if not _claim(platform.engine, run.run_id, connection, workspace.owner_email, channels):
        return f"run {run.run_id}: already notified"
    summaries = [safe_summary(event.step_failure_data.error) for event in step_failures if event.step_failure_data]
    if not summaries and run_failure_message:
        summaries = [safe_summary_text(run_failure_message)]
    assets = failed_assets(instance, run, [e.step_key for e in step_failures if e.step_key])
    record = instance.get_run_record_by_id(run.run_id)
    failed_at = datetime.fromtimestamp(record.end_time, tz=timezone.utc) if record and record.end_time else None
    message = compose(connection, workspace.name, workspace.owner_email, run, assets, summaries, failed_at)
    try:
        smtp.send(message)
    except Exception:
        with platform.engine.begin() as db:  # not sent: release the slot so the next tick retries
            db.execute(tables.sent_notifications.delete().where(tables.sent_notifications.c.run_id == run.run_id))
        raise
    with platform.engine.begin() as db:
        db.execute(tables.sent_notifications.update().where(tables.sent_notifications.c.run_id == run.run_id).values(status="sent", at=utcnow()))
    if slack_url and slack is not None:
        try:  # the email went: a Slack failure must not make the next tick send it again
            slack.post(f"*{message['Subject']}*\n{message.get_content()}")
        except Exception as exc:  # noqa: BLE001
            with platform.engine.begin() as db:
                db.execute(tables.sent_notifications.update().where(tables.sent_notifications.c.run_id == run.run_id).values(channels="email", status="sent-slack-failed"))
            return f"run {run.run_id}: emailed {connection.id}'s owner; Slack failed ({redact(exc)})"
    return f"run {run.run_id}: notified {connection.id}'s owner by {channels}"


@dg.run_failure_sensor(
    name="sync_failure_notification_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Emails a connection's workspace owner once per failed sync run (and Slack, if configured).",
)
def sync_failure_notification_sensor(context: dg.RunFailureSensorContext, platform: PlatformResource, smtp: SmtpResource, slack: SlackWebhookResource) -> dg.SkipReason:
    outcome = notify_run_failure(
        platform.get(), context.instance, context.dagster_run, list(context.get_step_failure_events()),
        context.failure_event.message or "", smtp, slack,
    )
    context.log.info(outcome)
    return dg.SkipReason(outcome)


NOTIFICATION_SENSORS = [sync_failure_notification_sensor]
NOTIFICATION_RESOURCES = {"smtp": SmtpResource(), "slack": SlackWebhookResource()}
