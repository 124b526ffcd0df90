"""The Salesforce CDC sensor against the sandbox org: the first tick resyncs in full; later ticks poll
`updated`/`deleted` and request runs for exactly the metrics and days the changes touch (checked against
the org's own tables, and by executing those runs); run keys are stable; a gap, INVALID_REPLICATION_DATE
or a newly selected object resyncs in full; a revoked connection is never polled.

The sensor reads the wall clock, so each org here is frozen two days behind it: changed records fall on
days whose daily partitions exist (today's does not yet), and cursors a previous tick left are written
in the org's time.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.salesforce.assets import METRIC_ASSETS, salesforce_daily_job, salesforce_snapshot_job
from dfx_pipelines.connectors.salesforce.cdc import salesforce_cdc_sensor
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    start_salesforce_sandbox,
)
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Connection, ConnectionStatus
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect, request_partition, requested_days, subrequests_of

RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
# Objects of DEMO_SELECTION that some sales metric reads (Campaign is only written back to).
POLLED = ["CampaignMember", "Case", "CaseMilestone", "Event", "Lead", "Opportunity", "Task"]
# Per object: the fields that place a record on a day, and the daily metrics of that object.
DAILY = {
    "Opportunity": (["CloseDate"], {"win_rate", "sales_cycle_length"}),
    "Lead": (["CreatedDate"], {"lead_conversion", "lead_time_to_convert"}),
    "Case": (["CreatedDate", "ClosedDate"], {"case_volume", "case_resolution_time"}),
    "CaseMilestone": (["CompletionDate", "TargetDate"], {"case_milestone_sla"}),
    "Task": (["ActivityDate"], {"task_activity_counts"}),
    "Event": (["ActivityDate"], {"event_activity_counts"}),
}
SNAPSHOT = {
    "Opportunity": {"open_pipeline_by_stage", "campaign_sourced_pipeline"},
    "CampaignMember": {"campaign_responses"},
}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def as_date(value: Any) -> date:
    """A stored date ('YYYY-MM-DD') or datetime (epoch seconds) as its UTC day."""
    if isinstance(value, int):
        return datetime.fromtimestamp(value, UTC).date()
    return date.fromisoformat(str(value)[:10])


def wall_today() -> date:
    return datetime.now(UTC).date()


def names(keys: Any) -> set[str]:
    return {key.path[-1] for key in keys or []}


@dataclass
class Env:
    sandbox: RunningSalesforceSandbox
    platform: Platform
    resource: SalesforceResource
    instance: dg.DagsterInstance
    connection: Connection

    @property
    def org(self) -> SalesforceOrg:
        return self.sandbox.org

    @property
    def resources(self) -> dict[str, Any]:
        settings = self.platform.settings
        return {
            "platform": PlatformResource(home=str(settings.home), metrics_db_url=settings.metrics_db_url),
            "salesforce": self.resource,
        }

    def tick(self, cursor: dict | None) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance, cursor=json.dumps(cursor) if cursor is not None else None, resources=self.resources
        )
        return salesforce_cdc_sensor(context)

    def daemon_tick(self, cursor: dict | None) -> Any:
        """The tick as the code server evaluates it for the daemon: run requests are resolved against the
        job and its partitions, and one unknown partition key fails the whole tick."""
        repository = dg.Definitions(
            assets=METRIC_ASSETS,
            jobs=[salesforce_snapshot_job, salesforce_daily_job],
            sensors=[salesforce_cdc_sensor],
            resources=self.resources,
        ).get_repository_def()
        with dg.SensorEvaluationContext(
            instance_ref=self.instance.get_ref(),
            last_tick_completion_time=None,
            last_run_key=None,
            cursor=json.dumps(cursor) if cursor is not None else None,
            log_key=None,
            repository_name=repository.name,
            repository_def=repository,
            sensor_name=salesforce_cdc_sensor.name,
            resources=self.resources,
        ) as context:
            return salesforce_cdc_sensor.evaluate_tick(context)

    def org_cursor(self, moment: datetime, connection_id: str = "sf-acme") -> dict[str, dict[str, str]]:
        """The cursor a previous tick left when Salesforce said it had covered everything up to `moment`."""
        return {connection_id: {obj: iso(moment) for obj in POLLED}}

    def requests_since(self, before: int) -> list:
        """What the org was asked since `before`: a composite call's subrequests count as what they ask."""
        return subrequests_of(self.sandbox.server.requests[before:])

    def calls_since(self, before: int) -> list:
        """HTTP requests (API calls) since `before`: a composite call is one."""
        return self.sandbox.server.requests[before:]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # One per test: a module-scoped instance outlived the per-test environment reset and intermittently
    # failed to resolve ("undefined DagsterInstance weakref") in a long session.
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def make_env(platform: Platform, workspace: Any, instance: dg.DagsterInstance) -> Iterator[Callable[..., Env]]:
    started: list[RunningSalesforceSandbox] = []

    def make(**org_options: Any) -> Env:
        org_now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
        sandbox = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=300, now=org_now, **org_options))
        started.append(sandbox)
        resource = SalesforceResource(client_id=sandbox.app.oauth.client_id, sandbox_ca_path=sandbox.ca_pem_path)
        connection = connect(platform, sandbox, resource)
        sync_partitions(instance, platform.registry, ["salesforce"])
        # The generator stamps some records at the org's creation instant: step past it, so the only
        # changes after the cursor are the test's own.
        sandbox.org.advance(timedelta(minutes=2))
        return Env(sandbox, platform, resource, instance, connection)

    yield make
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def env(make_env: Callable[..., Env]) -> Env:
    return make_env()


@dataclass
class Changes:
    won_id: str
    won_day: date
    pushed_id: str
    pushed_day: date
    lead_id: str
    lead_day: date
    case_id: str
    case_day: date


def lead_to_delete(org: SalesforceOrg) -> tuple[str, int]:
    """A lead created a few weeks ago (its id and stored CreatedDate)."""
    return org.run_sql(
        "SELECT Id, CreatedDate FROM Lead WHERE IsDeleted = 0 AND CreatedDate < ? ORDER BY CreatedDate DESC LIMIT 1 OFFSET 3",
        (epoch(org.now - timedelta(days=10)),),
    )[0]


def change_the_org(org: SalesforceOrg) -> Changes:
    """A deal closed won on a given day, an open deal pushed into next week, a lead deleted, a case created."""
    won_day = org.now.date() - timedelta(days=3)
    won_id, pushed_id = [
        row[0]
        for row in org.run_sql(
            "SELECT Id FROM Opportunity WHERE IsClosed = 0 AND IsDeleted = 0 AND CloseDate <> ? ORDER BY Id LIMIT 2",
            (won_day.isoformat(),),
        )
    ]
    org.update("Opportunity", won_id, {"StageName": "Closed Won", "CloseDate": won_day.isoformat()})
    pushed_day = wall_today() + timedelta(days=7)  # no daily partition exists for it yet
    org.update("Opportunity", pushed_id, {"CloseDate": pushed_day.isoformat()})
    lead_id, created = lead_to_delete(org)
    org.delete("Lead", lead_id)
    case_id = org.create("Case", {"Subject": "Printer on fire", "Status": "New", "Priority": "High"})
    return Changes(won_id, won_day, pushed_id, pushed_day, lead_id, as_date(created), case_id, org.now.date())


def changed_in_window(org: SalesforceOrg, start: datetime, end: datetime) -> dict[str, tuple[set[str], set[date]]]:
    """Per object, straight from the org's tables: the records written (deletes included) in [start, end)
    and the days their period fields place them on."""
    found = {}
    for obj in POLLED:
        fields = DAILY.get(obj, ([], set()))[0]
        columns = ", ".join(['"Id"', *[f'"{field}"' for field in fields]])
        rows = org.run_sql(
            f'SELECT {columns} FROM "{obj}" WHERE "SystemModstamp" >= ? AND "SystemModstamp" < ?',
            (epoch(start), epoch(end)),
        )
        found[obj] = (
            {row[0] for row in rows},
            {as_date(value) for row in rows for value in row[1:] if value is not None},
        )
    return found


def covered_by(org: SalesforceOrg) -> datetime:
    """Salesforce's latestDateCovered for a window ending now: now less the replication lag, whole minutes."""
    return (org.now - org.replication_lag).replace(second=0)


# ------------------------------------------------------------------------------------------- first tick


def test_first_tick_requests_a_full_resync(env: Env) -> None:
    before, day_before = len(env.sandbox.server.requests), wall_today()
    result = env.tick(None)
    today = wall_today()  # the tick may straddle midnight: either day is right

    snapshot, daily = sorted(result.run_requests, key=lambda r: r.job_name != salesforce_snapshot_job.name)
    assert snapshot.job_name == salesforce_snapshot_job.name and snapshot.partition_key == "sf-acme"
    assert snapshot.asset_selection is None  # the whole snapshot job
    assert daily.job_name == salesforce_daily_job.name and daily.partition_key is None
    for request in (snapshot, daily):
        assert request.tags["dfx/sync"] == "initial" and request.tags["dfx/connection"] == "sf-acme"
    history = env.connection.settings.history_days
    assert (daily.tags[RANGE_START], daily.tags[RANGE_END]) in {
        (f"sf-acme|{day - timedelta(days=history - 1)}", f"sf-acme|{day}") for day in (day_before, today)
    }

    cursor = json.loads(result.cursor)
    assert set(cursor) == {"sf-acme"} and sorted(cursor["sf-acme"]) == POLLED
    for value in cursor["sf-acme"].values():
        assert abs(datetime.fromisoformat(value) - datetime.now(UTC)) < timedelta(minutes=1)
    # Nothing to compare yet: the first tick asks the org nothing, the resync reads it all.
    assert env.requests_since(before) == []
    # As the daemon evaluates it, the requests resolve (a range run needs no single partition key).
    assert len(env.daemon_tick(None).run_requests) == 2


def test_an_object_selected_later_resyncs_instead_of_never_being_polled(env: Env) -> None:
    cursor = env.org_cursor(env.org.now)
    del cursor["sf-acme"]["Task"]  # Task was selected after the last tick
    result = env.tick(cursor)
    assert {r.tags["dfx/sync"] for r in result.run_requests} == {"initial"} and len(result.run_requests) == 2
    assert sorted(json.loads(result.cursor)["sf-acme"]) == POLLED


# ------------------------------------------------------------------------------------------- changes


def test_changes_request_only_the_metrics_and_days_they_touch(env: Env) -> None:
    org = env.org
    start = org.now
    changes = change_the_org(org)
    org.advance(timedelta(minutes=5))
    before = len(env.sandbox.server.requests)
    result = env.tick(env.org_cursor(start))

    # What changed, from the org's own tables: exactly the test's four records.
    changed = changed_in_window(org, start, covered_by(org))
    assert changed["Opportunity"][0] == {changes.won_id, changes.pushed_id}
    assert changed["Lead"][0] == {changes.lead_id} and changed["Case"][0] == {changes.case_id}
    assert all(not ids for obj, (ids, _) in changed.items() if obj not in ("Opportunity", "Lead", "Case"))
    assert changed["Opportunity"][1] == {changes.won_day, changes.pushed_day}
    assert changed["Lead"][1] == {changes.lead_day} and changed["Case"][1] == {changes.case_day}

    snapshots = [r for r in result.run_requests if r.job_name == salesforce_snapshot_job.name]
    assert len(snapshots) == 1 and snapshots[0].partition_key == "sf-acme"
    assert names(snapshots[0].asset_selection) == {
        "open_pipeline_by_stage",
        "campaign_sourced_pipeline",
    }  # not campaign_responses

    expected: dict[str, set[str]] = {}
    for obj, (_, days) in changed.items():
        for day in days:
            if day < wall_today():  # today's and later days have no daily partition yet
                expected.setdefault(f"sf-acme|{day}", set()).update(DAILY[obj][1])
    assert expected == {
        f"sf-acme|{changes.won_day}": {"win_rate", "sales_cycle_length"},
        f"sf-acme|{changes.lead_day}": {"lead_conversion", "lead_time_to_convert"},
        f"sf-acme|{changes.case_day}": {"case_volume", "case_resolution_time"},
    }
    dailies = [r for r in result.run_requests if r.job_name == salesforce_daily_job.name]
    assert {str(r.partition_key): names(r.asset_selection) for r in dailies} == expected
    assert len(dailies) == len(expected) and len(result.run_requests) == len(expected) + 1
    assert all(r.tags["dfx/sync"] == "cdc" and r.tags["dfx/connection"] == "sf-acme" for r in result.run_requests)

    # Every selected object was asked, for the window from the cursor; deleted records' days came from queryAll.
    asked = env.requests_since(before)
    updated = {r.path.split("/")[-3] for r in asked if r.path.endswith("/updated/")}
    assert updated == set(POLLED)
    assert {r.arg("start")[:16] for r in asked if r.path.endswith(("/updated/", "/deleted/"))} == {iso(start)[:16]}
    assert any("/queryAll" in r.path and "FROM Lead" in (r.arg("q") or "") for r in asked)
    # ... in two API calls whatever the number of objects: one composite for every object's updated and
    # deleted windows, one for the changed records' days (three objects changed: three queries).
    calls = env.calls_since(before)
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in calls] == [("POST", "composite")] * 2
    assert len(asked) == 2 * len(POLLED) + 3

    # The cursor moves to what Salesforce says it covered.
    cursor = json.loads(result.cursor)
    assert cursor == {"sf-acme": {obj: iso(covered_by(org)) for obj in POLLED}}

    # The daemon accepts every request (the pushed deal's future day would fail the whole tick).
    assert sorted(r.run_key for r in env.daemon_tick(env.org_cursor(start)).run_requests) == sorted(
        r.run_key for r in result.run_requests
    )

    # Nothing new since: no runs, and a reason.
    quiet = env.tick(cursor)
    assert quiet.run_requests == [] and quiet.skip_reason.skip_message == "no changes"
    assert json.loads(quiet.cursor) == cursor


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_poll_whose_composite_calls_fail_on_the_wire_asks_again_and_requests_the_same_runs(
    make_env: Callable[..., Env], when: str
) -> None:
    # The poll's composite calls carry only GETs, so a dropped connection (before Salesforce acted, or
    # after: only the answer lost) or a 502 is sent again, although a POST in general is not.
    env = make_env()
    start = env.org.now
    change_the_org(env.org)
    env.org.advance(timedelta(minutes=5))
    results = []
    for faulty in (True, False):  # the same window twice: a poll only reads, so both must agree
        if faulty:
            faults = env.sandbox.server.faults
            faults.inject("drop", count=1, when=when, path_prefix="/services/data/v59.0/composite")
            faults.inject("server_error", count=1, status=502, path_prefix="/services/data/v59.0/composite")
        before = len(env.sandbox.server.requests)
        result = env.tick(env.org_cursor(start))
        calls = [r.path for r in env.calls_since(before)]
        results.append((sorted(str(r.partition_key) for r in result.run_requests), result.cursor, calls))
    (runs, cursor, calls), (clean_runs, clean_cursor, clean_calls) = results
    assert runs == clean_runs and runs and json.loads(cursor) == json.loads(clean_cursor)
    assert len(calls) == len(clean_calls) + 2  # the two failed attempts, each sent once more


def test_requested_runs_bring_the_metric_store_up_to_date(env: Env) -> None:
    org, store = env.org, env.platform.metric_store
    materialize = Materializer(env.platform, env.resource, env.instance)
    won_day = org.now.date() - timedelta(days=3)
    start = org.now

    def value(metric: str, partition: str, measure: str) -> float | None:
        rows = [
            r
            for r in store.read(connection_id="sf-acme", metric=metric, partition_key=partition)
            if r["measure"] == measure and not r["dimensions"]
        ]
        assert len(rows) == 1, (metric, partition, measure)
        return rows[0]["value"]

    # The store as it was before the changes (computed through the same assets).
    lead_day = as_date(lead_to_delete(org)[1])
    assert materialize(["win_rate"], partition_key=f"sf-acme|{won_day}").success
    assert materialize(["lead_conversion"], partition_key=f"sf-acme|{lead_day}").success
    assert materialize(["open_pipeline_by_stage"], partition_key="sf-acme").success
    won_before = value("win_rate", f"sf-acme|{won_day}", "won_count")
    leads_before = value("lead_conversion", f"sf-acme|{lead_day}", "lead_count")
    open_before = value("open_pipeline_by_stage", "sf-acme", "total_count")

    changes = change_the_org(org)
    assert changes.lead_day == lead_day and changes.won_day == won_day
    org.advance(timedelta(minutes=5))
    result = env.tick(env.org_cursor(start))
    assert result.run_requests
    for request in result.run_requests:
        run = materialize(
            sorted(names(request.asset_selection)), partition_key=request_partition(request), tags=request.tags
        )
        assert run.success

    # Independently, from the org's tables after the change.
    won_count, won_amount = org.run_sql(
        "SELECT COUNT(*), SUM(COALESCE(Amount, 0)) FROM Opportunity WHERE IsWon = 1 AND IsDeleted = 0 AND CloseDate = ?",
        (won_day.isoformat(),),
    )[0]
    assert value("win_rate", f"sf-acme|{won_day}", "won_count") == won_count == won_before + 1
    assert value("win_rate", f"sf-acme|{won_day}", "won_amount") == pytest.approx(won_amount)
    assert value("sales_cycle_length", f"sf-acme|{won_day}", "count") == won_count

    day_start = epoch(datetime(changes.lead_day.year, changes.lead_day.month, changes.lead_day.day, tzinfo=UTC))
    lead_count = org.run_sql(
        "SELECT COUNT(*) FROM Lead WHERE IsDeleted = 0 AND CreatedDate >= ? AND CreatedDate < ?",
        (day_start, day_start + 86_400),
    )[0][0]
    assert value("lead_conversion", f"sf-acme|{changes.lead_day}", "lead_count") == lead_count == leads_before - 1

    day_start = epoch(datetime(changes.case_day.year, changes.case_day.month, changes.case_day.day, tzinfo=UTC))
    cases = org.run_sql(
        'SELECT COUNT(*) FROM "Case" WHERE IsDeleted = 0 AND CreatedDate >= ? AND CreatedDate < ?',
        (day_start, day_start + 86_400),
    )[0][0]
    assert value("case_volume", f"sf-acme|{changes.case_day}", "total_count") == cases
    open_now = org.run_sql("SELECT COUNT(*) FROM Opportunity WHERE IsClosed = 0 AND IsDeleted = 0")[0][0]
    assert value("open_pipeline_by_stage", "sf-acme", "total_count") == open_now == open_before - 1
    # campaign_sourced_pipeline was requested too, and computed for this connection.
    assert store.read(connection_id="sf-acme", metric="campaign_sourced_pipeline")


def test_run_keys_are_stable_for_a_tick_and_new_for_new_changes(env: Env) -> None:
    org = env.org
    start = org.now
    changes = change_the_org(org)
    org.advance(timedelta(minutes=5))
    first, again = env.tick(env.org_cursor(start)), env.tick(env.org_cursor(start))
    keys = [r.run_key for r in first.run_requests]
    assert len(keys) == len(set(keys)) == 4
    assert [r.run_key for r in again.run_requests] == keys and again.cursor == first.cursor

    # A later change on the same day must not be mistaken for one already requested.
    another = org.run_sql(
        "SELECT Id FROM Opportunity WHERE IsClosed = 0 AND IsDeleted = 0 AND Id NOT IN (?, ?) ORDER BY Id LIMIT 1",
        (changes.won_id, changes.pushed_id),
    )[0][0]
    org.update("Opportunity", another, {"StageName": "Closed Lost", "CloseDate": changes.won_day.isoformat()})
    org.advance(timedelta(minutes=5))
    later = env.tick(json.loads(first.cursor))
    assert {str(r.partition_key) for r in later.run_requests if r.job_name == salesforce_daily_job.name} == {
        f"sf-acme|{changes.won_day}"
    }
    assert not {r.run_key for r in later.run_requests} & set(keys)


# ------------------------------------------------------------------------------------------- resyncs


def test_a_cursor_beyond_the_30_day_reach_resyncs_in_full(env: Env) -> None:
    before = len(env.sandbox.server.requests)
    stale = {"sf-acme": {obj: iso(datetime.now(UTC) - timedelta(days=31)) for obj in POLLED}}
    result = env.tick(stale)
    assert len(result.run_requests) == 2 and {r.tags["dfx/sync"] for r in result.run_requests} == {"gap"}
    assert {r.job_name for r in result.run_requests} == {salesforce_snapshot_job.name, salesforce_daily_job.name}
    cursor = json.loads(result.cursor)["sf-acme"]
    assert sorted(cursor) == POLLED and all(
        datetime.now(UTC) - datetime.fromisoformat(v) < timedelta(minutes=1) for v in cursor.values()
    )
    assert env.requests_since(before) == []  # a window Salesforce cannot answer is not even asked


def test_invalid_replication_date_resyncs_in_full(make_env: Callable[..., Env]) -> None:
    # An org whose delete log reaches back only two days: a four-day-old cursor is within our 30 days
    # but beyond what Salesforce can replay.
    env = make_env(replication_window=timedelta(days=2))
    before = len(env.sandbox.server.requests)
    result = env.tick(env.org_cursor(env.org.now - timedelta(days=4)))
    answered = [r for r in env.requests_since(before) if r.path.endswith(("/updated/", "/deleted/"))]
    assert answered, "the org was asked"
    assert len(result.run_requests) == 2 and {r.tags["dfx/sync"] for r in result.run_requests} == {
        "invalid-replication-date"
    }
    assert all(
        datetime.now(UTC) - datetime.fromisoformat(v) < timedelta(minutes=1)
        for v in json.loads(result.cursor)["sf-acme"].values()
    )
    assert result.skip_reason is None


# ------------------------------------------------------------------------------------------- revoked


def test_a_revoked_connection_is_not_polled_and_its_cursor_dropped(env: Env) -> None:
    other = connect(env.platform, env.sandbox, env.resource, config={"id": "sf-other"})
    sync_partitions(env.instance, env.platform.registry, ["salesforce"])
    revoked_token = env.platform.vault.get(env.connection.secret_ref("oauth_access_token")).get_secret_value()
    other_token = env.platform.vault.get(other.secret_ref("oauth_access_token")).get_secret_value()
    env.platform.registry.set_status("sf-acme", ConnectionStatus.REVOKED)

    start = env.org.now
    change_the_org(env.org)
    env.org.advance(timedelta(minutes=5))
    before = len(env.sandbox.server.requests)
    cursor = {**env.org_cursor(start, "sf-acme"), **env.org_cursor(start, "sf-other")}
    result = env.tick(cursor)

    sent = env.requests_since(before)
    assert sent, "the active connection is still polled"
    senders = {r.headers.get("authorization", "").removeprefix("Bearer ") for r in sent}
    assert {"sf-other" if t == other_token else "sf-acme" if t == revoked_token else "unknown" for t in senders} == {
        "sf-other"
    }
    assert {r.tags["dfx/connection"] for r in result.run_requests} == {"sf-other"}
    assert set(json.loads(result.cursor)) == {"sf-other"}

    # With only the revoked one left, nothing reaches Salesforce at all.
    env.platform.registry.set_status("sf-other", ConnectionStatus.REVOKED)
    before = len(env.sandbox.server.requests)
    result = env.tick(cursor)
    assert env.requests_since(before) == [] and result.run_requests == [] and json.loads(result.cursor) == {}


# ------------------------------------------------------------------------------------------- old days


def test_the_day_a_record_left_is_requested_from_the_record_bucket_index(env: Env) -> None:
    """A reopened case loses its ClosedDate, a moved deal its old CloseDate, a purged deal every field:
    their current values cannot name the day they were counted on; the index the runs stored can."""
    org = env.org
    materialize = Materializer(env.platform, env.resource, env.instance)
    today_start = epoch(datetime.combine(org.now.date(), datetime.min.time(), UTC))
    case_id, closed_at = org.run_sql(
        'SELECT Id, ClosedDate FROM "Case" WHERE IsDeleted = 0 AND IsClosed = 1 AND ClosedDate < ? ORDER BY ClosedDate DESC LIMIT 1',
        (today_start,),
    )[0]
    closed_day = as_date(closed_at)
    (moved_id, moved), (purged_id, purged) = org.run_sql(
        "SELECT Id, CloseDate FROM Opportunity WHERE IsDeleted = 0 AND CloseDate < ? ORDER BY CloseDate DESC, Id LIMIT 2",
        (org.now.date().isoformat(),),
    )
    moved_day, purged_day = as_date(moved), as_date(purged)
    days = sorted({closed_day, moved_day, purged_day})
    assert days[-1] - days[0] < timedelta(days=30)
    tags = {RANGE_START: f"sf-acme|{days[0]}", RANGE_END: f"sf-acme|{days[-1]}"}
    assert materialize(["case_resolution_time", "win_rate"], tags=tags).success
    start = org.now

    org.update("Case", case_id, {"Status": "Working"})  # ClosedDate cleared
    org.update(
        "Opportunity", moved_id, {"CloseDate": (wall_today() + timedelta(days=30)).isoformat()}
    )  # to a day without a partition
    org.purge("Opportunity", purged_id)  # queryAll no longer sees it
    org.advance(timedelta(minutes=5))
    assert (
        org.get("Case", case_id)["ClosedDate"] is None
        and org.get("Opportunity", purged_id, include_deleted=True) is None
    )
    result = env.tick(env.org_cursor(start))

    # The two deals' days are close together: one range run may cover both (and the days between).
    daily = requested_days(result.run_requests)
    assert {"case_volume", "case_resolution_time"} <= daily[f"sf-acme|{closed_day}"]
    assert {"win_rate", "sales_cycle_length"} <= daily[f"sf-acme|{moved_day}"]
    assert {"win_rate", "sales_cycle_length"} <= daily[f"sf-acme|{purged_day}"]
