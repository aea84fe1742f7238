"""Strict mode: an internal error fails the caller instead of a log line.

An *internal error* is an exception out of kernel code that no caller is waiting on: a
protocol input run by a driver, a wire or a qdisc (ether, ARP, IP, ICMP, UDP, raw IP,
TCP), a timer (callout), any callback on a scheduler's loop. NetBSD would panic. Outside
strict mode (production, the default) the loop's exception handler logs it and counts it
(``sched.errors.count``), and catch-all sites such as TCP input count it in their own
counter (``tcps_rcvinternalerr``) and go on.

In strict mode (``RUMP_STRICT=1`` in the environment, ``rump_init(strict=True)`` or the
sysctl ``kern.strict``; the test suite's pytest plugin turns it on) the scheduler records
the exception, wakes every system call sleeping on it, and the next system call, command
or ``run_for`` on that scheduler (or the sleeping one) raises :class:`KernelInternalError`
with the original exception as its ``__cause__``. Catch-all sites re-raise. What nobody
raised is kept in a process-wide list (:func:`take_unraised`) that the pytest plugin
checks after each test, so an error on a background thread or after the last call still
fails the test that caused it.

Across processes: with ``RUMP_STRICT_LOG=path`` set, every recorded error is also
appended to that file as one JSON line (pid, where, traceback), so a test that started a
``rump_server`` sees the server's internal errors (:func:`read_log`); the server also
replies to the next request with the error.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

ENV = "RUMP_STRICT"
LOG_ENV = "RUMP_STRICT_LOG"
_TRUE = ("1", "yes", "true", "on")
_FALSE = ("", "0", "no", "false", "off")


def parse_strict(text: str) -> bool:
    """``RUMP_STRICT``'s value: 1/yes/true/on or 0/no/false/off (empty: off)."""
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise OSError(errno.EINVAL, f"{ENV}: bad value {text!r} (valid: 0, 1, no, yes, false, true, off, on)")


def strict_default() -> bool:
    """Strict mode for new schedulers and sans-IO cores made without a kernel."""
    return parse_strict(os.environ.get(ENV, ""))


class KernelInternalError(RuntimeError):
    """An exception escaped kernel code running on a scheduler (strict mode).

    ``__cause__`` is the original exception with its traceback; ``where`` names the
    callback it escaped from."""

    def __init__(self, message: str, where: str = "") -> None:
        super().__init__(message)
        self.where = where


@dataclass
class InternalError:
    """One recorded internal error."""

    exc: BaseException
    where: str
    thread: str = field(default_factory=lambda: threading.current_thread().name)
    pid: int = field(default_factory=os.getpid)
    owner: InternalErrors | None = field(default=None, repr=False)

    def summary(self) -> str:
        return f"{type(self.exc).__name__}: {self.exc} (in {self.where}, thread {self.thread})"

    def format(self) -> str:
        tb = "".join(traceback.format_exception(type(self.exc), self.exc, self.exc.__traceback__))
        return f"internal error in {self.where} (pid {self.pid}, thread {self.thread}):\n{tb}"

    def to_raise(self, others: list[InternalError] | None = None) -> KernelInternalError:
        err = KernelInternalError(f"internal error in {self.where}: {type(self.exc).__name__}: {self.exc}",
                                  self.where)
        err.__cause__ = self.exc
        if others:
            shown = "; ".join(o.summary() for o in others[:5])
            err.add_note(f"{len(others)} more internal error(s) on this scheduler: {shown}")
        return err


_unraised: list[InternalError] = []
_unraised_lock = threading.Lock()


def take_unraised() -> list[InternalError]:
    """Internal errors recorded in this process (on any scheduler, strict mode) that no
    call has raised yet; the list is emptied, and no call will raise them any more (the
    taker reports them: a test harness must not see them again in a later test)."""
    with _unraised_lock:
        out = _unraised[:]
        _unraised.clear()
    for err in out:
        if err.owner is not None:
            err.owner._discard(err)
    return out


def _forget(errors: list[InternalError]) -> None:
    with _unraised_lock:
        for e in errors:
            with contextlib.suppress(ValueError):
                _unraised.remove(e)


def _append_log(err: InternalError) -> None:
    path = os.environ.get(LOG_ENV)
    if not path:
        return
    line = json.dumps({"pid": err.pid, "where": err.where, "traceback": err.format()}) + "\n"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())  # one O_APPEND write: lines of processes do not mix
        finally:
            os.close(fd)
    except OSError:
        pass  # the log is a courtesy to a test harness; the error is still raised here


def read_log(path: str, offset: int = 0, skip_pid: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """Records appended to a ``RUMP_STRICT_LOG`` file after ``offset`` (those of
    ``skip_pid`` left out), and the offset to read from next time."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return [], offset
    end = data.rfind(b"\n") + 1  # a line still being written is read next time
    records = []
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("pid") != skip_pid:
            records.append(rec)
    return records, offset + end


class InternalErrors:
    """One scheduler's internal errors; its loop's exception handler.

    ``strict`` may be switched at any time (``kern.strict``). ``sleepers`` are the
    futures of system calls sleeping on the scheduler (strict mode): recording an error
    completes them, so that those calls raise it at once instead of waiting for a wakeup
    that the failed code will never give.
    """

    def __init__(self, strict: bool | None = None) -> None:
        self.strict = strict_default() if strict is None else strict
        self.sleepers: set[asyncio.Future[None]] = set()
        self.count = 0  # internal errors seen, strict or not
        self._pending: list[InternalError] = []
        self._lock = threading.Lock()
        self._held = threading.local()
        self._chained: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Become ``loop``'s exception handler (a handler already there still runs
        outside strict mode, as does asyncio's default one, which logs)."""
        self._loop = loop
        self._chained = loop.get_exception_handler()
        loop.set_exception_handler(self._handler)

    def _handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        # A task or future whose exception nobody retrieved is reported when the garbage
        # collector gets to it, at no particular time and about no kernel callback: it
        # is the awaiting code's business (logged as usual), not an internal error.
        unretrieved = "handle" not in context and "future" in context
        if isinstance(exc, Exception) and not unretrieved:
            self.count += 1
            if self.strict:
                self.record(exc, _where(context))
                return
        if self._chained is not None:
            self._chained(loop, context)
        else:
            loop.default_exception_handler(context)

    def record(self, exc: BaseException, where: str) -> None:
        """Keep ``exc`` for the next call (strict mode) and wake the sleeping calls."""
        err = InternalError(exc, where, owner=self)
        with self._lock:
            self._pending.append(err)
        with _unraised_lock:
            _unraised.append(err)
        _append_log(err)
        loop = self._loop
        try:
            on_loop = loop is not None and asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop or loop is None:
            self._wake()
        elif not loop.is_closed():  # e.g. a task's error reported by the GC on another thread
            loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        sleepers, self.sleepers = self.sleepers, set()
        for fut in sleepers:
            if not fut.done():
                fut.set_result(None)

    def _discard(self, err: InternalError) -> None:
        with self._lock:
            if err in self._pending:
                self._pending.remove(err)

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def check(self) -> None:
        """Raise the recorded errors (the first, with the others noted) as one
        :class:`KernelInternalError`, unless this thread holds them back."""
        if not self._pending:
            return
        if getattr(self._held, "depth", 0) > 0:
            return
        with self._lock:
            errors, self._pending = self._pending, []
        if not errors:
            return
        _forget(errors)
        raise errors[0].to_raise(errors[1:])

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Calls from this thread do not raise recorded errors (halting a kernel must
        work after a failure; the errors stay for the next call or the test harness)."""
        self._held.depth = getattr(self._held, "depth", 0) + 1
        try:
            yield
        finally:
            self._held.depth -= 1


def _where(context: dict[str, Any]) -> str:
    for key in ("handle", "future", "task", "transport", "protocol"):
        obj = context.get(key)
        if obj is not None:
            text = repr(obj)
            return text if len(text) <= 200 else text[:197] + "..."
    return str(context.get("message", "a scheduler callback"))
