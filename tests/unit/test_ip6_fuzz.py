"""Hostile IPv6 input (hypothesis): random bytes, random extension header chains, random
ICMPv6/ND/MLD messages with valid checksums, mutated good packets and fragment abuse go
into a node; nothing raises out, every packet moves some counter besides ip6s_total and
the next-header histogram (a drop is counted, a delivery is counted), reassembly memory
stays within its caps and empties on time, and the node still answers a ping."""

from __future__ import annotations

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    ICMPv6MLQuery2,
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptSrcLLAddr,
    ICMPv6PacketTooBig,
    IPv6,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    RouterAlert,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6ParseError, Icmp6RawInput, Icmp6Repr, emit
from rumpnet.netinet6.icmp6 import parse as icmp6_parse
from rumpnet.netinet6.in6_proto import Inet6
from rumpnet.netinet6.ip6 import (
    Ip6FragRepr,
    Ip6ParseError,
    emit_frag,
    ext_len,
    ip6_build,
    ip6_lasthdr,
    parse_frag,
    parse_header,
    parse_options,
    parse_rthdr,
    walk_exthdrs,
)
from rumpnet.netinet6.ip6_output import Route6
from rumpnet.netinet6.nd6 import NdOptError, nd6_options
from rumpnet.testing.in6sim import In6Sim, StaticRoutes

P = in6.pton
ME, PEER = P("fc00:1::1"), P("fc00:1::2")
MAC = b"\x02\0\0\0\0\x01"
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def node(forwarding: bool = False, accept_rtadv: bool = True) -> Inet6:
    routes = StaticRoutes()
    n = Inet6(routes, random.Random(1))
    n.ip6_params.forwarding = int(forwarding)
    n.ip6_params.accept_rtadv = int(accept_rtadv)
    n.if_attach(2, "wire0", MAC, 1500, 0.0)
    n.add_address(2, ME, 64, 0x20, 0.0)     # NODAD: usable at once
    n.add_address(2, P("fe80::1"), 64, 0x20, 0.0)
    n.icmp6.deliver_raw = True
    routes.add(P("fc00:1::"), 64, Route6(2))
    routes.add(0, 0, Route6(2, P("fe80::99")))
    n.nd6.add_static(P("fe80::99"), 2, b"\x02\0\0\0\0\x99")
    while n.next_event() is not None:
        pass
    return n


def outcome_total(n: Inet6) -> int:
    total = 0
    for stats in (n.ip6stat, n.icmp6stat, n.nd6stat, n.mld6stat):
        for k, v in stats.nonzero().items():
            if k != "ip6s_total":
                total += v
    total += sum(n.icmp6stat.icp6s_inhist)
    return total


def feed(n: Inet6, pkt: bytes, now: float = 1.0, l2mcast: bool = False) -> None:
    before, total = outcome_total(n), n.ip6stat.ip6s_total
    n.input(2, pkt, now, l2mcast)
    assert n.ip6stat.ip6s_total == total + 1
    assert outcome_total(n) > before, "a packet left no trace in the counters"
    n.frames_to_send()
    while n.next_event() is not None:
        pass


@FUZZ
@given(st.binary(max_size=200), st.booleans())
def test_random_bytes(data: bytes, l2mcast: bool) -> None:
    feed(node(), data, l2mcast=l2mcast)


_EXT = st.sampled_from([0, 43, 44, 60, 59, 58, 17, 6, 51, 50, 135, 253, 200])


@st.composite
def chains(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(0, 6))
    types = [draw(_EXT) for _ in range(n + 1)]
    body = b""
    for htype, nxt in zip(types, types[1:]):
        hlen = draw(st.integers(0, 3))
        size = 8 if htype == 44 else (hlen + 1) * 8
        content = draw(st.binary(min_size=size - 2, max_size=size - 2))
        body += bytes((nxt, hlen)) + content
    body += draw(st.binary(max_size=64))
    dst = draw(st.sampled_from([ME, P("ff02::1"), P("fc00:9::9"), P("fe80::1")]))
    return ip6_build(PEER, dst, types[0], body, draw(st.integers(0, 255)))


@FUZZ
@given(chains(), st.booleans())
def test_extension_header_chains(pkt: bytes, forwarding: bool) -> None:
    feed(node(forwarding=forwarding), pkt)


@st.composite
def icmp6_messages(draw: st.DrawFn) -> bytes:
    t = draw(st.sampled_from([1, 2, 3, 4, 128, 129, 130, 131, 132, 133, 134, 135, 136, 137, 143, 200, 255]))
    code = draw(st.sampled_from([0, 0, 0, 1, 3, 255]))
    body = draw(st.binary(max_size=120))
    src = draw(st.sampled_from([PEER, P("fe80::2"), 0, P("ff02::1")]))
    dst = draw(st.sampled_from([ME, P("ff02::1"), P("ff02::1:ff00:1"), P("fe80::1")]))
    hlim = draw(st.sampled_from([255, 1, 64]))
    return ip6_build(src, dst, 58, emit(Icmp6Repr(t, code, draw(st.integers(0, 2**32 - 1)), body), src, dst), hlim)


@FUZZ
@given(icmp6_messages())
def test_icmp6_and_nd_messages(pkt: bytes) -> None:
    feed(node(), pkt)


GOOD = [
    bytes(IPv6(src="fe80::2", dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="fc00:1::1")
          / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:02")),
    bytes(IPv6(src="fe80::2", dst="fc00:1::1", hlim=255) / ICMPv6ND_NA(tgt="fe80::2", S=1)),
    bytes(IPv6(src="fe80::2", dst="ff02::1", hlim=255) / ICMPv6ND_RA() / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:00:02")
          / ICMPv6NDOptPrefixInfo(prefix="2001:db8::", prefixlen=64)),
    bytes(IPv6(src="fe80::99", dst="fc00:1::1", hlim=255) / ICMPv6ND_Redirect(tgt="fe80::5", dst="2001:db8::1")),
    bytes(IPv6(src="fe80::2", dst="ff02::1", hlim=1) / IPv6ExtHdrHopByHop(options=[RouterAlert()]) / ICMPv6MLQuery2()),
    bytes(IPv6(src="fc00:1::2", dst="fc00:1::1") / ICMPv6EchoRequest(data=b"abcdefgh")),
    bytes(IPv6(src="fc00:9::1", dst="fc00:1::1") / ICMPv6PacketTooBig(mtu=1300) / IPv6(src="fc00:1::1", dst="fc00:2::2") / UDP()),
    bytes(IPv6(src="fc00:1::2", dst="fc00:1::1") / IPv6ExtHdrFragment(offset=0, m=1, id=3) / UDP() / bytes(24)),
]


@FUZZ
@given(st.sampled_from(GOOD), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_good_packets(pkt: bytes, flips: list[tuple[int, int]]) -> None:
    b = bytearray(pkt)
    for pos, val in flips:
        b[pos % len(b)] ^= val or 1
    feed(node(), bytes(b))


@st.composite
def fragment_storms(draw: st.DrawFn) -> list[tuple[float, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, 30))):
        ident = draw(st.integers(0, 3))
        off = draw(st.integers(0, 8191)) * 8 if draw(st.booleans()) else draw(st.integers(0, 40)) * 8
        more = draw(st.booleans())
        data = draw(st.binary(max_size=120))
        pkt = ip6_build(PEER, ME, 44, emit_frag(Ip6FragRepr(17, off, more, ident)) + data)
        out.append((draw(st.floats(0, 120)), pkt))
    return sorted(out, key=lambda e: e[0])


@FUZZ
@given(fragment_storms())
def test_fragment_abuse(storm: list[tuple[float, bytes]]) -> None:
    n = node()
    n.ip6_params.maxfragbytes = 600
    n.ip6_params.maxfragsperpacket = 8
    for t, pkt in storm:
        while (d := n.get_timer()) is not None and d <= t:
            n.handle_timer(d)
        feed(n, pkt, now=t)
        f6 = n.frag6
        assert f6.nbytes <= 600 and f6.nfrags <= n.ip6_params.maxfrags
        assert f6.nfrags == sum(len(q.frags) for q in f6.queues.values())
        assert f6.nbytes == sum(q.nbytes for q in f6.queues.values())
    n.handle_timer(1000.0)
    assert n.frag6.queues == {} and n.frag6.nfrags == 0 and n.frag6.nbytes == 0


def test_node_still_answers_after_a_storm() -> None:
    sim = In6Sim(seed=41)
    a, b = sim.node("a"), sim.node("b")
    ia, ib = sim.attach(a, "lan"), sim.attach(b, "lan")
    b.node.add_address(ib, ME, 64, 0, sim.now)
    a.node.add_address(ia, PEER, 64, 0, sim.now)
    sim.run_for(5)
    rng = random.Random(5)
    for i in range(1500):
        pkt = bytearray(GOOD[i % len(GOOD)])
        for _ in range(rng.randint(0, 4)):
            pkt[rng.randrange(len(pkt))] ^= rng.randrange(1, 256)
        sim.inject(b, ib, bytes(pkt), l2mcast=bool(i & 1))
        sim.inject(b, ib, rng.randbytes(rng.randint(0, 90)))
    sim.run_for(70)
    a.node.icmp6.deliver_raw = True
    a.node.ping6(ME, 5, 5, b"alive", sim.now)
    sim.run_for(2)
    assert any(isinstance(e, Icmp6RawInput) and e.msg[0] == 129 and e.msg[8:] == b"alive" for e in a.events)
    assert b.node.frag6.queues == {}
    assert len(b.node.nd6.table) <= b.node.ip6_params.neighborgcthresh


@FUZZ
@given(st.binary(max_size=120), st.integers(0, 255), st.integers(0, 64))
def test_every_parser_raises_only_its_own_error(data: bytes, nxt: int, off: int) -> None:
    """The wire parsers on arbitrary bytes: a result or the parser's own error type."""
    for fn in (lambda: parse_header(data), lambda: parse_frag(data, off), lambda: parse_rthdr(data, off),
               lambda: ext_len(data, off, nxt), lambda: list(walk_exthdrs(data, nxt, off, 16)),
               lambda: parse_options(data, off, len(data))):
        try:
            fn()
        except Ip6ParseError:
            pass
    assert ip6_lasthdr(data) is None or ip6_lasthdr(data)[1] <= len(data)
    try:
        icmp6_parse(data, ME, PEER)
    except Icmp6ParseError:
        pass
    try:
        nd6_options(data, min(off, len(data)))
    except NdOptError:
        pass
