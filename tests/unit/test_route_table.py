"""Route table: longest-prefix match, flags, add/delete errors."""

from __future__ import annotations

import errno

import pytest

from rumpnet.netinet.in_addr import aton
from rumpnet.route import (
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_LOCAL,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    RouteTable,
    Rtentry,
    flags_letters,
    flags_names,
    mask_to_plen,
)


def rt(dst: str, plen: int, flags: int = RTF_UP, gw: str | None = None) -> Rtentry:
    return Rtentry(aton(dst), plen, aton(gw) if gw else None, flags, None, None)


def test_longest_prefix_match_and_cache_invalidation() -> None:
    t = RouteTable()
    t.add(rt("0.0.0.0", 0, RTF_UP | RTF_GATEWAY | RTF_STATIC, "10.0.0.1"))
    t.add(rt("10.0.0.0", 8))
    t.add(rt("10.1.0.0", 16))
    assert t.lookup(aton("10.1.2.3")).plen == 16  # type: ignore[union-attr]
    assert t.lookup(aton("10.2.2.3")).plen == 8  # type: ignore[union-attr]
    assert t.lookup(aton("192.0.2.1")).plen == 0  # type: ignore[union-attr]
    t.add(rt("10.1.2.3", 32, RTF_UP | RTF_HOST))
    assert t.lookup(aton("10.1.2.3")).plen == 32  # type: ignore[union-attr]
    t.delete(aton("10.1.2.3"), 32)
    assert t.lookup(aton("10.1.2.3")).plen == 16  # type: ignore[union-attr]


def test_duplicate_and_missing_routes() -> None:
    t = RouteTable()
    t.add(rt("10.0.0.0", 8))
    with pytest.raises(OSError) as ei:
        t.add(rt("10.9.0.0", 8))  # same prefix once masked
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(OSError) as ei:
        t.delete(aton("11.0.0.0"), 8)
    assert ei.value.errno == errno.ESRCH
    assert t.lookup(aton("11.0.0.1")) is None


def test_flag_letters_as_netbsd_prints_them() -> None:
    assert flags_letters(RTF_UP | RTF_GATEWAY | RTF_STATIC) == "UGS"
    assert flags_letters(RTF_UP | RTF_CONNECTED) == "UC"
    assert flags_letters(RTF_UP | RTF_HOST | RTF_LOCAL) == "UHl"
    assert flags_letters(RTF_UP | RTF_REJECT) == "UR"
    assert flags_letters(RTF_UP | RTF_BLACKHOLE) == "UB"
    assert flags_names(RTF_UP | RTF_GATEWAY | RTF_STATIC) == "UP,GATEWAY,STATIC"


def test_masks() -> None:
    assert mask_to_plen(0xFFFFFF00) == 24
    with pytest.raises(OSError):
        mask_to_plen(0xFF00FF00)
