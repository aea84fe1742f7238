"""The scheduler: one virtual CPU (an asyncio loop) for the kernels on it.

All protocol code of the kernels on a scheduler runs on the thread that currently drives
its loop, in callbacks, without locks (lwIP's NO_SYS model, rump's ``rump_schedule()``).

Three ways in, one implementation (``Scheduler.syscall``):

* a plain thread with nobody driving the loop: it *becomes* the CPU, runs the call
  directly and, if the call sleeps, drives the loop until the call completes;
* a thread while another thread drives (or the loop serves in the background): the call
  is handed to the loop with ``call_soon_threadsafe`` and the thread waits; if the driver
  stops before the call finished, a waiting thread takes over driving;
* a coroutine on the loop itself: the call returns an awaitable.

A system call is a plain function that returns its result or raises :class:`Sleep` with
the wait channels to sleep on (NetBSD's ``tsleep``/``wakeup``); the driver retries it when
a channel is woken up or the sleep times out.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import os
import selectors
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Iterable
from typing import Any, TypeVar

from rumpkern.strict import InternalErrors

T = TypeVar("T")

# The virtual clock starts here (seconds); an arbitrary, fixed origin keeps pcap files
# of virtual-time runs byte-identical from run to run.
VIRTUAL_EPOCH = 1_000_000_000.0


class WaitChannel:
    """Something a system call can sleep on; ``wakeup()`` makes every sleeper retry."""

    __slots__ = ("_waiters", "name")

    def __init__(self, name: str = "") -> None:
        self.name = name
        self._waiters: list[asyncio.Future[None]] = []

    def _register(self, fut: asyncio.Future[None]) -> None:
        self._waiters.append(fut)

    def wakeup(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def has_waiters(self) -> bool:
        return bool(self._waiters)


class Sleep(Exception):
    """Raised by a system call that must wait: sleep on ``chans`` for at most ``timeout``
    seconds (``None``: no limit), then the call is made again."""

    def __init__(self, chans: WaitChannel | Iterable[WaitChannel], timeout: float | None = None):
        super().__init__()
        self.chans: tuple[WaitChannel, ...] = (chans,) if isinstance(chans, WaitChannel) else tuple(chans)
        self.timeout = timeout


class SyscallCtx:
    """Per-call scratch space that survives retries (progress of a partial send, ...).

    ``timed_out`` is set before the last retry when the sleep timeout expired; the call
    then returns what it has or raises EWOULDBLOCK, as a BSD kernel does for SO_RCVTIMEO.
    """

    __slots__ = ("timed_out", "deadline", "progress", "data")

    def __init__(self) -> None:
        self.timed_out = False
        self.deadline: float | None = None
        self.progress = 0
        self.data: Any = None


Syscall = Callable[..., T]


class VirtualClockStalled(RuntimeError):
    """On virtual time nothing was scheduled and no fd became ready for a long real time:
    a blocked call can never complete (single-threaded use), so it fails instead of
    hanging forever."""


# Real seconds a virtual-time loop waits with no timer at all before giving up
# (``RUMP_VIRTUAL_STALL``; another thread handing in a call wakes it at once).
STALL_SECONDS = float(os.environ.get("RUMP_VIRTUAL_STALL", "120"))


class _VirtualSelector:
    """Selector wrapper for virtual time: never waits for a timer, jumps the clock instead.

    asyncio calls ``select(timeout)`` with the time until the next timer when nothing is
    runnable; we poll the real fds (the self-pipe for thread wake-ups, any real link)
    without waiting and, if nothing is ready, advance the clock by ``timeout``.
    """

    def __init__(self, inner: selectors.BaseSelector, clock: VirtualClock) -> None:
        self._inner = inner
        self._clock = clock
        self.stall_seconds = STALL_SECONDS

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = self._inner.select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            # Nothing scheduled at all: only another thread (or a real fd) can make
            # progress now. Wait for that, but not forever.
            events = self._inner.select(self.stall_seconds)
            if not events:
                raise VirtualClockStalled(
                    f"virtual clock stalled: no timer and no I/O for {self.stall_seconds:g} s of real time "
                    "(a blocked call can never complete)")
            return events
        self._clock.now += timeout
        return []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class VirtualClock:
    __slots__ = ("now",)

    def __init__(self, start: float = VIRTUAL_EPOCH) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


class VirtualEventLoop(asyncio.SelectorEventLoop):
    """A selector event loop whose clock only moves when nothing is runnable."""

    def __init__(self, start: float = VIRTUAL_EPOCH) -> None:
        self.virtual_clock = VirtualClock(start)
        self._vselector = _VirtualSelector(selectors.DefaultSelector(), self.virtual_clock)
        super().__init__(self._vselector)  # type: ignore[arg-type]
        # asyncio treats timers due within one clock resolution as ready; our clock is
        # exact, but the jump is a float sum, so allow a microsecond of rounding.
        self._clock_resolution = 1e-6  # type: ignore[attr-defined]

    def time(self) -> float:
        return self.virtual_clock.now

    @property
    def stall_seconds(self) -> float:
        return self._vselector.stall_seconds

    @stall_seconds.setter
    def stall_seconds(self, seconds: float) -> None:
        self._vselector.stall_seconds = seconds


def _new_real_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # type: ignore[import-not-found]

        return uvloop.new_event_loop()  # type: ignore[no-any-return]
    except ImportError:  # uvloop is optional
        return asyncio.new_event_loop()


class _SyscallAwaitable:
    """What a system call returns to a coroutine on the scheduler's loop.

    The call is attempted at once (so calls keep program order); awaiting it yields the
    result or sleeps until it completes.
    """

    __slots__ = ("_sched", "_fn", "_args", "_ctx", "_result", "_exc", "_sleep")

    def __init__(self, sched: Scheduler, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self._sched = sched
        self._fn = fn
        self._args = args
        self._ctx = SyscallCtx()
        self._result: Any = None
        self._exc: BaseException | None = None
        self._sleep: Sleep | None = None
        try:
            sched.errors.check()
            self._result = fn(self._ctx, *args)
        except Sleep as s:
            self._sleep = s
        except BaseException as e:  # delivered when awaited
            self._exc = e

    def __await__(self) -> Generator[Any, None, Any]:
        if self._exc is not None:
            raise self._exc
        if self._sleep is None:
            return self._result
        return (yield from self._sched._sleep_and_retry(self._fn, self._args, self._ctx, self._sleep).__await__())


class Scheduler:
    """One virtual CPU: an event loop plus the rules for entering it from threads."""

    def __init__(self, virtual: bool = False, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.virtual = virtual
        if loop is None:
            loop = VirtualEventLoop() if virtual else _new_real_loop()
        self.loop = loop
        self._cond = threading.Condition()
        self._driver: int | None = None  # thread id of a thread inside run_until_complete
        self._bg_thread: threading.Thread | None = None
        self.kernels: list[Any] = []  # running kernels, in boot order
        self.boots = 0  # kernels ever booted here (never reused: seeds each kernel's rng)
        # Exceptions out of callbacks on the loop (rumpkern/strict.py): logged and counted,
        # or in strict mode raised by the next call on this scheduler.
        self.errors = InternalErrors()
        self.errors.install(loop)
        if not isinstance(loop, VirtualEventLoop):
            self.now = time.monotonic  # type: ignore[method-assign]

    # -- clock and callouts ---------------------------------------------------------
    def now(self) -> float:
        """The kernel clock: the loop's clock on virtual time. On real time it is
        ``time.monotonic()``, the base asyncio's own loop uses; uvloop's ``time()`` is
        libuv's cached millisecond clock, too coarse for RTTs and pcap timestamps."""
        return self.loop.time()

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return self.loop.call_at(when, fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        return self.loop.call_later(delay, fn, *args)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return self.loop.call_soon(fn, *args)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> asyncio.Handle:
        return self.loop.call_soon_threadsafe(fn, *args)

    # -- who holds the CPU ---------------------------------------------------------
    def on_cpu(self) -> bool:
        """True when the calling code runs on the loop (inside a callback or task)."""
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    @property
    def stall_seconds(self) -> float | None:
        """Virtual time: real seconds to wait with no timer and no I/O before a blocked
        call fails with :class:`VirtualClockStalled` (None on real time)."""
        loop = self.loop
        return loop.stall_seconds if isinstance(loop, VirtualEventLoop) else None

    @stall_seconds.setter
    def stall_seconds(self, seconds: float) -> None:
        loop = self.loop
        if not isinstance(loop, VirtualEventLoop):
            raise ValueError("stall_seconds applies to virtual time only")
        loop.stall_seconds = float(seconds)

    def holds_cpu(self) -> bool:
        """True when the calling thread is the CPU now (on the loop, or running a call
        directly because nobody else drives the loop)."""
        return self._driver == threading.get_ident() or self.on_cpu()

    @property
    def background(self) -> bool:
        return self._bg_thread is not None

    def start_background(self) -> None:
        """Serve the loop from a daemon thread (a host program talks to the kernel over a
        tap, or user threads make blocking calls); calls from threads are handed over."""
        with self._cond:
            if self._bg_thread is not None:
                return
            while self._driver is not None:
                self._cond.wait()
            ready = threading.Event()

            def serve() -> None:
                asyncio.set_event_loop(self.loop)
                self.loop.call_soon(ready.set)
                self.loop.run_forever()

            t = threading.Thread(target=serve, name="rump-sched", daemon=True)
            self._bg_thread = t
            t.start()
        ready.wait()

    def stop_background(self) -> None:
        with self._cond:
            t = self._bg_thread
        if t is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        t.join()
        with self._cond:
            self._bg_thread = None
            self._cond.notify_all()

    # -- running things -------------------------------------------------------------
    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the CPU from any thread (configuration commands and the like)."""

        def call(_ctx: SyscallCtx) -> T:
            return fn()

        return self.syscall(call)

    def run_for(self, seconds: float) -> None:
        """Let the kernels run for ``seconds`` of kernel time (virtual or real)."""
        if self.on_cpu():
            raise RuntimeError("run_for() from the scheduler's own loop: use await asyncio.sleep()")

        async def pause() -> None:
            await asyncio.sleep(seconds)

        self.run_coroutine(pause())

    def run_coroutine(self, coro: Any) -> Any:
        """Run a coroutine on the loop from a thread that is not on it; return its result."""
        holder: dict[str, Any] = {}

        def start(ctx: SyscallCtx) -> Any:
            if "task" not in holder:
                holder["task"] = self.loop.create_task(coro)
                holder["chan"] = WaitChannel("coro")
                holder["task"].add_done_callback(lambda _t: holder["chan"].wakeup())
            task = holder["task"]
            if not task.done():
                raise Sleep(holder["chan"])
            return task.result()

        try:
            return self.syscall(start)
        finally:
            if "task" not in holder:
                coro.close()  # refused before it started (an internal error): not "never awaited"

    def syscall(self, fn: Callable[..., T], *args: Any) -> T:
        """Perform system call ``fn(ctx, *args)`` in whatever way the caller's context needs.

        From a coroutine on the loop this returns an awaitable instead of the result.
        """
        if self.on_cpu():
            return _SyscallAwaitable(self, fn, args)  # type: ignore[return-value]
        self.errors.check()
        me = threading.get_ident()
        with self._cond:
            drive = self._driver is None and self._bg_thread is None and not self.loop.is_running()
            if drive:
                self._driver = me
        ctx = SyscallCtx()
        if drive:
            try:
                try:
                    return fn(ctx, *args)  # fast path: we hold the CPU
                except Sleep as first:
                    sleep = first
                return self.loop.run_until_complete(self._sleep_and_retry(fn, args, ctx, sleep))
            finally:
                with self._cond:
                    self._driver = None
                    self._cond.notify_all()
        return self._handoff(fn, args, ctx)

    def asyscall(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """System call ``fn(ctx, *args)`` as an awaitable, for coroutines on the loop."""
        if not self.on_cpu():
            raise RuntimeError("asyscall() is for coroutines running on the scheduler's loop")
        return _SyscallAwaitable(self, fn, args)  # type: ignore[return-value]

    def _handoff(self, fn: Callable[..., T], args: tuple[Any, ...], ctx: SyscallCtx) -> T:
        cf: concurrent.futures.Future[T] = concurrent.futures.Future()

        def notify(_f: object) -> None:
            with self._cond:
                self._cond.notify_all()

        cf.add_done_callback(notify)

        async def run_on_loop() -> None:
            try:
                try:
                    result = fn(ctx, *args)
                except Sleep as s:
                    result = await self._sleep_and_retry(fn, args, ctx, s)
                cf.set_result(result)
            except BaseException as e:  # handed back to the calling thread
                cf.set_exception(e)

        def start() -> None:
            self.loop.create_task(run_on_loop())

        self.loop.call_soon_threadsafe(start)
        me = threading.get_ident()
        while True:
            with self._cond:
                while not cf.done() and (self._driver is not None or self._bg_thread is not None or self.loop.is_running()):
                    self._cond.wait(0.5)
                if cf.done():
                    break
                self._driver = me
            try:
                self.loop.run_until_complete(asyncio.wrap_future(cf, loop=self.loop))
            except BaseException:
                if not cf.done():
                    raise
            finally:
                with self._cond:
                    self._driver = None
                    self._cond.notify_all()
        return cf.result()

    async def _sleep_and_retry(self, fn: Callable[..., T], args: tuple[Any, ...], ctx: SyscallCtx, sleep: Sleep) -> T:
        loop = self.loop
        while True:
            self.errors.check()  # strict mode: an internal error ends the sleep
            # Try again before sleeping: between the attempt that raised ``sleep`` and now,
            # other callbacks may have run (the first attempt happens outside the loop),
            # and a wakeup given before we register on the channel would be lost. Nothing
            # runs between this attempt and the registration below.
            try:
                return fn(ctx, *args)
            except Sleep as again:
                if ctx.timed_out:
                    raise OSError(errno.EWOULDBLOCK, "Resource temporarily unavailable") from None
                sleep = again
            if sleep.timeout is not None and ctx.deadline is None:
                ctx.deadline = loop.time() + sleep.timeout
            if ctx.deadline is not None and ctx.deadline <= loop.time():
                ctx.timed_out = True
                continue
            fut: asyncio.Future[None] = loop.create_future()
            for chan in sleep.chans:
                chan._register(fut)
            if self.errors.strict:
                self.errors.sleepers.add(fut)
            handle = None
            if ctx.deadline is not None:
                handle = loop.call_at(ctx.deadline, _timeout_future, fut)
            try:
                await fut
            finally:
                self.errors.sleepers.discard(fut)
                if handle is not None:
                    handle.cancel()
            if ctx.deadline is not None and loop.time() >= ctx.deadline:
                ctx.timed_out = True


def _timeout_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


# One default scheduler per thread and clock kind: kernels booted from one thread with the
# same clock share a CPU and can be wired together.
_local = threading.local()


def default_scheduler(virtual: bool) -> Scheduler:
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        # Booted from a coroutine (pytest-asyncio): the running loop is the CPU.
        sched = _by_loop.get(id(running))
        if sched is None or sched.loop is not running:
            sched = Scheduler(virtual=isinstance(running, VirtualEventLoop), loop=running)
            _by_loop[id(running)] = sched
        return sched
    key = "virtual" if virtual else "real"
    sched = getattr(_local, key, None)
    if sched is None or sched.loop.is_closed():
        sched = Scheduler(virtual=virtual)
        setattr(_local, key, sched)
    return sched


_by_loop: dict[int, Scheduler] = {}


def new_virtual_loop() -> VirtualEventLoop:
    """A fresh virtual-time event loop, e.g. for pytest-asyncio's ``event_loop_policy``."""
    return VirtualEventLoop()


class VirtualEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Event loop policy whose loops run on virtual time (for asyncio tests)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return VirtualEventLoop()
