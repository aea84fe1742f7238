"""SACK scoreboard (RFC 6675 IsLost / Pipe / NextSeg) and receiver SACK blocks
(RFC 2018 section 4)."""

from __future__ import annotations

from rumpnet.netinet.tcp_sack import SackScoreboard, rcv_sack_update

BASE = 0xFFFFF000          # exercise wrap-around
MSS = 1000


def abs_(rel: int) -> int:
    return (BASE + rel) & 0xFFFFFFFF


def board() -> SackScoreboard:
    sb = SackScoreboard()
    sb.clear(BASE)
    return sb


def test_update_merge_and_ignore_bogus() -> None:
    sb = board()
    flight = 10 * MSS
    assert sb.update([(abs_(1000), abs_(2000))], flight)
    assert sb.update([(abs_(2000), abs_(4000))], flight)          # adjacent: merged
    assert sb.blocks == [[1000, 4000]] and sb.sacked == 3000
    assert not sb.update([(abs_(1500), abs_(3000))], flight)      # nothing new
    assert not sb.update([(abs_(-2000), abs_(-1000))], flight)    # D-SACK below SND.UNA
    assert not sb.update([(abs_(9000), abs_(12000))], flight)     # beyond SND.MAX
    assert not sb.update([(abs_(5000), abs_(5000))], flight)      # empty
    assert sb.update([(abs_(6000), abs_(7000)), (abs_(8000), abs_(9000))], flight)
    assert sb.blocks == [[1000, 4000], [6000, 7000], [8000, 9000]]


def test_islost_pipe_nextseg() -> None:
    sb = board()
    flight = 10 * MSS
    sb.update([(abs_(1000), abs_(4000))], flight)
    assert sb.is_lost(0, MSS, 3)                    # 3000 > 2*MSS SACKed above
    assert not sb.is_lost(3500, MSS, 3)
    assert sb.pipe(flight, MSS, 3) == 6000           # tail only; the hole is lost
    assert sb.next_seg(flight, MSS, 3) == (0, 1000)
    sb.high_rxt = 1000
    assert sb.pipe(flight, MSS, 3) == 7000           # the retransmission is in flight
    assert sb.next_seg(flight, MSS, 3) is None
    sb.update([(abs_(5000), abs_(6000))], flight)
    holes = sb.holes(flight)
    assert [(a, b) for a, b, _ in holes] == [(0, 1000), (4000, 5000)]
    # hole 4000-5000 has only 1000 bytes SACKed above: not lost yet
    assert sb.pipe(flight, MSS, 3) == 4000 + 1000 + 1000
    assert sb.next_seg(flight, MSS, 3) is None
    assert sb.next_seg(flight, MSS, 3, rule3=True) == (4000, 5000)
    sb.update([(abs_(6000), abs_(8000))], flight)
    assert sb.next_seg(flight, MSS, 3) == (4000, 5000)    # now 3000 above: lost


def test_discontiguous_blocks_make_loss() -> None:
    sb = board()
    flight = 20 * MSS
    sb.update([(abs_(2000), abs_(2100)), (abs_(3000), abs_(3100)),
               (abs_(4000), abs_(4100))], flight)
    assert sb.is_lost(0, MSS, 3)                    # DupThresh discontiguous ranges


def test_advance_trims() -> None:
    sb = board()
    flight = 10 * MSS
    sb.update([(abs_(1000), abs_(4000)), (abs_(6000), abs_(7000))], flight)
    sb.high_rxt = 1000
    sb.advance(abs_(2000))
    assert sb.blocks == [[0, 2000], [4000, 5000]] and sb.sacked == 3000
    assert sb.high_rxt == 0
    sb.advance(abs_(7500))
    assert sb.blocks == [] and not sb


def test_receiver_blocks_most_recent_first() -> None:
    r1 = (100, 200)
    r2 = (300, 400)
    r3 = (500, 600)
    out = rcv_sack_update([], [r1], (100, 200), 3)
    assert out == [r1]
    out = rcv_sack_update(out, [r1, r2], (300, 400), 3)
    assert out == [r2, r1]
    out = rcv_sack_update(out, [r1, r2, r3], (500, 600), 3)
    assert out == [r3, r2, r1]
    # a segment extends r1: r1 (grown) first
    out = rcv_sack_update(out, [(100, 250), r2, r3], (200, 250), 3)
    assert out == [(100, 250), r3, r2]
    assert rcv_sack_update(out, [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10)], None, 4) \
        .__len__() == 4


def test_dsack_reported_for_duplicate_segment() -> None:
    from test_tcp_harness import R_ISS, TH_ACK, TH_SYN, Env, seg

    env = Env(sack=1)
    cb = env.connect(0.0)
    env.recv()
    env.send(0.0, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, sack_permitted=True))
    env.recv()
    base = R_ISS + 1
    env.send(0.0, seg(seq=base, ack=cb.iss + 1, payload=b"a" * 100))
    env.recv(1.0)
    env.send(1.0, seg(seq=base, ack=cb.iss + 1, payload=b"a" * 100, flags=TH_ACK))
    got = env.recv()
    assert got[0].ack == base + 100 and got[0].sack_blocks == ((base, base + 100),)
    env.send(1.1, seg(seq=base + 100, ack=cb.iss + 1, payload=b"b" * 10))
    assert env.recv(2.0)[0].sack_blocks == ()     # reported once only


def test_idle_restart_window() -> None:
    from test_tcp_harness import R_ISS, Env, seg

    env = Env()
    cb = env.established()
    iw = cb.snd_cwnd
    cb.snd_cwnd = 100 * 1460
    cb.send(b"a", 0.0)
    env.recv()
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 2))
    assert cb.snd_cwnd >= 100 * 1460
    cb.send(b"b", 10.0)                       # idle for more than an RTO
    assert cb.snd_cwnd == iw
