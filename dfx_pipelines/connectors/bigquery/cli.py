"""`dfx bigquery …`: connect a project with a service-account key file, and decide over-budget
requests (`list`, `approve ID`, `reject ID`). Added to the main CLI through the plugin's
`cli_commands()`; project errors become one clear line (the main group handles them)."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

import click

from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.platform.cli_input import BoundedAmount, read_json_file
from dfx_pipelines.platform.errors import ConfigError

# A month's BigQuery budget and an on-demand price: finite, positive, and within what any customer
# would mean (on-demand list prices are a few USD per TiB; no one types a budget above ten million).
BUDGET_USD = BoundedAmount(0, 10_000_000)
PRICE_PER_TIB_USD = BoundedAmount(0, 1_000, allow_minimum=False)


def _decider(value: str | None) -> str:
    return value or getpass.getuser() or "unknown"


def _store() -> Any:
    from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
    from dfx_pipelines.platform.services import get_platform

    return BudgetStore(get_platform().engine)


def _parse_datasets(selects: tuple[str, ...]) -> dict[str, list[str]]:
    datasets: dict[str, list[str]] = {}
    for spec in selects:
        dataset, sep, tables = spec.partition(":")
        if not sep or not tables:
            raise ConfigError(f"--select {spec!r}: expected dataset:table1,table2")
        datasets.setdefault(dataset, []).extend(t for t in tables.split(",") if t)
    return datasets


def _parse_columns(narrows: tuple[str, ...]) -> dict[str, list[str]]:
    objects: dict[str, list[str]] = {}
    for spec in narrows:
        table, sep, columns = spec.partition(":")
        if not sep or not columns or "." not in table:
            raise ConfigError(f"--columns {spec!r}: expected dataset.table:column1,column2")
        objects.setdefault(table, []).extend(c for c in columns.split(",") if c)
    return objects


@click.group("bigquery")
def bigquery() -> None:
    """BigQuery: connect with a service-account key; approve or reject over-budget queries."""


@bigquery.command("connect")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--id", "connection_id", required=True, help="Slug, also the Dagster partition key (e.g. bq-acme).")
@click.option("--name", "display_name", required=True)
@click.option(
    "--key-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="The service-account JSON key; read into memory and encrypted into the vault.",
)
@click.option(
    "--select",
    "selects",
    multiple=True,
    required=True,
    help="dataset:table1,table2 (repeatable). Only these are ever queried.",
)
@click.option(
    "--columns", "narrows", multiple=True, help="dataset.table:col1,col2 narrows a table to these columns (repeatable)."
)
@click.option("--budget-usd", type=BUDGET_USD, default=None, help="Monthly budget; without one no query runs.")
@click.option(
    "--price-per-tib-usd",
    type=PRICE_PER_TIB_USD,
    default=6.25,
    show_default=True,
    help="On-demand price of the project's region.",
)
@click.option("--project", default=None, help="Project to query (default: the key's project_id).")
@click.option("--location", default="US", show_default=True)
@click.option(
    "--metric-specs", "specs_file", type=click.Path(exists=True, dir_okay=False), help="JSON list of metric specs."
)
@click.option(
    "--grant-policy-tag",
    "granted",
    multiple=True,
    help="A policy tag this connection was granted (Fine-Grained Reader).",
)
@click.option("--replace-key", is_flag=True, help="Replace the key of an existing connection (a rotated key).")
@click.option("--api-endpoint", default=None, help="Local sandbox only (see `dfx sandbox serve`): its URL.")
def connect(
    workspace_id: str,
    connection_id: str,
    display_name: str,
    key_file: str,
    selects: tuple[str, ...],
    narrows: tuple[str, ...],
    budget_usd: float | None,
    price_per_tib_usd: float,
    project: str | None,
    location: str,
    specs_file: str | None,
    granted: tuple[str, ...],
    replace_key: bool,
    api_endpoint: str | None,
) -> None:
    """Validate the key, check the selection against BigQuery's metadata, store the key encrypted."""
    import dagster as dg

    from dfx_pipelines.cli import embedded_dagster_home
    from dfx_pipelines.connectors.bigquery.connect import connect_bigquery
    from dfx_pipelines.connectors.bigquery.definitions import bigquery_resource
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.services import get_platform

    platform = get_platform()
    specs = read_json_file(specs_file, "--metric-specs") if specs_file else []
    endpoint: dict[str, Any] = {"location": location, "metric_specs": specs, "granted_policy_tags": list(granted)}
    if project:
        endpoint["project"] = project
    if api_endpoint:
        endpoint["api_endpoint"] = api_endpoint
    config = {
        "id": connection_id,
        "workspace_id": workspace_id,
        "display_name": display_name,
        "selection": {"datasets": _parse_datasets(selects), "objects": _parse_columns(narrows)},
        "settings": {"monthly_budget_usd": budget_usd, "price_per_tib_usd": price_per_tib_usd},
        "endpoint": endpoint,
    }
    key = Path(key_file).read_bytes()  # memory only; the vault encrypts it, nothing else keeps it
    connection = connect_bigquery(
        platform, config=config, key=key, sandbox_ca=bigquery_resource().sandbox_ca(platform), replace_key=replace_key
    )
    embedded_dagster_home(platform.settings)
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, platform.registry, ["bigquery"])
    tables = ", ".join(
        f"{d}.{t}" for d, ts in connection.selection.narrowed(BigQuerySelection).datasets.items() for t in ts
    )
    budget = f"USD {budget_usd:g}/month" if budget_usd else "no budget (no query will run until one is set)"
    click.echo(
        f"connected {connection.id} to project {connection.endpoint['project']}: {tables}; {budget}; key encrypted in the vault"
    )
    click.echo(f"you may now delete {key_file}: DataFlow-Xpert keeps only the encrypted copy")


@bigquery.command("list")
@click.option("--connection", "connection_id", default=None)
@click.option("--status", type=click.Choice(["pending", "approved", "rejected", "used", "expired"]), default=None)
@click.option("--json", "as_json", is_flag=True)
def list_approvals(connection_id: str | None, status: str | None, as_json: bool) -> None:
    """Over-budget requests and their decisions."""
    from dfx_pipelines.connectors.bigquery.gate import ApprovalStatus, usd

    records = _store().list(connection_id=connection_id, statuses=[ApprovalStatus(status)] if status else None)
    if as_json:
        click.echo(json.dumps([r.metadata() for r in records], indent=2))
        return
    if not records:
        click.echo("no BigQuery approvals")
    for r in records:
        click.echo(
            f"{r.id}  {r.status.value:8s} {r.connection_id:16s} {r.partition:40s} projected {usd(r.projected_cost_usd)} "
            f"({r.projected_billed_bytes} B) on top of {usd(r.month_to_date_usd)} of {usd(r.budget_usd)}; expires {r.expires_at:%Y-%m-%d %H:%M}Z"
        )


@bigquery.command("approve")
@click.argument("approval_id")
@click.option("--by", "decided_by", default=None, help="Who decides (default: the OS user).")
def approve(approval_id: str, decided_by: str | None) -> None:
    """Approve a pending request: the approvals sensor then launches its run, once."""
    from dfx_pipelines.connectors.bigquery.gate import usd

    record = _store().approve(approval_id, _decider(decided_by))
    click.echo(
        f"approved {record.id} ({usd(record.projected_cost_usd)} for {record.partition}); the run starts at the next sensor tick"
    )


@bigquery.command("reject")
@click.argument("approval_id")
@click.option("--by", "decided_by", default=None, help="Who decides (default: the OS user).")
def reject(approval_id: str, decided_by: str | None) -> None:
    """Reject a pending request: nothing runs."""
    record = _store().reject(approval_id, _decider(decided_by))
    click.echo(f"rejected {record.id}: nothing will run for {record.partition}")
