"""Everything Dagster needs for PostgreSQL: the metric asset and its key-count check, their jobs, the change
sensor, the nightly schedules, and the gated resource (no password in config: passwords live in the vault)."""

import dagster as dg

from dfx_pipelines.connectors.postgres.assets import (
    SOURCE_SPEC,
    postgres_key_count_check,
    postgres_key_count_job,
    postgres_metric_specs,
    postgres_metrics_job,
)
from dfx_pipelines.connectors.postgres.resource import PostgresResource
from dfx_pipelines.connectors.postgres.sensors import (
    postgres_changes_sensor,
    postgres_key_count_schedule,
    postgres_nightly_schedule,
)


def postgres_definitions() -> dg.Definitions:
    return dg.Definitions(
        assets=[SOURCE_SPEC, postgres_metric_specs],
        asset_checks=[postgres_key_count_check],
        jobs=[postgres_metrics_job, postgres_key_count_job],
        sensors=[postgres_changes_sensor],
        schedules=[postgres_nightly_schedule, postgres_key_count_schedule],
        resources={"postgres": PostgresResource()},
    )
