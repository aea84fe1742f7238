"""Congestion control (NetBSD tcp_congctl.c): NewReno (RFC 5681, RFC 6582) and CUBIC
(RFC 9438) with HyStart++ (RFC 9406), chosen by ``params.congctl`` from :data:`CONGCTL`;
and PRR (RFC 6937), which sets cwnd during fast recovery whatever the algorithm.

Windows are in bytes, counted in units of the effective segment size (SMSS: the MSS less
the options every segment carries, RFC 5681 section 2 and RFC 9293 3.7.1), so that the
loss window and every increment are whole segments that tcp_output can fill.

The algorithm only decides ``snd_cwnd`` / ``snd_ssthresh``; loss detection and the
recovery states live in tcp_recovery and tcp_rack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpnet.netinet.tcp_seq import SEQ_GEQ, SEQ_MASK

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

INFINITE_SSTHRESH = 1 << 30

# RFC 9406 section 4.3 constants.
HS_MIN_RTT_THRESH = 0.004
HS_MAX_RTT_THRESH = 0.016
HS_MIN_RTT_DIVISOR = 8
HS_N_RTT_SAMPLE = 8
HS_CSS_GROWTH_DIVISOR = 4
HS_CSS_ROUNDS = 5


class CongCtl:
    name = "base"
    hystart_capable = False

    def __init__(self, cb: TcpCb) -> None:
        self.cb = cb
        self.bytes_acked = 0
        # HyStart++ (RFC 9406 4.2): the current round ends when SND.UNA passes round_end.
        self.round_end: int | None = None
        self.last_round_min = float("inf")
        self.cur_round_min = float("inf")
        self.rtt_count = 0
        self.css_baseline: float | None = None     # set while in CSS
        self.css_rounds = 0

    def initial_window(self) -> int:
        """RFC 6928: min(init_win*SMSS, max(2*SMSS, 14600)) for init_win 10."""
        smss = self.cb.segsize()
        iw = self.cb.params.init_win
        if iw <= 4:
            return iw * smss
        return min(iw * smss, max(2 * smss, 14600 * iw // 10))

    def conn_init(self, now: float) -> None:
        self.cb.snd_cwnd = self.initial_window()

    def flight(self) -> int:
        cb = self.cb
        return (cb.snd_max - cb.snd_una) & SEQ_MASK

    def slow_start(self, acked: int) -> None:
        """RFC 5681 3.1 with appropriate byte counting L=2*SMSS (RFC 3465) per ACK, and
        HyStart++'s conservative slow start (CSS) in the initial one (RFC 9406 4.2)."""
        cb = self.cb
        smss = cb.segsize()
        two = 2 * smss
        if acked > two and cb.params.abc_stretch \
                and SEQ_GEQ((cb.snd_una - acked) & SEQ_MASK, cb.snd_recover):
            # A stretch ACK -- a receiver acknowledging a batch of segments once (GRO/LRO,
            # tcp_var.TcpParams.ack_batch) -- stands for one delayed ACK per two segments
            # it covers and is credited as those would be (as Linux does), so that slow
            # start still doubles cwnd per round trip.  Not while retransmitted data is
            # being acknowledged (below snd_recover, after an RTO or fast recovery): there
            # L=2*SMSS keeps the burst that a large cumulative ACK would release small.
            inc = acked
        else:
            inc = min(acked, two)
        if self.hystart_on():
            inc = self._hystart_ack(inc)
        cb.snd_cwnd += inc

    # ----- HyStart++ (RFC 9406) ----------------------------------------------------------
    def hystart_on(self) -> bool:
        """Only in the initial slow start (RFC 9406 4.3: ssthresh never set yet)."""
        cb = self.cb
        return self.hystart_capable and bool(cb.params.hystart) and cb.snd_ssthresh >= INFINITE_SSTHRESH

    def on_rtt(self, rtt: float) -> None:
        """An RTT sample (RFC 9406 4.2: the minimum of each round)."""
        if rtt < self.cur_round_min:
            self.cur_round_min = rtt
        self.rtt_count += 1

    def _hystart_ack(self, inc: int) -> int:
        cb = self.cb
        st = cb.stats
        if self.round_end is None or SEQ_GEQ(cb.snd_una, self.round_end):
            # A round ends: the next begins with what is sent from now on.
            if self.css_baseline is not None:
                self.css_rounds += 1
                if self.css_rounds >= HS_CSS_ROUNDS:
                    cb.snd_ssthresh = max(cb.snd_cwnd, 2 * cb.segsize())   # enter CA
                    st.tcps_hystart_exit += 1
                    return inc // HS_CSS_GROWTH_DIVISOR
            self.round_end = cb.snd_max
            self.last_round_min = self.cur_round_min
            self.cur_round_min = float("inf")
            self.rtt_count = 0
        ready = (self.rtt_count >= HS_N_RTT_SAMPLE and self.cur_round_min != float("inf")
                 and self.last_round_min != float("inf"))
        if self.css_baseline is None:
            if ready:
                thresh = max(HS_MIN_RTT_THRESH,
                             min(self.last_round_min / HS_MIN_RTT_DIVISOR, HS_MAX_RTT_THRESH))
                if self.cur_round_min >= self.last_round_min + thresh:
                    self.css_baseline = self.cur_round_min        # delay grew: CSS
                    self.css_rounds = 0
                    st.tcps_hystart_css += 1
        elif ready and self.cur_round_min < self.css_baseline:
            self.css_baseline = None                              # a false alarm: back to SS
        if self.css_baseline is not None:
            return inc // HS_CSS_GROWTH_DIVISOR
        return inc

    # ----- the algorithm's decisions --------------------------------------------------
    def on_ack(self, acked: int, now: float) -> None:
        """A new cumulative ACK of ``acked`` bytes outside fast recovery."""
        raise NotImplementedError

    def on_congestion(self, now: float, flight: int | None = None) -> None:
        """Entering fast recovery (a TLP-detected loss, an ECN echo): set ssthresh from
        ``flight``, the FlightSize when the signal came (default: now)."""
        raise NotImplementedError

    def on_rto(self, now: float) -> None:
        """Retransmission timeout: RFC 5681 eq. (4), cwnd = loss window = 1 SMSS."""
        cb = self.cb
        self.on_congestion(now)
        cb.snd_cwnd = cb.segsize()
        self.bytes_acked = 0

    def on_recovery_exit(self, now: float) -> None:
        """NewReno (no SACK) leaves recovery: RFC 6582 3.2 step 6, deflate to
        min(ssthresh, FlightSize + SMSS)."""
        cb = self.cb
        smss = cb.segsize()
        cb.snd_cwnd = max(min(cb.snd_ssthresh, self.flight() + smss), smss)
        self.bytes_acked = 0

    def save(self) -> Any:
        """The algorithm's state, for :meth:`restore` after a spurious congestion event."""
        return None

    def restore(self, saved: Any) -> None:
        """Undo a reduction found spurious (RFC 4015 section 4, RFC 9438 4.9)."""


class NewReno(CongCtl):
    name = "newreno"

    def on_ack(self, acked: int, now: float) -> None:
        cb = self.cb
        if cb.snd_cwnd < cb.snd_ssthresh:
            self.slow_start(acked)
            return
        # Congestion avoidance, byte counting (RFC 5681 3.1, RFC 3465).
        self.bytes_acked += acked
        if self.bytes_acked >= cb.snd_cwnd:
            self.bytes_acked -= cb.snd_cwnd
            cb.snd_cwnd += cb.segsize()

    def on_congestion(self, now: float, flight: int | None = None) -> None:
        cb = self.cb
        fs = self.flight() if flight is None else flight
        cb.snd_ssthresh = max(fs // 2, 2 * cb.segsize())                # RFC 5681 eq. (4)


class Cubic(CongCtl):
    """RFC 9438.  Windows are in segments (floats) inside the algorithm."""

    name = "cubic"
    hystart_capable = True
    C = 0.4
    BETA = 0.7
    ALPHA = 3.0 * (1.0 - BETA) / (1.0 + BETA)    # RFC 9438 4.3

    def __init__(self, cb: TcpCb) -> None:
        super().__init__(cb)
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0
        self.cwnd_prior = 0.0
        self.after_rto = False

    def _epoch(self, now: float, cwnd: float) -> None:
        """The start of a congestion avoidance stage (RFC 9438 4.2, 4.8)."""
        self.epoch_start = now
        if self.after_rto or cwnd >= self.w_max:
            # RFC 9438 4.8: after a timeout, K = 0 and W_max the cwnd now; likewise when
            # cwnd already exceeds W_max.
            self.k = 0.0
            self.w_max = cwnd
            self.after_rto = False
        else:
            self.k = ((self.w_max - cwnd) / self.C) ** (1.0 / 3.0)   # RFC 9438 eq. (2)
        self.w_est = cwnd

    def on_ack(self, acked: int, now: float) -> None:
        cb = self.cb
        if cb.snd_cwnd < cb.snd_ssthresh:
            self.slow_start(acked)
            return
        smss = cb.segsize()
        cwnd = cb.snd_cwnd / smss
        if self.epoch_start is None:
            self._epoch(now, cwnd)
        t = now - self.epoch_start  # type: ignore[operator]
        rtt = cb.t_srtt if cb.t_srtt > 0 else 0.1
        segs = acked / smss
        # RFC 9438 4.3: the Reno-friendly estimate; alpha 1 once W_est reached the cwnd
        # of the last reduction.
        alpha = 1.0 if self.w_est >= self.cwnd_prior else self.ALPHA
        self.w_est += alpha * segs / cwnd
        w_cubic_t = self.C * (t - self.k) ** 3 + self.w_max
        if w_cubic_t < self.w_est:
            new = self.w_est
        else:
            target = self.C * (t + rtt - self.k) ** 3 + self.w_max     # RFC 9438 4.2
            target = min(max(target, cwnd), 1.5 * cwnd)
            new = cwnd + (target - cwnd) / cwnd * segs               # RFC 9438 4.4, 4.5
        if new > cwnd:
            cb.snd_cwnd = max(cb.snd_cwnd, int(new * smss))

    def on_congestion(self, now: float, flight: int | None = None) -> None:
        cb = self.cb
        smss = cb.segsize()
        cwnd = cb.snd_cwnd / smss
        # Fast convergence (RFC 9438 4.7).
        if cwnd < self.w_max:
            self.w_max = cwnd * (1.0 + self.BETA) / 2.0
        else:
            self.w_max = cwnd
        self.cwnd_prior = cwnd
        # RFC 9438 4.6: ssthresh = flight_size * beta, at least 2 SMSS.
        fs = self.flight() if flight is None else flight
        cb.snd_ssthresh = max(int(min(fs, cb.snd_cwnd) * self.BETA), 2 * smss)
        self.epoch_start = None

    def on_rto(self, now: float) -> None:
        super().on_rto(now)
        self.after_rto = True

    def save(self) -> Any:
        return (self.w_max, self.k, self.epoch_start, self.w_est, self.cwnd_prior, self.after_rto)

    def restore(self, saved: Any) -> None:
        if saved is not None:
            (self.w_max, self.k, self.epoch_start, self.w_est, self.cwnd_prior,
             self.after_rto) = saved


CONGCTL: dict[str, type[CongCtl]] = {"newreno": NewReno, "reno": NewReno, "cubic": Cubic}


def congctl_class(name: str) -> type[CongCtl]:
    return CONGCTL.get(name, NewReno)


# ----- PRR (RFC 6937) ------------------------------------------------------------------
def prr_start(cb: TcpCb, count: bool = True, flight: int | None = None) -> None:
    """At the start of recovery (RFC 6937 section 3): nothing delivered or sent yet,
    RecoverFS the FlightSize (``flight``: when the signal came; default now).
    ``count``: a loss recovery (tcps_prr_recoveries), not an ECN reduction (tcp_ecn,
    counted in tcps_ecn_rcwnd)."""
    cb.prr_delivered = 0
    cb.prr_out = 0
    fs = (cb.snd_max - cb.snd_una) & SEQ_MASK if flight is None else flight
    cb.recover_fs = max(fs, 1)
    if count:
        cb.stats.tcps_prr_recoveries += 1


def prr_ack(cb: TcpCb, delivered: int, pipe: int, fast_rexmit: bool = False) -> None:
    """On every ACK in recovery (RFC 6937 section 3): cwnd = pipe + sndcnt, where sndcnt
    keeps what is sent proportional to what was delivered while pipe is above ssthresh
    (PRR), and lets pipe climb back toward ssthresh by at most one SMSS more than was
    delivered while below (the slow start reduction bound, PRR-SSRB).  The ACK that
    starts recovery may always send the fast retransmission (RFC 6675 section 5 step 4)."""
    smss = cb.segsize()
    cb.prr_delivered += delivered
    ssthresh = cb.snd_ssthresh
    if pipe > ssthresh:
        sndcnt = -((-cb.prr_delivered * ssthresh) // cb.recover_fs) - cb.prr_out   # CEIL
    else:
        limit = max(cb.prr_delivered - cb.prr_out, delivered) + smss
        sndcnt = min(ssthresh - pipe, limit)
    if sndcnt < 0:
        sndcnt = 0
    if fast_rexmit and sndcnt < smss:
        sndcnt = smss
    cb.snd_cwnd = pipe + sndcnt
