"""Connecting a Salesforce org: OAuth with PKCE, the selection checked against describe, and the
connection registered with its tokens encrypted — all or nothing.

The authorization code reaches us through a `CodeReceiver`: a loopback redirect listener for a person
at a browser, a pasted redirect URL, or (sandbox and tests) the sandbox's programmatic consent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import SalesforceError

from dfx_pipelines.connectors.salesforce import oauth
from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection
from dfx_pipelines.platform.errors import ConfigError, DfxError
from dfx_pipelines.platform.http import translate_errors
from dfx_pipelines.platform.registry import Connection, parse_connection
from dfx_pipelines.platform.secret_input import accept_optional_secret
from dfx_pipelines.platform.services import Platform

# Given the authorize URL, return the redirect URL (or its query string) that carries code and state.
CodeReceiver = Callable[[str], str]


def describe_selection_problems(
    describe_global: dict[str, Any], describe: Callable[[str], dict[str, Any]], selection: SalesforceSelection
) -> list[str]:
    """Every problem with a selection, checked against the org's own describe metadata."""
    objects = {item["name"]: item for item in describe_global.get("sobjects", [])}
    problems: list[str] = []
    described: dict[str, dict[str, Any]] = {}

    def fields_of(name: str) -> dict[str, dict[str, Any]]:
        if name not in described:
            described[name] = {f["name"]: f for f in describe(name).get("fields", [])}
        return described[name]

    for obj, fields in selection.objects.items():
        meta = objects.get(obj)
        if meta is None:
            problems.append(f"object {obj} does not exist in this org")
            continue
        if not meta.get("queryable", False):
            problems.append(f"object {obj} is not queryable")
            continue
        own = fields_of(obj)
        for path in fields:
            head, _, rest = path.partition(".")
            if not rest:
                if head not in own:
                    problems.append(f"field {obj}.{head} does not exist")
                continue
            reference = next((f for f in own.values() if f.get("relationshipName") == head), None)
            if reference is None or not reference.get("referenceTo"):
                problems.append(f"{obj}.{path}: {head} is not a relationship of {obj}")
                continue
            target = reference["referenceTo"][0]
            if "." in rest:
                problems.append(f"{obj}.{path}: only one relationship level is supported")
            elif rest not in fields_of(target):
                problems.append(f"{obj}.{path}: field {rest} does not exist on {target}")
    return problems


def writeback_problems(describe: Callable[[str], dict[str, Any]], connection: Connection) -> list[str]:
    problems = []
    for designation in connection.write_back:
        fields = {f["name"]: f for f in describe(designation.object).get("fields", [])}
        meta = fields.get(designation.field)
        if meta is None:
            problems.append(f"write-back field {designation.object}.{designation.field} does not exist")
        elif not meta.get("updateable", False):
            problems.append(
                f"write-back field {designation.object}.{designation.field} is not updateable in Salesforce"
            )
    return problems


def connect_salesforce(
    platform: Platform,
    session: requests.Session,
    *,
    config: dict[str, Any],
    login_url: str,
    client_id: str,
    client_secret: str | None,
    redirect_uri: str,
    receive_code: CodeReceiver,
    api_version: str = "59.0",
    reauthorize: bool = False,
) -> Connection:
    """Run the whole connect flow. `config` is the connection (id, workspace_id, display_name,
    selection, field_mapper, write_back, settings) without endpoint or secrets. With `reauthorize`, an
    existing active connection of that id gets new tokens and endpoint (its history is kept)."""
    sandbox_allowed = platform.settings.sandbox_allowed
    client_secret = accept_optional_secret(client_secret, "the Salesforce client secret (SALESFORCE_CLIENT_SECRET)")
    login_url = oauth.validate_salesforce_url(login_url, sandbox_allowed=sandbox_allowed, what="login URL")
    draft = parse_connection({**config, "kind": "salesforce"})  # every identifier checked before any request
    existing = platform.registry.find(draft.id)
    if existing is not None and not (reauthorize and existing.is_active and existing.kind == "salesforce"):
        raise ConfigError(
            f"connection {draft.id!r} already exists"
            + ("" if existing.is_active else f" and is {existing.status.value}")
        )
    if not draft.selection.narrowed(SalesforceSelection).objects:
        raise ConfigError("a Salesforce connection needs at least one selected object")
    request = oauth.AuthorizationRequest.start(login_url, client_id, redirect_uri)
    code = request.code_from_redirect(receive_code(request.url))
    tokens = oauth.exchange_code(session, request, code, client_secret=client_secret, sandbox_allowed=sandbox_allowed)
    try:
        oauth.check_grant(tokens, request, sandbox_allowed=sandbox_allowed)
        connection = parse_connection(
            {
                **draft.model_dump(mode="json"),
                "endpoint": {
                    "instance_url": tokens.instance_url,
                    "login_url": request.login_url,
                    "api_version": api_version,
                },
            }
        )
        sf = Salesforce(
            instance_url=tokens.instance_url,
            session_id=tokens.access_token.get_secret_value(),
            session=session,
            version=api_version,
        )
        try:
            with translate_errors("Salesforce describe"):
                problems = describe_selection_problems(
                    sf.describe() or {},
                    lambda name: getattr(sf, name).describe(),
                    connection.selection.narrowed(SalesforceSelection),
                )
                problems += writeback_problems(lambda name: getattr(sf, name).describe(), connection)
        except SalesforceError as exc:
            raise ConfigError(f"could not describe the selected objects: HTTP {getattr(exc, 'status', '?')}") from None
        if problems:
            raise ConfigError("the selection does not match this org: " + "; ".join(problems))
        assert tokens.refresh_token is not None
        if existing is not None:
            connection.created_at = existing.created_at
            platform.vault.put(connection.secret_ref("oauth_refresh_token"), tokens.refresh_token.get_secret_value())
            platform.vault.put(connection.secret_ref("oauth_access_token"), tokens.access_token.get_secret_value())
            return platform.registry.save(connection)
        return platform.registry.add_connection(
            connection,
            vault=platform.vault,
            secrets={
                "oauth_access_token": tokens.access_token.get_secret_value(),
                "oauth_refresh_token": tokens.refresh_token.get_secret_value(),
            },
        )
    except Exception:
        # Nothing half-done: a token we will not keep is revoked at Salesforce.
        if tokens.refresh_token is not None:
            try:
                oauth.revoke_token(
                    session, login_url, tokens.refresh_token.get_secret_value(), sandbox_allowed=sandbox_allowed
                )
            except DfxError:
                pass
        raise
