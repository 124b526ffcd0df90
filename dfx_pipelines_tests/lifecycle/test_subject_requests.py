"""Data-subject requests against the real PostgreSQL (metric database and application tables): due dates
by law, identity verification before anything happens, an export holding the subject's rows and nothing of
anyone else's (and no credential), an erasure that keeps billing records and says so, rectification,
restriction, an unknown subject answered clearly, and the sensor flagging an overdue request."""

import json
from datetime import timedelta

import dagster as dg
import pytest
import sqlalchemy as sa

from dfx_pipelines.lifecycle.app_data import AppDatabaseResource, dispose_app_engines
from dfx_pipelines.lifecycle.subject_requests import (
    RequestRefused,
    connection_restricted,
    get_request,
    is_restricted,
    record_request,
    restricted_workspace_ids,
    subject_access_job,
    subject_erasure_job,
    subject_rectification_job,
    subject_request_deadline_sensor,
    subject_request_overdue_alert_job,
    subject_restriction_job,
    verify_identity,
)
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.registry import Connection, Workspace, utcnow
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines_tests.lifecycle.test_retention import APP_SCHEMA

CANARY = "refresh-canary-dsr-9f8e7d6c5b4a"


@pytest.fixture
def world(pg_platform, pg_database):
    """Alice and Bob in every application table; Alice owns a workspace with a connection, metrics and a credential."""
    with pg_platform.engine.begin() as db:
        db.execute(sa.text("TRUNCATE subject_restrictions, subject_requests, sent_notifications CASCADE"))
    app = sa.create_engine(pg_database["url"])
    now = utcnow()
    with app.begin() as db:
        db.exec_driver_sql(APP_SCHEMA)
        for who, email, phone in (
            ("Alice Liddell", "Alice@Wonder.test", "555-0101"),
            ("Bob Builder", "bob@build.test", "555-0202"),
        ):
            account = db.execute(
                sa.text("INSERT INTO accounts (name, email, phone, plan) VALUES (:n, :e, :p, 'pro') RETURNING id"),
                {"n": who, "e": email, "p": phone},
            ).scalar_one()
            db.execute(
                sa.text(
                    "INSERT INTO demo_requests (name, email, company, message, submitted_at) VALUES (:n, :e, 'Co', :m, :t)"
                ),
                {"n": who, "e": email, "m": f"demo for {who}", "t": now - timedelta(days=400)},
            )
            db.execute(
                sa.text(
                    "INSERT INTO email_correspondence (counterpart_email, subject, body, sent_at) VALUES (:e, 'Re: invoice', :b, :t)"
                ),
                {"e": email.lower(), "b": f"note to {who}", "t": now - timedelta(days=20)},
            )
            for years, amount in ((8, 111.11), (2, 222.22)):  # one record past the 7 years, one inside them
                db.execute(
                    sa.text(
                        "INSERT INTO billing_records (account_id, billing_email, billing_name, amount, issued_at) VALUES (:a, :e, :n, :m, :t)"
                    ),
                    {
                        "a": account,
                        "e": email,
                        "n": who,
                        "m": amount if who.startswith("Alice") else amount + 1000,
                        "t": now - timedelta(days=365 * years + 3),
                    },
                )
    registry = pg_platform.registry
    registry.upsert_workspace(Workspace(id="wonder", name="Wonderland", owner_email="alice@wonder.test"))
    registry.upsert_workspace(Workspace(id="builders", name="Builders", owner_email="bob@build.test"))
    for slug, workspace in (("sf-wonder", "wonder"), ("sf-builders", "builders")):
        connection = registry.add_connection(
            Connection(id=slug, workspace_id=workspace, kind="salesforce", display_name=f"{workspace} SF"),
            vault=pg_platform.vault,
            secrets={"oauth_refresh_token": CANARY + slug},
        )
        pg_platform.metric_store.write(
            connection,
            "win_rate",
            slug,
            [MetricRow("win_rate", "rate", 0.25 * i) for i in range(4)],
            Provenance(run_id=None, source="test"),
        )
    yield app
    app.dispose()
    dispose_app_engines()


def run(job, pg_platform, pg_database, request_id: int):
    op_name = job.graph.node_defs[0].name
    return job.execute_in_process(
        resources={
            "platform": PlatformResource(metrics_db_url=pg_database["url"]),
            "app_db": AppDatabaseResource(url=pg_database["url"]),
        },
        run_config={"ops": {op_name: {"config": {"request_id": request_id}}}},
        raise_on_error=False,
    )


def verified(engine, kind: str, email: str, **kwargs):
    request = record_request(engine, kind, "gdpr", email, **kwargs)
    return verify_identity(engine, request.id, by="support@dfx.test")


def app_rows(app: sa.Engine, table: str) -> list[dict]:
    with app.connect() as db:
        return [dict(r) for r in db.execute(sa.text(f"SELECT * FROM {table} ORDER BY id")).mappings()]


def test_due_dates_follow_the_law(pg_platform, world) -> None:
    received = utcnow() - timedelta(days=2)
    gdpr = record_request(pg_platform.engine, "erasure", "gdpr", " Someone@Example.test ", received_at=received)
    ccpa = record_request(pg_platform.engine, "access", "ccpa", "someone@example.test", received_at=received)
    assert gdpr.due_at - gdpr.received_at == timedelta(days=30) and ccpa.due_at - ccpa.received_at == timedelta(days=45)
    assert (
        gdpr.subject_email == "someone@example.test" and gdpr.status == "received" and gdpr.identity_verified_at is None
    )
    with pytest.raises(ConfigError, match="unknown law"):
        record_request(pg_platform.engine, "erasure", "lgpd", "x@y.test")
    with pytest.raises(ConfigError, match="unknown request kind"):
        record_request(pg_platform.engine, "forget-me-maybe", "gdpr", "x@y.test")


def test_unverified_request_is_refused_and_nothing_is_done(pg_platform, pg_database, world) -> None:
    before = {t: app_rows(world, t) for t in ("accounts", "demo_requests", "billing_records", "email_correspondence")}
    request = record_request(pg_platform.engine, "erasure", "gdpr", "alice@wonder.test")
    result = run(subject_erasure_job, pg_platform, pg_database, request.id)
    assert not result.success
    assert "identity is not verified" in result.get_step_failure_events()[0].step_failure_data.error.to_string()
    assert {t: app_rows(world, t) for t in before} == before
    assert get_request(pg_platform.engine, request.id).status == "received"
    # The wrong job for a request is refused the same way.
    verify_identity(pg_platform.engine, request.id, by="support@dfx.test")
    wrong = run(subject_access_job, pg_platform, pg_database, request.id)
    assert (
        not wrong.success
        and "is a erasure request" in wrong.get_step_failure_events()[0].step_failure_data.error.to_string()
    )
    with pytest.raises(ConfigError, match="who verified"):
        verify_identity(pg_platform.engine, request.id, by=" ")


def test_export_holds_the_subjects_data_and_nothing_else(pg_platform, pg_database, world) -> None:
    request = verified(pg_platform.engine, "access", "ALICE@wonder.test")
    result = run(subject_access_job, pg_platform, pg_database, request.id)
    assert result.success
    answered = get_request(pg_platform.engine, request.id)
    assert answered.status == "completed" and answered.completed_at is not None
    document = answered.response["document"]
    text = json.dumps(document)
    data = document["application_data"]
    assert [r["name"] for r in data["accounts"]["rows"]] == ["Alice Liddell"]
    assert [r["message"] for r in data["demo_requests"]["rows"]] == ["demo for Alice Liddell"]
    assert [r["body"] for r in data["email_correspondence"]["rows"]] == ["note to Alice Liddell"]
    assert sorted(r["amount"] for r in data["billing_records"]["rows"]) == ["111.11", "222.22"]
    [workspace] = document["workspaces"]
    assert workspace["id"] == "wonder" and workspace["owner_email"] == "alice@wonder.test"
    [connection] = workspace["connections"]
    assert (
        connection["id"],
        connection["metric_batches"],
        connection["metric_values"],
        connection["credentials_held"],
    ) == ("sf-wonder", 1, 4, True)
    for other in ("bob", "Bob", "builders", "555-0202", "1111.11", "sf-builders"):
        assert other not in text, other
    assert CANARY not in text and "refresh_token" not in text
    # Run metadata carries counts, never the data itself.
    output = next(e for e in result.all_events if e.event_type_value == "STEP_OUTPUT")
    meta = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert meta["rows.billing_records"] == 2 and "alice" not in json.dumps(meta, default=str).lower()


def test_erasure_keeps_billing_records_and_says_so(pg_platform, pg_database, world) -> None:
    export = verified(pg_platform.engine, "access", "alice@wonder.test")
    assert run(subject_access_job, pg_platform, pg_database, export.id).success
    bob_before = {
        t: [r for r in app_rows(world, t) if "bob" in json.dumps(r, default=str).lower()]
        for t in ("accounts", "demo_requests", "billing_records", "email_correspondence")
    }
    request = verified(pg_platform.engine, "erasure", "alice@wonder.test")
    result = run(subject_erasure_job, pg_platform, pg_database, request.id)
    assert result.success
    response = get_request(pg_platform.engine, request.id).response
    assert response["found"] is True
    assert response["erased"]["demo_requests"] == {"action": "deleted", "rows": 1}
    assert response["erased"]["email_correspondence"] == {"action": "deleted", "rows": 1}
    assert response["erased"]["accounts"]["action"] == "anonymised" and response["erased"]["accounts"]["rows"] == 1
    assert response["erased"]["billing_records"] == {"action": "deleted", "rows": 1}  # the 8-year-old one
    [kept] = response["kept"]
    assert (
        kept["category"] == "billing_records"
        and kept["rows"] == 1
        and "7 years" in kept["reason"]
        and kept["deletable_from"]
    )
    assert response["earlier_exports_erased"] == 1 and get_request(pg_platform.engine, export.id).response == {
        "document": "erased"
    }
    # Alice: gone except the billing record the law keeps; Bob: untouched.
    everything = json.dumps({t: app_rows(world, t) for t in bob_before}, default=str).lower()
    assert everything.count("alice") == 2  # billing_email and billing_name of the one kept record
    assert [
        float(r["amount"])
        for r in app_rows(world, "billing_records")
        if (r["billing_email"] or "").lower() == "alice@wonder.test"
    ] == [222.22]
    account = next(r for r in app_rows(world, "accounts") if r["plan"] == "pro" and r["email"] is None)
    assert account["name"] is None and account["phone"] is None
    assert {
        t: [r for r in app_rows(world, t) if "bob" in json.dumps(r, default=str).lower()] for t in bob_before
    } == bob_before
    assert response["workspaces_owned"] == ["wonder"]


def test_erasure_deletes_the_notices_we_sent_them_and_no_one_elses(pg_platform, pg_database, world) -> None:
    """The sync-error notices the pipeline emailed a workspace owner name their address: the export lists
    them (whatever the case of the stored address) and erasure deletes them, leaving another owner's."""
    n = tables.sent_notifications
    with pg_platform.engine.begin() as db:
        for run_id, connection_id, recipient in (
            ("run-a1", "sf-wonder", "alice@wonder.test"),
            ("run-a2", "sf-wonder", "Alice@Wonder.test"),
            ("run-b1", "sf-builders", "bob@build.test"),
        ):
            db.execute(
                n.insert().values(
                    run_id=run_id, connection_id=connection_id, recipient=recipient,
                    channels="email", status="sent", at=utcnow(), attempts=1,
                )
            )  # fmt: skip
    export = verified(pg_platform.engine, "access", "alice@wonder.test")
    assert run(subject_access_job, pg_platform, pg_database, export.id).success
    document = get_request(pg_platform.engine, export.id).response["document"]
    assert sorted(r["run_id"] for r in document["notifications_sent"]) == ["run-a1", "run-a2"]

    request = verified(pg_platform.engine, "erasure", "alice@wonder.test")
    assert run(subject_erasure_job, pg_platform, pg_database, request.id).success
    response = get_request(pg_platform.engine, request.id).response
    assert response["erased"]["notifications_sent"] == {"action": "deleted", "rows": 2}
    with pg_platform.engine.connect() as db:
        assert [r.run_id for r in db.execute(sa.select(n.c.run_id, n.c.recipient))] == ["run-b1"]


def test_unknown_subject_gets_a_clear_answer(pg_platform, pg_database, world) -> None:
    before = {t: app_rows(world, t) for t in ("accounts", "demo_requests", "billing_records", "email_correspondence")}
    for job, kind in ((subject_erasure_job, "erasure"), (subject_access_job, "access")):
        request = verified(pg_platform.engine, kind, "nobody@nowhere.test")
        assert run(job, pg_platform, pg_database, request.id).success
        response = get_request(pg_platform.engine, request.id).response
        assert response["found"] is False and "no data about nobody@nowhere.test" in response["message"]
    assert {t: app_rows(world, t) for t in before} == before
    again = run(subject_erasure_job, pg_platform, pg_database, request.id - 1)
    assert (
        not again.success
        and "already answered" in again.get_step_failure_events()[0].step_failure_data.error.to_string()
    )


def test_rectification_and_restriction(pg_platform, pg_database, world) -> None:
    fix = verified(
        pg_platform.engine,
        "rectification",
        "alice@wonder.test",
        request={"corrections": {"accounts": {"name": "Alice Kingsleigh", "phone": "555-0199"}}},
    )
    assert run(subject_rectification_job, pg_platform, pg_database, fix.id).success
    alice = next(r for r in app_rows(world, "accounts") if r["email"] == "Alice@Wonder.test")
    assert (alice["name"], alice["phone"]) == ("Alice Kingsleigh", "555-0199")
    assert get_request(pg_platform.engine, fix.id).response["rectified"]["accounts"]["rows"] == 1
    sneaky = verified(
        pg_platform.engine,
        "rectification",
        "alice@wonder.test",
        request={"corrections": {"accounts": {"plan": "free"}}},
    )
    refused = run(subject_rectification_job, pg_platform, pg_database, sneaky.id)
    assert (
        not refused.success
        and "accounts.plan may not be changed"
        in refused.get_step_failure_events()[0].step_failure_data.error.to_string()
    )

    assert not is_restricted(pg_platform.engine, "alice@wonder.test")
    stop = verified(pg_platform.engine, "objection", "alice@wonder.test")
    assert run(subject_restriction_job, pg_platform, pg_database, stop.id).success
    assert is_restricted(pg_platform.engine, "ALICE@wonder.test") and not is_restricted(
        pg_platform.engine, "bob@build.test"
    )
    assert restricted_workspace_ids(pg_platform.engine) == {"wonder"}
    assert connection_restricted(pg_platform, pg_platform.registry.get("sf-wonder"))
    assert not connection_restricted(pg_platform, pg_platform.registry.get("sf-builders"))
    # Enforced where every run starts: the restricted owner's connection reads nothing, others carry on.
    from dfx_pipelines.platform.errors import ConnectionInactiveError

    runs_see = PlatformResource(metrics_db_url=pg_database["url"])
    with pytest.raises(ConnectionInactiveError, match="restricted processing"):
        runs_see.active_connection("sf-wonder", "salesforce")
    assert runs_see.active_connection("sf-builders", "salesforce").id == "sf-builders"
    with pytest.raises(RequestRefused):
        from dfx_pipelines.lifecycle.subject_data import check_actionable

        check_actionable(get_request(pg_platform.engine, stop.id), ("restriction", "objection"))


def test_sensor_flags_overdue_and_nearing_requests(pg_platform, pg_database, world, tmp_path) -> None:
    engine = pg_platform.engine
    overdue = record_request(engine, "erasure", "gdpr", "late@x.test", received_at=utcnow() - timedelta(days=31))
    nearing = record_request(engine, "access", "ccpa", "soon@x.test", received_at=utcnow() - timedelta(days=40))
    record_request(engine, "access", "gdpr", "fresh@x.test")
    answered = verified(engine, "access", "nobody@x.test", received_at=utcnow() - timedelta(days=60))
    assert run(subject_access_job, pg_platform, pg_database, answered.id).success  # answered: no alert even though old
    resources = {"platform": PlatformResource(metrics_db_url=pg_database["url"])}
    home = tmp_path / "dh"
    home.mkdir()
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        result = subject_request_deadline_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert [r.run_config["ops"]["raise_overdue_alert"]["config"]["request_id"] for r in result.run_requests] == [
            overdue.id
        ]
        assert result.run_requests[0].run_key.startswith(f"dsr-overdue:{overdue.id}:")
        assert "late@x.test" not in json.dumps(result.run_requests[0].run_config)  # ids only, never the email
        alert = subject_request_overdue_alert_job.execute_in_process(
            instance=instance, run_config=result.run_requests[0].run_config, resources=resources, raise_on_error=False
        )
        assert not alert.success
        assert (
            f"#{overdue.id} (erasure, GDPR)" in alert.get_step_failure_events()[0].step_failure_data.error.to_string()
        )

        verify_identity(engine, overdue.id, by="support@dfx.test")
        assert run(subject_erasure_job, pg_platform, pg_database, overdue.id).success
        quiet = subject_request_deadline_sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert not quiet.run_requests and f"#{nearing.id} (access, due" in quiet.skip_reason.skip_message


def test_cli_records_verifies_lists_and_answers(
    pg_platform, pg_database, world, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from dfx_pipelines.lifecycle.cli import requests_group

    monkeypatch.setenv("DFX_METRICS_DB_URL", pg_database["url"])
    monkeypatch.setenv("DFX_APP_DB_URL", pg_database["url"])
    cli = CliRunner()
    recorded = cli.invoke(requests_group, ["record", "--kind", "access", "--law", "ccpa", "--email", "bob@build.test"])
    assert recorded.exit_code == 0, recorded.output
    request_id = int(recorded.output.split(":")[0].split()[1])
    assert get_request(pg_platform.engine, request_id).due_at - get_request(
        pg_platform.engine, request_id
    ).received_at == timedelta(days=45)
    refused = cli.invoke(requests_group, ["answer", str(request_id)])
    assert (
        isinstance(refused.exception, RequestRefused)
        and get_request(pg_platform.engine, request_id).status == "received"
    )
    assert f"{request_id}\taccess\tCCPA\treceived" in cli.invoke(requests_group, ["list"]).output
    assert cli.invoke(requests_group, ["verify", str(request_id), "--by", "support@dfx.test"]).exit_code == 0
    answered = cli.invoke(requests_group, ["answer", str(request_id)])
    assert answered.exit_code == 0 and "rows.accounts=1" in answered.output and "builder" not in answered.output.lower()
    assert (
        get_request(pg_platform.engine, request_id).response["document"]["application_data"]["accounts"]["rows"][0][
            "name"
        ]
        == "Bob Builder"
    )
