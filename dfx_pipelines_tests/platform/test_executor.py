"""DFX_EXECUTOR picks the connector jobs' executor: in process by default, Celery with the YAML its workers
use (deploy/celery/celery.yaml validates against dagster-celery's schema and names its broker only by
environment variable); anything else is refused naming the problem. The Celery setup itself runs with
real workers in test_celery.py."""

import re
from pathlib import Path

import dagster as dg
import pytest

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.executor import celery_executor_config, connector_executor

REPO = Path(__file__).resolve().parents[2]
PRODUCTION = REPO / "deploy" / "celery" / "celery.yaml"


def test_in_process_by_default() -> None:
    assert connector_executor({}) is dg.in_process_executor
    assert connector_executor({"DFX_EXECUTOR": "in_process"}) is dg.in_process_executor


def test_celery_runs_with_the_workers_config_and_no_broker_secret_in_it() -> None:
    pytest.importorskip("dagster_celery")
    executor = connector_executor({"DFX_EXECUTOR": "celery", "DFX_CELERY_CONFIG": str(PRODUCTION)})
    assert executor.name == "celery"
    config = celery_executor_config(PRODUCTION)
    assert config["broker"] == {"env": "DFX_CELERY_BROKER_URL"}
    assert config["backend"] == {"env": "DFX_CELERY_BACKEND_URL"}
    source = config["config_source"]
    assert source["task_acks_late"] and source["task_reject_on_worker_lost"]
    # A redelivered task must not overtake a step still running: longer than the longest step (1 h).
    assert source["broker_transport_options"]["visibility_timeout"] >= 3600


@pytest.mark.parametrize(
    ("environ", "text", "message"),
    [
        ({"DFX_EXECUTOR": "dask"}, None, "DFX_EXECUTOR must be one of in_process, celery, got 'dask'"),
        ({"DFX_EXECUTOR": "celery"}, None, "DFX_EXECUTOR=celery needs DFX_CELERY_CONFIG"),
        ({"DFX_EXECUTOR": "celery"}, "execution: [", "is not valid YAML"),
        ({"DFX_EXECUTOR": "celery"}, "executor:\n  config: {}\n", "has no `execution: config:` mapping"),
        (
            {"DFX_EXECUTOR": "celery"},
            "execution:\n  config:\n    brokr: redis://127.0.0.1:6379/0\n",
            'Received unexpected config entry "brokr"',
        ),
    ],
)
def test_a_bad_setting_is_refused_naming_it(
    tmp_path: Path, environ: dict[str, str], text: str | None, message: str
) -> None:
    pytest.importorskip("dagster_celery")
    if text is not None:
        path = tmp_path / "celery.yaml"
        path.write_text(text)
        environ = {**environ, "DFX_CELERY_CONFIG": str(path)}
    with pytest.raises(ConfigError, match=re.escape(message)):
        connector_executor(environ)


def test_a_missing_config_file_is_named() -> None:
    pytest.importorskip("dagster_celery")
    with pytest.raises(ConfigError, match=r"DFX_CELERY_CONFIG: cannot read /nonexistent/celery.yaml"):
        connector_executor({"DFX_EXECUTOR": "celery", "DFX_CELERY_CONFIG": "/nonexistent/celery.yaml"})
