"""What the BigQuery budget gate costs per query, and what partition pruning saves, in one run.

Against the local sandbox (real google-cloud-bigquery client, TLS, OAuth token endpoint), the same
metric query is run N times ungated (a plain client: `query` + `result`) and N times through
`GatedBigQuery.run_gated` (SELECT check, table metadata and policy tags, dry run, ledger, capped job,
ledger update). Reported: HTTP round trips and milliseconds per query, median, first call apart
(it pays the token and the metadata reads). Then the bytes a one-day metric query scans with its
partition filter against the same aggregate filtered on a non-partition column (no pruning).
"""

import os
import statistics
import tempfile
import time
from datetime import date

RUNS = int(os.environ.get("BENCH_RUNS", "15"))
ROWS = {"default": 20_000, "shop.web_events": 1_000_000}
DAY = date(2024, 6, 1)
MIB, TIB = 2**20, 2**40


def _requests(running) -> int:
    return len(running.server.requests)


def main() -> None:
    from google.cloud import bigquery

    from bench.bigquery_connection import SESSIONS_SPEC, bench_connection
    from dfx_pipelines.connectors.bigquery import gate
    from dfx_pipelines.connectors.bigquery.metrics import build_query, specs_of
    from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
    from dfx_pipelines.connectors.bigquery.sandbox.running import make_client, start_bigquery_sandbox
    from dfx_pipelines.platform.db import dispose_engine

    with tempfile.TemporaryDirectory() as home, start_bigquery_sandbox(rows=ROWS, seed=7) as running:
        platform, connection = bench_connection(home, running, [SESSIONS_SPEC])
        query = build_query(specs_of(connection)[0], connection.endpoint["project"], DAY, DAY)
        parameters = [bigquery.ScalarQueryParameter(k, "DATE", v) for k, v in query.params.items()]

        client = make_client(running)
        ungated_ms, ungated_trips = [], []
        for _ in range(RUNS + 1):
            before, started = _requests(running), time.perf_counter()
            list(client.query(query.sql, job_config=bigquery.QueryJobConfig(query_parameters=parameters)).result())
            ungated_ms.append((time.perf_counter() - started) * 1000)
            ungated_trips.append(_requests(running) - before)

        gated = BigQueryResource(sandbox_ca_path=running.ca_pem_path).gated(platform, connection)
        gated_ms, gated_trips, gate_only_ms, gate_trips = [], [], [], []
        for _ in range(RUNS + 1):
            before, started = _requests(running), time.perf_counter()
            outcome = gated.run_gated(query.sql, query.params, asset="bench", partition="bench")
            gated_ms.append((time.perf_counter() - started) * 1000)
            gated_trips.append(_requests(running) - before)
            gate_only_ms.append(outcome.gate_seconds * 1000)
            gate_trips.append(outcome.gate_round_trips)
        gated.close()

        def steady(values: list[float]) -> float:
            return statistics.median(values[1:])

        print(
            f"sandbox: shop.web_events {ROWS['shop.web_events']:,} rows over 366 daily partitions; {RUNS} runs each after a first call"
        )
        print(f"{'':34s} {'first call':>12s} {'median after':>13s}")
        print(f"{'ungated query: round trips':34s} {ungated_trips[0]:>12d} {steady(ungated_trips):>13.0f}")
        print(f"{'gated query:   round trips':34s} {gated_trips[0]:>12d} {steady(gated_trips):>13.0f}")
        print(f"{'  of which the gate (pre-job)':34s} {gate_trips[0]:>12d} {steady(gate_trips):>13.0f}")
        print(f"{'ungated query: ms':34s} {ungated_ms[0]:>12.1f} {steady(ungated_ms):>13.1f}")
        print(f"{'gated query:   ms':34s} {gated_ms[0]:>12.1f} {steady(gated_ms):>13.1f}")
        print(f"{'  of which the gate (pre-job) ms':34s} {gate_only_ms[0]:>12.1f} {steady(gate_only_ms):>13.1f}")
        print(
            f"gate overhead per query (steady): +{steady(gated_trips) - steady(ungated_trips):.0f} round trips, "
            f"+{steady(gated_ms) - steady(ungated_ms):.1f} ms over {steady(ungated_ms):.1f} ms ungated"
        )

        # Partition pruning: the metric's own filter vs. the same day picked out by a non-partition column.
        unpruned_sql = query.sql.replace(
            "WHERE `event_date` BETWEEN @first_day AND @last_day",
            "WHERE DATE(`occurred_at`) BETWEEN @first_day AND @last_day",
        )
        unpruned_sql = unpruned_sql.replace("SELECT `event_date`", "SELECT DATE(`occurred_at`)").replace(
            "GROUP BY `event_date`", "GROUP BY 1"
        )
        print("\nbytes scanned by a one-day metric query (dry runs):")
        for label, sql in (("with partition pruning", query.sql), ("without (filter on occurred_at)", unpruned_sql)):
            job = client.query(
                sql,
                job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, query_parameters=parameters),
            )
            processed = job.total_bytes_processed
            billed = gate.projected_billed_bytes(processed, 1)
            print(
                f"  {label:34s} {processed:>13,d} B processed  {billed / MIB:>8.0f} MiB billed  {gate.usd(gate.cost_usd(billed, 6.25))}"
            )
        client.close()
        dispose_engine(platform.settings.metrics_db_url)


if __name__ == "__main__":
    main()
