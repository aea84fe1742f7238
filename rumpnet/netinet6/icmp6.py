"""ICMPv6 (NetBSD's ``icmp6.c``; RFC 4443, RFC 8201).

The wire format (:class:`Icmp6Repr`, :func:`parse` for untrusted bytes, :func:`emit`),
and :class:`Icmp6`, the per-node core: echo replies, errors to the upper layers (as
:class:`Icmp6Ctl` events, kinds named as IPv4's ``ctlinput`` names them), Packet Too Big
into the path MTU table (:class:`Pmtu6`, RFC 8201, with the 1280-byte floor), neighbour
discovery and MLD messages handed to the cores registered for their types, and
:meth:`Icmp6.error`, which applies RFC 4443 2.4's rules for not sending errors and a
token bucket (2.4 f) on the kernel clock. :class:`Icmp6Filter` is ``ICMP6_FILTER``.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from rumpkern.errno import kerr
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_cksum import in6_cksum, in6_cksum_ok
from rumpnet.netinet6.in6_src import in6_selectsrc
from rumpnet.netinet6.in6_var import In6Ifaddrs
from rumpnet.netinet6.ip6 import IP6_HDR_LEN, IPPROTO_ICMPV6, IPV6_MMTU, ip6_build, ip6_lasthdr, parse_header
from rumpnet.netinet6.ip6_var import Counters, Ip6Core, Ip6Params, Outbox

ICMP6_DST_UNREACH = 1
ICMP6_PACKET_TOO_BIG = 2
ICMP6_TIME_EXCEEDED = 3
ICMP6_PARAM_PROB = 4
ICMP6_INFOMSG_MASK = 0x80
ICMP6_ECHO_REQUEST = 128
ICMP6_ECHO_REPLY = 129
MLD_LISTENER_QUERY = 130
MLD_LISTENER_REPORT = 131
MLD_LISTENER_DONE = 132
ND_ROUTER_SOLICIT = 133
ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_REDIRECT = 137
MLDV2_LISTENER_REPORT = 143

ICMP6_DST_UNREACH_NOROUTE = 0
ICMP6_DST_UNREACH_ADMIN = 1
ICMP6_DST_UNREACH_BEYONDSCOPE = 2
ICMP6_DST_UNREACH_ADDR = 3
ICMP6_DST_UNREACH_NOPORT = 4
ICMP6_DST_UNREACH_POLICY = 5
ICMP6_DST_UNREACH_REJECT = 6
ICMP6_TIME_EXCEED_TRANSIT = 0
ICMP6_TIME_EXCEED_REASSEMBLY = 1
ICMP6_PARAMPROB_HEADER = 0
ICMP6_PARAMPROB_NEXTHEADER = 1
ICMP6_PARAMPROB_OPTION = 2
ICMP6_PARAMPROB_FIRSTFRAG = 3

ICMP6_HDR = struct.Struct("!BBHI")       # type, code, checksum, 32 bits of type data
ICMP6_HDR_LEN = 8
ICMP6_ERR_MAXLEN = IPV6_MMTU - IP6_HDR_LEN   # RFC 4443 2.4 c: the error fits in 1280
_ECHO = struct.Struct("!HH")

# Highest code each error type defines (RFC 4443, RFC 6554, RFC 7112, RFC 8883).
_MAXCODE = {ICMP6_DST_UNREACH: 8, ICMP6_PACKET_TOO_BIG: 255, ICMP6_TIME_EXCEEDED: 1,
            ICMP6_PARAM_PROB: 10}

# ctlinput kinds (the names IPv4's transports already take) by (type, code).
_CTL_KIND = {
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT): "portunreach",
    (ICMP6_PARAM_PROB, ICMP6_PARAMPROB_NEXTHEADER): "protounreach",
    # Reassembly time exceeded (RFC 4443 3.3 code 1) says nothing about the path: the
    # kind IPv4's code 1 has, which no transport takes for an error (FreeBSD's
    # icmp6_errmap: 0), never the hard "timxceed" of a hop limit exceeded in transit.
    (ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_REASSEMBLY): "timxceed_reass",
}
_CTL_TYPE_KIND = {ICMP6_DST_UNREACH: "unreach", ICMP6_PACKET_TOO_BIG: "needfrag",
                  ICMP6_TIME_EXCEEDED: "timxceed", ICMP6_PARAM_PROB: "paramprob"}

# icp6s_outerrhist rows: (type, code) -> counter, NetBSD's icmp6_errcount.
_OUTERR = {
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOROUTE): "icp6s_odst_unreach_noroute",
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_ADMIN): "icp6s_odst_unreach_admin",
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_BEYONDSCOPE): "icp6s_odst_unreach_beyondscope",
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_ADDR): "icp6s_odst_unreach_addr",
    (ICMP6_DST_UNREACH, ICMP6_DST_UNREACH_NOPORT): "icp6s_odst_unreach_noport",
    (ICMP6_PACKET_TOO_BIG, 0): "icp6s_opacket_too_big",
    (ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_TRANSIT): "icp6s_otime_exceed_transit",
    (ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_REASSEMBLY): "icp6s_otime_exceed_reassembly",
    (ICMP6_PARAM_PROB, ICMP6_PARAMPROB_HEADER): "icp6s_oparamprob_header",
    (ICMP6_PARAM_PROB, ICMP6_PARAMPROB_NEXTHEADER): "icp6s_oparamprob_nextheader",
    (ICMP6_PARAM_PROB, ICMP6_PARAMPROB_OPTION): "icp6s_oparamprob_option",
    (ND_REDIRECT, 0): "icp6s_oredirect",
}


class Icmp6Params:
    """``net.inet6.icmp6.*`` tunables (NetBSD names and defaults)."""

    def __init__(self) -> None:
        self.rediraccept = 1
        self.redirtimeout = 600
        self.errppslimit = 100     # errors per second; 0 none, -1 no limit (ppsratecheck)
        self.mtudisc_hiwat = 1280  # path MTU entries made by validated Packet Too Big
        self.mtudisc_lowat = 256   # ... and by unvalidated ones


@dataclass(slots=True)
class Icmp6Stats(Counters):
    """``struct icmp6stat`` (``net.inet6.icmp6.stats``). ``icp6s_canterror`` counts every
    error RFC 4443 2.4 e forbids (NetBSD only those about ICMPv6 errors);
    ``icp6s_pmtuignored`` (rumpnet's) the Packet Too Big messages refused."""

    icp6s_error: int = 0
    icp6s_canterror: int = 0
    icp6s_toofreq: int = 0
    icp6s_badcode: int = 0
    icp6s_tooshort: int = 0
    icp6s_checksum: int = 0
    icp6s_badlen: int = 0
    icp6s_reflect: int = 0
    icp6s_nd_toomanyopt: int = 0
    icp6s_odst_unreach_noroute: int = 0
    icp6s_odst_unreach_admin: int = 0
    icp6s_odst_unreach_beyondscope: int = 0
    icp6s_odst_unreach_addr: int = 0
    icp6s_odst_unreach_noport: int = 0
    icp6s_opacket_too_big: int = 0
    icp6s_otime_exceed_transit: int = 0
    icp6s_otime_exceed_reassembly: int = 0
    icp6s_oparamprob_header: int = 0
    icp6s_oparamprob_nextheader: int = 0
    icp6s_oparamprob_option: int = 0
    icp6s_oredirect: int = 0
    icp6s_ounknown: int = 0
    icp6s_pmtuchg: int = 0
    icp6s_pmtuignored: int = 0
    icp6s_nd_badopt: int = 0
    icp6s_badns: int = 0
    icp6s_badna: int = 0
    icp6s_badrs: int = 0
    icp6s_badra: int = 0
    icp6s_badredirect: int = 0
    icp6s_dropped_raroute: int = 0
    icp6s_outhist: list[int] = field(default_factory=lambda: [0] * 256)
    icp6s_inhist: list[int] = field(default_factory=lambda: [0] * 256)


# -- wire ---------------------------------------------------------------------------------
class Icmp6ParseError(ValueError):
    """``kind`` is the ``icp6s_*`` counter to bump."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class Icmp6Repr:
    """An ICMPv6 message: ``data32`` is the word after the checksum (the MTU of a Packet
    Too Big, the pointer of a Parameter Problem, identifier and sequence of an echo)."""

    icmp6_type: int
    code: int
    data32: int = 0
    body: bytes = b""


def parse(msg: bytes | bytearray | memoryview, src: int, dst: int) -> Icmp6Repr:
    """Check a received message's length, checksum over the pseudo-header (RFC 4443 2.3)
    and code, and parse it."""
    if len(msg) < ICMP6_HDR_LEN:
        raise Icmp6ParseError("icp6s_tooshort")
    if not in6_cksum_ok(src, dst, IPPROTO_ICMPV6, msg):
        raise Icmp6ParseError("icp6s_checksum")
    t, code, _, data32 = ICMP6_HDR.unpack_from(msg, 0)
    if code > _MAXCODE.get(t, 255):
        raise Icmp6ParseError("icp6s_badcode")
    return Icmp6Repr(t, code, data32, bytes(msg[ICMP6_HDR_LEN:]))


def emit(r: Icmp6Repr, src: int, dst: int) -> bytes:
    """The message bytes, checksummed for src -> dst."""
    msg = bytearray(ICMP6_HDR.pack(r.icmp6_type, r.code, 0, r.data32 & 0xFFFFFFFF) + r.body)
    struct.pack_into("!H", msg, 2, in6_cksum(src, dst, IPPROTO_ICMPV6, msg))
    return bytes(msg)


def echo_repr(icmp6_type: int, ident: int, seq: int, data: bytes = b"") -> Icmp6Repr:
    return Icmp6Repr(icmp6_type, 0, (ident & 0xFFFF) << 16 | (seq & 0xFFFF), data)


# -- events -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Icmp6Ctl:
    """An error about a packet this node sent, for its transport (``pr_ctlinput``):
    ``inner`` is the quoted packet from its IPv6 header, ``nxt``/``upper_off`` where its
    upper-layer header starts (ports for UDP and TCP), ``mtu`` for ``needfrag``."""

    kind: str
    icmp6_type: int
    code: int
    reporter: int
    inner_src: int
    inner_dst: int
    nxt: int
    upper_off: int
    inner: bytes
    mtu: int = 0


@dataclass(frozen=True, slots=True)
class Icmp6RawInput:
    """An ICMPv6 message for raw ICMPv6 sockets (``icmp6_rip6_input``), each of which
    applies its own :class:`Icmp6Filter`."""

    src: int
    dst: int
    hlim: int
    ifindex: int
    msg: bytes


@dataclass(slots=True)
class Icmp6Input:
    """A checked ICMPv6 message handed to the core registered for its type."""

    src: int
    dst: int
    hlim: int
    ifindex: int
    icmp6_type: int
    code: int
    msg: bytes           # the whole ICMPv6 message, header included
    packet: bytes        # the whole IPv6 packet it came in
    l2mcast: bool = False
    rtalert: bool = False


Icmp6Handler = Callable[[Icmp6Input, float], None]


# -- ICMP6_FILTER ---------------------------------------------------------------------------
class Icmp6Filter:
    """``struct icmp6_filter`` (RFC 3542 3.2) with NetBSD's meaning of a bit: set = pass.
    The socket option value is eight 32-bit words in host byte order."""

    SIZE = 32
    _WORDS = struct.Struct("=8I")

    def __init__(self, bits: int = (1 << 256) - 1) -> None:
        self.bits = bits            # bit ``t`` set: type ``t`` passes

    @classmethod
    def from_bytes(cls, value: bytes) -> Icmp6Filter:
        """EINVAL for a value that is not 32 bytes (NetBSD's icmp6_ctloutput)."""
        if len(value) != cls.SIZE:
            raise kerr(errno.EINVAL, "ICMP6_FILTER takes 32 bytes")
        bits = 0
        for i, w in enumerate(cls._WORDS.unpack(value)):
            bits |= w << (32 * i)
        return cls(bits)

    def to_bytes(self) -> bytes:
        return self._WORDS.pack(*((self.bits >> (32 * i)) & 0xFFFFFFFF for i in range(8)))

    def setpassall(self) -> None:
        self.bits = (1 << 256) - 1

    def setblockall(self) -> None:
        self.bits = 0

    def setpass(self, t: int) -> None:
        self.bits |= 1 << t

    def setblock(self, t: int) -> None:
        self.bits &= ~(1 << t)

    def willpass(self, t: int) -> bool:
        return bool(self.bits >> t & 1)

    def willblock(self, t: int) -> bool:
        return not self.willpass(t)


# -- path MTU -------------------------------------------------------------------------------
class Pmtu6:
    """Path MTUs learned from Packet Too Big (RFC 8201), per destination, aging out after
    ``net.inet6.ip6.mtudisctimeout`` seconds (section 4: try larger ones again after at
    least 5 minutes). Messages below the 1280-byte minimum are discarded (section 4),
    estimates only go down, and unvalidated messages (no connection vouched for the
    quoted packet) may make at most ``mtudisc_lowat`` entries, validated ones
    ``mtudisc_hiwat`` (NetBSD's icmp6_mtudisc_update)."""

    def __init__(self, ip6: Ip6Params, params: Icmp6Params, stats: Icmp6Stats) -> None:
        self.ip6 = ip6
        self.params = params
        self.stats = stats
        self.entries: dict[int, tuple[int, float]] = {}   # dst -> (mtu, expiry)

    def get(self, dst: int, now: float) -> int | None:
        e = self.entries.get(dst)
        if e is None or e[1] <= now:
            return None
        return e[0]

    def update(self, dst: int, mtu: int, now: float, validated: bool, linkmtu: int = 0) -> bool:
        """Lower the estimate for ``dst`` to ``mtu``; True when it changed."""
        if mtu < IPV6_MMTU:
            self.stats.icp6s_pmtuignored += 1      # RFC 8201 4: discard it
            return False
        cur = self.get(dst, now) or linkmtu
        if cur and mtu >= cur:
            return False                             # never raised by a message
        if dst not in self.entries:
            cap = self.params.mtudisc_hiwat if validated else self.params.mtudisc_lowat
            self.expire(now)
            if 0 <= cap <= len(self.entries):
                self.stats.icp6s_pmtuignored += 1
                return False
        self.entries[dst] = (mtu, now + self.ip6.mtudisctimeout)
        self.stats.icp6s_pmtuchg += 1
        return True

    def expire(self, now: float) -> None:
        for dst in [d for d, (_, exp) in self.entries.items() if exp <= now]:
            del self.entries[dst]

    def earliest(self) -> float | None:
        if not self.entries:
            return None    # the common case, asked after every packet
        return min(exp for _, exp in self.entries.values())


# -- the core ---------------------------------------------------------------------------------
class Icmp6(Ip6Core):
    """ICMPv6 of one node."""

    def __init__(self, ip6: Ip6Params, params: Icmp6Params, stats: Icmp6Stats, ifaddrs: In6Ifaddrs,
                 out: Outbox | None = None) -> None:
        super().__init__(out)
        self.ip6 = ip6
        self.params = params
        self.stats = stats
        self.ifaddrs = ifaddrs
        self.pmtu = Pmtu6(ip6, params, stats)
        self.handlers: dict[int, Icmp6Handler] = {}   # ND and MLD types -> their cores
        self.deliver_raw = False                       # raw ICMPv6 sockets exist
        self._tokens = 0.0
        self._tokens_at: float | None = None

    def get_timer(self) -> float | None:
        return self.pmtu.earliest()

    def handle_timer(self, now: float) -> None:
        self.pmtu.expire(now)

    # -- input -----------------------------------------------------------------------------
    def input(self, packet: bytes, off: int, ifindex: int, now: float, l2mcast: bool = False,
              rtalert: bool = False) -> None:
        """``icmp6_input``: ``packet[off:]`` is an ICMPv6 message for this node."""
        st = self.stats
        h = parse_header(packet)
        msg = packet[off:]
        try:
            r = parse(msg, h.src, h.dst)
        except Icmp6ParseError as e:
            st.bump(e.kind)
            return
        st.icp6s_inhist[r.icmp6_type] += 1
        if self.deliver_raw:
            self.out.event(Icmp6RawInput(h.src, h.dst, h.hlim, ifindex, msg))
        if r.icmp6_type == ICMP6_ECHO_REQUEST:
            self._echo_reply(h.src, h.dst, r, ifindex)
        elif r.icmp6_type < ICMP6_INFOMSG_MASK:
            self._error_input(h.src, r, msg, now)
        else:
            handler = self.handlers.get(r.icmp6_type)
            if handler is not None:
                handler(Icmp6Input(h.src, h.dst, h.hlim, ifindex, r.icmp6_type, r.code, msg, packet,
                                   l2mcast, rtalert), now)

    def _echo_reply(self, src: int, dst: int, r: Icmp6Repr, ifindex: int) -> None:
        """RFC 4443 4.2: the reply carries the request's identifier, sequence and data;
        one to a multicast or anycast address comes from a unicast address of ours."""
        if src == in6.IN6ADDR_ANY:
            self.stats.icp6s_badlen += 1   # nobody to answer (:: cannot be a destination)
            return
        ia = self.ifaddrs.lookup(dst, ifindex)
        me = dst if ia is not None and ia.ready and not in6.is_multicast(dst) and not self.ifaddrs.is_anycast(dst) else 0
        reply = Icmp6Repr(ICMP6_ECHO_REPLY, 0, r.data32, r.body)
        self.stats.icp6s_reflect += 1
        self._send(reply, me, src, ifindex)

    def _error_input(self, reporter: int, r: Icmp6Repr, msg: bytes, now: float) -> None:
        """An error about something we sent: the quoted packet must hold its IPv6 header
        (RFC 4443 2.4 d); its transport gets an :class:`Icmp6Ctl`."""
        st = self.stats
        inner = msg[ICMP6_HDR_LEN:]
        if len(inner) < IP6_HDR_LEN or inner[0] >> 4 != 6:
            st.icp6s_tooshort += 1
            return
        isrc, idst = in6.unpack(inner, 8), in6.unpack(inner, 24)
        last = ip6_lasthdr(inner)
        nxt, uoff = last if last is not None else (inner[6], IP6_HDR_LEN)
        mtu = 0
        if r.icmp6_type == ICMP6_PACKET_TOO_BIG:
            # A Packet Too Big about a packet we did not send is forged (its source is not
            # ours); one below 1280 is discarded (RFC 8201 4).
            if self.ifaddrs.lookup(isrc) is None or r.data32 < IPV6_MMTU:
                st.icp6s_pmtuignored += 1
                return
            mtu = r.data32
        kind = _CTL_KIND.get((r.icmp6_type, r.code)) or _CTL_TYPE_KIND.get(r.icmp6_type, "unknown")
        self.out.event(Icmp6Ctl(kind, r.icmp6_type, r.code, reporter, isrc, idst, nxt, uoff,
                                bytes(inner), mtu))

    # -- output ----------------------------------------------------------------------------
    def _send(self, r: Icmp6Repr, src: int, dst: int, ifindex: int) -> bool:
        """Send from ``src`` (0: select one) to ``dst``; a scoped destination leaves
        through ``ifindex``, any other is routed."""
        out_if = ifindex if in6.is_scoped(dst) else 0
        if src == 0:
            ia = in6_selectsrc(dst, self.ifaddrs, ifindex)
            if ia is None:
                return False
            src = ia.addr
        ext = self.ifaddrs.ifs.get(ifindex)
        hlim = ext.ndi.chlim if ext is not None else self.ip6.hlim
        self.out.send(ip6_build(src, dst, IPPROTO_ICMPV6, emit(r, src, dst), hlim), out_if)
        self.stats.icp6s_outhist[r.icmp6_type] += 1
        return True

    def send_echo(self, src: int, dst: int, ident: int, seq: int, data: bytes, ifindex: int = 0,
                  hlim: int | None = None) -> bytes:
        """An echo request (for ping6): the packet, also queued for sending."""
        if src == 0:
            ia = in6_selectsrc(dst, self.ifaddrs, ifindex)
            src = ia.addr if ia is not None else 0
        r = echo_repr(ICMP6_ECHO_REQUEST, ident, seq, data)
        pkt = ip6_build(src, dst, IPPROTO_ICMPV6, emit(r, src, dst), hlim if hlim is not None else self.ip6.hlim)
        self.out.send(pkt, ifindex if in6.is_scoped(dst) or in6.is_multicast(dst) else 0)
        self.stats.icp6s_outhist[ICMP6_ECHO_REQUEST] += 1
        return pkt

    def rate_ok(self, now: float) -> bool:
        """RFC 4443 2.4 f: a token bucket of ``errppslimit`` tokens refilled at that many
        per second (NetBSD's ppsratecheck: 0 sends none, a negative limit all)."""
        limit = self.params.errppslimit
        if limit < 0:
            return True
        if self._tokens_at is None:
            self._tokens = float(limit)
        else:
            self._tokens = min(float(limit), self._tokens + (now - self._tokens_at) * limit)
        self._tokens_at = now
        if self._tokens < 1.0:
            self.stats.icp6s_toofreq += 1
            return False
        self._tokens -= 1.0
        return True

    def _may_report(self, pkt: bytes, icmp6_type: int, code: int, param: int, l2mcast: bool) -> bool:
        """RFC 4443 2.4 e: never about an ICMPv6 error or redirect (e.1, e.2); about a
        multicast destination or link-layer multicast/broadcast only a Packet Too Big or
        a Parameter Problem code 2 for an option whose type says "ICMP even so" (e.3-5);
        never to a source that is not one node (e.6)."""
        try:
            h = parse_header(pkt)
        except ValueError:
            return False
        if in6.is_multicast(h.dst) or l2mcast:
            force = (icmp6_type == ICMP6_PACKET_TOO_BIG or
                     (icmp6_type == ICMP6_PARAM_PROB and code == ICMP6_PARAMPROB_OPTION
                      and param < len(pkt) and pkt[param] & 0xC0 == 0x80))
            if not force:
                return False
        if h.src == in6.IN6ADDR_ANY or in6.is_multicast(h.src) or self.ifaddrs.is_anycast(h.src):
            return False
        last = ip6_lasthdr(pkt)
        if last is not None and last[0] == IPPROTO_ICMPV6:
            if last[1] >= len(pkt):
                return False
            t = pkt[last[1]]
            if t < ICMP6_INFOMSG_MASK or t == ND_REDIRECT:
                return False
        return True

    def error(self, pkt: bytes, ifindex: int, icmp6_type: int, code: int, param: int, now: float,
              l2mcast: bool = False) -> bool:
        """``icmp6_error``: report a problem with received packet ``pkt``. True if an
        error was queued; False when RFC 4443 forbids one or the rate limit says no."""
        st = self.stats
        st.icp6s_error += 1
        st.bump(_OUTERR.get((icmp6_type, code), "icp6s_ounknown"))
        if not self._may_report(pkt, icmp6_type, code, param, l2mcast):
            st.icp6s_canterror += 1
            return False
        if not self.rate_ok(now):
            return False
        h = parse_header(pkt)
        ia = self.ifaddrs.lookup(h.dst, ifindex)
        # RFC 4443 2.2: to one of our unicast addresses, answer from it; otherwise from
        # an address of the arrival interface that suits the destination.
        me = h.dst if ia is not None and ia.ready and not self.ifaddrs.is_anycast(h.dst) else 0
        r = Icmp6Repr(icmp6_type, code, param, bytes(pkt[:ICMP6_ERR_MAXLEN - ICMP6_HDR_LEN]))
        return self._send(r, me, h.src, ifindex)
