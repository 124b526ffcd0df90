"""One factory for every HTTP session the connectors use: timeouts, retries that honour Retry-After,
TLS verification that trusts the sandbox CA for loopback URLs in sandbox mode only, and no secrets in
anything it logs.

Retries are urllib3's `Retry` (what `requests` itself mounts), configured from a `RetryPolicy`. What is
still written here is only what `Retry` cannot express:
- 429 and 503 retry for every method (the server did not act), other 5xx and dropped connections only
  for idempotent methods (urllib3 applies its method allow-list to every status);
- a Retry-After longer than `max_backoff` ends the retries and returns the response (urllib3 would sleep
  up to six hours), and a fractional Retry-After is read (urllib3 refuses "0.5" as an invalid header);
- waits go through `RetryPolicy.sleep` (tests count them) and every attempt is counted (`api_calls`);
- SSL failures are never retried (urllib3 retries "other" errors).

Why an adapter and not `session.verify`: with `trust_env` on (the default) `requests` takes
`REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` from the environment per request and silently ignores
`session.verify`. The sandbox adapter forces `verify=` per request instead, and is mounted only on
`https://127.0.0.1` and `https://localhost` and applies the CA only to a request whose parsed host is
loopback, so every other host keeps normal verification. No retry library does this part.
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import random
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import MaxRetryError, ResponseError
from urllib3.util.retry import Retry

from dfx_pipelines.platform.endpoints import is_loopback_url

log = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
SERVER_DID_NOT_ACT = frozenset({429, 503})
SANDBOX_PREFIXES = ("https://127.0.0.1", "https://localhost")


@dataclass(frozen=True)
class RetryPolicy:
    """How a session retries. 429 and 503 mean the server did not act, so every method retries them;
    other 5xx and dropped connections retry only idempotent methods unless `retry_all_methods`."""

    max_attempts: int = 5
    backoff_base: float = 0.5  # seconds; doubled per attempt, with jitter (urllib3: no wait before the first retry)
    max_backoff: float = 30.0  # a Retry-After longer than this is not slept: the response is returned
    retry_statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))
    retry_all_methods: bool = False
    sleep: Any = time.sleep  # replaceable in tests that count waits

    def delay_for(self, attempt: int, response: requests.Response | None) -> float:
        """The wait before retry `attempt` of a loop urllib3 cannot run (an error the API signals in a
        body, like Salesforce's REQUEST_LIMIT_EXCEEDED 403): Retry-After, else backoff with jitter."""
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        if retry_after is not None:
            return min(retry_after, self.max_backoff)
        backoff = self.backoff_base * (2 ** (attempt - 1))
        return min(backoff * (0.5 + random.random() / 2), self.max_backoff)

    def urllib3_retry(self, counter: RetryingAdapter | None = None) -> PolicyRetry:
        retry = PolicyRetry(
            total=max(0, self.max_attempts - 1),
            other=0,  # TLS and other non-network errors: never retried
            redirect=False,  # requests follows redirects itself
            allowed_methods=None if self.retry_all_methods else IDEMPOTENT_METHODS,
            status_forcelist=self.retry_statuses,
            backoff_factor=self.backoff_base,
            backoff_max=self.max_backoff,
            backoff_jitter=self.backoff_base / 2,
            raise_on_status=False,  # out of attempts on a status: return the last response
        )
        retry.policy, retry.counter = self, counter
        return retry


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


class PolicyRetry(Retry):
    """urllib3's `Retry` plus the few rules of `RetryPolicy` it has no option for (module docstring)."""

    policy: RetryPolicy = NO_RETRY
    counter: RetryingAdapter | None = None

    def new(self, **kw: Any) -> PolicyRetry:
        retry = super().new(**kw)
        retry.policy, retry.counter = self.policy, self.counter
        return retry

    def is_retry(self, method: str, status_code: int, has_retry_after: bool = False) -> bool:
        if status_code in SERVER_DID_NOT_ACT and status_code in self.status_forcelist:
            return True
        return super().is_retry(method, status_code, has_retry_after)

    def parse_retry_after(self, retry_after: str) -> float:
        return parse_retry_after(retry_after) or 0.0

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: Any = None,
        error: Exception | None = None,
        _pool: Any = None,
        _stacktrace: Any = None,
    ) -> PolicyRetry:
        if response is not None and error is None:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            if retry_after is not None and retry_after > self.policy.max_backoff:
                # The server asks for longer than we are willing to hold a run: hand its answer back.
                raise MaxRetryError(_pool, url, ResponseError(f"Retry-After {retry_after:.0f}s is beyond the cap"))
        try:
            new = super().increment(method, url, response, error, _pool, _stacktrace)
        except MaxRetryError:
            if error is not None:
                # Out of attempts on a network error: raise it as it is, so `requests` reports a
                # ReadTimeout as a ReadTimeout (not "max retries exceeded"), as with no retries at all.
                raise error.with_traceback(_stacktrace) from None
            raise
        if self.counter is not None:
            self.counter.attempts += 1
        cause = f"HTTP {response.status}" if response is not None and error is None else type(error).__name__
        log.warning("%s %s: %s; retry %d", method, _safe_url(url), cause, len(new.history))
        return new

    def sleep(self, response: Any = None) -> None:
        retry_after = parse_retry_after(response.headers.get("Retry-After")) if response is not None else None
        self.policy.sleep(
            min(retry_after, self.policy.max_backoff) if retry_after is not None else self.get_backoff_time()
        )


class RetryingAdapter(HTTPAdapter):
    """Retries per `RetryPolicy` (through urllib3), sets a default timeout, and (with `ca_bundle`)
    forces TLS trust per request."""

    def __init__(
        self,
        policy: RetryPolicy,
        timeout: tuple[float, float],
        ca_bundle: str | None = None,
        **kwargs: Any,
    ):
        self.policy = policy
        self.timeout = timeout
        self.ca_bundle = ca_bundle
        self.attempts = 0  # total requests sent through this adapter, retries included (API calls, for metadata)
        self.bytes_received = 0  # response bodies read, for "bytes moved" metadata and benchmarks
        super().__init__(max_retries=policy.urllib3_retry(counter=self), **kwargs)

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.timeout
        if self.ca_bundle is not None and is_loopback_url(request.url):
            # Mounting is by URL prefix, and `https://127.0.0.1.evil.example` or `https://127.0.0.1:1@evil.example`
            # share the sandbox's prefix: the CA is forced only when the *parsed* host is loopback.
            kwargs["verify"] = self.ca_bundle
        self.attempts += 1
        response = super().send(request, **kwargs)
        if not kwargs.get("stream"):
            self.bytes_received += len(response.content)
        return response


def _safe_url(url: str | None) -> str:
    """Scheme, host and path only: query strings can carry tokens, codes and SOQL values."""
    return (url or "").split("?", 1)[0]


class _NoQueryStrings(logging.Filter):
    """urllib3 logs each retry with the request's path *and query* ("Retrying (…) after connection broken
    by …: /services/oauth2/authorize?…&state=…"). Query strings carry OAuth states and codes, SOQL values
    and sometimes tokens, so every urllib3 record leaves here with its queries cut."""

    _QUERY = re.compile(r"\?[^\s'\")]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._QUERY.sub("?…", record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(self._QUERY.sub("?…", a) if isinstance(a, str) else a for a in record.args)
        return True


def _quiet_urllib3_queries() -> None:
    for name in ("urllib3.connectionpool", "urllib3.util.retry"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _NoQueryStrings) for f in logger.filters):
            logger.addFilter(_NoQueryStrings())


def build_session(
    *,
    sandbox_ca: str | None = None,
    retry: RetryPolicy | None = None,
    timeout: tuple[float, float] = (10.0, 120.0),
    user_agent: str = "dfx_pipelines/0.1",
) -> requests.Session:
    """A `requests.Session` with retries and timeouts; `sandbox_ca` trusts that CA for loopback only."""
    _quiet_urllib3_queries()
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
    message = f"{what} failed: HTTP {response.status_code} from {_safe_url(response.url)}" + (
        f": {excerpt}" if excerpt else ""
    )
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
