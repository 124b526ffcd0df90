"""What a data engineer sees in the Dagster UI, read the way the UI reads it: a real `dagster-webserver`
and `dagster-daemon` on the embedded instance (`dfx dev`'s), queried through the webserver's GraphQL API.

One Salesforce demo connection on its sandbox; a 90-day range run of two daily metrics and a snapshot run
launched through GraphQL. Then: each partition's latest materialization shows that day's own numbers (as
the metric store holds them), the daily assets have exactly the history window as partitions and none
missing, lineage runs from the source objects to the metrics, a schedule with nothing to do says why, and
the two runs of the one connection never overlapped (the embedded instance's per-connection limit).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from dfx_pipelines.platform.partitions import HISTORY_WINDOW_DAYS

REPO = Path(__file__).resolve().parents[1]
LOCATION, REPOSITORY = "dfx_pipelines.definitions", "__repository__"
CONNECTION = "sf-demo"
DAILY_METRICS = ("win_rate", "lead_conversion")

pytestmark = pytest.mark.timeout(900)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterUI:
    def __init__(self, url: str):
        self.url = url

    def query(self, text: str, **variables: Any) -> dict[str, Any]:
        response = requests.post(f"{self.url}/graphql", json={"query": text, "variables": variables}, timeout=120)
        assert response.ok, response.text[:2000]
        body = response.json()
        assert not body.get("errors"), body["errors"]
        return body["data"]


def _start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    # A session of its own: the finalizer ends the process *group* (run workers and code servers included).
    return subprocess.Popen(
        args, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )


def _stop(process: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DagsterUI, Any]]:
    import dagster as dg

    from dfx_pipelines.cli import DEMO_WORKSPACE, embedded_dagster_home
    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.platform.partitions import sync_partitions
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import Platform
    from dfx_pipelines.platform.settings import Settings

    root = tmp_path_factory.mktemp("ui")
    settings = Settings.from_env({"DFX_HOME": str(root / ".dfx")})
    processes: list[subprocess.Popen] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("DAGSTER_HOME", raising=False)
        home = embedded_dagster_home(settings)  # the embedded instance exactly as `dfx dev` makes it
        platform = Platform(settings)
        platform.registry.upsert_workspace(Workspace(id=DEMO_WORKSPACE, name="Demo", owner_email="owner@demo.test"))
        salesforce = plugin("salesforce")
        sandbox = salesforce.start_sandbox(SandboxCA(settings.sandbox_dir), scale=300)
        try:
            salesforce.connect_demo(platform, sandbox, DEMO_WORKSPACE)
            with dg.DagsterInstance.get() as instance:
                sync_partitions(instance, platform.registry, ["salesforce"])
            # The production partition window: no DFX_DAILY_START, nothing of the test session's environment.
            env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "SALESFORCE_"))}
            env.update({"DFX_HOME": str(settings.home), "DAGSTER_HOME": str(home)})
            port = _free_port()
            exe = Path(sys.executable).parent
            processes.append(
                _start(
                    [str(exe / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
                    env,
                    root / "webserver.log",
                )
            )
            client = DagsterUI(f"http://127.0.0.1:{port}")
            deadline = time.monotonic() + 240
            while True:
                try:
                    if requests.get(f"{client.url}/server_info", timeout=5).ok and _location_loaded(client):
                        break
                except requests.ConnectionError:
                    pass
                assert processes[0].poll() is None, (root / "webserver.log").read_text()[-3000:]
                assert time.monotonic() < deadline, "webserver did not load the code location"
                time.sleep(1)
            # Only the runs this test launches: sensors and schedules stopped before the daemon starts.
            _stop_automation(client)
            processes.append(
                _start([str(exe / "dagster-daemon"), "run", "-w", "workspace.yaml"], env, root / "daemon.log")
            )
            yield client, platform
        finally:
            for process in reversed(processes):
                _stop(process)
            sandbox.stop()


def _location_loaded(client: DagsterUI) -> bool:
    data = client.query(
        "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
    )
    entries = data["workspaceOrError"]["locationEntries"]
    return any(
        e["name"] == LOCATION
        and e["locationOrLoadError"]
        and e["locationOrLoadError"]["__typename"] == "RepositoryLocation"
        for e in entries
    )


REPO_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}


def _stop_automation(client: DagsterUI) -> None:
    data = client.query(
        "query($s: RepositorySelector!) { repositoryOrError(repositorySelector: $s) { ... on Repository {"
        " sensors { name sensorState { id status } } schedules { name scheduleState { id status } } } } }",
        s=REPO_SELECTOR,
    )["repositoryOrError"]
    for sensor in data["sensors"]:
        if sensor["sensorState"]["status"] == "RUNNING":
            client.query("mutation($id: String) { stopSensor(id: $id) { __typename } }", id=sensor["sensorState"]["id"])
    for schedule in data["schedules"]:
        if schedule["scheduleState"]["status"] == "RUNNING":
            client.query(
                "mutation($id: String) { stopRunningSchedule(id: $id) { __typename } }",
                id=schedule["scheduleState"]["id"],
            )


LAUNCH = """
mutation($p: ExecutionParams!) { launchRun(executionParams: $p) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } ... on InvalidSubsetError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }
"""


def _launch(client: DagsterUI, job: str, tags: dict[str, str], assets: tuple[str, ...] | None = None) -> str:
    selector: dict[str, Any] = {**REPO_SELECTOR, "jobName": job}
    if assets:
        selector["assetSelection"] = [{"path": ["salesforce", name]} for name in assets]
    params = {
        "selector": selector,
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    result = client.query(LAUNCH, p=params)["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def _wait_for(client: DagsterUI, run_ids: list[str], timeout: float = 600) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        runs = {}
        for run_id in run_ids:
            runs[run_id] = client.query(
                "query($id: ID!) { runOrError(runId: $id) { ... on Run { status startTime endTime } } }", id=run_id
            )["runOrError"]
        if all(r["status"] in ("SUCCESS", "FAILURE", "CANCELED") for r in runs.values()):
            return runs
        assert time.monotonic() < deadline, runs
        time.sleep(2)


@pytest.fixture(scope="module")
def launched(ui: tuple[DagsterUI, Any]) -> dict[str, Any]:
    client, _platform = ui
    today = datetime.now(UTC).date()
    first = today - timedelta(days=HISTORY_WINDOW_DAYS - 1)
    connection_tag = {"dfx/connection": CONNECTION}
    daily = _launch(
        client,
        "salesforce_daily_job",
        {
            **connection_tag,
            "dagster/asset_partition_range_start": f"{CONNECTION}|{first}",
            "dagster/asset_partition_range_end": f"{CONNECTION}|{today}",
        },
        DAILY_METRICS,
    )
    snapshot = _launch(client, "salesforce_snapshot_job", {**connection_tag, "dagster/partition": CONNECTION})
    runs = _wait_for(client, [daily, snapshot])
    return {"first": first, "today": today, "daily": runs[daily], "snapshot": runs[snapshot]}


MATERIALIZATIONS = """
query($k: AssetKeyInput!, $p: [String!]) { assetOrError(assetKey: $k) { ... on Asset {
  assetMaterializations(partitions: $p) { partition runId metadataEntries { label __typename
    ... on IntMetadataEntry { intValue } ... on MarkdownMetadataEntry { mdStr } ... on FloatMetadataEntry { floatValue } } } } } }
"""


def test_the_runs_succeed(launched: dict[str, Any]) -> None:
    assert launched["daily"]["status"] == "SUCCESS" and launched["snapshot"]["status"] == "SUCCESS"


def _close_date_covers(soql: str, day: date) -> bool:
    if f"CloseDate = {day}" in soql:
        return True
    intervals = re.findall(r"CloseDate >= (\d{4}-\d{2}-\d{2}) AND CloseDate <= (\d{4}-\d{2}-\d{2})", soql)
    return any(date.fromisoformat(first) <= day <= date.fromisoformat(last) for first, last in intervals)


def test_each_partition_shows_its_own_values(ui: tuple[DagsterUI, Any], launched: dict[str, Any]) -> None:
    client, platform = ui
    days = [launched["first"], launched["first"] + timedelta(days=HISTORY_WINDOW_DAYS // 2), launched["today"]]
    keys = [f"{CONNECTION}|{day}" for day in days]
    found = client.query(MATERIALIZATIONS, k={"path": ["salesforce", "win_rate"]}, p=keys)["assetOrError"][
        "assetMaterializations"
    ]
    latest: dict[str, dict[str, Any]] = {}
    for event in found:  # newest first
        latest.setdefault(event["partition"], {e["label"]: e for e in event["metadataEntries"]})
    assert sorted(latest) == sorted(keys)
    batches = {b["partition_key"]: b for b in platform.metric_store.batches(CONNECTION) if b["metric"] == "win_rate"}
    stored = platform.metric_store.read(connection_id=CONNECTION, metric="win_rate")
    for day, key in zip(days, keys):
        shown, batch = latest[key], batches[key]
        assert shown["dagster/row_count"]["intValue"] == batch["row_count"]
        assert (
            shown["api_calls"]["intValue"] == batch["api_calls"]
            and shown["rows_returned"]["intValue"] == batch["records_read"]
        )
        assert shown["bytes_read"]["intValue"] == batch["bytes_read"]
        # The query shown is the one that computed this day: its own one-day query, or the range query
        # (one per metric for the run's days) whose CloseDate interval holds the day.
        assert _close_date_covers(shown["soql"]["mdStr"], day), shown["soql"]["mdStr"]
        table = shown["result"]["mdStr"]
        if any(r["period"] == day for r in stored):
            assert f"| {day.isoformat()} |" in table  # that day's rows, not the last day's
        assert all(f"| {other.isoformat()} |" not in table for other in days if other != day)


def test_daily_partitions_are_the_history_window_and_none_is_missing(
    ui: tuple[DagsterUI, Any], launched: dict[str, Any]
) -> None:
    client, _platform = ui
    for name in DAILY_METRICS:
        node = client.query(
            "query($k: AssetKeyInput!) { assetNodeOrError(assetKey: $k) { ... on AssetNode {"
            " partitionStats { numMaterialized numPartitions numFailed numMaterializing } } } }",
            k={"path": ["salesforce", name]},
        )["assetNodeOrError"]
        stats = node["partitionStats"]
        assert stats["numPartitions"] == HISTORY_WINDOW_DAYS  # one connection x the window's days
        missing = stats["numPartitions"] - stats["numMaterialized"] - stats["numFailed"] - stats["numMaterializing"]
        assert missing == 0, stats


def test_lineage_runs_from_source_objects_to_metrics(ui: tuple[DagsterUI, Any]) -> None:
    client, _platform = ui
    nodes = client.query("{ assetNodes { assetKey { path } dependencyKeys { path } isExecutable kinds } }")[
        "assetNodes"
    ]
    by_key = {"/".join(n["assetKey"]["path"]): n for n in nodes}
    upstream = {key: {"/".join(d["path"]) for d in n["dependencyKeys"]} for key, n in by_key.items()}
    assert upstream["salesforce/win_rate"] == {"salesforce/source/Opportunity"}
    assert upstream["salesforce/lead_conversion"] == {"salesforce/source/Lead"}
    assert upstream["salesforce/case_volume"] == {"salesforce/source/Case"}
    assert upstream["jira/throughput"] == {"jira/source/boards"} and upstream["jira/created_vs_resolved"] == {
        "jira/source/projects"
    }
    assert upstream["bigquery/metric_specs"] == {"bigquery/source/selected_tables"}
    source = by_key["salesforce/source/Opportunity"]
    assert source["isExecutable"] is False and "salesforce" in source["kinds"]
    metrics = [key for key in by_key if "/source/" not in key]
    assert all(upstream[key] for key in metrics), [key for key in metrics if not upstream[key]]


def test_a_schedule_with_nothing_to_do_says_why(ui: tuple[DagsterUI, Any]) -> None:
    client, _platform = ui
    result = client.query(
        "mutation($s: ScheduleSelector!, $t: Float) { scheduleDryRun(selectorData: $s, timestamp: $t) { __typename"
        " ... on DryRunInstigationTick { evaluationResult { skipReason runRequests { runKey } error { message } } } } }",
        s={**REPO_SELECTOR, "scheduleName": "jira_nightly_daily_schedule"},
        t=time.time(),
    )["scheduleDryRun"]
    assert result["evaluationResult"]["error"] is None, result
    assert result["evaluationResult"]["skipReason"] == "no active jira connection"


def test_one_connections_runs_never_overlap_on_the_embedded_instance(
    ui: tuple[DagsterUI, Any], launched: dict[str, Any]
) -> None:
    client, _platform = ui
    config = client.query("{ instance { runQueueConfig { maxConcurrentRuns tagConcurrencyLimitsYaml } } }")["instance"][
        "runQueueConfig"
    ]
    assert "dfx/connection" in config["tagConcurrencyLimitsYaml"]
    daily, snapshot = launched["daily"], launched["snapshot"]
    # Launched together; the queue held the second until the first ended.
    assert daily["endTime"] <= snapshot["startTime"] or snapshot["endTime"] <= daily["startTime"], (daily, snapshot)
