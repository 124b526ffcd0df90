"""Keeps secrets out of logs, event storage and exception text.

Three layers, because each catches what the others miss:
- `redact(text)` masks every *live* secret (each value the vault decrypts registers itself here) — as
  it is and in its escaped forms: JSON-escaped (a backslash before a quote or solidus, `\\u00e9`),
  URL-encoded (either case of hex, `+` for a space), and base64 (standard and URL-safe, at any byte
  alignment, so a secret inside a longer base64 text such as a Basic-auth header is caught too) — and
  anything token-shaped (Bearer tokens, private-key blocks, JWTs, Salesforce session ids, `token=` pairs).
- `install_redaction()` wraps the process's LogRecord factory so a record's message is redacted the
  moment it is created — before Dagster's log manager turns `context.log` calls into events that land
  in event storage — and adds `RedactingFormatter` to the root handlers. Idempotent.
- `RedactingFormatter` also redacts formatted tracebacks, for handlers we configure ourselves
  (dagster.yaml's `python_logs.dagster_handler_config`, the CLI).
Errors raised by connectors are re-raised with `safe_error(...)`/`from None`, so no secret rides along
as an exception's cause.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import threading
from collections.abc import Iterator
from typing import Any

MASK = "[REDACTED]"
_MIN_SECRET_LENGTH = 6  # shorter values would mask ordinary words
_MIN_BASE64_FRAGMENT = 8  # a base64 fragment shorter than this could occur by chance in ordinary text

_TOKEN_PATTERNS = [
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.DOTALL),
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=!-]{8,}"),
    re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),  # JWT
    re.compile(r"\b00D[A-Za-z0-9]{12,15}![A-Za-z0-9._]{20,}"),  # Salesforce session id
    re.compile(
        r"(?i)((?<![A-Za-z0-9_])\"?(?:access_token|refresh_token|id_token|client_secret|code_verifier|private_key|password|"
        r"api_token|apikey|api_key|secret|token|code)\"?\s*[:=]\s*\"?)([^\"&\s,}]{6,})"
    ),
]


class _SecretRegistry:
    """The set of secret values currently live in this process (decrypted from the vault)."""

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._lock = threading.Lock()
        self._pattern: re.Pattern[str] | None = None

    def add(self, value: str | bytes | None) -> None:
        if value is None:
            return
        text = value.decode("utf-8", "ignore") if isinstance(value, bytes) else str(value)
        candidates = {text.strip()}
        # A JSON key file is also logged line by line or field by field: register its long fields too.
        candidates.update(part for part in re.split(r"[\s\"',:{}]+", text) if len(part) >= 20)
        with self._lock:
            before = len(self._values)
            self._values.update(c for c in candidates if len(c) >= _MIN_SECRET_LENGTH)
            if len(self._values) != before:
                self._pattern = None

    def discard(self, value: str) -> None:
        with self._lock:
            self._values.discard(value)
            self._pattern = None

    def pattern(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._values:
                # Longest first, so a secret that contains another is masked whole.
                ordered = sorted(self._values, key=len, reverse=True)
                encoded = sorted({form for v in ordered for form in _base64_forms(v)}, key=len, reverse=True)
                self._pattern = re.compile(
                    "|".join([*(_escaped_forms_pattern(v) for v in ordered), *(re.escape(f) for f in encoded)])
                )
            return self._pattern


def _any_case(hex_digits: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in hex_digits)


def _char_forms(char: str) -> str:
    """A regex for one character of a secret as it appears raw, URL-encoded or JSON-escaped."""
    if char.isascii() and char.isalnum():
        return char  # no encoder escapes a letter or a digit
    forms = {re.escape(char), "".join("%" + _any_case(f"{byte:02X}") for byte in char.encode("utf-8"))}
    if char == " ":
        forms.add(r"\+")  # form encoding
    escaped = json.dumps(char)  # '"\\""', '"\\\\"', '"\\n"'; beyond ASCII '"\\u00e9"' (a surrogate pair beyond the BMP)
    forms.add(re.escape(escaped[1:-1]))
    if "\\u" in escaped:
        forms.add("".join(r"\\u" + _any_case(unit) for unit in escaped[1:-1].split("\\u")[1:]))
    if ord(char) <= 0xFFFF:
        forms.add(r"\\u" + _any_case(f"{ord(char):04x}"))  # any character may be \u-escaped (HTML-safe encoders)
    if char == "/":
        forms.add(r"\\/")  # JSON may escape a solidus
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def _escaped_forms_pattern(value: str) -> str:
    return "".join(_char_forms(char) for char in value)


def _base64_forms(value: str) -> set[str]:
    """Base64 of the secret, whole and as the fragment that appears when it sits at any of the three
    byte alignments inside a longer base64 text, in the standard and the URL-safe alphabet."""
    data = value.encode("utf-8")
    forms: set[str] = set()
    whole = base64.b64encode(data).decode("ascii")
    forms.update({whole, whole.rstrip("=")})
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode("ascii")
        first = -(-offset * 8 // 6)  # the first character made only of the secret's bits
        last = (offset + len(data)) * 8 // 6  # one past the last such character
        forms.add(encoded[first:last])
    forms |= {f.replace("+", "-").replace("/", "_") for f in forms}
    return {f for f in forms if len(f) >= _MIN_BASE64_FRAGMENT}


SECRETS = _SecretRegistry()


def register_secret(value: str | bytes | None) -> None:
    """Mark a value as secret for the life of the process: every log line and error will mask it."""
    SECRETS.add(value)


def redact(text: Any) -> str:
    text = str(text)
    pattern = SECRETS.pattern()
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for token_pattern in _TOKEN_PATTERNS:
        if token_pattern.groups >= 2:
            text = token_pattern.sub(lambda m: m.group(1) + MASK, text)
        elif token_pattern.groups == 1:
            text = token_pattern.sub(lambda m: m.group(1) + " " + MASK, text)
        else:
            text = token_pattern.sub(MASK, text)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter whose every output, tracebacks included, has secrets masked."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatException(self, ei: Any) -> str:
        return redact(super().formatException(ei))


_install_lock = threading.Lock()
_installed = False


def install_redaction() -> None:
    """Redact every log record at creation, and every root handler's output. Safe to call often."""
    global _installed
    with _install_lock:
        if _installed:
            return
        previous_factory = logging.getLogRecordFactory()

        def redacting_factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous_factory(*args, **kwargs)
            try:
                message = record.getMessage()
            except Exception:  # noqa: BLE001 - a malformed %-format: keep logging's own behaviour
                return record
            redacted = redact(message)
            if redacted != message or record.args:
                record.msg, record.args = redacted, ()
            return record

        logging.setLogRecordFactory(redacting_factory)
        _installed = True
    for handler in logging.getLogger().handlers:
        if not isinstance(handler.formatter, RedactingFormatter):
            fmt = handler.formatter._fmt if handler.formatter else None
            handler.setFormatter(RedactingFormatter(fmt))


def safe_message(exc: BaseException) -> str:
    """An exception's message, redacted, for re-raising as a project error `from None`."""
    return redact(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def redacted_exceptions() -> Iterator[None]:
    """Around a step's body: whatever escapes carries no secret text into Dagster's stored failure.

    Project errors keep their type (their messages are written to be safe; a secret that slipped in is
    masked). Anything else — a bug, a library error quoting a URL or a payload — becomes a
    `DfxError` with the original type named and the message redacted, raised `from None` so the
    original (unredacted) exception is not chained into the stored error.
    """
    from dfx_pipelines.platform.errors import DfxError

    try:
        yield
    except DfxError as exc:
        text = str(exc)
        masked = redact(text)
        if masked == text:
            raise
        raise type(exc)(masked) from None
    except Exception as exc:  # noqa: BLE001 - re-raised, redacted, as a DfxError
        raise DfxError(f"{type(exc).__name__}: {redact(str(exc))}") from None
