"""Jira as a `ConnectorPlugin`: its definitions, a demo-sized Cloud sandbox connected through OAuth 3LO
(consent given programmatically), the demo runs, its selection and field-mapper rules, and what
revocation means for Atlassian 3LO.

Cheap to import (the registry loads it to validate a connection): Dagster, the client and the sandbox
are imported inside the methods that use them."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfx_pipelines.connectors.jira.selection import JiraSelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.plugins import ConnectCommand, ConnectorPlugin, DemoRun, RevocationResult, RunningSandbox
from dfx_pipelines.platform.registry import Connection

if TYPE_CHECKING:
    import click
    import dagster as dg

    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform

DEMO_CONNECTION = "jira-demo"
DEMO_DAYS = 30
DEMO_SELECTION: dict[str, list[Any]] = {"projects": ["ALPHA", "BETA", "OPS"], "boards": [1, 2]}
DEMO_FIELD_MAPPER = [
    {"target": "story_points", "source": "customfield_10016", "label": "Story point estimate"},
    {"target": "team", "source": "customfield_10001", "label": "Team"},
    # Service Management SLAs as fields: sla_status reads them from search, not one call per request.
    {"target": "sla_time_to_first_response", "source": "customfield_10040", "label": "Time to first response"},
    {"target": "sla_time_to_resolution", "source": "customfield_10041", "label": "Time to resolution"},
]


class JiraPlugin(ConnectorPlugin):
    kind = "jira"
    secret_kinds = ("oauth_access_token", "oauth_refresh_token", "api_token", "basic_auth")
    selection_model = JiraSelection
    pool_limit = 4  # as the dfx/api run cap in dagster.yaml

    def definitions(self) -> dg.Definitions:
        from dfx_pipelines.connectors.jira.definitions import jira_definitions

        return jira_definitions()

    def validate_source_field(self, value: str) -> str:
        return identifiers.jira_field_id(value)

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None, flavour: str = "cloud") -> RunningSandbox:
        from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
        from dfx_pipelines.connectors.jira.sandbox.server import start_jira_sandbox

        # The demo site's clock is now, so its last year of work lands in today's daily partitions.
        now = datetime.now(UTC).replace(microsecond=0)
        running = start_jira_sandbox(JiraSite(seed=11, issues=scale or 1_000, now=now), flavour=flavour, ca=ca)
        return RunningSandbox(kind=self.kind, servers=[running.server], state={"sandbox": running})

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        from dfx_pipelines.connectors.jira.connect import connect_jira_cloud
        from dfx_pipelines.connectors.jira.definitions import jira_resource
        from dfx_pipelines.connectors.jira.sandbox.server import DEFAULT_REDIRECT_URI, complete_consent

        running = sandbox.state["sandbox"]
        resource = jira_resource().model_copy(update={"sandbox_ca_path": running.ca_pem_path})
        return connect_jira_cloud(
            platform,
            config={
                "id": DEMO_CONNECTION,
                "workspace_id": workspace_id,
                "display_name": "Demo Jira Cloud site (sandbox)",
                "selection": DEMO_SELECTION,
                "field_mapper": DEMO_FIELD_MAPPER,
            },
            session=resource.session(platform),
            token_session=resource.token_session(platform),
            client_id=running.app.oauth.client_id,
            client_secret=running.app.oauth.client_secret,
            redirect_uri=DEFAULT_REDIRECT_URI,
            receive_code=lambda url: complete_consent(url, ca_pem_path=running.ca_pem_path),
            auth_url=running.auth_url,
            api_origin=running.url,
            reauthorize=True,
        )

    def connect_command(self, sandbox: RunningSandbox, *, workspace_id: str, folder: Path) -> ConnectCommand:
        """Cloud: OAuth 3LO with the sandbox's app and its consent completed programmatically. Data
        Center: the sandbox's personal access token through JIRA_API_TOKEN (never an argument)."""
        running = sandbox.state["sandbox"]
        selection = [arg for key in DEMO_SELECTION["projects"] for arg in ("--project", key)]
        selection += [arg for board in DEMO_SELECTION["boards"] for arg in ("--board", str(board))]
        common = [
            "connect",
            "jira",
            "--workspace",
            workspace_id,
            "--id",
            f"jira-{running.app.flavour}-sandbox",
            *selection,
        ]
        if running.app.flavour == "datacenter":
            return ConnectCommand(
                env={"JIRA_API_TOKEN": running.personal_access_token},
                argv=[*common, "--name", "Jira Data Center sandbox", "--base-url", running.url],
            )
        maps = [arg for entry in DEMO_FIELD_MAPPER for arg in ("--map", f"{entry['target']}={entry['source']}")]
        return ConnectCommand(
            env={"JIRA_CLIENT_ID": running.app.oauth.client_id, "JIRA_CLIENT_SECRET": running.app.oauth.client_secret},
            argv=[
                *common,
                "--name",
                "Jira Cloud sandbox",
                *maps,
                "--cloud",
                "--sandbox-url",
                running.url,
                "--approve-sandbox",
            ],
        )

    def demo_runs(self, connection: Connection, days: int = DEMO_DAYS) -> list[DemoRun]:
        from dfx_pipelines.platform.partitions import range_tags

        today = date.today()
        first = today - timedelta(days=days - 1)
        return [
            DemoRun("jira_snapshot_job", partition_key=connection.id, tags={"dfx/connection": connection.id}),
            DemoRun(
                "jira_daily_job",
                tags={"dfx/connection": connection.id, **range_tags(connection.id, first, today)},
            ),
        ]

    def cli_commands(self) -> list[click.Command]:
        from dfx_pipelines.connectors.jira.cli import jira

        return [jira]

    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        if connection.endpoint.get("auth") == "oauth":
            return RevocationResult(
                False,
                "Atlassian offers 3LO apps no revoke endpoint: invalidated by destroying our copy of the tokens (the grant can be removed by the user at id.atlassian.com)",
            )
        return RevocationResult(
            False,
            "Jira API tokens and personal access tokens are revoked by their owner in Jira; our copy is destroyed",
        )


PLUGIN = JiraPlugin()
