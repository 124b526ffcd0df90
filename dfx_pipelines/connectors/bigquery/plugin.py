"""BigQuery as a `ConnectorPlugin`: its definitions, its sandbox and demo connection, its `dfx bigquery`
commands, its selection and field-mapper rules, and what revocation means for a service-account key.

Cheap to import (the registry loads it to validate a connection): Dagster, the client and the sandbox
are imported inside the methods that use them."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.plugins import ConnectCommand, ConnectorPlugin, DemoRun, RevocationResult, RunningSandbox
from dfx_pipelines.platform.registry import Connection

if TYPE_CHECKING:
    import click
    import dagster as dg

    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform

DEMO_CONNECTION = "bq-demo"
DEMO_SELECTION = {"shop": ["orders", "web_events"]}
DEMO_SPECS = [
    {
        "name": "revenue_by_status",
        "table": "shop.orders",
        "measure": "SUM",
        "column": "amount",
        "group_by": ["status"],
        "time_column": "order_date",
        "description": "Order amount per day and order status",
    },
    {
        "name": "sessions_by_event_type",
        "table": "shop.web_events",
        "measure": "COUNT_DISTINCT",
        "column": "session_id",
        "group_by": ["event_type"],
        "time_column": "event_date",
        "description": "Distinct sessions per day and event type",
    },
]
DEMO_BUDGET_USD = 5.0
# The sandbox generator's warehouse holds calendar 2024; the demo moves it to end today, so its days fall
# inside the daily partitions (the history window ending today) and the demo computes recent days.
GENERATED_LAST_DAY = date(2024, 12, 31)


def demo_last_day() -> date:
    return datetime.now(UTC).date()


def ending_on(frames: dict[str, Any], last_day: date) -> dict[str, Any]:
    """The generated tables with every date and timestamp column moved so the data ends on `last_day`."""
    import pandas as pd

    shift = pd.Timedelta(days=(last_day - GENERATED_LAST_DAY).days)
    return {
        name: frame.assign(
            **{
                column: frame[column] + shift
                for column in frame.columns
                if pd.api.types.is_datetime64_any_dtype(frame[column])
            }
        )
        for name, frame in frames.items()
    }


class _SandboxServer:
    """The sandbox's HTTPS server, whose `stop()` also closes the warehouse (DuckDB) behind it."""

    def __init__(self, running: Any):
        self._running = running

    def __getattr__(self, name: str) -> Any:
        return getattr(self._running.server, name)

    def stop(self) -> None:
        self._running.stop()


def _write_private(path: Path, text: str) -> None:
    """Created 0600 from the start (never readable by others, not even between write and chmod)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # an existing file keeps its mode through O_CREAT: set it
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


class BigQueryPlugin(ConnectorPlugin):
    kind = "bigquery"
    secret_kinds = ("service_account_key",)
    selection_model = BigQuerySelection
    pool_limit = 2  # as the dfx/api run cap in dagster.yaml

    def definitions(self) -> dg.Definitions:
        from dfx_pipelines.connectors.bigquery.definitions import bigquery_definitions

        return bigquery_definitions()

    def validate_source_field(self, value: str) -> str:
        return identifiers.bigquery_column(value)

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        from dfx_pipelines.connectors.bigquery.sandbox.app import BigQuerySandbox
        from dfx_pipelines.connectors.bigquery.sandbox.generate import generate_demo_frames
        from dfx_pipelines.connectors.bigquery.sandbox.running import start_bigquery_sandbox

        frames = ending_on(generate_demo_frames(scale or 2000, seed=7), demo_last_day())
        running = start_bigquery_sandbox(ca=ca, app=BigQuerySandbox(frames=frames))
        return RunningSandbox(kind=self.kind, servers=[_SandboxServer(running)], state={"sandbox": running})  # type: ignore[list-item]

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        """As a user would: upload the sandbox's generated key (in memory), select, define two metrics."""
        from dfx_pipelines.connectors.bigquery.connect import connect_bigquery

        running = sandbox.state["sandbox"]
        return connect_bigquery(
            platform,
            config={
                "id": DEMO_CONNECTION,
                "workspace_id": workspace_id,
                "display_name": "Demo BigQuery project (sandbox)",
                "selection": {"datasets": DEMO_SELECTION},
                "settings": {"monthly_budget_usd": DEMO_BUDGET_USD},
                "endpoint": {"api_endpoint": running.url, "metric_specs": DEMO_SPECS},
            },
            key=json.dumps(running.service_account_key),
            sandbox_ca=running.ca_pem_path,
            replace_key=True,  # a new demo starts a new sandbox with a new key
        )

    def connect_command(self, sandbox: RunningSandbox, *, workspace_id: str, folder: Path) -> ConnectCommand:
        """The sandbox's service-account key goes to a file under `folder` (mode 0600, as a key
        downloaded from GCP would be kept), with the demo's metric specs next to it."""
        running = sandbox.state["sandbox"]
        folder.mkdir(parents=True, exist_ok=True)
        key_file, specs_file = folder / "bigquery-service-account.json", folder / "bigquery-metric-specs.json"
        _write_private(key_file, json.dumps(running.service_account_key, indent=2))
        specs_file.write_text(json.dumps(DEMO_SPECS, indent=2))
        selects = [
            arg for dataset, tables in DEMO_SELECTION.items() for arg in ("--select", f"{dataset}:{','.join(tables)}")
        ]
        return ConnectCommand(
            env={},
            argv=["connect", "bigquery", "--workspace", workspace_id, "--id", "bq-sandbox", "--name", "BigQuery sandbox",
                  "--key-file", str(key_file), *selects, "--budget-usd", f"{DEMO_BUDGET_USD:g}", "--metric-specs", str(specs_file),
                  "--api-endpoint", running.url],
        )  # fmt: skip

    def demo_runs(self, connection: Connection, days: int = 30) -> list[DemoRun]:
        from dfx_pipelines.connectors.bigquery.assets import bigquery_metrics_job
        from dfx_pipelines.platform.partitions import range_tags

        last = demo_last_day()
        first = last - timedelta(days=days - 1)
        return [
            DemoRun(
                bigquery_metrics_job.name,
                tags={"dfx/connection": connection.id, **range_tags(connection.id, first, last)},
            )
        ]

    def cli_commands(self) -> list[click.Command]:
        from dfx_pipelines.connectors.bigquery.cli import bigquery

        return [bigquery]

    def delete_cached_data(self, platform: Platform, connection: Connection) -> dict[str, int]:
        """Removal (P17): besides the vault and the metric store (deleted by the lifecycle job), the
        gate's approvals (SQL excerpts) and monthly ledger of this connection."""
        from dfx_pipelines.connectors.bigquery.ledger import BudgetStore

        return BudgetStore(platform.engine).delete_connection(connection.id)

    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        # Google offers no API for us to delete a key we did not create: the customer deletes it in IAM.
        return RevocationResult(False, "service-account keys are revoked by the customer in GCP; our copy is destroyed")


PLUGIN = BigQueryPlugin()
