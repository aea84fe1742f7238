"""Neighbour Solicitation/Advertisement and DAD (netinet6/nd6_nbr.py) on the sans-IO bench:
messages built by scapy go in, what comes out is parsed by scapy; hostile messages (off
the link, wrong code, bad options) are dropped by the counter they bump."""

from __future__ import annotations

import pytest
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)
from scapy.packet import Raw

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import IN6_IFF_DUPLICATED, IN6_IFF_TENTATIVE, ND6_IFF_IFDISABLED
from rumpnet.netinet6.nd6 import ND6_LLINFO_STALE
from rumpnet.netinet6.nd6_nbr import AddressConflict, DadCompleted, DadDuplicated
from rumpnet.testing.in6sim import In6Sim, SimNode

P = in6.pton
ME = "fc00:1::1"
PEER_MAC = "02:00:00:00:00:99"


def host(dad_count: int = 1) -> tuple[In6Sim, SimNode, int]:
    sim = In6Sim(seed=2)
    a = sim.node("a")
    a.node.ip6_params.dad_count = dad_count
    ifa = sim.attach(a, "lan")
    a.node.add_address(ifa, P(ME), 64, 0, sim.now)
    a.drain_events()
    sim.run_for(5)
    sim.log.clear()
    return sim, a, ifa


def sent(sim: In6Sim) -> list[IPv6]:
    sim.settle()
    out = [IPv6(f.packet) for _, _, _, f in sim.log]
    sim.log.clear()
    return out


def ns(src: str, dst: str, target: str, hlim: int = 255, sll: str | None = PEER_MAC, code: int = 0,
       extra: bytes = b"") -> bytes:
    p = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NS(tgt=target, code=code)
    if sll:
        p = p / ICMPv6NDOptSrcLLAddr(lladdr=sll)
    if extra:
        p = p / Raw(extra)
    return bytes(p)


def na(src: str, dst: str, target: str, s: int = 1, o: int = 1, r: int = 0, tll: str | None = PEER_MAC,
       hlim: int = 255) -> bytes:
    p = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_NA(tgt=target, S=s, O=o, R=r)
    if tll:
        p = p / ICMPv6NDOptDstLLAddr(lladdr=tll)
    return bytes(p)


def test_solicitation_answered_and_sender_cached() -> None:
    sim, a, ifa = host()
    sim.inject(a, ifa, ns("fc00:1::2", in6.ntop(in6.solicited_node(P(ME))), ME))
    (adv,) = sent(sim)
    n = adv[ICMPv6ND_NA]
    assert (adv.src, adv.dst, adv.hlim) == (ME, "fc00:1::2", 255)
    assert (n.tgt, n.S, n.O, n.R) == (ME, 1, 1, 0)
    assert adv[ICMPv6NDOptDstLLAddr].lladdr == a.mac(ifa).hex(":")
    ln = a.node.nd6.lookup(P("fc00:1::2"), ifa)
    assert ln.state == ND6_LLINFO_STALE and ln.lladdr.hex(":") == PEER_MAC   # RFC 4861 7.2.3
    assert sim.log == []
    # the NA went straight to the address the solicitation carried
    sim.inject(a, ifa, ns("fc00:1::3", in6.ntop(in6.solicited_node(P(ME))), ME, sll="02:00:00:00:00:33"))
    sim.settle()
    assert [f.lladdr.hex(":") for _, _, _, f in sim.log] == ["02:00:00:00:00:33"]


def test_dad_probe_answered_to_all_nodes() -> None:
    sim, a, ifa = host()
    sim.inject(a, ifa, ns("::", in6.ntop(in6.solicited_node(P(ME))), ME, sll=None))
    (adv,) = sent(sim)
    assert adv.dst == "ff02::1" and adv[ICMPv6ND_NA].S == 0            # RFC 4861 7.2.4


@pytest.mark.parametrize("pkt,counter", [
    (ns("fe80::2", "ff02::1:ff00:1", ME, hlim=254), "icp6s_badns"),     # off-link spoofing
    (ns("fe80::2", "ff02::1:ff00:1", ME, hlim=64), "icp6s_badns"),
    (ns("fe80::2", "ff02::1:ff00:1", ME, code=1), "icp6s_badns"),
    (ns("fe80::2", "ff02::1:ff00:1", "ff02::1"), "icp6s_badns"),        # multicast target
    (ns("::", "ff02::1:ff00:1", ME), "icp6s_badns"),                    # DAD with SLLAO
    (ns("::", ME, ME, sll=None), "icp6s_badns"),                        # DAD not to solicited-node
    (ns("fe80::2", "ff02::1:ff00:1", ME, sll=None, extra=bytes((1, 0)) + bytes(6)), "icp6s_nd_badopt"),
    (ns("fe80::2", "ff02::1:ff00:1", ME, sll=None, extra=bytes((1, 2)) + bytes(14)), "icp6s_badns"),  # 14-byte lladdr
    (na("fe80::2", "ff02::1", ME, s=1), "icp6s_badna"),                 # solicited to multicast
    (na("fe80::2", ME, ME, hlim=1), "icp6s_badna"),
])
def test_hostile_messages_are_counted(pkt: bytes, counter: str) -> None:
    sim, a, ifa = host()
    before = a.node.icmp6stat.nonzero().get(counter, 0)
    sim.inject(a, ifa, pkt)
    assert sent(sim) == []
    assert a.node.icmp6stat.nonzero().get(counter, 0) == before + 1
    assert a.node.nd6.lookup(P("fe80::2"), ifa) is None


def test_solicitation_for_someone_else_is_ignored() -> None:
    sim, a, ifa = host()
    st = a.node.icmp6stat
    sim.inject(a, ifa, ns("fe80::2", "ff02::1:ff00:1", "fc00:1::77"))
    assert sent(sim) == []
    # taken in as a good NS, and not answered (RFC 4861 7.2.3: the target is not ours;
    # NetBSD's nd6_ns_input counts nothing on this path)
    assert st.icp6s_inhist[135] == 1 and st.icp6s_badns == 0


def test_our_solicitation_formats() -> None:
    sim, a, ifa = host()
    a.node.output(0, P("fc00:1::5"), 17, b"12345678", sim.now)   # to a neighbour not yet resolved
    (sol,) = sent(sim)
    assert (sol.src, sol.dst, sol.hlim) == (ME, "ff02::1:ff00:5", 255)
    assert sol[ICMPv6ND_NS].tgt == "fc00:1::5" and sol[ICMPv6NDOptSrcLLAddr].lladdr == a.mac(ifa).hex(":")
    assert IPv6(bytes(sol))[ICMPv6ND_NS].cksum == sol[ICMPv6ND_NS].cksum


def test_dad_completes() -> None:
    sim = In6Sim(seed=3)
    a = sim.node("a")
    a.node.ip6_params.dad_count = 2
    ifa = sim.attach(a, "lan")
    ia = a.node.add_address(ifa, P(ME), 64, 0, sim.now)
    assert ia.flags & IN6_IFF_TENTATIVE
    sim.run_for(0.5)
    probes = [IPv6(f.packet) for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6ND_NS)
              and IPv6(f.packet)[ICMPv6ND_NS].tgt == ME]
    assert len(probes) == 1
    p = probes[0]
    assert (p.src, p.dst) == ("::", "ff02::1:ff00:1") and not p.haslayer(ICMPv6NDOptSrcLLAddr)
    assert bytes(p[ICMPv6ND_NS].payload)[0] == 14           # RFC 7527 nonce option
    sim.run_for(1.0)
    assert ia.flags & IN6_IFF_TENTATIVE                      # second probe out, waiting
    sim.run_for(1.0)
    assert not ia.flags & IN6_IFF_TENTATIVE and ia.ready
    assert DadCompleted(ia) in a.events


def test_dad_duplicate_by_solicitation_and_by_advertisement() -> None:
    for kind in ("ns", "na"):
        sim = In6Sim(seed=4)
        a = sim.node("a")
        ifa = sim.attach(a, "lan")
        sim.run_for(3)
        ia = a.node.add_address(ifa, P(ME), 64, 0, sim.now)
        a.drain_events()
        pkt = ns("::", "ff02::1:ff00:1", ME, sll=None) if kind == "ns" else na("fe80::9", "ff02::1", ME, s=0)
        sim.inject(a, ifa, pkt)
        assert ia.flags & IN6_IFF_DUPLICATED and not ia.flags & IN6_IFF_TENTATIVE
        assert DadDuplicated(ia, False) in a.events
        sim.run_for(5)
        assert not ia.ready
        assert not any(isinstance(e, DadCompleted) and e.ia is ia for e in a.events)


def test_own_looped_back_probe_is_not_a_duplicate() -> None:
    sim = In6Sim(seed=5)
    a = sim.node("a")
    ifa = sim.attach(a, "lan")
    sim.run_for(3)
    sim.log.clear()
    ia = a.node.add_address(ifa, P(ME), 64, 0, sim.now)
    sim.run_for(0.0)
    probe = next(f.packet for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6ND_NS))
    sim.inject(a, ifa, probe)                      # a reflecting switch
    assert ia.flags & IN6_IFF_TENTATIVE
    sim.run_for(2)
    assert ia.ready


def test_duplicate_hardware_link_local_disables_ipv6() -> None:
    sim = In6Sim(seed=6)
    a = sim.node("a")
    ifa = sim.attach(a, "lan", up=False)
    a.node.if_up(ifa, sim.now)
    ll = a.node.ifaddrs.get(ifa).linklocal(ready_only=False)
    assert ll is not None and ll.flags & IN6_IFF_TENTATIVE
    sim.inject(a, ifa, na("fe80::9", "ff02::1", in6.ntop(ll.addr), s=0))
    ext = a.node.ifaddrs.get(ifa)
    assert ext.ndi.flags & ND6_IFF_IFDISABLED
    assert DadDuplicated(ll, True) in a.events
    before = a.node.ip6stat.ip6s_ifdisabled
    sim.inject(a, ifa, ns("fc00:1::2", "ff02::1", "fc00:1::2"))
    assert a.node.ip6stat.ip6s_ifdisabled == before + 1      # RFC 4862 5.4.5: IPv6 off there


def test_advertisement_for_our_address_is_a_conflict() -> None:
    sim, a, ifa = host()
    sim.inject(a, ifa, na("fe80::9", "ff02::1", ME, s=0))
    assert AddressConflict(P(ME), ifa, bytes.fromhex(PEER_MAC.replace(":", ""))) in a.events
    assert a.node.find_address(P(ME)).ready


def test_unsolicited_advertisement_teaches_nothing_new() -> None:
    sim, a, ifa = host()
    sim.inject(a, ifa, na("fc00:1::2", "ff02::1", "fc00:1::2", s=0))
    assert a.node.nd6.lookup(P("fc00:1::2"), ifa) is None   # RFC 4861 7.2.5
    st = a.node.icmp6stat
    assert st.icp6s_inhist[136] == 1 and st.icp6s_badna == 0   # a good NA, ignored
