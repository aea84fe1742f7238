"""TCP over IPv6 where it differs from IPv4 (the rest of the TCP matrix runs over both
families: test_tcp_sockets, test_tcp_errors, test_tcp_transfer): the MSS for a 60-byte
header, Packet Too Big lowering the path MTU of a connection that then adapts, a forged
Packet Too Big ignored and counted, link-local peers with zones, and the two families'
port spaces (virtual time, in-process wires)."""

from __future__ import annotations

import errno
import hashlib
import select
import socket
import struct

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Repr, emit
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, ip6_build
from rumpnet.route import RTF_GATEWAY, RTF_STATIC, RTF_UP, Rtentry6

AF6, STREAM = socket.AF_INET6, socket.SOCK_STREAM
H1, R1, R2, H2 = "fc00:0:0:1::2", "fc00:0:0:1::1", "fc00:0:0:2::1", "fc00:0:0:2::2"


@pytest.fixture
def narrow(vnet):
    """h1 (1500) -- r -- (1280) -- h2 (1500): the router's second link is narrower than
    both hosts' own, so h1 learns it only from the router's Packet Too Big."""
    h1, r, h2 = vnet.kernel(1, hostname="h1"), vnet.kernel(2, hostname="r"), vnet.kernel(3, hostname="h2")
    for k, ifname, seg, addr in ((h1, "wire0", "n1", H1), (r, "wire0", "n1", R1), (r, "wire1", "n2", R2),
                                 (h2, "wire0", "n2", H2)):
        k.inet6.add_address(vnet.attach(k, ifname, seg, None), in6.pton(addr), 64)
    r.ifnet.lookup("wire1").set_mtu(1280)
    for k, gw in ((h1, R1), (h2, R2)):
        k.inet6.routes.add(Rtentry6(0, 0, in6.pton(gw), RTF_UP | RTF_GATEWAY | RTF_STATIC, k.ifnet.lookup("wire0")))
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    vnet.sched.run_for(3)
    return h1, r, h2


def _connected(a, b, host: str, port: int = 80):
    lfd = b.rump_sys_socket(AF6, STREAM, 0)
    b.rump_sys_bind(lfd, ("::", port))
    b.rump_sys_listen(lfd, 4)
    c = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_connect(c, (host, port))
    s, _ = b.rump_sys_accept(lfd)
    return lfd, c, s


def _cb(k):
    (cb,) = [x for x in k.inet6.tcp6.proto.conns.values() if x.state.name == "ESTABLISHED"]
    return cb


def test_packet_too_big_lowers_the_path_mtu_and_tcp_adapts(narrow) -> None:
    h1, r, h2 = narrow
    _, c, s = _connected(h1, h2, H2)
    assert _cb(h1).t_maxseg == 1500 - 60        # what h2 announced (its own link)
    data = bytes(range(256)) * 800
    h1.rump_sys_send(c, data, 0)
    got = b""
    while len(got) < len(data):
        got += h2.rump_sys_recv(s, 65536, 0)
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert r.inet6.node.icmp6stat.icp6s_opacket_too_big >= 1
    assert h1.inet6.node.icmp6.pmtu.get(in6.pton(H2), h1.clock_now()) == 1280
    assert _cb(h1).t_maxseg == 1280 - 60        # TCP took the path MTU (RFC 8201 5.2)
    assert h1.inet6.tcp6.stats.tcps_sndrexmitpack >= 1     # the too-big segments again
    rt = h1.inet6.routes.exact(in6.pton(H2), 128)        # route get shows it
    assert rt is not None and rt.mtu == 1280
    assert h1.inet6.node.icmp6stat.icp6s_pmtuignored == 0


def test_forged_packet_too_big_for_no_connection_is_ignored_and_counted(narrow) -> None:
    h1, _, h2 = narrow
    _, c, _ = _connected(h1, h2, H2)
    cb = _cb(h1)
    before = h1.inet6.node.icmp6stat.icp6s_pmtuignored
    # It quotes one of h1's own packets (its source is ours), but no connection of h1's
    # has that segment in flight: another port, and then a sequence number out of window.
    for sport, seq in ((cb.lport + 1, cb.snd_una), (cb.lport, (cb.snd_max + 100000) & 0xFFFFFFFF)):
        quoted = ip6_build(in6.pton(H1), in6.pton(H2), 6,
                           struct.pack("!HHII", sport, 80, seq, 0) + bytes(1232 - 40 - 12), 64)
        ptb = ip6_build(in6.pton(R1), in6.pton(H1), IPPROTO_ICMPV6,
                        emit(Icmp6Repr(2, 0, 1280, quoted[:1232]), in6.pton(R1), in6.pton(H1)), 64)
        h1.sched.run(lambda p=ptb: h1.inet6.ether_input(h1.ifnet.lookup("wire0"), memoryview(p), 0))
    assert h1.inet6.node.icmp6stat.icp6s_pmtuignored == before + 2
    assert h1.inet6.node.icmp6.pmtu.get(in6.pton(H2), h1.clock_now()) is None
    assert _cb(h1).t_maxseg == cb.t_maxseg
    h1.rump_sys_send(c, b"still fine", 0)


def test_mss_is_the_path_mtu_less_60_bytes(vnet) -> None:
    a, b = vnet.kernel(1), vnet.kernel(2)
    for k, addr, mtu in ((a, "fc00::1", 1500), (b, "fc00::2", 1280)):
        ifp = vnet.attach(k, "wire0", "mss", None)
        ifp.set_mtu(mtu)
        k.inet6.add_address(ifp, in6.pton(addr), 64)
    vnet.sched.run_for(3)
    _connected(a, b, "fc00::2")
    assert _cb(a).t_maxseg == 1220 and _cb(b).t_maxseg == 1220     # RFC 8200 8.3
    assert a.rump_sys_getsockopt(list(a.curproc.fdt.files)[-1], socket.IPPROTO_TCP, socket.TCP_MAXSEG) <= 1220


def test_link_local_peers_with_zones(vnet) -> None:
    a, b = vnet.kernel(1), vnet.kernel(2)
    for k in (a, b):
        vnet.attach(k, "wire0", "ll", None)
    vnet.sched.run_for(3)
    b_ll = in6.ntop(b.inet6.node.ifaddrs.get(b.ifnet.lookup("wire0").index).linklocal().addr)
    _, c, s = _connected(a, b, f"{b_ll}%wire0")
    peer = a.rump_sys_getpeername(c)
    assert peer == (f"{b_ll}%wire0", 80, 0, a.ifnet.lookup("wire0").index)
    name = b.rump_sys_getpeername(s)
    assert name[0].endswith("%wire0") and name[3] == b.ifnet.lookup("wire0").index
    a.rump_sys_send(c, b"over link-local", 0)
    assert b.rump_sys_recv(s, 100, 0) == b"over link-local"


def test_each_family_has_its_own_port_space(vnet) -> None:
    a, b = vnet.pair()
    a.inet6.add_address(a.ifnet.lookup("wire0"), in6.pton("fc00::1"), 64, 0x20)
    six = a.rump_sys_socket(AF6, STREAM, 0)
    four = a.rump_sys_socket(socket.AF_INET, STREAM, 0)
    a.rump_sys_bind(six, ("::", 80))
    a.rump_sys_bind(four, ("0.0.0.0", 80))      # IPV6_V6ONLY (on by default): no clash
    assert a.rump_sys_getsockopt(six, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    again = a.rump_sys_socket(AF6, STREAM, 0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(again, ("::", 80))
    assert ei.value.errno == 98   # EADDRINUSE
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(again, ("fc00::77", 0))
    assert ei.value.errno == 99   # EADDRNOTAVAIL


def test_unicast_hops_and_tclass_reach_the_segments(vnet) -> None:
    a, b = vnet.pair()
    for k, addr in ((a, "fc00::1"), (b, "fc00::2")):
        k.inet6.add_address(k.ifnet.lookup("wire0"), in6.pton(addr), 64, 0x20)
    seen: list[tuple[int, int]] = []

    class Tap:
        def write(self, frame, ts):  # noqa: ANN001 - a bpf writer
            f = bytes(frame)
            if f[12:14] == b"\x86\xdd" and f[20] == 6 and f[22:38] == in6.pack(in6.pton("fc00::1")):
                seen.append((f[21], ((f[14] & 0x0F) << 4) | (f[15] >> 4)))     # hop limit, tclass

        def close(self) -> None:
            pass

    b.ifnet.lookup("wire0").bpf_attach(Tap())
    lfd = b.rump_sys_socket(AF6, STREAM, 0)
    b.rump_sys_bind(lfd, ("::", 80))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(c, socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 9)
    a.rump_sys_setsockopt(c, socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x28)
    assert a.rump_sys_getsockopt(c, socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS) == 9
    a.rump_sys_connect(c, ("fc00::2", 80))
    s, _ = b.rump_sys_accept(lfd)
    a.rump_sys_send(c, b"marked", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"marked"
    assert seen and all(x == (9, 0x28) for x in seen)


def test_v4_mapped_connect_and_listen_when_v6only_is_off(vnet) -> None:
    """RFC 4291 2.5.5.2 / RFC 3493 3.7: an AF_INET6 stream socket with IPV6_V6ONLY off
    speaks IPv4 to ::ffff:a.b.c.d and names both ends that way; with it on, EINVAL."""
    a, b = vnet.pair()
    lst4 = b.rump_sys_socket(socket.AF_INET, STREAM, 0)
    b.rump_sys_bind(lst4, ("0.0.0.0", 80))
    b.rump_sys_listen(lst4, 4)
    six = a.rump_sys_socket(AF6, STREAM, 0)
    with pytest.raises(OSError) as ei:                # IPV6_V6ONLY is on by default
        a.rump_sys_connect(six, ("::ffff:10.0.0.2", 80))
    assert ei.value.errno == errno.EINVAL
    dual = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(dual, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    a.rump_sys_connect(dual, ("::ffff:10.0.0.2", 80))
    conn, peer = b.rump_sys_accept(lst4)
    local = a.rump_sys_getsockname(dual)
    assert local[0] == "::ffff:10.0.0.1" and peer == ("10.0.0.1", local[1])
    assert a.rump_sys_getpeername(dual) == ("::ffff:10.0.0.2", 80, 0, 0)
    a.rump_sys_send(dual, b"over IPv4", 0)
    assert b.rump_sys_recv(conn, 100, 0) == b"over IPv4"
    b.rump_sys_send(conn, b"back", 0)
    assert a.rump_sys_recv(dual, 100, 0) == b"back"
    m2 = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(m2, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    a.rump_sys_bind(m2, ("::ffff:10.0.0.1", 0))
    with pytest.raises(OSError) as ei:                # a native IPv6 address on a mapped socket
        a.rump_sys_connect(m2, ("fc00::2", 80))
    assert ei.value.errno == errno.EINVAL
    # a listener bound to a v4-mapped address accepts IPv4 and names its peers mapped
    ml = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(ml, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    a.rump_sys_bind(ml, ("::ffff:10.0.0.1", 81))
    a.rump_sys_listen(ml, 4)
    c4 = b.rump_sys_socket(socket.AF_INET, STREAM, 0)
    b.rump_sys_connect(c4, ("10.0.0.1", 81))
    acc, apeer = a.rump_sys_accept(ml)
    assert apeer[0] == "::ffff:10.0.0.2" and len(apeer) == 4
    assert a.rump_sys_getsockname(acc)[:2] == ("::ffff:10.0.0.1", 81)
    b.rump_sys_send(c4, b"to mapped", 0)
    assert a.rump_sys_recv(acc, 100, 0) == b"to mapped"
    # a wildcard-bound dual socket takes its port to IPv4's space when it connects mapped
    wild = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(wild, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    a.rump_sys_bind(wild, ("::", 0))
    port = a.rump_sys_getsockname(wild)[1]
    a.rump_sys_connect(wild, ("::ffff:10.0.0.2", 80))
    assert b.rump_sys_accept(lst4)[1] == ("10.0.0.1", port)
    # its port is IPv4's: an IPv4 socket cannot take it
    four = a.rump_sys_socket(socket.AF_INET, STREAM, 0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(four, ("10.0.0.1", 81))
    assert ei.value.errno == errno.EADDRINUSE


def test_dual_stack_listener_takes_both_families(vnet) -> None:
    """IPV6_V6ONLY off and bound to ::: one listener for IPv6 and IPv4 connections, the
    IPv4 ones accepted as ::ffff:a.b.c.d (RFC 3493 5.3); IPv4's port is taken while it
    listens and free after close."""
    from rumpnet.sys_socket import pollfd

    a, b = vnet.pair()
    for k, addr in ((a, "fc00::1"), (b, "fc00::2")):
        k.inet6.add_address(k.ifnet.lookup("wire0"), in6.pton(addr), 64, 0x20)
    lst = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(lst, socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    a.rump_sys_bind(lst, ("::", 82))
    a.rump_sys_listen(lst, 4)
    four = a.rump_sys_socket(socket.AF_INET, STREAM, 0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(four, ("0.0.0.0", 82))
    assert ei.value.errno == errno.EADDRINUSE
    c4 = b.rump_sys_socket(socket.AF_INET, STREAM, 0)
    b.rump_sys_connect(c4, ("10.0.0.1", 82))
    assert a.rump_sys_poll([pollfd(lst, select.POLLIN)], 1, 5000) == 1
    acc4, peer4 = a.rump_sys_accept(lst)
    assert peer4 == ("::ffff:10.0.0.2", b.rump_sys_getsockname(c4)[1], 0, 0)
    c6 = b.rump_sys_socket(AF6, STREAM, 0)
    b.rump_sys_connect(c6, ("fc00::1", 82))
    acc6, peer6 = a.rump_sys_accept(lst)
    assert peer6[0] == "fc00::2"
    for acc, c in ((acc4, c4), (acc6, c6)):
        b.rump_sys_send(c, b"both", 0)
        assert a.rump_sys_recv(acc, 100, 0) == b"both"
    # IPv4's port is free again once the listener closes (SO_REUSEADDR: the accepted
    # connection still holds 10.0.0.1:82; a listener would refuse it even so)
    a.rump_sys_setsockopt(four, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(four, ("0.0.0.0", 82))
    assert ei.value.errno == errno.EADDRINUSE
    a.rump_sys_close(lst)
    a.rump_sys_bind(four, ("0.0.0.0", 82))


def test_ecn_codepoint_in_the_traffic_class_both_ways(vnet) -> None:
    """ECN over IPv6 (RFC 3168 5 and 6.1; the ECN field is the Traffic Class's two low
    bits, RFC 8200 7): new data leaves ECT(0) with IPV6_TCLASS's DSCP kept, everything
    else Not-ECT, and the receiver's TCP reads the field (tcps_ecn_ect)."""
    a, b = vnet.pair()
    for k, addr in ((a, "fc00::1"), (b, "fc00::2")):
        k.inet6.add_address(k.ifnet.lookup("wire0"), in6.pton(addr), 64, 0x20)
        k.sysctl("-w", "net.inet.tcp.ecn.enable=1")
    seen: list[tuple[int, int]] = []

    class Tap:
        def write(self, frame, ts):  # noqa: ANN001 - a bpf writer
            f = bytes(frame)
            if f[12:14] == b"\x86\xdd" and f[20] == 6 and f[22:38] == in6.pack(in6.pton("fc00::1")):
                tcp_payload = struct.unpack_from("!H", f, 18)[0] - (f[66] >> 4) * 4
                seen.append((((f[14] & 0x0F) << 4) | (f[15] >> 4), tcp_payload))

        def close(self) -> None:
            pass

    b.ifnet.lookup("wire0").bpf_attach(Tap())
    lfd = b.rump_sys_socket(AF6, STREAM, 0)
    b.rump_sys_bind(lfd, ("::", 80))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(c, socket.IPPROTO_IPV6, socket.IPV6_TCLASS, 0x2B)   # AF11 + CE asked
    a.rump_sys_connect(c, ("fc00::2", 80))
    s, _ = b.rump_sys_accept(lfd)
    a.rump_sys_send(c, b"x" * 5000, 0)
    got = b""
    while len(got) < 5000:
        got += b.rump_sys_recv(s, 8192, 0)
    data = [t for t, n in seen if n > 0]
    assert data and all(t == 0x2A for t in data)                  # DSCP 0x28 | ECT(0)
    assert all(t == 0x28 for t, n in seen if n == 0)              # SYN, ACKs: Not-ECT
    assert b.inet.tcp.stats.tcps_ecn_ect >= len(data) > 0
