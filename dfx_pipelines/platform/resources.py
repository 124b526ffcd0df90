"""The platform as a Dagster resource: registry, metric store and vault for the assets that need them.

No secret is configured here: the master key comes from DFX_MASTER_KEY (or the embedded default's
generated key file) and never appears in run config. The metric database URL may carry a password, so
production passes it as `EnvVar("DFX_METRICS_DB_URL")`.
"""

from __future__ import annotations

import os

import dagster as dg
from pydantic import PrivateAttr

from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.errors import ConnectionInactiveError
from dfx_pipelines.platform.redaction import install_redaction
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.restrictions import restricted_workspace_ids
from dfx_pipelines.platform.services import Platform, get_platform
from dfx_pipelines.platform.settings import Settings


class PlatformResource(dg.ConfigurableResource):
    """Registry, metric store and vault. Fields left unset fall back to DFX_* environment variables."""

    metrics_db_url: str | None = None
    home: str | None = None

    _platform: Platform | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        install_redaction()

    def get(self) -> Platform:
        if self._platform is None:
            # The configured fields stand in for their environment variables *before* anything is derived
            # from them: a resource given only `home` keeps its metric database, vault and master key in
            # that home, not in the one DFX_HOME names (an explicit DFX_VAULT_DIR still wins, as always).
            environ = dict(os.environ)
            home, metrics_db_url = resolved(self.home), resolved(self.metrics_db_url)  # EnvVars too, outside a run
            if home:
                environ["DFX_HOME"] = str(home)
            if metrics_db_url:
                environ["DFX_METRICS_DB_URL"] = str(metrics_db_url)
            self._platform = get_platform(Settings.from_env(environ))
        return self._platform

    def active_connection(self, connection_id: str, kind: str) -> Connection:
        """The connection a run is for, refusing (before any network call) one that is not active."""
        connection = self.get().registry.get(connection_id)
        if connection.kind != kind:
            raise ConnectionInactiveError(f"connection {connection_id!r} is a {connection.kind} connection, not {kind}")
        if not connection.is_active:
            raise ConnectionInactiveError(
                f"connection {connection_id!r} is {connection.status.value}: no data is read from it"
            )
        if connection.workspace_id in restricted_workspace_ids(self.get().engine):
            raise ConnectionInactiveError(
                f"connection {connection_id!r} belongs to workspace {connection.workspace_id!r}, whose owner "
                "restricted processing (a data-subject request): no data is read from it"
            )
        return connection
