"""The IPv4 routing table (NetBSD's ``route.c``/``rtsock.c`` semantics, a simpler radix).

Routes are kept per prefix length; a lookup tries the lengths in use from longest to
shortest (at most 33 dict probes) and is cached per destination until the table changes.
Flags and their letters follow NetBSD's ``netstat -r``.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr

if TYPE_CHECKING:
    from rumpnet.ifnet import IfAddr, Ifnet

RTF_UP = 0x1
RTF_GATEWAY = 0x2
RTF_HOST = 0x4
RTF_REJECT = 0x8
RTF_DYNAMIC = 0x10
RTF_MODIFIED = 0x20
RTF_DONE = 0x40
RTF_MASK = 0x80
RTF_CONNECTED = 0x100
RTF_LLDATA = 0x400
RTF_STATIC = 0x800
RTF_BLACKHOLE = 0x1000
RTF_PROTO2 = 0x4000
RTF_PROTO1 = 0x8000
RTF_ANNOUNCE = 0x20000
RTF_LOCAL = 0x40000
RTF_BROADCAST = 0x80000
# rmx_locks bits (NetBSD's route.h): RTV_MTU locked means "do not do path MTU
# discovery on this route": TCP sends without DF (set when a too-small MTU was reported).
RTV_MTU = 0x1

# Letters as NetBSD's netstat(1) prints them, in its order (sbin/route/rtutil.c ``bits``).
FLAG_LETTERS = [
    (RTF_UP, "U"), (RTF_GATEWAY, "G"), (RTF_HOST, "H"), (RTF_REJECT, "R"), (RTF_BLACKHOLE, "B"),
    (RTF_DYNAMIC, "D"), (RTF_MODIFIED, "M"), (RTF_DONE, "d"), (RTF_MASK, "m"), (RTF_CONNECTED, "C"),
    (RTF_LLDATA, "L"), (RTF_STATIC, "S"), (RTF_PROTO1, "1"), (RTF_PROTO2, "2"),
    (RTF_ANNOUNCE, "p"), (RTF_LOCAL, "l"), (RTF_BROADCAST, "b"),
]
# Names as route(8) "get" prints them in its "flags: <...>" line.
FLAG_NAMES = [
    (RTF_UP, "UP"), (RTF_GATEWAY, "GATEWAY"), (RTF_HOST, "HOST"), (RTF_REJECT, "REJECT"),
    (RTF_DYNAMIC, "DYNAMIC"), (RTF_MODIFIED, "MODIFIED"), (RTF_DONE, "DONE"), (RTF_MASK, "MASK_PRESENT"),
    (RTF_CONNECTED, "CONNECTED"), (RTF_LLDATA, "LLDATA"), (RTF_STATIC, "STATIC"),
    (RTF_BLACKHOLE, "BLACKHOLE"), (RTF_PROTO2, "PROTO2"), (RTF_PROTO1, "PROTO1"),
    (RTF_ANNOUNCE, "ANNOUNCE"), (RTF_LOCAL, "LOCAL"), (RTF_BROADCAST, "BROADCAST"),
]


def flags_letters(flags: int) -> str:
    return "".join(letter for bit, letter in FLAG_LETTERS if flags & bit)


def flags_names(flags: int) -> str:
    return ",".join(name for bit, name in FLAG_NAMES if flags & bit)


def plen_to_mask(plen: int) -> int:
    return (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0


def mask_to_plen(mask: int) -> int:
    plen = bin(mask).count("1")
    if plen_to_mask(plen) != mask:
        raise kerr(errno.EINVAL, "non-contiguous netmask")
    return plen


class Rtentry:
    __slots__ = ("dst", "plen", "mask", "gateway", "flags", "ifp", "ifa", "mtu", "use", "refs", "expire", "locks")

    def __init__(self, dst: int, plen: int, gateway: int | None, flags: int, ifp: Ifnet | None,
                 ifa: IfAddr | None, mtu: int = 0) -> None:
        self.plen = plen
        self.mask = plen_to_mask(plen)
        self.dst = dst & self.mask
        self.gateway = gateway  # next-hop address for RTF_GATEWAY, else None (link route)
        self.flags = flags
        self.ifp = ifp
        self.ifa = ifa
        self.mtu = mtu  # 0: use the interface's
        self.use = 0
        self.refs = 0
        self.expire = 0.0
        self.locks = 0  # RTV_* bits (rmx_locks)

    @property
    def path_mtu(self) -> int:
        ifmtu = self.ifp.mtu if self.ifp is not None else 1500
        return min(self.mtu, ifmtu) if self.mtu else ifmtu

    def __repr__(self) -> str:
        from rumpnet.netinet.in_addr import ntoa

        gw = ntoa(self.gateway) if self.gateway is not None else (self.ifp.name if self.ifp else "-")
        return f"<Rtentry {ntoa(self.dst)}/{self.plen} -> {gw} {flags_letters(self.flags)}>"


class RouteTable:
    BITS = 32  # address width: prefix lengths 0..BITS

    def __init__(self) -> None:
        self._by_plen: list[dict[int, Rtentry]] = [{} for _ in range(self.BITS + 1)]
        self._plens: list[int] = []  # prefix lengths in use, longest first
        self._cache: dict[int, Rtentry | None] = {}
        self.generation = 0
        self.listeners: list[Callable[[str, Rtentry], None]] = []

    def invalidate(self) -> None:
        self._cache.clear()
        self.generation += 1

    def _refresh(self) -> None:
        self._plens = [p for p in range(self.BITS, -1, -1) if self._by_plen[p]]
        self.invalidate()

    @staticmethod
    def key(dst: int, plen: int, zone: int = 0) -> int:
        """Where a prefix is kept in its prefix length's dict."""
        return dst & plen_to_mask(plen)

    def add(self, rt: Rtentry) -> Rtentry:
        table = self._by_plen[rt.plen]
        key = self.key(rt.dst, rt.plen, getattr(rt, "zone", 0))
        if key in table:
            raise kerr(errno.EEXIST, "File exists")
        table[key] = rt
        self._refresh()
        for cb in self.listeners:
            cb("add", rt)
        return rt

    def exact(self, dst: int, plen: int, zone: int = 0) -> Rtentry | None:
        return self._by_plen[plen].get(self.key(dst, plen, zone))

    def delete(self, dst: int, plen: int, zone: int = 0) -> Rtentry:
        table = self._by_plen[plen]
        rt = table.pop(self.key(dst, plen, zone), None)
        if rt is None:
            raise kerr(errno.ESRCH, "No such process")
        self._refresh()
        for cb in self.listeners:
            cb("delete", rt)
        return rt

    def lookup(self, dst: int) -> Rtentry | None:
        """Longest-prefix match (``rtalloc1``)."""
        try:
            return self._cache[dst]
        except KeyError:
            pass
        rt = None
        by_plen = self._by_plen
        for plen in self._plens:
            cand = by_plen[plen].get(dst & plen_to_mask(plen) if plen != 32 else dst)
            if cand is not None:
                rt = cand
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[dst] = rt
        return rt

    def __iter__(self) -> Iterator[Rtentry]:
        """Routes in netstat order: by destination then prefix length."""
        entries = [rt for table in self._by_plen for rt in table.values()]
        entries.sort(key=lambda r: (r.dst, r.plen))
        return iter(entries)

    def remove_matching(self, pred: Callable[[Rtentry], bool]) -> list[Rtentry]:
        gone = []
        for table in self._by_plen:
            for key, rt in list(table.items()):
                if pred(rt):
                    del table[key]
                    gone.append(rt)
        if gone:
            self._refresh()
            for rt in gone:
                for cb in self.listeners:
                    cb("delete", rt)
        return gone

    def flush(self) -> list[Rtentry]:
        """``route flush``: every gateway route goes (NetBSD keeps interface routes)."""
        return self.remove_matching(lambda rt: bool(rt.flags & RTF_GATEWAY) or bool(rt.flags & RTF_STATIC and not rt.flags & (RTF_CONNECTED | RTF_LOCAL)))


def describe(rt: Any) -> str:
    return repr(rt)


# -- AF_INET6 ------------------------------------------------------------------------------
def plen_to_mask6(plen: int) -> int:
    return ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)


class Rtentry6(Rtentry):
    """An AF_INET6 route: 128-bit destination and gateway, and the zone (an interface
    index, RFC 4007) of a scoped prefix such as ``fe80::/64`` (0 for global ones); the
    IPv6 address it was made for, if any, is ``ia6`` (``ifa`` stays None)."""

    __slots__ = ("zone", "ia6")

    def __init__(self, dst: int, plen: int, gateway: int | None, flags: int, ifp: Ifnet | None,
                 zone: int = 0, ia6: Any = None, mtu: int = 0) -> None:
        super().__init__(0, 0, gateway, flags, ifp, None, mtu)
        self.plen = plen
        self.mask = plen_to_mask6(plen)
        self.dst = dst & self.mask
        self.zone = zone
        self.ia6 = ia6

    def __repr__(self) -> str:
        from rumpnet.netinet6.in6 import ntop

        gw = ntop(self.gateway) if self.gateway is not None else (self.ifp.name if self.ifp else "-")
        zone = f"%{self.zone}" if self.zone else ""
        return f"<Rtentry6 {ntop(self.dst)}{zone}/{self.plen} -> {gw} {flags_letters(self.flags)}>"


class RouteTable6(RouteTable):
    """The AF_INET6 table: the same longest-prefix walk over 128 bits, keyed by prefix
    and zone (a scoped prefix exists once per link, as KAME keeps the zone inside the
    address)."""

    BITS = 128

    @staticmethod
    def key(dst: int, plen: int, zone: int = 0) -> int:
        return (dst & plen_to_mask6(plen)) | (zone << 128)

    def lookup(self, dst: int, zone: int = 0) -> Rtentry | None:
        """Longest-prefix match; a scoped destination only matches its zone's prefixes
        (``zone`` is 0 for global destinations)."""
        ck = dst | (zone << 128)
        try:
            return self._cache[ck]
        except KeyError:
            pass
        rt = None
        zkey = zone << 128
        by_plen = self._by_plen
        for plen in self._plens:
            cand = by_plen[plen].get((dst & plen_to_mask6(plen)) | zkey)
            if cand is None and zone:
                cand = by_plen[plen].get(dst & plen_to_mask6(plen))   # global routes
            if cand is not None:
                rt = cand
                break
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[ck] = rt
        return rt
