"""Change-data-capture for Salesforce: a sensor that polls `updated`/`deleted` for each active
connection's selected objects (all of them in one composite call: one API call per tick, not two per
object, and the changed records' days in as few more) and requests runs only for the metrics and partitions the changes touch
(the days a changed record is on now, and the days the record-bucket index says it was counted on
before); and the nightly schedule that recomputes every connection in full.

Touched days become runs per metric in clusters (`day_clusters`, CLUSTER_GAP_DAYS): one range run per
cluster of nearby days (one query set per metric for all its days, see `assets.compute_metric_days`),
a one-partition run for a lone day, the snapshot metrics once per tick.

The cursor is `{connection: {object: latestDateCovered}}`; the next window starts where Salesforce says
the last one ended. A gap beyond the API's 30-day reach, `INVALID_REPLICATION_DATE`, or a connection
seen for the first time triggers a full resync — never a silent miss.
"""

import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from dfx_pipelines.connectors.salesforce.assets import (
    DAILY_PARTITIONS,
    KIND,
    asset_key,
    salesforce_daily_job,
    salesforce_snapshot_job,
)
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS, SalesMetric, record_day
from dfx_pipelines.connectors.salesforce.queries import Cadence, soql_literal
from dfx_pipelines.connectors.salesforce.resource import SalesforceClient, SalesforceResource
from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection, Selection
from dfx_pipelines.platform import sync
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.metric_store import MetricStore
from dfx_pipelines.platform.partitions import range_tags
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource

REPLICATION_REACH = timedelta(days=30)
# Touched days with at most this many untouched days between them are recomputed by one range run (the
# days between too). A range's value query costs the same calls whatever its length; its record-bucket
# index, once stored, is refreshed from the records changed since (one call a read for a few changes,
# whatever the days), but a day read in full for the first time or at its weekly rebuild costs its
# records twice (~1,400 Opportunity ids a day at 1,000,000 opportunities), and a streamed metric reads
# each extra day's records once. A separate run costs ~3 calls per metric (values, index before and
# after) plus a Dagster run launch (seconds). Two days stays the break-even for those costs.
CLUSTER_GAP_DAYS = 2
_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")
_ID_CHUNK = 200  # ids per `Id IN (...)` query: keeps the URL well under Salesforce's limit


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def metrics_of(connection: Connection, sobject: str) -> list[SalesMetric]:
    """The metrics of this object that the connection's selection allows."""
    selection = Selection(connection.selection.narrowed(SalesforceSelection).objects)
    return [m for m in SALES_METRICS.values() if m.object_name == sobject and not m.fields.missing(selection)]


def _record_days(client: SalesforceClient, changed: dict[str, tuple[list[str], set[str]]]) -> dict[str, set[date]]:
    """Per object, the days (per period field) its changed and deleted records are on now: queryAll sees
    deleted ones too. All objects' queries go five to a composite call."""
    soqls: list[str] = []
    owner: list[tuple[str, set[str]]] = []
    for sobject, (ids, fields) in sorted(changed.items()):
        for start in range(0, len(ids), _ID_CHUNK):
            chunk = ids[start : start + _ID_CHUNK]
            soqls.append(f"SELECT Id, {', '.join(sorted(fields))} FROM {sobject} WHERE Id IN {soql_literal(chunk)}")
            owner.append((sobject, fields))
    days: dict[str, set[date]] = {sobject: set() for sobject in changed}
    # A record names its object in `attributes.type`, as every REST query result does.
    fields_of = dict(owner)
    for record in client.stream_many(soqls, include_deleted=True):
        sobject = str((record.get("attributes") or {}).get("type", ""))
        if sobject not in fields_of:
            raise ConnectorError(f"Salesforce answered a record of {sobject or 'no object'} to a changed-records query")
        for field in fields_of[sobject]:
            day = record_day(field, record.get(field))
            if day is not None:
                days[sobject].add(day)
    return days


def full_resync_requests(connection: Connection, today: date, reason: str) -> list[dg.RunRequest]:
    return sync.full_resync_requests(
        connection, today, reason, snapshot_job=salesforce_snapshot_job, daily_job=salesforce_daily_job
    )


def poll_connection(
    client: SalesforceClient, connection: Connection, cursor: dict[str, str], now: datetime, store: MetricStore
) -> tuple[list[dg.RunRequest], dict[str, str], str | None]:
    """One connection's CDC tick: (run requests, new cursor, full-resync reason or None).

    A changed record touches the days its period fields place it on now (queryAll: deleted records in
    the recycle bin included) and the days stored batches last counted it on (the record-bucket index):
    a reopened case's old close day, a moved close date's old day, a cleared date, a purged record."""
    objects = sorted(
        {m.object_name for m in SALES_METRICS.values()}
        & set(connection.selection.narrowed(SalesforceSelection).objects)
    )
    if not cursor:
        return [], {obj: _iso(now) for obj in objects}, "initial"
    if any(obj not in cursor for obj in objects):
        # An object selected since the last tick has never been polled nor computed: like a connection
        # seen for the first time it needs a full resync, or its changes would be skipped on every tick.
        return [], {obj: _iso(now) for obj in objects}, "initial"
    new_cursor = dict(cursor)
    snapshot_assets: set[dg.AssetKey] = set()
    daily_assets: dict[date, set[dg.AssetKey]] = defaultdict(set)
    starts = {sobject: _parse(cursor[sobject]) for sobject in objects}
    if any(now - start >= REPLICATION_REACH for start in starts.values()):
        return [], {obj: _iso(now) for obj in objects}, "gap"
    # Salesforce answers windows in whole minutes; an object polled less than a minute ago waits.
    due = {sobject: start for sobject, start in starts.items() if now - start >= timedelta(minutes=1)}
    if not due:
        return [], new_cursor, None
    try:
        # Every due object's updated and deleted windows in one composite call (one API call, not two
        # per object), then the changed records' days in as few more.
        windows = client.replication_windows(due, now)
    except ConnectorError as exc:
        if "INVALID_REPLICATION_DATE" in str(exc):
            return [], {obj: _iso(now) for obj in objects}, "invalid-replication-date"
        raise
    changed: dict[str, tuple[list[str], set[str]]] = {}
    daily_of: dict[str, list[SalesMetric]] = {}
    for sobject, (updated, deleted) in sorted(windows.items()):
        ids = [i for i in updated.get("ids", []) if isinstance(i, str) and _RECORD_ID.match(i)]
        ids += [
            d["id"]
            for d in deleted.get("deletedRecords", [])
            if isinstance(d, dict) and isinstance(d.get("id"), str) and _RECORD_ID.match(d["id"])
        ]
        covered = [v for v in (updated.get("latestDateCovered"), deleted.get("latestDateCovered")) if v]
        new_cursor[sobject] = _iso(min(_parse(v) for v in covered)) if covered else cursor.get(sobject, _iso(now))
        if not ids:
            continue
        metrics = metrics_of(connection, sobject)
        snapshot_assets |= {asset_key(m) for m in metrics if m.cadence is Cadence.SNAPSHOT}
        daily = [m for m in metrics if m.cadence is Cadence.DAILY]
        period_fields = {field for m in daily for field in m.period_fields}
        if daily and period_fields:
            changed[sobject] = (sorted(set(ids)), period_fields)
            daily_of[sobject] = daily
    days_now = _record_days(client, changed) if changed else {}
    for sobject, (ids, _fields) in changed.items():
        daily = daily_of[sobject]
        days = set(days_now.get(sobject, set()))
        for counted_on in store.buckets_of(connection.id, ids, [m.name for m in daily]).values():
            days |= counted_on
        for day in days:
            if _has_daily_partition(day, now):
                daily_assets[day] |= {asset_key(m) for m in daily}
    requests = []
    tags = {"dfx/connection": connection.id, "dfx/api": KIND, "dfx/sync": "cdc"}
    stamp = max(new_cursor.values()) if new_cursor else _iso(now)
    if snapshot_assets:
        requests.append(
            dg.RunRequest(
                run_key=f"{connection.id}:snapshot:{stamp}",
                job_name=salesforce_snapshot_job.name,
                partition_key=connection.id,
                asset_selection=sorted(snapshot_assets, key=str),
                tags=tags,
            )
        )
    # Per metric, its touched days in clusters of nearby days; one run per cluster (a range run: one
    # query set per metric for all its days) instead of one per day. Metrics whose clusters coincide (those
    # of one object: they share its days) share the run; a lone day keeps its one-partition run.
    days_of: dict[dg.AssetKey, list[date]] = defaultdict(list)
    for day, assets in daily_assets.items():
        for asset in assets:
            days_of[asset].append(day)
    runs: dict[tuple[date, date], set[dg.AssetKey]] = defaultdict(set)
    for asset, touched in days_of.items():
        for cluster in day_clusters(touched, CLUSTER_GAP_DAYS):
            runs[cluster].add(asset)
    for (first, last), assets in sorted(runs.items()):
        if first == last:
            partition = dg.MultiPartitionKey({"connection": connection.id, "date": first.isoformat()})
            requests.append(
                dg.RunRequest(
                    run_key=f"{connection.id}:{first}:{stamp}",
                    job_name=salesforce_daily_job.name,
                    partition_key=partition,
                    asset_selection=sorted(assets, key=str),
                    tags=tags,
                )
            )
        else:
            requests.append(
                dg.RunRequest(
                    run_key=f"{connection.id}:{first}..{last}:{stamp}",
                    job_name=salesforce_daily_job.name,
                    asset_selection=sorted(assets, key=str),
                    tags={**tags, **range_tags(connection.id, first, last)},
                )
            )
    return requests, new_cursor, None


def day_clusters(days: list[date], gap: int) -> list[tuple[date, date]]:
    """Days as sorted (first, last) ranges: days with at most `gap` untouched days between them share one."""
    clusters: list[tuple[date, date]] = []
    for day in sorted(set(days)):
        if clusters and (day - clusters[-1][1]).days <= gap + 1:
            clusters[-1] = (clusters[-1][0], day)
        else:
            clusters.append((day, day))
    return clusters


def _has_daily_partition(day: date, now: datetime) -> bool:
    # Future days (an open deal's CloseDate, a milestone's TargetDate) have no daily partition yet
    # (today has one), nor days before DAILY_START: Dagster refuses a run request for one, and that error
    # fails the whole tick, every connection's requests and the cursor included. The nightly recompute
    # covers such a day once its partition exists.
    with dg.partition_loading_context(effective_dt=now):
        return DAILY_PARTITIONS.get_partitions_def_for_dimension("date").has_partition_key(day.isoformat())


@dg.sensor(
    name="salesforce_cdc_sensor",
    minimum_interval_seconds=120,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Polls each active Salesforce connection for changed and deleted records and requests runs "
    "for the metrics and days they touch (touched days at most 2 days apart share one range run); a gap or "
    "INVALID_REPLICATION_DATE triggers a full resync.",
    jobs=[salesforce_snapshot_job, salesforce_daily_job],
)
def salesforce_cdc_sensor(
    context: dg.SensorEvaluationContext, platform: PlatformResource, salesforce: SalesforceResource
) -> dg.SensorResult:
    services = platform.get()
    now = datetime.now(UTC).replace(microsecond=0)

    def poll(
        connection: Connection, cursor: dict[str, str] | None
    ) -> tuple[list[dg.RunRequest], dict[str, str], str | None]:
        found, cursor, resync = poll_connection(
            salesforce.client(services, connection), connection, cursor or {}, now, services.metric_store
        )
        if resync:
            return full_resync_requests(connection, now.date(), resync), cursor, f"full resync ({resync})"
        return found, cursor, None

    return sync.poll_active_connections(context, services, KIND, poll)


salesforce_nightly_snapshot_schedule, salesforce_nightly_daily_schedule = sync.nightly_schedules(
    KIND, snapshot_job=salesforce_snapshot_job, daily_job=salesforce_daily_job, hour=2, minute=0
)
