"""rumpclient: system calls on a remote rump kernel (NetBSD's rumpclient(3)).

    from rumpnet import rumpclient
    c = rumpclient.init()                  # connects to $RUMP_SERVER
    fd = c.rump_sys_socket(AF_INET, SOCK_DGRAM, 0)

:class:`RumpClient` has the in-process :class:`rumpkern.Kernel`'s ``rump_sys_*`` methods
with the same names and signatures (so a test can run against either), the commands
(``c.ifconfig(...)``, ``c.ping(...)``, ...) run inside the server, ``c.halt()`` stops the
server, and ``c.socket()`` gives a ``socket.socket``-shaped object. A client is one process
in the server's kernel. It is thread-safe: any number of threads may block in calls at
once; requests are multiplexed on the connection by request number.

Connection loss: ``rumpclient_setconnretry(t)`` as in rumpclient(3). ``0`` (the default):
no reconnection, calls fail with ``ENOTCONN``; ``n > 0``: try to reconnect for ``n``
seconds; ``RUMPCLIENT_RETRYCONN_INFTIME``: retry forever; ``RUMPCLIENT_RETRYCONN_ONCE``:
one attempt, then give up; ``RUMPCLIENT_RETRYCONN_DIE``: exit the host process. A
reconnection makes a new process in the server (the old fds are gone); calls that were
in flight when the connection was lost fail with ``ENOTCONN``.
"""

from __future__ import annotations

import concurrent.futures
import errno
import itertools
import os
import socket as pysocket
import sys
import threading
import time
from typing import Any

from rumpkern.strict import KernelInternalError
from rumpkern.syscall_docs import document
from rumpnet.mirror import borrow
from rumpnet.server.protocol import (
    MAX_FRAME,
    PROTO_NAME,
    PROTO_VERSION,
    ProtocolError,
    decode,
    frame,
    frame_length,
    parse_url,
)

RUMPCLIENT_RETRYCONN_INFTIME = -1
RUMPCLIENT_RETRYCONN_ONCE = -2
RUMPCLIENT_RETRYCONN_DIE = -3

_default_retry = 0
CONNECT_TIMEOUT = 10.0
# Data moved by one request: a frame holds it with room to spare for the rest of the message.
MAX_DATA = MAX_FRAME - 64 * 1024


def _notconn(msg: str = "not connected to the rump kernel server") -> OSError:
    return OSError(errno.ENOTCONN, msg)


def _recv_exact(sock: pysocket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise ConnectionResetError(errno.ECONNRESET, "connection closed by the server")
        buf += chunk
    return bytes(buf)


def _recv_msg(sock: pysocket.socket) -> Any:
    n = frame_length(_recv_exact(sock, 4))
    return decode(_recv_exact(sock, n))


def _error(code: Any, msg: Any, kind: Any, extra: Any = None) -> Exception:
    """The exception a server's error reply stands for (the commands' own classes when the
    server raised one of them; :class:`KernelInternalError` with the server's traceback
    for an internal error of a strict-mode server)."""
    code = code if isinstance(code, int) else errno.EIO
    msg = str(msg)
    extra = extra if isinstance(extra, dict) else {}
    if kind == "KernelInternalError":
        return KernelInternalError(f"rump server: {msg}", "rump_server")
    try:
        if kind == "UsageError":
            from rumpnet.commands import UsageError

            return UsageError(msg)
        if kind == "PingFailed":
            from rumpnet.commands import PingFailed

            return PingFailed(code, msg, str(extra.get("output", "")), int(extra.get("exit_status", 2)))
    except (ImportError, TypeError, ValueError):
        pass
    return OSError(code, msg)


class _Connection:
    """One connection to the server: a socket, a reader thread and the calls in flight."""

    def __init__(self, client: RumpClient, sock: pysocket.socket, pid: int, info: dict[str, Any]) -> None:
        self.client = client
        self.sock = sock
        self.pid = pid
        self.info = info
        self.pending: dict[int, concurrent.futures.Future[Any]] = {}
        self.lock = threading.Lock()
        self.send_lock = threading.Lock()
        self.alive = True
        self.reqnos = itertools.count(1)
        self.reader = threading.Thread(target=self._read_loop, name="rumpclient-reader", daemon=True)
        self.reader.start()

    def submit(self, name: str, args: tuple[Any, ...]) -> concurrent.futures.Future[Any]:
        fut: concurrent.futures.Future[Any] = concurrent.futures.Future()
        data_args = args
        with self.lock:
            if not self.alive:
                raise _notconn()
            reqno = next(self.reqnos)
            self.pending[reqno] = fut
        try:
            data = frame(("call", reqno, name, data_args))
        except ProtocolError as e:
            with self.lock:
                self.pending.pop(reqno, None)
            raise OSError(errno.EINVAL, f"argument cannot be sent: {e}") from None
        try:
            with self.send_lock:
                self.sock.sendall(data)
        except OSError:
            self.die()
        return fut

    def _read_loop(self) -> None:
        try:
            while True:
                msg = _recv_msg(self.sock)
                if not (isinstance(msg, tuple) and len(msg) >= 2 and isinstance(msg[1], int)):
                    break
                with self.lock:
                    fut = self.pending.pop(msg[1], None)
                if msg[0] == "ok" and len(msg) == 4:
                    if fut is not None:
                        fut.set_result((msg[2], msg[3]))
                elif msg[0] == "err" and len(msg) == 6:
                    if fut is not None:
                        fut.set_exception(_error(msg[2], msg[3], msg[4], msg[5]))
                    if msg[4] == "ProtocolError":
                        break  # the server closes after this
                else:
                    break
        except (OSError, ProtocolError):
            pass
        self.die()

    def die(self) -> None:
        with self.lock:
            if not self.alive:
                return
            self.alive = False
            pending, self.pending = self.pending, {}
        try:
            self.sock.close()
        except OSError:
            pass
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(_notconn("connection to the rump kernel server lost"))
        self.client._lost(self)

    def close(self) -> None:
        try:
            self.sock.shutdown(pysocket.SHUT_RDWR)
        except OSError:
            pass
        self.die()


class RumpClient:
    """A connection to a rump_server: the kernel's ``rump_sys_*`` calls, run remotely."""

    def __init__(self, url: str | None = None, retry: int | None = None, comm: str | None = None) -> None:
        url = url if url is not None else os.environ.get("RUMP_SERVER")
        if not url:
            raise OSError(errno.ENOENT, "RUMP_SERVER is not set (unix://path or tcp://127.0.0.1:port/)")
        try:
            parse_url(url)
        except ValueError as e:
            raise OSError(errno.EINVAL, str(e)) from None
        except TypeError:
            raise TypeError(f"url must be a str, not {type(url).__name__}") from None
        self.url = url
        self.retry = _default_retry if retry is None else retry
        self.comm = comm or os.path.basename(sys.argv[0] or "python") or "python"
        self._conn: _Connection | None = None
        self._connect_lock = threading.Lock()
        self._closed = False
        self._gave_up = False
        self._conn = self._connect()

    # -- connection management -----------------------------------------------------------------
    def _connect(self) -> _Connection:
        kind, where = parse_url(self.url)
        if kind == "unix":
            sock = pysocket.socket(pysocket.AF_UNIX, pysocket.SOCK_STREAM)
        else:
            sock = pysocket.socket(pysocket.AF_INET6 if ":" in where[0] else pysocket.AF_INET, pysocket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT)
            try:
                sock.connect(where)
            except OSError as e:  # name the server that is not there
                raise OSError(e.errno, f"{self.url}: {e.strerror or e}") from None
            banner = _recv_msg(sock)
            if not (isinstance(banner, tuple) and len(banner) == 3 and banner[0] == PROTO_NAME):
                raise OSError(errno.EPROTO, "not a rumpnet server")
            if banner[1] != PROTO_VERSION:
                raise OSError(errno.EPROTONOSUPPORT, f"server speaks protocol version {banner[1]!r}, we {PROTO_VERSION}")
            sock.sendall(frame(("hello", PROTO_VERSION, {"comm": self.comm, "pid": os.getpid()})))
            welcome = _recv_msg(sock)
            if isinstance(welcome, tuple) and len(welcome) == 6 and welcome[0] == "err":
                raise _error(welcome[2], welcome[3], None)
            if not (isinstance(welcome, tuple) and len(welcome) == 2 and welcome[0] == "welcome"):
                raise OSError(errno.EPROTO, "bad handshake reply")
            sock.settimeout(None)
        except ProtocolError as e:
            sock.close()
            raise OSError(errno.EPROTO, str(e)) from None
        except BaseException:
            sock.close()
            raise
        info = banner[2] if isinstance(banner[2], dict) else {}
        return _Connection(self, sock, int(welcome[1]), info)

    def _lost(self, conn: _Connection) -> None:
        if self._closed or conn is not self._conn:
            return
        if self.retry == RUMPCLIENT_RETRYCONN_DIE:
            print("rumpclient: connection to the rump kernel server lost, exiting", file=sys.stderr, flush=True)
            os._exit(1)

    def _get_conn(self) -> _Connection:
        conn = self._conn
        if conn is not None and conn.alive:
            return conn
        with self._connect_lock:
            conn = self._conn
            if conn is not None and conn.alive:
                return conn
            if self._closed:
                raise _notconn("client closed")
            if self.retry == RUMPCLIENT_RETRYCONN_DIE:
                print("rumpclient: connection to the rump kernel server lost, exiting", file=sys.stderr, flush=True)
                os._exit(1)
            if self.retry == 0 or self._gave_up:
                raise _notconn()
            if self.retry == RUMPCLIENT_RETRYCONN_ONCE:
                try:
                    self._conn = self._connect()
                except OSError:
                    self._gave_up = True
                    raise _notconn("reconnection to the rump kernel server failed") from None
                return self._conn
            deadline = None if self.retry == RUMPCLIENT_RETRYCONN_INFTIME else time.monotonic() + self.retry
            delay = 0.02
            while True:
                try:
                    self._conn = self._connect()
                    return self._conn
                except OSError:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise _notconn("could not reconnect to the rump kernel server") from None
                time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
                delay = min(delay * 2, 1.0)

    def setconnretry(self, timeout: int) -> None:
        """How this client reacts to a lost connection (rumpclient_setconnretry(3): 0, n seconds, or RUMPCLIENT_RETRYCONN_*)."""
        self.retry = _check_retry(timeout)
        self._gave_up = False

    @property
    def pid(self) -> int:
        """This client's process id in the server's kernel."""
        return self._get_conn().pid

    @property
    def hostname(self) -> str:
        """The server kernel's hostname."""
        return str(self.server_info.get("hostname", "rump"))

    @property
    def server_info(self) -> dict[str, Any]:
        """What the server said at the handshake (``server_pid``, ``hostname``, ...)."""
        return self._get_conn().info

    @property
    def connected(self) -> bool:
        """The connection to the server is up (False once it was lost or closed)."""
        conn = self._conn
        return conn is not None and conn.alive and not self._closed

    def close(self) -> None:
        """Disconnect: the server exits this client's process and closes its files."""
        self._closed = True
        conn = self._conn
        if conn is not None:
            conn.close()

    def __enter__(self) -> RumpClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------------
    def call(self, name: str, *args: Any) -> tuple[Any, list[Any]]:
        """Make request ``name``; returns ``(result, outs)`` (the in/out arguments' new values)."""
        fut = self._get_conn().submit(name, args)
        return fut.result()  # type: ignore[no-any-return]

    def _sys(self, name: str, *args: Any) -> Any:
        result, outs = self.call(name, *args)
        out_iter = iter(outs)
        for arg in args:
            if isinstance(arg, bytearray):
                new = next(out_iter, None)
                if isinstance(new, (bytes, bytearray)):
                    arg[:] = new
            elif isinstance(arg, list):
                new = next(out_iter, None)
                if isinstance(new, list):
                    for i, item in enumerate(new[: len(arg)]):
                        if isinstance(arg[i], list) and isinstance(item, list):
                            arg[i][:] = item
                        else:
                            arg[i] = item
        return result

    def __getattr__(self, name: str) -> Any:
        if name.startswith("rump_sys_"):
            def call(*args: Any) -> Any:
                return self._sys(name, *args)

            call.__name__ = name
            return call
        raise AttributeError(name)

    # -- the kernel's system calls (same names and signatures as rumpkern.Kernel) -------------------
    def rump_sys_socket(self, domain: int, type: int, protocol: int = 0) -> int:  # noqa: A002
        return self._sys("rump_sys_socket", int(domain), int(type), int(protocol))  # type: ignore[no-any-return]

    def rump_sys_bind(self, fd: int, addr: Any) -> None:
        return self._sys("rump_sys_bind", fd, addr)  # type: ignore[no-any-return]

    def rump_sys_connect(self, fd: int, addr: Any) -> None:
        return self._sys("rump_sys_connect", fd, addr)  # type: ignore[no-any-return]

    def rump_sys_listen(self, fd: int, backlog: int) -> None:
        return self._sys("rump_sys_listen", fd, backlog)  # type: ignore[no-any-return]

    def rump_sys_accept(self, fd: int) -> tuple[int, Any]:
        return self._sys("rump_sys_accept", fd)  # type: ignore[no-any-return]

    def _chunked(self, name: str, fd: int, data: Any, *rest: Any) -> int:
        """Data larger than a frame goes in several requests (a short count stops it)."""
        view = memoryview(bytes(data))
        if len(view) <= MAX_DATA:
            return self._sys(name, fd, bytes(view), *rest)  # type: ignore[no-any-return]
        total = 0
        while view:
            chunk = bytes(view[:MAX_DATA])
            n = self._sys(name, fd, chunk, *rest)
            total += n
            view = view[n:]
            if n < len(chunk):
                break
        return total

    def rump_sys_send(self, fd: int, data: Any, flags: int = 0) -> int:
        return self._chunked("rump_sys_send", fd, data, flags)

    def rump_sys_sendto(self, fd: int, data: Any, flags: int, addr: Any) -> int:
        return self._chunked("rump_sys_sendto", fd, data, flags, addr)

    def rump_sys_recv(self, fd: int, n: int, flags: int = 0) -> bytes:
        return self._sys("rump_sys_recv", fd, min(n, MAX_DATA), flags)  # type: ignore[no-any-return]

    def rump_sys_recvfrom(self, fd: int, n: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._sys("rump_sys_recvfrom", fd, min(n, MAX_DATA), flags)  # type: ignore[no-any-return]

    def rump_sys_recvmsg(self, fd: int, n: int, ancbufsize: int = 0, flags: int = 0) -> tuple[bytes, Any, int, Any]:
        return self._sys("rump_sys_recvmsg", fd, min(n, MAX_DATA), ancbufsize, flags)  # type: ignore[no-any-return]

    def rump_sys_sendmsg(self, fd: int, buffers: Any, ancdata: Any = (), flags: int = 0, addr: Any = None) -> int:
        return self._sys("rump_sys_sendmsg", fd, [bytes(b) for b in buffers],  # type: ignore[no-any-return]
                         [(lv, t, bytes(d)) for lv, t, d in ancdata], flags, addr)

    def rump_sys_shutdown(self, fd: int, how: int) -> None:
        return self._sys("rump_sys_shutdown", fd, how)  # type: ignore[no-any-return]

    def rump_sys_close(self, fd: int) -> None:
        return self._sys("rump_sys_close", fd)  # type: ignore[no-any-return]

    def rump_sys_getsockname(self, fd: int) -> Any:
        return self._sys("rump_sys_getsockname", fd)

    def rump_sys_getpeername(self, fd: int) -> Any:
        return self._sys("rump_sys_getpeername", fd)

    def rump_sys_setsockopt(self, fd: int, level: int, opt: int, value: Any) -> None:
        return self._sys("rump_sys_setsockopt", fd, level, opt, value)  # type: ignore[no-any-return]

    def rump_sys_getsockopt(self, fd: int, level: int, opt: int, buflen: int = 0) -> Any:
        return self._sys("rump_sys_getsockopt", fd, level, opt, buflen)

    def rump_sys_poll(self, fds: Any, nfds: int | None = None, timeout: int = -1) -> int:
        """``revents`` is written into the caller's ``pollfd`` objects or lists."""
        from rumpnet.sys_socket import pollfd

        wire = []
        for e in fds:
            if isinstance(e, pollfd):
                wire.append([e.fd, e.events, 0])
            elif isinstance(e, (list, tuple)) and len(e) >= 2:
                wire.append([int(e[0]), int(e[1]), 0])
            else:
                raise OSError(errno.EFAULT, "poll entries are pollfd objects or [fd, events, revents] lists")
        result, outs = self.call("rump_sys_poll", wire, nfds, timeout)
        done = outs[0] if outs and isinstance(outs[0], list) else wire
        n = len(wire) if nfds is None else min(int(nfds), len(wire))
        for e, w in list(zip(fds, done))[:n]:
            rev = w[2] if isinstance(w, list) and len(w) >= 3 else 0
            if isinstance(e, pollfd):
                e.revents = rev
            elif isinstance(e, list):
                if len(e) >= 3:
                    e[2] = rev
                else:
                    e.append(rev)
        return result  # type: ignore[no-any-return]

    def rump_sys_fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        return self._sys("rump_sys_fcntl", fd, cmd, arg)  # type: ignore[no-any-return]

    def rump_sys_ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        return self._sys("rump_sys_ioctl", fd, request, arg)  # type: ignore[no-any-return]

    def rump_sys___sysctl(self, name: Any, namelen: int | None = None, oldp: Any = None,
                          oldlenp: Any = None, newp: Any = None, newlen: int = 0) -> Any:
        if not isinstance(name, str):
            name = list(name)
        return self._sys("rump_sys___sysctl", name, namelen, oldp, oldlenp, newp, newlen)

    def rump_sys_reboot(self, howto: int = 0, bootstr: Any = None) -> None:
        self.halt()

    # etfs files (rump_etfs(3)): only keys registered in the server are reachable.
    def rump_sys_open(self, path: Any, flags: int, mode: int = 0) -> int:
        return self._sys("rump_sys_open", os.fsdecode(path), flags, mode)  # type: ignore[no-any-return]

    def rump_sys_read(self, fd: int, n: int) -> bytes:
        return self._sys("rump_sys_read", fd, min(n, MAX_DATA))  # type: ignore[no-any-return]

    def rump_sys_write(self, fd: int, data: Any) -> int:
        return self._chunked("rump_sys_write", fd, data)

    def rump_sys_pread(self, fd: int, n: int, offset: int) -> bytes:
        return self._sys("rump_sys_pread", fd, min(n, MAX_DATA), offset)  # type: ignore[no-any-return]

    def rump_sys_pwrite(self, fd: int, data: Any, offset: int) -> int:
        return self._sys("rump_sys_pwrite", fd, bytes(data), offset)  # type: ignore[no-any-return]

    def rump_sys_lseek(self, fd: int, offset: int, whence: int) -> int:
        return self._sys("rump_sys_lseek", fd, offset, whence)  # type: ignore[no-any-return]

    def rump_sys_fstat(self, fd: int) -> Any:
        from rumpnet.server.etfs import EtfsStat

        d = self._sys("rump_sys_fstat", fd)
        return EtfsStat(**d) if isinstance(d, dict) else d

    def rump_sys_getdents(self, fd: int, count: int = 1024) -> list[str]:
        return self._sys("rump_sys_getdents", fd, count)  # type: ignore[no-any-return]

    # -- server-side tools --------------------------------------------------------------------
    def command(self, name: str, *args: Any) -> Any:
        """Run in-kernel tool ``name`` with ``args`` inside the server; its output."""
        return self.call("command", name, [str(a) for a in args])[0]

    def ifconfig(self, *args: Any) -> str:
        return self.command("ifconfig", *args)  # type: ignore[no-any-return]

    def route(self, *args: Any) -> str:
        return self.command("route", *args)  # type: ignore[no-any-return]

    def arp(self, *args: Any) -> str:
        return self.command("arp", *args)  # type: ignore[no-any-return]

    def sysctl(self, *args: Any) -> str:
        return self.command("sysctl", *args)  # type: ignore[no-any-return]

    def netstat(self, *args: Any) -> str:
        return self.command("netstat", *args)  # type: ignore[no-any-return]

    def ping(self, *args: Any) -> Any:
        return self.command("ping", *args)

    def ping6(self, *args: Any) -> Any:
        return self.command("ping6", *args)

    def ndp(self, *args: Any) -> str:
        return self.command("ndp", *args)  # type: ignore[no-any-return]

    def tc(self, *args: Any) -> str:
        return self.command("tc", *args)  # type: ignore[no-any-return]

    def procs(self) -> list[tuple[int, str, list[tuple[int, str]]]]:
        """Every process in the server's kernel: ``(pid, comm, [(fd, kind), ...])``."""
        return [(p[0], p[1], [tuple(f) for f in p[2]]) for p in self.call("procs")[0]]

    def halt(self) -> None:
        """Stop the server (rump.halt)."""
        self.call("halt")
        self.close()

    def socket(self, family: int = pysocket.AF_INET, type: int = pysocket.SOCK_STREAM,  # noqa: A002
               proto: int = 0) -> Any:
        """A ``socket.socket``-shaped object on the server's kernel (``rumpnet.socket.RumpSocket``
        over this connection; a smaller :class:`RemoteSocket` if that module is absent)."""
        try:
            from rumpnet.socket import RumpSocket
        except ImportError:
            return RemoteSocket(self, family, type, proto)
        return RumpSocket(self, family, type, proto)  # type: ignore[arg-type]


@borrow(pysocket.socket)
class RemoteSocket:
    """A ``socket.socket``-shaped object whose fd lives in the server's kernel (blocking
    mode; timeouts through SO_RCVTIMEO/SO_SNDTIMEO)."""

    def __init__(self, client: RumpClient, family: int = pysocket.AF_INET, type: int = pysocket.SOCK_STREAM,  # noqa: A002
                 proto: int = 0, fd: int | None = None) -> None:
        self._c = client
        self.family, self.type, self.proto = family, type, proto
        self._fd = client.rump_sys_socket(family, type, proto) if fd is None else fd

    def fileno(self) -> int:
        return self._fd

    def bind(self, addr: Any) -> None:
        self._c.rump_sys_bind(self._fd, addr)

    def connect(self, addr: Any) -> None:
        self._c.rump_sys_connect(self._fd, addr)

    def listen(self, backlog: int = 128) -> None:
        self._c.rump_sys_listen(self._fd, backlog)

    def accept(self) -> tuple[RemoteSocket, Any]:
        fd, addr = self._c.rump_sys_accept(self._fd)
        return RemoteSocket(self._c, self.family, self.type, self.proto, fd=fd), addr

    def send(self, data: Any, flags: int = 0) -> int:
        return self._c.rump_sys_send(self._fd, data, flags)

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(bytes(data))
        while view:
            n = self.send(view[:1 << 20], flags)
            view = view[n:]

    def sendto(self, data: Any, *args: Any) -> int:
        flags, addr = (0, args[0]) if len(args) == 1 else (args[0], args[1])
        return self._c.rump_sys_sendto(self._fd, data, flags, addr)

    def recv(self, n: int, flags: int = 0) -> bytes:
        return self._c.rump_sys_recv(self._fd, n, flags)

    def recvfrom(self, n: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._c.rump_sys_recvfrom(self._fd, n, flags)

    def shutdown(self, how: int) -> None:
        self._c.rump_sys_shutdown(self._fd, how)

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        self._c.rump_sys_setsockopt(self._fd, level, opt, value)

    def getsockopt(self, level: int, opt: int, buflen: int = 0) -> Any:
        return self._c.rump_sys_getsockopt(self._fd, level, opt, buflen)

    def getsockname(self) -> Any:
        return self._c.rump_sys_getsockname(self._fd)

    def getpeername(self) -> Any:
        return self._c.rump_sys_getpeername(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            self._c.rump_sys_close(fd)

    def __enter__(self) -> RemoteSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- module-level API (rumpclient(3)) ------------------------------------------------------------
_global: RumpClient | None = None
_global_lock = threading.Lock()


document(RumpClient, "Run in the rump_server.")  # docstrings of rump_sys_*: rumpkern.syscall_docs


def _check_retry(timeout: int) -> int:
    timeout = int(timeout)
    if timeout < RUMPCLIENT_RETRYCONN_DIE:
        raise OSError(errno.EINVAL, "bad retry time")
    return timeout


def init(url: str | None = None) -> RumpClient:
    """``rumpclient_init()``: connect to ``url`` (default ``$RUMP_SERVER``); the module-level
    ``rump_sys_*`` functions then use this connection."""
    global _global
    with _global_lock:
        if _global is not None:
            _global.close()
        _global = RumpClient(url)
        return _global


rumpclient_init = init


def rumpclient_setconnretry(timeout: int) -> None:
    """How to react to a lost connection (see the module docstring)."""
    global _default_retry
    _default_retry = _check_retry(timeout)
    if _global is not None:
        _global.setconnretry(_default_retry)


def __getattr__(name: str) -> Any:
    if name.startswith("rump_sys_"):
        if _global is None:
            raise _notconn("rumpclient.init() has not been called")
        return getattr(_global, name)
    raise AttributeError(name)


__all__ = ["MAX_FRAME", "RUMPCLIENT_RETRYCONN_DIE", "RUMPCLIENT_RETRYCONN_INFTIME", "RUMPCLIENT_RETRYCONN_ONCE",
           "RemoteSocket", "RumpClient", "init", "rumpclient_init", "rumpclient_setconnretry"]
