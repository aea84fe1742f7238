"""IPv6 input (NetBSD's ``ip6_input.c``, ``dest6.c``, ``route6.c``; RFC 8200).

:meth:`Ip6Input.input` checks a received packet, processes its Hop-by-Hop options,
decides between local delivery, forwarding and the floor, walks the extension headers
(Destination Options, Routing, Fragment through ``frag6``) and returns what the node
must do: an :class:`Ip6Delivery` (hand ``packet[off:]`` to protocol ``nxt``), an
:class:`Ip6ForwardRequest` (``ip6_forward`` decides next) or None (dropped and counted;
when RFC 8200 wants the source told, an ``Icmp6ErrorRequest`` event is emitted). The
checks themselves are pure functions (:func:`ip6_check_addrs`, :func:`ip6_process_opts`)
that return the counter to bump.
"""

from __future__ import annotations

from dataclasses import dataclass

from rumpnet.netinet6 import in6
from rumpnet.netinet6.frag6 import Frag6
from rumpnet.netinet6.in6_var import IN6_IFF_NOTREADY, ND6_IFF_IFDISABLED, In6Ifaddr, In6Ifaddrs
from rumpnet.netinet6.ip6 import (
    IP6_HDR_LEN,
    IP6OPT_ROUTER_ALERT,
    IP6OPT_TYPE_DISCARD,
    IP6OPT_TYPE_FORCEICMP,
    IP6OPT_TYPE_ICMP,
    IP6OPT_TYPE_SKIP,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    OFF_DST,
    OFF_HLIM,
    OFF_NXT,
    OFF_SRC,
    Ip6ParseError,
    Ip6Repr,
    check_fixed,
    ext_len,
    ip6opt_type,
    parse_header,
    parse_options,
    parse_rthdr,
)
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Core, Ip6Params, Ip6Stats, Outbox

ICMP6_PARAM_PROB = 4
ICMP6_PARAMPROB_HEADER = 0       # erroneous header field
ICMP6_PARAMPROB_NEXTHEADER = 1   # unrecognized next header
ICMP6_PARAMPROB_OPTION = 2       # unrecognized IPv6 option

# The options this node understands; any other is "unrecognized" (RFC 8200 4.2). Router
# Alert only means something hop by hop.
_KNOWN_HBH = frozenset({IP6OPT_ROUTER_ALERT})
_KNOWN_DEST: frozenset[int] = frozenset()
IP6_INPUT_FLOWS = 1024   # flows whose address checks ip6_input remembers (Ip6InputFlows)


@dataclass(slots=True)
class Ip6Delivery:
    """A packet for this node: hand ``packet[off:]`` to upper-layer protocol ``nxt``.
    ``packet`` is whole (reassembled when it came in fragments) and trimmed to its
    payload length; ``src``/``dst`` are its addresses; ``nxt_field`` is the offset of
    the byte that named ``nxt`` (where a Parameter Problem code 1 points, RFC 4443 3.4).
    The rest of the fixed header is read from ``packet`` when asked for (:attr:`tclass`,
    :attr:`hlim`): the hot path (TCP) builds no header object."""

    packet: bytes
    src: int
    dst: int
    nxt: int
    off: int
    nxt_field: int
    ifindex: int
    l2mcast: bool = False
    rtalert: bool = False     # a Router Alert option was present (MLD, RFC 3810 5)

    @property
    def hlim(self) -> int:
        """The Hop Limit (RFC 8200 3)."""
        return self.packet[OFF_HLIM]

    @property
    def tclass(self) -> int:
        """The Traffic Class (RFC 8200 3, 7)."""
        return ((self.packet[0] & 0x0F) << 4) | (self.packet[1] >> 4)


@dataclass(slots=True)
class Ip6ForwardRequest:
    """A packet for someone else, Hop-by-Hop options already processed."""

    packet: bytes
    hdr: Ip6Repr
    ifindex: int
    l2mcast: bool = False


def ip6_check_addrs(src: int, dst: int, from_loopback: bool) -> str | None:
    """Source and destination checks of ``ip6_input``: the ``ip6s_*`` counter of the
    rule a packet breaks, or None.

    * a multicast source or an unspecified destination (RFC 4291 2.7, 2.5.2);
    * v4-mapped addresses on the wire (RFC 4942 2.1.4, RFC 4291 2.5.5.2);
    * ::1 or interface-local multicast from a real link (RFC 4291 2.5.3, 2.7);
    * multicast of the reserved scope 0 (RFC 4291 2.7).
    """
    if in6.is_multicast(src) or dst == in6.IN6ADDR_ANY:
        return "ip6s_badscope"
    if in6.is_v4mapped(src) or in6.is_v4mapped(dst):
        return "ip6s_badscope"
    if not from_loopback:
        if src == in6.IN6ADDR_LOOPBACK or dst == in6.IN6ADDR_LOOPBACK:
            return "ip6s_badscope"
        if in6.is_mc_intfacelocal(dst):
            return "ip6s_badscope"
    if in6.is_multicast(dst) and in6.mc_scope(dst) == 0:
        return "ip6s_badscope"
    return None


@dataclass(slots=True)
class OptVerdict:
    """What to do with a packet whose options header was not fine: bump ``counter``
    and, when ``code`` is not None, send a Parameter Problem pointing at ``pointer``."""

    counter: str
    code: int | None = None
    pointer: int = 0


def ip6_process_opts(pkt: bytes, off: int, hlen: int, known: frozenset[int],
                     dst_multicast: bool) -> tuple[OptVerdict | None, bool]:
    """Process the options of the Hop-by-Hop or Destination Options header at ``off``
    (``ip6_process_hopopts`` and ``dest6_input``). Returns (verdict or None to go on,
    whether a Router Alert option was seen). An unrecognized option's type says what to
    do (RFC 8200 4.2): 00 skip it, 01 discard silently, 10 discard and send a Parameter
    Problem code 2 whatever the destination, 11 the same unless it was multicast."""
    try:
        opts = parse_options(pkt, off + 2, off + hlen)
    except Ip6ParseError as e:
        return OptVerdict(e.kind), False
    rtalert = False
    for ooff, otype, data in opts:
        if otype in known:
            if otype == IP6OPT_ROUTER_ALERT:
                if len(data) != 2:   # RFC 2711 2.1: a 2-octet value
                    return OptVerdict("ip6s_badoptions", ICMP6_PARAMPROB_HEADER, ooff + 1), False
                rtalert = True
            continue
        action = ip6opt_type(otype)
        if action == IP6OPT_TYPE_SKIP:
            continue
        if action == IP6OPT_TYPE_DISCARD or (action == IP6OPT_TYPE_ICMP and dst_multicast):
            return OptVerdict("ip6s_badoptions"), False
        assert action in (IP6OPT_TYPE_FORCEICMP, IP6OPT_TYPE_ICMP)
        return OptVerdict("ip6s_badoptions", ICMP6_PARAMPROB_OPTION, ooff), False
    return None, rtalert


class Ip6InputFlows:
    """The address checks and the local-address lookup of ``ip6_input`` remembered per
    flow, as IPv4's input answers them from a set of local addresses: a packet whose
    source and destination (the 32 bytes as received) and interface are those of a
    packet that passed them to a ready unicast address of this node passes them again,
    and its addresses are not converted again. Forgotten when any address or interface
    is added or removed (``In6Ifaddrs.generation``); the address must still be ready
    (RFC 4862 5.4: not tentative, not duplicated). Multicast, forwarded and dropped
    packets are never remembered: they take every check each time."""

    def __init__(self, ifaddrs: In6Ifaddrs, size: int = IP6_INPUT_FLOWS) -> None:
        self.ifaddrs = ifaddrs
        self.size = size
        self._flows: dict[bytes, tuple[int, int, int, In6Ifaddr]] = {}
        self._gen = ifaddrs.generation

    def get(self, pkt: bytes, ifindex: int) -> tuple[int, int] | None:
        """(source, destination) of a remembered flow, or None: check this packet."""
        flow = self._flows.get(pkt[OFF_SRC:IP6_HDR_LEN])
        if (flow is None or flow[2] != ifindex or flow[3].flags & IN6_IFF_NOTREADY   # In6Ifaddr.ready, inline
                or self._gen != self.ifaddrs.generation):
            return None
        return flow[0], flow[1]

    def remember(self, pkt: bytes, ifindex: int, src: int, dst: int, ia: In6Ifaddr) -> None:
        if self._gen != self.ifaddrs.generation or len(self._flows) >= self.size:
            self._flows.clear()
            self._gen = self.ifaddrs.generation
        self._flows[pkt[OFF_SRC:IP6_HDR_LEN]] = (src, dst, ifindex, ia)

    def __len__(self) -> int:
        return len(self._flows)


class Ip6Input(Ip6Core):
    """``ip6_input`` for one node: its addresses, tunables, counters and reassembly."""

    def __init__(self, params: Ip6Params, stats: Ip6Stats, ifaddrs: In6Ifaddrs, frag6: Frag6,
                 out: Outbox | None = None) -> None:
        super().__init__(out)
        self.params = params
        self.stats = stats
        self.ifaddrs = ifaddrs
        self.frag6 = frag6
        self.flows = Ip6InputFlows(ifaddrs)

    def _error(self, pkt: bytes, ifindex: int, code: int, pointer: int, l2mcast: bool) -> None:
        self.out.event(Icmp6ErrorRequest(pkt, ifindex, ICMP6_PARAM_PROB, code, pointer, l2mcast))

    def _verdict(self, v: OptVerdict, pkt: bytes, ifindex: int, l2mcast: bool) -> None:
        self.stats.bump(v.counter)
        if v.code is not None:
            self._error(pkt, ifindex, v.code, v.pointer, l2mcast)

    def input(self, data: bytes | bytearray | memoryview, ifindex: int, now: float,
              l2mcast: bool = False) -> Ip6Delivery | Ip6ForwardRequest | None:
        """Check one received packet (see the module docstring). Never raises for what
        the packet holds."""
        st = self.stats
        st.ip6s_total += 1
        try:
            _vcf, plen, nxt, _hlim = check_fixed(data)
        except Ip6ParseError as e:
            st.bump(e.kind)
            return None
        pkt = bytes(data[:IP6_HDR_LEN + plen])   # trailing link padding goes
        st.ip6s_nxthist[nxt] += 1
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or ext.ndi.flags & ND6_IFF_IFDISABLED or not ext.up:   # In6Ifextra.disabled, inline
            st.ip6s_ifdisabled += 1    # no IPv6 on this interface (down; RFC 4862 5.4.5)
            return None
        flow = self.flows.get(pkt, ifindex)
        local: bool | None
        if flow is not None:
            src, dst = flow      # checked before, to a ready address of ours
            local = True
        else:
            src, dst = in6.unpack(pkt, OFF_SRC), in6.unpack(pkt, OFF_DST)
            bad = ip6_check_addrs(src, dst, ext.loopback)
            if bad is not None:
                st.bump(bad)
                return None
            local = self._is_local(src, dst, pkt, ifindex)
            if local is None:
                return None
        off, nxt_field, rtalert = IP6_HDR_LEN, OFF_NXT, False
        if nxt == IPPROTO_HOPOPTS:
            # RFC 8200 4.3: processed before anything else, by every node on the path.
            hop = self._hopopts(pkt, dst, ifindex, l2mcast)
            if hop is None:
                return None
            off, nxt, nxt_field, rtalert = hop
        if not local:
            return Ip6ForwardRequest(pkt, parse_header(pkt), ifindex, l2mcast)
        return self._deliver_walk(pkt, src, dst, off, nxt, nxt_field, ifindex, now, l2mcast, rtalert)

    def _is_local(self, src: int, dst: int, pkt: bytes, ifindex: int) -> bool | None:
        """True: for this node; False: to forward; None: dropped (counted)."""
        st = self.stats
        ext = self.ifaddrs.ifs[ifindex]
        if in6.is_multicast(dst):
            # No multicast routing here: a group this interface has not joined is
            # nobody's business on this node (ip6s_notmember).
            if ext.joined(dst) or dst in (in6.IN6ADDR_LINKLOCAL_ALLNODES, in6.IN6ADDR_INTFACELOCAL_ALLNODES):
                return True
            st.ip6s_notmember += 1
            return None
        ia = self.ifaddrs.lookup(dst, ifindex)
        if ia is not None:
            if ia.ready:
                self.flows.remember(pkt, ifindex, src, dst, ia)
                return True
            # RFC 4862 5.4: packets to a tentative (or duplicated) address are dropped.
            st.ip6s_notready += 1
            return None
        if self.params.forwarding:
            return False
        st.ip6s_cantforward += 1
        return None

    def _hopopts(self, pkt: bytes, dst: int, ifindex: int, l2mcast: bool) -> tuple[int, int, int, bool] | None:
        try:
            hlen = ext_len(pkt, IP6_HDR_LEN, IPPROTO_HOPOPTS)
        except Ip6ParseError as e:
            self.stats.bump(e.kind)
            return None
        verdict, rtalert = ip6_process_opts(pkt, IP6_HDR_LEN, hlen, _KNOWN_HBH, in6.is_multicast(dst))
        if verdict is not None:
            self._verdict(verdict, pkt, ifindex, l2mcast)
            return None
        return IP6_HDR_LEN + hlen, pkt[IP6_HDR_LEN], IP6_HDR_LEN, rtalert

    def _deliver_walk(self, pkt: bytes, src: int, dst: int, off: int, nxt: int, nxt_field: int, ifindex: int,
                      now: float, l2mcast: bool, rtalert: bool) -> Ip6Delivery | None:
        """The extension headers after Hop-by-Hop, in order (RFC 8200 4.1), up to the
        upper layer."""
        st = self.stats
        for _ in range(self.params.hdrnestlimit):
            if nxt == IPPROTO_HOPOPTS:
                # RFC 8200 4.1: only right after the IPv6 header.
                st.ip6s_badoptions += 1
                self._error(pkt, ifindex, ICMP6_PARAMPROB_NEXTHEADER, nxt_field, l2mcast)
                return None
            if nxt == IPPROTO_FRAGMENT:
                r = self.frag6.input(pkt, off, nxt_field, src, dst, ifindex, now)
                if r is None:
                    return None
                pkt, off, nxt, nxt_field = r.packet, r.off, r.nxt, r.nxt_field
                continue
            if nxt not in (IPPROTO_DSTOPTS, IPPROTO_ROUTING):
                st.ip6s_delivered += 1   # IPPROTO_NONE too: accepted, nothing follows
                if nxt == IPPROTO_NONE:
                    return None
                return Ip6Delivery(pkt, src, dst, nxt, off, nxt_field, ifindex, l2mcast, rtalert)
            try:
                hlen = ext_len(pkt, off, nxt)
            except Ip6ParseError as e:
                st.bump(e.kind)
                return None
            if not self._ext_ok(pkt, dst, off, hlen, nxt, ifindex, l2mcast):
                return None
            nxt_field, nxt, off = off, pkt[off], off + hlen
        st.ip6s_toomanyhdr += 1
        return None

    def _ext_ok(self, pkt: bytes, dst: int, off: int, hlen: int, nxt: int, ifindex: int, l2mcast: bool) -> bool:
        if nxt == IPPROTO_DSTOPTS:
            verdict, _ = ip6_process_opts(pkt, off, hlen, _KNOWN_DEST, in6.is_multicast(dst))
            if verdict is not None:
                self._verdict(verdict, pkt, ifindex, l2mcast)
                return False
            return True
        # route6_input: no routing type is executed here (RFC 5095 3 makes type 0 one of
        # the unrecognized ones). With Segments Left 0 the header is ignored; otherwise
        # the packet is refused, pointing at the Routing Type (RFC 8200 4.4).
        rh = parse_rthdr(pkt, off)
        if rh.segleft == 0:
            return True
        self.stats.ip6s_badoptions += 1
        self._error(pkt, ifindex, ICMP6_PARAMPROB_HEADER, off + 2, l2mcast)
        return False
