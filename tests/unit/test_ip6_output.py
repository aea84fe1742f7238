"""ip6_output and ip6_forward decisions (netinet6/ip6_output.py, ip6_forward.py): routes,
sources, hop limits, flow labels, extension headers, source fragmentation and DONTFRAG;
forwarding's hop limit, scope, MTU and redirect rules, every refusal counted."""

from __future__ import annotations

import errno
import random

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, defragment6

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import In6Ifaddr, In6Ifaddrs, In6Ifextra
from rumpnet.netinet6.ip6 import IPPROTO_DSTOPTS, IPPROTO_HOPOPTS, IPPROTO_UDP, emit_options_header, parse_header
from rumpnet.netinet6.ip6_forward import Icmp6RedirectRequest, Ip6Forward
from rumpnet.netinet6.ip6_input import Ip6ForwardRequest
from rumpnet.netinet6.ip6_output import Ip6Output, Ip6Pktopts, Route6
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Params, Ip6Send, Ip6Stats, Outbox
from rumpnet.testing.in6sim import StaticRoutes

P = in6.pton


class Pmtu:
    def __init__(self) -> None:
        self.table: dict[int, int] = {}

    def get(self, dst: int, now: float) -> int | None:
        return self.table.get(dst)


class Node:
    def __init__(self) -> None:
        self.params = Ip6Params()
        self.stats = Ip6Stats()
        self.ifaddrs = In6Ifaddrs()
        self.ifaddrs.attach(In6Ifextra(2, "wire0", b"\x02\0\0\0\0\x01", 1500))
        self.ifaddrs.attach(In6Ifextra(3, "wire1", b"\x02\0\0\0\0\x02", 9000))
        for text, idx in (("fc00:1::1", 2), ("fe80::1", 2), ("fc00:2::1", 3), ("fe80::2", 3)):
            self.ifaddrs.add(In6Ifaddr(P(text), 64, idx))
        self.routes = StaticRoutes()
        self.routes.add(P("fc00:1::"), 64, Route6(2))
        self.routes.add(P("fc00:2::"), 64, Route6(3))
        self.routes.add(P("fe80::"), 64, Route6(2), zone=2)
        self.routes.add(P("fe80::"), 64, Route6(3), zone=3)
        self.routes.add(0, 0, Route6(2, P("fe80::99")))
        self.pmtu = Pmtu()
        self.out = Ip6Output(self.params, self.stats, self.ifaddrs, self.routes, random.Random(1), self.pmtu)
        self.outbox = Outbox()
        self.fwd = Ip6Forward(self.params, self.stats, self.ifaddrs, self.routes, self.outbox)


def test_output_picks_route_source_hlim_flow() -> None:
    n = Node()
    (s,) = n.out.output(0, P("fc00:2::5"), IPPROTO_UDP, b"12345678", 0.0)
    h = parse_header(s.packet)
    assert (s.ifindex, s.nexthop, s.lladdr) == (3, P("fc00:2::5"), None)
    assert (h.src, h.hlim, h.nxt) == (P("fc00:2::1"), 64, IPPROTO_UDP)
    assert h.flow != 0 and h.flow == parse_header(n.out.output(0, P("fc00:2::5"), IPPROTO_UDP, b"12345678", 0.0)[0].packet).flow
    (d,) = n.out.output(0, P("2001:db8::1"), IPPROTO_UDP, b"x", 0.0)
    assert (d.ifindex, d.nexthop) == (2, P("fe80::99"))        # the default router
    assert n.stats.ip6s_localout == 3


def test_output_options() -> None:
    n = Node()
    opts = Ip6Pktopts(hlim=7, tclass=0xB8, flow=0x12345, exthdrs=(
        (IPPROTO_HOPOPTS, emit_options_header(0, [(0x1E, b"")])), (IPPROTO_DSTOPTS, emit_options_header(0, []))))
    (s,) = n.out.output(P("fc00:1::1"), P("fc00:1::9"), IPPROTO_UDP, bytes(IPv6() / UDP())[40:], 0.0, opts)
    p = IPv6(s.packet)
    assert (p.hlim, p.tc, p.fl) == (7, 0xB8, 0x12345)
    assert p.haslayer(IPv6ExtHdrHopByHop) and p.haslayer(IPv6ExtHdrDestOpt) and p.haslayer(UDP)
    assert p[IPv6ExtHdrHopByHop].nh == IPPROTO_DSTOPTS and p[IPv6ExtHdrDestOpt].nh == IPPROTO_UDP


def test_scoped_and_multicast_destinations() -> None:
    n = Node()
    (s,) = n.out.output(0, P("fe80::5"), IPPROTO_UDP, b"x", 0.0, zone=3)
    assert s.ifindex == 3 and parse_header(s.packet).src == P("fe80::2")
    with pytest.raises(OSError) as e:
        n.out.output(0, P("fe80::5"), IPPROTO_UDP, b"x", 0.0)
    assert e.value.errno == errno.EHOSTUNREACH
    (m,) = n.out.output(0, P("ff02::1"), IPPROTO_UDP, b"x", 0.0, zone=2)
    assert m.ifindex == 2 and parse_header(m.packet).hlim == 1          # IPV6_MULTICAST_HOPS default
    with pytest.raises(OSError) as e:
        n.out.output(0, P("ff02::1"), IPPROTO_UDP, b"x", 0.0)
    assert e.value.errno == errno.ENETUNREACH
    assert n.stats.ip6s_noroute == 2


def test_no_route_no_source_reject_blackhole() -> None:
    n = Node()
    n.routes.delete(0, 0)
    with pytest.raises(OSError) as e:
        n.out.output(0, P("2001:db8::1"), IPPROTO_UDP, b"x", 0.0)
    assert e.value.errno == errno.EHOSTUNREACH
    n.routes.add(P("2001:db8:5::"), 48, Route6(2, reject=True))
    with pytest.raises(OSError):
        n.out.output(0, P("2001:db8:5::1"), IPPROTO_UDP, b"x", 0.0)
    n.routes.add(P("2001:db8:6::"), 48, Route6(2, blackhole=True))
    assert n.out.output(0, P("2001:db8:6::1"), IPPROTO_UDP, b"x", 0.0) == []
    assert n.stats.ip6s_odropped == 1 and n.stats.ip6s_noroute == 2
    for ia in n.ifaddrs.all():
        n.ifaddrs.remove(ia)
    with pytest.raises(OSError) as e:
        n.out.output(0, P("fc00:1::9"), IPPROTO_UDP, b"x", 0.0)
    assert e.value.errno == errno.EADDRNOTAVAIL


def test_source_fragmentation_and_dontfrag() -> None:
    n = Node()
    payload = bytes(IPv6(src="fc00:1::1", dst="fc00:1::9") / UDP(sport=1, dport=2) / (b"u" * 4992))[40:]
    frags = n.out.output(0, P("fc00:1::9"), IPPROTO_UDP, payload, 0.0)
    assert len(frags) == 4 and all(len(f.packet) <= 1500 for f in frags)
    idents = {IPv6(f.packet)[IPv6ExtHdrFragment].id for f in frags}
    assert len(idents) == 1
    whole = defragment6([IPv6(f.packet) for f in frags])
    assert bytes(whole[UDP]) == payload
    assert (n.stats.ip6s_fragmented, n.stats.ip6s_ofragments) == (1, 4)
    with pytest.raises(OSError) as e:
        n.out.output(0, P("fc00:1::9"), IPPROTO_UDP, payload, 0.0, Ip6Pktopts(dontfrag=True))
    assert e.value.errno == errno.EMSGSIZE and n.stats.ip6s_cantfrag == 1
    # a learned path MTU and IPV6_USE_MIN_MTU shrink the pieces
    n.pmtu.table[P("fc00:2::9")] = 1300
    assert all(len(f.packet) <= 1300 for f in n.out.output(0, P("fc00:2::9"), IPPROTO_UDP, payload, 0.0))
    assert max(len(f.packet) for f in n.out.output(0, P("fc00:2::8"), IPPROTO_UDP, payload, 0.0)) > 4000
    assert all(len(f.packet) <= 1280 for f in n.out.output(0, P("fc00:2::8"), IPPROTO_UDP, payload, 0.0,
                                                           Ip6Pktopts(minmtu=1)))


def test_route_a_whole_packet() -> None:
    n = Node()
    pkt = bytes(IPv6(src="fc00:1::1", dst="fc00:2::3") / UDP())
    assert n.out.route(pkt, 0.0) == [Ip6Send(pkt, 3, None, P("fc00:2::3"))]


# -- forwarding -----------------------------------------------------------------------------------
def fwd_req(src: str = "fc00:1::5", dst: str = "fc00:2::5", hlim: int = 64, size: int = 8, ifindex: int = 2,
            l2mcast: bool = False) -> Ip6ForwardRequest:
    pkt = bytes(IPv6(src=src, dst=dst, hlim=hlim) / UDP() / bytes(size))
    return Ip6ForwardRequest(pkt, parse_header(pkt), ifindex, l2mcast)


def outcome(n: Node) -> tuple[list[Ip6Send], list[tuple]]:
    pk = list(n.outbox.packets)
    n.outbox.packets.clear()
    evs = []
    while n.outbox.events:
        ev = n.outbox.events.popleft()
        evs.append((ev.icmp6_type, ev.code, ev.param) if isinstance(ev, Icmp6ErrorRequest) else ev)
    return pk, evs


def test_forward_decrements_hop_limit() -> None:
    n = Node()
    r = fwd_req()
    assert n.fwd.forward(r, 0.0)
    (s,), evs = outcome(n)
    assert evs == [] and (s.ifindex, s.nexthop) == (3, P("fc00:2::5"))
    assert s.packet[7] == 63 and s.packet[:7] == r.packet[:7] and s.packet[8:] == r.packet[8:]
    assert n.stats.ip6s_forward == 1


@pytest.mark.parametrize("req,error,counters", [
    (fwd_req(hlim=1), (3, 0, 0), {"ip6s_cantforward": 1}),
    (fwd_req(hlim=0), (3, 0, 0), {"ip6s_cantforward": 1}),
    (fwd_req(src="fe80::5"), (1, 2, 0), {"ip6s_cantforward": 1, "ip6s_badscope": 1}),
    (fwd_req(dst="fc00:3::5", size=2000), (2, 0, 1500), {"ip6s_cantfrag": 1}),
    (fwd_req(dst="fe80::7"), None, {"ip6s_cantforward": 1}),
    (fwd_req(dst="ff05::1"), None, {"ip6s_cantforward": 1}),
    (fwd_req(src="::"), None, {"ip6s_cantforward": 1}),
    (fwd_req(l2mcast=True), None, {"ip6s_cantforward": 1}),
])
def test_forward_refusals(req: Ip6ForwardRequest, error: tuple | None, counters: dict[str, int]) -> None:
    n = Node()
    n.routes.add(P("fc00:3::"), 64, Route6(3, mtu=1500))
    assert not n.fwd.forward(req, 0.0)
    pk, evs = outcome(n)
    assert pk == [] and evs == ([error] if error else [])
    assert n.stats.nonzero() == counters


def test_forward_without_route_and_reject() -> None:
    n = Node()
    n.routes.delete(0, 0)
    n.routes.add(P("2001:db8:5::"), 48, Route6(3, reject=True))
    assert not n.fwd.forward(fwd_req(dst="2001:db8::1"), 0.0)
    assert not n.fwd.forward(fwd_req(dst="2001:db8:5::1"), 0.0)
    _, evs = outcome(n)
    assert evs == [(1, 0, 0), (1, 6, 0)]
    assert n.stats.ip6s_noroute == 2


def test_forward_route_mtu() -> None:
    n = Node()
    n.routes.add(P("fc00:3::"), 64, Route6(3, mtu=1400))
    assert not n.fwd.forward(fwd_req(dst="fc00:3::1", size=1400), 0.0)
    _, evs = outcome(n)
    assert evs == [(2, 0, 1400)]


def test_forward_back_out_redirects() -> None:
    n = Node()
    n.routes.add(P("fc00:9::"), 64, Route6(2, P("fe80::77")))
    assert n.fwd.forward(fwd_req(dst="fc00:9::1"), 0.0)
    (s,), evs = outcome(n)
    assert s.nexthop == P("fe80::77")
    (red,) = evs
    assert isinstance(red, Icmp6RedirectRequest) and (red.target, red.dst, red.ifindex) == (P("fe80::77"), P("fc00:9::1"), 2)
    # not to an off-link source, not when redirects are off
    n.fwd.forward(fwd_req(src="2001:db8::1", dst="fc00:9::1"), 0.0)
    n.params.redirect = 0
    n.fwd.forward(fwd_req(dst="fc00:9::1"), 0.0)
    _, evs = outcome(n)
    assert evs == []
