"""Start a Jira sandbox for tests and demos, and complete its OAuth consent without a browser.

    with start_jira_sandbox(flavour="cloud") as jira:
        authorize = jira.authorize_url(state="s1", code_challenge=pkce_challenge(verifier), scope=...)
        redirected = complete_consent(authorize, ca_pem_path=jira.ca_pem_path)  # -> ".../callback?code=..&state=s1"

URLs (one HTTPS server on 127.0.0.1 plays every host): `url` is the Jira site (API-token basic auth on
Cloud, PAT/basic on Data Center); `auth_url` the OAuth server (`/authorize`, `/oauth/token`);
`api_url` the Cloud gateway for this site (`{url}/ex/jira/{cloud_id}`).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass
from typing import Any

import requests

from dfx_pipelines.connectors.jira.sandbox.app import DEFAULT_API_TOKEN, DEFAULT_EMAIL, DEFAULT_PAT, JiraSandbox
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.platform.sandbox import SandboxCA, SandboxServer

DEFAULT_REDIRECT_URI = "https://127.0.0.1/dfx/oauth/callback"
READ_SCOPES = (
    "read:jira-work read:jira-user read:board-scope:jira-software read:board-scope.admin:jira-software "
    "read:sprint:jira-software read:epic:jira-software read:project:jira read:issue-details:jira read:jql:jira "
    "read:servicedesk-request offline_access"
)


@dataclass
class RunningJiraSandbox:
    server: SandboxServer
    app: JiraSandbox

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def auth_url(self) -> str:
        return self.server.url

    @property
    def api_url(self) -> str:
        return f"{self.server.url}/ex/jira/{self.cloud_id}"

    @property
    def ca_pem_path(self) -> str:
        assert self.server.ca_pem_path is not None
        return self.server.ca_pem_path

    @property
    def site(self) -> JiraSite:
        return self.app.site

    @property
    def cloud_id(self) -> str:
        return self.app.cloud_id

    @property
    def faults(self):
        return self.server.faults

    @property
    def requests(self):
        return self.server.requests

    # Default credentials, for tests and the demo.
    email, api_token, personal_access_token = DEFAULT_EMAIL, DEFAULT_API_TOKEN, DEFAULT_PAT

    def authorize_url(
        self,
        *,
        state: str,
        code_challenge: str,
        scope: str = READ_SCOPES,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        **extra: str,
    ) -> str:
        query = {
            "audience": "api.atlassian.com", "client_id": self.app.oauth.client_id, "scope": scope,
            "redirect_uri": redirect_uri, "state": state, "response_type": "code", "prompt": "consent",
            "code_challenge": code_challenge, "code_challenge_method": "S256", **extra,
        }  # fmt: skip
        return f"{self.auth_url}/authorize?{urllib.parse.urlencode(query)}"

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> RunningJiraSandbox:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_jira_sandbox(
    site: JiraSite | None = None,
    *,
    flavour: str = "cloud",
    ca: SandboxCA | None = None,
    redirect_uri: str | None = DEFAULT_REDIRECT_URI,
    **options: Any,
) -> RunningJiraSandbox:
    """Serve `site` (default: `JiraSite()`, 300 issues, seed 11) over HTTPS on a free loopback port.
    `options` go to `JiraSandbox` (granted_scopes, hidden_projects, embedded_changelog_limit, ...)."""
    app = JiraSandbox(site or JiraSite(), flavour=flavour, redirect_uri=redirect_uri, **options)
    server = SandboxServer(app, ca=ca or SandboxCA()).start()
    return RunningJiraSandbox(server, app)


def complete_consent(authorize_url: str, *, ca_pem_path: str, approve: bool = True) -> str:
    """Play the user: load the consent page, then post the decision the way its form does, and return
    the URL the browser would be redirected to (`redirect_uri?code=...&state=...` or `?error=...`)."""
    session = requests.Session()
    session.trust_env = False  # trust exactly the sandbox CA, whatever REQUESTS_CA_BUNDLE says
    page = session.get(authorize_url, verify=ca_pem_path, allow_redirects=False, timeout=10)
    if page.status_code == 302:
        return page.headers["Location"]  # an error redirect, or auto_approve=1
    if page.status_code != 200:
        raise RuntimeError(f"authorize page answered HTTP {page.status_code}: {page.text[:200]}")
    parsed = urllib.parse.urlsplit(authorize_url)
    form = {key: values[0] for key, values in urllib.parse.parse_qs(parsed.query).items()}
    form["approve" if approve else "deny"] = "1"
    decision = session.post(
        f"{parsed.scheme}://{parsed.netloc}/authorize", data=form, verify=ca_pem_path, allow_redirects=False, timeout=10
    )
    if decision.status_code != 302:
        raise RuntimeError(f"authorize decision answered HTTP {decision.status_code}: {decision.text[:200]}")
    return decision.headers["Location"]
