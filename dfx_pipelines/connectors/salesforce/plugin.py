"""Salesforce as a `ConnectorPlugin`: its definitions, its sandbox for the demo, and provider revocation."""

from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from dfx_pipelines.connectors.salesforce import oauth
from dfx_pipelines.connectors.salesforce.connect import connect_salesforce
from dfx_pipelines.connectors.salesforce.definitions import salesforce_definitions, salesforce_resource
from dfx_pipelines.platform.errors import SecretNotFoundError
from dfx_pipelines.platform.partitions import range_tags
from dfx_pipelines.platform.plugins import ConnectCommand, DemoRun, RevocationResult, RunningSandbox
from dfx_pipelines.platform.registry import Connection
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


class SalesforcePlugin:
    kind = "salesforce"
    secret_kinds = ("oauth_access_token", "oauth_refresh_token")

    def definitions(self) -> dg.Definitions:
        return salesforce_definitions()

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        from dfx_pipelines.connectors.salesforce.sandbox import SalesforceOrg, start_salesforce_sandbox

        running = start_salesforce_sandbox(SalesforceOrg(seed=7, opportunities=scale or 2_000), ca=ca)
        return RunningSandbox(kind=self.kind, servers=[running.server], state={"sandbox": running})

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
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
