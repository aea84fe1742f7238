"""TCP user requests (NetBSD's ``tcp_usrreq.c``): stream sockets over the sans-IO TCP.

This is the glue between the socket layer (sleeping, errno, options, poll) and
``TcpProtocol``/``TcpCb`` (state machine, timers as deadlines). TCP's deadlines arm the
inet domain's one loop timer (``Inet.callout``, in_proto), re-armed in one place,
``InetCallout.deadline``, which TCP calls whenever a deadline moves earlier
(``TcpProtocol.deadline_out``), whether a user request, input, an ICMP error or a timer
set it; after the timer fires it is armed at the next deadline of the domain's cores.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.ifnet import M_CSUM_TCPv4
from rumpnet.net_kernel import netinet
from rumpnet.netinet.in_addr import INADDR_ANY, ntoa, sockaddr_in
from rumpnet.netinet.in_pcb import ip_ttl_tos_get, ip_ttl_tos_set
from rumpnet.netinet.ip_var import IPPROTO_TCP, IPTOS_ECN_MASK
from rumpnet.netinet.tcp_const import (
    EV_CLOSED,
    EV_CONNECTED,
    EV_ERROR,
    EV_READABLE,
    EV_WRITABLE,
)
from rumpnet.netinet.tcp_ctloutput import socket_opts, tcp_getsockopt, tcp_setsockopt
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.netinet.tcp_subr import TcpListener, TcpProtocol
from rumpnet.netinet.tcp_var import (
    PARAM_CHOICES,
    PARAM_MAX,
    PARAM_PATHS,
    TcpCb,
    TcpParams,
    TcpStats,
)
from rumpnet.uipc_socket import (
    MSG_DONTWAIT,
    MSG_KNOWN,
    MSG_OOB,
    MSG_PEEK,
    MSG_WAITALL,
    POLLERR,
    POLLHUP,
    POLLIN_SET,
    POLLOUT_SET,
    Socket,
)

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel

TCPCTL_STATS = 30
_PORTS = struct.Struct("!HH")
TH_SYN = 0x02
TH_ACK = 0x10
TH_RST = 0x04
SO_KEEPALIVE = pysocket.SO_KEEPALIVE
SO_REUSEPORT = getattr(pysocket, "SO_REUSEPORT", 15)
# What a listener hands its connections beyond its nodelay/keepalive/maxseg/bufs fields.
LISTENER_OPTS = ("keepidle", "keepintvl", "keepcnt", "keepinit", "ip_tos", "ip_ttl", "congctl")


class Tcp:
    """Per-kernel TCP glue: ``k.inet.tcp``."""

    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        inet = netinet(kernel)
        self.inet = inet
        self.params = TcpParams()
        self.stats = TcpStats()
        routes = inet.routes
        self.proto = TcpProtocol(self.params, kernel.rng, self._output, self._mtu_for, self.stats,
                                 tso_for=self._tso_for, route_gen=lambda: routes.generation,
                                 pmtu_update=self._pmtu_update, deadline_out=inet.callout.deadline,
                                 strict=inet.strict)
        self.proto.sb_max = lambda: kernel.sb_max
        # TCP's deadlines arm the inet domain's one timer (Inet.callout), which runs
        # proto.handle_timer(now) when they are due.
        inet.callout.add(self.proto)
        self.output_drops = 0
        # Some socket set IP_TOS or IP_TTL: segments are matched to their connection (or
        # listener, for a SYN-ACK) to carry them (_tos_ttl).
        self.ipopts_used = False
        self.tso_superframes = 0  # superframes TCP built and handed to IP
        self.tso_segments = 0  # the wire segments they stand for

    # -- TCP -> IP ---------------------------------------------------------------------
    def _tso_for(self, dst: int) -> int:
        """The most TCP payload and option bytes per superframe toward ``dst`` (IP's
        answer, :meth:`IpOutput.tso_max`; ``net.inet.tcp.gso`` allows them toward
        interfaces without TSO, which IP then cuts)."""
        return self.inet.output.tso_max(dst, bool(self.params.gso))

    def _output(self, src: int, dst: int, segment: bytes, tso_segsz: int = 0, ecn: int = 0) -> None:
        if tso_segsz:
            # A superframe (tcp_output built it to t_tsomax): IP decides how it leaves.
            self.tso_superframes += 1
            self.tso_segments += -(-(len(segment) - ((segment[12] >> 4) << 2)) // tso_segsz)
        self._ip_output(src, dst, segment, tso_segsz, ecn)

    def _ip_output(self, src: int, dst: int, segment: bytes | bytearray, tso_segsz: int = 0,
                   ecn: int = 0) -> None:
        """``ecn``: the ECN codepoint TCP chose (RFC 3168 6.1). The ECN field is TCP's: it
        replaces the ECN bits of the socket's IP_TOS, whose DSCP bits stay (Linux and
        FreeBSD mask IP_TOS for TCP alike), so that no segment is ECT or CE by IP_TOS."""
        try:
            tos_ttl = self._tos_ttl(src, dst, segment) if self.ipopts_used else None
            if tos_ttl is not None:
                tos = tos_ttl[0] & ~IPTOS_ECN_MASK | ecn
                self.inet.output.output(src, dst, IPPROTO_TCP, segment, tos=tos, ttl=tos_ttl[1],
                                        tso_segsz=tso_segsz)
                return
            self.inet.output.output_cached(src, dst, IPPROTO_TCP, segment, tso_segsz, ecn)
        except OSError as e:
            # No route / host down: the segment is lost like one dropped on the wire;
            # TCP's retransmission timer deals with it (tcp_output ignores ENOBUFS too).
            self.output_drops += 1
            if e.errno == errno.EMSGSIZE:
                # Bigger than the path MTU (DF): built before the route's MTU went down.
                self.proto.emsgsize(src, dst, segment, self.inet.now())

    def _tos_ttl(self, src: int, dst: int, seg: bytes | bytearray) -> tuple[int, int | None] | None:
        """IP_TOS and IP_TTL for a segment: its connection's, for a SYN-ACK its
        listener's, for a RST from a socket that is only bound (CLOSED) that socket's
        (FreeBSD's tcp_respond takes them from the socket's inpcb); None when they are
        the defaults."""
        sport, dport = _PORTS.unpack_from(seg)
        proto = self.proto
        cb = proto.conns.get((src, sport, dst, dport))
        if cb is not None:
            tos, ttl = cb.ip_tos, cb.ip_ttl
        elif seg[13] & (TH_SYN | TH_ACK) == TH_SYN | TH_ACK:
            lst = proto.listeners.get((src, sport)) or proto.listeners.get((0, sport))
            if lst is None:
                return None
            tos, ttl = lst.opts.get("ip_tos", 0), lst.opts.get("ip_ttl")
        elif seg[13] & TH_RST and isinstance(so := proto.bound_only(src, sport), TcpSocket):
            tos, ttl = so.tos, so.ttl
        else:
            return None
        return (tos, ttl) if tos or ttl is not None else None

    def _pmtu_update(self, dst: int, mtu: int, quoted_len: int) -> int:
        """A "fragmentation needed" TCP vouched for: IP's icmp_mtudisc, at the domain's
        clock (the route's learned MTU ages from now)."""
        return self.inet.icmp.mtudisc(dst, mtu, quoted_len, self.inet.now())

    def _mtu_for(self, dst: int) -> int:
        rt = self.inet.routes.lookup(dst)
        return rt.path_mtu if rt is not None else 1500

    # -- IP -> TCP ---------------------------------------------------------------------
    def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int) -> None:
        inet = self.inet
        if ifp.rx_mcast or src == 0 or inet.is_bcast_or_mcast(dst) or inet.is_bcast_or_mcast(src):
            # RFC 1122 4.2.3.10 and 3.2.1.3: TCP has no broadcast or multicast; such a
            # segment (or one from such a source) is dropped silently -- no RST, no
            # SYN-ACK with the broadcast address as its source (NetBSD's tcp_input).
            self.stats.tcps_rcvbcast += 1
            return
        # The driver checked the checksum, or the host left it partial (offloads).
        self.proto.input(src, dst, pkt[hlen:], self.inet.now(),
                         csum_ok=bool(ifp.rx_csum_flags & M_CSUM_TCPv4), iptos=pkt[1])

    def ctlinput(self, kind: str, src: int, dst: int, inner: bytes, mtu: int) -> bool:
        return self.proto.ctlinput(kind, src, dst, inner, mtu, self.inet.now())

    def pcbs(self) -> list[Any]:
        return list(self.proto.pcbs())


class TcpSocket(Socket):
    so_type = pysocket.SOCK_STREAM

    def __init__(self, kernel: NetKernel, proto: int, cb: TcpCb | None = None) -> None:
        super().__init__(kernel, proto)
        self.tcp: Tcp = self.glue(kernel)
        self.cb: TcpCb | None = None
        self.listener: TcpListener | None = None
        self.laddr = INADDR_ANY
        self.lport = 0
        self.bound = False
        self.nodelay = False
        self.maxseg = 0
        self.noopt = False
        # TCP_KEEP* as set (seconds, count; 0: the sysctl's when used, as FreeBSD's
        # TP_KEEPIDLE), IP_TOS/IP_TTL, TCP_CONGESTION (None: the sysctl's).
        p = self.tcp.params
        self.keepidle = self.keepintvl = self.keepcnt = self.keepinit = 0
        self.tos = 0
        self.ttl: int | None = None
        self.congctl: str | None = None
        self._err_seen = 0
        self.rcv_hiwat = p.recvspace
        self.snd_hiwat = p.sendspace
        if cb is not None:
            self._adopt(cb)

    def _now(self) -> float:
        return self.tcp.inet.now()

    # -- the address family (Tcp6Socket, rumpnet/netinet6/tcp6_usrreq.py, overrides) -----
    def glue(self, kernel: NetKernel) -> Tcp:
        """The per-kernel TCP glue of this socket's family."""
        return tcp_of(kernel)

    def parse_addr(self, addr: Any) -> tuple[int, int]:
        """A socket address: (address, port), EINVAL when malformed."""
        return sockaddr_in(addr)

    def name(self, addr: int, port: int) -> Any:
        """(address, port) as the socket module writes this family's addresses."""
        return (ntoa(addr), port)

    def check_local(self, laddr: int) -> None:
        """bind(2): EADDRNOTAVAIL unless the wildcard or one of our addresses."""
        if laddr != INADDR_ANY and laddr not in self.tcp.inet.local_addrs:
            raise kerr(errno.EADDRNOTAVAIL)

    def route_peer(self, faddr: int) -> tuple[int, int]:
        """connect(2): the peer (the wildcard meaning ourselves) and, for an unbound
        socket, the source toward it (in_pcbconnect); ENETUNREACH for broadcast or
        multicast, the route's errno without one."""
        inet = self.tcp.inet
        if faddr == INADDR_ANY:
            faddr = inet.primary_addr()
        if faddr == 0xFFFFFFFF or faddr in inet.bcast_addrs or (faddr >> 28) == 0xE:
            raise kerr(errno.ENETUNREACH)
        laddr = self.laddr
        if laddr == INADDR_ANY:
            laddr = inet.output.source_for(faddr)
        return faddr, laddr

    def _adopt(self, cb: TcpCb) -> None:
        self.cb = cb
        self.laddr, self.lport = cb.laddr, cb.lport
        self.bound = True
        cb.upcall = self._upcall

    def _upcall(self, cb: Any, ev: int) -> None:
        if ev & (EV_READABLE | EV_ERROR | EV_CLOSED | EV_CONNECTED):
            self.sorwakeup()
        if ev & (EV_WRITABLE | EV_CONNECTED | EV_ERROR | EV_CLOSED):
            self.sowwakeup()

    def _listen_upcall(self, lst: Any, ev: int) -> None:
        self.sorwakeup()

    def _pending_error(self) -> int:
        """so_error, or the connection's error the first time it is asked for."""
        if self.so_error:
            return self.take_error()
        cb = self.cb
        if cb is not None and cb.error and cb.error != self._err_seen:
            self._err_seen = cb.error
            return int(cb.error)
        return 0

    def take_error(self) -> int:
        err, self.so_error = self.so_error, 0
        if err:
            return err
        cb = self.cb
        if cb is not None and cb.error and cb.error != self._err_seen:
            self._err_seen = cb.error
            return int(cb.error)
        return 0

    # -- binding ------------------------------------------------------------------------
    def bind(self, addr: Any) -> None:
        laddr, lport = self.parse_addr(addr)
        if self.bound or self.cb is not None or self.listener is not None:
            raise kerr(errno.EINVAL)
        self.check_local(laddr)
        reuse = pysocket.SO_REUSEADDR in self.so_options
        self.lport = self.tcp.proto.bind(laddr, lport, reuse, SO_REUSEPORT in self.so_options, owner=self)
        self.laddr = laddr
        self.bound = True

    def listen(self, backlog: int) -> None:
        if self.cb is not None:
            raise kerr(errno.EINVAL)
        backlog = max(0, min(int(backlog), 4096))
        if self.listener is not None:
            self.listener.set_backlog(backlog)
            return
        if not self.bound:
            self.lport = self.tcp.proto.bind(INADDR_ANY, 0, False)
            self.bound = True
        lst = self.tcp.proto.listen(self.laddr, self.lport, backlog, self._now())
        lst.upcall = self._listen_upcall
        self.listener = lst
        self._sync_listener()

    def _sync_listener(self) -> None:
        # Fix: the listener's options were never handed to TcpListener, so accepted
        # connections ignored SO_RCVBUF/SO_SNDBUF (window, wscale), TCP_MAXSEG,
        # TCP_NODELAY and SO_KEEPALIVE (reported 1 by getsockopt, but no probes were
        # sent). BSD's sonewconn copies them from the listening socket.
        lst = self.listener
        if lst is None:
            return
        # Sizes the user set (0: TCP's default, autosized).
        lst.rcvbuf = 0 if self.rcv_auto else self.rcv_hiwat
        lst.sndbuf = 0 if self.snd_auto else self.snd_hiwat
        lst.maxseg = self.maxseg
        lst.nodelay = self.nodelay
        lst.noopt = self.noopt
        lst.keepalive = SO_KEEPALIVE in self.so_options
        opts = socket_opts(self)
        lst.opts = {k: opts[k] for k in LISTENER_OPTS}

    def is_listening(self) -> bool:
        return self.listener is not None

    def accept(self, ctx: SyscallCtx) -> tuple[Socket, Any]:
        lst = self.listener
        if lst is None:
            raise kerr(errno.EINVAL)
        cb = self.next_connection(lst)
        if cb is None:
            if self.closed:
                raise kerr(errno.ECONNABORTED)
            raise self.sleep_rcv(ctx)
        nso = type(self)(self.kernel, self.protocol, cb)
        nso.so_options = set(self.so_options)
        nso.nbio = self.nbio  # BSD: the new socket inherits the listener's file flags
        nso.rcvtimeo, nso.sndtimeo = self.rcvtimeo, self.sndtimeo
        nso.nodelay = self.nodelay
        cb.nodelay = self.nodelay or cb.nodelay
        # Fix: also inherit buffer sizes, low water marks, SO_LINGER and TCP_MAXSEG
        # (sonewconn), so getsockopt on the accepted socket tells the truth.
        nso.rcv_hiwat, nso.snd_hiwat = self.rcv_hiwat, self.snd_hiwat
        nso.rcv_auto, nso.snd_auto = self.rcv_auto, self.snd_auto
        nso.rcv_lowat, nso.snd_lowat = self.rcv_lowat, self.snd_lowat
        nso.maxseg = self.maxseg
        for name in ("keepidle", "keepintvl", "keepcnt", "keepinit", "tos", "ttl", "congctl"):
            setattr(nso, name, getattr(self, name))
        nso.linger = self.linger
        nso.linger_changed()
        cb.keepalive = SO_KEEPALIVE in nso.so_options
        return nso, nso.name(cb.faddr, cb.fport)

    def next_connection(self, lst: TcpListener) -> TcpCb | None:
        """The next connection accept(2) hands out (a dual-stack Tcp6Socket has two
        listeners)."""
        return lst.accept()

    # -- connecting -----------------------------------------------------------------------
    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        if ctx.data is None:
            if self.listener is not None:
                raise kerr(errno.EOPNOTSUPP)
            cb = self.cb
            if cb is not None:
                if cb.state == TcpState.SYN_SENT:
                    raise kerr(errno.EALREADY)
                if cb.state >= TcpState.ESTABLISHED or cb.state == TcpState.SYN_RECEIVED:
                    raise kerr(errno.EISCONN)
                raise kerr(errno.EINVAL)
            faddr, fport = self.parse_addr(addr)
            if fport == 0:
                raise kerr(errno.EADDRNOTAVAIL)
            faddr, laddr = self.route_peer(faddr)
            opts: dict[str, Any] = {"nodelay": self.nodelay,
                                    "keepalive": SO_KEEPALIVE in self.so_options,
                                    "reuseaddr": pysocket.SO_REUSEADDR in self.so_options,
                                    # sizes the user set (0: TCP's default, autosized)
                                    "sndbuf": 0 if self.snd_auto else self.snd_hiwat,
                                    "rcvbuf": 0 if self.rcv_auto else self.rcv_hiwat,
                                    "linger": (bool(self.linger[0]), self.linger[1])}
            if self.maxseg:
                opts["maxseg"] = self.maxseg
            if self.noopt:
                opts["noopt"] = True
            opts = socket_opts(self)
            opts["reuseaddr"] = pysocket.SO_REUSEADDR in self.so_options
            lport = self.lport if self.bound else 0
            cb = self.tcp.proto.connect(laddr, lport, faddr, fport, self._now(), **opts)
            self._adopt(cb)
            ctx.data = "connecting"
            if self.nbio:
                raise kerr(errno.EINPROGRESS)
        cb = self.cb
        assert cb is not None
        if cb.state >= TcpState.ESTABLISHED:
            return
        err = self._pending_error()
        if err or cb.state == TcpState.CLOSED:
            raise kerr(err or errno.ECONNREFUSED)
        raise self.sleep_snd(ctx)

    def is_connected(self) -> bool:
        cb = self.cb
        return cb is not None and cb.state >= TcpState.ESTABLISHED

    # -- data -----------------------------------------------------------------------------
    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        if flags & ~MSG_KNOWN or flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        cb = self.cb
        if cb is None:
            raise kerr(errno.EPIPE if self.cantsendmore else errno.ENOTCONN)
        if addr is not None and cb.state >= TcpState.SYN_SENT:
            raise kerr(errno.EISCONN)
        if self.cantsendmore:
            raise kerr(errno.EPIPE)
        err = self._pending_error()
        if err:
            if ctx.progress:
                return ctx.progress
            raise kerr(err)
        if cb.state < TcpState.ESTABLISHED and cb.state != TcpState.CLOSED:
            if cb.state in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
                raise self.sleep_snd(ctx, flags)
        if cb.state == TcpState.CLOSED or cb.state > TcpState.CLOSE_WAIT and cb.state != TcpState.CLOSE_WAIT:
            if cb.state not in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
                raise kerr(errno.EPIPE)
        total = len(data)
        if total == 0:
            return 0
        view = data if isinstance(data, memoryview) else memoryview(data)
        progress = ctx.progress
        while progress < total:
            n = cb.send(view[progress:], self._now())
            if n <= 0:
                break
            progress += n
        ctx.progress = progress
        if progress >= total:
            return total
        if self.nbio or flags & MSG_DONTWAIT:
            if progress:
                return progress
            raise kerr(errno.EWOULDBLOCK)
        if ctx.timed_out:
            if progress:
                return progress
            raise kerr(errno.EWOULDBLOCK)
        raise self.sleep_snd(ctx, flags)

    def recv(self, ctx: SyscallCtx, n: int, flags: int) -> tuple[bytes, Any]:
        if flags & ~MSG_KNOWN or flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP if flags & MSG_OOB else errno.EOPNOTSUPP)
        if n < 0:
            raise kerr(errno.EINVAL)
        cb = self.cb
        if cb is None:
            raise kerr(errno.ENOTCONN)
        if n == 0:
            return b"", None
        peek = bool(flags & MSG_PEEK)
        waitall = bool(flags & MSG_WAITALL) and not peek
        acc: bytearray | None = ctx.data if isinstance(ctx.data, bytearray) else None
        have = len(acc) if acc is not None else 0
        avail = cb.readable_bytes()
        if not self.cantrcvmore and avail and (
                avail >= min(n - have, self.rcv_lowat) or self.nbio or flags & MSG_DONTWAIT or ctx.timed_out
                or cb.fin_rcvd or cb.error or cb.state == TcpState.CLOSED):
            # A blocking receive waits for SO_RCVLOWAT bytes (or all it asked for), unless
            # the connection ends (NetBSD's soreceive).
            chunk = cb.recv(n - have, self._now(), peek=peek)
            if not waitall:
                return chunk, None
            if acc is None:
                acc = ctx.data = bytearray()
            acc += chunk
            have = len(acc)
            if have >= n:
                return bytes(acc), None
        if have and (cb.at_eof or cb.error or self.cantrcvmore or ctx.timed_out):
            return bytes(acc or b""), None
        err = self._pending_error()
        if err:
            raise kerr(err)
        if cb.at_eof or self.cantrcvmore or cb.state == TcpState.CLOSED:
            return b"", None
        if cb.state < TcpState.ESTABLISHED and cb.state not in (TcpState.SYN_SENT, TcpState.SYN_RECEIVED):
            raise kerr(errno.ENOTCONN)
        if have and (self.nbio or flags & MSG_DONTWAIT):
            return bytes(acc or b""), None
        raise self.sleep_rcv(ctx, flags)

    def nread(self) -> int:
        cb = self.cb
        return cb.readable_bytes() if cb is not None else 0

    def shutdown(self, how: int) -> None:
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise kerr(errno.EINVAL)
        cb = self.cb
        if cb is None or cb.state < TcpState.ESTABLISHED and cb.state != TcpState.SYN_SENT:
            raise kerr(errno.ENOTCONN)
        now = self._now()
        if how in (pysocket.SHUT_RD, pysocket.SHUT_RDWR):
            self.cantrcvmore = True
            cb.shutdown_read(now)
        if how in (pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            if not self.cantsendmore:
                self.cantsendmore = True
                cb.shutdown_write(now)
        self.wakeup_all()

    def close(self) -> None:
        if self.closed:
            return
        now = self._now()
        if self.listener is not None:
            self.listener.close(now)
            self.listener = None
        elif self.cb is not None:
            cb = self.cb
            if not (self.linger[0] and self.linger[1] > 0):
                # (a lingering close keeps the upcall: sys_close sleeps on so_snd until
                # the peer has acknowledged everything, see linger_pending)
                cb.upcall = None
            if self.linger[0] and self.linger[1] == 0:
                cb.abort(now)  # SO_LINGER with zero timeout: RST (RFC 9293 3.10.4 ABORT)
            else:
                cb.close(now)
        elif self.bound:
            self.tcp.proto.unbind(self.laddr, self.lport)
        super().close()

    def linger_pending(self) -> bool:
        if not (self.linger[0] and self.linger[1] > 0) or self.listener is not None:
            return False
        cb = self.cb
        if cb is None or cb.freed:
            return False
        # NetBSD: soisdisconnected() when our FIN is acknowledged (FIN_WAIT_2, TIME_WAIT)
        # or the connection is gone.
        return cb.state not in (TcpState.FIN_WAIT_2, TcpState.TIME_WAIT, TcpState.CLOSED)

    # -- names ------------------------------------------------------------------------------
    def getsockname(self) -> Any:
        cb = self.cb
        if cb is not None:
            return self.name(cb.laddr, cb.lport)
        return self.name(self.laddr, self.lport)

    def getpeername(self) -> Any:
        cb = self.cb
        if cb is None or cb.state < TcpState.SYN_RECEIVED and cb.state != TcpState.SYN_SENT:
            raise kerr(errno.ENOTCONN)
        if cb.state == TcpState.SYN_SENT or cb.state == TcpState.CLOSED:
            raise kerr(errno.ENOTCONN)
        return self.name(cb.faddr, cb.fport)

    # -- readiness ---------------------------------------------------------------------------
    def poll_events(self) -> int:
        if self.listener is not None:
            return POLLIN_SET if self.listener.pending() else 0
        cb = self.cb
        if cb is None:
            return POLLOUT_SET | POLLHUP
        ev = 0
        if (cb.readable_bytes() >= self.rcv_lowat or cb.at_eof or cb.fin_rcvd or cb.error or self.cantrcvmore
                or cb.state == TcpState.CLOSED):
            ev |= POLLIN_SET  # NetBSD's soreadable: SO_RCVLOWAT bytes, or the end
        if cb.state >= TcpState.ESTABLISHED and not self.cantsendmore:
            if cb.state in (TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
                if cb.send_space() >= min(self.snd_lowat, cb.send_space() + 1):
                    ev |= POLLOUT_SET
            elif cb.error:
                ev |= POLLOUT_SET
        if cb.error:
            ev |= POLLERR | POLLOUT_SET
        if cb.state == TcpState.CLOSED or (cb.at_eof and self.cantsendmore):
            ev |= POLLHUP
        return ev

    # -- options -----------------------------------------------------------------------------
    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        super().setsockopt(level, opt, value)
        self._sync_listener()
        if self.cb is not None:
            if level == pysocket.SOL_SOCKET and opt == SO_KEEPALIVE:
                self.cb.keepalive = SO_KEEPALIVE in self.so_options

    def buffer_size(self, rcv: bool) -> int:
        """The connection's buffers, which TCP resizes (rounded to whole segments at
        ESTABLISHED, grown by autosizing)."""
        cb = self.cb
        if cb is None:
            return super().buffer_size(rcv)
        return cb.rcvspace if rcv else cb.sndspace

    def sb_resized(self) -> None:
        cb = self.cb
        if cb is not None:
            if not self.snd_auto:
                cb.set_sndbuf(self.snd_hiwat)
            if not self.rcv_auto:
                cb.set_rcvbuf(self.rcv_hiwat)

    def linger_changed(self) -> None:
        if self.cb is not None:
            self.cb.set_linger(bool(self.linger[0]), self.linger[1])

    def proto_setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level == pysocket.IPPROTO_TCP:
            tcp_setsockopt(self, opt, value)
        elif level == pysocket.IPPROTO_IP and ip_ttl_tos_set(self, opt, value):
            self.ip_opts_changed()
        else:
            raise kerr(errno.ENOPROTOOPT)

    def ip_opts_changed(self) -> None:
        """IP_TOS/IP_TTL (IPV6_TCLASS/IPV6_UNICAST_HOPS) go into the connection's
        segments (Tcp._ip_output)."""
        self.tcp.ipopts_used = True
        if self.cb is not None:
            self.cb.ip_tos, self.cb.ip_ttl = self.tos, self.ttl

    def proto_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        if level == pysocket.IPPROTO_TCP:
            return tcp_getsockopt(self, opt, buflen)
        v = ip_ttl_tos_get(self, opt) if level == pysocket.IPPROTO_IP else None
        if v is None:
            raise kerr(errno.ENOPROTOOPT)
        return v


MS_NODES = ("rtomin", "rtomax", "init_rto")


def _float_getter(obj: Any, name: str, scale: int) -> Any:
    return lambda: int(round(getattr(obj, name) * scale))


def _float_setter(obj: Any, name: str, scale: int) -> Any:
    return lambda v: setattr(obj, name, float(v) / scale)


def tcp_of(k: NetKernel) -> Tcp:
    """The kernel's TCP glue (EPROTONOSUPPORT where TCP is not attached)."""
    tcp = netinet(k).tcp
    if tcp is None:
        raise kerr(errno.EPROTONOSUPPORT)
    return tcp


def tcp_attach(k: NetKernel) -> None:
    """Add TCP to a kernel's inet domain (the protocol switch entries and sysctl)."""
    inet = netinet(k)
    tcp = Tcp(k)
    inet.tcp = tcp
    inet.inetsw[IPPROTO_TCP] = tcp.input
    inet.ctlinputs[IPPROTO_TCP] = tcp.ctlinput
    inet.socket_types[(pysocket.SOCK_STREAM, 0)] = TcpSocket
    inet.socket_types[(pysocket.SOCK_STREAM, IPPROTO_TCP)] = TcpSocket
    t = k.sysctl_tree
    t.add_node("net.inet.tcp", num=IPPROTO_TCP)
    params = tcp.params
    for name in params.names():
        value = getattr(params, name)
        path = f"net.inet.tcp.{PARAM_PATHS.get(name, name)}"
        if isinstance(value, str):
            t.bind_string(path, params, name, choices=PARAM_CHOICES.get(name))
        elif isinstance(value, float):
            # Timers are seconds in TcpParams; the RTO bounds need finer steps, so those
            # three nodes are milliseconds (documented in docs/SYSCTL.md).
            scale = 1000 if name in MS_NODES else 1
            t.add_int(path, _float_getter(params, name, scale),
                      _float_setter(params, name, scale), minval=0)
        else:
            t.bind_int(path, params, name, minval=0, maxval=PARAM_MAX.get(name))
    t.add_struct("net.inet.tcp.stats", lambda: tcp.stats, num=TCPCTL_STATS)
