"""smoltcp-style harness for the sans-IO TCP, plus wire-format / seq / fsm tests.

Other test_tcp_* modules import the harness from here (``from test_tcp_harness import
...``; pytest puts this directory on sys.path since tests/unit has no __init__.py).
"""

from __future__ import annotations

import random
import struct
from dataclasses import replace
from typing import Any

import pytest

from rumpnet.netinet import tcp as tcpw
from rumpnet.netinet.tcp import TH_ACK, TH_FIN, TH_PUSH, TH_RST, TH_SYN, TcpRepr
from rumpnet.netinet.tcp_fsm import TRANSITIONS, Ev, TcpState, TcpStateError, dot, next_state
from rumpnet.netinet.tcp_seq import SEQ_GEQ, SEQ_GT, SEQ_LEQ, SEQ_LT, seq_diff, seq_in
from rumpnet.netinet.tcp_subr import TcpProtocol
from rumpnet.netinet.tcp_var import TcpCb, TcpParams

LOCAL = 0x0A000001
REMOTE = 0x0A000002
LPORT = 80
RPORT = 49500
R_ISS = 10_000  # the peer's ISN in the scripted tests

__all__ = ["Env", "seg", "LOCAL", "REMOTE", "LPORT", "RPORT", "R_ISS", "TH_ACK", "TH_FIN",
           "TH_PUSH", "TH_RST", "TH_SYN", "TcpRepr", "TcpState", "replace"]


def seg(**kw: Any) -> TcpRepr:
    """A segment from the peer (sport=RPORT, dport=LPORT) with defaults."""
    d: dict[str, Any] = {"sport": RPORT, "dport": LPORT, "seq": 0, "ack": 0,
                         "flags": TH_ACK, "window": 65535}
    d.update(kw)
    return TcpRepr(**d)


class Env:
    """One TcpProtocol plus a scripted peer."""

    def __init__(self, mtu: int = 1500, seed: int = 7, **params: Any) -> None:
        params.setdefault("rfc1323", 0)
        params.setdefault("sack", 0)
        self.params = TcpParams(**params)
        self.mtu = mtu
        self.out: list[tuple[int, int, bytes, int]] = []   # src, dst, segment, IP ECN field
        self.proto = TcpProtocol(self.params, random.Random(seed), self._output,
                                 mtu_for=lambda dst: self.mtu)
        self.events: list[int] = []
        self.stats = self.proto.stats

    def _output(self, src: int, dst: int, segment: bytes, tso_segsz: int = 0, ecn: int = 0) -> None:
        assert isinstance(segment, (bytes, bytearray)) and not tso_segsz
        self.out.append((src, dst, bytes(segment), ecn))

    # -- smoltcp verbs --
    def send(self, now: float, s: TcpRepr, src: int = REMOTE, dst: int = LOCAL) -> None:
        """``s`` arrives (in an IP header whose ECN field is ``s.ip_ecn``)."""
        self.proto.input(src, dst, tcpw.emit(s, src, dst), now, iptos=s.ip_ecn)

    def recv(self, now: float | None = None) -> list[TcpRepr]:
        """What came out since the last call, each with the ECN codepoint TCP gave IP as
        its ``ip_ecn``."""
        if now is not None:
            self.proto.handle_timer(now)
        res = []
        for src, dst, raw, ecn in self.out:
            assert src == LOCAL and dst == REMOTE, (hex(src), hex(dst))
            r = tcpw.parse(raw, src, dst, csum_ok=False)   # checksum must verify
            r.payload = bytes(r.payload)
            r.ip_ecn = ecn
            res.append(r)
        self.out.clear()
        return res

    def expect(self, now: float | None, *segs: TcpRepr) -> None:
        got = self.recv(now)
        assert got == list(segs)

    def nothing(self, now: float | None = None) -> None:
        assert self.recv(now) == []

    def run_until(self, t: float) -> list[tuple[float, TcpRepr]]:
        """Fire timers in order up to time t; returns (time, segment) emitted."""
        res: list[tuple[float, TcpRepr]] = []
        while True:
            d = self.proto.get_timer()
            if d is None or d > t:
                return res
            for r in self.recv(d):
                res.append((d, r))

    # -- fixtures --
    def upcall(self, cb: Any, ev: int) -> None:
        self.events.append(ev)

    def connect(self, now: float = 0.0, **opts: Any) -> TcpCb:
        cb = self.proto.connect(LOCAL, LPORT, REMOTE, RPORT, now, **opts)
        cb.upcall = self.upcall
        return cb

    def syn_of(self, cb: TcpCb) -> TcpRepr:
        """Our SYN as expected with the current params (no rfc1323/sack by default)."""
        return TcpRepr(LPORT, RPORT, cb.iss, 0, TH_SYN, 65535, mss=self.mtu - 40)

    def established(self, now: float = 0.0, peer_win: int = 65535, peer_mss: int = 1460,
                    **opts: Any) -> TcpCb:
        """Active open completed with a scripted peer (no options unless params say)."""
        cb = self.connect(now, **opts)
        self.recv()
        self.send(now, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK,
                           window=peer_win, mss=peer_mss))
        got = self.recv()
        assert [g.flags for g in got] == [TH_ACK]
        assert cb.state == TcpState.ESTABLISHED
        self.events.clear()
        return cb

    def ack_of(self, cb: TcpCb, seq: int | None = None, ack: int | None = None,
               window: int = 65535, **kw: Any) -> TcpRepr:
        """The pure ACK we expect from cb."""
        return TcpRepr(LPORT, RPORT, cb.snd_max if seq is None else seq,
                       cb.rcv_nxt if ack is None else ack, kw.pop("flags", TH_ACK), window,
                       **kw)


# ----------------------------------------------------------------------------------------
# tcp_seq
def test_seq_wraparound() -> None:
    assert SEQ_LT(0xFFFFFFF0, 5)
    assert SEQ_GT(5, 0xFFFFFFF0)
    assert SEQ_LEQ(7, 7) and SEQ_GEQ(7, 7)
    assert not SEQ_LT(7, 7)
    assert seq_diff(3, 0xFFFFFFFE) == 5
    assert seq_diff(0xFFFFFFFE, 3) == -5
    assert seq_in(0xFFFFFFFF, 0xFFFFFFF0, 10)
    assert not seq_in(10, 0xFFFFFFF0, 10)


# tcp_fsm
def test_fsm_order_and_table() -> None:
    assert [s.value for s in TcpState] == list(range(11))
    assert TcpState.ESTABLISHED < TcpState.CLOSE_WAIT < TcpState.TIME_WAIT
    assert next_state(TcpState.SYN_SENT, Ev.RCV_SYN) == TcpState.SYN_RECEIVED
    assert next_state(TcpState.FIN_WAIT_1, Ev.RCV_FIN) == TcpState.CLOSING
    assert all(TRANSITIONS[(s, Ev.RCV_RST)] == TcpState.CLOSED for s in TcpState)
    with pytest.raises(TcpStateError):
        next_state(TcpState.TIME_WAIT, Ev.CLOSE)
    assert "SYN_SENT -> ESTABLISHED" in dot()


# tcp (wire)
def test_emit_parse_roundtrip_with_options() -> None:
    r = TcpRepr(1234, 80, 0xFFFFFFFF, 17, TH_SYN | TH_ACK, 5000, mss=1460, wscale=7,
                sack_permitted=True, timestamps=(1, 2))
    raw = tcpw.emit(r, LOCAL, REMOTE)
    assert len(raw) % 4 == 0
    p = tcpw.parse(raw, LOCAL, REMOTE, csum_ok=False)
    p.payload = bytes(p.payload)
    assert p == r
    r2 = TcpRepr(1, 2, 3, 4, TH_ACK | TH_PUSH, 6, sack_blocks=((10, 20), (30, 40)),
                 timestamps=(5, 6), payload=b"hello")
    p2 = tcpw.parse(tcpw.emit(r2, 1, 2), 1, 2, csum_ok=False)
    assert p2.sack_blocks == ((10, 20), (30, 40)) and bytes(p2.payload) == b"hello"
    assert p2.seg_len == 5
    assert "len=5" in repr(p2)


@pytest.mark.parametrize("mutate,kind", [
    (lambda b: b[:19], "rcvshort"),
    (lambda b: b[:12] + bytes([0x40]) + b[13:], "rcvbadoff"),        # offset 16 < 20
    (lambda b: b[:12] + bytes([0xF0]) + b[13:], "rcvbadoff"),        # offset 60 > len
    (lambda b: b[:30] + bytes([b[30] ^ 1]) + b[31:], "rcvbadsum"),
])
def test_parse_errors(mutate: Any, kind: str) -> None:
    raw = tcpw.emit(TcpRepr(1, 2, 3, 4, TH_ACK, 6, payload=b"0123456789abc"), 1, 2)
    with pytest.raises(tcpw.TcpParseError) as ei:
        tcpw.parse(mutate(raw), 1, 2, csum_ok=False)
    assert ei.value.kind == kind


@pytest.mark.parametrize("opts", [
    bytes([2, 3, 0, 0]),          # MSS with wrong length
    bytes([3, 0, 1, 1]),          # length 0
    bytes([8, 10, 0, 0]),         # runs past header
    bytes([5, 3, 0, 0]),          # SACK with a bad length
    bytes([1, 1, 1, 2]),          # kind 2 at the end: length missing
])
def test_parse_bad_options(opts: bytes) -> None:
    hdr = struct.pack("!HHIIBBHHH", 1, 2, 3, 4, (6 << 4), TH_ACK, 100, 0, 0) + opts
    with pytest.raises(tcpw.TcpParseError) as ei:
        tcpw.parse(hdr)
    assert ei.value.kind == "rcvbadopt"


def test_protocol_counts_malformed_input() -> None:
    env = Env()
    env.proto.input(REMOTE, LOCAL, b"\x00" * 10, 0.0)
    raw = bytearray(tcpw.emit(seg(seq=1, payload=b"x"), REMOTE, LOCAL))
    raw[-1] ^= 0xFF
    env.proto.input(REMOTE, LOCAL, bytes(raw), 0.0)
    assert env.stats.tcps_rcvshort == 1
    assert env.stats.tcps_rcvbadsum == 1
    assert env.stats.tcps_rcvtotal == 2
    env.nothing()
    # csum_ok skips verification
    env.proto.input(REMOTE, LOCAL, bytes(raw), 0.0, csum_ok=True)
    assert env.stats.tcps_rcvbadsum == 1
    assert env.stats.tcps_noport == 1


def test_harness_active_open() -> None:
    env = Env()
    cb = env.connect()
    env.expect(None, env.syn_of(cb))
    assert cb.state == TcpState.SYN_SENT
    env.send(0.1, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=1000))
    env.expect(None, env.ack_of(cb, seq=cb.iss + 1, ack=R_ISS + 1))
    assert cb.state == TcpState.ESTABLISHED
    assert cb.t_maxseg == 1000
