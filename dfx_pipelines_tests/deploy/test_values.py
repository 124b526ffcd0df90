"""deploy/values.yaml against the official Dagster Helm chart and this project's own rules: only keys the
chart has, secrets only as references, the variables the code reads, and the instance it renders (storage,
launcher, coordinator, monitoring, retries, concurrency, logging) valid for Dagster and equal to dagster.yaml's
rules. No helm binary here: chart.py says what is transcribed from the chart and what is checked for real."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster._config import process_config
from dagster._core.errors import DagsterInvalidConfigError
from dagster._core.instance.config import dagster_instance_config
from dagster._serdes.config_class import ConfigurableClassData, class_from_code_pointer

from dfx_pipelines.platform import environment
from dfx_pipelines.platform.instance import RUN_MONITORING, RUN_RETRIES
from dfx_pipelines.platform.instance_concurrency import run_concurrency
from dfx_pipelines_tests.deploy import chart

DAGSTER_YAML = chart.REPO / "dagster.yaml"
# What a variable's name says about it: such a variable only ever comes from a secret (environment.report
# shows the same names as set/unset only).
SECRET_NAME_PARTS = ("PASSWORD", "SECRET", "MASTER_KEY", "TOKEN", "WEBHOOK", "DB_URL")


@pytest.fixture
def values() -> dict[str, Any]:
    return chart.load_values()


def env_entries(values: dict[str, Any]) -> list[dict[str, Any]]:
    return chart.deployment(values)["env"]


def test_values_use_only_keys_the_chart_has(values: dict[str, Any]) -> None:
    assert chart.unknown_keys(values) == []


@pytest.mark.parametrize(
    ("where", "key", "path"),
    [
        (("dagsterDaemon", "runMonitoring"), "maxRuntimeSeconds", "dagsterDaemon.runMonitoring.maxRuntimeSeconds"),
        (("dagsterDaemon", "runRetries"), "maxRetry", "dagsterDaemon.runRetries.maxRetry"),
        (("runLauncher", "config", "k8sRunLauncher"), "envSecret", "runLauncher.config.k8sRunLauncher.envSecret"),
        ((), "userDeployments", "userDeployments"),
        (("concurrency", "runs"), "tag_concurrency_limits", "concurrency.runs.tag_concurrency_limits"),
    ],
)
def test_a_key_the_chart_does_not_have_or_would_drop_is_refused(
    values: dict[str, Any], where: tuple[str, ...], key: str, path: str
) -> None:
    changed = copy.deepcopy(values)
    node = changed
    for part in where:
        node = node[part]
    node[key] = 1
    assert chart.unknown_keys(changed) == [path]
    changed = copy.deepcopy(values)
    chart.deployment(changed)["envFrom"] = []  # Kubernetes' name, not the chart's (envSecrets)
    assert chart.unknown_keys(changed) == ["dagster-user-deployments.deployments[0].envFrom"]


def test_secrets_are_references_to_kubernetes_secrets_never_values(values: dict[str, Any]) -> None:
    entries = env_entries(values)
    by_name = {entry["name"]: entry for entry in entries}
    assert len(by_name) == len(entries), "a variable set twice"
    for name, entry in by_name.items():
        assert set(entry) in ({"name", "value"}, {"name", "valueFrom"}), entry
        if any(part in name for part in SECRET_NAME_PARTS):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            assert ref and ref["name"] and ref["key"], f"{name} must come from a secretKeyRef"
    refs = {name: entry["valueFrom"]["secretKeyRef"] for name, entry in by_name.items() if "valueFrom" in entry}
    assert refs["DFX_MASTER_KEY"] == {"name": "dfx-vault-master-key", "key": "DFX_MASTER_KEY"}
    assert refs["DFX_METRICS_DB_URL"] == {"name": "dfx-databases", "key": "DFX_METRICS_DB_URL"}
    # Dagster's own PostgreSQL password: an existing secret the chart only references, never generates.
    assert values["global"]["postgresqlSecretName"] and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]
    # A name here would copy the daemon's value into every run's Job spec in clear.
    assert values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"] == []
    assert "envSecrets" not in chart.deployment(values) or all(
        "name" in s for s in chart.deployment(values)["envSecrets"]
    )


def test_the_variables_set_are_exactly_ones_the_code_reads_and_cover_what_production_needs(
    values: dict[str, Any],
) -> None:
    names = {entry["name"] for entry in env_entries(values)}
    assert names <= set(environment.BY_NAME), f"read nowhere: {sorted(names - set(environment.BY_NAME))}"
    plain = {entry["name"]: entry["value"] for entry in env_entries(values) if "value" in entry}
    assert plain["DFX_MODE"] == "production"
    # Production's required variables, except Dagster's own: under the chart, DAGSTER_HOME and the instance
    # config (with DAGSTER_PG_PASSWORD from the secret above) are the chart's, not dagster.yaml's DAGSTER_PG_*.
    required = {v.name for v in environment.VARIABLES if v.production == "yes" and not v.name.startswith("DAGSTER_")}
    assert required <= names, f"production needs {sorted(required - names)}"
    if plain.get("DFX_VAULT_BACKEND") == "gcp-secret-manager":
        assert plain.get("DFX_VAULT_GCP_PROJECT")
    else:
        assert "DFX_VAULT_DIR" in names


def test_the_rendered_instance_is_valid_for_dagster_and_each_class_accepts_its_config(
    values: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = chart.render_instance(values)
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    config, _ = dagster_instance_config(str(tmp_path))  # Dagster's instance schema; raises when invalid
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", "from-the-secret")  # the storage's one env source
    classes = ("run_launcher", "run_coordinator", "run_storage", "event_log_storage", "schedule_storage", "scheduler")
    for section in classes:
        # As the instance loads it: ConfigurableClassData maps the chart's `dagster.core.*` to `dagster._core.*`.
        data = ConfigurableClassData(config[section]["module"], config[section]["class"], "{}")
        klass = class_from_code_pointer(data.module_name, data.class_name)
        result = process_config(klass.config_type(), config[section].get("config") or {})
        assert result.success, (section, [e.message for e in result.errors or []])
    assert config["run_launcher"]["class"] == "K8sRunLauncher"


def test_dagster_refuses_a_rendering_it_does_not_know(values: dict[str, Any], tmp_path: Path) -> None:
    """The check above has teeth: Dagster itself refuses what the chart would render from a wrong value."""
    rendered = chart.render_instance(values)
    rendered["run_monitoring"]["max_resume_run_attempt"] = 0
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(rendered))
    with pytest.raises(DagsterInvalidConfigError):
        dagster_instance_config(str(tmp_path))
    from dagster_k8s import K8sRunLauncher

    launcher_config = {**chart.render_instance(values)["run_launcher"]["config"], "env_secret": ["x"]}
    assert not process_config(K8sRunLauncher.config_type(), launcher_config).success


def test_monitoring_retries_concurrency_and_logging_are_dagster_yamls(values: dict[str, Any]) -> None:
    rendered = chart.render_instance(values)
    production = yaml.safe_load(DAGSTER_YAML.read_text())
    # Run monitoring: the same numbers, except the maximum runtime, which the chart does not render and the
    # run pod's activeDeadlineSeconds enforces instead (test_k8s_run_launch checks the Job carries it).
    assert rendered["run_monitoring"] == {k: v for k, v in RUN_MONITORING.items() if k != "max_runtime_seconds"}
    assert production["run_monitoring"]["max_runtime_seconds"] == RUN_MONITORING["max_runtime_seconds"]
    run_k8s = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]
    assert run_k8s["jobSpecConfig"]["activeDeadlineSeconds"] == RUN_MONITORING["max_runtime_seconds"]
    assert rendered["run_retries"] == RUN_RETRIES == production["run_retries"]
    # The run-concurrency rules: the module the embedded instance and dagster.yaml share.
    assert rendered["concurrency"] == run_concurrency() == production["concurrency"]
    assert rendered["run_coordinator"]["class"] == production["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert "config" not in rendered["run_coordinator"], "limits live in `concurrency` only"
    # Logging through the redacting formatter, telemetry off.
    assert rendered["python_logs"] == production["python_logs"]
    assert rendered["telemetry"] == production["telemetry"]


def test_the_deploy_readme_creates_every_secret_the_values_reference_and_installs_the_matching_chart(
    values: dict[str, Any],
) -> None:
    readme = (chart.REPO / "deploy" / "README.md").read_text()
    wanted = {(values["global"]["postgresqlSecretName"], chart.POSTGRES_PASSWORD_KEY)}
    wanted |= {
        (e["valueFrom"]["secretKeyRef"]["name"], e["valueFrom"]["secretKeyRef"]["key"])
        for e in chart.deployment(values)["env"]
        if "valueFrom" in e
    }
    for name, key in wanted:
        assert f"create secret generic {name}" in readme, name
        assert key in readme, key
    dagster_pin = next(
        d
        for d in tomllib.loads((chart.REPO / "pyproject.toml").read_text())["project"]["dependencies"]
        if d.startswith("dagster==")
    )
    assert f"--version {dagster_pin.split('==')[1]}" in readme
