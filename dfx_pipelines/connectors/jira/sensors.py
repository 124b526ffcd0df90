"""Incremental sync for Jira: a sensor that asks each active connection's site, per selected project,
which issues changed (`updated >= cursor − lookback`) and requests runs only for the metrics and days those
changes can affect; and nightly schedules that recompute every connection in full.

The cursor is `{connection id: Jira's serverTime at the last poll}`: the site's own clock, so our clock's
skew does not matter, and the lookback (`settings.lookback_minutes`) covers JQL's minute precision and
Jira's indexing delay. A connection seen for the first time gets a full resync. Revoked or removed
connections are never polled and their cursors are dropped. The nightly recompute also heals what a poll
cannot see (e.g. a reopened issue leaving its old resolved day).
"""

import hashlib
from collections import defaultdict
from datetime import date, datetime, timedelta, timezone

import dagster as dg

from dfx_pipelines.connectors.jira import metrics, query
from dfx_pipelines.connectors.jira.assets import KIND, asset_key, jira_daily_job, jira_snapshot_job
from dfx_pipelines.connectors.jira.client import JiraClient
from dfx_pipelines.connectors.jira.compute import METRICS, projects_of
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.platform import sync
from dfx_pipelines.platform.partitions import DAILY_START
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource

CHANGE_PLAN = query.FieldPlan(("created", "resolutiondate", "updated"))


def full_resync_requests(connection: Connection, today: date, reason: str) -> list[dg.RunRequest]:
    today = min(today, datetime.now(timezone.utc).date())  # no daily partition beyond today
    return sync.full_resync_requests(connection, today, reason, snapshot_job=jira_snapshot_job, daily_job=jira_daily_job)


def changed_issues(client: JiraClient, connection: Connection, since: datetime) -> dict[str, dict[str, set[date]]]:
    """Per selected project with changes since `since`: {issue key@updated: the days the change can move}.
    An update moves its own day (flow, worklogs); a new issue its created day; a new resolution its
    resolved day."""
    found: dict[str, dict[str, set[date]]] = {}
    for project in connection.selection.projects:
        changes: dict[str, set[date]] = {}
        for page in client.search(query.issues_jql([project], query.updated_since(since), order_by="updated ASC"), CHANGE_PLAN):
            for issue in page.issues:
                fields = issue.get("fields") or {}
                days = {metrics.utc_day(metrics.parse_jira_timestamp(fields["updated"]))}
                for name in ("created", "resolutiondate"):
                    if fields.get(name) and metrics.parse_jira_timestamp(fields[name]) >= since:
                        days.add(metrics.utc_day(metrics.parse_jira_timestamp(fields[name])))
                changes[f"{issue.get('key')}@{fields['updated']}"] = days
        if changes:
            found[project] = changes
    return found


def _digest(changes: set[str]) -> str:
    # Run keys name the changes themselves: the lookback re-reads recent changes on the next tick, and
    # the same changes give the same run key, which Dagster runs only once.
    return hashlib.sha256("\n".join(sorted(changes)).encode()).hexdigest()[:16]


def poll_connection(client: JiraClient, connection: Connection, cursor: str | None) -> tuple[list[dg.RunRequest], str]:
    """One connection's tick: (run requests, new cursor)."""
    server_now = client.server_time()
    stamp = server_now.isoformat()
    if cursor is None:
        return full_resync_requests(connection, server_now.date(), "initial"), stamp
    since = datetime.fromisoformat(cursor) - timedelta(minutes=connection.settings.lookback_minutes)
    changed = changed_issues(client, connection, since)
    if not changed:
        return [], stamp
    tags = {"dfx/connection": connection.id, "dfx/api": KIND, "dfx/sync": "incremental"}
    relevant = {name: set(projects_of(connection, metric.scope)) for name, metric in METRICS.items()}
    snapshot = sorted((asset_key(m) for m in METRICS.values() if not m.daily and relevant[m.name] & set(changed)), key=str)
    daily: dict[date, set[dg.AssetKey]] = defaultdict(set)
    daily_changes: dict[date, set[str]] = defaultdict(set)
    last_day = datetime.now(timezone.utc).date()
    for project, changes in changed.items():
        assets = {asset_key(m) for m in METRICS.values() if m.daily and project in relevant[m.name]}
        for change, days in changes.items():
            for day in days:
                if assets and date.fromisoformat(DAILY_START) <= day <= last_day:
                    daily[day] |= assets
                    daily_changes[day].add(change)
    requests = []
    if snapshot:
        everything = {change for changes in changed.values() for change in changes}
        requests.append(dg.RunRequest(
            run_key=f"{connection.id}:snapshot:{_digest(everything)}", job_name=jira_snapshot_job.name,
            partition_key=connection.id, asset_selection=snapshot, tags=tags,
        ))  # fmt: skip
    for day in sorted(daily):
        requests.append(dg.RunRequest(
            run_key=f"{connection.id}:{day}:{_digest(daily_changes[day])}", job_name=jira_daily_job.name,
            partition_key=dg.MultiPartitionKey({"connection": connection.id, "date": day.isoformat()}),
            asset_selection=sorted(daily[day], key=str), tags=tags,
        ))  # fmt: skip
    return requests, stamp


@dg.sensor(
    name="jira_sync_sensor",
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls each active Jira connection for issues updated since its cursor (minus the lookback), per "
    "selected project, and requests runs only for the metrics and days those changes touch.",
    jobs=[jira_snapshot_job, jira_daily_job],
)
def jira_sync_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource, jira: JiraResource) -> dg.SensorResult:
    services = platform.get()

    def poll(connection: Connection, cursor: str | None) -> tuple[list[dg.RunRequest], str, None]:
        return (*poll_connection(jira.client(services, connection), connection, cursor), None)

    return sync.poll_active_connections(context, services, KIND, poll)


jira_nightly_snapshot_schedule, jira_nightly_daily_schedule = sync.nightly_schedules(
    KIND, snapshot_job=jira_snapshot_job, daily_job=jira_daily_job, hour=2, minute=30
)
