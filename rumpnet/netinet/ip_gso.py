"""Software segmentation and checksum completion for TCP superframes (Linux's GSO).

A TSO superframe is one IPv4 packet whose TCP payload is longer than a segment: the
interface (a tap with ``TUN_F_TSO4``, i.e. the host kernel) is asked to cut it into
``segsz``-byte segments. When such a packet must leave by an interface that cannot do
that (a 1500-MTU wire, a tap without offloads, a router forwarding a GRO frame it got
from the host), :func:`tcp_segment_superframe` does it here, as Linux's
``tcp_gso_segment`` does: every segment gets the IP and TCP headers of the superframe
(options included) with its own IP length, IP ID (incremented per segment), sequence
number and checksums; CWR stays on the first segment only, FIN and PSH on the last.

A *partial* TCP checksum (``CHECKSUM_PARTIAL``, virtio's ``NEEDS_CSUM``) holds only the
pseudo-header sum in the checksum field; :func:`complete_tcp_csum` finishes it and
:func:`set_partial_tcp_csum` makes one.

Who calls what: on output, ``IpOutput`` alone decides whether a superframe leaves whole
(the interface does TSO and no egress qdisc sits on it) or is cut here (NetBSD's
``ip_tso_output`` and ``tcp4_segment``); links carry what they are given. On input,
:func:`wire_frames` undoes a received superframe for an ingress qdisc (registered in
``Net.ether_segment``), since faults act on wire frames.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from rumpnet.ifnet import ETHER_HDR_LEN, M_CSUM_PARTIAL
from rumpnet.netinet.in_cksum import in_cksum, in_cksum_sum, in_pseudo_sum

IPPROTO_TCP = 6
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_ADDRS = struct.Struct("!II")

TH_FIN = 0x01
TH_PUSH = 0x08
TH_CWR = 0x80

Buffer = bytes | bytearray | memoryview


class GsoError(ValueError):
    """The packet is not a well-formed IPv4/TCP superframe."""


def _headers(packet: Buffer) -> tuple[int, int, int]:
    """(IP header length, TCP header length, total length) of an IPv4/TCP packet."""
    n = len(packet)
    if n < 40 or packet[0] >> 4 != 4:
        raise GsoError("not an IPv4 packet")
    ihl = (packet[0] & 0xF) << 2
    if ihl < 20 or packet[9] != IPPROTO_TCP or n < ihl + 20:
        raise GsoError("not a TCP packet")
    thl = (packet[ihl + 12] >> 4) << 2
    if thl < 20 or n < ihl + thl:
        raise GsoError("bad TCP header length")
    total = _U16.unpack_from(packet, 2)[0]
    if total > n or total < ihl + thl:
        # A superframe whose IP length is 0 (Linux "BIG TCP") is not produced here.
        raise GsoError("bad IP length")
    return ihl, thl, total


def tcp_gso_split(tcp: Buffer, segsz: int, psum: int) -> Iterator[tuple[int, int, memoryview, int]]:
    """The segments TCP superframe ``tcp`` (TCP header and payload; its checksum field
    is ignored) stands for, cut at ``segsz`` payload bytes: (sequence number, flags,
    payload, TCP checksum) each, as Linux's ``tcp_gso_segment`` makes them: CWR on the
    first segment only, FIN and PSH on the last only. ``psum`` is the pseudo-header's
    RFC 1071 sum without its length (addresses and protocol). A superframe with no more
    than one segment of payload gives one segment. Every path that cuts superframes in
    software (IP's cached GSO output, :func:`tcp_segment_superframe`) goes through here."""
    mv = memoryview(tcp)
    thl = (tcp[12] >> 4) << 2
    end = len(tcp)
    seq0 = int.from_bytes(mv[4:8], "big")
    flags = tcp[13]
    # The header's sum without sequence number, flags and checksum (2**16 = 1 mod 0xffff,
    # so the header read as one integer will do), plus the pseudo-header's; each
    # segment adds its sequence number, flags and length.
    hdr = bytearray(mv[:thl])
    hdr[4:8] = b"\0\0\0\0"
    hdr[13] = hdr[16] = hdr[17] = 0
    hsum = int.from_bytes(hdr, "big") + psum + thl
    pos = thl
    first = True
    while True:
        chunk = mv[pos:pos + segsz]
        n = len(chunk)
        f = flags if first else flags & ~TH_CWR
        if pos + n < end:
            f &= ~(TH_FIN | TH_PUSH)
        seq = (seq0 + pos - thl) & 0xFFFFFFFF
        yield seq, f, chunk, ~in_cksum_sum(chunk, hsum + (seq >> 16) + (seq & 0xFFFF) + f + n) & 0xFFFF
        pos += n
        first = False
        if pos >= end:
            return


def tcp_segment_superframe(packet: Buffer, mss: int) -> list[bytearray]:
    """Cut an IPv4/TCP superframe into segments of at most ``mss`` payload bytes.

    Returns complete IPv4 packets with correct IP and TCP checksums (the superframe's
    TCP checksum is ignored: it may be partial). A packet whose payload already fits in
    one segment comes back as one packet with fresh checksums. Raises :class:`GsoError`
    for a packet that is not IPv4/TCP, and ``ValueError`` for ``mss < 1``.
    """
    if mss < 1:
        raise ValueError("mss must be >= 1")
    ihl, thl, total = _headers(packet)
    hlen = ihl + thl
    mv = memoryview(packet)
    src, dst = _ADDRS.unpack_from(packet, 12)
    ip_id = _U16.unpack_from(packet, 4)[0]
    psum = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + IPPROTO_TCP
    template = bytearray(mv[:hlen])
    template[10] = template[11] = 0  # IP checksum
    out: list[bytearray] = []
    for i, (seq, flags, chunk, csum) in enumerate(tcp_gso_split(mv[ihl:total], mss, psum)):
        n = len(chunk)
        seg = bytearray(hlen + n)
        seg[:hlen] = template
        seg[hlen:] = chunk
        _U16.pack_into(seg, 2, hlen + n)
        _U16.pack_into(seg, 4, (ip_id + i) & 0xFFFF)
        _U32.pack_into(seg, ihl + 4, seq)
        seg[ihl + 13] = flags
        _U16.pack_into(seg, ihl + 16, csum)
        c = in_cksum(memoryview(seg)[:ihl])
        seg[10] = c >> 8
        seg[11] = c & 0xFF
        out.append(seg)
    return out


def complete_tcp_csum(frame: Buffer, l3off: int = 0) -> bytes | None:
    """``frame`` with its partial TCP checksum finished (the IPv4 header at ``l3off``);
    ``None`` if it is not an IPv4/TCP packet."""
    try:
        ihl, _thl, total = _headers(memoryview(frame)[l3off:])
    except GsoError:
        return None
    out = bytearray(frame)
    at = l3off + ihl
    end = l3off + total
    # The field holds the pseudo-header sum, so the sum over the segment is the answer.
    _U16.pack_into(out, at + 16, in_cksum(memoryview(out)[at:end]) or 0xFFFF)
    return bytes(out)


def set_partial_tcp_csum(packet: bytearray, ihl: int | None = None) -> None:
    """Put the pseudo-header sum (not inverted, with the TCP length) in the TCP checksum
    field of an IPv4/TCP packet, as an interface that completes checksums expects."""
    if ihl is None:
        ihl = (packet[0] & 0xF) << 2
    total = _U16.unpack_from(packet, 2)[0]
    src, dst = _ADDRS.unpack_from(packet, 12)
    _U16.pack_into(packet, ihl + 16, in_pseudo_sum(src, dst, IPPROTO_TCP, total - ihl))


def wire_frames(frame: Buffer, csum_flags: int, segsz: int) -> list[bytes] | None:
    """The plain Ethernet frames a received IPv4 frame with offload state stands for: a
    superframe of ``segsz``-byte TCP segments (``segsz`` not 0) cut into them, a
    partial TCP checksum completed (``None`` if the frame is malformed). An ingress
    qdisc acts on these (``Ifnet._deliver_offload``, through ``Net.ether_segment``)."""
    if segsz:
        try:
            segs = tcp_segment_superframe(memoryview(frame)[ETHER_HDR_LEN:], segsz)
        except GsoError:
            return None
        head = bytes(frame[:ETHER_HDR_LEN])
        return [head + seg for seg in segs]
    if csum_flags & M_CSUM_PARTIAL:
        done = complete_tcp_csum(frame, ETHER_HDR_LEN)
        return None if done is None else [done]
    return [bytes(frame)]
