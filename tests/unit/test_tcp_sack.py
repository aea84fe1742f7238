"""SACK scoreboard (RFC 6675 IsLost / Pipe / NextSeg) and receiver SACK blocks
(RFC 2018 section 4)."""

from __future__ import annotations

from rumpnet.netinet.tcp_sack import SACKED, SackScoreboard, rcv_sack_update

BASE = 0xFFFFF000          # exercise wrap-around
MSS = 1000


def abs_(rel: int) -> int:
    return (BASE + rel) & 0xFFFFFFFF


def board(segments: int = 10, now: float = 0.0) -> SackScoreboard:
    """A scoreboard with ``segments`` MSS-sized segments sent at ``now``, one run each."""
    sb = SackScoreboard()
    sb.clear(BASE)
    for i in range(segments):
        sb.sent(abs_(i * MSS), MSS, now + i * 1e-3)
    return sb


def flags(sb: SackScoreboard) -> list[tuple[int, int, int]]:
    return [(r[0] - sb.base_pos, r[1] - sb.base_pos, r[3]) for r in sb.segs]


def test_update_merge_and_ignore_bogus() -> None:
    sb = board()
    top = abs_(10 * MSS)
    assert sb.update([(abs_(1000), abs_(2000))], top)[0] == 1000
    assert sb.update([(abs_(2000), abs_(4000))], top)[0] == 2000
    assert sb.blocks == [[1000, 4000]] and sb.sacked == 3000
    assert sb.update([(abs_(1500), abs_(3000))], top)[0] == 0     # nothing new
    n, runs, dsack = sb.update([(abs_(-2000), abs_(-1000))], top)  # D-SACK below SND.UNA
    assert (n, runs, dsack) == (0, [], True)
    assert sb.update([(abs_(9000), abs_(12000))], top)[0] == 0     # beyond SND.MAX
    assert sb.update([(abs_(5000), abs_(5000))], top)[0] == 0      # empty
    assert sb.update([(abs_(6000), abs_(7000)), (abs_(8000), abs_(9000))], top)[0] == 2000
    assert sb.blocks == [[1000, 4000], [6000, 7000], [8000, 9000]]
    # RFC 2883 4: a first block inside the second one reports a duplicate
    assert sb.update([(abs_(6200), abs_(6400)), (abs_(6000), abs_(7000))], top)[2]


def test_partial_block_splits_a_run() -> None:
    sb = SackScoreboard()
    sb.clear(BASE)
    sb.sent(BASE, 10 * MSS, 0.0)                 # one superframe, one run
    assert len(sb.segs) == 1
    n, runs, _ = sb.update([(abs_(2500), abs_(4000))], abs_(10 * MSS))
    assert n == 1500 and [(r[0], r[1]) for r in runs] == [(2500, 4000)]
    assert flags(sb) == [(0, 2500, 0), (2500, 4000, SACKED), (4000, 10000, 0)]


def test_islost_pipe_nextseg() -> None:
    sb = board()
    flight = 10 * MSS
    sb.update([(abs_(1000), abs_(4000))], abs_(flight))
    assert sb.is_lost(0, MSS, 3)                    # 3000 > 2*MSS SACKed above
    assert not sb.is_lost(3500, MSS, 3)
    assert sb.pipe(flight) == 7000                  # nothing deemed lost yet
    assert sb.mark_lost_dupthresh(MSS, 3) == 1000   # RFC 6675: the hole below
    assert sb.pipe(flight) == 6000 and sb.lost_pending() == 1000
    r = sb.next_lost()
    assert r is not None and (r[0], r[1]) == (0, 1000)
    sb.sent(abs_(0), MSS, 1.0)                      # its retransmission is in flight
    assert sb.pipe(flight) == 7000 and sb.next_lost() is None and sb.lost_pending() == 0
    sb.update([(abs_(5000), abs_(6000))], abs_(flight))
    # hole 4000-5000 has only 1000 bytes SACKed above: not lost yet
    assert sb.mark_lost_dupthresh(MSS, 3) == 0
    sb.update([(abs_(6000), abs_(8000))], abs_(flight))
    assert sb.mark_lost_dupthresh(MSS, 3) == 1000   # now 3000 above: lost
    r = sb.next_lost()
    assert r is not None and (r[0] - sb.base_pos, r[1] - sb.base_pos) == (4000, 5000)
    # the retransmission of 0-1000 is lost too: it needs sending again
    sb.mark_lost(sb.segs[0])
    assert sb.next_lost() is sb.segs[0]


def test_discontiguous_blocks_make_loss() -> None:
    sb = board(20)
    sb.update([(abs_(2000), abs_(2100)), (abs_(3000), abs_(3100)),
               (abs_(4000), abs_(4100))], abs_(20 * MSS))
    assert sb.is_lost(0, MSS, 3)                    # DupThresh discontiguous ranges
    assert not sb.is_lost(2500, MSS, 3)


def test_advance_trims_and_counts() -> None:
    sb = board()
    flight = 10 * MSS
    sb.update([(abs_(1000), abs_(4000)), (abs_(6000), abs_(7000))], abs_(flight))
    sb.mark_lost_dupthresh(MSS, 3)
    delivered = sb.advance(abs_(2000))
    assert [(r[0], r[1]) for r in delivered] == [(0, 1000)]      # only what was not SACKed
    assert sb.blocks == [[0, 2000], [4000, 5000]] and sb.sacked == 3000
    assert sb.lost == 0
    sb.advance(abs_(7500))
    assert sb.blocks == [] and not sb
    assert flags(sb) == [(0, 500, 0), (500, 1500, 0), (1500, 2500, 0)]
    sb.advance(abs_(10 * MSS))
    assert sb.segs == [] and sb.sacked == sb.lost == sb.retrans == 0


def test_spurious_undo_unmarks() -> None:
    sb = board(4)
    for r in sb.segs:
        sb.mark_lost(r)
    sb.sent(BASE, MSS, 5.0)
    assert sb.lost == 4000 and sb.retrans == 1000 and sb.pipe(4000) == 1000
    sb.unmark_lost()
    assert sb.lost == 0 and sb.pipe(4000) == 5000 and sb.next_lost() is None


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
