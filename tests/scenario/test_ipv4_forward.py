"""Forwarding details: need-frag with the next-hop MTU, PMTU discovery, reject and
blackhole routes, no route."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.route import RTF_DYNAMIC, RTF_HOST, flags_letters
from rumpnet.testing.vnet import capture


def _echo_df(src: str, dst: str, size: int, ident: int = 0x77) -> bytes:
    """A whole IPv4 packet (for IP_HDRINCL): ICMP echo with DF, checksum and id left 0."""
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"P" * (size - 28))
    icmp[2:4] = struct.pack("!H", in_cksum(icmp))
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 0, 0x4000, 64, 1, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    return hdr + bytes(icmp)


def _recv_icmp(k, fd, want_type: int) -> bytes:
    while True:
        pkt, _ = k.rump_sys_recvfrom(fd, 65535, 0)
        hl = (pkt[0] & 0xF) * 4
        if pkt[hl] == want_type:
            return pkt


def test_need_frag_with_next_hop_mtu_and_pmtu(routed) -> None:
    h1, r, h2 = routed
    r.config.if_set_mtu("wire1", 1000)
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    h1.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    h1.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    # small enough: goes through, and the kernel filled in checksum and id
    h1.rump_sys_sendto(fd, _echo_df("10.0.1.2", "10.0.2.2", 900), 0, ("10.0.2.2", 0))
    rep = _recv_icmp(h1, fd, 0)
    assert len(rep) == 900
    assert h2.inet.ipstat.ips_badsum == 0 and r.inet.ipstat.ips_badsum == 0
    # too big with DF: the router says "need frag", next hop MTU 1000
    h1.rump_sys_sendto(fd, _echo_df("10.0.1.2", "10.0.2.2", 1200), 0, ("10.0.2.2", 0))
    err = _recv_icmp(h1, fd, 3)
    hl = (err[0] & 0xF) * 4
    assert err[hl + 1] == 4
    assert struct.unpack_from("!H", err, hl + 6)[0] == 1000
    assert socket.inet_ntoa(err[12:16]) == "10.0.1.1"
    assert r.inet.ipstat.ips_cantfrag == 1
    # PMTU: h1 now has a host route to h2 carrying the MTU
    rt = h1.config.route_get("10.0.2.2")
    assert rt.plen == 32 and rt.mtu == 1000 and rt.path_mtu == 1000
    assert rt.flags & RTF_HOST and rt.flags & RTF_DYNAMIC and "G" in flags_letters(rt.flags)
    # a DF packet that is too big for the learned MTU now fails at the sender
    with pytest.raises(OSError) as ei:
        h1.rump_sys_sendto(fd, _echo_df("10.0.1.2", "10.0.2.2", 1200), 0, ("10.0.2.2", 0))
    assert ei.value.errno == errno.EMSGSIZE
    # UDP (no DF) is fragmented by the sender, not the router
    rx = h2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    h2.rump_sys_bind(rx, ("0.0.0.0", 4000))
    tx = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    payload = bytes(range(200)) * 6
    h1.rump_sys_sendto(tx, payload, 0, ("10.0.2.2", 4000))
    assert h2.rump_sys_recvfrom(rx, 2000, 0)[0] == payload
    assert h1.inet.ipstat.ips_fragmented == 1 and r.inet.ipstat.ips_fragmented == 0
    # with mtudisc off, the MTU is not learned
    h1.config.route_delete("10.0.2.2", host=True)
    h1.config.sysctl_set("net.inet.ip.mtudisc", 0)
    h1.rump_sys_sendto(fd, _echo_df("10.0.1.2", "10.0.2.2", 1200), 0, ("10.0.2.2", 0))
    _recv_icmp(h1, fd, 3)
    assert h1.config.route_get("10.0.2.2").plen == 0


def test_router_fragments_without_df(vnet, routed) -> None:
    h1, r, h2 = routed
    r.config.if_set_mtu("wire1", 600)
    h2.config.if_set_mtu("wire0", 600)  # one MTU per segment: bigger frames are input errors
    rep = vnet.ping(h1, "10.0.2.2", payload=b"Q" * 1000)
    assert rep is not None and rep[20] == 0 and len(rep) == 1028
    assert r.inet.ipstat.ips_fragmented == 1 and h2.inet.ipstat.ips_reassembled == 1
    assert h2.inet.ipstat.ips_fragmented == 1 and h1.inet.ipstat.ips_reassembled == 1
    assert r.ifnet.lookup("wire1").stats.ierrors == 0


def test_frames_over_the_mtu_are_input_errors(vnet) -> None:
    a, b = vnet.pair()
    b.config.if_set_mtu("wire0", 1000)
    assert vnet.ping(a, "10.0.0.2", payload=b"x" * 900) is not None
    assert vnet.ping(a, "10.0.0.2", payload=b"x" * 1400, timeout=1) is None  # a sends 1428 bytes
    assert b.ifnet.lookup("wire0").stats.ierrors == 1


def test_redirects(vnet) -> None:
    """A router sends a redirect when a packet leaves by the interface it came in on;
    the host takes it from its gateway only."""
    h = vnet.kernel(1)
    r1 = vnet.kernel(2)
    r2 = vnet.kernel(3)
    far = vnet.kernel(4)
    vnet.attach(h, "wire0", "lan", "10.0.5.10/24")
    vnet.attach(r1, "wire0", "lan", "10.0.5.1/24")
    vnet.attach(r2, "wire0", "lan", "10.0.5.2/24")
    vnet.attach(r2, "wire1", "far", "10.0.6.1/24")
    vnet.attach(far, "wire0", "far", "10.0.6.2/24")
    h.config.route_add("default", "10.0.5.1")
    r1.config.route_add("10.0.6.0/24", "10.0.5.2")
    far.config.route_add("default", "10.0.6.1")
    for k in (r1, r2):
        k.config.sysctl_set("net.inet.ip.forwarding", 1)
    assert vnet.ping(h, "10.0.6.2") is not None
    assert r1.inet.ipstat.ips_redirectsent == 1
    rt = h.config.route_get("10.0.6.2")
    assert rt.plen == 32 and rt.gateway == 0x0A000502 and "D" in flags_letters(rt.flags)
    assert vnet.ping(h, "10.0.6.2") is not None
    assert r1.inet.ipstat.ips_redirectsent == 1  # the host now goes straight to r2
    # the redirected route times out after net.inet.icmp.redirtimeout (600 s)
    h.run_for(601)
    assert h.config.route_get("10.0.6.2").plen == 0
    # and traffic goes through the gateway again, which redirects again
    assert vnet.ping(h, "10.0.6.2") is not None
    assert r1.inet.ipstat.ips_redirectsent == 2


def test_reject_and_blackhole_routes_on_host(routed) -> None:
    h1, r, h2 = routed
    h1.config.route_add("10.9.9.9", host=True, reject=True)
    h1.config.route_add("10.8.0.0/16", reject=True)
    h1.config.route_add("10.7.0.0/16", blackhole=True)
    assert flags_letters(h1.config.route_get("10.9.9.9").flags) == "UHRS"
    assert "B" in flags_letters(h1.config.route_get("10.7.1.1").flags)
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(OSError) as ei:
        h1.rump_sys_sendto(fd, b"x", 0, ("10.9.9.9", 9))
    assert ei.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as ei:
        h1.rump_sys_sendto(fd, b"x", 0, ("10.8.1.1", 9))
    assert ei.value.errno == errno.ENETUNREACH
    h1.run_for(5)  # IPv6's start-up traffic (DAD, MLD reports) is over
    out = h1.ifnet.lookup("wire0").stats.opackets
    assert h1.rump_sys_sendto(fd, b"into the void", 0, ("10.7.1.1", 9)) == 13
    h1.run_for(1)
    assert h1.ifnet.lookup("wire0").stats.opackets == out  # silently dropped ...
    assert h1.config.route_get("10.7.1.1").use == 1  # ... by the blackhole route


def test_reject_and_blackhole_routes_on_router(vnet, routed) -> None:
    h1, r, h2 = routed
    r.config.route_add("10.9.0.0/16", reject=True)
    r.config.route_add("10.7.0.0/16", blackhole=True)
    rep = vnet.ping(h1, "10.9.1.1")
    assert rep is not None and rep[20] == 3 and rep[21] == 0  # net unreachable
    assert socket.inet_ntoa(rep[12:16]) == "10.0.1.1"
    assert vnet.ping(h1, "10.7.1.1", timeout=2) is None
    assert r.config.route_get("10.7.1.1").use == 1  # the blackhole route swallowed it
    assert r.inet.ipstat.ips_forward == 0
    # a connected UDP socket learns of the unreachable network as EHOSTUNREACH
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    h1.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    h1.rump_sys_connect(fd, ("10.9.1.1", 53))
    h1.rump_sys_send(fd, b"q", 0)
    with pytest.raises(OSError) as ei:
        h1.rump_sys_recv(fd, 100, 0)
    assert ei.value.errno == errno.EHOSTUNREACH
    # no route at all on the router: host unreachable
    rep = vnet.ping(h1, "192.0.2.1")
    assert rep is not None and rep[20] == 3 and rep[21] == 1
    assert r.inet.ipstat.ips_noroute >= 1


def test_no_route_is_ehostunreach(vnet) -> None:
    a, b = vnet.pair()
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, b"x", 0, ("192.0.2.1", 9))
    assert ei.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as ei:
        a.rump_sys_connect(fd, ("192.0.2.1", 9))
    assert ei.value.errno == errno.EHOSTUNREACH
    raw = a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(raw, b"\x08\x00\xf7\xff\x00\x00\x00\x00", 0, ("192.0.2.1", 0))
    assert ei.value.errno == errno.EHOSTUNREACH
    assert a.inet.ipstat.ips_noroute == 3


def test_forwarding_to_a_host_that_is_down(vnet, routed) -> None:
    """After ARP gave up on a next hop, forwarded packets draw host unreachable; no
    exception escapes packet input (it used to: EHOSTDOWN out of ip_forward)."""
    h1, r, h2 = routed
    r.config.sysctl_set("net.inet.arp.maxtries", 2)
    assert vnet.ping(h1, "10.0.2.99", timeout=5) is None  # resolution fails, packet dropped
    assert r.inet.arpstat.as_dfrdropped == 1
    rep = vnet.ping(h1, "10.0.2.99", timeout=5)
    assert r.sched.errors.count == 0  # (strict mode would have raised it in the ping)
    assert rep is not None and rep[20] == 3 and rep[21] == 1
    assert socket.inet_ntoa(rep[12:16]) == "10.0.1.1"
    assert r.inet.ipstat.ips_cantforward >= 1


def test_pmtu_routes_expire(routed) -> None:
    h1, r, h2 = routed
    h1.config.sysctl_set("net.inet.ip.mtudisctimeout", 100)
    r.config.if_set_mtu("wire1", 1000)
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    h1.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    h1.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    h1.rump_sys_sendto(fd, _echo_df("10.0.1.2", "10.0.2.2", 1200), 0, ("10.0.2.2", 0))
    _recv_icmp(h1, fd, 3)
    assert h1.config.route_get("10.0.2.2").mtu == 1000
    h1.run_for(99)
    assert h1.config.route_get("10.0.2.2").plen == 32
    h1.run_for(2)
    assert h1.config.route_get("10.0.2.2").plen == 0  # the learned MTU timed out


def test_fragmenting_keeps_options(routed) -> None:
    """The first fragment keeps all options, later ones only the "copied" ones."""
    h1, r, h2 = routed
    r.config.if_set_mtu("wire1", 600)
    h2.config.if_set_mtu("wire0", 600)
    opts = b"\x94\x04\x00\x00" + b"\x07\x03\x04" + b"\x00"  # router alert (copied), record route, EOL
    icmp = bytearray(struct.pack("!BBHHH", 8, 0, 0, 0x66, 1) + b"O" * 992)
    icmp[2:4] = struct.pack("!H", in_cksum(icmp))
    pkt = struct.pack("!BBHHHBBH4s4s", 0x47, 0, 28 + len(icmp), 0, 0, 64, 1, 0,
                      socket.inet_aton("10.0.1.2"), socket.inet_aton("10.0.2.2")) + opts + bytes(icmp)
    seen = capture(h2, "wire0")
    watch = h2.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    h2.rump_sys_setsockopt(watch, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    fd = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    h1.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    h1.rump_sys_sendto(fd, pkt, 0, ("10.0.2.2", 0))
    got = h2.rump_sys_recvfrom(watch, 2000, 0)[0]
    assert got[0] == 0x47 and got[20:28] == opts and got[28:] == bytes(icmp)
    ins = [f[14:] for f in seen.frames if f[12:14] == b"\x08\x00" and socket.inet_ntoa(f[30:34]) == "10.0.2.2"]
    assert len(ins) == 2 and r.inet.ipstat.ips_fragmented == 1
    assert ins[0][0] == 0x47 and ins[0][20:28] == opts
    assert ins[1][0] == 0x46 and ins[1][20:24] == b"\x94\x04\x00\x00"


def test_optcopy() -> None:
    from rumpnet.netinet.ip_output import _optcopy

    assert _optcopy(b"\x01\x01\x01\x00") == b""
    lsrr = b"\x83\x07\x04\x00\x00\x00\x00"
    assert _optcopy(lsrr + b"\x00") == lsrr + b"\x00"  # copied, padded to 4
    assert _optcopy(b"\x94\x09\x00\x00") == b""  # length runs past the end: nothing copied


def test_static_route_mtu(routed) -> None:
    h1, r, h2 = routed
    h1.config.route_add("10.0.2.2", "10.0.1.1", host=True, mtu=576)
    rt = h1.config.route_get("10.0.2.2")
    assert rt.mtu == 576 and flags_letters(rt.flags) == "UGHS"
    rx = h2.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    h2.rump_sys_bind(rx, ("0.0.0.0", 4001))
    tx = h1.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    h1.rump_sys_sendto(tx, b"m" * 1000, 0, ("10.0.2.2", 4001))
    assert h2.rump_sys_recvfrom(rx, 2000, 0)[0] == b"m" * 1000
    assert h1.inet.ipstat.ips_ofragments == 2 and h2.inet.ipstat.ips_fragments == 2


def test_hdrincl_header_checks(vnet) -> None:
    a, b = vnet.pair()
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    assert a.rump_sys_getsockopt(fd, socket.IPPROTO_IP, socket.IP_HDRINCL) == 1
    pkt = bytearray(_echo_df("0.0.0.0", "10.0.0.2", 100))
    bad = bytearray(pkt)
    bad[2:4] = struct.pack("!H", 90)  # ip_len is not the packet's length
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, bytes(bad), 0, ("10.0.0.2", 0))
    assert ei.value.errno == errno.EINVAL
    bad = bytearray(pkt)
    bad[0] = 0x4F  # header longer than the packet
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, bytes(bad[:40]), 0, ("10.0.0.2", 0))
    assert ei.value.errno == errno.EINVAL
    # source 0 and id 0 are filled in, the checksum computed: b answers
    watch = a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    a.rump_sys_setsockopt(watch, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    a.rump_sys_sendto(fd, bytes(pkt), 0, ("10.0.0.2", 0))
    rep = _recv_icmp(a, watch, 0)
    assert socket.inet_ntoa(rep[16:20]) == "10.0.0.1" and len(rep) == 100
