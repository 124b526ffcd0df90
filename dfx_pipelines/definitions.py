"""The one Definitions of the dfx_pipelines code location: the platform's, every registered connector's
(each plugin's `definitions()`), and the lifecycle's.

Built with `dg.Definitions.merge` over the plugins rather than the `dg` / `load_defs` folder convention:
the plugin list (`platform.catalogue`: `connectors.PLUGIN_MODULES` plus `DFX_CONNECTOR_MODULES`) is
also what the CLI, the demo, the registry's validation and the lifecycle's deletion iterate, so one
registration serves them all; and registration by module path admits connectors that live outside this
package's folder tree, which a folder scan would not see.

Importing this module does no I/O: no database, no vault, no network. Heavy clients are built inside
resources when a run executes.
"""

from __future__ import annotations

import dagster as dg

from dfx_pipelines.lifecycle.definitions import lifecycle_definitions
from dfx_pipelines.platform import catalogue
from dfx_pipelines.platform.definitions import platform_definitions
from dfx_pipelines.platform.redaction import install_redaction

install_redaction()  # before any run logs: masks secrets in records as they are created

defs = dg.Definitions.merge(
    platform_definitions(),
    *(plugin.definitions() for plugin in catalogue.plugins()),
    lifecycle_definitions(),
)
