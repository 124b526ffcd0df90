"""Everything Dagster needs for Salesforce: metric assets, jobs, the CDC sensor, nightly schedules,
write-back, and the resource (client secret from SALESFORCE_CLIENT_SECRET, never a literal)."""

import os

import dagster as dg

from dfx_pipelines.connectors.salesforce.assets import (
    METRIC_ASSETS,
    SOURCE_SPECS,
    salesforce_daily_job,
    salesforce_snapshot_job,
)
from dfx_pipelines.connectors.salesforce.cdc import (
    salesforce_cdc_sensor,
    salesforce_nightly_daily_schedule,
    salesforce_nightly_snapshot_schedule,
)
from dfx_pipelines.connectors.salesforce.resource import SANDBOX_CLIENT_ID, SalesforceResource
from dfx_pipelines.connectors.salesforce.writeback import salesforce_writeback_job


def salesforce_resource() -> SalesforceResource:
    # Reading the environment is not I/O; EnvVar keeps the secret's value out of the UI and run config.
    secret = dg.EnvVar("SALESFORCE_CLIENT_SECRET") if os.environ.get("SALESFORCE_CLIENT_SECRET") else None
    return SalesforceResource(client_id=os.environ.get("SALESFORCE_CLIENT_ID", SANDBOX_CLIENT_ID), client_secret=secret)


def salesforce_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*SOURCE_SPECS, *METRIC_ASSETS],
        jobs=[salesforce_snapshot_job, salesforce_daily_job, salesforce_writeback_job],
        sensors=[salesforce_cdc_sensor],
        schedules=[salesforce_nightly_snapshot_schedule, salesforce_nightly_daily_schedule],
        resources={"salesforce": salesforce_resource()},
    )
