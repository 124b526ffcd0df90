"""Write-back against the sandbox org (promise P9): computed values go only to the designated field of the
records the metric names, with If-Unmodified-Since; a dry run sends no write; an undesignated or
non-updateable field, or a malformed record id, is refused before any request; a record someone changed
after the computation is left alone (412) while the others are written.

Every test runs with the machine's local zone set to US Pacific: the If-Unmodified-Since instant must not
depend on it (the embedded SQLite store hands back computed_at without a zone).
"""

import email.utils
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    start_salesforce_sandbox,
)
from dfx_pipelines.connectors.salesforce.writeback import (
    PlannedWrite,
    WriteRefused,
    plan_writes,
    salesforce_writeback_job,
    write_back,
)
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.metric_store import Provenance
from dfx_pipelines.platform.registry import Connection, WriteBackDesignation
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect

CAMPAIGN_PATCH = re.compile(r"^/services/data/v\d+\.\d/sobjects/Campaign/(701[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?)$")


@pytest.fixture(autouse=True)
def pacific_local_time() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"
    time.tzset()
    yield
    if previous is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = previous
    time.tzset()


@dataclass
class Env:
    sandbox: RunningSalesforceSandbox
    platform: Platform
    resource: SalesforceResource
    instance: dg.DagsterInstance
    connection: Connection

    @property
    def requests(self) -> list:
        return self.sandbox.server.requests

    def run_job(
        self, dry_run: bool, connection_id: str = "sf-acme", raise_on_error: bool = True
    ) -> dg.ExecuteInProcessResult:
        settings = self.platform.settings
        return salesforce_writeback_job.execute_in_process(
            run_config={
                "ops": {"write_designated_fields": {"config": {"connection_id": connection_id, "dry_run": dry_run}}}
            },
            resources={
                "platform": PlatformResource(home=str(settings.home), metrics_db_url=settings.metrics_db_url),
                "salesforce": self.resource,
            },
            instance=self.instance,
            raise_on_error=raise_on_error,
        )

    def amounts(self) -> dict[str, float]:
        """campaign id -> the `amount` the metric store holds for it."""
        return {
            row["dimensions"]["campaign_id"]: row["value"]
            for row in self.platform.metric_store.read(connection_id="sf-acme", metric="campaign_sourced_pipeline")
            if row["measure"] == "amount" and row["dimensions"]
        }

    def stored_pipeline(self) -> dict[str, float | None]:
        return dict(self.sandbox.org.run_sql('SELECT "Id", "Sourced_Pipeline__c" FROM "Campaign"'))


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    # One per test: a module-scoped instance outlived the per-test environment reset (DAGSTER_HOME is
    # cleared before each test) and intermittently failed to resolve in a long session.
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


@pytest.fixture
def env(platform: Platform, workspace: Any, instance: dg.DagsterInstance) -> Iterator[Env]:
    # The org's clock starts at the wall clock's: If-Unmodified-Since compares our computation time
    # with the records' LastModifiedDate.
    sandbox = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=300, now=datetime.now(UTC)))
    try:
        resource = SalesforceResource(client_id=sandbox.app.oauth.client_id, sandbox_ca_path=sandbox.ca_pem_path)
        connection = connect(platform, sandbox, resource)
        assert Materializer(platform, resource, instance)(
            ["campaign_sourced_pipeline"], partition_key="sf-acme"
        ).success
        yield Env(sandbox, platform, resource, instance, connection)
    finally:
        sandbox.stop()


def patches(requests: list) -> list:
    return [r for r in requests if r.method == "PATCH"]


def test_dry_run_reports_and_sends_no_write(env: Env) -> None:
    # What would be written is the right number: Σ Amount of each campaign's opportunities, from the org's tables.
    expected = dict(
        env.sandbox.org.run_sql(
            "SELECT CampaignId, SUM(COALESCE(Amount, 0)) FROM Opportunity WHERE IsDeleted = 0 AND CampaignId IS NOT NULL GROUP BY CampaignId"
        )
    )
    assert len(expected) >= 3 and env.amounts() == pytest.approx(expected)
    before = len(env.requests)
    result = env.run_job(dry_run=True)
    outcomes = result.output_for_node("write_designated_fields")
    # Launched with its connection in the config only, the run is tagged with it: the connection's
    # deletion finds it through Dagster's run filter on the tag (its output lists record ids and values).
    tagged = env.instance.get_run_ids(dg.RunsFilter(tags={"dfx/connection": "sf-acme"}))
    assert result.run_id in tagged
    assert {o["record_id"] for o in outcomes} == set(env.amounts())
    assert {(o["sobject"], o["field"], o["outcome"]) for o in outcomes} == {
        ("Campaign", "Sourced_Pipeline__c", "would-write")
    }
    assert all(o["value"] == pytest.approx(env.amounts()[o["record_id"]]) for o in outcomes)
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = output.event_specific_data.metadata
    assert (
        metadata["dry_run"].value is True
        and metadata["would-write"].value == len(outcomes)
        and metadata["written"].value == 0
    )

    client = env.resource.client(env.platform, env.connection)
    direct = write_back(client, env.connection, plan_writes(env.platform, env.connection), dry_run=True)
    assert [o.outcome for o in direct] == ["would-write"] * len(outcomes)

    sent = env.requests[before:]
    assert sent and all(r.method == "GET" for r in sent)  # describe, to check the field is updateable
    assert patches(sent) == [] and env.sandbox.app.write_audit == []
    assert all(value is None for value in env.stored_pipeline().values())


def test_real_run_writes_only_the_designated_field_of_the_named_campaigns(env: Env) -> None:
    untouched_before = env.sandbox.org.run_sql('SELECT * FROM "Campaign" ORDER BY "Id"')
    [batch] = env.platform.metric_store.batches("sf-acme")
    before = len(env.requests)
    result = env.run_job(dry_run=False)
    outcomes = result.output_for_node("write_designated_fields")
    amounts = env.amounts()
    assert {o["record_id"]: o["outcome"] for o in outcomes} == dict.fromkeys(amounts, "written")

    sent = patches(env.requests[before:])
    assert len(sent) == len(amounts)
    computed_at = batch["computed_at"].replace(tzinfo=UTC)  # stored in UTC
    for request in sent:
        match = CAMPAIGN_PATCH.match(request.path)
        assert match and match.group(1) in amounts
        assert request.json() == {"Sourced_Pipeline__c": pytest.approx(amounts[match.group(1)])}
        condition = email.utils.parsedate_to_datetime(request.headers["if-unmodified-since"])
        assert condition == computed_at.replace(microsecond=0), "If-Unmodified-Since is the computation time, in UTC"
    audit = env.sandbox.app.write_audit
    assert [(a.method, a.object, set(a.fields), a.outcome) for a in audit] == [
        ("PATCH", "Campaign", {"Sourced_Pipeline__c"}, "updated")
    ] * len(amounts)

    # The org holds the metric store's values; nothing else in any Campaign changed but the modstamps.
    stored = env.stored_pipeline()
    assert {campaign: stored[campaign] for campaign in amounts} == pytest.approx(amounts)
    assert all(stored[campaign] is None for campaign in set(stored) - set(amounts))
    columns = [c[1] for c in env.sandbox.org.run_sql('PRAGMA table_info("Campaign")')]
    after = env.sandbox.org.run_sql('SELECT * FROM "Campaign" ORDER BY "Id"')
    moving = {"Sourced_Pipeline__c", "LastModifiedDate", "SystemModstamp", "LastModifiedById"}
    for old, new in zip(untouched_before, after):
        assert {c: v for c, v in zip(columns, old) if c not in moving} == {
            c: v for c, v in zip(columns, new) if c not in moving
        }


def test_an_undesignated_field_is_refused_before_any_request(env: Env) -> None:
    client = env.resource.client(env.platform, env.connection)
    planned = plan_writes(env.platform, env.connection)
    for sobject, field in [("Campaign", "Name"), ("Opportunity", "Amount"), ("Account", "Sourced_Pipeline__c")]:
        record = env.sandbox.org.run_sql(f'SELECT "Id" FROM "{sobject}" ORDER BY "Id" LIMIT 1')[0][0]
        # The forbidden write comes last, after writes that are allowed: still nothing may be sent.
        writes = [*planned, PlannedWrite(sobject, record, field, 1.0, datetime.now(UTC))]
        before = len(env.requests)
        for dry_run in (True, False):
            with pytest.raises(WriteRefused, match=f"{sobject}.{field} is not a designated write-back field"):
                write_back(client, env.connection, writes, dry_run=dry_run)
        assert env.requests[before:] == [], f"{sobject}.{field}: a request was sent before the refusal"
    assert env.sandbox.app.write_audit == []
    assert all(value is None for value in env.stored_pipeline().values())


def test_a_designated_field_describe_says_is_not_updateable_is_refused(env: Env) -> None:
    # Connect refuses such a designation; a stored connection could still carry one (edited, or the
    # field made read-only in the org since), so write-back asks describe itself.
    formula = WriteBackDesignation(
        object="Opportunity",
        field="Weighted_Amount__c",
        metric="campaign_sourced_pipeline",
        measure="amount",
        record_dimension="campaign_id",
    )
    objects = {
        **env.connection.selection.objects,
        "Opportunity": [*env.connection.selection.objects["Opportunity"], "Weighted_Amount__c"],
    }
    connection = env.platform.registry.save(
        Connection.model_validate(
            {
                **env.connection.model_dump(),
                "selection": {"objects": objects},
                "write_back": [*env.connection.write_back, formula],
            }
        )
    )
    assert [d.field for d in env.platform.registry.get("sf-acme").write_back] == [
        "Sourced_Pipeline__c",
        "Weighted_Amount__c",
    ]
    opportunity = env.sandbox.org.run_sql('SELECT "Id" FROM "Opportunity" ORDER BY "Id" LIMIT 1')[0][0]
    client = env.resource.client(env.platform, connection)
    before = len(env.requests)
    with pytest.raises(WriteRefused, match="Weighted_Amount__c is not updateable"):
        write_back(
            client,
            connection,
            [PlannedWrite("Opportunity", opportunity, "Weighted_Amount__c", 1.0, datetime.now(UTC))],
            dry_run=False,
        )
    # And through the job, whose plan now holds writes for both designations.
    result = env.run_job(dry_run=False, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "Weighted_Amount__c is not updateable" in failure.step_failure_data.error.to_string()
    sent = env.requests[before:]
    assert sent and patches(sent) == [] and env.sandbox.app.write_audit == []
    assert all(value is None for value in env.stored_pipeline().values())


def test_a_campaign_changed_after_the_computation_is_not_overwritten(env: Env) -> None:
    org = env.sandbox.org
    amounts = env.amounts()
    changed = sorted(amounts)[1]
    org.advance(timedelta(minutes=10))  # a person edits the campaign after we computed
    org.update("Campaign", changed, {"Sourced_Pipeline__c": 42.0, "Status": "Completed"})
    before = len(env.requests)
    outcomes = {o["record_id"]: o for o in env.run_job(dry_run=False).output_for_node("write_designated_fields")}
    assert outcomes[changed]["outcome"] == "conflict" and "PRECONDITION_FAILED" in outcomes[changed]["detail"]
    assert {campaign: o["outcome"] for campaign, o in outcomes.items() if campaign != changed} == {
        c: "written" for c in amounts if c != changed
    }

    stored = env.stored_pipeline()
    assert stored[changed] == 42.0 and org.get("Campaign", changed)["Status"] == "Completed"  # their edit stands
    assert {c: stored[c] for c in amounts if c != changed} == pytest.approx(
        {c: v for c, v in amounts.items() if c != changed}
    )
    audit = {a.record_id: (a.outcome, a.status) for a in env.sandbox.app.write_audit}
    # the person's own edit went through the org directly, not the API: only our attempts are audited
    assert audit[changed] == ("PRECONDITION_FAILED", 412) and len(env.sandbox.app.write_audit) == len(amounts)
    assert {a.object for a in env.sandbox.app.write_audit} == {"Campaign"}
    assert len(patches(env.requests[before:])) == len(amounts)


def test_a_malformed_record_id_in_the_metric_store_is_refused_before_any_request(env: Env) -> None:
    store = env.platform.metric_store
    rows = [
        MetricRow(r["metric"], r["measure"], r["value"], r["period"], MetricRow.dims(**r["dimensions"]))
        for r in store.read(connection_id="sf-acme", metric="campaign_sourced_pipeline")
    ]
    # Sorts after every real id, so allowed writes come before it in the plan.
    hostile = max(env.amounts()) + "/../../Account/0018d000000F6WWAAA"
    rows.append(MetricRow("campaign_sourced_pipeline", "amount", 1.0, None, MetricRow.dims(campaign_id=hostile)))
    store.write(env.connection, "campaign_sourced_pipeline", "sf-acme", rows, Provenance(None, "a tampered batch"))
    assert hostile in {w.record_id for w in plan_writes(env.platform, env.connection)}

    before = len(env.requests)
    result = env.run_job(dry_run=False, raise_on_error=False)
    assert not result.success
    [failure] = result.get_step_failure_events()
    assert "is not a Salesforce record id" in failure.step_failure_data.error.to_string()
    client = env.resource.client(env.platform, env.connection)
    with pytest.raises(WriteRefused, match="not a Salesforce record id"):
        write_back(client, env.connection, plan_writes(env.platform, env.connection), dry_run=True)
    assert env.requests[before:] == [] and env.sandbox.app.write_audit == []


def test_a_campaign_edited_while_the_metric_was_computed_is_not_overwritten(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dfx_pipelines.platform.metric_store import MetricStore

    org = env.sandbox.org
    changed = sorted(env.amounts())[0]
    store_result = MetricStore.write

    def edited_before_the_result_is_stored(self, *args, **kwargs):
        # A person saves the campaign after our query started and before its result is stored. Whole
        # seconds apart: HTTP dates and the org's timestamps carry no fractions.
        time.sleep(2.1)
        org.advance(max(datetime.now(UTC) - timedelta(seconds=1) - org.now, timedelta(0)))
        org.update("Campaign", changed, {"Status": "Completed"})
        return store_result(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(MetricStore, "write", edited_before_the_result_is_stored)
        assert Materializer(env.platform, env.resource, env.instance)(
            ["campaign_sourced_pipeline"], partition_key="sf-acme"
        ).success
    outcomes = {
        o["record_id"]: o["outcome"] for o in env.run_job(dry_run=False).output_for_node("write_designated_fields")
    }
    assert outcomes[changed] == "conflict"  # the value was computed before their edit: it must not overwrite it
    assert {c: o for c, o in outcomes.items() if c != changed} == {c: "written" for c in env.amounts() if c != changed}
