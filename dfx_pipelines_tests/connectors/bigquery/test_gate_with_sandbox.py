"""The gate end to end against the sandbox with the real google-cloud-bigquery client and the real
metric database: projections from real dry runs, the ledger from real bills, approvals that let
exactly one run through, and refusals that happen before BigQuery executes anything. The sandbox's
job log is the witness: it records every dry run and every executed job."""

import json
import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.gate import (
    ApprovalInvalid,
    ApprovalStatus,
    BudgetNotConfigured,
    CapExceeded,
    DryRunFailed,
    GateError,
    QueryRefused,
)
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.connectors.bigquery.metrics import build_query, specs_of
from dfx_pipelines.connectors.bigquery.resource import AwaitingApproval, BigQueryResource, GatedBigQuery, GatedQuery
from dfx_pipelines.platform.errors import AuthError, ConnectionInactiveError
from dfx_pipelines.platform.registry import ConnectionSettings, ConnectionStatus, Workspace

from .conftest import MIB, PII_TAG, TIB, JobWatch, billed, connect, scanned_bytes, set_budget, start_sandbox

DAY = date(2024, 6, 1)
ONE_QUERY_USD = 10 * MIB / TIB * 6.25  # a small query bills the 10 MiB minimum


class Clock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def revenue_query(connection, first: date = DAY, last: date = DAY):
    return build_query(specs_of(connection)[0], connection.endpoint["project"], first, last)


def run(gated, query, approval_id=None):
    return gated.run_gated(
        query.sql, query.params, asset="bigquery/metric_specs", partition=f"bq-acme|{DAY}", approval_id=approval_id
    )


def test_projection_equals_the_documented_arithmetic_over_hand_computed_sizes(
    platform, bq_connection, bq_sandbox, bq_resource, frames
) -> None:
    query = revenue_query(bq_connection, date(2024, 6, 1), date(2024, 6, 10))
    watch = JobWatch(bq_sandbox)
    outcome = run(bq_resource.gated(platform, bq_connection), query)
    # The query reads order_date, status and amount of the ten surviving partitions only.
    processed = scanned_bytes(
        frames, "shop.orders", ["order_date", "status", "amount"], "order_date", "2024-06-01", "2024-06-10"
    )
    assert outcome.projection.bytes_processed == processed > 0
    assert outcome.projection.billed_bytes == billed(processed) == 10 * MIB
    assert outcome.projection.cost_usd == pytest.approx(10 * MIB / 2**40 * 6.25)
    assert outcome.projection.cap_bytes == 11 * MIB  # rounded estimate + 10% margin, in whole MiB
    [dry, real] = watch.jobs
    assert dry.dry_run and dry.bytes_processed == processed and not dry.executed
    assert real.maximum_bytes_billed == 11 * MIB and real.executed
    # The other spec (COUNT DISTINCT session_id over web_events) prices session_id + event_date only.
    sessions = build_query(specs_of(bq_connection)[1], bq_connection.endpoint["project"], DAY, DAY)
    second = bq_resource.gated(platform, bq_connection).run_gated(
        sessions.sql, sessions.params, asset="a", partition="p"
    )
    assert second.projection.bytes_processed == scanned_bytes(
        frames, "shop.web_events", ["session_id", "event_date"], "event_date", str(DAY), str(DAY)
    )


def test_within_budget_runs_once_and_records_the_real_bill_in_the_ledger(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    watch = JobWatch(bq_sandbox)
    outcome = run(bq_resource.gated(platform, bq_connection), revenue_query(bq_connection))
    [job] = watch.real_jobs
    assert job.bytes_billed == outcome.bytes_billed == 10 * MIB
    store = BudgetStore(platform.engine)
    [row] = store.ledger("bq-acme")
    assert (row["month"], row["bytes_billed"], row["jobs"]) == (gate.month_of(datetime.now(UTC)), 10 * MIB, 1)
    assert outcome.month_to_date_usd == pytest.approx(ONE_QUERY_USD)
    assert outcome.results[0].rows and {"dfx_period", "status", "dfx_value"} <= set(outcome.results[0].rows[0])
    assert outcome.gate_round_trips >= 2 and outcome.round_trips > outcome.gate_round_trips


def test_over_budget_runs_nothing_until_approved_then_exactly_once(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    set_budget(platform, bq_connection, ONE_QUERY_USD * 1.5)  # room for one small query, not two
    gated = bq_resource.gated(platform, platform.registry.get("bq-acme"))
    query = revenue_query(bq_connection)
    run(gated, query)  # the first fits
    watch = JobWatch(bq_sandbox)
    with pytest.raises(AwaitingApproval, match=r"dfx bigquery approve bqa-") as waiting:
        run(gated, query)
    with pytest.raises(AwaitingApproval) as again:
        run(gated, query)  # asking twice queues one decision, not two
    approval = waiting.value.approval
    assert again.value.approval.id == approval.id
    assert watch.real_jobs == [] and watch.executed == [] and len(watch.dry_runs) == 2  # only dry runs
    assert (approval.status, approval.projected_billed_bytes, approval.queries) == (ApprovalStatus.PENDING, 10 * MIB, 1)
    assert approval.month_to_date_usd == pytest.approx(ONE_QUERY_USD) and approval.budget_usd == pytest.approx(
        ONE_QUERY_USD * 1.5
    )
    assert "@first_day = 2024-06-01" in approval.sql_excerpt and approval.partition == f"bq-acme|{DAY}"
    store = BudgetStore(platform.engine)
    with pytest.raises(ApprovalInvalid, match="is pending"):
        run(gated, query, approval.id)  # not approved yet
    assert watch.real_jobs == []
    store.approve(approval.id, "alice@acme.test")
    outcome = run(gated, query, approval.id)
    assert outcome.approval_id == approval.id and len(watch.real_jobs) == 1
    assert store.get(approval.id).status is ApprovalStatus.USED
    with pytest.raises(ApprovalInvalid, match="single-use"):
        run(gated, query, approval.id)
    assert len(watch.real_jobs) == 1  # exactly once
    assert store.ledger("bq-acme")[0]["jobs"] == 2


def test_a_changed_query_needs_a_new_approval(platform, bq_connection, bq_sandbox, bq_resource) -> None:
    set_budget(platform, bq_connection, ONE_QUERY_USD / 2)
    gated = bq_resource.gated(platform, platform.registry.get("bq-acme"))
    with pytest.raises(AwaitingApproval) as waiting:
        run(gated, revenue_query(bq_connection))
    store = BudgetStore(platform.engine)
    store.approve(waiting.value.approval.id, "alice")
    watch = JobWatch(bq_sandbox)
    other_day = revenue_query(bq_connection, DAY + timedelta(days=1), DAY + timedelta(days=1))
    with pytest.raises(ApprovalInvalid, match="changed query needs a new approval"):
        run(gated, other_day, waiting.value.approval.id)
    with pytest.raises(ApprovalInvalid, match="changed query needs a new approval"):
        gated.run_gated(
            revenue_query(bq_connection).sql.replace("SUM", "AVG"),
            revenue_query(bq_connection).params,
            asset="a",
            partition="p",
            approval_id=waiting.value.approval.id,
        )
    assert watch.real_jobs == []
    assert store.get(waiting.value.approval.id).status is ApprovalStatus.APPROVED  # still usable for its own query
    run(gated, revenue_query(bq_connection), waiting.value.approval.id)
    assert len(watch.real_jobs) == 1


def test_approvals_expire_and_rejected_ones_never_run(platform, bq_connection, bq_sandbox) -> None:
    set_budget(platform, bq_connection, ONE_QUERY_USD / 2)
    clock = Clock(datetime.now(UTC))
    resource = BigQueryResource(sandbox_ca_path=bq_sandbox.ca_pem_path, approval_ttl_hours=24)
    gated = resource.gated(platform, platform.registry.get("bq-acme"), clock=clock)
    store = BudgetStore(platform.engine, clock)
    with pytest.raises(AwaitingApproval) as first:
        run(gated, revenue_query(bq_connection))
    assert first.value.approval.expires_at == clock.now + timedelta(hours=24)
    store.approve(first.value.approval.id, "alice")
    clock.now += timedelta(hours=24, seconds=1)
    watch = JobWatch(bq_sandbox)
    with pytest.raises(ApprovalInvalid, match="expired"):
        run(gated, revenue_query(bq_connection), first.value.approval.id)
    assert [a.status for a in store.list(connection_id="bq-acme")] == [ApprovalStatus.EXPIRED]
    with pytest.raises(AwaitingApproval) as second:  # a lapsed request is asked anew
        run(gated, revenue_query(bq_connection))
    assert second.value.approval.id != first.value.approval.id
    store.reject(second.value.approval.id, "bob")
    with pytest.raises(ApprovalInvalid, match="is rejected"):
        run(gated, revenue_query(bq_connection), second.value.approval.id)
    with pytest.raises(ApprovalInvalid, match="only a pending approval"):
        store.approve(second.value.approval.id, "mallory")
    assert watch.real_jobs == []


def test_unselected_tables_are_refused_before_any_request(platform, bq_connection, bq_sandbox, bq_resource) -> None:
    gated = bq_resource.gated(platform, bq_connection)
    watch = JobWatch(bq_sandbox)
    for sql in (
        "SELECT SUM(amount) AS v FROM finance.invoices",
        "SELECT o.status FROM shop.orders o JOIN finance.invoices i ON i.customer_id = o.customer_id",
        "SELECT customer_id FROM shop.customers",  # same dataset, not selected
        "SELECT amount FROM `another-project.shop.orders`",
    ):
        with pytest.raises(QueryRefused, match="outside the connection's selection"):
            gated.run_gated(sql, asset="a", partition="p")
    for sql in (
        "DELETE FROM shop.orders WHERE TRUE",
        "SELECT 1 AS a; DROP TABLE shop.orders",
        "SELECT status FROM orders",
    ):
        with pytest.raises(QueryRefused):
            gated.run_gated(sql, asset="a", partition="p")
    assert watch.requests == [] and watch.jobs == []


def test_a_view_over_unselected_tables_is_refused_by_both_layers(platform, workspace, bq_sandbox, bq_resource) -> None:
    # The view is selected, the table under it is not. The SQL names only the view; its definition
    # (read from the view's metadata) and the dry run's referencedTables both name shop.orders.
    connection = connect(
        platform,
        bq_sandbox,
        config={"selection": {"datasets": {"shop": ["daily_revenue", "web_events"]}}},
        endpoint={"metric_specs": []},
    )
    sql = "SELECT currency, SUM(revenue) AS r FROM shop.daily_revenue GROUP BY currency"
    watch = JobWatch(bq_sandbox)
    with pytest.raises(
        QueryRefused,
        match=r"view shop.daily_revenue names tables outside the connection's selection: dfx-demo-project.shop.orders",
    ):
        bq_resource.gated(platform, connection).run_gated(sql, asset="a", partition="p")
    assert watch.jobs == []  # refused before the dry run

    class WithoutTheParsedChecks(GatedBigQuery):
        """The first layer switched off, to prove the dry run's referencedTables check holds by itself."""

        __slots__ = ()

        def _check_columns(self, tree, refs, depth=0) -> None:
            pass

    gated = bq_resource.gated(platform, connection)
    second_layer = WithoutTheParsedChecks(connection, gated.store, gated._factory, clock=gated.clock)
    with pytest.raises(
        QueryRefused,
        match=r"the dry run's referencedTables names tables outside the connection's selection: dfx-demo-project.shop.orders",
    ):
        second_layer.run_gated(sql, asset="a", partition="p")
    assert len(watch.dry_runs) == 1 and watch.real_jobs == []


def test_policy_tagged_columns_are_refused_unless_granted(platform, workspace, bq_sandbox, bq_resource) -> None:
    selection = {"datasets": {"shop": ["orders", "customers"]}}
    connection = connect(platform, bq_sandbox, config={"selection": selection}, endpoint={"metric_specs": []})
    gated = bq_resource.gated(platform, connection)
    watch = JobWatch(bq_sandbox)
    for sql in (
        "SELECT email FROM shop.customers",
        "SELECT * FROM shop.customers",
        "SELECT COUNT(DISTINCT email) AS n FROM shop.customers",
        "SELECT c.country FROM shop.customers c JOIN shop.orders o USING (customer_id) WHERE c.email LIKE '%@example.com'",
    ):
        with pytest.raises(QueryRefused, match=r"customers.email carries a policy tag"):
            gated.run_gated(sql, asset="a", partition="p")
    assert watch.jobs == []  # only metadata was read (tables.get), no dry run, no job
    gated.run_gated("SELECT country, COUNT(*) AS n FROM shop.customers GROUP BY country", asset="a", partition="p")
    assert len(watch.real_jobs) == 1
    granted = connect(
        platform,
        bq_sandbox,
        config={"id": "bq-granted", "selection": selection},
        endpoint={"metric_specs": [], "granted_policy_tags": [PII_TAG]},
    )
    outcome = bq_resource.gated(platform, granted).run_gated(
        "SELECT COUNT(DISTINCT email) AS n FROM shop.customers", asset="a", partition="p"
    )
    assert outcome.results[0].rows[0]["n"] > 0


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT TO_JSON_STRING(c) AS j FROM shop.customers c",
        "SELECT c FROM shop.customers c",
        "SELECT FORMAT('%t', c) AS s FROM shop.customers AS c",
        "SELECT ARRAY_AGG(c) AS a FROM shop.customers c",
        "SELECT (SELECT TO_JSON_STRING(c) FROM shop.orders o LIMIT 1) AS j FROM shop.customers c",
        "WITH x AS (SELECT c FROM shop.customers c) SELECT TO_JSON_STRING(x) AS j FROM x",
    ],
)
def test_a_whole_row_reference_cannot_read_a_tagged_column(platform, workspace, bq_sandbox, bq_resource, sql) -> None:
    # The row of shop.customers holds email (policy-tagged): using the row as a value reads it.
    connection = connect(
        platform,
        bq_sandbox,
        config={"selection": {"datasets": {"shop": ["orders", "customers"]}}},
        endpoint={"metric_specs": []},
    )
    watch = JobWatch(bq_sandbox)
    with pytest.raises(
        QueryRefused, match=r"customers.email carries a policy tag this connection was not granted \(read by `"
    ):
        bq_resource.gated(platform, connection).run_gated(sql, asset="a", partition="p")
    assert watch.jobs == []  # only table metadata was read: no dry run, no job


def test_no_budget_or_a_zero_budget_runs_nothing_and_sends_nothing(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    watch = JobWatch(bq_sandbox)
    for budget in (None, 0, 0.0):
        connection = bq_connection.model_copy(deep=True)
        connection.settings.monthly_budget_usd = budget  # 0 bypasses validation here on purpose
        with pytest.raises(BudgetNotConfigured, match="no monthly budget"):
            run(bq_resource.gated(platform, connection), revenue_query(bq_connection))
    assert watch.requests == []
    with pytest.raises(ValidationError, match="greater than 0"):
        ConnectionSettings(monthly_budget_usd=0)  # and a stored setting can never be zero


def test_a_failed_dry_run_is_a_clear_error_and_nothing_runs(platform, bq_connection, bq_sandbox, bq_resource) -> None:
    watch = JobWatch(bq_sandbox)
    gated = bq_resource.gated(platform, bq_connection)
    with pytest.raises(QueryRefused, match="could not attribute"):  # unknown column: caught by our own column check
        gated.run_gated("SELECT discount FROM shop.orders", asset="a", partition="p")
    with pytest.raises(DryRunFailed, match="dry run failed, nothing was run: invalidQuery"):
        gated.run_gated("SELECT NO_SUCH_FUNCTION(amount) AS x FROM shop.orders", asset="a", partition="p")
    with pytest.raises(
        DryRunFailed, match="dry run failed, nothing was run: invalidQuery: Query parameter 'missing' not found"
    ):
        gated.run_gated("SELECT amount FROM shop.orders WHERE order_date = @missing", asset="a", partition="p")
    assert watch.real_jobs == [] and watch.executed == []


def test_a_cap_breach_fails_unbilled_is_reported_and_not_retried(platform, workspace) -> None:
    with start_sandbox() as sandbox:
        connection = connect(platform, sandbox)
        query = revenue_query(connection)
        stats = sandbox.app.warehouse.stats[("dfx-demo-project", "shop", "orders")]

        class GrowingClock:
            """Rows arrive between the dry run and the run: the sandbox's stored bytes for the day grow 20 MiB."""

            def __call__(self) -> datetime:
                if stats.bytes[DAY]["amount"] < 20 * MIB:
                    stats.bytes[DAY]["amount"] += 20 * MIB
                return datetime.now(UTC)

        resource = BigQueryResource(sandbox_ca_path=sandbox.ca_pem_path)
        gated = resource.gated(platform, connection, clock=GrowingClock())
        watch = JobWatch(sandbox)
        with pytest.raises(
            CapExceeded, match=r"would bill more than its cap of 11534336 bytes .* failed unbilled and was not retried"
        ):
            run(gated, query)
        [dry, failed] = watch.jobs
        assert dry.dry_run and dry.bytes_processed < MIB
        assert (failed.error_reason, failed.executed, failed.bytes_billed, failed.maximum_bytes_billed) == (
            "bytesBilledLimitExceeded",
            False,
            0,
            11 * MIB,
        )
        assert watch.executed == []
        assert BudgetStore(platform.engine).ledger("bq-acme") == []  # nothing billed, nothing recorded
        assert BudgetStore(platform.engine).reservations("bq-acme") == []  # and the run's reservation released


def test_a_backfill_batch_is_priced_as_a_whole_before_anything_runs(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    queries = [
        build_query(spec, bq_connection.endpoint["project"], date(2024, 3, 1), date(2024, 3, 31))
        for spec in specs_of(bq_connection)
    ]
    watch = JobWatch(bq_sandbox)
    outcome = bq_resource.gated(platform, bq_connection).run_gated_batch(
        [GatedQuery(q.sql, q.params, q.spec.name) for q in queries],
        asset="a",
        partition="bq-acme|2024-03-01..bq-acme|2024-03-31",
    )
    assert [j.dry_run for j in watch.jobs] == [True, True, False, False]  # both dry runs before the first job
    assert outcome.projection.billed_bytes == sum(p.projection.billed_bytes for p in outcome.results) == 20 * MIB
    # Over budget as a whole, even though each query alone would fit: one approval for the batch.
    set_budget(platform, bq_connection, outcome.month_to_date_usd + 1.5 * ONE_QUERY_USD)
    watch = JobWatch(bq_sandbox)
    with pytest.raises(AwaitingApproval) as waiting:
        bq_resource.gated(platform, platform.registry.get("bq-acme")).run_gated_batch(
            [GatedQuery(q.sql, q.params, q.spec.name) for q in queries],
            asset="a",
            partition="p",
        )
    assert waiting.value.approval.queries == 2 and waiting.value.approval.projected_billed_bytes == 20 * MIB
    assert [j.dry_run for j in watch.jobs] == [True, True]


def test_a_query_returning_raw_rows_instead_of_an_aggregate_is_stopped(platform, bq_connection, bq_sandbox) -> None:
    # Grouping by an id column turns a "metric" into a copy of the table (P13): refused after a bounded read.
    resource = BigQueryResource(sandbox_ca_path=bq_sandbox.ca_pem_path, max_result_rows=100)
    watch = JobWatch(bq_sandbox)
    with pytest.raises(GateError, match="returned more than 100 rows; a metric query must aggregate"):
        resource.gated(platform, bq_connection).run_gated(
            "SELECT order_id, SUM(amount) AS v FROM shop.orders GROUP BY order_id", asset="a", partition="p"
        )
    [job] = watch.real_jobs
    pages = [r for r in watch.requests if "/queries/" in r.path]
    assert pages and {r.arg("maxResults") for r in pages} == {"101"}  # one row more than allowed, no more
    assert (
        BudgetStore(platform.engine).month_to_date_bytes("bq-acme") == job.bytes_billed > 0
    )  # the bill is still recorded


def test_removing_the_connection_deletes_its_approvals_and_ledger(platform, bq_connection, bq_resource) -> None:
    from dfx_pipelines.connectors.bigquery.plugin import PLUGIN

    gated = bq_resource.gated(platform, bq_connection)
    run(gated, revenue_query(bq_connection))
    set_budget(platform, bq_connection, ONE_QUERY_USD / 2)
    with pytest.raises(AwaitingApproval):
        run(
            bq_resource.gated(platform, platform.registry.get("bq-acme")),
            revenue_query(bq_connection, DAY, DAY + timedelta(days=1)),
        )
    assert PLUGIN.delete_cached_data(platform, bq_connection) == {"bigquery_approvals": 1, "bigquery_ledger": 1}
    store = BudgetStore(platform.engine)
    assert store.ledger("bq-acme") == [] and store.list(connection_id="bq-acme") == []


def test_revoked_or_foreign_connections_fail_before_any_request(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    platform.registry.set_status("bq-acme", ConnectionStatus.REVOKED)
    watch = JobWatch(bq_sandbox)
    with pytest.raises(ConnectionInactiveError, match="revoked"):
        bq_resource.gated(platform, platform.registry.get("bq-acme"))
    assert watch.requests == []


def test_a_key_the_provider_no_longer_accepts_is_an_auth_error(
    platform, bq_connection, bq_sandbox, bq_resource
) -> None:
    # The stored key is one the provider does not know (deleted in IAM): the token endpoint refuses it.
    unknown = bq_sandbox.new_service_account_key("deleted-account", register=False)
    platform.vault.put(bq_connection.secret_ref("service_account_key"), json.dumps(unknown))
    watch = JobWatch(bq_sandbox)
    with pytest.raises(AuthError, match="refused the connection's service-account key"):
        run(bq_resource.gated(platform, bq_connection), revenue_query(bq_connection))
    assert {r.path for r in watch.requests} == {"/token"} and watch.jobs == []


def test_ledger_and_approvals_on_postgresql(pg_platform) -> None:
    platform = pg_platform
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    from dfx_pipelines.platform.registry import Connection

    platform.registry.add_connection(
        Connection(
            id="bq-pg",
            workspace_id="acme",
            kind="bigquery",
            display_name="PG",
            selection={"datasets": {"shop": ["orders"]}},
        )
    )
    store = BudgetStore(platform.engine)
    # Concurrent runs add their bills up (an upsert), they never overwrite each other.
    threads = [threading.Thread(target=store.record_job, args=("bq-pg", 10 * MIB, "2026-03")) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.record_job("bq-pg", 3 * MIB, "2026-04")
    assert store.month_to_date_bytes("bq-pg", "2026-03") == 80 * MIB
    assert [(r["month"], r["bytes_billed"], r["jobs"]) for r in store.ledger("bq-pg")] == [
        ("2026-03", 80 * MIB, 8),
        ("2026-04", 3 * MIB, 1),
    ]
    projection = gate.project(5 * MIB, 1, 6.25)
    decision = gate.decide(80 * MIB, projection, 0.0001, 6.25)
    record = store.request(
        connection_id="bq-pg",
        fingerprint="a" * 64,
        sql="SELECT 1",
        queries=1,
        projection=projection,
        decision=decision,
        asset="a",
        partition="p",
    )
    assert (
        store.request(
            connection_id="bq-pg",
            fingerprint="a" * 64,
            sql="SELECT 1",
            queries=1,
            projection=projection,
            decision=decision,
            asset="a",
            partition="p",
        ).id
        == record.id
    )
    store.approve(record.id, "alice")
    # Two runs race to spend one approval: exactly one wins.
    outcomes: list[str] = []

    def spend() -> None:
        try:
            store.consume(record.id, connection_id="bq-pg", fingerprint="a" * 64, projected_billed=10 * MIB)
            outcomes.append("used")
        except ApprovalInvalid:
            outcomes.append("refused")

    racers = [threading.Thread(target=spend) for _ in range(4)]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sorted(outcomes) == ["refused", "refused", "refused", "used"]
    used = store.get(record.id)
    assert used.status is ApprovalStatus.USED and used.decided_by == "alice" and used.created_at.tzinfo is not None
