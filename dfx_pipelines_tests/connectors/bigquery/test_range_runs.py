"""A range run of the BigQuery metric specs (issue 19): one GROUP BY day query per spec for the whole
range, priced by one dry run each and gated once, with values identical to per-day runs on the sandbox,
every day of the range written (empty days as empty batches), the bill in the ledger once and charged
to the range's first day in the per-partition figures, the approval flow working for a range, and the
row bound holding for the range query as a whole (refused clearly, nothing stored)."""

from datetime import date, timedelta

import dagster as dg
import pandas as pd
import pytest

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.assets import APPROVAL_TAG, RANGE_END, RANGE_START, partition_label
from dfx_pipelines.connectors.bigquery.gate import ApprovalStatus
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.metrics import MetricSpec, build_query, specs_of, time_type_of, to_metric_rows
from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
from dfx_pipelines.connectors.bigquery.sensors import bigquery_approvals_sensor
from dfx_pipelines.platform.resources import PlatformResource

from .conftest import MIB, SPECS, TIB, JobWatch, Materializer, set_budget

NODE = "bigquery__metric_specs"
# The sandbox's data ends 2024-12-31: the last days of this range hold no rows and must still get batches.
FIRST, LAST = date(2024, 12, 24), date(2025, 1, 2)
DAYS = [FIRST + timedelta(days=n) for n in range((LAST - FIRST).days + 1)]


def range_tags(first: date = FIRST, last: date = LAST) -> dict[str, str]:
    return {RANGE_START: f"bq-acme|{first}", RANGE_END: f"bq-acme|{last}"}


def store_rows(platform) -> list[tuple]:
    """Every stored value of the connection, with its partition, as comparable tuples."""
    return sorted(
        (
            r["metric"],
            r["partition_key"],
            r["period"],
            r["measure"],
            tuple(sorted(r["dimensions"].items())),
            r["value"],
        )
        for r in platform.metric_store.read(connection_id="bq-acme")
    )


def batches_by_partition(platform) -> dict[tuple[str, str], dict]:
    return {(b["metric"], b["partition_key"]): b for b in platform.metric_store.batches("bq-acme")}


def partition_metadata(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        str(m.partition): {k: v.value for k, v in m.metadata.items()}
        for m in result.asset_materializations_for_node(NODE)
    }


def test_a_range_is_one_query_per_spec_and_equals_per_day_runs(platform, bq_connection, bq_sandbox, materialize):
    watch = JobWatch(bq_sandbox)
    ranged = materialize(tags=range_tags())
    assert ranged.success
    # One dry run and one job per spec for the whole range: independent of the number of days.
    assert len(watch.dry_runs) == len(SPECS) and len(watch.real_jobs) == len(SPECS)
    assert all("GROUP BY" in j.sql and "BETWEEN" in j.sql for j in watch.jobs)
    range_values = store_rows(platform)
    range_batches = batches_by_partition(platform)
    assert set(range_batches) == {(s["name"], f"bq-acme|{d}") for s in SPECS for d in DAYS}
    empty = [key for key, b in range_batches.items() if b["row_count"] == 0]
    assert {key[1] for key in empty} == {f"bq-acme|{d}" for d in DAYS if d.year == 2025}  # empty days: empty batches
    assert len(range_values) > 0

    # The same days one run each (what a range cost before): identical values, identical batches.
    per_day_watch = JobWatch(bq_sandbox)
    for day in DAYS:
        assert materialize(partition_key=f"bq-acme|{day}").success
    assert len(per_day_watch.real_jobs) == len(SPECS) * len(DAYS)
    assert store_rows(platform) == range_values
    per_day_batches = batches_by_partition(platform)
    assert {k: b["row_count"] for k, b in per_day_batches.items()} == {
        k: b["row_count"] for k, b in range_batches.items()
    }


def test_a_range_query_count_does_not_grow_with_the_days(platform, bq_connection, bq_sandbox, materialize):
    counts = {}
    for days in (1, 7, 45):
        watch = JobWatch(bq_sandbox)
        first = date(2024, 3, 1)
        assert materialize(tags=range_tags(first, first + timedelta(days=days - 1))).success
        counts[days] = (len(watch.dry_runs), len(watch.real_jobs))
    assert counts == {1: (2, 2), 7: (2, 2), 45: (2, 2)}


def test_the_ranges_bill_is_recorded_once_and_charged_to_its_first_day(
    platform, bq_connection, bq_sandbox, materialize
):
    watch = JobWatch(bq_sandbox)
    result = materialize(tags=range_tags())
    [ledger] = BudgetStore(platform.engine).ledger("bq-acme")
    billed = sum(j.bytes_billed for j in watch.real_jobs)
    assert ledger["jobs"] == len(SPECS) and ledger["bytes_billed"] == billed > 0
    metadata = partition_metadata(result)
    assert set(metadata) == {f"bq-acme|{d}" for d in DAYS}
    first_key = f"bq-acme|{FIRST}"
    # Per partition: the range query's share is its whole bill on the first day and 0 on the others,
    # so the partitions sum to the ledger; every partition names the range and its jobs.
    assert sum(m["bytes_billed_charged"] for m in metadata.values()) == billed
    assert metadata[first_key]["bytes_billed_charged"] == billed
    assert metadata[first_key]["cost_usd_charged"] == pytest.approx(gate.cost_usd(billed, 6.25), abs=1e-8)
    for m in metadata.values():
        assert m["range"] == f"{FIRST}..{LAST}" and m["charged_to"] == first_key
        assert m["range_queries"].count("dfx_bq_acme_") == len(SPECS)
        # The run's totals, identical on each partition's materialization: queries, dry runs, bytes, cost.
        assert (m["queries"], m["dry_runs"], m["bytes_billed"]) == (len(SPECS), len(SPECS), billed)
    # The stored provenance follows the same rule: bytes read sum to what BigQuery processed.
    batches = platform.metric_store.batches("bq-acme")
    assert sum(b["bytes_read"] for b in batches) == sum(j.bytes_processed for j in watch.real_jobs)
    assert all(b["bytes_read"] == 0 for b in batches if not b["partition_key"].endswith(str(FIRST)))
    assert all(f"one query for {len(DAYS)} days" in b["source"] for b in batches)


def test_an_over_budget_range_waits_for_one_approval_for_the_range_query(
    platform, bq_connection, bq_sandbox, materialize, dagster_instance
):
    set_budget(platform, bq_connection, 10 * MIB / TIB * 6.25)  # one 10 MiB query fits, the range's two do not
    watch = JobWatch(bq_sandbox)
    stopped = materialize(tags=range_tags())
    assert stopped.success and stopped.asset_materializations_for_node(NODE) == []
    assert len(watch.dry_runs) == len(SPECS) and watch.real_jobs == []
    store = BudgetStore(platform.engine)
    [approval] = store.list(connection_id="bq-acme")
    assert approval.partition == partition_label("bq-acme", FIRST, LAST) and approval.queries == len(SPECS)

    store.approve(approval.id, "alice@acme.test")
    # The approval is for the range's queries: a per-day run of one of its days cannot spend it.
    one_day = materialize(partition_key=f"bq-acme|{FIRST}", tags={APPROVAL_TAG: approval.id}, raise_on_error=False)
    assert (
        not one_day.success
        and "another query" in one_day.get_step_failure_events()[0].event_specific_data.error.to_string()
    )
    assert watch.real_jobs == [] and store.get(approval.id).status is ApprovalStatus.APPROVED

    resources = {
        "platform": PlatformResource(home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url)
    }
    with dg.build_sensor_context(instance=dagster_instance, resources=resources) as context:
        [request] = bigquery_approvals_sensor(context).run_requests
    assert request.tags[RANGE_START] == f"bq-acme|{FIRST}" and request.tags[RANGE_END] == f"bq-acme|{LAST}"
    approved = materialize(tags=request.tags)
    assert len(approved.asset_materializations_for_node(NODE)) == len(DAYS)
    assert len(watch.real_jobs) == len(SPECS) and store.get(approval.id).status is ApprovalStatus.USED


def test_the_row_bound_holds_for_the_range_query_and_is_refused_clearly(
    platform, bq_connection, bq_sandbox, dagster_instance
):
    # revenue_by_status has at most a handful of statuses a day: any one day fits 20 rows, a month does not.
    resource = BigQueryResource(sandbox_ca_path=bq_sandbox.ca_pem_path, max_result_rows=20)
    materialize = Materializer(platform, resource, dagster_instance)
    first, last = date(2024, 3, 1), date(2024, 3, 31)
    watch = JobWatch(bq_sandbox)
    refused = materialize(tags=range_tags(first, last), raise_on_error=False)
    assert not refused.success
    error = refused.get_step_failure_events()[0].event_specific_data.error.to_string()
    assert "range of 31 days" in error and "more than 20 rows" in error and "shorter range" in error
    assert platform.metric_store.batches("bq-acme") == []  # nothing stored
    # What ran was billed and is in the ledger: the refusal does not make the budget forget spend.
    assert BudgetStore(platform.engine).month_to_date_bytes("bq-acme") == sum(j.bytes_billed for j in watch.real_jobs)
    assert materialize(partition_key=f"bq-acme|{first}").success  # one day stays within the bound


def test_a_timestamp_spec_over_a_range_equals_its_per_day_queries_and_pandas(
    platform, bq_connection, bq_resource, bq_sandbox, frames
):
    """A TIMESTAMP time column is grouped by its UTC date: the range query through the gate returns,
    day by day, what one query per day returns, and what pandas computes from the same rows."""
    spec = MetricSpec.model_validate(
        {
            "name": "orders_by_status",
            "table": "shop.orders",
            "measure": "COUNT",
            "group_by": ["status"],
            "time_column": "created_at",
        }
    )
    # The asset reads the column's type from what connect discovered.
    assert time_type_of(bq_connection, spec) == "TIMESTAMP"
    assert [time_type_of(bq_connection, s) for s in specs_of(bq_connection)] == ["DATE", "DATE"]
    first, last = date(2024, 5, 1), date(2024, 5, 10)
    project = bq_connection.endpoint["project"]
    gated = bq_resource.gated(platform, bq_connection)
    try:

        def rows(a: date, b: date) -> list:
            query = build_query(spec, project, a, b, time_type_of(bq_connection, spec))
            outcome = gated.run_gated(query.sql, query.params, asset="bigquery/metric_specs", partition="test")
            return to_metric_rows(spec, outcome.results[0].rows)

        watch = JobWatch(bq_sandbox)
        ranged = rows(first, last)
        assert len(watch.real_jobs) == 1
        per_day = [
            row
            for n in range((last - first).days + 1)
            for row in rows(first + timedelta(days=n), first + timedelta(days=n))
        ]
    finally:
        gated.close()
    assert ranged == per_day and ranged
    orders = frames["shop.orders"]
    utc_day = pd.to_datetime(orders["created_at"], utc=True).dt.date
    kept = orders[(utc_day >= first) & (utc_day <= last)]
    expected = kept.groupby([utc_day[kept.index], "status"]).size().to_dict()
    assert {(r.period, r.dimensions[0][1]): r.value for r in ranged} == {k: float(v) for k, v in expected.items()}
