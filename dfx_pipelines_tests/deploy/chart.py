"""What the official Dagster Helm chart does with deploy/values.yaml, for the tests: the value keys it
accepts (for the sections we use) and the parts of its output we rely on, i.e. the instance `dagster.yaml`
it renders into its ConfigMap and the container context a user-code deployment hands to the runs it launches.

No helm binary or cluster exists here, so this is a transcription, not the chart: the key names come from
the chart's values schema models (helm/dagster/schema in dagster-io/dagster: DagsterHelmValues, Daemon,
RunLauncher/K8sRunLauncherConfig, UserDeployment, Concurrency, PostgreSQL, Global), and the rendering from
its templates (configmap-instance.yaml, the `dagsterYaml.*` helpers, deployment-user.yaml). They were read
in the newest versions a code index held (the chart line with top-level `concurrency`, `runK8sConfig` and
`runRetries.retryOnAssetOrOpFailure`); the repository itself was too large to fetch, so the 1.13.27 tag
was not checked out. Where the schema allows any mapping but the template renders only some keys
(runMonitoring), only the rendered keys are listed: a key the chart would silently drop is refused like a
misspelt one. The rest (Dagster's instance schema, the K8sRunLauncher's config, its Job construction) is
checked against the installed dagster and dagster-k8s themselves."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
VALUES = REPO / "deploy" / "values.yaml"

ANY = "any"  # a free-form value (a Kubernetes object, a list of them, a plain mapping): not inspected here

_IMAGE = {"repository": ANY, "tag": ANY, "pullPolicy": ANY}
_TAG_LIMIT = {"key": ANY, "value": ANY, "limit": ANY}

_USER_DEPLOYMENT = {
    "name": ANY,
    "image": _IMAGE,
    "dagsterApiGrpcArgs": ANY,
    "codeServerArgs": ANY,
    "includeConfigInLaunchedRuns": {"enabled": ANY},
    "deploymentNamespace": ANY,
    "port": ANY,
    "replicaCount": ANY,
    "env": ANY,
    "envConfigMaps": ANY,
    "envSecrets": ANY,
    "annotations": ANY,
    "nodeSelector": ANY,
    "affinity": ANY,
    "tolerations": ANY,
    "podSecurityContext": ANY,
    "securityContext": ANY,
    "resources": ANY,
    "livenessProbe": ANY,
    "readinessProbe": ANY,
    "startupProbe": ANY,
    "labels": ANY,
    "volumeMounts": ANY,
    "volumes": ANY,
    "schedulerName": ANY,
    "initContainers": ANY,
    "sidecarContainers": ANY,
    "deploymentStrategy": ANY,
}

_K8S_RUN_LAUNCHER = {
    "image": _IMAGE,
    "imagePullPolicy": ANY,
    "jobNamespace": ANY,
    "loadInclusterConfig": ANY,
    "kubeconfigFile": ANY,
    "envConfigMaps": ANY,
    "envSecrets": ANY,
    "envVars": ANY,
    "volumeMounts": ANY,
    "volumes": ANY,
    "labels": ANY,
    "failPodOnRunFailure": ANY,
    "resources": ANY,
    "schedulerName": ANY,
    "securityContext": ANY,
    "runK8sConfig": {
        "containerConfig": ANY,
        "podSpecConfig": ANY,
        "podTemplateSpecMetadata": ANY,
        "jobSpecConfig": ANY,
        "jobMetadata": ANY,
    },
}

_DAEMON = {
    "enabled": ANY,
    "image": _IMAGE,
    "runCoordinator": {
        "enabled": ANY,
        "type": ANY,
        "config": {
            "queuedRunCoordinator": {
                "maxConcurrentRuns": ANY,
                "tagConcurrencyLimits": [_TAG_LIMIT],
                "dequeueIntervalSeconds": ANY,
                "dequeueNumWorkers": ANY,
                "dequeueUseThreads": ANY,
                "blockOpConcurrencyLimitedRuns": {"enabled": ANY, "opConcurrencySlotBuffer": ANY},
            },
            "customRunCoordinator": ANY,
        },
    },
    "heartbeatTolerance": ANY,
    "env": ANY,
    "envConfigMaps": ANY,
    "envSecrets": ANY,
    "deploymentLabels": ANY,
    "labels": ANY,
    "nodeSelector": ANY,
    "affinity": ANY,
    "tolerations": ANY,
    "podSecurityContext": ANY,
    "securityContext": ANY,
    "resources": ANY,
    "checkDbReadyInitContainer": ANY,
    "livenessProbe": ANY,
    "readinessProbe": ANY,
    "startupProbe": ANY,
    "annotations": ANY,
    # The schema takes any mapping; configmap-instance.yaml renders these keys only.
    "runMonitoring": {
        "enabled": ANY,
        "startTimeoutSeconds": ANY,
        "cancelTimeoutSeconds": ANY,
        "maxResumeRunAttempts": ANY,
        "pollIntervalSeconds": ANY,
        "freeSlotsAfterRunEndSeconds": ANY,
    },
    "runRetries": {"enabled": ANY, "maxRetries": ANY, "retryOnAssetOrOpFailure": ANY},
    "sensors": ANY,
    "schedules": ANY,
    "backfills": ANY,
    "schedulerName": ANY,
    "logFormat": ANY,
    "volumeMounts": ANY,
    "volumes": ANY,
    "initContainerResources": ANY,
    "extraContainers": ANY,
    "extraPrependedInitContainers": ANY,
}

CHART_KEYS: dict[str, Any] = {
    "dagsterWebserver": ANY,
    "dagster-user-deployments": {
        "enabled": ANY,
        "enableSubchart": ANY,
        "imagePullSecrets": ANY,
        "deployments": [_USER_DEPLOYMENT],
    },
    "postgresql": {
        "image": ANY,
        "enabled": ANY,
        "postgresqlHost": ANY,
        "postgresqlUsername": ANY,
        "postgresqlPassword": ANY,
        "postgresqlDatabase": ANY,
        "postgresqlParams": ANY,
        "postgresqlScheme": ANY,
        "service": {"port": ANY},
    },
    "generatePostgresqlPasswordSecret": ANY,
    "generateCeleryConfigSecret": ANY,
    "rabbitmq": ANY,
    "redis": ANY,
    "flower": ANY,
    "ingress": ANY,
    "imagePullSecrets": ANY,
    "computeLogManager": ANY,
    "scheduler": ANY,
    "runLauncher": {
        "type": ANY,
        "config": {"celeryK8sRunLauncher": ANY, "k8sRunLauncher": _K8S_RUN_LAUNCHER, "customRunLauncher": ANY},
    },
    "pythonLogs": {"pythonLogLevel": ANY, "managedPythonLoggers": ANY, "dagsterHandlerConfig": ANY},
    "dagsterDaemon": _DAEMON,
    "busybox": ANY,
    "migrate": ANY,
    "telemetry": {"enabled": ANY},
    "serviceAccount": ANY,
    "global": {
        "postgresqlSecretName": ANY,
        "dagsterHome": ANY,
        "serviceAccountName": ANY,
        "celeryConfigSecretName": ANY,
    },
    "retention": ANY,
    "concurrency": {
        "enabled": ANY,
        "pools": {"defaultLimit": ANY, "granularity": ANY, "opGranularityRunBuffer": ANY},
        "runs": {"maxConcurrentRuns": ANY, "tagConcurrencyLimits": [_TAG_LIMIT]},
    },
    "additionalInstanceConfig": ANY,
}

# The chart's defaults for what the templates read but deploy/values.yaml leaves alone.
DAGSTER_HOME = "/opt/dagster/dagster_home"
POSTGRES_PASSWORD_KEY = "postgresql-password"


def load_values(path: Path = VALUES) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def unknown_keys(values: Any, keys: Any = CHART_KEYS, path: str = "") -> list[str]:
    """Every key of `values` the chart does not have, as a dotted path."""
    if keys == ANY:
        return []
    if isinstance(keys, list):
        if not isinstance(values, list):
            return [f"{path} (expected a list)"]
        return [found for i, item in enumerate(values) for found in unknown_keys(item, keys[0], f"{path}[{i}]")]
    if not isinstance(values, dict):
        return [f"{path} (expected a mapping)"]
    found = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        if key not in keys:
            found.append(where)
        else:
            found.extend(unknown_keys(value, keys[key], where))
    return found


def snake(name: str) -> str:
    """The chart's (and Dagster's) camelCase to snake_case, as its `snakecase` template function does."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_keys(mapping: dict[str, Any]) -> dict[str, Any]:
    return {snake(key): value for key, value in mapping.items()}


def deployment(values: dict[str, Any]) -> dict[str, Any]:
    """The one user-code deployment of this project."""
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


def render_instance(values: dict[str, Any], *, release: str = "dagster", namespace: str = "dfx") -> dict[str, Any]:
    """The instance `dagster.yaml` the chart renders into its `<release>-instance` ConfigMap (the sections
    this project sets; compute logs and retention stay the chart's defaults)."""
    pg = values["postgresql"]
    postgres_config = {
        "postgres_db": {
            "username": pg["postgresqlUsername"],
            "password": {"env": "DAGSTER_PG_PASSWORD"},
            "hostname": pg["postgresqlHost"],
            "db_name": pg["postgresqlDatabase"],
            "port": pg["service"]["port"],
            "params": pg.get("postgresqlParams", {}),
            **({"scheme": pg["postgresqlScheme"]} if pg.get("postgresqlScheme") else {}),
        }
    }
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    launcher_config: dict[str, Any] = {
        "load_incluster_config": launcher["loadInclusterConfig"],
        **({"kubeconfig_file": launcher["kubeconfigFile"]} if launcher.get("kubeconfigFile") else {}),
        "job_namespace": launcher.get("jobNamespace") or namespace,
        "image_pull_policy": launcher["imagePullPolicy"],
        **({"image_pull_secrets": values["imagePullSecrets"]} if values.get("imagePullSecrets") else {}),
        "service_account_name": f"{release}-dagster",
        "dagster_home": values.get("global", {}).get("dagsterHome") or DAGSTER_HOME,
        "instance_config_map": f"{release}-instance",
        "postgres_password_secret": values["global"]["postgresqlSecretName"],
    }
    listed = {"envConfigMaps": "env_config_maps", "envSecrets": "env_secrets"}
    for key, rendered_key in listed.items():
        if launcher.get(key):
            launcher_config[rendered_key] = [item["name"] for item in launcher[key] if "name" in item]
    verbatim = {
        "envVars": "env_vars",
        "volumeMounts": "volume_mounts",
        "volumes": "volumes",
        "labels": "labels",
        "resources": "resources",
        "schedulerName": "scheduler_name",
        "securityContext": "security_context",
    }
    for key, rendered_key in verbatim.items():
        if launcher.get(key):
            launcher_config[rendered_key] = launcher[key]
    if launcher.get("failPodOnRunFailure"):
        launcher_config["fail_pod_on_run_failure"] = True
    if launcher.get("runK8sConfig"):
        launcher_config["run_k8s_config"] = {snake(k): v for k, v in launcher["runK8sConfig"].items() if v}

    daemon = values["dagsterDaemon"]
    rendered: dict[str, Any] = {
        "scheduler": {"module": "dagster.core.scheduler", "class": "DagsterDaemonScheduler"},
        "schedule_storage": {
            "module": "dagster_postgres.schedule_storage",
            "class": "PostgresScheduleStorage",
            "config": postgres_config,
        },
        "run_launcher": {"module": "dagster_k8s", "class": "K8sRunLauncher", "config": launcher_config},
        "run_storage": {
            "module": "dagster_postgres.run_storage",
            "class": "PostgresRunStorage",
            "config": postgres_config,
        },
        "event_log_storage": {
            "module": "dagster_postgres.event_log",
            "class": "PostgresEventLogStorage",
            "config": postgres_config,
        },
    }
    if daemon["enabled"] and daemon["runCoordinator"]["enabled"]:
        assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
        queued = daemon["runCoordinator"]["config"].get("queuedRunCoordinator") or {}
        rendered["run_coordinator"] = {"module": "dagster.core.run_coordinator", "class": "QueuedRunCoordinator"}
        if any(v is not None for v in queued.values()):  # the template writes no config block for none
            rendered["run_coordinator"]["config"] = {snake(k): v for k, v in queued.items() if v is not None}
    if values.get("pythonLogs"):
        logs = values["pythonLogs"]
        rendered["python_logs"] = {snake(k): v for k, v in logs.items() if v}
    if daemon["enabled"] and daemon["runMonitoring"]["enabled"]:
        rendered["run_monitoring"] = _snake_keys(daemon["runMonitoring"])
    if daemon["enabled"] and daemon["runRetries"]["enabled"]:
        rendered["run_retries"] = _snake_keys(daemon["runRetries"])
    rendered["telemetry"] = {"enabled": values["telemetry"]["enabled"]}
    concurrency = values.get("concurrency") or {}
    if concurrency.get("enabled"):
        rendered["concurrency"] = {
            section: _snake_keys(concurrency[section]) for section in ("pools", "runs") if concurrency.get(section)
        }
    return rendered


def run_container_context(values: dict[str, Any], *, release: str = "dagster", namespace: str = "dfx") -> dict:
    """The container context the user-code deployment puts on DAGSTER_CONTAINER_CONTEXT when
    includeConfigInLaunchedRuns is enabled: its env, secrets, config maps and resources, which the
    K8sRunLauncher merges into every run pod it launches for this code location."""
    deployed = deployment(values)
    assert (deployed.get("includeConfigInLaunchedRuns") or {"enabled": True})["enabled"]
    k8s: dict[str, Any] = {
        "image_pull_policy": deployed["image"]["pullPolicy"],
        "env_config_maps": [f"{release}-dagster-user-deployments-{deployed['name']}-user-env"]
        + [c["name"] for c in deployed.get("envConfigMaps") or []],
        "env_secrets": [s["name"] for s in deployed.get("envSecrets") or []],
        "namespace": namespace,
    }
    if isinstance(deployed.get("env"), list):
        k8s["env"] = deployed["env"]
    if deployed.get("resources"):
        k8s["resources"] = deployed["resources"]
    return {"k8s": k8s}


def image_name(values: dict[str, Any]) -> str:
    image = deployment(values)["image"]
    return f"{image['repository']}:{image['tag']}"
