"""RACK-TLP loss detection (RFC 8985), on the scoreboard's per-run send times (tcp_sack).

RACK ("recent acknowledgment", RFC 8985 section 6) deems a segment lost once a segment sent
after it has been delivered and more than one RTT plus a reordering window has passed since
it was sent; a timer (TCPT_REORDER) fires when the window runs out.  TLP ("tail loss
probe", section 7) sends one segment when no ACK came for about two RTTs (TCPT_TLP), so
that a loss at the tail of a flight is repaired by RACK or fast recovery instead of an
RTO.  Both are for connections with SACK (as in Linux); tcp_recovery drives them and
decides what a loss means for the congestion window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet.tcp_sack import EVER_RETRANS, LOST, RETRANS, SACKED, Record
from rumpnet.netinet.tcp_seq import SEQ_GEQ, SEQ_GT, SEQ_LT, SEQ_MASK

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

MIN_RTT_WINDOW = 300.0      # seconds a minimum RTT sample is trusted (Linux tcp_min_rtt_wlen)
WC_DEL_ACK_T = 0.2          # RFC 8985 7.2 WCDelAckT: worst-case delayed-ACK timer
REO_WND_PERSIST = 16        # RFC 8985 6.2 step 4: recoveries a grown window lasts


class Rack:
    """RACK-TLP's per-connection state (RFC 8985 sections 5.1-5.3)."""

    __slots__ = ("xmit_ts", "tx", "end", "rtt", "min_rtt", "min_rtt_at", "fack", "reordering_seen",
                 "reo_wnd_mult", "reo_wnd_persist", "dsack_round", "tlp_end", "tlp_is_retrans",
                 "tlp_rtt_seen")

    def __init__(self) -> None:
        self.xmit_ts: float | None = None   # RACK.xmit_ts: latest send time delivered
        self.tx = 0                         # ... its transmission number, for ties
        self.end = 0                        # RACK.end_seq (a scoreboard position)
        self.rtt = 0.0                      # RACK.rtt
        self.min_rtt = 0.0                  # RACK.min_RTT (0: no sample yet)
        self.min_rtt_at = 0.0
        self.fack = 0                       # RACK.fack (position)
        self.reordering_seen = False
        self.reo_wnd_mult = 1
        self.reo_wnd_persist = 0
        self.dsack_round: int | None = None
        self.tlp_end: int | None = None     # TLP.end_seq (32-bit sequence number)
        self.tlp_is_retrans = False
        self.tlp_rtt_seen = True            # an RTT sample since the last probe (7.3)

    def rtt_sample(self, rtt: float, now: float) -> None:
        """RFC 8985 6.2 step 1: a windowed minimum of the RTT samples."""
        if self.min_rtt == 0.0 or rtt <= self.min_rtt or now - self.min_rtt_at > MIN_RTT_WINDOW:
            self.min_rtt = max(rtt, 1e-6)
            self.min_rtt_at = now
        self.tlp_rtt_seen = True


def _sent_after(t1: float, tx1: int, e1: int, t2: float, tx2: int, e2: int) -> bool:
    """RFC 8985 6.2 RACK_sent_after: later, or at the same time but sent after: the
    transmission number breaks the tie, and within one transmission (a run sent at once)
    the sequence number does (see tcp_sack)."""
    return t1 > t2 or (t1 == t2 and (tx1 > tx2 or (tx1 == tx2 and e1 > e2)))


def rack_delivered(cb: TcpCb, runs: list[Record], tsecr: int | None, now: float) -> None:
    """RFC 8985 6.2 steps 2 and 3 for the runs this ACK delivered (cumulatively or by
    SACK), in sequence order (for never-retransmitted data, also send order)."""
    rk = cb.rack
    best: Record | None = None
    for r in runs:
        e, ts, f, tx = r[1], r[2], r[3], r[4]
        if f & EVER_RETRANS:
            # Step 2: an ACK that may be for an earlier transmission says nothing about the
            # latest one: TSecr older than that transmission, or less than min_RTT since it.
            if tsecr is not None and SEQ_LT(tsecr, cb.ts_now(ts)):
                continue
            if now - ts < rk.min_rtt:
                continue
        elif e < rk.fack:
            if not rk.reordering_seen:
                cb.stats.tcps_rack_reorder_seen += 1
            rk.reordering_seen = True            # step 3: delivered below the forward-most
        if e > rk.fack:
            rk.fack = e
        if best is None or _sent_after(ts, tx, e, best[2], best[4], best[1]):
            best = r
    if best is None:
        return
    rk.rtt = max(now - best[2], 0.0)
    if rk.xmit_ts is None or _sent_after(best[2], best[4], best[1], rk.xmit_ts, rk.tx, rk.end):
        rk.xmit_ts = best[2]
        rk.tx = best[4]
        rk.end = best[1]


def update_reo_wnd(cb: TcpCb, dsack: bool, exiting: bool) -> None:
    """RFC 8985 6.2 step 4: grow the reordering window per round trip that sees a D-SACK;
    shrink it back after 16 recoveries without one."""
    rk = cb.rack
    if rk.dsack_round is not None and SEQ_GEQ(cb.snd_una, rk.dsack_round):
        rk.dsack_round = None
    if rk.dsack_round is None and dsack:
        rk.dsack_round = cb.snd_max
        rk.reo_wnd_mult += 1
        rk.reo_wnd_persist = REO_WND_PERSIST
    elif exiting:
        rk.reo_wnd_persist -= 1
        if rk.reo_wnd_persist <= 0:
            rk.reo_wnd_mult = 1


def reo_wnd(cb: TcpCb) -> float:
    """RFC 8985 6.2 step 4: no window while no reordering was seen and either recovery is
    under way or DupThresh segments are SACKed (so RACK is never slower than DupThresh);
    else min_RTT/4 per multiple, at most SRTT."""
    rk = cb.rack
    if not rk.reordering_seen:
        if cb.in_recovery or cb.rto_recovery:
            return 0.0
        if cb.sack.sacked >= cb.params.dupthresh * cb.segsize():
            return 0.0
    return min(rk.reo_wnd_mult * rk.min_rtt / 4, cb.t_srtt or rk.min_rtt)


def rack_detect_loss(cb: TcpCb, now: float) -> tuple[int, float]:
    """RFC 8985 6.2 step 5 RACK_detect_loss: deem lost every un-SACKed run sent before
    the latest delivered one and more than RACK.rtt + reo_wnd ago.  Returns (bytes newly
    deemed lost, seconds until the next such run would be: 0 for none)."""
    rk = cb.rack
    if rk.xmit_ts is None:
        return 0, 0.0
    xts, xtx, xend = rk.xmit_ts, rk.tx, rk.end
    deadline_in = rk.rtt + reo_wnd(cb)
    sb = cb.sack
    st = cb.stats
    newly = 0
    timeout = 0.0
    for r in sb.segs:
        ts, f, tx = r[2], r[3], r[4]
        if f & SACKED or (f & LOST and not f & RETRANS):
            continue
        if not _sent_after(xts, xtx, xend, ts, tx, r[1]):
            if not f & EVER_RETRANS:
                break        # original sends are in order: every later run is later still
            continue
        remaining = ts + deadline_in - now
        if remaining <= 0:
            if f & RETRANS:
                st.tcps_rack_lost_rexmit += 1
            newly += sb.mark_lost(r)
            st.tcps_rack_lost += 1
        elif remaining > timeout:
            timeout = remaining
    return newly, timeout


def rack_mark_rto(cb: TcpCb, now: float) -> None:
    """RFC 8985 6.3: at an RTO the first outstanding segment is lost; any other only if it
    was sent at least RACK.rtt + reo_wnd ago."""
    sb = cb.sack
    window = cb.rack.rtt + reo_wnd(cb)
    first = True
    for r in sb.segs:
        if r[3] & SACKED:
            continue
        if first or now - r[2] >= window:
            sb.mark_lost(r)
        first = False


# ----- TLP (RFC 8985 section 7) ----------------------------------------------------------
def tlp_pto(cb: TcpCb, rto_deadline: float | None, now: float) -> float | None:
    """RFC 8985 7.2: the probe timeout, or None where no probe may be scheduled (not in
    recovery, no SACKed segments, a probe not already in flight, data outstanding)."""
    if (not cb.params.tlp or cb.in_recovery or cb.rto_recovery or cb.sack.sacked
            or cb.rack.tlp_end is not None or cb.snd_max == cb.snd_una):
        return None
    if cb.t_srtt > 0:
        pto = 2 * cb.t_srtt
        if ((cb.snd_max - cb.snd_una) & SEQ_MASK) <= cb.segsize():
            pto += WC_DEL_ACK_T          # one segment out: the ACK may be delayed
    else:
        pto = 1.0
    deadline = now + pto
    if rto_deadline is not None and deadline > rto_deadline:
        deadline = rto_deadline
    return deadline


def tlp_ack(cb: TcpCb, ack: int, dsack: bool, sack_blocks: bool, dupack: bool) -> bool:
    """RFC 8985 7.4.2: what the ACK says about the probe in flight.  Returns True when the
    probe repaired a loss (the caller reduces cwnd as fast recovery would)."""
    rk = cb.rack
    end = rk.tlp_end
    if end is None or SEQ_LT(ack, end):
        return False
    if not rk.tlp_is_retrans:
        rk.tlp_end = None                # new data probed: delivered, nothing implied
        return False
    if dsack:
        rk.tlp_end = None                # the retransmission was a duplicate
        return False
    if SEQ_GT(ack, end):
        rk.tlp_end = None                # the probe repaired the one loss
        return True
    if dupack and not sack_blocks:
        rk.tlp_end = None                # the original is taken to be lost
        return True
    return False
