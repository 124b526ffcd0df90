"""Query results through the real client: values, aggregates, paging, parameters, and refusals."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from dfx_pipelines.connectors.bigquery.sandbox.running import authorized_session


def test_aggregate_equals_pandas_over_the_same_rows(client, frames) -> None:
    sql = """
        SELECT status, currency, COUNT(*) AS orders, COUNT(DISTINCT customer_id) AS buyers, SUM(amount) AS revenue
        FROM `dfx-demo-project.shop.orders`
        WHERE order_date >= '2024-06-01'
        GROUP BY status, currency
    """
    got = {(r.status, r.currency): (r.orders, r.buyers, r.revenue) for r in client.query_and_wait(sql)}
    orders = frames["shop.orders"]
    recent = orders[orders["order_date"] >= "2024-06-01"]
    grouped = recent.groupby(["status", "currency"], dropna=False)
    expected = {
        (status, None if currency != currency else currency): (
            len(g),
            g["customer_id"].nunique(),
            sum(g["amount"], Decimal(0)),
        )
        for (status, currency), g in grouped
    }
    assert got == expected
    assert any(currency is None for _, currency in got)  # NULL is its own group, as in BigQuery


def test_values_keep_their_types(client, frames) -> None:
    rows = list(
        client.query(
            "SELECT order_id, customer_id, amount, currency, created_at, order_date FROM shop.orders ORDER BY order_id LIMIT 200"
        ).result()
    )
    source = frames["shop.orders"].head(200)
    assert [r.order_id for r in rows] == source["order_id"].tolist()
    assert [r.amount for r in rows] == source["amount"].tolist()  # exact decimals
    assert [r.currency for r in rows] == [None if v is None else v for v in source["currency"]]
    assert [r.created_at for r in rows] == [ts.to_pydatetime() for ts in source["created_at"]]  # microseconds kept
    assert [r.order_date for r in rows] == [d.date() for d in source["order_date"]]
    assert isinstance(rows[0].created_at, dt.datetime) and rows[0].created_at.tzinfo is not None


def test_result_pages_are_fetched_with_page_tokens(client, sandbox) -> None:
    requests_before = len(sandbox.server.requests)
    job = client.query("SELECT order_id FROM shop.orders ORDER BY order_id DESC")
    iterator = job.result(page_size=700)
    pages = [[row.order_id for row in page] for page in iterator.pages]
    assert [len(p) for p in pages] == [700, 700, 700, 700, 200]
    assert [i for page in pages for i in page] == list(range(3000, 0, -1))
    assert iterator.total_rows == 3000
    sent = [r for r in sandbox.server.requests[requests_before:] if r.path.endswith(f"/queries/{job.job_id}")]
    assert sum(1 for r in sent if r.arg("pageToken")) == 4


def test_query_and_wait_pages_through_the_fast_path(client) -> None:
    rows = client.query_and_wait("SELECT event_id FROM shop.web_events WHERE event_date = '2024-02-01'", page_size=50)
    ids = [r.event_id for r in rows]
    assert len(ids) == rows.total_rows > 100
    assert len(set(ids)) == len(ids)


def test_wire_encoding_is_bigquerys(sandbox, client) -> None:
    """INT64 and NUMERIC as strings, TIMESTAMP as epoch microseconds (or float seconds), BOOL as text."""
    session = authorized_session(client._credentials, sandbox.ca_pem_path)
    base = f"{sandbox.url}/bigquery/v2/projects/{sandbox.project}"
    sql = "SELECT 7 AS i, NUMERIC '1.50' AS n, TIMESTAMP '2024-01-02 03:04:05.123456+00' AS ts, TRUE AS b, 2.5 AS f, DATE '2024-02-29' AS d"
    body = session.post(
        f"{base}/queries", json={"query": sql, "useLegacySql": False, "formatOptions": {"useInt64Timestamp": True}}
    ).json()
    assert [c["v"] for c in body["rows"][0]["f"]] == ["7", "1.5", "1704164645123456", "true", "2.5", "2024-02-29"]
    assert [f["type"] for f in body["schema"]["fields"]] == [
        "INTEGER",
        "NUMERIC",
        "TIMESTAMP",
        "BOOLEAN",
        "FLOAT",
        "DATE",
    ]
    job_id = body["jobReference"]["jobId"]
    legacy = session.get(f"{base}/queries/{job_id}").json()
    assert legacy["rows"][0]["f"][2]["v"] == "1704164645.123456"
    assert legacy["totalRows"] == "1" and legacy["jobComplete"] is True


def test_query_parameters_bind_and_prune(client, frames) -> None:
    config = bigquery.QueryJobConfig(
        query_parameters=[
            bigquery.ScalarQueryParameter("first", "DATE", dt.date(2024, 3, 1)),
            bigquery.ScalarQueryParameter("last", "DATE", dt.date(2024, 3, 31)),
            bigquery.ArrayQueryParameter("statuses", "STRING", ["paid", "shipped"]),
        ]
    )
    sql = "SELECT COUNT(*) AS n FROM shop.orders WHERE order_date BETWEEN @first AND @last AND status IN UNNEST(@statuses)"
    orders = frames["shop.orders"]
    march = orders[(orders["order_date"] >= "2024-03-01") & (orders["order_date"] <= "2024-03-31")]
    assert (
        next(iter(client.query_and_wait(sql, job_config=config))).n == march["status"].isin(["paid", "shipped"]).sum()
    )
    full = client.query(
        "SELECT status FROM shop.orders WHERE order_date IS NOT NULL", job_config=bigquery.QueryJobConfig(dry_run=True)
    )
    pruned = client.query(
        sql, job_config=bigquery.QueryJobConfig(dry_run=True, query_parameters=config.query_parameters)
    )
    assert 0 < pruned.total_bytes_processed < full.total_bytes_processed / 5


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE shop.orders SET status = 'paid' WHERE TRUE",
        "DELETE FROM shop.orders WHERE order_id = 1",
        "INSERT INTO shop.orders (order_id) VALUES (99999)",
        "CREATE TABLE shop.copy AS SELECT * FROM shop.orders",
        "DROP TABLE shop.orders",
        "MERGE shop.orders t USING shop.orders s ON t.order_id = s.order_id WHEN MATCHED THEN DELETE",
    ],
)
def test_dml_and_ddl_are_refused(client, sandbox, statement) -> None:
    executed_before = len(sandbox.app.warehouse.executed)
    with pytest.raises(exceptions.BadRequest) as caught:
        client.query(statement).result()
    assert caught.value.errors[0]["reason"] == "invalidQuery"
    assert "not allowed" in caught.value.errors[0]["message"]
    with pytest.raises(exceptions.BadRequest):
        client.query_and_wait(statement)
    assert len(sandbox.app.warehouse.executed) == executed_before
    assert client.get_table("shop.orders").num_rows == 3000


def test_unknown_table_is_404_like_bigquery(client) -> None:
    with pytest.raises(exceptions.NotFound) as caught:
        client.query_and_wait("SELECT * FROM shop.nope")
    assert caught.value.errors[0]["reason"] == "notFound"
    assert (
        caught.value.errors[0]["message"] == "Not found: Table dfx-demo-project:shop.nope was not found in location US"
    )
    with pytest.raises(exceptions.NotFound):
        client.query("SELECT 1 FROM `dfx-demo-project.nowhere.orders`").result()
    with pytest.raises(exceptions.NotFound):  # a dry run reports it on the call itself
        client.query("SELECT * FROM shop.nope", job_config=bigquery.QueryJobConfig(dry_run=True))


@pytest.mark.parametrize(
    "sql, fragment",
    [
        ("SELEC 1", "Syntax error"),
        ("SELECT nope FROM shop.orders", "Unrecognized name: nope"),
        ("SELECT * FROM orders", "must be qualified with a dataset"),
    ],
)
def test_invalid_queries_are_400_invalid_query(client, sql, fragment) -> None:
    with pytest.raises(exceptions.BadRequest) as caught:
        client.query_and_wait(sql)
    assert caught.value.errors[0]["reason"] == "invalidQuery"
    assert fragment in caught.value.errors[0]["message"]


def test_default_dataset_resolves_bare_table_names(client) -> None:
    config = bigquery.QueryJobConfig(default_dataset="dfx-demo-project.shop")
    assert next(iter(client.query_and_wait("SELECT COUNT(*) AS n FROM customers", job_config=config))).n == 150
