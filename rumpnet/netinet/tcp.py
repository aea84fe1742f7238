"""TCP wire format (RFC 9293 section 3.1, RFC 7323, RFC 2018; NetBSD tcp.h).

smoltcp style: named field offsets, :func:`parse` is the only way untrusted bytes become a
:class:`TcpRepr` (it checks everything and raises :class:`TcpParseError`, which the caller
counts), and :func:`emit` builds a checksummed segment from a representation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from rumpnet.netinet.in_cksum import in_cksum_sum, in_pseudo_sum

IPPROTO_TCP = 6

# Header field offsets (RFC 9293 figure 1).
OFF_SPORT = 0
OFF_DPORT = 2
OFF_SEQ = 4
OFF_ACK = 8
OFF_OFFSET = 12
OFF_FLAGS = 13
OFF_WINDOW = 14
OFF_CKSUM = 16
OFF_URGENT = 18
TCP_HDR_LEN = 20
TCP_MAX_HDR_LEN = 60

# Flags.
TH_FIN = 0x01
TH_SYN = 0x02
TH_RST = 0x04
TH_PUSH = 0x08
TH_ACK = 0x10
TH_URG = 0x20
TH_ECE = 0x40
TH_CWR = 0x80

# Options.
TCPOPT_EOL = 0
TCPOPT_NOP = 1
TCPOPT_MAXSEG = 2
TCPOPT_WINDOW = 3
TCPOPT_SACK_PERMITTED = 4
TCPOPT_SACK = 5
TCPOPT_TIMESTAMP = 8
TCP_MAX_WINSHIFT = 14  # RFC 7323 section 2.3

_HDR = struct.Struct("!HHIIBBHHH")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U32x2 = struct.Struct("!II")
# Prebuilt aligned option blocks.
_TS_OPT = struct.Struct("!BBBBII")  # NOP NOP TS 10 tsval tsecr (RFC 7323 appendix A)
_MSS_OPT = struct.Struct("!BBH")
# The header every data segment and ACK of a timestamp-using connection carries: the
# 20-byte header plus NOP NOP TS(10) -- parsed and built in one struct call.
_HDR_TS = struct.Struct("!HHIIBBHHHBBBBII")
_TS_PREFIX = bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10))
_TS_PREFIX_INT = int.from_bytes(_TS_PREFIX, "big")
_OFF_TS = ((TCP_HDR_LEN + 12) >> 2) << 4         # data offset byte of that header


class TcpParseError(ValueError):
    """A malformed segment.  ``kind`` names the tcps_* counter to bump."""

    def __init__(self, kind: str, msg: str = "") -> None:
        super().__init__(msg or kind)
        self.kind = kind


@dataclass(eq=True, slots=True)
class TcpRepr:
    """A parsed (or to-be-emitted) TCP segment."""

    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    urgent: int = 0
    mss: int | None = None
    wscale: int | None = None
    sack_permitted: bool = False
    sack_blocks: tuple[tuple[int, int], ...] = ()
    timestamps: tuple[int, int] | None = None
    payload: bytes | bytearray | memoryview = field(default=b"")
    # Not TCP's: the ECN field of the IP header the segment came in (RFC 3168 section 5),
    # set by TcpProtocol.input as NetBSD's tcp_input reads ``iptos``; 0 (Not-ECT) else.
    ip_ecn: int = 0

    @property
    def seg_len(self) -> int:
        """SEG.LEN: payload plus one for SYN and one for FIN."""
        n = len(self.payload)
        if self.flags & TH_SYN:
            n += 1
        if self.flags & TH_FIN:
            n += 1
        return n

    def __repr__(self) -> str:  # compact, for test failure messages
        fl = "".join(c for bit, c in ((TH_SYN, "S"), (TH_FIN, "F"), (TH_RST, "R"),
                                       (TH_PUSH, "P"), (TH_ACK, "."), (TH_URG, "U"),
                                       (TH_ECE, "E"), (TH_CWR, "W"))
                     if self.flags & bit)
        parts = [f"{self.sport}>{self.dport} [{fl}] seq={self.seq} ack={self.ack} "
                 f"win={self.window}"]
        if self.mss is not None:
            parts.append(f"mss={self.mss}")
        if self.wscale is not None:
            parts.append(f"ws={self.wscale}")
        if self.sack_permitted:
            parts.append("sackOK")
        if self.sack_blocks:
            parts.append(f"sack={list(self.sack_blocks)}")
        if self.timestamps is not None:
            parts.append(f"ts={self.timestamps}")
        if self.payload:
            parts.append(f"len={len(self.payload)}")
        if self.ip_ecn:
            parts.append(("notect", "ect1", "ect0", "ce")[self.ip_ecn & 3])
        return "TcpRepr(" + " ".join(parts) + ")"


def _parse_options(buf: memoryview | bytes, start: int, end: int, r: TcpRepr) -> None:
    i = start
    while i < end:
        kind = buf[i]
        if kind == TCPOPT_EOL:
            return
        if kind == TCPOPT_NOP:
            i += 1
            continue
        if i + 1 >= end:
            raise TcpParseError("rcvbadopt", "option length missing")
        olen = buf[i + 1]
        if olen < 2 or i + olen > end:
            raise TcpParseError("rcvbadopt", "bad option length")
        if kind == TCPOPT_MAXSEG:
            if olen != 4:
                raise TcpParseError("rcvbadopt", "bad MSS length")
            r.mss = _U16.unpack_from(buf, i + 2)[0]
        elif kind == TCPOPT_WINDOW:
            if olen != 3:
                raise TcpParseError("rcvbadopt", "bad wscale length")
            r.wscale = buf[i + 2]
        elif kind == TCPOPT_SACK_PERMITTED:
            if olen != 2:
                raise TcpParseError("rcvbadopt", "bad SACK-permitted length")
            r.sack_permitted = True
        elif kind == TCPOPT_SACK:
            if (olen - 2) % 8 or olen == 2:
                raise TcpParseError("rcvbadopt", "bad SACK length")
            r.sack_blocks = tuple(_U32x2.unpack_from(buf, j)
                                  for j in range(i + 2, i + olen, 8))
        elif kind == TCPOPT_TIMESTAMP:
            if olen != 10:
                raise TcpParseError("rcvbadopt", "bad timestamp length")
            r.timestamps = _U32x2.unpack_from(buf, i + 2)
        i += olen


def parse(data: bytes | bytearray | memoryview, src: int = 0, dst: int = 0,
          csum_ok: bool = True) -> TcpRepr:
    """Check and parse a segment (header plus payload).

    With ``csum_ok=False`` the checksum over the pseudo-header (src, dst) is verified.
    Raises :class:`TcpParseError` with ``kind`` one of ``rcvshort``, ``rcvbadoff``,
    ``rcvbadsum``, ``rcvbadopt``.
    """
    n = len(data)
    if n < TCP_HDR_LEN:
        raise TcpParseError("rcvshort", "truncated header")
    sport, dport, seq, ack, off, flags, win, _ck, urp = _HDR.unpack_from(data, 0)
    hlen = (off >> 4) << 2
    if hlen < TCP_HDR_LEN or hlen > n:
        raise TcpParseError("rcvbadoff", "bad data offset")
    if not csum_ok:
        if in_cksum_sum(data, in_pseudo_sum(src, dst, IPPROTO_TCP, n)) != 0xFFFF:
            raise TcpParseError("rcvbadsum", "bad checksum")
    mv = data if isinstance(data, memoryview) else memoryview(data)
    if hlen == 32 and _U32.unpack_from(mv, TCP_HDR_LEN)[0] == _TS_PREFIX_INT:
        # Fast path: only NOP NOP TIMESTAMP (what every segment of an RFC 7323
        # connection carries); the same result _parse_options gives.
        return TcpRepr(sport, dport, seq, ack, flags, win, urp, None, None, False, (),
                       _U32x2.unpack_from(mv, 24), mv[32:])
    r = TcpRepr(sport, dport, seq, ack, flags, win, urp, payload=mv[hlen:])
    if hlen > TCP_HDR_LEN:
        _parse_options(mv, TCP_HDR_LEN, hlen, r)
    return r


def options_bytes(r: TcpRepr, compact: bool = False) -> bytes:
    """Encode r's options, 32-bit aligned.

    The default layout pads each option to 4 bytes with NOPs in front, as NetBSD does.
    ``compact`` (``net.inet.tcp.compact_options``) is FreeBSD's ``tcp_addoptions``: the
    options in the same order with only the NOPs that put the window scale at an odd
    offset and the timestamps and SACK blocks at offsets 4n+2, then EOLs up to the next
    4-byte boundary (``mss,nop,wscale,sackOK,TS``; ``mss,sackOK,eol,eol``). RFC 9293
    3.1 allows either: options may begin on any octet boundary."""
    if not compact:
        return _options_aligned(r)
    out = bytearray()
    if r.mss is not None:
        out += _MSS_OPT.pack(TCPOPT_MAXSEG, 4, r.mss)
    if r.wscale is not None:
        while not out or len(out) % 2 != 1:
            out.append(TCPOPT_NOP)
        out += bytes((TCPOPT_WINDOW, 3, r.wscale))
    if r.sack_permitted:
        while len(out) % 2:
            out.append(TCPOPT_NOP)
        out += bytes((TCPOPT_SACK_PERMITTED, 2))
    if r.timestamps is not None:
        while len(out) % 4 != 2:
            out.append(TCPOPT_NOP)
        out += bytes((TCPOPT_TIMESTAMP, 10)) + _U32x2.pack(*r.timestamps)
    if r.sack_blocks:
        while len(out) % 4 != 2:
            out.append(TCPOPT_NOP)
        out += bytes((TCPOPT_SACK, 2 + 8 * len(r.sack_blocks)))
        for a, b in r.sack_blocks:
            out += _U32x2.pack(a, b)
    while len(out) % 4:
        out.append(TCPOPT_EOL)
    if len(out) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    return bytes(out)


def _options_aligned(r: TcpRepr) -> bytes:
    out = bytearray()
    if r.mss is not None:
        out += _MSS_OPT.pack(TCPOPT_MAXSEG, 4, r.mss)
    if r.wscale is not None:
        out += bytes((TCPOPT_NOP, TCPOPT_WINDOW, 3, r.wscale))
    if r.sack_permitted:
        out += bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK_PERMITTED, 2))
    if r.timestamps is not None:
        out += _TS_OPT.pack(TCPOPT_NOP, TCPOPT_NOP, TCPOPT_TIMESTAMP, 10, *r.timestamps)
    if r.sack_blocks:
        out += bytes((TCPOPT_NOP, TCPOPT_NOP, TCPOPT_SACK, 2 + 8 * len(r.sack_blocks)))
        for a, b in r.sack_blocks:
            out += _U32x2.pack(a, b)
    if len(out) > 40:
        raise ValueError("TCP options longer than 40 bytes")
    return bytes(out)


def emit(r: TcpRepr, src: int, dst: int, csum: bool = True, compact: bool = False) -> bytes:
    """Build the segment bytes for r, checksummed for IPv4 addresses src -> dst
    (``compact``: the option layout of :func:`options_bytes`).

    The payload is copied exactly once (into the returned bytes): the checksum is summed
    over the header and the payload separately (the header is 32-bit aligned).
    """
    payload = r.payload
    ts = r.timestamps
    if (ts is not None and r.mss is None and r.wscale is None and not r.sack_permitted
            and not r.sack_blocks):
        return emit_ts(r.sport, r.dport, r.seq, r.ack, r.flags, r.window, r.urgent, ts[0],
                       ts[1], payload, src, dst, csum)
    plen = len(payload)
    opts = options_bytes(r, compact) if (r.mss is not None or r.wscale is not None or
                                         r.sack_permitted or ts is not None or
                                         r.sack_blocks) else b""
    hlen = TCP_HDR_LEN + len(opts)
    hdr = bytearray(hlen)
    _HDR.pack_into(hdr, 0, r.sport, r.dport, r.seq & 0xFFFFFFFF, r.ack & 0xFFFFFFFF,
                   (hlen >> 2) << 4, r.flags & 0xFF, r.window, 0, r.urgent)
    if opts:
        hdr[TCP_HDR_LEN:hlen] = opts
    if not csum:
        return b"".join((hdr, payload))
    # One reduction for pseudo-header, header and payload: the header (32-bit aligned)
    # read as an integer is congruent to the sum of its words, so it can be carried into
    # the payload's sum as its initial value.
    s = in_pseudo_sum(src, dst, IPPROTO_TCP, hlen + plen) + int.from_bytes(hdr, "big")
    s = in_cksum_sum(payload, s) if plen else in_cksum_sum(b"", s)
    _U16.pack_into(hdr, OFF_CKSUM, ~s & 0xFFFF)
    if plen:
        return b"".join((hdr, payload))
    return bytes(hdr)


def emit_ts(sport: int, dport: int, seq: int, ack: int, flags: int, window: int,
            urgent: int, tsval: int, tsecr: int, payload: bytes | bytearray | memoryview,
            src: int, dst: int, csum: bool = True) -> bytes:
    """:func:`emit` of a segment whose only option is the timestamp (NOP NOP TS), without
    a :class:`TcpRepr`: every data segment and ACK of an established RFC 7323
    connection.  Byte for byte what :func:`emit` builds for the same fields.

    ``csum=False`` (both functions) leaves the checksum field zero, for a TSO superframe
    whose checksum the interface completes."""
    plen = len(payload)
    hdr = bytearray(32)
    _HDR_TS.pack_into(hdr, 0, sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, _OFF_TS,
                      flags & 0xFF, window, 0, urgent, TCPOPT_NOP, TCPOPT_NOP,
                      TCPOPT_TIMESTAMP, 10, tsval, tsecr)
    if not csum:
        return b"".join((hdr, payload))
    s = in_pseudo_sum(src, dst, IPPROTO_TCP, 32 + plen) + int.from_bytes(hdr, "big")
    s = in_cksum_sum(payload, s) if plen else in_cksum_sum(b"", s)
    _U16.pack_into(hdr, OFF_CKSUM, ~s & 0xFFFF)
    if plen:
        return b"".join((hdr, payload))
    return bytes(hdr)
