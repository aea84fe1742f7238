"""Explicit Congestion Notification for TCP (RFC 3168 section 6.1, as RFC 8311 updates it).

NetBSD keeps ECN inline in tcp_input.c / tcp_output.c / tcp_syncache.c; here it is one
module with hooks where those files have their ECN blocks:

* **negotiation** (RFC 3168 6.1.1): ``net.inet.tcp.ecn.enable`` (FreeBSD's meanings: 0 off,
  1 request on active opens and accept on passive ones, 2 accept only; 0 by default, as
  NetBSD's). An ECN-setup SYN carries ECE and CWR, an ECN-setup SYN-ACK ECE alone (a
  SYN-ACK with both is not one); the SYN is resent as ECN-setup ``ecn.maxretries`` times,
  then without them (6.1.1.1). :func:`connect_init`, :func:`syn_flags` (tcp_output),
  :func:`synack_input` and :func:`syn_input` (tcp_input, SYN-SENT), :func:`syn_accepts`
  (tcp_syncache).
* **sender** (6.1.2, 6.1.4-6.1.6): ECT(0) on new data only -- never on SYNs, pure ACKs,
  retransmissions or window probes; CWR on the first new data after any reduction of
  cwnd; ECE on an ACK reduces cwnd as a loss would, through the congestion-control
  module (ssthresh) and PRR (RFC 6937, as Linux's CWR state), once per window of data and
  without retransmitting: :func:`output`, :func:`cwr_ack`, :func:`loss_recovery_starts`,
  :func:`queue_cwr`.
* **receiver** (6.1.3): CE on an acceptable segment sets ECE on every segment sent until a
  segment with CWR arrives; the first CE of such an episode, and data with CWR, are
  acknowledged at once (as Linux's tcp_ecn_check_ce and tcp_ecn_accept_cwr: the sender's
  cwnd may be low): :func:`segment_input`.

RFC 8311 moved the ECN nonce (RFC 3540) to Historic: ECT(1) from a peer is ECN-capable
like ECT(0) (counted apart, no nonce sum) and the sender uses ECT(0). The response to ECE
is the loss response (RFC 8311 4.1 permits others, e.g. RFC 8511's, as experiments only).
The IP ECN field of an arriving segment is ``TcpRepr.ip_ecn``; the codepoint of a segment
to send goes to the protocol's ``output`` as ``ecn=``, and the IP layer merges it into the
connection's IP_TOS (whose DSCP bits it keeps).

This module imports no TCP module but the constants (tcp_const), the header (tcp) and the
congestion-control algorithms (tcp_congctl): tcp_output, tcp_input, tcp_recovery,
tcp_syncache and tcp_timer call it, never the other way round (no import cycle).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet import tcp_congctl as _cc
from rumpnet.netinet.ip_var import IPTOS_ECN_CE, IPTOS_ECN_ECT0, IPTOS_ECN_ECT1, IPTOS_ECN_NOTECT
from rumpnet.netinet.tcp import TH_ACK, TH_CWR, TH_ECE, TH_SYN, TcpRepr
from rumpnet.netinet.tcp_const import (
    TF_ACKNOW,
    TF_ECN_PERMIT,
    TF_ECN_SND_CWR,
    TF_ECN_SND_ECE,
    TF_FORCE,
    TF_REQ_ECN,
)
from rumpnet.netinet.tcp_seq import SEQ_GT, SEQ_LT, SEQ_MASK

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb, TcpParams

# net.inet.tcp.ecn.enable
ECN_OFF = 0
ECN_ON = 1                 # request on active opens, accept on passive ones
ECN_ACCEPT = 2             # accept only

_SETUP = TH_ECE | TH_CWR


# ----- negotiation (RFC 3168 6.1.1) -----------------------------------------------------
def syn_accepts(p: TcpParams, flags: int) -> bool:
    """A SYN is an ECN-setup SYN (ECE and CWR) that this host takes (ecn.enable 1 or 2):
    the SYN-ACK is to be an ECN-setup SYN-ACK."""
    return p.ecn_enable != ECN_OFF and flags & _SETUP == _SETUP


def connect_init(cb: TcpCb) -> None:
    """Active open: with ecn.enable=1 the SYN asks for ECN."""
    if cb.params.ecn_enable == ECN_ON:
        cb.t_flags |= TF_REQ_ECN


def permit(cb: TcpCb) -> None:
    """ECN negotiated for the connection (tcps_ecn_shs, NetBSD's "successful ECN
    handshakes")."""
    cb.t_flags |= TF_ECN_PERMIT
    cb.stats.tcps_ecn_shs += 1


def syn_flags(cb: TcpCb, flags: int) -> int:
    """The flags of our SYN or SYN-ACK with their ECN bits: ECE and CWR on an ECN-setup
    SYN, while it has been resent at most ``ecn.maxretries`` times (RFC 3168 6.1.1.1: a SYN
    that gets no answer may be a middlebox dropping ECN-setup SYNs); ECE alone on the
    SYN-ACK of a simultaneous open that negotiated ECN."""
    tf = cb.t_flags
    if not flags & TH_ACK:
        if tf & TF_REQ_ECN and cb.t_rxtshift <= cb.params.ecn_maxretries:
            flags |= _SETUP
    elif tf & TF_ECN_PERMIT:
        flags |= TH_ECE
    return flags


def synack_input(cb: TcpCb, seg: TcpRepr) -> None:
    """SYN-SENT gets the SYN-ACK: ECN if we sent an ECN-setup SYN and this is an
    ECN-setup SYN-ACK, ECE without CWR (RFC 3168 6.1.1)."""
    if cb.t_flags & TF_REQ_ECN and seg.flags & _SETUP == TH_ECE:
        permit(cb)


def syn_input(cb: TcpCb, seg: TcpRepr) -> None:
    """SYN-SENT gets a SYN (simultaneous open, RFC 9293 figure 8): like a listener, take an
    ECN-setup SYN when ecn.enable allows, whatever our own SYN was; our SYN-ACK then
    carries ECE (:func:`syn_flags`)."""
    if syn_accepts(cb.params, seg.flags):
        permit(cb)


# ----- receiver (RFC 3168 6.1.3) ----------------------------------------------------------
def segment_input(cb: TcpCb, seg: TcpRepr) -> None:
    """An acceptable segment on an ECN connection: CWR ends the echo, then CE (on this
    segment too) starts it again; counted by codepoint (tcps_ecn_ce, tcps_ecn_ect: NetBSD's;
    tcps_ecn_ect1: FreeBSD's)."""
    tf = cb.t_flags
    st = cb.stats
    if seg.flags & TH_CWR:
        tf &= ~TF_ECN_SND_ECE
        if seg.payload:
            tf |= TF_ACKNOW      # the sender's cwnd may be very low now (as Linux)
    code = seg.ip_ecn
    if code == IPTOS_ECN_CE:
        st.tcps_ecn_ce += 1
        if not tf & TF_ECN_SND_ECE and seg.payload:
            # The first CE of an episode is ACKed at once (Linux's quick ACK): the sender
            # learns of it a delayed-ACK time sooner, and ECE rides on every ACK after.
            tf |= TF_ACKNOW
        tf |= TF_ECN_SND_ECE
    elif code == IPTOS_ECN_ECT0:
        st.tcps_ecn_ect += 1
    elif code == IPTOS_ECN_ECT1:
        st.tcps_ecn_ect1 += 1
    cb.t_flags = tf


# ----- sender (RFC 3168 6.1.2, 6.1.4-6.1.6) -----------------------------------------------
def output(cb: TcpCb, flags: int, new_data: bool, npack: int = 1) -> tuple[int, int]:
    """The ECN of a segment (not a SYN) of an ECN connection: its flags with ECE and CWR,
    and its IP ECN codepoint. ``new_data``: it carries data never sent before and is not a
    window probe -- the only segments that are ECT (6.1.4: not pure ACKs, 6.1.5: not
    retransmissions, 6.1.6: not window probes); CWR goes on the first of them after a
    reduction (6.1.2). ``npack``: the segments a TSO/GSO superframe stands for."""
    tf = cb.t_flags
    st = cb.stats
    ect = IPTOS_ECN_NOTECT
    if new_data:
        ect = IPTOS_ECN_ECT0
        st.tcps_ecn_sndect0 += npack
        if tf & TF_ECN_SND_CWR:
            flags |= TH_CWR
            cb.t_flags = tf & ~TF_ECN_SND_CWR
            st.tcps_ecn_sndcwr += 1
    if tf & TF_ECN_SND_ECE:
        flags |= TH_ECE
        st.tcps_ecn_sndece += npack
    return flags, ect


def segment_ecn(cb: TcpCb, flags: int, snd_nxt: int, length: int, tso: int) -> tuple[int, int]:
    """tcp_output's hook, for a connection that asks for or has ECN: the flags and IP ECN
    codepoint of the segment it builds from ``snd_nxt`` with ``length`` bytes (``tso``:
    the segment size of a superframe, 0 for one segment). A window probe is what BSD
    calls one: a forced single byte."""
    if flags & TH_SYN:
        return syn_flags(cb, flags), IPTOS_ECN_NOTECT
    tf = cb.t_flags
    if not tf & TF_ECN_PERMIT:
        return flags, IPTOS_ECN_NOTECT
    new = (length > 0 and not SEQ_LT(snd_nxt, cb.snd_max)
           and not (tf & TF_FORCE and length == 1))
    return output(cb, flags, new, length // tso if tso else 1)


def queue_cwr(cb: TcpCb) -> None:
    """cwnd was reduced (RTO, fast retransmit, ECE): CWR on the next new data (6.1.2)."""
    if cb.t_flags & TF_ECN_PERMIT:
        cb.t_flags |= TF_ECN_SND_CWR


def loss_recovery_starts(cb: TcpCb) -> bool:
    """Fast recovery begins. If an ECN reduction of this window is under way, loss
    recovery takes it over (its ssthresh and PRR state stay) instead of reducing again:
    "the TCP source should not decrease the slow-start threshold, ssthresh, if it has
    been decreased within the last round trip time" (6.1.2); else the caller reduces and
    CWR is queued. True when the caller is to reduce."""
    if cb.ecn_recover is not None:
        cb.ecn_recover = None
        return False
    queue_cwr(cb)
    return True


def rto(cb: TcpCb) -> None:
    """A retransmission timeout reduces cwnd whatever else is under way: any ECN
    reduction ends, CWR is queued."""
    cb.ecn_recover = None
    queue_cwr(cb)


def _may_react(cb: TcpCb) -> bool:
    """ECE starts a reduction only outside loss recovery (which reduced already: NetBSD's
    "ignore if we are already trying to recover") and a window after the last one."""
    return (cb.ecn_recover is None and not cb.in_recovery and not cb.rto_recovery
            and SEQ_GT(cb.snd_una, cb.snd_recover))


def _reduce(cb: TcpCb, acked: int, now: float) -> None:
    """ECE on an ACK of ``acked`` bytes: the reduction a loss would make (ssthresh from
    the algorithm, cwnd through PRR) until SND.UNA passes SND.MAX of now; nothing is
    resent. FlightSize is that of the ECE's arrival, before its ACK took ``acked`` out of
    it: a receiver that acknowledges a burst at once (GRO, ack_batch) would otherwise
    halve a fraction of the window (RFC 3168 6.1.2 halves cwnd)."""
    cb.stats.tcps_ecn_rcwnd += 1
    flight = ((cb.snd_max - cb.snd_una) & SEQ_MASK) + acked
    cb.cc.on_congestion(now, flight)
    _cc.prr_start(cb, count=False, flight=flight)
    cb.ecn_recover = cb.snd_max
    cb.t_rtttime = None
    queue_cwr(cb)


def cwr_ack(cb: TcpCb, flags: int, acked: int, delivered: int, pipe: int, now: float) -> bool:
    """An acceptable ACK outside loss recovery on an ECN connection (tcp_recovery calls
    this before growing cwnd). An ECN reduction ends once SND.UNA is above where it began
    -- strictly, as Linux's CWR state: an ACK of exactly that point may still echo a CE
    from before it (the receiver clears ECE only when our CWR segment, sent from there,
    arrives) -- with cwnd = ssthresh; ECE then starts the next one; while one lasts, PRR
    sets cwnd from ``delivered`` and ``pipe`` (``acked``: what the ACK took off SND.UNA).
    True when cwnd was set here: the ACK must
    not grow it too ("SHOULD NOT increase the congestion window in response to the
    receipt of an ECN-Echo ACK packet", 6.1.2)."""
    done = False
    end = cb.ecn_recover
    if end is not None and SEQ_GT(cb.snd_una, end):
        cb.ecn_recover = None
        cb.snd_cwnd = max(cb.snd_ssthresh, cb.segsize())
        done = True
    if flags & TH_ECE and _may_react(cb):
        _reduce(cb, acked, now)
    if cb.ecn_recover is not None:
        _cc.prr_ack(cb, delivered, pipe)
        return True
    return done


__all__ = ["ECN_OFF", "ECN_ON", "ECN_ACCEPT", "syn_accepts", "connect_init", "syn_flags",
           "synack_input", "syn_input", "segment_input", "segment_ecn", "output", "queue_cwr",
           "loss_recovery_starts", "rto", "cwr_ack"]
