"""A cascaded delete reaches the metrics through change capture: an Account deleted through the REST API
takes its Opportunities (and Contacts, activities) with it, Salesforce's `deleted` endpoint reports them,
the CDC sensor requests runs for the days they were on, and after those runs the metric store holds what
a from-scratch computation of the org (a second connection, materialized fresh) holds.

The sensor reads the wall clock, so the org is frozen two days behind it (as in test_cdc.py).
"""

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import dagster as dg
import pytest
from simple_salesforce import Salesforce

from dfx_pipelines.connectors.salesforce.cdc import salesforce_cdc_sensor
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import (
    RunningSalesforceSandbox,
    SalesforceOrg,
    start_salesforce_sandbox,
)
from dfx_pipelines.platform.http import NO_RETRY, build_session
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect, request_partition, requested_days

POLLED = ["CampaignMember", "Case", "CaseMilestone", "Event", "Lead", "Opportunity", "Task"]


@pytest.fixture
def sandbox() -> Iterator[RunningSalesforceSandbox]:
    org_now = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=2)
    running = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=300, now=org_now))
    yield running
    running.stop()


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as dagster_instance:
        yield dagster_instance


def values(platform: Platform, connection_id: str, partition: str) -> dict[str, list[tuple]]:
    """Per metric, the stored values of one partition (partition key without the connection)."""
    key = f"{connection_id}|{partition}" if partition else connection_id
    found: dict[str, list[tuple]] = {}
    for row in platform.metric_store.read(connection_id=connection_id, partition_key=key):
        value = None if row["value"] is None else round(row["value"], 6)
        found.setdefault(row["metric"], []).append(
            (row["period"], row["measure"], json.dumps(row["dimensions"], sort_keys=True), value)
        )
    return {metric: sorted(rows) for metric, rows in found.items()}


def test_an_account_deleted_through_rest_reaches_the_metrics_and_they_match_a_fresh_computation(
    platform: Platform, workspace: Any, sandbox: RunningSalesforceSandbox, instance: dg.DagsterInstance
) -> None:
    org = sandbox.org
    resource = SalesforceResource(client_id=sandbox.app.oauth.client_id, sandbox_ca_path=sandbox.ca_pem_path)
    connect(platform, sandbox, resource)
    materialize = Materializer(platform, resource, instance)
    sync_partitions(instance, platform.registry, ["salesforce"])
    org.advance(timedelta(minutes=2))  # past the records the generator stamped at the org's creation

    # An account whose closed deals sit on a few past days (each has a daily partition): few runs to make.
    today = datetime.now(UTC).date()
    account, days = min(
        (
            (
                account_id,
                {
                    date.fromisoformat(row[0])
                    for row in org.run_sql(
                        "SELECT CloseDate FROM Opportunity WHERE AccountId = ? AND IsClosed = 1 AND IsDeleted = 0 AND CloseDate < ? AND CloseDate >= '2024-01-01'",
                        (account_id, today.isoformat()),
                    )
                },
            )
            for (account_id,) in org.run_sql("SELECT Id FROM Account WHERE IsDeleted = 0")
        ),
        key=lambda item: (not item[1], len(item[1]), item[0]),
    )
    assert days, "no account has closed deals on past days"
    opportunities = {
        row[0] for row in org.run_sql("SELECT Id FROM Opportunity WHERE AccountId = ? AND IsDeleted = 0", (account,))
    }
    daily = ["win_rate", "sales_cycle_length"]
    for day in days:
        assert materialize(daily, partition_key=f"sf-acme|{day}").success
    assert materialize(["open_pipeline_by_stage"], partition_key="sf-acme").success
    before = {day: values(platform, "sf-acme", day.isoformat()) for day in days}

    # Through the REST API, as a user would: its cases first (they refuse the account's delete), then the account.
    start = org.now
    sf = Salesforce(
        instance_url=sandbox.url,
        session_id=sandbox.app.issue_tokens()["access_token"],
        session=build_session(sandbox_ca=sandbox.ca_pem_path, retry=NO_RETRY),
        version="59.0",
    )
    for (case_id,) in org.run_sql(
        'SELECT Id FROM "Case" WHERE IsDeleted = 0 AND (AccountId = ? OR ContactId IN (SELECT Id FROM Contact WHERE AccountId = ?))',
        (account, account),
    ):
        sf.Case.delete(case_id)
    sf.Account.delete(account)
    org.advance(timedelta(minutes=5))

    # Salesforce's deleted endpoint reports the account's opportunities, so the sensor asks for their days.
    reported = {r["id"] for r in sf.Opportunity.deleted(start, org.now)["deletedRecords"]}
    assert reported == opportunities
    settings = platform.settings
    resources = {
        "platform": PlatformResource(home=str(settings.home), metrics_db_url=settings.metrics_db_url),
        "salesforce": resource,
    }
    cursor = {"sf-acme": {obj: start.strftime("%Y-%m-%dT%H:%M:%S+00:00") for obj in POLLED}}
    result = salesforce_cdc_sensor(
        dg.build_sensor_context(instance=instance, cursor=json.dumps(cursor), resources=resources)
    )
    assert {f"sf-acme|{day}" for day in days} <= set(requested_days(result.run_requests))
    for request in result.run_requests:
        names = sorted(key.path[-1] for key in request.asset_selection)
        assert materialize(names, partition_key=request_partition(request), tags=request.tags).success

    # From scratch: a second connection to the same org computes the same metrics of the same partitions fresh.
    connect(platform, sandbox, resource, config={"id": "sf-fresh"})
    after = {day: values(platform, "sf-acme", day.isoformat()) for day in days}
    for day, metrics in after.items():
        assert materialize(sorted(metrics), partition_key=f"sf-fresh|{day}").success
    snapshot = values(platform, "sf-acme", "")
    assert materialize(sorted(snapshot), partition_key="sf-fresh").success
    assert after == {day: values(platform, "sf-fresh", day.isoformat()) for day in days}
    assert snapshot == values(platform, "sf-fresh", "")
    assert {
        day: {m: after[day][m] for m in daily} for day in days
    } != before  # the deals that went with the account counted
