"""The connection registry: validation of everything a customer configures, and atomic persistence."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from dfx_pipelines.platform.errors import ConfigError, IdentifierError, UnknownConnectionError, VaultError
from dfx_pipelines.platform.registry import Connection, ConnectionStatus, Workspace, parse_connection
from dfx_pipelines.platform.services import Platform


def salesforce(**overrides) -> dict:
    config = {
        "id": "sf-acme",
        "workspace_id": "acme",
        "kind": "salesforce",
        "display_name": "Acme Salesforce",
        "selection": {
            "objects": {"Opportunity": ["Id", "StageName", "Amount", "Forecast_Score__c"], "Account": ["Id", "Name"]}
        },
        "field_mapper": [{"target": "region", "source": "Account.Region__c"}],
        "write_back": [
            {
                "object": "Opportunity",
                "field": "Forecast_Score__c",
                "metric": "win_rate",
                "measure": "win_rate_by_amount",
            }
        ],
        "endpoint": {"instance_url": "https://acme.my.salesforce.com"},
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"kind": "hubspotx"}, "unknown connector kind 'hubspotx'"),
        ({"id": "sf|acme"}, "connection slug"),
        ({"id": "sf,acme"}, "connection slug"),
        ({"display_name": ""}, "display_name"),
        ({"selection": {"objects": {"Opportunity WHERE 1=1": ["Id"]}}}, "Salesforce API name"),
        ({"selection": {"objects": {"Opportunity": ["Name, (SELECT Id FROM Contacts)"]}}}, "Salesforce field path"),
        (
            {
                "write_back": [{"object": "Opportunity", "field": "StageName", "metric": "win_rate", "measure": "x"}],
                "selection": {"objects": {"Opportunity": ["Id"]}},
            },
            "not in the selection",
        ),
        ({"settings": {"monthly_budget_usd": 0}}, "monthly_budget_usd"),
        ({"settings": {"schedule_cron": "every night"}}, "schedule_cron"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_invalid_connection_config_is_named(overrides: dict, message: str) -> None:
    with pytest.raises((ConfigError, IdentifierError)) as info:
        parse_connection(salesforce(**overrides))
    assert message in str(info.value)


def test_jira_and_bigquery_identifiers() -> None:
    parse_connection(
        {
            "id": "jira-acme",
            "workspace_id": "acme",
            "kind": "jira",
            "display_name": "J",
            "selection": {"projects": ["ABC"], "boards": [12]},
            "field_mapper": [{"target": "story_points", "source": "customfield_10016"}],
        }
    )
    with pytest.raises((ConfigError, IdentifierError), match="Jira project key"):
        parse_connection(
            {
                "id": "jira-acme",
                "workspace_id": "acme",
                "kind": "jira",
                "display_name": "J",
                "selection": {"projects": ['ABC" OR project is not EMPTY']},
            }
        )
    with pytest.raises((ConfigError, IdentifierError), match="boards"):
        parse_connection(
            {
                "id": "jira-acme",
                "workspace_id": "acme",
                "kind": "jira",
                "display_name": "J",
                "selection": {"boards": ["1; DROP"]},
            }
        )
    with pytest.raises((ConfigError, IdentifierError), match="BigQuery table id"):
        parse_connection(
            {
                "id": "bq-acme",
                "workspace_id": "acme",
                "kind": "bigquery",
                "display_name": "B",
                "selection": {"datasets": {"shop": ["orders`; DROP TABLE x; --"]}},
            }
        )


@pytest.fixture(params=["sqlite", "postgresql"])
def any_platform(request: pytest.FixtureRequest) -> Platform:
    return request.getfixturevalue("platform" if request.param == "sqlite" else "pg_platform")


def test_round_trip_and_status(any_platform: Platform) -> None:
    registry = any_platform.registry
    registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    created = registry.add_connection(parse_connection(salesforce()))
    loaded = registry.get("sf-acme")
    assert loaded.selection == created.selection and loaded.write_back == created.write_back
    assert loaded.created_at.tzinfo is not None
    assert registry.partition_keys("salesforce") == ["sf-acme"]
    registry.set_status("sf-acme", ConnectionStatus.REVOKED)
    assert registry.get("sf-acme").revoked_at is not None and not registry.get("sf-acme").is_active
    registry.set_status("sf-acme", ConnectionStatus.DELETED)
    assert registry.partition_keys("salesforce") == []
    with pytest.raises(UnknownConnectionError, match="nope"):
        registry.get("nope")


def test_duplicate_and_unknown_workspace_refused(platform: Platform, workspace: Workspace) -> None:
    platform.registry.add_connection(parse_connection(salesforce()))
    with pytest.raises(ConfigError, match="already exists"):
        platform.registry.add_connection(parse_connection(salesforce()))
    with pytest.raises(ConfigError, match="unknown workspace"):
        platform.registry.add_connection(parse_connection(salesforce(id="sf-other", workspace_id="ghost")))


def test_secrets_and_row_are_written_together(platform: Platform, workspace: Workspace) -> None:
    connection = parse_connection(salesforce())
    platform.registry.add_connection(
        connection, vault=platform.vault, secrets={"oauth_refresh_token": "refresh-abc-123"}
    )
    assert platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value() == "refresh-abc-123"
    # The registry row holds no secret: only the vault does.
    with platform.engine.connect() as db:
        dump = " ".join(str(row) for row in db.execute(sa.text("SELECT * FROM connections")))
    assert "refresh-abc-123" not in dump


def test_vault_failure_leaves_no_row_and_no_secret(platform: Platform, workspace: Workspace) -> None:
    connection = parse_connection(salesforce())
    with pytest.raises(VaultError):
        # The second secret is empty: the vault refuses it after the first was stored.
        platform.registry.add_connection(
            connection,
            vault=platform.vault,
            secrets={"oauth_refresh_token": "refresh-abc-123", "oauth_access_token": ""},
        )
    assert platform.registry.find("sf-acme") is None
    assert platform.vault.data_key_id("acme", "sf-acme") is None
    assert not platform.vault.has(connection.secret_ref("oauth_refresh_token"))


def test_database_failure_destroys_the_stored_secrets(
    platform: Platform, workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = parse_connection(salesforce())
    real_put = platform.vault.put

    def put_then_lose_the_database(ref, value):
        real_put(ref, value)
        raise RuntimeError("database went away")  # the pending INSERT is rolled back

    monkeypatch.setattr(platform.vault, "put", put_then_lose_the_database)
    with pytest.raises(RuntimeError, match="database went away"):
        platform.registry.add_connection(
            connection, vault=platform.vault, secrets={"oauth_refresh_token": "refresh-abc-123"}
        )
    assert platform.vault.data_key_id("acme", "sf-acme") is None
    assert platform.registry.find("sf-acme") is None


def test_model_is_the_single_validation_point() -> None:
    # Building the model directly (as connectors do) applies the same rules as parse_connection.
    with pytest.raises(Exception, match="Salesforce API name"):
        Connection(**salesforce(selection={"objects": {"Opportunity;": ["Id"]}}))


def test_a_deleted_connection_keeps_only_what_the_audit_needs(any_platform: Platform) -> None:
    """The tombstone keeps id, workspace, kind, status and the lifecycle timestamps (the audit's proof that
    deletion came within 30 days of removal); the customer's name for the connection, its selection,
    mapper, write-back, settings and endpoint (the org's instance URL) go, and the tombstone is not edited."""
    registry = any_platform.registry
    registry.upsert_workspace(Workspace(id="acme", name="Acme", owner_email="o@acme.test"))
    registry.add_connection(
        parse_connection(salesforce(display_name="Jane Roe's sales org", settings={"api_limit_share": 0.25}))
    )
    removed = registry.set_status("sf-acme", ConnectionStatus.REMOVED)
    stale = registry.get("sf-acme")
    registry.set_status("sf-acme", ConnectionStatus.DELETED)

    with any_platform.engine.connect() as db:
        row = db.execute(sa.text("SELECT * FROM connections WHERE id = 'sf-acme'")).mappings().one()
    dump = " ".join(str(value) for value in row.values())
    for data in (
        "Jane Roe",
        "acme.my.salesforce.com",
        "Forecast_Score__c",
        "StageName",
        "Region__c",
        "win_rate",
        "0.25",
    ):
        assert data not in dump, data
    tombstone = registry.get("sf-acme")
    assert (tombstone.id, tombstone.workspace_id, tombstone.kind, tombstone.status) == (
        "sf-acme",
        "acme",
        "salesforce",
        ConnectionStatus.DELETED,
    )
    assert (tombstone.created_at, tombstone.revoked_at, tombstone.removed_at) == (
        removed.created_at,
        removed.revoked_at,
        removed.removed_at,
    )
    assert tombstone.deleted_at is not None and tombstone.deleted_at >= tombstone.removed_at
    assert tombstone.selection.objects == {} and tombstone.endpoint == {} and tombstone.write_back == []
    with pytest.raises(ConfigError, match="is deleted"):  # a stale copy cannot write the data back
        registry.save(stale)
    with pytest.raises(ConfigError, match="already exists"):  # the id is never reused
        registry.add_connection(parse_connection(salesforce()))
