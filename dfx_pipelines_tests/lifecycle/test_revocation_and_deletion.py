"""Revoking, removing and deleting a Salesforce connection end to end: the provider's revoke endpoint
receives the token, the vault holds no key, runs stop at once without a request, and after deletion
nothing that connection produced is readable in any store the project writes — while a second
connection's data is untouched. The audit tells the story."""

import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from dfx_pipelines.connectors.salesforce.plugin import PLUGIN as SALESFORCE
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import SalesforceOrg, start_salesforce_sandbox
from dfx_pipelines.lifecycle import audit
from dfx_pipelines.lifecycle.definitions import deletion_overdue_sensor
from dfx_pipelines.lifecycle.deletion import delete_connection_data, due_for_deletion, overdue, run_is_for
from dfx_pipelines.lifecycle.revocation import revoke_connection
from dfx_pipelines.platform.errors import ConnectorError, UnknownConnectionError
from dfx_pipelines.platform.registry import ConnectionStatus, parse_connection
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines_tests.conftest import PG_ADMIN_URL
from dfx_pipelines_tests.connectors.salesforce.conftest import ORG_NOW, Materializer, connect, sf_resource, sf_sandbox  # noqa: F401 - fixtures

RANGE = {"dagster/asset_partition_range_start": "{c}|2026-11-15", "dagster/asset_partition_range_end": "{c}|2026-11-20"}


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.fixture
def two_orgs():
    acme = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=250, now=ORG_NOW))
    beta = start_salesforce_sandbox(SalesforceOrg(seed=99, opportunities=250, now=ORG_NOW), ca=acme.server.ca)
    yield acme, beta
    acme.stop()
    beta.stop()


def test_revoke_remove_delete_end_to_end(platform, workspace, two_orgs, sf_resource, tmp_path: Path) -> None:
    acme, beta = two_orgs
    resource = SalesforceResource(client_id=sf_resource.client_id, sandbox_ca_path=acme.ca_pem_path)
    # Revocation reaches the provider outside any run: it trusts the embedded default's sandbox CA file.
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(acme.ca_pem_path).read_bytes())
    connect(platform, acme, resource)
    connect(platform, beta, resource, config={"id": "sf-beta", "display_name": "Beta"})
    access = platform.vault.get(platform.registry.get("sf-acme").secret_ref("oauth_access_token")).get_secret_value()
    refresh = platform.vault.get(platform.registry.get("sf-acme").secret_ref("oauth_refresh_token")).get_secret_value()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        materialize = Materializer(platform, resource, instance)
        for slug in ("sf-acme", "sf-beta"):
            assert materialize(
                ["open_pipeline_by_stage", "campaign_sourced_pipeline"],
                partition_key=slug,
                tags={"dfx/connection": slug},
            ).success
            assert materialize(
                ["win_rate", "lead_conversion"], tags={k: v.format(c=slug) for k, v in RANGE.items()}
            ).success
        acme_values = {row["value"] for row in platform.metric_store.read(connection_id="sf-acme")}
        beta_values = {row["value"] for row in platform.metric_store.read(connection_id="sf-beta")}
        only_acme = sorted(v for v in acme_values - beta_values if v and v > 1000)  # amounts unique to acme's org
        assert only_acme and files_containing(dagster_home, b"sf-acme")
        # The daily runs stored their record buckets (ids and days) beside the values.
        assert platform.metric_store.bucket_count("sf-acme") > 0 and platform.metric_store.bucket_count("sf-beta") > 0
        with platform.engine.connect() as db:  # and the buckets' marks (instants and a query digest)
            assert db.execute(
                sa.text("SELECT COUNT(*) FROM metric_bucket_marks WHERE connection_id = 'sf-acme'")
            ).scalar()

        # Remove: revoked at Salesforce, credentials and data key gone, at once.
        report = revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
        assert report.provider_revoked and report.data_key_id and report.secrets_deleted == 2
        assert [r.form().get("token") for r in acme.server.requests if r.path == "/services/oauth2/revoke"] == [refresh]
        assert acme.app.oauth.access_grant(access) is None  # the provider no longer honours it
        assert platform.vault.data_key_id("acme", "sf-acme") is None
        assert platform.registry.get("sf-acme").status is ConnectionStatus.REMOVED
        again = revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
        assert again.already and "already removed" in again.summary()

        # A run launched now fails at its first step and sends nothing.
        before = len(acme.server.requests)
        failed = materialize(["open_pipeline_by_stage"], partition_key="sf-acme", raise_on_error=False)
        assert not failed.success and "is removed: no data is read" in str(
            failed.get_step_failure_events()[0].step_failure_data.error.to_string()
        )
        assert len(acme.server.requests) == before

        # Deletion (the nightly job's work): everything cached from sf-acme goes.
        assert [c.id for c in due_for_deletion(platform)] == ["sf-acme"]
        deletion = delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")
        assert deletion.metric_values_deleted > 0
        assert deletion.runs_deleted >= 3 and deletion.partition_removed
        assert platform.metric_store.read(connection_id="sf-acme") == []
        assert platform.metric_store.read(connection_id="sf-beta")  # the other connection is untouched
        assert platform.metric_store.bucket_count("sf-acme") == 0 and platform.metric_store.bucket_count("sf-beta") > 0
        assert "sf-acme" not in instance.get_dynamic_partitions("salesforce_connections")
        assert all(not run_is_for(r.dagster_run.tags, "sf-acme") for r in instance.get_run_records())
        for key in instance.get_asset_keys(prefix=["salesforce"]):
            assert not [p for p in instance.get_materialized_partitions(key) if p.startswith("sf-acme")]

    # Nothing derived from sf-acme is readable anywhere the project writes.
    with platform.engine.connect() as db:
        for value in only_acme:
            assert (
                db.execute(sa.text("SELECT COUNT(*) FROM metric_values WHERE value = :v"), {"v": value}).scalar() == 0
            )
        assert (
            db.execute(sa.text("SELECT COUNT(*) FROM metric_record_buckets WHERE connection_id = 'sf-acme'")).scalar()
            == 0
        )
        assert (
            db.execute(sa.text("SELECT COUNT(*) FROM metric_bucket_marks WHERE connection_id = 'sf-acme'")).scalar()
            == 0
        )
        assert db.execute(sa.text("SELECT COUNT(*) FROM metric_bucket_marks WHERE connection_id = 'sf-beta'")).scalar()
    for root in (dagster_home, platform.settings.home):
        assert files_containing(root, access.encode()) == [] and files_containing(root, refresh.encode()) == []
    assert files_containing(dagster_home, b"sf-acme") == []
    assert files_containing(dagster_home, b"sf-beta")  # the search is not vacuous: the other connection is there
    # The audit: removal, then one deletion attempt that completed, naming the destroyed data key.
    actions = [(e["action"], e["details"].get("data_key_id")) for e in audit.entries(platform.engine, "sf-acme")]
    assert [a for a, _ in actions] == ["remove", "deletion_started", "deletion_completed"]
    assert actions[0][1] == report.data_key_id
    assert platform.registry.get("sf-acme").status is ConnectionStatus.DELETED


def test_interrupted_deletion_is_completed_by_the_next_attempt(
    platform, workspace, sf_sandbox, sf_resource, monkeypatch
) -> None:
    connect(platform, sf_sandbox, sf_resource)
    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    with dg.instance_for_test() as instance:
        materialize = Materializer(platform, sf_resource, instance)
        instance.add_dynamic_partitions("salesforce_connections", ["sf-acme"])

        def crash(*_args, **_kwargs):
            raise RuntimeError("power cut")

        monkeypatch.setattr("dfx_pipelines.lifecycle.deletion._delete_runs", crash)
        with pytest.raises(RuntimeError):
            delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")
        assert platform.registry.get("sf-acme").status is ConnectionStatus.REMOVED  # not marked deleted
        monkeypatch.undo()
        report = delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")
        assert report.partition_removed and materialize is not None
    actions = [e["action"] for e in audit.entries(platform.engine, "sf-acme")]
    assert actions == ["remove", "deletion_started", "deletion_failed", "deletion_started", "deletion_completed"]


def test_provider_unreachable_still_destroys_our_copy(platform, workspace, sf_sandbox, sf_resource) -> None:
    connect(platform, sf_sandbox, sf_resource)  # no sandbox CA in the settings folder: the provider call fails
    report = revoke_connection(platform, SALESFORCE, "sf-acme", remove=False, actor="test")
    assert not report.provider_revoked and "local credentials destroyed anyway" in report.provider_detail
    assert platform.vault.data_key_id("acme", "sf-acme") is None and report.secrets_deleted == 2
    assert platform.registry.get("sf-acme").status is ConnectionStatus.REVOKED


class _UnreachableProvider:
    """The network edge only: the provider's revocation endpoint cannot be reached."""

    def revoke_at_provider(self, platform, connection):
        raise ConnectorError("revocation endpoint unreachable")


def test_the_report_says_nothing_was_destroyed_when_nothing_was_held(platform, workspace, caplog) -> None:
    """The provider cannot be reached and we hold no credential for the connection: the report and the
    warning must say that nothing was destroyed, not that credentials were "destroyed anyway"."""
    platform.registry.add_connection(
        parse_connection({"id": "sf-bare", "workspace_id": "acme", "kind": "salesforce", "display_name": "Bare"})
    )
    with caplog.at_level("WARNING"):
        report = revoke_connection(platform, _UnreachableProvider(), "sf-bare", remove=False, actor="test")  # type: ignore[arg-type]
    assert not report.provider_revoked and report.secrets_deleted == 0 and report.data_key_id is None
    assert "nothing was destroyed" in report.summary() and "destroyed anyway" not in report.summary()
    assert "destroyed anyway" not in caplog.text and "nothing was destroyed" in caplog.text


def test_unknown_and_active_connections(platform, workspace, sf_sandbox, sf_resource) -> None:
    with pytest.raises(UnknownConnectionError, match="sf-ghost"):
        revoke_connection(platform, SALESFORCE, "sf-ghost", remove=False, actor="test")
    connect(platform, sf_sandbox, sf_resource)
    with dg.instance_for_test() as instance, pytest.raises(ValueError, match="is active"):
        delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")


def test_overdue_deletion_raises_the_alarm(platform, workspace, sf_sandbox, sf_resource) -> None:
    from datetime import timedelta

    connect(platform, sf_sandbox, sf_resource)
    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    connection = platform.registry.get("sf-acme")
    connection.removed_at = connection.removed_at - timedelta(days=31)
    platform.registry.save(connection)
    assert [c.id for c in overdue(platform)] == ["sf-acme"]
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(
            instance=instance,
            resources={
                "platform": PlatformResource(
                    home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
                )
            },
        )
        result = deletion_overdue_sensor(context)
    [request] = result.run_requests
    assert request.tags["dfx/alert"] == "deletion-overdue" and request.tags["dfx/connection"] == "sf-acme"


@pytest.fixture(params=["sqlite", "postgres"])
def dagster_instance(request: pytest.FixtureRequest):
    """A Dagster instance on SQLite (the embedded default) or on a fresh PostgreSQL database (production)."""
    if request.param == "sqlite":
        with dg.instance_for_test() as instance:
            yield instance
        return
    name = f"dfx_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name, drivername="postgresql")
    try:
        with dg.instance_for_test(
            overrides={"storage": {"postgres": {"postgres_url": url.render_as_string(hide_password=False)}}}
        ) as instance:
            yield instance
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _events_of(instance: dg.DagsterInstance, partition_prefix: str) -> list[str]:
    found = []
    for fetch in (instance.fetch_materializations, instance.fetch_observations):
        records = fetch(dg.AssetRecordsFilter(asset_key=dg.AssetKey(["salesforce", "win_rate"])), limit=100).records
        found += [r.partition_key for r in records if (r.partition_key or "").startswith(partition_prefix)]
    return sorted(found)


def test_events_outside_tagged_runs_are_erased(platform, workspace, sf_sandbox, sf_resource, dagster_instance) -> None:
    """Events of the connection's partitions recorded by a run that names no connection, or by no run at
    all (runless materializations and observations), go too — and Dagster's per-asset copy of the latest
    materialization with them — while events of other connections (one whose id merely starts the same
    way included) stay."""
    instance = dagster_instance
    connect(platform, sf_sandbox, sf_resource)
    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    key = dg.AssetKey(["salesforce", "win_rate"])

    @dg.op
    def record(context: dg.OpExecutionContext) -> None:
        context.log_event(dg.AssetMaterialization(asset_key=key, partition="sf-acme|2026-11-20"))

    @dg.job(executor_def=dg.in_process_executor)
    def untagged() -> None:  # a run that names no connection in its tags
        record()

    instance.add_dynamic_partitions("salesforce_connections", ["sf-acme"])
    assert untagged.execute_in_process(instance=instance).success
    for partition in ("sf-beta|2026-11-21", "sf-acme-2|2026-11-21", "sf-acme|2026-11-21"):  # acme's is the latest
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=key, partition=partition, metadata={"secret_total": 987654.0})
        )
    instance.report_runless_asset_event(dg.AssetObservation(asset_key=key, partition="sf-acme|2026-11-22"))
    assert _events_of(instance, "sf-acme|") == ["sf-acme|2026-11-20", "sf-acme|2026-11-21", "sf-acme|2026-11-22"]

    report = delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")

    assert report.partition_events_wiped == 3 and instance.get_run_records() == []
    assert _events_of(instance, "sf-acme|") == []
    assert _events_of(instance, "sf-beta|") == ["sf-beta|2026-11-21"] and _events_of(instance, "sf-acme-2|") == [
        "sf-acme-2|2026-11-21"
    ]
    latest = instance.get_latest_materialization_event(key)  # Dagster's per-asset copy, not a query
    assert latest is not None and latest.dagster_event.partition == "sf-acme-2|2026-11-21"
    assert instance.get_materialized_partitions(key) == {"sf-beta|2026-11-21", "sf-acme-2|2026-11-21"}
    assert audit.entries(platform.engine, "sf-acme")[-1]["action"] == "deletion_completed"


def test_events_that_cannot_be_erased_fail_the_deletion_loudly(
    platform, workspace, sf_sandbox, sf_resource, monkeypatch
) -> None:
    from dfx_pipelines.lifecycle import dagster_private, deletion

    connect(platform, sf_sandbox, sf_resource)
    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    monkeypatch.setattr(
        dagster_private, "delete_runless_partition_events", lambda instance, key, connection_id: None
    )  # a storage that cannot
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key=["salesforce", "win_rate"], partition="sf-acme|2026-11-21")
        )
        with pytest.raises(deletion.DeletionIncomplete, match="could not be erased"):
            delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")
    assert audit.entries(platform.engine, "sf-acme")[-1]["action"] == "deletion_failed"
    assert platform.registry.get("sf-acme").status is ConnectionStatus.REMOVED  # still due: the next run retries


def test_closing_a_workspace_removes_every_connection_at_once(platform, workspace, sf_sandbox, sf_resource) -> None:
    from dfx_pipelines.lifecycle.definitions import close_workspace_job
    from dfx_pipelines.platform.errors import ConfigError
    from dfx_pipelines.platform.registry import Workspace

    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)  # revocation trusts the embedded sandbox CA
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(sf_sandbox.ca_pem_path).read_bytes())
    connect(platform, sf_sandbox, sf_resource)
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-acme-eu", "display_name": "Acme EU"})
    platform.registry.upsert_workspace(Workspace(id="beta", name="Beta", owner_email="owner@beta.test"))
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-beta", "workspace_id": "beta", "display_name": "Beta"})
    revoke_connection(
        platform, SALESFORCE, "sf-acme-eu", remove=False, actor="test"
    )  # revoked earlier: closure removes it too
    refresh = platform.vault.get(platform.registry.get("sf-acme").secret_ref("oauth_refresh_token")).get_secret_value()
    resources = {
        "platform": PlatformResource(home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url)
    }
    run_config = {
        "ops": {"close_workspace_op": {"config": {"workspace_id": "acme", "actor": "ops@dataflow-xpert.test"}}}
    }

    with dg.instance_for_test() as instance:
        result = close_workspace_job.execute_in_process(run_config=run_config, resources=resources, instance=instance)
        assert result.success
        output = result.output_for_node("close_workspace_op")
        assert sorted(output["removed"]) == ["sf-acme", "sf-acme-eu"]
        # Repeating it changes nothing: same closing time, nothing left to remove.
        again = close_workspace_job.execute_in_process(
            run_config=run_config, resources=resources, instance=instance
        ).output_for_node("close_workspace_op")
        assert again["removed"] == [] and again["closed_at"] == output["closed_at"]

    assert platform.registry.get_workspace("acme").closed_at is not None
    for slug in ("sf-acme", "sf-acme-eu"):
        assert platform.registry.get(slug).status is ConnectionStatus.REMOVED
        assert platform.vault.data_key_id("acme", slug) is None
    revoked = [r.form().get("token") for r in sf_sandbox.server.requests if r.path == "/services/oauth2/revoke"]
    assert len(revoked) == 2 and revoked[-1] == refresh  # sf-acme-eu's at its revocation, sf-acme's at the closure
    assert sorted(c.id for c in due_for_deletion(platform)) == [
        "sf-acme",
        "sf-acme-eu",
    ]  # the deletion job takes it from here
    assert [e["action"] for e in audit.entries(platform.engine, "sf-acme-eu")] == ["revoke", "remove"]
    assert audit.entries(platform.engine, "sf-acme")[0]["actor"] == "ops@dataflow-xpert.test"
    # Another customer's workspace is untouched; a closed one takes no new connection and is not reopened.
    assert platform.registry.get("sf-beta").status is ConnectionStatus.ACTIVE and platform.vault.data_key_id(
        "beta", "sf-beta"
    )
    with pytest.raises(ConfigError, match="workspace 'acme' is closed"):
        connect(platform, sf_sandbox, sf_resource, config={"id": "sf-acme-new", "display_name": "Acme again"})
    with pytest.raises(ConfigError, match="is closed"):
        platform.registry.upsert_workspace(Workspace(id="acme", name="Acme Corp", owner_email="owner@acme.test"))
