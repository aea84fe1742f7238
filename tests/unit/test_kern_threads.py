"""A real-clock kernel's scheduler serves its loop from a thread of its own: the kernel
works while the application makes no call; a call still runs on the caller's thread when
the CPU is free; RUMP_THREADS=0 / threads=False keeps it driven by calls; the thread goes
with the last kernel, at exit and across fork."""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

from rumpkern import rump_init
from rumpkern.sched import Scheduler, Sleep, SyscallCtx, WaitChannel

pytestmark = pytest.mark.timeout(60)
_segs = itertools.count(1)


def _pair(**kw: Any) -> tuple[Any, Any]:
    sched = Scheduler(virtual=False, **kw)
    seg = f"thr{os.getpid()}-{next(_segs)}"
    kernels = []
    for i, addr in enumerate(("10.0.0.1/24", "10.0.0.2/24"), 1):
        k = rump_init(clock="real", seed=i, scheduler=sched, **kw)
        k.config.if_create("wire0")
        k.config.if_set_linkstr("wire0", seg)
        k.config.addr_add("wire0", addr)
        k.config.if_up("wire0")
        kernels.append(k)
    return kernels[0], kernels[1]


def _serving_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "rump-sched")


def _send_and_wait(a: Any, b: Any) -> int:
    """a sends one datagram to b (ARP first), then the application only sleeps; return how
    many datagrams b's UDP took in (read from its counter, not through a call)."""
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", 7))
    cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    before = b.inet.udpstat.udps_ipackets
    a.rump_sys_sendto(cli, b"while you sleep", 0, ("10.0.0.2", 7))
    deadline = time.monotonic() + 5
    while b.inet.udpstat.udps_ipackets == before and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(b.inet.udpstat.udps_ipackets - before)


def test_a_real_clock_kernel_works_while_the_application_makes_no_call() -> None:
    a, b = _pair()
    try:
        assert a.sched.threads and a.sched.background
        assert _send_and_wait(a, b) == 1  # ARP request, reply, the datagram: all served
    finally:
        a.halt()
        b.halt()


def test_threads_false_keeps_a_kernel_driven_by_calls() -> None:
    a, b = _pair(threads=False)
    try:
        assert not a.sched.threads and not a.sched.background
        assert _send_and_wait(a, b) == 0  # frozen until a call drives the CPU ...
        a.run_for(0.2)
        assert b.inet.udpstat.udps_ipackets == 1  # ... as one does now
    finally:
        a.halt()
        b.halt()


def test_rump_threads_0_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUMP_THREADS", "0")
    k = rump_init(clock="real", scheduler=Scheduler(virtual=False))
    assert not k.sched.threads and not k.sched.background
    k.halt()
    monkeypatch.setenv("RUMP_THREADS", "many")
    with pytest.raises(ValueError, match="RUMP_THREADS"):
        Scheduler(virtual=False)


def test_virtual_clock_kernels_are_never_served() -> None:
    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True))
    assert not k.sched.threads and not k.sched.background
    k.halt()
    with pytest.raises(ValueError):
        rump_init(clock="virtual", threads=True)
    with pytest.raises(ValueError):
        Scheduler(virtual=True, threads=True)


def test_a_call_runs_on_the_calling_thread_and_only_its_wait_is_handed_over() -> None:
    k = rump_init(clock="real", scheduler=Scheduler(virtual=False))
    sched = k.sched
    chan = WaitChannel("test")
    ran_on: list[int] = []

    def call(ctx: SyscallCtx) -> str:
        ran_on.append(threading.get_ident())
        assert sched.holds_cpu()
        if len(ran_on) == 1:
            sched.call_later(0.05, chan.wakeup)  # the serving thread wakes us
            raise Sleep(chan, 5.0)
        return "done"

    try:
        assert sched.syscall(call) == "done"
        assert ran_on[0] == threading.get_ident()  # the first attempt: right here
        assert ran_on[-1] != threading.get_ident()  # the retry after the wakeup: served
        assert not sched.holds_cpu()
    finally:
        k.halt()


def test_the_serving_thread_goes_with_the_last_kernel_and_comes_back_with_the_next() -> None:
    sched = Scheduler(virtual=False)
    a = rump_init(clock="real", scheduler=sched)
    b = rump_init(clock="real", scheduler=sched)
    assert sched.background
    a.halt()
    assert sched.background  # b still lives
    threads_before = _serving_threads()
    b.halt()
    assert not sched.background and _serving_threads() == threads_before - 1  # the thread ended
    c = rump_init(clock="real", scheduler=sched)
    assert sched.background
    c.stop_background()  # switched to driven by calls, and it stays so
    d = rump_init(clock="real", scheduler=sched)
    assert not sched.background
    c.serve_background()
    assert sched.background
    for k in (c, d):
        k.halt()
    assert not sched.background


def _python(code: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)


def test_the_interpreter_exits_with_kernels_still_serving() -> None:
    code = """
import socket, threading
from rumpkern import rump_init
k = rump_init(clock="real")
k.ifconfig("wire0", "create"); k.ifconfig("wire0", "linkstr", "exit-test"); k.ifconfig("wire0", "inet", "10.9.0.1/24", "up")
fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
k.rump_sys_bind(fd, ("0.0.0.0", 80)); k.rump_sys_listen(fd, 5)
threading.Thread(target=k.rump_sys_accept, args=(fd,), daemon=True).start()  # asleep in a call
print("serving", k.sched.background)
"""
    t0 = time.monotonic()
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip() == "serving True", r.stderr
    assert time.monotonic() - t0 < 20


def test_a_forked_child_boots_its_own_kernels() -> None:
    code = """
import os, socket
from rumpkern import rump_init
k = rump_init(clock="real")
pid = os.fork()
if pid == 0:
    c = rump_init(clock="real", hostname="child")
    ok = c.sched is not k.sched and c.sched.background and c.sysctl("kern.hostname") == "kern.hostname = child\\n"
    c.rump_sys_close(c.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0))
    c.halt()
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
k.rump_sys_close(k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0))
print("child", os.waitstatus_to_exitcode(status))
"""
    r = _python(code)
    assert r.returncode == 0 and r.stdout.strip() == "child 0", r.stderr
