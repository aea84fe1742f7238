"""Find and stop the processes a test left behind in its work directory.

A daemon started by a test (``rump_server`` detaches: double fork, setsid) is no child of
the test and outlives it when the test is interrupted at the wrong moment; but it keeps
the directory it was started in as its working directory. :func:`reap_cwd` finds every
process whose working directory is inside a given directory (Linux's ``/proc/PID/cwd``)
and stops it: SIGTERM, then SIGKILL for what is still there after ``grace`` seconds.
"""

from __future__ import annotations

import os
import signal
import time


def processes_in(directory: str) -> list[int]:
    """Pids (other than ours) whose working directory is ``directory`` or below it."""
    root = os.path.realpath(directory)
    found = []
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:  # no procfs: nothing to find
        return []
    for pid in pids:
        if pid == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if cwd == root or cwd.startswith(root + os.sep):
            found.append(pid)
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return False


def reap_cwd(directory: str, grace: float = 3.0) -> list[int]:
    """Stop every process working in ``directory``; returns the pids that were signalled."""
    pids = processes_in(directory)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return pids
