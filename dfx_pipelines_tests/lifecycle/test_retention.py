"""The retention table, enforced: the daily job removes (or anonymises) exactly the expired rows of the
application tables in the real PostgreSQL, old Dagster runs and log files, and the cached metrics of
connections removed (or workspaces closed) 30+ days ago — and nothing on the other side of any boundary.
A dry run changes nothing; SQL injection in the configured names is refused before anything happens;
credentials a removed connection still holds fail the run."""

import os
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.scheduler.instigation import TickStatus
from dagster._core.storage.runs.schema import RunsTable

from dfx_pipelines.lifecycle.app_data import AppDatabaseResource, AppTable, dispose_app_engines
from dfx_pipelines.lifecycle.retention import DEFAULT_RULES, Period, retention_job
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.errors import IdentifierError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance, RecordBucket
from dfx_pipelines.platform.registry import Connection, ConnectionStatus, Workspace, utcnow
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines_tests.lifecycle.test_revocation_and_deletion import dagster_instance  # noqa: F401 - fixture

APP_SCHEMA = """
DROP TABLE IF EXISTS billing_records, accounts, demo_requests, email_correspondence CASCADE;
CREATE TABLE demo_requests (id serial PRIMARY KEY, name text, email text, company text, message text, submitted_at timestamptz NOT NULL);
CREATE TABLE accounts (id serial PRIMARY KEY, name text, email text, phone text, plan text NOT NULL, contract_ended_at timestamptz);
CREATE TABLE email_correspondence (id serial PRIMARY KEY, counterpart_email text, subject text, body text, sent_at timestamptz NOT NULL);
CREATE TABLE billing_records (id serial PRIMARY KEY, account_id int REFERENCES accounts(id), billing_email text, billing_name text,
                              amount numeric(12,2) NOT NULL, issued_at timestamptz NOT NULL);
"""


@pytest.fixture
def app_db(pg_database):
    engine = sa.create_engine(pg_database["url"])
    with engine.begin() as db:
        db.exec_driver_sql(APP_SCHEMA)
    yield engine
    engine.dispose()
    dispose_app_engines()


def years_ago(years: int, now: datetime) -> datetime:
    return Period(years=years).cutoff(now)


def seed_app(engine: sa.Engine, now: datetime) -> dict[str, dict[str, list[int]]]:
    """Rows two hours either side of every boundary; returns the ids expected to go and to stay."""
    margin = timedelta(hours=2)
    expect: dict[str, dict[str, list[int]]] = {}
    with engine.begin() as db:

        def insert(table: str, rows: list[dict]) -> list[int]:
            return [
                db.execute(
                    sa.text(
                        f"INSERT INTO {table} ({', '.join(r)}) VALUES ({', '.join(':' + k for k in r)}) RETURNING id"
                    ),
                    r,
                ).scalar_one()
                for r in rows
            ]

        three = years_ago(3, now)
        gone = insert("demo_requests", [{"name": "Old Lead", "email": "old@lead.test", "submitted_at": three - margin}])
        kept = insert("demo_requests", [{"name": "New Lead", "email": "new@lead.test", "submitted_at": three + margin}])
        expect["demo_requests"] = {"gone": gone, "kept": kept}
        one = years_ago(1, now)
        gone = insert(
            "accounts",
            [
                {
                    "name": "Ended Co",
                    "email": "ended@co.test",
                    "phone": "555",
                    "plan": "pro",
                    "contract_ended_at": one - margin,
                }
            ],
        )
        kept = insert(
            "accounts",
            [
                {
                    "name": "Recent Co",
                    "email": "recent@co.test",
                    "phone": "556",
                    "plan": "pro",
                    "contract_ended_at": one + margin,
                },
                {
                    "name": "Live Co",
                    "email": "live@co.test",
                    "phone": "557",
                    "plan": "pro",
                    "contract_ended_at": None,
                },  # contract running
            ],
        )
        expect["accounts"] = {"gone": gone, "kept": kept}
        gone = insert(
            "email_correspondence",
            [{"counterpart_email": "a@x.test", "subject": "hi", "body": "old", "sent_at": three - margin}],
        )
        kept = insert(
            "email_correspondence",
            [{"counterpart_email": "b@x.test", "subject": "hi", "body": "new", "sent_at": three + margin}],
        )
        expect["email_correspondence"] = {"gone": gone, "kept": kept}
        seven = years_ago(7, now)
        account = expect["accounts"]["gone"][0]  # billing outlives the (anonymised) account it references
        gone = insert(
            "billing_records",
            [{"account_id": account, "billing_email": "ended@co.test", "amount": 10, "issued_at": seven - margin}],
        )
        kept = insert(
            "billing_records",
            [
                {"account_id": account, "billing_email": "ended@co.test", "amount": 20, "issued_at": seven + margin},
                {"account_id": account, "billing_email": "ended@co.test", "amount": 30, "issued_at": years_ago(6, now)},
            ],
        )
        expect["billing_records"] = {"gone": gone, "kept": kept}
    return expect


def seed_notifications(platform, now: datetime) -> dict[str, str]:
    """Two sync-error notices the pipeline sent the owner: one just past the 3 years, one inside them."""
    sent = {"gone": now - timedelta(days=3 * 366 + 1), "kept": now - timedelta(days=3 * 365 - 2)}
    with platform.engine.begin() as db:
        for which, at in sent.items():
            db.execute(
                tables.sent_notifications.insert().values(
                    run_id=f"run-{which}", connection_id="sf-active", recipient="owner@acme.test",
                    channels="email", status="sent", at=at, attempts=1,
                )
            )  # fmt: skip
    return {which: f"run-{which}" for which in sent}


def seed_metrics(platform, now: datetime) -> None:
    registry = platform.registry
    registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="owner@acme.test"))
    registry.upsert_workspace(Workspace(id="closed-long", name="Gone Co", owner_email="o@gone.test"))
    registry.upsert_workspace(Workspace(id="closed-recent", name="Leaving Co", owner_email="o@leaving.test"))
    plan = [
        ("sf-removed-long", "acme", 31),
        ("sf-removed-recent", "acme", 29),
        ("sf-active", "acme", None),
        ("sf-closed-long", "closed-long", None),
        ("sf-closed-recent", "closed-recent", None),
    ]
    for slug, workspace, removed_days in plan:
        connection = registry.add_connection(
            Connection(id=slug, workspace_id=workspace, kind="salesforce", display_name=slug)
        )
        rows = [MetricRow("win_rate", "rate", 0.5 + i, date(2026, 1, 1 + i)) for i in range(3)]
        platform.metric_store.write(
            connection,
            "win_rate",
            slug,
            rows,
            Provenance(run_id=None, source="test"),
            RecordBucket(date(2026, 1, 1), frozenset({"006000000000001AAA"})),
        )
        if removed_days is not None:
            connection.status, connection.removed_at, connection.revoked_at = (
                ConnectionStatus.REMOVED,
                now - timedelta(days=removed_days),
                now - timedelta(days=removed_days),
            )
            registry.save(connection)
    # Closed (after their connections were added: a closed workspace takes none), 31 and 29 days ago.
    with platform.engine.begin() as db:
        for workspace_id, days in (("closed-long", 31), ("closed-recent", 29)):
            db.execute(
                tables.workspaces.update()
                .where(tables.workspaces.c.id == workspace_id)
                .values(closed_at=now - timedelta(days=days))
            )


def home(tmp_path: Path, name: str) -> str:
    path = tmp_path / name
    path.mkdir()
    return str(path)


def backdate_run(instance: dg.DagsterInstance, run_id: str, when: datetime) -> None:
    with instance.run_storage.connect() as conn:  # test-only: Dagster has no API to create a run in the past
        conn.execute(
            RunsTable.update().where(RunsTable.c.run_id == run_id).values(create_timestamp=when.replace(tzinfo=None))
        )


def old_file(path: Path, days: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("127.0.0.1 - - GET /\n")
    stamp = time.time() - days * 86400
    os.utime(path, (stamp, stamp))
    return path


@dg.op
def noop() -> None:
    pass


@dg.job
def some_sync() -> None:
    noop()


def app_ids(engine: sa.Engine, table: str) -> set[int]:
    with engine.connect() as db:
        return {r[0] for r in db.execute(sa.text(f"SELECT id FROM {table}"))}


def run_retention(instance, pg_url: str, config: dict | None = None, tables=None, raise_on_error: bool = True):
    return retention_job.execute_in_process(
        instance=instance,
        resources={"platform": PlatformResource(), "app_db": AppDatabaseResource(url=pg_url, tables=tables)},
        run_config={"ops": {"apply_retention_rules": {"config": config or {}}}},
        raise_on_error=raise_on_error,
    )


def test_the_rules_table_is_the_products(tmp_path: Path) -> None:
    table = {r.category: (str(r.period), r.action, r.legal_hold) for r in DEFAULT_RULES}
    assert table == {
        "server_access_logs": ("90 days", "delete", False),
        "dagster_run_logs": ("90 days", "delete", False),
        "dagster_compute_logs": ("90 days", "delete", False),
        "sensor_tick_history": ("90 days", "delete", False),
        "notifications_sent": ("3 years", "delete", False),
        "cached_metric_results": ("30 days", "delete", False),
        "integration_credentials": ("0 days", "verify", False),
        "demo_requests": ("3 years", "delete", False),
        "accounts": ("1 year", "anonymise", False),
        "email_correspondence": ("3 years", "delete", False),
        "billing_records": ("7 years", "delete", True),
    }
    assert Period(years=1).cutoff(datetime(2028, 2, 29, 12)) == datetime(2027, 2, 28, 12)


def test_retention_job_removes_exactly_the_expired_rows(platform, app_db, pg_database, tmp_path: Path) -> None:
    now = utcnow()
    expect = seed_app(app_db, now)
    seed_metrics(platform, now)
    notices = seed_notifications(platform, now)
    access_logs = tmp_path / "access_logs"
    stale_log, fresh_log = old_file(access_logs / "2025" / "access.log.1", 91), old_file(access_logs / "access.log", 89)
    with dg.instance_for_test(temp_dir=home(tmp_path, "dagster_home")) as instance:
        runs = [some_sync.execute_in_process(instance=instance).run_id for _ in range(3)]
        backdate_run(instance, runs[0], now - timedelta(days=91))
        backdate_run(instance, runs[1], now - timedelta(days=89))
        compute_dir = Path(instance.compute_log_manager._base_dir)
        stale_compute, fresh_compute = (
            old_file(compute_dir / "orphan-run" / "compute_logs" / "x.out", 95),
            old_file(compute_dir / "kept-run" / "compute_logs" / "x.out", 1),
        )

        # A dry run reports the same counts and changes nothing.
        dry = run_retention(instance, pg_database["url"], {"dry_run": True, "access_log_dir": str(access_logs)})
        dry_meta = dry.output_for_node("apply_retention_rules")
        assert {o["category"]: o["matched"] for o in dry_meta} == {
            "server_access_logs": 1,
            "dagster_run_logs": 1,
            "dagster_compute_logs": 1,
            "sensor_tick_history": 0,
            "notifications_sent": 1,
            "cached_metric_results": 6,
            "integration_credentials": 0,
            "demo_requests": 1,
            "accounts": 1,
            "email_correspondence": 1,
            "billing_records": 1,
        }
        assert all(o["acted"] == 0 for o in dry_meta)
        assert stale_log.exists() and instance.get_run_by_id(runs[0]) is not None
        assert all(app_ids(app_db, t) >= set(e["gone"]) for t, e in expect.items())

        result = run_retention(instance, pg_database["url"], {"access_log_dir": str(access_logs)})
        assert result.success
        acted = {o["category"]: o["acted"] for o in result.output_for_node("apply_retention_rules")}
        assert acted == {
            "server_access_logs": 1,
            "dagster_run_logs": 1,
            "dagster_compute_logs": 1,
            "sensor_tick_history": 0,
            "notifications_sent": 1,
            "cached_metric_results": 6,
            "integration_credentials": 0,
            "demo_requests": 1,
            "accounts": 1,
            "email_correspondence": 1,
            "billing_records": 1,
        }
        output_event = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
        report = output_event.event_specific_data.metadata["report"].value
        assert "| billing_records | app:billing_records | delete | 7 years |" in report

        # Dagster: only the run older than 90 days went; compute logs and access logs the same.
        assert instance.get_run_by_id(runs[0]) is None
        assert instance.get_run_by_id(runs[1]) is not None and instance.get_run_by_id(runs[2]) is not None
        assert not stale_log.exists() and fresh_log.exists()
        assert not stale_compute.exists() and fresh_compute.exists()

        # Idempotent: a second run finds nothing more to do.
        again = run_retention(instance, pg_database["url"], {"access_log_dir": str(access_logs)})
        assert sum(o["acted"] for o in again.output_for_node("apply_retention_rules")) == 0

    # Application tables: exactly the expired rows; accounts anonymised, not deleted.
    for table in ("demo_requests", "email_correspondence", "billing_records"):
        assert app_ids(app_db, table) == set(expect[table]["kept"]), table
    with app_db.connect() as db:
        accounts = {r.id: r for r in db.execute(sa.text("SELECT * FROM accounts"))}
    assert set(accounts) == set(expect["accounts"]["gone"]) | set(expect["accounts"]["kept"])
    ended = accounts[expect["accounts"]["gone"][0]]
    assert (ended.name, ended.email, ended.phone, ended.plan) == (None, None, None, "pro")
    assert all(accounts[i].email for i in expect["accounts"]["kept"])

    # Our own notices: the one sent more than 3 years ago went, the recent one stayed.
    with platform.engine.connect() as db:
        left = {r[0] for r in db.execute(sa.select(tables.sent_notifications.c.run_id))}
    assert left == {notices["kept"]}

    # Metrics: removed ≥ 30 days or workspace closed ≥ 30 days ago went; the rest stayed.
    with_data = set(platform.metric_store.connections_with_data())
    assert with_data == {"sf-removed-recent", "sf-active", "sf-closed-recent"}
    # The record-bucket index goes with its connection's metrics.
    assert {
        slug
        for slug in ("sf-removed-long", "sf-removed-recent", "sf-active", "sf-closed-long", "sf-closed-recent")
        if platform.metric_store.bucket_count(slug)
    } == with_data


INJECTIONS = [
    {"table": "demo_requests; DROP TABLE accounts; --"},
    {"clock_column": "submitted_at OR 1=1"},
    {"anonymise_columns": ["email", 'name" = NULL; DROP TABLE accounts; --']},
    {"category": "Robert'); DROP TABLE students;--"},
]


def test_injected_identifiers_are_refused_before_anything_happens(
    platform, app_db, pg_database, tmp_path: Path
) -> None:
    now = utcnow()
    seed_app(app_db, now)
    before = {t: app_ids(app_db, t) for t in ("demo_requests", "accounts", "email_correspondence", "billing_records")}
    fields = {
        "category": "accounts",
        "table": "accounts",
        "key_column": "id",
        "clock_column": "contract_ended_at",
        "anonymise_columns": ["email"],
    }
    with dg.instance_for_test(temp_dir=home(tmp_path, "dh")) as instance:
        for bad in INJECTIONS:
            tables = [
                AppTable(category="demo_requests", table="demo_requests", key_column="id", clock_column="submitted_at"),
                AppTable(**{**fields, **bad}),
            ]
            result = run_retention(instance, pg_database["url"], tables=tables, raise_on_error=False)
            assert not result.success, bad
            error = result.get_step_failure_events()[0].step_failure_data.error
            assert "IdentifierError" in (error.cause.cls_name if error.cause else error.cls_name)
            assert "invalid SQL identifier" in error.to_string()
            assert {t: app_ids(app_db, t) for t in before} == before  # not even the valid demo_requests rule ran
            with pytest.raises(IdentifierError):
                AppTable(**{**fields, **bad}).checked()


def test_credentials_still_held_for_a_removed_connection_fail_the_run(
    platform, app_db, pg_database, tmp_path: Path
) -> None:
    platform.registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="owner@acme.test"))
    connection = platform.registry.add_connection(
        Connection(id="sf-leaky", workspace_id="acme", kind="salesforce", display_name="Leaky"),
        vault=platform.vault,
        secrets={"oauth_refresh_token": "refresh-canary-123456"},
    )
    platform.registry.set_status(connection.id, ConnectionStatus.REMOVED)  # status changed, vault never destroyed
    with dg.instance_for_test(temp_dir=home(tmp_path, "dh")) as instance:
        result = run_retention(instance, pg_database["url"], raise_on_error=False)
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data
    assert "retention promise broken" in failure.error.to_string() and "sf-leaky" in failure.error.to_string()
    assert platform.vault.has(connection.secret_ref("oauth_refresh_token"))  # reported, not destroyed here


def test_sensor_ticks_older_than_90_days_are_purged(platform, app_db, pg_database, dagster_instance) -> None:
    """Tick history (run ids, run keys, cursors of every sensor, any status) is kept 90 days like run logs."""
    from dfx_pipelines_tests.lifecycle.test_deletion_traces import _tick

    instance, now = dagster_instance, utcnow()
    ages = {"old-success": 91, "old-skipped": 120, "recent": 89}
    ids = {}
    for name, days in ages.items():
        status = TickStatus.SKIPPED if name == "old-skipped" else TickStatus.SUCCESS
        sensor = "jira_sync_sensor" if name == "old-skipped" else "salesforce_cdc_sensor"
        data = _tick(
            sensor,
            status=status,
            timestamp=(now - timedelta(days=days)).timestamp(),
            cursor='{"sf-acme": {}}',
            run_keys=["sf-acme:x"],
        )
        ids[name] = instance.create_tick(data).tick_id

    dry = run_retention(instance, pg_database["url"], {"dry_run": True}).output_for_node("apply_retention_rules")
    assert next(o for o in dry if o["category"] == "sensor_tick_history")["matched"] == 2
    assert len(instance.schedule_storage.get_ticks_by_ids(list(ids.values()))) == 3
    done = run_retention(instance, pg_database["url"]).output_for_node("apply_retention_rules")
    assert next(o for o in done if o["category"] == "sensor_tick_history")["acted"] == 2
    assert [t.tick_id for t in instance.schedule_storage.get_ticks_by_ids(list(ids.values()))] == [ids["recent"]]
