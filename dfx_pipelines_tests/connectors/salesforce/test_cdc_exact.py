"""Change-data capture equals a full recompute (property-style): seeded random batches of creates,
updates (dates moved across days, set to and cleared from null, deals closed and reopened, cases closed
and reopened, milestones completed and un-completed), deletes and purges in the sandbox org; after each
batch one sensor tick and the runs it requests (with faults injected), then every value the metric store
holds must equal a fresh computation of its metric and partition from the org as it is now, and every
record a stored day holds must be in that day's record bucket (which the CDC runs patch incrementally).

The org's clock is two days behind the wall clock (the sensor reads the wall clock), so every day a
change touches has its daily partition. The store starts with every daily metric computed over a window
of days and every change keeps the dates it moves inside that window, so each day a change can affect is
stored and compared; runs the sensor requests outside it (a reopened case's creation day) are compared too.
"""

import json
import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar

import dagster as dg
import pytest

from dfx_pipelines.connectors.salesforce.assets import compute_metric
from dfx_pipelines.connectors.salesforce.cdc import salesforce_cdc_sensor
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS, record_buckets
from dfx_pipelines.connectors.salesforce.queries import CHANGE_STAMP_FIELD, Cadence, record_days_query
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    start_salesforce_sandbox,
)
from dfx_pipelines.connectors.salesforce.sandbox.schema import OPPORTUNITY_STAGES
from dfx_pipelines.connectors.salesforce.selection import Selection
from dfx_pipelines.platform.partitions import RANGE_END_TAG, RANGE_START_TAG, sync_partitions
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sandbox import Faults
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect, request_partition

SEED = 20261201
# A long, bounded property run (every batch re-reads the sandbox and recomputes every metric); the suite's
# 300 s limit is there to catch hangs, and on two loaded cores under xdist this test alone can take longer.
pytestmark = pytest.mark.timeout(900)

BATCHES = 5  # random change batches, each followed by one sensor tick and its runs
CHANGES_PER_BATCH = 8
WINDOW_DAYS = 12
DATA = "/services/data/"
POLLED = ["CampaignMember", "Case", "CaseMilestone", "Event", "Lead", "Opportunity", "Task"]
DAILY_METRICS = sorted(m.name for m in SALES_METRICS.values() if m.cadence is Cadence.DAILY)
SNAPSHOT_METRICS = sorted(m.name for m in SALES_METRICS.values() if m.cadence is Cadence.SNAPSHOT)
OPEN_STAGES = [stage[0] for stage in OPPORTUNITY_STAGES if not stage[3]]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def epoch(day: date) -> int:
    return int(datetime.combine(day, time(0), tzinfo=UTC).timestamp())


class Mutator:
    """Random changes to the org that keep every date they move inside [first, last]."""

    def __init__(self, org: SalesforceOrg, rng: random.Random, first: date, last: date):
        self.org, self.rng, self.first, self.last = org, rng, first, last
        self.log: list[str] = []

    def day(self) -> str:
        return (self.first + timedelta(days=self.rng.randrange((self.last - self.first).days + 1))).isoformat()

    def pick(self, sql: str, params: tuple = ()) -> str | None:
        rows = self.org.run_sql(sql, params)
        return self.rng.choice(rows)[0] if rows else None

    def in_window(self, table: str, column: str, extra: str = "", deleted: int = 0) -> str | None:
        if column in ("CloseDate", "ActivityDate"):
            bounds: tuple = (self.first.isoformat(), self.last.isoformat())
            where = f'"{column}" >= ? AND "{column}" <= ?'
        else:
            bounds = (epoch(self.first), epoch(self.last + timedelta(days=1)))
            where = f'"{column}" >= ? AND "{column}" < ?'
        return self.pick(
            f'SELECT "Id" FROM "{table}" WHERE "IsDeleted" = ? AND {where} {extra} ORDER BY "Id"', (deleted, *bounds)
        )

    def apply(self) -> None:
        change = self.rng.choice(self.CHANGES)
        done = change(self)
        self.log.append(f"{change.__name__}: {done}" if done else f"{change.__name__}: nothing to change")

    # ---------------------------------------------------------------- the kinds of change

    def move_close_date(self) -> str | None:
        record = self.in_window("Opportunity", "CloseDate")
        if record:
            self.org.update("Opportunity", record, {"CloseDate": self.day()})
        return record

    def close_deal(self) -> str | None:
        record = self.in_window("Opportunity", "CloseDate", 'AND "IsClosed" = 0')
        if record:
            self.org.update(
                "Opportunity",
                record,
                {"StageName": self.rng.choice(("Closed Won", "Closed Lost")), "CloseDate": self.day()},
            )
        return record

    def reopen_deal(self) -> str | None:
        record = self.in_window("Opportunity", "CloseDate", 'AND "IsClosed" = 1')
        if record:
            self.org.update("Opportunity", record, {"StageName": self.rng.choice(OPEN_STAGES)})
        return record

    def close_case(self) -> str | None:
        record = self.pick('SELECT "Id" FROM "Case" WHERE "IsDeleted" = 0 AND "IsClosed" = 0 ORDER BY "Id"')
        if record:
            self.org.update("Case", record, {"Status": "Closed"})  # ClosedDate: now
        return record

    def reopen_case(self) -> str | None:
        record = self.in_window("Case", "ClosedDate", 'AND "IsClosed" = 1')
        if record:
            self.org.update("Case", record, {"Status": self.rng.choice(("Working", "Escalated"))})  # ClosedDate: null
        return record

    def create_case(self) -> str:
        return self.org.create(
            "Case",
            {
                "Subject": "Random",
                "Status": self.rng.choice(("New", "Closed")),
                "Priority": self.rng.choice(("High", "Low")),
            },
        )

    def create_lead(self) -> str:
        return self.org.create("Lead", {"LastName": "Random", "Company": "Random Co", "Status": "Open - Not Contacted"})

    def clear_task_date(self) -> str | None:
        record = self.in_window("Task", "ActivityDate")
        if record:
            self.org.update("Task", record, {"ActivityDate": None})
        return record

    def set_task_date(self) -> str | None:
        record = self.pick(
            'SELECT "Id" FROM "Task" WHERE "IsDeleted" = 0 AND "ActivityDate" IS NULL ORDER BY "Id"'
        ) or self.in_window("Task", "ActivityDate")
        if record:
            self.org.update("Task", record, {"ActivityDate": self.day()})
        return record

    def create_task(self) -> str:
        return self.org.create(
            "Task",
            {
                "Subject": "Call",
                "Status": "Not Started",
                "Priority": "Normal",
                "Type": "Call",
                "ActivityDate": self.day(),
            },
        )

    def move_event(self) -> str | None:
        record = self.in_window("Event", "ActivityDate")
        if record:
            self.org.update("Event", record, {"ActivityDate": self.rng.choice((None, self.day()))})
        return record

    def complete_milestone(self) -> str | None:
        record = self.in_window("CaseMilestone", "TargetDate", 'AND "CompletionDate" IS NULL')
        if record:
            self.org.update("CaseMilestone", record, {"CompletionDate": self.org.now.isoformat()})
        return record

    def uncomplete_milestone(self) -> str | None:
        record = self.in_window("CaseMilestone", "CompletionDate")
        if record:
            self.org.update("CaseMilestone", record, {"CompletionDate": None})
        return record

    def delete(self) -> str | None:
        table, column = self.rng.choice(
            (
                ("Opportunity", "CloseDate"),
                ("Lead", "CreatedDate"),
                ("Case", "ClosedDate"),
                ("Task", "ActivityDate"),
                ("Event", "ActivityDate"),
            )
        )
        record = self.in_window(table, column)
        if record:
            self.org.delete(table, record)
        return record

    def purge(self) -> str | None:
        """A record deleted and emptied from the recycle bin: queryAll no longer sees it."""
        table, column = self.rng.choice((("Opportunity", "CloseDate"), ("Case", "ClosedDate"), ("Lead", "CreatedDate")))
        record = self.in_window(table, column, deleted=self.rng.choice((0, 1)))
        if record:
            self.org.purge(table, record)
        return record

    CHANGES: ClassVar[list[Callable[["Mutator"], str | None]]] = [
        move_close_date,
        close_deal,
        reopen_deal,
        close_case,
        reopen_case,
        create_case,
        create_lead,
        clear_task_date,
        set_task_date,
        create_task,
        move_event,
        complete_milestone,
        uncomplete_milestone,
        delete,
        purge,
    ]


@pytest.fixture
def sandbox() -> Iterator[RunningSalesforceSandbox]:
    org_now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    running = start_salesforce_sandbox(SalesforceOrg(seed=11, opportunities=300, now=org_now))
    yield running
    running.stop()


def stored(platform: Platform, metric: str, partition_key: str) -> list[tuple]:
    return sorted(
        (
            str(r["period"]),
            r["measure"],
            json.dumps(r["dimensions"], sort_keys=True),
            None if r["value"] is None else round(r["value"], 6),
        )
        for r in platform.metric_store.read(connection_id="sf-acme", metric=metric, partition_key=partition_key)
    )


def fresh(client: Any, connection: Any, metric: str, day: date | None) -> list[tuple]:
    _, rows = compute_metric(client, SALES_METRICS[metric], connection, day)
    return sorted(
        (
            str(r.period),
            r.measure,
            json.dumps(r.dimension_dict, sort_keys=True),
            None if r.value is None else round(r.value, 6),
        )
        for r in rows
    )


def differences(platform: Platform, resource: SalesforceResource, connection: Any) -> list[str]:
    """Every stored (metric, partition) whose values differ from a fresh computation."""
    client = resource.client(platform, connection)
    wrong = []
    for batch in platform.metric_store.batches("sf-acme"):
        key = batch["partition_key"]
        day = date.fromisoformat(key.split("|")[1]) if "|" in key else None
        if stored(platform, batch["metric"], key) != fresh(client, connection, batch["metric"], day):
            wrong.append(f"{batch['metric']} {key}")
    return wrong


def index_gaps(platform: Platform, resource: SalesforceResource, connection: Any) -> list[str]:
    """Every stored daily (metric, day) whose record bucket lacks a record the day holds now (the values
    equal a fresh computation, so these are the records they count): the index's one promise, which the
    incremental refresh must keep. Extra ids are allowed."""
    client = resource.client(platform, connection)
    selection = Selection(connection.selection.objects)
    gaps = []
    for batch in platform.metric_store.batches("sf-acme"):
        metric = SALES_METRICS[batch["metric"]]
        if "|" not in batch["partition_key"] or not metric.period_fields:
            continue
        day = date.fromisoformat(batch["partition_key"].split("|")[1])
        query = record_days_query(metric.fields, selection, metric.period_fields, day, day)
        live = record_buckets(client.stream(query.soql), metric.period_fields, day, day)[day]
        held = platform.metric_store.bucket_members("sf-acme", metric.name, [day], live).get(day, set())
        if live - held:
            gaps.append(f"{metric.name} {day}: {sorted(live - held)}")
    return gaps


def test_cdc_leaves_every_value_equal_to_a_full_recompute(
    platform: Platform, workspace: Any, sandbox: RunningSalesforceSandbox
) -> None:
    with dg.instance_for_test() as instance:
        org = sandbox.org
        resource = SalesforceResource(client_id=sandbox.app.oauth.client_id, sandbox_ca_path=sandbox.ca_pem_path)
        connection = connect(platform, sandbox, resource)
        sync_partitions(instance, platform.registry, ["salesforce"])
        org.advance(timedelta(minutes=2))
        materialize = Materializer(platform, resource, instance)
        resources = {
            "platform": PlatformResource(
                home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
            ),
            "salesforce": resource,
        }

        # The store before any change: every daily metric over the window (one range run), every snapshot.
        start_day = org.now.date()
        first, last = start_day - timedelta(days=WINDOW_DAYS - 3), start_day + timedelta(days=2)
        assert last <= datetime.now(UTC).date()
        assert materialize(
            DAILY_METRICS, tags={RANGE_START_TAG: f"sf-acme|{first}", RANGE_END_TAG: f"sf-acme|{last}"}
        ).success
        assert materialize(SNAPSHOT_METRICS, partition_key="sf-acme").success
        assert differences(platform, resource, connection) == []
        assert platform.metric_store.bucket_count("sf-acme") > 0

        seen: list[str] = []
        sandbox.app.query_hooks.append(seen.append)
        rng = random.Random(SEED)
        mutator = Mutator(org, rng, first, last)
        cursor = {"sf-acme": {obj: iso(org.now) for obj in POLLED}}
        runs = 0
        for batch in range(BATCHES):
            for _ in range(CHANGES_PER_BATCH):
                mutator.apply()
                org.advance(timedelta(minutes=rng.randrange(1, 120)))  # changes straddle day boundaries
            org.advance(timedelta(minutes=5))

            faults = sandbox.server.faults = Faults(seed=SEED + batch)
            faults.inject("rate_limit", count=None, probability=0.05, retry_after=0, path_prefix=DATA)
            faults.inject("server_error", count=None, probability=0.05, status=503, path_prefix=DATA)
            faults.inject("drop", count=None, probability=0.03, path_prefix=DATA)
            result = salesforce_cdc_sensor(
                dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor), resources=resources)
            )
            assert all(r.tags["dfx/sync"] == "cdc" for r in result.run_requests), "a CDC tick, not a full resync"
            for request in result.run_requests:
                names = sorted(key.path[-1] for key in request.asset_selection or [])
                assert materialize(names, partition_key=request_partition(request), tags=request.tags).success
                runs += 1
            cursor = json.loads(result.cursor)
            faults.clear()

            wrong = differences(platform, resource, connection)
            assert wrong == [], f"after batch {batch} ({'; '.join(mutator.log[-CHANGES_PER_BATCH:])}): {wrong}"
            gaps = index_gaps(platform, resource, connection)
            assert gaps == [], f"after batch {batch} ({'; '.join(mutator.log[-CHANGES_PER_BATCH:])}): {gaps}"
        # The CDC runs refreshed their index from the changes (the initial range run read it in full).
        assert any(CHANGE_STAMP_FIELD + " >=" in soql for soql in seen)
        assert (
            runs > 0
            and len([entry for entry in mutator.log if "nothing" not in entry]) >= BATCHES * CHANGES_PER_BATCH // 2
        )
