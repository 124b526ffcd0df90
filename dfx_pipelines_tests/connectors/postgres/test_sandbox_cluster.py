"""The sandbox cluster never outlives the process that started it: `dfx sandbox serve` stopped with SIGTERM
(no `finally` runs) still leaves no server running and no folder behind."""

import subprocess
import sys
import time
from pathlib import Path

SCRIPT = """
import sys, time
from pathlib import Path
from dfx_pipelines.platform.sandbox import SandboxCA
from dfx_pipelines.connectors.postgres.sandbox import start_cluster
cluster = start_cluster(SandboxCA(Path(sys.argv[1])))
print(cluster.folder, flush=True)
time.sleep(600)
"""


def test_a_cluster_does_not_outlive_its_owner(tmp_path: Path) -> None:
    owner = subprocess.Popen([sys.executable, "-c", SCRIPT, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        folder = Path(owner.stdout.readline().strip())  # type: ignore[union-attr]
        pid = int((folder / "data" / "postmaster.pid").read_text().split()[0])
        assert running(pid)
    finally:
        owner.terminate()
        owner.wait(timeout=30)
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not folder.exists()
    assert not running(pid)


def running(pid: int) -> bool:
    """Whether `pid` still runs: a zombie (stopped, not yet reaped by a container's init) does not."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"
