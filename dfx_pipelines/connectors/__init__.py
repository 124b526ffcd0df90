"""One folder per connector; each may import `dfx_pipelines.platform`, never another connector.

`PLUGIN_MODULES` lists every connector; each module exposes `PLUGIN` (a `platform.plugins.ConnectorPlugin`).
Loaded on demand so importing this package stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dfx_pipelines.platform.plugins import ConnectorPlugin

PLUGIN_MODULES: tuple[str, ...] = (
    "dfx_pipelines.connectors.salesforce.plugin",
    "dfx_pipelines.connectors.jira.plugin",
    "dfx_pipelines.connectors.bigquery.plugin",
)


def plugins() -> list[ConnectorPlugin]:
    return [importlib.import_module(module).PLUGIN for module in PLUGIN_MODULES]


def plugin(kind: str) -> ConnectorPlugin:
    for candidate in plugins():
        if candidate.kind == kind:
            return candidate
    raise KeyError(f"no connector plugin for kind {kind!r}")
