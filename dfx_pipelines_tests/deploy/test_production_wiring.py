"""The production wiring the chart gives the code location (deploy/values.yaml): with the variables it
sets, secrets filled in as Kubernetes would, the platform starts in production mode on PostgreSQL with the
Secret Manager vault and the master key from the environment — no key file is generated, no sandbox is
trusted. Without a secret's variable it refuses, naming the variable."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dfx_pipelines.platform import environment
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.vault import GoogleSecretManagerBackend, MasterKeyring
from dfx_pipelines_tests.deploy import chart

MASTER_KEY = base64.b64encode(bytes(range(100, 132))).decode()


def pod_environment(values: dict[str, Any], secrets: dict[str, str], home: Path) -> dict[str, str]:
    """The code location's environment in its pod: the plain values as written, each secretKeyRef resolved
    from `secrets` (a missing optional key is left unset, as Kubernetes does). DFX_HOME is moved to a temp
    folder: the image's path does not exist on this machine."""
    env: dict[str, str] = {}
    for entry in chart.deployment(values)["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        elif entry["name"] in secrets:
            env[entry["name"]] = secrets[entry["name"]]
    env["DFX_HOME"] = str(home)
    # The chart adds Dagster's PostgreSQL password to every user-code pod, from global.postgresqlSecretName.
    env["DAGSTER_PG_PASSWORD"] = secrets.get("DAGSTER_PG_PASSWORD", "")
    return env


@pytest.fixture
def secrets(pg_database: dict[str, str]) -> dict[str, str]:
    return {
        "DFX_MASTER_KEY": MASTER_KEY,
        "DFX_METRICS_DB_URL": pg_database["url"],
        "DFX_APP_DB_URL": pg_database["url"],
        "JIRA_CLIENT_SECRET": "jira-app-secret",
        "DAGSTER_PG_PASSWORD": "dagster-pg-password",
    }


def use(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def test_the_values_environment_starts_production_on_postgres_with_the_key_from_the_secret(
    secrets: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = chart.load_values()
    use(pod_environment(values, secrets, tmp_path / "dfx"), monkeypatch)
    platform = PlatformResource().get()  # what a run or a sensor of the code location does first

    assert platform.settings.mode == "production" and not platform.settings.sandbox_allowed
    assert platform.engine.dialect.name == "postgresql"
    backend = platform.vault.backend
    assert isinstance(backend, GoogleSecretManagerBackend)
    assert backend.project_id == os.environ["DFX_VAULT_GCP_PROJECT"]
    keyring = platform.vault.keyring
    assert keyring.active_id == MasterKeyring.key_id_for(base64.b64decode(MASTER_KEY))
    assert not platform.settings.master_key_file.exists(), "production never generates a key file"
    assert not (tmp_path / "dfx").exists() or not any((tmp_path / "dfx").rglob("*.key"))


def test_the_code_location_loads_in_production_with_the_values_environment_and_writes_nothing(
    secrets: dict[str, str], tmp_path: Path
) -> None:
    """What the code server of the image does first, with nothing but the pod's environment (and this
    checkout on the path): Dagster loads the definitions module the chart's codeServerArgs name."""
    values = chart.load_values()
    home = tmp_path / "dfx"
    env = {
        **pod_environment(values, secrets, home),
        "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        "PYTHONPATH": str(chart.REPO),
        "HOME": str(tmp_path),
    }
    module = chart.deployment(values)["codeServerArgs"][1]
    result = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-m", module],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "All code locations passed validation" in result.stdout + result.stderr
    assert not home.exists(), "loading the code location wrote local state (a key file, a SQLite database)"
    assert MASTER_KEY not in result.stdout + result.stderr


def test_dfx_doctor_with_the_values_environment_reports_only_what_the_chart_itself_provides(
    secrets: dict[str, str], tmp_path: Path
) -> None:
    env = pod_environment(chart.load_values(), secrets, tmp_path / "dfx")
    errors = {f.variable for f in environment.check(env) if f.level == "error"}
    # DAGSTER_HOME and Dagster's storage are the chart's (its instance ConfigMap with the host, user and
    # database written in), not dagster.yaml's DAGSTER_PG_* variables, which `dfx doctor` looks for.
    assert errors <= {"DAGSTER_HOME", "DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_DB"}


def test_without_the_master_key_production_refuses_to_start_and_writes_no_key_file(
    secrets: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = pod_environment(chart.load_values(), secrets, tmp_path / "dfx")
    del env["DFX_MASTER_KEY"]
    use(env, monkeypatch)
    with pytest.raises(ConfigError, match="DFX_MASTER_KEY"):
        PlatformResource().get()
    assert not any(tmp_path.rglob("master.key"))


@pytest.mark.parametrize("missing", ["DFX_MASTER_KEY", "DFX_METRICS_DB_URL", "DFX_APP_DB_URL", "JIRA_CLIENT_SECRET"])
def test_each_secret_the_values_reference_is_named_when_missing(
    secrets: dict[str, str], tmp_path: Path, missing: str
) -> None:
    values = chart.load_values()
    required_refs = {
        e["name"]
        for e in chart.deployment(values)["env"]
        if "valueFrom" in e and not e["valueFrom"]["secretKeyRef"].get("optional")
    }
    assert missing in required_refs  # Kubernetes itself will not start the pod without it
    env = pod_environment(values, {k: v for k, v in secrets.items() if k != missing}, tmp_path / "dfx")
    named = {f.variable for f in environment.check(env)}
    assert missing in named
