"""`dfx postgres connect …` (also `dfx connect postgres`): a database by host/port/database/role or a DSN,
the password from `DFX_POSTGRES_PASSWORD` or a hidden prompt — never an argument (it would sit in the
shell history and the process list) — or a client certificate and its key file (`--client-cert`, `--client-key`). Project errors become one clear line (the main group handles them)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from dfx_pipelines.connectors.postgres.selection import PostgresSelection
from dfx_pipelines.platform.cli_input import BoundedAmount, read_json_file
from dfx_pipelines.platform.errors import ConfigError

PASSWORD_ENV = "DFX_POSTGRES_PASSWORD"
PLAN_COST = BoundedAmount(0, 1e12, allow_minimum=False)


def parse_selects(selects: tuple[str, ...]) -> dict[str, list[str]]:
    schemas: dict[str, list[str]] = {}
    for spec in selects:
        schema, sep, tables = spec.partition(":")
        if not sep or not tables:
            raise ConfigError(f"--select {spec!r}: expected schema:table1,table2")
        schemas.setdefault(schema, []).extend(t for t in tables.split(",") if t)
    return schemas


def parse_columns(narrows: tuple[str, ...]) -> dict[str, list[str]]:
    objects: dict[str, list[str]] = {}
    for spec in narrows:
        table, sep, columns = spec.partition(":")
        if not sep or not columns or "." not in table:
            raise ConfigError(f"--columns {spec!r}: expected schema.table:column1,column2")
        objects.setdefault(table, []).extend(c for c in columns.split(",") if c)
    return objects


@click.group("postgres")
def postgres() -> None:
    """PostgreSQL: connect a database with a read-only role."""


@postgres.command("connect")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--id", "connection_id", required=True, help="Slug, also the Dagster partition key (e.g. pg-acme).")
@click.option("--name", "display_name", required=True)
@click.option(
    "--dsn", default=None, help="postgresql://role@host:port/database[?sslmode=verify-full] (no password in it)."
)
@click.option("--host", default=None)
@click.option("--port", type=click.IntRange(1, 65535), default=5432, show_default=True)
@click.option("--database", default=None)
@click.option("--user", default=None, help="The read-only login role.")
@click.option("--sslmode", default="verify-full", show_default=True, help="Only verify-full to a customer host.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The server's CA (PEM); default: system roots.",
)
@click.option(
    "--select",
    "selects",
    multiple=True,
    required=True,
    help="schema:table1,view2 (repeatable). Only these are ever queried.",
)
@click.option(
    "--columns", "narrows", multiple=True, help="schema.table:col1,col2 narrows a table to these columns (repeatable)."
)
@click.option(
    "--metric-specs", "specs_file", type=click.Path(exists=True, dir_okay=False), help="JSON list of metric specs."
)
@click.option(
    "--change-tracking",
    "tracking_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON list: table, watermark_column, time_column, key_column.",
)
@click.option(
    "--max-plan-cost", type=PLAN_COST, default=None, help="EXPLAIN cost ceiling per query (default 5,000,000)."
)
@click.option(
    "--max-plan-rows", type=click.IntRange(1), default=None, help="Rows a query's scans may read (default 50,000,000)."
)
@click.option("--statement-timeout-ms", type=click.IntRange(100, 3_600_000), default=None, help="Default 60000.")
@click.option(
    "--client-cert",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Log in with this client certificate (PEM) instead of a password.",
)
@click.option(
    "--client-key",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="The client certificate's private key (PEM, unencrypted): read into memory, encrypted into the vault.",
)
@click.option("--allow-private-address", is_flag=True, help="The database is on the customer's private network.")
@click.option("--replace-password", is_flag=True, help="Replace the password of an existing connection.")
def connect(
    workspace_id: str, connection_id: str, display_name: str, dsn: str | None, host: str | None, port: int,
    database: str | None, user: str | None, sslmode: str, ca_file: str | None, selects: tuple[str, ...],
    narrows: tuple[str, ...], specs_file: str | None, tracking_file: str | None, max_plan_cost: float | None,
    max_plan_rows: int | None, statement_timeout_ms: int | None, client_cert: str | None, client_key: str | None,
    allow_private_address: bool, replace_password: bool,
) -> None:  # fmt: skip
    """Check the role's privileges and the selection against the database, store the password encrypted."""
    import dagster as dg

    from dfx_pipelines.cli import embedded_dagster_home
    from dfx_pipelines.connectors.postgres.connect import connect_postgres, parse_dsn
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.services import get_platform

    if dsn and (host or database or user):
        raise ConfigError("give either --dsn or --host/--database/--user, not both")
    endpoint: dict[str, Any] = (
        parse_dsn(dsn) if dsn else {"host": host, "port": port, "database": database, "user": user}
    )
    endpoint.setdefault("sslmode", sslmode)
    if ca_file:
        endpoint["ca_pem"] = Path(ca_file).read_text()
    for name, value in (
        ("max_plan_cost", max_plan_cost),
        ("max_plan_rows", max_plan_rows),
        ("statement_timeout_ms", statement_timeout_ms),
    ):
        if value is not None:
            endpoint[name] = value
    endpoint["metric_specs"] = read_json_file(specs_file, "--metric-specs") if specs_file else []
    endpoint["change_tracking"] = read_json_file(tracking_file, "--change-tracking") if tracking_file else []
    config = {
        "id": connection_id,
        "workspace_id": workspace_id,
        "display_name": display_name,
        "selection": {"schemas": parse_selects(selects), "objects": parse_columns(narrows)},
        "settings": {"allow_private_address": allow_private_address},
        "endpoint": endpoint,
    }
    password = os.environ.get(PASSWORD_ENV) or click.prompt(
        f"PostgreSQL password of role {endpoint.get('user')}", hide_input=True
    )
    platform = get_platform()
    connection = connect_postgres(platform, config=config, password=password, replace_password=replace_password)
    embedded_dagster_home(platform.settings)
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, platform.registry, ["postgres"])
    tables = ", ".join(
        f"{s}.{t}" for s, ts in connection.selection.narrowed(PostgresSelection).schemas.items() for t in ts
    )
    click.echo(
        f"connected {connection.id} to {connection.endpoint['database']} on {connection.endpoint['host']} as "
        f"{connection.endpoint['user']} (read-only, least privilege checked): {tables}; password encrypted in the vault"
    )
