"""The graph of the code location, snapshotted: a change to asset keys, groups, partitions, checks, jobs,
schedules, sensors or resources shows up as a reviewed diff of `snapshots/definitions.json`.

The rendering holds what defines the graph and nothing that moves with the day, the environment or the
machine: partitions are described by type, names and cadence (never their start date, which follows
today or DFX_DAILY_START), resources by key only (their config reads the environment), no descriptions
or source paths. After an intended change, regenerate and review the diff:

    DFX_UPDATE_SNAPSHOTS=1 pytest dfx_pipelines_tests/test_definitions_snapshot.py
"""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dagster as dg

REPO = Path(__file__).resolve().parents[1]
SNAPSHOT = Path(__file__).with_name("snapshots") / "definitions.json"
REGENERATE = f"DFX_UPDATE_SNAPSHOTS=1 pytest {Path(__file__).relative_to(REPO)}"
# Read at import, before the suite's autouse fixture removes every DFX_* variable from each test.
UPDATE = os.environ.get("DFX_UPDATE_SNAPSHOTS") == "1"


def partitions(definition: dg.PartitionsDefinition | None) -> Any:
    if definition is None:
        return None
    if isinstance(definition, dg.MultiPartitionsDefinition):
        return {
            "type": "multi",
            "dimensions": {d.name: partitions(d.partitions_def) for d in definition.partitions_defs},
        }
    if isinstance(definition, dg.DynamicPartitionsDefinition):
        return {"type": "dynamic", "name": definition.name}
    if isinstance(definition, dg.TimeWindowPartitionsDefinition):
        # The cadence, not the window: the first day follows today (or DFX_DAILY_START).
        return {
            "type": "time_window",
            "cron": definition.cron_schedule,
            "timezone": definition.timezone,
            "format": definition.fmt,
            "end_offset": definition.end_offset,
        }
    if isinstance(definition, dg.StaticPartitionsDefinition):
        return {"type": "static", "keys": list(definition.get_partition_keys())}
    return {"type": type(definition).__name__}


def freshness(policy: Any) -> Any:
    if policy is None:
        return None
    return json.loads(dg.serialize_value(policy))


def _text(value: Any) -> Any:
    value = getattr(value, "value", value)
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def render(defs: dg.Definitions) -> dict[str, Any]:
    """The definitions as sorted plain data (see the module docstring for what is left out and why)."""
    graph = defs.resolve_asset_graph()
    repo = defs.get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "kinds": sorted(node.kinds),
            "executable": node.is_executable,
            "deps": sorted(parent.to_user_string() for parent in node.parent_keys),
            "partitions": partitions(node.partitions_def),
            "backfill_policy": str(node.backfill_policy) if node.backfill_policy else None,
            "freshness_policy": freshness(node.freshness_policy),
            "automation_condition": type(node.automation_condition).__name__ if node.automation_condition else None,
            "tags": {k: v for k, v in sorted(node.tags.items()) if not k.startswith("dagster/kind/")},
            "metadata": {k: _text(v) for k, v in sorted(node.metadata.items()) if not k.startswith("dagster/")},
            "owners": sorted(node.owners),
        }
    checks = {}
    for check_key in sorted(graph.asset_check_keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        spec = graph.get_check_spec(check_key)
        # A check's severity is chosen by each result it yields (AssetCheckResult.severity), not declared.
        checks[f"{check_key.asset_key.to_user_string()}:{check_key.name}"] = {
            "asset": check_key.asset_key.to_user_string(),
            "blocking": spec.blocking,
            "partitions": partitions(spec.partitions_def),
            "additional_deps": sorted(dep.asset_key.to_user_string() for dep in spec.additional_deps),
        }
    jobs = {}
    for job in sorted(repo.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__ASSET_JOB"):  # Dagster's implicit job of every asset
            continue
        selected = job.asset_layer.selected_asset_keys if job.asset_layer else set()
        jobs[job.name] = {
            "assets": sorted(k.to_user_string() for k in selected),
            "ops": sorted(job.graph.node_names()) if not selected else [],
            "partitions": partitions(job.partitions_def),
            "executor": job.executor_def.name,
            "tags": dict(sorted(job.tags.items())),
        }
    schedules = {
        s.name: {
            "cron": s.cron_schedule,
            "timezone": s.execution_timezone,
            "job": s.job_name,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.schedule_defs, key=lambda s: s.name)
    }
    sensors = {
        s.name: {
            "type": s.sensor_type.value,
            "jobs": sorted(t.job_name for t in s.targets) if s.has_jobs else [],
            "minimum_interval_seconds": s.minimum_interval_seconds,
            "default_status": s.default_status.value,
        }
        for s in sorted(repo.sensor_defs, key=lambda s: s.name)
    }
    return {
        "assets": assets,
        "asset_checks": checks,
        "jobs": jobs,
        "schedules": schedules,
        "sensors": sensors,
        "resources": sorted(repo.get_top_level_resources()),
    }


def rendered() -> str:
    from dfx_pipelines.definitions import defs

    return json.dumps(render(defs), indent=2, sort_keys=True) + "\n"


def test_the_definitions_match_the_reviewed_snapshot() -> None:
    now = rendered()
    if UPDATE:
        SNAPSHOT.parent.mkdir(exist_ok=True)
        SNAPSHOT.write_text(now)
    assert SNAPSHOT.exists(), f"no snapshot yet: create it with `{REGENERATE}` and commit it"
    before = SNAPSHOT.read_text()
    if now != before:
        diff = "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                now.splitlines(keepends=True),
                fromfile="snapshots/definitions.json (committed)",
                tofile="the definitions now",
            )
        )
        raise AssertionError(
            f"The Dagster definitions changed:\n{diff}\n"
            f"If the change is intended, regenerate the snapshot with `{REGENERATE}`, review its diff and commit it."
        )


def test_the_snapshot_does_not_depend_on_the_day_or_the_environment(tmp_path: Path) -> None:
    """Rendered in a fresh process with no DFX_*/DAGSTER_* variables (so daily partitions start relative to
    today, not on the suite's fixed day), another time zone and another working folder: the same text."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "GOOGLE_"))}
    env.update(HOME=str(tmp_path), TZ="Pacific/Kiritimati", PYTHONPATH=str(REPO))
    code = (
        "import sys; from dfx_pipelines_tests.test_definitions_snapshot import rendered; sys.stdout.write(rendered())"
    )
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        check=False,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == rendered()
