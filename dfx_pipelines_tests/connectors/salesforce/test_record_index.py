"""The record-bucket index is refreshed from the records changed since its mark, not re-read in full: against
the sandbox org, through real asset runs and CDC ticks. Each test checks the index's one promise (every
record a stored value counts is in its day's bucket) and the values against a fresh computation, for one
class of defect: a first sync, a bucket stored before marks existed, a record moving between syncs then
found by CDC, a record moving while a run reads, a delete, a rebuild and an undelete, another selection.

The org is frozen two days behind the wall clock (the sensor reads the wall clock), as in test_cdc.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
import sqlalchemy as sa

from dfx_pipelines.connectors.salesforce import assets
from dfx_pipelines.connectors.salesforce.assets import compute_metric
from dfx_pipelines.connectors.salesforce.cdc import salesforce_cdc_sensor
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS
from dfx_pipelines.connectors.salesforce.plugin import DEMO_SELECTION
from dfx_pipelines.connectors.salesforce.queries import CHANGE_STAMP_FIELD, record_changes_query
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    start_salesforce_sandbox,
)
from dfx_pipelines.connectors.salesforce.selection import Selection
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.partitions import RANGE_END_TAG, RANGE_START_TAG, sync_partitions
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect, request_partition, requested_days

OPPORTUNITY = ["win_rate", "sales_cycle_length"]
POLLED = ["CampaignMember", "Case", "CaseMilestone", "Event", "Lead", "Opportunity", "Task"]


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


@dataclass
class Env:
    sandbox: RunningSalesforceSandbox
    platform: Platform
    resource: SalesforceResource
    instance: dg.DagsterInstance
    connection: Any
    queries: list[str]

    @property
    def org(self) -> SalesforceOrg:
        return self.sandbox.org

    def materialize(self, metrics: list[str], first: date, last: date | None = None) -> None:
        materializer = Materializer(self.platform, self.resource, self.instance)
        if last is None or last == first:
            assert materializer(metrics, partition_key=f"sf-acme|{first}").success
        else:
            tags = {RANGE_START_TAG: f"sf-acme|{first}", RANGE_END_TAG: f"sf-acme|{last}"}
            assert materializer(metrics, tags=tags).success

    def tick(self, since: datetime) -> dg.SensorResult:
        settings = self.platform.settings
        resources = {
            "platform": PlatformResource(home=str(settings.home), metrics_db_url=settings.metrics_db_url),
            "salesforce": self.resource,
        }
        cursor = {"sf-acme": {obj: iso(since) for obj in POLLED}}
        context = dg.build_sensor_context(instance=self.instance, cursor=json.dumps(cursor), resources=resources)
        return salesforce_cdc_sensor(context)

    def run_requested(self, result: dg.SensorResult) -> None:
        materializer = Materializer(self.platform, self.resource, self.instance)
        for request in result.run_requests:
            names = sorted(key.path[-1] for key in request.asset_selection or [])
            assert materializer(names, partition_key=request_partition(request), tags=request.tags).success

    def bucket(self, metric: str, day: date) -> set[str]:
        buckets = tables.metric_record_buckets
        with self.platform.engine.connect() as db:
            return set(
                db.execute(
                    sa.select(buckets.c.record_id).where(
                        buckets.c.connection_id == "sf-acme", buckets.c.metric == metric, buckets.c.day == day
                    )
                ).scalars()
            )

    def on_day(self, day: date) -> set[str]:
        """The live opportunities whose CloseDate is the day, straight from the org's table."""
        rows = self.org.run_sql(
            'SELECT "Id" FROM "Opportunity" WHERE "IsDeleted" = 0 AND "CloseDate" = ?', (day.isoformat(),)
        )
        return {row[0] for row in rows}

    def index_queries(self) -> list[str]:
        """The record-index reads issued since the last call (the Opportunity index selects only Id, CloseDate)."""
        found = [q for q in self.queries if q.startswith("SELECT Id, CloseDate FROM Opportunity")]
        self.queries.clear()
        return found

    def check(self, days: list[date]) -> None:
        """The index promise and the values, for the Opportunity daily metrics on these days."""
        client = self.resource.client(self.platform, self.connection)
        for day in days:
            for metric in OPPORTUNITY:
                missing = self.on_day(day) - self.bucket(metric, day)
                assert not missing, f"{metric} {day}: counted records missing from the bucket: {sorted(missing)}"
                stored = self.platform.metric_store.read(
                    connection_id="sf-acme", metric=metric, partition_key=f"sf-acme|{day}"
                )
                _, rows = compute_metric(client, SALES_METRICS[metric], self.connection, day)
                assert sorted((r["measure"], round(r["value"] or 0, 6)) for r in stored) == sorted(
                    (r.measure, round(r.value or 0, 6)) for r in rows
                ), f"{metric} {day}"


@pytest.fixture
def make_env(platform: Platform, workspace: Any) -> Iterator[Callable[[], Env]]:
    started: list[RunningSalesforceSandbox] = []
    instances: list[Any] = []

    def make() -> Env:
        org_now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
        sandbox = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=300, now=org_now))
        started.append(sandbox)
        queries: list[str] = []
        sandbox.app.query_hooks.append(queries.append)
        resource = SalesforceResource(client_id=sandbox.app.oauth.client_id, sandbox_ca_path=sandbox.ca_pem_path)
        connection = connect(platform, sandbox, resource)
        context = dg.instance_for_test()
        instance = context.__enter__()
        instances.append(context)
        sync_partitions(instance, platform.registry, ["salesforce"])
        sandbox.org.advance(timedelta(minutes=2))  # past the generator's stamps at the org's creation
        return Env(sandbox, platform, resource, instance, connection, queries)

    yield make
    for context in instances:
        context.__exit__(None, None, None)
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def env(make_env: Callable[[], Env]) -> Env:
    return make_env()


def place(env: Env, days: list[date], per_day: int = 2) -> list[str]:
    """Put `per_day` opportunities (taken from before the window) on each of these days, before any sync."""
    first = min(days)
    rows = env.org.run_sql(
        'SELECT "Id" FROM "Opportunity" WHERE "IsDeleted" = 0 AND "CloseDate" < ? ORDER BY "Id" LIMIT ?',
        (first.isoformat(), per_day * len(days) + 1),
    )
    ids = [row[0] for row in rows]
    assert len(ids) > per_day * len(days)
    for n, day in enumerate(sorted(days) * per_day):
        env.org.update("Opportunity", ids[n], {"CloseDate": day.isoformat()})
    env.org.advance(timedelta(minutes=1))
    return ids


def window(env: Env) -> tuple[date, date]:
    last = env.org.now.date() - timedelta(days=1)
    return last - timedelta(days=20), last


def test_a_first_sync_reads_in_full_marks_by_the_org_clock_and_a_rerun_reads_only_changes(env: Env) -> None:
    first, last = window(env)
    env.materialize(OPPORTUNITY, first, last)
    full = env.index_queries()
    assert len(full) == 4 and all("CloseDate >=" in q and CHANGE_STAMP_FIELD not in q for q in full)
    marks = env.platform.metric_store.bucket_marks("sf-acme", "win_rate", [first, last])
    # The org's clock (two days behind this machine's), from its Date header: SystemModstamp's clock.
    assert {mark.as_of for mark in marks.values()} == {env.org.now} and set(marks) == {first, last}
    env.check([first + timedelta(days=n) for n in range(21)])

    env.org.advance(timedelta(hours=1))
    env.materialize(OPPORTUNITY, first, last)
    changes = env.index_queries()
    since = env.org.now - timedelta(hours=1) - assets.INDEX_MARGIN
    assert len(changes) == 4 and all(
        q.endswith(f"WHERE {CHANGE_STAMP_FIELD} >= {since:%Y-%m-%dT%H:%M:%SZ}") for q in changes
    )
    assert env.platform.metric_store.bucket_marks("sf-acme", "win_rate", [first])[first].as_of == env.org.now
    env.check([first + timedelta(days=n) for n in range(21)])


def test_a_record_moved_between_syncs_is_found_by_cdc_and_the_patched_index_follows_it(env: Env) -> None:
    first, last = window(env)
    place(env, [first + timedelta(days=1), last - timedelta(days=1)])
    env.materialize(OPPORTUNITY, first, last)
    old_day, new_day = last - timedelta(days=1), first + timedelta(days=1)
    moved = sorted(env.on_day(old_day))[0]
    for there, back in ((new_day, old_day), (old_day, new_day)):
        start = env.org.now
        env.org.update("Opportunity", moved, {"CloseDate": there.isoformat()})
        env.org.advance(timedelta(minutes=5))
        result = env.tick(start)
        days = requested_days(result.run_requests)
        # The day it left comes only from the (patched) index: the record no longer names it.
        assert set(OPPORTUNITY) <= days[f"sf-acme|{back}"] and set(OPPORTUNITY) <= days[f"sf-acme|{there}"]
        env.index_queries()
        env.run_requested(result)
        assert all(CHANGE_STAMP_FIELD in q for q in env.index_queries()), "CDC runs patch, not re-read"
        assert moved in env.bucket("win_rate", there) and moved not in env.bucket("win_rate", back)
        env.check([back, there])


def test_a_record_moved_onto_a_day_while_its_run_reads_is_in_that_days_bucket(env: Env) -> None:
    first, last = window(env)
    day = last - timedelta(days=3)
    moved = place(env, [day])[-1]  # one left before the window, moved onto the day during a run below
    env.materialize(OPPORTUNITY, first, last)
    moves: list[str] = []

    def move_during_the_values(soql: str) -> None:
        # The win_rate value query: after the index's first read, before its second.
        if "GROUP BY IsWon" in soql and not moves:
            moves.append(soql)
            env.org.advance(timedelta(seconds=30))
            env.org.update("Opportunity", moved, {"CloseDate": day.isoformat()})

    env.org.advance(timedelta(hours=1))
    env.sandbox.app.query_hooks.append(move_during_the_values)
    env.index_queries()
    env.materialize(["win_rate"], day)
    env.sandbox.app.query_hooks.remove(move_during_the_values)
    assert moves and all(CHANGE_STAMP_FIELD in q for q in env.index_queries())
    # Counted by the value (moved before it ran), missed by the first read, caught by the second.
    assert moved in env.bucket("win_rate", day) and moved in env.on_day(day)

    # Moved away again: the next tick finds the day it left in the index; the rerun drops it.
    start = env.org.now
    env.org.update("Opportunity", moved, {"CloseDate": first.isoformat()})
    env.org.advance(timedelta(minutes=5))
    result = env.tick(start)
    assert "win_rate" in requested_days(result.run_requests)[f"sf-acme|{day}"]
    env.run_requested(result)
    assert moved not in env.bucket("win_rate", day)
    env.check([day, first])


def test_a_deleted_record_stays_a_harmless_ghost_until_a_rebuild_and_an_undelete_is_seen(env: Env) -> None:
    first, last = window(env)
    day = last - timedelta(days=2)
    place(env, [day])
    env.materialize(OPPORTUNITY, first, last)
    deleted = sorted(env.on_day(day))[0]
    start = env.org.now
    env.org.delete("Opportunity", deleted)
    env.org.advance(timedelta(minutes=5))
    result = env.tick(start)
    assert set(OPPORTUNITY) <= requested_days(result.run_requests)[f"sf-acme|{day}"]
    env.run_requested(result)
    env.check([day])
    # The change read sees live records only: the deleted id stays (a recomputation too many, never a miss).
    assert deleted in env.bucket("win_rate", day)

    # A week later by the org's clock the day's bucket is read in full again: the ghost is pruned.
    env.org.advance(assets.INDEX_REBUILD_AFTER)
    env.index_queries()
    env.materialize(["win_rate"], day)
    reads = env.index_queries()
    assert [CHANGE_STAMP_FIELD in q for q in reads] == [True, False, False]  # one page spent, then in full
    assert deleted not in env.bucket("win_rate", day)
    mark = env.platform.metric_store.bucket_marks("sf-acme", "win_rate", [day])[day]
    assert mark.rebuilt_at == mark.as_of == env.org.now

    # Undeleted: SystemModstamp moves, so the next (incremental) refresh puts it back.
    env.org.advance(timedelta(minutes=5))
    env.org.undelete("Opportunity", deleted)
    env.org.advance(timedelta(minutes=5))
    env.materialize(["win_rate"], day)
    assert all(CHANGE_STAMP_FIELD in q for q in env.index_queries())
    assert deleted in env.bucket("win_rate", day)
    assert env.on_day(day) <= env.bucket("win_rate", day)


def test_buckets_stored_before_marks_or_by_another_selection_are_read_in_full(env: Env) -> None:
    first, last = window(env)
    env.materialize(OPPORTUNITY, first, last)
    env.index_queries()
    # A bucket from before this change: ids, no mark. Only that day's chunk is read in full.
    marks = tables.metric_bucket_marks
    with env.platform.engine.begin() as db:
        db.execute(marks.delete().where(marks.c.metric == "win_rate", marks.c.day == last))
    env.org.advance(timedelta(hours=1))
    env.materialize(["win_rate"], last - timedelta(days=2), last)
    assert [CHANGE_STAMP_FIELD in q for q in env.index_queries()] == [False, False]
    env.materialize(["win_rate"], last - timedelta(days=2), last)
    assert [CHANGE_STAMP_FIELD in q for q in env.index_queries()] == [True, True]
    env.check([last - timedelta(days=2), last])
    # The change query's digest: one per object and period fields (so a change of them reads in full).
    selection = Selection(DEMO_SELECTION)
    digests = {name: assets.index_source(SALES_METRICS[name], selection) for name in (*OPPORTUNITY, "lead_conversion")}
    assert digests["win_rate"] == digests["sales_cycle_length"] != digests["lead_conversion"]


def test_a_mass_change_falls_back_to_reading_the_days_in_full(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    first, last = window(env)
    day = last - timedelta(days=1)
    moved = place(env, [day], per_day=3)[:3]
    env.materialize(["win_rate"], first, last)
    monkeypatch.setattr(assets, "INDEX_CHANGES_LIMIT", 2)
    env.org.advance(timedelta(hours=1))
    for record_id in moved:  # three changes: one more than the limit
        env.org.update("Opportunity", record_id, {"CloseDate": first.isoformat()})
    env.org.advance(timedelta(minutes=5))
    env.index_queries()
    env.materialize(["win_rate"], day)
    assert [CHANGE_STAMP_FIELD in q for q in env.index_queries()] == [True, False, False]
    assert env.bucket("win_rate", day) == env.on_day(day) and not set(moved) & env.bucket("win_rate", day)
    mark = env.platform.metric_store.bucket_marks("sf-acme", "win_rate", [day])[day]
    assert mark.rebuilt_at == mark.as_of == env.org.now


def test_the_change_read_selects_only_id_and_period_fields_and_filters_on_the_modstamp() -> None:
    """No unselected field is read: SystemModstamp is only compared (as getUpdated, which CDC polls, does)."""
    since = datetime(2026, 11, 20, 11, 45, 30, 999, tzinfo=UTC)
    query = record_changes_query(
        SALES_METRICS["case_volume"].fields, DEMO_SELECTION, ["CreatedDate", "ClosedDate"], since
    )
    assert query.soql == "SELECT Id, ClosedDate, CreatedDate FROM Case WHERE SystemModstamp >= 2026-11-20T11:45:30Z"
    assert query.fields_read == ("ClosedDate", "CreatedDate", "Id") and not query.aggregate
    with pytest.raises(ValueError, match="aware instant"):
        record_changes_query(SALES_METRICS["win_rate"].fields, DEMO_SELECTION, ["CloseDate"], datetime(2026, 11, 20))
    with pytest.raises(ValueError, match="no period field"):
        record_changes_query(SALES_METRICS["win_rate"].fields, DEMO_SELECTION, [], since)
