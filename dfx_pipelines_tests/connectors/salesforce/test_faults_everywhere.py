"""Every Salesforce job under 10% injected faults of every kind at once — rate limits, 5xx, connections
dropped before or after the org acted, slow answers, expired tokens — on every path, the token endpoint
included: each run succeeds and stores exactly the values a clean run stores. Seeded, so a failure
reproduces."""

from collections import Counter
from collections.abc import Iterator
from datetime import timedelta

import pytest

from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS
from dfx_pipelines.connectors.salesforce.queries import Cadence
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import RunningSalesforceSandbox
from dfx_pipelines.platform.partitions import RANGE_END_TAG, RANGE_START_TAG
from dfx_pipelines.platform.sandbox import Faults
from dfx_pipelines_tests.faults import KINDS, inject_every_kind

from .conftest import ORG_NOW, Materializer, make_sandbox

DAILY = sorted(m.name for m in SALES_METRICS.values() if m.cadence is Cadence.DAILY)  # salesforce_daily_job
SNAPSHOT = sorted(m.name for m in SALES_METRICS.values() if m.cadence is Cadence.SNAPSHOT)  # salesforce_snapshot_job
LAST = ORG_NOW.date() - timedelta(days=1)
DAYS = {RANGE_START_TAG: f"sf-acme|{LAST - timedelta(days=2)}", RANGE_END_TAG: f"sf-acme|{LAST}"}
TOKEN_PATH = "/services/oauth2/token"
RATE = 0.10  # of every request, per kind
SEED = 20261201


@pytest.fixture(scope="module")
def org() -> Iterator[RunningSalesforceSandbox]:
    running = make_sandbox(opportunities=1500)
    yield running
    running.stop()


def stored_values(platform) -> dict[tuple, float | None]:
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items()))): r["value"]
        for r in platform.metric_store.read(connection_id="sf-acme")
    }


def test_every_job_under_ten_percent_faults_of_every_kind_stores_the_clean_values(
    platform, workspace, org, dagster_instance
) -> None:
    from .conftest import connect

    resource = SalesforceResource(
        client_id=org.app.oauth.client_id, sandbox_ca_path=org.ca_pem_path,
        retry_max_attempts=10, retry_backoff_seconds=0.01, limit_retry_backoff_seconds=0.01,
    )  # fmt: skip
    connect(platform, org, resource)
    materialize = Materializer(platform, resource, dagster_instance)
    assert materialize(SNAPSHOT, partition_key="sf-acme").success and materialize(DAILY, tags=DAYS).success
    clean = stored_values(platform)
    assert len(clean) > 50 and {key[0] for key in clean} == set(DAILY) | set(SNAPSHOT)
    platform.metric_store.delete_connection("sf-acme")

    faults = org.server.faults = Faults(seed=SEED)
    inject_every_kind(faults, RATE, bearer_prefix="/services/data/")
    mark = len(org.server.requests)
    snapshot = materialize(SNAPSHOT, partition_key="sf-acme", raise_on_error=False)
    daily = materialize(DAILY, tags=DAYS, raise_on_error=False)

    assert snapshot.success and daily.success
    assert stored_values(platform) == clean
    fired = Counter(kind for kind, _ in faults.log)
    received = org.server.requests[mark:]
    token_calls = [r for r in received if r.path == TOKEN_PATH]
    failed_token_calls = sum(1 for kind, path in faults.log if path == TOKEN_PATH and kind != "slow")
    refreshes = len(token_calls) - failed_token_calls  # token POSTs that got their answer
    retries = fired["rate_limit"] + fired["server_error"] + fired["drop"]  # each failed attempt was retried
    print(
        f"\nSalesforce under {RATE:.0%} faults of each kind: {len(received)} requests, faults {dict(fired)}, "
        f"retries {retries}, refreshes {refreshes} ({len(token_calls)} token calls)"
    )
    assert set(fired) == set(KINDS)
    assert failed_token_calls > 0  # the refresh POST itself was dropped or refused, and recovered
    assert refreshes == fired["expire_token"]  # one refresh per expired token, none wasted
