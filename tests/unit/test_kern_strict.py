"""Strict mode (rumpkern/strict.py): an exception out of a callback on a scheduler fails
the next call on it; outside strict mode it is logged and counted."""

from __future__ import annotations

import asyncio
import errno
import logging
import random
import socket
import time
from collections.abc import Iterator

import pytest

from rumpkern import rump_init
from rumpkern.sched import VIRTUAL_EPOCH, Scheduler
from rumpkern.strict import KernelInternalError, parse_strict, read_log, take_unraised
from rumpnet.netinet.tcp import TH_SYN, TcpRepr, emit
from rumpnet.netinet.tcp_subr import TcpProtocol
from rumpnet.netinet.tcp_var import TcpParams


class Boom(Exception):
    """The bug a test plants."""


def boom(*_args: object) -> None:
    raise Boom("planted")


_made: list[Scheduler] = []


def new_sched(virtual: bool = True) -> Scheduler:
    """A scheduler of this test, its loop closed afterwards (no ResourceWarning later)."""
    sched = Scheduler(virtual=virtual)
    _made.append(sched)
    return sched


def strict_sched(virtual: bool = True) -> Scheduler:
    sched = new_sched(virtual)
    sched.errors.strict = True
    return sched


@pytest.fixture(autouse=True)
def _close_loops() -> Iterator[None]:
    yield
    while _made:
        sched = _made.pop()
        if sched.background:
            sched.stop_background()
        if not sched.loop.is_running() and not sched.loop.is_closed():
            sched.loop.close()


def test_timer_error_raises_in_run_for_at_once() -> None:
    sched = strict_sched()
    sched.call_later(1.0, boom)
    with pytest.raises(KernelInternalError) as ei:
        sched.run_for(5.0)
    assert isinstance(ei.value.__cause__, Boom)
    assert ei.value.__cause__.__traceback__ is not None  # the original traceback, chained
    assert "Boom: planted" in str(ei.value)
    assert sched.now() == VIRTUAL_EPOCH + 1.0  # the call ended at the error, not at 5 s
    assert take_unraised() == []  # raised: nothing left for the test harness
    sched.run_for(1.0)  # raised once


def test_sleeping_call_is_woken_by_the_error() -> None:
    k = rump_init(clock="virtual", seed=1, scheduler=strict_sched())
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 9))
    k.sched.call_later(2.0, boom)
    with pytest.raises(KernelInternalError):
        k.rump_sys_recv(fd, 10, 0)  # nothing will ever arrive: without strict, a stall
    assert k.clock_now() == VIRTUAL_EPOCH + 2.0
    k.halt()


def test_error_before_a_call_raises_in_it_and_halt_still_works() -> None:
    k = rump_init(clock="virtual", seed=1, scheduler=strict_sched())
    k.sched.call_soon(boom)
    k.sched.loop.run_until_complete(asyncio.sleep(0))  # the loop ran, no call was made
    assert k.sched.errors.pending
    k.halt()  # halting never raises it: the kernel must come down after a failure
    assert k.halted
    with pytest.raises(KernelInternalError):
        k.sched.run(lambda: None)


def test_unraised_errors_are_left_for_the_harness() -> None:
    sched = strict_sched()
    sched.call_soon(boom)
    sched.call_soon(boom)
    sched.loop.run_until_complete(asyncio.sleep(0))
    left = take_unraised()
    assert [type(e.exc) for e in left] == [Boom, Boom]
    assert "Boom: planted" in left[0].format() and "Traceback" in left[0].format()
    assert not sched.errors.pending  # taken (reported): not raised again in a later call
    sched.run_for(0)


def test_one_call_raises_all_pending_errors_once() -> None:
    sched = strict_sched()
    sched.call_soon(boom)
    sched.call_soon(boom)
    sched.loop.run_until_complete(asyncio.sleep(0))
    with pytest.raises(KernelInternalError) as ei:
        sched.run_for(0)
    assert "1 more internal error" in "".join(ei.value.__notes__)
    assert take_unraised() == []
    sched.run_for(0)


def test_production_logs_and_counts(caplog: pytest.LogCaptureFixture) -> None:
    sched = new_sched()
    sched.errors.strict = False
    sched.call_later(1.0, boom)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        sched.run_for(2.0)
    assert sched.errors.count == 1
    assert any(r.exc_info and r.exc_info[0] is Boom for r in caplog.records)
    assert take_unraised() == []


def test_background_thread_error_reaches_a_waiting_thread() -> None:
    """Real clock, the loop on its own thread: an error there ends a blocked call made
    from this thread (handed over) at once."""
    k = rump_init(clock="real", seed=1, scheduler=strict_sched(virtual=False))
    k.serve_background()
    try:
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k.rump_sys_bind(fd, ("127.0.0.1", 9))
        k.sched.call_soon_threadsafe(k.sched.call_later, 0.05, boom)
        t0 = time.monotonic()
        with pytest.raises(KernelInternalError) as ei:
            k.rump_sys_recv(fd, 10, 0)
        assert time.monotonic() - t0 < 5.0
        assert ei.value.__cause__ is not None and isinstance(ei.value.__cause__, Boom)
        assert take_unraised() == []
    finally:
        k.halt()
        k.stop_background()


@pytest.mark.asyncio
async def test_coroutine_calls_raise_it() -> None:
    k = rump_init(clock="real", seed=1, strict=True)
    try:
        fd = await k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        await k.rump_sys_bind(fd, ("127.0.0.1", 9))
        asyncio.get_running_loop().call_later(0.01, boom)
        with pytest.raises(KernelInternalError):
            await asyncio.wait_for(k.rump_sys_recv(fd, 10, 0), 5)  # woken, not timed out
        asyncio.get_running_loop().call_soon(boom)
        await asyncio.sleep(0)
        with pytest.raises(KernelInternalError):
            await k.rump_sys_close(fd)  # the next call, even one that would not sleep
    finally:
        k.halt()


def test_knobs(monkeypatch: pytest.MonkeyPatch) -> None:
    k = rump_init(clock="virtual", seed=1, scheduler=new_sched(), strict=False)
    assert not k.sched.errors.strict
    assert k.sysctl("-n", "kern.strict").strip() == "0"
    k.sysctl("-w", "kern.strict=1")
    assert k.sched.errors.strict
    with pytest.raises(OSError):
        k.sysctl("-w", "kern.strict=2")
    k.halt()
    monkeypatch.setenv("RUMP_STRICT", "0")
    assert not new_sched().errors.strict
    monkeypatch.setenv("RUMP_STRICT", "1")
    assert new_sched().errors.strict
    monkeypatch.setenv("RUMP_STRICT", "maybe")
    with pytest.raises(OSError) as ei:
        Scheduler(virtual=True)
    assert ei.value.errno == errno.EINVAL and "RUMP_STRICT" in str(ei.value) and "valid" in str(ei.value)
    assert parse_strict("on") and not parse_strict("")


@pytest.mark.parametrize("strict", [False, True])
def test_tcp_catch_all_counts_and_reraises_when_strict(strict: bool) -> None:
    def output(src: int, dst: int, segment: bytes) -> None:
        raise Boom("output broke")

    proto = TcpProtocol(TcpParams(), random.Random(1), output, strict=lambda: strict)
    syn = emit(TcpRepr(4000, 80, 1, 0, TH_SYN, 1024), 2, 1)  # to a closed port: a RST goes out
    if strict:
        with pytest.raises(Boom):
            proto.input(2, 1, syn, 0.0)
    else:
        proto.input(2, 1, syn, 0.0)
    assert proto.stats.tcps_rcvinternalerr == 1


def test_log_lines_of_other_processes(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    log = str(tmp_path / "errors.log")  # type: ignore[operator]
    monkeypatch.setenv("RUMP_STRICT_LOG", log)
    sched = strict_sched()
    sched.call_soon(boom)
    with pytest.raises(KernelInternalError):
        sched.run_for(0)
    mine, off = read_log(log)
    assert len(mine) == 1 and "Boom: planted" in mine[0]["traceback"]
    others, off2 = read_log(log, 0, skip_pid=mine[0]["pid"])
    assert others == [] and off2 == off
    assert read_log(log, off) == ([], off)


def test_an_unretrieved_task_exception_is_not_an_internal_error(caplog: pytest.LogCaptureFixture) -> None:
    """A task nobody awaited reports its exception when it is collected, at no particular
    time: that belongs to the code that made the task (logged), not to the kernel."""
    import gc

    sched = strict_sched()

    async def fails() -> None:
        raise Boom("in a task")

    task = sched.loop.create_task(fails())
    sched.run_for(0.1)
    assert task.done()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        del task
        gc.collect()
    assert any("never retrieved" in r.getMessage() for r in caplog.records)
    assert sched.errors.count == 0 and not sched.errors.pending and take_unraised() == []
