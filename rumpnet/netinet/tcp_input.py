"""TCP input for an existing connection (NetBSD tcp_input.c, RFC 9293 section 3.10.7).

``tcp_input_cb(cb, seg, now)`` runs the SEGMENT ARRIVES event for one connection that is
not LISTEN (listening sockets are handled by the SYN cache, tcp_syncache).  The order of the
checks follows RFC 9293 3.10.7.4 with RFC 5961 (blind attacks), RFC 7323 (PAWS), RFC 5681 /
6582 / 6675 (loss recovery) and RFC 3042 (limited transmit) folded in.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet import tcp_recovery as _rec
from rumpnet.netinet.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN, TcpRepr
from rumpnet.netinet.tcp_const import (
    EV_CONNECTED,
    EV_READABLE,
    EV_WRITABLE,
    TCPT_2MSL,
    TCPT_DELACK,
    TCPT_KEEP,
    TCPT_NTIMERS,
    TCPT_PERSIST,
    TCPT_REXMT,
    TF_ACKNOW,
    TF_DELACK,
    TF_ECN_PERMIT,
    TF_RCVD_SCALE,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
    TF_SENTFIN,
)
from rumpnet.netinet.tcp_fsm import Ev, TcpState
from rumpnet.netinet.tcp_sack import rcv_sack_update
from rumpnet.netinet.tcp_seq import SEQ_GEQ, SEQ_GT, SEQ_LEQ, SEQ_LT, SEQ_MASK, seq_diff

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

TS_BOTH = TF_REQ_TSTMP | TF_RCVD_TSTMP
PAWS_IDLE = 24 * 24 * 3600.0      # RFC 7323 5.5: ts_recent invalid after 24 days idle
M = SEQ_MASK
# States as module globals: an enum class attribute costs ~50 ns a lookup, on every segment.
_SYN_SENT = TcpState.SYN_SENT
_SYN_RECEIVED = TcpState.SYN_RECEIVED
_CLOSE_WAIT = TcpState.CLOSE_WAIT
_FIN_WAIT_1 = TcpState.FIN_WAIT_1
_FIN_WAIT_2 = TcpState.FIN_WAIT_2
_TIME_WAIT = TcpState.TIME_WAIT


# ----- helpers --------------------------------------------------------------------------
def xmit_timer(cb: TcpCb, rtt: float, now: float) -> None:
    """RFC 6298 section 2: update SRTT/RTTVAR from a valid sample; RACK's minimum RTT
    (RFC 8985 6.2 step 1) and HyStart++'s round minimum (RFC 9406 4.2) take it too."""
    cb.stats.tcps_rttupdated += 1
    if rtt < 0:
        rtt = 0.0
    cb.rack.rtt_sample(rtt, now)
    cb.cc.on_rtt(rtt)
    if cb.t_srtt == 0.0:
        cb.t_srtt = max(rtt, 1e-6)
        cb.t_rttvar = rtt / 2
    else:
        cb.t_rttvar = 0.75 * cb.t_rttvar + 0.25 * abs(cb.t_srtt - rtt)
        cb.t_srtt = max(0.875 * cb.t_srtt + 0.125 * rtt, 1e-6)
    cb.t_rxtshift = 0
    cb.t_rxtcur = _out.rexmt_value(cb)


def apply_syn_options(cb: TcpCb, seg: TcpRepr, now: float) -> None:
    """Options of the peer's SYN (RFC 7323 2.2/3.2, RFC 2018 2, RFC 9293 3.7.1)."""
    p = cb.params
    if cb.t_flags & TF_REQ_SCALE and seg.wscale is not None and p.rfc1323:
        cb.t_flags |= TF_RCVD_SCALE
        cb.snd_scale = min(seg.wscale, 14)
        cb.rcv_scale = cb.request_r_scale
    else:
        cb.t_flags &= ~(TF_REQ_SCALE | TF_RCVD_SCALE)
        cb.snd_scale = cb.rcv_scale = 0
    if cb.t_flags & TF_REQ_TSTMP and seg.timestamps is not None and p.rfc1323:
        cb.t_flags |= TF_RCVD_TSTMP
        cb.ts_recent = seg.timestamps[0]
        cb.ts_recent_age = now
    else:
        cb.t_flags &= ~(TF_REQ_TSTMP | TF_RCVD_TSTMP)
    if p.sack and seg.sack_permitted and not cb.noopt:
        cb.t_flags |= TF_SACK_PERMIT
    else:
        cb.t_flags &= ~TF_SACK_PERMIT
    cb.t_peermss = seg.mss if seg.mss else 536          # RFC 9293 3.7.1 default
    mss = min(cb.t_peermss, cb.t_ourmss)
    if cb.user_maxseg:
        mss = min(mss, cb.user_maxseg)
    cb.t_maxseg = max(mss, 64)
    cb.round_buffers()


def established(cb: TcpCb, now: float) -> None:
    """Common work when a connection reaches ESTABLISHED."""
    cb.stats.tcps_connects += 1
    cb.cc.conn_init(now)
    cb.snd_recover = cb.snd_una
    cb.sack.clear(cb.snd_una)
    if cb.keepalive:
        cb.set_timer(TCPT_KEEP, cb.keep_idle(), now)
    else:
        cb.cancel_timer(TCPT_KEEP)


def _respond_rst(cb: TcpCb, seg: TcpRepr) -> None:
    """RST for an unacceptable ACK in SYN_SENT / SYN_RECEIVED (RFC 9293 3.10.7.3/4)."""
    cb.proto.respond(cb.laddr, cb.faddr, seg, already_counted=True)


# ----- SYN_SENT -------------------------------------------------------------------------
def _syn_sent(cb: TcpCb, seg: TcpRepr, now: float) -> None:
    flags = seg.flags
    if flags & TH_ACK:
        if SEQ_LEQ(seg.ack, cb.iss) or SEQ_GT(seg.ack, cb.snd_max):
            if flags & TH_RST:
                cb.stats.tcps_badrst += 1
            else:
                _respond_rst(cb, seg)
            return
    if flags & TH_RST:
        if flags & TH_ACK:
            cb.stats.tcps_rcvrst += 1
            cb.proto.drop(cb, errno.ECONNREFUSED, now, send_rst=False)
        else:
            cb.stats.tcps_badrst += 1   # RFC 9293 3.10.7.3: a RST without ACK is dropped
        return
    if not flags & TH_SYN:
        return
    cb.irs = seg.seq
    cb.rcv_nxt = cb.rcv_adv = (seg.seq + 1) & M
    apply_syn_options(cb, seg, now)
    cb.snd_wnd = seg.window                 # RFC 7323 2.2: SYN windows are unscaled
    cb.max_sndwnd = max(cb.max_sndwnd, cb.snd_wnd)
    cb.snd_wl1 = seg.seq
    if flags & TH_ACK:
        _ecn.synack_input(cb, seg)          # RFC 3168 6.1.1
        cb.snd_wl2 = seg.ack
        cb.snd_una = seg.ack
        if cb.proto.nud_hint is not None:
            cb.proto.nud_hint(cb, now)  # our SYN acknowledged: the path works (RFC 4861 7.3.1)
        if SEQ_LT(cb.snd_nxt, cb.snd_una):
            cb.snd_nxt = cb.snd_una
        if seg.timestamps is not None and cb.t_flags & TF_RCVD_TSTMP and seg.timestamps[1]:
            xmit_timer(cb, ((cb.ts_now(now) - seg.timestamps[1]) & M) / 1000.0, now)
        elif cb.t_rtttime is not None:
            xmit_timer(cb, now - cb.t_rtttime, now)
        elif cb.t_rxtshift > 0 and cb.t_srtt == 0.0:
            # RFC 6298 5.7: the SYN was retransmitted and there is no sample.
            cb.t_rto_init = max(3.0, cb.params.init_rto)
        cb.t_rtttime = None
        cb.cancel_timer(TCPT_REXMT)
        cb.t_rxtshift = 0
        cb.transition(Ev.RCV_SYNACK)
        established(cb, now)
        cb.t_flags |= TF_ACKNOW
        ev = EV_CONNECTED | EV_WRITABLE
        if seg.payload or flags & TH_FIN:
            seg.seq = (seg.seq + 1) & M
            seg.flags &= ~TH_SYN
            ev |= _data_and_fin(cb, seg, now)
        _out.tcp_output(cb, now)
        cb.notify(ev)
    else:
        # Simultaneous open (RFC 9293 figure 7): SYN_SENT -> SYN_RECEIVED, send SYN,ACK.
        # Data on the SYN waits for ESTABLISHED (RFC 9293 3.10.7.3: "queue them for
        # processing after the ESTABLISHED state has been reached"); a FIN on it is
        # dropped, as 4.4BSD's reassembly drops one before ESTABLISHED.
        cb.transition(Ev.RCV_SYN)
        _ecn.syn_input(cb, seg)
        if seg.payload:
            _reass_insert(cb, cb.rcv_nxt, seg.payload)
        cb.snd_nxt = cb.iss
        cb.t_flags |= TF_ACKNOW
        _out.tcp_output(cb, now)


# ----- reassembly (RFC 9293 3.10.7.4 seventh, capped at reass_maxbytes) ---------------
def _reass_insert(cb: TcpCb, seq: int, data: bytes | bytearray | memoryview) -> int:
    """Queue out-of-order data; returns bytes newly queued, -1 if dropped (cap)."""
    rn = cb.rcv_nxt
    s = (seq - rn) & M
    e = s + len(data)
    q = cb.reass
    pieces: list[tuple[int, int]] = []
    pos = s
    for qs, qb in q:
        a = (qs - rn) & M
        b = a + len(qb)
        if b <= pos:
            continue
        if a >= e:
            break
        if a > pos:
            pieces.append((pos, a))
        pos = max(pos, b)
        if pos >= e:
            break
    if pos < e:
        pieces.append((pos, e))
    add = sum(b - a for a, b in pieces)
    if add == 0:
        return 0
    if cb.reass_bytes + add > cb.params.reass_maxbytes:
        cb.stats.tcps_reass_overflow += 1
        cb.stats.tcps_rcvmemdrop += 1
        return -1
    for a, b in pieces:
        q.append([(rn + a) & M, bytearray(data[a - s:b - s])])
    q.sort(key=lambda x: (x[0] - rn) & M)
    merged: list[list[Any]] = []
    for ent in q:
        if merged:
            last = merged[-1]
            if (last[0] + len(last[1])) & M == ent[0]:
                last[1] += ent[1]
                continue
        merged.append(ent)
    cb.reass = merged
    cb.reass_bytes += add
    return add


def _reass_deliver(cb: TcpCb) -> int:
    """Move in-order data from the reassembly queue to the receive buffer."""
    n = 0
    q = cb.reass
    while q and q[0][0] == cb.rcv_nxt:
        _, data = q.pop(0)
        ln = len(data)
        cb.reass_bytes -= ln
        if not cb.read_shut:
            cb.rcv_buf += data
        cb.rcv_nxt = (cb.rcv_nxt + ln) & M
        n += ln
    if q and SEQ_LT(q[0][0], cb.rcv_nxt):       # partly covered by new in-order data
        s, data = q[0]
        cut = seq_diff(cb.rcv_nxt, s)
        cb.reass_bytes -= min(cut, len(data))
        if cut >= len(data):
            q.pop(0)
        else:
            q[0] = [cb.rcv_nxt, data[cut:]]
        n += _reass_deliver(cb)
    return n


def _sack_ranges(cb: TcpCb) -> list[tuple[int, int]]:
    return [(s, (s + len(d)) & M) for s, d in cb.reass]


def _process_fin(cb: TcpCb, now: float) -> int:
    cb.rcv_nxt = (cb.rcv_nxt + 1) & M
    cb.fin_rcvd = True
    cb.reass_fin = None
    cb.t_flags |= TF_ACKNOW
    st = cb.state
    if st in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.FIN_WAIT_1,
              TcpState.FIN_WAIT_2):
        cb.transition(Ev.RCV_FIN)
        if cb.state == TcpState.TIME_WAIT:
            enter_time_wait(cb, now)
    return EV_READABLE


def enter_time_wait(cb: TcpCb, now: float) -> None:
    for i in range(TCPT_NTIMERS):
        cb.timers[i] = None
    cb.set_timer(TCPT_2MSL, 2 * cb.params.msl, now)


def _autorcvbuf(cb: TcpCb, sent_ts: int, tsecr: int, tlen: int) -> None:
    """Receive buffer autosizing (FreeBSD's tcp_input, "automatic sizing of the receive
    socket buffer"; TcpParams.recvbuf_auto). ``rfbuf_ts`` is a timestamp we sent; once
    the peer echoes a later one, a round trip has passed: if it sent more than half of
    the buffer in it, the window was what held it back, and the buffer doubles (up to
    recvbuf_max; the window update goes out with the next ACK)."""
    if (tsecr - sent_ts) & M not in _TS_LATER:
        cb.rfbuf_cnt += tlen
        return
    space = cb.rcvspace
    top = cb.params.recvbuf_max
    if cb.rfbuf_cnt > space // 2 and space < top:
        cb.rcvspace = min(2 * space, top)
    cb.rfbuf_ts = None
    cb.rfbuf_cnt = 0


_TS_LATER = range(1, 0x80000000)   # RFC 7323 TSTMP_GT: later by less than 2^31


def _data_and_fin(cb: TcpCb, seg: TcpRepr, now: float) -> int:
    """Seventh and eighth steps: segment text and FIN.  Returns event bits."""
    ev = 0
    payload = seg.payload
    tlen = len(payload)
    fin = seg.flags & TH_FIN
    st = cb.stats
    cst = cb.state
    if cst >= _CLOSE_WAIT and cst != _FIN_WAIT_1 and cst != _FIN_WAIT_2:
        return 0    # FIN already received: ignore text (RFC 9293 3.10.7.4 seventh)
    seq = seg.seq
    if tlen:
        if seq == cb.rcv_nxt and not cb.reass:
            # In order, nothing queued: the common case.
            if not cb.read_shut:
                cb.rcv_buf += payload
            if cb.rcv_auto and cb.rfbuf_ts is not None and seg.timestamps is not None:
                _autorcvbuf(cb, cb.rfbuf_ts, seg.timestamps[1], tlen)
            cb.rcv_nxt = (seq + tlen) & M
            st.tcps_rcvpack += 1
            st.tcps_rcvbyte += tlen
            ev |= EV_READABLE
            # Delayed ACK (RFC 1122 4.2.3.2, RFC 5681 4.2): ACK at least every
            # delack_max_segs full-sized segments, otherwise within delack_ticks.
            # A GRO superframe (offloads) counts as the segments it stands for.
            cb.delack_segs += tlen // cb.t_maxseg or 1
            p = cb.params
            if fin or p.delack_ticks <= 0:
                cb.t_flags |= TF_ACKNOW
            elif cb.delack_segs >= p.delack_max_segs:
                if p.ack_batch and ((cb.rcv_nxt - cb.last_ack_sent) & M) < cb.rcvspace >> 2:
                    # One ACK per batch (tcp_var.TcpParams.ack_batch): due now, sent when
                    # the timers next run, after the rest of this loop turn's segments.
                    # RFC 9293 3.8.6.3 / RFC 1122 4.2.3.2 ask for an ACK for at least
                    # every second full-sized segment (SHOULD); like a receiver with
                    # GRO/LRO, this one counts a batch that arrives at once as one;
                    # but a quarter of the receive buffer unacknowledged is ACKed at
                    # once, so that the sender's window never drains within a batch.
                    cb.t_flags |= TF_DELACK
                    if cb.timers[TCPT_DELACK] != now:
                        cb.set_timer(TCPT_DELACK, 0.0, now)
                else:
                    cb.t_flags |= TF_ACKNOW
            elif not cb.t_flags & TF_DELACK:
                cb.t_flags |= TF_DELACK
                cb.set_timer(TCPT_DELACK, cb.params.delack_ticks / 1000.0, now)
        else:
            # Out of order, or filling a hole: ACK immediately (RFC 5681 4.2).
            cb.t_flags |= TF_ACKNOW
            if seq == cb.rcv_nxt:
                if not cb.read_shut:
                    cb.rcv_buf += payload
                cb.rcv_nxt = (seq + tlen) & M
                st.tcps_rcvpack += 1
                st.tcps_rcvbyte += tlen
                _reass_deliver(cb)
                ev |= EV_READABLE
            else:
                st.tcps_rcvoopack += 1
                st.tcps_rcvoobyte += tlen
                cb.t_rcvoopack += 1
                if _reass_insert(cb, seq, payload) < 0:
                    fin = 0
                elif cb.rcv_auto and cb.rfbuf_ts is not None and seg.timestamps is not None:
                    # What arrived counts toward autosizing in order or not: behind a
                    # hole the window still had to hold it.
                    _autorcvbuf(cb, cb.rfbuf_ts, seg.timestamps[1], tlen)
            if cb.t_flags & TF_SACK_PERMIT:
                latest = (seq, (seq + tlen) & M) if seq != cb.rcv_nxt else None
                ranges = _sack_ranges(cb)
                lim = 3 if cb.t_flags & TS_BOTH == TS_BOTH else 4
                cb.rcv_sack_blocks = rcv_sack_update(cb.rcv_sack_blocks, ranges, latest,
                                                     lim) if ranges else []
    if fin:
        fseq = (seq + tlen) & M
        if fseq == cb.rcv_nxt:
            ev |= _process_fin(cb, now)
        elif SEQ_GT(fseq, cb.rcv_nxt):
            cb.reass_fin = fseq
            cb.t_flags |= TF_ACKNOW
    if cb.reass_fin is not None and cb.reass_fin == cb.rcv_nxt and not cb.fin_rcvd:
        ev |= _process_fin(cb, now)
    return ev


def _rst_input(cb: TcpCb, seg: TcpRepr, rcv_nxt: int, rwnd: int, now: float) -> None:
    """Exact (RCV.NXT) resets; elsewhere in the window a challenge ACK (RFC 5961 3.2), or
    a reset with insecure_rst (RFC 793); outside it counted and dropped; ignored in
    TIME_WAIT with rfc1337 (RFC 1337 section 3)."""
    p = cb.params
    st = cb.stats
    state = cb.state
    if state == TcpState.TIME_WAIT and p.rfc1337:
        st.tcps_tw_rst_ignored += 1
        return
    seq = seg.seq
    in_window = bool(rwnd) and ((seq - rcv_nxt) & M) < rwnd
    if seq == rcv_nxt or (in_window and p.insecure_rst):
        st.tcps_rcvrst += 1
        if state == TcpState.SYN_RECEIVED:
            err = errno.ECONNREFUSED
        elif state in (TcpState.ESTABLISHED, TcpState.FIN_WAIT_1, TcpState.FIN_WAIT_2,
                       TcpState.CLOSE_WAIT):
            err = errno.ECONNRESET
        else:
            err = 0        # CLOSING, LAST_ACK, TIME_WAIT: closed, nothing to report
        cb.proto.drop(cb, err, now, send_rst=False)
    elif in_window:
        cb.proto.challenge_ack(cb, now)
    else:
        st.tcps_rst_outwin += 1


def _syn_in_synchronized(cb: TcpCb, seg: TcpRepr, rcv_nxt: int, rwnd: int, now: float) -> bool:
    """True when the segment goes on (a simultaneous open's SYN,ACK, its SYN trimmed);
    else answered here: SYN,ACK again for a retransmitted SYN, RST with insecure_syn for
    one in the window (RFC 793), or a challenge ACK (RFC 5961 4.2)."""
    if cb.state == TcpState.SYN_RECEIVED and seg.seq == cb.irs:
        if not seg.flags & TH_ACK:
            cb.snd_nxt = cb.iss            # peer retransmitted its SYN: resend SYN,ACK
            _out.tcp_output(cb, now)
            return False
        seg.flags &= ~TH_SYN               # simultaneous open: the SYN is a duplicate
        seg.seq = (seg.seq + 1) & M
        return True
    if cb.params.insecure_syn and rwnd and ((seg.seq - rcv_nxt) & M) < rwnd:
        cb.proto.drop(cb, errno.ECONNRESET, now, send_rst=True)
    else:
        cb.proto.challenge_ack(cb, now)
    return False


def _trim_to_window(cb: TcpCb, seg: TcpRepr, rcv_nxt: int, rwnd: int, now: float) -> bool:
    """Cut ``seg`` to the receive window (duplicates ACKed and reported by D-SACK, RFC
    2883); False when the segment was dealt with here (answered, or reset after close)."""
    st = cb.stats
    flags = seg.flags
    tlen = len(seg.payload)
    seq = seg.seq
    todrop = seq_diff(rcv_nxt, seq)
    if todrop > 0:
        if todrop > tlen or (todrop == tlen and not flags & TH_FIN):
            # Entirely duplicate: ACK it, but go on to process the ACK field.
            st.tcps_rcvduppack += 1
            st.tcps_rcvdupbyte += tlen
            if tlen and cb.t_flags & TF_SACK_PERMIT:
                cb.rcv_dsack = (seq, (seq + tlen) & M)
            cb.t_flags |= TF_ACKNOW
            flags &= ~TH_FIN
            seg.payload = b""
            tlen = 0
        else:
            st.tcps_rcvpartduppack += 1
            st.tcps_rcvpartdupbyte += todrop
            if cb.t_flags & TF_SACK_PERMIT:
                cb.rcv_dsack = (seq, rcv_nxt)
            seg.payload = seg.payload[todrop:]
            tlen -= todrop
        seq = rcv_nxt
        seg.seq = seq
        seg.flags = flags

    # Data after the user closed: reset (NetBSD, RFC 9293 3.10.7.4 seventh note).
    if cb.user_closed and tlen and cb.state > _CLOSE_WAIT:
        st.tcps_rcvafterclose += 1
        cb.proto.drop(cb, 0, now, send_rst=True)
        return False

    todrop = seq_diff((seq + tlen) & M, (rcv_nxt + rwnd) & M)
    if todrop > 0:
        st.tcps_rcvpackafterwin += 1
        if todrop >= tlen:
            st.tcps_rcvbyteafterwin += tlen
            if rwnd == 0 and seq == rcv_nxt:
                st.tcps_rcvwinprobe += 1       # zero-window probe: ACK it
                cb.t_flags |= TF_ACKNOW
            else:
                _out.send_ack(cb, now)
                return False
            seg.payload = b""
        else:
            st.tcps_rcvbyteafterwin += todrop
            seg.payload = seg.payload[:tlen - todrop]
        seg.flags = flags & ~TH_FIN
    return True


# ----- main entry -----------------------------------------------------------------------
def tcp_input_cb(cb: TcpCb, seg: TcpRepr, now: float) -> None:
    """A segment for a connection past LISTEN (NetBSD's tcp_input after the PCB lookup,
    RFC 9293 3.10.7.3-4): SYN-SENT has its own; the others, in the RFC's order, the
    checks that may drop the segment (:func:`_acceptable`), the timestamp to echo, the
    ACK (:func:`_ack_input`), then TIME-WAIT's answer or the data and FIN."""
    if cb.state == _SYN_SENT:
        _syn_sent(cb, seg, now)
        return
    cb.t_rcvtime = now
    cb.t_keepprobes = 0
    ts = seg.timestamps if cb.t_flags & TS_BOTH == TS_BOTH else None
    if not _acceptable(cb, seg, ts, now):
        return
    seq = seg.seq
    flags = seg.flags
    tlen = len(seg.payload)

    # Remember the timestamp to echo (RFC 7323 4.3 / appendix D).
    if ts is not None and SEQ_LEQ(seq, cb.last_ack_sent) and SEQ_GEQ(ts[0], cb.ts_recent):
        cb.ts_recent = ts[0]
        cb.ts_recent_age = now
    if cb.t_flags & TF_ECN_PERMIT:
        _ecn.segment_input(cb, seg)         # CE and CWR of an acceptable segment (RFC 3168 6.1.3)

    if not flags & TH_ACK:
        if cb.t_flags & TF_ACKNOW:
            _out.tcp_output(cb, now)
        return
    ev = _ack_input(cb, seg, ts, now)
    if ev is None:
        return
    if cb.state == _TIME_WAIT:
        _time_wait_input(cb, seg, now)
        return
    if tlen or flags & TH_FIN:
        ev |= _data_and_fin(cb, seg, now)
    _out.tcp_output(cb, now)
    cb.notify(ev)


def _acceptable(cb: TcpCb, seg: TcpRepr, ts: tuple[int, int] | None, now: float) -> bool:
    """The checks of RFC 9293 3.10.7.4 that may drop a segment, in its order: PAWS (RFC
    7323 5.3), RST (second; RFC 5961 3.2), SYN (fourth; RFC 5961 4.2), then the trim to
    the receive window (first; NetBSD's todrop). False: dropped (and answered as they
    say); True: ``seg`` trimmed to the window, its flags as what remains allows."""
    flags = seg.flags
    rcv_nxt = cb.rcv_nxt
    rwnd = max(cb.rcv_space(), cb.rcv_wnd)
    if ts is not None and not flags & TH_RST and SEQ_LT(ts[0], cb.ts_recent):
        if now - cb.ts_recent_age > PAWS_IDLE:
            cb.ts_recent = 0
        else:
            st = cb.stats
            st.tcps_pawsdrop += 1
            st.tcps_rcvduppack += 1
            st.tcps_rcvdupbyte += len(seg.payload)
            _out.send_ack(cb, now)
            return False
    if flags & (TH_RST | TH_SYN):
        ctl_wnd = rwnd
        if cb.state == _TIME_WAIT and cb.params.tw_last_adv_window:
            # FreeBSD's compressed TIME-WAIT keeps no buffer, only the window last
            # advertised (struct tcptw's last_win): RST and SYN are judged in it.
            ctl_wnd = cb.rcv_wnd
        if flags & TH_RST:
            _rst_input(cb, seg, rcv_nxt, ctl_wnd, now)
            return False
        if not _syn_in_synchronized(cb, seg, rcv_nxt, ctl_wnd, now):
            return False
    return _trim_to_window(cb, seg, rcv_nxt, rwnd, now)


def _ack_input(cb: TcpCb, seg: TcpRepr, ts: tuple[int, int] | None, now: float) -> int | None:
    """The ACK field (RFC 9293 3.10.7.4 fifth): SYN-RECEIVED's ACK of our SYN, the ACK's
    acceptability (RFC 5961 5.2), a new ACK, loss recovery (SACK, or RFC 5681's
    duplicate ACKs), the send window. Returns the upcall events so far, or None when the
    segment's processing ends here."""
    st = cb.stats
    seq, ack, tlen = seg.seq, seg.ack, len(seg.payload)
    ev = 0
    if cb.state == _SYN_RECEIVED:
        if SEQ_GT(cb.snd_una, ack) or SEQ_GT(ack, cb.snd_max):
            _respond_rst(cb, seg)
            return None
        ev = _syn_received_acked(cb, seg, now)
    if SEQ_GT(ack, cb.snd_max):
        st.tcps_rcvacktoomuch += 1
        _out.send_ack(cb, now)
        return None
    if SEQ_LT(ack, (cb.snd_una - max(cb.max_sndwnd, 1)) & M):
        cb.proto.challenge_ack(cb, now)
        return None
    win = seg.window << cb.snd_scale
    acked = 0
    if SEQ_GT(ack, cb.snd_una):
        acked = (ack - cb.snd_una) & M
        ev |= _new_ack(cb, seg, ack, ts, now)
        if cb.freed:
            return None     # EV_CLOSED already reported
    if cb.t_flags & TF_SACK_PERMIT:
        _rec.sack_ack(cb, seg, acked, ts[1] if ts is not None and ts[1] else None, now)
    elif not acked:
        # Without SACK, a duplicate ACK as RFC 5681 section 2 defines it.
        if (tlen == 0 and not seg.flags & TH_FIN and win == cb.snd_wnd and ack == cb.snd_una
                and cb.snd_una != cb.snd_max):
            st.tcps_rcvdupack += 1
            _rec.newreno_dupack(cb, now)
            if not cb.freed:
                cb.notify(ev)
            return None
        if ack == cb.snd_una and tlen == 0 and cb.snd_una == cb.snd_max:
            cb.t_dupacks = 0
    _update_send_window(cb, seq, ack, win, tlen)
    return ev


def _syn_received_acked(cb: TcpCb, seg: TcpRepr, now: float) -> int:
    """SYN-RECEIVED, our SYN acknowledged (RFC 9293 3.10.7.4 fifth): ESTABLISHED, and data
    that came with a simultaneous SYN delivered. Returns the upcall events."""
    cb.transition(Ev.RCV_ACK)
    cb.snd_wnd = seg.window << cb.snd_scale
    cb.max_sndwnd = max(cb.max_sndwnd, cb.snd_wnd)
    cb.snd_wl1 = seg.seq
    cb.snd_wl2 = seg.ack
    established(cb, now)
    ev = EV_CONNECTED | EV_WRITABLE
    if cb.reass and _reass_deliver(cb):
        ev |= EV_READABLE
    return ev


def _update_send_window(cb: TcpCb, seq: int, ack: int, win: int, tlen: int) -> None:
    """SND.WND from a segment newer than the last update (RFC 9293 3.10.7.4 fifth, the
    SND.WL1/SND.WL2 rule); a window that opens stops the persist timer."""
    if (SEQ_LT(cb.snd_wl1, seq) or (cb.snd_wl1 == seq and (
            SEQ_LT(cb.snd_wl2, ack) or (cb.snd_wl2 == ack and win > cb.snd_wnd)))):
        if tlen == 0 and cb.snd_wl2 == ack and win > cb.snd_wnd:
            cb.stats.tcps_rcvwinupd += 1
        cb.snd_wnd = win
        cb.snd_wl1 = seq
        cb.snd_wl2 = ack
        if win > cb.max_sndwnd:
            cb.max_sndwnd = win
        if win and cb.timers[TCPT_PERSIST] is not None:
            cb.timers[TCPT_PERSIST] = None
            cb.t_rxtshift = 0


def _time_wait_input(cb: TcpCb, seg: TcpRepr, now: float) -> None:
    """TIME-WAIT (RFC 9293 3.10.7.4): a retransmitted FIN restarts the 2 MSL timer and is
    acknowledged; anything but the exact ACK we expect is answered with our ACK (4.4BSD
    acknowledges whatever arrives in TIME_WAIT; FreeBSD's tcp_twcheck spares the exact
    one, so two ends in TIME_WAIT cannot ACK each other forever)."""
    if seg.flags & TH_FIN or cb.t_flags & TF_ACKNOW:
        cb.set_timer(TCPT_2MSL, 2 * cb.params.msl, now)     # FIN retransmitted: restart
        cb.t_flags |= TF_ACKNOW
    elif seg.flags != TH_ACK or len(seg.payload) or seg.seq != cb.rcv_nxt or seg.ack != cb.snd_nxt:
        cb.t_flags |= TF_ACKNOW
    _out.tcp_output(cb, now)


def _our_fin_acked(cb: TcpCb, ack: int) -> bool:
    if not cb.t_flags & TF_SENTFIN:
        return False
    fin_seq = (cb.snd_buf_seq + len(cb.snd_buf)) & M
    return SEQ_GT(ack, fin_seq)


def _new_ack(cb: TcpCb, seg: TcpRepr, ack: int, ts: tuple[int, int] | None,
             now: float) -> int:
    """Process an ACK that advances SND.UNA.  Returns event bits."""
    st = cb.stats
    ev = 0
    acked = (ack - cb.snd_una) & M
    st.tcps_rcvackpack += 1
    st.tcps_rcvackbyte += acked
    if cb.t_rxt_tsval is not None:
        _rec.spurious_rto_check(cb, ts[1] if ts is not None and ts[1] else None, now)
    # RTT sample: timestamps (RFC 7323 4.1) or the timed segment, Karn-safe (RFC 6298 3).
    if ts is not None and ts[1]:
        xmit_timer(cb, ((cb.ts_now(now) - ts[1]) & M) / 1000.0, now)
        cb.t_rtttime = None
    elif cb.t_rtttime is not None and SEQ_GT(ack, cb.t_rtseq):
        xmit_timer(cb, now - cb.t_rtttime, now)
        cb.t_rtttime = None
    fin_acked = _our_fin_acked(cb, ack)
    _drop_acked(cb, ack, fin_acked)
    if cb.proto.nud_hint is not None:
        cb.proto.nud_hint(cb, now)      # forward progress (RFC 4861 7.3.1)
    if not cb.t_flags & TF_SACK_PERMIT:
        _rec.newreno_ack(cb, acked, now, seg.flags)   # with SACK, tcp_recovery.sack_ack decides
    if cb.snd_una == cb.snd_max:
        cb.cancel_timer(TCPT_REXMT)
    elif cb.timers[TCPT_PERSIST] is None:
        cb.set_timer(TCPT_REXMT, _out.rexmt_value(cb), now)     # RFC 6298 5.3
    if acked:
        ev |= EV_WRITABLE

    if fin_acked:
        state = cb.state
        if state == TcpState.FIN_WAIT_1:
            cb.transition(Ev.RCV_ACK_OF_FIN)
            if cb.user_closed:
                cb.set_timer(TCPT_2MSL, cb.params.maxidle_fin_wait_2, now)
        elif state == TcpState.CLOSING:
            cb.transition(Ev.RCV_ACK_OF_FIN)
            enter_time_wait(cb, now)
        elif state == TcpState.LAST_ACK:
            cb.transition(Ev.RCV_ACK_OF_FIN)
            cb.proto.close_cb(cb, now)
    return ev


def _drop_acked(cb: TcpCb, ack: int, fin_acked: bool) -> None:
    n = seq_diff(ack, cb.snd_buf_seq)
    if n > 0:
        buf = cb.snd_buf
        if n >= len(buf):
            buf.clear()
            cb.snd_buf_seq = ack if not fin_acked else (ack - 1) & M
        else:
            del buf[:n]
            cb.snd_buf_seq = (cb.snd_buf_seq + n) & M
    cb.snd_una = ack
    if SEQ_LT(cb.snd_nxt, ack):
        cb.snd_nxt = ack


__all__ = ["tcp_input_cb", "xmit_timer", "apply_syn_options", "established",
           "enter_time_wait"]
