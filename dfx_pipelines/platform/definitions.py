"""Dagster definitions every connector shares: the platform resource and the sensor that keeps each
registered kind's dynamic "connection" partitions (its plugin's `partitions_name`) in step with the registry."""

from __future__ import annotations

import dagster as dg

from dfx_pipelines.platform import catalogue
from dfx_pipelines.platform.partitions import CONNECTOR_EXECUTOR, partition_changes
from dfx_pipelines.platform.resources import PlatformResource


@dg.sensor(
    name="connection_partitions_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition for each new connection and drops the partitions of deleted ones.",
)
def connection_partitions_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    registry = platform.get().registry
    requests = []
    summary = []
    for kind in catalogue.kinds():
        change = partition_changes(context.instance, registry, kind)
        requests.extend(change.requests())
        if change.added or change.removed:
            summary.append(f"{kind}: +{len(change.added)} -{len(change.removed)}")
    return dg.SensorResult(
        dynamic_partitions_requests=requests, skip_reason=None if requests else "partitions match the registry"
    )


def platform_definitions() -> dg.Definitions:
    # The default executor too: a materialization launched from the UI (the implicit asset job) runs
    # in one process like the connector jobs.
    return dg.Definitions(
        sensors=[connection_partitions_sensor], resources={"platform": PlatformResource()}, executor=CONNECTOR_EXECUTOR
    )
