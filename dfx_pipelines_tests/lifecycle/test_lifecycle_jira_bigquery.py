"""Removing and deleting a Jira and a BigQuery connection end to end, as the Salesforce test does for
Salesforce: each is connected through its connector's real connect flow against its sandbox, synced
through the real assets (a snapshot and/or a short daily range), removed — neither provider offers a
revoke API, so the result says so and only our copy of the credentials dies, at once — and deleted.
Afterwards nothing derived from it is left in the metric database, the vault, the connector's own
tables (BigQuery's approvals and ledger) or anywhere under the Dagster home, while a second connection
of the same kind is untouched (and is found by the same file search: the search is not vacuous). The
audit tells the story."""

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from dfx_pipelines.connectors.bigquery.assets import BUDGET_CHECK
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.plugin import PLUGIN as BIGQUERY
from dfx_pipelines.connectors.bigquery.resource import BigQueryResource
from dfx_pipelines.connectors.jira.compute import METRICS as JIRA_METRICS
from dfx_pipelines.connectors.jira.plugin import PLUGIN as JIRA
from dfx_pipelines.lifecycle import audit
from dfx_pipelines.lifecycle.deletion import delete_connection_data, due_for_deletion, run_is_for
from dfx_pipelines.lifecycle.revocation import revoke_connection
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.registry import ConnectionStatus
from dfx_pipelines.platform.services import Platform
from dfx_pipelines_tests.connectors.bigquery.conftest import Materializer as BigQueryMaterializer
from dfx_pipelines_tests.connectors.bigquery.conftest import (
    bq_sandbox,  # noqa: F401 - fixture
    set_budget,
)
from dfx_pipelines_tests.connectors.bigquery.conftest import connect as connect_bigquery
from dfx_pipelines_tests.connectors.jira.conftest import Materializer as JiraMaterializer
from dfx_pipelines_tests.connectors.jira.conftest import connect_cloud, jira_cloud, range_tags, resource_for  # noqa: F401 - fixture

JIRA_SNAPSHOT = ["issue_count", "sprint_velocity"]
JIRA_DAILY = [name for name, metric in JIRA_METRICS.items() if metric.daily][:2]
JIRA_DAYS = ("2025-05-31", "2025-06-02")  # the sandbox site's clock is 2025-06-02
BQ_DAY, BQ_OVER_BUDGET_DAY, BQ_DAYS = "2024-06-01", "2024-06-02", ("2024-03-01", "2024-03-03")


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def metric_rows(platform: Platform, connection_id: str) -> tuple[int, int]:
    """(batches, values) of a connection, counted in SQL rather than through the store's API."""
    batches, values = tables.metric_batches, tables.metric_values
    with platform.engine.connect() as db:
        n_batches = db.execute(
            sa.select(sa.func.count()).select_from(batches).where(batches.c.connection_id == connection_id)
        ).scalar()
        n_values = db.execute(
            sa.select(sa.func.count())
            .select_from(values.join(batches, values.c.batch_id == batches.c.id))
            .where(batches.c.connection_id == connection_id)
        ).scalar()
    return n_batches, n_values


def secrets_of(platform: Platform, connection_id: str) -> dict[str, str]:
    """The plaintext credentials the vault holds for a connection, by kind."""
    connection = platform.registry.get(connection_id)
    names = platform.vault.backend.names(f"secrets/{connection.workspace_id}/{connection_id}")
    return {
        name.rsplit("/", 1)[-1]: platform.vault.get(connection.secret_ref(name.rsplit("/", 1)[-1])).get_secret_value()
        for name in names
    }


def assert_dagster_holds_nothing_of(instance: dg.DagsterInstance, kind: str, connection_id: str) -> None:
    assert all(not run_is_for(r.dagster_run.tags, connection_id) for r in instance.get_run_records())
    prefix = f"{connection_id}|"
    keys = instance.get_asset_keys(prefix=[kind])
    assert keys  # the other connection's history is still there
    for key in keys:
        assert [
            p for p in instance.get_materialized_partitions(key) if p == connection_id or p.startswith(prefix)
        ] == []
        for fetch in (instance.fetch_materializations, instance.fetch_observations):
            records = fetch(dg.AssetRecordsFilter(asset_key=key), limit=10_000).records
            assert [r for r in records if (r.partition_key or "").startswith((prefix, connection_id))] == []
            assert all(connection_id not in str(r.event_log_entry) for r in records)
    assert connection_id not in instance.get_dynamic_partitions(f"{kind}_connections")


def budget_check_runs(instance: dg.DagsterInstance) -> set[str]:
    """Runs with a recorded evaluation of BigQuery's budget check (Dagster keeps these apart from runs)."""
    check = dg.AssetCheckKey(dg.AssetKey(["bigquery", "metric_specs"]), BUDGET_CHECK)
    return {record.run_id for record in instance.event_log_storage.get_asset_check_execution_history(check, limit=1000)}


def assert_audit_story(platform: Platform, connection_id: str, data_key_id: str) -> dict:
    entries = audit.entries(platform.engine, connection_id)
    assert [e["action"] for e in entries] == ["remove", "deletion_started", "deletion_completed"]
    assert entries[0]["details"]["data_key_id"] == data_key_id and entries[0]["details"]["provider_revoked"] is False
    assert platform.registry.get(connection_id).status is ConnectionStatus.DELETED
    return entries[-1]["details"]


def test_jira_connection_removed_and_deleted_end_to_end(platform, workspace, jira_cloud, tmp_path: Path) -> None:
    acme = connect_cloud(platform, jira_cloud)
    beta = connect_cloud(platform, jira_cloud, config={"id": "jira-beta", "display_name": "Beta Jira"})
    credentials = secrets_of(platform, acme.id)
    assert set(credentials) == {"oauth_access_token", "oauth_refresh_token"}
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        materialize = JiraMaterializer(platform, resource_for(jira_cloud), instance)
        # acme goes last, so Dagster's per-asset "latest materialization" is one of its own.
        for connection in (beta, acme):
            assert materialize(
                JIRA_SNAPSHOT, partition_key=connection.id, tags={"dfx/connection": connection.id}
            ).success
            assert materialize(JIRA_DAILY, tags=range_tags(connection.id, *JIRA_DAYS)).success
        assert metric_rows(platform, acme.id)[1] > 0 and files_containing(dagster_home, acme.id.encode())
        acme_runs = {
            r.dagster_run.run_id for r in instance.get_run_records() if run_is_for(r.dagster_run.tags, acme.id)
        }
        assert {p.stem for p in dagster_home.rglob("*.db")} >= acme_runs  # SQLite keeps a file per run

        # Remove: Atlassian has no revoke endpoint for 3LO apps; our copy of the tokens dies at once.
        before = len(jira_cloud.requests)
        report = revoke_connection(platform, JIRA, acme.id, remove=True, actor="test")
        assert not report.provider_revoked and "no revoke endpoint" in report.provider_detail
        assert report.data_key_id and report.secrets_deleted == 2 and len(jira_cloud.requests) == before
        assert platform.vault.data_key_id("acme", acme.id) is None and secrets_of(platform, acme.id) == {}
        # A run launched now fails at its first step and sends nothing.
        failed = materialize(["issue_count"], partition_key=acme.id, raise_on_error=False)
        assert (
            not failed.success
            and "is removed" in failed.get_step_failure_events()[0].step_failure_data.error.to_string()
        )
        assert len(jira_cloud.requests) == before

        assert [c.id for c in due_for_deletion(platform)] == [acme.id]
        deletion = delete_connection_data(platform, JIRA, instance, acme.id, actor="test")
        assert deletion.metric_values_deleted > 0 and deletion.runs_deleted >= 3 and deletion.partition_removed
        assert metric_rows(platform, acme.id) == (0, 0) and platform.metric_store.read(connection_id=acme.id) == []
        assert metric_rows(platform, beta.id)[1] > 0  # the other connection is untouched
        assert_dagster_holds_nothing_of(instance, "jira", acme.id)
        assert beta.id in instance.get_dynamic_partitions("jira_connections")

    assert files_containing(dagster_home, acme.id.encode()) == []
    assert files_containing(dagster_home, beta.id.encode())  # the search is not vacuous
    assert not {p.stem for p in dagster_home.rglob("*.db*")} & acme_runs  # no emptied per-run file is left
    # Dagster's SQLite files were rewritten: no free page keeps a deleted row (SQLite builds without
    # secure_delete would otherwise leave the bytes on disk; this machine's zeroes them either way).
    for database in (dagster_home / "history" / "runs" / "index.db", dagster_home / "history" / "runs.db"):
        with closing(sqlite3.connect(database)) as db:
            assert db.execute("PRAGMA freelist_count").fetchone()[0] == 0
    for root in (dagster_home, platform.settings.home):
        for value in credentials.values():
            assert files_containing(root, value.encode()) == []
    assert secrets_of(platform, beta.id)  # the other connection's credentials are untouched
    completed = assert_audit_story(platform, acme.id, report.data_key_id)
    assert (
        completed["metric_values_deleted"] == deletion.metric_values_deleted
        and completed["connector_data_deleted"] == {}
    )


def test_bigquery_connection_removed_and_deleted_end_to_end(platform, workspace, bq_sandbox, tmp_path: Path) -> None:
    acme = connect_bigquery(platform, bq_sandbox)
    beta = connect_bigquery(platform, bq_sandbox, config={"id": "bq-beta", "display_name": "Beta BigQuery"})
    credentials = secrets_of(platform, acme.id)
    assert set(credentials) == {"service_account_key"}
    store = BudgetStore(platform.engine)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        materialize = BigQueryMaterializer(platform, BigQueryResource(sandbox_ca_path=bq_sandbox.ca_pem_path), instance)
        for connection in (acme, beta):
            assert materialize(partition_key=f"{connection.id}|{BQ_DAY}").success
            assert materialize(tags=range_tags(connection.id, *BQ_DAYS)).success
            # Over budget: the run stops with a pending approval (its SQL excerpt is kept in our database).
            set_budget(platform, platform.registry.get(connection.id), 1e-9)
            stopped = materialize(partition_key=f"{connection.id}|{BQ_OVER_BUDGET_DAY}")
            assert stopped.success and stopped.asset_materializations_for_node("bigquery__metric_specs") == []
        assert [a.partition for a in store.list(connection_id=acme.id)] == [f"{acme.id}|{BQ_OVER_BUDGET_DAY}"]
        ledger = store.ledger(acme.id)
        assert ledger and metric_rows(platform, acme.id)[1] > 0
        assert files_containing(dagster_home, acme.id.encode())
        acme_runs = {
            r.dagster_run.run_id for r in instance.get_run_records() if run_is_for(r.dagster_run.tags, acme.id)
        }
        assert budget_check_runs(instance) & acme_runs  # its runs evaluated the budget check (spend in metadata)

        # Remove: Google offers no API to delete a key we did not create; our copy dies at once.
        before = len(bq_sandbox.server.requests)
        report = revoke_connection(platform, BIGQUERY, acme.id, remove=True, actor="test")
        assert not report.provider_revoked and "revoked by the customer in GCP" in report.provider_detail
        assert report.data_key_id and report.secrets_deleted == 1 and len(bq_sandbox.server.requests) == before
        assert platform.vault.data_key_id("acme", acme.id) is None and secrets_of(platform, acme.id) == {}

        deletion = delete_connection_data(platform, BIGQUERY, instance, acme.id, actor="test")
        assert deletion.metric_values_deleted > 0 and deletion.runs_deleted >= 3 and deletion.partition_removed
        assert deletion.connector_data_deleted == {"bigquery_approvals": 1, "bigquery_ledger": len(ledger)}
        assert metric_rows(platform, acme.id) == (0, 0) and platform.metric_store.read(connection_id=acme.id) == []
        assert store.list(connection_id=acme.id) == [] and store.ledger(acme.id) == []
        assert (
            metric_rows(platform, beta.id)[1] > 0 and store.list(connection_id=beta.id) and store.ledger(beta.id)
        )  # untouched
        assert_dagster_holds_nothing_of(instance, "bigquery", acme.id)
        assert budget_check_runs(instance) and not budget_check_runs(instance) & acme_runs  # beta's checks stay
        assert beta.id in instance.get_dynamic_partitions("bigquery_connections")

    with platform.engine.connect() as db:  # no approval's SQL excerpt or ledger row names it, by any column
        for table in (tables.bigquery_approvals, tables.bigquery_ledger):
            assert (
                db.execute(
                    sa.select(sa.func.count()).select_from(table).where(table.c.connection_id == acme.id)
                ).scalar()
                == 0
            )
    assert files_containing(dagster_home, acme.id.encode()) == []
    assert files_containing(dagster_home, beta.id.encode())  # the search is not vacuous
    key_id = json.loads(credentials["service_account_key"])["private_key_id"]
    for root in (dagster_home, platform.settings.home):
        assert files_containing(root, key_id.encode()) == []
    assert secrets_of(platform, beta.id)
    completed = assert_audit_story(platform, acme.id, report.data_key_id)
    assert completed["connector_data_deleted"] == deletion.connector_data_deleted
