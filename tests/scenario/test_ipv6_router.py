"""netinet6 in the kernel: three kernels, fc00:0:0:1::/64 - router - fc00:0:0:2::/64, on
in-process wires and virtual time (issue 15: the scenarios of test_ip6_node.py again, now
through real kernels, their interfaces, route tables and the glue timer)."""

from __future__ import annotations

import struct

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6RawInput
from rumpnet.netinet6.in6_var import IN6_IFF_DUPLICATED, IN6_IFF_TENTATIVE
from rumpnet.netinet6.nd6 import (
    ND6_LLINFO_DELAY,
    ND6_LLINFO_PROBE,
    ND6_LLINFO_REACHABLE,
    ND6_LLINFO_STALE,
)
from rumpnet.route import RTF_CONNECTED, RTF_DYNAMIC, RTF_GATEWAY, RTF_HOST, RTF_LOCAL, flags_letters
from rumpnet.testing.vnet import VNet

H1, R1, R2, H2 = (in6.pton(a) for a in ("fc00:0:0:1::2", "fc00:0:0:1::1", "fc00:0:0:2::1", "fc00:0:0:2::2"))


def addr6(vnet: VNet, k, ifname: str, seg: str, addr: int | None, plen: int = 64):
    ifp = vnet.attach(k, ifname, seg, None)
    if addr is not None:
        k.inet6.add_address(ifp, addr, plen)
    return ifp


def default6(k, gw: int, ifname: str) -> None:
    from rumpnet.route import RTF_STATIC, RTF_UP, Rtentry6

    k.inet6.routes.add(Rtentry6(0, 0, gw, RTF_UP | RTF_GATEWAY | RTF_STATIC, k.ifnet.lookup(ifname)))


@pytest.fixture
def routed6(vnet: VNet):
    h1, r, h2 = vnet.kernel(1, hostname="h1"), vnet.kernel(2, hostname="router"), vnet.kernel(3, hostname="h2")
    addr6(vnet, h1, "wire0", "net1", H1)
    addr6(vnet, r, "wire0", "net1", R1)
    addr6(vnet, r, "wire1", "net2", R2)
    addr6(vnet, h2, "wire0", "net2", H2)
    default6(h1, R1, "wire0")
    default6(h2, R2, "wire0")
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    vnet.sched.run_for(3)     # DAD (1 s after a random delay of up to 1 s)
    return h1, r, h2


class Echo:
    """ICMPv6 messages a kernel receives (the seam raw ICMPv6 sockets use)."""

    def __init__(self, k) -> None:
        self.k = k
        self.got: list[Icmp6RawInput] = []
        k.inet6.node.icmp6.deliver_raw = True
        k.inet6.raw_input = lambda ev, now: self.got.append(ev)

    def ping(self, vnet: VNet, dst: int, zone: int = 0, hlim: int | None = None, size: int = 8,
             seq: int = 1) -> Icmp6RawInput | None:
        self.got.clear()
        self.k.inet6.node.ping6(dst, 0x77, seq, bytes(size), self.k.clock_now(), zone=zone, hlim=hlim)
        self.k.inet6.settle()
        vnet.sched.run_for(2)
        answers = [ev for ev in self.got if ev.msg[0] == 129 or ev.msg[0] < 128]
        return answers[0] if answers else None


def test_ping6_across_with_forwarding_on_and_not_off(vnet, routed6) -> None:
    h1, r, h2 = routed6
    e = Echo(h1)
    rep = e.ping(vnet, H2)
    assert rep is not None and rep.msg[0] == 129 and rep.src == H2
    assert rep.hlim == 63            # one router on the way back
    assert r.inet6.node.ip6stat.ip6s_forward == 2
    r.sysctl("-w", "net.inet6.ip6.forwarding=0")
    assert e.ping(vnet, H2, seq=2) is None
    assert r.inet6.node.ip6stat.ip6s_cantforward >= 1 and r.inet6.node.ip6stat.ip6s_forward == 2
    assert e.ping(vnet, R1, seq=3) is not None     # the router itself still answers
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    assert e.ping(vnet, H2, seq=4) is not None


def test_hop_limit_1_gets_time_exceeded_from_the_router(vnet, routed6) -> None:
    h1, r, h2 = routed6
    rep = Echo(h1).ping(vnet, H2, hlim=1)
    assert rep is not None and rep.msg[0] == 3 and rep.msg[1] == 0     # Time Exceeded, in transit
    assert rep.src == R1
    inner = rep.msg[8:]
    assert in6.unpack(inner, 24) == H2 and inner[40] == 128             # quotes our echo request
    assert r.inet6.node.icmp6stat.icp6s_otime_exceed_transit == 1
    assert Echo(h1).ping(vnet, H2, hlim=2) is not None                 # 2 is enough for one router


def test_link_local_ping_with_a_zone(vnet, routed6) -> None:
    h1, r, _ = routed6
    wire0 = h1.ifnet.lookup("wire0")
    r_ll = r.inet6.node.ifaddrs.get(r.ifnet.lookup("wire0").index).linklocal()
    assert r_ll is not None
    rep = Echo(h1).ping(vnet, r_ll.addr, zone=wire0.index)
    assert rep is not None and rep.msg[0] == 129 and rep.src == r_ll.addr and rep.ifindex == wire0.index
    with pytest.raises(OSError):       # no zone: a link-local destination cannot be routed
        h1.inet6.output(0, r_ll.addr, 59, b"")


def test_loopback_and_own_addresses(vnet, routed6) -> None:
    h1, _, _ = routed6
    e = Echo(h1)
    for dst, zone in ((in6.IN6ADDR_LOOPBACK, h1.inet6.lo0_zone()), (H1, 0)):
        rep = e.ping(vnet, dst, zone=zone)
        assert rep is not None and rep.msg[0] == 129 and rep.src == dst
    ll = h1.inet6.node.ifaddrs.get(h1.ifnet.lookup("wire0").index).linklocal()
    rep = e.ping(vnet, ll.addr, zone=h1.ifnet.lookup("wire0").index)
    assert rep is not None and rep.src == ll.addr


def test_routes_connected_local_and_their_removal(vnet, routed6) -> None:
    h1, _, _ = routed6
    wire0 = h1.ifnet.lookup("wire0")
    t = {(in6.ntop(rt.dst), rt.plen, rt.zone): rt for rt in h1.inet6.routes}
    conn = t[("fc00:0:0:1::", 64, 0)]
    assert conn.flags & RTF_CONNECTED and conn.ifp is wire0
    local = t[("fc00:0:0:1::2", 128, 0)]
    assert local.flags & (RTF_LOCAL | RTF_HOST) and local.ifp is h1.net.lo0
    assert flags_letters(t[("fe80::", 64, wire0.index)].flags) == "UC"
    assert flags_letters(t[("::", 0, 0)].flags) == "UGS"
    h1.inet6.remove_address(wire0, H1)
    left = {(in6.ntop(rt.dst), rt.plen) for rt in h1.inet6.routes}
    assert ("fc00:0:0:1::", 64) not in left and ("fc00:0:0:1::2", 128) not in left
    with pytest.raises(OSError):
        h1.inet6.remove_address(wire0, H1)


def test_neighbour_entries_age_through_the_states(vnet, routed6) -> None:
    h1, r, _ = routed6
    e = Echo(h1)
    assert e.ping(vnet, R1) is not None
    wire0 = h1.ifnet.lookup("wire0").index
    nd6 = h1.inet6.node.nd6
    ln = nd6.lookup(R1, wire0)
    assert ln is not None and ln.state == ND6_LLINFO_REACHABLE
    assert ln.lladdr == r.ifnet.lookup("wire0").lladdr
    vnet.sched.run_for(60)               # ReachableTime is at most 45 s (RFC 4861 6.3.2)
    assert nd6.lookup(R1, wire0).state == ND6_LLINFO_STALE
    # Sending to a STALE neighbour starts DELAY; r's own traffic to h1 (the reply) does
    # not confirm reachability, so after 5 s it probes and r answers: REACHABLE again.
    h1.inet6.node.ping6(R1, 1, 9, b"", h1.clock_now())
    h1.inet6.settle()
    assert nd6.lookup(R1, wire0).state == ND6_LLINFO_DELAY
    vnet.sched.run_for(5.5)
    assert nd6.lookup(R1, wire0).state in (ND6_LLINFO_PROBE, ND6_LLINFO_REACHABLE)
    vnet.sched.run_for(2)
    assert nd6.lookup(R1, wire0).state == ND6_LLINFO_REACHABLE
    # The router goes away: the next probes go unanswered and the entry is removed.
    r.ifnet.lookup("wire0").set_up(False)
    vnet.sched.run_for(60)
    h1.inet6.node.ping6(R1, 1, 10, b"", h1.clock_now())
    h1.inet6.settle()
    vnet.sched.run_for(20)
    assert nd6.lookup(R1, wire0) is None
    assert h1.inet6.node.nd6stat.nd6s_unreachable == 1


def test_dad_catches_a_duplicate(vnet, routed6) -> None:
    h1, _, _ = routed6
    dup = vnet.kernel(9, hostname="dup")
    ifp = addr6(vnet, dup, "wire0", "net1", H1)
    assert dup.inet6.addresses(ifp)[-1].flags & IN6_IFF_TENTATIVE
    vnet.sched.run_for(3)
    ia = next(a for a in dup.inet6.addresses(ifp) if a.addr == H1)
    assert ia.flags & IN6_IFF_DUPLICATED and not ia.flags & IN6_IFF_TENTATIVE
    ok = next(a for a in h1.inet6.addresses(h1.ifnet.lookup("wire0")) if a.addr == H1)
    assert ok.flags == 0                        # the owner keeps it
    assert dup.inet6.node.ip6stat.ip6s_notready == 0


def test_packet_too_big_lowers_the_path_mtu_and_forged_ones_are_ignored(vnet, routed6) -> None:
    h1, r, h2 = routed6
    r.ifnet.lookup("wire1").set_mtu(1280)
    h2.ifnet.lookup("wire0").set_mtu(1280)
    e = Echo(h1)
    rep = e.ping(vnet, H2, size=1400)
    assert rep is not None and rep.msg[0] == 2 and struct.unpack_from("!I", rep.msg, 4)[0] == 1280
    assert h1.inet6.node.icmp6.pmtu.get(H2, h1.clock_now()) == 1280
    rt = h1.inet6.routes.exact(H2, 128)      # NetBSD keeps it in a host route (route get)
    assert rt is not None and rt.mtu == 1280 and rt.flags & RTF_DYNAMIC
    rep = e.ping(vnet, H2, size=1400, seq=2)   # fragmented at the source now
    assert rep is not None and rep.msg[0] == 129
    assert h2.inet6.node.ip6stat.ip6s_reassembled == 1
    # A Packet Too Big quoting a packet we never sent (its source is not ours) is forged.
    from rumpnet.netinet6.icmp6 import Icmp6Repr, emit
    from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, ip6_build

    other = in6.pton("fc00:0:0:9::9")
    quoted = ip6_build(other, H2, 59, bytes(1300))
    ptb = ip6_build(R1, H1, IPPROTO_ICMPV6, emit(Icmp6Repr(2, 0, 1280, quoted[:1232]), R1, H1), 64)
    before = h1.inet6.node.icmp6stat.icp6s_pmtuignored
    h1.inet6.ether_input(h1.ifnet.lookup("wire0"), memoryview(ptb), 0)
    assert h1.inet6.node.icmp6stat.icp6s_pmtuignored == before + 1
    assert h1.inet6.node.icmp6.pmtu.get(other, h1.clock_now()) is None
    # The learned MTU ages out, and its host route with it.
    vnet.sched.run_for(h1.inet6.node.ip6_params.mtudisctimeout + 1)
    assert h1.inet6.routes.exact(H2, 128) is None


def test_router_advertisements_give_an_address_and_a_default_route(vnet) -> None:
    from rumpnet.netinet6.nd6 import NdPrefixInfo
    from rumpnet.netinet6.rtadvd import RtadvConfig

    r, h = vnet.kernel(2, hostname="router"), vnet.kernel(1, hostname="host")
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    rifp = addr6(vnet, r, "wire0", "lan", R1)
    h.sysctl("-w", "net.inet6.ip6.accept_rtadv=1")
    hifp = addr6(vnet, h, "wire0", "lan", None)
    vnet.sched.run_for(3)
    cfg = RtadvConfig(prefixes=[NdPrefixInfo(64, True, True, 86400, 14400, in6.pton("fc00:0:0:1::"))],
                      maxinterval=30)
    r.inet6.node.rtadvd.start(rifp.index, cfg, r.clock_now())
    r.inet6.settle()
    vnet.sched.run_for(20)
    mine = [a for a in h.inet6.addresses(hifp) if in6.are_prefix_equal(a.addr, R1, 64)]
    assert len(mine) == 1 and mine[0].flags & 0x40     # IN6_IFF_AUTOCONF, DAD done
    dflt = h.inet6.routes.exact(0, 0)
    r_ll = r.inet6.node.ifaddrs.get(rifp.index).linklocal().addr
    assert dflt is not None and dflt.gateway == r_ll and dflt.ifp is hifp and flags_letters(dflt.flags) == "UG"
    assert Echo(h).ping(vnet, R1) is not None
    # The router goes: its final advertisement (lifetime 0) takes the default route away.
    r.inet6.node.rtadvd.stop(rifp.index, r.clock_now())
    r.inet6.settle()
    vnet.sched.run_for(2)
    assert h.inet6.routes.exact(0, 0) is None


def test_interface_mtu_and_destroy_reach_the_node(vnet, routed6) -> None:
    h1, _, _ = routed6
    wire0 = h1.ifnet.lookup("wire0")
    wire0.set_mtu(1400)
    assert h1.inet6.node.ifaddrs.get(wire0.index).linkmtu == 1400
    h1.config.if_destroy("wire0")
    assert wire0.index not in h1.inet6.node.ifaddrs.ifs
    assert not [rt for rt in h1.inet6.routes if rt.ifp is wire0]


def test_a_type_0_routing_header_is_sent_by_the_first_hop_and_refused_there(vnet, routed6) -> None:
    """IPV6_RTHDR (RFC 3542 7) on a raw ICMPv6 socket, as ping6's hops use it (NetBSD's
    t_ping6_opts ``ping6_opts_hops``): the echo request leaves for the first hop with the
    final destination last in the header, and the router, which never executes a type 0
    header (RFC 5095 3), answers Parameter Problem code 0 pointing at the Routing Type."""
    import socket as so

    from rumpnet.commands.ping6 import rthdr0

    h1, r, h2 = routed6
    fd = h1.rump_sys_socket(so.AF_INET6, so.SOCK_RAW, so.IPPROTO_ICMPV6)
    for bad in (b"\0" * 7, rthdr0([R2])[:-8], bytes((0, 2, 1, 1)) + bytes(20), bytes((0, 2, 0, 2)) + bytes(20)):
        with pytest.raises(OSError) as e:
            h1.rump_sys_setsockopt(fd, so.IPPROTO_IPV6, so.IPV6_RTHDR, bad)
        assert e.value.errno == 22
    h1.rump_sys_setsockopt(fd, so.IPPROTO_IPV6, so.IPV6_RTHDR, rthdr0([R2]))
    assert h1.rump_sys_getsockopt(fd, so.IPPROTO_IPV6, so.IPV6_RTHDR, 64) == rthdr0([R2])
    bad_before = r.inet6.node.ip6stat.ip6s_badoptions
    echo = Echo(h1)
    h1.rump_sys_sendto(fd, struct.pack("!BBHHH", 128, 0, 0, 0x99, 1) + b"hops", 0, ("fc00:0:0:2::2", 0))
    h1.inet6.settle()
    vnet.sched.run_for(2)
    assert r.inet6.node.ip6stat.ip6s_badoptions == bad_before + 1
    errs = [ev for ev in echo.got if ev.msg[0] == 4]
    assert len(errs) == 1 and errs[0].msg[1] == 0
    # The pointer names the Routing Type of the quoted packet (40 + 2), whose destination
    # is the first hop and whose header ends with the final destination.
    assert struct.unpack("!I", errs[0].msg[4:8])[0] == 42
    quoted = errs[0].msg[8:]
    assert quoted[6] == 43 and in6.unpack(quoted[24:40]) == R2
    assert quoted[43] == 1 and in6.unpack(quoted[48:64]) == H2
    assert h2.inet6.node.icmp6stat.icp6s_inhist[128] == 0     # the final destination saw nothing
