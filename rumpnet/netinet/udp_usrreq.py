"""UDP (RFC 768; NetBSD's ``udp_usrreq.c``): sockets, input demux, ICMP notifications."""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.net_kernel import netinet
from rumpnet.netinet.in_addr import INADDR_ANY, INADDR_BROADCAST, ntoa, sockaddr_in
from rumpnet.netinet.in_cksum import in4_cksum, in_cksum_sum, in_pseudo_sum
from rumpnet.netinet.in_pcb import InPcbMixin
from rumpnet.netinet.ip_input import ICMP_UNREACH, ICMP_UNREACH_PORT
from rumpnet.netinet.ip_var import INETCTLERRMAP, IP_ALLOWBROADCAST, IP_ROUTETOIF, IPPROTO_UDP
from rumpnet.uipc_socket import MSG_DONTROUTE, DgramSocket

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet.in_proto import Inet

UDP_HDR = struct.Struct("!HHHH")
UDP_MAX_PAYLOAD = 65535 - 20 - 8


class UdpParams:
    def __init__(self) -> None:
        self.checksum = 1
        self.sendspace = 65536
        self.recvspace = 262144


class UdpSocket(InPcbMixin, DgramSocket):
    so_type = pysocket.SOCK_DGRAM

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        DgramSocket.__init__(self, kernel, proto)
        InPcbMixin.__init__(self)
        self.inet: Inet = netinet(kernel)
        self.udp = self.inet.udp
        self.snd_hiwat = self.udp.params.sendspace
        self.rcv_hiwat = self.udp.params.recvspace

    def pcb_table(self) -> dict[int, list[Any]]:
        return self.udp.pcbs

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        faddr, fport = sockaddr_in(addr)
        if fport == 0:
            raise kerr(errno.EADDRNOTAVAIL)
        self.pcb_connect(faddr, fport)
        self.so_error = 0

    def is_connected(self) -> bool:
        return self.fport != 0

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        self.check_send(flags)
        if addr is not None:
            if self.fport:
                raise kerr(errno.EISCONN)
            faddr, fport = sockaddr_in(addr)
            if fport == 0:
                raise kerr(errno.EADDRNOTAVAIL)
        else:
            if not self.fport:
                raise kerr(errno.ENOTCONN)
            faddr, fport = self.faddr, self.fport
        n = len(data)
        if n > UDP_MAX_PAYLOAD or n > self.snd_hiwat:
            raise kerr(errno.EMSGSIZE)
        if not self.lport:
            self.pcb_bind(INADDR_ANY, 0)
        if faddr == INADDR_ANY:
            faddr = self.inet.primary_addr()
        oflags = 0
        if pysocket.SO_BROADCAST in self.so_options:
            oflags |= IP_ALLOWBROADCAST
        if flags & MSG_DONTROUTE or pysocket.SO_DONTROUTE in self.so_options:
            oflags |= IP_ROUTETOIF
        src = self.laddr
        inet = self.inet
        if src == INADDR_ANY or inet.is_bcast_or_mcast(src):
            # Bound to a broadcast or multicast address (to receive): the source comes
            # from the route, as for INADDR_ANY (Linux's inet_bind keeps saddr 0 then).
            src = inet.output.source_for(faddr, inet.output.route(faddr, oflags))
        self.udp.output(src, self.lport, faddr, fport, data, self.ttl, self.tos, oflags)
        return n

    def recv(self, ctx: SyscallCtx, n: int, flags: int) -> tuple[bytes, Any]:
        data, src = super().recv(ctx, n, flags)
        return data, src

    def ctlnotify(self, kind: str) -> None:
        """An ICMP error about our traffic (``in_pcbnotify``): the socket's error, but
        not for time exceeded (NetBSD's inetctlerrmap has no errno for it)."""
        err = 0 if kind.startswith("timxceed") else INETCTLERRMAP.get(kind, 0)
        if err:
            self.so_error = err
            self.sorwakeup()
            self.sowwakeup()


class Udp:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.udpstat
        self.params = inet.udp_params
        self.pcbs: dict[int, list[Any]] = {}

    def output(self, src: int, sport: int, dst: int, dport: int, data: bytes | memoryview,
               ttl: int | None, tos: int, oflags: int) -> None:
        ulen = 8 + len(data)
        seg = bytearray(ulen)
        UDP_HDR.pack_into(seg, 0, sport, dport, ulen, 0)
        seg[8:] = data
        if self.params.checksum:
            c = in4_cksum(src, dst, IPPROTO_UDP, seg) or 0xFFFF
            seg[6] = c >> 8
            seg[7] = c & 0xFF
        self.stats.udps_opackets += 1
        if ttl is None and not tos and not oflags:
            # The common datagram: through the destination's route cache (the same frame).
            self.inet.output.output_cached(src, dst, IPPROTO_UDP, seg)
        else:
            self.inet.output.output(src, dst, IPPROTO_UDP, seg, ttl=ttl, tos=tos, flags=oflags)

    def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int) -> None:
        st = self.stats
        st.udps_ipackets += 1
        seg = pkt[hlen:]
        if len(seg) < 8:
            st.udps_hdrops += 1
            return
        sport, dport, ulen, csum = UDP_HDR.unpack_from(seg)
        if ulen < 8 or ulen > len(seg):
            st.udps_badlen += 1
            return
        if ulen < len(seg):
            seg = seg[:ulen]
        if csum:
            if in_cksum_sum(seg, in_pseudo_sum(src, dst, IPPROTO_UDP, ulen)) != 0xFFFF:
                st.udps_badsum += 1
                return
        else:
            st.udps_nosum += 1
        inet = self.inet
        socks = self.pcbs.get(dport)
        payload = bytes(seg[8:])
        srcaddr = (ntoa(src), sport)
        if dst == INADDR_BROADCAST or dst in inet.bcast_addrs or (dst >> 28) == 0xE:
            delivered = False
            for so in socks or ():
                if so.fport and (so.faddr != src or so.fport != sport):
                    continue
                if so.laddr != INADDR_ANY and so.laddr != dst and not inet.is_bcast_of(dst, so.laddr):
                    continue
                if not so.sbappend(payload, srcaddr):
                    st.udps_fullsock += 1
                delivered = True
            if not delivered:
                st.udps_noportbcast += 1
            return
        best = None
        best_score = -1
        for so in socks or ():
            score = 0
            if so.laddr != INADDR_ANY:
                if so.laddr != dst:
                    continue
                score += 1
            if so.fport:
                if so.faddr != src or so.fport != sport:
                    continue
                score += 2
            if score > best_score:
                best, best_score = so, score
        if best is None:
            st.udps_noport += 1
            inet.icmp.error(pkt, ifp, ICMP_UNREACH, ICMP_UNREACH_PORT)
            return
        if not best.sbappend(payload, srcaddr):
            st.udps_fullsock += 1

    def ctlinput(self, kind: str, src: int, dst: int, inner: bytes, mtu: int) -> bool:
        """ICMP error about a datagram from ``src``:sport to ``dst``:dport: taken (True)
        if a socket bound to sport could have sent it (connected to dst:dport, or not
        connected); "fragmentation needed" then lowers the path MTU (Linux's udp_err
        does, through the socket it finds). Only connected sockets learn the error: an
        unconnected one cannot tell which of its destinations failed (BSD)."""
        ihl = (inner[0] & 0xF) << 2
        if len(inner) < ihl + 4:
            return False
        sport, dport = struct.unpack_from("!HH", inner, ihl)
        taken = False
        for so in self.pcbs.get(sport, ()):
            if so.laddr not in (INADDR_ANY, src):
                continue
            if so.fport == dport and so.faddr == dst:
                so.ctlnotify(kind)
                taken = True
            elif not so.fport:
                taken = True
        if taken and kind == "needfrag":
            self.inet.icmp.mtudisc(dst, mtu, struct.unpack_from("!H", inner, 2)[0])
        return taken
