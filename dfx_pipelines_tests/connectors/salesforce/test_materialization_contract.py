"""What every Salesforce metric materialization promises Dagster, end to end against the sandbox org:
`dagster/row_count` equals the rows stored for its partition, the metric assets carry a freshness policy
that reports a metric stale after 36 hours, and a metric whose fields the connection does not select is
not materialized but reported by a warning check naming the missing fields."""

import asyncio
from datetime import UTC, datetime, timedelta

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.loader import LoadingContextForTest
from dagster._core.test_utils import freeze_time
from dagster._daemon.freshness import FreshnessDaemon

from dfx_pipelines.connectors.salesforce.assets import SELECTION_CHECK, asset_key
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS
from dfx_pipelines.connectors.salesforce.queries import Cadence
from dfx_pipelines.platform.freshness import METRIC_STALE_AFTER
from dfx_pipelines.platform.partitions import range_tags

from ...row_counts import assert_row_counts_are_stored
from .conftest import ORG_NOW, connect

DAY = ORG_NOW.date() - timedelta(days=1)
DAILY = [m.name for m in SALES_METRICS.values() if m.cadence is Cadence.DAILY]
SNAPSHOT = [m.name for m in SALES_METRICS.values() if m.cadence is Cadence.SNAPSHOT]


def test_every_materialization_carries_the_row_count_the_store_holds(
    platform, sf_connection, materialize, dagster_instance
) -> None:
    # One day on its own, then a three-day range as one run (per-partition metadata), then the snapshots.
    assert materialize(DAILY, partition_key=f"sf-acme|{DAY}").success
    assert materialize(DAILY, tags=range_tags("sf-acme", DAY - timedelta(days=3), DAY - timedelta(days=1))).success
    assert materialize(SNAPSHOT, partition_key="sf-acme").success

    keys = [asset_key(name) for name in SALES_METRICS]
    checked = assert_row_counts_are_stored(dagster_instance, platform.metric_store, keys, "sf-acme")
    assert checked == 4 * len(DAILY) + len(SNAPSHOT)
    assert len(platform.metric_store.read(connection_id="sf-acme")) > 0  # the counts compared are not all zero


def _freshness(instance: dg.DagsterInstance, key: dg.AssetKey, at: datetime) -> FreshnessState:
    """One evaluation of the asset's freshness policy by the freshness daemon (as the instance's daemon runs
    it, with the clock set to `at`), read back from the state it records for the UI. Dagster has no
    public evaluation call: this is the daemon's per-asset step over the root definitions' asset graph."""
    from dfx_pipelines.definitions import defs

    node = defs.resolve_asset_graph().get(key)
    with freeze_time(at):
        asyncio.run(FreshnessDaemon()._evaluate_asset(LoadingContextForTest(instance), node))
    return instance.get_freshness_state_records([key])[key].freshness_state


def test_a_metric_older_than_36_hours_is_stale_and_a_newer_one_is_not(
    sf_connection, materialize, dagster_instance
) -> None:
    key = asset_key("open_pipeline_by_stage")
    never = asset_key("campaign_sourced_pipeline")
    now = datetime.now(UTC)
    assert _freshness(dagster_instance, key, now) is FreshnessState.UNKNOWN  # never computed: no verdict

    assert materialize(["open_pipeline_by_stage"], partition_key="sf-acme").success
    computed = dagster_instance.get_latest_materialization_event(key).timestamp
    at = datetime.fromtimestamp(computed, UTC)
    assert _freshness(dagster_instance, key, at + timedelta(hours=1)) is FreshnessState.PASS
    assert _freshness(dagster_instance, key, at + timedelta(hours=35)) is FreshnessState.PASS
    assert _freshness(dagster_instance, key, at + METRIC_STALE_AFTER + timedelta(minutes=1)) is FreshnessState.FAIL
    # A new nightly run makes it fresh again; a metric never computed stays without a verdict.
    assert materialize(["open_pipeline_by_stage"], partition_key="sf-acme").success
    assert _freshness(dagster_instance, key, datetime.now(UTC)) is FreshnessState.PASS
    assert _freshness(dagster_instance, never, now + timedelta(days=3)) is FreshnessState.UNKNOWN


def test_a_metric_whose_fields_are_not_selected_warns_naming_them_and_is_not_materialized(
    platform, workspace, sf_sandbox, sf_resource, materialize, dagster_instance
) -> None:
    # Opportunity without Amount (win_rate needs it) and no Lead at all (lead_conversion reads Lead).
    narrow = {"Opportunity": ["StageName", "IsClosed", "IsWon", "CloseDate", "CreatedDate"]}
    connect(platform, sf_sandbox, sf_resource, config={"selection": {"objects": narrow}, "write_back": []})

    mark = len(sf_sandbox.server.requests)
    result = materialize(["win_rate", "lead_conversion", "sales_cycle_length"], partition_key=f"sf-acme|{DAY}")
    assert result.success  # a warning, not a failed run
    # Only sales_cycle_length queried, and nothing unselected was asked for.
    soql = [r.arg("q") for r in sf_sandbox.server.requests[mark:] if r.arg("q")]
    assert soql and all("FROM Opportunity" in q for q in soql), soql
    assert not any("Amount" in q or "Lead" in q for q in soql), soql

    evaluations = {e.asset_key.path[-1]: e for e in result.get_asset_check_evaluations()}
    assert {e.check_name for e in evaluations.values()} == {SELECTION_CHECK}
    for metric, missing in (("win_rate", ["Amount"]), ("lead_conversion", ["CreatedDate", "IsConverted"])):
        check = evaluations[metric]
        assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
        named = check.metadata["missing_fields"].value
        assert set(missing) <= set(named), (metric, named)
        assert check.metadata["partitions_not_computed"].value == f"sf-acme|{DAY}"
        assert not result.asset_materializations_for_node(f"salesforce__{metric}")
        assert dagster_instance.get_latest_materialization_event(asset_key(metric)) is None
        assert platform.metric_store.read(connection_id="sf-acme", metric=metric) == []
    # The metric the selection can feed is computed, and its check passes with nothing missing.
    assert evaluations["sales_cycle_length"].passed
    assert evaluations["sales_cycle_length"].metadata["missing_fields"].value == []
    assert result.asset_materializations_for_node("salesforce__sales_cycle_length")
