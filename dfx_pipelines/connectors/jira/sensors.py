"""Incremental sync for Jira: a sensor that asks each active connection's site, per selected project,
which issues changed (`updated >= cursor − lookback`) and requests runs for every metric and day those
changes can affect, found by replaying each changed issue's changelog as it stood at the cursor and as it
is now (`metrics_changes`): a reopened issue's old resolved and done days and every WIP day since, not
just today; and nightly schedules that recompute every connection in full.

The cursor is `{connection id: Jira's serverTime at the last poll}`: the site's own clock, so our clock's
skew does not matter, and the lookback (`settings.lookback_minutes`) covers JQL's minute precision and
Jira's indexing delay. A connection seen for the first time gets a full resync. Revoked or removed
connections are never polled and their cursors are dropped. Each metric's days are one range run. Jira's search cannot see a deleted issue or worklog: the nightly recompute heals those.
"""

import hashlib
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dfx_pipelines.connectors.jira import compute, metrics, metrics_changes, query
from dfx_pipelines.connectors.jira.assets import FLOW_DAILY, KIND, asset_key, jira_daily_job, jira_snapshot_job
from dfx_pipelines.connectors.jira.client import JiraClient
from dfx_pipelines.connectors.jira.compute import METRICS, projects_of
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.connectors.jira.selection import JiraSelection
from dfx_pipelines.platform import sync
from dfx_pipelines.platform.partitions import DAILY_START, range_tags
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource


def change_plan(connection: Connection) -> query.FieldPlan:
    """What the sensor reads of a changed issue: its dates, status, type and project, the status and
    resolution changelog (to replay the issue as it stood before), the changes that regroup its worklogs
    (project, component, epic), and its worklogs (their days and when they were written)."""
    fields = query.safe_fields(connection, ["created", "updated", "resolutiondate", "issuetype", "project", "status"])
    epic_link = query.custom_field(connection, query.EPIC_LINK_PLUGIN)
    changelog = ("status", "resolution", "project", "components", "parent") + ((epic_link,) if epic_link else ())
    return query.FieldPlan(tuple(fields), changelog, ("Component", "Parent", "Epic Link"), worklogs=True)


def full_resync_requests(connection: Connection, today: date, reason: str) -> list[dg.RunRequest]:
    today = min(today, datetime.now(UTC).date())  # no daily partition beyond today
    return sync.full_resync_requests(
        connection, today, reason, snapshot_job=jira_snapshot_job, daily_job=jira_daily_job
    )


Change = dict[str, set[date]]  # daily metric name -> the days whose values the change can move


def changed_issues(
    client: JiraClient, connection: Connection, since: datetime, last_day: date
) -> dict[str, dict[str, Change]]:
    """Per selected project with changes since `since`: {issue key@updated: days per daily metric}.
    Each changed issue is replayed as it stood at `since` and as it is now (`metrics_changes`): its old
    and new resolved and done days, every WIP day between, its worklogs' days, its created day if new,
    and (for every daily metric) the day of the change itself."""
    daily = [m.name for m in METRICS.values() if m.daily]
    boards = compute.boards_of(connection)
    epic_link = query.custom_field(connection, query.EPIC_LINK_PLUGIN)
    workflows: dict[int, metrics.Workflow] = {}  # read once per tick, and only for a board with changes
    found: dict[str, dict[str, Change]] = {}
    for project in connection.selection.narrowed(JiraSelection).projects:
        changes: dict[str, Change] = {}
        waiting: dict[str, tuple[Change, list]] = {}  # issues whose worklogs search did not embed in full
        for page in client.search(
            query.issues_jql([project], query.updated_since(since), order_by="updated ASC"), change_plan(connection)
        ):
            for issue in page.issues:
                fields = issue.get("fields") or {}
                histories = page.histories.get(str(issue["id"]), [])
                days: Change = {
                    name: {metrics.utc_day(metrics.parse_jira_timestamp(fields["updated"]))} for name in daily
                }
                created = metrics.parse_jira_timestamp(fields["created"])
                if created >= since:
                    days["created_vs_resolved"].add(metrics.utc_day(created))
                changelog = metrics.change_histories(issue, histories)
                days["created_vs_resolved"] |= metrics_changes.resolved_days_changed(
                    changelog, created, metrics_changes.issue_resolved(issue), since
                )
                status_history = metrics.issue_status_history(issue, histories=histories)
                for board_id, board_project in boards:
                    if board_project == project:
                        if board_id not in workflows:
                            workflows[board_id] = compute.board_workflow(client, board_id)
                        for name, moved in metrics_changes.flow_days_changed(
                            status_history, workflows[board_id], since, last_day
                        ).items():
                            days[name] |= moved
                worklogs = page.worklogs.get(str(issue["id"]))
                if worklogs is None:
                    waiting[str(issue["id"])] = (days, changelog)
                else:
                    days["worklog_hours"] |= metrics_changes.worklog_days(worklogs, changelog, since, epic_link)
                changes[f"{issue.get('key')}@{fields['updated']}"] = days
        for issue_id, (days, changelog) in waiting.items():
            days["worklog_hours"] |= metrics_changes.worklog_days(
                client.issue_worklogs(issue_id), changelog, since, epic_link
            )
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
    last_day = min(server_now.date(), datetime.now(UTC).date())  # no daily partition beyond today
    changed = changed_issues(client, connection, since, last_day)
    if not changed:
        return [], stamp
    tags = {"dfx/connection": connection.id, "dfx/api": KIND, "dfx/sync": "incremental"}
    relevant = {name: set(projects_of(connection, metric.scope)) for name, metric in METRICS.items()}
    snapshot = sorted(
        (asset_key(m) for m in METRICS.values() if not m.daily and relevant[m.name] & set(changed)), key=str
    )
    metric_days: dict[str, set[date]] = defaultdict(set)
    metric_changes: dict[str, set[str]] = defaultdict(set)
    first_day = date.fromisoformat(DAILY_START)
    for project, changes in changed.items():
        for change, days_by_metric in changes.items():
            for name, days in days_by_metric.items():
                inside = {day for day in days if first_day <= day <= last_day}
                if project in relevant[name] and inside:
                    metric_days[name] |= inside
                    metric_changes[name].add(change)
    requests = []
    if snapshot:
        everything = {change for changes in changed.values() for change in changes}
        requests.append(dg.RunRequest(
            run_key=f"{connection.id}:snapshot:{_digest(everything)}", job_name=jira_snapshot_job.name,
            partition_key=connection.id, asset_selection=snapshot, tags=tags,
        ))  # fmt: skip
    # One run per day range: a Jira metric reads a range in one pass, so each metric's days from the
    # earliest to the latest cost no more calls than the days alone (the days between are recomputed
    # to the same values), and a reopened issue's WIP span is one run, not one per day.
    # Throughput and WIP are one multi-asset computed in one pass over each board's changelogs: give both
    # the union of their days, so one run (one pass) recomputes them rather than one run each.
    flow = [name for name in FLOW_DAILY if name in metric_days]
    if len(flow) > 1:
        union = set().union(*(metric_days[name] for name in flow))
        for name in flow:
            metric_days[name] = union
    spans: dict[tuple[date, date], set[str]] = defaultdict(set)
    for name, days in metric_days.items():
        spans[(min(days), max(days))].add(name)
    for (first, last), names in sorted(spans.items()):
        selection = sorted((asset_key(name) for name in names), key=str)
        digest = _digest({change for name in names for change in metric_changes[name]})
        if first == last:
            requests.append(dg.RunRequest(
                run_key=f"{connection.id}:{first}:{digest}", job_name=jira_daily_job.name,
                partition_key=dg.MultiPartitionKey({"connection": connection.id, "date": first.isoformat()}),
                asset_selection=selection, tags=tags,
            ))  # fmt: skip
        else:
            requests.append(dg.RunRequest(
                run_key=f"{connection.id}:{first}..{last}:{digest}", job_name=jira_daily_job.name,
                asset_selection=selection, tags={**tags, **range_tags(connection.id, first, last)},
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
def jira_sync_sensor(
    context: dg.SensorEvaluationContext, platform: PlatformResource, jira: JiraResource
) -> dg.SensorResult:
    services = platform.get()

    def poll(connection: Connection, cursor: str | None) -> tuple[list[dg.RunRequest], str, None]:
        return (*poll_connection(jira.client(services, connection), connection, cursor), None)

    return sync.poll_active_connections(context, services, KIND, poll)


jira_nightly_snapshot_schedule, jira_nightly_daily_schedule = sync.nightly_schedules(
    KIND, snapshot_job=jira_snapshot_job, daily_job=jira_daily_job, hour=2, minute=30
)
