"""Every place a secret enters refuses control characters (a pasted second line, an escape sequence, a
line separator) instead of trimming or carrying them: CLI/env tokens (Jira: see its test_cli), client
secrets, service-account keys, the master key, OAuth token responses, and the vault as a backstop.
Nothing is sent before the refusal, and no refusal quotes the secret."""

from __future__ import annotations

import base64
import json
import os
from typing import Any

import pytest
import requests

from dfx_pipelines.connectors.bigquery.credentials import parse_service_account_key
from dfx_pipelines.connectors.jira import oauth as jira_oauth
from dfx_pipelines.connectors.jira.connect import connect_jira_cloud, connect_jira_token
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.connectors.salesforce import oauth as sf_oauth
from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
from dfx_pipelines.platform.errors import ConfigError, DfxError, VaultError
from dfx_pipelines.platform.registry import parse_connection
from dfx_pipelines.platform.vault import MasterKeyring, SecretRef

CONTROL = [
    "\n",
    "\r\n",
    "\r",
    "\x00",
    "\x1b[2J",
    "\x7f",
    "\u2028",
    "\u2029",
    "\u200b",
    "\u202e",
    "\ufeff",
    "\x85",
    "\t",
]


class NoNetwork(requests.Session):
    """A session that fails the test if anything is sent: the refusal must come first."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[str] = []

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        self.sent.append(f"{method} {url}")
        raise AssertionError(f"a request was sent: {method} {url}")


class Answers(requests.Session):
    """The network edge for a token endpoint: answers every POST with `payload`."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        response = requests.Response()
        response.status_code, response._content, response.url = 200, json.dumps(self.payload).encode(), url
        response.headers["Content-Type"] = "application/json"
        return response


@pytest.mark.parametrize("control", CONTROL, ids=[repr(c) for c in CONTROL])
def test_accept_secret_refuses_every_control_character_without_quoting_the_secret(control: str) -> None:
    from dfx_pipelines.platform.secret_input import accept_secret

    secret = f"s3cret-value{control}second-line"
    with pytest.raises(ConfigError, match="control character") as error:
        accept_secret(secret, "the test token")
    assert "s3cret-value" not in str(error.value) and "second-line" not in str(error.value)
    assert accept_secret("s3cret-value", "the test token") == "s3cret-value"
    with pytest.raises(ConfigError, match="surrounding whitespace"):
        accept_secret(" s3cret-value", "the test token")


@pytest.mark.parametrize("where", ["pat", "basic"])
def test_jira_token_connect_refuses_a_token_with_a_newline(platform, workspace, where: str) -> None:
    config = {"id": "jira-nl", "workspace_id": "acme", "display_name": "J", "selection": {"projects": ["ALPHA"]}}
    session = NoNetwork()
    credentials = (
        {"personal_access_token": "tok\nsecond-line"}
        if where == "pat"
        else {"username": "me@acme.test", "secret": "tok\nsecond-line"}
    )
    with pytest.raises(ConfigError, match="control character"):
        connect_jira_token(platform, config=config, session=session, base_url="https://127.0.0.1:9", **credentials)
    with pytest.raises(ConfigError, match="username"):
        connect_jira_token(
            platform,
            config=config,
            session=session,
            base_url="https://127.0.0.1:9",
            username="me\nX-Evil: 1",
            secret="tok",
        )
    assert session.sent == [] and platform.registry.find("jira-nl") is None


def test_client_secrets_with_a_newline_are_refused_before_any_request(platform, workspace) -> None:
    session = NoNetwork()
    never = lambda url: pytest.fail("the consent step must not start")  # noqa: E731
    with pytest.raises(ConfigError, match=r"Salesforce client secret.*control character"):
        connect_salesforce(
            platform, session, config={"id": "sf-nl", "workspace_id": "acme", "display_name": "S", "selection": {"objects": {"Opportunity": ["Amount"]}}},
            login_url="https://127.0.0.1:9", client_id="c", client_secret="secret\nsecond-line", redirect_uri="https://localhost/cb", receive_code=never,
        )  # fmt: skip
    with pytest.raises(ConfigError, match=r"Jira client secret.*control character"):
        connect_jira_cloud(
            platform, config={"id": "jira-nl", "workspace_id": "acme", "display_name": "J", "selection": {"projects": ["ALPHA"]}},
            session=session, token_session=session, client_id="c", client_secret="secret\nsecond-line", redirect_uri="https://localhost/cb",
            receive_code=never, auth_url="https://127.0.0.1:9", api_origin="https://127.0.0.1:9",
        )  # fmt: skip
    connection = parse_connection(
        {
            "id": "jira-oauth",
            "workspace_id": "acme",
            "kind": "jira",
            "display_name": "J",
            "endpoint": {"auth_url": "https://auth.atlassian.com"},
        }
    )
    with pytest.raises(ConfigError, match="control character"):
        JiraResource(client_secret="secret\r\nsecond-line").oauth_client_secret(platform, connection)
    assert session.sent == []


@pytest.mark.parametrize("key", ["access_token", "refresh_token"])
def test_token_responses_with_a_control_character_are_refused(key: str) -> None:
    payload = {
        "access_token": "access-0123456789",
        "refresh_token": "refresh-0123456789",
        "scope": "api refresh_token cdp_query_api",
        "instance_url": "https://127.0.0.1:9",
    }
    payload[key] = payload[key] + "\nsecond-line"
    with pytest.raises(DfxError, match="control character"):
        sf_oauth._token_call(Answers(payload), "https://127.0.0.1:9", {"grant_type": "refresh_token"}, "token refresh")
    with pytest.raises(DfxError, match="control character"):
        jira_oauth._token_call(
            Answers(payload),
            "https://127.0.0.1:9",
            {"grant_type": "refresh_token"},
            "token refresh",
            sandbox_allowed=True,
        )
    payload[key] = payload[key].replace("\nsecond-line", "\u00e9")  # beyond RFC 6749's VSCHAR
    with pytest.raises(DfxError, match="printable ASCII"):
        sf_oauth._token_call(Answers(payload), "https://127.0.0.1:9", {"grant_type": "refresh_token"}, "token refresh")


def service_account_key(**overrides: str) -> str:
    key = {
        "type": "service_account", "project_id": "acme-warehouse", "private_key_id": "0123456789abcdef",
        "private_key": "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n",
        "client_email": "dfx@acme-warehouse.iam.gserviceaccount.com", "client_id": "1234567890", "token_uri": "https://127.0.0.1:9/token",
    }  # fmt: skip
    return json.dumps({**key, **overrides})


@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "1234\nX-Injected: 1"},
        {"auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs\r\n"},
        {"universe_domain": "googleapis.com\u2028"},
        {
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n\x00"
        },
        {
            "private_key": "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n\n"
        },
    ],
)
def test_a_service_account_key_with_a_control_character_is_refused(overrides: dict[str, str]) -> None:
    assert parse_service_account_key(service_account_key(), sandbox_allowed=True)["client_id"] == "1234567890"
    with pytest.raises(ConfigError, match=r"control character|not a PEM private key"):
        parse_service_account_key(service_account_key(**overrides), sandbox_allowed=True)


@pytest.mark.parametrize("suffix", ["\n", "\r\n", "\x00", "\u2028"])
def test_a_master_key_with_a_control_character_is_refused_not_trimmed(suffix: str) -> None:
    value = base64.b64encode(os.urandom(32)).decode()
    assert MasterKeyring.from_env_value(value).active_key == base64.b64decode(value)
    with pytest.raises(VaultError, match="control character") as error:
        MasterKeyring.from_env_value(value + suffix)
    assert value not in str(error.value)
    with pytest.raises(VaultError, match="control character"):
        MasterKeyring.from_env_value(f"new:{value}{suffix},old:{value}")


def test_the_vault_refuses_to_store_a_secret_with_a_control_character(platform, workspace) -> None:
    ref = SecretRef("acme", "sf-acme", "api_token")
    with pytest.raises(VaultError, match="control character"):
        platform.vault.put(ref, "token\nsecond-line")
    assert not platform.vault.has(ref)
