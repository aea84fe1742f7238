"""Loss recovery of the sans-IO TCP, smoltcp-style: a segment in, exactly what comes out.

RFC 6675's DupAck (any ACK with new SACK information, whatever its window) and IsLost,
RACK-TLP (RFC 8985), PRR (RFC 6937), spurious-RTO undo (RFC 3522 / RFC 4015), the loss
window and its growth in effective-segment units (RFC 5681) and sender SWS avoidance
(RFC 1122 4.2.3.4).  Each test also checks that the send counters agree with the segments
that came out.
"""

from __future__ import annotations

from typing import Any

import pytest
from test_tcp_harness import R_ISS, TH_ACK, TH_SYN, Env, TcpRepr, seg

from rumpnet.netinet.tcp_var import TcpCb

MSS = 1460
SMSS_TS = MSS - 12            # with timestamps on every segment


class Counted:
    """Every segment the connection emitted, to check the counters against."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.data = 0
        self.total = 0

    def recv(self, now: float | None = None) -> list[TcpRepr]:
        got = self.env.recv(now)
        self._count(got)
        return got

    def run_until(self, t: float) -> list[tuple[float, TcpRepr]]:
        got = self.env.run_until(t)
        self._count([r for _, r in got])
        return got

    def _count(self, segs: list[TcpRepr]) -> None:
        self.total += len(segs)
        self.data += sum(1 for s in segs if s.payload)

    def check(self) -> None:
        """tcps_sndtotal counts every segment emitted, tcps_sndpack + tcps_sndrexmitpack
        every one that carried data (the issue's 2,711 sent against 3,616 data packets)."""
        st = self.env.stats
        assert st.tcps_sndpack + st.tcps_sndrexmitpack == self.data
        assert st.tcps_sndtotal == self.total


def connect(env: Env, rtt: float = 0.1, ts: bool = False) -> tuple[TcpCb, Counted]:
    """An established connection whose SYN,ACK came ``rtt`` after the SYN (the first RTT
    sample: SRTT = min_RTT = rtt)."""
    cb = env.connect(0.0)
    c = Counted(env)
    c.recv()
    extra: dict[str, Any] = {}
    if env.params.sack:
        extra["sack_permitted"] = True
    if ts:
        extra["timestamps"] = (1000, cb.ts_now(0.0))
    env.send(rtt, seg(seq=R_ISS, ack=cb.iss + 1, flags=TH_SYN | TH_ACK, window=65535,
                      mss=MSS, **extra))
    c.recv()
    return cb, c


def ack(env: Env, cb: TcpCb, now: float, n: int, window: int = 65535,
        blocks: tuple[tuple[int, int], ...] = (), smss: int = MSS, **kw: Any) -> None:
    """The peer ACKs byte ``n`` of our stream, SACKing segment ranges [a, b)."""
    base = cb.iss + 1
    env.send(now, seg(seq=R_ISS + 1, ack=base + n, window=window,
                      sack_blocks=tuple((base + a * smss, base + b * smss) for a, b in blocks), **kw))


def seqs(cb: TcpCb, got: list[TcpRepr], smss: int = MSS) -> list[tuple[int, int]]:
    """(segment index, payload length) of what came out."""
    base = cb.iss + 1
    return [((s.seq - base) // smss, len(s.payload)) for s in got]


# ----- RFC 6675 DupAck and IsLost --------------------------------------------------------
@pytest.mark.parametrize("recovery", ["rack", "dupack"])
def test_dupacks_with_a_growing_window_start_recovery(recovery: str) -> None:
    """RFC 6675 section 2: an ACK carrying new SACK information is a DupAck even when its
    window changed (Linux grows its window on nearly every ACK)."""
    env = Env(sack=1, recovery=recovery)
    cb, c = connect(env)
    cb.send(b"s" * (MSS * 10), 0.1)
    assert len(c.recv()) == 10
    ack(env, cb, 0.2, 0, window=30000, blocks=((1, 2),))
    ack(env, cb, 0.2, 0, window=31000, blocks=((1, 3),))
    assert c.recv() == [] and env.stats.tcps_fast_rexmit == 0
    ack(env, cb, 0.2, 0, window=32000, blocks=((1, 4),))
    assert seqs(cb, c.recv()) == [(0, MSS)]                  # the fast retransmission
    assert env.stats.tcps_fast_rexmit == 1 and cb.in_recovery
    assert env.stats.tcps_rcvdupack == 3
    c.check()


def test_islost_starts_recovery_on_the_first_ack() -> None:
    """RFC 6675 section 5 step 2: one ACK whose SACK blocks cover more than
    (DupThresh - 1) * SMSS above SND.UNA makes IsLost(SND.UNA) true: recovery at once."""
    env = Env(sack=1, recovery="dupack")
    cb, c = connect(env)
    cb.send(b"s" * (MSS * 10), 0.1)
    c.recv()
    ack(env, cb, 0.2, 0, blocks=((1, 5),))
    assert seqs(cb, c.recv()) == [(0, MSS)]
    assert cb.t_dupacks == 1 and cb.in_recovery and env.stats.tcps_dupack_lost == 1
    c.check()


# ----- RACK (RFC 8985 section 6) --------------------------------------------------------
def test_rack_waits_a_reordering_window_then_retransmits() -> None:
    """One segment SACKed (fewer than DupThresh, no reordering seen): RACK waits
    min_RTT/4 past RACK.rtt, then deems the first segment lost and retransmits it."""
    env = Env(sack=1)
    cb, c = connect(env, rtt=0.1)
    cb.send(b"r" * (MSS * 10), 0.1)
    c.recv()
    ack(env, cb, 0.2, 0, blocks=((1, 2),))
    assert c.recv() == []                                    # within the window
    out = c.run_until(0.3)
    # sent at 0.1, RACK.rtt 0.1, reo_wnd 0.1/4: lost at 0.225
    assert [(t, i) for t, (i, _) in zip([t for t, _ in out], seqs(cb, [r for _, r in out]))] \
        == [(pytest.approx(0.225), 0)]
    st = env.stats
    assert st.tcps_rack_lost == 1 and st.tcps_rack_reordertimeo == 1 and cb.in_recovery
    c.check()


def test_rack_detects_a_lost_retransmission() -> None:
    """RFC 8985 section 2.2: a retransmission that is lost again is deemed lost once a
    segment sent after it is delivered (no RTO), and resent ahead of new data."""
    env = Env(sack=1)
    cb, c = connect(env)
    cb.send(b"r" * (MSS * 14), 0.1)
    assert len(c.recv()) == 10
    ack(env, cb, 0.2, 0, blocks=((1, 4),))
    assert seqs(cb, c.recv()) == [(0, MSS)]                  # fast retransmit at 0.2
    ack(env, cb, 0.25, 0, blocks=((1, 10),))
    # PRR's slow start reduction bound: pipe is below ssthresh, new data sent after it
    assert seqs(cb, c.recv()) == [(10, MSS), (11, MSS), (12, MSS), (13, MSS)]
    ack(env, cb, 0.36, 0, blocks=((10, 11), (1, 10)))        # 10 delivered: 0 lost again
    assert seqs(cb, c.recv()) == [(0, MSS)]
    assert env.stats.tcps_rack_lost_rexmit == 1 and env.stats.tcps_rexmttimeo == 0
    c.check()


# ----- TLP (RFC 8985 section 7) ----------------------------------------------------------
def test_tail_loss_probe_then_rack_repairs_the_tail() -> None:
    """The last two segments are lost: after 2*SRTT a probe resends the last one; its
    SACK lets RACK deem the other lost, all before the RTO."""
    env = Env(sack=1)
    cb, c = connect(env, rtt=0.1)
    cb.send(b"t" * (MSS * 10), 1.0)
    c.recv()
    ack(env, cb, 1.1, 8 * MSS)
    assert c.recv() == []
    out = c.run_until(1.5)
    assert [t for t, _ in out] == [pytest.approx(1.1 + 2 * cb.t_srtt)]
    assert seqs(cb, [r for _, r in out]) == [(9, MSS)]        # the probe: the last segment
    assert env.stats.tcps_tlp_probes == 1 and env.stats.tcps_tlp_probe_rexmit == 1
    ack(env, cb, 1.41, 8 * MSS, blocks=((9, 10),))         # the probe arrived
    assert seqs(cb, c.recv()) == [(8, MSS)]
    ack(env, cb, 1.52, 10 * MSS)
    assert cb.snd_una == cb.snd_max and env.stats.tcps_rexmttimeo == 0
    c.check()


def test_tlp_probe_of_new_data() -> None:
    """RFC 8985 7.3: with unsent data the receiver's window allows, the probe is one new
    segment even though cwnd is full."""
    env = Env(sack=1)
    cb, c = connect(env, rtt=0.1)
    cb.send(b"t" * (MSS * 12), 1.0)
    assert len(c.recv()) == 10                               # IW10
    out = c.run_until(1.25)
    assert seqs(cb, [r for _, r in out]) == [(10, MSS)]
    assert env.stats.tcps_tlp_probes == 1 and env.stats.tcps_tlp_probe_rexmit == 0
    c.check()


# ----- PRR (RFC 6937) ---------------------------------------------------------------------
def test_prr_sends_one_segment_per_two_delivered_at_half_ssthresh() -> None:
    """NewReno halves: while pipe > ssthresh, PRR sends ssthresh/RecoverFS = 1/2 of what
    is delivered, so one new segment for every second ACK (RFC 6937 section 5 example)."""
    env = Env(sack=1)
    cb, c = connect(env)
    cb.snd_cwnd = 20 * MSS
    cb.send(b"p" * (MSS * 40), 0.1)
    assert len(c.recv()) == 20
    ack(env, cb, 0.2, 0, blocks=((1, 2),))
    ack(env, cb, 0.2, 0, blocks=((1, 3),))
    # RFC 6675 5 step 3: SACKed segments leave the pipe, new ones may take their place
    assert seqs(cb, c.recv()) == [(20, MSS), (21, MSS)]
    ack(env, cb, 0.2, 0, blocks=((1, 4),))
    assert seqs(cb, c.recv()) == [(0, MSS)]
    assert cb.snd_ssthresh == 11 * MSS and cb.recover_fs == 22 * MSS
    per_ack = []
    for k in range(5, 13):
        ack(env, cb, 0.2, 0, blocks=((1, k),))
        per_ack.append([i for i, _ in seqs(cb, c.recv())])
    assert per_ack == [[], [], [22], [], [23], [], [24], []]
    assert env.stats.tcps_prr_recoveries == 1
    ack(env, cb, 0.3, 23 * MSS)                              # past the recovery point
    assert not cb.in_recovery and cb.snd_cwnd == cb.snd_ssthresh
    assert len(c.recv()) == 9               # up to cwnd: 11 - (25 - 23) segments
    c.check()


# ----- RTOs: loss window, spurious undo -----------------------------------------------------
@pytest.mark.parametrize("sack", [0, 1])
def test_rto_resends_one_full_effective_segment_and_no_runt(sack: int) -> None:
    """RFC 5681 3.1: the loss window is one SMSS, here 1448 bytes (the MSS less the
    timestamp option): one full segment after the RTO, not 1448 bytes and a 12-byte runt,
    and whole segments as cwnd grows."""
    env = Env(sack=sack, rfc1323=1, tlp=0)
    cb, c = connect(env, ts=True)
    cb.send(b"o" * (SMSS_TS * 10), 0.1)
    assert [len(s.payload) for s in c.recv()] == [SMSS_TS] * 10
    out = c.run_until(1.2)
    assert [(i, n) for i, n in seqs(cb, [r for _, r in out], SMSS_TS)] == [(0, SMSS_TS)]
    assert cb.snd_cwnd == SMSS_TS and env.stats.tcps_rexmttimeo == 1
    env.send(1.3, seg(seq=R_ISS + 1, ack=cb.iss + 1 + SMSS_TS, timestamps=(1001, cb.ts_now(1.1))))
    assert seqs(cb, c.recv(), SMSS_TS) == [(1, SMSS_TS), (2, SMSS_TS)]
    c.check()


def test_spurious_rto_is_undone() -> None:
    """RFC 3522: the first ACK after an RTO echoes a timestamp older than the
    retransmission's, so the original arrived: RFC 4015 restores cwnd and ssthresh and
    sending resumes from SND.MAX, nothing else resent."""
    env = Env(sack=1, rfc1323=1, tlp=0)
    cb, c = connect(env, ts=True)
    cb.send(b"u" * (SMSS_TS * 20), 0.1)
    assert len(c.recv()) == 10
    cwnd = cb.snd_cwnd
    assert seqs(cb, [r for _, r in c.run_until(1.2)], SMSS_TS) == [(0, SMSS_TS)]
    assert cb.snd_cwnd == SMSS_TS
    # The ACK of the original flight, delayed: it echoes the TSval of 0.1.
    env.send(1.25, seg(seq=R_ISS + 1, ack=cb.iss + 1 + 10 * SMSS_TS,
                       timestamps=(1001, cb.ts_now(0.1))))
    st = env.stats
    assert st.tcps_rexmttimeo_spurious == 1 and st.tcps_sndrexmitbad == 1
    assert cb.snd_cwnd >= cwnd and not cb.rto_recovery
    assert seqs(cb, c.recv(), SMSS_TS) == [(i, SMSS_TS) for i in range(10, 20)]
    c.check()


def test_real_rto_is_not_undone() -> None:
    """The retransmission's own timestamp echoed: the original was lost, cwnd stays."""
    env = Env(sack=1, rfc1323=1, tlp=0)
    cb, c = connect(env, ts=True)
    cb.send(b"u" * (SMSS_TS * 10), 0.1)
    c.recv()
    c.run_until(1.2)
    env.send(1.25, seg(seq=R_ISS + 1, ack=cb.iss + 1 + SMSS_TS, timestamps=(1001, cb.ts_now(1.1))))
    assert env.stats.tcps_rexmttimeo_spurious == 0 and cb.snd_cwnd == 2 * SMSS_TS
    assert cb.rto_recovery


def test_rto_after_sack_said_lost_is_counted() -> None:
    """tcps_rexmttimeo_sacklost counts RTOs of a segment SACK had deemed lost but that
    was never resent (the defect of issue 13).  Made here by a recovery point still
    pending (RFC 6675 5.1: no new recovery) and a cwnd the pipe fills."""
    env = Env(sack=1, recovery="dupack", tlp=0)
    cb, c = connect(env)
    cb.send(b"c" * (MSS * 10), 0.1)
    c.recv()
    cb.snd_recover = cb.snd_max
    cb.snd_cwnd = MSS
    ack(env, cb, 0.2, 0, blocks=((1, 5),))
    assert c.recv() == [] and cb.sack.lost_pending() == MSS
    assert seqs(cb, [r for _, r in c.run_until(1.2)]) == [(0, MSS)]
    assert env.stats.tcps_rexmttimeo_sacklost == 1


# ----- sender SWS avoidance (RFC 1122 4.2.3.4) --------------------------------------------
def test_sender_sws_no_runt_into_a_small_window() -> None:
    """The peer's window shrinks to 2000 bytes: one full segment goes, the 540 bytes
    left of the window wait (less than a segment and less than half the largest window
    seen), until the window opens."""
    env = Env()
    cb, c = connect(env)
    cb.send(b"w" * (MSS * 4), 0.1)
    assert len(c.recv()) == 4
    ack(env, cb, 0.2, 4 * MSS, window=2000)
    cb.send(b"w" * (MSS * 4), 0.3)
    assert seqs(cb, c.recv()) == [(4, MSS)]
    ack(env, cb, 0.4, 5 * MSS, window=65535)
    assert [n for _, n in seqs(cb, c.recv())] == [MSS, MSS, MSS]
    c.check()


def test_cwnd_not_a_multiple_of_smss_sends_whole_segments() -> None:
    """cwnd of 2.5 segments (CUBIC grows it by fractions): two full segments, not a
    third of half a segment."""
    env = Env()
    cb, c = connect(env)
    cb.snd_cwnd = MSS * 5 // 2
    cb.snd_ssthresh = 2 * MSS                                # congestion avoidance
    cb.send(b"w" * (MSS * 5), 0.1)
    assert [n for _, n in seqs(cb, c.recv())] == [MSS, MSS]
    ack(env, cb, 0.2, MSS, window=65535)
    assert len(c.recv()) == 1
    c.check()


def test_recovery_sysctl_choices() -> None:
    from rumpkern import rump_init

    k = rump_init(clock="virtual")
    try:
        assert "rack" in k.sysctl("net.inet.tcp.recovery")
        k.sysctl("-w", "net.inet.tcp.recovery=dupack")
        assert k.inet.tcp.params.recovery == "dupack"
        with pytest.raises(OSError):
            k.sysctl("-w", "net.inet.tcp.recovery=fack")
    finally:
        k.halt()



# ----- HyStart++ (RFC 9406) and CUBIC after an RTO (RFC 9438 4.8) --------------------------
def _slow_start_run(env: Env, cb: TcpCb, rtt_at: Any, until: float) -> None:
    """Drive slow start: the peer ACKs every segment one RTT (``rtt_at(send time)``) after
    it was sent, echoing the timestamp it carried."""
    import heapq

    pending: list[tuple[float, int, int]] = []

    def take(now: float) -> None:
        for s in env.recv():
            if s.payload:
                heapq.heappush(pending, (now + rtt_at(now), (s.seq + len(s.payload)) & 0xFFFFFFFF,
                                         s.timestamps[0] if s.timestamps else 0))

    cb.send(b"h" * (SMSS_TS * 3000), 0.1)
    take(0.1)
    while pending and pending[0][0] < until:
        t, end, tsval = heapq.heappop(pending)
        env.send(t, seg(seq=R_ISS + 1, ack=end, window=65535, timestamps=(1001, tsval)))
        take(t)


def test_hystart_plus_plus_leaves_slow_start_when_the_rtt_grows() -> None:
    """RFC 9406 4.2: a round whose minimum RTT exceeds the last round's by more than
    clamp(last/8, 4 ms, 16 ms) enters conservative slow start (growth / 4); after
    CSS_ROUNDS rounds of it, ssthresh = cwnd: congestion avoidance, without a loss."""
    env = Env(congctl="cubic", rfc1323=1, sack=1)
    cb, c = connect(env, ts=True)
    _slow_start_run(env, cb, lambda now: 0.1 if now < 0.5 else 0.13, until=0.75)
    st = env.stats
    assert st.tcps_hystart_css == 1 and st.tcps_hystart_exit == 0
    css_cwnd = cb.snd_cwnd
    _slow_start_run(env, cb, lambda now: 0.13, until=1.8)
    assert st.tcps_hystart_exit == 1 and cb.snd_ssthresh < 1 << 30
    assert cb.snd_cwnd < 4 * css_cwnd      # a slow start would have grown 2x per round


def test_hystart_plus_plus_off_keeps_slow_start() -> None:
    env = Env(congctl="cubic", rfc1323=1, sack=1, hystart=0)
    cb, c = connect(env, ts=True)
    _slow_start_run(env, cb, lambda now: 0.1 if now < 0.5 else 0.13, until=1.8)
    assert env.stats.tcps_hystart_css == 0 and cb.snd_ssthresh >= 1 << 30


def test_cubic_after_an_rto_starts_its_curve_at_the_cwnd_it_has() -> None:
    """RFC 9438 4.8: after a timeout, the first congestion avoidance stage takes K = 0 and
    W_max = the cwnd at its start (no concave jump back to the old W_max)."""
    from rumpnet.netinet.tcp_congctl import Cubic

    env = Env(congctl="cubic")
    cb, _ = connect(env)
    cc = cb.cc
    assert isinstance(cc, Cubic)
    cb.snd_cwnd = 100 * MSS
    cc.on_congestion(1.0)
    assert cc.w_max == 100
    cc.on_rto(1.0)
    cb.snd_cwnd = cb.snd_ssthresh = 10 * MSS           # slow start over: CA from 10
    cc.on_ack(MSS, 2.0)
    assert cc.k == 0.0 and cc.w_max == pytest.approx(10.0)
