"""TCP timers (NetBSD tcp_timer.c), all driven from one ``now``.

Each connection stores its five deadlines in ``cb.timers`` (REXMT, PERSIST, KEEP, 2MSL,
DELACK).  The protocol keeps one heap of ``(deadline, seq, owner)`` with lazy deletion: an
owner is pushed only when a deadline earlier than the one it already has in the heap is
set, so restarting the retransmission timer on every ACK costs no heap operation.
"""

from __future__ import annotations

import errno
import heapq
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet import tcp_recovery as _rec
from rumpnet.netinet.tcp_const import (
    TCPT_2MSL,
    TCPT_KEEP,
    TCPT_REXMT,
    TF_ACKNOW,
    TF_DELACK,
    TF_FORCE,
    TF_SACK_PERMIT,
)
from rumpnet.netinet.tcp_fsm import Ev, TcpState

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_var import TcpCb

class TimerHeap:
    """Deadline heap over owners having ``_hdl`` (deadline they hold in the heap),
    ``timers`` and ``freed``; see module docstring."""

    def __init__(self) -> None:
        self.heap: list[tuple[float, int, Any]] = []
        self._seq = 0
        self._limit = 1024

    def __len__(self) -> int:
        return len(self.heap)

    def push(self, deadline: float, owner: Any) -> None:
        self._seq += 1
        h = self.heap
        heapq.heappush(h, (deadline, self._seq, owner))
        if len(h) > self._limit:
            # Lazy deletion leaves stale entries (e.g. SYN-cache entries evicted by a
            # flood); drop them so the heap stays proportional to the live owners.
            h[:] = [e for e in h if not e[2].freed and e[2]._hdl == e[0]]
            heapq.heapify(h)
            self._limit = max(1024, 2 * len(h))

    def _clean(self) -> None:
        h = self.heap
        while h:
            d, _, o = h[0]
            if o.freed or o._hdl != d:
                heapq.heappop(h)
                continue
            nd = o.next_deadline()
            if nd != d:
                # Timer was cancelled or pushed back: re-file at its real deadline.
                heapq.heappop(h)
                o._hdl = nd
                if nd is not None:
                    self.push(nd, o)
                continue
            return

    def earliest(self) -> float | None:
        self._clean()
        return self.heap[0][0] if self.heap else None

    def run(self, now: float, fire: Callable[[Any, float], None]) -> None:
        h = self.heap
        while True:
            self._clean()
            if not h or h[0][0] > now:
                return
            d, _, o = heapq.heappop(h)
            o._hdl = None
            fire(o, now)
            if not o.freed:
                nd = o.next_deadline()
                if nd is not None and (o._hdl is None or nd < o._hdl):
                    o._hdl = nd
                    self.push(nd, o)


def next_deadline(cb: TcpCb) -> float | None:
    m = None
    for d in cb.timers:
        if d is not None and (m is None or d < m):
            m = d
    return m


def fire_cb(cb: TcpCb, now: float) -> None:
    """Run every timer of cb that is due, in NetBSD's table order."""
    t = cb.timers
    for i in range(len(TIMER_FUNCS)):
        if cb.freed:
            return
        d = t[i]
        if d is not None and d <= now:
            t[i] = None
            TIMER_FUNCS[i](cb, now)


def tcp_timer_rexmt(cb: TcpCb, now: float) -> None:
    """Retransmission timeout (RFC 6298 section 5, RFC 5681 section 3.1)."""
    p = cb.params
    st = cb.stats
    cb.t_rxtshift += 1
    limit = p.syn_retries if cb.state < TcpState.ESTABLISHED else p.rexmit_max
    if cb.t_rxtshift > limit:
        st.tcps_timeoutdrop += 1
        cb.proto.drop(cb, cb.t_softerror or errno.ETIMEDOUT, now,
                      send_rst=cb.state >= TcpState.SYN_RECEIVED)
        return
    st.tcps_rexmttimeo += 1
    if cb.t_rxtshift > 3:
        # Path may have changed: fall back toward RTO without SRTT (RFC 6298 5.7 spirit).
        cb.t_rttvar += cb.t_srtt / 4
        cb.t_srtt = 0.0
    cb.t_rtttime = None                  # Karn: don't time retransmissions
    cb.t_dupacks = 0
    if cb.state == TcpState.SYN_SENT and cb.t_rxtshift == 3:
        # BSD: drop options that might be what is killing our SYN.
        cb.t_flags &= ~(0x0020 | 0x0080)  # REQ_SCALE, REQ_TSTMP
    if cb.state >= TcpState.ESTABLISHED:
        _rec.rto_save(cb, now)           # before cwnd goes (RFC 3522 / RFC 4015)
        cb.cc.on_rto(now)
        _ecn.rto(cb)                     # CWR on the next new data (RFC 3168 6.1.2)
    cb.in_recovery = cb.sack_recovery = False
    cb.snd_recover = cb.snd_max          # RFC 6582 section 4, RFC 6675 5.1
    cb.set_timer(TCPT_REXMT, _out.rexmt_value(cb), now)
    if cb.state >= TcpState.ESTABLISHED and cb.t_flags & TF_SACK_PERMIT:
        cb.rto_recovery = True
        if _rec.sack_rto(cb, now):
            _out.tcp_output(cb, now)
            return
    cb.rto_recovery = False
    cb.snd_nxt = cb.snd_una              # go back N
    cb.sack.clear(cb.snd_una)
    _out.tcp_output(cb, now)


def tcp_timer_persist(cb: TcpCb, now: float) -> None:
    """Zero-window probe (RFC 9293 3.8.6.1) with backoff."""
    cb.stats.tcps_persisttimeo += 1
    _out.tcp_setpersist(cb, now)
    if cb.snd_wnd == 0 and cb.snd_buf:
        cb.stats.tcps_sndprobe += 1
        _out.send_range(cb, cb.snd_una, 1, now)
        # send_range armed REXMT; probing is the persist timer's job.
        cb.timers[TCPT_REXMT] = None
    else:
        cb.t_flags |= TF_FORCE
        _out.tcp_output(cb, now)
        cb.t_flags &= ~TF_FORCE


def tcp_timer_keep(cb: TcpCb, now: float) -> None:
    """Connection-establishment timeout and keepalive (RFC 9293 3.8.4, RFC 1122 4.2.3.6),
    with the connection's own times (TCP_KEEPIDLE/KEEPINTVL/KEEPCNT)."""
    st = cb.stats
    st.tcps_keeptimeo += 1
    if cb.state < TcpState.ESTABLISHED:
        st.tcps_keepdrops += 1
        cb.proto.drop(cb, cb.t_softerror or errno.ETIMEDOUT, now, send_rst=False)
        return
    if not cb.keepalive or cb.state > TcpState.CLOSING:
        if cb.keepalive:
            cb.set_timer(TCPT_KEEP, cb.keep_idle(), now)
        return
    idle = now - cb.t_rcvtime
    if idle + 1e-9 >= cb.keep_idle() + cb.keep_intvl() * cb.keep_cnt():
        st.tcps_keepdrops += 1
        cb.proto.drop(cb, errno.ETIMEDOUT, now, send_rst=True)
        return
    if idle + 1e-9 >= cb.keep_idle():
        st.tcps_keepprobe += 1
        cb.t_keepprobes += 1
        # Probe: SEG.SEQ = SND.UNA-1, no data, elicits an ACK.
        _out.send_ack(cb, now, seq=(cb.snd_una - 1) & 0xFFFFFFFF)
        cb.set_timer(TCPT_KEEP, cb.keep_intvl(), now)
    else:
        cb.set_timer(TCPT_KEEP, cb.keep_idle() - idle, now)


def tcp_timer_2msl(cb: TcpCb, now: float) -> None:
    """TIME_WAIT expiry (2*MSL) or orphaned FIN_WAIT_2 give-up."""
    if cb.state == TcpState.TIME_WAIT:
        cb.transition(Ev.TIMEOUT_2MSL)
        cb.proto.close_cb(cb, now)
    elif cb.state == TcpState.FIN_WAIT_2 and cb.user_closed:
        idle = now - cb.t_rcvtime
        lim = cb.params.maxidle_fin_wait_2
        if idle + 1e-9 >= lim:
            cb.proto.close_cb(cb, now)
        else:
            cb.set_timer(TCPT_2MSL, lim - idle, now)


def tcp_timer_delack(cb: TcpCb, now: float) -> None:
    """Delayed ACK timer (RFC 1122 4.2.3.2, RFC 9293 3.8.6.3)."""
    if cb.t_flags & TF_DELACK:
        cb.stats.tcps_delack += 1
        cb.t_flags |= TF_ACKNOW
        _out.tcp_output(cb, now)


def tcp_timer_reorder(cb: TcpCb, now: float) -> None:
    """RACK's reordering timer (RFC 8985 6.2 step 5)."""
    _rec.reorder_fire(cb, now)


def tcp_timer_tlp(cb: TcpCb, now: float) -> None:
    """The tail loss probe timeout (RFC 8985 7.3)."""
    _rec.tlp_fire(cb, now)


TIMER_FUNCS: tuple[Callable[[TcpCb, float], None], ...] = (
    tcp_timer_rexmt, tcp_timer_persist, tcp_timer_keep, tcp_timer_2msl, tcp_timer_delack,
    tcp_timer_reorder, tcp_timer_tlp,
)
