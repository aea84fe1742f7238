"""toxiproxy's toxics in a proxy inside a kernel: client c -> proxy on p -> server on s.

All on virtual time: delays are exact and cost nothing."""

from __future__ import annotations

import errno
import select
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from rumpnet.faults.network import Host, Network
from rumpnet.faults.toxics import Proxy, Toxic, toxic_from_json
from rumpnet.sys_socket import pollfd


@dataclass
class Rig:
    net: Network
    c: Host
    s: Host
    proxy: Proxy
    lfd: int

    def connect(self) -> tuple[int, int]:
        cfd = self.c.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        self.c.rump_sys_connect(cfd, self.proxy.listen)
        sfd, _ = self.s.rump_sys_accept(self.lfd)
        return cfd, sfd

    def recv_all(self, h: Host, fd: int, n: int) -> bytes:
        out = b""
        while len(out) < n:
            d = h.rump_sys_recv(fd, n - len(out), 0)
            if not d:
                break
            out += d
        return out


@pytest.fixture
def rig() -> Iterator[Rig]:
    net = Network(seed=8)
    for h in ("c", "p", "s"):
        net.add_host(h)
    net.add_link("front", "c", "p")
    net.add_link("back", "p", "s")
    c, p, s = net.host("c"), net.host("p"), net.host("s")
    lfd = s.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    s.rump_sys_bind(lfd, ("0.0.0.0", 80))
    s.rump_sys_listen(lfd, 16)
    px = Proxy.create(net, "web", f"{p.addr('front')}:8080", f"{s.addr('back')}:80")
    try:
        yield Rig(net, c, s, px, lfd)
    finally:
        net.close()


def test_toxic_validation_needs_no_tcp() -> None:
    assert Toxic("latency").name == "latency_downstream"
    assert toxic_from_json({"type": "slicer", "attributes": {"average_size": 5}}).attributes == {
        "average_size": 5, "size_variation": 0, "delay": 0}
    for body, msg in [({"type": "latency", "toxicity": -0.1}, "toxicity"), ({"type": "x"}, "type"),
                      ({"type": "limit_data", "attributes": {"bytes": -1}}, "attributes.bytes"),
                      ({"type": "latency", "stream": "both"}, "stream"), ({"type": "latency", "extra": 1}, "extra")]:
        with pytest.raises(ValueError, match=msg):
            toxic_from_json(body)


def test_plain_proxying(rig: Rig) -> None:
    cfd, sfd = rig.connect()
    rig.c.rump_sys_send(cfd, b"GET /", 0)
    assert rig.s.rump_sys_recv(sfd, 100, 0) == b"GET /"
    rig.s.rump_sys_send(sfd, b"200 OK", 0)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b"200 OK"
    assert rig.proxy.to_json()["connections"] == 1
    rig.c.rump_sys_close(cfd)
    assert rig.s.rump_sys_recv(sfd, 100, 0) == b""


def test_latency_adds_delay(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("latency", attributes={"latency": 100}))
    rig.proxy.add_toxic(Toxic("latency", stream="upstream", attributes={"latency": 30, "jitter": 10}))
    cfd, sfd = rig.connect()
    t0 = rig.net.now()
    rig.c.rump_sys_send(cfd, b"ping", 0)
    assert rig.s.rump_sys_recv(sfd, 100, 0) == b"ping"
    up = rig.net.now() - t0
    assert 0.020 - 1e-6 <= up <= 0.045
    t0 = rig.net.now()
    rig.s.rump_sys_send(sfd, b"pong", 0)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b"pong"
    assert 0.100 - 1e-6 <= rig.net.now() - t0 <= 0.105


def test_toxicity_zero_never_applies(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("latency", toxicity=0.0, attributes={"latency": 5000}))
    cfd, sfd = rig.connect()
    t0 = rig.net.now()
    rig.s.rump_sys_send(sfd, b"fast", 0)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b"fast"
    assert rig.net.now() - t0 < 0.05


def test_bandwidth_limits_rate(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("bandwidth", attributes={"rate": 100}))  # 100 KB/s
    cfd, sfd = rig.connect()
    data = bytes(range(256)) * 800  # 204800 bytes
    t0 = rig.net.now()
    rig.s.rump_sys_send(sfd, data, 0)
    assert rig.recv_all(rig.c, cfd, len(data)) == data
    took = rig.net.now() - t0
    assert took == pytest.approx(len(data) / 100_000, rel=0.15)


def test_reset_peer_gives_econnreset(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("reset_peer", stream="upstream", attributes={"timeout": 50}))
    cfd, sfd = rig.connect()
    t0 = rig.net.now()
    rig.c.rump_sys_send(cfd, b"hello?", 0)
    with pytest.raises(OSError) as ei:
        rig.c.rump_sys_recv(cfd, 100, 0)
    assert ei.value.errno == errno.ECONNRESET
    assert rig.net.now() - t0 >= 0.050 - 1e-6
    with pytest.raises(OSError) as ei:
        rig.s.rump_sys_recv(sfd, 100, 0)
    assert ei.value.errno == errno.ECONNRESET


def test_limit_data_closes_after_n_bytes(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("limit_data", attributes={"bytes": 1000}))
    cfd, sfd = rig.connect()
    data = b"z" * 5000
    rig.s.rump_sys_send(sfd, data, 0)
    got = rig.recv_all(rig.c, cfd, len(data))
    assert got == data[:1000]


def test_timeout_closes_after_timeout(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("timeout", attributes={"timeout": 500}))
    cfd, sfd = rig.connect()
    t0 = rig.net.now()
    rig.s.rump_sys_send(sfd, b"lost", 0)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b""  # nothing came through; then the close
    assert rig.net.now() - t0 == pytest.approx(0.5, abs=0.01)


def test_timeout_zero_stalls_until_removed(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("timeout", attributes={"timeout": 0}))
    cfd, sfd = rig.connect()
    rig.c.rump_sys_setsockopt(cfd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 2, 0))
    rig.s.rump_sys_send(sfd, b"dropped", 0)
    with pytest.raises(OSError) as ei:
        rig.c.rump_sys_recv(cfd, 100, 0)
    assert ei.value.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    rig.proxy.remove_toxic("timeout_downstream")
    rig.s.rump_sys_send(sfd, b"flows", 0)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b"flows"


def test_slicer_cuts_and_spaces_chunks(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("slicer", attributes={"average_size": 10, "size_variation": 0, "delay": 10000}))
    cfd, sfd = rig.connect()
    data = bytes(range(100))
    t0 = rig.net.now()
    rig.s.rump_sys_send(sfd, data, 0)
    reads: list[bytes] = []
    while sum(map(len, reads)) < len(data):
        reads.append(rig.c.rump_sys_recv(cfd, 1000, 0))
    assert b"".join(reads) == data
    assert len(reads) == 10 and all(len(r) == 10 for r in reads)
    assert rig.net.now() - t0 >= 0.090 - 1e-6


def test_slow_close_delays_the_close(rig: Rig) -> None:
    rig.proxy.add_toxic(Toxic("slow_close", attributes={"delay": 300}))
    cfd, sfd = rig.connect()
    t0 = rig.net.now()
    rig.s.rump_sys_close(sfd)
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b""
    assert rig.net.now() - t0 >= 0.300 - 1e-6


def test_disable_closes_connections_and_reset_reenables(rig: Rig) -> None:
    cfd, sfd = rig.connect()
    rig.proxy.stop()
    assert rig.c.rump_sys_recv(cfd, 100, 0) == b""
    c2 = rig.c.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    with pytest.raises(OSError) as ei:
        rig.c.rump_sys_connect(c2, rig.proxy.listen)
    assert ei.value.errno == errno.ECONNREFUSED
    rig.proxy.add_toxic(Toxic("latency", attributes={"latency": 10}))
    rig.proxy.reset()
    assert rig.proxy.enabled and rig.proxy.toxics == {}
    cfd, sfd = rig.connect()
    rig.c.rump_sys_send(cfd, b"again", 0)
    assert rig.s.rump_sys_recv(sfd, 100, 0) == b"again"


def test_proxy_on_a_bare_kernel() -> None:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=True)
    k = rump_init(clock="virtual", seed=1, scheduler=sched)
    try:
        lfd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_bind(lfd, ("127.0.0.1", 80))
        k.rump_sys_listen(lfd, 4)
        px = Proxy(k, listen=("127.0.0.1", 0), upstream=("127.0.0.1", 80))
        assert px.listen[1] != 0
        px.add_toxic(Toxic("latency", attributes={"latency": 40}))
        cfd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_connect(cfd, px.listen)
        sfd, _ = k.rump_sys_accept(lfd)
        t0 = k.clock_now()
        k.rump_sys_send(sfd, b"hi", 0)
        assert k.rump_sys_recv(cfd, 10, 0) == b"hi"
        assert k.clock_now() - t0 >= 0.040 - 1e-6
        px.stop()
    finally:
        k.halt()
        sched.loop.close()


def test_proxy_over_ipv6_and_between_families() -> None:
    """A proxy listening on [::1] to an IPv6 upstream, and one from [::1] to IPv4's
    127.0.0.1 (toxiproxy proxies across families too); the latency toxic applies."""
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=True)
    k = rump_init(clock="virtual", seed=1, scheduler=sched)
    try:
        for family, upstream in ((socket.AF_INET6, "[::1]:80"), (socket.AF_INET, "127.0.0.1:80")):
            lfd = k.rump_sys_socket(family, socket.SOCK_STREAM, 0)
            k.rump_sys_bind(lfd, (upstream.rpartition(":")[0].strip("[]"), 80))
            k.rump_sys_listen(lfd, 4)
            px = Proxy(k, listen="[::1]:0", upstream=upstream)
            assert px.to_json()["listen"] == f"[::1]:{px.listen[1]}" and px.to_json()["upstream"] == upstream
            px.add_toxic(Toxic("latency", attributes={"latency": 40}))
            cfd = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_STREAM, 0)
            k.rump_sys_connect(cfd, px.listen)
            # the proxy's upstream connection arrives (a bounded wait: a proxy that fails
            # to connect must fail the test, not hang it)
            assert k.rump_sys_poll([pollfd(lfd, select.POLLIN)], 1, 5000) == 1
            sfd, peer = k.rump_sys_accept(lfd)
            assert peer[0] == ("::1" if family == socket.AF_INET6 else "127.0.0.1")
            t0 = k.clock_now()
            k.rump_sys_send(sfd, b"hi", 0)
            assert k.rump_sys_recv(cfd, 10, 0) == b"hi"
            assert k.clock_now() - t0 >= 0.040 - 1e-6
            px.stop()
            for fd in (cfd, sfd, lfd):
                k.rump_sys_close(fd)
    finally:
        k.halt()
        sched.loop.close()


@pytest.mark.parametrize("text,field_msg", [
    ("fc00::1:80", "brackets"), ("[fc00::zz]:80", "not an IPv4 or IPv6"), ("[::1]:x", "bad port"),
])
def test_parse_hostport_ipv6(text: str, field_msg: str) -> None:
    from rumpnet.faults.toxics import parse_hostport

    assert parse_hostport("[fe80::1%wire0]:8080") == ("fe80::1%wire0", 8080)
    assert parse_hostport(("fc00::1", 80)) == ("fc00::1", 80) and parse_hostport("[]:80") == ("::", 80)
    with pytest.raises(ValueError, match=f"^upstream: .*{field_msg}"):
        parse_hostport(text, "upstream")
