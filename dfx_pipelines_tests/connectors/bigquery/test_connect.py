"""Connecting BigQuery: the uploaded service-account key validated, encrypted straight into the
vault and never copied anywhere else; the selection and metric specs checked against the live
metadata; and nothing stored (or, for bad input, nothing sent) when something is wrong."""

import base64
import json
import os
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from dfx_pipelines.connectors.bigquery.connect import connect_bigquery
from dfx_pipelines.connectors.bigquery.ledger import BudgetStore
from dfx_pipelines.platform.errors import AuthError, ConfigError, IdentifierError, UnsafeDestinationError
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings

from .conftest import PII_TAG, SPECS, JobWatch, connect


def key_lines(key: dict) -> list[str]:
    """The private key's base64 body, line by line: any one of them found anywhere is a leak."""
    return [line for line in key["private_key"].splitlines() if line and not line.startswith("-----")]


def files_containing(root: Path, needles: list[str], since: float) -> list[Path]:
    found = []
    # os.walk, not rglob: other test sessions delete their temp folders while this one walks /tmp
    for path in (Path(folder, name) for folder, _, names in os.walk(root) for name in names):
        try:
            if not path.is_file() or path.stat().st_mtime < since or path.stat().st_size > 50_000_000:
                continue
            data = path.read_bytes()
        except OSError:
            continue
        text = data.decode("utf-8", "ignore").replace("\\n", "\n").replace("\\/", "/")
        if any(needle in text for needle in needles):
            found.append(path)
    return found


def assert_nothing_stored(platform, slug: str = "bq-acme") -> None:
    assert platform.registry.find(slug) is None
    assert platform.vault.data_key_id("acme", slug) is None


def test_connect_encrypts_the_key_into_the_vault_and_nowhere_else(platform, workspace, bq_sandbox) -> None:
    started = time.time() - 1
    connection = connect(platform, bq_sandbox)
    assert (
        connection.endpoint["project"] == "dfx-demo-project" and connection.endpoint["api_endpoint"] == bq_sandbox.url
    )
    assert connection.endpoint["metric_specs"][1]["measure"] == "COUNT_DISTINCT"  # normalized
    orders = connection.discovered["tables"]["shop.orders"]
    assert (
        orders["partition_field"] == "order_date"
        and orders["columns"]["amount"] == "NUMERIC"
        and orders["type"] == "TABLE"
    )
    stored = json.loads(platform.vault.get(connection.secret_ref("service_account_key")).get_secret_value())
    assert stored == bq_sandbox.service_account_key
    # Encrypted at rest: neither the vault files nor the metric database nor any temp file holds the key.
    lines = key_lines(bq_sandbox.service_account_key)
    assert files_containing(platform.settings.home, lines, 0) == []
    assert files_containing(Path(tempfile.gettempdir()), lines, started) == []
    record = json.loads(next((platform.settings.vault_dir / "secrets").rglob("service_account_key.json")).read_text())
    assert record["alg"] == "AES-256-GCM" and base64.b64decode(record["ct"])
    assert "GOOGLE_APPLICATION_CREDENTIALS" not in os.environ


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda key: "not json at all {", "not JSON"),
        (lambda key: json.dumps([key]), "not an object"),
        (
            lambda key: json.dumps({**key, "type": "authorized_user"}),
            "type 'authorized_user': only a service-account key",
        ),
        (lambda key: json.dumps({k: v for k, v in key.items() if k != "private_key"}), "lacks private_key"),
        (lambda key: json.dumps({**key, "client_email": ""}), "lacks client_email"),
        (
            lambda key: json.dumps({**key, "private_key": key["private_key"].replace("PRIVATE KEY", "CERTIFICATE")}),
            "not a PEM private key",
        ),
        (lambda key: json.dumps({**key, "client_email": "someone@gmail.com"}), "not a service-account address"),
        (lambda key: json.dumps({**key, "project_id": "Bad_Project"}), "project_id is not a valid project id"),
        (
            lambda key: json.dumps({**key, "token_uri": "https://evil.example/token"}),
            "token_uri points at evil.example",
        ),
        (lambda key: b"\xff\xfe" + b"x" * 10, "not UTF-8"),
    ],
)
def test_anything_but_a_service_account_key_is_refused_clearly(
    platform, workspace, bq_sandbox, mutate, message
) -> None:
    watch = JobWatch(bq_sandbox)
    with pytest.raises((ConfigError, UnsafeDestinationError), match=message) as refused:
        connect(platform, bq_sandbox, key=mutate(bq_sandbox.service_account_key))
    assert not any(line in str(refused.value) for line in key_lines(bq_sandbox.service_account_key))
    assert watch.requests == []  # refused before anything was sent
    assert_nothing_stored(platform)


def test_a_key_the_provider_does_not_know_is_an_auth_error(platform, workspace, bq_sandbox) -> None:
    unknown = bq_sandbox.new_service_account_key("stranger", register=False)
    with pytest.raises(AuthError, match="key was refused"):
        connect(platform, bq_sandbox, key=json.dumps(unknown))
    assert_nothing_stored(platform)


def test_the_selection_is_checked_against_the_metadata(platform, workspace, bq_sandbox) -> None:
    selection = {
        "datasets": {"shop": ["orders", "refunds"], "marketing": ["campaigns"]},
        "objects": {"shop.orders": ["amount", "discount"]},
    }
    with pytest.raises(ConfigError) as refused:
        connect(platform, bq_sandbox, config={"selection": selection}, endpoint={"metric_specs": []})
    text = str(refused.value)
    assert (
        "table shop.refunds does not exist" in text
        and "dataset marketing does not exist" in text
        and "column shop.orders.discount does not exist" in text
    )
    assert_nothing_stored(platform)
    with pytest.raises(ConfigError, match="selects no tables"):
        connect(platform, bq_sandbox, config={"selection": {"datasets": {"shop": []}}}, endpoint={"metric_specs": []})
    with pytest.raises(ConfigError, match="at least one selected dataset"):
        connect(platform, bq_sandbox, config={"selection": {}}, endpoint={"metric_specs": []})
    assert_nothing_stored(platform)


@pytest.mark.parametrize(
    "overrides",
    [
        {"config": {"selection": {"datasets": {"shop": ["orders`; DROP TABLE shop.orders; --"]}}}},
        {"config": {"selection": {"datasets": {"shop;": ["orders"]}}}},
        {"config": {"selection": {"datasets": {"shop": ["orders"]}, "objects": {"shop.orders": ["amount`"]}}}},
        {"endpoint": {"metric_specs": [{**SPECS[0], "column": "amount`) FROM finance.invoices --"}]}},
        {"endpoint": {"metric_specs": [{**SPECS[0], "group_by": ["status; DROP"]}]}},
    ],
)
def test_identifiers_with_backticks_or_semicolons_are_refused_before_any_request(
    platform, workspace, bq_sandbox, overrides
) -> None:
    watch = JobWatch(bq_sandbox)
    with pytest.raises((IdentifierError, ConfigError), match=r"invalid BigQuery|must match"):
        connect(platform, bq_sandbox, **overrides)
    assert watch.requests == []
    assert_nothing_stored(platform)


def test_metric_specs_are_checked_against_schema_and_policy_tags(platform, workspace, bq_sandbox) -> None:
    selection = {"datasets": {"shop": ["orders", "customers"]}}
    email = {
        "name": "customers_by_email",
        "table": "shop.customers",
        "measure": "COUNT_DISTINCT",
        "column": "email",
        "time_column": "signed_up_on",
    }
    with pytest.raises(ConfigError, match=r"shop.customers.email carries a policy tag"):
        connect(platform, bq_sandbox, config={"selection": selection}, endpoint={"metric_specs": [email]})
    # A TIMESTAMP time column is a day (its UTC date), but on a table partitioned by another column
    # every day would scan the whole table; a STRING column is no day at all.
    with pytest.raises(ConfigError, match=r"time column created_at is not shop\.orders's partitioning column"):
        connect(
            platform,
            bq_sandbox,
            config={"selection": selection},
            endpoint={"metric_specs": [{**SPECS[0], "time_column": "created_at"}]},
        )
    with pytest.raises(ConfigError, match="time column status is STRING; a DATE or TIMESTAMP column is required"):
        connect(
            platform,
            bq_sandbox,
            config={"selection": selection},
            endpoint={"metric_specs": [{**SPECS[0], "time_column": "status"}]},
        )
    assert_nothing_stored(platform)
    granted = connect(
        platform,
        bq_sandbox,
        config={"selection": selection},
        endpoint={"metric_specs": [email], "granted_policy_tags": [PII_TAG]},
    )
    assert granted.discovered["tables"]["shop.customers"]["policy_tagged"] == {"email": [PII_TAG]}


def test_reconnect_replaces_the_key_only_when_asked(platform, workspace, bq_sandbox) -> None:
    first = connect(platform, bq_sandbox)
    rotated = bq_sandbox.new_service_account_key("rotated")
    with pytest.raises(ConfigError, match="already exists"):
        connect(platform, bq_sandbox, key=json.dumps(rotated))
    again = connect(platform, bq_sandbox, key=json.dumps(rotated), replace_key=True)
    assert again.created_at == first.created_at
    assert (
        json.loads(platform.vault.get(again.secret_ref("service_account_key")).get_secret_value())["private_key_id"]
        == rotated["private_key_id"]
    )


def test_production_refuses_the_sandbox_endpoint_and_token_uri(tmp_path, bq_sandbox, vendor_dns, pg_database) -> None:
    settings = Settings.from_env(
        {
            "DFX_HOME": str(tmp_path / "prod"),
            "DFX_MODE": "production",
            "DFX_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
            "DFX_METRICS_DB_URL": pg_database["url"],
        }
    )
    platform = Platform(settings)
    key = json.dumps(bq_sandbox.service_account_key)
    with pytest.raises(UnsafeDestinationError, match=r"token_uri points at 127.0.0.1"):
        connect_bigquery(platform, config={"id": "bq-x", "workspace_id": "acme", "display_name": "x"}, key=key)
    google_key = json.dumps({**bq_sandbox.service_account_key, "token_uri": "https://oauth2.googleapis.com/token"})
    with pytest.raises(UnsafeDestinationError, match="only for the local sandbox"):
        connect_bigquery(
            platform,
            config={
                "id": "bq-x",
                "workspace_id": "acme",
                "display_name": "x",
                "endpoint": {"api_endpoint": bq_sandbox.url},
            },
            key=google_key,
        )


def test_dfx_bigquery_connect_list_approve_reject(platform, workspace, bq_sandbox, tmp_path, monkeypatch) -> None:
    from dfx_pipelines.cli import main

    monkeypatch.setenv("DFX_HOME", str(platform.settings.home))
    monkeypatch.setenv("DAGSTER_HOME", str(platform.settings.home / "dagster_home"))
    (platform.settings.home / "dagster_home").mkdir(parents=True, exist_ok=True)
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(bq_sandbox.ca_pem_path).read_bytes())
    key_file = tmp_path / "key.json"
    key_file.write_text(json.dumps(bq_sandbox.service_account_key))
    specs_file = tmp_path / "specs.json"
    specs_file.write_text(json.dumps(SPECS))
    args = [
        "bigquery",
        "connect",
        "--workspace",
        "acme",
        "--id",
        "bq-cli",
        "--name",
        "CLI project",
        "--key-file",
        str(key_file),
        "--select",
        "shop:orders,web_events",
        "--budget-usd",
        "25",
        "--metric-specs",
        str(specs_file),
        "--api-endpoint",
        bq_sandbox.url,
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (
        "connected bq-cli to project dfx-demo-project: shop.orders, shop.web_events; USD 25/month; key encrypted in the vault"
        in result.output
    )
    assert not any(line in result.output for line in key_lines(bq_sandbox.service_account_key))
    connection = platform.registry.get("bq-cli")
    assert connection.settings.monthly_budget_usd == 25 and len(connection.endpoint["metric_specs"]) == 2
    not_a_key = tmp_path / "user.json"
    not_a_key.write_text(json.dumps({"type": "authorized_user", "refresh_token": "1//secret-refresh-token-value"}))
    refused = CliRunner().invoke(main, [*args[:9], str(not_a_key), *args[10:]])
    assert (
        refused.exit_code == 2
        and "only a service-account key" in refused.output
        and "secret-refresh-token" not in refused.output
    )
    # Approvals, as a person decides them.
    from dfx_pipelines.connectors.bigquery import gate

    store = BudgetStore(platform.engine)
    projection = gate.project(50 * 2**20, 1, 6.25)
    decision = gate.decide(0, projection, 0.0001, 6.25)
    one = store.request(
        connection_id="bq-cli",
        fingerprint="1" * 64,
        sql="SELECT 1",
        queries=1,
        projection=projection,
        decision=decision,
        asset="bigquery/metric_specs",
        partition="bq-cli|2024-06-01",
    )
    two = store.request(
        connection_id="bq-cli",
        fingerprint="2" * 64,
        sql="SELECT 2",
        queries=1,
        projection=projection,
        decision=decision,
        asset="bigquery/metric_specs",
        partition="bq-cli|2024-06-02",
    )
    listed = CliRunner().invoke(main, ["bigquery", "list", "--status", "pending"])
    assert one.id in listed.output and two.id in listed.output and "USD 0.000298" in listed.output
    approved = CliRunner().invoke(main, ["bigquery", "approve", one.id, "--by", "alice@acme.test"])
    assert approved.exit_code == 0 and f"approved {one.id}" in approved.output
    assert CliRunner().invoke(main, ["bigquery", "reject", two.id]).exit_code == 0
    again = CliRunner().invoke(main, ["bigquery", "approve", two.id])
    assert again.exit_code == 2 and "is rejected; only a pending approval can be decided" in again.output
    unknown = CliRunner().invoke(main, ["bigquery", "approve", "bqa-nope"])
    assert unknown.exit_code == 2 and "no BigQuery approval 'bqa-nope'" in unknown.output
    rows = json.loads(CliRunner().invoke(main, ["bigquery", "list", "--json"]).output)
    assert {(r["approval_id"], r["status"], r["decided_by"]) for r in rows} == {
        (one.id, "approved", "alice@acme.test"),
        (two.id, "rejected", rows[1]["decided_by"]),
    }
