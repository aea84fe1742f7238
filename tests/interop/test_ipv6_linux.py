"""Linux as the IPv6 peer of a kernel: virt0 on a tap whose other end is in a fresh
network namespace, both with an fc00:62::/64 address and their link-local ones. ping6 both
ways (global and link-local with a zone, Linux's ping and the kernel's ping6 command), UDP
and TCP both ways with SHA-256 checks of what arrived, and Linux's neighbour entry for us
learned by ND (so our NS/NA work with Linux's)."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from rumpnet.testing.netns import have_netns_privileges, ns_configure, ns_python_popen, ns_run, tap_peer

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

LINUX4, RUMP4 = "10.99.62.1", "10.99.62.2"
LINUX, RUMP = "fc00:62::1", "fc00:62::2"
AF6 = socket.AF_INET6


@pytest.fixture
def linux6(vnet_real):
    k = vnet_real.kernel(seed=62, hostname="rump6")  # halted by vnet_real
    with tap_peer(k, f"{RUMP4}/24", f"{LINUX4}/24", prefix="r6l") as (ns, tap):
        ns_run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{tap}.accept_dad=0"], check=True)
        ns_configure(ns, tap, f"{LINUX}/64")
        k.ifconfig("virt0", "inet6", f"{RUMP}/64")
        k.ifconfig("-w", "10")
        yield k, ns, tap


def linux_linklocal(ns, tap: str) -> str:
    out = ns_run(ns, ["ip", "-6", "addr", "show", "dev", tap, "scope", "link"], check=True).stdout
    m = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
    assert m, out
    return m.group(1)


def our_linklocal(k) -> str:
    line = next(ln for ln in k.ifconfig("virt0", "inet6").splitlines() if "fe80" in ln)
    return line.split()[1].split("%")[0]


@pytest.mark.timeout(90)
def test_ping6_both_ways_global_and_link_local(linux6) -> None:
    k, ns, tap = linux6
    r = ns_run(ns, ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "3", RUMP], timeout=30)
    assert r.returncode == 0 and "3 received" in r.stdout, r.stdout + r.stderr
    r = ns_run(ns, ["ping", "-6", "-c", "2", "-i", "0.2", "-W", "3", f"{our_linklocal(k)}%{tap}"], timeout=30)
    assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
    # Linux learned our link-layer address through our NA: REACHABLE/STALE/DELAY
    neigh = ns_run(ns, ["ip", "-6", "neigh", "show", "dev", tap], check=True).stdout
    assert re.search(rf"{RUMP} lladdr [0-9a-f:]+ (REACHABLE|STALE|DELAY|PROBE)", neigh), neigh
    out = k.ping6("-n", "-c", "2", "-X", "5", LINUX)
    assert "2 packets received" in out and re.search(rf"bytes from {LINUX}, icmp_seq=0 hlim=64", out), out
    out = k.ping6("-n", "-c", "1", "-X", "5", f"{linux_linklocal(ns, tap)}%virt0")
    assert "1 packets received" in out, out
    # A big one: Linux fragments its echo request, we reassemble and fragment the reply.
    r = ns_run(ns, ["ping", "-6", "-c", "1", "-s", "4000", "-W", "3", RUMP], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert k.inet6.node.ip6stat.ip6s_reassembled >= 1 and k.inet6.node.ip6stat.ip6s_fragmented >= 1
    assert "permanent" not in k.ndp("-n", LINUX)     # learned, not static


@pytest.mark.timeout(90)
def test_udp_both_ways_sha256(linux6) -> None:
    k, ns, tap = linux6
    fd = k.rump_sys_socket(AF6, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("::", 5006))
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
    blobs = [bytes(range(256)) * 4, bytes(7000)]      # the second one fragmented both ways
    code = (
        "import hashlib, socket\n"
        "s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n"
        f"s.bind(('{LINUX}', 6006)); s.settimeout(10)\n"
        "for n in (1024, 7000):\n"
        "    m = bytes(range(256)) * 4 if n == 1024 else bytes(7000)\n"
        f"    s.sendto(m, ('{RUMP}', 5006))\n"
        "    data, src = s.recvfrom(65535)\n"
        "    print(hashlib.sha256(data).hexdigest(), src[0], flush=True)\n"
    )
    with ns_python_popen(ns, code) as peer:
        for blob in blobs:
            data, src = k.rump_sys_recvfrom(fd, 65535, 0)
            assert hashlib.sha256(data).digest() == hashlib.sha256(blob).digest() and src[0] == LINUX
            k.rump_sys_sendto(fd, data[::-1], 0, src)
        out, err = peer.communicate(timeout=20)
    lines = out.split("\n")
    for line, blob in zip(lines, blobs, strict=False):
        assert line.split() == [hashlib.sha256(blob[::-1]).hexdigest(), RUMP], (out, err)


@pytest.mark.timeout(120)
def test_tcp_both_ways_sha256(linux6) -> None:
    k, ns, tap = linux6
    data = bytes(i * 7 & 0xFF for i in range(1_500_000))
    digest = hashlib.sha256(data).hexdigest()
    # Linux connects to the kernel and sends; the kernel answers with the digest it got.
    lfd = k.rump_sys_socket(AF6, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(lfd, ("::", 7007))
    k.rump_sys_listen(lfd, 1)
    client = (
        "import socket, sys\n"
        "data = bytes(i * 7 & 0xFF for i in range(1_500_000))\n"
        f"c = socket.create_connection(('{RUMP}', 7007), timeout=30)\n"
        "c.sendall(data); c.shutdown(socket.SHUT_WR)\n"
        "print(c.recv(100).decode(), flush=True)\n"
    )
    with ns_python_popen(ns, client) as peer:
        s, addr = k.rump_sys_accept(lfd)
        assert addr[0] == LINUX and len(addr) == 4
        h = hashlib.sha256()
        while chunk := k.rump_sys_recv(s, 65536, 0):
            h.update(chunk)
        k.rump_sys_send(s, h.hexdigest().encode(), 0)
        out, err = peer.communicate(timeout=60)
        k.rump_sys_close(s)
    assert out.strip() == digest, err
    # The kernel connects to Linux and sends; Linux answers with its digest.
    server = (
        "import hashlib, socket\n"
        "l = socket.socket(socket.AF_INET6); l.bind(('" + LINUX + "', 8008)); l.listen(1)\n"
        "print('ready', flush=True)\n"
        "s, _ = l.accept(); h = hashlib.sha256()\n"
        "while True:\n"
        "    b = s.recv(65536)\n"
        "    if not b: break\n"
        "    h.update(b)\n"
        "s.sendall(h.hexdigest().encode()); s.close()\n"
    )
    with ns_python_popen(ns, server) as peer:
        assert peer.stdout.readline().strip() == "ready"
        c = k.rump_sys_socket(AF6, socket.SOCK_STREAM, 0)
        k.rump_sys_connect(c, (LINUX, 8008))
        view = memoryview(data)
        sent = 0
        while sent < len(view):
            sent += k.rump_sys_send(c, view[sent:sent + 262144], 0)
        k.rump_sys_shutdown(c, socket.SHUT_WR)
        got = b""
        while chunk := k.rump_sys_recv(c, 100, 0):
            got += chunk
        peer.communicate(timeout=30)
    assert got.decode() == digest


@pytest.mark.timeout(60)
def test_a_type_0_routing_header_is_refused_by_linux(linux6) -> None:
    """ping6's intermediate hops (IPV6_RTHDR, RFC 3542 7) judged by Linux: it receives our
    echo request at the first hop, finds a type 0 routing header with a segment left and,
    as RFC 5095 asks, refuses to execute it: Parameter Problem, code 0, pointing at the
    Routing Type (40 + 2). Linux never answers the echo."""
    from rumpnet.commands import PingFailed

    k, ns, tap = linux6
    with pytest.raises(PingFailed) as ei:
        k.ping6("-v", "-n", "-c", "1", "-X", "3", LINUX, LINUX)
    out = ei.value.output
    assert re.search(rf"bytes from {LINUX}: Parameter problem: Erroneous Header pointer = 0x2a", out), out
    assert "icmp_seq=0" not in out, out
