"""What the sandbox warehouse holds: projects, datasets, tables, views and their BigQuery schemas."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEMO_PROJECT = "dfx-demo-project"
LOCATION = "US"


@dataclass(frozen=True)
class Column:
    """One top-level column. `type` is the legacy REST name the API reports (INTEGER, FLOAT, ...)."""

    name: str
    type: str
    mode: str = "NULLABLE"
    description: str = ""
    policy_tags: tuple[str, ...] = ()
    fields: tuple[Column, ...] = ()  # for RECORD columns

    def api_repr(self) -> dict[str, Any]:
        resource: dict[str, Any] = {"name": self.name, "type": self.type, "mode": self.mode}
        if self.description:
            resource["description"] = self.description
        if self.policy_tags:
            resource["policyTags"] = {"names": list(self.policy_tags)}
        if self.fields:
            resource["fields"] = [sub.api_repr() for sub in self.fields]
        return resource


@dataclass(frozen=True)
class Table:
    """A base table (`view_sql` empty) or a logical view over other tables of the same project."""

    project: str
    dataset: str
    name: str
    columns: tuple[Column, ...]
    partition_field: str | None = None  # DAY partitioning on a DATE column
    view_sql: str = ""  # GoogleSQL of a view
    description: str = ""

    @property
    def is_view(self) -> bool:
        return bool(self.view_sql)

    @property
    def storage_name(self) -> str:
        """The DuckDB table (or view) holding it: one flat namespace, `dataset__table`."""
        return f"{self.dataset}__{self.name}"

    @property
    def full_id(self) -> str:
        return f"{self.project}:{self.dataset}.{self.name}"

    def column(self, name: str) -> Column | None:
        lowered = name.lower()  # BigQuery column names are case-insensitive
        return next((c for c in self.columns if c.name.lower() == lowered), None)

    def reference(self) -> dict[str, str]:
        return {"projectId": self.project, "datasetId": self.dataset, "tableId": self.name}


@dataclass
class Catalog:
    """Every table the sandbox serves, keyed by (project, dataset, table), all lower-cased for lookup."""

    tables: dict[tuple[str, str, str], Table] = field(default_factory=dict)
    datasets: dict[tuple[str, str], str] = field(default_factory=dict)  # (project, dataset) -> description

    def add_dataset(self, project: str, dataset: str, description: str = "") -> None:
        self.datasets[(project.lower(), dataset.lower())] = description

    def add(self, table: Table) -> None:
        if not self.has_dataset(table.project, table.dataset):
            self.add_dataset(table.project, table.dataset)
        self.tables[(table.project.lower(), table.dataset.lower(), table.name.lower())] = table

    def get(self, project: str, dataset: str, name: str) -> Table | None:
        return self.tables.get((project.lower(), dataset.lower(), name.lower()))

    def has_dataset(self, project: str, dataset: str) -> bool:
        return (project.lower(), dataset.lower()) in self.datasets

    def dataset_names(self, project: str) -> list[str]:
        return sorted(d for p, d in self.datasets if p == project.lower())

    def tables_in(self, project: str, dataset: str) -> list[Table]:
        key = (project.lower(), dataset.lower())
        return sorted((t for k, t in self.tables.items() if k[:2] == key), key=lambda t: t.name)


def pii_policy_tag(project: str = DEMO_PROJECT) -> str:
    return f"projects/{project}/locations/us/taxonomies/1/policyTags/pii"


def _col(name: str, type_: str, **kwargs: Any) -> Column:
    return Column(name, type_, **kwargs)


def demo_catalog(project: str = DEMO_PROJECT) -> Catalog:
    """The demo warehouse: `shop` (orders, web_events, customers, a view) and an unselected `finance`."""
    pii = pii_policy_tag(project)
    catalog = Catalog()
    catalog.add_dataset(project, "shop", "Demo web shop")
    catalog.add_dataset(project, "finance", "Demo finance ledger (not selected by default)")
    catalog.add(
        Table(
            project,
            "shop",
            "orders",
            (
                _col("order_id", "INTEGER", mode="REQUIRED"),
                _col("customer_id", "INTEGER"),
                _col("status", "STRING"),
                _col("amount", "NUMERIC"),
                _col("currency", "STRING"),
                _col("created_at", "TIMESTAMP"),
                _col("order_date", "DATE"),
            ),
            partition_field="order_date",
            description="One row per order",
        )
    )
    catalog.add(
        Table(
            project,
            "shop",
            "web_events",
            (
                _col("event_id", "STRING", mode="REQUIRED"),
                _col("session_id", "STRING"),
                _col("event_type", "STRING"),
                _col("page", "STRING"),
                _col("user_agent", "STRING"),
                _col("occurred_at", "TIMESTAMP"),
                _col("event_date", "DATE"),
            ),
            partition_field="event_date",
            description="Clickstream events",
        )
    )
    catalog.add(
        Table(
            project,
            "shop",
            "customers",
            (
                _col("customer_id", "INTEGER", mode="REQUIRED"),
                _col("email", "STRING", policy_tags=(pii,), description="PII: customer e-mail"),
                _col("country", "STRING"),
                _col("segment", "STRING"),
                _col("signed_up_on", "DATE"),
                _col("is_active", "BOOLEAN"),
            ),
            description="Customer master data",
        )
    )
    catalog.add(
        Table(
            project,
            "shop",
            "daily_revenue",
            (
                _col("order_date", "DATE"),
                _col("currency", "STRING"),
                _col("orders", "INTEGER"),
                _col("revenue", "NUMERIC"),
            ),
            view_sql=(
                f"SELECT order_date, currency, COUNT(*) AS orders, SUM(amount) AS revenue "
                f"FROM `{project}.shop.orders` WHERE status != 'cancelled' GROUP BY order_date, currency"
            ),
            description="Revenue per day and currency",
        )
    )
    catalog.add(
        Table(
            project,
            "finance",
            "invoices",
            (
                _col("invoice_id", "INTEGER", mode="REQUIRED"),
                _col("customer_id", "INTEGER"),
                _col("amount", "NUMERIC"),
                _col("issued_on", "DATE"),
                _col("paid", "BOOLEAN"),
            ),
            partition_field="issued_on",
            description="Invoices",
        )
    )
    return catalog
