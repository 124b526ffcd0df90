"""Fixtures for the BigQuery connector: a running sandbox warehouse, the gated resource that trusts
its CA, a connection made through the real connect flow (its generated service-account key uploaded,
encrypted into the vault), the same rows regenerated independently for hand computations, and a
helper that materializes the metric asset with the real resources.

No fixture here is autouse and none is named like the sandbox suite's (`sandbox/conftest.py`), so the
sandbox's own tests are unaffected."""

import json
import math
from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
import pytest

from dfx_pipelines.connectors.bigquery.assets import bigquery_metric_specs
from dfx_pipelines.connectors.bigquery.connect import connect_bigquery
from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
from dfx_pipelines.connectors.bigquery.sandbox.generate import generate_demo_frames
from dfx_pipelines.connectors.bigquery.sandbox.running import RunningBigQuerySandbox, start_bigquery_sandbox
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.registry import Connection, Workspace
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

ROWS = {"default": 2000}
SEED = 11
MIB, TIB = 2**20, 2**40
PROJECT = "dfx-demo-project"
PII_TAG = f"projects/{PROJECT}/locations/us/taxonomies/1/policyTags/pii"  # the tag on shop.customers.email
SPECS = [
    {
        "name": "revenue_by_status",
        "table": "shop.orders",
        "measure": "SUM",
        "column": "amount",
        "group_by": ["status"],
        "time_column": "order_date",
    },
    {
        "name": "sessions",
        "table": "shop.web_events",
        "measure": "COUNT DISTINCT",
        "column": "session_id",
        "time_column": "event_date",
    },
]
SELECTION = {"datasets": {"shop": ["orders", "web_events"]}}
# The documented logical sizes, written out again here so these tests do not trust the sandbox's table.
FIXED_BYTES = {"INTEGER": 8, "FLOAT": 8, "DATE": 8, "TIMESTAMP": 8, "NUMERIC": 16, "BOOLEAN": 1}
TYPES = {
    "shop.orders": {
        "order_id": "INTEGER",
        "customer_id": "INTEGER",
        "status": "STRING",
        "amount": "NUMERIC",
        "currency": "STRING",
        "created_at": "TIMESTAMP",
        "order_date": "DATE",
    },
    "shop.web_events": {
        "event_id": "STRING",
        "session_id": "STRING",
        "event_type": "STRING",
        "page": "STRING",
        "user_agent": "STRING",
        "occurred_at": "TIMESTAMP",
        "event_date": "DATE",
    },
}


def start_sandbox(**options: Any) -> RunningBigQuerySandbox:
    return start_bigquery_sandbox(rows=ROWS, seed=SEED, **options)


@pytest.fixture(scope="module")
def bq_sandbox() -> Iterator[RunningBigQuerySandbox]:
    with start_sandbox() as running:
        yield running


@pytest.fixture(scope="module")
def frames() -> dict[str, pd.DataFrame]:
    """The rows the sandbox serves, regenerated from the same seed (not read from the sandbox)."""
    return generate_demo_frames(ROWS, SEED)


@pytest.fixture
def bq_resource(bq_sandbox: RunningBigQuerySandbox) -> BigQueryResource:
    return BigQueryResource(sandbox_ca_path=bq_sandbox.ca_pem_path)


def connect(platform: Platform, sandbox: RunningBigQuerySandbox, **overrides: Any) -> Connection:
    """The real connect flow with the sandbox's generated key (uploaded as JSON text)."""
    endpoint = {"api_endpoint": sandbox.url, "metric_specs": SPECS, **overrides.pop("endpoint", {})}
    config = {
        "id": "bq-acme",
        "workspace_id": "acme",
        "display_name": "Acme BigQuery",
        "selection": SELECTION,
        "settings": {"monthly_budget_usd": 1.0},
        **overrides.pop("config", {}),
        "endpoint": endpoint,
    }
    key = overrides.pop("key", json.dumps(sandbox.service_account_key))
    return connect_bigquery(platform, config=config, key=key, sandbox_ca=sandbox.ca_pem_path, **overrides)


@pytest.fixture
def bq_connection(platform: Platform, workspace: Workspace, bq_sandbox: RunningBigQuerySandbox) -> Connection:
    return connect(platform, bq_sandbox)


def set_budget(platform: Platform, connection: Connection, budget: float | None) -> Connection:
    connection.settings.monthly_budget_usd = budget
    return platform.registry.save(connection)


class JobWatch:
    """The sandbox's job log and request log from the moment it was created."""

    def __init__(self, sandbox: RunningBigQuerySandbox):
        self.sandbox = sandbox
        self.jobs_at = len(sandbox.jobs)
        self.requests_at = len(sandbox.server.requests)
        self.executed_at = len(sandbox.app.warehouse.executed)

    @property
    def jobs(self) -> list:
        return list(self.sandbox.jobs)[self.jobs_at :]

    @property
    def dry_runs(self) -> list:
        return [j for j in self.jobs if j.dry_run]

    @property
    def real_jobs(self) -> list:
        return [j for j in self.jobs if not j.dry_run]

    @property
    def requests(self) -> list:
        return self.sandbox.server.requests[self.requests_at :]

    @property
    def executed(self) -> list[str]:
        return self.sandbox.app.warehouse.executed[self.executed_at :]


def column_bytes(values: pd.Series, bq_type: str) -> int:
    """Σ logical bytes of a column: NULL 0, STRING 2 + UTF-8 bytes, fixed-size types per the docs."""
    present = values[values.notna()]
    if bq_type == "STRING":
        return int(sum(2 + len(v.encode("utf-8")) for v in present))
    return len(present) * FIXED_BYTES[bq_type]


def scanned_bytes(
    frames: dict[str, pd.DataFrame], table: str, columns: list[str], time_column: str, first: str, last: str
) -> int:
    """What a query reading `columns` of `table` scans with its partitions pruned to [first, last]."""
    frame = frames[table]
    days = pd.to_datetime(frame[time_column])
    kept = frame[(days >= pd.Timestamp(first)) & (days <= pd.Timestamp(last))]
    return sum(column_bytes(kept[c], TYPES[table][c]) for c in columns)


def billed(processed: int) -> int:
    """One table: rounded up to the MiB, at least 10 MiB; nothing read, nothing billed."""
    return 0 if processed == 0 else max(10 * MIB, math.ceil(processed / MIB) * MIB)


@pytest.fixture
def dagster_instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


class Materializer:
    """Materializes the BigQuery metric asset for a partition (or a range) with the real resources."""

    def __init__(self, platform: Platform, resource: BigQueryResource, instance: dg.DagsterInstance):
        self.platform, self.resource, self.instance = platform, resource, instance

    def __call__(
        self, partition_key: str | None = None, tags: dict[str, str] | None = None, raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        sync_partitions(self.instance, self.platform.registry, ["bigquery"])
        return dg.materialize(
            [bigquery_metric_specs],
            partition_key=partition_key,
            instance=self.instance,
            tags=tags,
            raise_on_error=raise_on_error,
            resources={
                "platform": PlatformResource(
                    home=str(self.platform.settings.home), metrics_db_url=self.platform.settings.metrics_db_url
                ),
                "bigquery": self.resource,
            },
        )


@pytest.fixture
def materialize(
    platform: Platform, bq_resource: BigQueryResource, dagster_instance: dg.DagsterInstance
) -> Materializer:
    return Materializer(platform, bq_resource, dagster_instance)
