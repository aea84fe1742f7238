"""Ordinary Python networking code over the stack's TCP: the ``socket.socket``-shaped
``RumpSocket`` with ``makefile``, ``http.client`` against an ``http.server`` handler
running in another thread, and asyncio streams (``open_connection``/``start_server``)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import http.client
import http.server
import io
import itertools
import os
import socket
import threading

import pytest

from rumpkern import rump_init
from rumpkern.sched import VirtualEventLoop
from rumpnet import streams
from rumpnet.socket import create_connection

B = "10.0.0.2"
_n = itertools.count(1)

BODY = os.urandom(300_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        if self.path == "/blob":
            body = BODY
        else:
            body = f"hello from rump, you asked for {self.path}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers["Content-Length"])
        data = self.rfile.read(n)
        digest = hashlib.sha256(data).hexdigest().encode()
        self.send_response(201)
        self.send_header("Content-Length", str(len(digest)))
        self.end_headers()
        self.wfile.write(digest)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class _FakeServer:
    """What a request handler reads from its server (socketserver.BaseServer)."""

    server_name = "rump"
    server_port = 80


def _serve(lsock, nconn: int, errors: list[BaseException]) -> None:
    try:
        for _ in range(nconn):
            conn, addr = lsock.accept()
            try:
                _Handler(conn, addr, _FakeServer())
            finally:
                try:
                    conn.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                conn.close()
    except BaseException as e:  # reported by the test thread
        errors.append(e)


class _RumpHTTPConnection(http.client.HTTPConnection):
    def __init__(self, kernel, host: str, port: int, **kw) -> None:
        super().__init__(host, port, **kw)
        self.kernel = kernel

    def connect(self) -> None:
        self.sock = create_connection(self.kernel, (self.host, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("background", [False, True], ids=["threads-drive", "serve-background"])
def test_http_client_and_server_threads(vnet_real, background: bool) -> None:
    a, b = vnet_real.pair()
    if background:
        a.serve_background()
    lsock = b.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("0.0.0.0", 8080))
    lsock.listen(8)
    errors: list[BaseException] = []
    t = threading.Thread(target=_serve, args=(lsock, 2, errors), daemon=True)
    t.start()
    try:
        conn = _RumpHTTPConnection(a, B, 8080, timeout=20)
        # keep-alive: several requests on one connection
        conn.request("GET", "/index.html")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b"hello from rump, you asked for /index.html\n"
        conn.request("GET", "/blob")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == BODY
        upload = os.urandom(200_000)
        conn.request("POST", "/up", body=upload)
        r = conn.getresponse()
        assert r.status == 201 and r.read() == hashlib.sha256(upload).hexdigest().encode()
        conn.close()
        # a second connection, reading the body through makefile line by line
        s = create_connection(a, (B, 8080), timeout=20)
        s.sendall(b"GET /lines HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        f = s.makefile("rb")
        status = f.readline()
        assert status.startswith(b"HTTP/1.1 200")
        headers = []
        while (line := f.readline()) not in (b"\r\n", b""):
            headers.append(line)
        assert any(h.lower().startswith(b"content-length") for h in headers)
        assert f.read() == b"hello from rump, you asked for /lines\n"
        f.close()
        s.close()
        t.join(20)
        assert not t.is_alive()
        assert not errors, errors
    finally:
        lsock.close()
        if background:
            a.stop_background()


@pytest.mark.timeout(30)
def test_socket_object_basics(vnet) -> None:
    a, b = vnet.pair()
    with b.socket() as ls:
        ls.bind(("0.0.0.0", 8081))
        ls.listen()
        ls.setblocking(False)
        with pytest.raises(BlockingIOError):
            ls.accept()
        ls.setblocking(True)
        c = a.socket()
        assert c.connect_ex((B, 8082)) == errno.ECONNREFUSED
        c.close()
        c = create_connection(a, (B, 8081), timeout=5)
        s, peer = ls.accept()
        assert peer == c.getsockname() and s.getpeername() == peer
        c.sendall(b"x" * 100_000)
        buf = bytearray(100_000)
        n = 0
        while n < len(buf):
            n += s.recv_into(memoryview(buf)[n:])
        assert buf == b"x" * 100_000
        s.settimeout(0.5)
        t0 = a.clock_now()
        with pytest.raises(TimeoutError):
            s.recv(10)
        assert a.clock_now() - t0 == pytest.approx(0.5, abs=0.01)
        # text-mode makefile round trip
        w = c.makefile("w", encoding="utf-8", newline="\n")
        w.write("line one\nline two\n")
        w.flush()
        w.close()
        r = s.makefile("r", encoding="utf-8")
        s.settimeout(5)
        assert r.readline() == "line one\n" and r.readline() == "line two\n"
        c.close()  # makefile's reference is gone: really closed, peer sees EOF
        assert r.read() == ""
        r.close()
        s.close()
        assert s.fileno() == -1
        with pytest.raises(OSError):
            s.recv(1)


async def _echo_upper(reader, writer) -> None:
    while line := await reader.readline():
        writer.write(line.upper())
        await writer.drain()
    writer.close()
    await writer.wait_closed()


async def _asyncio_roundtrip() -> tuple[float, float]:
    seg = f"tcp-asyncio-{os.getpid()}-{next(_n)}"
    a = rump_init(clock="virtual", seed=5)
    b = rump_init(clock="virtual", seed=6)
    try:
        for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", addr)
            k.config.if_up("wire0")
        server = await streams.start_server(b, _echo_upper, "0.0.0.0", 9000, limit=1 << 20)
        assert server.is_serving()
        assert server.sockname() == ("0.0.0.0", 9000)

        async def client(i: int) -> None:
            reader, writer = await streams.open_connection(a, B, 9000)
            assert writer.get_extra_info("peername") == (B, 9000)
            for j in range(5):
                writer.write(f"client {i} line {j}\n".encode())
                await writer.drain()
                assert await reader.readline() == f"CLIENT {i} LINE {j}\n".encode()
            big = b"y" * 200_000 + b"\n"
            writer.write(big)
            await writer.drain()
            assert await reader.readexactly(len(big)) == big.upper()
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()

        t0 = a.clock_now()
        await asyncio.gather(*(client(i) for i in range(10)))
        elapsed = a.clock_now() - t0
        with pytest.raises(ConnectionRefusedError):
            await streams.open_connection(a, B, 9001)
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectionRefusedError):
            await streams.open_connection(a, B, 9000)
        # a timeout passes on virtual time only
        t1 = a.clock_now()
        await asyncio.sleep(100)
        return elapsed, a.clock_now() - t1
    finally:
        b.halt()
        a.halt()


@pytest.mark.timeout(30)
def test_asyncio_streams_on_virtual_time() -> None:
    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        elapsed, slept = runner.run(_asyncio_roundtrip())
    assert elapsed < 5.0
    assert slept == pytest.approx(100.0, abs=0.01)


@pytest.mark.timeout(30)
@pytest.mark.asyncio
async def test_asyncio_streams_real_clock() -> None:
    seg = f"tcp-asyncio-real-{os.getpid()}-{next(_n)}"
    a = rump_init(clock="real", seed=7)
    b = rump_init(clock="real", seed=8)
    try:
        for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", addr)
            k.config.if_up("wire0")
        async with await streams.start_server(b, _echo_upper, "0.0.0.0", 9100):
            reader, writer = await asyncio.wait_for(streams.open_connection(a, B, 9100), 5)
            writer.write(b"over the real clock\n")
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 5) == b"OVER THE REAL CLOCK\n"
            writer.close()
            await writer.wait_closed()
    finally:
        b.halt()
        a.halt()


def test_makefile_buffered_reader_is_io(vnet) -> None:
    a, b = vnet.pair()
    ls = b.socket()
    ls.bind(("0.0.0.0", 8090))
    ls.listen()
    c = create_connection(a, (B, 8090))
    s, _ = ls.accept()
    f = s.makefile("rb")
    assert isinstance(f, io.BufferedReader)
    c.sendall(b"abc")
    c.close()
    assert f.read() == b"abc"
    f.close()
    s.close()
    ls.close()
