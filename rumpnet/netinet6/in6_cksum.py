"""Checksums over the IPv6 pseudo-header (NetBSD's ``in6_cksum.c``, RFC 8200 8.1).

ICMPv6, UDP and TCP over IPv6 sum a pseudo-header of source address, destination
address, upper-layer packet length (32 bits) and next header (32 bits, zero padded) in
front of their own bytes. Because 2**16 is 1 modulo 0xffff, a 128-bit address as an int
is congruent to the sum of its eight 16-bit words, so the pseudo-header sum is the plain
sum of the four numbers reduced modulo 0xffff: no packing.
"""

from __future__ import annotations

from rumpnet.netinet.in_cksum import Buffer, in_cksum_sum


def in6_pseudo_sum(src: int, dst: int, nxt: int, length: int) -> int:
    """One's-complement sum (not inverted) of the pseudo-header, as an initial value for
    ``in_cksum_sum``. ``dst`` is the final destination (RFC 8200 8.1: the last address of
    a routing header, which we never follow)."""
    value = src + dst + length + nxt
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


def in6_cksum(src: int, dst: int, nxt: int, data: Buffer) -> int:
    """The checksum field for an upper-layer packet ``data`` (its checksum field zero).
    UDP must send 0xffff for a computed 0 (RFC 8200 8.1: zero UDP checksums are illegal)."""
    return ~in_cksum_sum(data, in6_pseudo_sum(src, dst, nxt, len(data))) & 0xFFFF


def in6_cksum_ok(src: int, dst: int, nxt: int, data: Buffer) -> bool:
    """Does ``data`` (checksum field included) verify? A received all-zero sum fails."""
    return in_cksum_sum(data, in6_pseudo_sum(src, dst, nxt, len(data))) == 0xFFFF
