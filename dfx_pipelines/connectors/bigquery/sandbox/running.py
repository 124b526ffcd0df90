"""Start the BigQuery sandbox over HTTPS with a registered service-account key, and wire the real
google-cloud-bigquery client to it with TLS verification on (the recommended wiring, for tests and demo)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dfx_pipelines.platform.http import NO_RETRY, build_session
from dfx_pipelines.platform.sandbox import SandboxCA, SandboxServer

from .app import BigQuerySandbox
from .auth import generate_service_account_key
from .catalog import DEMO_PROJECT
from .jobs import JobLog

if TYPE_CHECKING:
    from google.auth.credentials import Credentials
    from google.auth.transport.requests import AuthorizedSession
    from google.cloud import bigquery


@dataclass
class RunningBigQuerySandbox:
    """A served sandbox: where it listens, the CA to trust, and a key it accepts."""

    server: SandboxServer
    app: BigQuerySandbox
    service_account_key: dict[str, str] = field(repr=False)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ca_pem_path(self) -> str:
        assert self.server.ca_pem_path is not None
        return self.server.ca_pem_path

    @property
    def project(self) -> str:
        return self.app.project

    @property
    def jobs(self) -> JobLog:
        """Every query job the sandbox saw (dry runs included): SQL, bytes, bill, state, error reason."""
        return self.app.jobs

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    def new_service_account_key(self, account: str = "dfx-connector", register: bool = True) -> dict[str, str]:
        """Another key whose `token_uri` points here; unregistered keys are refused by the token endpoint."""
        key = generate_service_account_key(self.project, self.token_uri, account)
        if register:
            self.app.tokens.register(key)
        return key

    def stop(self) -> None:
        self.server.stop()
        self.app.close()

    def __enter__(self) -> RunningBigQuerySandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_bigquery_sandbox(
    rows: int | Mapping[str, int] = 2000,
    seed: int = 7,
    *,
    project: str = DEMO_PROJECT,
    ca: SandboxCA | None = None,
    port: int = 0,
    app: BigQuerySandbox | None = None,
) -> RunningBigQuerySandbox:
    """Generate (or take) the warehouse, serve it on 127.0.0.1 over TLS, register a fresh key."""
    app = app if app is not None else BigQuerySandbox(rows=rows, seed=seed, project=project)
    server = SandboxServer(app, ca=ca, port=port).start()
    app.base_url = server.url
    app.tokens.audiences.add(f"{server.url}/token")
    running = RunningBigQuerySandbox(server, app, service_account_key={})
    running.service_account_key = running.new_service_account_key()
    return running


def authorized_session(credentials: Credentials, sandbox_ca: str) -> AuthorizedSession:
    """An AuthorizedSession whose API calls *and* token refreshes trust the sandbox CA, on loopback only.

    The adapters come from `platform.http.build_session`, which forces `verify=<sandbox CA>` per request:
    the environment's REQUESTS_CA_BUNDLE would otherwise override `session.verify`. No retries there:
    google-cloud-bigquery and google-auth retry on their own.
    """
    from google.auth.transport.requests import AuthorizedSession, Request

    transport = build_session(sandbox_ca=sandbox_ca, retry=NO_RETRY)
    session = AuthorizedSession(credentials, auth_request=Request(session=transport))
    for prefix, adapter in transport.adapters.items():
        session.mount(prefix, adapter)
    return session


def make_client(
    running: RunningBigQuerySandbox,
    *,
    key: Mapping[str, str] | None = None,
    project: str | None = None,
) -> bigquery.Client:
    """The real client against the sandbox: in-memory service-account credentials (never a key file or
    GOOGLE_APPLICATION_CREDENTIALS), `api_endpoint` at the sandbox, TLS verified against its CA."""
    from google.cloud import bigquery
    from google.oauth2 import service_account

    credentials = service_account.Credentials.from_service_account_info(
        dict(key or running.service_account_key), scopes=bigquery.Client.SCOPE
    )
    return bigquery.Client(
        project=project or running.project,
        credentials=credentials,
        client_options={"api_endpoint": running.url},
        _http=authorized_session(credentials, running.ca_pem_path),
    )
