"""ifconfig(8)'s inet6 part (NetBSD's ``sbin/ifconfig/af_inet6.c``): address lines,
``inet6 ADDR[/PLEN] [prefixlen N] [alias | -alias | delete] [tentative] [anycast]
[deprecated] [pltime N] [vltime N] [eui64]`` and ``-w N`` (wait for DAD).

An address line is NetBSD's ``in6_alias`` output::

    inet6 fe80::b0a0:59ff:fef3:98fe%shmif0 prefixlen 64 scopeid 0x2
    inet6 fc00::1 prefixlen 64 tentative
    inet6 fc00::2 prefixlen 64 duplicated pltime infty vltime infty      (with -L)
"""

from __future__ import annotations

import errno
import inspect
import socket as pysocket
from collections.abc import Awaitable
from typing import cast

from rumpnet.commands.ifaddrs import IfAddrs, IfSock, Syscalls, getifaddrs
from rumpnet.if_ioctl import SockaddrIn6
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_control import (
    SIOCAIFADDR_IN6,
    SIOCDIFADDR_IN6,
    SIOCGIFAFLAG_IN6,
    SIOCGIFALIFETIME_IN6,
    SIOCGIFNETMASK_IN6,
    In6Addrlifetime,
    In6Aliasreq,
    In6Ifreq,
)
from rumpnet.netinet6.in6_var import (
    IN6_IFF_ANYCAST,
    IN6_IFF_AUTOCONF,
    IN6_IFF_DEPRECATED,
    IN6_IFF_DETACHED,
    IN6_IFF_DUPLICATED,
    IN6_IFF_NODAD,
    IN6_IFF_TEMPORARY,
    IN6_IFF_TENTATIVE,
    ND6_INFINITE_LIFETIME,
)

# The words in6_alias prints, in its order.
_FLAG_WORDS = ((IN6_IFF_ANYCAST, "anycast"), (IN6_IFF_TENTATIVE, "tentative"), (IN6_IFF_DUPLICATED, "duplicated"),
               (IN6_IFF_DETACHED, "detached"), (IN6_IFF_DEPRECATED, "deprecated"), (IN6_IFF_AUTOCONF, "autoconf"),
               (IN6_IFF_TEMPORARY, "temporary"))
# Address flags ``ifconfig inet6 ADDR WORD`` sets (in6_aliasreq's ifra_flags).
_SET_FLAGS = {"anycast": IN6_IFF_ANYCAST, "tentative": IN6_IFF_TENTATIVE, "deprecated": IN6_IFF_DEPRECATED}
DAD_POLL = 0.1     # seconds between looks while ``-w`` waits


def _ask6(s: IfSock, request: int, name: str, sa: SockaddrIn6) -> In6Ifreq:
    return In6Ifreq.unpack(s.ioctl(request, In6Ifreq.with_addr(name, sa).pack()))


def address_line(s: IfSock, name: str, sa: SockaddrIn6, names: dict[int, str], lifetimes: bool) -> str:
    """in6_alias: the address (with its zone), prefix length, flags and lifetimes."""
    mask = _ask6(s, SIOCGIFNETMASK_IN6, name, sa).addr
    plen = in6.mask2len(mask.addr) if mask is not None else 0
    flags = _ask6(s, SIOCGIFAFLAG_IN6, name, sa).flags6
    zone = sa.scope_id
    line = f"\tinet6 {scope6.format_scoped(sa.addr, zone, names.get)} prefixlen {plen}"
    line += "".join(f" {word}" for bit, word in _FLAG_WORDS if flags & bit)
    if zone:
        line += f" scopeid 0x{zone:x}"
    if lifetimes:
        lt = _ask6(s, SIOCGIFALIFETIME_IN6, name, sa).lifetime
        if lt.pltime != ND6_INFINITE_LIFETIME or lt.vltime != ND6_INFINITE_LIFETIME:
            def left(v: int) -> str:
                return "infty" if v == ND6_INFINITE_LIFETIME else str(v)

            line += f" pltime {left(lt.pltime)} vltime {left(lt.vltime)}"
    return line


def address_lines(s: IfSock, ifa: IfAddrs, names: dict[int, str], lifetimes: bool = False) -> list[str]:
    """The interface's inet6 lines (asked on ``s``'s AF_INET6 sibling)."""
    if not ifa.ipv6:
        return []
    six = s.sibling6()
    return [address_line(six, ifa.name, sa, names, lifetimes) for sa in ifa.ipv6]


def _bad(word: str) -> OSError:
    return OSError(errno.EINVAL, f"ifconfig: {word}: bad value")


def _open6(sys: Syscalls) -> IfSock:
    try:
        return IfSock(sys, pysocket.AF_INET6)
    except OSError as e:
        if e.errno == errno.EAFNOSUPPORT:
            raise OSError(errno.EAFNOSUPPORT, "ifconfig: inet6: address family not supported") from None
        raise


def configure6(sys: Syscalls, name: str, args: list[str]) -> None:
    """``ifconfig IF inet6 ...``: the words after ``inet6`` (up/down and the link words
    have been taken out by the caller)."""
    with _open6(sys) as s:
        ifas = getifaddrs(s)
        ifa = next(i for i in ifas if i.name == name)
        req, delete, eui64 = _parse6(ifas, ifa, args)
        if eui64:
            lla = next((sa.addr for sa in ifa.ipv6 if in6.is_linklocal(sa.addr)), None)
            if lla is None:
                raise OSError(errno.EINVAL, "ifconfig: could not determine link local address")
            req.addr = SockaddrIn6(in6.with_ifid(req.addr.addr, lla & ((1 << 64) - 1)))
        if delete:
            try:
                s.ioctl(SIOCDIFADDR_IN6, In6Ifreq.with_addr(name, req.addr).pack())
            except OSError as e:
                raise OSError(e.errno, f"ifconfig: SIOCDIFADDR_IN6: {e.strerror}") from None
            return
        try:
            s.ioctl(SIOCAIFADDR_IN6, req.pack())
        except OSError as e:
            raise OSError(e.errno, f"ifconfig: SIOCAIFADDR_IN6: {e.strerror}") from None


def _parse6(ifas: list[IfAddrs], ifa: IfAddrs, args: list[str]) -> tuple[In6Aliasreq, bool, bool]:
    """The request the words ask for, whether it is a delete, and whether ``eui64``."""
    addr: int | None = None
    plen: int | None = None
    flags, delete, eui64 = 0, False, False
    lt = In6Addrlifetime()
    it = iter(args)
    for w in it:
        if w in ("alias", "add"):
            continue
        if w in ("-alias", "delete", "remove"):
            delete = True
        elif w in _SET_FLAGS:
            flags |= _SET_FLAGS[w]
        elif w in ("-tentative", "-anycast", "-deprecated"):
            flags &= ~_SET_FLAGS[w[1:]]
        elif w == "eui64":
            eui64 = True
        elif w in ("prefixlen", "pltime", "vltime"):
            v = next(it, None)
            if v is None or not v.isdigit():
                raise _bad(v or w)
            if w == "prefixlen":
                plen = int(v)
            elif w == "pltime":
                lt.pltime = int(v)
            else:
                lt.vltime = int(v)
        elif addr is None:
            addr, given = _parse_addr(ifas, ifa, w)
            plen = given if given is not None else plen
        else:
            raise _bad(w)
    if addr is None:
        raise OSError(errno.EINVAL, "ifconfig: inet6: an address is needed")
    if plen is None:
        plen = 64        # in6_defmask
    if not delete and not 0 < plen <= 128:
        raise _bad(str(plen))
    mask = in6.prefixlen2mask(plen) if 0 < plen <= 128 else 0
    return In6Aliasreq(ifa.name, SockaddrIn6(addr), mask, flags, lt), delete, eui64


def _parse_addr(ifas: list[IfAddrs], ifa: IfAddrs, word: str) -> tuple[int, int | None]:
    """``ADDR[%zone][/PLEN]``: a zone must be the interface's own."""
    text, _, p = word.partition("/")
    by_name = {i.name: i.index for i in ifas}

    def index_of(n: str) -> int:
        if n not in by_name:
            raise OSError(errno.ENXIO, f"{n}: Device not configured")
        return by_name[n]

    try:
        addr, zone = scope6.parse_scoped(text, index_of)
    except OSError:
        raise _bad(word) from None
    if zone and zone != ifa.index:
        raise _bad(word)
    if p and (not p.isdigit() or not 0 <= int(p) <= 128):
        raise _bad(word)
    return addr, int(p) if p else None


def _tentative(sys: Syscalls) -> bool:
    """Is any address still doing duplicate address detection (tentative, not NODAD)?"""
    try:
        s = IfSock(sys, pysocket.AF_INET6)
    except OSError as e:
        if e.errno == errno.EAFNOSUPPORT:
            return False
        raise
    with s:
        for ifa in getifaddrs(s):
            for sa in ifa.ipv6:
                flags = _ask6(s, SIOCGIFAFLAG_IN6, ifa.name, sa).flags6
                if flags & IN6_IFF_TENTATIVE and not flags & IN6_IFF_NODAD:
                    return True
    return False


def wait_dad(sys: Syscalls, seconds: float) -> Awaitable[None] | None:
    """NetBSD's ``ifconfig -w``: until no address is tentative or ``seconds`` are up,
    looking every DAD_POLL seconds of the kernel's clock (a poll(2) of no descriptors
    sleeps that long). On the kernel's loop the sleep is an awaitable, and so is this."""
    looks = max(1, int(seconds / DAD_POLL + 0.999999))
    for left in range(looks - 1, -1, -1):
        if not _tentative(sys):
            return None
        slept = sys.rump_sys_poll([], 0, int(DAD_POLL * 1000))
        if inspect.isawaitable(slept):
            return _wait_dad_async(sys, slept, left)
    return None


async def _wait_dad_async(sys: Syscalls, slept: Awaitable[object], looks: int) -> None:
    await slept
    for _ in range(looks):
        if not _tentative(sys):
            return
        await cast("Awaitable[object]", sys.rump_sys_poll([], 0, int(DAD_POLL * 1000)))
