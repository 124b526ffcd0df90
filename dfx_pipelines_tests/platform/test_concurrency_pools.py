"""Dagster concurrency pools, one per vendor API: every API-calling asset and op of a connector declares
its kind's pool, each registered plugin's limit is written into the instance's storage — by `dfx
instance apply-pools` on the production instance (PostgreSQL) and by `dfx dev`/`dfx demo` on the
embedded one (SQLite) — and both instances end up with the same limits, a connector registered later
(the throwaway fixture, named only in DFX_CONNECTOR_MODULES) included. That the limits hold across
Celery workers is tested with real workers in dfx_pipelines_tests/platform/test_celery.py."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from click.testing import CliRunner

from dfx_pipelines.platform.instance_concurrency import (
    instance_pool_limits,
    pool_limits,
    run_concurrency,
)

REPO = Path(__file__).resolve().parents[2]
THROWAWAY = "dfx_pipelines_tests.fixtures.throwaway_connector.plugin"
BUILT_IN = {"salesforce": 4, "jira": 4, "bigquery": 2, "postgres": 2}


def test_every_api_calling_step_declares_its_vendors_pool() -> None:
    from dagster._core.definitions.op_definition import OpDefinition

    from dfx_pipelines.definitions import defs
    from dfx_pipelines.platform import catalogue

    kinds = set(catalogue.kinds())
    checked: dict[str, int] = {}
    for assets_def in defs.assets or []:
        if isinstance(assets_def, dg.AssetsDefinition) and assets_def.is_executable:
            kind = next(iter(assets_def.keys)).path[0]
            if kind in kinds:
                assert assets_def.op.pool == kind, assets_def.op.name
                checked[kind] = checked.get(kind, 0) + 1
    for job in defs.resolve_all_job_defs():
        for node_def in job.all_node_defs:
            api = node_def.tags.get("dfx/api") if isinstance(node_def, OpDefinition) else None
            if api is not None:
                assert node_def.pool == api, (job.name, node_def.name)
    assert set(checked) == kinds and all(checked.values())  # every connector has pooled assets


def test_the_built_in_pools_match_the_per_api_run_caps() -> None:
    assert pool_limits() == BUILT_IN
    caps = {
        limit["value"]: limit["limit"]
        for limit in run_concurrency()["runs"]["tag_concurrency_limits"]
        if limit["key"] == "dfx/api"
    }
    assert caps == BUILT_IN


def test_a_bad_pool_limit_is_refused_naming_the_connector() -> None:
    from dfx_pipelines.connectors.salesforce.plugin import SalesforcePlugin

    class Broken(SalesforcePlugin):
        kind = "broken"
        pool_limit = 0

    with pytest.raises(ValueError, match=r"connector 'broken': pool_limit must be a whole number >= 1, got 0"):
        pool_limits([Broken()])


@pytest.fixture
def production_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: dict[str, str]) -> Path:
    """DAGSTER_HOME holding the production dagster.yaml on the test PostgreSQL; its pools table is
    emptied first (the database is shared by the session)."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for name, key in (("HOST", "host"), ("PORT", "port"), ("USERNAME", "username"), ("PASSWORD", "password")):
        monkeypatch.setenv(f"DAGSTER_PG_{name}", pg_database[key])
    monkeypatch.setenv("DAGSTER_PG_DB", pg_database["db_name"])
    with dg.DagsterInstance.get() as instance:
        for pool in instance.event_log_storage.get_concurrency_keys():
            instance.event_log_storage.delete_concurrency_limit(pool)
    return home


@pytest.fixture
def later_connector(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DFX_CONNECTOR_MODULES", THROWAWAY)
    yield


def test_the_production_startup_step_writes_every_registered_connectors_pool(
    production_home: Path, later_connector: None
) -> None:
    from dagster_postgres import PostgresEventLogStorage

    from dfx_pipelines.cli import main

    expected = {**BUILT_IN, "throwaway": 2}  # the throwaway says nothing: the plugin default
    with dg.DagsterInstance.get() as instance:
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert instance_pool_limits(instance, expected) == dict.fromkeys(expected)
    for _ in range(2):  # a second start changes nothing
        result = CliRunner().invoke(main, ["instance", "apply-pools"])
        assert result.exit_code == 0, result.output
        assert "pool bigquery: 2 concurrent step(s)" in result.output
        with dg.DagsterInstance.get() as instance:
            assert instance_pool_limits(instance, expected) == expected
            pools = instance.get_concurrency_config().pool_config
            assert pools.pool_granularity is not None and pools.pool_granularity.value == "op"
            assert pools.default_pool_limit == 1
            # The queue starts runs under the run limits, not one per API at a time (bench/scale.py).
            assert instance.get_concurrency_config().run_queue_config.op_concurrency_slot_buffer == 50


def test_dfx_dev_and_demo_write_the_same_pools_into_the_embedded_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, later_connector: None
) -> None:
    """`_start_demo` is what `dfx dev` and `dfx demo` both begin with (here with the throwaway's echo
    sandbox only: the pools are written before any sandbox starts)."""
    from dfx_pipelines.cli import _start_demo

    monkeypatch.setenv("DAGSTER_HOME", "unset")
    monkeypatch.delenv("DAGSTER_HOME")  # the embedded default, under DFX_HOME
    _platform, started = _start_demo(None, ("throwaway",))
    try:
        with dg.DagsterInstance.get() as instance:
            assert "dagster_home" in instance.root_directory
            assert instance_pool_limits(instance, pool_limits()) == {**BUILT_IN, "throwaway": 2}
            embedded = instance.get_concurrency_config().pool_config
    finally:
        for _connector, sandbox, _connection in started:
            sandbox.stop()
    production = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]["pools"]
    assert production == run_concurrency()["pools"]
    assert (embedded.pool_granularity.value if embedded.pool_granularity else None) == production["granularity"]
    assert embedded.default_pool_limit == production["default_limit"]
