"""The one Definitions of the dfx_pipelines code location: the platform's and each connector's.

Importing this module does no I/O: no database, no vault, no network. Heavy clients are built inside
resources when a run executes.
"""

from __future__ import annotations

import dagster as dg

from dfx_pipelines.connectors.bigquery.definitions import bigquery_definitions
from dfx_pipelines.connectors.jira.definitions import jira_definitions
from dfx_pipelines.connectors.salesforce.definitions import salesforce_definitions
from dfx_pipelines.lifecycle.definitions import lifecycle_definitions
from dfx_pipelines.platform.definitions import platform_definitions
from dfx_pipelines.platform.redaction import install_redaction

install_redaction()  # before any run logs: masks secrets in records as they are created

defs = dg.Definitions.merge(
    platform_definitions(),
    salesforce_definitions(),
    jira_definitions(),
    bigquery_definitions(),
    lifecycle_definitions(),
)
