"""virtif offloads against Linux: TSO/GRO superframes and checksum offload through a tap.

The peer is a Python socket program inside a network namespace (Linux's TCP); the kernel
is a rumpnet kernel with ``virt0`` on the tap. Offload on and off must move the same
bytes (SHA-256) both ways; a superframe Linux sends must be cut correctly when a router
kernel forwards it out of a 1500-MTU wire; and a tap without ``IFF_VNET_HDR`` must fall
back to plain frames. ``test_offload_throughput`` prints the figures (never asserted).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    move_link_to_netns,
    ns_configure,
    ns_python_popen,
    ns_run,
    unique_ifname,
)
from rumpnet.virtif import VirtifDriver

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

LINUX, RUMP = "10.99.61.1", "10.99.61.2"
PORT = 5001
MB = 1 << 20
TRANSFER_LIMIT = 60.0  # seconds for one bulk() transfer (64 MB at 0.1 Gbit/s is 5 s)

# Linux peers: listen on argv[1]:PORT; "sink" reads to EOF and prints "<n> <sha256> <secs>";
# "source" sends argv[2] bytes, shuts down, waits for the other side's close and prints
# "<n> <sha256>". The data is a fixed pattern both sides can hash.
PEER_SINK = r"""
import hashlib, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0; buf = bytearray(1 << 20); t0 = time.perf_counter()
while True:
    k = c.recv_into(buf)
    if not k:
        break
    h.update(memoryview(buf)[:k]); n += k
print(n, h.hexdigest(), time.perf_counter() - t0, flush=True)
"""
PEER_SOURCE = r"""
import hashlib, socket, sys
N = int(sys.argv[2]); data = bytes(range(256)) * 4096
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); h = hashlib.sha256(); n = 0
while n < N:
    k = min(len(data), N - n); c.sendall(data[:k]); h.update(data[:k]); n += k
c.shutdown(socket.SHUT_WR); c.recv(1)
print(n, h.hexdigest(), flush=True)
"""
PATTERN = bytes(range(256)) * 4096


def pattern_sha(n: int) -> str:
    h = hashlib.sha256()
    done = 0
    while done < n:
        k = min(len(PATTERN), n - done)
        h.update(PATTERN[:k])
        done += k
    return h.hexdigest()


@contextlib.contextmanager
def tap_kernel(vnet_real: Any, *, offload: bool, vnet_hdr: bool | None = None,
               addr: str = RUMP, peer: str = LINUX,
               routes: tuple[tuple[str, str], ...] = ()) -> Iterator[tuple[Any, NetNS, VirtifDriver]]:
    """A real-clock kernel whose ``virt0`` is a tap whose other end is in a new namespace
    (``peer`` there with ``routes``, ``addr`` on the kernel)."""
    k = vnet_real.kernel(seed=61)
    with NetNS("rno") as ns:
        drv = VirtifDriver(unique_ifname("rno"), vnet_hdr=vnet_hdr, offload=offload)
        k.config.if_create("virt0")
        k.ifnet.lookup("virt0").attach_driver(drv)
        move_link_to_netns(drv.tapname, ns)
        ns_configure(ns, drv.tapname, f"{peer}/24", routes=routes)
        k.config.addr_add("virt0", f"{addr}/24")
        k.config.if_up("virt0")
        try:
            yield k, ns, drv
        finally:
            k.halt()


def _line(p: Any, timeout: float = 60.0) -> str:
    """The peer's next output line; a test failure (not a hang) if none comes in time,
    e.g. because the transfer stalled. (The reader thread ends when the peer is killed.)"""
    got: list[str] = []
    t = threading.Thread(target=lambda: got.append(p.stdout.readline()), daemon=True)
    t.start()
    t.join(timeout)
    if not got:
        pytest.fail(f"the Linux peer printed nothing for {timeout:.0f} s (transfer stalled?)")
    return got[0]


def bulk(k: Any, ns: NetNS, direction: str, nbytes: int, peer: str = LINUX) -> tuple[int, str, float]:
    """Move ``nbytes`` between the kernel and a Linux peer: "out" (kernel sends) or "in"
    (kernel receives). Returns (bytes the receiver got, their SHA-256, seconds)."""
    code = PEER_SINK if direction == "out" else PEER_SOURCE
    with ns_python_popen(ns, code, args=[peer, str(nbytes)]) as p:
        assert _line(p).strip() == "ready"
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 20.0)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO, 20.0)
        k.rump_sys_connect(fd, (peer, PORT))
        t0 = time.perf_counter()

        def check_time() -> None:
            # Each call is bounded by SO_SNDTIMEO/SO_RCVTIMEO; this bounds a transfer
            # that trickles (a stall with retransmissions), which would otherwise hang
            # the test: its timeout cannot interrupt a kernel waiting in the event loop.
            if time.perf_counter() - t0 > TRANSFER_LIMIT:
                pytest.fail(f"transfer {direction} not done in {TRANSFER_LIMIT:.0f} s")

        if direction == "out":
            view = memoryview(PATTERN)
            sent = 0
            while sent < nbytes:
                k_ = min(len(PATTERN), nbytes - sent)
                off = 0
                while off < k_:
                    check_time()
                    off += k.rump_sys_send(fd, view[off:k_], 0)
                sent += k_
            k.rump_sys_shutdown(fd, socket.SHUT_WR)
            # This kernel runs only inside its system calls (no background thread): a
            # lingering close returns once the peer has acknowledged everything, FIN
            # included, as a BSD program makes sure its data went out before it stops
            # calling the kernel. (Without it, what the send buffer still held --
            # megabytes once autosized -- would wait for the next call.)
            k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 30))
            k.rump_sys_close(fd)
            fd = -1
            fields = _line(p).split()
            secs = time.perf_counter() - t0
            n, digest = int(fields[0]), fields[1]
        else:
            h = hashlib.sha256()
            n = 0
            while True:
                check_time()
                chunk = k.rump_sys_recv(fd, MB, 0)
                if not chunk:
                    break
                h.update(chunk)
                n += len(chunk)
            secs = time.perf_counter() - t0
            k.rump_sys_send(fd, b"x", 0)
            fields = _line(p).split()
            assert int(fields[0]) == nbytes and fields[1] == pattern_sha(nbytes)
            digest = h.hexdigest()
        if fd >= 0:
            k.rump_sys_close(fd)
    return n, digest, secs


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["out", "in"])
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_bulk_same_bytes_with_and_without_offload(vnet_real, offload: bool, direction: str) -> None:
    size = 8 * MB + 12345
    with tap_kernel(vnet_real, offload=offload) as (k, ns, drv):
        ifp = k.ifnet.lookup("virt0")
        assert drv.offload_mode == ("tso" if offload else "none")
        assert ifp.offload_mode == drv.offload_mode
        assert k.sysctl("net.link.virt.virt0.offload").split()[-1] == drv.offload_mode
        n, digest, _ = bulk(k, ns, direction, size)
        assert n == size and digest == pattern_sha(size)
        tcp = k.inet.tcp
        assert tcp.stats.tcps_rcvbadsum == 0 and tcp.stats.tcps_rcvinternalerr == 0
        if offload and direction == "in":
            assert drv.rx_gso > 0  # Linux really sent superframes, one TCP input each
            assert tcp.stats.tcps_rcvpack < size // 1448
        if offload and direction == "out":
            assert drv.tx_gso > 0 and tcp.tso_superframes > 0
        if not offload:
            # No superframe reaches the tap: the ones TCP builds (GSO, net.inet.tcp.gso)
            # are all cut into plain frames by IP in software.
            assert drv.rx_gso == drv.tx_gso == 0
            assert k.inet.output.gso_sw == tcp.tso_superframes
            if direction == "out":
                assert tcp.tso_superframes > 0


@pytest.mark.timeout(120)
@pytest.mark.parametrize("offload", [False, True], ids=["plain", "offload"])
def test_bulk_out_to_a_linux_peer_with_a_small_mss(vnet_real, offload: bool) -> None:
    """Linux announces MSS 536 (``advmss`` on its route): the kernel's superframes of a few
    524-byte segments fit in the MTU, yet must be cut at 524 bytes (by IP's GSO, or by the
    host's TSO from the vnet header) -- and the bytes arrive intact."""
    size = 2 * MB + 77
    with tap_kernel(vnet_real, offload=offload) as (k, ns, drv):
        r = ns_run(ns, ["ip", "route", "replace", f"{LINUX.rsplit('.', 1)[0]}.0/24", "dev", drv.tapname,
                        "advmss", "536"], timeout=10)
        assert r.returncode == 0, r.stderr
        n, digest, _ = bulk(k, ns, "out", size)
        assert n == size and digest == pattern_sha(size)
        tcp = k.inet.tcp
        # Badly cut superframes would be lost every time and retransmitted one by one; a
        # loaded host may still drop a few frames in the tap's backlog, so allow 1%.
        assert tcp.tso_superframes > 0
        assert tcp.stats.tcps_sndrexmitpack <= tcp.stats.tcps_sndpack // 100, tcp.stats
        mss = [cb.t_maxseg for cb in tcp.proto.conns.values()]
        assert mss and max(mss) <= 536


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["out", "in"])
def test_fallback_without_vnet_hdr(vnet_real, direction: str) -> None:
    """Offloads asked for on a tap opened without IFF_VNET_HDR: TUNSETOFFLOAD cannot be
    used, the driver says so and moves plain frames."""
    size = 4 * MB
    with tap_kernel(vnet_real, offload=True, vnet_hdr=False) as (k, ns, drv):
        assert drv.offload_mode == "none" and drv.offload_error is not None
        assert "IFF_VNET_HDR" not in drv.host_flags()
        ifp = k.ifnet.lookup("virt0")
        assert ifp.capabilities == 0 and ifp.tso_mtu == 0
        n, digest, _ = bulk(k, ns, direction, size)
        assert n == size and digest == pattern_sha(size)
        assert drv.rx_gso == drv.tx_gso == 0


@pytest.mark.timeout(60)
def test_offload_switched_off_at_run_time(vnet_real) -> None:
    size = 4 * MB
    with tap_kernel(vnet_real, offload=True) as (k, ns, drv):
        assert drv.offload_mode == "tso"
        k.sysctl("-w", "net.link.virt.virt0.offload=none")
        assert drv.offload_mode == "none" and k.ifnet.lookup("virt0").capabilities == 0
        for direction in ("out", "in"):
            n, digest, _ = bulk(k, ns, direction, size)
            assert n == size and digest == pattern_sha(size)
        assert drv.rx_gso == drv.tx_gso == 0
        k.sysctl("-w", "net.link.virt.virt0.offload=tso")
        assert drv.offload_mode == "tso" and k.ifnet.lookup("virt0").tso_mtu == 65535


@pytest.mark.timeout(60)
def test_linkstr_option_turns_offloads_on(vnet_real) -> None:
    """``ifconfig virt0 linkstr TAP,offload`` (the cloner path) opens the tap with them."""
    k = vnet_real.kernel(seed=63)
    tap = unique_ifname("rno")
    k.ifconfig("virt0", "create")
    k.ifconfig("virt0", "linkstr", f"{tap},offload")
    ifp = k.ifnet.lookup("virt0")
    assert ifp.driver.tapname == tap and ifp.offload_mode == "tso"
    assert ifp.tso_mtu == 65535 and ifp.capabilities & 0x80  # IFCAP_TSOv4
    assert k.sysctl("net.link.virt.virt0.offload") == "net.link.virt.virt0.offload = tso\n"
    with pytest.raises(OSError):
        k.sysctl("-w", "net.link.virt.virt0.offload=fast")
    k.ifconfig("virt0", "destroy")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("direction", ["in", "out"], ids=["linux_to_b", "b_to_linux"])
def test_router_splits_superframes_onto_1500_wire(vnet_real, direction: str) -> None:
    """Linux -- tap (offloads) -- router kernel R -- wire0 (MTU 1500) -- kernel B.

    Linux sends 64 KB GSO superframes into the tap; R forwards them out of a wire that
    cannot take them, so ip_gso cuts each into MSS-sized segments with fresh checksums,
    and B's TCP (which verifies every checksum) gets the stream intact."""
    size = 6 * MB
    linux, r_tap, r_wire, b_addr = "10.99.62.1", "10.99.62.2", "10.99.63.1", "10.99.63.2"
    with tap_kernel(vnet_real, offload=True, addr=r_tap, peer=linux,
                    routes=(("10.99.63.0/24", r_tap),)) as (r, ns, drv):
        b = vnet_real.kernel(seed=62)
        vnet_real.attach(r, "wire0", "lan", f"{r_wire}/24")
        vnet_real.attach(b, "wire0", "lan", f"{b_addr}/24")
        r.sysctl("-w", "net.inet.ip.forwarding=1")
        b.route("add", "default", r_wire)
        # frames cross the wire on later turns of the loop: keep it running while this
        # thread waits on the Linux peer
        vnet_real.sched.start_background()
        n, digest, _ = bulk(b, ns, direction, size, peer=linux)
        assert n == size and digest == pattern_sha(size)
        assert b.inet.tcp.stats.tcps_rcvbadsum == 0
        out = r.inet.output
        if direction == "in":
            assert drv.rx_gso > 0 and out.gso_sw > 0 and out.gso_segs > out.gso_sw
            assert r.ifnet.lookup("wire0").stats.oerrors == 0


def veth_baseline(nbytes: int) -> float:
    """Linux to Linux over a veth pair between two namespaces, with the same Python
    peers: seconds for ``nbytes``."""
    from pyroute2 import IPRoute

    a_if, b_if = unique_ifname("rnv"), unique_ifname("rnv")
    with NetNS("rnv") as na, NetNS("rnv") as nb:
        with IPRoute() as ipr:
            ipr.link("add", ifname=a_if, kind="veth", peer=b_if)
        move_link_to_netns(a_if, na)
        move_link_to_netns(b_if, nb)
        ns_configure(na, a_if, "10.99.64.1/24")
        ns_configure(nb, b_if, "10.99.64.2/24")
        client = (
            "import socket, sys, time\n"
            "N = int(sys.argv[1]); data = bytes(range(256)) * 4096; n = 0\n"
            "c = socket.create_connection(('10.99.64.1', 5001)); t0 = time.perf_counter()\n"
            "while n < N:\n"
            "    k = min(len(data), N - n); c.sendall(data[:k]); n += k\n"
            "c.shutdown(socket.SHUT_WR); c.recv(1); print(time.perf_counter() - t0)\n"
        )
        with ns_python_popen(na, PEER_SINK, args=["10.99.64.1", str(nbytes)]) as p:
            assert p.stdout.readline().strip() == "ready"
            r = ns_run(nb, [sys.executable, "-c", client, str(nbytes)], timeout=120)
            assert r.returncode == 0, r.stderr
            fields = p.stdout.readline().split()
            assert int(fields[0]) == nbytes
            return float(fields[2])


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_offload_throughput(vnet_factory) -> None:
    """Bulk TCP each way, offloads off and on, and the Linux veth baseline: printed."""
    size = 64 * MB
    rows = []
    for offload in (False, True):
        for direction in ("out", "in"):
            best = 0.0
            for _ in range(3):
                with tap_kernel(vnet_factory(virtual=False), offload=offload) as (k, ns, _drv):
                    n, digest, secs = bulk(k, ns, direction, size)
                    assert n == size and digest == pattern_sha(size)
                    best = max(best, size * 8 / secs / 1e9)
            rows.append((f"{'offload' if offload else 'plain':7} {direction:3}", best))
    veth = max(size * 8 / veth_baseline(size) / 1e9 for _ in range(3))
    rows.append(("linux veth", veth))
    print()
    for name, gbit in rows:
        print(f"  {name:12} {gbit:7.3f} Gbit/s (best of 3, {size // MB} MB)")


class PlainView:
    """A VirtifDriver seen through the plain LinkDriver interface only (no
    ``attach_offload``): the interface gets no capabilities, and superframes the host
    sends must reach it as ordinary frames."""

    def __init__(self, drv: VirtifDriver) -> None:
        self.drv = drv

    def attach(self, sched: Any, deliver: Any) -> None:
        self.drv.attach(sched, deliver)

    def transmit(self, frame: Any) -> None:
        self.drv.transmit(frame)

    def detach(self) -> None:
        self.drv.detach()


@pytest.mark.timeout(120)
def test_superframes_cut_for_a_consumer_without_offload_support(vnet_real) -> None:
    size = 4 * MB
    k = vnet_real.kernel(seed=64)
    with NetNS("rno") as ns:
        drv = VirtifDriver(unique_ifname("rno"), offload=True)
        k.config.if_create("virt0")
        ifp = k.ifnet.lookup("virt0")
        ifp.attach_driver(PlainView(drv))
        assert drv.offload_mode == "tso" and ifp.capabilities == 0
        move_link_to_netns(drv.tapname, ns)
        ns_configure(ns, drv.tapname, f"{LINUX}/24")
        k.config.addr_add("virt0", f"{RUMP}/24")
        k.config.if_up("virt0")
        try:
            n, digest, _ = bulk(k, ns, "in", size)
            assert n == size and digest == pattern_sha(size)
            assert drv.rx_gso > 0  # Linux sent superframes; the driver cut them
            assert k.inet.tcp.stats.tcps_rcvbadsum == 0
        finally:
            k.halt()


def test_ifconfig_and_sysctl_say_which_offload_mode_is_in_use() -> None:
    from rumpkern import rump_init
    from rumpnet.testing.netns import unique_ifname

    k = rump_init()
    try:
        tap_on, tap_off = unique_ifname("rof"), unique_ifname("rof")
        k.ifconfig("virt0", "create")
        k.ifconfig("virt0", "linkstr", tap_on)
        k.ifconfig("virt1", "create")
        k.ifconfig("virt1", "linkstr", f"{tap_off},nooffload")
        on, off = k.ifconfig("virt0"), k.ifconfig("virt1")
        assert "\toffload: tso\n" in on and "capabilities=c80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx>" in on
        assert "\toffload: none\n" in off and "capabilities=" not in off
        assert k.sysctl("-n", "net.link.virt.virt0.offload").strip() == "tso"
        assert k.sysctl("-n", "net.link.virt.virt1.offload").strip() == "none"
    finally:
        k.halt()


def test_virt_binds_to_tap_tun_n_when_brought_up_without_a_linkstr() -> None:
    """DESIGN.md 5: virtN binds to host tap tunN unless a linkstr names another -- also
    when setting an address is what brings the interface up."""
    import os

    from rumpkern import rump_init
    from rumpnet.virtif.hostif import link_exists

    unit = 9000 + os.getpid() % 900
    k = rump_init()
    try:
        k.ifconfig(f"virt{unit}", "create")
        k.ifconfig(f"virt{unit}", "inet", "10.99.66.1/24")  # brings it up
        k.ifconfig(f"virt{unit}", "up")
        assert f"\tlinkstr: tun{unit}\n" in k.ifconfig(f"virt{unit}")
        assert link_exists(f"tun{unit}")
    finally:
        k.halt()
    assert not link_exists(f"tun{unit}")  # the tap goes with the kernel
