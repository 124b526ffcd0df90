"""The production dagster.yaml: PostgreSQL storage from DAGSTER_PG_* variables, a queued run
coordinator with per-connection concurrency limits, run retries, and the redacting log formatter."""

import shutil
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[2]


@dg.op
def say_hello(context: dg.OpExecutionContext) -> int:
    context.log.info("hello from the postgres-backed instance")
    return 42


@dg.job(executor_def=dg.in_process_executor, tags={"dfx/connection": "sf-acme", "dfx/api": "salesforce"})
def hello_job() -> None:
    say_hello()


@pytest.fixture
def production_instance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg_database: dict[str, str]):
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_HOST", pg_database["host"])
    monkeypatch.setenv("DAGSTER_PG_PORT", pg_database["port"])
    monkeypatch.setenv("DAGSTER_PG_USERNAME", pg_database["username"])
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", pg_database["password"])
    monkeypatch.setenv("DAGSTER_PG_DB", pg_database["db_name"])
    with dg.DagsterInstance.get() as instance:
        yield instance


def test_runs_a_job_on_postgres_and_reads_its_event_log_back(production_instance: dg.DagsterInstance) -> None:
    from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

    assert isinstance(production_instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(production_instance.run_storage, PostgresRunStorage)
    with dg.execute_job(dg.reconstructable(hello_job), instance=production_instance) as result:
        assert result.success and result.output_for_node("say_hello") == 42
    # Read back through a fresh instance: it really is in PostgreSQL, not in memory.
    with dg.DagsterInstance.get() as again:
        messages = [entry.user_message for entry in again.all_logs(result.run_id)]
        run = again.get_run_by_id(result.run_id)
    assert any("hello from the postgres-backed instance" in m for m in messages)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dfx/connection"] == "sf-acme"


def test_concurrency_and_retries_are_configured(production_instance: dg.DagsterInstance) -> None:
    from dagster._core.run_coordinator import QueuedRunCoordinator

    assert isinstance(production_instance.run_coordinator, QueuedRunCoordinator)
    limits = production_instance.get_concurrency_config().run_queue_config.tag_concurrency_limits
    per_connection = [limit for limit in limits if limit["key"] == "dfx/connection"]
    assert per_connection == [{"key": "dfx/connection", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
    assert production_instance.run_retries_enabled and production_instance.run_retries_max_retries == 2
