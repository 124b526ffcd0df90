"""One factory for every HTTP session the connectors use: timeouts, retries that honour Retry-After,
TLS verification that trusts the sandbox CA for loopback URLs in sandbox mode only, and no secrets in
anything it logs.

Why an adapter and not `session.verify`: with `trust_env` on (the default) `requests` takes
`REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` from the environment per request and silently ignores
`session.verify`. The sandbox adapter forces `verify=` per request instead, and is mounted only on
`https://127.0.0.1` and `https://localhost` and applies the CA only to a request whose parsed host is
loopback, so every other host keeps normal verification.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import requests
from requests.adapters import HTTPAdapter

from dfx_pipelines.platform.endpoints import is_loopback_url

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SANDBOX_PREFIXES = ("https://127.0.0.1", "https://localhost")


@dataclass(frozen=True)
class RetryPolicy:
    """How a session retries. 429 and 503 mean the server did not act, so every method retries them;
    other 5xx and dropped connections retry only idempotent methods unless `retry_all_methods`."""

    max_attempts: int = 5
    backoff_base: float = 0.5  # seconds; doubled per attempt, with jitter
    max_backoff: float = 30.0  # a Retry-After longer than this is honoured up to this cap, then we give up
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    retry_all_methods: bool = False
    sleep: Any = time.sleep  # replaceable in tests that count waits

    def delay_for(self, attempt: int, response: requests.Response | None) -> float:
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        backoff = self.backoff_base * (2 ** (attempt - 1))
        return min(backoff * (0.5 + random.random() / 2), self.max_backoff)


NO_RETRY = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None) -> float | None:
    """Retry-After is either delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RetryingAdapter(HTTPAdapter):
    """Retries per `RetryPolicy`, sets a default timeout, and (with `ca_bundle`) forces TLS trust."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout: tuple[float, float],
        ca_bundle: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(**kwargs)
        self.policy = policy
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.attempts = 0  # total requests sent through this adapter (API calls, for metadata)
        self.bytes_received = 0  # response bodies read, for "bytes moved" metadata and benchmarks

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.ca_bundle is not None and is_loopback_url(request.url):
            # Mounting is by URL prefix, and `https://127.0.0.1.evil.example` or `https://127.0.0.1:1@evil.example`
            # share the sandbox's prefix: the CA is forced only when the *parsed* host is loopback.
            kwargs["verify"] = self.ca_bundle
        method = (request.method or "GET").upper()
        may_retry_errors = self.policy.retry_all_methods or method in IDEMPOTENT_METHODS
        attempt = 0
        while True:
            attempt += 1
            self.attempts += 1
            try:
                response = super().send(request, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                if isinstance(exc, requests.exceptions.SSLError) or not may_retry_errors:
                    raise
                if attempt >= self.policy.max_attempts:
                    raise
                delay = self.policy.delay_for(attempt, None)
                log.warning("%s %s: %s; retry %d in %.1fs", method, _safe_url(request.url), type(exc).__name__, attempt, delay)
                self.policy.sleep(delay)
                continue
            if not kwargs.get("stream"):
                self.bytes_received += len(response.content)
            status = response.status_code
            retryable = status in self.policy.retry_statuses and (status in (429, 503) or may_retry_errors)
            if not retryable or attempt >= self.policy.max_attempts:
                return response
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.policy.max_backoff:
                return response  # the server asks for longer than we are willing to hold a run
            delay = self.policy.delay_for(attempt, response)
            log.warning("%s %s: HTTP %d; retry %d in %.1fs", method, _safe_url(request.url), status, attempt, delay)
            response.close()
            self.policy.sleep(delay)


def _safe_url(url: str | None) -> str:
    """Scheme, host and path only: query strings can carry tokens, codes and SOQL values."""
    return (url or "").split("?", 1)[0]


def build_session(
    *,
    sandbox_ca: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: tuple[float, float] = (10.0, 120.0),
    user_agent: str = "dfx_pipelines/0.1",
) -> requests.Session:
    """A `requests.Session` with retries and timeouts; `sandbox_ca` trusts that CA for loopback only."""
    policy = retry or RetryPolicy()
    session = requests.Session()
    session.headers["User-Agent"] = user_agent
    adapter = RetryingAdapter(policy, timeout)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    if sandbox_ca is not None:
        sandbox_adapter = RetryingAdapter(policy, timeout, ca_bundle=sandbox_ca)
        for prefix in SANDBOX_PREFIXES:
            session.mount(prefix, sandbox_adapter)
    return session


def _adapters(session: requests.Session) -> list[RetryingAdapter]:
    unique = {id(a): a for a in session.adapters.values() if isinstance(a, RetryingAdapter)}
    return list(unique.values())


def api_calls(session: requests.Session) -> int:
    """How many requests (retries included) this session has sent: shown as `api_calls` metadata."""
    return sum(adapter.attempts for adapter in _adapters(session))


def bytes_received(session: requests.Session) -> int:
    """Response bytes this session has read (bodies, after decompression)."""
    return sum(adapter.bytes_received for adapter in _adapters(session))


def check_response(response: requests.Response, what: str) -> requests.Response:
    """Return a successful response; otherwise raise a project error that names the call and status
    and carries a redacted excerpt of the body, never the URL's query string or any header."""
    from dfx_pipelines.platform.errors import AuthError, ConnectorError
    from dfx_pipelines.platform.redaction import redact

    if response.ok:
        return response
    excerpt = redact(response.text[:300]) if response.text else ""
    message = f"{what} failed: HTTP {response.status_code} from {_safe_url(response.url)}" + (f": {excerpt}" if excerpt else "")
    if response.status_code in (401, 403):
        raise AuthError(message)
    raise ConnectorError(message)


@contextlib.contextmanager
def translate_errors(what: str) -> Iterator[None]:
    """Re-raise network and HTTP-library errors as a project `ConnectorError` without their text's
    secrets: requests puts full URLs (query strings included) into its messages. `from None` drops the
    original from the chain, so Dagster's stored error has nothing to leak."""
    from dfx_pipelines.platform.errors import ConnectorError
    from dfx_pipelines.platform.redaction import redact

    try:
        yield
    except requests.RequestException as exc:
        detail = redact(re.sub(r"(/[^\s'\"?]*)\?[^\s'\")]*", r"\1?…", str(exc)))
        raise ConnectorError(f"{what} failed: {type(exc).__name__}: {detail}") from None
