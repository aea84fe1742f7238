"""asyncio streams over a rump kernel: ``open_connection`` and ``start_server``.

They run on the kernel's scheduler loop (boot the kernel inside the coroutine, e.g.
under pytest-asyncio, or run the coroutine with ``k.sched.run_coroutine``), where every
``k.rump_sys_*`` call is awaitable. The reader and writer have the standard library's
``StreamReader``/``StreamWriter`` methods that applications use.
"""

from __future__ import annotations

import asyncio
import socket as pysocket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rumpkern.sched import SyscallCtx
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.mirror import borrow

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

_LIMIT = 64 * 1024
_RECV_CHUNK = 256 * 1024


def _sys(k: Kernel, fn: Any, *args: Any) -> Awaitable[Any]:
    """A system call of ``k``'s current process, awaited on the scheduler's loop."""
    return k.sched.asyscall(fn, k.curproc, *args)


@borrow(asyncio.StreamReader)
class RumpStreamReader:
    """Reads a socket of a rump kernel as ``asyncio.StreamReader`` reads a transport (returned by :func:`open_connection` and given to :func:`start_server`'s callback)."""

    def __init__(self, kernel: Kernel, fd: int, limit: int = _LIMIT) -> None:
        self._k = kernel
        self._fd = fd
        self._buf = bytearray()
        self._eof = False
        self._limit = limit

    async def _fill(self) -> bool:
        if self._eof:
            return False
        data = await _sys(self._k, S.sys_recv, self._fd, _RECV_CHUNK, 0)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def at_eof(self) -> bool:
        return self._eof and not self._buf

    async def read(self, n: int = -1) -> bytes:
        if n == 0:
            return b""
        if n < 0:
            while await self._fill():
                pass
            data, self._buf = bytes(self._buf), bytearray()
            return data
        if not self._buf:
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                partial = bytes(self._buf)
                self._buf.clear()
                raise asyncio.IncompleteReadError(partial, n)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        start = 0
        while True:
            i = self._buf.find(separator, start)
            if i > self._limit:
                # as asyncio: the separator is there, but the chunk is over the limit
                raise asyncio.LimitOverrunError("Separator is found, but chunk is longer than limit", i)
            if i >= 0:
                end = i + len(separator)
                data = bytes(self._buf[:end])
                del self._buf[:end]
                return data
            if len(self._buf) > self._limit:
                raise asyncio.LimitOverrunError("Separator is not found, and chunk exceed the limit", len(self._buf))
            start = max(0, len(self._buf) - len(separator) + 1)
            if not await self._fill():
                partial = bytes(self._buf)
                self._buf.clear()
                raise asyncio.IncompleteReadError(partial, None)

    async def readline(self) -> bytes:
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as e:
            return e.partial
        except asyncio.LimitOverrunError as e:
            # As asyncio.StreamReader.readline: a line over the limit is discarded and
            # reported as ValueError (LimitOverrunError leaked out before).
            if self._buf.startswith(b"\n", e.consumed):
                del self._buf[: e.consumed + 1]
            else:
                self._buf.clear()
            raise ValueError(e.args[0]) from None

    def __aiter__(self) -> RumpStreamReader:
        return self

    async def __anext__(self) -> bytes:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line


@borrow(asyncio.StreamWriter)
class RumpStreamWriter:
    """Writes to a socket of a rump kernel as ``asyncio.StreamWriter`` does."""

    def __init__(self, kernel: Kernel, fd: int) -> None:
        self._k = kernel
        self._fd = fd
        self._pending = bytearray()
        self._closing = False
        self._closed = asyncio.get_running_loop().create_future()
        self._lock = asyncio.Lock()

    @property
    def transport(self) -> RumpStreamWriter:
        """This writer (it plays its own transport: ``get_extra_info``, ``is_closing``, ``close``)."""
        return self

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending (sent by the kernel as the window allows; :meth:`drain` waits)."""
        if self._closing:
            raise ConnectionResetError("writer is closing")
        self._pending += data

    def writelines(self, data: Any) -> None:
        """Queue each buffer of ``data`` in turn."""
        for chunk in data:
            self.write(chunk)

    async def drain(self) -> None:
        async with self._lock:
            while self._pending:
                chunk = bytes(self._pending)
                n = await _sys(self._k, S.sys_sendto, self._fd, chunk, 0, None)
                del self._pending[:n]

    def can_write_eof(self) -> bool:
        """True: a TCP socket can be half-closed."""
        return True

    def write_eof(self) -> None:
        """Half-close after what is queued (shutdown SHUT_WR: a FIN)."""
        async def eof() -> None:
            await self.drain()
            await _sys(self._k, S.sys_shutdown, self._fd, pysocket.SHUT_WR)

        asyncio.get_running_loop().create_task(eof())

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sockname``, ``peername`` or ``socket`` (the fd in the kernel); ``default`` otherwise."""
        try:
            if name == "peername":
                return _getpeername(SyscallCtx(), self._k.curproc, self._fd)
            if name == "sockname":
                return _getsockname(SyscallCtx(), self._k.curproc, self._fd)
        except OSError:
            return default
        if name == "socket":
            return self._fd
        return default

    def is_closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    def close(self) -> None:
        """Close the socket once what is queued has been handed to the kernel."""
        if self._closing:
            return
        self._closing = True

        async def finish() -> None:
            try:
                await self.drain()
            except OSError:
                pass
            try:
                await _sys(self._k, S.sys_close, self._fd)
            finally:
                if not self._closed.done():
                    self._closed.set_result(None)

        asyncio.get_running_loop().create_task(finish())

    async def wait_closed(self) -> None:
        """Wait until the socket is closed."""
        await self._closed


def _getpeername(ctx: Any, p: Any, fd: int) -> Any:
    from rumpnet.sys_socket import sys_getpeername

    return sys_getpeername(ctx, p, fd)


def _getsockname(ctx: Any, p: Any, fd: int) -> Any:
    from rumpnet.sys_socket import sys_getsockname

    return sys_getsockname(ctx, p, fd)


def _family(host: str) -> int:
    """AF_INET6 for an IPv6 address (``fc00::1``, ``fe80::1%wire0``, ``::``), else AF_INET."""
    return pysocket.AF_INET6 if ":" in host else pysocket.AF_INET


async def open_connection(kernel: Kernel, host: str, port: int, *, limit: int = _LIMIT,
                          local_addr: tuple[str, int] | None = None) -> tuple[RumpStreamReader, RumpStreamWriter]:
    """``asyncio.open_connection`` over ``kernel``'s TCP (numeric ``host``, IPv4 or IPv6)."""
    k = kernel
    fd = await _sys(k, S.sys_socket, _family(host), pysocket.SOCK_STREAM, 0)
    try:
        if local_addr is not None:
            await _sys(k, S.sys_bind, fd, local_addr)
        await _sys(k, S.sys_connect, fd, (host, port))
    except BaseException:
        await _sys(k, S.sys_close, fd)
        raise
    return RumpStreamReader(k, fd, limit), RumpStreamWriter(k, fd)


ClientConnected = Callable[[RumpStreamReader, RumpStreamWriter], Awaitable[None] | None]


@borrow(asyncio.Server)
class RumpServer:
    """What ``start_server`` returns: ``close``, ``wait_closed``, ``serve_forever``,
    ``sockets``, async context manager."""

    def __init__(self, kernel: Kernel, fd: int, cb: ClientConnected, limit: int) -> None:
        self._k = kernel
        self._fd = fd
        self._cb = cb
        self._limit = limit
        self._task: asyncio.Task[None] | None = None
        self._closed = asyncio.get_running_loop().create_future()
        self._clients: set[asyncio.Task[Any]] = set()

    @property
    def sockets(self) -> list[Any]:
        """The listening socket(s) (objects shaped like ``socket.socket``)."""
        return [self._fd]

    def sockname(self) -> Any:
        """The address the server listens on."""
        return _getsockname(SyscallCtx(), self._k.curproc, self._fd)

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())

    async def _accept_loop(self) -> None:
        k = self._k
        try:
            while True:
                cfd, _addr = await _sys(k, S.sys_accept, self._fd)
                reader = RumpStreamReader(k, cfd, self._limit)
                writer = RumpStreamWriter(k, cfd)
                res = self._cb(reader, writer)
                if asyncio.iscoroutine(res):
                    task = asyncio.get_running_loop().create_task(res)
                    self._clients.add(task)
                    task.add_done_callback(self._clients.discard)
        except OSError:
            return

    def is_serving(self) -> bool:
        return self._task is not None and not self._task.done()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        fd, self._fd = self._fd, -1
        if fd >= 0:
            S.sys_close(SyscallCtx(), self._k.curproc, fd)  # we are on the CPU: call directly
        if not self._closed.done():
            self._closed.set_result(None)

    async def wait_closed(self) -> None:
        await self._closed
        # Let the cancelled accept loop finish too: a task still pending when the loop
        # closes is destroyed later by the GC, at an arbitrary point (seen as CPython
        # 3.11's "AST constructor recursion depth mismatch" SystemError in pytest).
        task = self._task
        if task is not None and not task.done():
            await asyncio.gather(task, return_exceptions=True)

    async def serve_forever(self) -> None:
        if self._task is None:
            self._start()
        assert self._task is not None
        try:
            await self._task
        except asyncio.CancelledError:
            pass

    async def __aenter__(self) -> RumpServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()




async def start_server(kernel: Kernel, client_connected_cb: ClientConnected, host: str = "0.0.0.0",
                       port: int = 0, *, limit: int = _LIMIT, backlog: int = 100,
                       reuse_address: bool = True) -> RumpServer:
    """``asyncio.start_server`` over ``kernel``'s TCP (an IPv6 ``host`` listens on AF_INET6)."""
    k = kernel
    fd = await _sys(k, S.sys_socket, _family(host), pysocket.SOCK_STREAM, 0)
    if reuse_address:
        await _sys(k, S.sys_setsockopt, fd, pysocket.SOL_SOCKET, pysocket.SO_REUSEADDR, 1)
    await _sys(k, S.sys_bind, fd, (host, port))
    await _sys(k, S.sys_listen, fd, backlog)
    server = RumpServer(k, fd, client_connected_cb, limit)
    server._start()
    return server
