"""hijack: unmodified standard-library networking code over a rump kernel.

Each test runs on a sockin kernel (host loopback), on netinet kernels joined by an
in-process wire (the server in one kernel, the client in the other, by nesting hijacks),
and over AF_INET6 (issue 15): on ``::1`` in one kernel and between two kernels on global
addresses (the t_mtudisc6 shape); a dual-stack server answers both families.
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


# the client's address as the server sees it, by the server's address
CLIENT_OF = {"127.0.0.1": "127.0.0.1", "10.0.0.2": "10.0.0.1", "::1": "::1", "fc00::2": "fc00::1"}


def family_of(addr: str) -> int:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def _netinet_pair(addrs=("10.0.0.1", "10.0.0.2")):
    lan = f"hj-{uuid.uuid4().hex[:8]}"
    ks = []
    try:
        for ip in addrs:
            k = rump_init(clock="real")
            ks.append(k)
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", lan)
            if family_of(ip) == socket.AF_INET6:
                k.config.addr6_add("wire0", ip, 64)   # before up: no DAD, usable at once
            else:
                k.config.addr_add("wire0", f"{ip}/24")
            k.config.if_up("wire0")
    except BaseException:
        for k in ks:
            k.halt()
        raise
    return ks


@pytest.fixture(params=["sockin", "netinet", "loopback6", "netinet6"])
def net(request):
    """(server kernel, client kernel, server address)."""
    if request.param == "sockin":
        k = rump_init(clock="real", sockin=True)
        kernels = [k]
        server_k, client_k, addr = k, k, "127.0.0.1"
    elif request.param == "loopback6":
        k = rump_init(clock="real")
        kernels = [k]
        server_k, client_k, addr = k, k, "::1"
    else:
        six = request.param == "netinet6"
        ka, kb = _netinet_pair(("fc00::1", "fc00::2") if six else ("10.0.0.1", "10.0.0.2"))
        kernels = [ka, kb]
        server_k, client_k, addr = kb, ka, "fc00::2" if six else "10.0.0.2"
    server_k.serve_background()
    yield server_k, client_k, addr
    server_k.stop_background()
    for k in kernels:
        k.halt()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Server(http.server.ThreadingHTTPServer):
    """http.server's, noting the peers it accepts."""

    def __init__(self, family, *args, **kw):
        self.address_family = family
        self.peers = []
        super().__init__(*args, **kw)

    def verify_request(self, request, client_address):
        self.peers.append(client_address)
        return True


def _tcp_stats(k):
    """netstat -s -p tcp, or None for a sockin kernel (its TCP is the host's)."""
    try:
        return k.netstat("-s", "-p", "tcp")
    except OSError:
        return None


def test_http_server_and_urllib(net, tmp_path):
    server_k, client_k, addr = net
    body = os.urandom(300_000)
    (tmp_path / "file.bin").write_bytes(body)
    host = f"[{addr}]" if family_of(addr) == socket.AF_INET6 else addr
    before = _tcp_stats(server_k)
    with hijack(server_k):
        srv = _Server(family_of(addr), (addr, 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
        assert isinstance(srv.socket, HijackSocket) and srv.socket.family == family_of(addr)
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        try:
            port = srv.server_address[1]
            with hijack(client_k):
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"http://{host}:{port}/file.bin", timeout=20) as resp:
                    assert resp.status == 200
                    got = resp.read()
                with pytest.raises(urllib.error.HTTPError) as ei:
                    opener.open(f"http://{host}:{port}/missing", timeout=20)
                assert ei.value.code == 404
        finally:
            srv.shutdown()
            srv.server_close()
            t.join()
    assert got == body
    assert [p[0] for p in srv.peers] == [CLIENT_OF[addr]] * 2
    if family_of(addr) == socket.AF_INET6:
        assert all(len(p) == 4 for p in srv.peers)       # sockaddr_in6: flowinfo, scope id
    assert before is None or _tcp_stats(server_k) != before     # the kernel's TCP, not the host's


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
        rx = socket.socket(family_of(addr), socket.SOCK_DGRAM)
        rx.bind((addr, 0))
        dst = rx.getsockname()
        with hijack(client_k):
            tx = socket.socket(family_of(addr), socket.SOCK_DGRAM)
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
        srv = socket.create_server((addr, 0), family=family_of(addr))
        with hijack(client_k):
            c = socket.create_connection(srv.getsockname()[:2], timeout=10)   # getaddrinfo inside
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


def test_dualstack_server_answers_ipv4_and_ipv6():
    """socket.create_server(..., dualstack_ipv6=True): one listener, clients of both
    families (IPv4 ones seen as ::ffff:127.0.0.1)."""
    k = rump_init(clock="real")
    k.serve_background()
    try:
        with hijack(k):
            assert socket.has_dualstack_ipv6()
            srv = socket.create_server(("", 0), family=socket.AF_INET6, dualstack_ipv6=True)
            port = srv.getsockname()[1]
            peers = []
            try:
                for host in ("127.0.0.1", "::1"):
                    c = socket.create_connection((host, port), timeout=10)
                    conn, peer = srv.accept()
                    peers.append(peer[0])
                    c.sendall(host.encode())
                    assert conn.recv(100) == host.encode()
                    c.close()
                    conn.close()
            finally:
                srv.close()
    finally:
        k.stop_background()
        k.halt()
    assert peers == ["::ffff:127.0.0.1", "::1"]
