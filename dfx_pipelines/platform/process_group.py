"""Run a long-lived command (`dagster dev`: webserver, daemon, code servers) in a process group of its
own, and end that whole group when we are interrupted (Ctrl-C, SIGTERM) or the command ends: nothing
it started may outlive us. The group is ours alone, so ending it touches no other process."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

GRACE_SECONDS = 10.0  # SIGTERM first (dagster shuts its children down cleanly), then SIGKILL


def stop_group(process: subprocess.Popen, grace: float = GRACE_SECONDS) -> None:
    """SIGTERM the process's group, wait up to `grace` seconds, then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; its children may still be shutting down: they get the same grace.
        if not _group_alive(process.pid, wait):
            return


def _group_alive(pgid: int, wait: float) -> bool:
    import time

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        time.sleep(0.1)
    return True


class _Interrupted(Exception):
    pass


def run_in_own_group(args: Sequence[str], *, cwd: Path | None = None) -> int:
    """Run `args` in a new session; SIGINT or SIGTERM to us ends its whole group. Returns its exit code
    (or 130 when interrupted)."""

    def interrupted(signum: int, frame: FrameType | None) -> None:
        raise _Interrupted(signum)

    previous = {sig: signal.signal(sig, interrupted) for sig in (signal.SIGINT, signal.SIGTERM)}
    process = None
    try:
        process = subprocess.Popen(list(args), cwd=cwd, start_new_session=True)
        return process.wait()
    except _Interrupted:
        return 130
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        if process is not None:
            stop_group(process)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
