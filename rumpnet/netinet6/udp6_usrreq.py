"""UDP over IPv6 (NetBSD's ``udp6_usrreq.c``, ``udp6_output.c``; RFC 768, RFC 8200 8.1).

The checksum covers the IPv6 pseudo-header and is mandatory: a datagram with checksum 0
is dropped and counted (``udp6s_nosum``), and a computed 0 goes out as 0xffff. Input
demultiplexes to the best-matching socket (connected before bound before wildcard; every
matching socket for a multicast destination); with no socket for a unicast destination a
Destination Unreachable (port unreachable, RFC 4443 3.1 code 4) goes back. ICMPv6 errors
reach connected sockets (``udp6_ctlinput``); a Packet Too Big counts as validated for the
path MTU only when a connected socket vouches for the quoted datagram.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.icmp6 import ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT, Icmp6Ctl
from rumpnet.netinet6.in6_cksum import in6_cksum, in6_cksum_ok
from rumpnet.netinet6.in6_pcb import Dgram6Socket
from rumpnet.netinet6.ip6_input import Ip6Delivery
from rumpnet.netinet6.ip6_output import Ip6Pktopts
from rumpnet.netinet6.ip6_var import Counters
from rumpnet.uipc_socket import Cmsg

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain

IPPROTO_UDP = 17
UDP_HDR = struct.Struct("!HHHH")
UDP6_MAX_PAYLOAD = 65535 - 8        # without jumbograms (RFC 2675 is not done)

# ctlinput kinds -> the error a connected socket sees (NetBSD's inet6ctlerrmap).
_CTL_ERRNO = {"portunreach": errno.ECONNREFUSED, "protounreach": errno.ECONNREFUSED,
              "unreach": errno.EHOSTUNREACH, "paramprob": errno.ENOPROTOOPT}


@dataclass(slots=True)
class Udp6Stats(Counters):
    """``struct udp6stat`` (``net.inet6.udp6.stats``)."""

    udp6s_ipackets: int = 0
    udp6s_hdrops: int = 0
    udp6s_badsum: int = 0
    udp6s_nosum: int = 0
    udp6s_badlen: int = 0
    udp6s_noport: int = 0
    udp6s_noportmcast: int = 0
    udp6s_fullsock: int = 0
    udp6s_opackets: int = 0


class Udp6Socket(Dgram6Socket):
    so_type = pysocket.SOCK_DGRAM

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        super().__init__(kernel, proto)
        self.udp6: Udp6 = self.inet6.udp6
        inet = kernel.inet
        if inet is not None:
            self.snd_hiwat = inet.udp_params.sendspace
            self.rcv_hiwat = inet.udp_params.recvspace

    def pcb_table(self) -> dict[int, list[Any]]:
        return self.udp6.pcbs

    def pcb_table4(self) -> dict[int, list[Any]] | None:
        inet = self.kernel.inet
        return inet.udp.pcbs if inet is not None else None

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        faddr, fport, flowinfo, zone = self.sockaddr(addr)
        if fport == 0:
            raise kerr(errno.EADDRNOTAVAIL)
        self.pcb_connect(faddr, fport, zone, flowinfo)
        self.so_error = 0

    def is_connected(self) -> bool:
        return self.fport != 0

    def ctlnotify(self, kind: str) -> None:
        err = _CTL_ERRNO.get(kind, 0)
        if err:
            self.so_error = err
            self.sorwakeup()
            self.sowwakeup()

    def sendmsg(self, ctx: SyscallCtx, data: bytes, ancdata: list[Cmsg], flags: int, addr: Any) -> int:
        self.check_send(flags)
        if addr is not None:
            if self.fport:
                raise kerr(errno.EISCONN)
            faddr, fport, _, zone = self.sockaddr(addr)
            if fport == 0:
                raise kerr(errno.EADDRNOTAVAIL)
        elif not self.fport:
            raise kerr(errno.ENOTCONN)
        else:
            faddr, fport, zone = self.faddr, self.fport, self.fzone
        n = len(data)
        if n > UDP6_MAX_PAYLOAD or n > self.snd_hiwat:
            raise kerr(errno.EMSGSIZE)
        src, ifindex, hlim, tclass = self.parse_cmsgs(ancdata)
        if in6.is_v4mapped(faddr):
            self._send_mapped(faddr, fport, data)
            return n
        if not self.lport:
            self.pcb_bind(0, 0)
        if faddr == 0:
            faddr, zone = in6.IN6ADDR_LOOPBACK, self.inet6.lo0_zone()
        zone = zone or (ifindex if in6.is_scoped(faddr) else 0)
        opts = self.pktopts(faddr, hlim, tclass, ifindex)
        src = src or self.laddr
        if src == 0:
            src, _ = self.inet6.node.ip6_output.source_for(faddr, zone, opts)
        self.udp6.output(src, self.lport, faddr, fport, data, opts, zone, bool(self.mcast_loop))
        return n

    def _send_mapped(self, faddr: int, fport: int, data: bytes) -> None:
        """To a v4-mapped address: an IPv4 datagram (RFC 4291 2.5.5.2), EINVAL on an
        IPV6_V6ONLY socket (NetBSD's udp6_output)."""
        inet = self.kernel.inet
        if self.v6only or inet is None:
            raise kerr(errno.EINVAL, "a v4-mapped address on an IPV6_V6ONLY socket")
        if not self.lport:
            self.pcb_bind(0, 0)
        dst4 = in6.v4_of_mapped(faddr)
        m = self.mapped
        src4 = m.laddr if m is not None and m.laddr else inet.output.source_for(dst4)
        ttl = self.unicast_hops if self.unicast_hops >= 0 else None
        inet.udp.output(src4, self.lport, dst4, fport, data, ttl, self.tclass, 0)


def _plain(opts: Ip6Pktopts) -> bool:
    """Options the flow cache's template stands for: the default hop limit and flow
    label, no extension or routing header, no IPV6_NEXTHOP and no IPV6_USE_MIN_MTU.
    IPV6_DONTFRAG and the multicast interface change nothing for a unicast packet
    within the path MTU (the cache sends no other: ``Ip6RouteCaches.output``)."""
    return (opts.hlim < 0 and opts.flow < 0 and opts.minmtu == -1 and not opts.exthdrs and not opts.nexthop
            and not opts.rthdr)


class Udp6:
    """UDP of the inet6 domain: its sockets' table, input, output and ctlinput."""

    def __init__(self, domain: Inet6Domain) -> None:
        self.domain = domain
        self.stats = Udp6Stats()
        self.pcbs: dict[int, list[Any]] = {}

    def output(self, src: int, sport: int, dst: int, dport: int, data: bytes, opts: Ip6Pktopts, zone: int,
               loop: bool) -> None:
        seg = bytearray(8 + len(data))
        UDP_HDR.pack_into(seg, 0, sport, dport, len(seg), 0)
        seg[8:] = data
        struct.pack_into("!H", seg, 6, in6_cksum(src, dst, IPPROTO_UDP, seg) or 0xFFFF)
        self.stats.udp6s_opackets += 1
        d = self.domain
        zone = d.default_zone(dst, zone)
        # The plain datagram (no per-packet options that change the header or the route)
        # goes through the flow's cache as TCP's segments do: the same frame, without
        # asking route, source, hop limit, path MTU and neighbour again (ip6_rtcache).
        if _plain(opts) and d.rtcache.output(src, dst, IPPROTO_UDP, seg, zone, opts.tclass):
            return
        d.output(src, dst, IPPROTO_UDP, seg, opts, zone, loop=loop)

    def input(self, d: Ip6Delivery, now: float) -> None:
        st = self.stats
        st.udp6s_ipackets += 1
        seg = d.packet[d.off:]
        if len(seg) < 8:
            st.udp6s_hdrops += 1
            return
        sport, dport, ulen, csum = UDP_HDR.unpack_from(seg)
        src, dst = d.src, d.dst
        if ulen != len(seg):
            st.udp6s_badlen += 1
            return
        if csum == 0:
            st.udp6s_nosum += 1     # RFC 8200 8.1: mandatory over IPv6
            return
        if not in6_cksum_ok(src, dst, IPPROTO_UDP, seg):
            st.udp6s_badsum += 1
            return
        payload = bytes(seg[8:])
        zone = scope6.zone_of(src, d.ifindex)
        if in6.is_multicast(dst):
            got = [so for so in self.pcbs.get(dport, ()) if self._matches(so, src, sport, dst, d.ifindex) is not None]
            for so in got:
                self._deliver(so, payload, d, src, sport, zone)
            if not got:
                st.udp6s_noportmcast += 1
            return
        best, best_score = None, -1
        for so in self.pcbs.get(dport, ()):
            score = self._matches(so, src, sport, dst, d.ifindex)
            if score is not None and score > best_score:
                best, best_score = so, score
        if best is None:
            st.udp6s_noport += 1
            self.domain.node.icmp6.error(d.packet, d.ifindex, ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT, 0, now,
                                         d.l2mcast)
            return
        self._deliver(best, payload, d, src, sport, zone)

    @staticmethod
    def _matches(so: Udp6Socket, src: int, sport: int, dst: int, ifindex: int) -> int | None:
        """How well ``so`` fits the datagram (None: not at all)."""
        score = 0
        if so.laddr:
            if so.laddr != dst or (so.lzone and so.lzone != scope6.zone_of(dst, ifindex)):
                return None
            score += 1
        if so.fport:
            if so.faddr != src or so.fport != sport:
                return None
            score += 2
        return score

    def _deliver(self, so: Udp6Socket, payload: bytes, d: Ip6Delivery, src: int, sport: int, zone: int) -> None:
        control = so.control_for(d.hlim, d.tclass, d.dst, d.ifindex) if so.recvopts else []
        if not so.deliver(payload, so.format(src, sport, zone), control):
            self.stats.udp6s_fullsock += 1

    def ctlinput(self, ev: Icmp6Ctl, now: float) -> None:
        """An ICMPv6 error about a datagram we sent to ``inner_dst``."""
        inner = ev.inner
        if len(inner) < ev.upper_off + 4:
            return
        sport, dport = struct.unpack_from("!HH", inner, ev.upper_off)
        socks = [so for so in self.pcbs.get(sport, ())
                 if so.fport == dport and so.faddr == ev.inner_dst and so.laddr in (0, ev.inner_src)]
        if ev.kind == "needfrag":
            self.domain.pmtu_update(ev, now, validated=bool(socks))
            return
        for so in socks:
            so.ctlnotify(ev.kind)
