"""OAuth and TLS: service-account keys exchanged at the sandbox's token endpoint, bearer tokens
checked on every call, and the sandbox CA trusted only where the wiring says so."""

from __future__ import annotations

import base64
import json
import ssl
import time

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.auth.exceptions import RefreshError
from google.cloud import bigquery

from dfx_pipelines.connectors.bigquery.sandbox.auth import GOOGLE_TOKEN_AUDIENCE, JWT_BEARER_GRANT
from dfx_pipelines.connectors.bigquery.sandbox.running import make_client
from dfx_pipelines.platform.http import NO_RETRY, build_session


def anonymous_client(sandbox, http: requests.Session) -> bigquery.Client:
    return bigquery.Client(
        project=sandbox.project,
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": sandbox.url},
        _http=http,
    )


def test_generated_key_is_a_service_account_key_pointing_here(sandbox) -> None:
    key = sandbox.service_account_key
    assert key["type"] == "service_account"
    assert key["token_uri"] == f"{sandbox.url}/token"
    assert key["client_email"].endswith("@dfx-demo-project.iam.gserviceaccount.com")
    assert key["private_key"].startswith("-----BEGIN PRIVATE KEY-----")
    assert {"project_id", "private_key_id", "client_id"} <= set(key)


def test_the_client_fetches_a_token_with_the_key_and_uses_it(sandbox) -> None:
    key = sandbox.new_service_account_key("token-check")
    client = make_client(sandbox, key=key)
    assert [d.dataset_id for d in client.list_datasets()] == ["finance", "shop"]
    assert sandbox.app.tokens.grants.count(key["client_email"]) == 1
    last = [r for r in sandbox.server.requests if r.path.endswith("/datasets")][-1]
    assert last.bearer_token().startswith("ya29.sandbox-")


def test_missing_token_is_401(sandbox) -> None:
    client = anonymous_client(sandbox, build_session(sandbox_ca=sandbox.ca_pem_path, retry=NO_RETRY))
    with pytest.raises(exceptions.Unauthorized) as caught:
        list(client.list_datasets())
    assert caught.value.errors[0]["reason"] == "required"


def test_invalid_token_is_401(sandbox) -> None:
    session = build_session(sandbox_ca=sandbox.ca_pem_path, retry=NO_RETRY)
    session.headers["Authorization"] = "Bearer ya29.forged-token"
    with pytest.raises(exceptions.Unauthorized) as caught:
        anonymous_client(sandbox, session).get_table("shop.orders")
    assert caught.value.errors[0]["reason"] == "authError"
    assert caught.value.response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_an_unregistered_key_gets_no_token(sandbox) -> None:
    stranger = sandbox.new_service_account_key("stranger", register=False)
    with pytest.raises(RefreshError, match="invalid_grant"):
        list(make_client(sandbox, key=stranger).list_datasets())
    assert stranger["client_email"] not in sandbox.app.tokens.grants


def _assertion(private_key: rsa.RSAPrivateKey, kid: str, claims: dict) -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).decode().rstrip("=")

    signing_input = (
        f"{b64(json.dumps({'alg': 'RS256', 'typ': 'JWT', 'kid': kid}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    signature = private_key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def test_token_endpoint_checks_signature_and_grant_type(sandbox) -> None:
    session = build_session(sandbox_ca=sandbox.ca_pem_path, retry=NO_RETRY)
    key = sandbox.service_account_key
    now = int(time.time())
    claims = {
        "iss": key["client_email"],
        "aud": GOOGLE_TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 3600,
        "scope": "https://www.googleapis.com/auth/bigquery",
    }
    genuine = serialization.load_pem_private_key(key["private_key"].encode(), password=None)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    ok = session.post(
        sandbox.token_uri,
        data={"grant_type": JWT_BEARER_GRANT, "assertion": _assertion(genuine, key["private_key_id"], claims)},
    )
    assert ok.status_code == 200 and ok.json()["token_type"] == "Bearer" and ok.json()["expires_in"] > 0
    forged = session.post(
        sandbox.token_uri,
        data={"grant_type": JWT_BEARER_GRANT, "assertion": _assertion(forger, key["private_key_id"], claims)},
    )
    assert (forged.status_code, forged.json()["error"]) == (400, "invalid_grant")
    expired = {**claims, "iat": now - 7200, "exp": now - 3600}
    stale = session.post(
        sandbox.token_uri,
        data={"grant_type": JWT_BEARER_GRANT, "assertion": _assertion(genuine, key["private_key_id"], expired)},
    )
    assert (stale.status_code, stale.json()["error"]) == (400, "invalid_grant")
    wrong = session.post(sandbox.token_uri, data={"grant_type": "client_credentials"})
    assert (wrong.status_code, wrong.json()["error"]) == (400, "unsupported_grant_type")


def test_a_revoked_token_is_refreshed_transparently(sandbox) -> None:
    key = sandbox.new_service_account_key("refresher")
    client = make_client(sandbox, key=key)
    client.get_table("shop.orders")
    sandbox.app.tokens.revoke_all()  # every live token is now refused with 401
    sandbox.server.faults.inject("expire_token")  # and the next call is answered 401 before it is checked
    assert client.get_table("shop.orders").num_rows == 3000
    assert sandbox.app.tokens.grants.count(key["client_email"]) >= 2


def test_refuses_the_sandbox_certificate_without_its_ca(sandbox) -> None:
    client = anonymous_client(sandbox, requests.Session())
    with pytest.raises(requests.exceptions.SSLError):
        list(client.list_datasets(retry=None))


def test_trusts_the_sandbox_ca_despite_the_environment_bundle(sandbox, monkeypatch) -> None:
    monkeypatch.setenv(
        "REQUESTS_CA_BUNDLE", ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    )
    key = sandbox.new_service_account_key("env-bundle")
    assert make_client(sandbox, key=key).get_dataset("shop").dataset_id == "shop"
