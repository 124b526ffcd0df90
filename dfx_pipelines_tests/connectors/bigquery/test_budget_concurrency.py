"""The monthly budget under concurrency, on SQLite and on the real PostgreSQL: runs started together
never spend past the budget (the decision and the reservation are one locked transaction), a run's
reservation is settled or released whatever happens to it, and a run killed with SIGKILL cannot hold
budget beyond its lease. Threads go through the whole gate against the sandbox; processes run
`budget_child.py`, which makes the gate's own ledger calls on its own engine."""

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.gate import ReservationLapsed
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.metrics import build_query, specs_of
from dfx_pipelines.connectors.bigquery.resource import AwaitingApproval
from dfx_pipelines.platform.registry import Connection, Workspace
from dfx_pipelines.platform.services import Platform

from .conftest import MIB, TIB, JobWatch, connect, set_budget

CHILD = Path(__file__).with_name("budget_child.py")
PRICE = 6.25
ONE_QUERY_USD = 10 * MIB / TIB * PRICE  # a small query bills the 10 MiB minimum
PROJECTION = gate.project(5 * MIB, 1, PRICE)  # the children's query: 10 MiB billed, 11 MiB cap
DATABASES = ["sqlite", "postgresql"]


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def platform_on(request: pytest.FixtureRequest, database: str) -> Platform:
    platform = request.getfixturevalue("platform" if database == "sqlite" else "pg_platform")
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    return platform


def bare_connection(platform: Platform, connection_id: str = "bq-race") -> str:
    platform.registry.add_connection(
        Connection(
            id=connection_id,
            workspace_id="acme",
            kind="bigquery",
            display_name="Race",
            selection={"datasets": {"shop": ["orders"]}},
        )
    )
    return connection_id


@pytest.mark.parametrize("database", DATABASES)
def test_runs_started_together_never_spend_past_the_budget(request, database, bq_sandbox, bq_resource) -> None:
    platform = platform_on(request, database)
    connection = set_budget(
        platform, connect(platform, bq_sandbox), 2.5 * ONE_QUERY_USD
    )  # room for two runs, not three
    query = build_query(specs_of(connection)[0], connection.endpoint["project"], date(2024, 6, 1), date(2024, 6, 1))
    handles = [bq_resource.gated(platform, platform.registry.get("bq-acme")) for _ in range(8)]
    start = threading.Barrier(len(handles))
    outcomes: list[str] = []
    watch = JobWatch(bq_sandbox)

    def run(gated) -> None:
        start.wait()
        try:
            gated.run_gated(query.sql, query.params, asset="a", partition="p")
            outcomes.append("ran")
        except AwaitingApproval:
            outcomes.append("awaiting approval")

    threads = [threading.Thread(target=run, args=(gated,)) for gated in handles]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = BudgetStore(platform.engine)
    assert sorted(outcomes) == ["awaiting approval"] * 6 + ["ran"] * 2
    assert len(watch.real_jobs) == 2
    assert store.month_to_date_bytes("bq-acme") == 20 * MIB  # 80% of the budget, never more
    assert gate.cost_usd(store.month_to_date_bytes("bq-acme"), PRICE) <= 2.5 * ONE_QUERY_USD
    assert store.reservations("bq-acme") == []  # every reservation settled and released


@pytest.mark.parametrize("database", DATABASES)
def test_processes_started_together_never_spend_past_the_budget(request, database, tmp_path) -> None:
    platform = platform_on(request, database)
    connection_id = bare_connection(platform)
    go = tmp_path / "go"
    url = platform.settings.metrics_db_url
    children = [
        subprocess.Popen(
            [sys.executable, str(CHILD), "run", url, connection_id, str(2.5 * ONE_QUERY_USD), str(go), "0.3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        for child in children:
            assert child.stdout.readline().strip() == "ready"
        go.touch()
        outcomes = sorted(child.communicate(timeout=120)[0].strip() for child in children)
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert outcomes == ["ran", "ran", "refused", "refused", "refused", "refused"]
    store = BudgetStore(platform.engine)
    assert store.month_to_date_bytes(connection_id) == 20 * MIB
    assert store.reservations(connection_id) == []


@pytest.mark.parametrize("database", DATABASES)
def test_a_killed_runs_reservation_lapses_and_frees_the_budget(request, database) -> None:
    platform = platform_on(request, database)
    connection_id = bare_connection(platform)
    budget, lease = 1.5 * ONE_QUERY_USD, 3.0  # room for one run; renewed every second (slack for a loaded machine)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), "hold", platform.settings.metrics_db_url, connection_id, str(budget), str(lease)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        held = child.stdout.readline().split()
        assert held[0] == "reserved", child.stderr.read()
        store = BudgetStore(platform.engine)
        time.sleep(2 * lease)  # two leases: the living child renews its reservation
        refused, decision = store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)
        assert refused is None and "spent or reserved this month" in decision.reason
        assert [row["id"] for row in store.reservations(connection_id)] == [held[1]]
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    killed_at = time.monotonic()
    while (
        reservation := store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)[0]
    ) is None:
        assert time.monotonic() - killed_at < lease + 10, "the dead run's reservation never lapsed"
        time.sleep(0.1)
    assert [row["id"] for row in store.reservations(connection_id)] == [reservation.id]  # the dead one is gone
    store.release(reservation)
    assert store.reservations(connection_id) == [] and store.month_to_date_bytes(connection_id) == 0  # nothing was sent


@pytest.mark.parametrize("database", DATABASES)
def test_a_lapsed_run_with_a_job_in_flight_is_charged_its_cap_exactly_once(request, database) -> None:
    platform = platform_on(request, database)
    connection_id = bare_connection(platform)
    clock = Clock(datetime(2026, 3, 10, 12, tzinfo=UTC))
    store = BudgetStore(platform.engine, clock)
    budget = 10 * ONE_QUERY_USD
    dead, _ = store.reserve(
        connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE, lease=timedelta(seconds=60)
    )
    store.job_sent(dead, PROJECTION.cap_bytes)  # the job was sent, then the run stopped renewing
    clock.now += timedelta(seconds=61)
    alive, decision = store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)
    # Reaped: its bill is unknown, so the most BigQuery can have billed (the cap) is on the ledger.
    assert decision.month_to_date_usd == pytest.approx(gate.cost_usd(11 * MIB, PRICE))
    assert store.month_to_date_bytes(connection_id, "2026-03") == 11 * MIB
    assert [row["id"] for row in store.reservations(connection_id)] == [alive.id]
    # The stalled run wakes up: it cannot send more, and its late settlement adds nothing twice.
    with pytest.raises(ReservationLapsed, match="lapsed"):
        store.job_sent(dead, PROJECTION.cap_bytes)
    store.settle_job(dead, projected_billed=PROJECTION.billed_bytes, cap_bytes=PROJECTION.cap_bytes, billed=10 * MIB)
    assert store.month_to_date_bytes(connection_id, "2026-03") == 11 * MIB
    # The living run settles its real bill and releases the rest.
    store.job_sent(alive, PROJECTION.cap_bytes)
    store.settle_job(alive, projected_billed=PROJECTION.billed_bytes, cap_bytes=PROJECTION.cap_bytes, billed=10 * MIB)
    store.release(alive)
    assert store.month_to_date_bytes(connection_id, "2026-03") == 21 * MIB and store.reservations(connection_id) == []


@pytest.mark.parametrize("database", DATABASES)
def test_a_run_ends_by_returning_what_it_did_not_spend(request, database) -> None:
    platform = platform_on(request, database)
    connection_id = bare_connection(platform)
    store = BudgetStore(platform.engine)
    budget = 1.5 * ONE_QUERY_USD  # room for one run
    # Failed before any job was sent: everything goes back.
    failed, _ = store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)
    assert (
        store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)[0] is None
    )  # held meanwhile
    store.release(failed)
    assert store.month_to_date_bytes(connection_id) == 0 and store.reservations(connection_id) == []
    # A job was sent and its bill could not be read: released at its cap, the most it can have billed.
    unknown, _ = store.reserve(connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE)
    store.job_sent(unknown, PROJECTION.cap_bytes)
    store.release(unknown)
    assert store.month_to_date_bytes(connection_id) == 11 * MIB and store.reservations(connection_id) == []
    # A job that failed unbilled (over its cap): nothing billed, nothing recorded.
    capped, _ = store.reserve(
        connection_id, gate.project(MIB, 1, PRICE), budget_usd=10 * budget, price_per_tib_usd=PRICE
    )
    store.job_sent(capped, 11 * MIB)
    store.settle_job(capped, projected_billed=10 * MIB, cap_bytes=11 * MIB, billed=None)
    store.release(capped)
    assert store.month_to_date_bytes(connection_id) == 11 * MIB and store.reservations(connection_id) == []
