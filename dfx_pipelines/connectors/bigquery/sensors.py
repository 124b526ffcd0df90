"""The approvals sensor: once a person approves an over-budget request (`dfx bigquery approve ID`),
launch the run that asked, carrying the approval id in its tags, exactly once.

Exactly once, three ways: the run key is the approval id (the daemon never launches a run key twice),
the cursor remembers which approvals were requested, and the approval itself is single-use (the run
spends it with a compare-and-set before any query is sent, so even a duplicate run could not use it).
"""

import json

import dagster as dg

from dfx_pipelines.connectors.bigquery.assets import (
    APPROVAL_TAG,
    KIND,
    METRICS_KEY,
    bigquery_metrics_job,
    parse_partition_label,
)
from dfx_pipelines.connectors.bigquery.gate import ApprovalStatus
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.platform.partitions import range_tags
from dfx_pipelines.platform.resources import PlatformResource


def approval_run_request(approval_id: str, partition: str) -> dg.RunRequest:
    connection_id, first, last = parse_partition_label(partition)
    tags = {APPROVAL_TAG: approval_id, "dfx/connection": connection_id, "dfx/api": KIND, "dfx/sync": "approved"}
    if first == last:
        key = dg.MultiPartitionKey({"connection": connection_id, "date": first.isoformat()})
        return dg.RunRequest(run_key=approval_id, job_name=bigquery_metrics_job.name, partition_key=key, tags=tags)
    return dg.RunRequest(
        run_key=approval_id,
        job_name=bigquery_metrics_job.name,
        tags={**tags, **range_tags(connection_id, first, last)},
    )


@dg.sensor(
    name="bigquery_approvals_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    jobs=[bigquery_metrics_job],
    description="Launches the run of each approved over-budget BigQuery request, once, with the approval id in its tags.",
)
def bigquery_approvals_sensor(context: dg.SensorEvaluationContext, platform: PlatformResource) -> dg.SensorResult:
    store = BudgetStore(platform.get().engine)
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    approved = [a for a in store.list(statuses=[ApprovalStatus.APPROVED]) if a.asset == METRICS_KEY.to_user_string()]
    requests = [approval_run_request(a.id, a.partition) for a in approved if a.id not in requested]
    # Every approved id is requested by now; ids no longer approved (used, rejected, expired) drop out
    # of the cursor, since they can never be requested again anyway.
    cursor = sorted(a.id for a in approved)
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(cursor),
        skip_reason=None if requests else "no newly approved BigQuery requests",
    )
