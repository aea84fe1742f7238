"""Reassembly limits: overlaps, duplicates, >65535-byte trains, timeout, maxfragpackets.

Fragments are built by hand and injected straight into b's interface on the CPU."""

from __future__ import annotations

import socket
import struct

import pytest

from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in4_cksum, in_cksum

SRC, DST = "10.0.0.1", "10.0.0.2"
PEER_MAC = bytes.fromhex("020000000001")


def udp_datagram(payload: bytes, sport: int = 1111, dport: int = 9999) -> bytes:
    seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
    c = in4_cksum(aton(SRC), aton(DST), 17, seg) or 0xFFFF
    seg[6:8] = struct.pack("!H", c)
    return bytes(seg)


def ip_frag(data: bytes, off_bytes: int, more: bool, ident: int = 0x1234, proto: int = 17,
            tos: int = 0) -> bytes:
    assert off_bytes % 8 == 0
    off = (off_bytes >> 3) | (0x2000 if more else 0)
    hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(data), ident, off, 64, proto, 0,
                                socket.inet_aton(SRC), socket.inet_aton(DST)))
    hdr[10:12] = struct.pack("!H", in_cksum(hdr))
    return bytes(hdr) + data


class Injector:
    def __init__(self, k) -> None:
        self.k = k
        self.ifp = k.ifnet.lookup("wire0")

    def __call__(self, *ip_packets: bytes) -> None:
        frames = [self.ifp.lladdr + PEER_MAC + b"\x08\x00" + p for p in ip_packets]

        def deliver() -> None:
            for f in frames:
                self.ifp.link_deliver(f)

        self.k.sched.run(deliver)


@pytest.fixture
def rx(vnet):
    a, b = vnet.pair()
    b.config.arp_add(SRC, "02:00:00:00:00:01")  # replies (ICMP) need no resolution
    fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(fd, ("0.0.0.0", 9999))
    b.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.5)
    return b, fd, Injector(b)


def _recv(b, fd) -> bytes | None:
    try:
        return b.rump_sys_recvfrom(fd, 70000, 0)[0]
    except BlockingIOError:
        return None


def test_out_of_order_fragments_reassemble(rx) -> None:
    b, fd, inject = rx
    dgram = udp_datagram(bytes(range(256)) * 2)  # 520 bytes
    parts = [ip_frag(dgram[i:i + 64], i, i + 64 < len(dgram)) for i in range(0, len(dgram), 64)]
    inject(*reversed(parts))
    assert _recv(b, fd) == dgram[8:]
    st = b.inet.ipstat
    assert st.ips_fragments == len(parts) and st.ips_reassembled == 1 and st.ips_fragdropped == 0
    assert b.inet.reass.queues == {}


def test_overlapping_fragments_drop_the_datagram(rx) -> None:
    b, fd, inject = rx
    dgram = udp_datagram(b"A" * 40)  # 48 bytes
    inject(ip_frag(dgram[0:24], 0, True), ip_frag(dgram[16:40], 16, True))
    st = b.inet.ipstat
    assert st.ips_fragoverlap == 1 and st.ips_fragdropped == 2
    assert b.inet.reass.queues == {}
    inject(ip_frag(dgram[40:], 40, False))  # the rest alone does not make a datagram
    assert _recv(b, fd) is None and st.ips_reassembled == 0
    # an overlap at the tail: a last fragment that ends before data already held
    inject(ip_frag(dgram[0:32], 0, True, ident=2), ip_frag(dgram[24:48], 24, False, ident=2))
    assert st.ips_fragoverlap == 2
    # a last fragment that ends before a fragment already held
    inject(ip_frag(dgram[32:48], 32, True, ident=3), ip_frag(dgram[8:24], 8, False, ident=3))
    assert st.ips_fragoverlap == 3
    assert (aton(SRC), aton(DST), 3, 17) not in b.inet.reass.queues


def test_duplicate_fragment_dropped_alone(rx) -> None:
    b, fd, inject = rx
    dgram = udp_datagram(b"B" * 40)
    first = ip_frag(dgram[0:24], 0, True)
    inject(first, first)
    st = b.inet.ipstat
    assert st.ips_fragduplicate == 1 and st.ips_fragdropped == 1
    inject(ip_frag(dgram[24:], 24, False))
    assert _recv(b, fd) == b"B" * 40
    assert st.ips_reassembled == 1


def test_fragment_train_beyond_65535_dropped(rx) -> None:
    b, fd, inject = rx
    st = b.inet.ipstat
    # a train whose last fragment would end past the largest IP datagram
    inject(ip_frag(b"C" * 1480, 0, True, ident=7))
    inject(ip_frag(b"C" * 1480, 65000 - 65000 % 8, True, ident=7))
    assert st.ips_toolong == 1
    assert b.inet.reass.queues == {}  # the whole datagram went
    assert st.ips_fragdropped >= 2
    # a single fragment at the last offset with too much data
    inject(ip_frag(b"D" * 64, 0x1FFF << 3, False, ident=8))
    assert st.ips_toolong == 2
    assert _recv(b, fd) is None and st.ips_reassembled == 0


def test_reassembly_timeout_on_virtual_time(rx) -> None:
    b, fd, inject = rx
    dgram = udp_datagram(b"E" * 40)
    inject(ip_frag(dgram[0:24], 0, True))
    assert len(b.inet.reass.queues) == 1
    t0 = b.clock_now()
    b.run_for(29)
    assert len(b.inet.reass.queues) == 1 and b.inet.ipstat.ips_fragtimeout == 0
    b.run_for(2)
    assert b.inet.reass.queues == {}
    st = b.inet.ipstat
    assert st.ips_fragtimeout == 1 and st.ips_fragdropped == 1
    assert b.clock_now() - t0 == pytest.approx(31)
    # the late rest does not complete anything
    inject(ip_frag(dgram[24:], 24, False))
    assert _recv(b, fd) is None and st.ips_reassembled == 0


def test_maxfragpackets_honoured(rx) -> None:
    b, fd, inject = rx
    b.config.sysctl_set("net.inet.ip.maxfragpackets", 2)
    dgrams = {i: udp_datagram(bytes([i]) * 40) for i in (1, 2, 3)}
    for i, d in dgrams.items():
        inject(ip_frag(d[0:24], 0, True, ident=i))
    reass = b.inet.reass
    assert len(reass.queues) == 2
    st = b.inet.ipstat
    assert st.ips_fragdropped == 1  # the oldest queue made room
    for i in (2, 3, 1):
        inject(ip_frag(dgrams[i][24:], 24, False, ident=i))
    got = []
    while (data := _recv(b, fd)) is not None:
        got.append(data)
    assert got == [bytes([2]) * 40, bytes([3]) * 40]
    assert list(reass.queues) == [(aton(SRC), aton(DST), 1, 17)]  # 1's tail waits alone
    # 0: no reassembly at all
    b.config.sysctl_set("net.inet.ip.maxfragpackets", 0)
    d = udp_datagram(b"Z" * 40)
    before = st.ips_fragdropped
    inject(ip_frag(d[0:24], 0, True, ident=9), ip_frag(d[24:], 24, False, ident=9))
    assert len(reass.queues) == 1 and st.ips_fragdropped == before + 2
    assert _recv(b, fd) is None
    # -1: no limit
    b.config.sysctl_set("net.inet.ip.maxfragpackets", -1)
    for i in range(10, 20):
        inject(ip_frag(udp_datagram(b"Y" * 40)[0:24], 0, True, ident=i))
    assert len(reass.queues) == 11
    inject(ip_frag(d[0:24], 0, True, ident=9), ip_frag(d[24:], 24, False, ident=9))
    assert _recv(b, fd) == b"Z" * 40


def test_bad_fragment_lengths(rx) -> None:
    b, fd, inject = rx
    st = b.inet.ipstat
    inject(ip_frag(b"F" * 13, 0, True))  # not a multiple of 8 and more to come
    inject(ip_frag(b"", 8, True))  # empty middle fragment
    assert st.ips_badlen == 2 and st.ips_fragdropped == 2 and b.inet.reass.queues == {}


@pytest.mark.parametrize(("codepoints", "result"), [
    ((2, 2, 2), 2),                 # ECT(0) throughout
    ((2, 3, 2), 3),                 # CE on one fragment: the datagram is CE
    ((3, 1, 2), 3),
    ((0x28 | 2, 0x28 | 3, 0x28 | 2), 0x28 | 3),   # DSCP kept
    ((0, 0, 0), 0),
    ((0, 2, 0), None),              # Not-ECT mixed with ECT: dropped
    ((3, 0, 3), None),              # ... or with CE
])
def test_reassembly_ecn_field(rx, codepoints: tuple[int, ...], result: int | None) -> None:
    """RFC 3168 section 5.3 (Linux's ip_frag_ecn_table): a CE fragment makes the
    datagram CE; Not-ECT fragments among ECN-capable ones make it go, counted."""
    b, _fd, _inject = rx
    dgram = udp_datagram(b"E" * 40)
    parts = [ip_frag(dgram[i:i + 16], i, i + 16 < len(dgram), tos=t)
             for i, t in zip(range(0, len(dgram), 16), codepoints, strict=True)]
    ifp = b.ifnet.lookup("wire0")
    whole = None
    for p in parts:
        ip_off = struct.unpack_from("!H", p, 6)[0]
        whole = b.inet.reass.insert(memoryview(p), 20, aton(SRC), aton(DST), 0x1234, 17, ip_off, ifp)
    st = b.inet.ipstat
    if result is None:
        assert whole is None and st.ips_fragdropped == len(parts)
    else:
        assert whole is not None and whole[1] == result and whole[20:] == dgram
        assert in_cksum(whole[:20]) == 0 and st.ips_fragdropped == 0
    assert b.inet.reass.queues == {}
