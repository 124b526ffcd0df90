"""Datasets, tables, schemas with policy tags, and tabledata.list, through the real client."""

from __future__ import annotations

import pytest
from google.api_core import exceptions
from google.cloud import bigquery

from dfx_pipelines.connectors.bigquery.sandbox.catalog import pii_policy_tag

from .conftest import scan_bytes


def test_lists_both_datasets_and_the_tables_of_one(client) -> None:
    assert [d.dataset_id for d in client.list_datasets()] == ["finance", "shop"]
    tables = {t.table_id: t for t in client.list_tables("shop")}
    assert sorted(tables) == ["customers", "daily_revenue", "orders", "web_events"]
    assert tables["daily_revenue"].table_type == "VIEW"
    assert tables["orders"].table_type == "TABLE"
    assert tables["orders"].time_partitioning.field == "order_date"
    assert tables["orders"].time_partitioning.type_ == "DAY"
    assert tables["customers"].time_partitioning is None
    assert [t.table_id for t in client.list_tables("finance")] == ["invoices"]


def test_list_pages_follow_next_page_tokens(client) -> None:
    iterator = client.list_tables("shop", page_size=3)
    assert [len(list(page)) for page in iterator.pages] == [3, 1]


def test_get_table_has_schema_modes_partitioning_and_sizes(client, frames) -> None:
    orders = client.get_table("dfx-demo-project.shop.orders")
    assert [(f.name, f.field_type, f.mode) for f in orders.schema] == [
        ("order_id", "INTEGER", "REQUIRED"),
        ("customer_id", "INTEGER", "NULLABLE"),
        ("status", "STRING", "NULLABLE"),
        ("amount", "NUMERIC", "NULLABLE"),
        ("currency", "STRING", "NULLABLE"),
        ("created_at", "TIMESTAMP", "NULLABLE"),
        ("order_date", "DATE", "NULLABLE"),
    ]
    assert orders.time_partitioning.field == "order_date"
    assert orders.num_rows == 3000
    assert orders.num_bytes == scan_bytes(frames["shop.orders"], orders.schema)  # logical bytes of all columns
    assert orders.location == "US"


def test_policy_tag_marks_the_email_column_only(client) -> None:
    customers = client.get_table("shop.customers")
    tagged = {f.name: f.policy_tags.names for f in customers.schema if f.policy_tags}
    assert tagged == {"email": (pii_policy_tag(),)}
    assert pii_policy_tag() == "projects/dfx-demo-project/locations/us/taxonomies/1/policyTags/pii"


def test_view_carries_its_query(client) -> None:
    view = client.get_table("shop.daily_revenue")
    assert view.table_type == "VIEW"
    assert "FROM `dfx-demo-project.shop.orders`" in view.view_query
    assert [f.name for f in view.schema] == ["order_date", "currency", "orders", "revenue"]


def test_unknown_dataset_and_table_are_404(client) -> None:
    with pytest.raises(exceptions.NotFound) as caught:
        client.get_table("shop.nope")
    assert (
        caught.value.errors[0]["message"] == "Not found: Table dfx-demo-project:shop.nope was not found in location US"
    )
    with pytest.raises(exceptions.NotFound):
        client.get_dataset("nowhere")
    assert client.get_dataset("finance").dataset_id == "finance"


def test_list_rows_pages_the_whole_table_in_order(client, frames) -> None:
    rows = client.list_rows("shop.orders", page_size=1000)
    got = [(r.order_id, r.status, r.amount) for r in rows]
    source = frames["shop.orders"]
    assert got == list(zip(source["order_id"], source["status"], source["amount"]))
    assert rows.total_rows == 3000


def test_list_rows_with_selected_fields(client, frames) -> None:
    fields = [bigquery.SchemaField("email", "STRING"), bigquery.SchemaField("is_active", "BOOLEAN")]
    rows = list(client.list_rows("shop.customers", selected_fields=fields, max_results=5))
    source = frames["shop.customers"].head(5)
    assert [(r.email, r.is_active) for r in rows] == list(zip(source["email"], source["is_active"].tolist()))
    assert list(rows[0].keys()) == ["email", "is_active"]


def test_list_rows_of_a_view_is_refused(client) -> None:
    view = client.get_table("shop.daily_revenue")
    with pytest.raises(exceptions.BadRequest):
        list(client.list_rows(view))
