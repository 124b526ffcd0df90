"""The connector catalogue: where the platform finds every connector without importing one.

A connector is registered by one module path: a module exposing `PLUGIN`, an instance of
`platform.plugins.ConnectorPlugin`. The built-in paths are listed once, in
`dfx_pipelines.connectors.PLUGIN_MODULES`; `DFX_CONNECTOR_MODULES` (comma-separated module paths) adds
connectors that live outside this repository. Everything that works per connector kind (the registry's
selection and write-back rules, the root Definitions, the CLI, the demo, the lifecycle and deletion)
asks this catalogue, so adding a connector edits no platform file.

The platform names no connector: it reads the module paths and loads them with `importlib`. A plugin
module is cheap to import (it declares; its Dagster definitions are built only when asked), so the
registry can validate a connection without loading Dagster.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from dfx_pipelines.platform.errors import ConfigError

if TYPE_CHECKING:
    from dfx_pipelines.platform.plugins import ConnectorPlugin

MODULES_VARIABLE = "DFX_CONNECTOR_MODULES"
BUILTIN_LIST = "dfx_pipelines.connectors"  # the package whose PLUGIN_MODULES lists the built-in connectors
# A kind names partitions (`<kind>_connections`), asset key prefixes and CLI commands.
_KIND = re.compile(r"[a-z][a-z0-9_]{0,30}")
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def module_paths(environ: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The built-in plugin modules, then those `DFX_CONNECTOR_MODULES` adds (duplicates once)."""
    builtin = tuple(importlib.import_module(BUILTIN_LIST).PLUGIN_MODULES)
    environ = os.environ if environ is None else environ
    extra = []
    for entry in environ.get(MODULES_VARIABLE, "").split(","):
        if not entry.strip():
            continue
        if not _MODULE.fullmatch(entry.strip()):
            raise ConfigError(f"{MODULES_VARIABLE}: {entry!r} is not a Python module path")
        extra.append(entry.strip())
    return tuple(dict.fromkeys((*builtin, *extra)))


def _load(module_path: str) -> ConnectorPlugin:
    from dfx_pipelines.platform.plugins import ConnectorPlugin

    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"connector module {module_path!r} cannot be imported: {exc}") from None
    found = getattr(module, "PLUGIN", None)  # the one name a plugin module must define
    if not isinstance(found, ConnectorPlugin):
        raise ConfigError(f"connector module {module_path!r} must define PLUGIN, a ConnectorPlugin instance")
    if not isinstance(found.kind, str) or not _KIND.fullmatch(found.kind):
        raise ConfigError(f"connector module {module_path!r}: kind {found.kind!r} must match {_KIND.pattern}")
    return found


def plugins(environ: Mapping[str, str] | None = None) -> list[ConnectorPlugin]:
    """Every registered connector, in registration order; one plugin per kind."""
    found: dict[str, ConnectorPlugin] = {}
    for path in module_paths(environ):
        plugin = _load(path)
        if plugin.kind in found and found[plugin.kind] is not plugin:
            raise ConfigError(f"two connector modules register the kind {plugin.kind!r}")
        found[plugin.kind] = plugin
    return list(found.values())


def kinds(environ: Mapping[str, str] | None = None) -> list[str]:
    return sorted(p.kind for p in plugins(environ))


def find(kind: str, environ: Mapping[str, str] | None = None) -> ConnectorPlugin | None:
    return next((p for p in plugins(environ) if p.kind == kind), None)


def plugin(kind: str, environ: Mapping[str, str] | None = None) -> ConnectorPlugin:
    found = find(kind, environ)
    if found is None:
        raise KeyError(f"no connector plugin for kind {kind!r}")
    return found
