"""Internet checksum (RFC 1071) in pure Python.

The fastest pure method measured on CPython: read the buffer as one big integer and
reduce it modulo 0xffff.  Because 2**16 == 1 (mod 0xffff), the big integer is congruent
to the sum of its 16-bit words, which is exactly the one's-complement sum once the
"negative zero" case is mapped back (RFC 1071 section 2(A)).
"""

from __future__ import annotations

import struct

_PSEUDO = struct.Struct("!IIBBH")

Buffer = bytes | bytearray | memoryview


def in_cksum_sum(data: Buffer, initial: int = 0) -> int:
    """One's-complement 16-bit sum of ``data`` plus ``initial`` (not inverted).

    The result is in 0..0xffff; odd lengths are padded with a zero byte on the right.
    """
    n = len(data)
    value = int.from_bytes(data, "big")
    if n & 1:
        value <<= 8
    value += initial
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


def in_cksum(data: Buffer, initial: int = 0) -> int:
    """The checksum to put in a header: ``~sum & 0xffff``."""
    return ~in_cksum_sum(data, initial) & 0xFFFF


def in_pseudo_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header (RFC 793 section 3.1, RFC 768) as a start value."""
    return in_cksum_sum(_PSEUDO.pack(src, dst, 0, proto, length))


def in4_cksum(src: int, dst: int, proto: int, data: Buffer) -> int:
    """Transport checksum (TCP/UDP) over pseudo-header plus ``data``."""
    return in_cksum(data, in_pseudo_sum(src, dst, proto, len(data)))
