"""Every Jira Cloud job under 10% injected faults of every kind at once — rate limits, 5xx, connections
dropped before or after the server acted, slow answers, expired tokens — on every path, the rotating
token refresh included: each run succeeds and stores exactly the values a clean run stores, and the
grant survives. Seeded, so a failure reproduces."""

from collections import Counter
from collections.abc import Iterator
from datetime import date

import pytest

from dfx_pipelines.connectors.jira.compute import METRICS
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.connectors.jira.sandbox.server import RunningJiraSandbox
from dfx_pipelines.platform.sandbox import Faults
from dfx_pipelines_tests.faults import KINDS, inject_every_kind

from .conftest import Materializer, connect_cloud, make_sandbox, range_tags

SNAPSHOT = sorted(name for name, metric in METRICS.items() if not metric.daily)  # jira_snapshot_job
DAILY = sorted(name for name, metric in METRICS.items() if metric.daily)  # jira_daily_job
RATE, SEED = 0.10, 20261201
TOKEN_PATH = "/oauth/token"


@pytest.fixture(scope="module")
def site() -> Iterator[RunningJiraSandbox]:
    running = make_sandbox("cloud")
    yield running
    running.stop()


def stored_values(platform, connection_id: str) -> dict[tuple, float | None]:
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items()))): r["value"]
        for r in platform.metric_store.read(connection_id=connection_id)
    }


def test_every_job_under_ten_percent_faults_of_every_kind_stores_the_clean_values(
    platform, workspace, site, dagster_instance
) -> None:
    connection = connect_cloud(platform, site)
    resource = JiraResource(
        client_id=site.app.oauth.client_id, client_secret=site.app.oauth.client_secret, sandbox_ca_path=site.ca_pem_path,
        retry_max_attempts=10, retry_backoff_seconds=0.01,
    )  # fmt: skip
    materialize = Materializer(platform, resource, dagster_instance)
    days = range_tags(connection.id, date(2025, 6, 1), date(2025, 6, 3))
    assert materialize(SNAPSHOT, partition_key=connection.id).success and materialize(DAILY, tags=days).success
    clean = stored_values(platform, connection.id)
    assert len(clean) > 100 and {key[0] for key in clean} == set(SNAPSHOT) | set(DAILY)
    platform.metric_store.delete_connection(connection.id)

    site.server.faults = faults = Faults(seed=SEED)
    inject_every_kind(faults, RATE, bearer_prefix="/ex/jira/")
    mark = len(site.requests)
    snapshot = materialize(SNAPSHOT, partition_key=connection.id, raise_on_error=False)
    daily = materialize(DAILY, tags=days, raise_on_error=False)

    assert snapshot.success and daily.success
    assert stored_values(platform, connection.id) == clean
    fired = Counter(kind for kind, _ in faults.log)
    received = site.requests[mark:]
    token_calls = [r for r in received if r.path == TOKEN_PATH]
    failed_token_calls = sum(1 for kind, path in faults.log if path == TOKEN_PATH and kind != "slow")
    refreshes = len(token_calls) - failed_token_calls
    retries = fired["rate_limit"] + fired["server_error"] + fired["drop"]
    print(
        f"\nJira under {RATE:.0%} faults of each kind: {len(received)} requests, faults {dict(fired)}, "
        f"retries {retries}, refreshes {refreshes} ({len(token_calls)} token calls)"
    )
    assert set(fired) == set(KINDS)
    assert failed_token_calls > 0  # the rotating refresh itself was dropped or refused, and recovered
    refresh_token = platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value()
    assert not site.app.oauth.family_revoked(refresh_token)  # no retry burned the grant
