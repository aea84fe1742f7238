"""TCP sequence-number arithmetic modulo 2**32 (RFC 9293 section 3.4, NetBSD tcp_seq.h).

All comparisons are done on the signed 32-bit difference, so they stay correct across
wrap-around as long as the two numbers are less than 2**31 apart.
"""

from __future__ import annotations

SEQ_MASK = 0xFFFFFFFF
_HALF = 0x80000000


def seq_diff(a: int, b: int) -> int:
    """Signed difference ``a - b`` in the range [-2**31, 2**31)."""
    d = (a - b) & SEQ_MASK
    return d - 0x100000000 if d & _HALF else d


def SEQ_LT(a: int, b: int) -> bool:  # noqa: N802 - NetBSD name
    return ((a - b) & SEQ_MASK) >= _HALF


def SEQ_LEQ(a: int, b: int) -> bool:  # noqa: N802
    return a == b or ((a - b) & SEQ_MASK) >= _HALF


def SEQ_GT(a: int, b: int) -> bool:  # noqa: N802
    return ((b - a) & SEQ_MASK) >= _HALF


def SEQ_GEQ(a: int, b: int) -> bool:  # noqa: N802
    return a == b or ((b - a) & SEQ_MASK) >= _HALF


def SEQ_MIN(a: int, b: int) -> int:  # noqa: N802
    return a if SEQ_LT(a, b) else b


def SEQ_MAX(a: int, b: int) -> int:  # noqa: N802
    return a if SEQ_GT(a, b) else b


def seq_add(a: int, n: int) -> int:
    return (a + n) & SEQ_MASK


def seq_in(x: int, lo: int, hi: int) -> bool:
    """``lo <= x < hi`` in sequence space (an empty range when lo == hi)."""
    return ((x - lo) & SEQ_MASK) < ((hi - lo) & SEQ_MASK)
