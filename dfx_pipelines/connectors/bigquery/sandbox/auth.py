"""Google OAuth for the sandbox: throwaway service-account keys, the JWT-bearer token endpoint that
google-auth calls with them, and the bearer-token check in front of every API call."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from dfx_pipelines.platform.sandbox import Request, Response

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# google-auth always signs its assertion for Google's token endpoint, whatever `token_uri` says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
BIGQUERY_SCOPES = frozenset(
    {
        "https://www.googleapis.com/auth/bigquery",
        "https://www.googleapis.com/auth/bigquery.readonly",
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/cloud-platform.read-only",
    }
)
CLOCK_SKEW = 60  # seconds of disagreement tolerated between the signer's clock and ours
MAX_ASSERTION_LIFETIME = 3600


def generate_service_account_key(project: str, token_uri: str, account: str = "dfx-connector") -> dict[str, str]:
    """A new service-account key file's content (what `gcloud iam service-accounts keys create` writes),
    with a fresh 2048-bit RSA key. Nothing is written to disk."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    email = f"{account}@{project}.iam.gserviceaccount.com"
    return {
        "type": "service_account",
        "project_id": project,
        "private_key_id": secrets.token_hex(20),
        "private_key": pem,
        "client_email": email,
        "client_id": str(10**20 + secrets.randbelow(10**20)),
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class GrantError(Exception):
    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class AccessToken:
    principal: str
    scopes: frozenset[str]
    expires_at: float


class TokenIssuer:
    """Knows the public keys of registered service accounts, and the access tokens it handed out."""

    def __init__(self, lifetime: int = 3600, clock: Callable[[], float] = time.time):
        self.lifetime = lifetime
        self.clock = clock
        self.audiences = {GOOGLE_TOKEN_AUDIENCE}
        self._keys: dict[str, tuple[str, Any]] = {}  # private_key_id -> (client_email, public key)
        self._tokens: dict[str, AccessToken] = {}
        self._lock = threading.Lock()
        self.grants: list[str] = []  # principals granted a token, in order (tests count refreshes)

    def register(self, key: dict[str, Any]) -> None:
        """Trust a service-account key: its public half verifies the assertions signed with it."""
        private_key = serialization.load_pem_private_key(key["private_key"].encode("ascii"), password=None)
        with self._lock:
            self._keys[key["private_key_id"]] = (key["client_email"], private_key.public_key())

    def revoke_all(self) -> None:
        with self._lock:
            self._tokens.clear()

    def principal(self, token: str | None) -> str | None:
        """The service account behind a live access token, or None."""
        if not token:
            return None
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None or entry.expires_at <= self.clock():
            return None
        return entry.principal

    def handle(self, request: Request) -> Response:
        """`POST /token`: exchange a signed JWT assertion for an access token (RFC 7523)."""
        if request.method != "POST":
            return Response.json({"error": "invalid_request", "error_description": "Use POST"}, status=405)
        form = request.form()
        try:
            if form.get("grant_type") != JWT_BEARER_GRANT:
                raise GrantError("unsupported_grant_type", f"Invalid grant_type: {form.get('grant_type', '')}")
            principal, scopes = self._verify(form.get("assertion", ""))
        except GrantError as exc:
            return Response.json({"error": exc.error, "error_description": exc.description}, status=400)
        token = "ya29.sandbox-" + secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = AccessToken(principal, scopes, self.clock() + self.lifetime)
            self.grants.append(principal)
        return Response.json(
            {"access_token": token, "expires_in": self.lifetime, "token_type": "Bearer"},
            headers={"Cache-Control": "no-store"},
        )

    def _verify(self, assertion: str) -> tuple[str, frozenset[str]]:
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64decode(header_b64))
            claims = json.loads(_b64decode(payload_b64))
            signature = _b64decode(signature_b64)
        except (ValueError, TypeError):
            raise GrantError("invalid_grant", "Invalid JWT: malformed assertion") from None
        if header.get("alg") != "RS256":
            raise GrantError("invalid_grant", "Invalid JWT: only RS256 is accepted")
        with self._lock:
            known = self._keys.get(str(header.get("kid")))
        if known is None:
            raise GrantError("invalid_grant", "Invalid JWT Signature.")
        email, public_key = known
        try:
            public_key.verify(
                signature, f"{header_b64}.{payload_b64}".encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            raise GrantError("invalid_grant", "Invalid JWT Signature.") from None
        now = self.clock()
        if claims.get("iss") != email:
            raise GrantError("invalid_grant", "Invalid JWT: issuer does not match the key")
        if claims.get("aud") not in self.audiences:
            raise GrantError("invalid_grant", "Invalid JWT: Failed audience check.")
        issued, expires = float(claims.get("iat", 0)), float(claims.get("exp", 0))
        if expires <= now - CLOCK_SKEW or issued > now + CLOCK_SKEW or expires - issued > MAX_ASSERTION_LIFETIME:
            raise GrantError(
                "invalid_grant",
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe.",
            )
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes & BIGQUERY_SCOPES:
            raise GrantError("invalid_scope", "No BigQuery scope was requested.")
        return email, scopes
