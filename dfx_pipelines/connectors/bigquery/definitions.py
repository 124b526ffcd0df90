"""Everything Dagster needs for BigQuery: the metric asset with its budget check, its job, the
approvals sensor, the nightly budget-gated schedule, and the gated resource (no key in config: keys live in the vault)."""

import dagster as dg

from dfx_pipelines.connectors.bigquery.assets import SOURCE_SPEC, bigquery_metric_specs, bigquery_metrics_job
from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
from dfx_pipelines.connectors.bigquery.schedules import bigquery_first_sync_sensor, bigquery_nightly_schedule
from dfx_pipelines.connectors.bigquery.sensors import bigquery_approvals_sensor


def bigquery_resource() -> BigQueryResource:
    return BigQueryResource()


def bigquery_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[SOURCE_SPEC, bigquery_metric_specs],
        jobs=[bigquery_metrics_job],
        sensors=[bigquery_approvals_sensor, bigquery_first_sync_sensor],
        schedules=[bigquery_nightly_schedule],
        resources={"bigquery": bigquery_resource()},
    )
