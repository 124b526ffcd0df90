"""Salesforce as a `ConnectorPlugin`: its selection and write-back rules, its definitions, its sandbox for
the demo, its `dfx salesforce connect` (also `dfx connect salesforce`), and provider revocation.

Cheap to import (the registry loads it to validate a connection): Dagster, the client and the sandbox
are imported inside the methods that use them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import SecretNotFoundError
from dfx_pipelines.platform.plugins import ConnectCommand, ConnectorPlugin, DemoRun, RevocationResult, RunningSandbox
from dfx_pipelines.platform.registry import Connection, SelectionBase, WriteBackDesignation

if TYPE_CHECKING:
    import click
    import dagster as dg

    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform

DEMO_CONNECTION = "sf-demo"
DEMO_DAYS = 30
# What the demo customer selects: every field the sales metrics read, and nothing else.
DEMO_SELECTION = {
    # ExpectedRevenue (Amount x Probability, per record) lets the weighted pipeline be summed in SOQL.
    "Opportunity": [
        "StageName",
        "Amount",
        "Probability",
        "ExpectedRevenue",
        "IsClosed",
        "IsWon",
        "CloseDate",
        "CreatedDate",
        "CampaignId",
    ],
    "Lead": ["IsConverted", "CreatedDate", "ConvertedDate"],
    "Case": ["Status", "Priority", "CreatedDate", "ClosedDate"],
    "CaseMilestone": ["IsCompleted", "IsViolated", "CompletionDate", "TargetDate", "MilestoneType.Name"],
    "CampaignMember": ["CampaignId", "HasResponded"],
    "Campaign": ["Sourced_Pipeline__c"],
    "Task": ["Type", "TaskSubtype", "ActivityDate"],
    "Event": ["Type", "ActivityDate"],
}
DEMO_WRITE_BACK = [
    {
        "object": "Campaign",
        "field": "Sourced_Pipeline__c",
        "metric": "campaign_sourced_pipeline",
        "measure": "amount",
        "record_dimension": "campaign_id",
    }
]


class SalesforcePlugin(ConnectorPlugin):
    kind = "salesforce"
    secret_kinds = ("oauth_access_token", "oauth_refresh_token")
    selection_model = SalesforceSelection
    pool_limit = 4  # as the dfx/api run cap in dagster.yaml

    def definitions(self) -> dg.Definitions:
        from dfx_pipelines.connectors.salesforce.definitions import salesforce_definitions

        return salesforce_definitions()

    def validate_source_field(self, value: str) -> str:
        return identifiers.salesforce_field_path(value)

    def validate_write_back(
        self, designations: Sequence[WriteBackDesignation], selection: SelectionBase, endpoint: Mapping[str, Any]
    ) -> None:
        """A designated field is a Salesforce name the customer also selected (its value is read back)."""
        assert isinstance(selection, SalesforceSelection)
        for designation in designations:
            identifiers.salesforce_name(designation.object)
            identifiers.salesforce_name(designation.field)
            if designation.field not in selection.objects.get(designation.object, []):
                raise ValueError(f"write-back field {designation.object}.{designation.field} is not in the selection")

    def cli_commands(self) -> list[click.Command]:
        from dfx_pipelines.connectors.salesforce.cli import salesforce

        return [salesforce]

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        from dfx_pipelines.connectors.salesforce.sandbox import SalesforceOrg, start_salesforce_sandbox

        running = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=scale or 2_000), ca=ca)
        return RunningSandbox(kind=self.kind, servers=[running.server], state={"sandbox": running})

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
        from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource
        from dfx_pipelines.connectors.salesforce.sandbox import complete_authorization

        running = sandbox.state["sandbox"]
        session = salesforce_resource().session(platform)
        return connect_salesforce(
            platform,
            session,
            config={
                "id": DEMO_CONNECTION,
                "workspace_id": workspace_id,
                "display_name": "Demo Salesforce org (sandbox)",
                "selection": {"objects": DEMO_SELECTION},
                "write_back": DEMO_WRITE_BACK,
            },
            login_url=running.url,
            client_id=running.app.oauth.client_id,
            client_secret=None,
            redirect_uri="https://localhost/oauth/callback",
            receive_code=lambda url: complete_authorization(session, url),
            reauthorize=True,
        )

    def connect_command(self, sandbox: RunningSandbox, *, workspace_id: str, folder: Path) -> ConnectCommand:
        """What a user types to connect the served sandbox by hand: the demo's selection, the sandbox's
        connected app (PKCE, no secret) and its consent completed programmatically."""
        running = sandbox.state["sandbox"]
        selects = [arg for obj, fields in DEMO_SELECTION.items() for arg in ("--select", f"{obj}:{','.join(fields)}")]
        return ConnectCommand(
            env={"SALESFORCE_CLIENT_ID": running.app.oauth.client_id},
            argv=["connect", "salesforce", "--workspace", workspace_id, "--id", "sf-sandbox", "--name", "Salesforce sandbox",
                  "--login-url", running.url, *selects, "--approve-sandbox"],
        )  # fmt: skip

    def demo_runs(self, connection: Connection, days: int = DEMO_DAYS) -> list[DemoRun]:
        from dfx_pipelines.platform.partitions import range_tags

        today = date.today()
        first = today - timedelta(days=days - 1)
        return [
            DemoRun("salesforce_snapshot_job", partition_key=connection.id, tags={"dfx/connection": connection.id}),
            DemoRun(
                "salesforce_daily_job",
                tags={"dfx/connection": connection.id, **range_tags(connection.id, first, today)},
            ),
        ]

    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        from dfx_pipelines.connectors.salesforce import oauth
        from dfx_pipelines.connectors.salesforce.definitions import salesforce_resource

        try:
            token = platform.vault.get(connection.secret_ref("oauth_refresh_token")).get_secret_value()
        except SecretNotFoundError:
            return RevocationResult(False, "no refresh token left to revoke")
        session = salesforce_resource().session(platform)
        oauth.revoke_token(
            session, connection.endpoint["login_url"], token, sandbox_allowed=platform.settings.sandbox_allowed
        )
        return RevocationResult(True, "refresh token (and its access tokens) revoked at Salesforce")


PLUGIN = SalesforcePlugin()
