"""IPv6 output through a per-destination cache (NetBSD's per-pcb ``in6p_route`` plus the
link header its neighbour entry gives; IPv4's is ``ip_output.RouteCache``).

``Ip6Output.output`` looks the route up, picks a hop limit, path MTU and flow label, and
``Inet6._link`` asks ``Nd6.resolve`` for the neighbour, all per packet; a bulk TCP
transfer asks the same questions of every segment. :class:`Ip6RouteCaches` keeps the
answers for one (destination, zone, next header, ports) and, while every one of them
still holds, builds the Ethernet and IPv6 headers from a template and hands the frame to
the interface: byte for byte what the full path sends (``test_ip6_rtcache`` checks it).

What a :class:`Route6Cache` was built from is checked on every packet, so a change takes
effect on the next one: the AF_INET6 route table's generation (every route added,
deleted or changed, path MTUs learned from Packet Too Big included), the node's address
generation (``In6Ifaddrs.generation``: an address or interface added or removed), the
neighbour entry (still the table's, REACHABLE, DELAY or PROBE, same link-layer address:
a STALE one goes the full path, which starts NUD's DELAY timer, RFC 4861 7.3.3), the interface (up,
running, not IFDISABLED, same MAC, link MTU and CurHopLimit) and the
``net.inet6.ip6.auto_flowlabel`` sysctl. Anything unusual (multicast, loopback, tun,
options, an unresolved neighbour, a packet over the path MTU) goes the full path.

TCP superframes (``tso_segsz``) go whole to an interface that does TSO for IPv6
(``IFCAP_TSOv6``: virtif with ``TUN_F_TSO6``; the host cuts them), with a partial TCP
checksum and the segment size on the :class:`~rumpnet.ifnet.Mbuf`, as IPv4's
``IpOutput._offload_output`` does; otherwise (``net.inet.tcp.gso``) they are cut here in
software (``ip_gso.tcp_gso_split``, as IPv4's ``IpOutput._gso_cached`` does).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from rumpnet.ifnet import M_CSUM_PARTIAL, IFCAP_TSOv6, M_CSUM_TSOv6, Mbuf
from rumpnet.netinet.ip_gso import tcp_gso_split
from rumpnet.netinet.ip_output import tx_offloads
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_cksum import in6_pseudo_sum
from rumpnet.netinet6.ip6 import IPV6_MAXPACKET
from rumpnet.netinet6.ip6_output import Ip6Pktopts
from rumpnet.netinet6.nd6 import ND6_LLINFO_DELAY, ND6_LLINFO_PROBE, ND6_LLINFO_REACHABLE, Llinfo6

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet6.in6_domain import Inet6Domain
    from rumpnet.netinet6.in6_var import In6Ifextra

Buffer = bytes | bytearray | memoryview

IP6_HDR_LEN = 40
IPPROTO_TCP = 6
_ETHERTYPE_IPV6 = b"\x86\xdd"
# Ethernet header; IPv6 version, traffic class and flow label; payload length; next
# header, hop limit and the addresses (constant per destination).
_ETHER_IP6 = struct.Struct("!14sIH34s")
_RTCACHE_MAX = 1024
_TCP_START = 14 + IP6_HDR_LEN     # the TCP header in a frame the cache builds
# Neighbour states a packet goes to without changing anything (Nd6.resolve returns the
# link-layer address and leaves the entry alone; RFC 4861 7.3.3 and appendix C): not
# STALE, where sending starts the DELAY timer, nor INCOMPLETE.
_SENDABLE = frozenset((ND6_LLINFO_REACHABLE, ND6_LLINFO_DELAY, ND6_LLINFO_PROBE))
_gso6_structs: dict[int, struct.Struct] = {}

CacheKey = tuple[int, int, int, bytes]


def _gso6_struct(thl: int) -> struct.Struct:
    """Ethernet, IPv6 and a ``thl``-byte TCP header in one pack: ports, sequence number,
    acknowledgment, data offset, flags, window, checksum, urgent pointer and options."""
    st = _gso6_structs.get(thl)
    if st is None:
        st = _gso6_structs[thl] = struct.Struct(f"!14sIH34s4sI4sBB2sH{thl - 18}s")
    return st


class Route6Cache:
    """One flow's resolved output path and header template (see the module docstring)."""

    __slots__ = ("src", "gen", "addr_gen", "ext", "ifp", "ifp_lladdr", "ln", "lladdr", "hlim", "linkmtu",
                 "mtu", "auto_flow", "prefix", "vcf", "tail", "psum")

    def __init__(self, src: int, dst: int, nxt: int, ext: In6Ifextra, ifp: Ifnet, ln: Llinfo6,
                 hlim: int, mtu: int, flow: int, gens: tuple[int, int], auto_flow: int) -> None:
        assert ln.lladdr is not None
        self.src = src
        self.gen, self.addr_gen = gens
        self.ext = ext
        self.ifp = ifp
        self.ifp_lladdr = ifp.lladdr
        self.ln = ln
        self.lladdr: bytes = ln.lladdr
        self.hlim = hlim
        self.linkmtu = ext.linkmtu
        self.mtu = mtu
        self.auto_flow = auto_flow
        self.prefix = ln.lladdr + ifp.lladdr + _ETHERTYPE_IPV6
        self.vcf = (6 << 28) | flow          # the traffic class goes in per packet
        self.tail = bytes((nxt, hlim)) + in6.pack(src) + in6.pack(dst)
        self.psum = in6_pseudo_sum(src, dst, nxt, 0)   # RFC 8200 8.1 without the length


class Ip6RouteCaches:
    """The caches of one kernel's inet6 domain (``k.inet6.rtcache``)."""

    def __init__(self, domain: Inet6Domain) -> None:
        self.domain = domain
        self.caches: dict[CacheKey, Route6Cache] = {}
        self.gso_sw = 0          # superframes cut here
        self.tso_out = 0         # superframes handed whole to a TSO6 interface
        self.gso_segs = 0        # the segments that made
        self.cached_out = 0      # plain packets (not superframes) sent through a cache

    def valid(self, rc: Route6Cache) -> bool:
        node = self.domain.node
        ln, ext, ifp = rc.ln, rc.ext, rc.ifp
        return (rc.gen == self.domain.routes.generation and rc.addr_gen == node.ifaddrs.generation
                and ln.state in _SENDABLE and ln.lladdr is rc.lladdr
                and node.nd6.table.get((ln.ifindex, ln.addr)) is ln
                and ext.up and not ext.disabled and ext.ndi.chlim == rc.hlim and ext.linkmtu == rc.linkmtu
                and ifp.lladdr is rc.ifp_lladdr and ifp.is_up and ifp.running
                and node.ip6_params.auto_flowlabel == rc.auto_flow)

    def lookup(self, src: int, dst: int, nxt: int, ports: bytes, zone: int) -> Route6Cache | None:
        """The valid cache for this flow, built when it can be; None: the full path."""
        key = (dst, zone, nxt, ports)
        rc = self.caches.get(key)
        if rc is not None and rc.src == src and self.valid(rc):
            return rc
        return self._fill(key, src)

    def _fill(self, key: CacheKey, src: int) -> Route6Cache | None:
        """A cache for a plain path (a unicast destination through an Ethernet interface
        that is up, a neighbour with a usable link-layer address, one of our addresses as the source), else
        None, and any stale entry for the key goes."""
        self.caches.pop(key, None)
        dst, zone, nxt, ports = key
        d = self.domain
        node = d.node
        if src == 0 or in6.is_multicast(dst) or node.ifaddrs.lookup(src, zone) is None:
            return None
        scoped = in6.is_scoped(dst)
        if scoped and not zone:
            return None
        rt = node.routes.lookup6(dst, zone if scoped else 0)
        if rt is None or rt.reject or rt.blackhole:
            return None
        ext = node.ifaddrs.ifs.get(rt.ifindex)
        ifp = d.kernel.ifnet.by_index(rt.ifindex)
        if (ext is None or not ext.up or ext.disabled or ext.loopback or not ext.lladdr or ifp is None
                or ifp.loopback or ifp.l3_output is not None or not (ifp.is_up and ifp.running)):
            return None
        ln = node.nd6.table.get((rt.ifindex, rt.gateway or dst))
        if ln is None or ln.state not in _SENDABLE or ln.lladdr is None:
            return None
        out = node.ip6_output
        opts = Ip6Pktopts()
        auto = node.ip6_params.auto_flowlabel
        flow = out.flowlabel(src, dst, nxt, ports) if auto else 0
        if len(self.caches) >= _RTCACHE_MAX:
            self.caches.clear()
        rc = self.caches[key] = Route6Cache(
            src, dst, nxt, ext, ifp, ln, out.hoplimit(dst, rt.ifindex, opts),
            out.path_mtu(dst, rt, d.now(), opts), flow,
            (d.routes.generation, node.ifaddrs.generation), auto)
        return rc

    def output(self, src: int, dst: int, nxt: int, payload: Buffer, zone: int, tclass: int = 0) -> bool:
        """Send ``payload`` (an upper-layer packet, its checksum done) through the flow's
        cache; False (nothing sent) when the full path must take it."""
        rc = self.lookup(src, dst, nxt, bytes(payload[:4]), zone)
        plen = len(payload)
        if rc is None or IP6_HDR_LEN + plen > rc.mtu:
            return False
        frame = _ETHER_IP6.pack(rc.prefix, rc.vcf | tclass << 20, plen, rc.tail) + payload
        self.domain.node.ip6stat.ip6s_localout += 1
        self.cached_out += 1
        rc.ifp.transmit_frame(frame)
        return True

    def output_gso(self, src: int, dst: int, seg: Buffer, segsz: int, zone: int, tclass: int = 0) -> bool:
        """Cut TCP superframe ``seg`` (header and payload) into segments of ``segsz``
        payload bytes and send them through the flow's cache, each what TCP would have
        sent on its own (``tcp_gso_split``); False (nothing sent) without a cache or
        when a segment would not fit the path MTU."""
        mv = memoryview(seg)
        thl = (seg[12] >> 4) << 2
        if segsz < 1 or thl < 20 or len(seg) <= thl:
            return False
        rc = self.lookup(src, dst, IPPROTO_TCP, bytes(mv[0:4]), zone)
        if rc is None or IP6_HDR_LEN + thl + segsz > rc.mtu:
            return False
        if tx_offloads(rc.ifp) & IFCAP_TSOv6 and IP6_HDR_LEN + len(seg) <= rc.ifp.tso_mtu:
            self._tso_output(rc, seg, segsz, tclass)
            return True
        st = _gso6_struct(thl)
        ports, ack, off = bytes(mv[0:4]), bytes(mv[8:12]), seg[12]
        win, opts = bytes(mv[14:16]), bytes(mv[18:thl])
        prefix, vcf, tail = rc.prefix, rc.vcf | tclass << 20, rc.tail
        transmit = rc.ifp.transmit_frame
        nseg = 0
        for seq, f, chunk, c in tcp_gso_split(mv, segsz, rc.psum):
            transmit(st.pack(prefix, vcf, thl + len(chunk), tail, ports, seq, ack, off, f, win, c, opts) + chunk)
            nseg += 1
        self.domain.node.ip6stat.ip6s_localout += nseg
        self.gso_sw += 1
        self.gso_segs += nseg
        return True

    def _tso_output(self, rc: Route6Cache, seg: Buffer, segsz: int, tclass: int) -> None:
        """Superframe ``seg`` (TCP header and payload) to a TSO6 interface whole: one
        frame whose TCP checksum holds the pseudo-header sum (RFC 8200 8.1, with the
        superframe's length: the host redoes it per segment) and whose segment size is
        at most the path MTU's."""
        plen = len(seg)
        thl = (seg[12] >> 4) << 2
        m = Mbuf(_ETHER_IP6.pack(rc.prefix, rc.vcf | tclass << 20, plen, rc.tail), M_CSUM_TSOv6 | M_CSUM_PARTIAL,
                 min(segsz, rc.mtu - IP6_HDR_LEN - thl), _TCP_START)
        m += seg
        psum = (rc.psum + plen) % 0xFFFF
        m[_TCP_START + 16] = psum >> 8
        m[_TCP_START + 17] = psum & 0xFF
        self.domain.node.ip6stat.ip6s_localout += 1
        self.tso_out += 1
        rc.ifp.transmit_frame(m)  # type: ignore[arg-type]  # an Mbuf, as ether_output passes


def tso_max6(domain: Inet6Domain, dst: int, zone: int, gso: bool) -> int:
    """TCP payload and option bytes per superframe toward ``dst`` (IPv6's answer to
    ``IpOutput.tso_max``): toward an interface with TSO6 its ``tso_mtu`` less the IPv6
    and base TCP headers; with ``gso`` (``net.inet.tcp.gso``) up to IPv6's largest
    payload toward an Ethernet interface, cut in :meth:`Ip6RouteCaches.output_gso` or
    :func:`tcp_gso_segments`; 0 (one segment per packet) otherwise: no route, loopback,
    a link without link-layer addresses. How a superframe leaves is decided per packet
    (``tx_offloads``)."""
    if in6.is_multicast(dst):
        return 0
    rt = domain.node.routes.lookup6(dst, zone if in6.is_scoped(dst) else 0)
    ifp = domain.kernel.ifnet.by_index(rt.ifindex) if rt is not None else None
    if ifp is None or ifp.loopback or ifp.l3_output is not None:
        return 0
    if ifp.capabilities & IFCAP_TSOv6:
        return min(ifp.tso_mtu - IP6_HDR_LEN, IPV6_MAXPACKET) - 20
    return IPV6_MAXPACKET - 20 if gso else 0


def tcp_gso_segments(src: int, dst: int, seg: Buffer, segsz: int) -> list[bytes]:
    """The whole TCP segments (header, payload, checksum over IPv6's pseudo-header)
    superframe ``seg`` stands for, for the full output path."""
    mv = memoryview(seg)
    thl = (seg[12] >> 4) << 2
    head = bytes(mv[:thl])
    out = []
    for seq, f, chunk, c in tcp_gso_split(mv, segsz, in6_pseudo_sum(src, dst, IPPROTO_TCP, 0)):
        out.append(head[:4] + seq.to_bytes(4, "big") + head[8:13] + bytes((f,)) + head[14:16]
                   + c.to_bytes(2, "big") + head[18:] + bytes(chunk))
    return out
