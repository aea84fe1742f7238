"""IPv4 output (NetBSD's ``ip_output.c``): route, source address, header, fragments."""

from __future__ import annotations

import errno
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.ifnet import IFF_RUNNING, IFF_UP, M_CSUM_PARTIAL, IFCAP_CSUM_TCPv4_Tx, IFCAP_TSOv4, M_CSUM_TSOv4, Mbuf
from rumpnet.netinet.if_arp import LLE_VALID
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_gso import (
    GsoError,
    complete_tcp_csum,
    set_partial_tcp_csum,
    tcp_gso_split,
    tcp_segment_superframe,
)
from rumpnet.netinet.ip_input import OptionError, ip_options
from rumpnet.netinet.ip_var import (
    IP_ALLOWBROADCAST,
    IP_DF,
    IP_HDR,
    IP_HDR_LEN,
    IP_MAXPACKET,
    IP_MF,
    IP_RAWOUTPUT,
    IP_ROUTETOIF,
    IPPROTO_TCP,
)
from rumpnet.route import RTF_BLACKHOLE, RTF_GATEWAY, RTF_HOST, RTF_LOCAL, RTF_REJECT, RTV_MTU, Rtentry

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet.in_proto import Inet

Buffer = bytes | bytearray | memoryview

_UP_RUNNING = IFF_UP | IFF_RUNNING
# Ethernet header and the IP header's first byte, its TOS, total length and id, the
# next four bytes (fragment field, TTL, protocol), the header checksum, the addresses.
_ETHER_IP = struct.Struct("!15sBHH4sH8s")
_ROUTE_CACHE_MAX = 1024
_gso_structs: dict[int, struct.Struct] = {}


def _gso_struct(thl: int) -> struct.Struct:
    """Ethernet, IP and a ``thl``-byte TCP header in one pack (see ``_ETHER_IP``)."""
    st = _gso_structs.get(thl)
    if st is None:
        st = _gso_structs[thl] = struct.Struct(f"!15sBHH4sH8s4sI4sBB2sH{thl - 18}s")
    return st


def tx_offloads(ifp: Ifnet) -> int:
    """The offloads (``IFCAP_*``) IP may ask of ``ifp`` for a packet leaving now: the
    interface's capabilities, or none while an egress qdisc sits on it (faults act on
    wire frames: a superframe is cut here, before the qdisc, so that "1% loss" loses 1% of
    segments). Every output decision reads this; links carry what they are given."""
    return ifp.capabilities if ifp.qdisc("egress") is None else 0


class RouteCache:
    """One destination's resolved output path: NetBSD's per-pcb ``inp_route`` plus the
    link header its ARP entry gives (Linux's dst and hh caches). Used by
    :meth:`IpOutput.output_cached` while everything it was built from is unchanged: the
    route table generation (every route change, MTU change and address change bumps it),
    the ARP entry (valid, not deleted, same MAC), the interface's own MAC and
    flags, and the TTL and PMTU-discovery sysctls. All of it is checked on every use."""

    __slots__ = ("src", "proto", "gen", "rt", "ifp", "nexthop", "lle", "mac", "lladdr", "ttl", "mtudisc",
                 "prefix", "mid", "addrs", "hsum", "psum")

    def __init__(self, src: int, dst: int, proto: int, gen: int, rt: Rtentry, nexthop: int, lle: Any,
                 ttl: int, mtudisc: int) -> None:
        ifp = rt.ifp
        assert ifp is not None
        self.src = src
        self.proto = proto
        self.gen = gen
        self.rt = rt
        self.ifp = ifp
        self.nexthop = nexthop
        self.lle = lle
        self.mac: bytes = lle.mac
        self.lladdr: bytes = ifp.lladdr
        self.ttl = ttl
        self.mtudisc = mtudisc
        # DF for TCP while PMTU discovery is on, unless the route's MTU is locked
        # (RTV_MTU: a reported MTU fell under the floor, ip_icmp's mtudisc).
        df = IP_DF if proto == IPPROTO_TCP and mtudisc and not rt.locks & RTV_MTU else 0
        # Destination MAC, ours, ETHERTYPE_IP; then IP version 4, header length 5 (the
        # TOS octet follows, per packet).
        self.prefix = self.mac + ifp.lladdr + b"\x08\x00\x45"
        self.mid = struct.pack("!HBB", df, ttl, proto)
        self.addrs = struct.pack("!II", src, dst)
        # RFC 1071 sums of what does not change from packet to packet: the pseudo-header
        # (RFC 9293 3.1) without its length, and the IP header without TOS, length and id.
        self.psum = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto
        self.hsum = 0x4500 + df + (ttl << 8) + self.psum

    def valid(self, output: IpOutput) -> bool:
        lle = self.lle
        ifp = self.ifp
        inet = output.inet
        params = output.params
        # An ARP entry removed or replaced is LLE_DELETED: no table lookup needed.
        return (self.gen == inet.routes.generation and lle.mac is self.mac and lle.state == LLE_VALID
                and ifp.lladdr is self.lladdr
                and ifp.flags & _UP_RUNNING == _UP_RUNNING and params.ttl == self.ttl
                and params.mtudisc == self.mtudisc)


class IpOutput:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.ipstat
        self.params = inet.ip_params
        # IP IDs: a counter from a random start (the seeded kernel source).
        self._ip_id = inet.kernel.rng.randrange(1, 0xFFFF)
        # Offload counters (not in struct ipstat): superframes handed to an interface
        # for TSO, superframes cut in software and the segments that made.
        self.tso_out = 0
        self.gso_sw = 0
        self.gso_segs = 0
        self._rcache: dict[int, RouteCache] = {}

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

    def tso_max(self, dst: int, gso: bool) -> int:
        """TCP payload and option bytes TCP may put in one superframe toward ``dst`` (as
        NetBSD's tcp_output asks the route's interface for IFCAP_TSOv4): the interface's
        ``tso_mtu`` less the IP and base TCP headers when it does TSO; with ``gso``
        (``net.inet.tcp.gso``) the same 64 KB for any other interface but loopback, cut
        here on the way out; 0 (one segment per packet) for no route or a local one. TCP
        only sizes what it builds with this: how a packet leaves is decided per packet
        (:func:`tx_offloads`)."""
        rt = self.inet.routes.lookup(dst)
        if rt is None or rt.flags & RTF_LOCAL or rt.ifp is None:
            return 0
        ifp = rt.ifp
        if ifp.capabilities & IFCAP_TSOv4:
            return min(ifp.tso_mtu, IP_MAXPACKET) - IP_HDR_LEN - 20
        if gso and not ifp.loopback:
            return IP_MAXPACKET - IP_HDR_LEN - 20
        return 0

    def output_cached(self, src: int, dst: int, proto: int, payload: Buffer, tso_segsz: int = 0,
                      tos: int = 0) -> None:
        """:meth:`output` of a plain packet (no options, default TTL; ``tos`` its TOS
        octet, such as TCP's ECN codepoint) from a connected socket: through the
        destination's :class:`RouteCache`, straight to the interface, when it is valid
        and the packet fits the path MTU; otherwise (and for everything unusual:
        broadcast, loopback, unresolved ARP) the full path.

        One call builds the Ethernet and IP headers from the cached template and hands
        the frame to ``transmit_frame`` (so bpf, qdiscs and the interface counters see
        it as usual); the result on the wire is byte for byte what :meth:`output` sends.

        ``tso_segsz``: ``payload`` is a TCP superframe (see :meth:`output`); toward an
        interface without TSO it is cut here (:meth:`_gso_cached`)."""
        key = (dst << 8) | proto
        rc = self._rcache.get(key)
        if rc is None or rc.src != src or not rc.valid(self):
            rc = self._route_cache_fill(src, dst, proto, key)
            if rc is None:
                self.output(src, dst, proto, payload, tos=tos, tso_segsz=tso_segsz)
                return
        if tso_segsz:
            # A superframe is cut at its segment size even when it would fit the MTU
            # (a peer with a small MSS): here for an interface without TSO, else by the
            # interface (TSO) or ip_gso on the full path.
            if not tx_offloads(rc.ifp) & IFCAP_TSOv4 and self._gso_cached(rc, payload, tso_segsz, tos):
                return
            self.output(src, dst, proto, payload, tos=tos, tso_segsz=tso_segsz)
            return
        total = IP_HDR_LEN + len(payload)
        rt = rc.rt
        if total > rt.path_mtu:
            self.output(src, dst, proto, payload, tos=tos)    # fragments, or EMSGSIZE with DF
            return
        ip_id = self._ip_id = (self._ip_id + 1) & 0xFFFF or 1
        s = rc.hsum + tos + total + ip_id
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        frame = _ETHER_IP.pack(rc.prefix, tos, total, ip_id, rc.mid, ~s & 0xFFFF, rc.addrs) + payload
        self.stats.ips_localout += 1
        rt.use += 1
        rc.ifp.transmit_frame(frame)

    def cached_route(self, dst: int, proto: int) -> RouteCache | None:
        """The :class:`RouteCache` :meth:`output_cached` holds for ``dst`` and ``proto``, if
        it is still valid (for inspection: tests, debugging)."""
        rc = self._rcache.get((dst << 8) | proto)
        return rc if rc is not None and rc.valid(self) else None

    def _gso_cached(self, rc: RouteCache, seg: Buffer, segsz: int, tos: int = 0) -> bool:
        """Software segmentation (GSO) of TCP superframe ``seg`` (TCP header and payload,
        checksum not needed) into frames of ``segsz`` payload bytes, sent through ``rc``.
        Each frame is what TCP would have sent for that segment on its own: the header
        repeated with its sequence number advanced, CWR only on the first and FIN and PSH
        only on the last (``ip_gso.tcp_gso_split``, which tcp_segment_superframe uses
        too), consecutive IP ids, both checksums complete; the Ethernet and IP headers
        from the cache's template, all three in one pack. False (nothing sent) if a
        frame would not fit the path MTU."""
        mv = memoryview(seg)
        thl = (seg[12] >> 4) << 2
        plen = len(seg) - thl
        rt = rc.rt
        if segsz < 1 or thl < 20 or plen <= 0 or IP_HDR_LEN + thl + segsz > rt.path_mtu:
            return False
        st = _gso_struct(thl)
        ports = bytes(mv[0:4])
        ack = bytes(mv[8:12])
        off = seg[12]
        win = bytes(mv[14:16])
        tail = bytes(mv[18:thl])       # urgent pointer and options
        ip_id = self._ip_id
        prefix, mid, addrs, ipsum = rc.prefix, rc.mid, rc.addrs, rc.hsum + tos
        transmit = rc.ifp.transmit_frame
        nseg = 0
        for seq, f, chunk, c in tcp_gso_split(mv, segsz, rc.psum):
            total = IP_HDR_LEN + thl + len(chunk)
            ip_id = (ip_id + 1) & 0xFFFF or 1
            s = ipsum + total + ip_id
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            transmit(st.pack(prefix, tos, total, ip_id, mid, ~s & 0xFFFF, addrs, ports, seq, ack, off, f,
                             win, c, tail) + chunk)
            nseg += 1
        self._ip_id = ip_id
        self.stats.ips_localout += nseg
        rt.use += nseg
        self.gso_sw += 1
        self.gso_segs += nseg
        return True

    def _route_cache_fill(self, src: int, dst: int, proto: int, key: int) -> RouteCache | None:
        """A :class:`RouteCache` for ``dst`` if its path is the plain one (a unicast
        destination through an Ethernet interface that is up, a resolved ARP entry),
        else None (and any stale entry is dropped)."""
        cache = self._rcache
        cache.pop(key, None)
        inet = self.inet
        if src == 0 or inet.is_bcast_or_mcast(dst) or inet.is_bcast_or_mcast(src):
            return None
        rt = inet.routes.lookup(dst)
        if rt is None or rt.flags & (RTF_REJECT | RTF_BLACKHOLE | RTF_LOCAL):
            return None
        ifp = rt.ifp
        if ifp is None or ifp.loopback or ifp.flags & _UP_RUNNING != _UP_RUNNING:
            return None
        nexthop = rt.gateway if rt.flags & RTF_GATEWAY and rt.gateway is not None else dst
        lle = inet.arp.table.get(nexthop)
        if lle is None or lle.state != LLE_VALID or lle.mac is None:
            return None
        if len(cache) >= _ROUTE_CACHE_MAX:
            cache.clear()
        rc = cache[key] = RouteCache(src, dst, proto, inet.routes.generation, rt, nexthop, lle,
                                     self.params.ttl, self.params.mtudisc)
        return rc

    def output(self, src: int, dst: int, proto: int, payload: Buffer, *, ttl: int | None = None,
               tos: int = 0, df: bool = False, flags: int = 0, ip_id: int | None = None,
               tso_segsz: int = 0, opts: bytes = b"") -> None:
        """Send ``payload`` as the data of an IPv4 packet (``ip_output``); ``opts``: IP
        options for its header (a multiple of 4 bytes, at most 40).

        ``tso_segsz``: ``payload`` is a TCP superframe to be cut into segments of that many
        payload bytes by the interface (TSO) or by :mod:`ip_gso`; its checksum need not
        be valid (it is made partial here)."""
        st = self.stats
        rt = self.route(dst, flags)
        if rt.flags & RTF_BLACKHOLE:
            rt.use += 1  # swallowed; NetBSD counts it in the route's Use too (rt_use)
            return
        if proto == IPPROTO_TCP and self.params.mtudisc and not rt.locks & RTV_MTU:
            # Path MTU discovery: NetBSD's tcp_output passes IP_MTUDISC while
            # net.inet.ip.mtudisc is on and ip_output then sets DF, so a router with a
            # smaller MTU answers "fragmentation needed" instead of fragmenting. Before
            # this fix TCP never set DF (tests/net/net/t_mtudisc.sh, mtudisc_basic).
            df = True
        inet = self.inet
        is_bcast = dst == 0xFFFFFFFF or dst in inet.bcast_addrs
        if is_bcast and not flags & IP_ALLOWBROADCAST:
            raise kerr(errno.EACCES)
        if src == 0:
            src = self.source_for(dst, rt)
        elif not flags & IP_RAWOUTPUT and inet.is_bcast_or_mcast(src):
            # RFC 1122 3.2.1.3: a broadcast or multicast address is never a source.
            self.stats.ips_odropped += 1
            raise kerr(errno.EADDRNOTAVAIL)
        hlen = IP_HDR_LEN + len(opts)
        total = hlen + len(payload)
        if total > IP_MAXPACKET:
            raise kerr(errno.EMSGSIZE)
        if flags & IP_RAWOUTPUT:
            buf = self._rawoutput_header(payload, src)
        else:
            buf = bytearray(total) if not tso_segsz else \
                Mbuf(bytes(total), M_CSUM_TSOv4 | M_CSUM_PARTIAL, tso_segsz, IP_HDR_LEN)
            IP_HDR.pack_into(buf, 0, 0x40 | (hlen >> 2), tos, total, ip_id if ip_id is not None else self.next_id(),
                             IP_DF if df else 0, self.params.ttl if ttl is None else ttl, proto, 0, src, dst)
            buf[IP_HDR_LEN:hlen] = opts
            buf[hlen:] = payload
            c = in_cksum(memoryview(buf)[:hlen])
            buf[10] = c >> 8
            buf[11] = c & 0xFF
            if tso_segsz:
                set_partial_tcp_csum(buf, IP_HDR_LEN)
        st.ips_localout += 1
        self.send_packet(buf, (buf[0] & 0xF) << 2, rt, dst, flags, is_bcast)

    def _rawoutput_header(self, payload: Buffer, src: int) -> bytearray:
        """IP_HDRINCL (NetBSD rip_output + ip_output): the user's header is checked
        (EINVAL for a bad header length or an ip_len that is not the packet's length), a
        zero ip_id and source are filled in and the header checksum is always computed --
        before this fix the user's (usually zero) checksum went out as is and every
        receiver dropped the packet as ips_badsum."""
        buf = bytearray(payload)
        rhlen = (buf[0] & 0xF) << 2 if buf else 0
        if len(buf) < IP_HDR_LEN or rhlen < IP_HDR_LEN or rhlen > len(buf) or \
                ((buf[2] << 8) | buf[3]) != len(buf):
            raise kerr(errno.EINVAL)
        if buf[4] == 0 and buf[5] == 0:
            nid = self.next_id()
            buf[4], buf[5] = nid >> 8, nid & 0xFF
        if buf[12:16] == b"\0\0\0\0":
            buf[12:16] = src.to_bytes(4, "big")
        buf[10] = buf[11] = 0
        c = in_cksum(memoryview(buf)[:rhlen])
        buf[10] = c >> 8
        buf[11] = c & 0xFF
        return buf

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
            if type(buf) is Mbuf:
                plain = self._finish_in_software(buf, hlen)
                if plain is None:
                    return
                buf = plain
            inet.loop_output(buf)
            return
        if ifp.flags & (IFF_UP | IFF_RUNNING) != IFF_UP | IFF_RUNNING:
            # NetBSD's ether_output: ENETDOWN when the interface is down or has no link
            # driver. Before this fix the packet vanished (oerrors) and sendto succeeded.
            self.stats.ips_odropped += 1
            raise kerr(errno.ENETDOWN)
        if is_bcast is None:
            is_bcast = dst == 0xFFFFFFFF or dst in inet.bcast_addrs
        nexthop = rt.gateway if rt.flags & RTF_GATEWAY and rt.gateway is not None else dst
        mtu = rt.path_mtu
        if type(buf) is Mbuf:
            plain = self._offload_output(buf, hlen, ifp, mtu, nexthop, is_bcast)
            if plain is None:
                return
            buf = plain
        if len(buf) <= mtu:
            inet.arp.output(ifp, buf, nexthop, is_bcast, inet.now())
            return
        if buf[9] == IPPROTO_TCP and tx_offloads(ifp) & IFCAP_TSOv4 and len(buf) <= ifp.tso_mtu \
                and len(buf) >= hlen + 20:
            # A TCP packet bigger than the MTU toward an interface that does TSO: the
            # interface segments it (to the MTU) instead of IP fragmenting it.
            thl = (buf[hlen + 12] >> 4) << 2
            m = Mbuf(buf, M_CSUM_TSOv4, max(1, mtu - hlen - thl), hlen)
            if self._offload_output(m, hlen, ifp, mtu, nexthop, is_bcast) is None:
                return
        if buf[6] & 0x40:  # DF
            self.stats.ips_cantfrag += 1
            raise kerr(errno.EMSGSIZE)
        now = inet.now()
        for frag in self.fragment(buf, hlen, mtu):
            inet.arp.output(ifp, frag, nexthop, is_bcast, now)

    def _offload_output(self, m: Mbuf, hlen: int, ifp: Ifnet, mtu: int, nexthop: int,
                        is_bcast: bool) -> bytearray | None:
        """Send a packet carrying offload requests (TSO superframe, partial TCP checksum):
        through the interface's offloads when it has them, else finished here (segmented
        by ip_gso, checksum completed). Returns a plain packet for the normal path, or
        None when it has been sent."""
        fl = m.csum_flags
        caps = tx_offloads(ifp)
        n = len(m)
        thl = (m[hlen + 12] >> 4) << 2 if fl & M_CSUM_TSOv4 else 0
        if fl & M_CSUM_TSOv4 and (n > mtu or n - hlen - thl > m.segsz):
            # More than one segment: cut (by the interface or here) even when the whole
            # would fit the MTU, since the segment size is the peer's MSS.
            segsz = max(1, min(m.segsz, mtu - hlen - thl))
            if caps & IFCAP_TSOv4 and n <= ifp.tso_mtu:
                if not fl & M_CSUM_PARTIAL:
                    set_partial_tcp_csum(m, hlen)
                m.csum_flags = M_CSUM_TSOv4 | M_CSUM_PARTIAL
                m.segsz = segsz
                m.csum_start = hlen
                self.tso_out += 1
                self.inet.arp.output(ifp, m, nexthop, is_bcast, self.inet.now())
                return None
            try:
                segs = tcp_segment_superframe(m, segsz)
            except GsoError:
                self.stats.ips_odropped += 1
                return None
            self.gso_sw += 1
            self.gso_segs += len(segs)
            now = self.inet.now()
            for seg in segs:
                self.inet.arp.output(ifp, seg, nexthop, is_bcast, now)
            return None
        if fl & M_CSUM_PARTIAL and caps & IFCAP_CSUM_TCPv4_Tx and n <= mtu:
            m.csum_flags = M_CSUM_PARTIAL
            m.csum_start = hlen
            self.inet.arp.output(ifp, m, nexthop, is_bcast, self.inet.now())
            return None
        return self._finish_in_software(m, hlen)

    def _finish_in_software(self, m: Mbuf, hlen: int) -> bytearray | None:
        """A plain packet from an offload request no interface will honour (loopback, a
        packet that fits the MTU): the TCP checksum completed here."""
        if m.csum_flags & M_CSUM_PARTIAL:
            done = complete_tcp_csum(m)
            if done is None:
                self.stats.ips_odropped += 1
                return None
            return bytearray(done)
        return bytearray(m)

    def fragment(self, buf: bytearray, hlen: int, mtu: int) -> list[bytearray]:
        """Split ``buf`` into fragments of at most ``mtu`` bytes (RFC 791 section 3.2).

        The first fragment keeps the whole header with its options; later ones carry
        only the options whose "copied" bit is set (NetBSD's ip_optcopy). Before this
        fix every fragment got a bare 20-byte header, so a forwarded packet with
        options lost them all.
        """
        st = self.stats
        data = memoryview(buf)[hlen:]
        _, tos, _, ip_id, off0, ttl, proto, _, src, dst = IP_HDR.unpack_from(buf)
        base_off = off0 & 0x1FFF
        more_after = off0 & IP_MF
        first_opts = bytes(buf[IP_HDR_LEN:hlen])
        later_opts = _optcopy(first_opts)
        if (mtu - hlen) & ~7 <= 0 or (mtu - IP_HDR_LEN - len(later_opts)) & ~7 <= 0:
            st.ips_cantfrag += 1
            raise kerr(errno.EMSGSIZE)
        frags = []
        pos = 0
        n = len(data)
        while pos < n:
            opts = first_opts if pos == 0 else later_opts
            fhlen = IP_HDR_LEN + len(opts)
            part = data[pos:pos + ((mtu - fhlen) & ~7)]
            last = pos + len(part) >= n
            off = base_off + (pos >> 3)
            if not last or more_after:
                off |= IP_MF
            frag = bytearray(fhlen + len(part))
            IP_HDR.pack_into(frag, 0, 0x40 | (fhlen >> 2), tos, len(frag), ip_id, off, ttl, proto, 0, src, dst)
            frag[IP_HDR_LEN:fhlen] = opts
            frag[fhlen:] = part
            c = in_cksum(memoryview(frag)[:fhlen])
            frag[10] = c >> 8
            frag[11] = c & 0xFF
            frags.append(frag)
            pos += len(part)
        st.ips_fragmented += 1
        st.ips_ofragments += len(frags)
        return frags


def _optcopy(opts: bytes) -> bytes:
    """The options to repeat in fragments after the first: those with the "copied" flag
    (0x80) set, padded with end-of-list to a multiple of 4 bytes (``ip_optcopy``); none
    from a malformed list."""
    hdr = bytes(IP_HDR_LEN) + opts
    try:
        found = ip_options(hdr, len(hdr))
    except OptionError:
        return b""
    out = b"".join(hdr[off:off + olen] for opt, off, olen in found if opt & 0x80)
    return out + b"\0" * (-len(out) % 4)
