"""Everything Dagster needs for Jira: metric assets, jobs, the incremental sync sensor, nightly schedules,
and the resource (OAuth client secret from JIRA_CLIENT_SECRET as an EnvVar, never a literal)."""

import os

import dagster as dg

from dfx_pipelines.connectors.jira.assets import METRIC_ASSETS, SOURCE_SPECS, jira_daily_job, jira_snapshot_job
from dfx_pipelines.connectors.jira.resource import SANDBOX_CLIENT_ID, JiraResource
from dfx_pipelines.connectors.jira.sensors import (
    jira_nightly_daily_schedule,
    jira_nightly_snapshot_schedule,
    jira_sync_sensor,
)


def jira_resource() -> JiraResource:
    # Reading the environment is not I/O; EnvVar keeps the secret's value out of the UI and run config.
    secret = dg.EnvVar("JIRA_CLIENT_SECRET") if os.environ.get("JIRA_CLIENT_SECRET") else None
    return JiraResource(client_id=os.environ.get("JIRA_CLIENT_ID", SANDBOX_CLIENT_ID), client_secret=secret)


def jira_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[*SOURCE_SPECS, *METRIC_ASSETS],
        jobs=[jira_snapshot_job, jira_daily_job],
        sensors=[jira_sync_sensor],
        schedules=[jira_nightly_snapshot_schedule, jira_nightly_daily_schedule],
        resources={"jira": jira_resource()},
    )
