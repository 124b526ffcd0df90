"""One folder per connector; each may import `dfx_pipelines.platform`, never another connector.

A connector is registered by one line: its plugin module's path in `PLUGIN_MODULES` (the module exposes
`PLUGIN`, a `platform.plugins.ConnectorPlugin`). A connector outside this repository is registered by
`DFX_CONNECTOR_MODULES` instead. Everything else — the root Definitions, the registry's selection and
write-back rules, the CLI, the demo, the lifecycle — asks `platform.catalogue`, which reads this list.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dfx_pipelines.platform import catalogue

if TYPE_CHECKING:
    from dfx_pipelines.platform.plugins import ConnectorPlugin

PLUGIN_MODULES: tuple[str, ...] = (
    "dfx_pipelines.connectors.salesforce.plugin",
    "dfx_pipelines.connectors.jira.plugin",
    "dfx_pipelines.connectors.bigquery.plugin",
    "dfx_pipelines.connectors.postgres.plugin",
)


def plugins() -> list[ConnectorPlugin]:
    """Every registered connector: the built-in ones, then those `DFX_CONNECTOR_MODULES` adds."""
    return catalogue.plugins()


def plugin(kind: str) -> ConnectorPlugin:
    return catalogue.plugin(kind)
