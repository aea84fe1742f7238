"""TCP superframes over IPv6 (Linux's ``tcp6_gso_segment``; IPv4's is ``netinet.ip_gso``).

A TCPv6 superframe is one IPv6 packet whose TCP payload is longer than a segment: a tap
with ``TUN_F_TSO6`` hands one over from the host (Linux's GRO or its own TSO, virtio's
``gso_type`` TCPV6) with its TCP checksum partial (``NEEDS_CSUM``: the field holds only
the pseudo-header sum, RFC 8200 8.1), and takes one from us to cut on the host.

Here: :func:`tcp6_segment_superframe` cuts one into whole IPv6 packets (every segment
gets the superframe's IPv6 and TCP headers with its own payload length, sequence number
and checksum; CWR on the first, FIN and PSH on the last, through ``ip_gso.tcp_gso_split``
as every software cut does); :func:`set_partial_tcp6_csum` and
:func:`complete_tcp6_csum` make and finish a partial checksum; :func:`wire_frames6` is
what an ingress qdisc or a forwarded superframe turns into (``Net.ether_segment``).

Only a TCP header straight after the IPv6 header is taken: Linux's GRO merges no packets
with extension headers, and we make none with TSO (``GsoError`` otherwise).
"""

from __future__ import annotations

import struct

from rumpnet.ifnet import ETHER_HDR_LEN, M_CSUM_PARTIAL
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_gso import GsoError, tcp_gso_split
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_cksum import in6_pseudo_sum

IPPROTO_TCP = 6
IP6_HDR_LEN = 40
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")

Buffer = bytes | bytearray | memoryview


def _headers6(packet: Buffer) -> tuple[int, int]:
    """(TCP header length, IPv6 payload length) of an IPv6/TCP packet."""
    n = len(packet)
    if n < IP6_HDR_LEN + 20 or packet[0] >> 4 != 6:
        raise GsoError("not an IPv6 packet")
    if packet[6] != IPPROTO_TCP:
        raise GsoError("not a TCP packet (or extension headers)")
    thl = (packet[IP6_HDR_LEN + 12] >> 4) << 2
    plen = _U16.unpack_from(packet, 4)[0]
    if thl < 20 or plen < thl or IP6_HDR_LEN + plen > n:
        # A payload length of 0 (a jumbogram, Linux's "BIG TCP") is not taken either.
        raise GsoError("bad TCP header or payload length")
    return thl, plen


def tcp6_segment_superframe(packet: Buffer, mss: int) -> list[bytearray]:
    """Cut an IPv6/TCP superframe into whole IPv6 packets of at most ``mss`` payload
    bytes, checksums complete (the superframe's own, maybe partial, is ignored). Raises
    :class:`GsoError` for anything else, ``ValueError`` for ``mss < 1``."""
    if mss < 1:
        raise ValueError("mss must be >= 1")
    thl, plen = _headers6(packet)
    mv = memoryview(packet)
    hlen = IP6_HDR_LEN + thl
    psum = in6_pseudo_sum(in6.unpack(packet, 8), in6.unpack(packet, 24), IPPROTO_TCP, 0)
    template = bytes(mv[:hlen])
    out: list[bytearray] = []
    for seq, flags, chunk, csum in tcp_gso_split(mv[IP6_HDR_LEN:IP6_HDR_LEN + plen], mss, psum):
        seg = bytearray(template)
        seg += chunk
        _U16.pack_into(seg, 4, thl + len(chunk))
        _U32.pack_into(seg, IP6_HDR_LEN + 4, seq)
        seg[IP6_HDR_LEN + 13] = flags
        _U16.pack_into(seg, IP6_HDR_LEN + 16, csum)
        out.append(seg)
    return out


def set_partial_tcp6_csum(packet: bytearray, off: int = 0) -> None:
    """Put the pseudo-header sum (RFC 8200 8.1, not inverted) in the TCP checksum field
    of the IPv6/TCP packet at ``off``, as an interface that completes checksums wants."""
    plen = _U16.unpack_from(packet, off + 4)[0]
    psum = in6_pseudo_sum(in6.unpack(packet, off + 8), in6.unpack(packet, off + 24), IPPROTO_TCP, plen)
    _U16.pack_into(packet, off + IP6_HDR_LEN + 16, psum)


def complete_tcp6_csum(frame: Buffer, l3off: int = 0) -> bytes | None:
    """``frame`` with the partial TCP checksum of its IPv6 packet (at ``l3off``)
    finished; ``None`` if that is not an IPv6/TCP packet."""
    try:
        _thl, plen = _headers6(memoryview(frame)[l3off:])
    except GsoError:
        return None
    out = bytearray(frame)
    at = l3off + IP6_HDR_LEN
    # The field holds the pseudo-header sum, so the sum over the segment is the answer.
    _U16.pack_into(out, at + 16, in_cksum(memoryview(out)[at:at + plen]) or 0xFFFF)
    return bytes(out)


def plain_packets6(packet: Buffer, csum_flags: int, segsz: int) -> list[bytes] | None:
    """The plain IPv6 packets a received one with offload state stands for (``segsz``:
    a superframe of that many payload bytes per segment; a partial checksum completed);
    ``None`` if it is not the IPv6/TCP packet its flags say."""
    if segsz:
        try:
            return [bytes(p) for p in tcp6_segment_superframe(packet, segsz)]
        except GsoError:
            return None
    if csum_flags & M_CSUM_PARTIAL:
        done = complete_tcp6_csum(packet)
        return None if done is None else [done]
    return [bytes(packet)]


def wire_frames6(frame: Buffer, csum_flags: int, segsz: int) -> list[bytes] | None:
    """:func:`plain_packets6` of an Ethernet frame, as Ethernet frames (what an ingress
    qdisc acts on: ``Ifnet._deliver_offload`` through ``Net.ether_segment``)."""
    packets = plain_packets6(memoryview(frame)[ETHER_HDR_LEN:], csum_flags, segsz)
    if packets is None:
        return None
    head = bytes(frame[:ETHER_HDR_LEN])
    return [head + p for p in packets]
