"""One BigQuery sandbox per test session, the real client wired to it, the same rows regenerated
independently, and a hand computation of BigQuery's logical bytes to check the sandbox's prices against."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import pandas as pd
import pytest
from google.cloud import bigquery

from dfx_pipelines.connectors.bigquery.sandbox.generate import generate_demo_frames
from dfx_pipelines.connectors.bigquery.sandbox.running import (
    RunningBigQuerySandbox,
    make_client,
    start_bigquery_sandbox,
)

# web_events is big enough (~15 MB) that its bill is above the 10 MiB minimum, so MiB rounding shows.
ROWS = {"default": 3000, "shop.web_events": 100_000}
SEED = 11
MIB = 2**20

# The documented logical sizes, written out here again so the tests do not trust the sandbox's table.
FIXED_BYTES = {
    "INTEGER": 8,
    "FLOAT": 8,
    "DATE": 8,
    "DATETIME": 8,
    "TIME": 8,
    "TIMESTAMP": 8,
    "NUMERIC": 16,
    "BIGNUMERIC": 32,
    "BOOLEAN": 1,
}


@pytest.fixture(scope="session")
def sandbox() -> Iterator[RunningBigQuerySandbox]:
    with start_bigquery_sandbox(rows=ROWS, seed=SEED) as running:
        yield running


@pytest.fixture(scope="session")
def client(sandbox: RunningBigQuerySandbox) -> Iterator[bigquery.Client]:
    client = make_client(sandbox)
    yield client
    client.close()


@pytest.fixture(scope="session")
def frames() -> dict[str, pd.DataFrame]:
    """The rows the sandbox serves, regenerated here from the same seed (not read from the sandbox)."""
    return generate_demo_frames(ROWS, SEED)


@pytest.fixture(autouse=True)
def _no_faults(sandbox: RunningBigQuerySandbox) -> None:
    sandbox.server.faults.clear()


def column_bytes(values: pd.Series, bq_type: str) -> int:
    """Σ logical bytes of one column: NULL 0, STRING 2 + UTF-8 bytes, fixed-size types per the docs."""
    present = values[values.notna()]
    if bq_type in ("STRING", "BYTES"):
        return int(sum(2 + len(v.encode("utf-8") if isinstance(v, str) else v) for v in present))
    return len(present) * FIXED_BYTES[bq_type]


def scan_bytes(
    frame: pd.DataFrame, schema: Iterable[bigquery.SchemaField], columns: Iterable[str] | None = None
) -> int:
    types = {field.name: field.field_type for field in schema}
    wanted = list(types) if columns is None else list(columns)
    return sum(column_bytes(frame[name], types[name]) for name in wanted)


def billed(bytes_per_table: Iterable[int]) -> int:
    """Per table: rounded up to the MiB, at least 10 MiB (0 if nothing read); summed."""
    return sum(0 if b == 0 else max(10 * MIB, math.ceil(b / MIB) * MIB) for b in bytes_per_table)


def dry_run(client: bigquery.Client, sql: str, **config) -> bigquery.QueryJob:
    return client.query(sql, job_config=bigquery.QueryJobConfig(dry_run=True, use_query_cache=False, **config))
