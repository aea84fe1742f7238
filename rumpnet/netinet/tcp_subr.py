"""The per-kernel TCP protocol object (NetBSD tcp_subr.c, tcp_usrreq.c, syn cache).

:class:`TcpProtocol` demultiplexes incoming segments, owns the connection table, the
listeners, the SYN cache (bounded so a SYN flood cannot exhaust memory), the port
bindings and the one timer heap; it generates RFC 6528 ISNs and answers segments that
match nothing with a RST (RFC 9293 3.10.7.1).

Sans-IO contract (what the socket layer uses)::

    proto = TcpProtocol(params, rng, output, mtu_for=lambda dst: 1500, stats=None,
                        tso_for=None,   # tso_for(dst) -> max TSO bytes, 0 = no TSO
                        strict=strict_default)   # strict() -> re-raise internal errors
    proto.input(src, dst, segment, now, csum_ok=False)   # never raises on bad input;
        # an internal error is counted (tcps_rcvinternalerr), re-raised if strict()
    proto.get_timer() -> float | None ; proto.handle_timer(now)
    proto.bind(laddr, lport, reuseaddr=False) -> lport   # 0 = ephemeral; EADDRINUSE
    proto.unbind(laddr, lport)            # release an unused bind() reservation
    proto.listen(laddr, lport, backlog, now) -> TcpListener   # takes over a bind()
    proto.connect(laddr, lport, faddr, fport, now, **opts) -> TcpCb   # laddr concrete
        opts: nodelay, keepalive, maxseg, sndbuf, rcvbuf, linger=(on, secs), reuseaddr
    proto.ctlinput(kind, src, dst, inner, mtu=0, now=None)
        kind: "portunreach" (ECONNREFUSED), "unreach", "timxceed", "needfrag", ...
    proto.pcbs() -> listeners and connections (laddr, lport, faddr, fport, state,
                    send_q, recv_q)

``output(src, dst, segment)`` may loop back into ``input`` synchronously; state is
updated before every call to it.  With ``tso_for`` a superframe of whole MSS-sized
segments goes as ``output(src, dst, segment, tso_segsz=mss)`` with its checksum left zero.
Timers may come due at the current time (one ACK per batch): the caller runs
``handle_timer`` after the rest of the input it has at hand.  Upcalls fire after the state change they report;
EV_CLOSED comes with EV_READABLE | EV_WRITABLE (and EV_ERROR when ``cb.error``).
Listener options inherited by accepted connections: ``lst.nodelay``, ``lst.keepalive``,
``lst.maxseg``, ``lst.sndbuf``, ``lst.rcvbuf`` (set them before SYNs arrive).
"""

from __future__ import annotations

import errno
import hashlib
import os
import random
import struct
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from rumpkern.strict import strict_default
from rumpnet.netinet import tcp as _tcp
from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN, TcpParseError, TcpRepr
from rumpnet.netinet.tcp_congctl import CongCtl, congctl_class
from rumpnet.netinet.tcp_fsm import Ev, TcpState
from rumpnet.netinet.tcp_input import apply_syn_options, established, tcp_input_cb
from rumpnet.netinet.tcp_seq import SEQ_GT, SEQ_MASK
from rumpnet.netinet.tcp_timer import TimerHeap
from rumpnet.netinet.tcp_var import (
    EV_CLOSED,
    EV_ERROR,
    EV_READABLE,
    EV_WRITABLE,
    TCPT_KEEP,
    TCPT_NTIMERS,
    TF_PASSIVE,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
    TF_SACK_PERMIT,
    TcpCb,
    TcpParams,
    TcpStats,
    rcvbuf_scale_space,
)

EPHEMERAL_LO = 49152
EPHEMERAL_HI = 65535
_KEY = struct.Struct("!IHIH")
M = SEQ_MASK


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


def _wscale_for(space: int) -> int:
    s = 0
    while s < 14 and (65535 << s) < space:
        s += 1
    return s


class TcpListener:
    """A listening socket's protocol side: the accept queue (NetBSD so_q)."""

    def __init__(self, proto: TcpProtocol, laddr: int, lport: int, backlog: int) -> None:
        self.proto = proto
        self.laddr, self.lport = laddr, lport
        self.faddr = self.fport = 0
        self.state = TcpState.LISTEN
        self.backlog = max(1, backlog)
        self.queue: deque[TcpCb] = deque()
        self.upcall: Callable[[TcpListener, int], None] | None = None
        self.closed = False
        self.send_q = 0
        # Options new connections inherit.
        self.nodelay = False
        self.keepalive = False
        self.maxseg = 0
        self.sndbuf = 0
        self.rcvbuf = 0

    @property
    def recv_q(self) -> int:
        return len(self.queue)

    def __repr__(self) -> str:
        return f"<TcpListener {self.laddr:#x}:{self.lport} q={len(self.queue)}>"

    def set_backlog(self, backlog: int) -> None:
        self.backlog = max(1, backlog)

    def accept(self) -> TcpCb | None:
        if not self.queue:
            return None
        cb = self.queue.popleft()
        cb.listener = None
        return cb

    def pending(self) -> int:
        return len(self.queue)

    def full(self) -> bool:
        return len(self.queue) >= self.backlog

    def close(self, now: float) -> None:
        if self.closed:
            return
        self.closed = True
        self.proto._listener_closed(self, now)
        while self.queue:
            self.queue.popleft().abort(now)

    def notify(self, ev: int) -> None:
        if self.upcall is not None:
            self.upcall(self, ev)


class SynCacheEntry:
    """A half-open passive connection (NetBSD struct syn_cache): a few fields only."""

    __slots__ = ("key", "laddr", "lport", "faddr", "fport", "irs", "iss", "peer_mss",
                 "peer_ws", "sack_ok", "tsval", "ts_offset", "rcv_scale", "ourmss",
                 "listener", "rxt", "deadline", "sent", "bucket", "_hdl", "freed", "proto",
                 "win")
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
    proto: TcpProtocol
    win: int

    def __init__(self) -> None:
        self._hdl: float | None = None
        self.freed = False
        self.rxt = 0
        self.deadline = 0.0

    def next_deadline(self) -> float | None:
        return None if self.freed else self.deadline

    def on_timer(self, now: float) -> None:
        if self.deadline <= now:
            self.proto._sc_timer(self, now)


class _Bind:
    __slots__ = ("laddr", "kind", "owner")

    def __init__(self, laddr: int, kind: str, owner: Any) -> None:
        self.laddr, self.kind, self.owner = laddr, kind, owner


class TcpProtocol:
    """All TCP state of one kernel (sans-IO)."""

    def __init__(self, params: TcpParams, rng: random.Random,
                 output: Callable[..., None],
                 mtu_for: Callable[[int], int] = lambda dst: 1500,
                 stats: TcpStats | None = None,
                 tso_for: Callable[[int], int] | None = None,
                 strict: Callable[[], bool] = strict_default) -> None:
        self.params = params
        self.rng = rng
        self.output = output
        self.mtu_for = mtu_for
        # TSO (docs/PERFORMANCE.md): tso_for(dst) is the most TCP header + payload the
        # out-interface takes in one superframe (its tso_mtu - 40), 0 if it has no TSO.
        # With it, tcp_output sends up to that many bytes of full-sized segments as one
        # segment, calling output(src, dst, segment, tso_segsz=MSS) with the checksum
        # left to the interface (ip_output makes it partial).
        self.tso_for = tso_for
        # strict() says whether an exception out of input propagates (tests: the kernel's
        # strict mode, rumpkern/strict.py) or is only counted (tcps_rcvinternalerr).
        self.strict = strict
        self.stats = stats if stats is not None else TcpStats()
        self._secret = rng.getrandbits(256).to_bytes(32, "big")
        self._sc_salt = rng.getrandbits(32)
        self.conns: dict[tuple[int, int, int, int], TcpCb] = {}
        self.listeners: dict[tuple[int, int], TcpListener] = {}
        self._ports: dict[int, list[_Bind]] = {}
        self._sc: dict[tuple[int, int, int, int], SynCacheEntry] = {}
        self._sc_buckets: dict[int, list[SynCacheEntry]] = {}
        self._timers = TimerHeap()
        self._ca_sec = -1
        self._ca_count = 0
        self.now_hint = 0.0        # latest time seen (for calls that carry no time)

    # ----- timers ------------------------------------------------------------------------
    def timer_push(self, deadline: float, owner: Any) -> None:
        self._timers.push(deadline, owner)

    def timer_entries(self) -> int:
        """Entries in the timer heap (live and not yet purged), for memory tests."""
        return len(self._timers)

    def get_timer(self) -> float | None:
        return self._timers.earliest()

    def handle_timer(self, now: float) -> None:
        if now > self.now_hint:
            self.now_hint = now
        self._timers.run(now, _fire)

    # ----- congestion control, ISNs ------------------------------------------------------
    def new_congctl(self, cb: TcpCb) -> CongCtl:
        return congctl_class(self.params.congctl)(cb)

    def _hash(self, laddr: int, lport: int, faddr: int, fport: int) -> bytes:
        h = hashlib.blake2s(_KEY.pack(laddr, lport, faddr, fport), key=self._secret,
                            digest_size=8)
        return h.digest()

    def isn(self, laddr: int, lport: int, faddr: int, fport: int, now: float) -> int:
        """RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
        M a 4-microsecond clock."""
        f = int.from_bytes(self._hash(laddr, lport, faddr, fport)[:4], "big")
        return (int(now * 250000) + f) & M

    def _ts_offset(self, laddr: int, lport: int, faddr: int, fport: int) -> int:
        return int.from_bytes(self._hash(laddr, lport, faddr, fport)[4:], "big")

    def _ourmss(self, faddr: int, user: int = 0) -> int:
        mss = max(64, min(self.mtu_for(faddr) - 40, 65535 - 40))
        if user:
            mss = min(mss, user)
        return mss

    def _tsomax(self, faddr: int) -> int:
        return self.tso_for(faddr) if self.tso_for is not None else 0

    # ----- bindings ----------------------------------------------------------------------
    def _conflict(self, laddr: int, lport: int, reuseaddr: bool) -> bool:
        for b in self._ports.get(lport, ()):
            if b.laddr == laddr or b.laddr == 0 or laddr == 0:
                if reuseaddr and b.kind == "conn":
                    continue
                if reuseaddr and b.kind == "listen" and b.laddr != laddr:
                    continue
                return True
        return False

    def _add_bind(self, laddr: int, lport: int, kind: str, owner: Any) -> _Bind:
        b = _Bind(laddr, kind, owner)
        self._ports.setdefault(lport, []).append(b)
        return b

    def _del_bind(self, lport: int, owner: Any) -> None:
        lst = self._ports.get(lport)
        if not lst:
            return
        for i, b in enumerate(lst):
            if b.owner is owner:
                del lst[i]
                break
        if not lst:
            del self._ports[lport]

    def _find_reserved(self, laddr: int, lport: int) -> _Bind | None:
        for b in self._ports.get(lport, ()):
            if b.kind == "reserved" and b.laddr in (laddr, 0):
                return b
        return None

    def _ephemeral(self, laddr: int, reuseaddr: bool = False) -> int:
        n = EPHEMERAL_HI - EPHEMERAL_LO + 1
        start = self.rng.randrange(n)
        for i in range(n):
            port = EPHEMERAL_LO + (start + i) % n
            if not self._conflict(laddr, port, reuseaddr):
                return port
        raise _err(errno.EADDRNOTAVAIL)

    def bind(self, laddr: int, lport: int, reuseaddr: bool = False) -> int:
        """Reserve (laddr, lport); lport 0 picks an ephemeral port.  EADDRINUSE."""
        if lport == 0:
            lport = self._ephemeral(laddr, reuseaddr)
        elif self._conflict(laddr, lport, reuseaddr):
            raise _err(errno.EADDRINUSE)
        tok = object()
        self._add_bind(laddr, lport, "reserved", tok)
        return lport

    def unbind(self, laddr: int, lport: int) -> None:
        """Release a reservation made by bind() that was never used (socket closed)."""
        b = self._find_reserved(laddr, lport)
        if b is not None:
            self._del_bind(lport, b.owner)

    # ----- user requests -----------------------------------------------------------------
    def listen(self, laddr: int, lport: int, backlog: int, now: float) -> TcpListener:
        if now > self.now_hint:
            self.now_hint = now
        old = self.listeners.get((laddr, lport))
        if old is not None and not old.closed:
            old.set_backlog(backlog)
            return old
        res = self._find_reserved(laddr, lport)
        if res is None:
            if lport == 0:
                lport = self._ephemeral(laddr)
            elif self._conflict(laddr, lport, False):
                raise _err(errno.EADDRINUSE)
        else:
            self._del_bind(lport, res.owner)
        lst = TcpListener(self, laddr, lport, backlog)
        self._add_bind(laddr, lport, "listen", lst)
        self.listeners[(laddr, lport)] = lst
        return lst

    def connect(self, laddr: int, lport: int, faddr: int, fport: int, now: float,
                **opts: Any) -> TcpCb:
        """Active open: send a SYN.  opts: nodelay, keepalive, maxseg, sndbuf, rcvbuf,
        linger=(onoff, secs), reuseaddr."""
        p = self.params
        if now > self.now_hint:
            self.now_hint = now
        reuse = bool(opts.pop("reuseaddr", False))
        if laddr == 0 or faddr == 0 or fport == 0:
            # The socket layer picks the source address from the route (in_pcbconnect).
            raise _err(errno.EADDRNOTAVAIL)
        res = self._find_reserved(laddr, lport) if lport else None
        if lport == 0:
            lport = self._ephemeral(laddr)
        elif res is None and self._conflict(laddr, lport, reuse):
            raise _err(errno.EADDRINUSE)
        key = (laddr, lport, faddr, fport)
        tw = self.conns.get(key)
        if tw is not None:
            if tw.state == TcpState.TIME_WAIT and reuse:
                self.close_cb(tw, now)
            else:
                raise _err(errno.EADDRINUSE)
        if res is not None:
            self._del_bind(lport, res.owner)
        cb = TcpCb(self, laddr, lport, faddr, fport, now)
        self._apply_opts(cb, opts)
        cb.t_ourmss = self._ourmss(faddr, cb.user_maxseg)
        cb.t_tsomax = self._tsomax(faddr)
        cb.t_maxseg = min(p.mssdflt, cb.t_ourmss)
        if p.rfc1323:
            cb.t_flags |= TF_REQ_SCALE | TF_REQ_TSTMP
            cb.request_r_scale = _wscale_for(rcvbuf_scale_space(p, cb.rcvspace, cb.rcv_auto))
        cb.iss = self.isn(laddr, lport, faddr, fport, now)
        cb.ts_offset = self._ts_offset(laddr, lport, faddr, fport)
        cb.snd_una = cb.snd_nxt = cb.snd_max = cb.snd_recover = cb.iss
        cb.snd_buf_seq = (cb.iss + 1) & M
        cb.transition(Ev.ACTIVE_OPEN)
        self.conns[key] = cb
        self._add_bind(laddr, lport, "conn", cb)
        self.stats.tcps_connattempt += 1
        cb.set_timer(TCPT_KEEP, p.keepinit, now)
        _out.tcp_output(cb, now)
        return cb

    @staticmethod
    def _apply_opts(cb: TcpCb, opts: dict[str, Any]) -> None:
        for k, v in opts.items():
            if k == "nodelay":
                cb.nodelay = bool(v)
            elif k == "keepalive":
                cb.keepalive = bool(v)
            elif k == "maxseg":
                if v:
                    cb.set_maxseg(int(v))
            elif k == "sndbuf":
                if v:
                    cb.set_sndbuf(int(v))
            elif k == "rcvbuf":
                if v:
                    cb.set_rcvbuf(int(v))
            elif k == "linger":
                cb.set_linger(bool(v[0]), int(v[1]))
            else:
                raise TypeError(f"unknown connect option {k!r}")

    def pcbs(self) -> Iterable[TcpCb | TcpListener]:
        return [*self.listeners.values(), *self.conns.values()]

    # ----- teardown ----------------------------------------------------------------------
    def drop(self, cb: TcpCb, err: int, now: float, send_rst: bool = True) -> None:
        """Drop a connection (NetBSD tcp_drop): RST if synchronized, set error, close."""
        if cb.freed:
            return
        if send_rst and cb.state >= TcpState.SYN_RECEIVED:
            _out.send_rst(cb, now)
        if cb.state >= TcpState.SYN_RECEIVED:
            self.stats.tcps_drops += 1
        else:
            self.stats.tcps_conndrops += 1
        if err:
            cb.error = err
        self.close_cb(cb, now)

    def close_cb(self, cb: TcpCb, now: float) -> None:
        """Release a connection (NetBSD tcp_close) and report EV_CLOSED."""
        if cb.freed:
            return
        cb.freed = True
        cb.state = TcpState.CLOSED
        for i in range(TCPT_NTIMERS):
            cb.timers[i] = None
        key = (cb.laddr, cb.lport, cb.faddr, cb.fport)
        if self.conns.get(key) is cb:
            del self.conns[key]
        self._del_bind(cb.lport, cb)
        cb.reass = []
        cb.reass_bytes = 0
        self.stats.tcps_closed += 1
        ev = EV_CLOSED | EV_READABLE | EV_WRITABLE
        if cb.error:
            ev |= EV_ERROR
        cb.notify(ev)

    def free(self, cb: TcpCb, now: float) -> None:
        self.close_cb(cb, now)

    def _listener_closed(self, lst: TcpListener, now: float) -> None:
        if self.listeners.get((lst.laddr, lst.lport)) is lst:
            del self.listeners[(lst.laddr, lst.lport)]
        self._del_bind(lst.lport, lst)
        for sc in [e for e in self._sc.values() if e.listener is lst]:
            self._sc_remove(sc)

    # ----- output helpers ----------------------------------------------------------------
    def respond(self, laddr: int, faddr: int, seg: TcpRepr,
                already_counted: bool = False) -> None:
        """RST in reply to seg (RFC 9293 3.10.7.1); never in reply to a RST."""
        if seg.flags & TH_RST:
            return
        if seg.flags & TH_ACK:
            r = TcpRepr(seg.dport, seg.sport, seg.ack, 0, TH_RST, 0)
        else:
            r = TcpRepr(seg.dport, seg.sport, 0, (seg.seq + seg.seg_len) & M,
                        TH_RST | TH_ACK, 0)
        self.stats.tcps_sndrst += 1
        self.stats.tcps_sndtotal += 1
        self.stats.tcps_sndctrl += 1
        self.output(laddr, faddr, _tcp.emit(r, laddr, faddr))

    def challenge_ack(self, cb: TcpCb, now: float) -> None:
        """RFC 5961 section 7: challenge ACKs, at most challenge_ack_limit per second."""
        sec = int(now)
        if sec != self._ca_sec:
            self._ca_sec = sec
            self._ca_count = 0
        if self._ca_count >= self.params.challenge_ack_limit:
            self.stats.tcps_challenge_ack_limited += 1
            return
        self._ca_count += 1
        self.stats.tcps_challenge_ack += 1
        _out.send_ack(cb, now, seq=cb.snd_nxt)

    # ----- input -------------------------------------------------------------------------
    def input(self, src: int, dst: int, segment: bytes | bytearray | memoryview, now: float,
              csum_ok: bool = False) -> None:
        st = self.stats
        st.tcps_rcvtotal += 1
        if now > self.now_hint:
            self.now_hint = now
        try:
            seg = _tcp.parse(segment, src, dst, csum_ok)
        except TcpParseError as e:
            name = "tcps_" + e.kind
            setattr(st, name, getattr(st, name) + 1)
            return
        try:
            self._input(src, dst, seg, now)
        except Exception:  # noqa: BLE001 - production: never let packet input raise (DESIGN 2)
            st.tcps_rcvinternalerr += 1
            if self.strict():
                raise

    def _input(self, src: int, dst: int, seg: TcpRepr, now: float) -> None:
        key = (dst, seg.dport, src, seg.sport)
        cb = self.conns.get(key)
        if cb is not None:
            if (cb.state == TcpState.TIME_WAIT and seg.flags & (TH_SYN | TH_ACK | TH_RST)
                    == TH_SYN and self._tw_reusable(cb, seg)):
                self.stats.tcps_tw_reuse += 1
                self.close_cb(cb, now)
            else:
                tcp_input_cb(cb, seg, now)
                return
        sc = self._sc.get(key)
        if sc is not None:
            self._sc_input(sc, seg, now)
            return
        lst = self.listeners.get((dst, seg.dport)) or self.listeners.get((0, seg.dport))
        if lst is not None:
            self._listen_input(lst, src, dst, seg, now)
            return
        self.stats.tcps_noport += 1
        self.respond(dst, src, seg)

    @staticmethod
    def _tw_reusable(cb: TcpCb, seg: TcpRepr) -> bool:
        """RFC 6191: a new SYN may reuse a TIME_WAIT 4-tuple if its timestamp (or, without
        timestamps, its ISN) is higher than what the old incarnation used."""
        if cb.t_flags & TF_RCVD_TSTMP and seg.timestamps is not None:
            return SEQ_GT(seg.timestamps[0], cb.ts_recent)
        return SEQ_GT(seg.seq, cb.rcv_nxt)

    # ----- SYN cache ---------------------------------------------------------------------
    def _listen_input(self, lst: TcpListener, src: int, dst: int, seg: TcpRepr,
                      now: float) -> None:
        """RFC 9293 3.10.7.2 (LISTEN), through the SYN cache (NetBSD syn_cache_add)."""
        f = seg.flags
        if f & TH_RST:
            self.stats.tcps_badrst += 1   # RFC 9293 3.10.7.2: a RST to a listener is ignored
            return
        if f & TH_ACK:
            self.respond(dst, src, seg)
            return
        if not f & TH_SYN:
            return
        st = self.stats
        if f & TH_FIN:
            st.tcps_badsyn += 1
            return
        if lst.full():
            st.tcps_listendrop += 1
            return
        p = self.params
        e = SynCacheEntry()
        e.proto = self
        e.key = (dst, seg.dport, src, seg.sport)
        e.laddr, e.lport, e.faddr, e.fport = dst, seg.dport, src, seg.sport
        e.irs = seg.seq
        e.iss = self.isn(dst, seg.dport, src, seg.sport, now)
        e.peer_mss = seg.mss if seg.mss else 536
        e.peer_ws = seg.wscale if (p.rfc1323 and seg.wscale is not None) else None
        e.sack_ok = bool(p.sack and seg.sack_permitted)
        e.tsval = seg.timestamps[0] if (p.rfc1323 and seg.timestamps is not None) else None
        e.ts_offset = self._ts_offset(dst, seg.dport, src, seg.sport)
        rcvspace = lst.rcvbuf or p.recvspace
        scale_space = rcvbuf_scale_space(p, rcvspace, not lst.rcvbuf and bool(p.recvbuf_auto))
        e.rcv_scale = _wscale_for(scale_space) if e.peer_ws is not None else 0
        e.win = min(rcvspace, 65535)
        e.ourmss = self._ourmss(src, lst.maxseg)
        e.listener = lst
        e.sent = now
        self._sc_add(e)
        self._sc_send(e, now)
        e.deadline = now + p.init_rto
        e._hdl = e.deadline
        self.timer_push(e.deadline, e)

    def _sc_add(self, e: SynCacheEntry) -> None:
        p = self.params
        st = self.stats
        b = hash((self._sc_salt, e.key)) % max(1, p.syn_cache_buckets)
        e.bucket = b
        bl = self._sc_buckets.setdefault(b, [])
        if len(bl) >= p.syn_bucket_limit:
            st.tcps_sc_bucketoverflow += 1
            self._sc_remove(bl[0])
            st.tcps_sc_dropped += 1
        elif len(self._sc) >= p.syn_cache_limit:
            st.tcps_sc_overflowed += 1
            self._sc_remove(next(iter(self._sc.values())))
            st.tcps_sc_dropped += 1
        self._sc[e.key] = e
        self._sc_buckets.setdefault(b, []).append(e)
        st.tcps_sc_added += 1
        st.tcps_sc_entries = len(self._sc)

    def _sc_remove(self, e: SynCacheEntry) -> None:
        if e.freed:
            return
        e.freed = True
        if self._sc.get(e.key) is e:
            del self._sc[e.key]
        bl = self._sc_buckets.get(e.bucket)
        if bl is not None:
            try:
                bl.remove(e)
            except ValueError:
                pass
            if not bl:
                del self._sc_buckets[e.bucket]
        self.stats.tcps_sc_entries = len(self._sc)

    def syn_cache_len(self) -> int:
        return len(self._sc)

    def _sc_send(self, e: SynCacheEntry, now: float) -> None:
        r = TcpRepr(e.lport, e.fport, e.iss, (e.irs + 1) & M, TH_SYN | TH_ACK, e.win,
                    mss=e.ourmss)
        if e.peer_ws is not None:
            r.wscale = e.rcv_scale
        if e.sack_ok:
            r.sack_permitted = True
        if e.tsval is not None:
            r.timestamps = ((int(now * 1000) + e.ts_offset) & M, e.tsval)
        self.stats.tcps_sndtotal += 1
        self.stats.tcps_sndctrl += 1
        self.output(e.laddr, e.faddr, _tcp.emit(r, e.laddr, e.faddr))

    def _sc_timer(self, e: SynCacheEntry, now: float) -> None:
        e.rxt += 1
        if e.rxt > self.params.synack_retries:
            self.stats.tcps_sc_timed_out += 1
            self._sc_remove(e)
            return
        self.stats.tcps_sc_retransmitted += 1
        self._sc_send(e, now)
        e.deadline = now + min(self.params.init_rto * (1 << e.rxt), self.params.rtomax)

    def _sc_input(self, e: SynCacheEntry, seg: TcpRepr, now: float) -> None:
        st = self.stats
        f = seg.flags
        if f & TH_RST:
            # RFC 5961 3.2 in spirit: only an exact RST removes the entry.
            if seg.seq == (e.irs + 1) & M:
                st.tcps_sc_reset += 1
                self._sc_remove(e)
            else:
                st.tcps_badrst += 1
            return
        if f & TH_SYN:
            if seg.seq == e.irs and not f & TH_ACK:
                st.tcps_sc_dupesyn += 1
                self._sc_send(e, now)
            return
        if not f & TH_ACK:
            return
        if seg.ack != (e.iss + 1) & M:
            self.respond(e.laddr, e.faddr, seg)
            return
        lst = e.listener
        if lst.closed:
            self._sc_remove(e)
            self.respond(e.laddr, e.faddr, seg)
            return
        if lst.full():
            st.tcps_listendrop += 1      # keep the entry; the peer will retry
            return
        self._sc_remove(e)
        st.tcps_sc_completed += 1
        cb = TcpCb(self, e.laddr, e.lport, e.faddr, e.fport, now)
        if lst.rcvbuf:
            cb.set_rcvbuf(lst.rcvbuf)
        if lst.sndbuf:
            cb.set_sndbuf(lst.sndbuf)
        if lst.maxseg:
            cb.set_maxseg(lst.maxseg)
        cb.nodelay = lst.nodelay
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
        cb.t_tsomax = self._tsomax(e.faddr)
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
        cb.keepalive = lst.keepalive
        established(cb, now)
        self.conns[e.key] = cb
        self._add_bind(cb.laddr, cb.lport, "conn", cb)
        st.tcps_accepts += 1
        cb.listener = lst
        lst.queue.append(cb)
        if seg.payload or f & TH_FIN:
            tcp_input_cb(cb, seg, now)
        lst.notify(EV_READABLE)

    # ----- ICMP ----------------------------------------------------------------------------
    def ctlinput(self, kind: str, src: int, dst: int, inner: bytes | memoryview,
                 mtu: int = 0, now: float | None = None) -> None:
        """ICMP error about a segment we sent (NetBSD tcp_ctlinput / tcp_notify).

        ``inner`` is the quoted IP header plus at least 8 bytes of our TCP header.
        kind (as ip_icmp names them): "portunreach" / "protounreach" (ECONNREFUSED),
        "unreach" / "hostunreach" / "timxceed" (EHOSTUNREACH), "netunreach"
        (ENETUNREACH), "needfrag" (with ``mtu``).  As in NetBSD tcp_notify these are soft
        errors: remembered in ``t_softerror`` (reported if the connection then times
        out), made the socket error only in SYN_SENT after more than 3 retransmissions,
        and host/net unreachables are ignored on an established connection.  ``now`` defaults to the latest time this protocol saw
        (input, timers, connect, listen)."""
        try:
            if len(inner) < 20:
                return
            ihl = (inner[0] & 0x0F) * 4
            if ihl < 20 or len(inner) < ihl + 8:
                return
            laddr, faddr = struct.unpack_from("!II", inner, 12)
            lport, fport, seq = struct.unpack_from("!HHI", inner, ihl)
        except (struct.error, IndexError, TypeError):
            return
        cb = self.conns.get((laddr, lport, faddr, fport))
        if cb is None or cb.freed:
            return
        # RFC 5927 4.1: the quoted sequence number must be in flight.
        if not (((seq - cb.snd_una) & M) < ((cb.snd_max - cb.snd_una) & M)
                or seq == cb.snd_una):
            return
        if now is None:
            now = self.now_hint
        if kind == "needfrag":
            newmss = (mtu - 40) if mtu and mtu > 68 else 536
            if newmss < cb.t_maxseg:
                cb.t_maxseg = max(newmss, 64)
                cb.snd_nxt = cb.snd_una
                _out.tcp_output(cb, now)
            return
        err = _CTLERR.get(kind)
        if err is None:
            return
        if cb.state == TcpState.ESTABLISHED and err in (errno.EHOSTUNREACH,
                                                        errno.ENETUNREACH):
            return
        if cb.state < TcpState.ESTABLISHED and cb.t_rxtshift > 3 and cb.t_softerror:
            cb.error = err
            cb.notify(EV_ERROR)
        else:
            cb.t_softerror = err


# ICMP error kinds -> errno (NetBSD inetctlerrmap).
_CTLERR = {
    "portunreach": errno.ECONNREFUSED,
    "protounreach": errno.ECONNREFUSED,
    "unreach": errno.EHOSTUNREACH,
    "hostunreach": errno.EHOSTUNREACH,
    "timxceed": errno.EHOSTUNREACH,
    "netunreach": errno.ENETUNREACH,
}


def _fire(owner: Any, now: float) -> None:
    owner.on_timer(now)


__all__ = ["TcpProtocol", "TcpListener", "SynCacheEntry"]
