"""ICMP errors checked against the connection, and path MTU that cannot be walked down,
never exceeded and that ages (issue 13, part 2). Forged ICMP frames are built with
scapy and handed to the sender's interface while a transfer runs, on virtual time.

* "Fragmentation needed" quoting no connection changes no route (RFC 5927 4.1; NetBSD
  and FreeBSD apply it only through tcp_ctlinput's check) and is counted: before the
  fix eight of them walked the route MTU down to 68 and the transfer stalled.
* One quoting the connection but a sequence number not in flight: the same.
* One in window whose MTU is not below the quoted datagram's length: ignored, counted.
* One in window with a tiny MTU: the route is set to the floor (net.inet.ip.min_pmtu,
  552) and locked, TCP's segments fit it and go without DF.
* The learned MTU ages out (RFC 1191 6.3) and TCP's segments grow back.
* An interface MTU lowered under a running connection: no frame above it leaves.
"""

from __future__ import annotations

import errno
import hashlib
import random
import socket
from collections.abc import Callable

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether

from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.tcp_var import TcpCb
from rumpnet.route import RTF_DYNAMIC, RTF_HOST, RTV_MTU
from rumpnet.testing.vnet import capture, tcp_transfer

A, B = "10.0.0.1", "10.0.0.2"
PORT = 7100


def transfer(a, b, data: bytes, hook: Callable[[int], None] | None = None) -> bytes:
    return tcp_transfer(a, b, data, (B, PORT), chunk=64 * 1024, hook=hook, limit=300.0)


def needfrag(victim, peer_mac: bytes, quoted: bytes, mtu: int, src: str = "10.0.0.254") -> bytes:
    """An Ethernet frame carrying "fragmentation needed" to ``victim``'s wire0."""
    ifp = victim.ifnet.lookup("wire0")
    frame = (Ether(dst=ifp.lladdr, src=peer_mac) / IP(src=src, dst=A)
             / ICMP(type=3, code=4, nexthopmtu=mtu) / quoted)
    return bytes(frame)


def quote(sport: int, dport: int, seq: int, size: int = 1500) -> bytes:
    """The first 28 bytes of a TCP segment A -> B (what an ICMP error quotes)."""
    return bytes(IP(src=A, dst=B, len=size, flags="DF") / TCP(sport=sport, dport=dport, seq=seq, flags="A"))[:28]


def inject(k, frame: bytes) -> None:
    ifp = k.ifnet.lookup("wire0")
    k.sched.run(lambda: ifp.link_deliver(frame))


def conn_to_b(a):
    for cb in a.inet.tcp.proto.conns.values():
        if cb.faddr == aton(B) and cb.fport == PORT:
            return cb
    return None


def first_in_flight(a, sent: int, done: list) -> TcpCb | None:
    """The connection to B while it has data in flight, until ``done`` holds anything."""
    cb = conn_to_b(a)
    if sent and cb is not None and not done and cb.snd_max != cb.snd_una:
        return cb
    return None


@pytest.fixture
def pair(vnet):
    return vnet.pair(seeds=(11, 12))


def test_forged_needfrag_without_connection_changes_nothing(pair) -> None:
    a, b = pair
    data = random.Random(1).randbytes(2 << 20)
    forged = [needfrag(a, b"\x02" * 6, quote(40000 + i, 80, 1234), mtu) for i, mtu in
              enumerate((1400, 1200, 1000, 800, 576, 296, 100, 68))]

    def hook(sent: int) -> None:
        if sent and forged:
            inject(a, forged.pop())

    got = transfer(a, b, data, hook)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert not forged
    assert a.inet.icmpstat.icps_noconn == 8
    rt = a.config.route_get(B)
    assert rt.plen == 24 and rt.mtu == 0 and rt.path_mtu == 1500


def test_needfrag_out_of_window_ignored(pair) -> None:
    a, b = pair
    data = random.Random(2).randbytes(1 << 20)
    fired = []

    def hook(sent: int) -> None:
        cb = first_in_flight(a, sent, fired)
        if cb is not None:
            for seq in (cb.snd_max, cb.snd_una - 1, cb.snd_una + 0x40000000):
                inject(a, needfrag(a, b"\x02" * 6, quote(cb.lport, PORT, seq & 0xFFFFFFFF), 600))
            fired.append(cb)

    got = transfer(a, b, data, hook)
    assert got == data and fired
    assert a.inet.icmpstat.icps_noconn == 3
    assert a.config.route_get(B).plen == 24


def test_needfrag_in_window_floors_and_locks_the_route(pair) -> None:
    a, b = pair
    data = random.Random(3).randbytes(1 << 20)
    seen = capture(a, "wire0", sent_only=True)
    fired = []

    def hook(sent: int) -> None:
        cb = first_in_flight(a, sent, fired)
        if cb is not None:
            inject(a, needfrag(a, b"\x02" * 6, quote(cb.lport, PORT, cb.snd_una), 68))
            fired.append(len(seen.frames))
            assert cb.t_maxseg == 552 - 40

    got = transfer(a, b, data, hook)
    assert got == data and fired
    rt = a.config.route_get(B)
    assert rt.plen == 32 and rt.flags & RTF_HOST and rt.flags & RTF_DYNAMIC
    assert rt.mtu == 552 and rt.locks & RTV_MTU
    after = [f for f in seen.frames[fired[0]:] if f[23] == 6]
    assert after and max(len(f) - 14 for f in after) <= 552
    assert not any(f[20] & 0x40 for f in after)  # no DF on a locked route
    assert a.inet.icmpstat.icps_noconn == 0


def test_needfrag_not_below_the_quoted_length_ignored(pair) -> None:
    """An MTU the quoted datagram fit in (1200 for a 1000-byte one) is forged or
    confused: counted in icps_pmtuignored, no route, no smaller segments (NetBSD's
    tcp_ctlinput; before, it lowered the route as a real one would)."""
    a, b = pair
    data = random.Random(6).randbytes(1 << 20)
    fired = []

    def hook(sent: int) -> None:
        cb = first_in_flight(a, sent, fired)
        if cb is not None:
            mss = cb.t_maxseg
            inject(a, needfrag(a, b"\x02" * 6, quote(cb.lport, PORT, cb.snd_una, size=1000), 1200))
            fired.append(cb)
            assert cb.t_maxseg == mss

    got = transfer(a, b, data, hook)
    assert got == data and fired
    assert a.inet.icmpstat.icps_pmtuignored == 1
    assert a.config.route_get(B).plen == 24


def test_learned_pmtu_ages_and_segments_grow_back(pair) -> None:
    a, b = pair
    a.config.sysctl_set("net.inet.ip.mtudisctimeout", 30)
    seen = capture(a, "wire0", sent_only=True)
    marks: list[int] = []

    def hook(sent: int) -> None:
        cb = first_in_flight(a, sent, marks)
        if cb is not None:
            inject(a, needfrag(a, b"\x02" * 6, quote(cb.lport, PORT, cb.snd_una), 1000))
            assert cb.t_maxseg == 960 and a.config.route_get(B).mtu == 1000
            marks.append(len(seen.frames))
        elif len(marks) == 1 and sent >= (1 << 20):
            a.run_for(31)  # the estimate ages out (RFC 1191 6.3) mid-connection
            assert a.config.route_get(B).plen == 24
            marks.append(len(seen.frames))

    data = random.Random(4).randbytes(2 << 20)
    assert transfer(a, b, data, hook) == data
    assert len(marks) == 2
    assert max(len(f) for f in seen.frames[marks[0] + 1:marks[1]]) <= 1014
    assert max(len(f) for f in seen.frames[marks[1]:]) == 1514  # the same connection grew back


def test_interface_mtu_lowered_under_a_connection(pair) -> None:
    """t_maxseg follows the route: after ifconfig mtu 900 on both ends no frame above
    it leaves (superframes are cut to it, single segments sized to it)."""
    a, b = pair
    seen = capture(a, "wire0", sent_only=True)
    marks = []

    def hook(sent: int) -> None:
        if sent > (256 << 10) and not marks:
            b.config.if_set_mtu("wire0", 900)
            a.config.if_set_mtu("wire0", 900)
            marks.append(len(seen.frames))

    data = random.Random(5).randbytes(1 << 20)
    assert transfer(a, b, data, hook) == data
    assert marks and max(len(f) for f in seen.frames[marks[0]:]) <= 914
    assert a.ifnet.lookup("wire0").stats.oerrors == 0


def _icmp_frame(victim, icmp_type: int, code: int, quoted: bytes, mtu: int = 0) -> bytes:
    ifp = victim.ifnet.lookup("wire0")
    icmp = ICMP(type=icmp_type, code=code, nexthopmtu=mtu) if icmp_type == 3 else ICMP(type=icmp_type, code=code)
    return bytes(Ether(dst=ifp.lladdr, src=b"\x02" * 6) / IP(src="10.0.0.254", dst=A) / icmp / quoted)


def test_unknown_codes_are_badcode_and_udp_takes_needfrag(pair) -> None:
    """Codes NetBSD's icmp_input does not know are icps_badcode; a "fragmentation needed"
    about a UDP datagram of a connected socket is taken (its error is EMSGSIZE, the
    path MTU goes down), one quoting no socket is not (icps_noconn)."""
    a, b = pair
    udp = bytes(IP(src=A, dst=B, len=1500) / UDP(sport=5555, dport=6666))[:28]
    inject(a, _icmp_frame(a, 3, 16, udp))       # unreachable code 16: none such
    inject(a, _icmp_frame(a, 11, 2, udp))       # time exceeded code 2: none such
    assert a.inet.icmpstat.icps_badcode == 2
    inject(a, _icmp_frame(a, 3, 4, udp, 1000))  # no socket on 5555
    assert a.inet.icmpstat.icps_noconn == 1 and a.config.route_get(B).plen == 24
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_bind(fd, (A, 5555))
    a.rump_sys_connect(fd, (B, 6666))
    inject(a, _icmp_frame(a, 3, 4, udp, 1000))
    assert a.config.route_get(B).mtu == 1000
    with pytest.raises(OSError) as ei:
        a.rump_sys_send(fd, b"x", 0)
    assert ei.value.errno == errno.EMSGSIZE
