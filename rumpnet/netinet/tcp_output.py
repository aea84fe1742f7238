"""TCP output (NetBSD tcp_output.c): decide what to send and build segments.

``tcp_output(cb, now)`` sends everything the windows, Nagle (RFC 9293 3.7.4), sender and
receiver SWS avoidance (RFC 9293 3.8.6.2) and the flags pending on the connection allow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet import tcp as _tcp
from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet import tcp_rack as _rack
from rumpnet.netinet.tcp import (
    TH_ACK,
    TH_FIN,
    TH_PUSH,
    TH_RST,
    TH_SYN,
    TcpRepr,
)
from rumpnet.netinet.tcp_const import (
    TCP_MAXWIN,
    TCPT_DELACK,
    TCPT_PERSIST,
    TCPT_REXMT,
    TCPT_TLP,
    TF_ACKNOW,
    TF_DELACK,
    TF_ECN,
    TF_ECN_PERMIT,
    TF_FORCE,
    TF_NODELAY,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
    TF_SENTFIN,
    TS_BOTH,
)
from rumpnet.netinet.tcp_fsm import TCP_OUTFLAGS, TcpState
from rumpnet.netinet.tcp_sack import RETRANS
from rumpnet.netinet.tcp_seq import SEQ_GT, SEQ_LT, SEQ_MASK

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

# States as module globals: an enum class attribute costs ~50 ns a lookup, on every segment.
_LISTEN = TcpState.LISTEN
_ESTABLISHED = TcpState.ESTABLISHED


def base_rto(cb: TcpCb) -> float:
    """RFC 6298 section 2: RTO = SRTT + max(G, 4*RTTVAR), floored at rtomin."""
    p = cb.params
    if cb.t_srtt == 0.0:
        rto = cb.t_rto_init
    else:
        rto = cb.t_srtt + max(0.001, 4.0 * cb.t_rttvar)
    return min(max(rto, cb.t_rttmin), p.rtomax)


def rexmt_value(cb: TcpCb) -> float:
    """Current RTO with exponential backoff (RFC 6298 5.5), capped at rtomax."""
    return min(base_rto(cb) * (1 << min(cb.t_rxtshift, 30)), cb.params.rtomax)


def tcp_setpersist(cb: TcpCb, now: float) -> None:
    """Arm the persist timer with backoff (NetBSD tcp_setpersist)."""
    p = cb.params
    t = base_rto(cb) * (1 << min(cb.t_rxtshift, 30))
    t = min(max(t, p.persmin), p.persmax)
    cb.set_timer(TCPT_PERSIST, t, now)
    if cb.t_rxtshift < p.rexmit_max:
        cb.t_rxtshift += 1


def rcv_window(cb: TcpCb) -> int:
    """Window to advertise, in bytes (unscaled)."""
    rcvspace = cb.rcvspace
    space = rcvspace - len(cb.rcv_buf)          # cb.rcv_space(), inlined
    if space < 0:
        space = 0
    # Receiver SWS avoidance (RFC 9293 3.8.6.2.2, BSD): don't advertise tiny windows.
    if space < rcvspace // 4 and space < cb.t_maxseg:
        space = 0
    if cb.state < _ESTABLISHED:
        space = min(space, TCP_MAXWIN)
    else:
        scale = cb.rcv_scale
        if scale and cb.params.rcvwin_roundup:
            # FreeBSD's and Linux's choice: the scaled window rounded up, not down (RFC
            # 7323 2.4 allows a window "beyond what it previously advertised (and perhaps
            # beyond the buffer)"); NetBSD rounds down.
            space += (1 << scale) - 1
            space -= space & ((1 << scale) - 1)
        space = min(space, TCP_MAXWIN << scale)
    promised = cb.rcv_wnd
    if space < promised:
        space = promised            # never shrink the window (RFC 9293 3.8.6)
    return space


def _options(cb: TcpCb, flags: int, now: float, r: TcpRepr) -> int:
    """Fill options into r; return the option length in bytes."""
    olen = 0
    tf = cb.t_flags
    if flags & TH_SYN:
        if cb.noopt:
            return 0                 # TCP_NOOPT: a bare SYN (the peer assumes MSS 536)
        if cb.params.mssopt_pmtu:
            # FreeBSD's tcp_mssopt: from the route's path MTU as it is now, so a SYN
            # resent after a Packet Too Big says less (RFC 1191 3.1 / RFC 8201 5.2
            # allow either; NetBSD keeps the value of the first SYN).
            cb.t_ourmss = cb.proto._ourmss(cb.faddr, cb.user_maxseg)
        r.mss = cb.t_ourmss
        olen = 4
        if tf & TF_REQ_SCALE:
            r.wscale = cb.request_r_scale
            olen += 4
        if cb.params.sack and (tf & TF_SACK_PERMIT or not flags & TH_ACK):
            r.sack_permitted = True
            olen += 4
        if tf & TF_REQ_TSTMP and (not flags & TH_ACK or tf & TF_RCVD_TSTMP):
            r.timestamps = (cb.ts_now(now), cb.ts_recent if flags & TH_ACK else 0)
            olen += 12
        return olen
    if tf & TS_BOTH == TS_BOTH:
        r.timestamps = (cb.ts_now(now), cb.ts_recent)
        olen = 12
        if cb.rcv_auto and cb.rfbuf_ts is None:
            cb.rfbuf_ts = r.timestamps[0]   # as in _emit_ts
    if tf & TF_SACK_PERMIT and (cb.rcv_sack_blocks or cb.rcv_dsack):
        blocks = cb.rcv_sack_blocks
        if cb.rcv_dsack is not None:
            # RFC 2883: the duplicate range goes first, reported once.
            blocks = [cb.rcv_dsack, *blocks]
            cb.rcv_dsack = None
        n = min(len(blocks), (40 - olen - 4) // 8)
        r.sack_blocks = tuple(blocks[:n])
        olen += 4 + 8 * n
        cb.stats.tcps_sack_send_opts += 1
    return olen


def _optlen(cb: TcpCb, flags: int) -> int:
    """The option length :func:`_options` would fill in, without its side effects (so
    that ``_output_one`` builds a segment only when it decides to send one)."""
    tf = cb.t_flags
    if flags & TH_SYN and cb.noopt:
        return 0
    if flags & TH_SYN:
        olen = 4
        if tf & TF_REQ_SCALE:
            olen += 4
        if cb.params.sack and (tf & TF_SACK_PERMIT or not flags & TH_ACK):
            olen += 4
        if tf & TF_REQ_TSTMP and (not flags & TH_ACK or tf & TF_RCVD_TSTMP):
            olen += 12
        return olen
    olen = 12 if tf & TS_BOTH == TS_BOTH else 0
    if tf & TF_SACK_PERMIT and (cb.rcv_sack_blocks or cb.rcv_dsack):
        nb = len(cb.rcv_sack_blocks) + (cb.rcv_dsack is not None)
        olen += 4 + 8 * min(nb, (40 - olen - 4) // 8)
    return olen


def _emit(cb: TcpCb, seq: int, flags: int, payload: memoryview | bytes, win: int,
          now: float, r: TcpRepr | None = None, csum: bool = True) -> bytes:
    """Build a segment from cb's state and do the ACK bookkeeping.  The caller hands
    the result to ``cb.proto.output`` *after* its own state updates, so that an output
    path that loops back into input synchronously sees a consistent connection."""
    if r is None:
        r = TcpRepr(cb.lport, cb.fport, seq, 0, flags, 0)
        _options(cb, flags, now, r)
    else:
        r.seq = seq
        r.flags = flags
    if flags & TH_ACK:
        r.ack = cb.rcv_nxt
    if flags & TH_SYN:
        r.window = min(win, TCP_MAXWIN)
    else:
        r.window = min(win >> cb.rcv_scale, TCP_MAXWIN)
    r.payload = payload
    st = cb.stats
    st.tcps_sndtotal += 1
    if not r.window:
        cb.t_sndzerowin += 1
    if flags & TH_ACK:
        cb.last_ack_sent = cb.rcv_nxt
        if cb.t_flags & (TF_ACKNOW | TF_DELACK):
            cb.t_flags &= ~(TF_ACKNOW | TF_DELACK)
            cb.timers[TCPT_DELACK] = None
        cb.delack_segs = 0
        adv = (cb.rcv_nxt + (r.window << (0 if flags & TH_SYN else cb.rcv_scale))) & SEQ_MASK
        if SEQ_GT(adv, cb.rcv_adv):
            cb.rcv_adv = adv
    return _tcp.emit(r, cb.laddr, cb.faddr, csum, compact=bool(cb.params.compact_options))


def _emit_ts(cb: TcpCb, seq: int, flags: int, payload: memoryview | bytes, win: int,
             now: float, csum: bool = True) -> bytes:
    """:func:`_emit` for a segment without SYN whose only option is the timestamp (what
    :func:`_options` gives when TS is on and no SACK blocks are due): the same
    bookkeeping and bytes, without a TcpRepr."""
    tsval = cb.ts_now(now)
    tsecr = cb.ts_recent
    if cb.rcv_auto and cb.rfbuf_ts is None:
        cb.rfbuf_ts = tsval         # receive buffer autosizing: a round trip starts
    rcv_scale = cb.rcv_scale
    window = win >> rcv_scale
    if window > TCP_MAXWIN:
        window = TCP_MAXWIN
    elif not window:
        cb.t_sndzerowin += 1
    cb.stats.tcps_sndtotal += 1
    ack = 0
    if flags & TH_ACK:
        ack = rcv_nxt = cb.rcv_nxt
        cb.last_ack_sent = rcv_nxt
        if cb.t_flags & (TF_ACKNOW | TF_DELACK):
            cb.t_flags &= ~(TF_ACKNOW | TF_DELACK)
            cb.timers[TCPT_DELACK] = None
        cb.delack_segs = 0
        adv = (rcv_nxt + (window << rcv_scale)) & SEQ_MASK
        if SEQ_GT(adv, cb.rcv_adv):
            cb.rcv_adv = adv
    return _tcp.emit_ts(cb.lport, cb.fport, seq, ack, flags, window, 0, tsval, tsecr,
                        payload, cb.laddr, cb.faddr, csum)


def _sent(cb: TcpCb, seq: int, length: int, fin: int, now: float, rexmit: bool) -> None:
    """Bookkeeping of every data transmission: the SACK scoreboard's send times (RACK,
    RFC 8985 6.1), PRR's prr_out (RFC 6937), the retransmissions of an RTO episode."""
    if cb.t_flags & TF_SACK_PERMIT:
        cb.sack.sent(seq, length + fin, now)
    if cb.in_recovery or cb.ecn_recover is not None:
        cb.prr_out += length           # PRR: fast recovery, or an ECN reduction (tcp_ecn)
    if rexmit and cb.t_rxt_tsval is not None:
        cb.t_rto_rexmits += 1


def send_range(cb: TcpCb, seq: int, length: int, now: float) -> int:
    """(Re)transmit up to ``length`` bytes starting at ``seq`` (fast retransmit, SACK
    NextSeg, NewReno partial ACKs, persist probes).  Returns bytes sent."""
    buf = cb.snd_buf
    off = (seq - cb.snd_buf_seq) & SEQ_MASK
    if off >= 0x80000000:
        return 0
    r = TcpRepr(cb.lport, cb.fport, seq, 0, 0, 0)
    olen = _options(cb, TH_ACK, now, r)
    length = max(0, min(length, len(buf) - off, cb.t_maxseg - olen))
    flags = TH_ACK
    end = off + length
    if (cb.fin_queued and end == len(buf) and TCP_OUTFLAGS[cb.state] & TH_FIN
            and cb.t_flags & TF_SENTFIN):
        flags |= TH_FIN
    if length == 0 and not flags & TH_FIN:
        return 0
    if length and end == len(buf):
        flags |= TH_PUSH
    st = cb.stats
    rexmit = SEQ_LT(seq, cb.snd_max)
    if rexmit:
        st.tcps_sndrexmitpack += 1
        st.tcps_sndrexmitbyte += length
        cb.t_sndrexmitpack += 1
    else:
        st.tcps_sndpack += 1
        st.tcps_sndbyte += length
    fin = 1 if flags & TH_FIN else 0
    ecn = 0
    if cb.t_flags & TF_ECN_PERMIT:
        # New data (a tail loss probe's) is ECT, a retransmission or window probe is not.
        flags, ecn = _ecn.output(cb, flags, not rexmit and length > 0 and cb.snd_wnd != 0)
    _sent(cb, seq, length, fin, now, rexmit)
    nxt = (seq + length + fin) & SEQ_MASK
    if SEQ_GT(nxt, cb.snd_max):
        cb.snd_max = nxt
    raw = _emit(cb, seq, flags, memoryview(buf)[off:end], rcv_window(cb), now, r)
    r.payload = b""        # drop the view of snd_buf before anything can resize it
    if cb.timers[TCPT_REXMT] is None:
        cb.set_timer(TCPT_REXMT, rexmt_value(cb), now)
    _ip_output(cb, raw, 0, ecn)
    return length


def _ip_output(cb: TcpCb, raw: bytes, tso: int, ecn: int) -> None:
    """Hand a segment to IP: ``output(src, dst, segment)``, with ``tso_segsz=`` for a
    superframe and ``ecn=`` for its ECN codepoint (tcp_ecn) -- keywords only when
    they say something, so that a plain output callable takes three arguments."""
    if ecn:
        cb.proto.output(cb.laddr, cb.faddr, raw, tso_segsz=tso, ecn=ecn)
    elif tso:
        cb.proto.output(cb.laddr, cb.faddr, raw, tso_segsz=tso)
    else:
        cb.proto.output(cb.laddr, cb.faddr, raw)


def rexmit_lost(cb: TcpCb, now: float) -> None:
    """RFC 6675 section 5 step (C) with NextSeg rule 1: resend deemed-lost segments, lowest
    first, while cwnd - pipe allows a full segment (tcp_output runs this first, as
    NetBSD's tcp_output asks tcp_sack_output)."""
    sb = cb.sack
    st = cb.stats
    ss = cb.segsize()
    for _ in range(10000):
        r = sb.next_lost()
        if r is None or cb.snd_cwnd - sb.pipe((cb.snd_max - cb.snd_una) & SEQ_MASK) < ss:
            return
        n = send_range(cb, sb.seq(r[0]), min(r[1] - r[0], ss), now)
        if not r[3] & RETRANS:
            return                       # nothing went out (no data there)
        st.tcps_sack_rexmits += 1
        st.tcps_sack_rexmit_bytes += n


def tlp_schedule(cb: TcpCb, now: float) -> None:
    """RFC 8985 7.2: (re)arm the probe timer after new data or a cumulative ACK."""
    if not cb.t_flags & TF_SACK_PERMIT:
        return
    deadline = _rack.tlp_pto(cb, cb.timers[TCPT_REXMT], now)
    if deadline is None:
        cb.timers[TCPT_TLP] = None
    else:
        cb.set_timer(TCPT_TLP, deadline - now, now)


def send_rst(cb: TcpCb, now: float) -> None:
    """RST from a synchronized connection being dropped (seq = SND.MAX)."""
    cb.stats.tcps_sndrst += 1
    r = TcpRepr(cb.lport, cb.fport, cb.snd_max, cb.rcv_nxt, TH_RST | TH_ACK, 0)
    cb.stats.tcps_sndtotal += 1
    cb.proto.output(cb.laddr, cb.faddr, _tcp.emit(r, cb.laddr, cb.faddr))


def send_ack(cb: TcpCb, now: float, seq: int | None = None) -> None:
    """An immediate pure ACK (challenge ACKs, keepalives, dup-segment ACKs)."""
    r = TcpRepr(cb.lport, cb.fport, 0, 0, TH_ACK, 0)
    _options(cb, TH_ACK, now, r)
    cb.stats.tcps_sndacks += 1
    raw = _emit(cb, cb.snd_max if seq is None else seq, TH_ACK, b"", rcv_window(cb), now, r)
    cb.proto.output(cb.laddr, cb.faddr, raw)


def tcp_output(cb: TcpCb, now: float) -> None:
    """Send what can be sent (NetBSD tcp_output)."""
    st = cb.state
    if st <= _LISTEN or cb.freed:
        return
    if cb.t_pmtu_gen != cb.proto.route_gen():
        cb.proto.pmtu_sync(cb)           # a route changed: size segments to its MTU
    idle = cb.snd_max == cb.snd_una      # computed once per call, as BSD does
    if idle and cb.t_sndtime is not None and st >= _ESTABLISHED \
            and now - cb.t_sndtime >= base_rto(cb):
        # RFC 5681 4.1: restart from at most the initial window after an idle RTO.
        cb.snd_cwnd = min(cb.snd_cwnd, cb.cc.initial_window())
    if cb.snd_auto:
        _autosndbuf(cb)
    sack = cb.t_flags & TF_SACK_PERMIT
    if sack:
        sb = cb.sack
        if sb.lost != sb.lost_rx and st >= _ESTABLISHED:
            rexmit_lost(cb, now)      # RFC 6675 NextSeg rule 1 before new data
    before = cb.snd_max
    while _output_one(cb, now, idle):
        pass
    if sack and cb.snd_max != before:
        tlp_schedule(cb, now)         # RFC 8985 7.2: after new data


def _autosndbuf(cb: TcpCb) -> None:
    """Send buffer autosizing (FreeBSD's tcp_output; TcpParams.sendbuf_auto): double the
    buffer when it is 7/8 full, the peer's window is at least 4/5 of it and the send
    window takes all that is unsent -- the buffer is what limits the data in flight."""
    space = cb.sndspace
    used = len(cb.snd_buf)
    top = cb.params.sendbuf_max
    if used >= space // 8 * 7 and space < top and cb.snd_wnd // 4 * 5 >= space \
            and min(cb.snd_wnd, cb.snd_cwnd) >= used - ((cb.snd_nxt - cb.snd_una) & SEQ_MASK):
        cb.sndspace = min(2 * space, top)


def _send_room(cb: TcpCb, snd_nxt: int, inflight: int, tf: int) -> int:
    """What the send window (offered window and cwnd) leaves from ``snd_nxt``.  With
    SACK information, cwnd limits pipe, not SND.NXT - SND.UNA (RFC 6675 section 5)."""
    snd_wnd = cb.snd_wnd
    cwnd_room = cb.snd_cwnd - inflight
    if tf & TF_SACK_PERMIT and snd_nxt == cb.snd_max:
        sb = cb.sack
        if sb.sacked or sb.lost or sb.retrans:
            cwnd_room = cb.snd_cwnd - sb.pipe(inflight)
    if tf & TF_FORCE and min(snd_wnd, cb.snd_cwnd) == 0:
        return 1 - inflight                 # a window probe: one byte past SND.UNA
    return min(snd_wnd - inflight, cwnd_room)


def _count_output(cb: TcpCb, snd_nxt: int, length: int, tso: int, flags: int, now: float) -> None:
    """The tcps_snd* counters of a segment about to go (one per MSS of a TSO/GSO
    superframe: the wire carries that many, and _emit counts one), and its bookkeeping."""
    stt = cb.stats
    if length:
        npack = length // tso if tso else 1
        rexmit = SEQ_LT(snd_nxt, cb.snd_max)
        if rexmit:
            stt.tcps_sndrexmitpack += npack
            stt.tcps_sndrexmitbyte += length
            cb.t_sndrexmitpack += npack
        else:
            stt.tcps_sndpack += npack
            stt.tcps_sndbyte += length
        stt.tcps_sndtotal += npack - 1
        _sent(cb, snd_nxt, length, 1 if flags & TH_FIN else 0, now, rexmit)
    elif flags & (TH_SYN | TH_FIN | TH_RST):
        stt.tcps_sndctrl += 1
        if flags & TH_FIN and not flags & TH_SYN:
            _sent(cb, snd_nxt, 0, 1, now, SEQ_LT(snd_nxt, cb.snd_max))
    else:
        stt.tcps_sndacks += 1


def _output_one(cb: TcpCb, now: float, idle: bool) -> bool:
    """Build and send at most one segment; True if more may be sent (sendalot).  The body
    of NetBSD's tcp_output loop: what may go from where (:func:`_extent`), how much of it
    in one packet (:func:`_tso_length`), whether to send now (:func:`_should_send`), then
    the segment (:func:`_send_segment`)."""
    state = cb.state
    tf = cb.t_flags
    blen = len(cb.snd_buf)
    flags, snd_nxt, off, length = _extent(cb, TCP_OUTFLAGS[state], tf, blen, now)
    ss = tso = 0
    sendalot = False
    if length:
        ss = cb.t_maxseg - _optlen(cb, flags)
        if length > ss:
            length, tso, sendalot = _tso_length(cb, flags, length, ss, off, blen)
    # FIN: only with the last byte (also when that byte is retransmitted, and backed up
    # over in _extent while it is unacknowledged).
    if flags & TH_FIN and (not cb.fin_queued or off + length != blen):
        flags &= ~TH_FIN
    win = rcv_window(cb)
    if not _should_send(cb, state, flags, tf, snd_nxt, off, length, ss, blen, idle, win):
        _not_sending(cb, state, flags, tf, blen, now)
        return False
    _send_segment(cb, flags, snd_nxt, off, length, tso, win, now)
    return sendalot and not cb.freed


def _extent(cb: TcpCb, flags: int, tf: int, blen: int, now: float) -> tuple[int, int, int, int]:
    """(flags, SND.NXT, offset in snd_buf, length) of what the windows let go now.  A
    zero send window pulls SND.NXT back and starts the persist timer (NetBSD)."""
    snd_una = cb.snd_una
    snd_nxt = cb.snd_nxt
    if flags & TH_FIN and tf & TF_SENTFIN and snd_nxt == cb.snd_max and snd_nxt != snd_una:
        # 4.4BSD tcp_output (NetBSD, FreeBSD): while our FIN is unacknowledged every
        # segment carries it again, from its own sequence number (the ACK of the peer's
        # FIN in CLOSING is "F. ack"): snd_nxt is backed up over it.
        snd_nxt = (snd_nxt - 1) & SEQ_MASK
    if flags & TH_SYN:
        if snd_nxt != cb.iss:
            flags &= ~TH_SYN
        return flags, snd_nxt, 0, 0
    off = (snd_nxt - cb.snd_buf_seq) & SEQ_MASK
    if off >= 0x80000000:
        off = 0
    length = 0
    if blen > off:
        length = min(blen - off, _send_room(cb, snd_nxt, (snd_nxt - snd_una) & SEQ_MASK, tf))
        if length < 0:
            length = 0
    if cb.snd_wnd == 0 and not tf & TF_FORCE and blen and cb.timers[TCPT_PERSIST] is None:
        # Zero window: pull back and probe with the persist timer (NetBSD).
        cb.timers[TCPT_REXMT] = None
        cb.t_rxtshift = 0
        cb.snd_nxt = snd_nxt = snd_una
        off = (snd_nxt - cb.snd_buf_seq) & SEQ_MASK
        length = 0
        tcp_setpersist(cb, now)
    return flags, snd_nxt, off, length


def _tso_length(cb: TcpCb, flags: int, length: int, ss: int, off: int, blen: int) -> tuple[int, int, bool]:
    """(length, segment size, more to send) of a packet when more than a segment ``ss``
    may go: whole segments in one superframe up to ``t_tsomax`` (TSO or GSO; never the
    last byte of the send buffer, so no FIN or PSH rides on it: the tail goes as usual),
    else one segment (segment size 0: not a superframe)."""
    n = cb.t_tsomax - (cb.t_maxseg - ss)
    if n >= 2 * ss and not flags & TH_SYN:
        n = min(length, n, blen - 1 - off)
        n -= n % ss
        if n >= 2 * ss:
            return n, ss, n < length
    return ss, 0, True


def _should_send(cb: TcpCb, state: TcpState, flags: int, tf: int, snd_nxt: int, off: int,
                 length: int, ss: int, blen: int, idle: bool, win: int) -> bool:
    """NetBSD tcp_output's decision: a full segment, the end of the data (Nagle, RFC 9293
    3.7.4), sender SWS avoidance (RFC 9293 3.8.6.2.1), a window update, an ACK owed,
    SYN, RST or a FIN not yet sent."""
    if length:
        if length >= ss:
            return True
        if (idle or tf & TF_NODELAY) and off + length == blen:
            return True                       # Nagle (RFC 9293 3.7.4)
        if tf & TF_FORCE:
            return True
        if cb.max_sndwnd and length >= cb.max_sndwnd // 2:
            return True                       # sender SWS avoidance
        if SEQ_LT(snd_nxt, cb.snd_max) and not SEQ_LT((snd_nxt + length) & SEQ_MASK, cb.snd_max):
            return True                       # the last piece of what was sent before
    if state >= _ESTABLISHED and not flags & TH_SYN and _window_update_due(cb, win):
        cb.stats.tcps_sndwinup += 1
        return True
    if tf & TF_ACKNOW or flags & (TH_SYN | TH_RST):
        return True
    # A FIN not yet sent, or retransmitted.
    return bool(flags & TH_FIN and (not tf & TF_SENTFIN or cb.snd_nxt == cb.snd_una))


def _window_update_due(cb: TcpCb, win: int) -> bool:
    """The window ``win`` opens the one the peer knows (RCV.ADV - RCV.NXT) by two segments
    or half the buffer (receiver SWS avoidance, RFC 9293 3.8.6.2.2; NetBSD tcp_output)."""
    adv = min(win, TCP_MAXWIN << cb.rcv_scale) - cb.rcv_wnd
    return adv >= 2 * cb.t_maxseg or (adv > 0 and 2 * adv >= cb.rcvspace)


def _not_sending(cb: TcpCb, state: TcpState, flags: int, tf: int, blen: int, now: float) -> None:
    """Nothing goes out: what deciding did anyway (the D-SACK range is reported once or
    dropped), and the persist timer for data the window holds back (NetBSD)."""
    if tf & TF_SACK_PERMIT and (cb.rcv_sack_blocks or cb.rcv_dsack) and not flags & TH_SYN:
        cb.rcv_dsack = None
        cb.stats.tcps_sack_send_opts += 1
    if blen and cb.timers[TCPT_REXMT] is None and cb.timers[TCPT_PERSIST] is None \
            and state >= _ESTABLISHED and cb.snd_max == cb.snd_una:
        cb.t_rxtshift = 0
        tcp_setpersist(cb, now)


def _send_segment(cb: TcpCb, flags: int, snd_nxt: int, off: int, length: int, tso: int, win: int,
                  now: float) -> None:
    """Build the segment (a superframe of ``tso``-byte segments when ``tso``), advance
    SND.NXT/SND.MAX, time it (Karn), arm the retransmission timer, hand it to IP."""
    tf = cb.t_flags
    if length and off + length == len(cb.snd_buf):
        flags |= TH_PUSH
    ecn = 0
    if tf & TF_ECN:
        flags, ecn = _ecn.segment_ecn(cb, flags, snd_nxt, length, tso)
    if length or flags & (TH_SYN | TH_FIN) or cb.timers[TCPT_PERSIST] is not None:
        seq = snd_nxt
    else:
        seq = cb.snd_max
    _count_output(cb, snd_nxt, length, tso, flags, now)
    payload = memoryview(cb.snd_buf)[off:off + length] if length else b""
    if (tf & TS_BOTH == TS_BOTH and not flags & TH_SYN
            and not (tf & TF_SACK_PERMIT and (cb.rcv_sack_blocks or cb.rcv_dsack))):
        raw = _emit_ts(cb, seq, flags, payload, win, now, not tso)
    else:
        r = TcpRepr(cb.lport, cb.fport, 0, 0, 0, 0)
        _options(cb, flags, now, r)
        raw = _emit(cb, seq, flags, payload, win, now, r, not tso)
        r.payload = b""         # release the view of snd_buf (output may re-enter)
    payload = b""
    if length:
        cb.t_sndtime = now
    if length or flags & (TH_SYN | TH_FIN):
        nxt = (snd_nxt + length + (1 if flags & TH_SYN else 0)
               + (1 if flags & TH_FIN else 0)) & SEQ_MASK
        if flags & TH_FIN:
            cb.t_flags |= TF_SENTFIN
        cb.snd_nxt = nxt
        if SEQ_GT(nxt, cb.snd_max):
            cb.snd_max = nxt
            if cb.t_rtttime is None:
                cb.t_rtttime = now
                cb.t_rtseq = snd_nxt
                cb.stats.tcps_segstimed += 1
        if cb.timers[TCPT_REXMT] is None and cb.snd_nxt != cb.snd_una:
            if cb.timers[TCPT_PERSIST] is not None:
                cb.timers[TCPT_PERSIST] = None
                cb.t_rxtshift = 0
            cb.set_timer(TCPT_REXMT, rexmt_value(cb), now)
    _ip_output(cb, raw, tso, ecn)
