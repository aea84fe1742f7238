"""IPv6 output (NetBSD's ``ip6_output.c``; RFC 8200, RFC 8201, RFC 6437).

:class:`Ip6Output` turns (source, destination, next header, payload, options) into
packets for an interface: it looks the route up through the :class:`Route6Lookup` seam
(the route table is the stack's), selects a source (``in6_src``) and a hop limit, puts
an RFC 6437 flow label on, and fragments at the source when the path MTU (the route's,
the link's and what ``icmp6.Pmtu6`` learned) is smaller than the packet, unless the
caller said IPV6_DONTFRAG (EMSGSIZE then). :meth:`Ip6Output.route` does the same for a
packet that is already whole (ICMPv6 replies and errors). The result is a list of
:class:`~rumpnet.netinet6.ip6_var.Ip6Send` with the interface and next hop filled in.
"""

from __future__ import annotations

import errno
import hashlib
import random
from dataclasses import dataclass
from typing import Protocol

from rumpkern.errno import kerr
from rumpnet.netinet6 import in6
from rumpnet.netinet6.frag6 import ip6_fragment
from rumpnet.netinet6.in6_src import in6_selectsrc
from rumpnet.netinet6.in6_var import In6Ifaddrs
from rumpnet.netinet6.ip6 import IPPROTO_ROUTING, IPV6_MMTU, OFF_HLIM, ip6_build, parse_header
from rumpnet.netinet6.ip6_var import Ip6Params, Ip6Send, Ip6Stats


@dataclass(frozen=True, slots=True)
class Route6:
    """What a route lookup tells IPv6 output and forwarding: the interface, the gateway
    (0: the destination is on the link), the route's MTU (0: the interface's) and the
    NetBSD flags that change what happens (RTF_REJECT, RTF_BLACKHOLE, and RTF_DYNAMIC or
    RTF_MODIFIED, which a redirect made)."""

    ifindex: int
    gateway: int = 0
    mtu: int = 0
    reject: bool = False
    blackhole: bool = False
    dynamic: bool = False


class Route6Lookup(Protocol):
    def lookup6(self, dst: int, zone: int) -> Route6 | None:
        """Longest-prefix match over 128 bits; ``zone`` is the interface index for a
        scoped destination (RFC 4007), 0 otherwise."""
        ...


class PmtuSource(Protocol):
    def get(self, dst: int, now: float) -> int | None: ...


@dataclass(slots=True)
class Ip6Pktopts:
    """Per-packet output options (``struct ip6_pktopts`` and ``ip6_moptions``): a hop
    limit (-1: the default), traffic class, flow label (-1: automatic), IPV6_DONTFRAG,
    IPV6_USE_MIN_MTU (-1 only multicast, 0 never, 1 always), the multicast interface
    (IPV6_MULTICAST_IF), and extension headers to put in front of the payload, as
    (next-header value, header bytes) in the order they go."""

    hlim: int = -1
    tclass: int = 0
    flow: int = -1
    dontfrag: bool = False
    minmtu: int = -1
    multicast_ifindex: int = 0
    exthdrs: tuple[tuple[int, bytes], ...] = ()
    nexthop: int = 0            # IPV6_NEXTHOP (RFC 3542 6.1): a neighbour to send through
    nexthop_zone: int = 0
    rthdr: bytes = b""          # IPV6_RTHDR (RFC 3542 7): a type 0 header, checked by the socket


def rthdr0_route(dst: int, rthdr: bytes) -> tuple[int, bytes]:
    """What a type 0 routing header does on output (NetBSD's ``ip6_output``, RFC 8200
    4.4's sender side): the packet goes to the header's first address, and the header
    lists the remaining hops then the final destination. Returns (first hop, header).
    RFC 5095 forbids nodes to *process* type 0 headers; sending one is left to the
    application (ping6's hops, NetBSD's t_ping6_opts)."""
    segleft = rthdr[3]
    addrs = [rthdr[8 + 16 * i:24 + 16 * i] for i in range(segleft)]
    first = in6.unpack(addrs[0])
    return first, rthdr[:8] + b"".join(addrs[1:]) + in6.pack(dst)


class Ip6Output:
    """``ip6_output`` of one node."""

    def __init__(self, params: Ip6Params, stats: Ip6Stats, ifaddrs: In6Ifaddrs, routes: Route6Lookup,
                 rng: random.Random, pmtu: PmtuSource | None = None) -> None:
        self.params = params
        self.stats = stats
        self.ifaddrs = ifaddrs
        self.routes = routes
        self.rng = rng
        self.pmtu = pmtu
        self._flow_key = rng.getrandbits(128).to_bytes(16, "big")

    def flowlabel(self, src: int, dst: int, nxt: int, ports: bytes = b"") -> int:
        """RFC 6437 3: a flow label from a keyed hash of the flow's 5-tuple, never 0."""
        h = hashlib.blake2s(in6.pack(src) + in6.pack(dst) + bytes((nxt,)) + ports,
                            key=self._flow_key, digest_size=4)
        return (int.from_bytes(h.digest(), "big") & 0xFFFFF) or 1

    def _route(self, dst: int, zone: int, opts: Ip6Pktopts) -> Route6:
        if opts.rthdr:
            dst, _ = rthdr0_route(dst, opts.rthdr)
        if in6.is_multicast(dst):
            ifindex = opts.multicast_ifindex or zone
            if not ifindex:
                self.stats.ip6s_noroute += 1
                raise kerr(errno.ENETUNREACH, "multicast without an interface")
            return Route6(ifindex)
        if in6.is_scoped(dst) and not zone:
            self.stats.ip6s_noroute += 1
            raise kerr(errno.EHOSTUNREACH, f"{in6.ntop(dst)}: a scoped address needs a zone")
        rt = self.routes.lookup6(dst, zone if in6.is_scoped(dst) else 0)
        if rt is None or rt.reject:
            self.stats.ip6s_noroute += 1
            raise kerr(errno.EHOSTUNREACH)
        if opts.nexthop:
            # RFC 3542 6.1: the next hop must be a neighbour, reached without a gateway.
            hop = self.routes.lookup6(opts.nexthop, opts.nexthop_zone if in6.is_scoped(opts.nexthop) else 0)
            if hop is None or hop.gateway or hop.reject:
                self.stats.ip6s_noroute += 1
                raise kerr(errno.EHOSTUNREACH, "IPV6_NEXTHOP is not a neighbour")
            return Route6(hop.ifindex, opts.nexthop, rt.mtu)
        return rt

    def hoplimit(self, dst: int, ifindex: int, opts: Ip6Pktopts) -> int:
        """``in6_selecthlim``: the option, else 1 for multicast (IPV6_MULTICAST_HOPS
        default), else the link's CurHopLimit (from RAs), else net.inet6.ip6.hlim."""
        if opts.hlim >= 0:
            return opts.hlim
        if in6.is_multicast(dst):
            return self.params.defmcasthlim
        ext = self.ifaddrs.ifs.get(ifindex)
        return ext.ndi.chlim if ext is not None else self.params.hlim

    def path_mtu(self, dst: int, rt: Route6, now: float, opts: Ip6Pktopts) -> int:
        ext = self.ifaddrs.ifs.get(rt.ifindex)
        mtu = ext.linkmtu if ext is not None else IPV6_MMTU
        if rt.mtu:
            mtu = min(mtu, rt.mtu)
        learned = self.pmtu.get(dst, now) if self.pmtu is not None else None
        if learned:
            mtu = min(mtu, learned)
        if opts.minmtu == 1 or (opts.minmtu == -1 and in6.is_multicast(dst)):
            mtu = IPV6_MMTU   # RFC 3542 11.1: multicast goes at the minimum MTU by default
        return max(mtu, IPV6_MMTU)

    def source_for(self, dst: int, zone: int = 0, opts: Ip6Pktopts | None = None) -> tuple[int, int]:
        """``in6_selectsrc`` as a transport needs it before building a checksummed
        header (``in6_pcbconnect``, ``udp6_output``): (source, out interface) for
        ``dst``; the errno ``output`` would give when there is no route or no source."""
        rt = self._route(dst, zone, opts or Ip6Pktopts())
        return self._selectsrc(dst, zone, rt), rt.ifindex

    def _selectsrc(self, dst: int, zone: int, rt: Route6) -> int:
        # RFC 6724 rule 1 first: to one of our own addresses (through lo0) from itself,
        # which also keeps a looped link-local packet's source in its zone.
        own = self.ifaddrs.lookup(dst, zone)
        if own is not None and own.ready:
            return dst
        ia = in6_selectsrc(dst, self.ifaddrs, rt.ifindex, bool(self.params.use_deprecated))
        if ia is None:
            raise kerr(errno.EADDRNOTAVAIL, f"no source address for {in6.ntop(dst)}")
        return ia.addr

    def output(self, src: int, dst: int, nxt: int, payload: bytes | bytearray | memoryview, now: float,
               opts: Ip6Pktopts | None = None, zone: int = 0) -> list[Ip6Send]:
        """``ip6_output`` for an upper-layer payload: the packets to hand to the link.
        ``src`` 0 selects a source. ENETUNREACH/EHOSTUNREACH without a route,
        EADDRNOTAVAIL without a usable source, EMSGSIZE when IPV6_DONTFRAG forbids
        the fragments a packet would need."""
        opts = opts or Ip6Pktopts()
        rt = self._route(dst, zone, opts)
        if src == in6.IN6ADDR_ANY:
            src = self._selectsrc(dst, zone, rt)
        first = nxt
        chain = bytearray()
        exthdrs = opts.exthdrs
        if opts.rthdr:
            # RFC 8200 4.1: the Routing header follows Hop-by-Hop (and Destination Options
            # for the hops, which we never send); the upper-layer checksum was computed on
            # the final destination (RFC 8200 8.1).
            dst, rthdr = rthdr0_route(dst, opts.rthdr)
            exthdrs += ((IPPROTO_ROUTING, rthdr),)
        for hdr_nxt, hdr in reversed(exthdrs):
            chain[:0] = bytes((first,)) + hdr[1:]
            first = hdr_nxt
        flow = opts.flow
        if flow < 0:
            flow = self.flowlabel(src, dst, nxt, bytes(payload[:4])) if self.params.auto_flowlabel else 0
        pkt = ip6_build(src, dst, first, bytes(chain) + bytes(payload), self.hoplimit(dst, rt.ifindex, opts),
                        opts.tclass, flow)
        self.stats.ip6s_localout += 1
        return self._transmit(pkt, dst, rt, now, opts)

    def route(self, pkt: bytes, now: float, zone: int = 0) -> list[Ip6Send]:
        """Route a whole packet built by a core (an ICMPv6 reply or error)."""
        h = parse_header(pkt)
        opts = Ip6Pktopts()
        rt = self._route(h.dst, zone, opts)
        self.stats.ip6s_localout += 1
        return self._transmit(pkt, h.dst, rt, now, opts)

    def _transmit(self, pkt: bytes, dst: int, rt: Route6, now: float, opts: Ip6Pktopts) -> list[Ip6Send]:
        if rt.blackhole:
            self.stats.ip6s_odropped += 1
            return []
        nexthop = rt.gateway or dst
        mtu = self.path_mtu(dst, rt, now, opts)
        if len(pkt) <= mtu:
            return [Ip6Send(pkt, rt.ifindex, None, nexthop)]
        if opts.dontfrag:
            self.stats.ip6s_cantfrag += 1
            raise kerr(errno.EMSGSIZE, f"packet of {len(pkt)} bytes, path MTU {mtu}")
        frags = ip6_fragment(pkt, mtu, self.rng.getrandbits(32))   # RFC 7739: unpredictable ids
        self.stats.ip6s_fragmented += 1
        self.stats.ip6s_ofragments += len(frags)
        return [Ip6Send(f, rt.ifindex, None, nexthop) for f in frags]


def rewrite_hlim(pkt: bytes, hlim: int) -> bytes:
    """The packet with another hop limit (the header has no checksum to fix)."""
    b = bytearray(pkt)
    b[OFF_HLIM] = hlim
    return bytes(b)
