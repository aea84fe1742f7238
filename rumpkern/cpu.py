"""The virtual CPU of a scheduler served by a thread of its own.

A rump kernel lives on its own: its softints and callouts run in kernel threads whether
or not the application is inside a call, and a thread that makes a call runs kernel code
directly on a virtual CPU it takes with ``rump_schedule()``. Here the serving thread runs
the scheduler's event loop (timers, drivers' fds, deliveries) and holds the CPU lock
except while it waits in ``select``; a calling thread takes the lock and runs the system
call itself, so a call costs what it costs when nobody else drives the loop, and the
serving thread takes over only what has to wait (``rumpkern/sched.py``).

Only an asyncio selector loop built here (:func:`new_cpu_loop`) gives the CPU up in
``select``; a scheduler on another loop (uvloop, a loop someone else runs) hands calls
to its serving thread instead.
"""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import threading
import weakref
from collections.abc import Callable


class CpuLock:
    """Who runs kernel code on this CPU now: the serving thread, or a calling thread.

    Re-entrant, so that kernel code that makes a call of its own (a command that runs a
    system call) does not deadlock on the CPU it already holds."""

    __slots__ = ("_lock", "owner", "serving", "__weakref__")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.owner: int | None = None  # a calling thread running kernel code directly
        self.serving: int | None = None  # the serving thread while it runs the loop
        _all_cpus.add(self)

    def acquire(self) -> int | None:
        """Take the CPU for a direct call; returns what :meth:`release` restores."""
        self._lock.acquire()
        previous = self.owner
        self.owner = threading.get_ident()
        return previous

    def release(self, previous: int | None) -> None:
        self.owner = previous
        self._lock.release()

    def held_by_me(self) -> bool:
        return self.owner == threading.get_ident()

    # -- the serving thread's side ------------------------------------------------
    def serve(self, run: Callable[[], None]) -> None:
        """Run the loop (``run``) on this thread, holding the CPU except in select."""
        with self._lock:
            self.serving = threading.get_ident()
            try:
                run()
            finally:
                self.serving = None

    def _reinit_after_fork(self) -> None:
        # The forking thread is the only one left: a lock some other thread held stays
        # held forever, and the serving thread is gone.
        self._lock = threading.RLock()
        self.owner = None
        self.serving = None


class _CpuSelector:
    """The loop's selector: the serving thread gives the CPU up while it waits."""

    def __init__(self, inner: selectors.BaseSelector, cpu: CpuLock) -> None:
        self._inner = inner
        self._cpu = cpu

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        cpu = self._cpu
        if cpu.serving != threading.get_ident():
            return self._inner.select(timeout)  # driven by calls: no lock in play
        cpu._lock.release()
        try:
            return self._inner.select(timeout)
        finally:
            cpu._lock.acquire()

    def __getattr__(self, name: str) -> object:
        return getattr(self._inner, name)


def wakeup_lost(loop: asyncio.AbstractEventLoop) -> str | None:
    """Why a thread waiting in ``loop``'s select can no longer be woken by another thread,
    or None (also when we cannot tell: uvloop, a selector other than epoll).

    ``call_soon_threadsafe`` wakes the waiter through the loop's self-pipe, which must be
    in the epoll set behind the selector's fd number. Code that closes a number it no
    longer owns (a double close) can close that epoll, and the number can then be reused
    by someone else's: the waiter sleeps in the wrong set forever, and every call handed
    to it waits forever. Asking the kernel to modify the self-pipe's entry in the set tells
    (ENOENT, EBADF or EINVAL when it is not ours any more), without touching the loop."""
    selector = getattr(loop, "_selector", None)
    inner = getattr(selector, "_inner", selector)
    epoll = getattr(inner, "_selector", None)
    wake = getattr(loop, "_ssock", None)
    if not isinstance(epoll, select.epoll) or wake is None or loop.is_closed() or epoll.closed:
        return None
    fd = wake.fileno()
    if fd < 0:
        return None
    try:
        epoll.modify(fd, select.EPOLLIN)
    except OSError as e:
        if loop.is_closed():
            return None  # closed meanwhile, by its owner
        return (f"its selector's epoll (fd {epoll.fileno()}) no longer holds its wake-up fd {fd} ({e.strerror}): "
                "the epoll was closed by code that did not own it (a double close), maybe reused")
    return None


def new_cpu_loop(cpu: CpuLock) -> asyncio.AbstractEventLoop:
    """A real-time selector loop whose serving thread gives ``cpu`` up in select."""
    selector = _CpuSelector(selectors.DefaultSelector(), cpu)
    return asyncio.SelectorEventLoop(selector)  # type: ignore[arg-type]


def threads_default() -> bool:
    """``RUMP_THREADS`` as rump(3) reads it: 0 turns kernel threads off (driven by calls)."""
    value = os.environ.get("RUMP_THREADS", "1").strip()
    try:
        return int(value) != 0
    except ValueError:
        raise ValueError(f"RUMP_THREADS must be an integer, not {value!r}") from None


_all_cpus: weakref.WeakSet[CpuLock] = weakref.WeakSet()
_after_fork: list[Callable[[], None]] = []


def at_fork_in_child(fn: Callable[[], None]) -> None:
    """Run ``fn`` in a forked child (after the CPU locks are reset)."""
    _after_fork.append(fn)


def _reinit_after_fork() -> None:
    for cpu in list(_all_cpus):
        cpu._reinit_after_fork()
    for fn in _after_fork:
        fn()


os.register_at_fork(after_in_child=_reinit_after_fork)
