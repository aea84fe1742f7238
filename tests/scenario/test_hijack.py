"""hijack: unmodified standard-library networking code over a rump kernel.

Each test runs on a sockin kernel (host loopback) and on netinet kernels joined by an
in-process wire (the server in one kernel, the client in the other, by nesting hijacks).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import http.server
import os
import select
import selectors
import socket
import subprocess
import sys
import threading
import urllib.request
import uuid
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpnet.hijack import HijackSocket, hijack, parse_rumphijack, parse_socket_spec

ROOT = Path(__file__).resolve().parents[2]


def _netinet_pair():
    lan = f"hj-{uuid.uuid4().hex[:8]}"
    ks = []
    for ip in ("10.0.0.1", "10.0.0.2"):
        k = rump_init(clock="real")
        k.config.if_create("wire0")
        k.config.if_set_linkstr("wire0", lan)
        k.config.addr_add("wire0", f"{ip}/24")
        k.config.if_up("wire0")
        ks.append(k)
    return ks


@pytest.fixture(params=["sockin", "netinet"])
def net(request):
    """(server kernel, client kernel, server address)."""
    if request.param == "sockin":
        k = rump_init(clock="real", sockin=True)
        kernels = [k]
        server_k, client_k, addr = k, k, "127.0.0.1"
    else:
        ka, kb = _netinet_pair()
        kernels = [ka, kb]
        server_k, client_k, addr = kb, ka, "10.0.0.2"
    server_k.serve_background()
    yield server_k, client_k, addr
    server_k.stop_background()
    for k in kernels:
        k.halt()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_http_server_and_urllib(net, tmp_path):
    server_k, client_k, addr = net
    body = os.urandom(300_000)
    (tmp_path / "file.bin").write_bytes(body)
    with hijack(server_k):
        srv = http.server.ThreadingHTTPServer((addr, 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
        assert isinstance(srv.socket, HijackSocket)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        try:
            port = srv.server_address[1]
            with hijack(client_k):
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"http://{addr}:{port}/file.bin", timeout=20) as resp:
                    assert resp.status == 200
                    got = resp.read()
                with pytest.raises(urllib.error.HTTPError) as ei:
                    opener.open(f"http://{addr}:{port}/missing", timeout=20)
                assert ei.value.code == 404
        finally:
            srv.shutdown()
            srv.server_close()
            t.join()
    assert got == body


def test_asyncio_client_and_server(net):
    server_k, client_k, addr = net
    blob = os.urandom(1 << 20)

    async def main():
        async def handle(reader, writer):
            while line := await reader.readline():
                if line == b"blob\n":
                    writer.write(blob)
                else:
                    writer.write(line.upper())
                await writer.drain()
            writer.close()

        with hijack(server_k):
            server = await asyncio.start_server(handle, addr, 0)
            port = server.sockets[0].getsockname()[1]
            with hijack(client_k):  # the client's sockets live as long as this block
                reader, writer = await asyncio.open_connection(addr, port)
                for word in (b"one\n", b"two\n", b"three\n"):
                    writer.write(word)
                    await writer.drain()
                    assert await asyncio.wait_for(reader.readline(), 20) == word.upper()
                writer.write(b"blob\n")
                await writer.drain()
                assert await asyncio.wait_for(reader.readexactly(len(blob)), 30) == blob
                writer.close()
                await writer.wait_closed()
            server.close()
            await server.wait_closed()

    asyncio.run(main())


def test_udp_select_selectors_and_timeouts(net):
    server_k, client_k, addr = net
    with hijack(server_k):
        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rx.bind((addr, 0))
        dst = rx.getsockname()
        with hijack(client_k):
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            assert select.select([rx], [], [], 0) == ([], [], [])
            tx.sendto(b"dgram", dst)
            assert select.select([rx], [], [], 10)[0] == [rx]
            assert select.select([], [tx], [], 0)[1] == [tx]
            data, src = rx.recvfrom(100)
            assert data == b"dgram" and src[1] == tx.getsockname()[1]
            assert select.select([rx], [], [], 0)[0] == []  # drained: no longer readable
            with selectors.DefaultSelector() as sel:
                sel.register(rx, selectors.EVENT_READ)
                assert sel.select(0) == []
                tx.sendto(b"again", dst)
                ready = sel.select(10)
                assert [key.fileobj for key, _ in ready] == [rx]
            assert rx.recv(100, socket.MSG_PEEK) == b"again"
            assert rx.recv(100) == b"again"
            rx.settimeout(0.2)
            with pytest.raises(TimeoutError):
                rx.recv(100)
            rx.setblocking(False)
            with pytest.raises(BlockingIOError):
                rx.recv(100)
            tx.close()
        rx.close()


def test_scope_and_restore():
    k = rump_init(clock="real", sockin=True)
    try:
        orig = socket.socket
        with hijack(k, socket="inet", nolocal=True):
            s = socket.socket()
            assert isinstance(s, HijackSocket) and isinstance(s, socket.socket)
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            assert type(u) is orig and isinstance(u, socket.socket)
            a, b = socket.socketpair()  # AF_UNIX: host
            a.sendall(b"x")
            assert b.recv(1) == b"x"
            for x in (s, u, a, b):
                x.close()
            if socket.has_ipv6:  # inet6 not in socket=: host socket
                six = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
                assert type(six) is orig
                six.close()
            assert socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0][4] == ("127.0.0.1", 80)
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo("name.invalid", 80)
            assert socket.getaddrinfo("localhost", "80", socket.AF_INET)[0][4] == ("127.0.0.1", 80)
            assert socket.getaddrinfo(None, 0, socket.AF_INET, flags=socket.AI_PASSIVE)[0][4] == ("0.0.0.0", 0)
        assert socket.socket is orig
    finally:
        k.halt()


def test_getaddrinfo_offers_only_kernel_families():
    k = rump_init(clock="real", components=("net", "netinet"))  # AF_INET only
    try:
        with hijack(k):
            fams = {ai[0] for ai in socket.getaddrinfo(None, 80, flags=socket.AI_PASSIVE)}
            assert fams == {socket.AF_INET}
            with pytest.raises(OSError) as ei:
                socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            assert ei.value.errno == errno.EAFNOSUPPORT
    finally:
        k.halt()
    k = rump_init(clock="real")  # netinet and netinet6 by default
    try:
        with hijack(k):
            fams = {ai[0] for ai in socket.getaddrinfo(None, 80, flags=socket.AI_PASSIVE)}
            assert fams == {socket.AF_INET, socket.AF_INET6}
    finally:
        k.halt()


def test_socket_spec_parsing():
    sc = parse_socket_spec("all:nolocal")
    assert sc.covers(socket.AF_INET) and sc.covers(socket.AF_INET6) and not sc.covers(socket.AF_UNIX)
    sc = parse_socket_spec("inet:noinet6", nolocal=False)
    assert sc.covers(socket.AF_INET) and not sc.covers(socket.AF_INET6) and not sc.covers(socket.AF_UNIX)
    assert parse_socket_spec("all", nolocal=False).covers(socket.AF_UNIX)
    with pytest.raises(ValueError):
        parse_socket_spec("inet:bogus")
    assert parse_rumphijack(None)["socket"] == "all:nolocal"
    assert parse_rumphijack("path=/rump,socket=inet")["socket"] == "inet"
    with pytest.raises(ValueError):
        parse_rumphijack("nonsense")


_CLI_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 0))
s.sendto(b"via-rump", r.getsockname())
print(type(s).__name__, r.recv(100).decode(), sys.argv[1:])
"""


@pytest.mark.parametrize("mode", ["netinet", "sockin"])
def test_cli_runs_program_in_kernel(tmp_path, mode):
    script = tmp_path / "prog.py"
    script.write_text(_CLI_SCRIPT)
    cmd = [sys.executable, "-m", "rumpnet.hijack"] + (["--sockin"] if mode == "sockin" else []) + ["--", str(script), "a", "b"]
    env = dict(os.environ, RUMPHIJACK="socket=inet:inet6")
    env.pop("RUMP_SERVER", None)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HijackSocket via-rump ['a', 'b']"


def test_cli_module_and_errors(tmp_path):
    env = dict(os.environ)
    env.pop("RUMP_SERVER", None)
    run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=60, env=env, cwd=ROOT)
    out = run([sys.executable, "-m", "rumpnet.hijack", "--", "-c", "import socket; print(type(socket.socket()).__name__)"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HijackSocket"
    out = run([sys.executable, "-m", "rumpnet.hijack", "--", "-c", "raise SystemExit(3)"])
    assert out.returncode == 3
    out = run([sys.executable, "-m", "rumpnet.hijack"])
    assert out.returncode == 2


def test_idle_hijacked_sockets_cost_nothing(net):
    """Unread data and idle connections: neither the kernel's loop nor the readiness
    mirroring spins."""
    import time

    server_k, client_k, addr = net
    with hijack(server_k):
        srv = socket.create_server((addr, 0))
        with hijack(client_k):
            c = socket.create_connection(srv.getsockname(), timeout=10)
            s, _ = srv.accept()
            s.sendall(b"unread")
            time.sleep(0.2)
            t0 = time.process_time()
            time.sleep(0.5)
            assert time.process_time() - t0 < 0.1
            assert select.select([c], [], [], 0)[0] == [c]
            assert c.recv(10) == b"unread"
            c.close()
        s.close()
        srv.close()
