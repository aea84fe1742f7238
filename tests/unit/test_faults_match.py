"""The drop_match frame matcher (rumpnet.faults.match)."""

from __future__ import annotations

import struct

import pytest

from rumpnet.faults.match import FrameMatch


def a(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def ip(proto: int, src: str, dst: str, l4: bytes, frag: int = 0, vlan: bool = False) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 1, frag, 64, proto, 0, a(src), a(dst))
    eth = b"\x02" * 6 + b"\x04" * 6 + (b"\x81\x00\x00\x05" if vlan else b"") + b"\x08\x00"
    return eth + hdr + l4


def tcp(src: str, dst: str, sport: int, dport: int, flags: int, **kw: bool) -> bytes:
    return ip(6, src, dst, struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 65535, 0, 0), **kw)  # type: ignore[arg-type]


def udp(src: str, dst: str, sport: int, dport: int, frag: int = 0) -> bytes:
    return ip(17, src, dst, struct.pack("!HHHH", sport, dport, 8, 0), frag=frag)


def icmp(src: str, dst: str) -> bytes:
    return ip(1, src, dst, b"\x08\x00\x00\x00\x00\x01\x00\x01")


ARP = b"\xff" * 6 + b"\x04" * 6 + b"\x08\x06" + bytes(28)

SYN = tcp("10.0.0.1", "10.0.0.2", 40000, 80, 0x02)
SYNACK = tcp("10.0.0.2", "10.0.0.1", 80, 40000, 0x12)
RST = tcp("10.0.0.1", "10.0.0.2", 40000, 80, 0x14)
DNS = udp("10.0.1.5", "10.0.0.53", 5353, 53)
PING = icmp("10.0.0.1", "192.168.1.1")


@pytest.mark.parametrize("expr,hits", [
    ("tcp", {"SYN", "SYNACK", "RST"}),
    ("udp", {"DNS"}),
    ("icmp", {"PING"}),
    ("arp", {"ARP"}),
    ("ip", {"SYN", "SYNACK", "RST", "DNS", "PING"}),
    ("proto 17", {"DNS"}),
    ("tcp flags S/SA", {"SYN"}),
    ("flags S", {"SYN", "SYNACK"}),
    ("tcp flags R", {"RST"}),
    ("dport 80", {"SYN", "RST"}),
    ("port 80", {"SYN", "SYNACK", "RST"}),
    ("udp port 53", {"DNS"}),
    ("src 10.0.1.0/24", {"DNS"}),
    ("dst 10.0.0.2", {"SYN", "RST"}),
    ("host 10.0.0.1", {"SYN", "SYNACK", "RST", "PING"}),
    ("icmp and dst 192.168.0.0/16", {"PING"}),
    ("tcp sport 40000 dport 80 flags A/A", {"RST"}),
])
def test_match_table(expr: str, hits: set[str]) -> None:
    frames = {"SYN": SYN, "SYNACK": SYNACK, "RST": RST, "DNS": DNS, "PING": PING, "ARP": ARP}
    m = FrameMatch.parse(expr)
    assert {k for k, f in frames.items() if m(f)} == hits


def test_vlan_and_fragments() -> None:
    assert FrameMatch.parse("tcp dport 80")(tcp("1.1.1.1", "2.2.2.2", 1, 80, 2, vlan=True))
    # a non-first fragment has no ports
    assert not FrameMatch.parse("udp dport 53")(udp("1.1.1.1", "2.2.2.2", 1, 53, frag=10))
    assert FrameMatch.parse("udp")(udp("1.1.1.1", "2.2.2.2", 1, 53, frag=10))


def test_malformed_never_raises() -> None:
    m = FrameMatch.parse("tcp dport 80 flags S")
    for f in (b"", b"\x00" * 13, SYN[:20], SYN[:36], SYN[:40], b"\x00" * 12 + b"\x08\x00" + b"\x60" * 40):
        assert m(f) is False
    assert FrameMatch()(SYN) and FrameMatch()(ARP)


@pytest.mark.parametrize("expr,field", [
    ("tcp port x", "port"), ("port 70000", "port"), ("src 10.0.0.300", "src"), ("flags Z", "flags"),
    ("gre", "match"), ("icmp port 5", "proto"), ("udp flags S", "proto"), ("arp dst 1.2.3.4", "proto"),
    ("proto 300", "proto"), ("tcp udp", "proto"), ("dst", "dst"),
])
def test_parse_errors(expr: str, field: str) -> None:
    with pytest.raises(ValueError) as ei:
        FrameMatch.parse(expr)
    assert str(ei.value).startswith(field)


def test_str_roundtrip() -> None:
    for expr in ("tcp dport 80 flags S/SA", "udp src 10.0.0.0/8 port 53", "proto 47", "arp", "host 1.2.3.4"):
        m = FrameMatch.parse(expr)
        assert FrameMatch.parse(str(m)) == m


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as hs  # noqa: E402

_EXPRS = [FrameMatch.parse(e) for e in ("tcp dport 80 flags S/SA", "udp port 53", "icmp", "arp", "host 10.0.0.1",
                                        "proto 47", "src 10.0.0.0/8 sport 1")]


@settings(max_examples=300, deadline=None)
@given(data=hs.binary(max_size=80), prefix=hs.sampled_from([b"", SYN[:34], DNS[:34], ARP[:14]]))
def test_matcher_never_raises(data: bytes, prefix: bytes) -> None:
    frame = prefix + data
    for m in _EXPRS:
        assert m(frame) in (True, False)


# -- IPv6 (frames built by scapy, an independent implementation) --------------------------
def _v6(pkt) -> bytes:  # type: ignore[no-untyped-def]
    from scapy.layers.l2 import Ether

    return bytes(Ether(src="02:04:04:04:04:04", dst="02:02:02:02:02:02") / pkt)


@pytest.fixture(scope="module")
def v6_frames() -> dict[str, bytes]:
    from scapy.layers.inet import TCP, UDP
    from scapy.layers.inet6 import (
        ICMPv6ND_NS,
        IPv6,
        IPv6ExtHdrDestOpt,
        IPv6ExtHdrFragment,
        IPv6ExtHdrHopByHop,
        IPv6ExtHdrRouting,
    )

    frames = {
        "SYN6": _v6(IPv6(src="fc00::1", dst="fc00::2") / TCP(sport=40000, dport=80, flags="S")),
        "ACK6": _v6(IPv6(src="fc00::2", dst="fc00::1") / TCP(sport=80, dport=40000, flags="A")),
        "NS6": _v6(IPv6(src="fe80::1", dst="ff02::1:ff00:2") / ICMPv6ND_NS(tgt="fc00::2")),
        "DNS6": _v6(IPv6(src="fc00:1::5", dst="fc00::53") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting()
                    / IPv6ExtHdrDestOpt() / UDP(sport=5353, dport=53)),
        "FRAG1": _v6(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrFragment(offset=0, m=1, nh=17)
                     / UDP(sport=1, dport=53)),
        "FRAG2": _v6(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrFragment(offset=10, nh=17)
                     / bytes([0, 1, 0, 53, 0, 8, 0, 0])),
    }
    return {**frames, "SYN": SYN, "DNS": DNS, "PING": PING, "ARP": ARP}


@pytest.mark.parametrize("expr,hits", [
    ("tcp", {"SYN", "SYN6", "ACK6"}),                       # pcap-filter: both families
    ("ip6", {"SYN6", "ACK6", "NS6", "DNS6", "FRAG1", "FRAG2"}),
    ("ip", {"SYN", "DNS", "PING"}),
    ("icmp6", {"NS6"}),
    ("icmp", {"PING"}),
    ("proto 17", {"DNS", "DNS6", "FRAG1", "FRAG2"}),        # the upper layer past the extension headers
    ("udp dport 53", {"DNS", "DNS6", "FRAG1"}),             # not the second fragment: no ports there
    ("tcp flags S/SA", {"SYN", "SYN6"}),
    ("src fc00::/64", {"SYN6", "ACK6", "FRAG1", "FRAG2"}),
    ("host fc00::1 dport 80", {"SYN6"}),
    ("ip6 src fe80::/10", {"NS6"}),
    ("dst ff02::/16", {"NS6"}),
    ("src 10.0.0.0/8", {"SYN", "DNS", "PING"}),
])
def test_match_table_ipv6(v6_frames: dict[str, bytes], expr: str, hits: set[str]) -> None:
    m = FrameMatch.parse(expr)
    assert {k for k, f in v6_frames.items() if m(f)} == hits


def test_ipv6_words_refuse_the_other_family() -> None:
    for expr, field in (("ip src fc00::1", "src"), ("icmp6 dst 10.0.0.1", "dst"),
                        ("src 10.0.0.1 dst fc00::1", "dst"), ("host fc00::zz", "host")):
        with pytest.raises(ValueError, match=f"^{field}: "):
            FrameMatch.parse(expr)
    assert str(FrameMatch.parse("icmp6 dst fc00::2")) == "icmp6 dst fc00::2"


def test_malformed_ipv6_never_raises(v6_frames: dict[str, bytes]) -> None:
    m = FrameMatch.parse("udp dport 53")
    dns6 = v6_frames["DNS6"]
    for cut in range(len(dns6) - 4):        # up to the ports: no match, no exception
        assert m(dns6[:cut]) is False
    # a chain of nine hop-by-hop headers is more than the matcher walks
    hdr = bytearray(dns6[:54])
    hdr[20] = 0
    chain = bytes(hdr) + bytes([0, 0, 0, 0, 0, 0, 0, 0]) * 9
    assert m(chain) is False and FrameMatch.parse("ip6")(chain)
    assert FrameMatch.parse("ip6")(b"\x00" * 12 + b"\x86\xdd" + b"\x40" + bytes(39)) is False  # version 4
