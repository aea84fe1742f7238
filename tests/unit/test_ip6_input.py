"""ip6_input's decisions (netinet6/ip6_input.py): header and address checks, Hop-by-Hop and
Destination options with RFC 8200 4.2's unknown-option actions, routing headers (RFC
5095), fragments, the nesting limit; every drop by the counter it bumps."""

from __future__ import annotations

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.frag6 import Frag6
from rumpnet.netinet6.in6_var import IN6_IFF_DUPLICATED, IN6_IFF_TENTATIVE, ND6_IFF_IFDISABLED, In6Ifaddr, In6Ifaddrs, In6Ifextra
from rumpnet.netinet6.ip6 import IPPROTO_UDP, emit_options_header, emit_rthdr, ip6_build, parse_header
from rumpnet.netinet6.ip6_input import Ip6Delivery, Ip6ForwardRequest, Ip6Input, ip6_check_addrs
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Params, Ip6Stats


def _addrs(pkt: bytes) -> tuple[int, int]:
    h = parse_header(pkt)
    return h.src, h.dst

P = in6.pton
ME, PEER, OTHER = "fc00:1::1", "fc00:1::2", "fc00:9::9"


class Host:
    def __init__(self, forwarding: bool = False) -> None:
        self.params = Ip6Params()
        self.params.forwarding = int(forwarding)
        self.stats = Ip6Stats()
        self.ifaddrs = In6Ifaddrs()
        self.wire = self.ifaddrs.attach(In6Ifextra(2, "wire0", b"\x02\0\0\0\0\x01"))
        self.lo = self.ifaddrs.attach(In6Ifextra(1, "lo0", loopback=True))
        self.ifaddrs.add(In6Ifaddr(P(ME), 64, 2))
        self.ifaddrs.add(In6Ifaddr(P("fe80::1"), 64, 2))
        self.ifaddrs.add(In6Ifaddr(P("fc00:1::7"), 64, 2, IN6_IFF_TENTATIVE))
        self.ifaddrs.add(In6Ifaddr(P("fc00:1::8"), 64, 2, IN6_IFF_DUPLICATED))
        self.wire.groups[in6.solicited_node(P(ME))] = 1
        self.frag6 = Frag6(self.params, self.stats)
        self.ip6 = Ip6Input(self.params, self.stats, self.ifaddrs, self.frag6, self.frag6.out)

    def input(self, pkt: bytes, ifindex: int = 2, now: float = 0.0, l2mcast: bool = False):
        return self.ip6.input(pkt, ifindex, now, l2mcast)

    def errors(self) -> list[tuple[int, int, int]]:
        out = []
        while (ev := self.ip6.next_event()) is not None:
            assert isinstance(ev, Icmp6ErrorRequest)
            out.append((ev.icmp6_type, ev.code, ev.param))
        return out

    def counters(self) -> dict[str, int]:
        c = self.stats.nonzero()
        c.pop("ip6s_total", None)
        return c


def udp(src: str = PEER, dst: str = ME, *ext, payload: bytes = b"data") -> bytes:
    p = IPv6(src=src, dst=dst)
    for e in ext:
        p = p / e
    return bytes(p / UDP(sport=1, dport=2) / payload)


def test_delivers_udp_with_offsets() -> None:
    h = Host()
    r = h.input(udp() + b"\0\0\0\0")   # Ethernet padding after the payload
    assert isinstance(r, Ip6Delivery)
    assert (r.nxt, r.off, r.nxt_field, r.ifindex) == (IPPROTO_UDP, 40, 6, 2)
    assert len(r.packet) == 40 + 8 + 4
    assert h.counters() == {"ip6s_delivered": 1}
    assert h.stats.ip6s_nxthist[IPPROTO_UDP] == 1


@pytest.mark.parametrize("src,dst", [
    ("ff02::1", ME), (PEER, "::"), ("::ffff:10.0.0.1", ME), (PEER, "::ffff:10.0.0.1"),
    ("::1", ME), (PEER, "::1"), (PEER, "ff01::1"), (PEER, "ff00::1"),
])
def test_address_rules(src: str, dst: str) -> None:
    h = Host()
    assert h.input(udp(src, dst)) is None
    assert h.counters() == {"ip6s_badscope": 1}
    assert ip6_check_addrs(*_addrs(udp(src, dst)), False) == "ip6s_badscope"
    if "::1" in (src, dst) or dst == "ff01::1":
        assert ip6_check_addrs(*_addrs(udp(src, dst)), True) is None   # fine on lo0


def test_loopback_may_carry_loopback() -> None:
    h = Host()
    h.ifaddrs.add(In6Ifaddr(P("::1"), 128, 1))
    assert isinstance(h.input(udp("::1", "::1"), ifindex=1), Ip6Delivery)


@pytest.mark.parametrize("pkt,counter", [
    (b"\x60" + bytes(20), "ip6s_tooshort"),
    (b"\x40" + bytes(39), "ip6s_badvers"),
])
def test_header_errors(pkt: bytes, counter: str) -> None:
    h = Host()
    assert h.input(pkt) is None
    assert h.counters() == {counter: 1}


def test_not_ours() -> None:
    h = Host()
    assert h.input(udp(dst=OTHER)) is None
    assert h.counters() == {"ip6s_cantforward": 1}
    r = Host(forwarding=True).input(udp(dst=OTHER))
    assert isinstance(r, Ip6ForwardRequest) and r.hdr.dst == P(OTHER)


def test_multicast_membership() -> None:
    h = Host()
    assert isinstance(h.input(udp(dst="ff02::1")), Ip6Delivery)            # all-nodes
    assert isinstance(h.input(udp(dst=in6.ntop(in6.solicited_node(P(ME))))), Ip6Delivery)
    assert h.input(udp(dst="ff02::1:ff00:99")) is None
    assert h.counters() == {"ip6s_delivered": 2, "ip6s_notmember": 1}


def test_tentative_and_duplicated_addresses_take_nothing() -> None:
    h = Host()
    assert h.input(udp(dst="fc00:1::7")) is None
    assert h.input(udp(dst="fc00:1::8")) is None
    assert h.counters() == {"ip6s_notready": 2}


def test_disabled_interface_takes_nothing() -> None:
    h = Host()
    h.wire.ndi.flags |= ND6_IFF_IFDISABLED
    assert h.input(udp()) is None
    assert h.input(udp(), ifindex=9) is None
    assert h.counters() == {"ip6s_ifdisabled": 2}


def opt_hbh(otype: int) -> IPv6ExtHdrHopByHop:
    return IPv6ExtHdrHopByHop(emit_options_header(IPPROTO_UDP, [(otype, b"xy")]))


@pytest.mark.parametrize("otype,dst,delivered,error", [
    (0x1E, ME, True, None),                        # 00: skip
    (0x5E, ME, False, None),                       # 01: discard
    (0x9E, ME, False, (4, 2, 42)),                 # 10: discard, ICMP always
    (0x9E, "ff02::1", False, (4, 2, 42)),
    (0xDE, ME, False, (4, 2, 42)),                 # 11: discard, ICMP unless multicast
    (0xDE, "ff02::1", False, None),
])
def test_unknown_option_actions(otype: int, dst: str, delivered: bool, error: tuple | None) -> None:
    for hdr in ("hbh", "dest"):
        h = Host()
        ext = opt_hbh(otype) if hdr == "hbh" else IPv6ExtHdrDestOpt(bytes(opt_hbh(otype)))
        r = h.input(udp(PEER, dst, ext))
        assert isinstance(r, Ip6Delivery) == delivered
        assert h.errors() == ([error] if error else [])
        assert h.counters() == ({"ip6s_delivered": 1} if delivered else {"ip6s_badoptions": 1})


def test_router_alert_seen_and_checked() -> None:
    h = Host()
    r = h.input(udp(PEER, ME, IPv6ExtHdrHopByHop(emit_options_header(IPPROTO_UDP, [(5, b"\0\0")]))))
    assert isinstance(r, Ip6Delivery) and r.rtalert and r.off == 48
    assert h.input(udp(PEER, ME, IPv6ExtHdrHopByHop(emit_options_header(IPPROTO_UDP, [(5, b"\0")])))) is None
    assert h.errors() == [(4, 0, 43)]


def test_options_forwarded_after_hop_by_hop() -> None:
    h = Host(forwarding=True)
    assert h.input(udp(PEER, OTHER, opt_hbh(0x9E))) is None
    assert h.errors() == [(4, 2, 42)]
    assert isinstance(h.input(udp(PEER, OTHER, opt_hbh(0x1E))), Ip6ForwardRequest)


def test_hop_by_hop_only_first() -> None:
    h = Host()
    pkt = udp(PEER, ME, IPv6ExtHdrDestOpt(), IPv6ExtHdrHopByHop())
    assert h.input(pkt) is None
    assert h.errors() == [(4, 1, 40)]         # the Destination Options header's next header
    assert h.counters() == {"ip6s_badoptions": 1}


def test_routing_headers() -> None:
    h = Host()
    rh0 = IPv6ExtHdrRouting(emit_rthdr(IPPROTO_UDP, 0, 1, bytes(4) + in6.pack(P(OTHER))))
    assert h.input(udp(PEER, ME, rh0)) is None                     # RFC 5095: refused
    assert h.errors() == [(4, 0, 42)]
    done = IPv6ExtHdrRouting(emit_rthdr(IPPROTO_UDP, 0, 0, bytes(4) + in6.pack(P(OTHER))))
    assert isinstance(h.input(udp(PEER, ME, done)), Ip6Delivery)   # segments left 0: ignored
    rh4 = IPv6ExtHdrRouting(emit_rthdr(IPPROTO_UDP, 4, 2, bytes(20)))
    assert h.input(udp(PEER, ME, rh4)) is None
    assert h.errors() == [(4, 0, 42)]


def test_nesting_limit() -> None:
    h = Host()
    chain = b"".join(emit_options_header(60, []) for _ in range(16)) + emit_options_header(IPPROTO_UDP, [])
    assert h.input(ip6_build(P(PEER), P(ME), 60, chain + bytes(8))) is None
    assert h.counters() == {"ip6s_toomanyhdr": 1}


def test_truncated_extension_header() -> None:
    h = Host()
    pkt = ip6_build(P(PEER), P(ME), 60, bytes((17, 3)) + bytes(6))   # claims 32 bytes
    assert h.input(pkt) is None
    assert h.counters() == {"ip6s_tooshort": 1}


def test_no_next_header_is_accepted_quietly() -> None:
    h = Host()
    assert h.input(ip6_build(P(PEER), P(ME), 59, b"")) is None
    assert h.counters() == {"ip6s_delivered": 1}


def test_fragments_reassemble_through_frag6() -> None:
    h = Host()
    big = udp(PEER, ME, payload=bytes(range(256)) * 12)
    frags = [bytes(f) for f in fragment6(IPv6(bytes(IPv6(src=PEER, dst=ME) / IPv6ExtHdrFragment(id=5)
                                                        / IPv6(big).payload)), 1280)]
    results = [h.input(f, now=1.0) for f in frags]
    assert results[:-1] == [None] * (len(frags) - 1)
    r = results[-1]
    assert isinstance(r, Ip6Delivery)
    assert (r.nxt, r.off, r.nxt_field) == (IPPROTO_UDP, 40, 6)
    assert r.packet == big
    assert h.stats.ip6s_reassembled == 1 and h.stats.ip6s_delivered == 1
    # fragment with a destination options header before the fragment header
    pre = bytes(IPv6(src=PEER, dst=ME) / IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(id=6) / IPv6(big).payload)
    frags = [bytes(f) for f in fragment6(IPv6(pre), 1280)]
    r = [h.input(f) for f in frags][-1]
    assert isinstance(r, Ip6Delivery) and (r.off, r.nxt_field, r.nxt) == (48, 40, IPPROTO_UDP)
    assert bytes(IPv6(r.packet)[UDP]) == bytes(IPv6(big)[UDP])


# -- the remembered flows (Ip6InputFlows): the same verdicts as the checks they skip ----------
def test_a_delivered_flow_is_remembered_with_its_addresses() -> None:
    h = Host()
    first, second = h.input(udp()), h.input(udp(payload=b"more"))
    assert isinstance(first, Ip6Delivery) and isinstance(second, Ip6Delivery)
    assert (second.src, second.dst) == (first.src, first.dst) == (P(PEER), P(ME))
    assert h.ip6.flows.get(udp(), 2) == (P(PEER), P(ME))
    assert h.counters() == {"ip6s_delivered": 2}


def test_a_remembered_flow_is_its_interfaces_only() -> None:
    """::1 -> ::1 passes on lo0 and is remembered there; the same bytes from a real link
    are still refused (RFC 4291 2.5.3), since the checks depend on the interface."""
    h = Host()
    h.ifaddrs.add(In6Ifaddr(P("::1"), 128, 1))
    assert isinstance(h.input(udp("::1", "::1"), ifindex=1), Ip6Delivery)
    assert h.input(udp("::1", "::1"), ifindex=1) is not None   # from the remembered flow
    assert h.input(udp("::1", "::1"), ifindex=2) is None
    assert h.counters() == {"ip6s_delivered": 2, "ip6s_badscope": 1}


def test_an_address_that_stops_being_ready_refuses_its_remembered_flow() -> None:
    """DAD finding the address duplicated changes its flags, not the address list: the
    remembered flow checks readiness on every packet (RFC 4862 5.4)."""
    h = Host()
    assert isinstance(h.input(udp()), Ip6Delivery)
    ia = h.ifaddrs.lookup(P(ME), 2)
    assert ia is not None
    ia.flags |= IN6_IFF_DUPLICATED
    assert h.input(udp()) is None
    assert h.counters() == {"ip6s_delivered": 1, "ip6s_notready": 1}


def test_a_removed_address_is_forgotten_by_the_next_packet() -> None:
    h = Host()
    assert isinstance(h.input(udp()), Ip6Delivery)
    ia = h.ifaddrs.lookup(P(ME), 2)
    assert ia is not None
    h.ifaddrs.remove(ia)
    assert h.input(udp()) is None
    assert h.counters() == {"ip6s_delivered": 1, "ip6s_cantforward": 1}
    h.params.forwarding = 1
    assert isinstance(h.input(udp()), Ip6ForwardRequest)


def test_dropped_multicast_and_forwarded_flows_are_not_remembered() -> None:
    h = Host(forwarding=True)
    assert h.input(udp("ff02::1", ME)) is None                             # bad source
    assert isinstance(h.input(udp(dst="ff02::1")), Ip6Delivery)            # multicast
    assert isinstance(h.input(udp(dst=OTHER)), Ip6ForwardRequest)
    assert h.input(udp(dst="fc00:1::7")) is None                           # tentative
    assert len(h.ip6.flows) == 0
    assert h.counters() == {"ip6s_badscope": 1, "ip6s_delivered": 1, "ip6s_notready": 1}


def test_the_remembered_flows_are_bounded() -> None:
    h = Host()
    h.ip6.flows.size = 4
    for i in range(10):
        assert isinstance(h.input(udp(src=f"fc00:1::{i + 100:x}")), Ip6Delivery)
        assert 1 <= len(h.ip6.flows) <= 4
