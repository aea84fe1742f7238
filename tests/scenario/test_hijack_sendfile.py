"""hijack and the paths by which a hijacked socket's fd could reach the host's socket
calls (issue 13, part 5): sendfile through asyncio on every loop class (the Unix selector
loop overrides ``_sock_sendfile_native`` and used to os.sendfile the file into the
readiness socketpair: aiohttp's FileResponse hung after its headers), ``os.sendfile``,
``socket.fromfd`` and ``socket.socket(fileno=)`` on the fd, and uvloop (whose C I/O no
patch reaches: under a hijack it gives asyncio's selector loop). Two netinet kernels on
an in-process wire, real clock; the server in one, the client in the other."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys

import pytest
import uvloop

from rumpnet.hijack import HijackSocket, hijack

BLOB = os.urandom((1 << 20) + 7)
pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernels(vnet_real):
    server_k, client_k = vnet_real.pair(seeds=(41, 42))[::-1]
    return server_k, client_k, "10.0.0.2"


@pytest.fixture
def blobfile(tmp_path):
    p = tmp_path / "blob.bin"
    p.write_bytes(BLOB)
    return p


async def _serve_and_fetch(client_k, addr: str, blobfile, how: str) -> bytes:
    """(Under a hijack of the server's kernel.) A server that answers a connection with
    the file: ``loop.sendfile`` on its transport (aiohttp's FileResponse) or
    ``loop.sock_sendfile`` on its socket; a client in the other kernel reads it all."""
    loop = asyncio.get_running_loop()
    lsock = socket.create_server((addr, 0))
    lsock.setblocking(False)
    port = lsock.getsockname()[1]

    async def serve() -> None:
        conn, _ = await loop.sock_accept(lsock)
        with open(blobfile, "rb") as f:
            if how == "transport":
                transport, _proto = await loop.connect_accepted_socket(asyncio.Protocol, conn)
                await loop.sendfile(transport, f)
                transport.close()
            else:
                await loop.sock_sendfile(conn, f)
                conn.close()

    task = asyncio.create_task(serve())
    try:
        with hijack(client_k):
            reader, writer = await asyncio.open_connection(addr, port)
            data = await asyncio.wait_for(reader.read(), 60)
            writer.close()
        await asyncio.wait_for(task, 10)
    finally:
        task.cancel()
        lsock.close()
    return data


LOOPS = {
    "unix-selector": asyncio.new_event_loop,        # the default: _UnixSelectorEventLoop
    "selector": asyncio.SelectorEventLoop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.mark.parametrize("how", ["transport", "sock"])
@pytest.mark.parametrize("loop_name", sorted(LOOPS))
def test_sendfile_on_every_loop(kernels, blobfile, loop_name: str, how: str) -> None:
    server_k, client_k, addr = kernels
    with hijack(server_k), asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        data = runner.run(_serve_and_fetch(client_k, addr, blobfile, how))
    assert hashlib.sha256(data).digest() == hashlib.sha256(BLOB).digest()


def test_uvloop_under_hijack_is_a_selector_loop(kernels) -> None:
    """uvloop's loops make and use sockets in C: under a hijack they would be host
    sockets. Inside the block uvloop gives asyncio's selector loop (a kernel's own
    scheduler keeps uvloop); outside, uvloop again."""
    server_k, _client_k, _addr = kernels
    with hijack(server_k):
        loop = uvloop.new_event_loop()
        try:
            assert isinstance(loop, asyncio.SelectorEventLoop) and isinstance(loop, uvloop.Loop)
        finally:
            loop.close()

        async def make() -> object:
            return socket.socket()

        sock = uvloop.run(make())
        assert isinstance(sock, HijackSocket)
        sock.close()
    loop = uvloop.new_event_loop()
    try:
        assert not isinstance(loop, asyncio.SelectorEventLoop)
    finally:
        loop.close()


_UVLOOP_FIRST_IMPORTED_UNDER_HIJACK = """
import asyncio, sys
from rumpkern import rump_init
from rumpnet.hijack import hijack
from rumpnet.hijack.hsocket import hijacked_fd
assert "uvloop" not in sys.modules, "this run needs uvloop not imported yet"
k = rump_init(clock="real")
assert "uvloop" not in sys.modules
try:
    with hijack(k):
        import uvloop
        loop = uvloop.new_event_loop()
        try:
            assert isinstance(loop, asyncio.SelectorEventLoop), type(loop).__mro__
            server = loop.run_until_complete(loop.create_server(asyncio.Protocol, "127.0.0.1", 0))
            assert all(hijacked_fd(s.fileno()) is not None for s in server.sockets), server.sockets
            server.close()
            loop.run_until_complete(server.wait_closed())
        finally:
            loop.close()
finally:
    k.halt()
print("ok")
"""


def test_uvloop_first_imported_under_a_hijack_is_a_selector_loop() -> None:
    """uvloop imported for the first time inside the block (aiohttp's runner, a test that
    imports it there) is patched too. It used to be patched only if already imported when
    the hijack began: a real uvloop loop then opened a libuv handle on a hijacked socket's
    readiness fd and closed that fd number a second time after the socket had, closing
    whatever the number had become meanwhile (a scheduler's epoll: its serving thread
    then slept forever and the suite hung). A fresh interpreter, where uvloop is not
    imported yet."""
    env = dict(os.environ, RUMP_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _UVLOOP_FIRST_IMPORTED_UNDER_HIJACK], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_os_sendfile_and_fromfd(kernels, blobfile) -> None:
    server_k, client_k, addr = kernels
    with hijack(server_k):
        lsock = socket.create_server((addr, 0))
        port = lsock.getsockname()[1]
        with hijack(client_k):
            c = socket.create_connection((addr, port), timeout=30)
            s, _ = lsock.accept()
            size = 100_000  # less than the buffers hold: one thread sends, then reads
            with open(blobfile, "rb") as f:
                sent = 0
                while sent < size:
                    sent += os.sendfile(s.fileno(), f.fileno(), sent, size - sent)
            s.shutdown(socket.SHUT_WR)
            got = bytearray()
            while chunk := c.recv(1 << 20):
                got += chunk
            assert bytes(got) == BLOB[:size]
            # the fd stands for the socket: fromfd and socket(fileno=) give the socket
            dup = socket.fromfd(c.fileno(), socket.AF_INET, socket.SOCK_STREAM)
            same = socket.socket(fileno=c.fileno())
            for other in (dup, same):
                assert isinstance(other, HijackSocket)
                assert other.getsockname() == c.getsockname()
                other.close()
            c.close()
            s.close()
        lsock.close()
