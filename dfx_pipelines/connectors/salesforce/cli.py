"""`dfx salesforce connect` (also `dfx connect salesforce`): authorize a Salesforce org with OAuth 2.0 +
PKCE and register the connection with its selection and write-back fields. Added to the main CLI
through the plugin's `cli_commands()`; project errors become one clear line and exit 2 (the main group
handles them)."""

from __future__ import annotations

import re

import click

from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection
from dfx_pipelines.platform.errors import ConfigError


def _parse_selection(specs: tuple[str, ...], selection_file: str | None) -> dict[str, list[str]]:
    from dfx_pipelines.platform.cli_input import read_json_file

    objects: dict[str, list[str]] = {}
    if selection_file:
        loaded = read_json_file(selection_file, "--selection-file")
        if not isinstance(loaded, dict):
            raise ConfigError(f"{selection_file} must hold a JSON object of object name -> list of fields")
        objects.update(loaded)
    for spec in specs:
        obj, sep, fields = spec.partition(":")
        if not sep or not fields:
            raise ConfigError(f"--select {spec!r}: expected Object:Field1,Field2")
        objects.setdefault(obj, []).extend(f for f in fields.split(",") if f)
    return objects


def _parse_write_back(specs: tuple[str, ...]) -> list[dict[str, str]]:
    designations = []
    for spec in specs:
        match = re.fullmatch(r"([^.=]+)\.([^=]+)=([^.]+)\.([^@]+)@(.+)", spec)
        if not match:
            raise ConfigError(f"--write-back {spec!r}: expected Object.Field=metric.measure@record_dimension")
        obj, field, metric, measure, dimension = match.groups()
        designations.append(
            {"object": obj, "field": field, "metric": metric, "measure": measure, "record_dimension": dimension}
        )
    return designations


@click.group("salesforce")
def salesforce() -> None:
    """Salesforce: connect an org (OAuth 2.0 + PKCE)."""


@salesforce.command("connect")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--id", "connection_id", required=True, help="Slug, also the Dagster partition key (e.g. sf-acme).")
@click.option("--name", "display_name", required=True)
@click.option(
    "--login-url",
    default="https://login.salesforce.com",
    show_default=True,
    help="test.salesforce.com for a Salesforce sandbox org; the dfx sandbox URL for the local one.",
)
@click.option("--select", "selects", multiple=True, help="Object:Field1,Field2 (repeatable).")
@click.option("--selection-file", type=click.Path(exists=True, dir_okay=False), help="JSON: object -> fields.")
@click.option(
    "--write-back", "write_backs", multiple=True, help="Object.Field=metric.measure@record_dimension (repeatable)."
)
@click.option("--paste", is_flag=True, help="Paste the redirect URL instead of running a loopback listener.")
@click.option(
    "--port", default=0, help="Loopback listener port (register http://127.0.0.1:<port>/callback in the connected app)."
)
@click.option("--reauthorize", is_flag=True, help="Replace the tokens of an existing connection.")
@click.option(
    "--approve-sandbox",
    is_flag=True,
    help="Local sandbox only (see `dfx sandbox serve`): complete its consent programmatically.",
)
def connect(
    workspace_id: str,
    connection_id: str,
    display_name: str,
    login_url: str,
    selects: tuple[str, ...],
    selection_file: str | None,
    write_backs: tuple[str, ...],
    paste: bool,
    port: int,
    reauthorize: bool,
    approve_sandbox: bool,
) -> None:
    """Authorize with OAuth 2.0 + PKCE and register the connection with its selection."""
    import dagster as dg

    from dfx_pipelines.cli import embedded_dagster_home
    from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
    from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource
    from dfx_pipelines.connectors.salesforce.oauth import validate_salesforce_url
    from dfx_pipelines.platform.consent import code_receiver
    from dfx_pipelines.platform.endpoints import is_loopback_url
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.services import get_platform

    platform = get_platform()
    resource = salesforce_resource()
    session = resource.session(platform)
    config = {
        "id": connection_id,
        "workspace_id": workspace_id,
        "display_name": display_name,
        "selection": {"objects": _parse_selection(selects, selection_file)},
        "write_back": _parse_write_back(write_backs),
    }
    if approve_sandbox and (
        not is_loopback_url(login_url) or not platform.settings.sandbox_allowed
    ):  # parsed host, not a prefix
        raise ConfigError("--approve-sandbox works only with the local sandbox (loopback login URL, not production)")
    # Parsed, resolved and rebuilt before anything uses it.
    login_url = validate_salesforce_url(
        login_url, sandbox_allowed=platform.settings.sandbox_allowed, what="--login-url"
    )
    if approve_sandbox:
        from dfx_pipelines.connectors.salesforce.sandbox import complete_authorization

        redirect_uri, receive = "https://localhost/oauth/callback", (lambda url: complete_authorization(session, url))
    else:
        redirect_uri, receive = code_receiver(
            paste=paste, paste_redirect_uri="https://localhost/oauth/callback", port=port
        )

    connection = connect_salesforce(
        platform,
        session,
        config=config,
        login_url=login_url,
        client_id=resource.resolved_client_id(),
        client_secret=resource.resolved_client_secret(),
        redirect_uri=redirect_uri,
        receive_code=receive,
        reauthorize=reauthorize,
    )
    embedded_dagster_home(platform.settings)
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, platform.registry, ["salesforce"])
    selected = ", ".join(
        f"{obj} ({len(fields)} fields)"
        for obj, fields in connection.selection.narrowed(SalesforceSelection).objects.items()
    )
    click.echo(
        f"connected {connection.id} to {connection.endpoint['instance_url']}: {selected}; tokens encrypted in the vault"
    )
