"""The metric store: idempotent batches per (connection, metric, partition), with provenance."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import BucketMark, MetricStore, Provenance, RecordBucket
from dfx_pipelines.platform.registry import Workspace, parse_connection
from dfx_pipelines.platform.services import Platform


@pytest.fixture(params=["sqlite", "postgresql"])
def store_platform(request: pytest.FixtureRequest) -> Platform:
    platform = request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    for slug in ("sf-acme", "sf-beta"):
        platform.registry.add_connection(
            parse_connection({"id": slug, "workspace_id": "acme", "kind": "salesforce", "display_name": slug})
        )
    return platform


def rows(day: date, amount: float) -> list[MetricRow]:
    return [
        MetricRow("win_rate", "won_amount", amount, day, MetricRow.dims(owner="Ann")),
        MetricRow("win_rate", "won_amount", amount * 2, day, MetricRow.dims(owner="Bob")),
        MetricRow("win_rate", "win_rate_by_count", None, day),
    ]


def test_rerun_replaces_instead_of_duplicating(store_platform: Platform) -> None:
    store, connection = store_platform.metric_store, store_platform.registry.get("sf-acme")
    day = date(2026, 11, 25)
    first = store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        rows(day, 10),
        Provenance("run-1", "SELECT ...", api_calls=2, records_read=40),
    )
    second = store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        rows(day, 20),
        Provenance("run-2", "SELECT ...", api_calls=2, records_read=41),
    )
    assert (first.rows_written, first.rows_replaced) == (3, 0)
    assert (second.rows_written, second.rows_replaced) == (3, 3)
    values = store.read(connection_id="sf-acme", metric="win_rate")
    assert sorted((v["dimensions"].get("owner", ""), v["value"] or 0.0) for v in values) == [
        ("", 0.0),
        ("Ann", 20.0),
        ("Bob", 40.0),
    ]
    assert {v["run_id"] for v in values} == {"run-2"}
    [batch] = store.batches("sf-acme")
    assert (batch["api_calls"], batch["records_read"], batch["source"]) == (2, 41, "SELECT ...")


def test_partitions_and_connections_are_independent(store_platform: Platform) -> None:
    store = store_platform.metric_store
    acme, beta = store_platform.registry.get("sf-acme"), store_platform.registry.get("sf-beta")
    store.write(acme, "win_rate", "sf-acme|2026-11-24", rows(date(2026, 11, 24), 1), Provenance("r", "q"))
    store.write(acme, "win_rate", "sf-acme|2026-11-25", rows(date(2026, 11, 25), 2), Provenance("r", "q"))
    store.write(beta, "win_rate", "sf-beta|2026-11-25", rows(date(2026, 11, 25), 3), Provenance("r", "q"))
    assert len(store.read(connection_id="sf-acme")) == 6
    assert len(store.read(period_from=date(2026, 11, 25))) == 6
    assert store.delete_connection("sf-acme") == 6
    assert store.read(connection_id="sf-acme") == [] and len(store.read(connection_id="sf-beta")) == 3


def test_bad_rows_leave_the_previous_batch_intact(store_platform: Platform) -> None:
    store, connection = store_platform.metric_store, store_platform.registry.get("sf-acme")
    store.write(connection, "win_rate", "p", rows(date(2026, 11, 25), 5), Provenance("run-1", "q"))
    with pytest.raises(ConfigError, match="non-finite"):
        store.write(
            connection, "win_rate", "p", [MetricRow("win_rate", "won_amount", float("nan"))], Provenance("run-2", "q")
        )
    with pytest.raises(ConfigError, match="written as"):
        store.write(connection, "win_rate", "p", [MetricRow("other", "x", 1.0)], Provenance("run-2", "q"))
    assert {v["run_id"] for v in store.read(connection_id="sf-acme")} == {"run-1"}


def test_values_are_aggregates_only(store_platform: Platform) -> None:
    """The store's schema has no column that could hold a raw record: numbers, labels and provenance."""
    inspector = sa.inspect(store_platform.engine)
    columns = {c["name"] for c in inspector.get_columns("metric_values")}
    assert columns == {"id", "batch_id", "period", "measure", "dimensions", "value"}


def test_record_buckets_are_replaced_with_their_batch_and_hold_ids_and_days_only(store_platform: Platform) -> None:
    store, connection = store_platform.metric_store, store_platform.registry.get("sf-acme")
    day, other = date(2026, 11, 25), date(2026, 11, 24)
    store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        rows(day, 1),
        Provenance("r1", "q"),
        RecordBucket(day, frozenset({"006A", "006B"})),
    )
    store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-24",
        rows(other, 1),
        Provenance("r1", "q"),
        RecordBucket(other, frozenset({"006C"})),
    )
    store.write(
        connection,
        "sales_cycle_length",
        "sf-acme|2026-11-25",
        [],
        Provenance("r1", "q"),
        RecordBucket(day, frozenset({"006A"})),
    )
    assert store.buckets_of("sf-acme", ["006A", "006C", "006Z"]) == {
        "win_rate": {day, other},
        "sales_cycle_length": {day},
    }
    assert store.buckets_of("sf-acme", ["006A"], ["win_rate"]) == {"win_rate": {day}}
    assert store.buckets_of("sf-beta", ["006A"]) == {}
    # A rerun of the day replaces its bucket: 006A left the day, 006D arrived.
    store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        rows(day, 2),
        Provenance("r2", "q"),
        RecordBucket(day, frozenset({"006B", "006D"})),
    )
    assert store.buckets_of("sf-acme", ["006A"]) == {"sales_cycle_length": {day}}
    assert store.buckets_of("sf-acme", ["006D"]) == {"win_rate": {day}}
    assert store.bucket_count("sf-acme") == 4
    columns = {c["name"] for c in sa.inspect(store_platform.engine).get_columns("metric_record_buckets")}
    assert columns == {"connection_id", "metric", "day", "record_id"}  # no field values
    assert store.delete_connection("sf-acme") > 0 and store.bucket_count("sf-acme") == 0


def test_a_bucket_is_patched_with_its_mark_in_the_batchs_transaction_and_the_marks_go_with_the_connection(
    store_platform: Platform,
) -> None:
    store, connection = store_platform.metric_store, store_platform.registry.get("sf-acme")
    day, other = date(2026, 11, 25), date(2026, 11, 24)
    rebuilt = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    full = BucketMark(rebuilt, rebuilt, "digest")
    store.write(
        connection, "win_rate", "sf-acme|2026-11-25", rows(day, 1), Provenance("r1", "q"),
        RecordBucket(day, frozenset({"006A", "006B"}), mark=full),
    )  # fmt: skip
    store.write(
        connection, "win_rate", "sf-acme|2026-11-24", rows(other, 1), Provenance("r1", "q"),
        RecordBucket(other, frozenset({"006C"})),
    )  # fmt: skip
    assert store.bucket_marks("sf-acme", "win_rate", [day, other]) == {day: full}  # no mark: read in full later
    later = BucketMark(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), rebuilt, "digest")
    patch = RecordBucket(day, frozenset({"006D"}), frozenset({"006A"}), patch=True, mark=later)
    for attempt in ("r2", "r2-retried"):  # a patch written twice is one patch
        store.write(connection, "win_rate", "sf-acme|2026-11-25", rows(day, 2), Provenance(attempt, "q"), patch)
        assert store.bucket_members("sf-acme", "win_rate", [day, other], ["006A", "006B", "006C", "006D"]) == {
            day: {"006B", "006D"},
            other: {"006C"},
        }
    assert store.bucket_marks("sf-acme", "win_rate", [day]) == {day: later}
    assert store.bucket_marks("sf-acme", "sales_cycle_length", [day]) == {}
    # A whole bucket without a mark drops the old mark: nothing claims it complete as of any instant.
    store.write(
        connection, "win_rate", "sf-acme|2026-11-25", rows(day, 2), Provenance("r3", "q"),
        RecordBucket(day, frozenset({"006B"})),
    )  # fmt: skip
    assert store.bucket_marks("sf-acme", "win_rate", [day]) == {}
    with pytest.raises(ConfigError, match="removes ids"):
        store.write(
            connection, "win_rate", "sf-acme|2026-11-25", [], Provenance("r4", "q"),
            RecordBucket(day, frozenset(), frozenset({"006B"})),
        )  # fmt: skip
    store.write(
        connection, "win_rate", "sf-acme|2026-11-25", rows(day, 2), Provenance("r5", "q"),
        RecordBucket(day, frozenset({"006B"}), mark=full),
    )  # fmt: skip
    columns = {c["name"] for c in sa.inspect(store_platform.engine).get_columns("metric_bucket_marks")}
    assert columns == {"connection_id", "metric", "day", "as_of", "rebuilt_at", "source"}  # no field values
    assert store.delete_connection("sf-acme") > 0
    assert store.bucket_count("sf-acme") == 0 and store.bucket_marks("sf-acme", "win_rate", [day]) == {}


def test_a_write_that_dies_leaves_values_and_bucket_as_they_were(
    store_platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, connection = store_platform.metric_store, store_platform.registry.get("sf-acme")
    day = date(2026, 11, 25)
    store.write(
        connection,
        "win_rate",
        "sf-acme|2026-11-25",
        rows(day, 1),
        Provenance("r1", "q"),
        RecordBucket(day, frozenset({"006A"})),
    )
    with pytest.raises(ConfigError, match="malformed record id"):
        store.write(
            connection,
            "win_rate",
            "sf-acme|2026-11-25",
            rows(day, 2),
            Provenance("r2", "q"),
            RecordBucket(day, frozenset({"x" * 65})),
        )

    def dies(*args: object) -> None:
        raise RuntimeError("worker died while writing the bucket")

    monkeypatch.setattr(MetricStore, "_replace_bucket", staticmethod(dies))
    with pytest.raises(RuntimeError):
        store.write(
            connection,
            "win_rate",
            "sf-acme|2026-11-25",
            rows(day, 2),
            Provenance("r2", "q"),
            RecordBucket(day, frozenset({"006B"})),
        )
    assert {v["run_id"] for v in store.read(connection_id="sf-acme")} == {"r1"}
    assert store.buckets_of("sf-acme", ["006A", "006B"]) == {"win_rate": {day}} and store.bucket_count("sf-acme") == 1


def test_metric_database_can_share_postgres_with_dagster_storage(pg_platform: Platform) -> None:
    """Dagster's PostgreSQL storage keeps its alembic revision in `alembic_version`; ours must not collide."""
    from dfx_pipelines.platform.db import is_current, migrate

    with pg_platform.engine.begin() as db:
        db.execute(sa.text("CREATE TABLE IF NOT EXISTS alembic_version (version_num varchar(32) primary key)"))
        db.execute(sa.text("DELETE FROM alembic_version"))
        db.execute(sa.text("INSERT INTO alembic_version VALUES ('29b539ebc72a')"))  # a Dagster revision
    migrate(pg_platform.engine)
    assert is_current(pg_platform.engine)
