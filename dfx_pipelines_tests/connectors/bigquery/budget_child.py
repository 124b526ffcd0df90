"""A separate process that takes part in a BigQuery budget race, for the concurrency tests (not a test).

    budget_child.py run  DB_URL CONNECTION BUDGET_USD GO_FILE HOLD_SECONDS
        wait for GO_FILE, reserve a 10 MiB query's billing, hold it HOLD_SECONDS as a running job would,
        settle the job's bill and release; print `ran` or `refused`.
    budget_child.py hold DB_URL CONNECTION BUDGET_USD LEASE_SECONDS
        reserve and keep renewing the lease until killed; print `reserved <id>`.

It uses exactly the calls `GatedBigQuery.run_gated_batch` makes, on its own engine and process."""

from __future__ import annotations

import sys
import time
from datetime import timedelta
from pathlib import Path

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore, default_owner
from dfx_pipelines.platform.db import get_engine

MIB = 1 << 20
PRICE = 6.25
PROJECTION = gate.project(5 * MIB, 1, PRICE)  # bills the 10 MiB minimum, capped at 11 MiB


def run(url: str, connection_id: str, budget: float, go_file: str, hold_seconds: float) -> str:
    store = BudgetStore(get_engine(url))
    print("ready", flush=True)  # imported and migrated: the race starts when every child is ready
    while not Path(go_file).exists():
        time.sleep(0.01)
    reservation, _ = store.reserve(
        connection_id, PROJECTION, budget_usd=budget, price_per_tib_usd=PRICE, owner=default_owner("race")
    )
    if reservation is None:
        return "refused"
    try:
        with store.hold(reservation):
            store.job_sent(reservation, PROJECTION.cap_bytes)
            time.sleep(hold_seconds)  # the job runs; nothing is billed yet
            store.settle_job(
                reservation,
                projected_billed=PROJECTION.billed_bytes,
                cap_bytes=PROJECTION.cap_bytes,
                billed=PROJECTION.billed_bytes,
            )
    finally:
        store.release(reservation)
    return "ran"


def hold(url: str, connection_id: str, budget: float, lease_seconds: float) -> None:
    store = BudgetStore(get_engine(url))
    lease = timedelta(seconds=lease_seconds)
    reservation, decision = store.reserve(
        connection_id,
        PROJECTION,
        budget_usd=budget,
        price_per_tib_usd=PRICE,
        lease=lease,
        owner=default_owner("killed"),
    )
    if reservation is None:
        print(f"refused: {decision.reason}", flush=True)
        return
    with store.hold(reservation):
        print(f"reserved {reservation.id}", flush=True)
        while True:  # until SIGKILL: the renewing thread keeps the lease alive meanwhile
            time.sleep(60)


if __name__ == "__main__":
    mode, url, connection_id, budget = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    if mode == "run":
        print(run(url, connection_id, budget, sys.argv[5], float(sys.argv[6])), flush=True)
    else:
        hold(url, connection_id, budget, float(sys.argv[5]))
