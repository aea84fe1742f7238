"""A system call made in a coroutine and never awaited does not pass in silence (issue 16).

In a coroutine every ``rump_sys_*`` call returns an awaitable. A forgotten ``await`` used
to lose the call's error without a word, and the awaitable handed on as an fd surfaced
later as EBADF with the awaitable in the message.
"""

from __future__ import annotations

import errno
import gc
import socket

import pytest

from rumpkern import rump_init
from rumpkern.unawaited import UnawaitedSyscallWarning


@pytest.mark.asyncio
async def test_a_forgotten_await_warns_with_the_call_its_place_and_its_lost_error() -> None:
    k = rump_init(clock="virtual", seed=1)
    fd = await k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.warns(UnawaitedSyscallWarning) as rec:
        k.rump_sys_bind(fd, ("10.9.9.9", 7))  # not an address of this kernel: EADDRNOTAVAIL
        gc.collect()
    assert len(rec) == 1, [str(r.message) for r in rec]
    w = rec[0]
    assert w.filename == __file__ and "rump_sys_bind() was never awaited" in str(w.message)
    assert f"(at {__file__}:" in str(w.message)
    assert "its error was lost: OSError: [Errno 99]" in str(w.message)
    k.halt()
    assert k.halted  # halt in a coroutine is done, not an awaitable to forget


@pytest.mark.asyncio
async def test_an_awaited_call_does_not_warn() -> None:
    import warnings

    k = rump_init(clock="virtual", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnawaitedSyscallWarning)
        fd = await k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        with pytest.raises(OSError) as ei:
            await k.rump_sys_bind(fd, ("10.9.9.9", 7))
        assert ei.value.errno == errno.EADDRNOTAVAIL
        gc.collect()
    k.halt()


@pytest.mark.asyncio
async def test_an_unawaited_fd_passed_on_is_a_type_error_that_says_await() -> None:
    k = rump_init(clock="virtual", seed=1)
    with pytest.warns(UnawaitedSyscallWarning, match=r"rump_sys_socket\(\) was never awaited"):
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)  # forgot await
        with pytest.raises(TypeError, match="not awaited; write 'await' before it"):
            await k.rump_sys_bind(fd, ("0.0.0.0", 9))
        del fd
        gc.collect()
    with pytest.raises(OSError) as ei:  # a number that is no descriptor stays EBADF
        await k.rump_sys_bind(77, ("0.0.0.0", 9))
    assert ei.value.errno == errno.EBADF
    k.halt()


FORGETFUL = '''
import socket, pytest
from rumpkern import rump_init
from rumpkern.unawaited import UnawaitedSyscallWarning

@pytest.mark.asyncio
async def test_forgets_an_await():
    k = rump_init(clock="virtual", seed=1)
    fd = await k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("10.9.9.9", 7))
    k.halt()

@pytest.mark.asyncio
async def test_expects_the_warning():
    k = rump_init(clock="virtual", seed=1)
    fd = await k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.warns(UnawaitedSyscallWarning):
        k.rump_sys_bind(fd, ("10.9.9.9", 7))
    k.halt()
'''


pytest_plugins = ["pytester"]


def test_the_pytest_plugin_fails_a_test_that_forgot_an_await(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_inner=FORGETFUL)
    res = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    res.assert_outcomes(failed=1, passed=1)
    res.stdout.fnmatch_lines(["*rump_sys_bind() was never awaited (at *test_inner.py:9); its error was lost*"])
