"""A throwaway PostgreSQL cluster for the connector's tests, started once per test session (per xdist
worker: the modules using it are one xdist group, `pytestmark`), as a customer's database would be: TLS
from the sandbox CA, SCRAM logins, a read-only and a wrongly privileged role, seeded orders. Each test
that reads data reseeds it first (`seeded`), so no test sees another's changes."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.postgres.assets import postgres_metric_specs
from dfx_pipelines.connectors.postgres.connect import connect_postgres
from dfx_pipelines.connectors.postgres.resource import PostgresResource
from dfx_pipelines.connectors.postgres.sandbox import READER, LocalCluster, seed_orders, start_cluster
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.sandbox import SandboxCA
from dfx_pipelines.platform.services import Platform

GROUP = "postgres_cluster"
ROWS = 3100  # 100 orders on each of the 31 days of March 2024
DAY = date(2024, 3, 5)
SPECS = [
    {"name": "amount_by_status", "table": "sales.orders", "measure": "SUM", "column": "amount",
     "group_by": ["status"], "time_column": "ordered_at"},
    {"name": "orders_by_region", "table": "sales.orders", "measure": "COUNT", "group_by": ["region"],
     "time_column": "order_day"},
]  # fmt: skip
TRACKING = [
    {"table": "sales.orders", "watermark_column": "updated_at", "time_column": "ordered_at", "key_column": "id"}
]
COLUMNS = ["id", "status", "region", "amount", "ordered_at", "order_day", "updated_at"]  # not customer_email


@pytest.fixture(scope="session")
def pg_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    ca = SandboxCA(tmp_path_factory.mktemp("pg_sandbox_ca"))
    cluster = start_cluster(ca)
    cluster.ca = ca  # type: ignore[attr-defined]
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def seeded(pg_cluster: LocalCluster) -> LocalCluster:
    seed_orders(pg_cluster, ROWS)
    return pg_cluster


def admin_sql(cluster: LocalCluster, statement: str, params: Any = None) -> list[tuple]:
    with cluster.admin() as admin:
        cursor = admin.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def endpoint(cluster: LocalCluster, **overrides: Any) -> dict[str, Any]:
    return cluster.endpoint(
        overrides.pop("user", READER),
        ca_pem=cluster.ca.ca_pem_path.read_text(),  # type: ignore[attr-defined]
        metric_specs=overrides.pop("metric_specs", SPECS),
        change_tracking=overrides.pop("change_tracking", TRACKING),
        **overrides,
    )


def connect(
    platform: Platform,
    cluster: LocalCluster,
    *,
    password: str | None = None,
    selection: dict | None = None,
    objects: dict | None = None,
    connection_id: str = "pg-acme",
    settings: dict | None = None,
    **overrides: Any,
) -> Connection:
    user = overrides.get("user", READER)
    return connect_postgres(
        platform,
        config={
            "id": connection_id,
            "workspace_id": "acme",
            "display_name": "Acme warehouse",
            "selection": {
                "schemas": selection if selection is not None else {"sales": ["orders"]},
                "objects": objects if objects is not None else {"sales.orders": COLUMNS},
            },
            "settings": settings or {},
            "endpoint": endpoint(cluster, **overrides),
        },
        password=password if password is not None else cluster.passwords[user],
    )


@pytest.fixture
def pg_connection(platform: Platform, workspace: Any, seeded: LocalCluster) -> Connection:
    return connect(platform, seeded)


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


class Materializer:
    def __init__(self, platform: Platform, instance: dg.DagsterInstance):
        self.platform, self.instance = platform, instance

    def resources(self) -> dict[str, Any]:
        return {
            "platform": PlatformResource(
                home=str(self.platform.settings.home), metrics_db_url=self.platform.settings.metrics_db_url
            ),
            "postgres": PostgresResource(),
        }

    def __call__(
        self, partition_key: str | None = None, tags: dict[str, str] | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        sync_partitions(self.instance, self.platform.registry, ["postgres"])
        return dg.materialize(
            [postgres_metric_specs],
            partition_key=partition_key,
            instance=self.instance,
            tags=tags,
            raise_on_error=raise_on_error,
            resources=self.resources(),
        )


@pytest.fixture
def materialize(platform: Platform, dagster_instance: dg.DagsterInstance) -> Materializer:
    return Materializer(platform, dagster_instance)
