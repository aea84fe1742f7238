"""TCP over IPv6 (NetBSD's ``tcp_usrreq.c``/``tcp_input.c`` under ``#ifdef INET6``): the
same sans-IO TCP, a second :class:`~rumpnet.netinet.tcp_subr.TcpProtocol` whose addresses
are 128-bit ints, joined to the inet6 domain.

What differs from IPv4 is only at the address-family seam:

* the checksum's pseudo-header (RFC 8200 8.1; ``in_pseudo_sum`` takes 128-bit addresses);
* the MSS: path MTU - 60 (``TCP6_HDRS``), 1220 at IPv6's minimum MTU (RFC 8200 8.3);
* output through ``Inet6Domain.output``; a link-local peer's zone is that of our own
  link-local address the connection uses (each is on one interface);
* ICMPv6 errors: a Packet Too Big lowers the path MTU only when it quotes a segment in
  flight of one of our connections (RFC 8201 5.2, RFC 5927 4.1), and then as validated;
  one for no connection (forged, or late) is ignored and counted (``icp6s_pmtuignored``);
* sockets: :class:`Tcp6Socket` speaks Python's 4-tuples with zones, IPV6_V6ONLY,
  IPV6_UNICAST_HOPS and IPV6_TCLASS.

Parameters (``net.inet.tcp.*``) and counters (``tcps_*``) are shared with IPv4, as in
NetBSD's one ``tcpstat``; each family has its own port space (a wildcard IPv6 listener
and an IPv4 one on the same port coexist, as IPV6_V6ONLY's default makes them).
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.ifnet import M_CSUM_TCPv6
from rumpnet.netinet.in_addr import ntoa
from rumpnet.netinet.ip_var import IPTOS_ECN_MASK
from rumpnet.netinet.tcp_const import TCP6_HDRS
from rumpnet.netinet.tcp_ctlinput import tcp_ctlnotify
from rumpnet.netinet.tcp_subr import TcpListener, TcpProtocol
from rumpnet.netinet.tcp_usrreq import SO_REUSEPORT, Tcp, TcpSocket
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.icmp6 import Icmp6Ctl
from rumpnet.netinet6.in6_var import IN6_IFF_ANYCAST, IN6_IFF_DETACHED, IN6_IFF_NOTREADY
from rumpnet.netinet6.ip6_input import Ip6Delivery
from rumpnet.netinet6.ip6_output import Ip6Pktopts
from rumpnet.netinet6.ip6_rtcache import tcp_gso_segments, tso_max6
from rumpnet.uipc_socket import POLLIN_SET

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet.tcp_var import TcpCb
    from rumpnet.netinet6.in6_domain import Inet6Domain

IPPROTO_TCP = 6
_SEQ = struct.Struct("!HHI")
_ZONE_HINTS = 4096      # link-local peers whose zone is remembered for their path MTU
NUD_HINT_EVERY = 1.0    # seconds between two NUD hints for one peer (see Tcp6._nud_hint)
_NUD_HINT_PEERS = 4096  # peers whose last hint is remembered (then forgotten all at once)

# ICMPv6 Destination Unreachable codes as the kinds TCP's ctlinput knows (NetBSD's
# icmp6_input maps them to PRC_UNREACH_NET, _ADMIN, _HOST, _HOST, _PORT).
_UNREACH_KIND = {0: "netunreach", 1: "adminprohib", 2: "hostunreach", 3: "hostunreach", 4: "portunreach"}


class Tcp6(Tcp):
    """``k.inet6.tcp6``: the glue of TCP over IPv6 (see the module docstring). It is
    :class:`~rumpnet.netinet.tcp_usrreq.Tcp` (the IP_TOS and IP_TTL lookup) with IPv6 for IP;
    its deadlines arm the inet6 domain's one timer (``Inet6Domain.callout``). Superframes go
    whole to an interface with TSO6 (virtif) and are cut by IPv6 in software otherwise
    (``net.inet.tcp.gso``)."""

    def __init__(self, kernel: NetKernel, tcp4: Tcp, domain: Inet6Domain) -> None:
        self.kernel = kernel
        self.inet = tcp4.inet
        self.tcp4 = tcp4          # IPv4's TCP, for v4-mapped addresses
        self.domain = domain
        self.params = tcp4.params
        self.stats = tcp4.stats
        self.proto = TcpProtocol(self.params, domain.rng, self._output, self._mtu_for, self.stats,
                                 tso_for=self._tso_for, route_gen=lambda: domain.routes.generation,
                                 pmtu_update=self._pmtu_update, deadline_out=domain.callout.deadline,
                                 hdrs=TCP6_HDRS, nud_hint=self._nud_hint,
                                 strict=tcp4.proto.strict)  # the kernel's strict mode, as IPv4's TCP
        self.proto.sb_max = tcp4.proto.sb_max
        # TCP's deadlines arm the inet6 domain's one timer, as IPv4's arm Inet.callout.
        domain.callout.add(self.proto)
        self.output_drops = 0
        self.ipopts_used = False
        self.tso_superframes = self.tso_segments = 0
        self.zone_hints: dict[int, int] = {}      # link-local peer -> interface index
        self._hinted: dict[int, float] = {}       # peer -> when its neighbour was last hinted

    # -- TCP -> IPv6 ---------------------------------------------------------------------
    def _tso_for(self, dst: int) -> int:
        """Superframe size toward ``dst`` (TSO6, or ``net.inet.tcp.gso``: cut in software
        by IPv6, :mod:`~rumpnet.netinet6.ip6_rtcache`)."""
        zone = self.domain.default_zone(dst, self.zone_hints.get(dst, 0) if in6.is_scoped(dst) else 0)
        return tso_max6(self.domain, dst, zone, bool(self.params.gso))

    def _ip_output(self, src: int, dst: int, segment: bytes | bytearray, tso_segsz: int = 0,
                   ecn: int = 0) -> None:
        """``ecn``: TCP's ECN codepoint (RFC 3168 6.1), the ECN bits of the Traffic Class
        (RFC 8200 7, RFC 3168 5); the DSCP bits stay IPV6_TCLASS's, as IP_TOS's in Tcp.
        A plain segment goes through the flow's route cache (``ip6_rtcache``) when it
        can; a superframe (``tso_segsz``) is cut there, or here for the full path."""
        opts = None
        tos_ttl = self._tos_ttl(src, dst, segment) if self.ipopts_used else None
        zone = self.zone_for(src, dst)
        rtcache = self.domain.rtcache
        if tos_ttl is not None:
            tos, hlim = tos_ttl
            opts = Ip6Pktopts(hlim=-1 if hlim is None else hlim, tclass=tos & ~IPTOS_ECN_MASK | ecn)
        elif tso_segsz:
            if rtcache.output_gso(src, dst, segment, tso_segsz, zone, ecn):
                return
        elif rtcache.output(src, dst, IPPROTO_TCP, segment, zone, ecn):
            return
        if opts is None and ecn:
            opts = Ip6Pktopts(tclass=ecn)
        for seg in tcp_gso_segments(src, dst, segment, tso_segsz) if tso_segsz else (segment,):
            try:
                self.domain.output(src, dst, IPPROTO_TCP, seg, opts, zone)
            except OSError as e:
                self.output_drops += 1        # lost like a segment dropped on the wire
                if e.errno == errno.EMSGSIZE:
                    self.proto.emsgsize(src, dst, seg, self.domain.now())

    def zone_for(self, src: int, dst: int) -> int:
        """The zone of a scoped peer: the interface our own (scoped) address is on."""
        if not in6.is_scoped(dst):
            return 0
        ia = self.domain.node.ifaddrs.lookup(src, self.zone_hints.get(dst, 0))
        return ia.ifindex if ia is not None else self.zone_hints.get(dst, 0)

    def _mtu_for(self, dst: int) -> int:
        d = self.domain
        zone = d.default_zone(dst, self.zone_hints.get(dst, 0) if in6.is_scoped(dst) else 0)
        rt = d.node.routes.lookup6(dst, zone)
        if rt is None:
            return 1280
        return d.node.ip6_output.path_mtu(dst, rt, self.domain.now(), Ip6Pktopts(minmtu=0))

    def _pmtu_update(self, dst: int, mtu: int, quoted_len: int) -> int:
        """A Packet Too Big TCP vouched for (RFC 8201 5.2): validated, so it may make
        one of the ``mtudisc_hiwat`` entries."""
        d = self.domain
        now = self.domain.now()
        d.node.icmp6.pmtu.update(dst, mtu, now, True, self._mtu_for(dst))
        d.settle(now)
        return self._mtu_for(dst)

    def _nud_hint(self, cb: TcpCb, now: float) -> None:
        """An ACK of new data from ``cb``'s peer (NetBSD's ND6_HINT): the neighbour the
        path goes through, the peer or the route's gateway, is reachable (RFC 4861 7.3.1).
        At most one hint per peer per NUD_HINT_EVERY seconds: the entry's timers are
        seconds long, and an ACK stream would otherwise pay a route lookup per ACK."""
        dst = cb.faddr
        last = self._hinted.get(dst)
        if last is not None and now - last < NUD_HINT_EVERY:
            return
        if len(self._hinted) >= _NUD_HINT_PEERS:
            self._hinted.clear()
        self._hinted[dst] = now
        d = self.domain
        zone = self.zone_for(cb.laddr, dst)
        rt = d.node.routes.lookup6(dst, d.default_zone(dst, zone))
        if rt is not None and not (rt.reject or rt.blackhole):
            d.node.nd6.nud_hint(rt.gateway or dst, rt.ifindex, now)

    # -- IPv6 -> TCP ---------------------------------------------------------------------
    def input6(self, d: Ip6Delivery, now: float) -> None:
        src, dst = d.src, d.dst
        if in6.is_multicast(dst) or d.l2mcast or src == 0:
            self.stats.tcps_rcvbcast += 1     # no TCP with multicast (RFC 1122 4.2.3.10)
            return
        if in6.is_scoped(src):
            if len(self.zone_hints) >= _ZONE_HINTS:
                self.zone_hints.clear()
            self.zone_hints[src] = d.ifindex
        # The Traffic Class's ECN bits are IPv4's TOS ECN bits (RFC 3168 5, RFC 8200 7).
        # The driver checked the checksum, or the host left it partial (virtif offloads).
        self.proto.input(src, dst, memoryview(d.packet)[d.off:], now,
                         csum_ok=bool(self.domain.rx_csum_flags & M_CSUM_TCPv6), iptos=d.tclass)

    def ctlinput6(self, ev: Icmp6Ctl, now: float) -> None:
        """An ICMPv6 error about one of our segments (``tcp6_ctlinput``)."""
        inner = ev.inner
        if len(inner) < ev.upper_off + 8:
            return
        sport, dport, seq = _SEQ.unpack_from(inner, ev.upper_off)
        kind = _UNREACH_KIND.get(ev.code, "hostunreach") if ev.kind == "unreach" else ev.kind
        qlen = 40 + ((inner[4] << 8) | inner[5])
        taken = tcp_ctlnotify(self.proto, kind, (ev.inner_src, sport, ev.inner_dst, dport), seq, qlen,
                              ev.mtu, now)
        if ev.kind == "needfrag" and not taken:
            self.domain.node.icmp6stat.icp6s_pmtuignored += 1   # forged or late: no MTU change


class Tcp6Socket(TcpSocket):
    """An AF_INET6 stream socket: TcpSocket with IPv6 addresses (4-tuples, zones)."""

    family = pysocket.AF_INET6

    def __init__(self, kernel: NetKernel, proto: int, cb: Any = None) -> None:
        self._zone = 0
        # v4-mapped (RFC 4291 2.5.5.2, RFC 3493 3.7): an IPV6_V6ONLY-off socket bound or
        # connected to ::ffff:a.b.c.d is an IPv4 connection of IPv4's TCP (self.tcp
        # becomes IPv4's glue, addresses are IPv4 ints) that names itself in IPv6 form.
        self.mapped = False
        # IPV6_V6ONLY off and listening on ::: IPv4's listener beside IPv6's (RFC 3493 5.3)
        self.listener4: TcpListener | None = None
        super().__init__(kernel, proto, cb)
        assert isinstance(self.tcp, Tcp6)
        self.tcp6: Tcp6 = self.tcp
        self.v6only = bool(self.tcp6.domain.node.ip6_params.v6only)
        if cb is not None and cb.proto is not self.tcp6.proto:   # accepted by a mapped listener
            self.tcp, self.mapped = self.tcp6.tcp4, True

    def glue(self, kernel: NetKernel) -> Tcp:
        inet6 = kernel.inet6
        if inet6 is None or inet6.tcp6 is None:
            raise kerr(errno.EPROTONOSUPPORT)
        return inet6.tcp6

    def parse_addr(self, addr: Any) -> tuple[int, int]:
        d = self.tcp6.domain
        a, port, _, zone = scope6.sockaddr_in6(addr, lambda n: self.kernel.ifnet.lookup(n).index)
        if in6.is_v4mapped(a):
            self._to_ipv4()
            return in6.v4_of_mapped(a), port
        if self.mapped:
            raise kerr(errno.EINVAL, "an IPv6 address on a socket using a v4-mapped one")
        self._zone = d.default_zone(a, zone)
        return a, port

    def _to_ipv4(self) -> None:
        """Use IPv4's TCP for a v4-mapped address: EINVAL on an IPV6_V6ONLY socket (as
        in6_pcbconnect and in6_pcbbind) or one bound to an IPv6 address; a port bound
        on the wildcard moves to IPv4's port space."""
        if self.mapped:
            return
        if self.v6only:
            raise kerr(errno.EINVAL, "a v4-mapped address on an IPV6_V6ONLY socket")
        if self.listener is not None or self.cb is not None or (self.bound and self.laddr != 0):
            raise kerr(errno.EINVAL, "a v4-mapped address on a socket using IPv6")
        tcp4 = self.tcp6.tcp4
        if self.bound:
            reuse = pysocket.SO_REUSEADDR in self.so_options
            self.lport = tcp4.proto.bind(0, self.lport, reuse, SO_REUSEPORT in self.so_options, owner=self)
            self.tcp6.proto.unbind(0, self.lport)
        self.tcp, self.mapped = tcp4, True

    def name(self, addr: int, port: int) -> Any:
        if self.mapped:
            return f"::ffff:{ntoa(addr)}", port, 0, 0
        zone = 0
        if in6.is_scoped(addr):
            own = self.tcp6.domain.node.ifaddrs.lookup(addr)
            zone = own.ifindex if own is not None else self.tcp6.zone_hints.get(addr, 0)
        text = scope6.format_scoped(addr, zone, self.tcp6.domain.ifname)
        return text, port, 0, zone if scope6.shows_zone(addr, zone) else 0

    def check_local(self, laddr: int) -> None:
        if self.mapped:
            super().check_local(laddr)
            return
        if laddr == 0:
            return
        ia = self.tcp6.domain.node.ifaddrs.lookup(laddr, self._zone)
        if ia is None or ia.flags & (IN6_IFF_NOTREADY | IN6_IFF_DETACHED | IN6_IFF_ANYCAST):
            raise kerr(errno.EADDRNOTAVAIL)

    def route_peer(self, faddr: int) -> tuple[int, int]:
        if self.mapped:
            return super().route_peer(faddr)
        d = self.tcp6.domain
        zone = self._zone
        if faddr == 0:
            faddr, zone = in6.IN6ADDR_LOOPBACK, d.lo0_zone()
        if in6.is_multicast(faddr):
            raise kerr(errno.ENETUNREACH)
        if in6.is_scoped(faddr):
            self.tcp6.zone_hints[faddr] = zone
        laddr = self.laddr
        if laddr == 0:
            laddr, _ = d.node.ip6_output.source_for(faddr, zone)
        return faddr, laddr

    # -- a dual-stack listener: IPv4 connections accepted as v4-mapped ones -------------
    def listen(self, backlog: int) -> None:
        first = self.listener is None
        super().listen(backlog)
        if self.listener4 is not None:
            self.listener4.set_backlog(max(0, min(int(backlog), 4096)))
        elif first and not self.v6only and not self.mapped and self.laddr == 0:
            try:   # IPv4's port too (EADDRINUSE when an IPv4 socket has it)
                lst4 = self.tcp6.tcp4.proto.listen(0, self.lport, max(0, min(int(backlog), 4096)), self._now())
            except OSError:
                assert self.listener is not None
                self.listener.close(self._now())
                self.listener = None
                raise
            lst4.upcall = self._listen_upcall
            self.listener4 = lst4
            self._sync_listener()

    def _sync_listener(self) -> None:
        super()._sync_listener()
        lst, lst4 = self.listener, self.listener4
        if lst is not None and lst4 is not None:
            for name in ("rcvbuf", "sndbuf", "maxseg", "nodelay", "noopt", "keepalive", "opts"):
                setattr(lst4, name, getattr(lst, name))

    def next_connection(self, lst: TcpListener) -> TcpCb | None:
        cb = lst.accept()
        if cb is None and self.listener4 is not None:
            cb = self.listener4.accept()
        return cb

    def poll_events(self) -> int:
        if self.listener4 is not None and self.listener4.pending():
            return POLLIN_SET
        return super().poll_events()

    def close(self) -> None:
        if self.listener4 is not None and not self.closed:
            self.listener4.close(self._now())
            self.listener4 = None
        super().close()

    def proto_setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level != pysocket.IPPROTO_IPV6:
            super().proto_setsockopt(level, opt, value)
            return
        v = int.from_bytes(value, "little", signed=True) if isinstance(value, (bytes, bytearray)) else int(value)
        if opt == pysocket.IPV6_V6ONLY:
            if self.bound:
                raise kerr(errno.EINVAL, "IPV6_V6ONLY after bind")
            self.v6only = bool(v)
        elif opt in (pysocket.IPV6_UNICAST_HOPS, pysocket.IPV6_TCLASS):
            if not -1 <= v <= 255:
                raise kerr(errno.EINVAL)
            if opt == pysocket.IPV6_UNICAST_HOPS:
                self.ttl = None if v < 0 else v
            else:
                self.tos = max(v, 0)
            self.ip_opts_changed()
        else:
            raise kerr(errno.ENOPROTOOPT)

    def proto_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        if level != pysocket.IPPROTO_IPV6:
            return super().proto_getsockopt(level, opt, buflen)
        if opt == pysocket.IPV6_V6ONLY:
            return int(self.v6only)
        if opt == pysocket.IPV6_UNICAST_HOPS:
            return self.ttl if self.ttl is not None else self.tcp6.domain.node.ip6_params.hlim
        if opt == pysocket.IPV6_TCLASS:
            return self.tos
        raise kerr(errno.ENOPROTOOPT)


def tcp6_attach(kernel: NetKernel, domain: Inet6Domain) -> Tcp6 | None:
    """TCP over IPv6 where netinet has TCP: the protocol switch, ICMPv6 errors, sockets."""
    inet = kernel.inet
    if inet is None or inet.tcp is None:
        return None
    tcp6 = Tcp6(kernel, inet.tcp, domain)
    domain.node.protosw[IPPROTO_TCP] = tcp6.input6
    domain.ctlinputs[IPPROTO_TCP] = tcp6.ctlinput6
    domain.socket_types[(pysocket.SOCK_STREAM, 0)] = Tcp6Socket
    domain.socket_types[(pysocket.SOCK_STREAM, IPPROTO_TCP)] = Tcp6Socket
    return tcp6
