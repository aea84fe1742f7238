"""Regression tests for the TCP per-segment fast paths (docs/PERFORMANCE.md, "TCP
per-segment path"): each fast path must give exactly what the general path gives, and the
one-ACK-per-batch rule must keep to its limits."""

from __future__ import annotations

import random
import struct

import pytest
from test_tcp_harness import LPORT, R_ISS, RPORT, TH_ACK, TH_PUSH, Env, TcpRepr, TcpState, seg
from test_tcp_loop import transfer

from rumpnet.netinet import tcp as tcpw
from rumpnet.netinet.in_cksum import in4_cksum, in_cksum_sum, in_pseudo_sum
from rumpnet.netinet.tcp_var import TcpCb

FULL = {"rfc1323": 1, "sack": 1}


def _ref_sum(data: bytes, initial: int = 0) -> int:
    """RFC 1071 one's-complement sum, the plain way (one integer, one reduction)."""
    value = int.from_bytes(data, "big") << (8 if len(data) & 1 else 0)
    value += initial
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


# ----- checksums --------------------------------------------------------------------------
@pytest.mark.parametrize("n", [0, 1, 2, 31, 1448, 1449, 3071, 3072, 3073, 4096, 4097, 9001,
                               57000, 57001, 65535])
def test_in_cksum_sum_chunked_matches_plain_sum(n: int) -> None:
    rng = random.Random(n)
    data = rng.randbytes(n)
    for buf in (data, bytearray(data), memoryview(data)):
        for initial in (0, 1, 0xFFFF, 0x1234567):
            assert in_cksum_sum(buf, initial) == _ref_sum(data, initial)
    assert in_cksum_sum(bytes(n)) == _ref_sum(bytes(n))            # +0 stays 0
    assert in_cksum_sum(b"\xff" * n) == _ref_sum(b"\xff" * n)      # -0 is 0xffff


@pytest.mark.parametrize("n", [4095, 4096, 4097, 4098, 9001, 57000, 57001, 65535])
def test_in_cksum_sum_same_with_and_without_numpy(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """The numpy path (large buffers, when numpy is installed) and the pure path agree."""
    from rumpnet.netinet import in_cksum as ic

    if ic.NUMPY is None:
        pytest.skip("numpy is not installed (the 'fast' extra): only the pure path exists")
    rng = random.Random(n)
    cases = [rng.randbytes(n), bytes(n), b"\xff" * n]
    views = [memoryview(bytearray(8) + c)[8:] for c in cases]      # offset views too
    inits = (0, 1, 0xFFFF, 0x1234567)
    fast = [ic.in_cksum_sum(b, i) for b in [*cases, *views] for i in inits]
    monkeypatch.setattr(ic, "NUMPY", None)
    pure = [ic.in_cksum_sum(b, i) for b in [*cases, *views] for i in inits]
    assert fast == pure == [_ref_sum(bytes(b), i) for b in [*cases, *views] for i in inits]


def test_in_pseudo_sum_matches_packed_header() -> None:
    rng = random.Random(1)
    for _ in range(2000):
        src, dst, length = rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16)
        proto = rng.choice((0, 6, 17, 255))
        assert in_pseudo_sum(src, dst, proto, length) == \
            _ref_sum(struct.pack("!IIBBH", src, dst, 0, proto, length))
    assert in_pseudo_sum(0, 0, 0, 0) == 0
    for _ in range(500):  # 128-bit addresses: the IPv6 pseudo-header (RFC 8200 8.1)
        src, dst, length = rng.getrandbits(128), rng.getrandbits(128), rng.getrandbits(16)
        proto = rng.choice((6, 17, 58))
        assert in_pseudo_sum(src, dst, proto, length) == \
            _ref_sum(src.to_bytes(16, "big") + dst.to_bytes(16, "big") + struct.pack("!IxxxB", length, proto))
    for bad in ((1 << 128, 0, 6, 0), (0, 0, 6, 1 << 16), (-1, 0, 6, 0), (0, 0, 6, -1)):
        with pytest.raises(struct.error):
            in_pseudo_sum(*bad)


# ----- wire format fast paths ------------------------------------------------------------
def test_emit_timestamp_fast_path_is_byte_exact() -> None:
    rng = random.Random(2)
    for n in (0, 1, 1388, 1448, 9000):
        payload = rng.randbytes(n)
        r = TcpRepr(1234, 80, 0xFFFFFFF0, 77, TH_ACK | TH_PUSH, 4000, 0,
                    timestamps=(0xDEADBEEF, 12345), payload=payload)
        raw = tcpw.emit(r, 0x0A000001, 0x0A000002)
        opts = tcpw.options_bytes(r)
        want = bytearray(struct.pack("!HHIIBBHHH", 1234, 80, 0xFFFFFFF0, 77, 8 << 4,
                                     TH_ACK | TH_PUSH, 4000, 0, 0) + opts + payload)
        struct.pack_into("!H", want, 16, in4_cksum(0x0A000001, 0x0A000002, 6, want))
        assert raw == bytes(want)
        assert raw == tcpw.emit_ts(1234, 80, 0xFFFFFFF0, 77, TH_ACK | TH_PUSH, 4000, 0,
                                   0xDEADBEEF, 12345, payload, 0x0A000001, 0x0A000002)


def test_parse_timestamp_fast_path_matches_option_walk() -> None:
    r = TcpRepr(1234, 80, 5, 6, TH_ACK, 100, timestamps=(7, 8), payload=b"data")
    fast = tcpw.parse(tcpw.emit(r, 1, 2), 1, 2, csum_ok=False)   # NOP NOP TS: fast path
    # The same option laid out TS NOP NOP goes through the general option walk.
    hdr = struct.pack("!HHIIBBHHH", 1234, 80, 5, 6, 8 << 4, TH_ACK, 100, 0, 0)
    raw = bytearray(hdr + struct.pack("!BBII", 8, 10, 7, 8) + b"\x01\x01" + b"data")
    struct.pack_into("!H", raw, 16, in4_cksum(1, 2, 6, raw))
    slow = tcpw.parse(bytes(raw), 1, 2, csum_ok=False)
    for got in (fast, slow):
        got.payload = bytes(got.payload)
        assert got == r


# ----- one ACK per batch -------------------------------------------------------------------
def _scaled(env: Env) -> TcpCb:
    """An established connection with window scaling, timestamps and SACK."""
    cb = env.connect(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=0x12, window=65535, mss=1460,
                      wscale=7, sack_permitted=True, timestamps=(100, cb.ts_now(0.0))))
    env.recv()
    assert cb.state == TcpState.ESTABLISHED and cb.t_flags & 0x40     # TF_RCVD_SCALE
    return cb


def _data(env: Env, cb: TcpCb, now: float, k: int, size: int = 1448) -> None:
    env.send(now, seg(seq=R_ISS + 1 + k * size, ack=cb.snd_una, window=512,
                      timestamps=(101 + k, cb.ts_now(now)), payload=b"x" * size))


def test_one_ack_per_batch() -> None:
    env = Env(**FULL)
    cb = _scaled(env)
    for k in range(6):                   # six full segments in one loop turn
        _data(env, cb, 1.0, k)
    env.nothing()                        # no ACK while the batch is being taken in ...
    assert env.proto.get_timer() == 1.0  # ... one is due at once (end of the turn)
    got = env.recv(1.0)
    assert [(g.flags, g.ack) for g in got] == [(TH_ACK, R_ISS + 1 + 6 * 1448)]
    env.nothing(1.2)                     # and the delayed-ACK timer is gone with it


def test_ack_batch_off_acks_every_second_segment() -> None:
    env = Env(ack_batch=0, **FULL)
    cb = _scaled(env)
    acks = []
    for k in range(6):
        _data(env, cb, 1.0, k)
        acks += [g.ack for g in env.recv()]
    assert acks == [R_ISS + 1 + k * 1448 for k in (2, 4, 6)]     # RFC 1122 4.2.3.2


def test_ack_batch_acks_a_quarter_buffer_at_once() -> None:
    env = Env(recvspace=16384, **FULL)
    cb = _scaled(env)
    acks = []
    for k in range(6):
        _data(env, cb, 1.0, k)
        acks += [g.ack for g in env.recv()]
    # 16 KB rounded up to 12 whole segments: ACKs go out as soon as a quarter of it (4380
    # bytes) is unacknowledged
    assert cb.rcvspace == 12 * 1460
    assert acks == [R_ISS + 1 + 4 * 1448]


def test_out_of_order_still_acked_at_once() -> None:
    env = Env(**FULL)
    cb = _scaled(env)
    _data(env, cb, 1.0, 1)               # a hole: immediate duplicate ACK with SACK
    got = env.recv()
    assert [g.ack for g in got] == [R_ISS + 1]
    assert got[0].sack_blocks == ((R_ISS + 1 + 1448, R_ISS + 1 + 2 * 1448),)


def test_bulk_transfer_sends_few_pure_acks() -> None:
    """A burst that arrives together is acknowledged once; the transfer stays intact."""
    r = transfer(2_000_000, mtu=1500, rfc1323=1, sack=1)
    batched = r["b"].tcps_sndacks
    r0 = transfer(2_000_000, mtu=1500, rfc1323=1, sack=1, ack_batch=0)
    every2 = r0["b"].tcps_sndacks
    assert every2 >= r0["a"].tcps_sndpack // 2 - 5
    assert batched * 4 < every2
    assert r["a"].tcps_sndrexmitpack == 0 and r["time"] <= r0["time"] * 1.5


def test_segment_sizes_unchanged_on_the_fast_emit_path() -> None:
    env = Env(**FULL)
    cb = _scaled(env)
    cb.send(b"y" * 5000, 1.0)
    got = env.recv()
    assert [len(g.payload) for g in got] == [1448, 1448, 1448, 656]
    assert all(g.timestamps == (cb.ts_now(1.0), 100) for g in got)
    assert [g.seq for g in got] == [cb.iss + 1 + i * 1448 for i in range(4)]
    assert all(g.sport == LPORT and g.dport == RPORT for g in got)


# ----- TSO from TCP (TcpProtocol(tso_for=...)) -----------------------------------------------
def _tso_env(tsomax: int) -> tuple[Env, list[tuple[bytes, int]], TcpCb]:
    env = Env(**FULL)
    sent: list[tuple[bytes, int]] = []

    def output(src: int, dst: int, segment: bytes, tso_segsz: int = 0) -> None:
        sent.append((bytes(segment), tso_segsz))

    env.proto.output = output
    env.proto.tso_for = lambda dst: tsomax
    cb = env.connect(0.0)
    sent.clear()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=0x12, window=65535, mss=1460,
                      wscale=7, sack_permitted=True, timestamps=(100, cb.ts_now(0.0))))
    sent.clear()
    return env, sent, cb


def test_tso_superframe_carries_the_same_bytes() -> None:
    data = random.Random(3).randbytes(100_000)
    env, sent, cb = _tso_env(65535 - 40)
    assert cb.t_tsomax == 65535 - 40
    cb.send(data, 1.0)
    big = [(tcpw.parse(raw), segsz) for raw, segsz in sent]
    # the initial window (10 segments) as one superframe of 10 x 1448 bytes
    assert [(len(r.payload), segsz) for r, segsz in big] == [(14480, 1448)]
    r = big[0][0]
    assert r.seq == cb.iss + 1 and r.flags == TH_ACK and bytes(r.payload) == data[:14480]
    assert r.timestamps == (cb.ts_now(1.0), 100)
    assert env.stats.tcps_sndpack == 10 and env.stats.tcps_sndbyte == 14480
    # the same connection without TSO sends the same bytes as 10 segments
    env2, sent2, cb2 = _tso_env(0)
    cb2.send(data, 1.0)
    small = [tcpw.parse(raw, csum_ok=True) for raw, segsz in sent2]
    assert [segsz for _, segsz in sent2] == [0] * 10
    assert b"".join(bytes(s.payload) for s in small) == data[:14480]


def test_tso_never_carries_the_last_byte_or_a_fin() -> None:
    data = b"z" * (5 * 1448 + 100)
    env, sent, cb = _tso_env(65535 - 40)
    cb.send(data, 1.0)
    cb.shutdown_write(1.0)
    got = [(tcpw.parse(raw), segsz) for raw, segsz in sent]
    assert [(len(r.payload), segsz) for r, segsz in got] == [(5 * 1448, 1448), (100, 0),
                                                            (0, 0)]
    assert [r.flags for r, _ in got] == [TH_ACK, TH_ACK | TH_PUSH, TH_ACK | 0x01]
