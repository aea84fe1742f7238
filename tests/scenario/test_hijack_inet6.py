"""Unmodified stdlib programs over AF_INET6 through the hijack (docs/IPV6.md): http.server
and urllib on ``::1`` in one kernel and on global addresses between two kernels (the
t_mtudisc6 shape: an HTTP server and client over hijacked AF_INET6),
``socket.create_server``/``create_connection`` (getaddrinfo inside) between them, and a
dual-stack server (``dualstack_ipv6=True``) answering both families."""

from __future__ import annotations

import functools
import http.server
import os
import re
import socket
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rumpkern import rump_init
from rumpnet.hijack import HijackSocket, hijack


class _Server6(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.peers: list[tuple[Any, ...]] = []
        super().__init__(*args, **kw)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        self.peers.append(client_address)
        return True


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def two_kernels() -> Iterator[tuple[Any, Any]]:
    """(server, client): real-clock kernels on one segment with fc00::2 and fc00::1."""
    seg = f"hj6-{uuid.uuid4().hex[:8]}"
    ks: list[Any] = []
    try:
        for addr in ("fc00::1", "fc00::2"):
            k = rump_init(clock="real")
            ks.append(k)
            k.ifconfig("wire0", "create")
            k.ifconfig("wire0", "linkstr", seg)
            k.ifconfig("wire0", "inet6", f"{addr}/64")
            k.ifconfig("wire0", "up")
            k.ifconfig("-w", "10")
        ks[1].serve_background()
        try:
            yield ks[1], ks[0]
        finally:
            ks[1].stop_background()
    finally:
        for k in ks:
            k.halt()


def _fetch(server_k: Any, client_k: Any, host: str, tmp_path: Path) -> tuple[bytes, bytes, list[tuple[Any, ...]]]:
    """Serve ``tmp_path`` from ``server_k`` on ``[host]:port``; GET a file and a missing
    one from ``client_k``: (the file, what came, the peers the server saw)."""
    body = os.urandom(200_000)
    (tmp_path / "file.bin").write_bytes(body)
    with hijack(server_k):
        srv = _Server6((host, 0), functools.partial(_QuietHandler, directory=str(tmp_path)))
        assert isinstance(srv.socket, HijackSocket)
        assert srv.socket.family == socket.AF_INET6
        t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05})
        t.start()
        try:
            port = srv.server_address[1]
            with hijack(client_k):
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"http://[{host}]:{port}/file.bin", timeout=20) as resp:
                    assert resp.status == 200
                    got = resp.read()
                with pytest.raises(urllib.error.HTTPError) as ei:
                    opener.open(f"http://[{host}]:{port}/missing", timeout=20)
                assert ei.value.code == 404
        finally:
            srv.shutdown()
            srv.server_close()
            t.join()
    return body, got, srv.peers


def test_http_over_loopback_v6(tmp_path: Path) -> None:
    k = rump_init(clock="real")
    k.serve_background()
    try:
        body, got, peers = _fetch(k, k, "::1", tmp_path)
        sent = k.netstat("-s", "-p", "tcp")
    finally:
        k.stop_background()
        k.halt()
    assert got == body
    assert len(peers) == 2 and all(p[0] == "::1" and len(p) == 4 for p in peers)
    # two connections, each counted once by the client and once by the server
    assert re.search(r"^\s*4 connections established", sent, re.M), sent


def test_http_between_kernels_on_global_addresses(two_kernels: tuple[Any, Any], tmp_path: Path) -> None:
    server_k, client_k = two_kernels
    before = client_k.netstat("-s", "-p", "ip6")
    body, got, peers = _fetch(server_k, client_k, "fc00::2", tmp_path)
    assert got == body
    assert len(peers) == 2 and all(p[0] == "fc00::1" for p in peers)
    # it went over the kernels' IPv6 (the host's stack was not used)
    assert client_k.netstat("-s", "-p", "ip6") != before


def test_create_server_and_connection_v6(two_kernels: tuple[Any, Any]) -> None:
    """socket.create_server/create_connection (getaddrinfo inside) over AF_INET6."""
    server_k, client_k = two_kernels
    with hijack(server_k):
        srv = socket.create_server(("fc00::2", 0), family=socket.AF_INET6)
        port = srv.getsockname()[1]
        try:
            with hijack(client_k):
                c = socket.create_connection(("fc00::2", port), timeout=10)
                conn, peer = srv.accept()
                c.sendall(b"ping6")
                assert conn.recv(100) == b"ping6"
                assert c.getpeername()[:2] == ("fc00::2", port) and peer[0] == "fc00::1"
                c.close()
                conn.close()
        finally:
            srv.close()


def test_dualstack_server_answers_ipv4_and_ipv6() -> None:
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
