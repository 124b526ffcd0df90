"""The code location loads fast, with no environment variables, no I/O and no network."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg

REPO = Path(__file__).resolve().parents[1]


def clean_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "GOOGLE_"))}
    env["HOME"] = str(tmp_path)
    return env


def test_validate_passes_with_no_environment(tmp_path: Path) -> None:
    # Run from a neutral folder: with DAGSTER_HOME unset, Dagster's CLI reads dagster.yaml from the
    # working directory, and the repository's is the production (PostgreSQL) instance config.
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=tmp_path,
        env=clean_env(tmp_path),
        capture_output=True,
        text=True,
        check=False,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_import_touches_no_file_and_no_database(tmp_path: Path) -> None:
    env = clean_env(tmp_path)
    env["DFX_HOME"] = str(tmp_path / "dfx_home")
    code = "import dfx_pipelines.definitions as d; print(type(d.defs).__name__)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Definitions"
    assert not (tmp_path / "dfx_home").exists()
    assert not (tmp_path / ".dfx").exists()


def test_one_definitions_object() -> None:
    from dfx_pipelines.definitions import defs

    assert isinstance(defs, dg.Definitions)
    defs.get_repository_def()  # resolves: every asset, job, sensor and resource wired


def test_descriptions_name_what_each_metric_reads() -> None:
    from dfx_pipelines.definitions import defs

    specs = {spec.key.to_user_string(): spec for spec in defs.resolve_all_asset_specs()}
    for key, spec in specs.items():
        text = spec.description or ""
        assert text, f"{key} has no description"
        for doubled in ("projects projects", "boards projects", "service-desk projects projects"):
            assert doubled not in text, (key, text)
    assert "Reads the projects of the connection's selected boards;" in specs["jira/throughput"].description
    assert "Reads the connection's selected projects;" in specs["jira/created_vs_resolved"].description
