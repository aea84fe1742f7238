"""IPv4 output (NetBSD's ``ip_output.c``): route, source address, header, fragments."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_var import (
    IP_ALLOWBROADCAST,
    IP_DF,
    IP_HDR,
    IP_HDR_LEN,
    IP_MAXPACKET,
    IP_MF,
    IP_RAWOUTPUT,
    IP_ROUTETOIF,
)
from rumpnet.route import RTF_BLACKHOLE, RTF_GATEWAY, RTF_HOST, RTF_LOCAL, RTF_REJECT, Rtentry

if TYPE_CHECKING:
    from rumpnet.netinet.in_proto import Inet

Buffer = bytes | bytearray | memoryview


class IpOutput:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.ipstat
        self.params = inet.ip_params
        # IP IDs: a counter from a random start (the seeded kernel source).
        self._ip_id = inet.kernel.rng.randrange(1, 0xFFFF)

    def next_id(self) -> int:
        self._ip_id = (self._ip_id + 1) & 0xFFFF or 1
        return self._ip_id

    def route(self, dst: int, flags: int = 0) -> Rtentry:
        """The route toward ``dst``; OSError as ``ip_output`` reports it."""
        inet = self.inet
        rt = inet.routes.lookup(dst)
        if flags & IP_ROUTETOIF:
            # SO_DONTROUTE / MSG_DONTROUTE: only a directly connected destination.
            ifa = inet.ifa_on_link(dst)
            if ifa is None:
                self.stats.ips_noroute += 1
                raise kerr(errno.ENETUNREACH)
            return inet.connected_route(ifa)
        if rt is None:
            self.stats.ips_noroute += 1
            raise kerr(errno.EHOSTUNREACH, "No route to host")
        if rt.flags & RTF_REJECT:
            raise kerr(errno.EHOSTUNREACH if rt.flags & RTF_HOST else errno.ENETUNREACH)
        return rt

    def source_for(self, dst: int, rt: Rtentry | None = None) -> int:
        """Source address for a packet to ``dst`` (``in_selectsrc``)."""
        inet = self.inet
        if dst in inet.local_addrs:
            return dst
        if rt is None:
            rt = self.route(dst)
        if rt.ifa is not None:
            return rt.ifa.addr
        if rt.ifp is not None:
            ifa = inet.ifa_for_ifp(rt.ifp)
            if ifa is not None:
                return ifa.addr
        raise kerr(errno.EADDRNOTAVAIL)

    def output(self, src: int, dst: int, proto: int, payload: Buffer, *, ttl: int | None = None,
               tos: int = 0, df: bool = False, flags: int = 0, ip_id: int | None = None) -> None:
        """Send ``payload`` as the data of an IPv4 packet (``ip_output``)."""
        st = self.stats
        rt = self.route(dst, flags)
        if rt.flags & RTF_BLACKHOLE:
            return
        inet = self.inet
        is_bcast = dst == 0xFFFFFFFF or dst in inet.bcast_addrs
        if is_bcast and not flags & IP_ALLOWBROADCAST:
            raise kerr(errno.EACCES)
        if src == 0:
            src = self.source_for(dst, rt)
        total = IP_HDR_LEN + len(payload)
        if total > IP_MAXPACKET:
            raise kerr(errno.EMSGSIZE)
        if flags & IP_RAWOUTPUT:
            buf = bytearray(payload)
        else:
            buf = bytearray(IP_HDR_LEN + len(payload))
            IP_HDR.pack_into(buf, 0, 0x45, tos, total, ip_id if ip_id is not None else self.next_id(),
                             IP_DF if df else 0, self.params.ttl if ttl is None else ttl, proto, 0, src, dst)
            buf[IP_HDR_LEN:] = payload
            c = in_cksum(memoryview(buf)[:IP_HDR_LEN])
            buf[10] = c >> 8
            buf[11] = c & 0xFF
        st.ips_localout += 1
        self.send_packet(buf, (buf[0] & 0xF) << 2, rt, dst, flags, is_bcast)

    def send_packet(self, buf: bytearray, hlen: int, rt: Rtentry, dst: int, flags: int,
                    is_bcast: bool | None = None) -> None:
        """Hand a finished packet to its interface, fragmenting to the route MTU."""
        inet = self.inet
        ifp = rt.ifp
        if ifp is None:
            self.stats.ips_noroute += 1
            raise kerr(errno.EHOSTUNREACH)
        rt.use += 1
        if ifp.loopback or rt.flags & RTF_LOCAL:
            inet.loop_output(buf)
            return
        if is_bcast is None:
            is_bcast = dst == 0xFFFFFFFF or dst in inet.bcast_addrs
        nexthop = rt.gateway if rt.flags & RTF_GATEWAY and rt.gateway is not None else dst
        mtu = rt.path_mtu
        if len(buf) <= mtu:
            inet.arp.output(ifp, buf, nexthop, is_bcast)
            return
        if buf[6] & 0x40:  # DF
            self.stats.ips_cantfrag += 1
            raise kerr(errno.EMSGSIZE)
        for frag in self.fragment(buf, hlen, mtu):
            inet.arp.output(ifp, frag, nexthop, is_bcast)

    def fragment(self, buf: bytearray, hlen: int, mtu: int) -> list[bytearray]:
        """Split ``buf`` into fragments of at most ``mtu`` bytes (RFC 791 section 3.2).

        Options are not copied into later fragments (we never emit options that must be).
        """
        st = self.stats
        data = memoryview(buf)[hlen:]
        _, tos, _, ip_id, off0, ttl, proto, _, src, dst = IP_HDR.unpack_from(buf)
        base_off = off0 & 0x1FFF
        more_after = off0 & IP_MF
        chunk = (mtu - IP_HDR_LEN) & ~7
        if chunk <= 0:
            st.ips_cantfrag += 1
            raise kerr(errno.EMSGSIZE)
        frags = []
        pos = 0
        n = len(data)
        while pos < n:
            part = data[pos:pos + chunk]
            last = pos + len(part) >= n
            off = base_off + (pos >> 3)
            if not last or more_after:
                off |= IP_MF
            frag = bytearray(IP_HDR_LEN + len(part))
            IP_HDR.pack_into(frag, 0, 0x45, tos, len(frag), ip_id, off, ttl, proto, 0, src, dst)
            frag[IP_HDR_LEN:] = part
            c = in_cksum(memoryview(frag)[:IP_HDR_LEN])
            frag[10] = c >> 8
            frag[11] = c & 0xFF
            frags.append(frag)
            pos += len(part)
        st.ips_fragmented += 1
        st.ips_ofragments += len(frags)
        return frags
