"""The escaped forms of a secret that redaction must catch, shared by the redaction and canary tests."""

from __future__ import annotations

import base64
import json
import re
import urllib.parse


def escaped_forms(secret: str) -> dict[str, str]:
    """Every escaped form a library, a log call or a careless f-string might write a secret in."""
    quoted = urllib.parse.quote(secret, safe="")
    return {
        "json": json.dumps(secret)[1:-1],
        "json, non-ASCII kept": json.dumps(secret, ensure_ascii=False)[1:-1],
        "json, solidus escaped": json.dumps(secret)[1:-1].replace("/", "\\/"),
        "json, upper-case \\u hex": json.dumps(secret)[1:-1].replace("\\u00e9", "\\u00E9"),
        "url, upper-case hex": quoted,
        "url, lower-case hex": re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), quoted),
        "url, form encoding": urllib.parse.quote_plus(secret),
        "url, reserved characters kept": urllib.parse.quote(secret, safe="/+=&?"),
        "base64": base64.b64encode(secret.encode()).decode(),
        "base64, no padding": base64.b64encode(secret.encode()).decode().rstrip("="),
        "base64, url-safe": base64.urlsafe_b64encode(secret.encode()).decode(),
        "base64 inside Basic auth": base64.b64encode(f"user:{secret}".encode()).decode(),
        "base64 inside Basic auth, other alignment": base64.b64encode(f"me:{secret}".encode()).decode(),
        "base64 inside a longer blob": base64.b64encode(f'{{"token": "{secret}", "n": 1}}'.encode()).decode(),
    }
