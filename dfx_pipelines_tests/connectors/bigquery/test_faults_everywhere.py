"""The BigQuery job under 10% injected faults of every kind at once — rate limits, 5xx, connections
dropped before or after the server acted, slow answers, expired tokens — on every path, the service
account's token exchange included: the run succeeds and stores exactly the values a clean run stores.
Seeded, so a failure reproduces."""

from collections import Counter
from collections.abc import Iterator

import pytest

from dfx_pipelines.connectors.bigquery.assets import RANGE_END, RANGE_START
from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
from dfx_pipelines.platform.sandbox import Faults
from dfx_pipelines_tests.faults import KINDS, inject_every_kind

from .conftest import Materializer, connect, start_sandbox

RATE, SEED = 0.10, 20261201
WEEK = {RANGE_START: "bq-acme|2024-03-01", RANGE_END: "bq-acme|2024-03-07"}


@pytest.fixture(scope="module")
def warehouse() -> Iterator:
    with start_sandbox() as running:
        yield running


def stored_values(platform) -> dict[tuple, float | None]:
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items()))): r["value"]
        for r in platform.metric_store.read(connection_id="bq-acme")
    }


def test_the_job_under_ten_percent_faults_of_every_kind_stores_the_clean_values(
    platform, workspace, warehouse, dagster_instance
) -> None:
    connect(platform, warehouse)
    materialize = Materializer(platform, BigQueryResource(sandbox_ca_path=warehouse.ca_pem_path), dagster_instance)
    assert materialize(tags=WEEK).success
    clean = stored_values(platform)
    assert len(clean) > 14
    platform.metric_store.delete_connection("bq-acme")

    warehouse.server.faults = faults = Faults(seed=SEED)
    inject_every_kind(faults, RATE, bearer_prefix="/bigquery/")
    mark = len(warehouse.server.requests)
    result = materialize(tags=WEEK, raise_on_error=False)

    assert result.success
    assert stored_values(platform) == clean
    fired = Counter(kind for kind, _ in faults.log)
    received = warehouse.server.requests[mark:]
    token_calls = [r for r in received if r.path == "/token"]
    print(
        f"\nBigQuery under {RATE:.0%} faults of each kind: {len(received)} requests, faults {dict(fired)}, "
        f"retries {fired['rate_limit'] + fired['server_error'] + fired['drop']}, {len(token_calls)} token calls"
    )
    assert len(set(fired) & set(KINDS)) >= 3
