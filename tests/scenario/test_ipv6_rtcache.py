"""IPv6's per-flow output cache (``ip6_rtcache``): what it sends is byte for byte what the
full path sends (plain segments and superframes cut in software), and a route change,
an address removal and a neighbour change each take effect on the very next packet
(virtual time, an in-process wire). Timing is measured in bench/, never here."""

from __future__ import annotations

import socket
import struct

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.ip6_rtcache import tcp_gso_segments
from rumpnet.netinet6.nd6 import ND6_LLINFO_DELAY, ND6_LLINFO_REACHABLE, ND6_LLINFO_STALE
from rumpnet.route import RTF_BLACKHOLE, RTF_HOST, RTF_STATIC, RTF_UP, Rtentry6

AF6, STREAM = socket.AF_INET6, socket.SOCK_STREAM
A, B = "fc00:0:0:9::1", "fc00:0:0:9::2"


class Frames:
    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def write(self, frame: bytes | bytearray | memoryview, ts: float) -> None:
        self.frames.append(bytes(frame))

    def ip6_out(self, mac: bytes) -> list[bytes]:
        """IPv6 frames sent by the interface with MAC ``mac``."""
        return [f for f in self.frames if f[6:12] == mac and f[12:14] == b"\x86\xdd"]


def _kernels(vnet):
    """a (A) and b (B) on one wire, their addresses past DAD."""
    a, b = vnet.kernel(1), vnet.kernel(2)
    for k, addr in ((a, A), (b, B)):
        k.inet6.add_address(vnet.attach(k, "wire0", "rtc", None), in6.pton(addr), 64)
    vnet.sched.run_for(3)
    return a, b


@pytest.fixture
def pair(vnet):
    """a -- b on one wire, a TCP connection a -> b established, a's frames captured."""
    a, b = _kernels(vnet)
    lfd = b.rump_sys_socket(AF6, STREAM, 0)
    b.rump_sys_bind(lfd, ("::", 80))
    b.rump_sys_listen(lfd, 4)
    c = a.rump_sys_socket(AF6, STREAM, 0)
    a.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # each send a segment
    a.rump_sys_connect(c, (B, 80))
    s, _ = b.rump_sys_accept(lfd)
    ifp = a.ifnet.lookup("wire0")
    cap = Frames()
    ifp.bpf_attach(cap)
    return a, b, c, s, ifp, cap


def _send(a, b, c, s, data: bytes) -> bytes:
    a.rump_sys_send(c, data, 0)
    got = b""
    for _ in range(100):
        if len(got) >= len(data):
            break
        got += b.rump_sys_recv(s, 65536, 0)
    return got


def _flow(a):
    (cb,) = [x for x in a.inet6.tcp6.proto.conns.values() if x.state.name == "ESTABLISHED"]
    return cb


def _cache(a):
    cb = _flow(a)
    ports = struct.pack("!HH", cb.lport, cb.fport)
    return a.inet6.rtcache.lookup(cb.laddr, cb.faddr, 6, ports, 0)


def test_cached_frames_are_the_full_paths_bytes(pair) -> None:
    a, b, c, s, ifp, cap = pair
    assert _send(a, b, c, s, b"x" * 100) == b"x" * 100
    assert _cache(a) is not None
    (frame,) = cap.ip6_out(ifp.lladdr)[-1:]
    node = a.inet6.node
    sends = node.ip6_output.output(in6.pton(A), in6.pton(B), 6, frame[54:], a.clock_now())
    assert [x.packet for x in sends] == [frame[14:]]
    assert frame[:6] == node.nd6.table[(ifp.index, in6.pton(B))].lladdr


def test_superframes_are_cut_into_the_full_paths_segments(pair) -> None:
    a, _, _, _, ifp, cap = pair
    cb = _flow(a)
    hdr = struct.pack("!HHIIBBHHH", cb.lport, cb.fport, 1000, 2000, 5 << 4, 0x18 | 0x01, 4096, 0, 0)
    seg = hdr + bytes(range(256)) * 12          # 3072 bytes: three segments and a bit
    before = len(cap.frames)
    assert a.inet6.rtcache.output_gso(in6.pton(A), in6.pton(B), seg, 1000, 0)
    frames = cap.frames[before:]
    want = [x.packet for piece in tcp_gso_segments(in6.pton(A), in6.pton(B), seg, 1000)
            for x in a.inet6.node.ip6_output.output(in6.pton(A), in6.pton(B), 6, piece, a.clock_now())]
    assert len(frames) == 4 and [f[14:] for f in frames] == want
    assert [f[14 + 40 + 13] for f in frames] == [0x10, 0x10, 0x10, 0x19]   # PSH and FIN on the last


def test_a_route_change_takes_effect_on_the_next_packet(pair) -> None:
    a, b, c, s, ifp, cap = pair
    _send(a, b, c, s, b"cached")
    assert _cache(a) is not None
    a.inet6.routes.add(Rtentry6(in6.pton(B), 128, None, RTF_UP | RTF_HOST | RTF_STATIC | RTF_BLACKHOLE, ifp))
    before, dropped = len(cap.ip6_out(ifp.lladdr)), a.inet6.node.ip6stat.ip6s_odropped
    a.rump_sys_send(c, b"into the hole", 0)
    assert len(cap.ip6_out(ifp.lladdr)) == before          # nothing left through the cache
    assert a.inet6.node.ip6stat.ip6s_odropped == dropped + 1


def test_an_address_removal_takes_effect_on_the_next_packet(pair) -> None:
    a, b, c, s, ifp, cap = pair
    _send(a, b, c, s, b"cached")
    assert _cache(a) is not None
    a.inet6.remove_address(ifp, in6.pton(A))        # its prefix route goes with it
    before, drops = len(cap.ip6_out(ifp.lladdr)), a.inet6.tcp6.output_drops
    noroute = a.inet6.node.ip6stat.ip6s_noroute
    a.rump_sys_send(c, b"from nowhere", 0)
    assert len(cap.ip6_out(ifp.lladdr)) == before
    assert a.inet6.tcp6.output_drops == drops + 1
    assert a.inet6.node.ip6stat.ip6s_noroute == noroute + 1


def test_a_neighbour_change_takes_effect_on_the_next_packet(pair) -> None:
    a, b, c, s, ifp, cap = pair
    _send(a, b, c, s, b"cached")
    assert _cache(a) is not None
    nd6 = a.inet6.node.nd6
    new_mac = bytes.fromhex("020000abcdef")
    nd6.add_static(in6.pton(B), ifp.index, new_mac)          # ndp -s: another MAC
    a.rump_sys_send(c, b"to the new MAC", 0)
    assert cap.ip6_out(ifp.lladdr)[-1][:6] == new_mac
    nd6.remove(in6.pton(B), ifp.index)                       # ndp -d: resolve again
    held = nd6.stats.nd6s_held
    before = len(cap.ip6_out(ifp.lladdr))
    a.rump_sys_send(c, b"after ndp -d", 0)
    assert nd6.stats.nd6s_held == held + 1                   # queued for resolution
    assert all(f[:6] != new_mac for f in cap.ip6_out(ifp.lladdr)[before:])


def test_a_stale_neighbour_goes_the_full_path_and_starts_nud(pair) -> None:
    """RFC 4861 7.3.3: a packet to a STALE neighbour puts it in DELAY, which only the
    full path (Nd6.resolve) does; in DELAY packets go to the cached address and the
    state waits for its timer, so the cache serves them again."""
    a, b, c, s, ifp, cap = pair
    _send(a, b, c, s, b"cached")
    ln = a.inet6.node.nd6.table[(ifp.index, in6.pton(B))]
    assert ln.state == ND6_LLINFO_REACHABLE
    a.inet6.node.nd6._set_state(ln, ND6_LLINFO_STALE, a.clock_now())
    a.rump_sys_send(c, b"to a stale one", 0)
    assert ln.state == ND6_LLINFO_DELAY
    assert _cache(a) is not None
    sent, localout = len(cap.ip6_out(ifp.lladdr)), a.inet6.node.ip6stat.ip6s_localout
    a.rump_sys_send(c, b"in DELAY", 0)
    assert ln.state == ND6_LLINFO_DELAY
    assert len(cap.ip6_out(ifp.lladdr)) == sent + 1 and a.inet6.node.ip6stat.ip6s_localout == localout + 1


# -- UDP through the cache -----------------------------------------------------------------
@pytest.fixture
def udp_pair(vnet):
    """a -- b on one wire; a UDP socket on a connected to b's, b's neighbour resolved."""
    a, b = _kernels(vnet)
    srv = b.rump_sys_socket(AF6, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("::", 7))
    cli = a.rump_sys_socket(AF6, socket.SOCK_DGRAM, 0)
    a.rump_sys_connect(cli, (B, 7))
    a.rump_sys_send(cli, b"resolve", 0)          # the first one waits for ND
    assert b.rump_sys_recvfrom(srv, 2048, 0)[0] == b"resolve"
    ifp = a.ifnet.lookup("wire0")
    cap = Frames()
    ifp.bpf_attach(cap)
    return a, b, cli, srv, ifp, cap


def test_udp_datagrams_take_the_cache_with_the_full_paths_bytes(udp_pair) -> None:
    """A plain datagram goes through the flow cache (counted in ``cached_out``) and the
    frame is the full path's, checksum (mandatory, RFC 8200 8.1) included."""
    a, b, cli, srv, ifp, cap = udp_pair
    rtc = a.inet6.rtcache
    before = rtc.cached_out
    a.rump_sys_send(cli, b"through the cache", 0)
    assert rtc.cached_out == before + 1
    assert b.rump_sys_recvfrom(srv, 2048, 0)[0] == b"through the cache"
    (frame,) = cap.ip6_out(ifp.lladdr)[-1:]
    assert frame[14 + 6] == 17 and frame[14 + 40 + 6:14 + 40 + 8] != b"\0\0"
    sends = a.inet6.node.ip6_output.output(in6.pton(A), in6.pton(B), 17, frame[54:], a.clock_now())
    assert [x.packet for x in sends] == [frame[14:]]


def test_udp_with_a_hop_limit_goes_the_full_path(udp_pair) -> None:
    a, b, cli, srv, ifp, cap = udp_pair
    a.rump_sys_setsockopt(cli, socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 7)
    before = a.inet6.rtcache.cached_out
    a.rump_sys_send(cli, b"hop limit 7", 0)
    assert a.inet6.rtcache.cached_out == before
    assert b.rump_sys_recvfrom(srv, 2048, 0)[0] == b"hop limit 7"
    assert cap.ip6_out(ifp.lladdr)[-1][14 + 7] == 7


def test_udp_after_a_route_change_leaves_the_cache(udp_pair) -> None:
    """A blackhole route for b: the very next datagram is dropped by the full path (and
    counted), none leaves through the cache built before."""
    a, _, cli, _, ifp, cap = udp_pair
    rtc = a.inet6.rtcache
    a.rump_sys_send(cli, b"cached", 0)
    cached, sent = rtc.cached_out, len(cap.ip6_out(ifp.lladdr))
    a.inet6.routes.add(Rtentry6(in6.pton(B), 128, None, RTF_UP | RTF_HOST | RTF_STATIC | RTF_BLACKHOLE, ifp))
    dropped = a.inet6.node.ip6stat.ip6s_odropped
    a.rump_sys_send(cli, b"into the hole", 0)
    assert rtc.cached_out == cached
    assert len(cap.ip6_out(ifp.lladdr)) == sent
    assert a.inet6.node.ip6stat.ip6s_odropped == dropped + 1


def test_udp_after_an_address_removal_leaves_the_cache(udp_pair) -> None:
    a, _, cli, _, ifp, cap = udp_pair
    rtc = a.inet6.rtcache
    a.rump_sys_send(cli, b"cached", 0)
    cached, sent = rtc.cached_out, len(cap.ip6_out(ifp.lladdr))
    a.inet6.remove_address(ifp, in6.pton(A))        # its prefix route goes with it
    with pytest.raises(OSError):
        a.rump_sys_send(cli, b"from nowhere", 0)
    assert rtc.cached_out == cached
    assert len(cap.ip6_out(ifp.lladdr)) == sent
