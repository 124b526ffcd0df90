"""Which Dagster executor the connector jobs run their steps on, chosen by the deployment, not the code.

- `DFX_EXECUTOR` unset or `in_process` (the default, `dfx dev`/`dfx demo`): the run's own process runs
  the steps (a connection's steps share one API and rate limit and are I/O bound).
- `DFX_EXECUTOR=celery`: each step is a task on Celery workers (`dagster-celery`, an optional extra)
  through the broker that `DFX_CELERY_CONFIG` names: a YAML file holding the `execution: config:` block
  of Dagster's `celery_executor` — the very file the workers are started with (`dagster-celery worker
  start -y <file>`), so the run and its workers cannot disagree on the broker, queue or acknowledgement
  settings. deploy/celery/celery.yaml is the production one; the broker URL comes from an environment
  variable there (`{env: DFX_CELERY_BROKER_URL}`), so a password in it never reaches run config or the UI.

The choice is read when the definitions load: the code server, each run's process and every Celery
worker must run with the same variables (they all load this code location). Concurrency pools hold
whichever executor runs the steps: a step claims its API's pool slot in the instance's storage before it
is handed to a worker (platform.instance_concurrency).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from dfx_pipelines.platform.errors import ConfigError

EXECUTOR_VARIABLE = "DFX_EXECUTOR"
CELERY_CONFIG_VARIABLE = "DFX_CELERY_CONFIG"
EXECUTORS = ("in_process", "celery")


def celery_executor_config(path: Path) -> dict[str, Any]:
    """The `execution: config:` block of a Celery YAML file, checked against dagster-celery's schema."""
    from dagster._config import validate_config
    from dagster_celery import celery_executor

    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{CELERY_CONFIG_VARIABLE}: cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{CELERY_CONFIG_VARIABLE}: {path} is not valid YAML: {exc}") from None
    config = document.get("execution", {}).get("config") if isinstance(document, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(f"{CELERY_CONFIG_VARIABLE}: {path} has no `execution: config:` mapping")
    checked = validate_config(celery_executor.config_schema.config_type, config)
    if not checked.success:
        problems = "; ".join(error.message for error in checked.errors or [])
        raise ConfigError(f"{CELERY_CONFIG_VARIABLE}: {path}: {problems}")
    return config


def connector_executor(environ: Mapping[str, str] | None = None) -> dg.ExecutorDefinition:
    """The executor `DFX_EXECUTOR` names (see the module docstring)."""
    env = os.environ if environ is None else environ
    name = env.get(EXECUTOR_VARIABLE) or "in_process"
    if name not in EXECUTORS:
        raise ConfigError(f"{EXECUTOR_VARIABLE} must be one of {', '.join(EXECUTORS)}, got {name!r}")
    if name == "in_process":
        return dg.in_process_executor
    path = env.get(CELERY_CONFIG_VARIABLE)
    if not path:
        raise ConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs {CELERY_CONFIG_VARIABLE}, the Celery YAML the workers use (deploy/celery/celery.yaml)"
        )
    try:
        from dagster_celery import celery_executor
    except ImportError:
        raise ConfigError(
            f"{EXECUTOR_VARIABLE}=celery needs dagster-celery: pip install 'dfx_pipelines[celery]'"
        ) from None
    return celery_executor.configured(celery_executor_config(Path(path)), name="celery")
