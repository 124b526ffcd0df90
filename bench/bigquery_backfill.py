"""A 365-day backfill of one BigQuery metric spec, run per day (one run per partition, what a backfill
without the single-run policy, or a day-by-day catch-up, costs) and as one range run (the single-run
backfill: one GROUP BY day query for the whole range), through the real asset, resources, budget gate
and sandbox (real google-cloud-bigquery client, TLS, OAuth token endpoint).

Reported per mode: real query jobs and dry runs the sandbox saw, bytes billed as the sandbox billed
them (and as the budget ledger recorded them), HTTP requests, wall time, and whether both modes stored
identical values. BENCH_DAYS (default 365) and BENCH_ROWS (rows of shop.web_events, default 200,000)
scale it down or up.

Runs against any checkout: `PYTHONPATH=<checkout> python bench/bigquery_backfill.py` (no test helpers used).
"""

import json
import os
import tempfile
import time
from datetime import date, timedelta

os.environ.setdefault("DFX_DAILY_START", "2024-01-01")  # the sandbox's data lives in 2024; read at import

DAYS = int(os.environ.get("BENCH_DAYS", "365"))
ROWS = {"default": 2_000, "shop.web_events": int(os.environ.get("BENCH_ROWS", "200000"))}
FIRST = date(2024, 1, 1)


def main() -> None:
    import dagster as dg

    from bench.bigquery_connection import SESSIONS_SPEC, bench_connection
    from dfx_pipelines.connectors.bigquery.assets import RANGE_END, RANGE_START, bigquery_metric_specs
    from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
    from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
    from dfx_pipelines.connectors.bigquery.sandbox.running import start_bigquery_sandbox
    from dfx_pipelines.platform.db import dispose_engine
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.resources import PlatformResource

    last = FIRST + timedelta(days=DAYS - 1)
    figures = {}
    values = {}
    with start_bigquery_sandbox(rows=ROWS, seed=7) as running:
        for mode in ("per-day runs", "one range run"):
            with tempfile.TemporaryDirectory() as home, dg.instance_for_test() as instance:
                platform, connection = bench_connection(home, running, [SESSIONS_SPEC])
                sync_partitions(instance, platform.registry, ["bigquery"])
                resources = {
                    "platform": PlatformResource(
                        home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
                    ),
                    "bigquery": BigQueryResource(sandbox_ca_path=running.ca_pem_path),
                }

                def materialize(partition_key=None, tags=None, instance=instance, resources=resources):
                    result = dg.materialize(
                        [bigquery_metric_specs],
                        partition_key=partition_key,
                        tags=tags,
                        instance=instance,
                        resources=resources,
                    )
                    assert result.success

                jobs_before, requests_before = len(list(running.jobs)), len(running.server.requests)
                started = time.perf_counter()
                if mode == "per-day runs":
                    for n in range(DAYS):
                        materialize(partition_key=f"{connection.id}|{FIRST + timedelta(days=n)}")
                else:
                    materialize(tags={RANGE_START: f"{connection.id}|{FIRST}", RANGE_END: f"{connection.id}|{last}"})
                seconds = time.perf_counter() - started
                jobs = list(running.jobs)[jobs_before:]
                ledger = BudgetStore(platform.engine).ledger(connection.id)
                figures[mode] = {
                    "runs": DAYS if mode == "per-day runs" else 1,
                    "queries": sum(not j.dry_run for j in jobs),
                    "dry runs": sum(j.dry_run for j in jobs),
                    "bytes processed": sum(j.bytes_processed for j in jobs if not j.dry_run),
                    "bytes billed": sum(j.bytes_billed for j in jobs if not j.dry_run),
                    "ledger bytes": sum(int(r["bytes_billed"]) for r in ledger),
                    "ledger jobs": sum(int(r["jobs"]) for r in ledger),
                    "HTTP requests": len(running.server.requests) - requests_before,
                    "batches stored": len(platform.metric_store.batches(connection.id)),
                    "wall s": round(seconds, 1),
                }
                values[mode] = sorted(
                    (r["partition_key"], r["period"], json.dumps(r["dimensions"], sort_keys=True), r["value"])
                    for r in platform.metric_store.read(connection_id=connection.id)
                )
                dispose_engine(platform.settings.metrics_db_url)

    modes = list(figures)
    print(
        f"sandbox: shop.web_events {ROWS['shop.web_events']:,} rows; one spec (COUNT DISTINCT session_id by "
        f"event_type); backfill {FIRST}..{last} ({DAYS} days)"
    )
    print(f"{'':18s}" + "".join(f"{m:>16s}" for m in modes))  # bytes exact, as the sandbox billed them
    for name in figures[modes[0]]:
        cells = []
        for mode in modes:
            value = figures[mode][name]
            if name.startswith(("bytes", "ledger bytes")):
                cells.append(f"{value:>14,} B")
            else:
                cells.append(f"{value:>16,}" if isinstance(value, int) else f"{value:>16}")
        print(f"{name:18s}" + "".join(cells))
    print(f"values identical in both modes: {values[modes[0]] == values[modes[1]]} ({len(values[modes[0]])} rows)")


if __name__ == "__main__":
    main()
