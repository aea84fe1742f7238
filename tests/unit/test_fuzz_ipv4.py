"""Bad input on every IPv4 input path: truncated, oversized, bad-checksum and garbage
frames for Ethernet, ARP, IPv4, ICMP and UDP are dropped and counted, never raised; a
hypothesis run of random and mutated frames leaves a kernel that still answers a ping."""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumpnet.netconfig import format_mac
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in4_cksum, in_cksum

A, B = "10.0.0.1", "10.0.0.2"


class Target:
    """Kernel b, with frames injected straight into its wire0 as if a had sent them."""

    def __init__(self, vnet) -> None:
        self.vnet = vnet
        self.a, self.b = vnet.pair()
        self.ifp = self.b.ifnet.lookup("wire0")
        self.amac = self.a.ifnet.lookup("wire0").lladdr
        self.bmac = self.ifp.lladdr
        # static ARP both ways: random ARP frames must not be able to unlearn the peers
        self.a.config.arp_add(B, format_mac(self.bmac))
        self.b.config.arp_add(A, format_mac(self.amac))
        # An exception out of input fails the next call (strict mode, on for the suite).
        assert self.b.sched.errors.strict

    def inject(self, *frames: bytes) -> None:
        def deliver() -> None:
            for f in frames:
                self.ifp.link_deliver(f)

        self.b.sched.run(deliver)

    def eth(self, payload: bytes, etype: int = 0x0800, dst: bytes | None = None) -> bytes:
        return (dst or self.bmac) + self.amac + struct.pack("!H", etype) + payload

    def ip(self, payload: bytes, proto: int, *, src: str = A, dst: str = B, ttl: int = 64,
           off: int = 0, fix_len: bool = True, hl: int = 5) -> bytes:
        hdr = bytearray(struct.pack("!BBHHHBBH4s4s", 0x40 | hl, 0, 20 + len(payload), 1, off, ttl, proto, 0,
                                    socket.inet_aton(src), socket.inet_aton(dst)))
        hdr += b"\x01" * (hl * 4 - 20)  # NOP options
        if fix_len:
            hdr[2:4] = struct.pack("!H", len(hdr) + len(payload))
        hdr[10:12] = struct.pack("!H", in_cksum(hdr))
        return bytes(hdr) + payload

    def udp(self, payload: bytes, dport: int = 9, sport: int = 1234, *, csum: bool = True) -> bytes:
        seg = bytearray(struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)
        if csum:
            seg[6:8] = struct.pack("!H", in4_cksum(aton(A), aton(B), 17, seg) or 0xFFFF)
        return bytes(seg)

    def icmp(self, icmp_type: int, code: int, rest: bytes) -> bytes:
        msg = bytearray(struct.pack("!BBH", icmp_type, code, 0) + rest)
        msg[2:4] = struct.pack("!H", in_cksum(msg))
        return bytes(msg)

    def arp(self, op: int = 1, *, sha: bytes | None = None, spa: str = A, tpa: str = B,
            hrd: int = 1, pro: int = 0x0800) -> bytes:
        return struct.pack("!HHBBH6s4s6s4s", hrd, pro, 6, 4, op, sha or self.amac, socket.inet_aton(spa),
                           b"\0" * 6, socket.inet_aton(tpa))

    def still_alive(self) -> None:
        self.b.run_for(1)
        rep = self.vnet.ping(self.a, B, timeout=2)
        assert rep is not None and rep[20] == 0
        rep = self.vnet.ping(self.b, A, timeout=2)
        assert rep is not None and rep[20] == 0
        assert self.b.sched.errors.count == 0


@pytest.fixture
def t(vnet) -> Target:
    return Target(vnet)


def test_ethernet(t: Target) -> None:
    s = t.ifp.stats
    t.inject(b"", b"\x01" * 13)
    assert s.ierrors == 2
    t.inject(t.eth(b"\0" * 46, etype=0x88B5))
    assert s.noproto == 1
    t.inject(t.eth(b"\0" * (t.ifp.mtu + 1)))  # oversized
    assert s.ierrors == 3
    before, taken = t.b.inet.ipstat.ips_total, s.ipackets
    t.inject(t.eth(t.ip(t.udp(b"x"), 17), dst=bytes.fromhex("020000abcdef")))  # another host's
    assert s.ipackets == taken + 1 and t.b.inet.ipstat.ips_total == before  # taken in, not up
    t.still_alive()


def test_arp(t: Target) -> None:
    st_ = t.b.inet.arpstat
    t.inject(t.eth(t.arp()[:27], 0x0806))
    assert st_.as_rcvbadlen == 1
    t.inject(t.eth(t.arp(hrd=6), 0x0806), t.eth(t.arp(pro=0x86DD), 0x0806), t.eth(t.arp(op=9), 0x0806))
    assert st_.as_rcvbadproto == 3
    t.inject(t.eth(t.arp(sha=b"\xff" * 6), 0x0806))
    assert st_.as_rcvbcastsha == 1
    t.inject(t.eth(t.arp(sha=t.bmac), 0x0806))
    assert st_.as_rcvlocalsha == 1
    t.inject(t.eth(t.arp(tpa="0.0.0.0"), 0x0806))
    assert st_.as_rcvzerotpa == 1
    t.inject(t.eth(t.arp(spa=B), 0x0806))  # someone claims b's address
    assert st_.as_rcvlocalspa == 1
    assert list(t.b.inet.arp.conflicts) == [(aton(B), t.amac)]
    t.inject(*[t.eth(t.arp(spa=B), 0x0806)] * 1000)  # ... again and again: memory stays bounded
    assert st_.as_rcvlocalspa == 1001 and len(t.b.inet.arp.conflicts) <= 32
    t.inject(t.eth(t.arp(sha=bytes.fromhex("02aabbccddee")), 0x0806))  # a's static entry holds
    assert st_.as_rcvoverperm == 1
    t.inject(t.eth(t.arp() + b"\0" * 100, 0x0806))  # trailing padding is fine
    t.still_alive()


def test_ipv4(t: Target) -> None:
    s = t.b.inet.ipstat
    good = t.ip(t.udp(b"hello"), 17)
    t.inject(t.eth(good[:19]))
    assert s.ips_toosmall == 1
    t.inject(t.eth(b"\x65" + good[1:]))
    assert s.ips_badvers == 1
    bad = bytearray(good)
    bad[0] = 0x44
    t.inject(t.eth(bytes(bad)))
    assert s.ips_badhlen == 1
    t.inject(t.eth(t.ip(b"", 17, hl=15)[:40]))  # header longer than the packet
    assert s.ips_badhlen == 2
    bad = bytearray(good)
    bad[10] ^= 0xFF
    t.inject(t.eth(bytes(bad)))
    assert s.ips_badsum == 1
    short = bytearray(good)
    short[2:4] = struct.pack("!H", 10)
    short[10:12] = b"\0\0"
    short[10:12] = struct.pack("!H", in_cksum(short[:20]))
    t.inject(t.eth(bytes(short)))
    assert s.ips_badlen == 1
    t.inject(t.eth(good[:-3]))  # truncated: ip_len says more than arrived
    assert s.ips_tooshort == 1
    t.inject(t.eth(t.ip(t.udp(b"m"), 17, src="224.0.0.1")), t.eth(t.ip(t.udp(b"l"), 17, dst="127.0.0.1")))
    assert s.ips_badaddr == 2
    t.inject(t.eth(t.ip(b"\0" * 8, 99)))  # no such protocol: counted, ICMP proto unreachable
    assert s.ips_noproto == 1 and t.b.inet.icmpstat.icps_outhist[3] == 1
    t.inject(t.eth(t.ip(t.udp(b"to someone else"), 17, dst="10.0.0.77")))
    assert s.ips_cantforward == 1
    # link-layer padding and IP options are fine
    delivered = s.ips_delivered
    t.inject(t.eth(good + b"\0" * 20), t.eth(t.ip(t.udp(b"opt"), 17, hl=6)))
    assert s.ips_delivered == delivered + 2
    t.still_alive()


def test_icmp(t: Target) -> None:
    s = t.b.inet.icmpstat
    t.inject(t.eth(t.ip(b"\x08\x00\xf7", 1)))
    assert s.icps_tooshort == 1
    echo = bytearray(t.icmp(8, 0, b"\0\1\0\1abc"))
    echo[2] ^= 0x55
    t.inject(t.eth(t.ip(bytes(echo), 1)))
    assert s.icps_checksum == 1 and s.icps_outhist[0] == 0
    t.inject(t.eth(t.ip(t.icmp(3, 3, b"\0" * 4 + b"\x45" + b"\0" * 10), 1)))  # quote too short
    assert s.icps_badlen == 1
    t.inject(t.eth(t.ip(t.icmp(3, 3, b"\0" * 4 + b"\x60" + b"\0" * 40), 1)))  # quote is not IPv4
    assert s.icps_badlen == 2
    delivered = t.b.inet.ipstat.ips_delivered
    t.inject(t.eth(t.ip(t.icmp(30, 0, b"\0" * 20), 1)))  # a type with no handler: counted, ignored
    assert s.icps_inhist[30] == 1 and sum(s.icps_outhist) == 0
    t.inject(t.eth(t.ip(t.icmp(99, 0, b"\0" * 20), 1)))  # beyond the histogram (as NetBSD: uncounted)
    assert t.b.inet.ipstat.ips_delivered == delivered + 2 and sum(s.icps_outhist) == 0
    t.inject(t.eth(t.ip(t.icmp(8, 0, b"\0\1\0\1"), 1, dst="10.0.0.255")))  # broadcast echo
    assert s.icps_bmcastecho == 1
    # a redirect about a neighbour (a connected destination) is not taken from anyone
    quote = t.ip(t.udp(b"12345678"), 17, src=B, dst=A)[:28]
    redirect = t.icmp(5, 1, socket.inet_aton("10.0.0.66") + quote)
    t.inject(t.eth(t.ip(redirect, 1)))
    assert t.b.config.route_get(A).plen == 24
    t.still_alive()


def test_udp(t: Target) -> None:
    s = t.b.inet.udpstat
    fd = t.b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    t.b.rump_sys_bind(fd, ("0.0.0.0", 9))
    t.inject(t.eth(t.ip(b"\0" * 7, 17)))
    assert s.udps_hdrops == 1
    seg = bytearray(t.udp(b"data"))
    seg[4:6] = struct.pack("!H", 100)  # says longer than it is
    t.inject(t.eth(t.ip(bytes(seg), 17)))
    seg[4:6] = struct.pack("!H", 4)  # shorter than a header
    t.inject(t.eth(t.ip(bytes(seg), 17)))
    assert s.udps_badlen == 2
    seg = bytearray(t.udp(b"data"))
    seg[-1] ^= 1
    t.inject(t.eth(t.ip(bytes(seg), 17)))
    assert s.udps_badsum == 1
    t.inject(t.eth(t.ip(t.udp(b"nosum", csum=False), 17)))
    assert s.udps_nosum == 1
    t.inject(t.eth(t.ip(t.udp(b"trailing") + b"junk", 17)))  # ulen shorter than the IP payload
    got = [t.b.rump_sys_recvfrom(fd, 100, socket.MSG_DONTWAIT)[0] for _ in range(2)]
    assert got == [b"nosum", b"trailing"]
    t.inject(t.eth(t.ip(t.udp(b"nobody", dport=4444), 17)))
    assert s.udps_noport == 1
    t.still_alive()


def _valid_frames(t: Target) -> list[bytes]:
    quote = t.ip(t.udp(b"12345678", sport=9, dport=1234), 17, src=B, dst=A)[:28]
    return [
        t.eth(t.arp(), 0x0806),
        t.eth(t.arp(op=2), 0x0806),
        t.eth(t.ip(t.icmp(8, 0, b"\0\1\0\1" + b"p" * 32), 1)),
        t.eth(t.ip(t.icmp(3, 4, b"\0\0\x02\x00" + quote), 1)),
        t.eth(t.ip(t.icmp(5, 1, socket.inet_aton("10.0.0.66") + quote), 1)),
        t.eth(t.ip(t.udp(b"u" * 40), 17)),
        t.eth(t.ip(t.udp(b"f" * 40)[:24], 17, off=0x2000)),
        t.eth(t.ip(t.udp(b"f" * 40)[24:], 17, off=3)),
        t.eth(t.ip(b"\0" * 20, 6)),
    ]


FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


def test_random_frames(t: Target) -> None:
    @FUZZ
    @given(st.binary(max_size=1600), st.sampled_from([0x0800, 0x0806, 0x86DD]), st.booleans())
    def feed(body: bytes, etype: int, raw: bool) -> None:
        n[0] += 1
        t.inject(body if raw else t.eth(body, etype))

    n = [0]
    feed()
    assert n[0] >= 100
    assert t.ifp.stats.ipackets > 0
    t.still_alive()


def test_mutated_valid_frames(t: Target) -> None:
    frames = _valid_frames(t)

    @FUZZ
    @given(st.sampled_from(frames), st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), max_size=6),
           st.integers(0, 2000), st.binary(max_size=64))
    def feed(frame: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes) -> None:
        buf = bytearray(frame)
        for pos, val in flips:
            if buf:
                buf[14 + pos % max(1, len(buf) - 14) if len(buf) > 14 else pos % len(buf)] = val
        if cut % 3 == 0:
            buf = buf[: cut % (len(buf) + 1)]
        elif cut % 3 == 1:
            buf += tail
        n[0] += 1
        t.inject(bytes(buf))

    n = [0]
    feed()
    assert n[0] >= 100
    t.still_alive()
    # the kernel's state stays bounded
    b = t.b
    assert len(b.inet.reass.queues) <= b.inet.ip_params.maxfragpackets
    assert len(b.inet.arp.table) < 50


def test_random_ip_options(t: Target) -> None:
    """Random option bytes (RR/TS/LSRR/SSRR types likely) on echo requests and UDP, with
    forwarding and source-route forwarding on: nothing raises, the kernel still answers."""
    t.b.config.sysctl_set("net.inet.ip.forwarding", 1)
    t.b.config.sysctl_set("net.inet.ip.forwsrcrt", 1)
    kinds = st.sampled_from([0, 1, 7, 68, 131, 137, 148])
    option = st.tuples(kinds, st.integers(0, 44), st.integers(0, 45), st.binary(max_size=40))

    @FUZZ
    @given(st.lists(option, max_size=4), st.sampled_from([B, "10.0.0.99", "10.9.9.9"]), st.booleans())
    def feed(opts: list[tuple[int, int, int, bytes]], dst: str, echo: bool) -> None:
        raw = b"".join(bytes((k, ln, ptr)) + body for k, ln, ptr, body in opts)[:40]
        raw += bytes(-len(raw) % 4)
        payload = t.icmp(8, 0, b"\0\1\0\1" + b"o" * 8) if echo else t.udp(b"opts")
        pkt = bytearray(t.ip(payload, 1 if echo else 17, dst=dst))
        pkt = pkt[:20] + raw + pkt[20:]
        pkt[0] = 0x40 | ((20 + len(raw)) >> 2)
        pkt[2:4] = struct.pack("!H", len(pkt))
        pkt[10:12] = b"\0\0"
        pkt[10:12] = struct.pack("!H", in_cksum(pkt[:20 + len(raw)]))
        n[0] += 1
        t.inject(t.eth(bytes(pkt)))

    n = [0]
    feed()
    assert n[0] >= 100
    assert t.b.inet.ipstat.ips_badoptions > 0
    t.b.config.sysctl_set("net.inet.ip.forwarding", 0)
    t.still_alive()
