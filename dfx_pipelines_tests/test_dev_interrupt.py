"""Ctrl-C (SIGINT) or SIGTERM on `dfx dev` stops everything it started within seconds: the Dagster
webserver, the daemon, their code servers and run workers, and the sandboxes."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.timeout(420)
def test_ctrl_c_on_dfx_dev_leaves_nothing_running(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DFX_", "DAGSTER_", "SALESFORCE_"))}
    env["DFX_HOME"] = str(tmp_path / ".dfx")
    port = _free_port()
    dfx = str(Path(sys.executable).with_name("dfx"))
    # Its own session, as a terminal gives it; the signal goes to dfx alone, as `kill` would send it.
    dev = subprocess.Popen(
        [dfx, "dev", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    started: set[int] = set()
    try:
        deadline = time.monotonic() + 300
        while True:
            assert dev.poll() is None, dev.stdout.read() if dev.stdout else ""
            try:
                if requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "dfx dev did not start the UI"
            time.sleep(1)
        time.sleep(3)  # let the daemon start too
        started = _descendants(dev.pid)
        assert len(started) >= 2  # dagster dev, the webserver, the daemon, code servers...
        began = time.monotonic()
        os.kill(dev.pid, signal.SIGINT)  # SIGTERM takes the same path
        dev.wait(60)
        left = {pid for pid in started if _alive(pid)}
        while left and time.monotonic() - began < 30:
            time.sleep(0.5)
            left = {pid for pid in left if _alive(pid)}
        assert not left, f"still running after {time.monotonic() - began:.0f}s: {left}"
        assert time.monotonic() - began < 30
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/server_info", timeout=5)
    finally:
        # Only what this test started: dfx dev and its descendants, recognised by this test's folder.
        ours = (_descendants(dev.pid) | {dev.pid}) if dev.poll() is None else set()
        ours |= {pid for pid in started if _alive(pid) and str(tmp_path) in _cmdline(pid)}
        for pid in ours:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "ignore")
    except OSError:
        return ""
