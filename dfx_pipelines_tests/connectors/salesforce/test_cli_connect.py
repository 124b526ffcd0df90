"""`dfx connect salesforce` against the sandbox: the CLI path a data engineer uses."""

import json
from pathlib import Path

from click.testing import CliRunner

from dfx_pipelines.cli import main
from dfx_pipelines.platform.services import get_platform


def test_connect_through_the_cli(platform, workspace, sf_sandbox, monkeypatch) -> None:
    monkeypatch.setenv("DFX_HOME", str(platform.settings.home))
    # The resource trusts the sandbox CA from the embedded default's sandbox folder.
    platform.settings.sandbox_dir.mkdir(parents=True, exist_ok=True)
    (platform.settings.sandbox_dir / "sandbox-ca.pem").write_bytes(Path(sf_sandbox.ca_pem_path).read_bytes())
    monkeypatch.setenv("DAGSTER_HOME", str(platform.settings.home / "dagster_home"))
    (platform.settings.home / "dagster_home").mkdir(parents=True, exist_ok=True)
    args = [
        "connect",
        "salesforce",
        "--workspace",
        "acme",
        "--id",
        "sf-cli",
        "--name",
        "CLI org",
        "--login-url",
        sf_sandbox.url,
        "--select",
        "Opportunity:StageName,Amount,Probability,IsClosed",
        "--select",
        "Campaign:Sourced_Pipeline__c",
        "--select",
        "Opportunity:CampaignId",
        "--write-back",
        "Campaign.Sourced_Pipeline__c=campaign_sourced_pipeline.amount@campaign_id",
        "--approve-sandbox",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "connected sf-cli" in result.output and "tokens encrypted in the vault" in result.output
    connection = get_platform().registry.get("sf-cli")
    assert connection.selection.objects["Opportunity"] == [
        "StageName",
        "Amount",
        "Probability",
        "IsClosed",
        "CampaignId",
    ]
    assert connection.write_back[0].record_dimension == "campaign_id"
    listed = json.loads(CliRunner().invoke(main, ["connections", "list", "--json"]).output)
    assert [c["id"] for c in listed] == ["sf-cli"]


def test_bad_selection_spec_is_one_clear_line(platform, workspace) -> None:
    result = CliRunner().invoke(
        main,
        [
            "connect",
            "salesforce",
            "--workspace",
            "acme",
            "--id",
            "sf-x",
            "--name",
            "x",
            "--select",
            "Opportunity",
            "--approve-sandbox",
            "--login-url",
            "https://127.0.0.1:1",
        ],
    )
    assert result.exit_code == 2 and "expected Object:Field1,Field2" in result.output


def test_sandbox_consent_is_refused_for_a_real_login_host(platform, workspace) -> None:
    result = CliRunner().invoke(
        main,
        [
            "connect",
            "salesforce",
            "--workspace",
            "acme",
            "--id",
            "sf-x",
            "--name",
            "x",
            "--select",
            "Opportunity:Amount",
            "--approve-sandbox",
        ],
    )
    assert result.exit_code == 2 and "only with the local sandbox" in result.output
