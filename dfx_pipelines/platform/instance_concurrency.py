"""The run-concurrency rules of every Dagster instance this project runs on, production's
`dagster.yaml` and the embedded instance of `dfx dev` / `dfx demo` alike: one run at a time per
connection, a cap per provider API, lifecycle jobs one at a time. Kept as the YAML block both use, so
the embedded instance cannot drift from production (a test compares it with `dagster.yaml`)."""

import yaml

RUN_CONCURRENCY_YAML = """\
concurrency:
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
      - key: dfx/lifecycle
        limit: 1
"""


def run_concurrency() -> dict:
    """The `concurrency` section as data."""
    return yaml.safe_load(RUN_CONCURRENCY_YAML)["concurrency"]
