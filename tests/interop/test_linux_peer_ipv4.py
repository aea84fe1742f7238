"""Linux as the peer: a kernel's virt0 on a tap whose other end is in a fresh network
namespace; Linux's ping and ordinary Python sockets talk to the kernel and back."""

from __future__ import annotations

import socket

import pytest

from rumpnet.testing.netns import (
    have_netns_privileges,
    link_exists,
    ns_python_popen,
    ns_run,
    tap_peer,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

LINUX, RUMP = "10.99.41.1", "10.99.41.2"


@pytest.fixture
def linux_peer(vnet_real):
    k = vnet_real.kernel(seed=11, hostname="rumpk")  # halted by vnet_real
    with tap_peer(k, f"{RUMP}/24", f"{LINUX}/24", prefix="rnp") as (ns, tap):
        yield k, ns, tap
    assert not link_exists(tap)
    assert not ns.exists


@pytest.mark.timeout(60)
def test_linux_pings_kernel(linux_peer) -> None:
    k, ns, tap = linux_peer
    r = ns_run(ns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", RUMP], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 received" in r.stdout
    assert k.inet.icmpstat.icps_inhist[8] >= 3
    # a big ping: Linux fragments, the kernel reassembles and fragments its reply
    r = ns_run(ns, ["ping", "-c", "1", "-s", "4000", "-W", "2", RUMP], timeout=20)
    assert r.returncode == 0, r.stdout + r.stderr
    assert k.inet.ipstat.ips_reassembled >= 1 and k.inet.ipstat.ips_fragmented >= 1


@pytest.mark.timeout(60)
def test_kernel_pings_linux(vnet_real, linux_peer) -> None:
    k, ns, tap = linux_peer
    for _ in range(3):
        rep = vnet_real.ping(k, LINUX, timeout=5.0)
        assert rep is not None and rep[20] == 0
        assert socket.inet_ntoa(rep[12:16]) == LINUX


@pytest.mark.timeout(60)
def test_udp_linux_to_kernel(linux_peer) -> None:
    k, ns, tap = linux_peer
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("0.0.0.0", 5005))
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "s.settimeout(10)\n"
        "for m in (b'one', b'two' * 1000):\n"
        f"    s.sendto(m, ('{RUMP}', 5005))\n"
        "    data, src = s.recvfrom(65535)\n"
        "    assert data == m.upper() and src == ('" + RUMP + "', 5005), (data[:20], src)\n"
        "print('ok')\n"
    )
    with ns_python_popen(ns, code) as peer:
        for _ in range(2):
            data, src = k.rump_sys_recvfrom(fd, 65535, 0)
            assert src[0] == LINUX
            k.rump_sys_sendto(fd, data.upper(), 0, src)
        out, err = peer.communicate(timeout=15)
    assert out.strip() == "ok", err


@pytest.mark.timeout(60)
def test_udp_kernel_to_linux(linux_peer) -> None:
    k, ns, tap = linux_peer
    code = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(('{LINUX}', 6006)); s.settimeout(10)\n"
        "print('ready', flush=True)\n"
        "for _ in range(2):\n"
        "    data, src = s.recvfrom(65535)\n"
        "    s.sendto(data[::-1], src)\n"
    )
    with ns_python_popen(ns, code) as peer:
        assert peer.stdout.readline().strip() == "ready"
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
        k.rump_sys_connect(fd, (LINUX, 6006))
        for msg in (b"hello linux", bytes(range(256)) * 12):
            k.rump_sys_send(fd, msg, 0)
            assert k.rump_sys_recv(fd, 65535, 0) == msg[::-1]
        # a port nobody listens on: Linux answers port unreachable
        k.rump_sys_connect(fd, (LINUX, 6007))
        k.rump_sys_send(fd, b"x", 0)
        with pytest.raises(ConnectionRefusedError):
            k.rump_sys_recv(fd, 100, 0)
