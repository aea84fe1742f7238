"""AF_INET6 sockets through the kernel (UDP, raw ICMPv6): Python's 4-tuple addresses,
zones, IPV6_V6ONLY and v4-mapped addresses, the IPPROTO_IPV6 options, recvmsg/sendmsg
ancillary data, and the errno a BSD kernel gives (virtual time, in-process wires)."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Filter
from rumpnet.netinet6.in6_var import IN6_IFF_TENTATIVE
from rumpnet.testing.vnet import VNet

AF6, DGRAM, RAW = socket.AF_INET6, socket.SOCK_DGRAM, socket.SOCK_RAW
V6 = socket.IPPROTO_IPV6
A6, B6 = "fc00:0:0:1::1", "fc00:0:0:1::2"


@pytest.fixture
def pair6(vnet: VNet):
    """a (10.0.0.1, fc00:0:0:1::1) and b (10.0.0.2, fc00:0:0:1::2) on one wire."""
    a, b = vnet.kernel(1, hostname="a"), vnet.kernel(2, hostname="b")
    for k, v4, v6 in ((a, "10.0.0.1/24", A6), (b, "10.0.0.2/24", B6)):
        ifp = vnet.attach(k, "wire0", "lan", v4)
        k.inet6.add_address(ifp, in6.pton(v6), 64)
    vnet.sched.run_for(3)
    return a, b


def udp(k, port: int | None = None, addr: str = "::"):
    fd = k.rump_sys_socket(AF6, DGRAM, 0)
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    if port is not None:
        k.rump_sys_bind(fd, (addr, port))
    return fd


def linklocal(k, ifname: str = "wire0") -> str:
    return in6.ntop(k.inet6.node.ifaddrs.get(k.ifnet.lookup(ifname).index).linklocal().addr)


def test_udp_both_ways_with_4_tuple_addresses(pair6) -> None:
    a, b = pair6
    s, c = udp(b, 7), udp(a)
    assert a.rump_sys_sendto(c, b"hello", 0, (B6, 7)) == 5
    data, src = b.rump_sys_recvfrom(s, 100, 0)
    assert data == b"hello" and src[0] == A6 and src[2:] == (0, 0) and len(src) == 4
    b.rump_sys_sendto(s, b"back", 0, src)
    assert a.rump_sys_recvfrom(c, 100, 0) == (b"back", (B6, 7, 0, 0))
    assert a.rump_sys_getsockname(c) == ("::", src[1], 0, 0)
    a.rump_sys_connect(c, (B6, 7))
    assert a.rump_sys_getsockname(c) == (A6, src[1], 0, 0) and a.rump_sys_getpeername(c) == (B6, 7, 0, 0)
    assert b.inet6.udp6.stats.udp6s_ipackets == 1 and a.inet6.udp6.stats.udp6s_opackets == 1


def test_link_local_with_zone_names_and_scope_ids(pair6) -> None:
    a, b = pair6
    s, c = udp(b, 7), udp(a)
    b_ll, a_ll = linklocal(b), linklocal(a)
    wire0 = a.ifnet.lookup("wire0").index
    a.rump_sys_sendto(c, b"by name", 0, (f"{b_ll}%wire0", 7))
    a.rump_sys_sendto(c, b"by id", 0, (b_ll, 7, 0, wire0))
    for want in (b"by name", b"by id"):
        data, src = b.rump_sys_recvfrom(s, 100, 0)
        assert data == want and src == (f"{a_ll}%wire0", src[1], 0, b.ifnet.lookup("wire0").index)
    with pytest.raises(OSError) as ei:       # a link-local address needs its zone
        a.rump_sys_sendto(c, b"x", 0, (b_ll, 7))
    assert ei.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as ei:       # the zone disagrees with the scope id
        a.rump_sys_sendto(c, b"x", 0, (f"{b_ll}%wire0", 7, 0, wire0 + 5))
    assert ei.value.errno == errno.EINVAL


def test_a_5000_byte_datagram_across_a_1500_mtu_router_arrives_whole(vnet) -> None:
    h1, r, h2 = vnet.kernel(1), vnet.kernel(2), vnet.kernel(3)
    for k, ifname, seg, addr in ((h1, "wire0", "n1", "fc00:0:0:1::2"), (r, "wire0", "n1", "fc00:0:0:1::1"),
                                 (r, "wire1", "n2", "fc00:0:0:2::1"), (h2, "wire0", "n2", "fc00:0:0:2::2")):
        k.inet6.add_address(vnet.attach(k, ifname, seg, None), in6.pton(addr), 64)
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    from rumpnet.route import RTF_GATEWAY, RTF_STATIC, RTF_UP, Rtentry6

    for k, gw in ((h1, "fc00:0:0:1::1"), (h2, "fc00:0:0:2::1")):
        k.inet6.routes.add(Rtentry6(0, 0, in6.pton(gw), RTF_UP | RTF_GATEWAY | RTF_STATIC, k.ifnet.lookup("wire0")))
    vnet.sched.run_for(3)
    s, c = udp(h2, 9), udp(h1)
    blob = bytes(range(256)) * 19 + bytes(136)       # 5000 bytes
    h1.rump_sys_sendto(c, blob, 0, ("fc00:0:0:2::2", 9))
    data, _ = h2.rump_sys_recvfrom(s, 65535, 0)
    assert data == blob
    assert h1.inet6.node.ip6stat.ip6s_fragmented == 1 and h1.inet6.node.ip6stat.ip6s_ofragments == 4
    assert r.inet6.node.ip6stat.ip6s_forward == 4 and h2.inet6.node.ip6stat.ip6s_reassembled == 1


def test_v6only_is_on_by_default_and_v4_mapped_when_off(pair6) -> None:
    a, b = pair6
    six = udp(b, 7)
    assert b.rump_sys_getsockopt(six, V6, socket.IPV6_V6ONLY) == 1
    four = b.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    b.rump_sys_bind(four, ("0.0.0.0", 7))        # no clash: the v6 socket is IPv6 only
    dual = b.rump_sys_socket(AF6, DGRAM, 0)
    b.rump_sys_setsockopt(dual, V6, socket.IPV6_V6ONLY, 0)
    with pytest.raises(OSError) as ei:
        b.rump_sys_bind(dual, ("::", 7))        # both families' port 7 are taken
    assert ei.value.errno == errno.EADDRINUSE
    b.rump_sys_setsockopt(dual, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    b.rump_sys_bind(dual, ("::", 8))
    with pytest.raises(OSError) as ei:
        b.rump_sys_setsockopt(dual, V6, socket.IPV6_V6ONLY, 1)   # too late once bound
    assert ei.value.errno == errno.EINVAL
    c4 = a.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    a.rump_sys_sendto(c4, b"four", 0, ("10.0.0.2", 8))
    data, src = b.rump_sys_recvfrom(dual, 100, 0)
    assert data == b"four" and src[0] == "::ffff:10.0.0.1" and len(src) == 4
    b.rump_sys_sendto(dual, b"mapped back", 0, src)
    assert a.rump_sys_recvfrom(c4, 100, 0) == (b"mapped back", ("10.0.0.2", 8))
    with pytest.raises(OSError) as ei:          # IPv6-only sockets never send IPv4
        b.rump_sys_sendto(six, b"x", 0, ("::ffff:10.0.0.1", 9))
    assert ei.value.errno == errno.EINVAL
    b.sysctl("-w", "net.inet6.ip6.v6only=0")
    fresh = b.rump_sys_socket(AF6, DGRAM, 0)
    assert b.rump_sys_getsockopt(fresh, V6, socket.IPV6_V6ONLY) == 0
    b.rump_sys_close(dual)
    b.rump_sys_bind(fresh, ("::", 8))           # the mapped stand-in went with the close


def test_unicast_hops_tclass_and_recvmsg_ancillary_data(pair6) -> None:
    a, b = pair6
    s, c = udp(b, 7), udp(a)
    for opt in (socket.IPV6_RECVPKTINFO, socket.IPV6_RECVHOPLIMIT, socket.IPV6_RECVTCLASS):
        b.rump_sys_setsockopt(s, V6, opt, 1)
    a.rump_sys_setsockopt(c, V6, socket.IPV6_UNICAST_HOPS, 7)
    a.rump_sys_setsockopt(c, V6, socket.IPV6_TCLASS, 0xB8)
    assert a.rump_sys_getsockopt(c, V6, socket.IPV6_UNICAST_HOPS) == 7
    a.rump_sys_sendto(c, b"ancillary", 0, (B6, 7))
    data, anc, flags, src = b.rump_sys_recvmsg(s, 100, 1024, 0)
    assert data == b"ancillary" and flags == 0 and src[0] == A6
    got = {t: d for level, t, d in anc if level == V6}
    addr, ifindex = struct.unpack("=16sI", got[socket.IPV6_PKTINFO])
    assert socket.inet_ntop(AF6, addr) == B6 and ifindex == b.ifnet.lookup("wire0").index
    assert struct.unpack("=i", got[socket.IPV6_HOPLIMIT])[0] == 7
    assert struct.unpack("=i", got[socket.IPV6_TCLASS])[0] == 0xB8
    # sendmsg: hop limit and source per datagram; MSG_TRUNC and MSG_CTRUNC on the way in
    a_ll = linklocal(a)
    pktinfo = socket.inet_pton(AF6, A6) + struct.pack("=I", 0)
    a.rump_sys_sendmsg(c, [b"per ", b"datagram"], [(V6, socket.IPV6_HOPLIMIT, struct.pack("=i", 3)),
                                                   (V6, socket.IPV6_PKTINFO, pktinfo)], 0, (B6, 7))
    data, anc, flags, src = b.rump_sys_recvmsg(s, 4, 8, 0)
    assert data == b"per " and flags & socket.MSG_TRUNC and flags & socket.MSG_CTRUNC and src[0] == A6
    with pytest.raises(OSError) as ei:    # a source that is not ours
        a.rump_sys_sendmsg(c, [b"x"], [(V6, socket.IPV6_PKTINFO, socket.inet_pton(AF6, "fc00::99") + bytes(4))],
                           0, (B6, 7))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    assert a_ll.startswith("fe80::")


def test_multicast_join_hops_interface_and_loop(pair6) -> None:
    a, b = pair6
    group = "ff12::4242"
    mreq_b = socket.inet_pton(AF6, group) + struct.pack("=I", b.ifnet.lookup("wire0").index)
    s = udp(b, 5000)
    reports = b.inet6.node.mld6stat.mlds_snd_reports
    b.rump_sys_setsockopt(s, V6, socket.IPV6_JOIN_GROUP, mreq_b)
    b.rump_sys_setsockopt(s, V6, socket.IPV6_RECVHOPLIMIT, 1)
    b.run_for(0.5)
    assert b.inet6.node.mld6stat.mlds_snd_reports > reports         # an MLDv2 report went out
    with pytest.raises(OSError) as ei:
        b.rump_sys_setsockopt(s, V6, socket.IPV6_JOIN_GROUP, mreq_b)
    assert ei.value.errno == errno.EADDRINUSE
    c = udp(a)
    a.rump_sys_setsockopt(c, V6, socket.IPV6_MULTICAST_IF, a.ifnet.lookup("wire0").index)
    a.rump_sys_setsockopt(c, V6, socket.IPV6_MULTICAST_HOPS, 5)
    a.rump_sys_sendto(c, b"to the group", 0, (group, 5000))
    data, anc, _, src = b.rump_sys_recvmsg(s, 100, 256, 0)
    # a link-scope group: from the link-local address (RFC 6724 rule 2)
    assert data == b"to the group" and src[0] == f"{linklocal(a)}%wire0"
    assert struct.unpack("=i", anc[0][2])[0] == 5
    # The sender's own membership: looped back by default, not with IPV6_MULTICAST_LOOP 0.
    mine = udp(a, 5000)
    a.rump_sys_setsockopt(mine, V6, socket.IPV6_JOIN_GROUP, socket.inet_pton(AF6, group)
                          + struct.pack("=I", a.ifnet.lookup("wire0").index))
    a.rump_sys_sendto(c, b"looped", 0, (group, 5000))
    assert a.rump_sys_recvfrom(mine, 100, 0)[0] == b"looped"
    a.rump_sys_setsockopt(c, V6, socket.IPV6_MULTICAST_LOOP, 0)
    a.rump_sys_sendto(c, b"not looped", 0, (group, 5000))
    assert b.rump_sys_recvfrom(s, 100, 0)[0] == b"looped" and b.rump_sys_recvfrom(s, 100, 0)[0] == b"not looped"
    a.rump_sys_setsockopt(mine, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.5)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recvfrom(mine, 100, 0)
    assert ei.value.errno == errno.EAGAIN
    # Leaving: the group's datagrams are not for this node any more.
    b.rump_sys_setsockopt(s, V6, socket.IPV6_LEAVE_GROUP, mreq_b)
    before, udp_in = b.inet6.node.ip6stat.ip6s_notmember, b.inet6.udp6.stats.udp6s_ipackets
    a.rump_sys_sendto(c, b"gone", 0, (group, 5000))
    b.run_for(1)
    assert b.inet6.node.ip6stat.ip6s_notmember > before and b.inet6.udp6.stats.udp6s_ipackets == udp_in


def test_raw_icmpv6_echo_and_icmp6_filter(pair6) -> None:
    a, b = pair6
    fd = a.rump_sys_socket(AF6, RAW, socket.IPPROTO_ICMPV6)
    a.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1.0)
    only_replies = Icmp6Filter(0)
    only_replies.setpass(129)
    a.rump_sys_setsockopt(fd, socket.IPPROTO_ICMPV6, 1, only_replies.to_bytes())
    echo = struct.pack("!BBHHH", 128, 0, 0, 0x1234, 1) + b"raw ping"   # the kernel sums it
    a.rump_sys_sendto(fd, echo, 0, (B6, 0))
    msg, src = a.rump_sys_recvfrom(fd, 1500, 0)
    assert msg[0] == 129 and msg[4:8] == struct.pack("!HH", 0x1234, 1) and msg[8:] == b"raw ping"
    assert src == (B6, 0, 0, 0)
    blocked = Icmp6Filter(0)
    a.rump_sys_setsockopt(fd, socket.IPPROTO_ICMPV6, 1, blocked.to_bytes())
    a.rump_sys_sendto(fd, echo, 0, (B6, 0))
    with pytest.raises(OSError) as ei:
        a.rump_sys_recvfrom(fd, 1500, 0)
    assert ei.value.errno == errno.EAGAIN
    assert a.rump_sys_getsockopt(fd, socket.IPPROTO_ICMPV6, 1) == blocked.to_bytes()
    with pytest.raises(OSError) as ei:    # ICMPv6's checksum offset is the kernel's (RFC 3542 3.1)
        a.rump_sys_setsockopt(fd, V6, socket.IPV6_CHECKSUM, 4)
    assert ei.value.errno == errno.EINVAL


def test_errors_a_bsd_kernel_gives(pair6) -> None:
    a, b = pair6
    fd = a.rump_sys_socket(AF6, DGRAM, 0)
    for addr, code in ((("fc00::99", 7), errno.EADDRNOTAVAIL), (("::ffff:10.9.9.9", 7), errno.EINVAL),
                       (("not an address", 7), errno.EINVAL), (("::", 7, 1 << 20), errno.EINVAL)):
        with pytest.raises(OSError) as ei:
            a.rump_sys_bind(fd, addr)
        assert ei.value.errno == code, addr
    # An address still under DAD cannot be bound (RFC 4862 5.4).
    ifp = a.ifnet.lookup("wire0")
    a.inet6.add_address(ifp, in6.pton("fc00:0:0:1::77"), 64)
    assert a.inet6.addresses(ifp)[-1].flags & IN6_IFF_TENTATIVE
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(fd, ("fc00:0:0:1::77", 7))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    a.run_for(3)
    a.rump_sys_bind(fd, ("fc00:0:0:1::77", 7))
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, b"x", 0, ("fc00:0:9::1", 7))       # no route
    assert ei.value.errno == errno.EHOSTUNREACH
    with pytest.raises(OSError) as ei:
        a.rump_sys_socket(AF6, socket.SOCK_SEQPACKET, 0)
    assert ei.value.errno == errno.ESOCKTNOSUPPORT
    # Port unreachable comes back to a connected socket as ECONNREFUSED.
    c = udp(a)
    a.rump_sys_connect(c, (B6, 99))
    a.rump_sys_send(c, b"anyone?", 0)
    a.run_for(1)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recv(c, 100, 0)
    assert ei.value.errno == errno.ECONNREFUSED
    assert b.inet6.udp6.stats.udp6s_noport == 1 and b.inet6.node.icmp6stat.icp6s_odst_unreach_noport == 1


def test_a_zero_udp_checksum_is_dropped_and_counted(pair6) -> None:
    a, b = pair6
    s = udp(b, 7)
    from rumpnet.netinet6.ip6 import ip6_build

    seg = struct.pack("!HHHH", 1234, 7, 8 + 4, 0) + b"zero"
    pkt = ip6_build(in6.pton(A6), in6.pton(B6), 17, seg, 64)
    wire0 = b.ifnet.lookup("wire0")
    b.sched.run(lambda: b.inet6.ether_input(wire0, memoryview(pkt), 0))
    assert b.inet6.udp6.stats.udp6s_nosum == 1
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.2)
    with pytest.raises(OSError):
        b.rump_sys_recvfrom(s, 100, 0)


def test_socket_object_over_ipv6(pair6) -> None:
    a, b = pair6
    with b.socket(AF6, DGRAM) as s, a.socket(AF6, DGRAM) as c:
        s.bind(("::", 53))
        c.sendto(b"dns?", (B6, 53))
        data, src = s.recvfrom(100)
        assert data == b"dns?" and src[0] == A6
