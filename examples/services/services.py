"""Small network services on a rump kernel's TCP/UDP (or on the host's, for comparison).

The TCP services are plain ``(reader, writer)`` coroutines, so the same code runs on
``rumpnet.streams`` (a rump kernel, on its scheduler loop) and on ``asyncio`` streams (the
host kernel): the benchmark uses both to compare like with like.

======== ===== =====================================================================
service  port  behaviour
======== ===== =====================================================================
echo     7     TCP and UDP: everything received is sent back.
discard  9     TCP: everything received is dropped.
chargen  19    TCP: the RFC 864 line pattern (see :func:`chargen_bytes`). If the
               client's first bytes, within 0.2 s of connecting, are a count line
               ``N\\n``, exactly ``N`` bytes are sent and the server then closes; otherwise
               the pattern streams until the client closes (or resets) the connection.
http     80    HTTP/1.1 (keep-alive, Content-Length): ``GET /`` a small HTML page,
               ``GET /bytes/N`` N bytes of the chargen pattern (application/octet-stream).
sink     5001  TCP: reads until the client half-closes (EOF), then answers one line
               ``<nbytes> <sha256 hex>\\n`` and closes (used to check bulk transfers).
======== ===== =====================================================================

``start_services(k)`` starts them on kernel ``k`` (which must serve its scheduler in the
background, ``k.serve_background()``, or be driven by the caller) and returns a
:class:`ServicesHandle` (``.close()``). ``serve.py`` in this directory is the command.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import re
import socket as pysocket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PORTS = {"echo": 7, "discard": 9, "chargen": 19, "http": 80, "sink": 5001}
CHUNK = 256 * 1024
COUNT_WAIT = 0.2  # seconds chargen waits for a count line
MAX_COUNT = 1 << 40

# -- the chargen pattern ---------------------------------------------------------------
_LINE = 72
_PRINTABLE = bytes(range(32, 127))  # 95 characters


def _cycle() -> bytes:
    lines = []
    for i in range(len(_PRINTABLE)):
        rot = _PRINTABLE[i:] + _PRINTABLE[:i]
        lines.append(rot[:_LINE] + b"\r\n")
    return b"".join(lines)


CYCLE = _cycle()  # 95 lines of 74 bytes: 7030 bytes, then it repeats
_BLOCK = CYCLE * (CHUNK // len(CYCLE) + 2)


def chargen_bytes(n: int, offset: int = 0) -> bytes:
    """``n`` bytes of the chargen pattern starting at stream ``offset``."""
    out = bytearray()
    off = offset % len(CYCLE)
    while len(out) < n:
        take = min(n - len(out), CHUNK)
        out += _BLOCK[off:off + take]
        off = (off + take) % len(CYCLE)
    return bytes(out)


def chargen_sha256(n: int) -> str:
    """SHA-256 (hex) of the first ``n`` bytes of the chargen pattern."""
    h = hashlib.sha256()
    off = 0
    while off < n:
        take = min(n - off, CHUNK)
        h.update(_BLOCK[off % len(CYCLE):off % len(CYCLE) + take])
        off += take
    return h.hexdigest()


# -- TCP services: (reader, writer) coroutines -------------------------------------------
async def _close(writer: Any) -> None:
    try:
        writer.close()
        await writer.wait_closed()
    except (OSError, ConnectionError):
        pass


async def echo(reader: Any, writer: Any) -> None:
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        await _close(writer)


async def discard(reader: Any, writer: Any) -> None:
    try:
        while await reader.read(CHUNK):
            pass
    except (OSError, ConnectionError):
        pass
    finally:
        await _close(writer)


async def sink(reader: Any, writer: Any) -> None:
    h = hashlib.sha256()
    n = 0
    try:
        while True:
            data = await reader.read(CHUNK)
            if not data:
                break
            n += len(data)
            h.update(data)
        writer.write(f"{n} {h.hexdigest()}\n".encode())
        await writer.drain()
    except (OSError, ConnectionError):
        pass
    finally:
        await _close(writer)


async def _send_pattern(writer: Any, n: int | None, stop: asyncio.Event | None = None) -> None:
    off = 0
    while n is None or off < n:
        if stop is not None and stop.is_set():
            return
        take = CHUNK if n is None else min(CHUNK, n - off)
        start = off % len(CYCLE)
        writer.write(_BLOCK[start:start + take])
        await writer.drain()
        off += take


async def chargen(reader: Any, writer: Any) -> None:
    try:
        count: int | None = None
        try:
            line = await asyncio.wait_for(reader.readline(), COUNT_WAIT)
        except TimeoutError:
            line = None
        if line is not None:
            if not line:  # the client closed at once
                return
            try:
                count = max(0, min(int(line.strip()), MAX_COUNT))
            except ValueError:
                count = None
        if count is not None:
            await _send_pattern(writer, count)
            return
        # Stream until the client closes: watch the read side for EOF meanwhile.
        stop = asyncio.Event()

        async def watch() -> None:
            try:
                while await reader.read(CHUNK):
                    pass
            except (OSError, ConnectionError):
                pass
            stop.set()

        watcher = asyncio.ensure_future(watch())
        try:
            await _send_pattern(writer, None, stop)
        finally:
            watcher.cancel()
    except (OSError, ConnectionError):
        pass
    finally:
        await _close(writer)


_REQ = re.compile(rb"^([A-Z]+) (\S+) HTTP/(\d)\.(\d)\r?\n$")
INDEX = (b"<!DOCTYPE html>\n<html><head><title>rumpnet</title></head>\n"
         b"<body><h1>Served by a rump kernel</h1>\n"
         b"<p>GET /bytes/N for N bytes.</p></body></html>\n")


async def http(reader: Any, writer: Any) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            m = _REQ.match(line)
            headers: dict[bytes, bytes] = {}
            while True:
                h = await reader.readline()
                if not h or h in (b"\r\n", b"\n"):
                    break
                k, _, v = h.partition(b":")
                headers[k.strip().lower()] = v.strip()
            if m is None:
                writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()
                return
            method, path, major, minor = m.group(1), m.group(2), int(m.group(3)), int(m.group(4))
            conn = headers.get(b"connection", b"").lower()
            keep = (major, minor) >= (1, 1) and conn != b"close" or conn == b"keep-alive"
            body: bytes | None = None
            length = 0
            status = b"200 OK"
            ctype = b"text/html; charset=utf-8"
            if method not in (b"GET", b"HEAD"):
                status, body = b"405 Method Not Allowed", b""
            elif path == b"/":
                body = INDEX
            elif path.startswith(b"/bytes/") and path[7:].isdigit() and int(path[7:]) <= MAX_COUNT:
                length = int(path[7:])
                ctype = b"application/octet-stream"
            else:
                status, body = b"404 Not Found", b"not found\n"
            if body is not None:
                length = len(body)
            head = (b"HTTP/1.1 " + status + b"\r\nServer: rumpnet-services\r\nContent-Type: " + ctype
                    + b"\r\nContent-Length: " + str(length).encode()
                    + (b"\r\nConnection: keep-alive" if keep else b"\r\nConnection: close") + b"\r\n\r\n")
            writer.write(head)
            if method == b"GET":
                if body is not None:
                    writer.write(body)
                else:
                    await writer.drain()
                    await _send_pattern(writer, length)
            await writer.drain()
            if not keep:
                return
    except (OSError, ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        await _close(writer)


TCP_SERVICES: dict[str, Callable[[Any, Any], Awaitable[None]]] = {
    "echo": echo, "discard": discard, "chargen": chargen, "http": http, "sink": sink,
}


# -- on a rump kernel -------------------------------------------------------------------
@dataclass
class ServicesHandle:
    """What :func:`start_services` returns."""

    kernel: Any
    ports: dict[str, int]
    servers: list[Any] = field(default_factory=list)
    udp_task: Any = None
    udp_fd: int = -1
    closed: bool = False

    def close(self) -> None:
        """Stop listening (connections in progress end when their clients go)."""
        if self.closed:
            return
        self.closed = True
        k = self.kernel

        async def stop() -> None:
            for s in self.servers:
                s.close()
            if self.udp_task is not None:
                self.udp_task.cancel()
            if self.udp_fd >= 0:
                try:
                    await k.rump_sys_close(self.udp_fd)
                except OSError:
                    pass

        k.sched.run_coroutine(stop())


async def _udp_echo_rump(k: Any, fd: int) -> None:
    while True:
        try:
            data, addr = await k.rump_sys_recvfrom(fd, 65535, 0)
            await k.rump_sys_sendto(fd, data, 0, addr)
        except asyncio.CancelledError:
            raise
        except OSError as e:
            if e.errno == errno.EBADF:  # closed
                return


def _family(host: str) -> int:
    """AF_INET6 for an IPv6 address (``::``), AF_INET otherwise."""
    return pysocket.AF_INET6 if ":" in host else pysocket.AF_INET


async def start_services_async(k: Any, ports: dict[str, int] | None = None, host: str = "0.0.0.0") -> ServicesHandle:
    """Start the services from a coroutine on ``k``'s scheduler loop."""
    from rumpnet import streams

    ports = dict(DEFAULT_PORTS if ports is None else ports)
    handle = ServicesHandle(k, ports)
    for name, port in ports.items():
        if name in TCP_SERVICES:
            handle.servers.append(await streams.start_server(k, TCP_SERVICES[name], host, port, backlog=128))
    if "echo" in ports:
        fd = await k.rump_sys_socket(_family(host), pysocket.SOCK_DGRAM, 0)
        await k.rump_sys_bind(fd, (host, ports["echo"]))
        handle.udp_fd = fd
        handle.udp_task = asyncio.get_running_loop().create_task(_udp_echo_rump(k, fd))
    return handle


def start_services(k: Any, ports: dict[str, int] | None = None, host: str = "0.0.0.0") -> ServicesHandle:
    """Start echo/discard/chargen/http/sink on kernel ``k`` (from any thread that is not
    on its loop); ``k`` should serve in the background (``k.serve_background()``)."""
    return k.sched.run_coroutine(start_services_async(k, ports, host))  # type: ignore[no-any-return]


# -- on the host kernel (asyncio), for comparison -----------------------------------------
class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data, addr)


async def start_host_services(ports: dict[str, int] | None = None, host: str = "0.0.0.0") -> list[Any]:
    """The same services on the host's sockets (asyncio); returns servers/transports."""
    ports = dict(DEFAULT_PORTS if ports is None else ports)
    loop = asyncio.get_running_loop()
    out: list[Any] = []
    for name, port in ports.items():
        if name in TCP_SERVICES:
            out.append(await asyncio.start_server(TCP_SERVICES[name], host, port, reuse_address=True, backlog=128))
    if "echo" in ports:
        sock = pysocket.socket(_family(host), pysocket.SOCK_DGRAM)
        if sock.family == pysocket.AF_INET6:
            # beside an IPv4 echo on the same port (asyncio's TCP listeners do this too)
            sock.setsockopt(pysocket.IPPROTO_IPV6, pysocket.IPV6_V6ONLY, 1)
        sock.bind((host, ports["echo"]))
        transport, _ = await loop.create_datagram_endpoint(_UdpEcho, sock=sock)
        out.append(transport)
    return out
