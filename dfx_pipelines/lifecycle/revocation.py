"""Revoking and removing a connection, at once: revoke at the provider where it can, destroy the
stored credentials and the connection's data key, mark the connection, and write the audit.

From that moment sensors and schedules skip the connection (they list active connections only) and a
run launched for it fails at its first step without any network call (`PlatformResource.active_connection`).
Removal additionally starts the deletion clock: cached data goes within the grace period. Closing a
workspace (the customer's account) removes all of its connections at once.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from dfx_pipelines.lifecycle import audit
from dfx_pipelines.platform.errors import DfxError
from dfx_pipelines.platform.plugins import ConnectorPlugin
from dfx_pipelines.platform.registry import ConnectionStatus
from dfx_pipelines.platform.services import Platform

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RevocationReport:
    connection_id: str
    status: str
    already: bool  # nothing to do: it was revoked (or removed) before
    provider_revoked: bool
    provider_detail: str
    data_key_id: str | None
    secrets_deleted: int

    def summary(self) -> str:
        if self.already:
            return f"{self.connection_id} was already {self.status}; credentials were destroyed then"
        key = f"data key {self.data_key_id} destroyed" if self.data_key_id else "no data key was left"
        return (
            f"{self.connection_id} {self.status}: {self.provider_detail}; {key}, {self.secrets_deleted} secrets deleted"
        )


def revoke_connection(
    platform: Platform, plugin: ConnectorPlugin, connection_id: str, *, remove: bool, actor: str
) -> RevocationReport:
    """Revoke (or remove) a connection. Safe to repeat: a second call reports what was done before.
    Unknown ids raise `UnknownConnectionError`."""
    connection = platform.registry.get(connection_id)
    target = ConnectionStatus.REMOVED if remove else ConnectionStatus.REVOKED
    if connection.status in (ConnectionStatus.REMOVED, ConnectionStatus.DELETED) or (connection.status is target):
        return RevocationReport(connection.id, connection.status.value, True, False, "", None, 0)
    if connection.status is ConnectionStatus.REVOKED:  # revoked earlier, now removed: credentials are gone
        platform.registry.set_status(connection.id, target)
        audit.record(platform.engine, "remove", connection, actor, {"after_revoke": True})
        return RevocationReport(
            connection.id, target.value, False, False, "credentials were destroyed at revocation", None, 0
        )
    # Provider first, while we still hold the token; a provider failure must not keep our copy alive.
    try:
        provider = plugin.revoke_at_provider(platform, connection)
        provider_revoked, provider_detail = provider.provider_revoked, provider.detail
    except DfxError as exc:
        provider_revoked, provider_detail, provider_failed = False, f"provider revocation failed ({exc})", True
    else:
        provider_failed = False
    receipt = platform.vault.destroy_connection(connection.workspace_id, connection.id)
    if provider_failed:
        # Say what was actually done locally, after doing it: not a promise made before the attempt.
        destroyed = receipt.data_key_id is not None or receipt.secrets_deleted > 0
        local = (
            f"local credentials destroyed anyway ({receipt.secrets_deleted} secrets, data key {receipt.data_key_id or 'none'})"
            if destroyed
            else "no credentials were held locally, so nothing was destroyed"
        )
        provider_detail = f"{provider_detail}; {local}"
        log.warning("%s: %s", connection.id, provider_detail)
    platform.registry.set_status(connection.id, target)
    details = {
        "provider_revoked": provider_revoked,
        "provider_detail": provider_detail,
        "data_key_id": receipt.data_key_id,
        "secrets_deleted": receipt.secrets_deleted,
    }
    audit.record(platform.engine, "remove" if remove else "revoke", connection, actor, details)
    return RevocationReport(
        connection.id,
        target.value,
        False,
        provider_revoked,
        provider_detail,
        receipt.data_key_id,
        receipt.secrets_deleted,
    )


@dataclass(frozen=True)
class ClosureReport:
    workspace_id: str
    closed_at: datetime
    already: bool  # closed before; connections still active (none should be) were removed now
    removed: tuple[RevocationReport, ...]

    def summary(self) -> str:
        state = "was already closed" if self.already else "closed"
        return f"workspace {self.workspace_id} {state} ({self.closed_at:%Y-%m-%d %H:%M} UTC); " + (
            f"{len(self.removed)} connections removed: " + ", ".join(r.connection_id for r in self.removed)
            if self.removed
            else "no connection left to remove"
        )


def close_workspace(
    platform: Platform, workspace_id: str, plugin_for: Callable[[str], ConnectorPlugin], *, actor: str
) -> ClosureReport:
    """Account closure: the workspace is marked closed (no connection can be added to it again) and
    every connection it still has is removed at once, as `remove` does one by one, so the credentials die
    now and the deletion job erases the cached data within the grace period. Safe to repeat."""
    before = platform.registry.get_workspace(workspace_id)
    closed = platform.registry.close_workspace(workspace_id)
    connections = platform.registry.list(
        workspace_id=workspace_id, statuses=[ConnectionStatus.ACTIVE, ConnectionStatus.REVOKED]
    )
    removed = tuple(
        revoke_connection(platform, plugin_for(c.kind), c.id, remove=True, actor=actor) for c in connections
    )
    assert closed.closed_at is not None
    return ClosureReport(workspace_id, closed.closed_at, before.closed_at is not None, removed)
