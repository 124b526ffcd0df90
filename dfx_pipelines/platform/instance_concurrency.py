"""The concurrency rules of every Dagster instance this project runs on, production's `dagster.yaml` and
the embedded instance of `dfx dev` / `dfx demo` alike.

Runs (the run queue's tag limits): one run at a time per connection, a cap per provider API, lifecycle
jobs one at a time. Steps (Dagster's concurrency pools): one pool per vendor API, named after the
connector's kind, which every API-calling asset or op of the connector declares (`pool=`); at most the
plugin's `pool_limit` steps hold a slot of it at once, whichever executor runs them — in process, or on
Celery workers on other machines — because slots are claimed in the instance's storage (PostgreSQL in
production), not in a process.

The YAML block is the one both instances use, so the embedded instance cannot drift from production (a
test compares it with `dagster.yaml`). Per-pool limits cannot be written in `dagster.yaml` (Dagster 1.13
keeps them in the event-log storage; the YAML only has `default_limit` for a pool nobody configured):
`apply_pool_limits` writes each registered plugin's limit there. `dfx dev`/`dfx demo` call it when they
start; a production deployment runs `dfx instance apply-pools` before starting the daemon (README), so a
connector registered later gets its pool's limit with the next start and nothing typed by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    import dagster as dg

    from dfx_pipelines.platform.plugins import ConnectorPlugin

CONCURRENCY_YAML = """\
concurrency:
  pools:
    # Pools are claimed per step (op), not per run: a connector run's steps on Celery workers each hold
    # one slot of their API's pool while they run.
    granularity: op
    # A pool without a limit of its own (a connector registered since the limits were last applied):
    # one step at a time until `dfx instance apply-pools` writes the plugin's limit.
    default_limit: 1
    # How many runs the queue may start beyond what their API's pool can take at once. Dagster admits a
    # run whose first steps need a pool only while the pool has a slot free net of the steps every
    # started run still waits with; a connector run has up to a dozen first steps, so with no buffer one
    # run per API would start at a time (the load test, bench/scale.py, found it). The run limits below
    # (per API, per connection) decide how many runs start; the pools, how many of their steps call the
    # API at once.
    op_granularity_run_buffer: 50
  runs:
    max_concurrent_runs: 20
    tag_concurrency_limits:
      - key: dfx/connection
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: dagster/partition/connection
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: dagster/partition
        value:
          applyLimitPerUniqueValue: true
        limit: 1
      - key: dfx/api
        value: salesforce
        limit: 4
      - key: dfx/api
        value: jira
        limit: 4
      - key: dfx/api
        value: bigquery
        limit: 2
      - key: dfx/api
        value: postgres
        limit: 2
      - key: dfx/lifecycle
        limit: 1
"""
RUN_CONCURRENCY_YAML = CONCURRENCY_YAML  # the name it had before pools joined it


def run_concurrency() -> dict:
    """The `concurrency` section as data (runs and pools)."""
    return yaml.safe_load(CONCURRENCY_YAML)["concurrency"]


def pool_limits(plugins: Iterable[ConnectorPlugin] | None = None) -> dict[str, int]:
    """Pool name -> limit for every registered connector (or those given)."""
    if plugins is None:
        from dfx_pipelines.platform import catalogue

        plugins = catalogue.plugins()
    limits: dict[str, int] = {}
    for plugin in plugins:
        limit = plugin.pool_limit
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"connector {plugin.kind!r}: pool_limit must be a whole number >= 1, got {limit!r}")
        limits[plugin.pool] = limit
    return limits


def apply_pool_limits(instance: dg.DagsterInstance, limits: Mapping[str, int] | None = None) -> dict[str, int]:
    """Write each pool's limit into the instance's storage (idempotent: an unchanged limit is rewritten
    as is; slots held by running steps stay held). Returns what was written."""
    limits = dict(pool_limits() if limits is None else limits)
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        raise RuntimeError(f"the instance's event log storage ({type(storage).__name__}) has no concurrency pools")
    for pool, limit in limits.items():
        storage.set_concurrency_slots(pool, limit)
    return limits


def instance_pool_limits(instance: dg.DagsterInstance, pools: Iterable[str]) -> dict[str, int | None]:
    """The limit the instance holds for each pool (None: none set, the default limit applies)."""
    storage = instance.event_log_storage
    known = storage.get_concurrency_keys()
    return {pool: storage.get_concurrency_info(pool).slot_count if pool in known else None for pool in pools}
