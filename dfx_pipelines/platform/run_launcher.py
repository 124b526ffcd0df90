"""`LocalWorkerRunLauncher`: Dagster's default run launcher, plus the worker health check the monitoring
daemon needs to fail a STARTED run whose worker process is gone.

Dagster 1.13.27's `DefaultRunLauncher` reports `supports_check_run_worker_health = False`, so run
monitoring never looks at a STARTED run's worker. A worker that dies under a living code server is still
failed (the code server's orphan check), but two dead runs were not: a worker killed together with its
code server (`dagster dev` or a host killed with SIGKILL), and a run executed in process by `dfx demo`
whose process was killed. Both stayed STARTED forever, holding their connection's only run slot.

The check: the run worker's pid comes from the run's own engine events ("Started process for run (pid:
N)" from a code server, "Executing steps in process (pid: N)" in process); the run's worker is alive
while that pid is. A pid is only meaningful on the host that started it, so it is checked only when the
run was launched through a code server on this host (a loopback or socket address), or, with
`check_in_process_runs` (the embedded instance, where everything runs on this machine), for in-process
runs. Anything else answers RUNNING: not knowing is not a reason to fail a run. `max_resume_run_attempts`
stays 0: this launcher cannot resume a run in a new worker.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any

from dagster import DefaultRunLauncher, Field
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import GRPC_INFO_TAG
from dagster._serdes import ConfigurableClassData

_WORKER_PID = re.compile(
    r"^(?:Started process for run|Executing steps in process|Executing steps using multiprocess executor: parent process) \(pid: (\d+)\)"
)
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, owned by someone else
    return True


class LocalWorkerRunLauncher(DefaultRunLauncher):
    def __init__(self, inst_data: ConfigurableClassData | None = None, check_in_process_runs: bool = False):
        super().__init__(inst_data=inst_data)
        self.check_in_process_runs = check_in_process_runs

    @classmethod
    def config_type(cls) -> dict[str, Any]:
        return {"check_in_process_runs": Field(bool, is_required=False, default_value=False)}

    @classmethod
    def from_config_value(
        cls, inst_data: ConfigurableClassData, config_value: Mapping[str, Any]
    ) -> LocalWorkerRunLauncher:
        return cls(inst_data=inst_data, **config_value)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        if not self._worker_is_local(run):
            return CheckRunHealthResult(WorkerStatus.RUNNING, "worker runs on another host: not checked")
        pid = self._worker_pid(run)
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "no worker pid recorded yet")
        if process_alive(pid):
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {pid} is alive")
        return CheckRunHealthResult(WorkerStatus.FAILED, f"run worker process {pid} is gone")

    def _worker_is_local(self, run: DagsterRun) -> bool:
        grpc_info = run.tags.get(GRPC_INFO_TAG)
        if grpc_info is None:
            return self.check_in_process_runs
        try:
            where = json.loads(grpc_info)
        except ValueError:
            return False
        return "socket" in where or str(where.get("host", "")).lower() in _LOCAL_HOSTS

    def _worker_pid(self, run: DagsterRun) -> int | None:
        from dagster import DagsterEventType

        for entry in self._instance.all_logs(run.run_id, of_type=DagsterEventType.ENGINE_EVENT):
            found = _WORKER_PID.match((entry.dagster_event.message if entry.dagster_event else "") or "")
            if found:
                return int(found.group(1))
        return None
