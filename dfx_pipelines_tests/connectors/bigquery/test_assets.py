"""The BigQuery metric asset with the real Dagster, resources, sandbox and metric database: values
equal an independent pandas computation, every materialization shows what the gate projected and
what was billed, over-budget runs stop with an approval and run nothing until a person approves —
then the sensor launches exactly one run — and no key material is left anywhere during a run."""

import json
import logging
import os
import sys
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.assets import (
    APPROVAL_TAG,
    AWAITING_TAG,
    BUDGET_CHECK,
    METRICS_KEY,
    RANGE_END,
    RANGE_START,
    parse_partition_label,
    partition_label,
)
from dfx_pipelines.connectors.bigquery.gate import ApprovalStatus
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.sensors import approval_run_request, bigquery_approvals_sensor
from dfx_pipelines.platform.registry import ConnectionStatus
from dfx_pipelines.platform.resources import PlatformResource

from .conftest import MIB, TIB, JobWatch, set_budget

NODE = "bigquery__metric_specs"
DAY = date(2024, 6, 1)
KEY = f"bq-acme|{DAY}"
QUERY_USD = 10 * MIB / TIB * 6.25  # each of the two spec queries bills the 10 MiB minimum here


def stored(platform, metric: str) -> dict[tuple, float | None]:
    return {
        (r["period"], tuple(sorted(r["dimensions"].items()))): r["value"]
        for r in platform.metric_store.read(connection_id="bq-acme", metric=metric)
    }


def expected_revenue(frames, day: date) -> dict[str, float]:
    orders = frames["shop.orders"]
    today = orders[pd.to_datetime(orders["order_date"]) == pd.Timestamp(day)]
    return {status: float(sum(group["amount"])) for status, group in today.groupby("status")}


def expected_sessions(frames, day: date) -> int:
    events = frames["shop.web_events"]
    return int(events[pd.to_datetime(events["event_date"]) == pd.Timestamp(day)]["session_id"].nunique())


def check_of(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    [evaluation] = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    return evaluation


def test_a_day_within_budget_materializes_its_costs_and_values(
    platform, bq_connection, bq_sandbox, frames, materialize
) -> None:
    watch = JobWatch(bq_sandbox)
    result = materialize(partition_key=KEY)
    [materialization] = result.asset_materializations_for_node(NODE)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["projected_billed_bytes"] == meta["bytes_billed"] == 20 * MIB  # two queries, 10 MiB minimum each
    assert meta["projected_bytes"] == sum(j.bytes_processed for j in watch.dry_runs) > 0
    assert meta["projected_cost_usd"] == pytest.approx(2 * QUERY_USD, rel=1e-4)  # shown rounded to 1e-8 USD
    assert meta["month_to_date_usd"] == pytest.approx(2 * QUERY_USD, rel=1e-4) and meta["monthly_budget_usd"] == 1.0
    assert meta["maximum_bytes_billed"] == 22 * MIB and meta["approval_id"] == "none (within budget)"
    assert "| revenue_by_status | sum_amount | 2024-06-01 | status=paid |" in meta["result"]
    assert "BETWEEN @first_day AND @last_day" in meta["sql"] and meta["gate_round_trips"] >= 3
    assert [j.dry_run for j in watch.jobs] == [True, True, False, False]
    revenue = stored(platform, "revenue_by_status")
    assert {dims[0][1]: value for (_, dims), value in revenue.items()} == pytest.approx(expected_revenue(frames, DAY))
    assert stored(platform, "sessions") == {(DAY, ()): expected_sessions(frames, DAY)}
    assert check_of(result).passed
    batch = platform.metric_store.batches("bq-acme")[0]
    assert (
        batch["partition_key"] == KEY
        and "FROM `dfx-demo-project.shop.orders`" in batch["source"]
        and batch["bytes_read"] > 0
    )


def test_a_backfill_range_is_one_run_priced_as_a_whole(
    platform, bq_connection, bq_sandbox, frames, materialize
) -> None:
    first, last = date(2024, 3, 1), date(2024, 3, 7)
    watch = JobWatch(bq_sandbox)
    result = materialize(tags={RANGE_START: f"bq-acme|{first}", RANGE_END: f"bq-acme|{last}"})
    assert result.success
    # One dry run per spec for the whole week, gated once, then one job per spec: not 7 × 2 jobs.
    assert [j.dry_run for j in watch.jobs] == [True, True, False, False]
    assert all("BETWEEN" in j.sql for j in watch.jobs)
    days = [first + timedelta(days=n) for n in range(7)]
    revenue, sessions = stored(platform, "revenue_by_status"), stored(platform, "sessions")
    for day in days:
        assert {dims[0][1]: v for (period, dims), v in revenue.items() if period == day} == pytest.approx(
            expected_revenue(frames, day)
        )
        assert sessions[(day, ())] == expected_sessions(frames, day)
    assert len(platform.metric_store.batches("bq-acme")) == 14  # every (spec, day) has its batch
    assert BudgetStore(platform.engine).ledger("bq-acme")[0]["jobs"] == 2


def test_over_budget_runs_nothing_until_approved_then_the_sensor_launches_it_once(
    platform, bq_connection, bq_sandbox, materialize, dagster_instance
) -> None:
    set_budget(platform, bq_connection, 1.5 * QUERY_USD)  # the two queries together need 2 × QUERY_USD
    watch = JobWatch(bq_sandbox)
    stopped = materialize(partition_key=KEY)
    assert stopped.success and stopped.asset_materializations_for_node(NODE) == []
    [observation] = [
        e.asset_observation_data.asset_observation
        for e in stopped.all_events
        if e.event_type_value == "ASSET_OBSERVATION"
    ]
    approval_id = observation.metadata["approval_id"].value
    assert observation.metadata["status"].value == "awaiting approval" and observation.partition == KEY
    assert (
        observation.metadata["projected_billed_bytes"].value == 20 * MIB
        and observation.metadata["approve_with"].value == f"dfx bigquery approve {approval_id}"
    )
    assert dagster_instance.get_run_by_id(stopped.run_id).tags[AWAITING_TAG] == approval_id
    assert watch.real_jobs == [] and len(watch.dry_runs) == 2 and watch.executed == []
    assert platform.metric_store.batches("bq-acme") == []

    resources = {
        "platform": PlatformResource(home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url)
    }
    with dg.build_sensor_context(instance=dagster_instance, resources=resources) as context:
        assert bigquery_approvals_sensor(context).run_requests == []  # pending is not approved
    store = BudgetStore(platform.engine)
    store.approve(approval_id, "alice@acme.test")
    with dg.build_sensor_context(instance=dagster_instance, resources=resources) as context:
        first_tick = bigquery_approvals_sensor(context)
    [request] = first_tick.run_requests
    assert request.run_key == approval_id and request.tags[APPROVAL_TAG] == approval_id and request.partition_key == KEY
    with dg.build_sensor_context(instance=dagster_instance, resources=resources, cursor=first_tick.cursor) as context:
        assert bigquery_approvals_sensor(context).run_requests == []  # requested once

    approved = materialize(partition_key=request.partition_key, tags=request.tags)
    [materialization] = approved.asset_materializations_for_node(NODE)
    assert materialization.metadata["approval_id"].value == approval_id
    assert len(watch.real_jobs) == 2 and store.get(approval_id).status is ApprovalStatus.USED
    assert store.get(approval_id).used_by_run == approved.run_id
    # The same run launched again (a duplicate, a manual re-execution) cannot spend the approval twice.
    duplicate = materialize(partition_key=request.partition_key, tags=request.tags, raise_on_error=False)
    assert not duplicate.success and len(watch.real_jobs) == 2
    assert "single-use" in duplicate.get_step_failure_events()[0].event_specific_data.error.to_string()


def test_the_budget_check_warns_at_eighty_percent(platform, bq_connection, materialize) -> None:
    set_budget(platform, bq_connection, 2 * QUERY_USD / 0.85)  # this run brings spend to 85% of the budget
    result = materialize(partition_key=KEY)
    evaluation = check_of(result)
    assert evaluation.check_name == BUDGET_CHECK and not evaluation.passed
    assert evaluation.severity is dg.AssetCheckSeverity.WARN
    assert evaluation.metadata["budget_used_percent"].value == pytest.approx(85.0)


def test_a_revoked_connection_fails_before_any_request(platform, bq_connection, bq_sandbox, materialize) -> None:
    platform.registry.set_status("bq-acme", ConnectionStatus.REVOKED)
    watch = JobWatch(bq_sandbox)
    result = materialize(partition_key=KEY, raise_on_error=False)
    assert (
        not result.success and "is revoked" in result.get_step_failure_events()[0].event_specific_data.error.to_string()
    )
    assert watch.requests == []


_env_writes: list[str] = []
_recording = False


def _audit(event: str, args: tuple) -> None:
    if _recording and event in ("os.putenv", "os.unsetenv"):
        _env_writes.append(str(args[0]))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one only records while a test asks it to


def test_no_key_material_anywhere_during_a_run_and_no_credentials_variable(
    platform, bq_connection, bq_sandbox, materialize, dagster_instance, caplog, capfd
) -> None:
    global _recording
    caplog.set_level(logging.DEBUG)
    key = bq_sandbox.service_account_key
    needles = [line for line in key["private_key"].splitlines() if line and not line.startswith("-----")]
    started = time.time() - 1
    _env_writes.clear()
    _recording = True
    try:
        result = materialize(partition_key=KEY)
    finally:
        _recording = False
    assert result.success
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in _env_writes and "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ
    # Temp folders (Dagster's test instance lives there too), the DFX home, captured logs, the event log.
    places = [Path(tempfile.gettempdir()), platform.settings.home]
    leaks = []
    for root in places:
        # os.walk, not rglob: other test sessions delete their temp folders while this one walks /tmp
        for path in (Path(folder, name) for folder, _, names in os.walk(root) for name in names):
            try:
                if path.is_file() and path.stat().st_mtime >= started and path.stat().st_size < 50_000_000:
                    text = path.read_bytes().decode("utf-8", "ignore").replace("\\n", "\n")
                    leaks += [path for needle in needles if needle in text]
            except OSError:
                continue
    assert leaks == []
    out, err = capfd.readouterr()
    events = json.dumps([str(record) for record in dagster_instance.all_logs(result.run_id)])
    for text in (caplog.text, out, err, events):
        assert not any(needle in text for needle in needles)
    assert "dfx-connector@dfx-demo-project.iam.gserviceaccount.com" not in events  # not even the account's identity


def test_there_is_no_second_path_around_the_gate(bq_resource) -> None:
    import re

    from dfx_pipelines.connectors.bigquery import resource as resource_module
    from dfx_pipelines.platform.errors import ConfigError

    package = Path(resource_module.__file__).parent
    callers = {}
    for source in package.rglob("*.py"):
        if "sandbox" in source.relative_to(package).parts:
            continue  # the sandbox is the server, not a client
        text = source.read_text()
        for pattern in (
            r"\.query\(",
            r"query_and_wait\(",
            r"list_rows\(",
            r"load_table",
            r"insert_rows",
            r"\.copy_table\(",
            r"extract_table\(",
        ):
            if re.search(pattern, text):
                callers.setdefault(source.name, set()).add(pattern)
    assert callers == {"resource.py": {r"\.query\("}}  # only the gate sends SQL; nothing reads table data directly
    with pytest.raises(ConfigError, match="disabled"):
        bq_resource.get_client()
    assert bq_resource.get_object_to_set_on_execution_context() is bq_resource
    from dfx_pipelines.connectors.bigquery.resource import GatedBigQuery

    public = {name for name in dir(GatedBigQuery) if not name.startswith("_")}
    assert public == {
        "run_gated",
        "run_gated_batch",
        "close",
        "round_trips",
        "project",
        "connection",
        "store",
        "margin",
        "ttl",
        "lease",
        "clock",
        "max_rows",
    }


def test_partition_labels_and_range_run_requests() -> None:
    assert partition_label("bq-acme", DAY, DAY) == KEY
    label = partition_label("bq-acme", date(2024, 3, 1), date(2024, 3, 7))
    assert label == "bq-acme|2024-03-01..bq-acme|2024-03-07"
    assert parse_partition_label(label) == ("bq-acme", date(2024, 3, 1), date(2024, 3, 7))
    request = approval_run_request("bqa-1", label)
    assert (
        request.partition_key is None
        and request.tags[RANGE_START] == "bq-acme|2024-03-01"
        and request.tags[RANGE_END] == "bq-acme|2024-03-07"
    )
    assert request.run_key == "bqa-1" and request.tags["dfx/connection"] == "bq-acme"


def test_plugin_definitions_and_revocation(platform, bq_connection) -> None:
    from dfx_pipelines.connectors.bigquery.plugin import PLUGIN
    from dfx_pipelines.platform.definitions import platform_definitions

    defs = dg.Definitions.merge(platform_definitions(), PLUGIN.definitions())
    defs.get_repository_def()
    assert defs.resolve_job_def("bigquery_metrics_job") and defs.resolve_sensor_def("bigquery_approvals_sensor")
    assert METRICS_KEY in {spec.key for spec in defs.resolve_all_asset_specs()}
    revoked = PLUGIN.revoke_at_provider(platform, bq_connection)
    assert (revoked.provider_revoked, revoked.detail) == (
        False,
        "service-account keys are revoked by the customer in GCP; our copy is destroyed",
    )
    assert [c.name for c in PLUGIN.cli_commands()] == ["bigquery"]
    [run] = PLUGIN.demo_runs(bq_connection, 3)
    today = datetime.now(UTC).date()  # the demo warehouse is moved to end today
    assert run.tags[RANGE_START] == f"bq-acme|{today - timedelta(days=2)}" and run.tags[RANGE_END] == f"bq-acme|{today}"
    assert gate.month_of(date(2024, 12, 31)) == "2024-12"


def test_budget_figures_are_numbers_and_the_same_on_the_materialization_and_the_check(
    platform, bq_connection, materialize
) -> None:
    set_budget(platform, bq_connection, 2 * QUERY_USD / 0.85)
    result = materialize(partition_key=KEY)
    [materialization] = result.asset_materializations_for_node(NODE)
    check = check_of(result).metadata
    for name in ("budget_used_percent", "month_to_date_usd", "monthly_budget_usd"):
        assert isinstance(materialization.metadata[name], dg.FloatMetadataValue)
        assert materialization.metadata[name].value == check[name].value, name
    assert materialization.metadata["dagster/row_count"].value > 0
    assert "|---:|" in materialization.metadata["result"].value.splitlines()[1]  # values right-aligned


def test_the_demo_warehouse_ends_today(tmp_path) -> None:
    from dfx_pipelines.connectors.bigquery.plugin import ending_on
    from dfx_pipelines.connectors.bigquery.sandbox.generate import generate_demo_frames

    today = datetime.now(UTC).date()
    generated = generate_demo_frames(500, seed=7)
    moved = ending_on(generated, today)
    shift = pd.Timedelta(days=(today - date(2024, 12, 31)).days)  # the generator's year ends 2024-12-31
    for table, column in (
        ("shop.orders", "order_date"),
        ("shop.orders", "created_at"),
        ("shop.web_events", "event_date"),
    ):
        assert (moved[table][column] == generated[table][column] + shift).all(), (table, column)
    assert max(pd.to_datetime(moved["shop.orders"]["order_date"])).date() <= today
    assert (moved["shop.orders"]["amount"] == generated["shop.orders"]["amount"]).all()  # only dates move
