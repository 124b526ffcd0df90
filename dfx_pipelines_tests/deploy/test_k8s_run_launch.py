"""A run launched on Kubernetes as the chart would configure it: the instance the chart renders from
deploy/values.yaml is loaded by Dagster itself (PostgreSQL storage on the real test server, the real
K8sRunLauncher from dagster-k8s), a run of this code location is launched through it, and the Kubernetes
Job it builds is captured where it would leave for the API server. Every secret the pods need is planted
in the launching process's environment with a canary value: the Job carries references to secrets,
never a value."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import kubernetes
import pytest
import yaml
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.launcher import LaunchRunContext
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._core.test_utils import create_run_for_test
from dagster_k8s import K8sRunLauncher

from dfx_pipelines.platform.instance import RUN_RETRIES
from dfx_pipelines.platform.instance_concurrency import run_concurrency
from dfx_pipelines_tests.deploy import chart

CANARY = "canary-7f3d0b8e-do-not-ship"

# A cluster that is never contacted: the launcher needs a kube config to start; the one call it makes,
# creating the Job, is captured by CapturingBatchApi instead.
KUBECONFIG = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "nowhere", "cluster": {"server": "https://127.0.0.1:9"}}],
    "users": [{"name": "nobody", "user": {"token": "unused"}}],
    "contexts": [{"name": "nowhere", "context": {"cluster": "nowhere", "user": "nobody"}}],
    "current-context": "nowhere",
}


class CapturingBatchApi:
    """The network edge: Kubernetes' BatchV1Api, keeping the Job it is asked to create."""

    def __init__(self) -> None:
        self.created: list[tuple[str, Any]] = []

    def create_namespaced_job(self, body: Any, namespace: str, **_: Any) -> Any:
        self.created.append((namespace, body))
        return body


def secret_refs(values: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {e["name"]: e["valueFrom"]["secretKeyRef"] for e in chart.deployment(values)["env"] if "valueFrom" in e}


def launch(values: dict[str, Any], home: Path, pg: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict:
    """Load the chart's instance for `values`, launch one run through it, return the Job as Kubernetes
    would receive it (a JSON-ready dict)."""
    rendered = chart.render_instance(values)
    # Only what must differ on this machine: the storage's host and database (the password still comes from
    # DAGSTER_PG_PASSWORD, as in the chart), and the kube config (no in-cluster service account here).
    for section in ("run_storage", "event_log_storage", "schedule_storage"):
        rendered[section]["config"]["postgres_db"].update(
            hostname=pg["host"], port=int(pg["port"]), username=pg["username"], db_name=pg["db_name"], params={}
        )
    kubeconfig = home / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(KUBECONFIG))
    rendered["run_launcher"]["config"].update(load_incluster_config=False, kubeconfig_file=str(kubeconfig))
    (home / "dagster.yaml").write_text(yaml.safe_dump(rendered))

    # What the chart gives the daemon's pod, and — worst case — every secret of the code location too.
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", f"{CANARY}-DAGSTER_PG_PASSWORD")  # trust auth ignores it
    for name in secret_refs(values):
        monkeypatch.setenv(name, f"{CANARY}-{name}")

    with dg.DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, K8sRunLauncher)
        batch_api = CapturingBatchApi()
        launcher._api_client.batch_api = batch_api
        origin = JobPythonOrigin(
            job_name="salesforce_sync_job",
            repository_origin=RepositoryPythonOrigin(
                executable_path="/opt/venv/bin/python",
                code_pointer=ModuleCodePointer("dfx_pipelines.definitions", "defs", None),
                container_image=chart.image_name(values),
                entry_point=["dagster"],
                container_context=chart.run_container_context(values),
            ),
        )
        run = create_run_for_test(
            instance, job_name="salesforce_sync_job", job_code_origin=origin, tags={"dfx/connection": "sf-acme"}
        )
        launcher.launch_run(LaunchRunContext(dagster_run=run, workspace=None))
        ((namespace, job),) = batch_api.created
        assert namespace == "dfx"
        return kubernetes.client.ApiClient().sanitize_for_serialization(job)


@pytest.fixture
def pg(pg_database: dict[str, str]) -> Iterator[dict[str, str]]:
    yield pg_database


def test_the_chart_instance_loads_with_the_launcher_coordinator_and_rules_of_dagster_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: dict[str, str]
) -> None:
    launch(chart.load_values(), tmp_path, pg, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        from dagster._core.run_coordinator import QueuedRunCoordinator

        assert isinstance(instance.run_coordinator, QueuedRunCoordinator)
        limits = instance.get_concurrency_config().run_queue_config
        assert limits.max_concurrent_runs == run_concurrency()["runs"]["max_concurrent_runs"]
        assert len(limits.tag_concurrency_limits) == len(run_concurrency()["runs"]["tag_concurrency_limits"])
        assert instance.run_retries_enabled and instance.run_retries_max_retries == RUN_RETRIES["max_retries"]
        assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0


def test_the_run_job_carries_secrets_only_as_references(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: dict[str, str]
) -> None:
    values = chart.load_values()
    job = launch(values, tmp_path, pg, monkeypatch)
    assert CANARY not in json.dumps(job), "a secret's value reached the Job spec"

    (container,) = job["spec"]["template"]["spec"]["containers"]
    env = {entry["name"]: entry for entry in container["env"]}
    for name, ref in secret_refs(values).items():
        assert "value" not in env[name], name
        assert env[name]["valueFrom"]["secretKeyRef"] == ref, name
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": values["global"]["postgresqlSecretName"],
        "key": chart.POSTGRES_PASSWORD_KEY,
    }
    plain = {e["name"]: e["value"] for e in chart.deployment(values)["env"] if "value" in e}
    for name, value in plain.items():
        assert env[name]["value"] == value
    assert all("secretRef" in s or "configMapRef" in s for s in container.get("envFrom", []))

    # The run pod is this code location's image, sized and bounded as values.yaml says.
    assert container["image"] == chart.image_name(values)
    assert container["args"][:3] == ["dagster", "api", "execute_run"]
    assert container["resources"] == chart.deployment(values)["resources"]
    deadline = values["runLauncher"]["config"]["k8sRunLauncher"]["runK8sConfig"]["jobSpecConfig"]
    assert job["spec"]["activeDeadlineSeconds"] == deadline["activeDeadlineSeconds"]


def test_a_name_in_envVars_would_put_its_value_in_the_job_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pg: dict[str, str]
) -> None:
    """Why values.yaml keeps runLauncher...envVars empty, and proof the canary check above sees a leak."""
    values = copy.deepcopy(chart.load_values())
    values["runLauncher"]["config"]["k8sRunLauncher"]["envVars"] = ["DFX_MASTER_KEY"]
    job = launch(values, tmp_path, pg, monkeypatch)
    assert f"{CANARY}-DFX_MASTER_KEY" in json.dumps(job)
