"""IPv6 fragmentation and reassembly (netinet6/frag6.py), on explicit time, against scapy's
fragment6/defragment6 as the independent peer."""

from __future__ import annotations

import errno
import random

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    RouterAlert,
    defragment6,
    fragment6,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.frag6 import Frag6, ip6_fragment, unfragmentable_len
from rumpnet.netinet6.ip6 import IP6_HDR_LEN, IPPROTO_FRAGMENT, IPPROTO_UDP, Ip6FragRepr, emit_frag, ip6_build
from rumpnet.netinet6.ip6_var import IPV6_FRAGTTL, Icmp6ErrorRequest, Ip6Params, Ip6Stats

SRC, DST = in6.pton("fc00:1::1"), in6.pton("fc00:2::2")


def udp_packet(n: int = 5000, ident_seed: int = 0) -> bytes:
    data = bytes((i * 7 + ident_seed) & 0xFF for i in range(n))
    return bytes(IPv6(src=in6.ntop(SRC), dst=in6.ntop(DST)) / UDP(sport=1000, dport=2000) / data)


def scapy_fragments(pkt: bytes, ident: int = 0x1234, size: int = 1280) -> list[bytes]:
    p = IPv6(pkt)
    with_frag = IPv6(bytes(IPv6(src=p.src, dst=p.dst) / IPv6ExtHdrFragment(id=ident) / p.payload))
    return [bytes(f) for f in fragment6(with_frag, size)]


class Node:
    def __init__(self, **params: int) -> None:
        self.params = Ip6Params()
        for k, v in params.items():
            setattr(self.params, k, v)
        self.stats = Ip6Stats()
        self.frag6 = Frag6(self.params, self.stats)

    def feed(self, frag: bytes, now: float = 0.0):
        return self.frag6.input(frag, IP6_HDR_LEN, 6, SRC, DST, 1, now)

    def events(self) -> list[object]:
        out = []
        while (ev := self.frag6.next_event()) is not None:
            out.append(ev)
        return out


def reassembled_bytes(r) -> bytes:
    assert r is not None
    return r.packet


@pytest.mark.parametrize("order", ["forward", "reverse", "shuffled"])
def test_reassembles_what_scapy_fragments(order: str) -> None:
    pkt = udp_packet()
    frags = scapy_fragments(pkt)
    assert len(frags) > 3
    if order == "reverse":
        frags.reverse()
    elif order == "shuffled":
        random.Random(5).shuffle(frags)
    n = Node()
    results = [n.feed(f, now=i * 0.1) for i, f in enumerate(frags)]
    assert all(r is None for r in results[:-1])
    r = results[-1]
    assert reassembled_bytes(r) == pkt
    assert (r.off, r.nxt, r.nxt_field) == (IP6_HDR_LEN, IPPROTO_UDP, 6)
    assert n.stats.ip6s_reassembled == 1 and n.stats.ip6s_fragments == len(frags)
    assert n.frag6.queues == {} and n.frag6.nfrags == 0 and n.frag6.nbytes == 0
    assert n.frag6.get_timer() is None and n.events() == []


@pytest.mark.parametrize("mtu", [1280, 1500, 2000])
def test_fragments_that_scapy_reassembles(mtu: int) -> None:
    pkt = udp_packet(5000)
    frags = ip6_fragment(pkt, mtu, 0xABCD)
    assert all(len(f) <= mtu for f in frags)
    assert all((len(f) - 48) % 8 == 0 for f in frags[:-1])
    parsed = [IPv6(f) for f in frags]
    assert all(p[IPv6ExtHdrFragment].id == 0xABCD for p in parsed)
    whole = defragment6(parsed)
    assert bytes(whole[UDP]) == bytes(IPv6(pkt)[UDP])
    # and our own reassembly agrees
    n = Node()
    out = [n.feed(f) for f in frags]
    assert reassembled_bytes(out[-1]) == pkt


def test_fragmenting_keeps_the_unfragmentable_part_in_front() -> None:
    pkt = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrHopByHop(options=[RouterAlert()])
                / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting(segleft=0) / IPv6ExtHdrDestOpt()
                / UDP(sport=1, dport=2) / (b"z" * 3000))
    ulen, field = unfragmentable_len(pkt)
    assert (ulen, field) == (40 + 8 + 8 + 8, 56)   # HBH, dest-before-routing, routing
    frags = ip6_fragment(pkt, 1280, 9)
    for f in frags:
        assert f[8:40] == pkt[8:40]                       # addresses
        assert f[40:field] == pkt[40:field] and f[field + 1:ulen] == pkt[field + 1:ulen]
        assert f[field] == IPPROTO_FRAGMENT
    assert bytes(defragment6([IPv6(f) for f in frags])[UDP]) == bytes(IPv6(pkt)[UDP])
    # no routing header: only the hop-by-hop header stays in front
    plain = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP() / b"")
    assert unfragmentable_len(plain) == (48, 40)
    assert unfragmentable_len(bytes(IPv6() / UDP())) == (40, 6)


def test_fragmenting_needs_room() -> None:
    with pytest.raises(OSError) as e:
        ip6_fragment(udp_packet(2000), 48, 1)
    assert e.value.errno == errno.EMSGSIZE
    big_chain = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrDestOpt(options=[])
                      / IPv6ExtHdrDestOpt(options=[]) / UDP() / (b"q" * 3000))
    with pytest.raises(OSError):
        ip6_fragment(big_chain, 40 + 8 + 8, 1)   # the chain cannot fit in the first fragment


def test_overlap_drops_the_whole_datagram_and_what_follows() -> None:
    pkt = udp_packet(3000)
    frags = scapy_fragments(pkt)
    n = Node()
    assert n.feed(frags[0]) is None
    # a fragment that overlaps the first one's data (RFC 5722)
    body = bytes(IPv6(frags[1])[IPv6ExtHdrFragment].payload)
    forged = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 8, True, 0x1234)) + body[:64])
    assert n.feed(forged) is None
    assert n.stats.ip6s_fragoverlap == 1
    # the genuine rest arrives: reassembly of that datagram stays abandoned
    assert [n.feed(f) for f in frags[1:]] == [None] * (len(frags) - 1)
    assert n.stats.ip6s_reassembled == 0
    assert n.stats.ip6s_fragdropped == len(frags) + 1
    assert n.frag6.nfrags == 0
    # the tombstone goes at the deadline, silently
    n.frag6.handle_timer(IPV6_FRAGTTL)
    assert n.frag6.queues == {} and n.events() == [] and n.stats.ip6s_fragtimeout == 0


def test_exact_duplicates_are_dropped_alone() -> None:
    pkt = udp_packet(3000)
    frags = scapy_fragments(pkt)
    n = Node()
    assert n.feed(frags[0]) is None
    assert n.feed(frags[0]) is None
    assert n.stats.ip6s_fragdropped == 1
    out = [n.feed(f) for f in frags[1:]]
    assert reassembled_bytes(out[-1]) == pkt


def test_timeout_sends_time_exceeded_only_with_the_first_fragment() -> None:
    frags = scapy_fragments(udp_packet(3000))
    n = Node()
    n.feed(frags[0], now=10.0)
    n.feed(frags[1], now=20.0)
    assert n.frag6.get_timer() == 10.0 + 60.0          # RFC 8200 4.5: from the first to arrive
    n.frag6.handle_timer(69.9)
    assert n.events() == []
    n.frag6.handle_timer(70.0)
    evs = n.events()
    # The whole first fragment (RFC 4443 3.3): its headers alone claim a payload length
    # they do not have, and icmp6_error refuses to quote such a packet.
    assert evs == [Icmp6ErrorRequest(frags[0], 1, 3, 1)]
    assert n.stats.ip6s_fragtimeout == 2
    # without the first fragment: no error
    m = Node()
    m.feed(frags[1])
    m.frag6.handle_timer(60.0)
    assert m.events() == [] and m.stats.ip6s_fragtimeout == 1


def test_atomic_fragments_are_datagrams_of_their_own() -> None:
    pkt = udp_packet(100)
    atomic = bytes(IPv6(src=in6.ntop(SRC), dst=in6.ntop(DST)) / IPv6ExtHdrFragment(id=0x1234, m=0, offset=0)
                   / IPv6(pkt).payload)
    frags = scapy_fragments(udp_packet(3000))
    n = Node()
    n.feed(frags[0])                            # a queue with the same identification
    r = n.feed(atomic)
    assert reassembled_bytes(r) == pkt
    assert n.stats.ip6s_atomicfrags == 1 and n.stats.ip6s_reassembled == 0
    assert len(n.frag6.queues) == 1 and n.frag6.nfrags == 1   # RFC 6946: the queue is untouched


def test_bad_fragments_get_parameter_problems() -> None:
    n = Node()
    odd = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 0, True, 1)) + bytes(13))
    assert n.feed(odd) is None
    too_far = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 65528, False, 2)) + bytes(16))
    assert n.feed(too_far) is None
    # first fragment whose UDP header is not in it (RFC 7112)
    headless = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(60, 0, True, 3)) + bytes((17, 0)) + bytes(6))
    assert n.feed(headless) is None
    evs = n.events()
    assert [(e.icmp6_type, e.code, e.param) for e in evs] == [(4, 0, 4), (4, 0, 42), (4, 3, 0)]
    assert n.stats.ip6s_fragdropped == 3 and n.frag6.queues == {}


def test_queue_limits_are_counted() -> None:
    n = Node(maxfragpackets=2)
    for ident in range(3):
        f = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 8, True, ident)) + bytes(8))
        n.feed(f)
    assert len(n.frag6.queues) == 2 and n.stats.ip6s_fragoverflow == 1
    m = Node(maxfragbytes=20)
    for off in (8, 16, 24):
        f = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, off, True, 9)) + bytes(8))
        m.feed(f)
    assert m.frag6.nbytes == 16 and m.stats.ip6s_fragoverflow == 1
    k = Node(maxfragsperpacket=2)
    for off in (8, 16, 24):
        f = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, off, True, 9)) + bytes(8))
        k.feed(f)
    assert k.frag6.nfrags == 0 and k.stats.ip6s_fragoverflow == 1 and k.stats.ip6s_fragdropped == 3
    z = Node(maxfragpackets=0)
    z.feed(ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 8, True, 1)) + bytes(8)))
    assert z.frag6.queues == {} and z.stats.ip6s_fragdropped == 1


def test_inconsistent_ends_abandon() -> None:
    n = Node()
    last = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 16, False, 5)) + bytes(8))
    beyond = ip6_build(SRC, DST, IPPROTO_FRAGMENT, emit_frag(Ip6FragRepr(IPPROTO_UDP, 32, True, 5)) + bytes(8))
    n.feed(last)
    n.feed(beyond)
    assert n.stats.ip6s_fragdropped == 2 and n.frag6.nfrags == 0


def test_drain_frees_everything() -> None:
    n = Node()
    for f in scapy_fragments(udp_packet(3000))[:2]:
        n.feed(f)
    n.frag6.drain()
    assert n.frag6.queues == {} and n.frag6.nfrags == 0 and n.frag6.get_timer() is None
    assert n.stats.ip6s_fragdropped == 2
