"""The check every secret passes where it enters the process: a prompt, an environment variable, a
file, a provider's token response.

A secret with a control character in it is refused, never trimmed or repaired: a token pasted with a
newline and a second line would otherwise travel into an `Authorization` header, where the HTTP
library's error quotes it back (`Bearer [REDACTED]\\nsecond-line` — the redaction masks the token's
first line, not what follows the newline), or be stored and fail later far from where it was typed.
The value is registered with the redaction layer *before* it is judged, so not even the refusal can
print it; messages name the secret and the problem, never the value or where in it the problem is.
"""

from __future__ import annotations

import unicodedata

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.redaction import register_secret

# Cc (C0/C1 controls, DEL), Cf (format: zero-width, bidi overrides, BOM), Cs/Co/Cn (surrogates, private
# use, unassigned), Zl/Zp (line and paragraph separators: line breaks in all but name).
_REFUSED_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def has_control_character(text: str) -> bool:
    return any(unicodedata.category(char) in _REFUSED_CATEGORIES for char in text)


def accept_secret(value: object, what: str, *, ascii_only: bool = False) -> str:
    """`value` as given, or a ConfigError naming `what` and the problem. `ascii_only`: printable ASCII
    (%x20-7E) only — OAuth access and refresh tokens are `1*VSCHAR` (RFC 6749, appendix A.12/A.17)."""
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be text, got {type(value).__name__}")
    register_secret(value)
    if not value:
        raise ConfigError(f"{what} is empty")
    if has_control_character(value):
        raise ConfigError(
            f"{what} contains a control character (a line break?): refused; give the secret alone, on one line"
        )
    if value != value.strip():
        raise ConfigError(f"{what} has surrounding whitespace: refused, not trimmed; give the secret exactly")
    if ascii_only and not all(0x20 <= ord(char) <= 0x7E for char in value):
        raise ConfigError(f"{what} contains a character outside printable ASCII: refused")
    return value


def accept_optional_secret(value: object, what: str, **kwargs: bool) -> str | None:
    """None or "" (not configured) stays None; anything else must pass `accept_secret`."""
    if value is None or value == "":
        return None
    return accept_secret(value, what, **kwargs)
