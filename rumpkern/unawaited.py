"""A system call made from a coroutine and never awaited must not pass in silence.

In a coroutine on the scheduler's loop every ``rump_sys_*`` call returns an awaitable; the
call is attempted at once, but its result and its error only reach the caller through
``await``. When such an awaitable is dropped without being awaited, Python's own rule for
coroutines applies: a :class:`UnawaitedSyscallWarning` (a ``RuntimeWarning``) names the call,
the error it lost or that it never completed, and the line of the caller's code where it was
dropped (for ``k.rump_sys_bind(fd, addr)`` without ``await``, the line of the call itself).
As for coroutines, the place is found when the warning is made, so calls that are awaited
cost nothing more.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import Any

# Frames inside the package are skipped to find the caller's line.
_OWN_DIRS = tuple(os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep + d + os.sep
                  for d in ("rumpkern", "rumpnet"))


class UnawaitedSyscallWarning(RuntimeWarning):
    """A system call's awaitable was dropped without ``await``."""


def call_site() -> tuple[str, int]:
    """(file, line) of the nearest calling frame outside rumpkern and rumpnet."""
    f: Any = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_OWN_DIRS):
        f = f.f_back
    if f is None:
        return ("<unknown>", 0)
    return (f.f_code.co_filename, f.f_lineno)


def call_name(fn: Any) -> str:
    """``rump_sys_bind`` for the system call function ``sys_bind``."""
    name = getattr(fn, "__name__", "system call")
    return f"rump_{name}" if name.startswith("sys_") else name


def warn_unawaited(fn: Any, exc: BaseException | None, sleeping: bool) -> None:
    """The warning for an awaitable of ``fn`` dropped (now) without being awaited."""
    site = call_site()
    where = f"at {site[0]}:{site[1]}" if site[1] else "dropped when its coroutine ended"
    what = f"{call_name(fn)}() was never awaited ({where})"
    if exc is not None:
        what += f"; its error was lost: {type(exc).__name__}: {exc}"
    elif sleeping:
        what += "; it was still waiting and will never complete"
    warnings.warn_explicit(what, UnawaitedSyscallWarning, site[0], site[1])


def not_an_fd(fd: Any) -> TypeError:
    """The error for a descriptor argument that is not an int (say, an un-awaited call)."""
    msg = f"fd must be an int, not {type(fd).__name__}"
    if hasattr(fd, "__await__"):
        msg += " (an awaitable: the call that made this fd was not awaited; write 'await' before it)"
    return TypeError(msg)
