"""Bad input at the socket level: while a transfer runs between two kernels, frames with
bad TCP checksums, bad data offsets, every flag combination, out-of-window sequence
numbers, unacceptable ACKs and random bytes are injected into the receiver and the sender
(``ifp.link_deliver(frame)`` on the scheduler). Nothing raises out of packet input, TCP
counts no internal error, and the stream arrives intact (SHA-256).

Injected segments a correct TCP must not act on: an attacker who knows the exact
sequence numbers *and* a valid ACK can legitimately inject data (RFC 9293), so segments
that are in window carry no ACK, an unacceptable ACK, or SYN/RST (RFC 5961 challenge ACK,
never the exact RST sequence number)."""

from __future__ import annotations

import hashlib
import random
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.netinet.in_addr import aton
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN, TcpRepr, emit
from rumpnet.sys_socket import pollfd
from rumpnet.testing.vnet import VNet
from rumpnet.uipc_socket import POLLIN

A, B = "10.0.0.1", "10.0.0.2"
PORT = 8000
RATE = 50e6  # bit/s on the wire
M = 0xFFFFFFFF

# what to do to a segment
SEQ_KINDS = ("behind", "ahead", "inwin", "exact")
ACK_KINDS = ("valid", "ahead", "behind")


def _ip_frame(dst_mac: bytes, src_mac: bytes, src: int, dst: int, payload: bytes, proto: int = 6) -> bytes:
    hdr = bytearray(struct.pack("!BBHHHBBHII", 0x45, 0, 20 + len(payload), 0x1234, 0, 64, proto, 0, src, dst))
    hdr[10:12] = struct.pack("!H", in_cksum(hdr))
    return dst_mac + src_mac + b"\x08\x00" + bytes(hdr) + payload


class Net:
    """Two kernels with a connection a -> b; inject into either end."""

    def __init__(self, seed: int) -> None:
        self.vnet = VNet(virtual=True)
        self.a, self.b = self.vnet.pair(seeds=(seed, seed + 1))
        a, b = self.a, self.b
        lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
        b.rump_sys_listen(lfd, 1)
        self.c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        a.rump_sys_connect(self.c, (B, PORT))
        self.s, _ = b.rump_sys_accept(lfd)
        self.lfd = lfd  # the listener stays: hostile segments are aimed at it too
        self.cport = a.rump_sys_getsockname(self.c)[1]
        self.ends = {
            # victim kernel, its address, the peer's address, victim's lport, fport
            "b": (b, aton(B), aton(A), PORT, self.cport, a),
            "a": (a, aton(A), aton(B), self.cport, PORT, b),
        }
        self.rng = random.Random(seed)
        self.fired = 0
        # a rate-limited, delayed wire, so that the transfer takes virtual time and the
        # injections land in the middle of it
        for k in (a, b):
            ifp = k.ifnet.lookup("wire0")
            q = QdiscRunner(Netem(NetemParams(delay=0.002, rate=RATE), k.rng), k.sched, ifp.link_transmit)
            ifp.set_qdisc("egress", q)

    def close(self) -> None:
        self.vnet.close()

    def conn(self, end: str):
        k, _, _, lport, fport, _ = self.ends[end]
        return k.inet.tcp.proto.conns.get((self.ends[end][1], lport, self.ends[end][2], fport))

    def deliver(self, end: str, frame: bytes) -> None:
        k = self.ends[end][0]
        k.ifnet.lookup("wire0").link_deliver(frame)

    def frame(self, end: str, tcp: bytes) -> bytes:
        k, vip, pip, _, _, peer = self.ends[end]
        return _ip_frame(k.ifnet.lookup("wire0").lladdr, peer.ifnet.lookup("wire0").lladdr, pip, vip, tcp)

    def segment(self, end: str, flags: int, seq_kind: str, ack_kind: str, payload: bytes,
                *, csum: str = "good", doff: int | None = None, window: int = 65535) -> bytes | None:
        """A hostile segment against the live connection at ``end``, or None if gone."""
        cb = self.conn(end)
        if cb is None:
            return None
        k, vip, pip, lport, fport, _ = self.ends[end]
        wnd = max(cb.rcv_wnd, 2)
        seq = {
            "behind": cb.rcv_nxt - (1 << 30) - len(payload),
            "ahead": cb.rcv_nxt + (1 << 30),
            "inwin": cb.rcv_nxt + 1 + self.rng.randrange(wnd - 1),
            "exact": cb.rcv_nxt,
        }[seq_kind] & M
        ack = {
            "valid": cb.snd_una,
            "ahead": cb.snd_max + (1 << 29),
            "behind": cb.snd_una - (1 << 30),
        }[ack_kind] & M
        r = TcpRepr(fport, lport, seq, ack, flags, window, payload=payload)
        seg = bytearray(emit(r, pip, vip))
        if doff is not None:
            seg[12] = (doff << 4) | (seg[12] & 0x0F)
            if csum == "good":  # re-checksum so that only the offset is wrong
                seg[16:18] = b"\0\0"
                seg[16:18] = struct.pack("!H", _tcp_cksum(pip, vip, seg))
        if csum == "bad":
            seg[16] ^= 0x5A
        return self.frame(end, bytes(seg))


def _tcp_cksum(src: int, dst: int, seg: bytes | bytearray) -> int:
    pseudo = struct.pack("!IIBBH", src, dst, 0, 6, len(seg))
    return in_cksum(pseudo + bytes(seg))


def acceptable(flags: int, seq_kind: str, ack_kind: str) -> bool:
    """Would a correct TCP be right to act on this segment (so it must not be sent)?"""
    if flags & TH_RST:
        return seq_kind == "exact"  # the one RST RFC 5961 obeys
    if flags & TH_SYN:
        return False  # challenge ACK in any synchronized state
    if seq_kind in ("inwin", "exact") and flags & TH_ACK and ack_kind == "valid":
        return True   # in window with an acceptable ACK: data/FIN would be taken
    return False


def run_transfer(net: Net, size: int, injections: list) -> None:
    """Send ``size`` bytes a -> b while ``injections`` (callables taking ``net`` and
    returning a frame and an end, or None) are fired at seeded virtual times."""
    a, b, c, s = net.a, net.b, net.c, net.s
    data = random.Random(size).randbytes(size)
    sched = net.vnet.sched
    span = size * 8 / RATE  # about how long the transfer takes
    for inj in injections:
        def fire(inj=inj) -> None:
            out = inj(net)
            if out is not None:
                end, frame = out
                if frame is not None:
                    net.fired += 1
                    net.deliver(end, frame)
        sched.call_later(net.rng.uniform(0.0, span), fire)
    a.rump_sys_fcntl(c, 4, 0o4000)  # F_SETFL O_NONBLOCK
    view = memoryview(data)
    sent, got = 0, bytearray()
    while len(got) < size:
        if sent < size:
            try:
                sent += a.rump_sys_send(c, view[sent:sent + 65536], 0)
            except BlockingIOError:
                pass
        p = pollfd(s, POLLIN)
        if b.rump_sys_poll([p], 1, 200 if sent >= size else 20):
            chunk = b.rump_sys_recv(s, 1 << 20, 0)
            assert chunk, f"EOF after {len(got)} of {size} bytes"
            got += chunk
        assert a.clock_now() < 1e9 + 3600, "transfer stalled"
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    assert net.fired >= len(injections) // 2, "the injections missed the transfer"
    # and the connection still closes cleanly
    a.rump_sys_shutdown(c, socket.SHUT_WR)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 30.0)
    assert b.rump_sys_recv(s, 10, 0) == b""
    for k in (a, b):
        assert k.inet.tcp.stats.tcps_rcvinternalerr == 0


def _inj(end: str, flags: int, seq_kind: str, ack_kind: str, payload: bytes = b"", **kw):
    def make(net: Net):
        return end, net.segment(end, flags, seq_kind, ack_kind, payload, **kw)
    return make


@pytest.mark.timeout(120)
def test_every_flag_combination_out_of_window() -> None:
    net = Net(seed=101)
    try:
        inj = []
        for flags in range(256):
            for end in ("a", "b"):
                for seq_kind in SEQ_KINDS:
                    for ack_kind in ACK_KINDS:
                        if acceptable(flags, seq_kind, ack_kind):
                            continue
                        inj.append(_inj(end, flags, seq_kind, ack_kind, b"EVIL" * (flags % 5)))
        run_transfer(net, 2_000_000, inj)
        sb = net.b.inet.tcp.stats
        assert sb.tcps_challenge_ack > 0 or sb.tcps_challenge_ack_limited > 0
        assert sb.tcps_rcvpackafterwin > 0 or sb.tcps_rcvduppack > 0
    finally:
        net.close()


@pytest.mark.timeout(120)
def test_bad_checksums_and_offsets_never_delivered() -> None:
    """Segments that would be perfectly acceptable (exact seq, valid ACK, data) except for
    a bad checksum or a bad data offset must be dropped and counted."""
    net = Net(seed=202)
    try:
        inj = []
        for i in range(300):
            inj.append(_inj("b", TH_ACK, "exact", "valid", b"CORRUPT!" * (1 + i % 50), csum="bad"))
            inj.append(_inj("b", TH_ACK | TH_FIN, "exact", "valid", b"X", csum="bad"))
            inj.append(_inj("b", TH_RST, "exact", "valid", csum="bad"))
            inj.append(_inj("b", TH_ACK, "exact", "valid", b"OFFSET" * (i % 7), doff=i % 5))
            inj.append(_inj("b", TH_ACK, "exact", "valid", b"BIGOFF", doff=6 + i % 10))
        run_transfer(net, 2_000_000, inj)
        sb = net.b.inet.tcp.stats
        assert sb.tcps_rcvbadsum >= 900
        assert sb.tcps_rcvbadoff > 0 or sb.tcps_rcvshort > 0
        assert sb.tcps_rcvrst == 0
    finally:
        net.close()


def _random_frame(end: str, blob: bytes, kind: str):
    def make(net: Net):
        if kind == "tcp":
            return end, net.frame(end, blob)           # random bytes as a TCP segment
        if kind == "tcp-ports":                         # ... aimed at the connection
            _, _, _, lport, fport, _ = net.ends[end]
            return end, net.frame(end, struct.pack("!HH", fport, lport) + blob)
        if kind == "ip":
            k, vip, pip, _, _, peer = net.ends[end]
            mac = k.ifnet.lookup("wire0").lladdr + peer.ifnet.lookup("wire0").lladdr
            return end, mac + b"\x08\x00" + blob
        return end, blob                                 # a whole random frame
    return make


def _at_listener(sport: int, flags: int, seq: int, ack: int, payload: bytes, window: int):
    """A segment to the listening port from a port with no connection (SYN cache and
    LISTEN input paths)."""
    def make(net: Net):
        r = TcpRepr(sport, PORT, seq, ack, flags, window, payload=payload)
        return "b", net.frame("b", emit(r, aton(A), aton(B)))
    return make


hostile = st.one_of(
    st.builds(lambda sport, flags, seq, ack, p, w: ("listen", sport, flags, seq, ack, p, w),
              st.integers(1024, 40000), st.integers(0, 255), st.integers(0, M), st.integers(0, M),
              st.binary(max_size=32), st.integers(0, 65535)),
    st.builds(lambda end, flags, sk, ak, p, w: ("seg", end, flags, sk, ak, p, w),
              st.sampled_from(["a", "b"]), st.integers(0, 255), st.sampled_from(SEQ_KINDS),
              st.sampled_from(ACK_KINDS), st.binary(max_size=64), st.integers(0, 65535)),
    st.builds(lambda end, blob, kind: ("raw", end, blob, kind),
              st.sampled_from(["a", "b"]), st.binary(min_size=0, max_size=120),
              st.sampled_from(["tcp", "tcp-ports", "ip", "frame"])),
)


@pytest.mark.timeout(180)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile, min_size=1, max_size=40), st.integers(0, 2**16))
def test_hypothesis_hostile_frames_during_transfer(items, seed) -> None:
    net = Net(seed=seed)
    try:
        inj = []
        for it in items:
            if it[0] == "seg":
                _, end, flags, sk, ak, payload, window = it
                if acceptable(flags, sk, ak):
                    flags &= ~TH_ACK  # make it unacceptable: no ACK bit
                    if flags & TH_RST and sk == "exact":
                        sk = "inwin"
                inj.append(_inj(end, flags, sk, ak, payload, window=window))
            elif it[0] == "listen":
                inj.append(_at_listener(*it[1:]))
            else:
                _, end, blob, kind = it
                inj.append(_random_frame(end, blob, kind))
        run_transfer(net, 200_000, inj)
        # the listener still accepts a real connection afterwards
        a, b = net.a, net.b
        c2 = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        a.rump_sys_connect(c2, (B, PORT))
        b.rump_sys_setsockopt(net.lfd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 30.0)  # never hang
        s2, _ = b.rump_sys_accept(net.lfd)
        b.rump_sys_setsockopt(s2, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 30.0)
        a.rump_sys_send(c2, b"still listening", 0)
        assert b.rump_sys_recv(s2, 15, socket.MSG_WAITALL) == b"still listening"
    finally:
        net.close()
