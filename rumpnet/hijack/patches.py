"""The paths by which a hijacked socket's ``fileno()`` would reach the host kernel's
socket calls, closed while a hijack is in force (installed with the socket patch).

A hijacked socket's fd is only its readiness signal (a host socketpair end): good for
``select``, ``poll``, ``epoll`` and asyncio's selector loops, wrong for anything that
moves data through the fd itself. So:

* asyncio's ``_sock_sendfile_native``, on every loop class that has one (the Unix
  selector loop overrides the base class's and calls ``os.sendfile`` on the fd; before,
  only the base was patched and aiohttp's FileResponse hung after its headers): says
  "not available" for a hijacked socket, so asyncio falls back to reading the file and
  writing it through the socket;
* ``os.sendfile(fd, ...)`` with a hijacked socket's fd: done through that socket;
* ``socket.fromfd(fd, ...)`` and ``socket.socket(fileno=fd)`` with such an fd: a
  duplicate of the hijacked socket (a new descriptor in the kernel), not a host socket
  on the signal;
* uvloop: its loops do their socket I/O (and make their own sockets) in C, out of any
  Python patch's reach, so under a hijack ``uvloop.new_event_loop``, ``uvloop.Loop``,
  ``uvloop.run`` and ``uvloop.install`` give asyncio's selector loop instead (the
  kernels' own schedulers keep uvloop); uvloop is imported when the hijack begins, so
  that a first import inside the block finds it patched.

Not intercepted, and documented so: ``os.read``/``os.write``/``os.dup`` on the fd, fcntl
flags on it, and ``ssl`` wrapping (a hijacked socket cannot be detached).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import importlib
import os
import socket as pysocket
import sys
from collections.abc import Callable
from typing import Any

from rumpnet.hijack.hsocket import HijackSocket, hijacked_fd

_saved: list[tuple[Any, str, Any]] = []
_orig_sendfile = getattr(os, "sendfile", None)
_orig_fromfd = pysocket.fromfd
# Modules whose event loops stay uvloop's under a hijack: the kernels' schedulers.
_UVLOOP_EXEMPT = frozenset({"rumpkern.sched"})


def _patch(owner: Any, name: str, value: Any) -> None:
    _saved.append((owner, name, owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)))
    setattr(owner, name, value)


def _loop_classes() -> list[type]:
    """Every loop class with its own ``_sock_sendfile_native`` (asyncio's and any
    subclass imported so far)."""
    out: list[type] = []
    todo: list[type] = [asyncio.base_events.BaseEventLoop]
    while todo:
        cls = todo.pop()
        if "_sock_sendfile_native" in cls.__dict__ and cls is not asyncio.base_events.BaseEventLoop:
            out.append(cls)
        todo.extend(cls.__subclasses__())
    return out


def _sendfile_native_for(orig: Callable[..., Any]) -> Callable[..., Any]:
    async def _sock_sendfile_native(self: Any, sock: Any, file: Any, offset: int, count: int | None) -> Any:
        if isinstance(sock, HijackSocket):
            raise asyncio.exceptions.SendfileNotAvailableError("rump kernel socket: no os.sendfile")
        return await orig(self, sock, file, offset, count)

    return _sock_sendfile_native


def _os_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int, *args: Any, **kw: Any) -> int:
    sock = hijacked_fd(out_fd)
    if sock is None:
        assert _orig_sendfile is not None
        return int(_orig_sendfile(out_fd, in_fd, offset, count, *args, **kw))
    if offset is None:
        data = os.read(in_fd, count)
    else:
        data = os.pread(in_fd, count, offset)
    if not data:
        return 0
    return int(sock.send(data))


def _fromfd(fd: Any, family: int, type: int, proto: int = 0) -> Any:  # noqa: A002
    sock = hijacked_fd(fd)
    if sock is not None:
        return sock.dup()
    return _orig_fromfd(fd, family, type, proto)


def _selector_loop_class() -> type:
    class HijackedUvloopLoop(asyncio.SelectorEventLoop):
        """What ``uvloop.Loop`` is under a hijack: asyncio's selector loop."""

    return HijackedUvloopLoop


def _patch_uvloop() -> None:
    # Imported now if installed: a first ``import uvloop`` inside the block (aiohttp's
    # runner, an application's main) must find it patched too. A real uvloop loop there
    # takes a hijacked socket's fd into a libuv handle and closes that number again after
    # the socket has, closing whatever it has become meanwhile (a scheduler's epoll).
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:  # uvloop is optional
        return
    orig_loop = uvloop.Loop
    loop_cls = _selector_loop_class()

    def new_event_loop() -> Any:
        caller = sys._getframe(1).f_globals.get("__name__")
        return orig_loop() if caller in _UVLOOP_EXEMPT else loop_cls()

    _patch(uvloop, "Loop", loop_cls)
    _patch(uvloop, "new_event_loop", new_event_loop)


def install() -> None:
    for cls in _loop_classes():
        _patch(cls, "_sock_sendfile_native", _sendfile_native_for(cls.__dict__["_sock_sendfile_native"]))
    if _orig_sendfile is not None:
        _patch(os, "sendfile", _os_sendfile)
    _patch(pysocket, "fromfd", _fromfd)
    _patch_uvloop()


def uninstall() -> None:
    while _saved:
        owner, name, value = _saved.pop()
        if value is None and isinstance(owner, type):
            delattr(owner, name)
        else:
            setattr(owner, name, value)
