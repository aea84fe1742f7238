"""The offload seam: IP alone decides how a TCP superframe leaves (``ip_output.tx_offloads``,
NetBSD's ip_tso_output); links carry what they are given.

One superframe (40 KB of TCP payload, segment size 1448) leaves a kernel toward four kinds
of interface (each kernel has its own MAC and first IP id: frames are compared from the
Ethernet type on, with the IP ids as offsets from the first, every checksum checked):

* a TSO interface: the link is given the superframe whole (``M_CSUM_TSOv4``, partial
  checksum, the segment size), which the host cuts; the frames on the wire are then what
  ``ip_gso.wire_frames`` (Linux's ``tcp_gso_segment``) makes of it, the reference here;
* a plain interface: the link is given those same frames, cut by IP;
* a TSO interface with an egress qdisc: the qdisc and then the link see those same frames;
* a ``tso`` wire port toward a plain port: the plain port receives those same frames (the
  sender's IP cut them; the wire cut nothing), and toward a ``tso`` port the superframe
  crosses whole.

Both of IP's output paths are checked: the cached one TCP uses and the full one (taken for
segments of a socket with IP_TOS/IP_TTL).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP

from rumpnet.ifnet import (
    M_CSUM_PARTIAL,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_TSOv4,
    M_CSUM_TSOv4,
    Mbuf,
)
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.ip_gso import wire_frames
from rumpnet.netinet.ip_var import IPPROTO_TCP

SRC, DST = "10.5.0.1", "10.5.0.2"
DST_MAC = "02:00:00:00:55:02"
SEGSZ = 1448
SRC_BYTES = bytes(int(x) for x in SRC.split("."))
PAYLOAD = bytes((i * 31) & 0xFF for i in range(40_000))


class CaptureDriver:
    """A link driver that records what the stack gives it, with or without TSO."""

    def __init__(self, tso: bool) -> None:
        self.capabilities = (IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx) if tso else 0
        self.tso_mtu = 65535 if tso else 0
        self.offload_mode = "tso" if tso else "none"
        self.sent: list[Any] = []

    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        pass

    def attach_offload(self, deliver_offload: Callable[[Any, int, int], None]) -> None:
        pass

    def transmit(self, frame: Any) -> None:
        self.sent.append(frame)

    def detach(self) -> None:
        pass


class PassQdisc:
    """An egress runner that records each frame and hands it on at once."""

    def __init__(self, transmit: Callable[[Any], None]) -> None:
        self.transmit = transmit
        self.seen: list[Any] = []

    def input(self, frame: Any) -> None:
        self.seen.append(frame)
        self.transmit(frame)


def superframe_tcp() -> bytes:
    """TCP header (timestamps, PSH on the last byte) and 40 KB of payload."""
    seg = TCP(sport=40000, dport=7000, seq=0xFFFFF000, ack=777, flags="PA", window=5000,
              options=[("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]) / PAYLOAD
    return bytes(seg)


def _kernel(vnet: Any, tso: bool) -> tuple[Any, Any, CaptureDriver]:
    k = vnet.kernel(81)          # the same seed every time: the same first IP id
    k.config.if_create("wire7")
    ifp = k.ifnet.lookup("wire7")
    drv = CaptureDriver(tso)
    ifp.attach_driver(drv)
    k.config.addr_add("wire7", f"{SRC}/24")
    k.config.if_up("wire7")
    k.arp("-s", DST, DST_MAC)
    drv.sent.clear()             # the gratuitous ARP of the address
    return k, ifp, drv


def _send(k: Any, full_path: bool) -> None:
    out = k.inet.output
    if full_path:
        out.output(aton(SRC), aton(DST), IPPROTO_TCP, superframe_tcp(), tso_segsz=SEGSZ)
    else:
        out.output_cached(aton(SRC), aton(DST), IPPROTO_TCP, superframe_tcp(), SEGSZ)


def _reference(vnet: Any, full_path: bool) -> list[bytes]:
    """The frames on the wire behind a TSO interface: the host's cut of what it was given."""
    k, _ifp, drv = _kernel(vnet, tso=True)
    _send(k, full_path)
    assert len(drv.sent) == 1
    m = drv.sent[0]
    assert type(m) is Mbuf and m.csum_flags == M_CSUM_TSOv4 | M_CSUM_PARTIAL and m.segsz == SEGSZ
    assert k.inet.output.tso_out == 1 and k.inet.output.gso_sw == 0
    frames = wire_frames(m, m.csum_flags, m.segsz)
    assert frames is not None and len(frames) == -(-len(PAYLOAD) // SEGSZ)
    assert b"".join(f[14 + 20 + 32:] for f in frames) == PAYLOAD
    return frames


def _plain(frames: list[Any]) -> list[bytes]:
    """The frames as bytes, each checked to carry no offload request."""
    for f in frames:
        assert not (type(f) is Mbuf and f.csum_flags), "a link was asked to cut or checksum"
    return [bytes(f) for f in frames]


def _same(got: list[bytes], ref: list[bytes]) -> bool:
    """``got`` and ``ref`` are the same frames but for the MACs and where the IP ids start:
    the rest byte for byte, ids consecutive in both, every IP and TCP checksum right."""
    def norm(frames: list[bytes]) -> list[tuple[bytes, int]]:
        out = []
        for f in frames:
            ip = IP(f[14:])
            ip_ck, tcp_ck = ip.chksum, ip[TCP].chksum
            del ip.chksum
            del ip[TCP].chksum
            again = IP(bytes(ip))
            assert (again.chksum, again[TCP].chksum) == (ip_ck, tcp_ck)
            out.append((f[12:18] + f[20:24] + f[26:], ip.id))
        return out
    a, b = norm(got), norm(ref)
    return [x for x, _ in a] == [x for x, _ in b] and \
        [(i - a[0][1]) & 0xFFFF for _, i in a] == [(i - b[0][1]) & 0xFFFF for _, i in b] == list(range(len(b)))


@pytest.mark.parametrize("full_path", [False, True], ids=["cached", "full"])
def test_plain_interface_gets_the_frames_tso_makes(vnet, full_path: bool) -> None:
    ref = _reference(vnet, full_path)
    k, _ifp, drv = _kernel(vnet, tso=False)
    _send(k, full_path)
    assert _same(_plain(drv.sent), ref)
    assert k.inet.output.gso_sw == 1 and k.inet.output.gso_segs == len(ref)


@pytest.mark.parametrize("full_path", [False, True], ids=["cached", "full"])
def test_qdisc_on_a_tso_interface_sees_the_frames_tso_makes(vnet, full_path: bool) -> None:
    """Faults act on wire frames: with an egress qdisc IP does not use the interface's
    TSO, and the qdisc, the link and bpf see the segments."""
    ref = _reference(vnet, full_path)
    k, ifp, drv = _kernel(vnet, tso=True)
    qdisc = PassQdisc(ifp.link_transmit)
    ifp.set_qdisc("egress", qdisc)
    tapped: list[bytes] = []

    class Tap:
        def write(self, frame: Any, ts: float) -> None:
            tapped.append(bytes(frame))

    ifp.bpf_attach(Tap())
    opackets = ifp.stats.opackets
    _send(k, full_path)
    assert _same(_plain(qdisc.seen), ref)
    assert _plain(drv.sent) == _plain(qdisc.seen) == tapped
    assert k.inet.output.tso_out == 0 and ifp.stats.opackets - opackets == len(ref)
    # Without the qdisc the interface's TSO is used again.
    ifp.set_qdisc("egress", None)
    drv.sent.clear()
    _send(k, full_path)
    assert len(drv.sent) == 1 and drv.sent[0].csum_flags & M_CSUM_TSOv4


def _wire_pair(vnet: Any, b_tso: bool) -> tuple[Any, Any, list[bytes]]:
    """A (``lan,tso``) and B (plain or ``lan,tso``) on one wire; B's bpf sees what it gets."""
    a = vnet.kernel(81)
    b = vnet.kernel(82)
    vnet.attach(a, "wire0", "lan,tso", f"{SRC}/24")
    vnet.attach(b, "wire0", "lan,tso" if b_tso else "lan", f"{DST}/24")
    b_mac = ":".join(f"{x:02x}" for x in b.ifnet.lookup("wire0").lladdr)
    a.arp("-s", DST, b_mac)
    got: list[bytes] = []

    class Ipv4Tap:
        def write(self, frame: Any, ts: float) -> None:
            if frame[12:14] == b"\x08\x00" and frame[26:30] == SRC_BYTES:   # A's IPv4 only
                got.append(bytes(frame))

    b.ifnet.lookup("wire0").bpf_attach(Ipv4Tap())
    return a, b, got


@pytest.mark.parametrize("full_path", [False, True], ids=["cached", "full"])
def test_tso_wire_port_toward_a_plain_port(vnet, full_path: bool) -> None:
    """The wire cuts nothing: the tso port offers no TSO while a plain port shares its
    segment, so A's IP cuts, and B receives the frames TSO makes."""
    ref = _reference(vnet, full_path)
    a, b, got = _wire_pair(vnet, b_tso=False)
    a_if = a.ifnet.lookup("wire0")
    assert a_if.offload_mode == "tso" and not a_if.capabilities & IFCAP_TSOv4
    _send(a, full_path)
    vnet.sched.run_for(0.1)
    assert _same(got, ref)
    assert a.inet.output.gso_sw == 1 and a.inet.output.tso_out == 0
    assert b.ifnet.lookup("wire0").driver.offload_drops == 0


def test_tso_wire_ports_carry_the_superframe_whole(vnet) -> None:
    a, b, got = _wire_pair(vnet, b_tso=True)
    assert a.ifnet.lookup("wire0").capabilities & IFCAP_TSOv4
    _send(a, full_path=False)
    vnet.sched.run_for(0.1)
    assert len(got) == 1 and len(got[0]) == 14 + 20 + 32 + len(PAYLOAD)
    assert a.inet.output.tso_out == 1 and a.inet.output.gso_sw == 0


def test_wire_port_offers_tso_only_while_every_peer_takes_it(vnet) -> None:
    """The capabilities follow the segment: a plain port joining takes the tso port's
    TSO away, its leaving gives it back."""
    a = vnet.kernel(81)
    vnet.attach(a, "wire0", "seam,tso", f"{SRC}/24")
    a_if = a.ifnet.lookup("wire0")
    assert a_if.capabilities & IFCAP_TSOv4 and a_if.tso_mtu == 65535
    b = vnet.kernel(82)
    vnet.attach(b, "wire0", "seam", f"{DST}/24")
    assert a_if.capabilities == 0 and a_if.tso_mtu == 0 and a_if.offload_mode == "tso"
    b.ifnet.lookup("wire0").detach_driver()
    assert a_if.capabilities & IFCAP_TSOv4 and a_if.tso_mtu == 65535


def test_plain_wire_port_drops_what_it_cannot_take(vnet) -> None:
    """A frame with offload state at a plain port (only a sender that decided while the
    port was joining sends one) is dropped and counted, never cut by the wire."""
    a, b, got = _wire_pair(vnet, b_tso=False)
    m = Mbuf(b.ifnet.lookup("wire0").lladdr + a.ifnet.lookup("wire0").lladdr + b"\x08\x00" + bytes(60),
             M_CSUM_TSOv4 | M_CSUM_PARTIAL,
             SEGSZ, 14 + 20)
    a.ifnet.lookup("wire0").driver.transmit(m)
    vnet.sched.run_for(0.1)
    assert got == [] and b.ifnet.lookup("wire0").driver.offload_drops == 1
