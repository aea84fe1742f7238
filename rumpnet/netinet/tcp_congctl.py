"""Congestion control (NetBSD tcp_congctl.c): NewReno (RFC 5681, RFC 6582) and CUBIC
(RFC 9438), chosen by ``params.congctl`` from :data:`CONGCTL`.

The algorithm only decides ``snd_cwnd`` / ``snd_ssthresh``; the loss-recovery machinery
(duplicate ACK counting, NewReno partial ACKs, SACK recovery) lives in tcp_input.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet.tcp_seq import SEQ_GEQ

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb


class CongCtl:
    name = "base"

    def __init__(self, cb: TcpCb) -> None:
        self.cb = cb
        self.bytes_acked = 0

    def initial_window(self) -> int:
        """RFC 6928 (init_win segments, capped like min(10*MSS, max(2*MSS, 14600)))."""
        mss = self.cb.t_maxseg
        iw = self.cb.params.init_win
        if iw <= 4:
            return iw * mss
        return min(iw * mss, max(2 * mss, 14600 * iw // 10))

    def conn_init(self, now: float) -> None:
        self.cb.snd_cwnd = self.initial_window()

    def flight(self) -> int:
        cb = self.cb
        return (cb.snd_max - cb.snd_una) & 0xFFFFFFFF

    def slow_start(self, acked: int) -> None:
        # RFC 5681 3.1 with appropriate byte counting L=2*SMSS (RFC 3465) per ACK.
        cb = self.cb
        two = 2 * cb.t_maxseg
        if acked > two and cb.params.abc_stretch \
                and SEQ_GEQ((cb.snd_una - acked) & 0xFFFFFFFF, cb.snd_recover):
            # A stretch ACK -- a receiver acknowledging a batch of segments once (GRO/LRO,
            # tcp_var.TcpParams.ack_batch) -- stands for one delayed ACK per two segments
            # it covers and is credited as those would be (as Linux does), so that slow
            # start still doubles cwnd per round trip.  Not while retransmitted data is
            # being acknowledged (below snd_recover, after an RTO or fast recovery): there
            # L=2*SMSS keeps the burst that a large cumulative ACK would release small.
            cb.snd_cwnd += acked
        else:
            cb.snd_cwnd += min(acked, two)

    def on_ack(self, acked: int, now: float) -> None:
        """A new cumulative ACK of ``acked`` bytes outside loss recovery."""
        raise NotImplementedError

    def on_congestion(self, now: float) -> None:
        """Entering fast recovery (3 dup ACKs / SACK loss): set ssthresh."""
        raise NotImplementedError

    def on_rto(self, now: float) -> None:
        """Retransmission timeout: RFC 5681 eq. (4), cwnd = loss window = 1 SMSS."""
        cb = self.cb
        self.on_congestion(now)
        cb.snd_cwnd = cb.t_maxseg
        self.bytes_acked = 0

    def on_recovery_exit(self, now: float) -> None:
        cb = self.cb
        # RFC 6582 3.2 step 6: deflate to min(ssthresh, FlightSize + SMSS).
        cb.snd_cwnd = max(min(cb.snd_ssthresh, self.flight() + cb.t_maxseg), cb.t_maxseg)
        self.bytes_acked = 0


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
            cb.snd_cwnd += cb.t_maxseg

    def on_congestion(self, now: float) -> None:
        cb = self.cb
        cb.snd_ssthresh = max(self.flight() // 2, 2 * cb.t_maxseg)   # RFC 5681 eq. (4)


class Cubic(CongCtl):
    """RFC 9438.  Windows are kept in segments (floats) inside the algorithm."""

    name = "cubic"
    C = 0.4
    BETA = 0.7

    def __init__(self, cb: TcpCb) -> None:
        super().__init__(cb)
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0
        self.cwnd_seg = 0.0

    def on_ack(self, acked: int, now: float) -> None:
        cb = self.cb
        mss = cb.t_maxseg
        if cb.snd_cwnd < cb.snd_ssthresh:
            self.slow_start(acked)
            return
        cwnd = cb.snd_cwnd / mss
        if self.epoch_start is None:                      # RFC 9438 4.2
            self.epoch_start = now
            if cwnd < self.w_max:
                self.k = ((self.w_max - cwnd) / self.C) ** (1.0 / 3.0)
            else:
                self.k = 0.0
                self.w_max = cwnd
            self.w_est = cwnd
        t = now - self.epoch_start
        rtt = cb.t_srtt if cb.t_srtt > 0 else 0.1
        # RFC 9438 4.3: Reno-friendly region estimate.
        alpha = 3.0 * (1.0 - self.BETA) / (1.0 + self.BETA)
        self.w_est += alpha * (acked / mss) / cwnd
        w_cubic_t = self.C * (t - self.k) ** 3 + self.w_max
        if w_cubic_t < self.w_est:
            new = self.w_est
        else:
            target = self.C * (t + rtt - self.k) ** 3 + self.w_max
            target = min(max(target, cwnd), 1.5 * cwnd)    # RFC 9438 4.4
            new = cwnd + (target - cwnd) / cwnd * (acked / mss)
        if new > cwnd:
            cb.snd_cwnd = max(cb.snd_cwnd, int(new * mss))

    def on_congestion(self, now: float) -> None:
        cb = self.cb
        mss = cb.t_maxseg
        cwnd = cb.snd_cwnd / mss
        # Fast convergence (RFC 9438 4.7).
        if cwnd < self.w_max:
            self.w_max = cwnd * (1.0 + self.BETA) / 2.0
        else:
            self.w_max = cwnd
        cb.snd_ssthresh = max(int(cwnd * self.BETA * mss), 2 * mss)
        self.epoch_start = None

    def on_rto(self, now: float) -> None:
        super().on_rto(now)
        self.epoch_start = None


CONGCTL: dict[str, type[CongCtl]] = {"newreno": NewReno, "reno": NewReno, "cubic": Cubic}


def congctl_class(name: str) -> type[CongCtl]:
    return CONGCTL.get(name, NewReno)
