"""No call waits forever on a real-clock kernel's serving thread.

* a call run directly on the calling thread wakes the serving thread for the callbacks it
  queued, also when that thread took other callbacks off the queue just before;
* a serving thread that can no longer be woken (its loop's epoll closed under it by a
  double close and the number reused: it sleeps in someone else's set) makes calls handed
  to it, and the request to stop serving, fail with SchedulerStuck instead of hanging; a
  hijacked socket's own timeout is honoured meanwhile;
* pytest-timeout interrupts a test blocked in a kernel call or a hijacked socket's wait:
  the test fails and the run goes on.
"""

from __future__ import annotations

import asyncio
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import rumpkern.sched as sched_mod
from rumpkern import rump_init
from rumpkern.cpu import CpuLock, wakeup_lost
from rumpkern.kernel import Kernel
from rumpkern.sched import Scheduler, SchedulerStuck
from rumpnet.hijack import hijack

pytestmark = pytest.mark.timeout(60)


def test_a_direct_call_wakes_the_serving_thread_for_what_it_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    """The serving thread runs callback X while a call is about to take the CPU; the call
    then queues Y: the ready queue is as long as before, yet Y is new and the serving
    thread sleeps in select without a timeout (no timers here). The call must wake it."""
    arrived, x_ran = threading.Event(), threading.Event()

    class GatedCpu(CpuLock):
        """A calling thread takes the CPU only once the serving thread has run X."""

        def acquire(self) -> int | None:
            arrived.set()
            assert x_ran.wait(10)
            return super().acquire()

    monkeypatch.setattr(sched_mod, "CpuLock", GatedCpu)
    sched = Scheduler(virtual=False, threads=True)
    sched.start_background()
    y_ran = threading.Event()
    lock = sched._cpu._lock  # type: ignore[union-attr]
    try:
        with lock:  # the serving thread wakes for X but cannot run it yet
            sched.loop.call_soon_threadsafe(x_ran.set)
            caller = threading.Thread(target=sched.run, args=(lambda: sched.loop.call_soon(y_ran.set),))
            caller.start()
            assert arrived.wait(10)  # the call has looked at the queue (X still on it)
        caller.join(10)
        assert y_ran.wait(5), "the serving thread slept on with the call's callback queued"
    finally:
        sched.stop_background()
        sched.loop.close()


@contextmanager
def _epoll_stolen(sched: Scheduler) -> Iterator[None]:
    """What a double close does to a serving loop: its epoll's fd number now names
    another epoll set, and the serving thread sleeps there. Restored at the end."""
    epfd = sched.loop._selector._inner._selector.fileno()  # type: ignore[attr-defined]
    saved = os.dup(epfd)  # keeps the loop's own set alive
    foreign = select.epoll()
    r, w = os.pipe()
    os.dup2(foreign.fileno(), epfd)
    try:
        # If it still sleeps in its own set, this wakes it once more; then (or already)
        # it sleeps in the foreign one.
        woke = threading.Event()
        sched.loop.call_soon_threadsafe(woke.set)
        woke.wait(1)
        yield
    finally:
        os.dup2(saved, epfd)
        os.close(saved)
        foreign.register(r, select.EPOLLIN)
        os.write(w, b"x")  # out of the foreign set: it selects on its own again
        sched.stuck = None
        time.sleep(0.1)
        foreign.close()
        os.close(r)
        os.close(w)


def _served_kernel() -> Kernel:
    return rump_init(clock="real", scheduler=Scheduler(virtual=False, threads=True))


def _halt_and_close(k: Kernel) -> None:
    """Halt the test's kernel and close its scheduler's loop, after running what was handed
    to the loop while it could not be woken (a call's task that never started would be
    dropped unstarted by close(): "coroutine ... was never awaited" in a later test)."""
    sched = k.sched
    k.halt()
    assert not sched.background
    sched.loop.run_until_complete(asyncio.sleep(0.05))
    sched.loop.close()


def test_a_serving_thread_that_cannot_be_woken_fails_calls_instead_of_hanging() -> None:
    k = _served_kernel()
    sched = k.sched
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 7))
    try:
        with _epoll_stolen(sched):
            assert wakeup_lost(sched.loop) is not None
            t0 = time.monotonic()
            with pytest.raises(SchedulerStuck, match="cannot be woken"):
                k.rump_sys_recv(fd, 100, 0)  # sleeps: its wait goes to the serving thread
            with pytest.raises(SchedulerStuck):
                sched.stop_background()
            assert time.monotonic() - t0 < 10
            assert sched.stuck is not None
        assert wakeup_lost(sched.loop) is None
    finally:
        _halt_and_close(k)


def test_a_hijacked_socket_times_out_while_the_serving_thread_cannot_be_woken() -> None:
    k = _served_kernel()
    try:
        with hijack(k):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            s.settimeout(0.5)
            with _epoll_stolen(k.sched):
                t0 = time.monotonic()
                with pytest.raises(TimeoutError):
                    s.recv(100)
                assert time.monotonic() - t0 < 5
            s.close()
    finally:
        _halt_and_close(k)


_BLOCKED = '''
import socket
import pytest
from rumpkern import rump_init
from rumpnet.hijack import hijack

rump_init(clock="real").halt()  # the imports a boot makes, done before the timeouts run


@pytest.fixture
def k():
    k = rump_init(clock="real")
    yield k
    k.halt()


@pytest.mark.timeout(2)
def test_kernel_call(k):
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 7))
    k.rump_sys_recv(fd, 100, 0)  # nothing ever comes: waits for the serving thread


@pytest.mark.timeout(2)
def test_hijacked_recv(k):
    with hijack(k):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 7))
        s.recv(100)  # blocking, no timeout: waits on the readiness fd


def test_after(k):
    assert k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0) >= 0
'''


def test_pytest_timeout_interrupts_a_test_blocked_in_a_call(tmp_path: Path) -> None:
    (tmp_path / "test_blocked.py").write_text(_BLOCKED)
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                        str(tmp_path / "test_blocked.py")], capture_output=True, text=True, timeout=50,
                       cwd=tmp_path, env=dict(os.environ, RUMP_THREADS="1"))
    assert "2 failed, 1 passed" in r.stdout, r.stdout + r.stderr
    assert r.stdout.count("Timeout (>2.0s)") >= 2, r.stdout
    assert time.monotonic() - t0 < 40


def test_a_default_scheduler_that_cannot_be_woken_is_not_booted_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread's default real-clock scheduler lives across tests; if a double close
    elsewhere took its epoll, the next boot gets a fresh scheduler (with a warning naming
    why) instead of a kernel whose serving thread would sleep forever."""
    monkeypatch.setattr(sched_mod._local, "real", None, raising=False)  # a served (selector) loop
    k = rump_init(clock="real")
    old = k.sched
    k.halt()
    with _epoll_stolen(old):
        with pytest.warns(RuntimeWarning, match="can no longer be woken"):
            k2 = rump_init(clock="real")
        try:
            assert k2.sched is not old
            fd = k2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
            k2.rump_sys_bind(fd, ("127.0.0.1", 0))
            k2.serve_background()
            k2.stop_background()  # the fresh loop can be woken
        finally:
            k2.halt()
    old.stuck = None


def test_a_forked_child_leaves_the_parents_loops_alone() -> None:
    """An epoll set is shared across fork: a child that closed its copy of the parent's
    loop (as garbage collection of an unclosed loop does) unregistered the loop's wake-up
    fd from the parent's set, and the parent's serving thread slept through every
    call_soon_threadsafe (found through the packetdrill suite's ProcessPoolExecutor
    workers: the next served kernel in the parent hung, then raised SchedulerStuck)."""
    import gc

    # A fresh served (selector) default scheduler, held by nothing but the thread's
    # defaults (which the child forgets) and this frame (which the child clears).
    sched_mod._local.real = None
    k = rump_init(clock="real")
    sched = k.sched
    k.halt()
    pid = os.fork()
    if pid == 0:  # the child drops every reference it inherited, as a pool worker's run does
        k = sched = None  # type: ignore[assignment]
        gc.collect()
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert wakeup_lost(sched.loop) is None
    k2 = rump_init(clock="real")
    assert k2.sched is sched
    try:
        fd = k2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k2.rump_sys_bind(fd, ("127.0.0.1", 0))
        k2.serve_background()
        k2.stop_background()
    finally:
        k2.halt()
