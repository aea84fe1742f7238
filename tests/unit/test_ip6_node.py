"""The netinet6 cores together (in6_proto.Inet6) on the sans-IO bench, on virtual time:
``fc00:0:0:1::/64 - router - fc00:0:0:2::/64``. ping6 across with forwarding on and not
with it off, Time Exceeded for hop limit 1, a link-local ping with a zone, neighbour
entries aging through their states, DAD catching a duplicate, a 5000-byte UDP datagram
across a 1500-byte MTU, Packet Too Big lowering the path MTU, a forged one ignored, and a
host configured by the router's advertisements."""

from __future__ import annotations

import struct

from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6PacketTooBig, IPv6

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Ctl, Icmp6RawInput
from rumpnet.netinet6.in6_cksum import in6_cksum_ok
from rumpnet.netinet6.in6_var import IN6_IFF_DUPLICATED
from rumpnet.netinet6.ip6_input import Ip6Delivery
from rumpnet.netinet6.ip6_output import Route6
from rumpnet.netinet6.nd6 import ND6_LLINFO_DELAY, ND6_LLINFO_PROBE, ND6_LLINFO_REACHABLE, ND6_LLINFO_STALE, NdPrefixInfo
from rumpnet.netinet6.nd6_nbr import DadDuplicated
from rumpnet.netinet6.rtadvd import RtadvConfig
from rumpnet.testing.in6sim import In6Sim, SimNode

P = in6.pton
A, R1, R2, B = P("fc00:0:0:1::1"), P("fc00:0:0:1::ff"), P("fc00:0:0:2::ff"), P("fc00:0:0:2::1")


class Net:
    def __init__(self, forwarding: bool = True, mtu2: int = 1500) -> None:
        self.sim = sim = In6Sim(seed=31)
        self.a, self.r, self.b = sim.node("a"), sim.node("r", forwarding=forwarding), sim.node("b")
        self.ia = sim.attach(self.a, "lan1")
        self.r1 = sim.attach(self.r, "lan1")
        self.r2 = sim.attach(self.r, "lan2", mtu=mtu2)
        self.ib = sim.attach(self.b, "lan2", mtu=mtu2)
        for n, i, addr in ((self.a, self.ia, A), (self.r, self.r1, R1), (self.r, self.r2, R2), (self.b, self.ib, B)):
            n.node.add_address(i, addr, 64, 0, sim.now)
            n.drain_events()
        self.a.routes.add(0, 0, Route6(self.ia, R1))
        self.b.routes.add(0, 0, Route6(self.ib, R2))
        self.udp: list[Ip6Delivery] = []
        self.b.node.protosw[17] = lambda d, now: self.udp.append(d)
        for n in (self.a, self.b, self.r):
            n.node.icmp6.deliver_raw = True
        sim.run_for(5)

    def replies(self, n: SimNode) -> list[Icmp6RawInput]:
        return [e for e in n.events if isinstance(e, Icmp6RawInput) and e.msg[0] == 129]


def test_ping_across_the_router() -> None:
    net = Net()
    net.a.node.ping6(B, 0x77, 1, b"across", net.sim.now)
    net.sim.run_for(1)
    (rep,) = net.replies(net.a)
    assert rep.src == B and rep.hlim == 63 and rep.msg[8:] == b"across"
    assert net.r.node.ip6stat.ip6s_forward == 2


def test_no_forwarding_no_reply() -> None:
    net = Net(forwarding=False)
    net.a.node.ping6(B, 1, 1, b"x", net.sim.now)
    net.sim.run_for(2)
    assert net.replies(net.a) == []
    assert net.r.node.ip6stat.ip6s_cantforward == 1 and net.r.node.ip6stat.ip6s_forward == 0


def test_hop_limit_one_gets_time_exceeded() -> None:
    net = Net()
    net.a.node.ping6(B, 1, 1, b"x", net.sim.now, hlim=1)
    net.sim.run_for(1)
    (ctl,) = net.a.events_of(Icmp6Ctl)
    assert (ctl.kind, ctl.icmp6_type, ctl.code, ctl.reporter) == ("timxceed", 3, 0, R1)
    assert ctl.inner_dst == B and net.replies(net.a) == []


def test_link_local_ping_with_a_zone() -> None:
    net = Net()
    rll = net.r.node.ifaddrs.get(net.r1).linklocal().addr
    net.a.node.ping6(rll, 1, 1, b"ll", net.sim.now, zone=net.ia)
    net.sim.run_for(1)
    (rep,) = net.replies(net.a)
    assert rep.src == rll and rep.ifindex == net.ia and rep.hlim == 64


def test_neighbour_entry_ages_through_its_states() -> None:
    net = Net()
    sim, a = net.sim, net.a
    a.node.ping6(B, 1, 1, b"x", sim.now)
    sim.run_for(0.5)
    ln = a.node.nd6.lookup(R1, net.ia)
    assert ln.state == ND6_LLINFO_REACHABLE and ln.lladdr == net.r.mac(net.r1)
    sim.run_until(a.node.nd6.expiry(ln))
    assert ln.state == ND6_LLINFO_STALE
    sim.run_for(100)
    assert ln.state == ND6_LLINFO_STALE
    a.node.ping6(B, 1, 2, b"x", sim.now)
    sim.settle()
    assert ln.state == ND6_LLINFO_DELAY
    sim.run_for(5)
    assert ln.state in (ND6_LLINFO_PROBE, ND6_LLINFO_REACHABLE)
    sim.run_for(1)
    assert ln.state == ND6_LLINFO_REACHABLE            # the unicast probe was answered
    # the router goes away: probes go unanswered and the entry is removed
    sim.drop = lambda link, who, f: who.name == "r"
    sim.run_until(a.node.nd6.expiry(ln) + 0.001)
    a.node.ping6(B, 1, 3, b"x", sim.now)
    sim.run_for(5 + 3 + 0.5)
    assert a.node.nd6.lookup(R1, net.ia) is None
    assert a.node.nd6stat.nd6s_unreachable == 1


def test_dad_catches_a_duplicate() -> None:
    net = Net()
    ia = net.r.node.add_address(net.r1, A, 64, 0, net.sim.now)
    net.sim.run_for(3)
    assert ia.flags & IN6_IFF_DUPLICATED
    assert DadDuplicated(ia, False) in net.r.events
    assert net.a.node.find_address(A).ready


def udp_datagram(src: int, dst: int, n: int) -> bytes:
    return bytes(IPv6(src=in6.ntop(src), dst=in6.ntop(dst)) / UDP(sport=4000, dport=9) / bytes(i & 0xFF for i in range(n)))[40:]


def test_a_5000_byte_datagram_across_a_1500_mtu_path() -> None:
    net = Net()
    dgram = udp_datagram(A, B, 5000)
    net.a.node.output(0, B, 17, dgram, net.sim.now)
    net.sim.run_for(1)
    (d,) = net.udp
    assert d.packet[d.off:] == dgram and in6_cksum_ok(A, B, 17, d.packet[d.off:])
    assert net.a.node.ip6stat.ip6s_ofragments == 4 and net.b.node.ip6stat.ip6s_reassembled == 1
    assert net.r.node.ip6stat.ip6s_forward == 4


def test_packet_too_big_lowers_the_path_mtu() -> None:
    net = Net(mtu2=1400)
    sim, a = net.sim, net.a
    dgram = udp_datagram(A, B, 1420)
    a.node.output(0, B, 17, dgram, sim.now)
    sim.run_for(1)
    assert net.udp == []
    (ctl,) = a.events_of(Icmp6Ctl)
    assert (ctl.kind, ctl.mtu, ctl.reporter, ctl.inner_dst) == ("needfrag", 1400, R1, B)
    assert struct.unpack_from("!H", ctl.inner, ctl.upper_off) == (4000,)
    # the transport (UDP here) vouches for it; the stack lowers the estimate
    assert a.node.icmp6.pmtu.update(ctl.inner_dst, ctl.mtu, sim.now, validated=True,
                                    linkmtu=a.node.ifaddrs.get(net.ia).linkmtu)
    a.node.output(0, B, 17, dgram, sim.now)
    sim.run_for(1)
    (d,) = net.udp
    assert d.packet[d.off:] == dgram
    sent = [f for _, link, who, f in sim.log if who == "a" and IPv6(f.packet).haslayer("IPv6ExtHdrFragment")]
    assert sent and all(len(f.packet) <= 1400 for f in sent)
    assert net.r.node.icmp6stat.icp6s_opacket_too_big == 1


def test_forged_packet_too_big_is_ignored() -> None:
    net = Net()
    forged = bytes(IPv6(src="fc00:0:0:1::ff", dst=in6.ntop(A), hlim=64)
                   / ICMPv6PacketTooBig(mtu=1280) / IPv6(src="fc00:0:0:1::77", dst="fc00:0:0:2::1") / UDP())
    net.sim.inject(net.a, net.ia, forged)
    low = bytes(IPv6(src="fc00:0:0:1::ff", dst=in6.ntop(A)) / ICMPv6PacketTooBig(mtu=600)
                / IPv6(src=in6.ntop(A), dst="fc00:0:0:2::1") / UDP())
    net.sim.inject(net.a, net.ia, low)
    assert net.a.events_of(Icmp6Ctl) == []
    assert net.a.node.icmp6stat.icp6s_pmtuignored == 2 and net.a.node.icmp6.pmtu.entries == {}


def test_host_configured_by_the_routers_advertisements() -> None:
    sim = In6Sim(seed=32)
    r, h, b = sim.node("r", forwarding=True), sim.node("h", accept_rtadv=True), sim.node("b")
    r1, r2 = sim.attach(r, "lan1"), sim.attach(r, "lan2")
    sim.attach(h, "lan1")
    ib = sim.attach(b, "lan2")
    for n, i, addr in ((r, r1, R1), (r, r2, R2), (b, ib, B)):
        n.node.add_address(i, addr, 64, 0, sim.now)
        n.drain_events()
    b.routes.add(0, 0, Route6(ib, R2))
    r.node.rtadvd.start(r1, RtadvConfig([NdPrefixInfo(64, True, True, 86400, 14400, P("fc00:0:0:1::"))]), sim.now)
    sim.run_for(10)
    h.node.icmp6.deliver_raw = True
    h.node.ping6(B, 9, 1, b"slaac", sim.now)
    sim.run_for(1)
    reps = [e for e in h.events if isinstance(e, Icmp6RawInput) and e.msg[0] == 129]
    assert len(reps) == 1 and reps[0].src == B
    src = IPv6(next(f.packet for _, _, who, f in sim.log if who == "h" and IPv6(f.packet).haslayer("ICMPv6EchoRequest")))
    assert in6.are_prefix_equal(P(src.src), P("fc00:0:0:1::"), 64)


def test_ping_own_address_through_loopback() -> None:
    net = Net()
    net.a.node.ping6(A, 3, 1, b"self", net.sim.now)
    net.sim.run_for(1)
    (rep,) = net.replies(net.a)
    assert rep.src == A and rep.ifindex == 1
    assert not [f for _, link, who, f in net.sim.log if who == "a" and link == "lan1" and IPv6(f.packet).dst == in6.ntop(A)]


def test_another_default_router_takes_over() -> None:
    sim = In6Sim(seed=33)
    r1, r2, h = sim.node("r1", forwarding=True), sim.node("r2", forwarding=True), sim.node("h", accept_rtadv=True)
    i1, i2 = sim.attach(r1, "lan"), sim.attach(r2, "lan")
    sim.attach(h, "lan")
    cfg = RtadvConfig([NdPrefixInfo(64, True, True, 86400, 14400, P("fc00:0:0:1::"))])
    r1.node.rtadvd.start(i1, cfg, sim.now)
    r2.node.rtadvd.start(i2, cfg, sim.now)
    sim.run_for(20)
    first = h.routes.lookup6(B, 0).gateway
    assert len(h.node.nd6_rtr.defrouters) == 2
    gone = r1 if first == r1.node.ifaddrs.get(i1).linklocal().addr else r2
    gone.node.rtadvd.stop(gone.ifindex("lan"), sim.now)
    sim.run_for(10)
    now_gw = h.routes.lookup6(B, 0).gateway
    assert now_gw != first and len(h.node.nd6_rtr.defrouters) == 1
