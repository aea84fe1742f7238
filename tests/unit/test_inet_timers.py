"""The inet domain's timed cores, sans-IO (issue 14 part 3): ARP, IP reassembly and ICMP
(its rate limit, PMTU aging, redirect lifetimes), and the one glue timer that drives them.

Each test gives a core its input and ``now``, then checks exactly what came out (frames on
a recording interface, packets handed to IP, routes, counters) and the next deadline
(``get_timer()``), then runs ``handle_timer(now)`` at and just before that deadline. No
kernel, loop or clock is involved: the cores take the time they are given.
"""

from __future__ import annotations

import errno
import struct
from typing import Any

import pytest

from rumpnet.ifnet import ETHER_BROADCAST, ETHERTYPE_ARP, ETHERTYPE_IP
from rumpnet.netinet.if_arp import ARP_PKT, ARPOP_REPLY, ARPOP_REQUEST, LLE_DOWN, Arp, ArpParams
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.in_proto import InetCallout
from rumpnet.netinet.ip_icmp import Icmp, IcmpParams
from rumpnet.netinet.ip_reass import Reassembler
from rumpnet.netinet.ip_var import (
    IP_HDR,
    IP_MF,
    IPFRAGTTL,
    IPPROTO_ICMP,
    IPPROTO_UDP,
    ArpStats,
    IcmpStats,
    IpParams,
    IpStats,
)
from rumpnet.route import RTF_DYNAMIC, RTF_GATEWAY, RTF_HOST, RTF_UP, RouteTable, Rtentry

MY_MAC = b"\x02\0\0\0\0\x01"
PEER_MAC = b"\x02\0\0\0\0\x02"
ME = aton("10.0.0.1")
PEER = aton("10.0.0.2")
ROUTER = aton("10.0.0.254")
ROUTER2 = aton("10.0.0.253")
FAR = aton("192.0.2.7")


class Ifa:
    def __init__(self, ifp: Link, addr: int, plen: int) -> None:
        self.ifp, self.addr, self.plen = ifp, addr, plen
        self.mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF
        self.net = addr & self.mask


class Link:
    """An Ethernet interface that records what ARP hands it."""

    def __init__(self) -> None:
        self.lladdr = MY_MAC
        self.l3_output = None
        self.loopback = False
        self.running = True
        self.mtu = 1500
        self.addrs = [Ifa(self, ME, 24)]
        self.sent: list[tuple[bytes, bytes, int]] = []  # (payload, destination MAC, ethertype)

    def ether_output(self, pkt: bytes | bytearray, mac: bytes, ethertype: int) -> None:
        self.sent.append((bytes(pkt), mac, ethertype))

    def take(self) -> list[tuple[bytes, bytes, int]]:
        out, self.sent = self.sent, []
        return out


class IpOut:
    """IP output as ICMP sees it: the packets handed to it."""

    def __init__(self) -> None:
        self.sent: list[tuple[int, int, int, bytes]] = []

    def output(self, src: int, dst: int, proto: int, payload: Any, **kw: Any) -> None:
        self.sent.append((src, dst, proto, bytes(payload)))


class Domain:
    """What the cores read of their domain (``Inet``): tunables, counters, addresses,
    routes and IP output -- and no clock."""

    def __init__(self) -> None:
        self.link = Link()
        self.arp_params, self.arpstat = ArpParams(), ArpStats()
        self.ip_params, self.ipstat = IpParams(), IpStats()
        self.icmp_params, self.icmpstat = IcmpParams(), IcmpStats()
        self.routes = RouteTable()
        self.routes.add(Rtentry(ME & 0xFFFFFF00, 24, None, RTF_UP, self.link, None))  # type: ignore[arg-type]
        self.routes.add(Rtentry(0, 0, ROUTER, RTF_UP | RTF_GATEWAY, self.link, None))  # type: ignore[arg-type]
        self.local_addrs: dict[int, Ifa] = {ME: self.link.addrs[0]}
        self.bcast_addrs = {aton("10.0.0.255")}
        self.output = IpOut()
        self.ctl: list[tuple[int, str, int, int]] = []

    def ifa_on_link(self, ip: int) -> Ifa | None:
        ifa = self.link.addrs[0]
        return ifa if ip & ifa.mask == ifa.net else None

    def ifa_for_ifp(self, ifp: Link) -> Ifa | None:
        return ifp.addrs[0] if ifp.addrs else None

    def ctlinput(self, proto: int, kind: str, src: int, dst: int, inner: bytes, mtu: int) -> bool:
        self.ctl.append((proto, kind, dst, mtu))
        return True


def arp_frame(op: int, sha: bytes, spa: int, tha: bytes, tpa: int) -> memoryview:
    return memoryview(ARP_PKT.pack(1, ETHERTYPE_IP, 6, 4, op, sha, spa, tha, tpa))


def request_for(tip: int) -> tuple[bytes, bytes, int]:
    return ARP_PKT.pack(1, ETHERTYPE_IP, 6, 4, ARPOP_REQUEST, MY_MAC, ME, bytes(6), tip), ETHER_BROADCAST, ETHERTYPE_ARP


# -- ARP ---------------------------------------------------------------------------------

def test_arp_holds_and_asks_once_a_second_then_gives_up_and_forgets() -> None:
    d = Domain()
    arp = Arp(d)  # type: ignore[arg-type]
    ifp = d.link
    arp.output(ifp, b"pkt1", PEER, False, 100.0)  # type: ignore[arg-type]
    assert ifp.take() == [request_for(PEER)]
    assert arp.get_timer() == 101.0
    arp.output(ifp, b"pkt2", PEER, False, 100.5)  # type: ignore[arg-type]
    assert ifp.take() == []  # held; no second request within the second
    arp.handle_timer(100.999)
    assert ifp.take() == [] and arp.get_timer() == 101.0
    for t in (101.0, 102.0, 103.0, 104.0):  # maxtries = 5 requests in all
        arp.handle_timer(t)
        assert ifp.take() == [request_for(PEER)]
        assert arp.get_timer() == t + 1.0
    arp.handle_timer(105.0)  # the fifth went unanswered: host down for net.inet.arp.down
    assert ifp.take() == []
    assert d.arpstat.as_dfrtotal == 2 and d.arpstat.as_dfrdropped == 2
    lle = arp.lookup(PEER)
    assert lle is not None and lle.state == LLE_DOWN
    assert arp.get_timer() == 125.0
    with pytest.raises(OSError) as e:
        arp.output(ifp, b"pkt3", PEER, False, 110.0)  # type: ignore[arg-type]
    assert e.value.errno == errno.EHOSTDOWN and d.arpstat.as_dfrdropped == 3
    arp.handle_timer(124.9)
    assert arp.lookup(PEER) is not None
    arp.handle_timer(125.0)
    assert arp.lookup(PEER) is None and arp.get_timer() is None and ifp.take() == []


def test_arp_reply_sends_the_held_packets_and_the_entry_expires_after_keep() -> None:
    d = Domain()
    arp = Arp(d)  # type: ignore[arg-type]
    ifp = d.link
    arp.output(ifp, b"held", PEER, False, 10.0)  # type: ignore[arg-type]
    assert ifp.take() == [request_for(PEER)]
    arp.input(ifp, arp_frame(ARPOP_REPLY, PEER_MAC, PEER, MY_MAC, ME), 10.25)  # type: ignore[arg-type]
    assert ifp.take() == [(b"held", PEER_MAC, ETHERTYPE_IP)]
    assert d.arpstat.as_dfrsent == 1
    assert arp.get_timer() == 10.25 + 1200  # net.inet.arp.keep; the retry is gone
    arp.output(ifp, b"now", PEER, False, 11.0)  # type: ignore[arg-type]
    assert ifp.take() == [(b"now", PEER_MAC, ETHERTYPE_IP)]
    arp.handle_timer(1210.24)
    assert arp.lookup(PEER) is not None
    arp.handle_timer(1210.25)
    assert arp.lookup(PEER) is None and arp.get_timer() is None and ifp.take() == []


def test_arp_request_for_us_is_answered_and_learned_with_its_expiry() -> None:
    d = Domain()
    arp = Arp(d)  # type: ignore[arg-type]
    ifp = d.link
    arp.input(ifp, arp_frame(ARPOP_REQUEST, PEER_MAC, PEER, bytes(6), ME), 50.0)  # type: ignore[arg-type]
    reply = ARP_PKT.pack(1, ETHERTYPE_IP, 6, 4, ARPOP_REPLY, MY_MAC, ME, PEER_MAC, PEER)
    assert ifp.take() == [(reply, PEER_MAC, ETHERTYPE_ARP)]
    assert arp.get_timer() == 1250.0


def test_arp_static_entry_has_no_deadline_and_a_temporary_one_expires() -> None:
    d = Domain()
    arp = Arp(d)  # type: ignore[arg-type]
    arp.add_static(PEER, PEER_MAC, 5.0)
    assert arp.get_timer() is None
    arp.add_static(aton("10.0.0.3"), PEER_MAC, 5.0, temp=True)
    assert arp.get_timer() == 1205.0
    arp.remove(aton("10.0.0.3"))
    assert arp.get_timer() is None  # removing an entry cancels its deadline
    arp.handle_timer(5000.0)
    assert arp.lookup(PEER) is not None and d.link.take() == []


# -- reassembly --------------------------------------------------------------------------

def fragment(off8: int, more: bool, data: bytes, ip_id: int = 7) -> memoryview:
    hdr = IP_HDR.pack(0x45, 0, 20 + len(data), ip_id, (IP_MF if more else 0) | off8, 64, IPPROTO_UDP, 0,
                      PEER, ME)
    return memoryview(hdr + data)


def insert(r: Reassembler, f: memoryview, now: float) -> bytes | None:
    _, _, _, ip_id, off, _, proto, _, src, dst = IP_HDR.unpack_from(f)
    return r.insert(f, 20, src, dst, ip_id, proto, off, None, now)


def test_reassembly_queue_times_out_after_ipfragttl() -> None:
    d = Domain()
    r = Reassembler(d)  # type: ignore[arg-type]
    assert insert(r, fragment(0, True, b"A" * 8), 10.0) is None
    assert r.get_timer() == 10.0 + IPFRAGTTL
    assert insert(r, fragment(2, True, b"C" * 8), 20.0) is None
    assert r.get_timer() == 10.0 + IPFRAGTTL  # the queue's first fragment sets it
    r.handle_timer(10.0 + IPFRAGTTL - 0.001)
    assert len(r.queues) == 1 and d.ipstat.ips_fragtimeout == 0
    r.handle_timer(10.0 + IPFRAGTTL)
    assert r.queues == {} and r.nfrags == 0 and r.get_timer() is None
    assert d.ipstat.ips_fragtimeout == 1 and d.ipstat.ips_fragdropped == 2


def test_reassembly_completes_and_cancels_its_timeout() -> None:
    d = Domain()
    r = Reassembler(d)  # type: ignore[arg-type]
    assert insert(r, fragment(1, False, b"B" * 4), 1.0) is None
    whole = insert(r, fragment(0, True, b"A" * 8), 2.0)
    assert whole is not None and whole[20:] == b"A" * 8 + b"B" * 4
    assert IP_HDR.unpack_from(whole)[2] == 32 and in_cksum(whole[:20]) == 0
    assert r.get_timer() is None
    r.handle_timer(1000.0)
    assert d.ipstat.ips_fragtimeout == 0


# -- ICMP ----------------------------------------------------------------------------------

def udp_datagram(src: int, dst: int) -> memoryview:
    return memoryview(IP_HDR.pack(0x45, 0, 28, 1, 0, 64, IPPROTO_UDP, 0, src, dst) + bytes(8))


def test_icmp_errors_are_limited_per_second_of_now() -> None:
    d = Domain()
    icmp = Icmp(d)  # type: ignore[arg-type]
    d.icmp_params.errppslimit = 2
    pkt = udp_datagram(PEER, ME)
    for _ in range(3):
        icmp.error(pkt, d.link, 3, 3, now=7.2)  # type: ignore[arg-type]
    assert [(s, dst, p) for s, dst, p, _ in d.output.sent] == [(ME, PEER, IPPROTO_ICMP)] * 2
    assert d.icmpstat.icps_toofreq == 1
    icmp.error(pkt, d.link, 3, 3, now=7.99)  # type: ignore[arg-type]
    assert len(d.output.sent) == 2 and d.icmpstat.icps_toofreq == 2
    icmp.error(pkt, d.link, 3, 3, now=8.0)  # a new second
    assert len(d.output.sent) == 3 and d.icmpstat.icps_toofreq == 2
    msg = d.output.sent[-1][3]
    assert msg[:2] == b"\x03\x03" and msg[8:] == bytes(pkt) and in_cksum(msg) == 0
    assert icmp.get_timer() is None  # a rate limit is a window, not a deadline


def test_pmtu_learned_on_a_host_route_ages_out_after_mtudisctimeout() -> None:
    d = Domain()
    icmp = Icmp(d)  # type: ignore[arg-type]
    assert icmp.mtudisc(FAR, 1280, 0, 50.0) == 1280
    host = d.routes.exact(FAR, 32)
    assert host is not None and host.flags & RTF_DYNAMIC and host.expire == 650.0
    assert icmp.get_timer() == 650.0  # net.inet.ip.mtudisctimeout = 600
    assert icmp.mtudisc(FAR, 1200, 0, 100.0) == 1200  # lowered again: lives on from then
    assert icmp.get_timer() == 700.0
    icmp.handle_timer(699.5)
    assert d.routes.exact(FAR, 32) is host
    icmp.handle_timer(700.0)
    assert d.routes.exact(FAR, 32) is None and icmp.get_timer() is None
    assert d.routes.lookup(FAR).path_mtu == 1500  # type: ignore[union-attr]


def test_pmtu_on_a_static_host_route_is_forgotten_not_the_route() -> None:
    d = Domain()
    icmp = Icmp(d)  # type: ignore[arg-type]
    static = Rtentry(FAR, 32, ROUTER, RTF_UP | RTF_GATEWAY | RTF_HOST, d.link, None)  # type: ignore[arg-type]
    d.routes.add(static)
    d.ip_params.mtudisctimeout = 30
    assert icmp.mtudisc(FAR, 1400, 0, 1.0) == 1400
    assert icmp.get_timer() == 31.0
    icmp.handle_timer(31.0)
    assert d.routes.exact(FAR, 32) is static and static.mtu == 0 and static.expire == 0.0
    assert icmp.get_timer() is None


def redirect(gw: int, dst: int, from_router: int) -> memoryview:
    inner = IP_HDR.pack(0x45, 0, 28, 1, 0, 64, IPPROTO_UDP, 0, ME, dst) + bytes(8)
    msg = bytearray(struct.pack("!BBHI", 5, 1, 0, gw) + inner)
    c = in_cksum(msg)
    msg[2:4] = bytes((c >> 8, c & 0xFF))
    return memoryview(IP_HDR.pack(0x45, 0, 20 + len(msg), 2, 0, 64, IPPROTO_ICMP, 0, from_router, ME) + msg)


def test_redirect_makes_a_host_route_that_ends_after_redirtimeout() -> None:
    d = Domain()
    icmp = Icmp(d)  # type: ignore[arg-type]
    icmp.input(d.link, redirect(ROUTER2, FAR, ROUTER), 20, ROUTER, ME, 3.0)  # type: ignore[arg-type]
    host = d.routes.exact(FAR, 32)
    assert host is not None and host.gateway == ROUTER2 and host.expire == 603.0
    assert icmp.get_timer() == 603.0 and d.output.sent == []
    icmp.handle_timer(602.0)
    assert d.routes.exact(FAR, 32) is host
    icmp.handle_timer(603.0)
    assert d.routes.exact(FAR, 32) is None and icmp.get_timer() is None


# -- the domain's one timer ----------------------------------------------------------------

class Handle:
    def __init__(self, when: float, fn: Any) -> None:
        self.when, self.fn, self.cancelled = when, fn, False

    def cancel(self) -> None:
        self.cancelled = True


class Sched:
    """A scheduler that records the callouts armed on it."""

    def __init__(self) -> None:
        self.clock = 0.0
        self.armed: list[Handle] = []

    def now(self) -> float:
        return self.clock

    def call_at(self, when: float, fn: Any) -> Handle:
        h = Handle(when, fn)
        self.armed.append(h)
        return h

    def live(self) -> list[float]:
        return [h.when for h in self.armed if not h.cancelled]

    def fire(self) -> None:
        """Run the earliest live callout at its time."""
        h = min((h for h in self.armed if not h.cancelled), key=lambda h: h.when)
        self.armed.remove(h)
        self.clock = h.when
        h.fn()


def test_one_timer_armed_at_the_earliest_deadline_of_the_cores() -> None:
    d = Domain()
    arp, reass, icmp = Arp(d), Reassembler(d), Icmp(d)  # type: ignore[arg-type]
    sched = Sched()
    callout = InetCallout(sched)
    for core in (arp, reass, icmp):
        core.timers.deadline_out = callout.deadline
        callout.add(core)
    assert sched.live() == []
    icmp.mtudisc(FAR, 1280, 0, 0.0)           # 600
    assert sched.live() == [600.0]
    insert(reass, fragment(0, True, b"A" * 8), 0.0)  # 30: re-armed earlier
    assert sched.live() == [IPFRAGTTL]
    arp.output(d.link, b"x", PEER, False, 0.0)  # type: ignore[arg-type]  # 1: earlier again
    assert sched.live() == [1.0]
    assert d.link.take() == [request_for(PEER)]
    sched.fire()                               # t=1: ARP's retry; next is ARP's at 2
    assert d.link.take() == [request_for(PEER)] and sched.live() == [2.0]
    for _ in range(4):                         # retries at 2, 3, 4; down at 5 until 25
        sched.fire()
    assert sched.live() == [25.0]
    sched.fire()                               # t=25: ARP forgets the host
    assert arp.lookup(PEER) is None and sched.live() == [IPFRAGTTL]
    sched.fire()                               # t=30: the reassembly queue times out
    assert d.ipstat.ips_fragtimeout == 1 and sched.live() == [600.0]
    sched.fire()                               # t=600: the learned PMTU ages out
    assert d.routes.exact(FAR, 32) is None and sched.live() == []


def test_a_cancelled_deadline_leaves_the_timer_early_then_it_moves_on() -> None:
    d = Domain()
    arp = Arp(d)  # type: ignore[arg-type]
    sched = Sched()
    callout = InetCallout(sched)
    arp.timers.deadline_out = callout.deadline
    callout.add(arp)
    arp.add_static(PEER, PEER_MAC, 0.0, temp=True)   # 1200
    arp.add_static(aton("10.0.0.3"), PEER_MAC, 100.0, temp=True)  # 1300
    assert sched.live() == [1200.0]
    arp.remove(PEER)
    sched.fire()                               # t=1200: nothing due, armed at 1300
    assert arp.lookup(aton("10.0.0.3")) is not None and sched.live() == [1300.0]
    sched.fire()
    assert arp.lookup(aton("10.0.0.3")) is None and sched.live() == []
