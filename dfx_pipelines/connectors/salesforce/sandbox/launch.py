"""Start the Salesforce sandbox over HTTPS and drive its OAuth consent programmatically (tests, demo, other engineers).

sandbox = start_salesforce_sandbox(SalesforceOrg(opportunities=500))
tokens = sandbox.login()                       # PKCE flow end to end, returns the token response
sf = simple_salesforce.Salesforce(instance_url=sandbox.url, session_id=tokens["access_token"],
                                  session=build_session(sandbox_ca=sandbox.ca_pem_path))
...
sandbox.stop()
"""

from __future__ import annotations

import secrets
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from dfx_pipelines.platform.http import build_session
from dfx_pipelines.platform.sandbox import SandboxCA, SandboxServer

from .app import SalesforceSandbox
from .oauth import pkce_challenge
from .org import SalesforceOrg

DEFAULT_REDIRECT_URI = "https://localhost/oauth/callback"
DEFAULT_SCOPE = "api refresh_token cdp_query_api"


@dataclass
class RunningSalesforceSandbox:
    server: SandboxServer
    app: SalesforceSandbox

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def ca_pem_path(self) -> str:
        assert self.server.ca_pem_path is not None
        return self.server.ca_pem_path

    @property
    def org(self) -> SalesforceOrg:
        return self.app.org

    def session(self) -> requests.Session:
        """A session that trusts this sandbox's CA (loopback only), without retries so tests see every answer."""
        from dfx_pipelines.platform.http import NO_RETRY

        return build_session(sandbox_ca=self.ca_pem_path, retry=NO_RETRY)

    def authorize_url(
        self,
        *,
        state: str,
        code_challenge: str,
        redirect_uri: str = DEFAULT_REDIRECT_URI,
        scope: str = DEFAULT_SCOPE,
        method: str | None = "S256",
        **extra: str,
    ) -> str:
        params = {
            "response_type": "code",
            "client_id": self.app.oauth.client_id,
            "redirect_uri": redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": code_challenge,
        }
        if method is not None:
            params["code_challenge_method"] = method
        params.update(extra)
        return f"{self.url}/services/oauth2/authorize?{urllib.parse.urlencode(params)}"

    def login(self, *, redirect_uri: str = DEFAULT_REDIRECT_URI, scope: str = DEFAULT_SCOPE) -> dict[str, Any]:
        """Run the whole web-server flow with PKCE and return the token response."""
        verifier = secrets.token_urlsafe(64)
        url = self.authorize_url(
            state=secrets.token_urlsafe(8),
            code_challenge=pkce_challenge(verifier),
            redirect_uri=redirect_uri,
            scope=scope,
        )
        session = self.session()
        code = parse_redirect(complete_authorization(session, url))["code"]
        response = session.post(
            f"{self.url}/services/oauth2/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": self.app.oauth.client_id,
                "client_secret": self.app.oauth.client_secret or "",
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
            },
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.server.stop()


def start_salesforce_sandbox(
    org: SalesforceOrg | None = None,
    *,
    ca: SandboxCA | None = None,
    ca_directory: Path | None = None,
    port: int = 0,
    **app_options: Any,
) -> RunningSalesforceSandbox:
    """Serve `org` (a small seeded one by default) on https://127.0.0.1:<port>; instance_url is bound to it."""
    app = SalesforceSandbox(org or SalesforceOrg(), **app_options)
    server = SandboxServer(app, ca=ca or SandboxCA(ca_directory), port=port).start()
    app.bind(server.url)
    return RunningSalesforceSandbox(server, app)


def complete_authorization(session: requests.Session, authorize_url: str, *, approve: bool = True) -> str:
    """Act as the user: load the consent page, then post the decision. Returns the redirect's Location.

    Errors that Salesforce redirects (bad PKCE parameters, ...) come back the same way, as a Location
    with `error=`; errors it shows as a page (unknown client, wrong redirect_uri) raise HTTPError.
    """
    page = session.get(authorize_url, allow_redirects=False)
    if page.status_code in (301, 302, 303):
        return page.headers["Location"]
    page.raise_for_status()
    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize_url).query, keep_blank_values=True))
    params["approve" if approve else "deny"] = "1"
    base = authorize_url.split("?", 1)[0]
    decision = session.post(base, data=params, allow_redirects=False)
    if decision.status_code not in (301, 302, 303):
        decision.raise_for_status()
        raise RuntimeError(f"consent did not redirect (HTTP {decision.status_code})")
    return decision.headers["Location"]


def parse_redirect(location: str) -> dict[str, str]:
    """The query parameters of a redirect Location (`code`, `state`, or `error`, `error_description`)."""
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(location).query))
