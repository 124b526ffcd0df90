"""A month of daily PostgreSQL metric specs over a 10,000,000-row fact table, two ways, in one run:

- **through the gate**: what the connector does — one aggregate `GROUP BY day` SELECT per spec for the whole
  month (shared SQL gate, EXPLAIN cost guard, read-only TLS session), only the aggregate rows cross the wire;
- **pull and aggregate**: the baseline a connector without push-down would be — every row of the month's
  needed columns streamed over the same TLS session (a server-side cursor, 10,000 rows a fetch) and reduced
  client-side into the same values.

Each runs in its own process (so peak memory is its own) against the same throwaway cluster (`initdb` +
`pg_ctl`, TLS from the sandbox CA, SCRAM, the read-only role), through a loopback relay that counts the
bytes each way. Printed per way: wall time, bytes over the wire, peak RSS, queries, and whether both ways
produced identical values. BENCH_ROWS (default 10,000,000) scales it; seeding is timed apart.

`PYTHONPATH=<checkout> nice python -m bench warehouse_sync`
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import socket
import threading
import time
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import Any

ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
FIRST, DAYS = date(2024, 3, 1), 31
SPECS = [
    {"name": "amount_by_status", "table": "sales.orders", "measure": "SUM", "column": "amount",
     "group_by": ["status"], "time_column": "ordered_at"},
    {"name": "orders_by_region", "table": "sales.orders", "measure": "COUNT", "group_by": ["region"],
     "time_column": "order_day"},
    {"name": "avg_amount_by_region", "table": "sales.orders", "measure": "AVG", "column": "amount",
     "group_by": ["region"], "time_column": "ordered_at"},
]  # fmt: skip


class CountingRelay:
    """A loopback TCP relay to the server that counts the bytes each way (TLS passes through untouched)."""

    def __init__(self, port: int):
        self.target = port
        self.up = self.down = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, "up"), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, "down"), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, direction: str) -> None:
        try:
            while data := source.recv(1 << 16):
                sink.sendall(data)
                setattr(self, direction, getattr(self, direction) + len(data))
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _connection(info: dict[str, Any]) -> Any:
    from dfx_pipelines.platform.registry import parse_connection

    return parse_connection(
        {
            "id": "pg-bench",
            "workspace_id": "bench",
            "kind": "postgres",
            "display_name": "bench",
            "selection": {"schemas": {"sales": ["orders"]}},
            "endpoint": {**info["endpoint"], "metric_specs": SPECS, "max_plan_cost": 1e9, "max_plan_rows": 10**9},
            "discovered": {"tables": {"sales.orders": {"columns": info["columns"]}}},
        }
    )


def _through_the_gate(info: dict[str, Any], target: Any) -> tuple[dict, int, list[str]]:
    from dfx_pipelines.connectors.postgres.metrics import specs_of, to_metric_rows
    from dfx_pipelines.connectors.postgres.queries import metric_query
    from dfx_pipelines.connectors.postgres.resource import GatedPostgres, GatedQuery

    connection = _connection(info)
    last = FIRST + timedelta(days=DAYS - 1)
    specs = specs_of(connection)
    queries = [GatedQuery(metric_query(s, FIRST, last, info["columns"][s.time_column]), s.name, DAYS) for s in specs]
    with GatedPostgres(connection, target, lambda: {"password": info["password"]}) as gated:
        outcome = gated.run(queries)
    values = {}
    for spec, result in zip(specs, outcome.results):
        for row in to_metric_rows(spec, result.rows):
            values[(row.metric, row.period, row.dimensions)] = round(row.value or 0.0, 6)
    estimates = [e.text() for e in outcome.estimates]
    return values, len(queries) * 2, estimates  # each query: its EXPLAIN and itself


def _pull_and_aggregate(info: dict[str, Any], target: Any) -> tuple[dict, int, list[str]]:
    from dfx_pipelines.connectors.postgres.resource import open_session
    from dfx_pipelines.platform.metric_rows import MetricRow

    start = datetime.combine(FIRST, datetime.min.time(), UTC)
    end = start + timedelta(days=DAYS)
    sums: dict[tuple, float] = defaultdict(float)
    counts: dict[tuple, int] = defaultdict(int)
    amount_n: dict[tuple, int] = defaultdict(int)
    session = open_session(target, info["password"])
    try:
        with session.cursor(name="pull") as cursor:
            cursor.itersize = 10_000
            cursor.execute(
                "SELECT ordered_at, order_day, status, region, amount FROM sales.orders "
                "WHERE ordered_at >= %s AND ordered_at < %s",
                (start, end),
            )
            for ordered_at, order_day, status, region, amount in cursor:
                day = ordered_at.astimezone(UTC).date()
                sums[("amount_by_status", day, status)] += float(amount)
                counts[("orders_by_region", order_day, region)] += 1
                sums[("avg_amount_by_region", day, region)] += float(amount)
                amount_n[("avg_amount_by_region", day, region)] += 1
        session.rollback()
        # order_day is a separate column: the orders of the month by order_day need their own filter.
        with session.cursor(name="pull_days") as cursor:
            cursor.itersize = 10_000
            cursor.execute(
                "SELECT order_day, region FROM sales.orders WHERE order_day BETWEEN %s AND %s",
                (FIRST, FIRST + timedelta(days=DAYS - 1)),
            )
            counts.clear()
            for order_day, region in cursor:
                counts[("orders_by_region", order_day, region)] += 1
    finally:
        session.close()
    values = {}
    for (metric, day, status), total in sums.items():
        if metric == "amount_by_status":
            values[(metric, day, MetricRow.dims(status=status))] = round(total, 6)
        else:
            values[(metric, day, MetricRow.dims(region=status))] = round(total / amount_n[(metric, day, status)], 6)
    for (metric, day, region), count in counts.items():
        values[(metric, day, MetricRow.dims(region=region))] = float(count)
    return values, 2, []


def _variant(name: str, info: dict[str, Any], answers: Any) -> None:
    from dfx_pipelines.connectors.postgres.resource import Target

    relay = CountingRelay(info["port"])
    target = Target(
        host="127.0.0.1", hostaddr="127.0.0.1", port=relay.port, database="customer", user="dfx_reader",
        sslmode="verify-full", sslrootcert=info["ca"], statement_timeout_ms=600_000, idle_timeout_ms=60_000,
    )  # fmt: skip
    started = time.perf_counter()
    run = _through_the_gate if name == "through the gate" else _pull_and_aggregate
    values, queries, estimates = run(info, target)
    seconds = time.perf_counter() - started
    time.sleep(0.2)  # the relay's threads finish counting the last bytes
    answers.put(
        {
            "name": name,
            "seconds": seconds,
            "bytes_down": relay.down,
            "bytes_up": relay.up,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "queries": queries,
            "values": values,
            "estimates": estimates,
        }
    )


def main() -> None:
    import tempfile
    from pathlib import Path

    from dfx_pipelines.connectors.postgres.sandbox import READER, seed_orders, start_cluster
    from dfx_pipelines.platform.sandbox import SandboxCA

    ca = SandboxCA(Path(tempfile.mkdtemp(prefix="dfx-bench-ca-")))
    cluster = start_cluster(ca)
    try:
        started = time.perf_counter()
        seed_orders(cluster, ROWS, first_day=FIRST, days=DAYS)
        print(f"seeded {ROWS:,} orders over {DAYS} days in {time.perf_counter() - started:.1f} s (not counted below)")
        with cluster.admin() as admin:
            size = admin.execute("SELECT pg_total_relation_size('sales.orders')").fetchone()[0]
            columns = dict(
                admin.execute(
                    "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute "
                    "WHERE attrelid = 'sales.orders'::regclass AND attnum > 0 AND NOT attisdropped"
                ).fetchall()
            )
        print(f"sales.orders: {size / 2**20:,.0f} MiB on disk with its indexes")
        info = {
            "port": cluster.port,
            "ca": str(ca.ca_pem_path),
            "password": cluster.passwords[READER],
            "columns": columns,
            "endpoint": cluster.endpoint(),
        }
        context = multiprocessing.get_context("spawn")
        results = []
        for name in ("through the gate", "pull and aggregate"):
            answers = context.Queue()
            process = context.Process(target=_variant, args=(name, info, answers))
            process.start()
            results.append(answers.get())
            process.join()
    finally:
        cluster.stop()
    print(f"\na month ({DAYS} days) of {len(SPECS)} daily metric specs over {ROWS:,} rows")
    print(f"{'way':22s} {'wall s':>8s} {'bytes down':>14s} {'bytes up':>10s} {'peak RSS MiB':>13s} {'queries':>8s}")
    for r in results:
        print(
            f"{r['name']:22s} {r['seconds']:8.2f} {r['bytes_down']:14,d} {r['bytes_up']:10,d} "
            f"{r['peak_rss_mib']:13.0f} {r['queries']:8d}"
        )
    gate, pull = results
    print(f"EXPLAIN estimates: {'; '.join(gate['estimates'])}")
    same = gate["values"].keys() == pull["values"].keys() and all(
        abs(gate["values"][k] - pull["values"][k]) <= 1e-6 * max(1.0, abs(pull["values"][k])) for k in gate["values"]
    )
    print(f"metric values: {len(gate['values'])}; identical both ways: {same}")
    print(
        f"through the gate: {pull['seconds'] / gate['seconds']:.1f}x faster, "
        f"{pull['bytes_down'] / max(gate['bytes_down'], 1):,.0f}x fewer bytes down"
    )


if __name__ == "__main__":
    main()
