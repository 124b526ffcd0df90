"""Deletion leaves no trace of the connection where the first deletion code did not look: sensor tick
history (its run ids, run keys, run requests, cursor entries, skip reasons, partition requests and
errors, and the sensors' live cursors) — other connections' parts of the same ticks stay — and, on
PostgreSQL, the bytes of the deleted rows in the table files (dead tuples), checked page by page with
`pageinspect`."""

import json
import re
import struct
import time
import uuid
from collections.abc import Iterator

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.definitions.run_request import RunRequest
from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteInstigatorOrigin, RemoteRepositoryOrigin
from dagster._core.scheduler.instigation import (
    DynamicPartitionsRequestResult,
    InstigatorState,
    InstigatorStatus,
    InstigatorType,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._core.storage.schedules.schema import JobTickTable
from dagster._serdes import create_snapshot_id
from dagster._utils.error import SerializableErrorInfo

from dfx_pipelines.connectors.salesforce.plugin import PLUGIN as SALESFORCE
from dfx_pipelines.connectors.salesforce.sandbox import SalesforceOrg, start_salesforce_sandbox
from dfx_pipelines.lifecycle.deletion import delete_connection_data
from dfx_pipelines.lifecycle.revocation import revoke_connection
from dfx_pipelines.platform.registry import TOMBSTONE_NAME
from dfx_pipelines_tests.conftest import PG_ADMIN_URL
from dfx_pipelines_tests.connectors.salesforce.conftest import ORG_NOW, Materializer, connect, sf_resource, sf_sandbox  # noqa: F401 - fixtures
from dfx_pipelines_tests.lifecycle.test_revocation_and_deletion import dagster_instance  # noqa: F401 - fixture

ACME = re.compile(r"(?<![a-z0-9-])sf-acme(?![a-z0-9-])")


@dg.op
def noop() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def tagged_sync() -> None:
    noop()


def _sensor_origin(name: str) -> RemoteInstigatorOrigin:
    return RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("dfx_pipelines"), "__repository__"), name
    )


def _tick(name: str, **fields) -> TickData:
    origin = _sensor_origin(name)
    defaults = {
        "status": TickStatus.SUCCESS,
        "timestamp": time.time(),
        "run_ids": [],
        "run_keys": [],
        "selector_id": create_snapshot_id(origin.get_selector()),
    }
    return TickData(
        instigator_origin_id=origin.get_id(),
        instigator_name=name,
        instigator_type=InstigatorType.SENSOR,
        **{**defaults, **fields},
    )


def _cdc_cursor() -> str:
    return json.dumps(
        {"sf-acme": {"Opportunity": "2026-11-20T11:00:00Z"}, "sf-beta": {"Opportunity": "2026-11-20T11:05:00Z"}},
        sort_keys=True,
    )


def seed_sensor_history(
    instance: dg.DagsterInstance, acme_run: str, beta_run: str, *, longer_id: bool = True
) -> dict[str, int]:
    """Ticks as the sensor daemon records them for the change sensors, the partition sensor and a
    failing tick, with both connections in them; and one tick of sf-acme-2 only (an id sf-acme begins)."""
    requests = [
        RunRequest(
            run_key="sf-acme:2026-11-20:2026-11-20T11:00:00Z",
            job_name="salesforce_daily_job",
            tags={"dfx/connection": "sf-acme"},
            partition_key="sf-acme|2026-11-20",
        ),
        RunRequest(
            run_key="sf-beta:2026-11-20:2026-11-20T11:05:00Z",
            job_name="salesforce_daily_job",
            tags={"dfx/connection": "sf-beta"},
            partition_key="sf-beta|2026-11-20",
        ),
    ]
    ticks = {
        "requested": _tick(
            "salesforce_cdc_sensor",
            run_ids=[acme_run, beta_run],
            run_keys=[r.run_key for r in requests],
            cursor=_cdc_cursor(),
            run_requests=requests,
            reserved_run_ids=[acme_run, beta_run],
            log_key=["dfx", "salesforce_cdc_sensor", "tick-1"],
        ),
        "skipped": _tick(
            "salesforce_cdc_sensor",
            status=TickStatus.SKIPPED,
            skip_reason="sf-acme: poll failed; sf-beta: full resync (new objects)",
            cursor=_cdc_cursor(),
        ),
        "failed": _tick(
            "salesforce_cdc_sensor",
            status=TickStatus.FAILURE,
            error=SerializableErrorInfo("AuthError: refresh failed for sf-acme", ["stack"], "AuthError"),
        ),
        "partitions": _tick(
            "connection_partitions_sensor",
            dynamic_partitions_request_results=[
                DynamicPartitionsRequestResult("salesforce_connections", ["sf-acme", "sf-beta"], None, [])
            ],
        ),
        "other": _tick(
            "salesforce_cdc_sensor",
            status=TickStatus.SKIPPED,
            skip_reason="sf-acme-2: poll failed",
            cursor=json.dumps({"sf-acme-2": {}}),
        ),
    }
    ids = {name: instance.create_tick(data).tick_id for name, data in ticks.items() if longer_id or name != "other"}
    origin = _sensor_origin("salesforce_cdc_sensor")
    instance.add_instigator_state(
        InstigatorState(
            origin,
            InstigatorType.SENSOR,
            InstigatorStatus.STOPPED,
            SensorInstigatorData(cursor=_cdc_cursor(), last_run_key=requests[0].run_key),
        )
    )
    return ids


def _tick_bodies(instance: dg.DagsterInstance) -> dict[int, str]:
    with instance.schedule_storage.connect() as db:
        return {row[0]: row[1] for row in db.execute(sa.select(JobTickTable.c.id, JobTickTable.c.tick_body))}


def test_deletion_erases_the_connection_from_sensor_history(
    platform, workspace, sf_sandbox, sf_resource, dagster_instance
) -> None:
    instance = dagster_instance
    connect(platform, sf_sandbox, sf_resource)
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-beta", "display_name": "Beta"})
    acme_run = tagged_sync.execute_in_process(instance=instance, tags={"dfx/connection": "sf-acme"}).run_id
    beta_run = tagged_sync.execute_in_process(instance=instance, tags={"dfx/connection": "sf-beta"}).run_id
    ids = seed_sensor_history(instance, acme_run, beta_run)
    # A sensor named after the connection: no part of its tick can be taken out, so the tick goes whole.
    ids["own_sensor"] = instance.create_tick(
        _tick("poll_sf-acme", status=TickStatus.SKIPPED, skip_reason="no changes")
    ).tick_id
    other_before = _tick_bodies(instance)[ids["other"]]
    assert all(ACME.search(_tick_bodies(instance)[ids[n]]) for n in ("requested", "skipped", "failed", "partitions"))

    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    report = delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")

    assert report.ticks_scrubbed == 5 and report.sensor_states_scrubbed == 1
    assert ids["own_sensor"] not in _tick_bodies(instance)
    bodies = _tick_bodies(instance)
    assert [tick_id for tick_id, body in bodies.items() if ACME.search(body)] == []
    assert bodies[ids["other"]] == other_before  # a longer id that begins the same is not touched
    requested = instance.schedule_storage.get_tick(ids["requested"]).tick_data
    assert requested.run_ids == [beta_run] and requested.reserved_run_ids == [beta_run]
    assert requested.run_keys == ["sf-beta:2026-11-20:2026-11-20T11:05:00Z"] and [
        r.tags["dfx/connection"] for r in requested.run_requests
    ] == ["sf-beta"]
    assert json.loads(requested.cursor) == {"sf-beta": {"Opportunity": "2026-11-20T11:05:00Z"}}
    assert (
        instance.schedule_storage.get_tick(ids["skipped"]).tick_data.skip_reason == "sf-beta: full resync (new objects)"
    )
    failed = instance.schedule_storage.get_tick(ids["failed"]).tick_data.error
    assert failed.cls_name == "AuthError" and "sf-acme" not in failed.message and failed.stack == []
    [partitions] = instance.schedule_storage.get_tick(ids["partitions"]).tick_data.dynamic_partitions_request_results
    assert partitions.added_partitions == ["sf-beta"]
    [state] = instance.all_instigator_state()
    assert json.loads(state.instigator_data.cursor) == {"sf-beta": {"Opportunity": "2026-11-20T11:05:00Z"}}
    assert state.instigator_data.last_run_key is None
    assert instance.get_run_by_id(beta_run) is not None and instance.get_run_by_id(acme_run) is None


# ------------------------------------------------------------------ PostgreSQL's files


def _relations(db: sa.Connection, table: str) -> list[str]:
    """The table, its TOAST table and every index of both: every file a row's bytes can be in."""
    return list(
        db.execute(
            sa.text("""
        SELECT t.oid::regclass::text FROM pg_class t WHERE t.oid = CAST(:t AS regclass)
        UNION ALL SELECT t.reltoastrelid::regclass::text FROM pg_class t WHERE t.oid = CAST(:t AS regclass) AND t.reltoastrelid <> 0
        UNION ALL SELECT i.indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON i.indrelid IN (t.oid, t.reltoastrelid)
                  WHERE t.oid = CAST(:t AS regclass)
    """),
            {"t": table},
        ).scalars()
    )


def pages_containing(url: str, tables: list[str], needle: bytes) -> dict[str, int]:
    """Per relation, how many of its pages hold `needle` anywhere — live rows, dead tuples, free space
    (pageinspect's `get_raw_page`: the whole 8 kB page as the server has it)."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    found: dict[str, int] = {}
    try:
        with engine.connect() as db:
            db.execute(
                sa.text("CREATE EXTENSION IF NOT EXISTS pageinspect")
            )  # superuser: the test connects as postgres
            for table in tables:
                for relation in _relations(db, table):
                    count = db.execute(
                        sa.text("""
                        SELECT count(*) FROM generate_series(0, pg_relation_size(CAST(:r AS regclass)) / current_setting('block_size')::int - 1) AS b
                        WHERE position(CAST(:n AS bytea) IN get_raw_page(:r, b::int)) > 0
                    """),
                        {"r": relation, "n": needle},
                    ).scalar_one()
                    if count:
                        found[relation] = count
    finally:
        engine.dispose()
    return found


DAGSTER_TABLES = [
    "runs",
    "run_tags",
    "event_logs",
    "asset_event_tags",
    "asset_keys",
    "dynamic_partitions",
    "job_ticks",
    "instigators",
    "jobs",
]


@pytest.fixture
def pg_dagster() -> Iterator[tuple[dg.DagsterInstance, str]]:
    name = f"dfx_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = (
        sa.engine.make_url(PG_ADMIN_URL)
        .set(database=name, drivername="postgresql")
        .render_as_string(hide_password=False)
    )
    try:
        with dg.instance_for_test(overrides={"storage": {"postgres": {"postgres_url": url}}}) as instance:
            yield instance, url
    finally:
        with admin.connect() as db:
            db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_deleted_rows_are_gone_from_postgres_table_files(
    pg_platform, sf_sandbox, sf_resource, pg_dagster, request
) -> None:
    """Metric store and Dagster storage both on PostgreSQL, autovacuum or not: after deletion the
    connection's id is on no page of the tables deletion touched (Dagster's), and neither are its metric
    values nor what its tombstone dropped (name, instance URL) — while the other connection's are."""
    from dfx_pipelines.platform.registry import Workspace

    platform, (instance, dagster_url) = pg_platform, pg_dagster
    request_cleanup = request.addfinalizer
    metrics_url = platform.settings.metrics_db_url
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme Corp", owner_email="owner@acme.test"))
    acme_org = start_salesforce_sandbox(
        SalesforceOrg(seed=99, opportunities=250, now=ORG_NOW), ca=sf_sandbox.server.ca
    )  # an org of its own
    request_cleanup(acme_org.stop)
    connect(platform, acme_org, sf_resource, config={"display_name": "Jane Roe's pipeline org"})
    connect(platform, sf_sandbox, sf_resource, config={"id": "sf-beta", "display_name": "Beta"})
    materialize = Materializer(platform, sf_resource, instance)
    for slug in ("sf-acme", "sf-beta"):
        assert materialize(["open_pipeline_by_stage"], partition_key=slug, tags={"dfx/connection": slug}).success
        assert materialize(
            ["win_rate"],
            tags={
                "dagster/asset_partition_range_start": f"{slug}|2026-11-18",
                "dagster/asset_partition_range_end": f"{slug}|2026-11-20",
            },
        ).success
    acme_run = tagged_sync.execute_in_process(instance=instance, tags={"dfx/connection": "sf-acme"}).run_id
    beta_run = tagged_sync.execute_in_process(instance=instance, tags={"dfx/connection": "sf-beta"}).run_id
    seed_sensor_history(instance, acme_run, beta_run, longer_id=False)  # bytes are searched, not ids
    # A value only acme's org produced, as float8 stores it.
    acme_values = {row["value"] for row in platform.metric_store.read(connection_id="sf-acme")}
    beta_values = {row["value"] for row in platform.metric_store.read(connection_id="sf-beta")}
    value_bytes = struct.pack("<d", max(v for v in acme_values - beta_values if v))
    secret_bits = [b"Jane Roe's pipeline org", acme_org.url.encode()]
    # Not vacuous: everything searched for is on the pages before deletion.
    assert pages_containing(dagster_url, DAGSTER_TABLES, b"sf-acme")
    assert pages_containing(metrics_url, ["metric_batches"], b"sf-acme") and pages_containing(
        metrics_url, ["metric_values"], value_bytes
    )
    assert all(pages_containing(metrics_url, ["connections"], bit) for bit in secret_bits)

    revoke_connection(platform, SALESFORCE, "sf-acme", remove=True, actor="test")
    delete_connection_data(platform, SALESFORCE, instance, "sf-acme", actor="test")

    assert pages_containing(dagster_url, DAGSTER_TABLES, b"sf-acme") == {}
    assert pages_containing(metrics_url, ["metric_batches"], b"sf-acme") == {}
    assert pages_containing(metrics_url, ["metric_values"], value_bytes) == {}
    for bit in secret_bits:
        assert pages_containing(metrics_url, ["connections"], bit) == {}
    assert platform.registry.get("sf-acme").display_name == TOMBSTONE_NAME
    # The search still finds what should be there: the other connection, in every store.
    assert pages_containing(dagster_url, ["event_logs"], b"sf-beta") and pages_containing(
        metrics_url, ["metric_batches"], b"sf-beta"
    )
