"""The embedded instance (`dfx dev`, `dfx demo`) runs under the same run-concurrency rules as the
production dagster.yaml: one run at a time per connection, the per-API caps, lifecycle jobs alone."""

from pathlib import Path

import dagster as dg
import pytest
import yaml

from dfx_pipelines.cli import embedded_dagster_home
from dfx_pipelines.platform.instance_concurrency import run_concurrency
from dfx_pipelines.platform.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_production_dagster_yaml_has_exactly_the_shared_rules() -> None:
    production = yaml.safe_load((REPO / "dagster.yaml").read_text())
    assert production["concurrency"] == run_concurrency()


@pytest.fixture(autouse=True)
def _restore_dagster_home(monkeypatch: pytest.MonkeyPatch) -> None:
    # `embedded_dagster_home` sets DAGSTER_HOME for the process; monkeypatch puts back its absence.
    monkeypatch.setenv("DAGSTER_HOME", "unset")
    monkeypatch.delenv("DAGSTER_HOME")


def _limits(instance: dg.DagsterInstance) -> list[dict]:
    return instance.get_concurrency_config().run_queue_config.tag_concurrency_limits


def test_a_fresh_embedded_instance_limits_runs_per_connection(tmp_path: Path) -> None:
    home = embedded_dagster_home(Settings.from_env({"DFX_HOME": str(tmp_path / ".dfx")}))
    with dg.DagsterInstance.get() as instance:
        assert instance.root_directory == str(home)
        assert _limits(instance) == run_concurrency()["runs"]["tag_concurrency_limits"]
        assert instance.get_concurrency_config().run_queue_config.max_concurrent_runs == 20


def test_an_older_embedded_folder_gets_the_rules(tmp_path: Path) -> None:
    old = tmp_path / ".dfx" / "dagster_home"
    old.mkdir(parents=True)
    (old / "dagster.yaml").write_text(  # as `dfx` wrote it before
        "# Embedded default instance: Dagster's SQLite storage in this folder (made by `dfx`).\ntelemetry:\n  enabled: false\n"
    )
    embedded_dagster_home(Settings.from_env({"DFX_HOME": str(tmp_path / ".dfx")}))
    with dg.DagsterInstance.get() as instance:
        assert {"key": "dfx/connection", "value": {"applyLimitPerUniqueValue": True}, "limit": 1} in _limits(instance)
