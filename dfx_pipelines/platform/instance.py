"""The Dagster instance settings `dfx dev`/`dfx demo` use (the embedded default, SQLite under .dfx/), kept
in step with the production `dagster.yaml` for what decides whether a run recovers: run monitoring and
run retries, and the one-run-per-connection limit they free.

What run monitoring does with the default run launcher (Dagster 1.13.27, read in its source):
- `DefaultRunLauncher.supports_check_run_worker_health` is False (the base class default): the monitoring
  daemon never asks whether a STARTED run's worker lives. A worker that dies is noticed by the code server
  that spawned it (`DagsterApiServer._check_for_orphaned_runs`, every 0.5 s), which reports the run
  failed; `run_retries` then launches the retry, and the failed run no longer holds its tag's slot. A run
  whose code server died too, or an in-process run (`dfx demo`) whose process was killed, is seen by no
  one: hence `run_launcher.LocalWorkerRunLauncher`, the default launcher plus a pid-based health check,
  which the monitoring daemon then calls every `poll_interval_seconds`.
- Monitoring itself covers what the code server cannot: a run stuck STARTING/NOT_STARTED past
  `start_timeout_seconds` (its code server died before the worker began) or CANCELING past
  `cancel_timeout_seconds` is failed/canceled; a run past `max_runtime_seconds` is terminated and failed
  (the only way out for a STARTED run whose code server died with its worker). `poll_interval_seconds`
  is how often the monitoring daemon looks.
- Concurrency pool slots are claimed by the run's process per step and released when the step ends; a
  killed worker releases nothing, and with a pool of 1 the retry would wait forever. The daemon's
  `free_slots_after_run_end_seconds` frees the slots of finished runs (Dagster's default: never).
- `max_resume_run_attempts` re-launches a dead run's worker in place (k8s, ECS, Docker launchers); the
  default launcher cannot resume, and the instance refuses to start unless it is 0.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dfx_pipelines.platform.instance_concurrency import run_concurrency

MARKER = "# Embedded default instance (written by dfx; edits are overwritten)."

# Start: a location loads in seconds; 3 minutes covers a cold start on a busy laptop. Cancel: steps stop at
# the next request, well within 3 minutes. Max runtime: the longest job, a nightly recompute of a year of
# daily partitions for a big org, takes minutes to an hour; 6 hours bounds a run whose worker vanished
# with its code server without cutting a legitimate one short.
RUN_MONITORING: dict[str, Any] = {
    "enabled": True,
    "start_timeout_seconds": 180,
    "cancel_timeout_seconds": 180,
    "max_runtime_seconds": 6 * 3600,
    "max_resume_run_attempts": 0,
    "poll_interval_seconds": 30,
    # Pool slots held by the steps of a run whose worker died are never released by that worker: the
    # daemon frees the slots of runs finished a minute ago (a finished run releases its own at once).
    "free_slots_after_run_end_seconds": 60,
}
RUN_RETRIES: dict[str, Any] = {"enabled": True, "max_retries": 2, "retry_on_asset_or_op_failure": True}


def run_launcher(*, check_in_process_runs: bool) -> dict[str, Any]:
    return {
        "module": "dfx_pipelines.platform.run_launcher",
        "class": "LocalWorkerRunLauncher",
        "config": {"check_in_process_runs": check_in_process_runs},
    }


def embedded_instance_config(**run_monitoring: Any) -> dict[str, Any]:
    """The embedded instance's settings; keyword arguments override run monitoring (tests poll faster).
    Everything of the embedded instance runs on this machine, `dfx demo`'s in-process runs included, so
    the launcher checks their workers too."""
    return {
        "telemetry": {"enabled": False},
        "run_launcher": run_launcher(check_in_process_runs=True),
        "python_logs": {"managed_python_loggers": ["dfx_pipelines"]},
        "run_monitoring": {**RUN_MONITORING, **run_monitoring},
        "run_retries": dict(RUN_RETRIES),
        "concurrency": run_concurrency(),  # the very block production's dagster.yaml holds
    }


def write_embedded_instance(home: Path, **run_monitoring: Any) -> Path:
    """Write `home/dagster.yaml` for the embedded instance. A file dfx wrote earlier is brought up to
    date (an older one lacked monitoring and retries); a file someone else wrote is left alone."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    text = MARKER + "\n" + json.dumps(embedded_instance_config(**run_monitoring), indent=2) + "\n"  # JSON is YAML
    if config.exists():
        current = config.read_text()
        ours = current.startswith(
            (MARKER, "# Embedded default instance: Dagster's SQLite storage in this folder (made by `dfx`).")
        )
        if not ours or current == text:
            return config
    config.write_text(text)
    return config
