"""A canary password for the PostgreSQL role, through connect, a successful range run, a refused run and a
failed login: found nowhere but the vault's ciphertext — not in Dagster's event or run storage (metadata,
run config, tags), any file under the project's home or Dagster's, the captured logs and output, the
metric database, or the database server's own log (SCRAM never sends it)."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import pytest

from dfx_pipelines.connectors.postgres.assets import postgres_metric_specs
from dfx_pipelines.connectors.postgres.connect import connect_postgres
from dfx_pipelines.connectors.postgres.resource import PostgresResource
from dfx_pipelines.connectors.postgres.sandbox import READER
from dfx_pipelines.platform.errors import AuthError
from dfx_pipelines.platform.partitions import range_tags, sync_partitions
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines.platform.resources import PlatformResource

from .conftest import COLUMNS, DAY, GROUP, admin_sql, endpoint

pytestmark = pytest.mark.xdist_group(GROUP)


def files_containing(root: Path, needle: bytes) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_the_canary_password_appears_nowhere(
    tmp_path: Path, seeded, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture
) -> None:
    canary = f"pg-canary-{uuid.uuid4().hex}"
    admin_sql(seeded, f"ALTER ROLE {READER} PASSWORD '{canary}'")
    dfx_home, dagster_home = tmp_path / "dfx_home", tmp_path / "dagster_home"
    resource = PlatformResource(home=str(dfx_home))
    platform = resource.get()
    try:
        platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
        config = {
            "id": "pg-acme",
            "workspace_id": "acme",
            "display_name": "Acme",
            "selection": {"schemas": {"sales": ["orders"]}, "objects": {"sales.orders": COLUMNS}},
            "endpoint": endpoint(seeded),
        }
        connection = connect_postgres(platform, config=config, password=canary)
        with pytest.raises(AuthError) as wrong:  # a failed login quotes neither password
            connect_postgres(platform, config={**config, "id": "pg-other"}, password=canary + "-wrong")
        assert canary not in str(wrong.value)
        dagster_home.mkdir()
        with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
            sync_partitions(instance, platform.registry, ["postgres"])
            resources = {"platform": resource, "postgres": PostgresResource()}
            good = dg.materialize(
                [postgres_metric_specs],
                instance=instance,
                tags=range_tags("pg-acme", DAY, DAY.replace(day=7)),
                resources=resources,
            )
            assert good.success
            # A run refused by the cost ceiling: its failure goes through the step's error path.
            platform.registry.save(
                connection.model_copy(update={"endpoint": {**connection.endpoint, "max_plan_cost": 1.0}})
            )
            refused = dg.materialize(
                [postgres_metric_specs],
                instance=instance,
                partition_key=f"pg-acme|{DAY}",
                resources=resources,
                raise_on_error=False,
            )
            assert not refused.success
            stored = "\n".join(
                str(event) + str(instance.get_run_by_id(result.run_id))
                for result in (good, refused)
                for event in instance.all_logs(result.run_id)
            )
    finally:
        admin_sql(seeded, f"ALTER ROLE {READER} PASSWORD '{seeded.passwords[READER]}'")

    needle = canary.encode()
    assert canary not in stored
    assert files_containing(dagster_home, needle) == []
    assert files_containing(dfx_home, needle) == []  # metric database, registry, vault (ciphertext only)
    assert files_containing(seeded.folder, needle) == []  # the server's log, catalog and WAL: SCRAM only
    assert canary not in caplog.text
    out, err = capfd.readouterr()
    assert canary not in out + err
    # The search was not vacuous: the runs stored values and their SQL, and the vault holds the password.
    assert platform.metric_store.read(connection_id="pg-acme") and "dfx_period" in stored
    assert platform.vault.get(connection.secret_ref("database_password")).get_secret_value() == canary
