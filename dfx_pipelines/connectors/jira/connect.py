"""Connecting a Jira site: Cloud through OAuth 2.0 (3LO) with PKCE, or Data Center (and Cloud API-token
sites) with a token. Either way, all or nothing:

1. the connection config is parsed first, so a hostile project key or board id is refused before any
   request, and every URL is checked before any credential is sent;
2. the grant's scopes are checked (read-only allowlist) before the token is used for anything;
3. the selected projects and boards must exist and be visible (and each board must belong to a selected
   project, so a board never widens what is read);
4. custom fields are discovered (`/field` → id, name, schema into `connection.discovered`) and the field
   mapper may map only discovered custom fields (an `sla_...` target only, and always, a Service
   Management SLA field, `com.atlassian.servicedesk:sd-sla-field`);
5. the connection row and its secrets are written together (`Registry.add_connection`).
A grant we do not keep is simply dropped: Atlassian offers 3LO apps no revoke endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from dfx_pipelines.connectors.jira import auth, oauth
from dfx_pipelines.connectors.jira.client import JiraClient, StaticCredentials
from dfx_pipelines.connectors.jira.query import (
    EPIC_LINK_PLUGIN,
    SLA_PLUGIN,
    SPRINT_PLUGIN,
    STORY_POINTS_TARGET,
    is_sla_target,
)
from dfx_pipelines.connectors.jira.resource import basic_header, checked_base
from dfx_pipelines.connectors.jira.selection import JiraSelection
from dfx_pipelines.platform.errors import ConfigError, ConnectorError
from dfx_pipelines.platform.registry import Connection, parse_connection
from dfx_pipelines.platform.secret_input import accept_optional_secret, accept_secret, has_control_character
from dfx_pipelines.platform.services import Platform

# Given the authorize URL, return the redirect URL (or its query string) that carries code and state.
CodeReceiver = Callable[[str], str]


def _draft(platform: Platform, config: dict[str, Any], reauthorize: bool) -> tuple[Connection, Connection | None]:
    draft = parse_connection({**config, "kind": "jira"})  # every identifier checked before any request
    existing = platform.registry.find(draft.id)
    if existing is not None and not (reauthorize and existing.is_active and existing.kind == "jira"):
        raise ConfigError(
            f"connection {draft.id!r} already exists"
            + ("" if existing.is_active else f" and is {existing.status.value}")
        )
    if not draft.selection.narrowed(JiraSelection).projects:
        raise ConfigError("a Jira connection needs at least one selected project")
    return draft, existing


def discover(client: JiraClient, draft: Connection) -> dict[str, Any]:
    """Check the selection against the site and discover its custom fields. Raises ConfigError listing
    every problem; returns what goes into `connection.discovered`."""
    problems: list[str] = []
    projects: dict[str, dict[str, str]] = {}
    for key in draft.selection.narrowed(JiraSelection).projects:
        try:
            project = client.project(key)
            projects[key] = {"id": str(project.get("id")), "type": str(project.get("projectTypeKey") or "software")}
        except ConnectorError as exc:
            problems.append(f"project {key} is not visible to this account ({_status(exc)})")
    boards: dict[str, dict[str, str]] = {}
    for board_id in draft.selection.narrowed(JiraSelection).boards:
        try:
            board = client.board(board_id)
        except ConnectorError as exc:
            problems.append(f"board {board_id} is not visible to this account ({_status(exc)})")
            continue
        project_key = str((board.get("location") or {}).get("projectKey") or "")
        if project_key not in draft.selection.narrowed(JiraSelection).projects:
            problems.append(f"board {board_id} belongs to project {project_key or '?'}, which is not selected")
        boards[str(board_id)] = {
            "project": project_key,
            "type": str(board.get("type") or ""),
            "name": str(board.get("name") or ""),
        }
    fields: dict[str, dict[str, Any]] = {
        str(f["id"]): {
            "name": str(f.get("name") or ""),
            "schema": {
                k: v for k, v in (f.get("schema") or {}).items() if k in ("type", "items", "custom", "customId")
            },
        }
        for f in client.fields()
        if f.get("custom")
    }
    for mapping in draft.field_mapper:
        if mapping.source not in fields:
            problems.append(
                f"field mapper {mapping.target} → {mapping.source}: not a custom field discovered on this site"
            )
        elif mapping.target == STORY_POINTS_TARGET and (fields[mapping.source]["schema"].get("type") != "number"):
            problems.append(
                f"story points must map a number field; {mapping.source} is {fields[mapping.source]['schema'].get('type')}"
            )
        elif is_sla_target(mapping.target) != (fields[mapping.source]["schema"].get("custom") == SLA_PLUGIN):
            problems.append(
                f"field mapper {mapping.target} → {mapping.source}: an SLA target (sla_...) must map, and only it may "
                f"map, a Service Management SLA field ({SLA_PLUGIN}); {mapping.source} is "
                f"{fields[mapping.source]['schema'].get('custom') or fields[mapping.source]['schema'].get('type')}"
            )
    if problems:
        raise ConfigError("the selection does not match this Jira site: " + "; ".join(problems))
    discovered: dict[str, Any] = {"fields": fields, "projects": projects, "boards": boards}
    for name, plugin in (("sprint_field", SPRINT_PLUGIN), ("epic_link_field", EPIC_LINK_PLUGIN)):
        found = sorted(fid for fid, meta in fields.items() if meta["schema"].get("custom") == plugin)
        if found:
            discovered[name] = found[0]
    return discovered


def _status(exc: ConnectorError) -> str:
    text = str(exc)
    return text[text.find("HTTP") :].split(" from ")[0] if "HTTP" in text else type(exc).__name__


def _register(
    platform: Platform, connection: Connection, existing: Connection | None, secrets: dict[str, str]
) -> Connection:
    if existing is not None:
        connection.created_at = existing.created_at
        for kind, value in secrets.items():
            platform.vault.put(connection.secret_ref(kind), value)
        return platform.registry.save(connection)
    return platform.registry.add_connection(connection, vault=platform.vault, secrets=secrets)


def connect_jira_cloud(
    platform: Platform,
    *,
    config: dict[str, Any],
    session: requests.Session,
    token_session: requests.Session,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    receive_code: CodeReceiver,
    auth_url: str = auth.ATLASSIAN_AUTH_ORIGIN,
    api_origin: str = auth.ATLASSIAN_API_ORIGIN,
    site_url: str | None = None,
    reauthorize: bool = False,
) -> Connection:
    """Jira Cloud through 3LO. In sandbox mode `auth_url`/`api_origin` are the sandbox's loopback URL."""
    sandbox_allowed = platform.settings.sandbox_allowed
    client_secret = accept_secret(client_secret, "the Jira client secret (JIRA_CLIENT_SECRET)")
    auth_url = auth.check_atlassian_origin(
        auth_url, auth.ATLASSIAN_AUTH_ORIGIN, sandbox_allowed=sandbox_allowed, what="Atlassian auth URL"
    )
    api_origin = auth.check_atlassian_origin(
        api_origin, auth.ATLASSIAN_API_ORIGIN, sandbox_allowed=sandbox_allowed, what="Atlassian API URL"
    )
    draft, existing = _draft(platform, config, reauthorize)
    request = oauth.AuthorizationRequest.start(auth_url, client_id, redirect_uri)
    code = request.code_from_redirect(receive_code(request.url))
    tokens = oauth.exchange_code(
        token_session, request, code, client_secret=client_secret, sandbox_allowed=sandbox_allowed
    )
    oauth_scopes = auth.check_scopes(tokens.scopes)  # before the token is used for anything
    if tokens.refresh_token is None:
        raise ConfigError("Atlassian returned no refresh token: the app must request offline_access")
    access = tokens.access_token.get_secret_value()
    resources = oauth.accessible_resources(token_session, api_origin, access, sandbox_allowed=sandbox_allowed)
    cloud_id, resolved_site = oauth.pick_cloud_id(resources, site_url)
    endpoint = {
        "flavour": "cloud", "auth": "oauth", "auth_url": auth_url, "api_origin": api_origin, "cloud_id": cloud_id,
        "api_base": f"{api_origin}/ex/jira/{cloud_id}", "site_url": resolved_site, "scopes": sorted(oauth_scopes),
    }  # fmt: skip
    base = checked_base(endpoint, draft.settings, sandbox_allowed=sandbox_allowed)
    client = JiraClient(session, base, "cloud", StaticCredentials(f"Bearer {access}"))
    discovered = discover(client, draft)
    connection = parse_connection({**draft.model_dump(mode="json"), "endpoint": endpoint, "discovered": discovered})
    secrets = {"oauth_access_token": access, "oauth_refresh_token": tokens.refresh_token.get_secret_value()}
    return _register(platform, connection, existing, secrets)


def connect_jira_token(
    platform: Platform,
    *,
    config: dict[str, Any],
    session: requests.Session,
    base_url: str,
    flavour: str = "datacenter",
    personal_access_token: str | None = None,
    username: str | None = None,
    secret: str | None = None,
    reauthorize: bool = False,
) -> Connection:
    """Data Center with a personal access token (Bearer) or basic auth; or a Cloud site with an account
    email and API token (basic auth, `flavour="cloud"`, only to *.atlassian.net)."""
    draft, existing = _draft(platform, config, reauthorize)
    personal_access_token = accept_optional_secret(personal_access_token, "the Jira personal access token")
    secret = accept_optional_secret(secret, "the Jira API token")
    if username is not None and (has_control_character(username) or ":" in username or username != username.strip()):
        raise ConfigError("the Jira username must be one line without ':' or surrounding whitespace")
    if personal_access_token and flavour == "datacenter":
        mode, header, secrets = "pat", f"Bearer {personal_access_token}", {"api_token": personal_access_token}
    elif username and secret:
        mode, header, secrets = "basic", basic_header(username, secret), {"basic_auth": f"{username}:{secret}"}
    else:
        raise ConfigError("give a personal access token (Data Center) or a username and secret (basic auth)")
    endpoint = {"flavour": flavour, "auth": mode, "api_base": base_url.rstrip("/")}
    base = checked_base(
        endpoint, draft.settings, sandbox_allowed=platform.settings.sandbox_allowed
    )  # before the token is sent
    client = JiraClient(session, base, flavour, StaticCredentials(header))
    discovered = discover(client, draft)
    connection = parse_connection(
        {**draft.model_dump(mode="json"), "endpoint": {**endpoint, "api_base": base}, "discovered": discovered}
    )
    return _register(platform, connection, existing, secrets)
