"""ip_output's per-destination RouteCache (``output_cached``) and its software GSO.

The cached path must send exactly what the full ``ip_output`` path sends, and must notice
every change it depends on: routes, ARP entries, the interface's MAC and flags, sysctls."""

from __future__ import annotations

import socket
import struct

import pytest

from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_gso import tcp_segment_superframe
from rumpnet.netinet.ip_var import IPPROTO_TCP, IPPROTO_UDP

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"


@pytest.fixture
def pair(vnet):
    a, b = vnet.pair()
    assert vnet.ping(a, B) is not None  # ARP resolved both ways
    frames: list[bytes] = []
    a.ifnet.lookup("wire0").bpf_taps.append(lambda f: frames.append(bytes(f)))
    return vnet, a, b, frames


def _tcp_segment(seq: int, flags: int, payload: bytes) -> bytes:
    # ports, seq, ack, offset 8 words (NOP NOP TS), flags, window, csum 0, urp 0, options
    hdr = struct.pack("!HHIIBBHHH", 5000, 80, seq, 77, 8 << 4, flags, 1000, 0, 0)
    return hdr + bytes((1, 1, 8, 10)) + struct.pack("!II", 123, 456) + payload


def _ip_id(frame: bytes) -> int:
    return int.from_bytes(frame[18:20], "big")


def _without_id(frame: bytes) -> bytes:
    """The frame with the IP id and header checksum blanked (two sends never share an
    id); the header checksum is checked separately."""
    assert in_cksum(frame[14:34]) == 0
    return frame[:18] + b"\0\0" + frame[20:24] + b"\0\0" + frame[26:]


def _send_both_ways(a, proto: int, payload: bytes, frames: list[bytes], tos: int = 0) -> tuple[bytes, bytes]:
    out = a.inet.output
    src, dst = aton(A), aton(B)
    a.sched.run(lambda: out.output(src, dst, proto, payload, tos=tos))
    a.sched.run(lambda: out.output_cached(src, dst, proto, payload, tos=tos))
    full, cached = frames[-2], frames[-1]
    assert _ip_id(cached) == _ip_id(full) % 0xFFFF + 1      # the same id sequence
    return _without_id(full), _without_id(cached)


def test_cached_output_is_byte_identical(pair) -> None:
    _, a, _, frames = pair
    for proto in (IPPROTO_TCP, IPPROTO_UDP):
        for payload in (b"", b"x", bytes(range(256)) * 5):
            full, cached = _send_both_ways(a, proto, payload, frames)
            assert full == cached
        assert a.inet.output.cached_route(aton(B), proto) is not None


@pytest.mark.parametrize("tos", [2, 3, 0x28 | 2, 0xFF])
def test_cached_output_carries_the_tos(pair, tos: int) -> None:
    """TCP's ECN codepoint (RFC 3168: ECT(0), CE) and a DSCP: the cached path's header,
    checksum included, is the full path's."""
    _, a, _, frames = pair
    full, cached = _send_both_ways(a, IPPROTO_TCP, b"x" * 100, frames, tos)
    assert full == cached and cached[15] == tos


def test_cache_follows_route_arp_interface_and_sysctl_changes(pair) -> None:
    vnet, a, b, frames = pair
    out = a.inet.output
    src, dst = aton(A), aton(B)

    def send() -> bytes:
        n = len(frames)
        a.sched.run(lambda: out.output_cached(src, dst, IPPROTO_TCP, b"data"))
        return frames[n] if len(frames) > n else b""

    first = send()
    assert first[0:6] == b.ifnet.lookup("wire0").lladdr and first[22] == 64  # TTL
    a.sysctl("-w", "net.inet.ip.ttl=9")
    assert send()[22] == 9
    # A host route to B through a third address on the link: the next hop's MAC now.
    c = vnet.kernel(3)
    vnet.attach(c, "wire0", "lan", f"{C}/24")
    assert vnet.ping(a, C) is not None
    a.route("add", "-host", B, C)
    assert send()[0:6] == c.ifnet.lookup("wire0").lladdr
    a.route("delete", "-host", B)
    assert send()[0:6] == b.ifnet.lookup("wire0").lladdr
    # The ARP entry removed: the packet waits for resolution (an ARP request goes out).
    a.arp("-d", B)
    assert send()[12:14] == b"\x08\x06"
    a.run_for(1)
    # Our own MAC changed.
    a.ifconfig("wire0", "link", "02:00:00:00:00:99")
    assert send()[6:12] == bytes.fromhex("020000000099")
    # Down: the full path's ENETDOWN.
    a.ifconfig("wire0", "down")
    with pytest.raises(OSError):
        a.sched.run(lambda: out.output_cached(src, dst, IPPROTO_TCP, b"data"))


def test_gso_cuts_like_tcp_segment_superframe(pair) -> None:
    """Flags as TSO hardware sets them (CWR on the first frame only, FIN and PSH on the
    last only), a short last segment, consecutive IP ids, valid checksums."""
    _, a, _, frames = pair
    out = a.inet.output
    src, dst = aton(A), aton(B)
    payload = bytes(i * 7 & 0xFF for i in range(3 * 1000 + 17))
    seg = _tcp_segment(0xFFFFF000, 0x80 | 0x10 | 0x08 | 0x01, payload)  # CWR ACK PSH FIN
    n = len(frames)
    a.sched.run(lambda: out.output_cached(src, dst, IPPROTO_TCP, seg, 1000, tos=2))   # ECT(0)
    a.sched.run(lambda: out.output_cached(src, dst, IPPROTO_TCP, b"next"))
    sent, after = frames[n:-1], frames[-1]
    assert len(sent) == 4 and out.gso_sw == 1 and out.gso_segs == 4
    first = _ip_id(sent[0])
    # The reference: the same superframe as an IP packet, cut by ip_gso (which numbers
    # the pieces from the superframe's id, as the ids GSO takes from the kernel's).
    ip = bytearray(struct.pack("!BBHHHBBHII", 0x45, 2, 20 + len(seg), first, 0x4000, 64,
                               IPPROTO_TCP, 0, src, dst)) + seg
    want = tcp_segment_superframe(ip, 1000)
    assert [bytes(f[14:]) for f in sent] == [bytes(w) for w in want]
    assert [f[14 + 20 + 13] for f in sent] == [0x90, 0x10, 0x10, 0x19]
    assert _ip_id(after) == (first + 4) & 0xFFFF                   # four ids were used


def test_tcp_uses_the_cache_and_gso_sysctl(vnet) -> None:
    a, b = vnet.pair()
    assert a.sysctl("net.inet.tcp.gso").split()[-1] == "1"
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", 9))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, (B, 9))
    s, _ = b.rump_sys_accept(lfd)
    a.rump_sys_send(c, b"z" * 100_000, 0)
    got = 0
    while got < 100_000:
        got += len(b.rump_sys_recv(s, 1 << 20, 0))
    assert a.inet.output.cached_route(aton(B), IPPROTO_TCP) is not None
    assert a.inet.output.gso_sw > 0
