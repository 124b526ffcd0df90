"""Which failed runs Dagster re-launches: transient failures are retried, permanent ones fail once.

Dagster's run retries (`run_retries` in dagster.yaml, `retry_on_asset_or_op_failure: true`) re-launch
a failed run up to twice and cannot tell a refused credential from a dropped connection: a revoked
token cost three runs against the provider. Dagster decides when the run's failure event is stored
(`dagster._core.instance.methods.event_methods`, then `auto_reexecution_should_retry_run`), from the
run's tags as they are *then*: a run tagged `dagster/retry_on_asset_or_op_failure=false` whose failure
is a step failure gets `dagster/will_retry=false` and is not re-launched.

So `step_errors(context)`, around every connector step, tags its run that way when the step fails with
a permanent error (`DfxError.permanent`: refused or revoked credentials, missing permissions, invalid
configuration, an exhausted budget) and lets the error go on unchanged. The run fails once, and as it
will not be retried the failure notification goes out at once. Transient errors (network, 5xx, rate
limits that outlast the clients' own backoff) leave the tag alone, so the run is retried as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg

from dfx_pipelines.platform.redaction import redacted_exceptions

# Dagster's own tag (dagster._core.storage.tags.RETRY_ON_ASSET_OR_OP_FAILURE_TAG), read per run.
NO_RETRY_TAGS = {"dagster/retry_on_asset_or_op_failure": "false", "dfx/failure": "permanent"}


def is_permanent(error: BaseException) -> bool:
    return bool(getattr(error, "permanent", False))


@contextmanager
def step_errors(context: dg.OpExecutionContext | dg.AssetExecutionContext) -> Iterator[None]:
    """Around a step's body: no secret text escapes (`redacted_exceptions`), and a permanent error
    marks the run as not to be retried before it fails the step."""
    try:
        with redacted_exceptions():
            yield
    except Exception as exc:
        if is_permanent(exc):
            context.instance.add_run_tags(context.run.run_id, NO_RETRY_TAGS)
            context.log.error(
                f"{type(exc).__name__} is permanent: the run fails once and is not retried (trying again cannot help until someone acts)"
            )
        raise
