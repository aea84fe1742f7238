"""SIGTERM to a pytest run of tests/netbsd (a CI timeout, ``timeout``, ``kill``) leaves no
rump_server running and no work directory behind (issue 16)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rumpnet.testing.procs import processes_in, reap_cwd

HERE = Path(__file__).resolve().parent


def _servers_in(root: str) -> list[int]:
    pids = []
    for pid in processes_in(root):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"rump_server" in cmdline:
            pids.append(pid)
    return pids


def test_sigterm_of_a_pytest_run_stops_its_rump_servers_and_removes_their_directories() -> None:
    root = tempfile.mkdtemp(prefix="sigterm", dir="/tmp")
    env = dict(os.environ, ATF_TMPDIR=root, PYTHONUNBUFFERED="1")
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-x",
         str(HERE / "test_t_arp.py"), "-k", "arp_command or arp_cache_expiration"],
        cwd=HERE.parents[1], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 120
        while len(_servers_in(root)) < 2 and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
        assert len(_servers_in(root)) >= 2, "the run never started its two rump_servers"
        time.sleep(0.5)  # into the middle of the test's commands
        run.send_signal(signal.SIGTERM)
        out, _ = run.communicate(timeout=60)
        # everything the run started is gone, within the time its teardown takes
        deadline = time.monotonic() + 10
        while (_servers_in(root) or os.listdir(root)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _servers_in(root) == [], out
        assert os.listdir(root) == [], (os.listdir(root), out)
        assert run.returncode != 0 and "SIGTERM" in out  # it says why it stopped
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        reap_cwd(root)
        shutil.rmtree(root, ignore_errors=True)


def test_a_child_the_test_forked_still_dies_of_sigterm() -> None:
    # pyroute2's netns helpers are forks of pytest, stopped with SIGTERM: such a child must
    # die of it, not run the teardown of the parent's fixtures (it removed their netns)
    pid = os.fork()
    if pid == 0:
        try:
            time.sleep(30)
        finally:
            os._exit(3)  # reached only if SIGTERM became an exception in the child
    time.sleep(0.2)
    os.kill(pid, signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGTERM, status
