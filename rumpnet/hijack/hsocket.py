"""The hijacked socket: ``socket.socket``'s interface on a kernel socket, with a real fd.

A :class:`HijackSocket` owns a descriptor in the hijacking process of a rump kernel
(always non-blocking there) and a host ``socketpair`` whose one end is what ``fileno()``
returns. The kernel side keeps that end's readiness equal to the kernel socket's:

* readable: the other end has written a byte into it (drained again when not readable);
* writable: its send buffer (kept at the minimum size) is empty; to make it unwritable
  the kernel side fills it, to make it writable again the other end drains it.

So ``select``, ``selectors``, ``poll``/``epoll`` and asyncio's selector loop see the kernel
socket's readiness on an ordinary fd without knowing about the kernel. Keeping the state
is the backend's job (:mod:`rumpnet.hijack.backend`: an in-process kernel or a
``rump_server``): after every call on the socket, and whenever the kernel socket becomes
ready.

Blocking calls and timeouts are done here as CPython does them: a non-blocking attempt,
then a wait on the fd (with the remaining timeout), then another attempt; the kernel's
CPU is never held while a user thread waits.
"""

from __future__ import annotations

import _socket
import errno
import os
import select
import socket as pysocket
import threading
import time
import weakref
from typing import TYPE_CHECKING, Any

from rumpnet.mirror import borrow
from rumpnet.uipc_socket import Socket

if TYPE_CHECKING:
    from rumpnet.hijack import Hijack

SOCK_NONBLOCK = getattr(pysocket, "SOCK_NONBLOCK", 0o4000)
SOCK_CLOEXEC = getattr(pysocket, "SOCK_CLOEXEC", 0o2000000)
_FILL = b"\0" * 4096


class ReadySignal:
    """The socketpair whose end ``fd`` mirrors a kernel socket's readiness."""

    def __init__(self) -> None:
        a, b = _socket.socketpair(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
        a.setblocking(False)
        b.setblocking(False)
        a.setsockopt(pysocket.SOL_SOCKET, pysocket.SO_SNDBUF, 1)  # the minimum: fills fast
        self._a = a
        self._b = b
        self.fd = a.fileno()
        self.readable = False
        self.writable = True
        self.closed = False
        self._lock = threading.Lock()

    def raise_ready(self, readable: bool, writable: bool) -> None:
        """Become readable and/or writable (never less ready)."""
        with self._lock:
            self._set(self.readable or readable, self.writable or writable)

    def set(self, readable: bool, writable: bool) -> None:
        with self._lock:
            self._set(readable, writable)

    def _set(self, readable: bool, writable: bool) -> None:
        if self.closed:
            return
        if readable != self.readable:
            if readable:
                self._b.send(b"r")
            else:
                _drain(self._a)
            self.readable = readable
        if writable != self.writable:
            if writable:
                _drain(self._b)
            else:
                while True:
                    try:
                        self._a.send(_FILL)
                    except (BlockingIOError, InterruptedError):
                        break
            self.writable = writable

    def close(self) -> None:
        with self._lock:
            if not self.closed:
                self.closed = True
                self._a.close()
                self._b.close()


def _drain(s: _socket.socket) -> None:
    while True:
        try:
            if not s.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return


def _timed_out() -> OSError:
    return TimeoutError("timed out")


@borrow(pysocket.socket)
class HijackSocket:
    """A kernel socket shaped like ``socket.socket`` (made by the hijacked ``socket.socket``)."""

    def __init__(self, hj: Hijack, family: int = pysocket.AF_INET, type: int = pysocket.SOCK_STREAM,  # noqa: A002
                 proto: int = 0, kfd: int | None = None) -> None:
        self._hj = hj
        self._backend = hj.backend
        self._family = family
        self._type = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        self._proto = proto
        self._timeout: float | None = 0.0 if type & SOCK_NONBLOCK else pysocket.getdefaulttimeout()
        self._io_refs = 0
        self._closed = False
        self._kfd = -1 if kfd is None else kfd
        self._so: Socket | None = None  # the kernel socket (in-process kernels)
        self._chan: Any = None
        self._sync_pending = False
        self._sig = ReadySignal()
        try:
            self._backend.attach(self, kfd)
        except BaseException:
            self._sig.close()
            self._closed = True
            raise
        _by_fd[self._sig.fd] = self

    def _call(self, name: str, *args: Any) -> Any:
        """``rump_sys_<name>(kfd, *args)`` in the kernel, then the readiness sync."""
        if self._sig.closed:
            raise OSError(errno.EBADF, "Bad file descriptor")
        return self._backend.call(self, name, *args)

    # -- waiting (user thread) -----------------------------------------------------------------
    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, write: bool, deadline: float | None) -> None:
        if deadline is None:
            ms = None
        else:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _timed_out()
            ms = max(1, int(left * 1000))
        poller = select.poll()
        poller.register(self._sig.fd, select.POLLOUT if write else select.POLLIN)
        try:
            poller.poll(ms)
        except InterruptedError:
            pass

    def _io(self, write: bool, fn: str, *args: Any) -> Any:
        deadline = self._deadline()
        while True:
            try:
                return self._call(fn, *args)
            except BlockingIOError:
                if self._timeout == 0:
                    raise
            self._wait(write, deadline)

    # -- socket.socket's interface -------------------------------------------------------------
    @property
    def family(self) -> pysocket.AddressFamily:
        return pysocket.AddressFamily(self._family)

    @property
    def type(self) -> pysocket.SocketKind:
        return pysocket.SocketKind(self._type)

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def timeout(self) -> float | None:
        return self._timeout

    def fileno(self) -> int:
        return -1 if self._sig.closed else self._sig.fd

    def __repr__(self) -> str:
        state = "closed" if self._sig.closed else f"fd={self._sig.fd} rumpfd={self._kfd}"
        return (f"<rump hijacked socket {state}, family={self.family!r}, type={self.type!r}, "
                f"proto={self._proto}, kernel={getattr(self._hj.kernel, 'hostname', '?')}>")

    def __enter__(self) -> HijackSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> Any:
        raise TypeError(f"cannot pickle {self.__class__.__name__!r} object")

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def get_inheritable(self) -> bool:
        return False

    def set_inheritable(self, inheritable: bool) -> None:
        pass

    def bind(self, address: Any) -> None:
        self._call("bind", address)

    def listen(self, backlog: int = 128) -> None:
        self._call("listen", min(max(backlog, 0), 4096))

    def connect(self, address: Any) -> None:
        try:
            self._call("connect", address)
            return
        except BlockingIOError:
            if self._timeout == 0:
                raise
        deadline = self._deadline()
        while True:
            self._wait(True, deadline)
            err = self.getsockopt(pysocket.SOL_SOCKET, pysocket.SO_ERROR)
            if err:
                raise OSError(err, os.strerror(err))
            try:
                self.getpeername()
                return
            except OSError as e:
                if e.errno != errno.ENOTCONN:
                    raise

    def connect_ex(self, address: Any) -> int:
        try:
            self.connect(address)
        except TimeoutError:
            return errno.EAGAIN
        except OSError as e:
            return e.errno if e.errno is not None else errno.EIO
        return 0

    def accept(self) -> tuple[HijackSocket, Any]:
        nfd, addr = self._io(False, "accept")
        try:
            sock = HijackSocket(self._hj, self._family, self._type, self._proto, kfd=nfd)
        except BaseException:
            self._backend.close_fd(nfd)
            raise
        sock._timeout = pysocket.getdefaulttimeout()
        return sock, addr

    def dup(self) -> HijackSocket:
        nfd = self._backend.dup(self)
        sock = HijackSocket(self._hj, self._family, self._type, self._proto, kfd=nfd)
        sock._timeout = self._timeout
        return sock

    def _recvfrom(self, bufsize: int, flags: int) -> tuple[bytes, Any]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        waitall = flags & pysocket.MSG_WAITALL and not flags & pysocket.MSG_PEEK
        flags &= ~pysocket.MSG_WAITALL
        if flags & pysocket.MSG_DONTWAIT:
            return self._call("recvfrom", bufsize, flags)  # type: ignore[no-any-return]
        if not waitall:
            return self._io(False, "recvfrom", bufsize, flags)  # type: ignore[no-any-return]
        buf = bytearray()
        addr = None
        deadline = self._deadline()
        while len(buf) < bufsize:
            try:
                chunk, addr = self._call("recvfrom", bufsize - len(buf), flags)
            except BlockingIOError:
                if self._timeout == 0:
                    if buf:
                        break
                    raise
                self._wait(False, deadline)
                continue
            if not chunk:
                break
            buf += chunk
        return bytes(buf), addr

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        return self._recvfrom(bufsize, flags)[0]

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._recvfrom(bufsize, flags)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        data = self._recvfrom(nbytes or len(view), flags)[0]
        view[:len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        data, addr = self._recvfrom(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data), addr

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0) -> tuple[bytes, list[Any], int, Any]:
        data, addr = self._recvfrom(bufsize, flags)
        return data, [], 0, addr

    def send(self, data: Any, flags: int = 0) -> int:
        if flags & pysocket.MSG_DONTWAIT:
            return self._call("sendto", data, flags, None)  # type: ignore[no-any-return]
        return self._io(True, "sendto", data, flags, None)  # type: ignore[no-any-return]

    def sendto(self, data: Any, flags_or_addr: Any, addr: Any = None) -> int:
        if addr is None:
            flags, addr = 0, flags_or_addr
        else:
            flags = flags_or_addr
        if flags & pysocket.MSG_DONTWAIT:
            return self._call("sendto", data, flags, addr)  # type: ignore[no-any-return]
        return self._io(True, "sendto", data, flags, addr)  # type: ignore[no-any-return]

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        sent = 0
        while sent < len(view):
            try:
                sent += self._call("sendto", view[sent:], flags, None)
            except BlockingIOError:
                if self._timeout == 0:
                    raise
                self._wait(True, deadline)

    def sendmsg(self, buffers: Any, ancdata: Any = (), flags: int = 0, address: Any = None) -> int:
        if ancdata:
            raise OSError(errno.EOPNOTSUPP, "ancillary data is not supported on rump sockets")
        data = b"".join(bytes(b) for b in buffers)
        if address is not None:
            return self.sendto(data, flags, address)
        return self.send(data, flags)

    def sendfile(self, file: Any, offset: int = 0, count: int | None = None) -> int:
        if offset:
            file.seek(offset)
        total = 0
        while count is None or total < count:
            n = 65536 if count is None else min(65536, count - total)
            chunk = file.read(n)
            if not chunk:
                break
            self.sendall(chunk)
            total += len(chunk)
        if total and hasattr(file, "seek"):
            file.seek(offset + total)
        return total

    def shutdown(self, how: int) -> None:
        self._call("shutdown", how)

    def getsockname(self) -> Any:
        return self._call("getsockname")

    def getpeername(self) -> Any:
        return self._call("getpeername")

    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None) -> None:
        if value is None:
            value = bytes(optlen or 0)
        self._call("setsockopt", level, optname, value)

    def getsockopt(self, level: int, optname: int, buflen: int = 0) -> Any:
        return self._call("getsockopt", level, optname, buflen)

    def ioctl(self, request: int, arg: Any = 0) -> int:
        return self._call("ioctl", request, arg)  # type: ignore[no-any-return]

    # makefile() and its reference counting are the standard library's own code.
    makefile = pysocket.socket.makefile
    _decref_socketios = pysocket.socket._decref_socketios  # type: ignore[attr-defined]

    def close(self) -> None:
        self._closed = True
        if self._io_refs <= 0:
            self._real_close()

    def detach(self) -> int:
        raise OSError(errno.EOPNOTSUPP, "a hijacked socket has no host descriptor to detach")

    def _real_close(self) -> None:
        self._closed = True
        if self._sig.closed:
            return
        try:
            self._backend.detach(self)
        finally:
            self._sig.close()

    def __del__(self) -> None:
        try:
            if not self._sig.closed:
                self._real_close()
        except Exception:  # noqa: S110 (interpreter shutdown, kernel gone)
            pass


# fd of a hijacked socket's readiness signal -> the socket (patches.py looks fds up here)
_by_fd: weakref.WeakValueDictionary[int, HijackSocket] = weakref.WeakValueDictionary()


def hijacked_fd(fd: Any) -> HijackSocket | None:
    """The open hijacked socket whose ``fileno()`` is ``fd``, if any."""
    try:
        sock = _by_fd.get(int(fd))
    except (TypeError, ValueError):
        return None
    return sock if sock is not None and sock.fileno() == int(fd) else None


def is_hijacked(sock: Any) -> bool:
    return isinstance(sock, HijackSocket)


__all__ = ["HijackSocket", "ReadySignal", "hijacked_fd", "is_hijacked"]
