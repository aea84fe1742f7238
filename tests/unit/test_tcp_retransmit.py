"""RTO (RFC 6298), Karn, fast retransmit / NewReno (RFC 5681, 6582), SACK recovery
(RFC 6675), limited transmit (RFC 3042), NewReno and CUBIC (RFC 9438) windows."""

from __future__ import annotations

import pytest
from test_tcp_harness import R_ISS, TH_ACK, TH_SYN, Env, TcpState, seg

from rumpnet.netinet.tcp_congctl import Cubic, NewReno

MSS = 1460


def est(env: Env, rtt: float = 0.0, **kw):
    cb = env.connect(0.0)
    env.recv()
    extra = {"sack_permitted": True} if env.params.sack else {}
    env.send(rtt, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, window=65535,
                      mss=MSS, **extra, **kw))
    env.recv()
    return cb


def ack(env: Env, cb, now: float, n: int, window: int = 65535, **kw) -> None:
    """Peer ACKs up to byte n of our stream."""
    env.send(now, seg(seq=R_ISS + 1, ack=cb.iss + 1 + n, window=window, **kw))


def test_rto_backoff_timeline() -> None:
    env = Env(rtomin=1.0, rtomax=64.0, rexmit_max=12)
    cb = est(env)
    cb.send(b"x" * 100, 0.0)
    env.recv()
    out = env.run_until(300.0)
    times = [t for t, r in out if r.payload]
    assert times == [1.0, 3.0, 7.0, 15.0, 31.0, 63.0, 127.0, 191.0, 255.0]
    assert all(r.seq == cb.iss + 1 for _, r in out)
    assert env.stats.tcps_rexmttimeo == 9


def test_rtt_estimator_and_rtomin() -> None:
    env = Env(rtomin=0.2)
    cb = est(env, rtt=0.1)
    assert cb.t_srtt == pytest.approx(0.1)
    assert cb.t_rttvar == pytest.approx(0.05)
    cb.send(b"x" * 10, 0.1)
    env.recv()
    assert env.proto.get_timer() == pytest.approx(0.1 + 0.3)
    ack(env, cb, 0.4, 10)   # RTT 0.3
    assert cb.t_srtt == pytest.approx(0.875 * 0.1 + 0.125 * 0.3)
    assert cb.t_rttvar == pytest.approx(0.75 * 0.05 + 0.25 * 0.2)


def test_karn_no_sample_from_retransmission() -> None:
    env = Env()
    cb = est(env, rtt=0.1)
    srtt = cb.t_srtt
    n = env.stats.tcps_rttupdated
    cb.send(b"x" * 10, 0.1)
    env.recv()
    env.run_until(1.5)           # one retransmission at 1.1
    assert cb.t_rxtshift == 1
    ack(env, cb, 1.6, 10)
    assert cb.t_srtt == srtt and env.stats.tcps_rttupdated == n
    assert cb.t_rxtshift == 1    # backed-off RTO kept until a valid sample
    cb.send(b"y" * 10, 2.0)
    env.recv()
    ack(env, cb, 2.2, 20)
    assert env.stats.tcps_rttupdated == n + 1 and cb.t_rxtshift == 0


def test_fast_retransmit_newreno_and_limited_transmit() -> None:
    env = Env()
    cb = est(env)
    cb.send(b"d" * (MSS * 30), 0.0)
    first = env.recv()
    assert len(first) == 10                      # IW10 (RFC 6928)
    ack(env, cb, 0.1, 0)     # not a dupack: nothing outstanding changed? it is a dupack
    got = env.recv()
    assert [g.seq for g in got] == [cb.iss + 1 + 10 * MSS]   # limited transmit
    ack(env, cb, 0.1, 0)
    got = env.recv()
    assert [g.seq for g in got] == [cb.iss + 1 + 11 * MSS]
    assert env.stats.tcps_limited_transmit == 2
    ack(env, cb, 0.1, 0)
    got = env.recv()
    assert [g.seq for g in got] == [cb.iss + 1]   # fast retransmit
    assert env.stats.tcps_fast_rexmit == 1 and cb.in_recovery
    assert cb.snd_ssthresh == 12 * MSS // 2
    assert cb.snd_cwnd == cb.snd_ssthresh + 3 * MSS
    # further dupacks inflate cwnd; new data flows once cwnd > flight
    for _ in range(4):
        ack(env, cb, 0.1, 0)
    got = env.recv()
    assert [g.seq for g in got] == [cb.iss + 1 + 12 * MSS]
    # partial ACK (RFC 6582): retransmit the next hole at once
    ack(env, cb, 0.2, 2 * MSS)
    got = env.recv()
    assert got[0].seq == cb.iss + 1 + 2 * MSS
    assert env.stats.tcps_partial_acks == 1 and cb.in_recovery
    # full ACK: leave recovery
    ack(env, cb, 0.3, 13 * MSS)
    assert not cb.in_recovery
    assert cb.snd_cwnd <= cb.snd_ssthresh
    assert env.stats.tcps_rexmttimeo == 0


def test_no_fast_retransmit_after_rto_until_recover() -> None:
    env = Env()
    cb = est(env)
    cb.send(b"d" * (MSS * 4), 0.0)
    env.recv()
    env.run_until(1.0)         # RTO: recover = snd_max
    env.recv()
    for _ in range(3):
        ack(env, cb, 1.1, 0)
    assert env.stats.tcps_rcvdupack == 3  # taken as duplicate ACKs ...
    assert env.stats.tcps_fast_rexmit == 0  # ... that start no recovery (RFC 6582 3.2)


def test_sack_recovery_retransmits_holes() -> None:
    env = Env(sack=1)
    cb = est(env)
    assert cb.t_flags & 0x0200
    cb.send(b"s" * (MSS * 10), 0.0)
    assert len(env.recv()) == 10
    base = cb.iss + 1

    def sack(now: float, *blocks: tuple[int, int]) -> None:
        env.send(now, seg(seq=R_ISS + 1, ack=base, window=65535,
                          sack_blocks=tuple((base + a * MSS, base + b * MSS)
                                            for a, b in blocks)))

    # segments 0 and 4 lost; the receiver SACKs 1..3, then 5..9 arrive
    sack(0.1, (1, 2))
    sack(0.1, (1, 3))
    assert env.stats.tcps_fast_rexmit == 0
    sack(0.1, (1, 4))              # 3 dup ACKs: enter SACK recovery
    got = env.recv()
    assert got[0].seq == base and env.stats.tcps_sack_recovery_episode == 1
    sack(0.1, (5, 6), (1, 4))
    sack(0.1, (5, 7), (1, 4))
    sack(0.1, (5, 8), (1, 4))       # now segment 4 is lost per IsLost (3 segs above)
    got = env.recv()
    assert base + 4 * MSS in [g.seq for g in got]
    assert env.stats.tcps_rexmttimeo == 0
    assert env.stats.tcps_sack_rexmits >= 1
    # cumulative ACK of everything ends recovery
    ack(env, cb, 0.2, 10 * MSS)
    assert not cb.in_recovery


def test_sack_dsack_tolerated() -> None:
    env = Env(sack=1)
    cb = est(env)
    cb.send(b"s" * (MSS * 2), 0.0)
    env.recv()
    ack(env, cb, 0.1, MSS)
    # D-SACK (RFC 2883) below the cumulative ACK: ignored
    env.send(0.1, seg(seq=R_ISS + 1, ack=cb.iss + 1 + MSS,
                      sack_blocks=((cb.iss + 1, cb.iss + 1 + MSS),)))
    assert not cb.sack.blocks and cb.state == TcpState.ESTABLISHED


def test_newreno_congestion_avoidance_growth() -> None:
    env = Env()
    cb = est(env)
    cc = cb.cc
    assert isinstance(cc, NewReno)
    cb.snd_ssthresh = 10 * MSS
    cb.snd_cwnd = 10 * MSS
    for _ in range(10):
        cc.on_ack(MSS, 1.0)
    assert cb.snd_cwnd == 11 * MSS
    cb.snd_cwnd = 2 * MSS
    cc.on_ack(MSS, 1.0)                   # slow start below ssthresh
    assert cb.snd_cwnd == 3 * MSS


def test_cubic_window_growth() -> None:
    env = Env(congctl="cubic")
    cb = est(env, rtt=0.1)
    cc = cb.cc
    assert isinstance(cc, Cubic)
    cb.snd_cwnd = 100 * MSS
    una, cb.snd_max = cb.snd_max, cb.snd_max + 100 * MSS     # a full window in flight
    cc.on_congestion(0.0)
    cb.snd_max = una
    assert cb.snd_ssthresh == 70 * MSS                        # RFC 9438 4.6: flight * beta
    cb.snd_cwnd = cb.snd_ssthresh
    k = (30 / 0.4) ** (1 / 3)
    t = 0.0
    trace = []
    while t < 2 * k:
        # one window of ACKs per RTT
        for _ in range(cb.snd_cwnd // MSS):
            cc.on_ack(MSS, t)
        trace.append((t, cb.snd_cwnd / MSS))
        t += 0.1
    w_at_k = min(trace, key=lambda x: abs(x[0] - k))[1]
    assert 95 <= w_at_k <= 106            # plateau near W_max at t = K
    early = [w for tt, w in trace if tt < k / 2]
    assert early[-1] - early[0] > 15       # concave: fast growth right after the loss
    assert trace[-1][1] > 110               # convex: probing beyond W_max later
    # compare: Reno would only have grown ~1 MSS per RTT
    assert trace[-1][1] - 70 > len(trace) * 0.5


def test_cubic_rto() -> None:
    env = Env(congctl="cubic")
    cb = est(env)
    cb.send(b"q" * 1000, 0.0)
    env.recv()
    env.run_until(1.0)
    assert cb.snd_cwnd == cb.t_maxseg


def test_rto_3s_after_syn_retransmit_without_sample() -> None:
    env = Env(init_rto=1.0, rtomin=0.2)
    cb = env.connect(0.0)
    env.recv()
    env.run_until(1.0)               # SYN retransmitted: Karn, no sample
    env.send(1.5, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, mss=MSS))
    env.recv()
    assert cb.t_srtt == 0.0
    cb.send(b"x", 2.0)
    env.recv()
    assert env.proto.get_timer() == pytest.approx(5.0)    # RFC 6298 5.7: 3 s
