"""A ``socket.socket``-shaped object on a rump kernel, and ``create_connection``.

``s = k.socket(AF_INET, SOCK_STREAM)`` behaves like the standard library's socket:
blocking by default, ``settimeout`` (raising ``TimeoutError``), ``setblocking``,
``sendall``, ``makefile`` (so ``http.client`` and ``socketserver``-style code work),
context manager. Its ``fileno()`` is the descriptor in the kernel's fd table, not a host
fd: to put rump sockets in ``selectors``, use :mod:`rumpnet.hijack`.
"""

from __future__ import annotations

import errno
import fcntl as hostfcntl
import os
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpnet.mirror import borrow
from rumpnet.sys_socket import pollfd
from rumpnet.uipc_socket import POLLERR, POLLHUP, POLLOUT

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

_GLOBAL_DEFAULT_TIMEOUT = pysocket._GLOBAL_DEFAULT_TIMEOUT  # type: ignore[attr-defined]


@borrow(pysocket.socket)
class RumpSocket:
    """A socket in a rump kernel with the interface of ``socket.socket``."""

    def __init__(self, kernel: Kernel, family: int = pysocket.AF_INET, type: int = pysocket.SOCK_STREAM,  # noqa: A002
                 proto: int = 0, fileno: int | None = None) -> None:
        self.kernel = kernel
        self.family = pysocket.AddressFamily(family)
        self.type = pysocket.SocketKind(type & ~(getattr(pysocket, "SOCK_NONBLOCK", 0) | getattr(pysocket, "SOCK_CLOEXEC", 0)))
        self.proto = proto
        self._fd = kernel.rump_sys_socket(family, type, proto) if fileno is None else fileno
        self._timeout: float | None = pysocket.getdefaulttimeout()
        self._io_refs = 0
        self._closed = False
        if self._timeout is not None:
            self._apply_timeout()

    def __repr__(self) -> str:
        return f"<RumpSocket fd={self._fd} family={self.family!r} type={self.type!r} kernel={self.kernel.hostname}>"

    # -- plumbing ---------------------------------------------------------------------
    def fileno(self) -> int:
        return -1 if self._closed else self._fd

    def _check(self) -> int:
        if self._closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._fd

    def _apply_timeout(self) -> None:
        fd = self._check()
        k = self.kernel
        t = self._timeout
        flags = k.rump_sys_fcntl(fd, hostfcntl.F_GETFL, 0)
        if t == 0:
            k.rump_sys_fcntl(fd, hostfcntl.F_SETFL, flags | os.O_NONBLOCK)
        else:
            k.rump_sys_fcntl(fd, hostfcntl.F_SETFL, flags & ~os.O_NONBLOCK)
            secs = float(t or 0.0)
            k.rump_sys_setsockopt(fd, pysocket.SOL_SOCKET, pysocket.SO_RCVTIMEO, secs)
            k.rump_sys_setsockopt(fd, pysocket.SOL_SOCKET, pysocket.SO_SNDTIMEO, secs)

    def _call(self, fn: Any, *args: Any) -> Any:
        try:
            return fn(*args)
        except OSError as e:
            if e.errno == errno.EWOULDBLOCK and self._timeout:
                raise TimeoutError("timed out") from None
            if e.errno == errno.EWOULDBLOCK:
                raise BlockingIOError(e.errno, e.strerror) from None
            raise

    # -- timeouts / blocking -------------------------------------------------------------
    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value
        self._apply_timeout()

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self.settimeout(None if flag else 0.0)

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    # -- the calls -------------------------------------------------------------------------
    def bind(self, address: Any) -> None:
        self.kernel.rump_sys_bind(self._check(), address)

    def listen(self, backlog: int = 128) -> None:
        self.kernel.rump_sys_listen(self._check(), backlog)

    def accept(self) -> tuple[RumpSocket, Any]:
        fd, addr = self._call(self.kernel.rump_sys_accept, self._check())
        s = RumpSocket(self.kernel, self.family, self.type, self.proto, fileno=fd)
        # Like the standard library: the new socket is blocking unless a default
        # timeout is set (the kernel's BSD flag inheritance is undone here).
        s._timeout = pysocket.getdefaulttimeout()
        s._apply_timeout()
        return s, addr

    def connect(self, address: Any) -> None:
        fd = self._check()
        k = self.kernel
        if not self._timeout:
            self._call(k.rump_sys_connect, fd, address)
            return
        # With a timeout: non-blocking connect, then wait for writability (as CPython does).
        flags = k.rump_sys_fcntl(fd, hostfcntl.F_GETFL, 0)
        k.rump_sys_fcntl(fd, hostfcntl.F_SETFL, flags | os.O_NONBLOCK)
        try:
            try:
                k.rump_sys_connect(fd, address)
                return
            except OSError as e:
                if e.errno != errno.EINPROGRESS:
                    raise
            p = pollfd(fd, POLLOUT)
            if k.rump_sys_poll([p], 1, int(self._timeout * 1000)) == 0:
                raise TimeoutError("timed out")
            err = int(k.rump_sys_getsockopt(fd, pysocket.SOL_SOCKET, pysocket.SO_ERROR))
            if err:
                raise OSError(err, os.strerror(err))
            if p.revents & (POLLERR | POLLHUP) and not p.revents & POLLOUT:
                raise OSError(errno.ECONNREFUSED, os.strerror(errno.ECONNREFUSED))
        finally:
            k.rump_sys_fcntl(fd, hostfcntl.F_SETFL, flags)

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except OSError as e:
            return e.errno or errno.EIO
        return 0

    def send(self, data: Any, flags: int = 0) -> int:
        return self._call(self.kernel.rump_sys_send, self._check(), data, flags)  # type: ignore[no-any-return]

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        sent = 0
        while sent < len(view):
            sent += self.send(view[sent:], flags)

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        if addr is None:
            flags, addr = 0, flags_or_addr
        else:
            flags = flags_or_addr
        return self._call(self.kernel.rump_sys_sendto, self._check(), data, flags, addr)  # type: ignore[no-any-return]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._call(self.kernel.rump_sys_recv, self._check(), bufsize, flags)  # type: ignore[no-any-return]

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._call(self.kernel.rump_sys_recvfrom, self._check(), bufsize, flags)  # type: ignore[no-any-return]

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        data = self.recv(n, flags)
        view[: len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        data, addr = self.recvfrom(nbytes or len(view), flags)
        view[: len(data)] = data
        return len(data), addr

    def shutdown(self, how: int) -> None:
        self.kernel.rump_sys_shutdown(self._check(), how)

    def getsockname(self) -> Any:
        return self.kernel.rump_sys_getsockname(self._check())

    def getpeername(self) -> Any:
        return self.kernel.rump_sys_getpeername(self._check())

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        self.kernel.rump_sys_setsockopt(self._check(), level, optname, value)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> Any:
        return self.kernel.rump_sys_getsockopt(self._check(), level, optname, buflen)

    # -- lifetime --------------------------------------------------------------------------
    makefile = pysocket.socket.makefile

    def _decref_socketios(self) -> None:
        if self._io_refs > 0:
            self._io_refs -= 1
        if self._closed and self._io_refs == 0:
            self._real_close()

    def _real_close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            try:
                self.kernel.rump_sys_close(fd)
            except OSError:
                pass

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def detach(self) -> int:
        fd, self._fd = self._fd, -1
        self._closed = True
        return fd

    @property
    def _closed_flag(self) -> bool:
        return self._closed

    def __enter__(self) -> RumpSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def create_connection(kernel: Kernel, address: tuple[str, int], timeout: Any = _GLOBAL_DEFAULT_TIMEOUT,
                      source_address: tuple[str, int] | None = None) -> RumpSocket:
    """``socket.create_connection`` on a kernel (numeric addresses only: the kernel has
    no resolver)."""
    s = RumpSocket(kernel, pysocket.AF_INET, pysocket.SOCK_STREAM)
    try:
        if timeout is not _GLOBAL_DEFAULT_TIMEOUT:
            s.settimeout(timeout)
        if source_address:
            s.bind(source_address)
        s.connect(address)
    except BaseException:
        s.close()
        raise
    return s
