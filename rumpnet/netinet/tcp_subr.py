"""The per-kernel TCP protocol object (NetBSD tcp_subr.c, tcp_usrreq.c; the SYN cache is tcp_syncache).

:class:`TcpProtocol` demultiplexes incoming segments, owns the connection table, the
listeners, the SYN cache (bounded so a SYN flood cannot exhaust memory), the port
bindings and the one timer heap; it generates RFC 6528 ISNs and answers segments that
match nothing with a RST (RFC 9293 3.10.7.1).

Sans-IO contract (what the socket layer uses)::

    proto = TcpProtocol(params, rng, output, mtu_for=lambda dst: 1500, stats=None,
                        tso_for=None,   # tso_for(dst) -> max TSO bytes, 0 = no TSO
                        strict=strict_default)   # strict() -> re-raise internal errors
    proto.input(src, dst, segment, now, csum_ok=False, iptos=0)   # never raises on bad input;
        # an internal error is counted (tcps_rcvinternalerr), re-raised if strict()
        iptos: the TOS octet of the IP header (its ECN field is RFC 3168's)
    proto.get_timer() -> float | None ; proto.handle_timer(now)
    proto.deadline_out = fn               # fn(when) each time a deadline is set earlier
                                          # than its owner had (what a loop timer arms)
    proto.bind(laddr, lport, reuseaddr=False, reuseport=False) -> lport   # 0 = ephemeral
    proto.unbind(laddr, lport)            # release an unused bind() reservation
    proto.listen(laddr, lport, backlog, now) -> TcpListener   # takes over a bind()
    proto.connect(laddr, lport, faddr, fport, now, **opts) -> TcpCb   # laddr concrete
        opts: reuseaddr and tcp_ctloutput.CB_OPTS's keys (nodelay, keepalive, maxseg,
        sndbuf, rcvbuf, linger=(on, secs), keepidle.., ip_tos, ip_ttl, congctl)
    proto.ctlinput(kind, src, dst, inner, mtu=0, now=None) -> bool   # taken?
        kind: "portunreach" (ECONNREFUSED), "hostunreach", "timxceed", "needfrag", ...
    proto.pcbs() -> listeners and connections (laddr, lport, faddr, fport, state,
                    send_q, recv_q)

``output(src, dst, segment)`` may loop back into ``input`` synchronously; state is
updated before every call to it.  With ``tso_for`` a superframe of whole MSS-sized
segments goes as ``output(src, dst, segment, tso_segsz=mss)`` with its checksum left zero.
A segment of an ECN connection that is to be ECN-capable (new data, RFC 3168 6.1) goes as
``output(src, dst, segment, tso_segsz=N, ecn=IPTOS_ECN_ECT0)``: IP puts ``ecn`` in the
ECN field of its TOS octet.
Timers may come due at the current time (one ACK per batch): the caller runs
``handle_timer`` after the rest of the input it has at hand.  Upcalls fire after the state change they report;
EV_CLOSED comes with EV_READABLE | EV_WRITABLE (and EV_ERROR when ``cb.error``).
Listener options inherited by accepted connections: ``lst.nodelay``, ``lst.keepalive``,
``lst.maxseg``, ``lst.sndbuf``, ``lst.rcvbuf`` and ``lst.opts`` (CB_OPTS keys) (set them
before SYNs arrive).
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
from rumpnet.netinet import tcp_ctlinput as _ctl
from rumpnet.netinet import tcp_ecn as _ecn
from rumpnet.netinet import tcp_output as _out
from rumpnet.netinet.ip_var import IPTOS_ECN_MASK
from rumpnet.netinet.tcp import TH_ACK, TH_FIN, TH_RST, TH_SYN, TcpParseError, TcpRepr
from rumpnet.netinet.tcp_congctl import CongCtl, congctl_class
from rumpnet.netinet.tcp_const import (
    EV_CLOSED,
    EV_ERROR,
    EV_READABLE,
    EV_WRITABLE,
    IP_TCP_HDRS,
    TCPT_KEEP,
    TCPT_NTIMERS,
    TF_RCVD_TSTMP,
    TF_REQ_SCALE,
    TF_REQ_TSTMP,
)
from rumpnet.netinet.tcp_ctloutput import CB_OPTS
from rumpnet.netinet.tcp_fsm import Ev, TcpState
from rumpnet.netinet.tcp_input import tcp_input_cb
from rumpnet.netinet.tcp_seq import SEQ_GT, SEQ_MASK
from rumpnet.netinet.tcp_syncache import SynCache, SynCacheEntry
from rumpnet.netinet.tcp_timer import TimerHeap
from rumpnet.netinet.tcp_var import (
    TcpCb,
    TcpParams,
    TcpStats,
    rcvbuf_scale_space,
    wscale_for,
)

EPHEMERAL_LO = 49152
EPHEMERAL_HI = 65535
_KEY = struct.Struct("!IHIH")
_KEY6 = struct.Struct("!16sH16sH")
M = SEQ_MASK


def _err(code: int) -> OSError:
    return OSError(code, os.strerror(code))


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
        self.noopt = False
        self.sndbuf = 0
        self.rcvbuf = 0
        # and the rest (keepalive times, IP_TOS/IP_TTL, congctl): tcp_ctloutput.CB_OPTS keys
        self.opts: dict[str, Any] = {}
        self.shadowed: TcpListener | None = None  # an older SO_REUSEPORT listener


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


class _Bind:
    __slots__ = ("laddr", "kind", "owner", "reuseport")

    def __init__(self, laddr: int, kind: str, owner: Any, reuseport: bool = False) -> None:
        self.laddr, self.kind, self.owner, self.reuseport = laddr, kind, owner, reuseport


class TcpProtocol:
    """All TCP state of one kernel (sans-IO)."""

    def __init__(self, params: TcpParams, rng: random.Random,
                 output: Callable[..., None],
                 mtu_for: Callable[[int], int] = lambda dst: 1500,
                 stats: TcpStats | None = None,
                 tso_for: Callable[[int], int] | None = None,
                 route_gen: Callable[[], int] | None = None,
                 pmtu_update: Callable[[int, int, int], int] | None = None,
                 deadline_out: Callable[[float], None] | None = None,
                 hdrs: int = IP_TCP_HDRS,
                 nud_hint: Callable[[TcpCb, float], None] | None = None,
                 strict: Callable[[], bool] = strict_default) -> None:
        self.params = params
        # IP and base TCP headers: MSS = path MTU - hdrs (40 over IPv4, 60 over IPv6
        # for TCP6_HDRS, RFC 8200 8.3's 1220 bytes at the minimum MTU).
        self.hdrs = hdrs
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
        # Path MTU (tcp_ctlinput.py): route_gen() changes whenever a route, an MTU or an
        # address changes (tcp_output then resizes t_maxseg from mtu_for); pmtu_update(
        # dst, nextmtu, quoted_len) applies a checked "fragmentation needed" to the
        # route (IP's icmp_mtudisc) and returns the path MTU.
        self.route_gen: Callable[[], int] = route_gen if route_gen is not None else _no_route_gen
        self.pmtu_update = pmtu_update
        self.stats = stats if stats is not None else TcpStats()
        self._secret = rng.getrandbits(256).to_bytes(32, "big")
        self.syncache = SynCache(self, rng.getrandbits(32))
        self.conns: dict[tuple[int, int, int, int], TcpCb] = {}
        self.listeners: dict[tuple[int, int], TcpListener] = {}
        self._ports: dict[int, list[_Bind]] = {}
        self._timers = TimerHeap()
        # Deadlines out (sans-IO): deadline_out(when) is told of every deadline set
        # earlier than its owner's entry in the heap (connections, SYN-cache entries,
        # resends), whatever set it: input, a user request, an ICMP error, a timer. A
        # caller with one loop timer arms it from here (and from get_timer() after
        # handle_timer), as NetBSD's callout_reset arms a callout where TCP sets a timer.
        self.deadline_out = deadline_out
        # nud_hint(cb, now): an ACK of new data came (RFC 4861 7.3.1 forward progress;
        # NetBSD's ND6_HINT in tcp_input), for IPv6's neighbour unreachability detection.
        self.nud_hint = nud_hint
        self._ca_sec = -1
        self._ca_count = 0
        self.now_hint = 0.0        # latest time seen (for calls that carry no time)
        # The largest socket buffer (kern.sbmax): the glue binds it to the kernel's.
        self.sb_max: Callable[[], int] = lambda: 4 * 1024 * 1024

    # ----- timers ------------------------------------------------------------------------
    def timer_push(self, deadline: float, owner: Any) -> None:
        self._timers.push(deadline, owner)
        out = self.deadline_out
        if out is not None:
            out(deadline)

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
        if laddr >> 32 or faddr >> 32:   # IPv6 addresses (RFC 6528 for both families)
            key = _KEY6.pack(laddr.to_bytes(16, "big"), lport, faddr.to_bytes(16, "big"), fport)
        else:
            key = _KEY.pack(laddr, lport, faddr, fport)
        return hashlib.blake2s(key, key=self._secret, digest_size=8).digest()

    def isn(self, laddr: int, lport: int, faddr: int, fport: int, now: float) -> int:
        """RFC 6528: ISN = M + F(localip, localport, remoteip, remoteport, secretkey),
        M a 4-microsecond clock."""
        f = int.from_bytes(self._hash(laddr, lport, faddr, fport)[:4], "big")
        return (int(now * 250000) + f) & M

    def _ts_offset(self, laddr: int, lport: int, faddr: int, fport: int) -> int:
        return int.from_bytes(self._hash(laddr, lport, faddr, fport)[4:], "big")

    def _ourmss(self, faddr: int, user: int = 0) -> int:
        mss = max(64, min(self.mtu_for(faddr) - self.hdrs, 65535 - self.hdrs))
        if user:
            mss = min(mss, user)
        return mss

    def _tsomax(self, faddr: int) -> int:
        return self.tso_for(faddr) if self.tso_for is not None else 0

    # ----- bindings ----------------------------------------------------------------------
    def _conflict(self, laddr: int, lport: int, reuseaddr: bool, reuseport: bool = False) -> bool:
        for b in self._ports.get(lport, ()):
            if b.laddr == laddr or b.laddr == 0 or laddr == 0:
                if reuseport and b.reuseport:
                    continue  # SO_REUSEPORT on both: the same address may be bound twice
                if reuseaddr and b.kind == "conn":
                    continue
                if reuseaddr and b.kind == "listen" and b.laddr != laddr:
                    continue
                return True
        return False

    def _add_bind(self, laddr: int, lport: int, kind: str, owner: Any, reuseport: bool = False) -> _Bind:
        b = _Bind(laddr, kind, owner, reuseport)
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

    def bind(self, laddr: int, lport: int, reuseaddr: bool = False, reuseport: bool = False,
             owner: object | None = None) -> int:
        """Reserve (laddr, lport); lport 0 picks an ephemeral port.  EADDRINUSE.
        ``reuseport`` (SO_REUSEPORT): another socket with it may bind the same pair.
        ``owner`` (the socket) is what :meth:`bound_only` finds there."""
        if lport == 0:
            lport = self._ephemeral(laddr, reuseaddr)
        elif self._conflict(laddr, lport, reuseaddr, reuseport):
            raise _err(errno.EADDRINUSE)
        self._add_bind(laddr, lport, "reserved", owner if owner is not None else object(), reuseport)
        return lport

    def bound_only(self, laddr: int, lport: int) -> object | None:
        """The owner of a reservation of (laddr, lport) or (*, lport) that is neither
        listening nor connected: a socket in CLOSED (RFC 9293 3.10.7.1)."""
        b = self._find_reserved(laddr, lport)
        return None if b is None else b.owner

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
        res = self._find_reserved(laddr, lport)
        reuseport = res is not None and res.reuseport
        if old is not None and not old.closed and not reuseport:
            old.set_backlog(backlog)
            return old
        if res is None:
            if lport == 0:
                lport = self._ephemeral(laddr)
            elif self._conflict(laddr, lport, False):
                raise _err(errno.EADDRINUSE)
        else:
            self._del_bind(lport, res.owner)
        lst = TcpListener(self, laddr, lport, backlog)
        self._add_bind(laddr, lport, "listen", lst, reuseport)
        if old is not None and not old.closed:
            # SO_REUSEPORT: the newest listener takes the connections (NetBSD's
            # in_pcblookup_bind finds the last bound); the older one again once it closes.
            lst.shadowed = old
        self.listeners[(laddr, lport)] = lst
        return lst

    def connect(self, laddr: int, lport: int, faddr: int, fport: int, now: float,
                **opts: Any) -> TcpCb:
        """Active open: send a SYN.  opts: reuseaddr and the keys of
        tcp_ctloutput.CB_OPTS (nodelay, keepalive, maxseg, sndbuf, rcvbuf,
        linger=(onoff, secs), keepidle, keepintvl, keepcnt, keepinit, ip_tos, ip_ttl,
        congctl)."""
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
        if p.rfc1323 and not cb.noopt:
            cb.t_flags |= TF_REQ_SCALE | TF_REQ_TSTMP
            cb.request_r_scale = wscale_for(rcvbuf_scale_space(p, cb.rcvspace, cb.rcv_auto, self.sb_max()))
        cb.iss = self.isn(laddr, lport, faddr, fport, now)
        cb.ts_offset = self._ts_offset(laddr, lport, faddr, fport)
        cb.snd_una = cb.snd_nxt = cb.snd_max = cb.snd_recover = cb.iss
        cb.snd_buf_seq = (cb.iss + 1) & M
        cb.transition(Ev.ACTIVE_OPEN)
        self.conns[key] = cb
        self._add_bind(laddr, lport, "conn", cb)
        self.stats.tcps_connattempt += 1
        cb.set_timer(TCPT_KEEP, cb.keep_init(), now)
        _ecn.connect_init(cb)
        _out.tcp_output(cb, now)
        return cb

    @staticmethod
    def _apply_opts(cb: TcpCb, opts: dict[str, Any]) -> None:
        for k, v in opts.items():
            setter = CB_OPTS.get(k)
            if setter is None:
                raise TypeError(f"unknown connect option {k!r}")
            setter(cb, v)

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
        key = (lst.laddr, lst.lport)
        if self.listeners.get(key) is lst:
            prev = lst.shadowed
            while prev is not None and prev.closed:
                prev = prev.shadowed
            if prev is None:
                del self.listeners[key]
            else:
                self.listeners[key] = prev
        self._del_bind(lst.lport, lst)
        self.syncache.listener_closed(lst)

    def syn_cache_entries(self) -> list[SynCacheEntry]:
        """The half-open passive connections (for listings such as sockstat's)."""
        return self.syncache.entries()

    def syn_cache_len(self) -> int:
        return len(self.syncache)

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

    def _challenge_allowed(self, now: float) -> bool:
        """RFC 5961 section 7: at most challenge_ack_limit challenge ACKs per second
        (counted in tcps_challenge_ack, or tcps_challenge_ack_limited when refused)."""
        sec = int(now)
        if sec != self._ca_sec:
            self._ca_sec = sec
            self._ca_count = 0
        if self._ca_count >= self.params.challenge_ack_limit:
            self.stats.tcps_challenge_ack_limited += 1
            return False
        self._ca_count += 1
        self.stats.tcps_challenge_ack += 1
        return True

    def challenge_ack(self, cb: TcpCb, now: float) -> None:
        """RFC 5961 3.2/4.2/5.2: an ACK of what we expect, inviting a legitimate peer to
        send its RST (or ACK) again at the exact sequence number."""
        if self._challenge_allowed(now):
            _out.send_ack(cb, now, seq=cb.snd_nxt)

    # ----- input -------------------------------------------------------------------------
    def input(self, src: int, dst: int, segment: bytes | bytearray | memoryview, now: float,
              csum_ok: bool = False, iptos: int = 0) -> None:
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
        if iptos:
            seg.ip_ecn = iptos & IPTOS_ECN_MASK
        try:
            self._input(src, dst, seg, now)
        except Exception:  # noqa: BLE001 - production: never let packet input raise (DESIGN 2)
            st.tcps_rcvinternalerr += 1
            if self.strict():
                raise

    def _input(self, src: int, dst: int, seg: TcpRepr, now: float) -> None:
        key = (dst, seg.dport, src, seg.sport)
        cb = self.conns.get(key)
        if (seg.flags & (TH_SYN | TH_FIN) == TH_SYN | TH_FIN and self.params.drop_synfin
                and (cb is None or cb.state < TcpState.ESTABLISHED)):
            # net.inet.tcp.drop_synfin: where a SYN would open or synchronize a
            # connection (LISTEN, SYN-SENT, SYN-RECEIVED), SYN+FIN is dropped. In a
            # synchronized state it is a SYN like any other, answered with RFC 5961
            # 4.2's challenge ACK (as the FreeBSD suite's STANDARD branch expects).
            self.stats.tcps_badsyn += 1
            return
        if cb is not None:
            if (cb.state == TcpState.TIME_WAIT and seg.flags & (TH_SYN | TH_ACK | TH_RST)
                    == TH_SYN and self._tw_reusable(cb, seg)):
                self.stats.tcps_tw_reuse += 1
                self.close_cb(cb, now)
            else:
                tcp_input_cb(cb, seg, now)
                return
        sc = self.syncache.get(key)
        if sc is not None:
            self.syncache.input(sc, seg, now)
            return
        lst = self.listeners.get((dst, seg.dport)) or self.listeners.get((0, seg.dport))
        if lst is not None:
            self.syncache.listen_input(lst, src, dst, seg, now)
            return
        self.stats.tcps_noport += 1
        self.respond(dst, src, seg)

    @staticmethod
    def _tw_reusable(cb: TcpCb, seg: TcpRepr) -> bool:
        """A SYN may open a new incarnation of a 4-tuple in TIME_WAIT: with timestamps,
        if its timestamp is higher than the old incarnation's (RFC 6191 2, RFC 9293
        3.10.7.4); without, if it starts beyond the receive window and above RCV.NXT
        (4.4BSD's and NetBSD's tcp_input, "If a new connection request is received while
        in TIME_WAIT"; RFC 1122 4.2.2.13 MAY). A SYN inside the window is a SYN in a
        synchronized state (RFC 5961 4.2). The window is tcp_input's: the buffer space,
        never less than what we advertised."""
        if cb.t_flags & TF_RCVD_TSTMP and seg.timestamps is not None:
            return SEQ_GT(seg.timestamps[0], cb.ts_recent)
        beyond = (seg.seq - cb.rcv_nxt) & SEQ_MASK
        return 0 < beyond < 0x80000000 and beyond >= max(cb.rcv_space(), cb.rcv_wnd)

    # ----- ICMP and path MTU (tcp_ctlinput.py) -----------------------------------------------
    def ctlinput(self, kind: str, src: int, dst: int, inner: bytes | memoryview,
                 mtu: int = 0, now: float | None = None) -> bool:
        """ICMP error about a segment we sent (NetBSD tcp_ctlinput): see
        :mod:`rumpnet.netinet.tcp_ctlinput`. ``inner`` is the quoted IP header plus at
        least 8 bytes of our TCP header; kind as ip_icmp names them ("portunreach",
        "needfrag" with ``mtu``, ...). True if it was about one of our connections, with
        a quoted sequence number in flight. ``now`` defaults to the latest time this
        protocol saw (input, timers, connect, listen)."""
        return _ctl.tcp_ctlinput(self, kind, inner, mtu, self.now_hint if now is None else now)

    def pmtu_sync(self, cb: TcpCb) -> bool:
        """``cb.t_maxseg`` from the route's path MTU now (tcp_output does this whenever
        the route table changed). True if it shrank."""
        return _ctl.tcp_pmtu_sync(cb)

    def emsgsize(self, src: int, dst: int, segment: bytes | bytearray | memoryview, now: float) -> None:
        """IP refused ``segment`` as bigger than the path MTU: resize, resend later."""
        _ctl.tcp_emsgsize(self, src, dst, segment, now)


def _no_route_gen() -> int:
    return 0


def _fire(owner: Any, now: float) -> None:
    owner.on_timer(now)


__all__ = ["TcpProtocol", "TcpListener", "SynCacheEntry"]  # SynCacheEntry: tcp_syncache
