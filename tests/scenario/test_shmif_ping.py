"""Two kernels in two OS processes on one shmif bus file: ping and UDP echo."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent("""
    import socket, sys, threading, time
    from rumpkern import rump_init

    k = rump_init(clock="real", seed=5, hostname="child")
    k.config.if_create("shmif0")
    k.config.if_set_linkstr("shmif0", sys.argv[1])
    k.config.addr_add("shmif0", "10.0.3.2/24")
    k.config.if_up("shmif0")
    k.serve_background()

    def echo():
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        k.rump_sys_bind(fd, ("0.0.0.0", 7))
        while True:
            data, src = k.rump_sys_recvfrom(fd, 65535, 0)
            k.rump_sys_sendto(fd, data, 0, src)

    threading.Thread(target=echo, daemon=True).start()
    print("ready", flush=True)
    while True:
        time.sleep(1)
""")


@pytest.fixture
def child(tmp_path: Path):
    bus = tmp_path / "bus"
    p = subprocess.Popen([sys.executable, "-u", "-c", CHILD, str(bus)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        if line.strip() != "ready":
            p.kill()
            _, err = p.communicate(timeout=5)
            pytest.fail(f"child kernel did not start: {line!r} {err}")
        yield bus
    finally:
        p.kill()
        p.wait(timeout=10)


@pytest.mark.timeout(60)
def test_ping_and_udp_over_shmif_between_processes(vnet_real, child) -> None:
    k = vnet_real.kernel(seed=6, hostname="parent")
    k.config.if_create("shmif0")
    k.config.if_set_linkstr("shmif0", str(child))
    k.config.addr_add("shmif0", "10.0.3.1/24")
    k.config.if_up("shmif0")
    for _ in range(3):
        rep = vnet_real.ping(k, "10.0.3.2", timeout=5.0)
        assert rep is not None and rep[20] == 0
        assert socket.inet_ntoa(rep[12:16]) == "10.0.3.2"
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    k.rump_sys_connect(fd, ("10.0.3.2", 7))
    for size in (1, 1000, 1472, 4000):  # 4000 bytes: fragments on the 1500-byte bus
        data = bytes(i & 0xFF for i in range(size))
        k.rump_sys_send(fd, data, 0)
        assert k.rump_sys_recv(fd, 65535, 0) == data
    assert k.inet.ipstat.ips_reassembled == 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("virtual", [True, False], ids=["virtual", "real"])
def test_two_kernels_one_process_on_a_bus(vnet_factory, tmp_path: Path, virtual: bool) -> None:
    net = vnet_factory(virtual)
    a, b = net.kernel(1), net.kernel(2)
    for k, addr in ((a, "10.0.4.1/24"), (b, "10.0.4.2/24")):
        k.config.if_create("shmif0")
        k.config.if_set_linkstr("shmif0", str(tmp_path / "bus"))
        k.config.addr_add("shmif0", addr)
        k.config.if_up("shmif0")
    rep = net.ping(a, "10.0.4.2", timeout=5.0)
    assert rep is not None and rep[20] == 0
    rep = net.ping(b, "10.0.4.1", timeout=5.0)
    assert rep is not None and rep[20] == 0
    # the bus file holds every frame both sent (what shmif_dumpbus prints)
    from rumpnet.shmif.shmif_bus import walk_bus

    recs = list(walk_bus((tmp_path / "bus").read_bytes()))
    ethertypes = [r.frame[12:14] for r in recs]
    assert ethertypes.count(b"\x08\x06") >= 3  # gratuitous ARPs, request, reply
    assert ethertypes.count(b"\x08\x00") == 4  # two echo requests, two replies
    assert len({r.sender for r in recs}) == 2
    # timestamps are the sending kernel's uptime, as if_shmem.c's getmicrouptime() (they
    # were the host's monotonic clock, seconds since host boot, before issue 16)
    assert all(0 <= r.sec < 100 for r in recs), [(r.sec, r.usec) for r in recs]
