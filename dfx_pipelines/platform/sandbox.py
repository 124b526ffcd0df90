"""The sandbox harness: loopback HTTPS servers that play a SaaS API, with a local CA and fault injection.

A sandbox is a `SandboxApp` (a subclass answering `handle(request) -> Response`) served by a
`SandboxServer` on 127.0.0.1 with a free port and a certificate from a `SandboxCA` generated locally
(trustme). Clients trust that CA in sandbox mode only (see `platform.http`). Faults are injected per
server, in front of the app, so every sandbox gets the same menu: 429 with Retry-After, 5xx, slow
responses, dropped connections, and expired-token 401s (the app says what its 401 looks like). A drop
happens before the app sees the request (`when=before`, the default) or after it acted, losing only the
response (`when=after`): the case that makes a non-idempotent call such as a token rotation unsafe to
retry blindly.

Nothing here knows about any particular SaaS; connector sandboxes live in their connector's folder.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import json
import logging
import os
import random
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

log = logging.getLogger(__name__)

SANDBOX_HOSTS = ("127.0.0.1", "localhost")


# ---------------------------------------------------------------- requests and responses


class Headers(dict):
    """Case-insensitive read access to request headers (stored lower-cased)."""

    def __init__(self, items: Mapping[str, str] | None = None):
        super().__init__()
        for key, value in (items or {}).items():
            self[key.lower()] = value

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass
class Request:
    method: str
    path: str  # without the query string, percent-decoded
    query: dict[str, list[str]]
    headers: Headers
    body: bytes = b""
    raw_path: str = ""  # as sent, with the query string

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def form(self) -> dict[str, str]:
        parsed = urllib.parse.parse_qs(self.body.decode("utf-8"), keep_blank_values=True)
        return {key: values[0] for key, values in parsed.items()}

    def bearer_token(self) -> str | None:
        value = self.headers.get("authorization", "")
        if value.lower().startswith("bearer "):
            return value[7:].strip()
        return None


@dataclass
class Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        merged = {"Content-Type": "application/json;charset=UTF-8", **(headers or {})}
        return cls(status, json.dumps(payload, default=str).encode("utf-8"), merged)

    @classmethod
    def text(cls, text: str, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
        merged = {"Content-Type": "text/plain;charset=UTF-8", **(headers or {})}
        return cls(status, text.encode("utf-8"), merged)

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Response:
        return cls(status, b"", {"Location": location})


class SandboxApp(abc.ABC):
    """What a sandbox implements: `handle` answers a request, `unauthorized` is what the API answers for
    an expired token. The optional hooks have their defaults here (not found out with `getattr`)."""

    name: str

    @abc.abstractmethod
    def handle(self, request: Request) -> Response: ...

    @abc.abstractmethod
    def unauthorized(self, request: Request) -> Response: ...

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        """What the `rate_limit` fault answers. Default: a generic 429 with Retry-After."""
        return Response.json(
            {"message": "rate limit exceeded"}, status=429, headers={"Retry-After": f"{retry_after:g}"}
        )

    def response_headers(self) -> Mapping[str, str]:
        """Headers the API adds to every answer. Default: none."""
        return {}


# ---------------------------------------------------------------- fault injection


FAULT_KINDS = ("rate_limit", "server_error", "slow", "drop", "expire_token")


@dataclass
class FaultRule:
    """One kind of fault, applied to the next `count` matching requests, or with `probability` each."""

    kind: str
    count: int | None = 1  # None: unlimited (use with probability)
    probability: float = 1.0
    path_prefix: str = ""
    retry_after: float = 1  # seconds, for rate_limit
    status: int = 503  # for server_error
    delay: float = 0.5  # seconds, for slow
    when: str = "before"  # for drop: "before" the app handles the request, or "after" (the response is lost)
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(f"fault probability must be within 0..1, got {self.probability}")
        if self.when not in ("before", "after"):
            raise ValueError(f"a drop happens 'before' or 'after' the server acts, got {self.when!r}")

    @property
    def spent(self) -> bool:
        return self.count is not None and self.fired >= self.count


class Faults:
    """The faults queued for one server. Thread-safe; seeded so a faulty run is reproducible."""

    def __init__(self, seed: int = 0):
        self._rules: list[FaultRule] = []
        self._lock = threading.Lock()
        self._random = random.Random(seed)
        self.log: list[tuple[str, str]] = []  # (kind, path) of every fault that fired

    def inject(self, kind: str, count: int | None = 1, **options: Any) -> FaultRule:
        rule = FaultRule(kind=kind, count=count, **options)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self.log.clear()

    def next_fault(self, path: str) -> FaultRule | None:
        with self._lock:
            for rule in self._rules:
                if rule.spent or not path.startswith(rule.path_prefix):
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                rule.fired += 1
                self.log.append((rule.kind, path))
                return rule
            self._rules = [rule for rule in self._rules if not rule.spent]
        return None

    @staticmethod
    def parse(spec: str) -> FaultRule:
        """Parse a CLI fault spec: `rate_limit:count=3,retry_after=1` or `server_error:probability=0.1`.
        A malformed spec is a `ConfigError` naming the option and what it expects."""
        from dfx_pipelines.platform.errors import ConfigError

        def number(key: str, value: str, kind: type, low: float, high: float) -> Any:
            try:
                parsed = kind(value)
            except ValueError:
                parsed = None
            if parsed is None or not (low <= parsed <= high):  # also refuses nan, and inf for floats
                raise ConfigError(
                    f"fault {spec!r}: {key} must be a {kind.__name__} from {low:g} to {high:g}, got {value!r}"
                )
            return parsed

        kind, _, options_text = spec.partition(":")
        if kind not in FAULT_KINDS:
            raise ConfigError(f"fault {spec!r}: unknown kind {kind!r}; expected one of {', '.join(FAULT_KINDS)}")
        options: dict[str, Any] = {}
        for pair in filter(None, options_text.split(",")):
            key, sep, value = pair.partition("=")
            if not sep:
                raise ConfigError(f"fault {spec!r}: expected option=value, got {pair!r}")
            if key == "count":
                options[key] = None if value in ("", "inf", "none") else number(key, value, int, 0, 1_000_000)
            elif key == "probability":
                options[key] = number(key, value, float, 0.0, 1.0)
            elif key in ("retry_after", "delay"):
                options[key] = number(key, value, float, 0.0, 3600.0)
            elif key == "status":
                options[key] = number(key, value, int, 100, 599)
            elif key in ("path_prefix", "when"):
                options[key] = value
            else:
                raise ConfigError(
                    f"fault {spec!r}: unknown option {key!r} (count, probability, retry_after, delay, status, path_prefix, when)"
                )
        try:
            return FaultRule(kind=kind, **options)
        except ValueError as exc:
            raise ConfigError(f"fault {spec!r}: {exc}") from None


# ---------------------------------------------------------------- TLS


class SandboxCA:
    """A locally generated certificate authority and one server certificate for the loopback names.

    `ca_pem_path` is what a client trusts in sandbox mode (and only there). With `directory`, the CA lives
    there so a separate process (`dfx sandbox serve`, the demo, a second sandbox) trusts and uses the same
    one: the first start writes `sandbox-ca.pem` and its key `sandbox-ca.key` (mode 0600); later starts load
    them and issue their server certificates from it. A CA that clients may trust is never replaced: if
    its key is gone, the new CA's certificate is added to the trust file beside the old one. Starts are
    serialised by a lock file and every write is a rename of a complete file, so concurrent starters end
    with one CA and no reader ever sees half a PEM.
    """

    PEM_NAME = "sandbox-ca.pem"
    KEY_NAME = "sandbox-ca.key"
    LOCK_NAME = "sandbox-ca.lock"

    def __init__(self, directory: Path | None = None):
        if directory is None:
            directory = Path(tempfile.mkdtemp(prefix="dfx-sandbox-ca-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_pem_path = directory / self.PEM_NAME
        self.ca_key_path = directory / self.KEY_NAME
        with _exclusive_lock(directory / self.LOCK_NAME):
            self._ca = self._load_or_create()
        self._server_cert = self._ca.issue_cert(*SANDBOX_HOSTS)

    def _load_or_create(self) -> trustme.CA:
        trusted = _read_certificates(self.ca_pem_path)
        key_pem = self.ca_key_path.read_bytes() if self.ca_key_path.is_file() else b""
        signing = _certificate_of_key(trusted, key_pem)
        if signing is not None:
            return trustme.CA.from_pem(signing, key_pem)
        ca = trustme.CA(organization_name="dfx sandbox CA")
        _write_atomically(self.ca_key_path, ca.private_key_pem.bytes(), mode=0o600)
        # Certificates already in the trust file stay: a running client may trust one of them.
        _write_atomically(self.ca_pem_path, b"".join([*trusted, ca.cert_pem.bytes()]), mode=0o644)
        return ca

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # P31: TLS 1.2+ only, even on loopback
        self._server_cert.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self._ca.configure_trust(context)
        return context

    def issue_client_cert(self, common_name: str) -> tuple[str, str]:
        """A client certificate (PEM) and its key (PEM) from this CA, for a local engine's certificate
        login (PostgreSQL's `cert` method maps the common name to the role)."""
        leaf = self._ca.issue_cert("dfx-client.invalid", common_name=common_name)  # the name a DNS SAN needs
        return leaf.cert_chain_pems[0].bytes().decode(), leaf.private_key_pem.bytes().decode()

    def write_server_files(self, directory: Path) -> tuple[Path, Path]:
        """The loopback server certificate (with its chain) and key as PEM files, for a local engine that
        reads its TLS material from files (a throwaway PostgreSQL cluster); the key mode 0600."""
        directory.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = directory / "server.crt", directory / "server.key"
        _write_atomically(cert_path, b"".join(pem.bytes() for pem in self._server_cert.cert_chain_pems), mode=0o644)
        _write_atomically(key_path, self._server_cert.private_key_pem.bytes(), mode=0o600)
        return cert_path, key_path


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def _read_certificates(path: Path) -> list[bytes]:
    """The PEM certificates in `path` (each as PEM bytes); none if it is missing or unreadable."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    try:
        certificates = x509.load_pem_x509_certificates(path.read_bytes())
    except (OSError, ValueError):
        return []
    return [certificate.public_bytes(Encoding.PEM) for certificate in certificates]


def _certificate_of_key(certificates: list[bytes], key_pem: bytes) -> bytes | None:
    """The certificate among `certificates` whose public key belongs to `key_pem`, or None."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_private_key

    if not key_pem:
        return None
    try:
        key = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        return None
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    for pem in certificates:
        if (
            x509.load_pem_x509_certificate(pem)
            .public_key()
            .public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
            == public
        ):
            return pem
    return None


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write a complete file beside `path` with `mode` from the start, then rename it over `path`."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# ---------------------------------------------------------------- the server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as separate writes; with Nagle on, each response waits ~40 ms for the
    # client's delayed ACK. Real APIs don't stall like that, and it would dominate every benchmark.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        # Access lines never include query strings or headers: they can carry tokens.
        log.debug("%s %s -> %s", self.command, self.path.split("?", 1)[0], args[1] if len(args) > 1 else "")

    def _dispatch(self) -> None:
        sandbox = self.server.sandbox
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parsed = urllib.parse.urlsplit(self.path)
        request = Request(
            method=self.command,
            path=urllib.parse.unquote(parsed.path),
            query=urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            headers=Headers(dict(self.headers.items())),
            body=body,
            raw_path=self.path,
        )
        sandbox.requests.append(request)
        rule = sandbox.faults.next_fault(request.path)
        response: Response | None = None
        if rule is not None:
            if rule.kind == "drop":
                # Close without a response: the client sees a connection reset / remote disconnect.
                if rule.when == "after":
                    self._handle(sandbox, request)  # the server acts; only its answer is lost
                self.close_connection = True
                try:
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                return
            if rule.kind == "slow":
                time.sleep(rule.delay)
            elif rule.kind == "rate_limit":
                response = sandbox.app_rate_limited(request, rule.retry_after)
            elif rule.kind == "server_error":
                response = Response.json({"message": "sandbox injected error"}, status=rule.status)
            elif rule.kind == "expire_token":
                response = sandbox.app.unauthorized(request)
        self._send(response if response is not None else self._handle(sandbox, request))

    @staticmethod
    def _handle(sandbox: SandboxServer, request: Request) -> Response:
        try:
            return sandbox.app.handle(request)
        except Exception:  # the sandbox answers like a server would: a 500, logged here
            log.exception("sandbox %s failed on %s %s", sandbox.app.name, request.method, request.path)
            return Response.json({"message": "sandbox internal error"}, status=500)

    def _send(self, response: Response) -> None:
        headers = {**self.server.sandbox.extra_headers(), **response.headers}
        headers.setdefault("Content-Length", str(len(response.body)))
        if "Date" in headers:
            # The app keeps its own clock (a sandbox org's, which tests move): one Date header, the app's.
            self.log_request(response.status)
            self.send_response_only(response.status)
            self.send_header("Server", self.version_string())
        else:
            self.send_response(response.status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD" and response.body:
            self.wfile.write(response.body)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    sandbox: SandboxServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # TLS handshakes refused by a client that does not trust us, and dropped connections, are
        # expected in tests; keep them out of stderr.
        log.debug("sandbox connection error from %s", client_address, exc_info=True)  # noqa: LOG014 - socketserver calls this inside its except block


class SandboxServer:
    """Serves one `SandboxApp` over HTTPS (or plain HTTP with `tls=False`) on 127.0.0.1 in a thread."""

    def __init__(
        self,
        app: SandboxApp,
        *,
        ca: SandboxCA | None = None,
        port: int = 0,
        tls: bool = True,
        fault_seed: int = 0,
        extra_headers: Callable[[], Mapping[str, str]] | None = None,
    ):
        self.app = app
        self.ca = ca if ca is not None or not tls else SandboxCA()
        self.tls = tls
        self.faults = Faults(seed=fault_seed)
        self.requests: list[Request] = []  # every request received, for tests and audits
        self._extra_headers = extra_headers
        self._httpd = _HTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.sandbox = self
        if tls:
            assert self.ca is not None
            self._httpd.socket = self.ca.server_context().wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_pem_path(self) -> str | None:
        return str(self.ca.ca_pem_path) if self.ca else None

    def extra_headers(self) -> Mapping[str, str]:
        headers = dict(self._extra_headers() if self._extra_headers else {})
        headers.update(self.app.response_headers())
        return headers

    def app_rate_limited(self, request: Request, retry_after: float) -> Response:
        return self.app.rate_limited(request, retry_after)

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"sandbox-{self.app.name}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


# ---------------------------------------------------------------- the trivial server that proves the harness


class EchoApp(SandboxApp):
    """A trivial API: `GET /v1/ping` needs `Bearer <token>` and answers `{"pong": true}`;
    `GET /v1/items?page=N` pages through `item_count` items, 10 a page, with `next` links."""

    name = "echo"

    def __init__(self, token: str, item_count: int = 25):
        self.token = token
        self.item_count = item_count

    def unauthorized(self, request: Request) -> Response:
        return Response.json({"error": "invalid_token"}, status=401)

    def handle(self, request: Request) -> Response:
        if request.bearer_token() != self.token:
            return self.unauthorized(request)
        if request.path == "/v1/ping":
            return Response.json({"pong": True})
        if request.path == "/v1/items":
            page = int(request.arg("page", "0") or 0)
            items = list(range(page * 10, min(self.item_count, page * 10 + 10)))
            more = (page + 1) * 10 < self.item_count
            return Response.json({"items": items, "next": f"/v1/items?page={page + 1}" if more else None})
        return Response.json({"error": "not_found"}, status=404)
