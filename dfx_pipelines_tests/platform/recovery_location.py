"""The code location the run-recovery test's daemon serves: the project's real Salesforce assets, snapshot
job and resources, without the sensors and schedules (they would launch runs of their own against the
test's connection while the test counts runs)."""

import dagster as dg

from dfx_pipelines.connectors.salesforce.assets import METRIC_ASSETS, salesforce_snapshot_job
from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource
from dfx_pipelines.platform.resources import PlatformResource

defs = dg.Definitions(
    assets=METRIC_ASSETS,
    jobs=[salesforce_snapshot_job],
    resources={"platform": PlatformResource(), "salesforce": salesforce_resource()},
)
