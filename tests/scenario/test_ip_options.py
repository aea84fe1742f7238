"""IP options (issue 13, part 7): h1 (10.0.1.2) -- r (10.0.1.1 | 10.0.2.1) -- h2 (10.0.2.2).

* Record Route and Timestamp come back in echo replies, recorded on the whole round
  trip (RFC 1122 3.2.2.6, RFC 791); routers record as they forward.
* A malformed option draws Parameter Problem pointing at the octet in error, counted in
  ips_badoptions (RFC 1122 3.2.2.5).
* A datagram whose source route is not used up is not answered: dropped and counted
  (ips_srcrtdrop; RFC 7126 4.3/4.4, RFC 1122 3.2.1.8) unless net.inet.ip.forwsrcrt is
  on at a router; one used up is answered along the reversed route (RFC 1122 3.2.2.6).
Packets are built with scapy and sent with IP_HDRINCL from h1; replies read from a raw
ICMP socket on h1."""

from __future__ import annotations

import errno
import socket

import pytest
from scapy.layers.inet import ICMP, IP, IPOption_LSRR, IPOption_RR

H1, R1, R2, H2 = "10.0.1.2", "10.0.1.1", "10.0.2.1", "10.0.2.2"


def _sock(h1):
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    h1.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    h1.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    return fd


def _exchange(h1, pkt: IP, dst: str | None = None) -> IP | None:
    """Send ``pkt`` from h1; the first ICMP packet that comes back (not our own echo
    request), or None after the timeout."""
    fd = _sock(h1)
    try:
        h1.rump_sys_sendto(fd, bytes(pkt), 0, (dst or pkt.dst, 0))
        while True:
            try:
                data, _ = h1.rump_sys_recvfrom(fd, 65535, 0)
            except OSError as e:
                assert e.errno == errno.EAGAIN
                return None
            got = IP(data)
            if got.haslayer(ICMP) and got[ICMP].type != 8:
                return got
    finally:
        h1.rump_sys_close(fd)


def _echo(dst: str, options: list, ident: int = 0x55) -> IP:
    return IP(src=H1, dst=dst, options=options) / ICMP(type=8, id=ident, seq=1) / b"options"


def _with_options(pkt: IP, opts: bytes) -> IP:
    """``pkt`` with raw option bytes ``opts`` (a multiple of 4) in its header."""
    raw = bytearray(bytes(pkt))
    raw = raw[:20] + opts + raw[20:]
    raw[0] = 0x40 | ((20 + len(opts)) >> 2)
    raw[2:4] = len(raw).to_bytes(2, "big")
    return IP(bytes(raw))


def _opt(pkt: IP, cls):
    return next(o for o in pkt.options if isinstance(o, cls))


def test_record_route_round_trip(routed) -> None:
    h1, r, h2 = routed
    rep = _exchange(h1, _echo(H2, [IPOption_RR(routers=["0.0.0.0"] * 4)]))
    assert rep is not None and rep[ICMP].type == 0
    rr = _opt(rep, IPOption_RR)
    # r on the way there (its address toward h2), h2 itself, r on the way back, h1
    assert rr.routers == [R2, H2, R1, H1] and rr.pointer == 20
    assert r.inet.ipstat.ips_forward == 2


def test_record_route_full_is_left_alone(routed) -> None:
    h1, r, h2 = routed
    rep = _exchange(h1, _echo(H2, [IPOption_RR(routers=["0.0.0.0"])]))
    assert rep is not None
    assert _opt(rep, IPOption_RR).routers == [R2]


def test_timestamp_reflected(routed) -> None:
    h1, r, h2 = routed
    ts = b"\x44\x10\x05\x00" + bytes(12)  # timestamps only, room for three
    rep = _exchange(h1, _with_options(IP(src=H1, dst=H2) / ICMP(type=8, id=9, seq=1), ts), dst=H2)
    assert rep is not None and rep[ICMP].type == 0
    raw = bytes(rep)
    assert raw[20:22] == b"\x44\x10" and raw[22] == 17  # r, h2, r
    assert raw[23] >> 4 == 1  # h1 found no room: the overflow count
    stamps = [int.from_bytes(raw[24 + 4 * i:28 + 4 * i], "big") for i in range(3)]
    assert all(s & 0x80000000 for s in stamps)  # not ms since midnight UT (RFC 791)


@pytest.mark.parametrize("opts,pointer", [
    (b"\x07\x01\x00\x00", 21),              # length 1
    (b"\x07\x09\x04\x00", 21),              # length past the header
    (b"\x07\x03\x02\x00", 22),              # RR pointer below 4
    (b"\x44\x08\x05\x04" + bytes(4), 23),   # timestamp with an unknown flag
])
def test_malformed_options_draw_parameter_problem(routed, opts: bytes, pointer: int) -> None:
    h1, r, h2 = routed
    rep = _exchange(h1, _with_options(IP(src=H1, dst=H2) / ICMP(type=8, id=7, seq=1), opts), dst=H2)
    assert rep is not None and rep[ICMP].type == 12 and rep[ICMP].code == 0
    assert rep[ICMP].ptr == pointer
    assert r.inet.ipstat.ips_badoptions == 1  # the router found it first
    assert h2.inet.ipstat.ips_delivered == 0


def test_unconsumed_source_route_is_dropped(routed) -> None:
    h1, r, h2 = routed
    r.config.sysctl_set("net.inet.ip.forwsrcrt", 1)  # r passes it on; h2 must not answer
    rep = _exchange(h1, _echo(H2, [IPOption_LSRR(routers=["10.0.9.9"], pointer=4)]))
    assert rep is None
    assert h2.inet.ipstat.ips_srcrtdrop == 1
    assert h2.inet.icmpstat.icps_inhist[8] == 0  # never reached ICMP


def test_router_drops_source_routes_by_default(routed) -> None:
    h1, r, h2 = routed
    rep = _exchange(h1, _echo(H2, [IPOption_LSRR(routers=[H2], pointer=8)]))
    assert rep is None
    assert r.inet.ipstat.ips_srcrtdrop == 1 and h2.inet.ipstat.ips_delivered == 0


def test_used_up_source_route_answered_along_its_reverse(routed) -> None:
    """h1 -> r -> h2 loose-routed through r (as r would leave it); h2's reply goes back
    to r with the route reversed, r forwards it to h1 (forwsrcrt on at r)."""
    h1, r, h2 = routed
    r.config.sysctl_set("net.inet.ip.forwsrcrt", 1)
    rep = _exchange(h1, _echo(H2, [IPOption_LSRR(routers=[R2], pointer=8)]))
    assert rep is not None and rep[ICMP].type == 0 and rep.src == H2 and rep.dst == H1
    lsrr = _opt(rep, IPOption_LSRR)
    assert lsrr.routers == [R1] and lsrr.pointer == 8  # used up, r recorded itself
