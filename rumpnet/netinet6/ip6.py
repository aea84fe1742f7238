"""IPv6 wire format: the header and extension headers (NetBSD's ``netinet/ip6.h``,
RFC 8200 sections 3 and 4).

smoltcp style: named offsets, representations (:class:`Ip6Repr`, :class:`Ip6FragRepr`,
:class:`Ip6RthdrRepr`) that :func:`parse_header` & co. build from untrusted bytes only
after checking them (or raise :class:`Ip6ParseError`, whose ``kind`` names the
``ip6s_*`` counter the caller bumps), and ``emit_*`` functions that build bytes.
Addresses are 128-bit ints (``in6``).
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

from rumpnet.netinet6 import in6

IPV6_VERSION = 6
IP6_HDR = struct.Struct("!IHBB16s16s")   # version|tclass|flow, plen, nxt, hlim, src, dst
IP6_FIXED = struct.Struct("!IHBB")        # the same without the addresses
IP6_HDR_LEN = 40
IPV6_MMTU = 1280          # minimum link MTU (RFC 8200 5)
IPV6_MAXPACKET = 65535    # largest payload without a jumbogram
IPV6_DEFHLIM = 64
IPV6_FLOWLABEL_MASK = 0xFFFFF

# Offsets inside the fixed header.
OFF_PLEN = 4
OFF_NXT = 6
OFF_HLIM = 7
OFF_SRC = 8
OFF_DST = 24

# Next-header values (IANA "Assigned Internet Protocol Numbers").
IPPROTO_HOPOPTS = 0
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41
IPPROTO_ROUTING = 43
IPPROTO_FRAGMENT = 44
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_NONE = 59
IPPROTO_DSTOPTS = 60
IPPROTO_MH = 135
IPPROTO_HIP = 139
IPPROTO_SHIM6 = 140

# Headers RFC 8200 4 (and the IANA registry it created) call extension headers; the first
# four are the ones this stack walks, the others end a walk as an upper layer would.
IP6_EXTHDRS = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS,
                         IPPROTO_AH, IPPROTO_ESP, IPPROTO_MH, IPPROTO_HIP, IPPROTO_SHIM6, 253, 254})
_WALKED = frozenset({IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_DSTOPTS,
                     IPPROTO_AH})

# Options of the Hop-by-Hop and Destination Options headers (RFC 8200 4.2).
IP6OPT_PAD1 = 0x00
IP6OPT_PADN = 0x01
IP6OPT_TUNNEL_LIMIT = 0x04    # RFC 2473
IP6OPT_ROUTER_ALERT = 0x05    # RFC 2711
IP6OPT_JUMBO = 0xC2           # RFC 2675
IP6OPT_JUMBO_LEN = 6
IP6OPT_RTALERT_MLD = 0        # router alert value for MLD (RFC 2711 2.1)
IP6OPT_TYPE_SKIP = 0x00       # the two high bits say what to do with an unknown option
IP6OPT_TYPE_DISCARD = 0x40
IP6OPT_TYPE_FORCEICMP = 0x80
IP6OPT_TYPE_ICMP = 0xC0
IP6OPT_MUTABLE = 0x20


def ip6opt_type(opt: int) -> int:
    """``IP6OPT_TYPE``: the action bits of an option type (RFC 8200 4.2)."""
    return opt & 0xC0


# Fragment header (RFC 8200 4.5).
IP6_FRAG = struct.Struct("!BBHI")  # nxt, reserved, offset|res|M, identification
IP6_FRAG_LEN = 8
IP6F_OFF_MASK = 0xFFF8
IP6F_RESERVED_MASK = 0x0006
IP6F_MORE_FRAG = 0x0001

IPV6_RTHDR_TYPE_0 = 0  # deprecated by RFC 5095


class Ip6ParseError(ValueError):
    """Malformed input. ``kind`` is the ``ip6s_*`` counter to bump; ``pointer`` (when not
    None) the offset an ICMPv6 Parameter Problem of code ``code`` would point at."""

    def __init__(self, kind: str, msg: str = "", pointer: int | None = None, code: int = 0) -> None:
        super().__init__(msg or kind)
        self.kind = kind
        self.pointer = pointer
        self.code = code


@dataclass(slots=True)
class Ip6Repr:
    """The fixed header. ``plen`` is the payload length field (the bytes after it)."""

    src: int
    dst: int
    nxt: int
    hlim: int
    plen: int = 0
    tclass: int = 0
    flow: int = 0


def check_fixed(data: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """Check the fixed header of a received packet (RFC 8200 3) and return its first
    words: (version|traffic class|flow label, payload length, next header, hop limit).
    The addresses are left where they are (``ip6_input`` reads them once per flow).

    ``ip6s_tooshort``: fewer than 40 bytes, or fewer than the payload length claims;
    ``ip6s_badvers``: a version other than 6. Trailing bytes beyond the payload length
    (Ethernet padding) are the caller's to trim.
    """
    if len(data) < IP6_HDR_LEN:
        raise Ip6ParseError("ip6s_tooshort", "shorter than an IPv6 header")
    vcf, plen, nxt, hlim = IP6_FIXED.unpack_from(data, 0)
    if vcf >> 28 != IPV6_VERSION:
        raise Ip6ParseError("ip6s_badvers", "not version 6")
    if IP6_HDR_LEN + plen > len(data):
        raise Ip6ParseError("ip6s_tooshort", "payload length beyond the packet")
    return vcf, plen, nxt, hlim


def parse_header(data: bytes | bytearray | memoryview) -> Ip6Repr:
    """Check (:func:`check_fixed`, same errors) and parse the fixed header of a received
    packet."""
    vcf, plen, nxt, hlim = check_fixed(data)
    return Ip6Repr(in6.unpack(data, 8), in6.unpack(data, 24), nxt, hlim, plen,
                   tclass_of(vcf), vcf & IPV6_FLOWLABEL_MASK)


def tclass_of(vcf: int) -> int:
    """The Traffic Class of the first 32-bit word (RFC 8200 3)."""
    return (vcf >> 20) & 0xFF


def emit_header(r: Ip6Repr) -> bytes:
    vcf = (IPV6_VERSION << 28) | ((r.tclass & 0xFF) << 20) | (r.flow & IPV6_FLOWLABEL_MASK)
    return IP6_HDR.pack(vcf, r.plen, r.nxt, r.hlim, in6.pack(r.src), in6.pack(r.dst))


def ip6_build(src: int, dst: int, nxt: int, payload: bytes | bytearray | memoryview,
              hlim: int = IPV6_DEFHLIM, tclass: int = 0, flow: int = 0) -> bytes:
    """A whole packet: header plus ``payload`` (extension headers included in it)."""
    if len(payload) > IPV6_MAXPACKET:
        raise ValueError("payload longer than 65535 bytes (jumbograms are not sent)")
    return emit_header(Ip6Repr(src, dst, nxt, hlim, len(payload), tclass, flow)) + bytes(payload)


# -- extension headers -----------------------------------------------------------------
def ext_len(buf: bytes | bytearray | memoryview, off: int, nxt: int) -> int:
    """Length of the extension header of type ``nxt`` at ``off``: 8-octet units for
    the RFC 8200 headers, 4-octet ones for AH (RFC 4302 2.2). ``ip6s_tooshort`` when the
    header does not fit in ``buf``."""
    if nxt == IPPROTO_FRAGMENT:
        hlen = IP6_FRAG_LEN
    else:
        if off + 2 > len(buf):
            raise Ip6ParseError("ip6s_tooshort", "extension header truncated")
        hlen = (buf[off + 1] + 2) << 2 if nxt == IPPROTO_AH else (buf[off + 1] + 1) << 3
    if off + hlen > len(buf):
        raise Ip6ParseError("ip6s_tooshort", "extension header truncated")
    return hlen


def parse_options(buf: bytes | bytearray | memoryview, start: int, end: int) -> list[tuple[int, int, bytes]]:
    """The TLV options of a Hop-by-Hop or Destination Options header spanning
    ``[start, end)`` (its first option at ``start``), as ``(offset, type, data)``; Pad1
    and PadN are consumed here. ``ip6s_toosmall`` for an option that overruns the header."""
    opts: list[tuple[int, int, bytes]] = []
    i = start
    while i < end:
        otype = buf[i]
        if otype == IP6OPT_PAD1:
            i += 1
            continue
        if i + 2 > end or i + 2 + buf[i + 1] > end:
            raise Ip6ParseError("ip6s_toosmall", "option overruns its header")
        olen = buf[i + 1]
        if otype != IP6OPT_PADN:
            opts.append((i, otype, bytes(buf[i + 2:i + 2 + olen])))
        i += 2 + olen
    return opts


def emit_options_header(nxt: int, options: list[tuple[int, bytes]]) -> bytes:
    """A Hop-by-Hop or Destination Options header carrying ``options`` (type, data),
    padded with Pad1/PadN to a multiple of 8 octets (RFC 8200 4.2)."""
    body = bytearray((nxt, 0))
    for otype, data in options:
        if otype == IP6OPT_PAD1 or len(data) > 255:
            raise ValueError("bad option")
        body += bytes((otype, len(data))) + data
    pad = -len(body) % 8
    if pad == 1:
        body.append(IP6OPT_PAD1)
    elif pad:
        body += bytes((IP6OPT_PADN, pad - 2)) + bytes(pad - 2)
    if len(body) > 2048:
        raise ValueError("options header longer than 2048 bytes")
    body[1] = len(body) // 8 - 1
    return bytes(body)


def router_alert_hbh(nxt: int, value: int = IP6OPT_RTALERT_MLD) -> bytes:
    """Hop-by-Hop header with a Router Alert option (RFC 2711), as MLD sends it."""
    return emit_options_header(nxt, [(IP6OPT_ROUTER_ALERT, value.to_bytes(2, "big"))])


@dataclass(slots=True)
class Ip6FragRepr:
    """A fragment header. ``offset`` in bytes (a multiple of 8)."""

    nxt: int
    offset: int
    more: bool
    ident: int
    reserved: int = 0


def parse_frag(buf: bytes | bytearray | memoryview, off: int) -> Ip6FragRepr:
    if off + IP6_FRAG_LEN > len(buf):
        raise Ip6ParseError("ip6s_tooshort", "fragment header truncated")
    nxt, res, offlg, ident = IP6_FRAG.unpack_from(buf, off)
    return Ip6FragRepr(nxt, offlg & IP6F_OFF_MASK, bool(offlg & IP6F_MORE_FRAG), ident,
                       (res << 8) | (offlg & IP6F_RESERVED_MASK))


def emit_frag(r: Ip6FragRepr) -> bytes:
    if r.offset & 7 or not 0 <= r.offset <= IP6F_OFF_MASK:
        raise ValueError("fragment offset must be a multiple of 8 below 65536")
    return IP6_FRAG.pack(r.nxt, 0, r.offset | (IP6F_MORE_FRAG if r.more else 0), r.ident & 0xFFFFFFFF)


@dataclass(slots=True)
class Ip6RthdrRepr:
    """The common part of a routing header (RFC 8200 4.4)."""

    nxt: int
    hlen: int       # whole header, bytes
    rtype: int
    segleft: int


def parse_rthdr(buf: bytes | bytearray | memoryview, off: int) -> Ip6RthdrRepr:
    hlen = ext_len(buf, off, IPPROTO_ROUTING)
    if hlen < 8:
        raise Ip6ParseError("ip6s_tooshort", "routing header truncated")
    return Ip6RthdrRepr(buf[off], hlen, buf[off + 2], buf[off + 3])


def emit_rthdr(nxt: int, rtype: int, segleft: int, data: bytes = bytes(4)) -> bytes:
    """A routing header with type-specific ``data`` after its first four bytes (padded to
    8 octets); for tests and for refusing what arrives."""
    body = bytes((nxt, 0, rtype, segleft)) + data
    body += bytes(-len(body) % 8)
    return bytes((nxt, len(body) // 8 - 1)) + body[2:]


def walk_exthdrs(buf: bytes | bytearray | memoryview, nxt: int, off: int,
                 limit: int) -> Iterator[tuple[int, int, int, int]]:
    """Walk the extension headers from ``off`` (where header ``nxt`` starts), yielding
    ``(nxt, off, hlen, nxt_field)`` for each walked header, ``nxt_field`` being the
    offset of the byte that named it. The walk ends with the first header it does not
    walk (upper layer, ESP, No Next Header), yielded with ``hlen`` 0, or right after the
    header of a non-first fragment (what follows it is data, not a header).
    ``ip6s_toomanyhdr`` after ``limit`` headers, ``ip6s_tooshort`` for a truncated one."""
    nxt_field = OFF_NXT
    count = 0
    while nxt in _WALKED:
        count += 1
        if count > limit:
            raise Ip6ParseError("ip6s_toomanyhdr", "too many extension headers")
        hlen = ext_len(buf, off, nxt)
        yield nxt, off, hlen, nxt_field
        if nxt == IPPROTO_FRAGMENT and parse_frag(buf, off).offset:
            return  # what follows a non-first fragment's header is not a header
        nxt_field = off
        nxt = buf[off]
        off += hlen
    yield nxt, off, 0, nxt_field


def ip6_lasthdr(pkt: bytes | bytearray | memoryview, limit: int = 16) -> tuple[int, int] | None:
    """``ip6_lasthdr``: (upper-layer protocol, its offset) of a packet that starts with an
    IPv6 header and may be truncated (an ICMPv6 error's quote); None when the header
    chain cannot be followed that far."""
    if len(pkt) < IP6_HDR_LEN:
        return None
    try:
        last = (pkt[OFF_NXT], IP6_HDR_LEN)
        for nxt, off, hlen, _ in walk_exthdrs(pkt, pkt[OFF_NXT], IP6_HDR_LEN, limit):
            last = (nxt, off)
            if nxt == IPPROTO_FRAGMENT and hlen and parse_frag(pkt, off).offset:
                return None
    except Ip6ParseError:
        return None
    return last
