"""How long deleting a removed connection takes when it holds a year of daily partitions.

Builds, on a real on-disk embedded-default setup (SQLite metric database, SQLite Dagster instance),
one Salesforce-kind connection with 365 days x 9 daily metrics of metric-store batches, a materialization
event per asset and day in Dagster's event storage, and one real run per day tagged with the
connection; then removes it and times `delete_connection_data`, printing the breakdown. Nothing is
asserted; no network is used (the provider revocation step is not part of deletion).
"""

import os
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

DAYS = int(os.environ.get("BENCH_DAYS", "365"))
METRICS = [f"metric_{n}" for n in range(9)]


def main() -> None:
    import dagster as dg

    from dfx_pipelines.connectors.salesforce.plugin import PLUGIN
    from dfx_pipelines.lifecycle.deletion import delete_connection_data
    from dfx_pipelines.platform.metric_rows import MetricRow
    from dfx_pipelines.platform.metric_store import Provenance
    from dfx_pipelines.platform.registry import ConnectionStatus, Workspace, parse_connection
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        platform = Platform(Settings.from_env({"DFX_HOME": str(root / "dfx")}))
        platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="o@bench.test"))
        connection = platform.registry.add_connection(
            parse_connection({"id": "sf-year", "workspace_id": "bench", "kind": "salesforce", "display_name": "A year"}),
            vault=platform.vault, secrets={"oauth_refresh_token": "bench-refresh-token-value"},
        )
        first = date.today() - timedelta(days=DAYS - 1)
        days = [first + timedelta(days=n) for n in range(DAYS)]
        (root / "dagster").mkdir()
        with dg.instance_for_test(temp_dir=str(root / "dagster")) as instance:
            instance.add_dynamic_partitions("salesforce_connections", [connection.id])
            began = time.perf_counter()
            for day in days:
                key = f"{connection.id}|{day.isoformat()}"
                for metric in METRICS:
                    rows = [MetricRow(metric, measure, float(n), day, MetricRow.dims(stage=f"s{n}")) for n, measure in enumerate(("count", "amount", "rate") * 4)]
                    platform.metric_store.write(connection, metric, key, rows, Provenance("bench", "SELECT ..."))

            @dg.op(config_schema={"partition": str})
            def sync_day(context: dg.OpExecutionContext) -> None:
                # What a daily run records: one materialization per metric asset for its partition.
                for metric in METRICS:
                    context.log_event(dg.AssetMaterialization(asset_key=["salesforce", metric], partition=context.op_config["partition"], metadata={"rows": 12}))

            @dg.job(executor_def=dg.in_process_executor)
            def daily_sync() -> None:
                sync_day()

            for day in days:
                key = f"{connection.id}|{day.isoformat()}"
                daily_sync.execute_in_process(
                    instance=instance, run_config={"ops": {"sync_day": {"config": {"partition": key}}}},
                    tags={"dfx/connection": connection.id, "dagster/partition/connection": connection.id},
                )
            setup = time.perf_counter() - began
            values = len(platform.metric_store.read(connection_id=connection.id))
            platform.registry.set_status(connection.id, ConnectionStatus.REMOVED)
            started = time.perf_counter()
            report = delete_connection_data(platform, PLUGIN, instance, connection.id, actor="bench")
            seconds = time.perf_counter() - started
        print(f"a year of daily partitions: {DAYS} days x {len(METRICS)} metrics ({values} metric values, {DAYS * len(METRICS)} batches and materializations, {DAYS} runs); setup {setup:.0f}s")
        print(f"{'what':34s} {'deleted':>10s}")
        for label, count in (
            ("metric values", report.metric_values_deleted),
            ("runs (with event logs, compute logs)", report.runs_deleted),
            ("partition materializations wiped", report.partition_events_wiped),
            ("vault secrets (data key destroyed)", report.secrets_deleted),
        ):
            print(f"{label:34s} {count:10d}")
        print(f"deletion took {seconds:.1f} s in all (SQLite metric database and Dagster instance, then VACUUM)")


if __name__ == "__main__":
    main()
