"""Dry runs and bills through the real client, checked against bytes computed by hand from the rows."""

from __future__ import annotations

import pandas as pd
import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from dfx_pipelines.connectors.bigquery.sandbox.running import RunningBigQuerySandbox

from .conftest import MIB, billed, dry_run, scan_bytes


@pytest.fixture(scope="module")
def schemas(client: bigquery.Client) -> dict[str, list[bigquery.SchemaField]]:
    return {name: client.get_table(f"shop.{name}").schema for name in ("orders", "customers", "web_events")}


def test_column_subset_prices_only_the_referenced_columns(client, frames, schemas) -> None:
    orders = frames["shop.orders"]
    job = dry_run(client, "SELECT status, SUM(amount) AS total FROM shop.orders GROUP BY status")
    expected = scan_bytes(orders, schemas["orders"], ["status", "amount"])
    assert job.total_bytes_processed == expected
    assert expected < scan_bytes(orders, schemas["orders"])  # a real subset, not the whole table
    assert job.total_bytes_billed == 0  # a dry run bills nothing


def test_select_star_prices_every_column_by_utf8_bytes_and_nulls_as_zero(client, frames, schemas) -> None:
    events = frames["shop.web_events"]
    job = dry_run(client, "SELECT * FROM `dfx-demo-project.shop.web_events`")
    assert job.total_bytes_processed == scan_bytes(events, schemas["web_events"])
    # The data really exercises both rules: multi-byte characters and NULLs.
    assert any(len(p.encode()) != len(p) for p in events["page"].unique())
    assert events["user_agent"].isna().any()


@pytest.mark.parametrize(
    "where, keep",
    [
        ("order_date BETWEEN '2024-03-01' AND '2024-03-31'", lambda d: (d >= "2024-03-01") & (d <= "2024-03-31")),
        (
            "order_date >= DATE '2024-12-01' AND order_date < '2024-12-15'",
            lambda d: (d >= "2024-12-01") & (d < "2024-12-15"),
        ),
        (
            "order_date IN ('2024-02-29', '2024-07-04')",
            lambda d: d.isin([pd.Timestamp("2024-02-29"), pd.Timestamp("2024-07-04")]),
        ),
        ("order_date = '2024-05-05' AND status = 'paid'", lambda d: d == "2024-05-05"),
    ],
)
def test_partition_pruning_counts_only_matching_partitions(client, frames, schemas, where, keep) -> None:
    orders = frames["shop.orders"]
    job = dry_run(client, f"SELECT order_id, currency, status FROM shop.orders WHERE {where}")
    surviving = orders[keep(orders["order_date"])]
    # The partition column is read to filter, so it is billed too, but only in the surviving partitions.
    expected = scan_bytes(surviving, schemas["orders"], ["order_id", "currency", "status", "order_date"])
    assert 0 < len(surviving) < len(orders)
    assert job.total_bytes_processed == expected


def test_a_filter_on_another_column_prunes_nothing(client, frames, schemas) -> None:
    orders = frames["shop.orders"]
    job = dry_run(client, "SELECT order_id FROM shop.orders WHERE created_at >= TIMESTAMP '2024-12-01'")
    assert job.total_bytes_processed == scan_bytes(orders, schemas["orders"], ["order_id", "created_at"])


def test_join_prices_both_tables_and_bills_the_minimum_for_each(client, frames, schemas) -> None:
    sql = (
        "SELECT c.country, SUM(o.amount) AS revenue FROM shop.orders AS o "
        "JOIN shop.customers AS c ON o.customer_id = c.customer_id GROUP BY c.country"
    )
    orders_bytes = scan_bytes(frames["shop.orders"], schemas["orders"], ["customer_id", "amount"])
    customers_bytes = scan_bytes(frames["shop.customers"], schemas["customers"], ["customer_id", "country"])
    job = dry_run(client, sql)
    assert job.total_bytes_processed == orders_bytes + customers_bytes
    assert {t.table_id for t in job.referenced_tables} == {"orders", "customers"}
    executed = client.query(sql)
    executed.result()
    assert executed.total_bytes_billed == billed([orders_bytes, customers_bytes]) == 20 * MIB


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT order_id FROM (SELECT * FROM shop.orders) WHERE amount > 100",
        "WITH everything AS (SELECT * FROM shop.orders) SELECT order_id FROM everything WHERE amount > 100",
    ],
)
def test_columns_a_subquery_selects_but_nobody_uses_are_not_priced(client, frames, schemas, sql) -> None:
    job = dry_run(client, sql)
    assert job.total_bytes_processed == scan_bytes(frames["shop.orders"], schemas["orders"], ["order_id", "amount"])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT TO_JSON_STRING(c) FROM shop.customers c",
        "SELECT c FROM shop.customers AS c",
        "SELECT FORMAT('%t', C) AS s FROM shop.customers c",
        "SELECT customers FROM shop.customers",
        "SELECT COUNT(*) AS n FROM shop.customers c WHERE TO_JSON_STRING(c) LIKE '%@%'",
        "SELECT ARRAY_AGG(c) AS a FROM shop.customers c",
        "SELECT x.email FROM shop.customers c, UNNEST([c]) x",
        "WITH x AS (SELECT c FROM shop.customers c) SELECT LENGTH(TO_JSON_STRING(x)) AS n FROM x",
        "SELECT (SELECT TO_JSON_STRING(c) FROM shop.orders o LIMIT 1) AS j FROM shop.customers c",  # correlated
    ],
)
def test_a_whole_row_reference_prices_every_column_of_its_table(client, frames, schemas, sql) -> None:
    job = dry_run(client, sql)
    everything = scan_bytes(frames["shop.customers"], schemas["customers"])
    assert job.total_bytes_processed == everything > 0


def test_a_whole_row_reference_is_priced_in_the_surviving_partitions_only(client, frames, schemas) -> None:
    orders = frames["shop.orders"]
    job = dry_run(client, "SELECT TO_JSON_STRING(o) AS j FROM shop.orders o WHERE order_date = '2024-05-05'")
    surviving = orders[orders["order_date"] == "2024-05-05"]
    assert 0 < len(surviving) < len(orders)
    assert job.total_bytes_processed == scan_bytes(surviving, schemas["orders"])


def test_view_is_priced_by_the_table_under_it(client, frames, schemas) -> None:
    job = dry_run(client, "SELECT * FROM shop.daily_revenue")
    # The view reads order_date, currency, amount, and status (in its WHERE) of orders.
    expected = scan_bytes(frames["shop.orders"], schemas["orders"], ["order_date", "currency", "amount", "status"])
    assert job.total_bytes_processed == expected
    assert [t.table_id for t in job.referenced_tables] == ["orders"]


def test_count_star_reads_no_column_and_bills_nothing(client) -> None:
    job = client.query("SELECT COUNT(*) AS n FROM shop.orders")
    assert [row.n for row in job.result()] == [3000]
    assert job.total_bytes_processed == 0
    assert job.total_bytes_billed == 0


def test_dry_runs_execute_nothing(client, sandbox: RunningBigQuerySandbox) -> None:
    executed_before = len(sandbox.app.warehouse.executed)
    insert_job = dry_run(client, "SELECT customer_id, email FROM shop.customers")
    rows = client.query_and_wait("SELECT * FROM shop.orders", job_config=bigquery.QueryJobConfig(dry_run=True))
    assert list(rows) == [] and rows.total_bytes_processed > 0
    assert len(sandbox.app.warehouse.executed) == executed_before
    logged = next(j for j in sandbox.app.jobs if j.job_id == insert_job.job_id)
    assert (logged.dry_run, logged.executed, logged.bytes_billed, logged.state) == (True, False, 0, "DONE")
    assert logged.bytes_processed == insert_job.total_bytes_processed > 0
    assert sandbox.app.jobs[-1].dry_run and not sandbox.app.jobs[-1].executed  # the query_and_wait one


def test_executed_job_bills_ceil_mib_above_the_minimum(client, frames, schemas, sandbox) -> None:
    sql = (
        "SELECT event_type, COUNT(DISTINCT session_id) AS sessions, COUNT(event_id) AS events, MAX(page) AS page, "
        "MAX(user_agent) AS ua, MAX(occurred_at) AS last_at, MIN(event_date) AS first_day "
        "FROM shop.web_events GROUP BY event_type"
    )
    expected = scan_bytes(frames["shop.web_events"], schemas["web_events"])
    assert expected > 10 * MIB and expected % MIB != 0  # the data exercises rounding, not the minimum
    job = client.query(sql)
    assert len(list(job.result())) == 5
    assert job.total_bytes_processed == expected
    assert job.total_bytes_billed == -(-expected // MIB) * MIB == billed([expected])
    assert next(j for j in sandbox.app.jobs if j.job_id == job.job_id).executed


def test_maximum_bytes_billed_below_the_bill_fails_unbilled_with_no_rows(client, sandbox) -> None:
    sql = "SELECT * FROM shop.orders"
    executed_before = len(sandbox.app.warehouse.executed)
    job = client.query(sql, job_config=bigquery.QueryJobConfig(maximum_bytes_billed=10 * MIB - 1))
    with pytest.raises(exceptions.GoogleAPICallError) as caught:
        job.result()
    assert caught.value.errors[0]["reason"] == "bytesBilledLimitExceeded"
    assert caught.value.code == 500  # how google-cloud-bigquery maps this job error
    assert "Query exceeded limit for bytes billed: 10485759. 10485760 or higher required." in caught.value.message
    with pytest.raises(exceptions.GoogleAPICallError) as fast_path:
        client.query_and_wait(sql, job_config=bigquery.QueryJobConfig(maximum_bytes_billed=1))
    assert fast_path.value.errors[0]["reason"] == "bytesBilledLimitExceeded"
    assert len(sandbox.app.warehouse.executed) == executed_before  # never ran
    failed = next(j for j in sandbox.app.jobs if j.job_id == job.job_id)
    assert (failed.error_reason, failed.executed, failed.bytes_billed, failed.rows) == (
        "bytesBilledLimitExceeded",
        False,
        0,
        [],
    )
    assert client.get_job(job.job_id).total_bytes_billed == 0


def test_a_cap_set_from_the_rounded_estimate_lets_the_query_run(client) -> None:
    sql = "SELECT event_id, page FROM shop.web_events WHERE event_date BETWEEN '2024-06-01' AND '2024-06-30'"
    estimate = dry_run(client, sql).total_bytes_processed
    cap = billed([estimate])
    job = client.query(sql, job_config=bigquery.QueryJobConfig(maximum_bytes_billed=cap))
    assert job.result().total_rows > 0
    assert job.total_bytes_billed == cap


def test_same_seed_same_rows_and_same_prices() -> None:
    from dfx_pipelines.connectors.bigquery.sandbox.generate import generate_demo_frames
    from dfx_pipelines.connectors.bigquery.sandbox.running import make_client, start_bigquery_sandbox

    small = {"default": 400}
    again, other = generate_demo_frames(small, 11), generate_demo_frames(small, 12)
    pd.testing.assert_frame_equal(generate_demo_frames(small, 11)["shop.orders"], again["shop.orders"])
    assert not again["shop.orders"].equals(other["shop.orders"])
    prices = []
    for _ in range(2):
        with start_bigquery_sandbox(rows=small, seed=11) as running:
            prices.append(
                dry_run(
                    make_client(running), "SELECT * FROM shop.orders WHERE order_date > '2024-06-30'"
                ).total_bytes_processed
            )
    assert prices[0] == prices[1] > 0
