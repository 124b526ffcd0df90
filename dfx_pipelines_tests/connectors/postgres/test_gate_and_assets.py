"""The PostgreSQL metric asset, its gate, its change sensor and its key-count check, against the real
throwaway cluster and the real Dagster: a range's values equal each day's values and an independent
computation on the server, with one query per spec for the whole range; hostile SQL is refused by the
shared gate before any estimate or query; the EXPLAIN ceiling and the statement timeout are clear errors
with nothing stored; the watermark sensor requests only the days touched; the key-count check notices a
hard delete; removal leaves no password, value or CA file behind."""

from __future__ import annotations

import dagster as dg
import pytest

from dfx_pipelines.connectors.postgres.assets import KEY_COUNT_CHECK, METRICS_KEY, key_count_result, time_type
from dfx_pipelines.connectors.postgres.metrics import KEY_COUNT_METRIC, specs_of
from dfx_pipelines.connectors.postgres.plugin import PLUGIN
from dfx_pipelines.connectors.postgres.queries import metric_query
from dfx_pipelines.connectors.postgres.resource import (
    CostRefused,
    GatedQuery,
    PostgresResource,
    StatementTimeout,
    ca_folder,
)
from dfx_pipelines.connectors.postgres.sensors import day_runs, poll_changes
from dfx_pipelines.platform.partitions import RANGE_END_TAG, RANGE_START_TAG, history_range, range_tags
from dfx_pipelines.platform.sql_gate.check import SqlRefused

from .conftest import DAY, GROUP, admin_sql, connect

pytestmark = pytest.mark.xdist_group(GROUP)
NODE = "postgres__metric_specs"


def stored(platform, metric: str) -> dict[tuple, float | None]:
    return {
        (r["period"], tuple(sorted(r["dimensions"].items()))): r["value"]
        for r in platform.metric_store.read(connection_id="pg-acme", metric=metric)
    }


def server_amounts(cluster, first: str, last: str) -> dict[tuple, float]:
    """The same metric computed independently on the server, by the administrator."""
    rows = admin_sql(
        cluster,
        "SELECT (ordered_at AT TIME ZONE 'UTC')::date, status, SUM(amount) FROM sales.orders "
        "WHERE (ordered_at AT TIME ZONE 'UTC')::date BETWEEN %s AND %s GROUP BY 1, 2",
        (first, last),
    )
    return {(day, (("status", status),)): float(total) for day, status, total in rows}


def test_a_range_equals_its_days_and_sends_one_query_per_spec(platform, pg_connection, seeded, materialize) -> None:
    days = ["2024-03-04", "2024-03-05", "2024-03-06"]
    for day in days:
        materialize(partition_key=f"pg-acme|{day}")
    per_day = stored(platform, "amount_by_status")
    regions_per_day = stored(platform, "orders_by_region")
    result = materialize(tags=range_tags("pg-acme", DAY.replace(day=4), DAY.replace(day=6)))
    assert stored(platform, "amount_by_status") == per_day == pytest.approx(server_amounts(seeded, days[0], days[-1]))
    assert stored(platform, "orders_by_region") == regions_per_day
    assert sum(regions_per_day.values()) == 300  # 100 orders a day
    [*day_materializations] = result.asset_materializations_for_node(NODE)
    assert sorted(str(m.partition) for m in day_materializations) == [f"pg-acme|{d}" for d in days]
    run_meta = {}
    for event in result.all_events:
        if event.event_type_value == "ASSET_MATERIALIZATION":
            metadata = event.event_specific_data.materialization.metadata  # type: ignore[union-attr]
            if "queries" in metadata:
                run_meta = {k: v.value for k, v in metadata.items()}
    # Two specs and one tracked table: three queries for three days (as for one), each EXPLAINed first.
    assert run_meta["queries"] == 3 and run_meta["days_in_run"] == 3
    assert run_meta["estimated_plan_cost"] > 0 and run_meta["estimated_rows_scanned"] > 0
    assert "GROUP BY 1, 2" in run_meta["sql"] and "customer_email" not in run_meta["sql"]
    keys = stored(platform, KEY_COUNT_METRIC)
    assert set(keys.values()) == {100.0} and len(keys) == 3


GATE_REFUSALS = [
    ("SELECT status, COUNT(*) AS n FROM sales.customers GROUP BY 1", "outside the connection's selection"),
    ("SELECT COUNT(DISTINCT customer_email) AS n FROM sales.orders", "customer_email are not selected"),
    ("SELECT COUNT(*) AS n FROM sales.orders o WHERE o.customer_email LIKE 'a%%'", "customer_email are not selected"),
    ("SELECT COUNT(*) AS n FROM (SELECT customer_email FROM sales.orders) AS x", "customer_email are not selected"),
    ("SELECT status, amount FROM sales.orders", "must be an aggregate"),
    ("SELECT status, SUM(amount) OVER () AS s FROM sales.orders", "must be an aggregate"),
    ("SELECT status, COUNT(*) AS n FROM sales.orders", "neither an aggregate nor a GROUP BY key"),
    ("SELECT COUNT(*) AS n FROM sales.orders; DELETE FROM sales.orders", "one statement per query"),
    ("DELETE FROM sales.orders", "DELETE statements are refused"),
    ("SELECT COUNT(*) AS n FROM sales.orders FOR UPDATE", "FOR UPDATE/SHARE"),
    ("SELECT COUNT(*) AS n FROM orders", "must be qualified with its schema"),
    ("SELECT COUNT(*) AS n FROM pg_catalog.pg_authid", "system schema"),
    ("SELECT COUNT(*) AS n FROM generate_series(1, 10)", "table functions are refused"),
    ("SELECT COUNT(*) AS n FROM other_db.sales.orders", "names another database"),
]


@pytest.mark.parametrize(("sql", "problem"), GATE_REFUSALS)
def test_the_shared_gate_refuses_before_any_estimate_or_query(platform, pg_connection, sql: str, problem: str) -> None:
    with PostgresResource().gated(platform, pg_connection) as gated:
        with pytest.raises(SqlRefused) as refused:
            gated.run([GatedQuery(sql.replace("%%", "%"), "hostile")])
        assert problem in str(refused.value)
        assert gated.statements <= 1  # at most the catalog read of a selected table: no EXPLAIN, no query


def test_the_explain_ceiling_refuses_with_the_estimate_shown(platform, workspace, seeded, materialize) -> None:
    connect(platform, seeded, max_plan_cost=1.0)
    result = materialize(partition_key=f"pg-acme|{DAY}", raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert (
        "EXPLAIN estimates amount_by_status at cost" in error and "above connection pg-acme's ceiling (cost 1" in error
    )
    assert platform.metric_store.read(connection_id="pg-acme") == []
    gated = PostgresResource().gated(platform, platform.registry.get("pg-acme"))
    with gated, pytest.raises(CostRefused, match="nothing ran"):
        gated.run([GatedQuery("SELECT COUNT(*) AS n FROM sales.orders", "count")])


def test_a_statement_past_its_timeout_is_a_clear_error(platform, workspace, seeded) -> None:
    connection = connect(platform, seeded, statement_timeout_ms=500, max_plan_cost=1e12, max_plan_rows=10**12)
    slow = "SELECT COUNT(*) AS n FROM sales.orders a CROSS JOIN sales.orders b CROSS JOIN sales.orders c"
    gated = PostgresResource().gated(platform, connection)
    with gated, pytest.raises(StatementTimeout, match="after its statement_timeout of 500 ms: nothing was stored"):
        gated.run([GatedQuery(slow, "slow")])


def test_metric_specs_compile_to_gated_sql_with_quoted_identifiers(pg_connection) -> None:
    [amounts, regions] = specs_of(pg_connection)
    sql = metric_query(amounts, DAY, DAY, time_type(pg_connection, amounts.table, amounts.time_column))
    assert sql.startswith('SELECT CAST(("ordered_at" AT TIME ZONE \'UTC\') AS DATE) AS "dfx_period", "status"')
    assert 'FROM "sales"."orders"' in sql and "GROUP BY 1, 2" in sql
    assert "\"order_day\" >= CAST('2024-03-05' AS DATE)" in metric_query(regions, DAY, DAY, "date")


def test_day_runs_merge_nearby_days_only() -> None:
    d = DAY.replace
    assert day_runs([d(day=5), d(day=6), d(day=8), d(day=20)]) == [(d(day=5), d(day=8)), (d(day=20), d(day=20))]


def test_the_watermark_sensor_requests_only_the_touched_days(platform, workspace, seeded) -> None:
    pg_connection = connect(platform, seeded, settings={"lookback_minutes": 0})
    today = DAY.replace(day=31)
    resource = PostgresResource()
    first, cursor, note = poll_changes(platform, resource, pg_connection, None, today)
    window_first, _ = history_range(pg_connection.settings.history_days, today)
    assert note == "first sync" and [r.tags[RANGE_START_TAG] for r in first] == [f"pg-acme|{window_first}"]
    assert cursor == {"sales.orders": "2024-04-15T00:00:00+00:00"}
    quiet, same, note = poll_changes(platform, resource, pg_connection, cursor, today)
    assert quiet == [] and same == cursor and note == "no changed rows"
    admin_sql(
        seeded,
        "UPDATE sales.orders SET amount = amount + 1, updated_at = TIMESTAMPTZ '2024-04-16 10:00+00' "
        "WHERE id IN (SELECT id FROM sales.orders WHERE (ordered_at AT TIME ZONE 'UTC')::date IN ('2024-03-09', '2024-03-22') LIMIT 5)",
    )
    requests, moved, _ = poll_changes(platform, resource, pg_connection, cursor, today)
    assert [(r.tags[RANGE_START_TAG], r.tags[RANGE_END_TAG]) for r in requests] == [
        ("pg-acme|2024-03-09", "pg-acme|2024-03-09"),
        ("pg-acme|2024-03-22", "pg-acme|2024-03-22"),
    ]
    assert moved == {"sales.orders": "2024-04-16T10:00:00+00:00"}
    assert all(r.tags["dfx/connection"] == "pg-acme" and r.job_name == "postgres_metrics_job" for r in requests)


def test_the_lookback_band_polled_again_makes_the_same_run_keys(platform, pg_connection, seeded) -> None:
    """Rows within the lookback of the newest watermark are polled again (a long transaction may commit an
    older watermark late): the same rows make the same run key, so Dagster launches their run once."""
    today, resource = DAY.replace(day=31), PostgresResource()
    admin_sql(seeded, "UPDATE sales.orders SET updated_at = TIMESTAMPTZ '2024-04-01 00:00+00' WHERE id = 7")
    _, cursor, _ = poll_changes(platform, resource, pg_connection, None, today)
    again, _, _ = poll_changes(platform, resource, pg_connection, cursor, today)
    once_more, _, _ = poll_changes(platform, resource, pg_connection, cursor, today)
    assert again and [r.run_key for r in again] == [r.run_key for r in once_more]
    admin_sql(
        seeded, "UPDATE sales.orders SET updated_at = TIMESTAMPTZ '2024-04-14 23:59+00' WHERE id = 7"
    )  # late commit
    late, _, _ = poll_changes(platform, resource, pg_connection, cursor, today)
    assert [r.run_key for r in late] != [r.run_key for r in again]


def test_the_key_count_check_notices_a_hard_delete(platform, pg_connection, seeded, materialize) -> None:
    materialize(tags=range_tags("pg-acme", DAY, DAY.replace(day=7)))
    today = DAY.replace(day=31)
    clean = key_count_result(platform, PostgresResource(), pg_connection, today)
    assert clean.passed and clean.metadata["days_compared"].value == 3
    # Hard deletes leave no row and move no watermark: only the key count shows them.
    admin_sql(
        seeded,
        "DELETE FROM sales.orders WHERE id IN (SELECT id FROM sales.orders WHERE order_day = '2024-03-06' LIMIT 4)",
    )
    noticed = key_count_result(platform, PostgresResource(), pg_connection, today)
    assert not noticed.passed and noticed.severity == dg.AssetCheckSeverity.WARN
    assert noticed.metadata["days_with_fewer_keys"].value == "2024-03-06"
    assert noticed.metadata["keys_missing"].value == 4
    # The nightly recompute heals the day; the check then passes again.
    materialize(tags=range_tags("pg-acme", DAY, DAY.replace(day=7)))
    assert key_count_result(platform, PostgresResource(), pg_connection, today).passed


def test_the_key_count_job_runs_the_check_for_the_tagged_connection(
    platform, pg_connection, seeded, materialize
) -> None:
    from dfx_pipelines.connectors.postgres.assets import postgres_key_count_check, postgres_metric_specs

    materialize(tags=range_tags("pg-acme", DAY, DAY))
    result = dg.materialize(
        [postgres_metric_specs, postgres_key_count_check],
        selection=dg.AssetSelection.checks(postgres_key_count_check),
        instance=materialize.instance,
        tags={"dfx/connection": "pg-acme"},
        resources=materialize.resources(),
    )
    [evaluation] = [
        e.asset_check_evaluation_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"
    ]
    assert evaluation.check_name == KEY_COUNT_CHECK and evaluation.asset_key == METRICS_KEY and evaluation.passed


def test_removal_end_to_end_leaves_nothing_and_another_connection_untouched(
    platform, pg_connection, seeded, materialize
) -> None:
    """Connect → sync → remove → delete: no password, value, key count, CA file, run, materialization or
    partition of the connection is left, in the metric database, the vault or Dagster's storage; a second
    connection to the same database is untouched (and found by the same searches)."""
    from dfx_pipelines.lifecycle.deletion import delete_connection_data, run_is_for
    from dfx_pipelines.lifecycle.revocation import revoke_connection

    beta = connect(platform, seeded, connection_id="pg-beta")
    for connection in (pg_connection, beta):
        materialize(tags=range_tags(connection.id, DAY, DAY.replace(day=6)))
    instance = materialize.instance
    assert platform.metric_store.read(connection_id="pg-acme") and (ca_folder(platform) / "pg-acme.pem").exists()
    report = revoke_connection(platform, PLUGIN, "pg-acme", remove=True, actor="test")
    assert not report.provider_revoked and "dropped by the customer's DBA" in report.provider_detail
    assert report.secrets_deleted == 1 and not platform.vault.has(pg_connection.secret_ref("database_password"))
    deletion = delete_connection_data(platform, PLUGIN, instance, "pg-acme", actor="test")
    assert deletion.metric_values_deleted > 0 and deletion.runs_deleted >= 1 and deletion.partition_removed
    assert platform.metric_store.read(connection_id="pg-acme") == []
    assert not (ca_folder(platform) / "pg-acme.pem").exists()
    assert all(not run_is_for(r.dagster_run.tags, "pg-acme") for r in instance.get_run_records())
    assert [p for p in instance.get_materialized_partitions(METRICS_KEY) if p.startswith("pg-acme|")] == []
    assert "pg-acme" not in instance.get_dynamic_partitions("postgres_connections")
    # The other connection keeps everything.
    assert platform.metric_store.read(connection_id="pg-beta") and (ca_folder(platform) / "pg-beta.pem").exists()
    assert platform.vault.has(beta.secret_ref("database_password"))
    assert [p for p in instance.get_materialized_partitions(METRICS_KEY) if p.startswith("pg-beta|")]
    assert "pg-beta" in instance.get_dynamic_partitions("postgres_connections")
