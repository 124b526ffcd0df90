"""`dfx jira connect` (also `dfx connect jira`): connect a Jira Cloud site through OAuth 2.0 (3LO) with
PKCE, or a Data Center server (or a Cloud site with an account email) with a token. Added to the main CLI
through the plugin's `cli_commands()`; project errors become one clear line and exit 2 (the main group
handles them).

The token of a token connection comes from `JIRA_API_TOKEN` or a hidden prompt, never from an argument:
arguments land in shell history and in `ps` output.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import click

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import ConfigError, IdentifierError
from dfx_pipelines.platform.secret_input import accept_secret

TOKEN_ENV = "JIRA_API_TOKEN"


def _parse_boards(boards: tuple[str, ...]) -> list[int]:
    """Board ids exactly as typed: ASCII digits only (`²` passes `str.isdigit()` and then breaks `int()`)."""
    parsed = []
    for board in boards:
        try:
            parsed.append(identifiers.jira_board_id(board))
        except IdentifierError as exc:
            raise ConfigError(f"--board {board!r}: expected a numeric board id ({exc})") from None
    return parsed


def _parse_maps(maps: tuple[str, ...]) -> list[dict[str, str]]:
    """`target=customfield_id`, not trimmed: the registry refuses surrounding whitespace with a clear error."""
    mapper = []
    for spec in maps:
        target, sep, source = spec.partition("=")
        if not sep or not target or not source.startswith("customfield_"):
            raise ConfigError(f"--map {spec!r}: expected target=customfield_id (e.g. story_points=customfield_10016)")
        mapper.append({"target": target, "source": source})
    return mapper


def _loopback(url: str) -> bool:
    from dfx_pipelines.platform.endpoints import is_loopback_url

    return is_loopback_url(url)


@click.group("jira")
def jira() -> None:
    """Jira: connect a Cloud site (OAuth 3LO) or a Data Center server (token)."""


@jira.command("connect")
@click.option("--workspace", "workspace_id", required=True)
@click.option("--id", "connection_id", required=True, help="Slug, also the Dagster partition key (e.g. jira-acme).")
@click.option("--name", "display_name", required=True)
@click.option(
    "--project",
    "projects",
    multiple=True,
    required=True,
    help="Project key to read (repeatable). Nothing else is ever read.",
)
@click.option(
    "--board",
    "boards",
    multiple=True,
    help="Board id for flow and sprint metrics (repeatable); must belong to a selected project.",
)
@click.option(
    "--map",
    "maps",
    multiple=True,
    help="target=customfield_id (repeatable), e.g. story_points=customfield_10016; an SLA field "
    "(sd-sla-field) maps under an sla_ target, e.g. sla_time_to_resolution=customfield_10041.",
)
@click.option("--cloud", is_flag=True, help="Jira Cloud through OAuth 2.0 (3LO): authorize in a browser.")
@click.option(
    "--site-url",
    default=None,
    help="Cloud: the site to connect when the grant covers several (https://acme.atlassian.net).",
)
@click.option("--paste", is_flag=True, help="Cloud: paste the redirect URL instead of running a loopback listener.")
@click.option(
    "--redirect-uri", default=None, help="Cloud with --paste: the callback URL registered in the Atlassian app."
)
@click.option(
    "--port", default=0, help="Cloud: loopback listener port (register http://127.0.0.1:<port>/callback in the app)."
)
@click.option(
    "--base-url",
    default=None,
    help="Data Center (or a Cloud site with --username): the Jira base URL. Token from $JIRA_API_TOKEN or a prompt.",
)
@click.option(
    "--username",
    default=None,
    help="With --base-url: basic auth as this user (a Cloud account email with an API token); without, a personal access token.",
)
@click.option("--reauthorize", is_flag=True, help="Replace the credentials of an existing connection.")
@click.option(
    "--sandbox-url",
    default=None,
    help="Cloud, local sandbox only (see `dfx sandbox serve`): its URL, as Atlassian auth and API origin.",
)
@click.option(
    "--approve-sandbox", is_flag=True, help="Cloud, local sandbox only: complete its consent programmatically."
)
def connect(
    workspace_id: str,
    connection_id: str,
    display_name: str,
    projects: tuple[str, ...],
    boards: tuple[str, ...],
    maps: tuple[str, ...],
    cloud: bool,
    site_url: str | None,
    paste: bool,
    redirect_uri: str | None,
    port: int,
    base_url: str | None,
    username: str | None,
    reauthorize: bool,
    sandbox_url: str | None,
    approve_sandbox: bool,
) -> None:
    """Authorize, check the selected projects and boards against the site, discover its custom fields,
    and register the connection with its credentials encrypted in the vault."""
    import dagster as dg

    from dfx_pipelines.cli import embedded_dagster_home
    from dfx_pipelines.connectors.jira.definitions import jira_resource
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.services import get_platform

    if cloud == bool(base_url):
        raise ConfigError("give either --cloud (OAuth 3LO) or --base-url (token), not both or neither")
    if not cloud and (paste or approve_sandbox or sandbox_url or site_url or redirect_uri):
        raise ConfigError("--paste, --site-url, --redirect-uri and the sandbox options go with --cloud")
    if cloud and username:
        raise ConfigError("--username goes with --base-url (a Cloud API token); --cloud uses OAuth")
    config = {
        "id": connection_id, "workspace_id": workspace_id, "display_name": display_name,
        "selection": {"projects": list(projects), "boards": _parse_boards(boards)}, "field_mapper": _parse_maps(maps),
    }  # fmt: skip
    platform = get_platform()
    resource = jira_resource()
    if cloud:
        connection = _connect_cloud(
            platform, resource, config, site_url, paste, redirect_uri, port, reauthorize, sandbox_url, approve_sandbox
        )
        where = connection.endpoint["site_url"]
    else:
        connection = _connect_token(platform, resource, config, str(base_url), username, reauthorize)
        where = connection.endpoint["api_base"]
    embedded_dagster_home(platform.settings)
    with dg.DagsterInstance.get() as instance:
        sync_partitions(instance, platform.registry, ["jira"])
    selected = ", ".join(connection.selection.projects)
    if connection.selection.boards:
        selected += "; boards " + ", ".join(str(b) for b in connection.selection.boards)
    fields = len(connection.discovered.get("fields") or {})
    credential = "tokens" if connection.endpoint["auth"] == "oauth" else "token"
    click.echo(
        f"connected {connection.id} to {where}: projects {selected}; {fields} custom fields discovered; {credential} encrypted in the vault"
    )


def _connect_cloud(
    platform: Any,
    resource: Any,
    config: dict[str, Any],
    site_url: str | None,
    paste: bool,
    redirect_uri: str | None,
    port: int,
    reauthorize: bool,
    sandbox_url: str | None,
    approve_sandbox: bool,
) -> Any:
    from dfx_pipelines.connectors.jira import auth
    from dfx_pipelines.connectors.jira.connect import connect_jira_cloud
    from dfx_pipelines.connectors.jira.resource import SANDBOX_CLIENT_SECRET
    from dfx_pipelines.connectors.jira.sandbox.server import DEFAULT_REDIRECT_URI

    sandbox_allowed = platform.settings.sandbox_allowed
    if sandbox_url is not None and not (_loopback(sandbox_url) and sandbox_allowed):
        raise ConfigError("--sandbox-url works only with the local sandbox (a loopback URL, not production)")
    if approve_sandbox and (sandbox_url is None or resource.sandbox_ca(platform) is None):
        raise ConfigError(
            "--approve-sandbox works only with the local sandbox (--sandbox-url on loopback, its CA present, not production)"
        )
    auth_url = sandbox_url or auth.ATLASSIAN_AUTH_ORIGIN
    api_origin = sandbox_url or auth.ATLASSIAN_API_ORIGIN
    client_secret = resource.resolved_client_secret() or (SANDBOX_CLIENT_SECRET if sandbox_url else None)
    if not client_secret:
        raise ConfigError("Jira OAuth needs the app's client secret: set JIRA_CLIENT_SECRET (and JIRA_CLIENT_ID)")
    client_secret = accept_secret(client_secret, "the Jira client secret (JIRA_CLIENT_SECRET)")

    receive: Callable[[str], str]
    if approve_sandbox:
        ca = resource.sandbox_ca(platform)
        assert ca is not None  # checked above
        from dfx_pipelines.connectors.jira.sandbox.server import complete_consent

        redirect = DEFAULT_REDIRECT_URI

        def receive(url: str) -> str:
            return complete_consent(url, ca_pem_path=ca)
    else:
        if paste and not redirect_uri:
            raise ConfigError("--paste needs --redirect-uri: the callback URL registered in the Atlassian app")
        from dfx_pipelines.platform.consent import code_receiver

        redirect, receive = code_receiver(paste=paste, paste_redirect_uri=redirect_uri or "", port=port)

    return connect_jira_cloud(
        platform, config=config, session=resource.session(platform), token_session=resource.token_session(platform),
        client_id=resource.resolved_client_id(), client_secret=client_secret, redirect_uri=redirect, receive_code=receive,
        auth_url=auth_url, api_origin=api_origin, site_url=site_url, reauthorize=reauthorize,
    )  # fmt: skip


def _connect_token(
    platform: Any, resource: Any, config: dict[str, Any], base_url: str, username: str | None, reauthorize: bool
) -> Any:
    from dfx_pipelines.connectors.jira.connect import connect_jira_token
    from dfx_pipelines.platform.endpoints import parse_url

    host = parse_url(base_url, what="--base-url").host  # parsed, never prefix-matched; checked in full by connect
    flavour = "cloud" if host.endswith(".atlassian.net") else "datacenter"
    if flavour == "cloud" and not username:
        raise ConfigError("a Cloud site's API token needs --username (the account email); or use --cloud for OAuth")
    from_env = os.environ.get(TOKEN_ENV)
    token = from_env or click.prompt("Jira API token" if username else "Jira personal access token", hide_input=True)
    # Refused, never trimmed: a pasted second line would otherwise ride into the Authorization header.
    token = accept_secret(
        token, f"the Jira token from ${TOKEN_ENV}" if from_env else "the Jira token typed at the prompt"
    )
    credentials = {"username": username, "secret": token} if username else {"personal_access_token": token}
    return connect_jira_token(
        platform,
        config=config,
        session=resource.session(platform),
        base_url=base_url,
        flavour=flavour,
        reauthorize=reauthorize,
        **credentials,
    )
