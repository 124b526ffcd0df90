"""Resilience and guard rails of the Salesforce connector, end to end against the sandbox org: the same
metrics under injected faults, token refresh, the API budget, revoked connections, field selection on
the wire, and TLS trust. Nothing is mocked: real Dagster runs, real simple-salesforce, real HTTPS."""

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import dagster as dg
import pytest
import trustme

from dfx_pipelines.connectors.salesforce.cdc import poll_connection
from dfx_pipelines.connectors.salesforce.metrics import SALES_METRICS
from dfx_pipelines.connectors.salesforce.plugin import DEMO_SELECTION
from dfx_pipelines.connectors.salesforce.queries import Cadence
from dfx_pipelines.connectors.salesforce.resource import SalesforceResource
from dfx_pipelines.connectors.salesforce.sandbox import RunningSalesforceSandbox
from dfx_pipelines.platform.errors import ConnectorError
from dfx_pipelines.platform.partitions import RANGE_END_TAG as RANGE_END
from dfx_pipelines.platform.partitions import RANGE_START_TAG as RANGE_START
from dfx_pipelines.platform.registry import ConnectionStatus
from dfx_pipelines.platform.sandbox import Faults

from .conftest import ORG_NOW, Materializer, connect, make_sandbox, subrequests_of

DAY = ORG_NOW.date() - timedelta(days=1)
PARTITION = f"sf-acme|{DAY}"
WEEK = {RANGE_START: f"sf-acme|{DAY - timedelta(days=6)}", RANGE_END: f"sf-acme|{DAY}"}
FOUR_DAYS = {RANGE_START: f"sf-acme|{DAY - timedelta(days=3)}", RANGE_END: f"sf-acme|{DAY}"}
DAILY = ["win_rate", "lead_conversion", "case_volume", "sales_cycle_length"]
SNAPSHOT = ["open_pipeline_by_stage", "campaign_sourced_pipeline"]
DATA = "/services/data/"


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def sf_sandbox() -> Iterator[RunningSalesforceSandbox]:
    """This module's own org (it changes usage, tokens and faults): big enough that the open pipeline
    (~2,400 open opportunities, streamed) takes two pages, so faults also hit `nextRecordsUrl`."""
    running = make_sandbox(opportunities=8000)
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def _reset_org_usage(sf_sandbox: RunningSalesforceSandbox) -> None:
    sf_sandbox.app.set_api_usage(0)


@pytest.fixture
def sf_resource(sf_sandbox: RunningSalesforceSandbox) -> SalesforceResource:
    """The sandbox resource with short waits: a faulty run retries quickly instead of sleeping seconds."""
    return SalesforceResource(
        client_id=sf_sandbox.app.oauth.client_id,
        sandbox_ca_path=sf_sandbox.ca_pem_path,
        retry_max_attempts=6,
        retry_backoff_seconds=0.01,
        limit_retry_max_attempts=3,
        limit_retry_backoff_seconds=0.01,
    )


# ---------------------------------------------------------------- helpers


def since(sandbox: RunningSalesforceSandbox, mark: int) -> list:
    return sandbox.server.requests[mark:]


def stored_rows(platform) -> set[tuple]:
    """Every metric value of the connection, without provenance: (metric, partition, period, measure, dims, value)."""
    return {
        (r["metric"], r["partition_key"], r["period"], r["measure"], tuple(sorted(r["dimensions"].items())), r["value"])
        for r in platform.metric_store.read(connection_id="sf-acme")
    }


def metadata(result: dg.ExecuteInProcessResult, metric: str) -> dict:
    materializations = result.asset_materializations_for_node(f"salesforce__{metric}")
    assert materializations, f"{metric} was not materialized"
    return {key: value.value for key, value in materializations[-1].metadata.items()}


def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    """step key -> the whole error text (message and causes) of every failed step."""
    return {event.step_key: event.step_failure_data.error.to_string() for event in result.get_step_failure_events()}


SOQL_KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "GROUP",
        "BY",
        "ORDER",
        "ASC",
        "DESC",
        "NULLS",
        "FIRST",
        "LAST",
        "LIMIT",
        "OFFSET",
        "TRUE",
        "FALSE",
        "NULL",
        "LIKE",
        "INCLUDES",
        "EXCLUDES",
    }
)
_STRING = re.compile(r"'(?:\\.|[^'\\])*'")
_DATETIME = re.compile(r"\b\d{4}-\d{2}-\d{2}(?:T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:?\d{2}))?\b")
_SELECT = re.compile(r"^\s*SELECT\s+(?P<items>.+?)\s+FROM\s+(?P<object>\w+)(?P<rest>.*)$", re.IGNORECASE | re.DOTALL)
_AGGREGATE_ITEM = re.compile(r"^(?P<fn>\w+)\(\s*(?P<field>[\w.]*)\s*\)(?:\s+\w+)?$")
_PLAIN_ITEM = re.compile(r"^(?P<field>[A-Za-z][\w.]*)(?:\s+\w+)?$")


def soql_fields(soql: str) -> tuple[str, set[str]]:
    """(object, every field the query names) of the simple SOQL the connector sends: a SELECT list of
    fields and aggregates (aliases dropped), then WHERE/GROUP BY. Literals are removed first."""
    text = _DATETIME.sub(" ", _STRING.sub(" ", soql))
    match = _SELECT.match(text)
    assert match, f"not a SOQL SELECT: {soql}"
    assert "(SELECT" not in text.upper().replace(" ", ""), f"sub-queries are not expected: {soql}"
    fields: set[str] = set()
    for item in match["items"].split(","):
        item = item.strip()
        parsed = _AGGREGATE_ITEM.match(item) or _PLAIN_ITEM.match(item)
        assert parsed, f"unexpected SELECT item {item!r} in {soql}"
        if parsed["field"]:
            fields.add(parsed["field"])
    for token in re.findall(r"[A-Za-z_][\w.]*", match["rest"]):
        if token.upper() not in SOQL_KEYWORDS:
            fields.add(token)
    return match["object"], fields


def sent_soql(requests: list) -> list[str]:
    return [r.arg("q") for r in subrequests_of(requests) if re.search(r"/query(All)?/?$", r.path) and r.arg("q")]


# ---------------------------------------------------------------- 1. same metrics under faults


def test_faults_do_not_change_the_metrics(platform, sf_sandbox, sf_connection, materialize) -> None:
    # Without ExpectedRevenue the open pipeline streams (and pages) every open deal: faults then also hit
    # nextRecordsUrl continuations, not just single-page aggregates.
    sf_connection.selection.objects["Opportunity"].remove("ExpectedRevenue")
    platform.registry.save(sf_connection)
    assert materialize(DAILY, tags=FOUR_DAYS).success
    assert materialize(SNAPSHOT, partition_key="sf-acme").success
    clean = stored_rows(platform)
    assert {row[0] for row in clean} == set(DAILY) | set(SNAPSHOT)
    assert platform.metric_store.delete_connection("sf-acme") > 0
    assert stored_rows(platform) == set()

    # A seeded mix of what a busy org and a flaky network do, on the REST API (the login host is elsewhere).
    faults = sf_sandbox.server.faults = Faults(seed=20261120)
    faults.inject("rate_limit", count=None, probability=0.1, retry_after=0, path_prefix=DATA)
    faults.inject("rate_limit", count=1, probability=0.2, retry_after=0.3, path_prefix=DATA)
    faults.inject("server_error", count=None, probability=0.06, status=502, path_prefix=DATA)
    faults.inject("server_error", count=None, probability=0.06, status=503, path_prefix=DATA)
    faults.inject("drop", count=None, probability=0.06, path_prefix=DATA)
    faults.inject("expire_token", count=2, probability=0.1, path_prefix=DATA)
    mark = len(sf_sandbox.server.requests)
    daily = materialize(DAILY, tags=FOUR_DAYS)
    snapshot = materialize(SNAPSHOT, partition_key="sf-acme")

    assert daily.success and snapshot.success
    assert stored_rows(platform) == clean
    assert {r["run_id"] for r in platform.metric_store.read(connection_id="sf-acme")} == {daily.run_id, snapshot.run_id}
    fired = {kind for kind, _ in faults.log}
    assert fired == {"rate_limit", "server_error", "drop", "expire_token"}, faults.log
    assert len(faults.log) >= 8, faults.log
    # The open pipeline is paged (nextRecordsUrl) under the same faults; refreshes show in the metadata.
    assert any(re.search(r"/query/01g\w+-\d+$", r.path) for r in since(sf_sandbox, mark))
    refreshes = sum(
        metadata(result, m)["token_refreshes"] for result, ms in ((daily, DAILY), (snapshot, SNAPSHOT)) for m in ms
    )
    assert refreshes == sum(1 for kind, _ in faults.log if kind == "expire_token")
    token_calls = [r.form() for r in since(sf_sandbox, mark) if r.path == "/services/oauth2/token"]
    assert len(token_calls) == refreshes and all(form["grant_type"] == "refresh_token" for form in token_calls)


def test_faults_that_outlast_the_retries_fail_the_run_clearly(platform, sf_sandbox, sf_connection, materialize) -> None:
    sf_sandbox.server.faults.inject("server_error", count=None, status=503, path_prefix=DATA)
    mark = len(sf_sandbox.server.requests)
    result = materialize(["win_rate"], partition_key=PARTITION, raise_on_error=False)
    assert not result.success
    (error,) = failures(result).values()
    assert "Salesforce query failed" in error and "HTTP 503" in error
    assert len([r for r in since(sf_sandbox, mark) if r.path.startswith(DATA)]) == 6  # retry_max_attempts, then stop
    assert stored_rows(platform) == set()


# ---------------------------------------------------------------- 2. token refresh


@pytest.mark.parametrize("how", ["revoked by the org", "clock past the TTL"])
def test_expired_access_token_is_refreshed_and_stored(
    platform, sf_sandbox, sf_connection, materialize, how: str
) -> None:
    vault_ref = sf_connection.secret_ref("oauth_access_token")
    old_token = platform.vault.get(vault_ref).get_secret_value()
    assert sf_sandbox.app.oauth.access_grant(old_token) is not None
    if how == "revoked by the org":
        sf_sandbox.app.oauth.expire_all_access_tokens()
    else:
        sf_sandbox.org.advance(sf_sandbox.app.oauth.access_token_ttl + timedelta(minutes=1))
    assert sf_sandbox.app.oauth.access_grant(old_token) is None
    mark = len(sf_sandbox.server.requests)

    result = materialize(["win_rate", "lead_conversion"], partition_key=PARTITION)

    assert result.success
    new_token = platform.vault.get(vault_ref).get_secret_value()
    assert new_token != old_token and sf_sandbox.app.oauth.access_grant(new_token) is not None
    (refresh_call,) = [r.form() for r in since(sf_sandbox, mark) if r.path == "/services/oauth2/token"]
    assert refresh_call["grant_type"] == "refresh_token"
    assert (
        refresh_call["refresh_token"]
        == platform.vault.get(sf_connection.secret_ref("oauth_refresh_token")).get_secret_value()
    )
    # The first asset refreshed; the second (its own client) read the stored new token and needed none.
    refreshes = [metadata(result, m)["token_refreshes"] for m in ("win_rate", "lead_conversion")]
    assert sorted(refreshes) == [0, 1]
    assert all(metadata(result, m)["dagster/row_count"] > 0 for m in ("win_rate", "lead_conversion"))


def test_a_revoked_refresh_token_fails_with_an_auth_error(platform, sf_sandbox, sf_connection, materialize) -> None:
    refresh = platform.vault.get(sf_connection.secret_ref("oauth_refresh_token")).get_secret_value()
    assert (
        sf_sandbox.session().post(f"{sf_sandbox.url}/services/oauth2/revoke", data={"token": refresh}).status_code
        == 200
    )
    result = materialize(["win_rate"], partition_key=PARTITION, raise_on_error=False)
    (error,) = failures(result).values()
    assert "AuthError" in error and "refresh" in error
    assert refresh not in error


# ---------------------------------------------------------------- 3. the API budget


def test_api_budget_stops_the_run_after_the_first_response(platform, sf_sandbox, sf_connection, materialize) -> None:
    limit = sf_sandbox.app.usage.limit
    share = sf_connection.settings.api_limit_share
    sf_sandbox.app.set_api_usage(int(share * limit))  # the next call brings usage to the share
    mark = len(sf_sandbox.server.requests)

    result = materialize(["win_rate"], tags=WEEK, raise_on_error=False)  # one run, seven queries planned

    assert not result.success
    (error,) = failures(result).values()
    assert "ApiBudgetExhausted" in error
    used = int(share * limit) + 1
    assert f"{used}/{limit} API calls" in error and "api_limit_share" in error
    data_requests = [r for r in since(sf_sandbox, mark) if r.path.startswith(DATA)]
    assert len(data_requests) == 1, [r.path for r in data_requests]
    assert sf_sandbox.app.usage.used == used


def test_api_budget_also_guards_change_polling(platform, sf_sandbox, sf_connection, sf_resource) -> None:
    """The CDC sensor's calls (the composite of `updated`/`deleted` windows) report usage like queries do,
    so a poll stops too: its next call (the changed records' days) is never sent."""
    from dfx_pipelines.connectors.salesforce.resource import ApiBudgetExhausted

    limit = sf_sandbox.app.usage.limit
    used = int(sf_connection.settings.api_limit_share * limit)
    sf_sandbox.app.set_api_usage(used)
    sf_sandbox.org.mutate(10, seed=5)  # changes in the window, so the poll has a second call to make
    sf_sandbox.org.advance(timedelta(minutes=5))
    now = sf_sandbox.org.now
    cursor = {obj: (now - timedelta(hours=1)).isoformat() for obj in sf_connection.selection.objects}
    client = sf_resource.client(platform, sf_connection)
    mark = len(sf_sandbox.server.requests)
    with pytest.raises(ApiBudgetExhausted, match=rf"{used + 1}/{limit}"):
        poll_connection(client, sf_connection, cursor, now, platform.metric_store)
    assert len([r for r in since(sf_sandbox, mark) if r.path.startswith(DATA)]) == 1


def test_request_limit_exceeded_is_retried_a_bounded_number_of_times(
    platform, sf_sandbox, sf_connection, materialize
) -> None:
    sf_sandbox.app.set_api_usage(sf_sandbox.app.usage.limit)  # the org's daily limit is fully spent: 403s
    mark = len(sf_sandbox.server.requests)

    result = materialize(["win_rate"], partition_key=PARTITION, raise_on_error=False)

    assert not result.success
    (error,) = failures(result).values()
    assert "REQUEST_LIMIT_EXCEEDED" in error and "refused" in error
    queries = [r for r in since(sf_sandbox, mark) if r.path.startswith(DATA)]
    assert len(queries) == 3  # limit_retry_max_attempts
    assert platform.metric_store.read(connection_id="sf-acme") == []


# ---------------------------------------------------------------- 4. revoked connection


def test_revoked_connection_fails_before_any_request(platform, sf_sandbox, sf_connection, materialize) -> None:
    platform.registry.set_status(sf_connection.id, ConnectionStatus.REVOKED)
    mark = len(sf_sandbox.server.requests)

    daily = materialize(DAILY, partition_key=PARTITION, raise_on_error=False)
    snapshot = materialize(SNAPSHOT, partition_key="sf-acme", raise_on_error=False)

    for result, metrics in ((daily, DAILY), (snapshot, SNAPSHOT)):
        assert not result.success
        errors = failures(result)
        assert set(errors) == {f"salesforce__{m}" for m in metrics}
        for error in errors.values():
            assert "ConnectionInactiveError" in error and "is revoked: no data is read from it" in error
    assert since(sf_sandbox, mark) == []
    assert platform.metric_store.read(connection_id="sf-acme") == []


# ---------------------------------------------------------------- 5. only selected fields cross the wire


def test_soql_field_parser() -> None:
    assert soql_fields(
        "SELECT IsWon, COUNT(Id) recordCount, SUM(Amount) amountSum FROM Opportunity "
        "WHERE IsClosed = true AND CloseDate = 2026-11-19 AND Name = 'A, B' GROUP BY IsWon"
    ) == ("Opportunity", {"IsWon", "Id", "Amount", "IsClosed", "CloseDate", "Name"})
    assert soql_fields(
        "SELECT MilestoneType.Name milestoneTypeName FROM CaseMilestone WHERE (CompletionDate >= 2026-11-19T00:00:00Z)"
    ) == ("CaseMilestone", {"MilestoneType.Name", "CompletionDate"})


def test_unselected_fields_never_cross_the_wire(platform, workspace, sf_sandbox, sf_resource, materialize) -> None:
    narrow = {
        "Opportunity": ["StageName", "Probability", "IsClosed", "IsWon", "CloseDate", "CreatedDate", "CampaignId"]
    }
    connect(platform, sf_sandbox, sf_resource, config={"selection": {"objects": narrow}, "write_back": []})
    mark = len(sf_sandbox.server.requests)

    daily = materialize(["win_rate", "sales_cycle_length"], partition_key=PARTITION)
    snapshot = materialize(SNAPSHOT, partition_key="sf-acme")

    for result, metric in (
        (daily, "win_rate"),
        (snapshot, "open_pipeline_by_stage"),
        (snapshot, "campaign_sourced_pipeline"),
    ):
        # Not computed, so not materialized; its fields-selected check warns, naming what is missing.
        assert not result.asset_materializations_for_node(f"salesforce__{metric}")
        (check,) = [e for e in result.get_asset_check_evaluations() if e.asset_key.path[-1] == metric]
        assert not check.passed and check.severity is dg.AssetCheckSeverity.WARN
        assert "Amount" in check.metadata["missing_fields"].value
    assert metadata(daily, "sales_cycle_length")["dagster/row_count"] > 0
    soql = sent_soql(since(sf_sandbox, mark))
    assert soql, "sales_cycle_length should have queried"
    for text in soql:
        obj, fields = soql_fields(text)
        assert "Amount" not in fields and "Amount" not in text
        assert fields <= set(narrow[obj]) | {"Id"}, text


def test_full_demo_selection_sends_only_selected_fields(
    platform, sf_sandbox, sf_connection, sf_resource, materialize
) -> None:
    daily = [m.name for m in SALES_METRICS.values() if m.cadence is Cadence.DAILY]
    snapshot = [m.name for m in SALES_METRICS.values() if m.cadence is Cadence.SNAPSHOT]
    mark = len(sf_sandbox.server.requests)
    assert materialize(daily, partition_key=PARTITION).success
    assert materialize(snapshot, partition_key="sf-acme").success
    # The change poll reads record days with its own queries: those count too.
    now = sf_sandbox.org.now
    sf_sandbox.org.mutate(40, seed=3)
    sf_sandbox.org.advance(timedelta(minutes=5))
    cursor = {obj: now.isoformat() for obj in sf_connection.selection.objects}
    requests, _, resync = poll_connection(
        sf_resource.client(platform, sf_connection), sf_connection, cursor, sf_sandbox.org.now, platform.metric_store
    )
    assert resync is None and requests

    soql = sent_soql(since(sf_sandbox, mark))
    objects = set()
    for text in soql:
        obj, fields = soql_fields(text)
        objects.add(obj)
        assert fields <= set(DEMO_SELECTION[obj]) | {"Id"}, (
            f"unselected fields {fields - set(DEMO_SELECTION[obj])} in {text}"
        )
    assert objects == {m.object_name for m in SALES_METRICS.values()}
    assert any(" IN (" in text for text in soql), "the poll's record-day query was checked too"
    # describe is the only other data read: nothing fetches whole records by id.
    assert not [r.path for r in since(sf_sandbox, mark) if re.search(r"/sobjects/\w+/\w{15,18}$", r.path)]


# ---------------------------------------------------------------- 6. trust


def test_no_verify_false_anywhere() -> None:
    root = Path(__file__).resolve().parents[3] / "dfx_pipelines"
    offenders = [
        str(p)
        for p in root.rglob("*.py")
        if re.search(r"verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False", p.read_text())
    ]
    assert offenders == []


def test_an_untrusted_certificate_is_refused(
    platform, sf_sandbox, sf_connection, dagster_instance, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    untrusting = SalesforceResource(
        client_id=sf_sandbox.app.oauth.client_id, sandbox_ca_path=str(other), retry_backoff_seconds=0.01
    )
    mark = len(sf_sandbox.server.requests)

    result = Materializer(platform, untrusting, dagster_instance)(
        ["win_rate"], partition_key=PARTITION, raise_on_error=False
    )

    assert not result.success
    (error,) = failures(result).values()
    assert "ConnectorError" in error and "SSLError" in error and "CERTIFICATE_VERIFY_FAILED" in error
    token = platform.vault.get(sf_connection.secret_ref("oauth_access_token")).get_secret_value()
    assert token not in error
    assert platform.metric_store.read(connection_id="sf-acme") == []

    # Without a sandbox CA file the session keeps the environment's bundle (REQUESTS_CA_BUNDLE & co. on
    # these machines), which does not hold the sandbox CA either: refused the same way.
    missing = SalesforceResource(client_id=sf_sandbox.app.oauth.client_id, sandbox_ca_path=str(tmp_path / "none.pem"))
    with pytest.raises(ConnectorError, match="CERTIFICATE_VERIFY_FAILED"):
        missing.client(platform, sf_connection).aggregate("SELECT COUNT(Id) recordCount FROM Opportunity")
    assert since(sf_sandbox, mark) == []


@pytest.mark.parametrize(
    "hostile",
    [
        "@evil.example/services/data/v59.0/query/01gAAAAAAAAAAAAAAA-200",
        ".evil.example/services/data/v59.0/query/01gAAAAAAAAAAAAAAA-200",
        "//evil.example/services/data/v59.0/query/01gAAAAAAAAAAAAAAA-200",
        "https://evil.example/services/data/v59.0/query/01gAAAAAAAAAAAAAAA-200",
        "/services/data/v59.0/query/01gAAAAAAAAAAAAAAA-200@evil.example",
        "/services/data/v59.0/query/../../../evil",
        None,
    ],
)
def test_a_next_records_url_off_the_instance_is_refused(
    platform, sf_sandbox, sf_connection, sf_resource, monkeypatch, hostile
) -> None:
    """simple-salesforce appends nextRecordsUrl to `https://<instance>`: a page pointing anywhere but a
    query locator on the instance would carry the session token to another host. The server (the network
    edge) is made to answer that; the client refuses before any further request."""
    client = sf_resource.client(platform, sf_connection)
    client._sf.headers["Sforce-Query-Options"] = "batchSize=200"
    ids = [record["Id"] for record in client.stream("SELECT Id FROM Opportunity")]
    assert len(ids) > 200 and len(set(ids)) == len(ids)  # several pages: real locators are followed
    honest_page = sf_sandbox.app._page

    def hostile_page(cursor, locator, offset):
        payload = honest_page(cursor, locator, offset)
        payload["done"], payload["nextRecordsUrl"] = False, hostile
        return payload

    monkeypatch.setattr(sf_sandbox.app, "_page", hostile_page)
    before = len(sf_sandbox.server.requests)
    with pytest.raises(ConnectorError, match="nextRecordsUrl"):
        list(client.stream("SELECT Id FROM Opportunity"))
    assert len(sf_sandbox.server.requests) == before + 1  # the first page only
