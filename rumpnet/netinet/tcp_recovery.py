"""Loss recovery: what an ACK or a timer means for lost data and for cwnd (NetBSD
tcp_input.c's fast retransmit and tcp_sack.c's recovery, split out of tcp_input).

With SACK (RFC 2018) every ACK goes through :func:`sack_ack`: the scoreboard learns what
was delivered, loss is detected by RACK (RFC 8985, ``net.inet.tcp.recovery=rack``, the
default) or by RFC 6675's DupThresh rule (``recovery=dupack``), where a DupAck is any ACK
carrying new SACK information, whatever its window says (RFC 6675 section 2).  Deemed-lost
data is retransmitted by tcp_output ahead of new data, as cwnd - pipe allows; in fast
recovery PRR (RFC 6937) sets cwnd.  An RTO (:func:`sack_rto`) deems lost what RACK says and
resends the first segment, keeping what SACK said (no go-back-N); an RTO found spurious by
its ACK's timestamp echo (RFC 3522) is undone (RFC 4015).  Tail loss probes (RFC 8985
section 7) are sent by :func:`tlp_fire`.

Without SACK, duplicate ACKs are counted as RFC 5681 defines them and recovery is NewReno
(RFC 6582): :func:`newreno_dupack`, :func:`newreno_partial_ack`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet import tcp_congctl as _cc
from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet import tcp_rack as _rack
from rumpnet.netinet.tcp import TcpRepr
from rumpnet.netinet.tcp_const import (
    TCPT_REORDER,
    TCPT_REXMT,
    TCPT_TLP,
    TF_ECN_PERMIT,
    TF_RCVD_TSTMP,
    TF_SACK_PERMIT,
    TF_SENTFIN,
)
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.netinet.tcp_sack import EVER_RETRANS, SACKED
from rumpnet.netinet.tcp_seq import SEQ_GEQ, SEQ_LT, SEQ_MASK

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

M = SEQ_MASK


def flight(cb: TcpCb) -> int:
    return (cb.snd_max - cb.snd_una) & M


# ----- SACK connections ----------------------------------------------------------------
def sack_ack(cb: TcpCb, seg: TcpRepr, acked: int, tsecr: int | None, now: float) -> None:
    """Everything loss recovery does with an acceptable ACK on a SACK connection, after
    SND.UNA has moved by ``acked`` (RFC 6675 section 5, RFC 8985 6.2 and 7.4, RFC 6937).
    Sends nothing itself: the caller's tcp_output sends what this made due."""
    if not acked and not seg.sack_blocks and cb.rack.tlp_end is None:
        return              # nothing delivered, nothing learnt (a receiver's common case)
    p = cb.params
    st = cb.stats
    sb = cb.sack
    before = sb.sacked
    runs = sb.advance(cb.snd_una)
    dsack = False
    if seg.sack_blocks:
        st.tcps_sack_rcv_opts += 1
        newly, sruns, dsack = sb.update(seg.sack_blocks, cb.snd_max)
        runs += sruns
    else:
        newly = 0
    delivered = acked + sb.sacked - before          # RFC 6937 DeliveredData
    if runs:
        _rack.rack_delivered(cb, runs, tsecr, now)
    # RFC 6675 section 5: a cumulative ACK resets DupAcks; an ACK with new SACK information
    # is a DupAck whatever else it carries (window, data, a cumulative part).
    if acked:
        cb.t_dupacks = 0
    if newly:
        cb.t_dupacks += 1
        if not acked:
            st.tcps_rcvdupack += 1
    rk = cb.rack
    if rk.tlp_end is not None and _rack.tlp_ack(cb, seg.ack, dsack, bool(seg.sack_blocks),
                                          not acked and not newly and not seg.payload):
        st.tcps_tlp_recovered += 1
        if not cb.in_recovery:
            _tlp_reduce(cb, now)
    exited = _leave_recovery(cb, dsack, now)
    lost = _detect_loss(cb, dsack, now)
    if lost and not cb.in_recovery and not cb.rto_recovery and SEQ_GEQ(cb.snd_una, cb.snd_recover):
        enter_recovery(cb, now)
        _cc.prr_ack(cb, delivered, sb.pipe(flight(cb)), fast_rexmit=True)
    elif cb.in_recovery:
        if p.prr:
            _cc.prr_ack(cb, delivered, sb.pipe(flight(cb)))
        else:
            cb.snd_cwnd = cb.snd_ssthresh    # RFC 6675 section 5 step 4.4
    elif cb.t_flags & TF_ECN_PERMIT and _ecn.cwr_ack(cb, seg.flags, acked, delivered,
                                                           sb.pipe(flight(cb)), now):
        pass                                 # ECE, or an ECN reduction (RFC 3168 6.1.2)
    elif acked and not exited:
        cb.cc.on_ack(acked, now)
    if acked:
        _out.tlp_schedule(cb, now)


def _leave_recovery(cb: TcpCb, dsack: bool, now: float) -> bool:
    """Fast or RTO recovery ends once SND.UNA reaches the recovery point (RFC 6675
    section 5); RFC 6937: cwnd = ssthresh at the end of fast recovery (and the ACK that
    ends it grows nothing).  Returns True when fast recovery ended."""
    exiting = False
    fast = cb.in_recovery
    if (cb.in_recovery or cb.rto_recovery) and SEQ_GEQ(cb.snd_una, cb.snd_recover):
        exiting = True
        if cb.in_recovery:
            cb.snd_cwnd = max(cb.snd_ssthresh, cb.segsize())
        cb.in_recovery = cb.sack_recovery = cb.rto_recovery = False
        cb.t_rxt_tsval = None
    if cb.params.recovery == "rack":
        _rack.update_reo_wnd(cb, dsack, exiting)
    return exiting and fast


def _detect_loss(cb: TcpCb, dsack: bool, now: float) -> int:
    """Deem lost what the chosen rule says; returns bytes newly deemed lost."""
    sb = cb.sack
    if not (sb.sacked or cb.in_recovery or cb.rto_recovery or sb.retrans):
        cb.timers[TCPT_REORDER] = None
        return 0
    if cb.params.recovery == "rack":
        lost, timeout = _rack.rack_detect_loss(cb, now)
        if timeout > 0:
            cb.set_timer(TCPT_REORDER, timeout, now)
        else:
            cb.timers[TCPT_REORDER] = None
        return lost
    smss = cb.segsize()
    lost = sb.mark_lost_dupthresh(smss, cb.params.dupthresh)
    if cb.t_dupacks >= cb.params.dupthresh and sb.segs and not cb.in_recovery:
        # RFC 6675 5 step 1: DupThresh DupAcks start recovery even if their SACKed data
        # is too little for IsLost (small segments): the first segment is resent.
        lost += sb.mark_lost(sb.segs[0])
    cb.stats.tcps_dupack_lost += 1 if lost else 0
    return lost


def enter_recovery(cb: TcpCb, now: float) -> None:
    """RFC 6675 section 5 step 4 (RecoveryPoint = HighData, ssthresh from the algorithm),
    with PRR's initial state (RFC 6937) and TLP's reset (RFC 8985 7.4.1)."""
    st = cb.stats
    st.tcps_fast_rexmit += 1
    st.tcps_sack_recovery_episode += 1
    if _ecn.loss_recovery_starts(cb):       # else an ECN reduction of this window goes on
        cb.cc.on_congestion(now)
        _cc.prr_start(cb)
    cb.snd_recover = cb.snd_max
    cb.in_recovery = cb.sack_recovery = True
    cb.t_rtttime = None
    cb.rack.tlp_end = None
    cb.timers[TCPT_TLP] = None


def _tlp_reduce(cb: TcpCb, now: float) -> None:
    """RFC 8985 7.4.2: a loss the probe repaired calls for the reduction fast recovery
    would have made (ssthresh from the algorithm, cwnd = ssthresh), unless an ECN
    reduction of this window made it already (RFC 3168 6.1.2: once per window)."""
    if cb.ecn_recover is not None:
        return
    cb.cc.on_congestion(now)
    cb.snd_cwnd = max(cb.snd_ssthresh, cb.segsize())
    _ecn.queue_cwr(cb)


def tlp_fire(cb: TcpCb, now: float) -> None:
    """RFC 8985 7.3: the probe timer expired.  With no probe already in flight and an RTT
    sample since the last one, send one new segment if the window allows, else resend the
    last; then the RTO, not another probe, guards the flight."""
    rk = cb.rack
    if (cb.state < TcpState.ESTABLISHED or cb.in_recovery or cb.rto_recovery
            or cb.snd_max == cb.snd_una or rk.tlp_end is not None or not rk.tlp_rtt_seen
            or not cb.t_flags & TF_SACK_PERMIT):
        return
    st = cb.stats
    ss = cb.segsize()
    unsent = len(cb.snd_buf) - ((cb.snd_max - cb.snd_buf_seq) & M)
    room = cb.snd_wnd - flight(cb)
    if unsent > 0 and room >= min(unsent, ss) and cb.snd_nxt == cb.snd_max:
        _out.send_range(cb, cb.snd_max, ss, now)
        cb.snd_nxt = cb.snd_max
        rk.tlp_is_retrans = False
    else:
        fin = 1 if cb.t_flags & TF_SENTFIN and cb.fin_queued else 0
        data = flight(cb) - fin
        n = min(data, ss)
        _out.send_range(cb, (cb.snd_max - fin - n) & M, n, now)
        rk.tlp_is_retrans = True
        st.tcps_tlp_probe_rexmit += 1
    st.tcps_tlp_probes += 1
    rk.tlp_end = cb.snd_max
    rk.tlp_rtt_seen = False
    cb.set_timer(TCPT_REXMT, _out.rexmt_value(cb), now)


def reorder_fire(cb: TcpCb, now: float) -> None:
    """RFC 8985 6.2 step 5: the reordering timer expired; what it waited for is lost."""
    cb.stats.tcps_rack_reordertimeo += 1
    lost, timeout = _rack.rack_detect_loss(cb, now)
    if timeout > 0:
        cb.set_timer(TCPT_REORDER, timeout, now)
    if not lost:
        return
    if not cb.in_recovery and not cb.rto_recovery and SEQ_GEQ(cb.snd_una, cb.snd_recover):
        enter_recovery(cb, now)
        _cc.prr_ack(cb, 0, cb.sack.pipe(flight(cb)), fast_rexmit=True)
    _out.tcp_output(cb, now)


def sack_rto(cb: TcpCb, now: float) -> bool:
    """An RTO on a SACK connection (RFC 6675 5.1, RFC 8985 6.3): deem lost the first
    segment and what RACK's timing says, keep what SACK said, and resend the first segment
    at once (RFC 6298 5.4).  Returns False when the scoreboard cannot say what to resend
    (the caller then goes back N)."""
    sb = cb.sack
    st = cb.stats
    if not sb.segs:
        return False
    head = sb.segs[0]
    smss = cb.segsize()
    if not head[3] & (SACKED | EVER_RETRANS) and sb.is_lost(head[0], smss, cb.params.dupthresh):
        st.tcps_rexmttimeo_sacklost += 1      # SACK said lost, yet it was never resent
    if head[3] & SACKED:
        sb.clear(cb.snd_una)                  # the receiver reneged (RFC 2018 section 8)
        return False
    if cb.params.recovery == "rack":
        _rack.rack_mark_rto(cb, now)
    else:
        for r in sb.segs:
            sb.mark_lost(r)
    cb.timers[TCPT_REORDER] = None
    cb.timers[TCPT_TLP] = None
    cb.rack.tlp_end = None
    n = min(head[1] - head[0], cb.segsize())
    _out.send_range(cb, sb.seq(head[0]), n, now)
    return True


# ----- spurious RTOs (RFC 3522 detection, RFC 4015 response) -------------------------------
def rto_save(cb: TcpCb, now: float) -> None:
    """At the first RTO of a series: what undoing it would restore, and the TSval its
    retransmission carries (RFC 3522 section 3.2, RetransmitTS)."""
    if cb.t_rxtshift != 1 or not cb.params.spurious_rto:
        return
    cb.t_rto_undo = (cb.snd_cwnd, cb.snd_ssthresh, cb.cc.save())
    cb.t_rto_rexmits = 0
    cb.t_rxt_tsval = cb.ts_now(now) if cb.t_flags & TF_RCVD_TSTMP else None


def spurious_rto_check(cb: TcpCb, tsecr: int | None, now: float) -> None:
    """The first ACK of new data after an RTO (RFC 3522 section 3.2): an echo older than
    the retransmission's TSval shows the original arrived, so the timeout was spurious;
    RFC 4015's response restores cwnd and ssthresh and resumes where sending stopped."""
    rxt = cb.t_rxt_tsval
    cb.t_rxt_tsval = None
    if rxt is None or tsecr is None or cb.t_rto_undo is None or not SEQ_LT(tsecr, rxt):
        return
    cwnd, ssthresh, saved = cb.t_rto_undo
    cb.t_rto_undo = None
    st = cb.stats
    st.tcps_rexmttimeo_spurious += 1
    st.tcps_sndrexmitbad += cb.t_rto_rexmits
    cb.cc.restore(saved)
    cb.snd_cwnd = max(cb.snd_cwnd, cwnd)
    cb.snd_ssthresh = max(cb.snd_ssthresh, ssthresh)
    cb.rto_recovery = False
    cb.snd_recover = cb.snd_una
    cb.t_rxtshift = 0
    if cb.t_flags & TF_SACK_PERMIT:
        cb.sack.unmark_lost()
    if SEQ_LT(cb.snd_nxt, cb.snd_max):
        cb.snd_nxt = cb.snd_max          # RFC 4015 section 4: SND.NXT = SND.MAX


# ----- without SACK: NewReno (RFC 5681 3.2, RFC 6582) ----------------------------------------
def newreno_dupack(cb: TcpCb, now: float) -> None:
    """A duplicate ACK as RFC 5681 defines it: fast retransmit / fast recovery (RFC 6582),
    limited transmit (RFC 3042)."""
    p = cb.params
    st = cb.stats
    cb.t_dupacks += 1
    smss = cb.segsize()
    if cb.in_recovery:
        cb.snd_cwnd += smss                    # RFC 5681 3.2 step 4 (inflate)
        _out.tcp_output(cb, now)
        return
    if cb.t_dupacks >= p.dupthresh:
        if not SEQ_GEQ(cb.snd_una, cb.snd_recover):
            return                             # RFC 6582 3.2 step 2: no new recovery
        st.tcps_fast_rexmit += 1
        st.tcps_newreno_recovery += 1
        if _ecn.loss_recovery_starts(cb):   # else an ECN reduction of this window goes on
            cb.cc.on_congestion(now)
        cb.snd_recover = cb.snd_max
        cb.in_recovery = True
        cb.t_rtttime = None
        cb.t_rxtshift = 0
        cb.set_timer(TCPT_REXMT, _out.rexmt_value(cb), now)
        _out.send_range(cb, cb.snd_una, smss, now)
        cb.snd_cwnd = cb.snd_ssthresh + p.dupthresh * smss
        _out.tcp_output(cb, now)
        return
    if p.limited_transmit and cb.snd_nxt == cb.snd_max:
        # RFC 3042: send one new segment per each of the first two dup ACKs.
        old = cb.snd_cwnd
        before = cb.snd_max
        cb.snd_cwnd = flight(cb) + smss
        _out.tcp_output(cb, now)
        cb.snd_cwnd = old
        if cb.snd_max != before:
            st.tcps_limited_transmit += 1


def newreno_ack(cb: TcpCb, acked: int, now: float, flags: int = 0) -> None:
    """A cumulative ACK without SACK (``flags``: its TCP flags): leave recovery at the
    recovery point, or answer a partial ACK (RFC 6582 3.2 step 5: resend the next hole at
    once, deflate cwnd); outside recovery ECE and ECN reductions (tcp_ecn) come first."""
    if not cb.in_recovery:
        cb.t_dupacks = 0
        if not (cb.t_flags & TF_ECN_PERMIT
                and _ecn.cwr_ack(cb, flags, acked, acked, flight(cb), now)):
            cb.cc.on_ack(acked, now)
        return
    if SEQ_GEQ(cb.snd_una, cb.snd_recover):
        cb.in_recovery = False
        cb.t_dupacks = 0
        cb.cc.on_recovery_exit(now)
        return
    cb.stats.tcps_partial_acks += 1
    smss = cb.segsize()
    cb.t_rxtshift = 0
    cb.set_timer(TCPT_REXMT, _out.rexmt_value(cb), now)
    _out.send_range(cb, cb.snd_una, smss, now)
    cb.snd_cwnd = max(cb.snd_cwnd - acked + smss, smss)


__all__ = ["sack_ack", "enter_recovery", "tlp_fire",
           "reorder_fire", "sack_rto", "rto_save", "spurious_rto_check", "newreno_dupack",
           "newreno_ack"]
