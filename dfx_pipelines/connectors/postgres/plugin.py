"""PostgreSQL as a `ConnectorPlugin`: its definitions, its sandbox (a throwaway local cluster with TLS and
SCRAM) and demo connection, its `dfx postgres` commands, its selection rules, and what removal means for a
password and a customer CA file.

Cheap to import (the registry loads it to validate a connection): Dagster, psycopg and the sandbox are
imported inside the methods that use them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from dfx_pipelines.connectors.postgres.selection import PostgresSelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.plugins import ConnectCommand, ConnectorPlugin, DemoRun, RevocationResult, RunningSandbox
from dfx_pipelines.platform.registry import Connection

if TYPE_CHECKING:
    import click
    import dagster as dg

    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform

DEMO_CONNECTION = "pg-demo"
DEMO_SELECTION = {"sales": ["orders"]}
DEMO_COLUMNS = {"sales.orders": ["id", "status", "region", "amount", "ordered_at", "order_day", "updated_at"]}
DEMO_SPECS = [
    {"name": "order_amount_by_status", "table": "sales.orders", "measure": "SUM", "column": "amount",
     "group_by": ["status"], "time_column": "ordered_at", "description": "Order amount per UTC day and status"},
    {"name": "orders_by_region", "table": "sales.orders", "measure": "COUNT", "group_by": ["region"],
     "time_column": "order_day", "description": "Orders per day and region"},
]  # fmt: skip
DEMO_TRACKING = [
    {"table": "sales.orders", "watermark_column": "updated_at", "time_column": "ordered_at", "key_column": "id"}
]
DEMO_DAYS = 31


class _NoHttpFaults:
    """`dfx sandbox serve --fault …` injects HTTP faults (rate limits, 5xx, drops) into every sandbox server;
    a database speaks no HTTP, so for the cluster they are reported and not injected."""

    def inject(self, kind: str, **_options: object) -> None:
        import logging

        logging.getLogger(__name__).warning("fault %s does not apply to the PostgreSQL sandbox (not HTTP)", kind)


class _ClusterServer:
    """The cluster as `dfx sandbox serve` and the demo list sandbox servers: a name, a URL, faults, stop()."""

    def __init__(self, cluster: object):
        self.cluster = cluster
        self.app = type("App", (), {"name": "postgres"})()
        self.faults = _NoHttpFaults()

    @property
    def url(self) -> str:
        return str(self.cluster.url)  # type: ignore[attr-defined]

    def stop(self) -> None:
        self.cluster.stop()  # type: ignore[attr-defined]


def demo_first_day() -> datetime:
    return datetime.now(UTC) - timedelta(days=DEMO_DAYS - 1)


class PostgresPlugin(ConnectorPlugin):
    kind = "postgres"
    secret_kinds = ("database_password", "database_client_key")
    selection_model = PostgresSelection

    def definitions(self) -> dg.Definitions:
        from dfx_pipelines.connectors.postgres.definitions import postgres_definitions

        return postgres_definitions()

    def validate_source_field(self, value: str) -> str:
        return identifiers.postgres_name(value, "column name")

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        """A throwaway cluster (about two seconds), its orders ending today."""
        from dfx_pipelines.connectors.postgres.sandbox import seed_orders, start_cluster

        cluster = start_cluster(ca)
        try:
            seed_orders(cluster, scale or 3000, first_day=demo_first_day().date(), days=DEMO_DAYS)
        except BaseException:
            cluster.stop()
            raise
        return RunningSandbox(
            kind=self.kind,
            servers=[_ClusterServer(cluster)],  # type: ignore[list-item]  # what callers use of a sandbox server
            state={"cluster": cluster, "ca_pem_path": str(ca.ca_pem_path)},
        )

    def _demo_endpoint(self, sandbox: RunningSandbox) -> dict:
        cluster = sandbox.state["cluster"]
        return cluster.endpoint(
            ca_pem=Path(sandbox.state["ca_pem_path"]).read_text(),
            metric_specs=DEMO_SPECS,
            change_tracking=DEMO_TRACKING,
        )

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        """As a user would: the read-only role's password, the selection narrowed to non-personal columns."""
        from dfx_pipelines.connectors.postgres.connect import connect_postgres
        from dfx_pipelines.connectors.postgres.sandbox import READER

        cluster = sandbox.state["cluster"]
        return connect_postgres(
            platform,
            config={
                "id": DEMO_CONNECTION,
                "workspace_id": workspace_id,
                "display_name": "Demo PostgreSQL database (sandbox)",
                "selection": {"schemas": DEMO_SELECTION, "objects": DEMO_COLUMNS},
                "endpoint": self._demo_endpoint(sandbox),
            },
            password=cluster.passwords[READER],
            replace_password=True,  # a new demo starts a new cluster with new passwords
        )

    def connect_command(self, sandbox: RunningSandbox, *, workspace_id: str, folder: Path) -> ConnectCommand:
        import json

        from dfx_pipelines.connectors.postgres.sandbox import DATABASE, READER

        cluster = sandbox.state["cluster"]
        folder.mkdir(parents=True, exist_ok=True)
        specs, tracking = folder / "postgres-metric-specs.json", folder / "postgres-change-tracking.json"
        specs.write_text(json.dumps(DEMO_SPECS, indent=2))
        tracking.write_text(json.dumps(DEMO_TRACKING, indent=2))
        return ConnectCommand(
            env={"DFX_POSTGRES_PASSWORD": cluster.passwords[READER]},  # a throwaway sandbox's password
            argv=["connect", "postgres", "--workspace", workspace_id, "--id", "pg-sandbox", "--name", "PostgreSQL sandbox",
                  "--host", cluster.host, "--port", str(cluster.port), "--database", DATABASE, "--user", READER,
                  "--ca-file", sandbox.state["ca_pem_path"], "--select", "sales:orders",
                  "--columns", "sales.orders:" + ",".join(DEMO_COLUMNS["sales.orders"]),
                  "--metric-specs", str(specs), "--change-tracking", str(tracking)],
        )  # fmt: skip

    def demo_runs(self, connection: Connection, days: int = 30) -> list[DemoRun]:
        from dfx_pipelines.connectors.postgres.assets import postgres_metrics_job
        from dfx_pipelines.platform.partitions import range_tags

        last = datetime.now(UTC).date()
        first = last - timedelta(days=days - 1)
        return [
            DemoRun(
                postgres_metrics_job.name,
                tags={"dfx/connection": connection.id, **range_tags(connection.id, first, last)},
            )
        ]

    def cli_commands(self) -> list[click.Command]:
        from dfx_pipelines.connectors.postgres.cli import postgres

        return [postgres]

    def delete_cached_data(self, platform: Platform, connection: Connection) -> dict[str, int]:
        """Removal: besides the vault (the password) and the metric store (values and key counts), the
        customer CA file written for libpq. No table of its own (the answer names tables, which the
        deletion then compacts), so the answer is empty."""
        from dfx_pipelines.connectors.postgres.resource import ca_folder

        (ca_folder(platform) / f"{connection.id}.pem").unlink(missing_ok=True)
        return {}

    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        # PostgreSQL has no token to revoke: the customer drops the role or changes its password.
        return RevocationResult(
            False, "PostgreSQL roles are dropped by the customer's DBA; our copy of the password is destroyed"
        )


PLUGIN = PostgresPlugin()
