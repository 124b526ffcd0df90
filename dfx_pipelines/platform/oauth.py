"""OAuth 2.0 pieces every authorization-code connector shares: PKCE (RFC 7636, S256) and reading the
redirect back with its state checked (CSRF). Provider-specific URLs, scopes and token calls stay in
each connector."""

import base64
import hashlib
import secrets
import urllib.parse
from dataclasses import dataclass

from dfx_pipelines.platform.errors import AuthError

_VERIFIER_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def challenge_for(verifier: str) -> str:
    """The S256 code challenge: base64url(SHA-256(verifier)) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).decode("ascii").rstrip("=")


@dataclass(frozen=True)
class PkcePair:
    verifier: str
    challenge: str

    @classmethod
    def generate(cls, length: int = 64) -> "PkcePair":
        if not 43 <= length <= 128:
            raise ValueError("a PKCE verifier is 43 to 128 characters long")
        verifier = "".join(secrets.choice(_VERIFIER_ALPHABET) for _ in range(length))
        return cls(verifier, challenge_for(verifier))


def new_state() -> str:
    return secrets.token_urlsafe(24)


def code_from_redirect(redirect: str, expected_state: str) -> str:
    """The authorization code from a redirect URL (or its bare query string), after checking state."""
    query = urllib.parse.urlsplit(redirect).query if "?" in redirect or "://" in redirect else redirect
    params = urllib.parse.parse_qs(query)
    if "error" in params:
        raise AuthError(f"authorization was refused: {params['error'][0]} ({params.get('error_description', [''])[0]})")
    state = params.get("state", [None])[0]
    if state is None or not secrets.compare_digest(state, expected_state):
        raise AuthError("the redirect's state does not match this authorization request (possible CSRF): refused")
    code = params.get("code", [None])[0]
    if not code:
        raise AuthError("the redirect carries no authorization code")
    return code
