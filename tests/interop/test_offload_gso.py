"""Software GSO (rumpnet.netinet.ip_gso) and the offload path through a router kernel,
without privileges: superframes are injected by a test link driver that offers offloads
the way virtif does (``attach_offload``, ``capabilities``, ``tso_mtu``)."""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from rumpnet.bpf import PcapReader
from rumpnet.ifnet import (
    M_CSUM_PARTIAL,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_TSOv4,
    M_CSUM_TCPv4,
    M_CSUM_TSOv4,
    Mbuf,
    ifcap_string,
)
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_pseudo_sum
from rumpnet.netinet.ip_gso import (
    GsoError,
    complete_tcp_csum,
    set_partial_tcp_csum,
    tcp_segment_superframe,
)
from rumpnet.testing.gso import check_tcp_run


def superframe(payload: bytes, flags: str = "PA", options: Any = (("NOP", None), ("NOP", None),
               ("Timestamp", (1000, 2000))), ip_id: int = 0x1234, seq: int = 0xFFFFF000,
               src: str = "10.1.0.5", dst: str = "10.2.0.2") -> bytes:
    pkt = IP(src=src, dst=dst, id=ip_id, flags="DF", ttl=64) / TCP(
        sport=40000, dport=7000, seq=seq, ack=777, flags=flags, window=5000, options=list(options)) / payload
    return bytes(pkt)


def check_segment(seg: bytes) -> Any:
    """Parse with scapy and check both checksums against scapy's own computation."""
    p = IP(seg)
    ip_ck, tcp_ck = p.chksum, p[TCP].chksum
    del p.chksum
    del p[TCP].chksum
    q = IP(bytes(p))
    assert ip_ck == q.chksum and tcp_ck == q[TCP].chksum
    return q


@pytest.mark.parametrize("plen,mss", [(10000, 1448), (1448 * 45, 1448), (65535 - 52, 1448), (3000, 1000),
                                      (5, 1448), (1449, 1448)])
def test_segment_superframe(plen: int, mss: int) -> None:
    payload = bytes((i * 7) & 0xFF for i in range(plen))
    sf = superframe(payload, flags="FPAC")  # CWR on the first only, FIN and PSH on the last
    segs = tcp_segment_superframe(sf, mss)
    assert len(segs) == -(-plen // mss)
    for i, seg in enumerate(segs):
        q = check_segment(bytes(seg))
        assert q.len == len(seg) <= 20 + 32 + mss
        assert q.id == (0x1234 + i) & 0xFFFF and q.flags == "DF" and q.ttl == 64
        assert q[TCP].ack == 777 and q[TCP].window == 5000
        assert q[TCP].options == [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]
    check_tcp_run([IP(bytes(seg))[TCP] for seg in segs], 0xFFFFF000, payload)  # wraps mod 2**32


def test_segment_ignores_partial_or_bad_superframe_checksum() -> None:
    sf = bytearray(superframe(b"x" * 5000))
    set_partial_tcp_csum(sf)
    for seg in tcp_segment_superframe(sf, 1448):
        check_segment(bytes(seg))
    sf[20 + 16] ^= 0xFF
    for seg in tcp_segment_superframe(sf, 1448):
        check_segment(bytes(seg))


def test_segment_rejects_non_tcp_and_bad_mss() -> None:
    with pytest.raises(GsoError):
        tcp_segment_superframe(bytes(IP(src="1.2.3.4", dst="5.6.7.8", proto=17) / (b"u" * 3000)), 1000)
    with pytest.raises(GsoError):
        tcp_segment_superframe(b"\x45" + bytes(10), 1000)
    with pytest.raises(ValueError):
        tcp_segment_superframe(superframe(b"x" * 10), 0)


def test_partial_checksum_round_trip() -> None:
    full = superframe(b"partial" * 1000)
    partial = bytearray(full)
    set_partial_tcp_csum(partial)
    ulen = len(full) - 20
    assert struct.unpack_from("!H", partial, 36)[0] == in_pseudo_sum(aton("10.1.0.5"), aton("10.2.0.2"), 6, ulen)
    eth = b"\x02" * 12 + b"\x08\x00"
    assert complete_tcp_csum(eth + partial, 14) == eth + full
    assert complete_tcp_csum(b"\x00" * 30, 0) is None


def test_ifcap_string() -> None:
    assert ifcap_string(IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx) == "c80<TSO4,TCP4CSUM_Rx,TCP4CSUM_Tx>"
    assert ifcap_string(0) == "0<>"


class OffloadTestDriver:
    """A link driver with TSO/checksum offloads whose other end is the test: ``inject``
    delivers a frame with offload flags, ``sent`` collects what the stack transmits."""

    def __init__(self, tso: bool = True) -> None:
        self.capabilities = IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | (IFCAP_TSOv4 if tso else 0)
        self.tso_mtu = 65535 if tso else 0
        self.offload_mode = "tso" if tso else "csum"
        self.sent: list[Any] = []
        self._deliver: Callable[[bytes], None] | None = None
        self._offload: Callable[[Any, int, int], None] | None = None

    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        self._deliver = deliver

    def attach_offload(self, deliver_offload: Callable[[Any, int, int], None]) -> None:
        self._offload = deliver_offload

    def transmit(self, frame: Any) -> None:
        self.sent.append(frame)

    def detach(self) -> None:
        self._deliver = self._offload = None

    def inject(self, frame: bytes, csum_flags: int = 0, segsz: int = 0) -> None:
        assert self._offload is not None and self._deliver is not None
        if csum_flags:
            self._offload(frame, csum_flags, segsz)
        else:
            self._deliver(frame)


HOST_MAC = b"\x02\x00\x00\x00\x99\x01"


def _router(vnet: Any, tso_out: bool | None) -> tuple[Any, Any, OffloadTestDriver, Any]:
    """R: virt-like ``ofl0`` (10.1.0.1/24, offload test driver) and ``wire0`` (10.2.0.1/24,
    MTU 1500) to B (10.2.0.2); ``tso_out`` puts a second offload driver on B's side."""
    r, b = vnet.kernel(71), vnet.kernel(72)
    r.config.if_create("wire9")  # any Ethernet interface works as the driver's ifnet
    drv = OffloadTestDriver()
    ifp = r.ifnet.lookup("wire9")
    ifp.attach_driver(drv)
    r.config.addr_add("wire9", "10.1.0.1/24")
    r.config.if_up("wire9")
    vnet.attach(r, "wire0", "lan", "10.2.0.1/24")
    vnet.attach(b, "wire0", "lan", "10.2.0.2/24")
    r.sysctl("-w", "net.inet.ip.forwarding=1")
    r.arp("-s", "10.1.0.5", ":".join(f"{x:02x}" for x in HOST_MAC))
    b.route("add", "default", "10.2.0.1")
    return r, b, drv, ifp


def test_router_splits_injected_superframe_onto_wire(vnet, tmp_path) -> None:
    from rumpnet.bpf import PcapWriter

    r, b, drv, ifp = _router(vnet, None)
    assert ifp.capabilities & IFCAP_TSOv4 and ifp.tso_mtu == 65535 and ifp.offload_mode == "tso"
    b_if = b.ifnet.lookup("wire0")
    pcap = tmp_path / "b.pcap"
    w = PcapWriter(str(pcap))
    b_if.bpf_attach(w)
    vnet.ping(r, "10.2.0.2")  # resolve ARP both ways first
    payload = bytes((i * 13) & 0xFF for i in range(40000))
    ip = bytearray(superframe(payload, seq=1000))
    set_partial_tcp_csum(ip)  # what the host leaves in a GSO frame (NEEDS_CSUM)
    frame = r.ifnet.lookup("wire9").lladdr + HOST_MAC + b"\x08\x00" + bytes(ip)
    drv.inject(frame, M_CSUM_TCPv4 | M_CSUM_PARTIAL, 1448)
    vnet.sched.run_for(0.5)
    w.close()
    assert r.inet.output.gso_sw == 1 and r.inet.output.gso_segs == 28
    frames = [f for _, f in PcapReader(str(pcap)) if len(f) > 60 and Ether(f).haslayer(TCP)]
    assert len(frames) == 28
    data = b""
    for f in frames:
        assert len(f) <= 1514
        q = check_segment(bytes(f[14:]))
        assert q.ttl == 63
        data += bytes(q[TCP].payload)
    assert data == payload
    assert b.inet.tcp.stats.tcps_rcvbadsum == 0  # B verified every checksum (and RSTs)


def test_router_passes_superframe_to_tso_interface(vnet) -> None:
    """Into an interface that does TSO the superframe goes whole, with the partial
    checksum and the segment size attached for the driver."""
    r, b, drv, ifp = _router(vnet, None)
    r.config.if_create("wire8")
    out = OffloadTestDriver()
    r.ifnet.lookup("wire8").attach_driver(out)
    r.config.addr_add("wire8", "10.3.0.1/24")
    r.config.if_up("wire8")
    r.arp("-s", "10.3.0.9", "02:00:00:00:99:09")
    payload = b"z" * 30000
    ip = bytearray(superframe(payload, dst="10.3.0.9"))
    set_partial_tcp_csum(ip)
    drv.inject(r.ifnet.lookup("wire9").lladdr + HOST_MAC + b"\x08\x00" + bytes(ip),
               M_CSUM_TCPv4 | M_CSUM_PARTIAL, 1448)
    big = [f for f in out.sent if len(f) > 1514]
    assert len(big) == 1 and r.inet.output.tso_out == 1 and r.inet.output.gso_sw == 0
    m = big[0]
    assert type(m) is Mbuf and m.csum_flags == M_CSUM_TSOv4 | M_CSUM_PARTIAL
    assert m.segsz == 1448 and m.csum_start == 14 + 20
    done = complete_tcp_csum(bytes(m), 14)
    assert done is not None
    q = check_segment(done[14:])
    assert q.ttl == 63 and bytes(q[TCP].payload) == payload


def test_partial_checksum_completed_for_plain_interface(vnet) -> None:
    """A small frame with a partial checksum forwarded to a wire: completed in software."""
    r, b, drv, _ifp = _router(vnet, None)
    vnet.ping(r, "10.2.0.2")
    ip = bytearray(superframe(b"small", seq=5))
    set_partial_tcp_csum(ip)
    got: list[bytes] = []
    b.ifnet.lookup("wire0").bpf_attach(type("W", (), {"write": lambda self, f, ts: got.append(bytes(f))})())
    drv.inject(r.ifnet.lookup("wire9").lladdr + HOST_MAC + b"\x08\x00" + bytes(ip), M_CSUM_TCPv4 | M_CSUM_PARTIAL)
    vnet.sched.run_for(0.1)
    tcp = [f for f in got if Ether(f).haslayer(TCP) and Ether(f)[TCP].dport == 7000]
    assert len(tcp) == 1
    check_segment(tcp[0][14:])


class PassThrough:
    """An ingress runner that records frames and hands them straight on."""

    def __init__(self, ifp: Any) -> None:
        self.ifp = ifp
        self.frames: list[bytes] = []

    def input(self, frame: bytes) -> None:
        self.frames.append(bytes(frame))
        self.ifp.link_deliver(frame)


def test_ingress_qdisc_sees_wire_frames_not_superframes(vnet) -> None:
    """Faults act per wire frame: through an ingress qdisc a superframe arrives as the
    MSS-sized segments it stands for, with complete checksums, and is still forwarded."""
    r, b, drv, ifp = _router(vnet, None)
    vnet.ping(r, "10.2.0.2")
    q = PassThrough(ifp)
    ifp.set_qdisc("ingress", q)
    payload = bytes(range(256)) * 40  # 10240 bytes: 8 segments of 1448, last 104
    ip = bytearray(superframe(payload, seq=9))
    set_partial_tcp_csum(ip)
    drv.inject(ifp.lladdr + HOST_MAC + b"\x08\x00" + bytes(ip), M_CSUM_TCPv4 | M_CSUM_PARTIAL, 1448)
    vnet.sched.run_for(0.2)
    assert len(q.frames) == 8 and all(len(f) <= 1514 for f in q.frames)
    assert b"".join(bytes(check_segment(f[14:])[TCP].payload) for f in q.frames) == payload
    assert r.inet.ipstat.ips_forward >= 8 and r.inet.output.gso_sw == 0


def test_oversized_tcp_packet_goes_to_tso_interface_unfragmented(vnet) -> None:
    """ip_output hands a TCP packet bigger than the MTU to a TSO interface whole, with
    gso_size from the MTU, instead of fragmenting it."""
    r, _b, drv, ifp = _router(vnet, None)
    seg = superframe(b"q" * 9000, src="10.1.0.1", dst="10.1.0.5")[20:]  # TCP header + payload
    r.inet.output.output(aton("10.1.0.1"), aton("10.1.0.5"), 6, seg, df=True)
    big = [f for f in drv.sent if len(f) > 1514]
    assert len(big) == 1 and r.inet.ipstat.ips_fragmented == 0
    m = big[0]
    assert type(m) is Mbuf and m.csum_flags == M_CSUM_TSOv4 | M_CSUM_PARTIAL
    assert m.segsz == 1500 - 20 - 32 and m.csum_start == 34
    q = check_segment(complete_tcp_csum(bytes(m), 14)[14:])
    assert bytes(q[TCP].payload) == b"q" * 9000
