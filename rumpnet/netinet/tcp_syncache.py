"""The SYN cache (NetBSD's ``tcp_syncache.c``): half-open passive connections kept in a
few fields each, in a bounded table with per-bucket limits so that a SYN flood cannot
exhaust memory, until the ACK of our SYN,ACK completes them into a :class:`TcpCb` on the
listener's accept queue (RFC 9293 3.10.7.2 LISTEN; RFC 5961 3.2 for RSTs; RFC 4987).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rumpnet.netinet import tcp as _tcp
from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet.tcp import TH_ACK, TH_ECE, TH_FIN, TH_RST, TH_SYN, TcpRepr
from rumpnet.netinet.tcp_const import (
    EV_READABLE,
    TF_PASSIVE,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
)
from rumpnet.netinet.tcp_fsm import Ev
from rumpnet.netinet.tcp_input import apply_syn_options, established, tcp_input_cb
from rumpnet.netinet.tcp_seq import SEQ_MASK
from rumpnet.netinet.tcp_var import (
    TcpCb,
    rcvbuf_scale_space,
    wscale_for,
)

if TYPE_CHECKING:
    from rumpnet.netinet.tcp_subr import TcpListener, TcpProtocol

M = SEQ_MASK


class SynCacheEntry:
    """A half-open passive connection (NetBSD struct syn_cache): a few fields only."""

    __slots__ = ("key", "laddr", "lport", "faddr", "fport", "irs", "iss", "peer_mss",
                 "peer_ws", "sack_ok", "tsval", "ts_offset", "rcv_scale", "ourmss",
                 "listener", "rxt", "deadline", "sent", "bucket", "_hdl", "freed", "cache",
                 "win", "noopt", "ecn")
    key: tuple[int, int, int, int]
    laddr: int
    lport: int
    faddr: int
    fport: int
    irs: int
    iss: int
    peer_mss: int
    peer_ws: int | None
    sack_ok: bool
    tsval: int | None
    ts_offset: int
    rcv_scale: int
    ourmss: int
    listener: TcpListener
    sent: float
    bucket: int
    cache: SynCache
    win: int
    noopt: bool
    ecn: bool          # an ECN-setup SYN taken: the SYN-ACK carries ECE (RFC 3168 6.1.1)

    def __init__(self) -> None:
        self._hdl: float | None = None
        self.freed = False
        self.rxt = 0
        self.deadline = 0.0

    def next_deadline(self) -> float | None:
        return None if self.freed else self.deadline

    def on_timer(self, now: float) -> None:
        if self.deadline <= now:
            self.cache.timer(self, now)



class SynCache:
    """The SYN cache of one :class:`TcpProtocol` (``proto.syncache``)."""

    def __init__(self, proto: TcpProtocol, salt: int) -> None:
        self.proto = proto
        self.salt = salt
        self.table: dict[tuple[int, int, int, int], SynCacheEntry] = {}
        self.buckets: dict[int, list[SynCacheEntry]] = {}

    def get(self, key: tuple[int, int, int, int]) -> SynCacheEntry | None:
        return self.table.get(key)

    def listener_closed(self, lst: TcpListener) -> None:
        for e in [e for e in self.table.values() if e.listener is lst]:
            self.remove(e)

    def listen_input(self, lst: TcpListener, src: int, dst: int, seg: TcpRepr,
                      now: float) -> None:
        """RFC 9293 3.10.7.2 (LISTEN), through the SYN cache (NetBSD syn_cache_add)."""
        f = seg.flags
        if f & TH_RST:
            self.proto.stats.tcps_badrst += 1   # RFC 9293 3.10.7.2: a RST to a listener is ignored
            return
        if f & TH_ACK:
            self.proto.respond(dst, src, seg)
            return
        if not f & TH_SYN:
            return
        st = self.proto.stats
        if lst.full():
            st.tcps_listendrop += 1
            return
        p = self.proto.params
        e = SynCacheEntry()
        e.cache = self
        e.key = (dst, seg.dport, src, seg.sport)
        e.laddr, e.lport, e.faddr, e.fport = dst, seg.dport, src, seg.sport
        e.irs = seg.seq
        e.iss = self.proto.isn(dst, seg.dport, src, seg.sport, now)
        e.peer_mss = seg.mss if seg.mss else 536
        # TCP_NOOPT on the listener (FreeBSD): the SYN,ACK carries no options and none
        # of the peer's are used.
        e.noopt = lst.noopt
        opts_on = p.rfc1323 and not e.noopt
        e.peer_ws = seg.wscale if (opts_on and seg.wscale is not None) else None
        e.sack_ok = bool(p.sack and seg.sack_permitted and not e.noopt)
        e.tsval = seg.timestamps[0] if (opts_on and seg.timestamps is not None) else None
        e.ts_offset = self.proto._ts_offset(dst, seg.dport, src, seg.sport)
        rcvspace = lst.rcvbuf or p.recvspace
        scale_space = rcvbuf_scale_space(p, rcvspace, not lst.rcvbuf and bool(p.recvbuf_auto), self.proto.sb_max())
        e.rcv_scale = wscale_for(scale_space) if e.peer_ws is not None else 0
        e.win = min(rcvspace, 65535)
        e.ourmss = self.proto._ourmss(src, lst.maxseg)
        e.listener = lst
        e.ecn = _ecn.syn_accepts(p, f)
        e.sent = now
        self.add(e)
        self.send(e, now)
        e.deadline = now + p.init_rto
        e._hdl = e.deadline
        self.proto.timer_push(e.deadline, e)

    def add(self, e: SynCacheEntry) -> None:
        p = self.proto.params
        st = self.proto.stats
        b = hash((self.salt, e.key)) % max(1, p.syn_cache_buckets)
        e.bucket = b
        bl = self.buckets.setdefault(b, [])
        if len(bl) >= p.syn_bucket_limit:
            st.tcps_sc_bucketoverflow += 1
            self.remove(bl[0])
            st.tcps_sc_dropped += 1
        elif len(self.table) >= p.syn_cache_limit:
            st.tcps_sc_overflowed += 1
            self.remove(next(iter(self.table.values())))
            st.tcps_sc_dropped += 1
        self.table[e.key] = e
        self.buckets.setdefault(b, []).append(e)
        st.tcps_sc_added += 1
        st.tcps_sc_entries = len(self.table)

    def remove(self, e: SynCacheEntry) -> None:
        if e.freed:
            return
        e.freed = True
        if self.table.get(e.key) is e:
            del self.table[e.key]
        bl = self.buckets.get(e.bucket)
        if bl is not None:
            try:
                bl.remove(e)
            except ValueError:
                pass
            if not bl:
                del self.buckets[e.bucket]
        self.proto.stats.tcps_sc_entries = len(self.table)

    def entries(self) -> list[SynCacheEntry]:
        """The half-open passive connections (for listings such as sockstat's)."""
        return list(self.table.values())

    def __len__(self) -> int:
        return len(self.table)

    def send(self, e: SynCacheEntry, now: float) -> None:
        r = TcpRepr(e.lport, e.fport, e.iss, (e.irs + 1) & M,
                    TH_SYN | TH_ACK | (TH_ECE if e.ecn else 0), e.win,
                    mss=None if e.noopt else e.ourmss)
        if e.peer_ws is not None:
            r.wscale = e.rcv_scale
        if e.sack_ok:
            r.sack_permitted = True
        if e.tsval is not None:
            r.timestamps = ((int(now * 1000) + e.ts_offset) & M, e.tsval)
        self.proto.stats.tcps_sndtotal += 1
        self.proto.stats.tcps_sndctrl += 1
        self.proto.output(e.laddr, e.faddr, _tcp.emit(r, e.laddr, e.faddr, compact=bool(self.proto.params.compact_options)))

    def timer(self, e: SynCacheEntry, now: float) -> None:
        e.rxt += 1
        if e.rxt > self.proto.params.synack_retries:
            self.proto.stats.tcps_sc_timed_out += 1
            self.remove(e)
            return
        self.proto.stats.tcps_sc_retransmitted += 1
        self.send(e, now)
        e.deadline = now + min(self.proto.params.init_rto * (1 << e.rxt), self.proto.params.rtomax)

    def rst(self, e: SynCacheEntry, seg: TcpRepr, now: float) -> None:
        """A RST for a half-open connection (RFC 5961 3.2; RFC 793 with insecure_rst):
        an exact one (RCV.NXT) removes the entry, one elsewhere in the window we offered
        gets a challenge ACK, one outside it is dropped."""
        rcv_nxt = (e.irs + 1) & M
        in_window = ((seg.seq - rcv_nxt) & M) < e.win or seg.seq == rcv_nxt
        if seg.seq == rcv_nxt or (in_window and self.proto.params.insecure_rst):
            self.proto.stats.tcps_sc_reset += 1
            self.remove(e)
        elif not in_window:
            self.proto.stats.tcps_rst_outwin += 1
        elif self.proto._challenge_allowed(now):
            r = TcpRepr(e.lport, e.fport, (e.iss + 1) & M, rcv_nxt, TH_ACK, e.win)
            if e.tsval is not None:
                r.timestamps = ((int(now * 1000) + e.ts_offset) & M, e.tsval)
            self.proto.stats.tcps_sndtotal += 1
            self.proto.stats.tcps_sndacks += 1
            self.proto.output(e.laddr, e.faddr, _tcp.emit(r, e.laddr, e.faddr))

    def input(self, e: SynCacheEntry, seg: TcpRepr, now: float) -> None:
        st = self.proto.stats
        f = seg.flags
        if f & TH_RST:
            self.rst(e, seg, now)
            return
        if f & TH_SYN:
            if seg.seq == e.irs and not f & TH_ACK:
                st.tcps_sc_dupesyn += 1
                self.send(e, now)
            return
        if not f & TH_ACK:
            return
        if seg.ack != (e.iss + 1) & M:
            self.proto.respond(e.laddr, e.faddr, seg)
            return
        lst = e.listener
        if lst.closed:
            self.remove(e)
            self.proto.respond(e.laddr, e.faddr, seg)
            return
        if lst.full():
            st.tcps_listendrop += 1      # keep the entry; the peer will retry
            return
        self.complete(e, seg, now)

    def complete(self, e: SynCacheEntry, seg: TcpRepr, now: float) -> None:
        """The ACK of our SYN,ACK: the entry becomes a connection on the accept queue
        (NetBSD syn_cache_get), data and FIN on that ACK processed as usual."""
        lst = e.listener
        st = self.proto.stats
        self.remove(e)
        st.tcps_sc_completed += 1
        cb = TcpCb(self.proto, e.laddr, e.lport, e.faddr, e.fport, now)
        if lst.rcvbuf:
            cb.set_rcvbuf(lst.rcvbuf)
        if lst.sndbuf:
            cb.set_sndbuf(lst.sndbuf)
        if lst.maxseg:
            cb.set_maxseg(lst.maxseg)
        cb.nodelay = lst.nodelay
        cb.noopt = e.noopt
        if e.ecn:
            _ecn.permit(cb)
        cb.t_flags |= TF_PASSIVE
        cb.iss = e.iss
        cb.irs = e.irs
        cb.snd_una = cb.snd_nxt = cb.snd_max = cb.snd_recover = (e.iss + 1) & M
        cb.snd_buf_seq = cb.snd_una
        cb.rcv_nxt = (e.irs + 1) & M
        cb.rcv_adv = (cb.rcv_nxt + e.win) & M
        cb.last_ack_sent = cb.rcv_nxt
        cb.ts_offset = e.ts_offset
        cb.t_ourmss = e.ourmss
        cb.t_tsomax = self.proto._tsomax(e.faddr)
        if e.peer_ws is not None:
            cb.t_flags |= TF_REQ_SCALE
            cb.request_r_scale = e.rcv_scale
        if e.tsval is not None:
            cb.t_flags |= TF_REQ_TSTMP
        syn = TcpRepr(e.fport, e.lport, e.irs, 0, TH_SYN, 0, mss=e.peer_mss,
                      wscale=e.peer_ws, sack_permitted=e.sack_ok,
                      timestamps=(e.tsval, 0) if e.tsval is not None else None)
        apply_syn_options(cb, syn, e.sent)
        if cb.t_flags & TF_RCVD_TSTMP and seg.timestamps is not None:
            cb.ts_recent = seg.timestamps[0]
            cb.ts_recent_age = now
        if e.rxt == 0:
            cb.t_srtt = max(now - e.sent, 1e-6)
            cb.t_rttvar = cb.t_srtt / 2
        assert cb.t_flags & TF_SACK_PERMIT or not e.sack_ok
        cb.snd_wnd = seg.window << cb.snd_scale
        cb.max_sndwnd = cb.snd_wnd
        cb.snd_wl1 = seg.seq
        cb.snd_wl2 = seg.ack
        cb.transition(Ev.SYNCACHE_COMPLETE)
        self.proto._apply_opts(cb, lst.opts)
        cb.keepalive = lst.keepalive
        established(cb, now)
        self.proto.conns[e.key] = cb
        self.proto._add_bind(cb.laddr, cb.lport, "conn", cb)
        st.tcps_accepts += 1
        cb.listener = lst
        lst.queue.append(cb)
        if seg.payload or seg.flags & TH_FIN:
            tcp_input_cb(cb, seg, now)
        lst.notify(EV_READABLE)
