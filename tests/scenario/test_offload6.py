"""TCP superframes over IPv6 (TSO6 and GRO for IPv6) without privileges, on virtual time.

* ``ip6_gso``: a TCPv6 superframe cut into segments (checked against scapy's checksums),
  partial checksums made and finished, and what it refuses.
* Two kernels on a ``tso`` wire: IPv6 TCP hands the link whole superframes (``Mbuf`` with
  ``M_CSUM_TSOv6``, partial checksum, segment size: ``ip6_rtcache``'s TSO output), the
  receiver takes each with one TCP input and no checksum check, and the bytes arrive;
  on a plain wire IPv6 cuts them itself.
* A router between a ``tso`` wire and a plain one cuts the superframes it forwards into
  wire-sized packets with full checksums (``Inet6Domain._offload_input``), so the far
  host, which verifies every checksum, gets the stream; a frame whose offload flags lie
  is dropped and counted.

The same paths against Linux through a tap (``TUN_F_TSO6``, ``gso_type`` TCPV6) are in
``tests/interop/test_offload.py``.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt

from rumpnet.ifnet import M_CSUM_PARTIAL, M_CSUM_TCPv6, Mbuf
from rumpnet.net_kernel import net_kernel
from rumpnet.netinet.ip_gso import GsoError
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import IN6_IFF_NODAD
from rumpnet.netinet6.ip6_gso import (
    complete_tcp6_csum,
    plain_packets6,
    set_partial_tcp6_csum,
    tcp6_segment_superframe,
)
from rumpnet.sys_socket import pollfd
from rumpnet.testing.gso import check_tcp_run
from rumpnet.uipc_socket import POLLIN

AF6 = socket.AF_INET6
PORT = 7000


def superframe6(payload: bytes, flags: str = "PA", src: str = "fc00:1::5", dst: str = "fc00:2::2",
                seq: int = 0xFFFFF000) -> bytes:
    return bytes(IPv6(src=src, dst=dst, hlim=64, tc=0x20, fl=0x12345) / TCP(
        sport=40000, dport=PORT, seq=seq, ack=777, flags=flags, window=5000,
        options=[("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]) / payload)


def check_segment6(seg: bytes) -> Any:
    """Parse with scapy and check the TCP checksum against scapy's own."""
    p = IPv6(seg)
    ck = p[TCP].chksum
    del p[TCP].chksum
    q = IPv6(bytes(p))
    assert ck == q[TCP].chksum and q.plen == len(seg) - 40
    return q


@pytest.mark.parametrize("plen,mss", [(10000, 1428), (65535 - 32 - 20, 1428), (3000, 1000), (5, 1428)])
def test_segment6_superframe(plen: int, mss: int) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(plen))
    sf = bytearray(superframe6(payload, flags="FPAC"))   # CWR first only, FIN and PSH last only
    set_partial_tcp6_csum(sf)                             # as the host leaves it: ignored
    segs = tcp6_segment_superframe(sf, mss)
    assert len(segs) == -(-plen // mss)
    for seg in segs:
        q = check_segment6(bytes(seg))
        assert q.hlim == 64 and q.tc == 0x20 and q.fl == 0x12345 and len(seg) <= 40 + 32 + mss
        assert q[TCP].ack == 777 and q[TCP].window == 5000
    check_tcp_run([IPv6(bytes(seg))[TCP] for seg in segs], 0xFFFFF000, payload)


def test_partial_checksum6_round_trip_and_refusals() -> None:
    full = superframe6(b"partial" * 300)
    partial = bytearray(full)
    set_partial_tcp6_csum(partial)
    assert partial != full
    assert complete_tcp6_csum(partial) == full
    assert plain_packets6(partial, M_CSUM_TCPv6 | M_CSUM_PARTIAL, 0) == [full]
    udp = bytes(IPv6(src="fc00::1", dst="fc00::2") / UDP() / (b"u" * 3000))
    ext = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrDestOpt() / TCP() / (b"e" * 3000))
    for bad in (udp, ext, full[:50], b"\x45" + bytes(80)):
        with pytest.raises(GsoError):
            tcp6_segment_superframe(bad, 1000)
        assert complete_tcp6_csum(bad) is None
        assert plain_packets6(bad, M_CSUM_TCPv6, 1000) is None
    with pytest.raises(ValueError):
        tcp6_segment_superframe(full, 0)


def _on_wire(vnet: Any, k: Any, ifname: str, seg: str, addr: str, tso: bool) -> Any:
    """``k``'s ``ifname`` on wire segment ``seg`` (``tso``: a port with offloads) with
    IPv6 address ``addr``/64, usable at once."""
    k.config.if_create(ifname)
    k.config.if_set_linkstr(ifname, vnet.seg(seg) + (",tso" if tso else ""))
    k.config.if_up(ifname)
    nk = net_kernel(k)
    ifp = nk.ifnet.lookup(ifname)
    nk.inet6.add_address(ifp, in6.pton(addr), 64, IN6_IFF_NODAD)
    return ifp


class Frames:
    """A bpf listener: every frame an interface sends or receives."""

    def __init__(self) -> None:
        self.frames: list[bytes] = []
        self.offload: list[Any] = []

    def write(self, frame: bytes, ts: float = 0.0) -> None:
        self.frames.append(bytes(frame))
        if type(frame) is Mbuf:
            self.offload.append((frame.csum_flags, frame.segsz, frame.csum_start))


def send_stream(a: Any, b: Any, dst: str, data: bytes) -> bytes:
    """``data`` from ``a`` to ``b``'s listener at ``dst``: non-blocking sends, polled
    receives, bounded in virtual time; what ``b`` received."""
    lfd = b.rump_sys_socket(AF6, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("::", PORT))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(AF6, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, (dst, PORT))
    s, _ = b.rump_sys_accept(lfd)
    a.rump_sys_fcntl(c, 4, 0o4000)          # F_SETFL O_NONBLOCK
    got = bytearray()
    sent = 0
    deadline = a.clock_now() + 120
    while len(got) < len(data):
        assert a.clock_now() < deadline, f"stalled at {len(got)} of {len(data)} bytes"
        if sent < len(data):
            try:
                sent += a.rump_sys_send(c, data[sent:sent + (256 << 10)], 0)
            except BlockingIOError:
                pass
        if b.rump_sys_poll([pollfd(s, POLLIN)], 1, 50):
            got += b.rump_sys_recv(s, 1 << 20, 0)
    for k, fd in ((a, c), (b, s), (b, lfd)):
        k.rump_sys_close(fd)
    return bytes(got)


@pytest.mark.parametrize("tso", [True, False], ids=["tso_wire", "plain_wire"])
def test_tcp6_superframes_cross_a_tso_wire_whole(vnet, tso: bool) -> None:
    a, b = vnet.kernel(1), vnet.kernel(2)
    ifa = _on_wire(vnet, a, "wire0", "lan", "fc00:9::1", tso)
    _on_wire(vnet, b, "wire0", "lan", "fc00:9::2", tso)
    cap = Frames()
    ifa.bpf_attach(cap)
    data = bytes((i * 13) & 0xFF for i in range(3 << 20))
    assert send_stream(a, b, "fc00:9::2", data) == data
    rc = net_kernel(a).inet6.rtcache
    tcp_b = net_kernel(b).inet6.tcp6
    assert tcp_b.stats.tcps_rcvbadsum == 0
    big = [f for f in cap.frames if len(f) > 1514]
    if tso:
        # whole superframes left a: the Mbuf asks for TSO6 with a partial checksum and
        # segments of the path MTU's MSS (1500 - 40 - 20 - 12 of timestamps)
        assert rc.tso_out > 0 and rc.gso_sw == 0 and big
        assert cap.offload and {o for o in cap.offload} == {(0x200 | M_CSUM_PARTIAL, 1428, 54)}
        assert len(cap.frames) < len(data) // 1428 // 4
        # the partial checksum is the one the host (Linux's skb_checksum_help) finishes
        done = complete_tcp6_csum(big[0], 14)
        assert done is not None
        check_segment6(done[14:])
    else:
        assert rc.tso_out == 0 and rc.gso_sw > 0 and not big and not cap.offload


def test_router_cuts_forwarded_tcp6_superframes(vnet) -> None:
    """a -- tso wire -- r -- plain wire -- b: a's superframes reach r whole (as Linux's
    GRO frames reach it from a tap) and leave as wire-sized packets b can verify."""
    a, r, b = vnet.kernel(1), vnet.kernel(2), vnet.kernel(3)
    _on_wire(vnet, a, "wire0", "left", "fc00:1::5", True)
    r_left = _on_wire(vnet, r, "wire0", "left", "fc00:1::1", True)
    r_right = _on_wire(vnet, r, "wire1", "right", "fc00:2::1", False)
    b_if = _on_wire(vnet, b, "wire0", "right", "fc00:2::2", False)
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    a.route("add", "-inet6", "default", "fc00:1::1")
    b.route("add", "-inet6", "default", "fc00:2::1")
    cap = Frames()
    b_if.bpf_attach(cap)
    data = bytes((i * 29) & 0xFF for i in range(2 << 20))
    assert send_stream(a, b, "fc00:2::2", data) == data
    assert net_kernel(a).inet6.rtcache.tso_out > 0          # superframes went out of a
    node = net_kernel(r).inet6.node
    assert node.ip6stat.ip6s_forward > net_kernel(a).inet6.rtcache.tso_out
    assert node.icmp6stat.icp6s_outhist[2] == 0              # no Packet Too Big for them
    assert r_right.stats.oerrors == 0 and r_left.stats.ierrors == 0
    assert cap.frames and max(len(f) for f in cap.frames) <= 1514
    assert net_kernel(b).inet6.tcp6.stats.tcps_rcvbadsum == 0


class InjectDriver:
    """An offloading link driver whose other end is the test (as virtif hands frames with
    ``deliver_offload``)."""

    capabilities = 0
    tso_mtu = 0
    offload_mode = "tso"

    def __init__(self) -> None:
        self.offload: Callable[[Any, int, int], None] | None = None

    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        pass

    def attach_offload(self, deliver_offload: Callable[[Any, int, int], None]) -> None:
        self.offload = deliver_offload

    def transmit(self, frame: Any) -> None:
        pass

    def detach(self) -> None:
        self.offload = None


def test_forwarded_frame_whose_offload_flags_lie_is_dropped_and_counted(vnet) -> None:
    r = vnet.kernel(2)
    nk = net_kernel(r)
    r.config.if_create("wire5")
    ifp = nk.ifnet.lookup("wire5")
    drv = InjectDriver()
    ifp.attach_driver(drv)
    r.config.if_up("wire5")
    nk.inet6.add_address(ifp, in6.pton("fc00:1::1"), 64, IN6_IFF_NODAD)
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    udp = bytes(IPv6(src="fc00:1::5", dst="fc00:7::9") / UDP() / (b"u" * 3000))
    assert drv.offload is not None
    before = ifp.stats.ierrors
    drv.offload(ifp.lladdr + bytes(6) + b"\x86\xdd" + udp, M_CSUM_TCPv6 | M_CSUM_PARTIAL, 1400)
    assert ifp.stats.ierrors == before + 1
    assert nk.inet6.node.ip6stat.ip6s_forward == 0
