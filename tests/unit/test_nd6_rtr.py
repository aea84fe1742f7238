"""Router discovery, SLAAC and redirects (netinet6/nd6_rtr.py, rtadvd.py) on the sans-IO
bench, on virtual time: a router advertising, a host configuring itself, lifetimes
running out, and hostile messages dropped by their counters. scapy builds what is
injected and parses what the router sends."""

from __future__ import annotations

import pytest
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6ND_RA,
    ICMPv6ND_Redirect,
    ICMPv6ND_RS,
    ICMPv6NDOptDstLLAddr,
    ICMPv6NDOptMTU,
    ICMPv6NDOptPrefixInfo,
    ICMPv6NDOptRedirectedHdr,
    ICMPv6NDOptSrcLLAddr,
    IPv6,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Repr, emit
from rumpnet.netinet6.in6_proto import In6AddrAdded, In6AddrRemoved
from rumpnet.netinet6.in6_var import IN6_IFF_AUTOCONF, IN6_IFF_DEPRECATED
from rumpnet.netinet6.ip6 import ip6_build
from rumpnet.netinet6.ip6_output import Route6
from rumpnet.netinet6.nd6 import ND6_LLINFO_STALE, NdPrefixInfo
from rumpnet.netinet6.nd6_rtr import Nd6Redirect, PrefixOffLink, PrefixOnLink, RouterAdded, RouterRemoved
from rumpnet.netinet6.rtadvd import RtadvConfig
from rumpnet.testing.in6sim import In6Sim, SimNode

P = in6.pton
PREFIX = "2001:db8:1::"
ROUTER_MAC = bytes.fromhex("020000000a01")
HOST_MAC = bytes.fromhex("020000000b01")


def lan(config: RtadvConfig | None = None, host_accepts: bool = True) -> tuple[In6Sim, SimNode, SimNode, int, int]:
    sim = In6Sim(seed=7)
    r = sim.node("r", forwarding=True)
    h = sim.node("h", accept_rtadv=host_accepts)
    ir = sim.attach(r, "lan", ROUTER_MAC)
    ih = sim.attach(h, "lan", HOST_MAC)
    r.node.add_address(ir, P("2001:db8:1::1"), 64, 0, sim.now)
    r.drain_events()
    cfg = config or RtadvConfig([NdPrefixInfo(64, True, True, 86400, 14400, P(PREFIX))], mtu=1400,
                                reachable=20000, retrans=2000, chlim=48)
    r.node.rtadvd.start(ir, cfg, sim.now)
    return sim, r, h, ir, ih


def host_slaac(h: SimNode, ih: int):
    return [ia for ia in h.node.ifaddrs.get(ih).addrs if ia.flags & IN6_IFF_AUTOCONF]


def test_router_advertises_and_host_configures() -> None:
    sim, r, h, ir, ih = lan()
    sim.run_for(10)
    ras = [IPv6(f.packet) for _, _, who, f in sim.log if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA)]
    assert ras, "no router advertisement"
    ra = ras[0]
    assert (ra.src, ra.dst, ra.hlim) == (in6.ntop(in6.linklocal(in6.ifid_eui64(ROUTER_MAC))), "ff02::1", 255)
    assert (ra[ICMPv6ND_RA].chlim, ra[ICMPv6ND_RA].routerlifetime) == (48, 1800)
    assert ra[ICMPv6NDOptPrefixInfo].prefix == PREFIX and ra[ICMPv6NDOptPrefixInfo].A == 1
    assert ra[ICMPv6NDOptMTU].mtu == 1400 and ra[ICMPv6NDOptSrcLLAddr].lladdr == ROUTER_MAC.hex(":")
    # the host asked (RFC 4861 6.3.7) and was answered
    assert any(IPv6(f.packet).haslayer(ICMPv6ND_RS) for _, _, who, f in sim.log if who == "h")
    rl = P(ra.src)
    assert h.events_of(RouterAdded) == [RouterAdded(rl, ih, 1800)]
    assert h.events_of(PrefixOnLink) == [PrefixOnLink(P(PREFIX), 64, ih)]
    (ia,) = host_slaac(h, ih)
    assert ia.addr == in6.with_ifid(P(PREFIX), in6.ifid_eui64(HOST_MAC)) and ia.ready
    assert In6AddrAdded(ia) in h.events
    ndi = h.node.ifaddrs.get(ih).ndi
    assert (ndi.chlim, ndi.basereachable, ndi.retrans, ndi.linkmtu) == (48, 20.0, 2.0, 1400)
    assert h.node.ifaddrs.get(ih).linkmtu == 1400
    assert h.node.nd6.lookup(rl, ih).isrouter
    assert h.routes.lookup6(P("2001:db8:99::1"), 0) == Route6(ih, rl)     # default route


def test_solicitations_stop_after_an_advertisement_and_are_capped() -> None:
    sim = In6Sim(seed=8)
    h = sim.node("h", accept_rtadv=True)
    ih = sim.attach(h, "lan")
    sim.run_for(30)
    rs = [t for t, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6ND_RS)]
    assert len(rs) == 3                                  # MAX_RTR_SOLICITATIONS
    assert rs[0] <= 1.0 and rs[1] - rs[0] == pytest.approx(4.0) and rs[2] - rs[1] == pytest.approx(4.0)
    first = IPv6(next(f.packet for _, _, _, f in sim.log if IPv6(f.packet).haslayer(ICMPv6ND_RS)))
    assert first.dst == "ff02::2" and first.hlim == 255
    # sent before the link-local address was ready: from ::, without SLLAO (RFC 4861 4.1)
    if first.src == "::":
        assert not first.haslayer(ICMPv6NDOptSrcLLAddr)
    assert h.node.ifaddrs.get(ih) is not None


def test_router_answers_solicitations_within_limits() -> None:
    sim, r, h, ir, ih = lan(host_accepts=False)
    sim.run_for(60)
    sim.log.clear()
    ll = in6.ntop(in6.linklocal(in6.ifid_eui64(HOST_MAC)))
    rs = bytes(IPv6(src=ll, dst="ff02::2", hlim=255) / ICMPv6ND_RS() / ICMPv6NDOptSrcLLAddr(lladdr=HOST_MAC.hex(":")))
    sim.inject(r, ir, rs)
    t0 = sim.now
    sim.run_for(1)
    ras = [t for t, _, who, f in sim.log if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA)]
    assert len(ras) == 1 and t0 <= ras[0] <= t0 + 0.5    # MAX_RA_DELAY_TIME
    assert r.node.nd6.lookup(P(ll), ir).state == ND6_LLINFO_STALE
    sim.log.clear()
    sim.inject(r, ir, rs)                                   # again at once: 3 s apart at least
    sim.run_for(5)
    ras2 = [t for t, _, who, f in sim.log if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA)]
    assert ras2 and ras2[0] >= ras[0] + 3.0
    bad = bytes(IPv6(src=ll, dst="ff02::2", hlim=64) / ICMPv6ND_RS())
    sim.inject(r, ir, bad)
    assert r.node.icmp6stat.icp6s_badrs == 1


def test_lifetimes_deprecate_and_expire() -> None:
    cfg = RtadvConfig([NdPrefixInfo(64, True, True, 100, 50, P(PREFIX))], maxinterval=1000, lifetime=0)
    sim, r, h, ir, ih = lan(cfg)
    sim.run_for(5)
    r.node.rtadvd.ifs.clear()                # the router falls silent
    (ia,) = host_slaac(h, ih)
    t_made = next(t for t, _, who, f in sim.log if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA))
    assert h.events_of(RouterAdded) == []    # lifetime 0: not a default router
    sim.run_until(t_made + 49.9)
    assert not ia.flags & IN6_IFF_DEPRECATED
    sim.run_until(t_made + 50.0)
    assert ia.flags & IN6_IFF_DEPRECATED     # RFC 4862 5.5.4
    sim.run_until(t_made + 100.0)
    assert host_slaac(h, ih) == []
    assert In6AddrRemoved(ia) in h.events
    assert h.events_of(PrefixOffLink) == [PrefixOffLink(P(PREFIX), 64, ih)]


@pytest.mark.parametrize("remaining,advertised,anchor,want", [
    (3 * 3600, 60, "first", 7200),          # RFC 4862 5.5.3 e: cut to two hours, once
    (3600, 60, "before", 3600),             # under two hours left: not shortened
    (3600, 4 * 3600, "last", 4 * 3600),     # longer: taken, every time
    (3 * 3600, 3 * 3600 + 5, "last", 3 * 3600 + 5),
])
def test_two_hour_rule(remaining: int, advertised: int, anchor: str, want: int) -> None:
    sim, r, h, ir, ih = lan(RtadvConfig([NdPrefixInfo(64, True, True, remaining, 0, P(PREFIX))], maxinterval=4,
                                        mininterval=3))
    sim.run_for(6)
    (ia,) = host_slaac(h, ih)
    r.node.rtadvd.ifs[ir].config.prefixes = [NdPrefixInfo(64, True, True, advertised, 0, P(PREFIX))]
    t = sim.now
    sim.run_for(5)
    ras = [ts for ts, _, who, f in sim.log if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA)]
    after = [ts for ts in ras if ts > t]
    assert len(after) >= 2
    at = {"before": max(ts for ts in ras if ts <= t), "first": after[0], "last": after[-1]}[anchor]
    assert ia.expire == pytest.approx(at + want)


def test_router_lifetime_zero_and_final_advertisements() -> None:
    sim, r, h, ir, ih = lan()
    sim.run_for(10)
    sim.log.clear()
    r.node.rtadvd.stop(ir, sim.now)
    sim.run_for(20)
    finals = [IPv6(f.packet)[ICMPv6ND_RA].routerlifetime for _, _, who, f in sim.log
              if who == "r" and IPv6(f.packet).haslayer(ICMPv6ND_RA)]
    assert finals == [0, 0, 0]
    rl = P(in6.ntop(in6.linklocal(in6.ifid_eui64(ROUTER_MAC))))
    assert h.events_of(RouterRemoved) == [RouterRemoved(rl, ih)]
    assert h.routes.lookup6(P("2001:db8:99::1"), 0) is None


def ra(src: str = "fe80::1", hlim: int = 255, code: int = 0, lifetime: int = 600, *opts) -> bytes:
    p = IPv6(src=src, dst="ff02::1", hlim=hlim) / ICMPv6ND_RA(code=code, routerlifetime=lifetime)
    for o in opts:
        p = p / o
    return bytes(p)


SHORT_RA = ip6_build(P("fe80::1"), P("ff02::1"), 58, emit(Icmp6Repr(134, 0, 0, b""), P("fe80::1"), P("ff02::1")), 255)


@pytest.mark.parametrize("pkt", [ra(src="2001:db8::1"), ra(hlim=254), ra(code=1), SHORT_RA])
def test_hostile_advertisements(pkt: bytes) -> None:
    sim = In6Sim(seed=9)
    h = sim.node("h", accept_rtadv=True)
    ih = sim.attach(h, "lan")
    sim.run_for(3)
    sim.inject(h, ih, pkt)
    assert h.node.icmp6stat.icp6s_badra == 1
    assert h.node.nd6_rtr.defrouters == {}


def test_bad_prefixes_are_ignored_and_counted() -> None:
    sim = In6Sim(seed=10)
    h = sim.node("h", accept_rtadv=True)
    ih = sim.attach(h, "lan")
    sim.run_for(3)
    sim.inject(h, ih, ra("fe80::1", 255, 0, 600,
                         ICMPv6NDOptPrefixInfo(prefix="fe80::", prefixlen=64, validlifetime=100, preferredlifetime=50),
                         ICMPv6NDOptPrefixInfo(prefix="2001:db8:2::", prefixlen=64, validlifetime=10, preferredlifetime=50),
                         ICMPv6NDOptPrefixInfo(prefix="2001:db8:3::", prefixlen=48, validlifetime=10, preferredlifetime=5)))
    assert h.node.icmp6stat.icp6s_nd_badopt == 3
    assert host_slaac(h, ih) == []
    assert h.events_of(PrefixOnLink) == [PrefixOnLink(P("2001:db8:3::"), 48, ih)]   # on-link, no address


def test_hosts_without_accept_rtadv_and_routers_ignore_advertisements() -> None:
    for fwd, acc in ((False, False), (True, True)):
        sim = In6Sim(seed=11)
        h = sim.node("h", forwarding=fwd, accept_rtadv=acc)
        ih = sim.attach(h, "lan")
        sim.run_for(3)
        sim.inject(h, ih, ra("fe80::1", 255, 0, 600, ICMPv6NDOptPrefixInfo(prefix=PREFIX, prefixlen=64)))
        assert h.node.nd6_rtr.defrouters == {} and host_slaac(h, ih) == []
        # a good RA, taken in and not used (RFC 4861 6.3.4 applies to hosts that accept it)
        assert h.node.icmp6stat.icp6s_inhist[134] == 1 and h.node.icmp6stat.icp6s_badra == 0


def test_learned_routes_are_capped() -> None:
    sim = In6Sim(seed=12)
    h = sim.node("h", accept_rtadv=True)
    h.node.ip6_params.rtadv_maxroutes = 2
    ih = sim.attach(h, "lan")
    sim.run_for(3)
    opts = [ICMPv6NDOptPrefixInfo(prefix=f"2001:db8:{i}::", prefixlen=64, A=0) for i in range(1, 4)]
    sim.inject(h, ih, ra("fe80::1", 255, 0, 600, *opts))
    assert len(h.node.nd6_rtr.defrouters) + len(h.node.nd6_rtr.prefixes) == 2
    assert h.node.icmp6stat.icp6s_dropped_raroute == 2
    # addresses count too: prefixes with only the A flag cannot make addresses without end
    h.node.ip6_params.rtadv_maxroutes = 4
    opts = [ICMPv6NDOptPrefixInfo(prefix=f"2001:db8:{i}::", prefixlen=64, L=0) for i in range(10, 20)]
    sim.inject(h, ih, ra("fe80::1", 255, 0, 600, *opts))
    assert len(host_slaac(h, ih)) == 2 and h.node.icmp6stat.icp6s_dropped_raroute == 2 + 8


def test_stable_addresses_and_a_retry_after_a_duplicate() -> None:
    sim, r, h, ir, ih = lan()
    h.node.nd6_rtr.stable_secret = bytes(range(32))
    sim.run_for(10)
    (ia,) = host_slaac(h, ih)
    assert ia.addr != in6.with_ifid(P(PREFIX), in6.ifid_eui64(HOST_MAC))
    assert ia.addr == in6.with_ifid(P(PREFIX), in6.ifid_stable(P(PREFIX), "wire0", b"", 0, bytes(range(32))))
    # a fresh host whose first choice is taken: DAD fails, the next DAD_Counter is tried
    sim2, r2, h2, ir2, ih2 = lan()
    h2.node.nd6_rtr.stable_secret = bytes(range(32))
    taken = in6.with_ifid(P(PREFIX), in6.ifid_stable(P(PREFIX), "wire0", b"", 0, bytes(range(32))))
    r2.node.add_address(ir2, taken, 64, 0, sim2.now)
    r2.drain_events()
    sim2.run_for(15)
    (ia2,) = host_slaac(h2, ih2)
    assert ia2.addr == in6.with_ifid(P(PREFIX), in6.ifid_stable(P(PREFIX), "wire0", b"", 1, bytes(range(32))))
    assert ia2.ready and ia2.dad_counter == 1


def redirect(src: str, dst: str, target: str, hlim: int = 255, tll: bytes | None = b"\x02\0\0\0\0\x77") -> bytes:
    p = IPv6(src=src, dst=dst, hlim=hlim) / ICMPv6ND_Redirect(tgt=target, dst="2001:db8:9::9")
    if tll:
        p = p / ICMPv6NDOptDstLLAddr(lladdr=tll.hex(":"))
    return bytes(p / ICMPv6NDOptRedirectedHdr(pkt=bytes(IPv6(src="2001:db8:1::5", dst="2001:db8:9::9"))))


def test_redirect_input() -> None:
    sim, r, h, ir, ih = lan()
    sim.run_for(10)
    me = in6.ntop(host_slaac(h, ih)[0].addr)
    rl = in6.ntop(in6.linklocal(in6.ifid_eui64(ROUTER_MAC)))
    sim.inject(h, ih, redirect("fe80::66", me, "fe80::77"))             # not our first hop
    sim.inject(h, ih, redirect(rl, me, "fe80::77", hlim=64))            # off-link
    sim.inject(h, ih, redirect(rl, me, "2001:db8:1::77"))               # global target != dst
    assert h.node.icmp6stat.icp6s_badredirect == 3 and h.events_of(Nd6Redirect) == []
    sim.inject(h, ih, redirect(rl, me, "fe80::77"))
    assert h.events_of(Nd6Redirect) == [Nd6Redirect(P("2001:db8:9::9"), P("fe80::77"), ih, False)]
    ln = h.node.nd6.lookup(P("fe80::77"), ih)
    assert ln.lladdr == b"\x02\0\0\0\0\x77" and ln.isrouter
    assert h.routes.lookup6(P("2001:db8:9::9"), 0) == Route6(ih, P("fe80::77"), dynamic=True)


def test_router_redirects_an_on_link_source() -> None:
    sim, r, h, ir, ih = lan()
    r.routes.add(P("2001:db8:9::"), 64, Route6(ir, P("fe80::77")))
    r.node.nd6.add_static(P("fe80::77"), ir, b"\x02\0\0\0\0\x77")
    sim.run_for(10)
    sim.log.clear()
    me = in6.ntop(host_slaac(h, ih)[0].addr)
    pkt = bytes(IPv6(src=me, dst="2001:db8:9::9") / UDP() / b"x")
    sim.inject(r, ir, pkt)
    sim.settle()
    out = [IPv6(f.packet) for _, _, who, f in sim.log if who == "r"]
    red = [p for p in out if p.haslayer(ICMPv6ND_Redirect)]
    fwd = [p for p in out if p.haslayer(UDP) and not p.haslayer(ICMPv6ND_Redirect)]
    assert len(red) == 1 and len(fwd) >= 1
    rd = red[0]
    assert (rd.dst, rd[ICMPv6ND_Redirect].tgt, rd[ICMPv6ND_Redirect].dst) == (me, "fe80::77", "2001:db8:9::9")
    assert rd[ICMPv6NDOptDstLLAddr].lladdr == "02:00:00:00:00:77"
    assert bytes(rd[ICMPv6NDOptRedirectedHdr].pkt)[:len(pkt)][:40] == pkt[:40]
    assert r.node.ip6stat.ip6s_redirectsent == 1 and fwd[-1].hlim == 63
