"""Every resource field that production fills with a Dagster `EnvVar` gives the variable's *value* when it
is read outside a run (a CLI command, a helper), not its name: `EnvVar` is a `str` subclass whose text is
the name, so an unresolved one passes every `isinstance(..., str)` check and is sent as the secret."""

from collections.abc import Callable
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.jira.definitions import jira_resource
from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource
from dfx_pipelines.lifecycle.app_data import AppDatabaseResource
from dfx_pipelines.lifecycle.notifications import SlackWebhookResource, SmtpResource
from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.resources import PlatformResource

VALUE = "value-of-the-variable-4711"

JIRA_OAUTH = Connection(
    id="jira-x",
    workspace_id="acme",
    kind="jira",
    display_name="x",
    endpoint={"flavour": "cloud", "auth": "oauth", "auth_url": "https://auth.atlassian.com"},
)

# (variable, how the code location builds the resource, what the code reads outside a run)
READS: list[tuple[str, Callable[[], Any], Callable[[Any], Any]]] = [
    ("SALESFORCE_CLIENT_SECRET", salesforce_resource, lambda r: r.resolved_client_secret()),
    ("JIRA_CLIENT_SECRET", jira_resource, lambda r: r.oauth_client_secret(None, JIRA_OAUTH)),
    ("JIRA_CLIENT_SECRET", jira_resource, lambda r: r.resolved_client_secret()),
    (
        "SMTP_PASSWORD_VAR",
        lambda: SmtpResource(password=dg.EnvVar("SMTP_PASSWORD_VAR")),
        lambda r: r._value("password", "DFX_SMTP_PASSWORD"),
    ),
    (
        "SMTP_HOST_VAR",
        lambda: SmtpResource(host=dg.EnvVar("SMTP_HOST_VAR")),
        lambda r: r._value("host", "DFX_SMTP_HOST"),
    ),
    ("SLACK_URL_VAR", lambda: SlackWebhookResource(url=dg.EnvVar("SLACK_URL_VAR")), lambda r: r.resolved_url()),
    ("APP_DB_VAR", lambda: AppDatabaseResource(url=dg.EnvVar("APP_DB_VAR")), lambda r: r.resolved_url()),
]


@pytest.mark.parametrize(("variable", "build", "read"), READS, ids=[f"{v}-{i}" for i, (v, _, _) in enumerate(READS)])
def test_envvar_fields_read_outside_a_run_give_the_value(variable: str, build, read, monkeypatch) -> None:
    monkeypatch.setenv(variable, VALUE)
    assert read(build()) == VALUE


def test_the_client_id_variables_are_read_too(monkeypatch) -> None:
    monkeypatch.setenv("SALESFORCE_CLIENT_ID", "sf-app-id")
    monkeypatch.setenv("JIRA_CLIENT_ID", "jira-app-id")
    assert (
        salesforce_resource().resolved_client_id() == "sf-app-id"
        and jira_resource().resolved_client_id() == "jira-app-id"
    )


def test_platform_resource_resolves_its_database_url(monkeypatch, tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'metrics-from-variable.db'}"
    monkeypatch.setenv("METRICS_URL_VAR", url)
    platform = PlatformResource(home=str(tmp_path / "home"), metrics_db_url=dg.EnvVar("METRICS_URL_VAR")).get()
    assert platform.settings.metrics_db_url == url


def test_resolved_leaves_plain_values_and_unset_variables_alone(monkeypatch) -> None:
    monkeypatch.delenv("UNSET_VAR_4711", raising=False)
    assert resolved("plain") == "plain" and resolved(None) is None and resolved(dg.EnvVar("UNSET_VAR_4711")) is None
    monkeypatch.setenv("PORT_VAR", "2525")
    assert resolved(dg.EnvVar.int("PORT_VAR")) == 2525


@pytest.mark.parametrize("unset_db_url", [True, False])
def test_a_resources_home_holds_its_database_vault_and_key_not_dfx_homes(monkeypatch, tmp_path, unset_db_url) -> None:
    """`PlatformResource(home=B)` with DFX_HOME=A in the environment: everything derived from the home
    (metric database, vault, master key) is under B, so one resource never reads another folder's vault."""
    env_home, own_home = tmp_path / "env-home", tmp_path / "own-home"
    monkeypatch.setenv("DFX_HOME", str(env_home))
    monkeypatch.delenv("DFX_VAULT_DIR", raising=False)
    if unset_db_url:
        monkeypatch.delenv("DFX_METRICS_DB_URL", raising=False)
    else:
        monkeypatch.setenv("DFX_METRICS_DB_URL", f"sqlite:///{env_home / 'elsewhere.db'}")
    settings = PlatformResource(home=str(own_home)).get().settings
    assert settings.home == own_home
    assert settings.vault_dir == own_home / "vault" and settings.master_key_file == own_home / "master.key"
    # An explicit database URL (variable or field) is still honoured; otherwise the home's own.
    expected_db = f"sqlite:///{own_home / 'metrics.db'}" if unset_db_url else f"sqlite:///{env_home / 'elsewhere.db'}"
    assert settings.metrics_db_url == expected_db
    assert PlatformResource(home=str(own_home), metrics_db_url="sqlite:///x.db").get().settings.metrics_db_url == (
        "sqlite:///x.db"
    )
