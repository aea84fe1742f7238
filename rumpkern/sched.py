"""The scheduler: one virtual CPU (an asyncio loop) for the kernels on it.

All protocol code of the kernels on a scheduler runs on the thread that currently drives
its loop, in callbacks, without locks (lwIP's NO_SYS model, rump's ``rump_schedule()``).

Two ways to run the loop:

* **served** (the default for a real-clock kernel; ``rump_init(threads=)``,
  ``RUMP_THREADS``): a thread of the scheduler's own runs the loop, so the kernels answer
  the network and run their timers whether or not the application is inside a call, as a
  rump kernel's threads do (``rumpkern/cpu.py``);
* **driven by calls** (virtual time, ``RUMP_THREADS=0``, ``stop_background()``): the loop
  runs only while a call waits, on the calling thread; virtual time stays deterministic.

Four ways in, one implementation (``Scheduler.syscall``):

* a plain thread while the serving thread waits for work: it takes the CPU
  (:class:`rumpkern.cpu.CpuLock`), runs the call directly and, if the call sleeps, hands
  the rest of it to the serving thread and waits;
* a plain thread with nobody driving the loop: it *becomes* the CPU, runs the call
  directly and, if the call sleeps, drives the loop until the call completes;
* a thread while another thread drives (or a loop we cannot share serves): the call is
  handed to the loop with ``call_soon_threadsafe`` and the thread waits; if the driver
  stops before the call finished, a waiting thread takes over driving;
* a coroutine on the loop itself: the call returns an awaitable.

A system call is a plain function that returns its result or raises :class:`Sleep` with
the wait channels to sleep on (NetBSD's ``tsleep``/``wakeup``); the driver retries it when
a channel is woken up or the sleep times out.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import errno
import importlib
import selectors
import threading
import time
import warnings
import weakref
from collections.abc import Awaitable, Callable, Generator, Iterable, Sized
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from rumpkern.cpu import CpuLock, at_fork_in_child, new_cpu_loop, threads_default, wakeup_lost
from rumpkern.strict import InternalErrors, KernelInternalError

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

from rumpkern.options import env_number
from rumpkern.unawaited import warn_unawaited

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
        """Wake every system call sleeping on this channel (each retries)."""
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    def has_waiters(self) -> bool:
        """True when some call sleeps on this channel."""
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


class SchedulerStuck(RuntimeError):
    """The thread running the scheduler's loop can no longer be woken (its selector was
    closed under it, see :func:`rumpkern.cpu.wakeup_lost`): a call handed to it, or the
    request to stop serving, would wait forever, so it fails instead."""


# Real seconds a virtual-time loop waits with no timer at all before giving up
# (``RUMP_VIRTUAL_STALL``; another thread handing in a call wakes it at once).
STALL_SECONDS = env_number("RUMP_VIRTUAL_STALL", 120.0, "a number of seconds")


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
    """The time of a virtual clock: seconds, moved only by the loop when nothing is runnable."""

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
        self._clock_resolution = 1e-6

    def time(self) -> float:
        """The virtual clock's time."""
        return self.virtual_clock.now

    @property
    def stall_seconds(self) -> float:
        """Real seconds with nothing scheduled and no I/O before a blocked call fails (VirtualClockStalled)."""
        return self._vselector.stall_seconds

    @stall_seconds.setter
    def stall_seconds(self, seconds: float) -> None:
        self._vselector.stall_seconds = seconds


def _new_real_loop() -> asyncio.AbstractEventLoop:
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:  # uvloop is optional
        return asyncio.new_event_loop()
    return cast(asyncio.AbstractEventLoop, uvloop.new_event_loop())


def _attempt(fn: Callable[..., Any], ctx: SyscallCtx, args: tuple[Any, ...]) -> tuple[Any, Sleep | None, BaseException | None]:
    """Try a system call: (result, sleep, error). A kept traceback's frames would lead back
    to the awaitable (a cycle: an awaitable dropped unawaited would warn only at the next
    garbage collection), so a Sleep and an errno error keep none; other exceptions (bugs)
    keep theirs for the report."""
    try:
        return fn(ctx, *args), None, None
    except Sleep as s:
        s.__traceback__ = None
        return None, s, None
    except OSError as e:
        e.__traceback__ = None
        if e.__suppress_context__:
            e.__context__ = None
        return None, None, e
    except BaseException as e:  # delivered when awaited
        return None, None, e


class _SyscallAwaitable(Generic[T]):
    """What a system call returns to a coroutine on the scheduler's loop.

    The call is attempted at once (so calls keep program order); awaiting it yields the
    result or sleeps until it completes.
    """

    __slots__ = ("_sched", "_fn", "_args", "_ctx", "_result", "_exc", "_sleep", "_awaited")

    def __init__(self, sched: Scheduler, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self._sched = sched
        self._fn = fn
        self._args = args
        self._ctx = SyscallCtx()
        self._result: T | None = None
        self._exc: BaseException | None = None
        self._sleep: Sleep | None = None
        self._awaited = False
        try:
            sched.errors.check()  # strict mode: a recorded internal error is this call's
        except KernelInternalError as e:
            self._result, self._sleep, self._exc = None, None, e
        else:
            self._result, self._sleep, self._exc = _attempt(fn, self._ctx, args)

    def __del__(self) -> None:
        if not self._awaited:  # warn, as for a coroutine never awaited (rumpkern.unawaited)
            warn_unawaited(self._fn, self._exc, self._sleep is not None)

    def __await__(self) -> Generator[Any, None, T]:
        self._awaited = True
        if self._exc is not None:
            raise self._exc
        if self._sleep is None:
            return cast(T, self._result)
        return (yield from self._sched._sleep_and_retry(self._fn, self._args, self._ctx, self._sleep).__await__())


class Scheduler:
    """One virtual CPU: an event loop plus the rules for entering it from threads."""

    def __init__(self, virtual: bool = False, loop: asyncio.AbstractEventLoop | None = None,
                 threads: bool | None = None) -> None:
        """``threads``: serve the loop from a thread of its own once a kernel boots on it
        (default: ``$RUMP_THREADS``, on unless 0, for a real-clock scheduler that makes
        its own loop; never on virtual time, whose kernels are driven by calls)."""
        self.virtual = virtual
        if threads and virtual:
            raise ValueError("virtual-clock kernels are driven by calls: threads=True needs the real clock")
        if threads and loop is not None:
            raise ValueError("threads=True needs a scheduler that runs a loop of its own")
        if threads is None:
            threads = not virtual and loop is None and threads_default()
        self.threads = threads
        self.owns_loop = loop is None  # False: someone else runs it (a coroutine's loop)
        # Exceptions out of callbacks on the loop (rumpkern/strict.py): logged and counted,
        # or in strict mode raised by the next call on this scheduler. (Made before the
        # loop: a bad $RUMP_STRICT fails here and leaves no loop behind.)
        self.errors = InternalErrors()
        # The CPU a calling thread can take while the serving thread waits in select; only
        # on a loop built for it (not on uvloop or a loop someone else runs).
        self._cpu: CpuLock | None = None
        if loop is None:
            if virtual:
                loop = VirtualEventLoop()
            elif threads:
                self._cpu = CpuLock()
                loop = new_cpu_loop(self._cpu)
            else:
                loop = _new_real_loop()
        self.loop = loop
        self._cond = threading.Condition()
        self._driver: int | None = None  # thread id of a thread inside run_until_complete
        self._bg_thread: threading.Thread | None = None
        self.stuck: str | None = None  # why the loop's thread can no longer be woken
        _all_schedulers.add(self)
        self.kernels: list[Kernel] = []  # running kernels, in boot order
        self.boots = 0  # kernels ever booted here (never reused: seeds each kernel's rng)
        self.errors.install(loop)
        if not isinstance(loop, VirtualEventLoop):
            self.now = time.monotonic  # type: ignore[method-assign]

    # -- the kernels on this CPU ----------------------------------------------------
    def kernel_booted(self, k: Kernel) -> None:
        """``k`` now runs on this scheduler (serving starts if this is a threaded one)."""
        self.kernels.append(k)
        if self.threads and self._bg_thread is None:
            self._start_serving()

    def kernel_halted(self, k: Kernel) -> None:
        """``k`` halted; a threaded scheduler with no kernel left stops serving."""
        if k in self.kernels:
            self.kernels.remove(k)
        if not self.kernels and self._bg_thread is not None and self.threads:
            self._stop_serving()  # nothing left to serve; the next boot starts it again

    def spent(self) -> bool:
        """Every kernel ever booted here is halted and nothing drives the loop: a new
        scenario should start on a fresh scheduler (clock at the epoch, boot order 0)."""
        return (self.boots > 0 and not self.kernels and self._driver is None and self._bg_thread is None
                and not self.loop.is_running())

    # -- clock and callouts ---------------------------------------------------------
    def now(self) -> float:
        """The kernel clock: the loop's clock on virtual time. On real time it is
        ``time.monotonic()``, the base asyncio's own loop uses; uvloop's ``time()`` is
        libuv's cached millisecond clock, too coarse for RTTs and pcap timestamps."""
        return self.loop.time()

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Run ``fn(*args)`` on the CPU at kernel time ``when`` (a callout; ``.cancel()`` it)."""
        return self.loop.call_at(when, fn, *args)

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> asyncio.TimerHandle:
        """Run ``fn(*args)`` on the CPU ``delay`` seconds from now."""
        return self.loop.call_later(delay, fn, *args)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> asyncio.Handle:
        """Run ``fn(*args)`` on the CPU next (from the scheduler's thread)."""
        return self.loop.call_soon(fn, *args)

    def call_soon_threadsafe(self, fn: Callable[..., Any], *args: Any) -> asyncio.Handle:
        """Run ``fn(*args)`` on the CPU next, from any thread."""
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
        directly because nobody else drives the loop or the serving thread waits)."""
        cpu = self._cpu
        return (self._driver == threading.get_ident() or (cpu is not None and cpu.held_by_me())
                or self.on_cpu())

    @property
    def background(self) -> bool:
        """True while a background thread serves the loop."""
        return self._bg_thread is not None

    def start_background(self) -> None:
        """Serve the loop from a thread of its own from now on (the default for a
        real-clock kernel): the kernels live on their own, and calls from threads run
        directly while that thread waits for work (or are handed to it, on a loop that
        cannot be shared)."""
        if not self.virtual:
            self.threads = True
        self._start_serving()

    def stop_background(self) -> None:
        """Stop serving: from now on the kernels are driven by the calls made to them
        (as with ``RUMP_THREADS=0``) until :meth:`start_background`."""
        self.threads = False
        self._stop_serving()

    def _start_serving(self) -> None:
        with self._cond:
            if self._bg_thread is not None:
                return
            while self._driver is not None:
                self._cond.wait()
            if self.loop.is_running():
                raise RuntimeError("the scheduler's loop is run by someone else: it cannot be served")
            ready = threading.Event()
            cpu = self._cpu

            def serve() -> None:
                asyncio.set_event_loop(self.loop)
                self.loop.call_soon(ready.set)
                try:
                    if cpu is not None:
                        cpu.serve(self.loop.run_forever)
                    else:
                        self.loop.run_forever()
                finally:
                    with self._cond:
                        if self._bg_thread is threading.current_thread():
                            self._bg_thread = None
                        self._cond.notify_all()

            t = threading.Thread(target=serve, name="rump-sched", daemon=True)
            self._bg_thread = t
            t.start()
        ready.wait()

    def _stop_serving(self, timeout: float | None = None) -> None:
        with self._cond:
            t = self._bg_thread
        if t is None:
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        if t is threading.current_thread():
            return  # stopped from its own loop: it ends after this callback
        deadline = None if timeout is None else time.monotonic() + timeout
        while t.is_alive():
            left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
            if left <= 0:
                break
            t.join(left)
            if t.is_alive():
                self._check_wakeup()
        with self._cond:
            if self._bg_thread is t and not t.is_alive():
                self._bg_thread = None
            self._cond.notify_all()

    # -- running things -------------------------------------------------------------
    def run(self, fn: Callable[[], T]) -> T:
        """Run ``fn()`` on the CPU from any thread (configuration commands and the like).

        ``fn`` never sleeps, so a caller that holds the CPU (a coroutine on the loop) gets
        the result directly: no awaitable to forget (``k.halt()`` in a coroutine)."""
        if self.holds_cpu():
            return fn()

        def call(_ctx: SyscallCtx) -> T:
            return fn()

        return self.syscall(call)

    def run_for(self, seconds: float) -> None:
        """Let the kernels run for ``seconds`` of kernel time (virtual or real)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TypeError(f"run_for: seconds must be a number, not {type(seconds).__name__} {seconds!r}")
        if not seconds >= 0:
            raise ValueError(f"run_for: seconds must be 0 or more, not {seconds!r}")
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
            # On the loop the result is an awaitable of T (the calling coroutine awaits it).
            return cast(T, _SyscallAwaitable(self, fn, args))
        self.errors.check()
        cpu = self._cpu
        if cpu is not None and self._bg_thread is not None:
            return self._call_served(cpu, fn, args)
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

    def _call_served(self, cpu: CpuLock, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        """A call while the serving thread runs the loop: take the CPU (it is free while
        that thread waits in select) and run the call here; what must wait is handed over."""
        ctx = SyscallCtx()
        loop = self.loop
        ready, timers = _queues(loop)
        previous = cpu.acquire()
        # Measured holding the CPU: before, the serving thread may still run callbacks
        # and take some off the queue, and a call that then queued as many would look as
        # if it had queued nothing (its callbacks would wait for the old deadline).
        queued, first_timer = len(ready), timers[0] if timers else None
        try:
            try:
                return fn(ctx, *args)
            except Sleep as first:
                sleep = first
        finally:
            cpu.release(previous)
            # The serving thread computed its select timeout before we ran: wake it if
            # the call queued a callback or an earlier timer (a frame to deliver, a TCP
            # timer), so that it runs now and not at the old deadline.
            if previous is None and (len(ready) != queued or (timers[0] if timers else None) is not first_timer):
                loop.call_soon_threadsafe(_noop)
        return self._handoff(fn, args, ctx, sleep)

    def asyscall(self, fn: Callable[..., T], *args: Any) -> Awaitable[T]:
        """System call ``fn(ctx, *args)`` as an awaitable, for coroutines on the loop."""
        if not self.on_cpu():
            raise RuntimeError("asyscall() is for coroutines running on the scheduler's loop")
        return _SyscallAwaitable(self, fn, args)

    def _handoff(self, fn: Callable[..., T], args: tuple[Any, ...], ctx: SyscallCtx, sleep: Sleep | None = None) -> T:
        """Run the call on the loop (or the rest of it, from ``sleep``, when this thread
        made the first attempt itself) and wait for its result."""
        cf: concurrent.futures.Future[T] = concurrent.futures.Future()

        def notify(_f: object) -> None:
            with self._cond:
                self._cond.notify_all()

        cf.add_done_callback(notify)

        async def run_on_loop() -> None:
            try:
                if sleep is not None:
                    result = await self._sleep_and_retry(fn, args, ctx, sleep)
                else:
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
                    self._check_wakeup()
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

    def _check_wakeup(self) -> None:
        """Raise :class:`SchedulerStuck` if the thread in the loop's select can no longer
        be woken (checked every half second by a thread waiting on it)."""
        if self.stuck is None:
            self.stuck = wakeup_lost(self.loop)
        if self.stuck is not None:
            raise SchedulerStuck(f"the scheduler's loop cannot be woken: {self.stuck}")

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


def _noop() -> None:
    pass


def _queues(loop: asyncio.AbstractEventLoop) -> tuple[Sized, list[object]]:
    """The ready queue and timer heap of an asyncio loop we built (``BaseEventLoop``'s
    ``_ready`` and ``_scheduled``), to tell whether a direct call queued work."""
    return loop._ready, loop._scheduled  # type: ignore[attr-defined]


# Every scheduler, so that serving threads stop cleanly at exit and a forked child
# (rump_server daemonising) starts without the parent's threads and loops.
_all_schedulers: weakref.WeakSet[Scheduler] = weakref.WeakSet()


@atexit.register
def _stop_all_serving() -> None:
    for sched in list(_all_schedulers):
        if sched._bg_thread is not None:
            try:
                sched._stop_serving(timeout=2.0)
            except SchedulerStuck:
                pass  # a daemon thread: it goes with the process


# A forked child's copies of the parent's schedulers, kept alive and never closed: their
# loops' epoll sets are the parent's (an epoll instance is shared across fork), and closing
# a loop, as garbage collection of an unclosed one does, unregisters its wake-up fd from
# that set, leaving the parent's serving thread deaf to call_soon_threadsafe.
_inherited_in_child: list[Scheduler] = []


def _forget_after_fork() -> None:
    global _local
    _inherited_in_child.extend(_all_schedulers)
    _inherited_in_child.extend(_by_loop.values())
    for sched in list(_all_schedulers):
        sched._cond = threading.Condition()
        sched._driver = None
        sched._bg_thread = None
    # The child must not share the parent's loops (an epoll set is shared across fork):
    # kernels booted in the child get fresh schedulers.
    _local = threading.local()
    _by_loop.clear()


at_fork_in_child(_forget_after_fork)


# One default scheduler per thread and clock kind: kernels booted from one thread with the
# same clock share a CPU and can be wired together.
_local = threading.local()


def default_scheduler(virtual: bool, threads: bool | None = None) -> Scheduler:
    """The scheduler a kernel booted from this thread shares (see rump_init); ``threads``
    is the mode a new real-clock one is made with."""
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is not None:
        # Booted from a coroutine (pytest-asyncio): the running loop is the CPU.
        on_loop = _by_loop.get(id(running))
        if on_loop is None or on_loop.loop is not running:
            on_loop = Scheduler(virtual=isinstance(running, VirtualEventLoop), loop=running)
            _by_loop[id(running)] = on_loop
        return on_loop
    key = "virtual" if virtual else "real"
    sched: Scheduler | None = getattr(_local, key, None)
    if sched is not None and virtual and sched.spent() and not sched.loop.is_closed():
        # A new scenario: the last one's kernels are all halted. Start it on a fresh
        # virtual CPU, so that it replays the same whatever ran before (the clock starts
        # at the epoch again, the boot order that seeds the kernels' rngs at 0, and no
        # timer left by the halted kernels shares the heap).
        sched.loop.close()
    if sched is not None and not sched.loop.is_closed() and sched.stuck is None:
        # A long-lived loop whose epoll or wake-up fd was closed under it (a double close
        # somewhere in the process) would sleep forever once served: never boot on it.
        sched.stuck = wakeup_lost(sched.loop)
        if sched.stuck is not None:
            warnings.warn(f"this thread's default scheduler can no longer be woken ({sched.stuck}); "
                          "kernels booted from now on get a fresh one", RuntimeWarning, stacklevel=3)
    if sched is None or sched.loop.is_closed() or sched.stuck is not None:
        sched = Scheduler(virtual=virtual, threads=threads)
        setattr(_local, key, sched)
    return sched


_by_loop: dict[int, Scheduler] = {}


def thread_default_scheduler(virtual: bool) -> Scheduler | None:
    """The scheduler :func:`default_scheduler` last gave this thread for that clock, if
    any (the kernels on it are ``.kernels``); none is made."""
    sched: Scheduler | None = getattr(_local, "virtual" if virtual else "real", None)
    return sched


def new_virtual_loop() -> VirtualEventLoop:
    """A fresh virtual-time event loop, e.g. for pytest-asyncio's ``event_loop_policy``."""
    return VirtualEventLoop()


class VirtualEventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """Event loop policy whose loops run on virtual time (for asyncio tests)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """A fresh VirtualEventLoop."""
        return VirtualEventLoop()
