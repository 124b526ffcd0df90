"""The BigQuery benchmarks' connection: one workspace and one connection to a running sandbox, selecting
`shop.web_events` with the given metric specs (shared so the two benchmarks measure the same setup)."""

import json
from typing import Any

# Distinct sessions per event type per day: a spec whose result grows with days × event types.
SESSIONS_SPEC = {
    "name": "sessions",
    "table": "shop.web_events",
    "measure": "COUNT_DISTINCT",
    "column": "session_id",
    "group_by": ["event_type"],
    "time_column": "event_date",
}


def bench_connection(home: str, running: Any, specs: list[dict[str, Any]]) -> tuple[Any, Any]:
    """A fresh platform under `home` and its `bq-bench` connection to `running`: (platform, connection)."""
    from pathlib import Path

    from dfx_pipelines.connectors.bigquery.connect import connect_bigquery
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    platform = Platform(Settings.from_env({"DFX_HOME": str(Path(home) / "dfx")}))  # nothing from the caller's DFX_*
    platform.registry.upsert_workspace(Workspace(id="bench", name="Bench", owner_email="bench@example.test"))
    connection = connect_bigquery(
        platform,
        config={
            "id": "bq-bench",
            "workspace_id": "bench",
            "display_name": "bench",
            "selection": {"datasets": {"shop": ["web_events"]}},
            "settings": {"monthly_budget_usd": 1000.0},
            "endpoint": {"api_endpoint": running.url, "metric_specs": specs},
        },
        key=json.dumps(running.service_account_key),
        sandbox_ca=running.ca_pem_path,
    )
    return platform, connection
