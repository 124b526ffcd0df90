"""A connector is registered by its plugin module's path alone: a throwaway connector outside
`dfx_pipelines` (`dfx_pipelines_tests/fixtures/throwaway_connector`), named only in
`DFX_CONNECTOR_MODULES`, appears in the root Definitions, the registry's validation, the CLI (its
commands and `dfx connect throwaway`), the demo, and the lifecycle: removal and deletion call its
`delete_cached_data` and drop its dynamic partition. No project file names it.

Everything runs in a child process, so the registration cannot leak into other tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MODULE = "dfx_pipelines_tests.fixtures.throwaway_connector.plugin"

DRIVER = r"""
import json, sys
from click.testing import CliRunner

import dagster as dg
import sqlalchemy as sa

from dfx_pipelines.cli import main
from dfx_pipelines.platform import catalogue
from dfx_pipelines.platform.errors import ConfigError, IdentifierError
from dfx_pipelines.platform.registry import parse_connection
from dfx_pipelines.platform.services import get_platform

seen = {"kinds": catalogue.kinds()}
runner = CliRunner()
seen["help"] = runner.invoke(main, ["--help"]).output
seen["connect_help"] = runner.invoke(main, ["connect", "--help"]).output

def refused(**overrides):
    config = {"id": "tw-x", "workspace_id": "acme", "kind": "throwaway", "display_name": "T",
              "selection": {"items": ["alpha"]}, **overrides}
    try:
        parse_connection(config)
    except (ConfigError, IdentifierError) as exc:
        return str(exc)
    return None

seen["accepted"] = refused() is None
seen["bad_item"] = refused(selection={"items": ["alpha; DROP TABLE x"]})
seen["other_kinds_field"] = refused(selection={"objects": {"Opportunity": ["Amount"]}})
seen["write_back"] = refused(write_back=[{"object": "A", "field": "B", "metric": "m", "measure": "v"}])
seen["field_mapper"] = refused(field_mapper=[{"target": "team", "source": "x"}])

from dfx_pipelines.definitions import defs
graph = defs.resolve_asset_graph()
seen["asset_keys"] = sorted(key.to_user_string() for key in graph.get_all_asset_keys())
seen["has_job"] = defs.resolve_job_def("throwaway_job").name == "throwaway_job"

demo = runner.invoke(main, ["demo", "--connector", "throwaway", "--days", "1"])
seen["demo"] = (demo.exit_code, demo.output)

platform = get_platform()
table = sa.Table("throwaway_item_counts", sa.MetaData(), autoload_with=platform.engine)
count = lambda: platform.engine.connect().execute(sa.select(sa.func.count()).select_from(table)).scalar()
seen["cached_before"] = count()
with dg.DagsterInstance.get() as instance:
    seen["partition_before"] = instance.has_dynamic_partition("throwaway_connections", "tw-demo")
    seen["runs_before"] = len(instance.get_run_records(dg.RunsFilter(tags={"dfx/connection": "tw-demo"})))

removed = runner.invoke(main, ["connections", "remove", "tw-demo", "--actor", "test"])
seen["remove"] = (removed.exit_code, removed.output)
deleted = runner.invoke(main, ["connections", "delete-due", "--actor", "test"])
seen["delete"] = (deleted.exit_code, deleted.output)

seen["cached_after"] = count()
seen["status_after"] = platform.registry.get("tw-demo").status.value
with dg.DagsterInstance.get() as instance:
    seen["partition_after"] = instance.has_dynamic_partition("throwaway_connections", "tw-demo")
    seen["runs_after"] = len(instance.get_run_records(dg.RunsFilter(tags={"dfx/connection": "tw-demo"})))
print("SEEN" + json.dumps(seen))
"""


def _environment(tmp_path: Path, modules: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_"))}
    env["DFX_HOME"] = str(tmp_path / "dfx_home")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    if modules is not None:
        env["DFX_CONNECTOR_MODULES"] = modules
    return env


def test_the_throwaway_module_is_registered_nowhere_in_the_project() -> None:
    named = [
        str(path.relative_to(REPO))
        for path in (REPO / "dfx_pipelines").rglob("*.py")
        if "throwaway_connector" in path.read_text()
    ]
    assert named == []


def test_without_the_variable_the_throwaway_connector_does_not_exist(tmp_path: Path) -> None:
    script = "from dfx_pipelines.platform import catalogue; print(catalogue.kinds())"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_environment(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['bigquery', 'jira', 'postgres', 'salesforce']"


@pytest.mark.parametrize(
    "modules, message",
    [
        ("not a module", "DFX_CONNECTOR_MODULES: 'not a module' is not a Python module path"),
        (
            "dfx_pipelines_tests.fixtures.no_such_connector",
            "'dfx_pipelines_tests.fixtures.no_such_connector' cannot be imported",
        ),
        (
            "dfx_pipelines.platform.errors",
            "'dfx_pipelines.platform.errors' must define PLUGIN, a ConnectorPlugin instance",
        ),
        (
            f"{MODULE},dfx_pipelines_tests.fixtures.throwaway_connector.twin",
            "two connector modules register the kind 'throwaway'",
        ),
    ],
)
def test_a_bad_module_path_is_a_clear_error(tmp_path: Path, modules: str, message: str) -> None:
    script = "from dfx_pipelines.platform import catalogue; catalogue.kinds()"
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_environment(tmp_path, modules),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode != 0
    last = result.stderr.splitlines()[-1]
    assert last.startswith("dfx_pipelines.platform.errors.ConfigError: ") and message in last, result.stderr[-2000:]


def test_a_connector_registered_by_its_module_path_alone_appears_everywhere(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", DRIVER],
        cwd=tmp_path,
        env=_environment(tmp_path, MODULE),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    seen = json.loads(result.stdout.split("SEEN", 1)[1])

    assert seen["kinds"] == ["bigquery", "jira", "postgres", "salesforce", "throwaway"]
    # The registry validates it by its own selection model and the base class's defaults.
    assert seen["accepted"]
    assert "SQL identifier" in seen["bad_item"] or "identifier" in seen["bad_item"]
    assert "objects" in seen["other_kinds_field"]
    assert "write-back is not supported for throwaway" in seen["write_back"]
    assert "no field mapper" in seen["field_mapper"]
    # Definitions: its asset and job load in the root Definitions, beside the built-in connectors'.
    assert "throwaway/item_count" in seen["asset_keys"] and seen["has_job"]
    assert any(key.startswith("salesforce/") for key in seen["asset_keys"])
    # CLI: its command group, and `dfx connect throwaway`.
    assert "throwaway" in seen["help"] and "throwaway" in seen["connect_help"]
    # Demo: its sandbox starts, its demo connection is made and its run succeeds.
    code, output = seen["demo"]
    assert code == 0, output
    assert "throwaway: sandbox at https://127.0.0.1:" in output and "throwaway_job [tw-demo] succeeded" in output
    assert seen["cached_before"] == 1 and seen["partition_before"] and seen["runs_before"] == 1
    # Lifecycle: removal goes through its plugin; deletion erases its own table's rows, its runs and partition.
    code, output = seen["remove"]
    assert code == 0 and "tw-demo" in output, output
    code, output = seen["delete"]
    assert code == 0 and "deleted tw-demo" in output, output
    assert seen["cached_after"] == 0 and seen["status_after"] == "deleted"
    assert not seen["partition_after"] and seen["runs_after"] == 0


def test_a_selection_stored_under_the_shared_model_still_loads() -> None:
    """Rows written when every kind shared one selection model hold the other kinds' fields, empty: they
    load as the kind's own model and are stored back without them; a non-empty foreign field is refused."""
    from dfx_pipelines.connectors.salesforce.selection import SalesforceSelection
    from dfx_pipelines.platform.errors import ConfigError
    from dfx_pipelines.platform.registry import parse_connection

    stored = {"objects": {"Opportunity": ["Amount"]}, "projects": [], "boards": [], "datasets": {}}
    config = {"id": "sf-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "S"}
    connection = parse_connection({**config, "selection": stored})
    assert isinstance(connection.selection, SalesforceSelection)
    assert connection.config_json()["selection"] == {"objects": {"Opportunity": ["Amount"]}}
    with pytest.raises(ConfigError, match=r"selection\.projects"):
        parse_connection({**config, "selection": {**stored, "projects": ["ABC"]}})


def test_validating_a_connection_loads_no_dagster(tmp_path: Path) -> None:
    """Plugin modules are cheap to import: the registry loads them to validate, pure code stays pure."""
    script = (
        "import sys; from dfx_pipelines.platform.registry import parse_connection; "
        "parse_connection({'id': 'jira-a', 'workspace_id': 'acme', 'kind': 'jira', 'display_name': 'J', "
        "'selection': {'projects': ['ABC']}}); "
        "print(sorted(m for m in ('dagster', 'simple_salesforce', 'google.cloud.bigquery', 'jira') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=_environment(tmp_path, None),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
