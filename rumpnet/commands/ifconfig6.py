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
from typing import TYPE_CHECKING

from rumpkern.sched import Sleep, SyscallCtx
from rumpnet.netinet6 import in6, scope6
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
    In6Ifaddr,
)

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel

# The words in6_alias prints, in its order.
_FLAG_WORDS = ((IN6_IFF_ANYCAST, "anycast"), (IN6_IFF_TENTATIVE, "tentative"), (IN6_IFF_DUPLICATED, "duplicated"),
               (IN6_IFF_DETACHED, "detached"), (IN6_IFF_DEPRECATED, "deprecated"), (IN6_IFF_AUTOCONF, "autoconf"),
               (IN6_IFF_TEMPORARY, "temporary"))
# Address flags ``ifconfig inet6 ADDR WORD`` sets (in6_aliasreq's ifra_flags).
_SET_FLAGS = {"anycast": IN6_IFF_ANYCAST, "tentative": IN6_IFF_TENTATIVE, "deprecated": IN6_IFF_DEPRECATED}
DAD_POLL = 0.1     # seconds between looks while ``-w`` waits


def address_line(k: NetKernel, ia: In6Ifaddr, lifetimes: bool, now: float) -> str:
    assert k.inet6 is not None
    zone = scope6.zone_of(ia.addr, ia.ifindex) if scope6.shows_zone(ia.addr, ia.ifindex) else 0
    s = f"\tinet6 {scope6.format_scoped(ia.addr, zone, k.inet6.ifname)} prefixlen {ia.plen}"
    s += "".join(f" {word}" for bit, word in _FLAG_WORDS if ia.flags & bit)
    if zone:
        s += f" scopeid 0x{zone:x}"
    if lifetimes and (ia.preferred is not None or ia.expire is not None):
        def left(t: float | None) -> str:
            return "infty" if t is None else str(int(max(0.0, t - now)))

        s += f" pltime {left(ia.preferred)} vltime {left(ia.expire)}"
    return s


def address_lines(k: NetKernel, ifp: Ifnet, lifetimes: bool = False) -> list[str]:
    if k.inet6 is None:
        return []
    now = k.sched.now()
    return [address_line(k, ia, lifetimes, now) for ia in k.inet6.addresses(ifp)]


def _bad(word: str) -> OSError:
    return OSError(errno.EINVAL, f"ifconfig: {word}: bad value")


def configure6(k: NetKernel, ifp: Ifnet, args: list[str]) -> None:
    """``ifconfig IF inet6 ...``: the words after ``inet6`` (up/down and the link words
    have been taken out by the caller)."""
    inet6 = k.inet6
    if inet6 is None:
        raise OSError(errno.EAFNOSUPPORT, "ifconfig: inet6: address family not supported")
    addr: int | None = None
    plen: int | None = None
    flags, delete, eui64 = 0, False, False
    vltime = pltime = ND6_INFINITE_LIFETIME
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
                pltime = int(v)
            else:
                vltime = int(v)
        elif addr is None:
            addr, given = _parse_addr(k, ifp, w)
            plen = given if given is not None else plen
        else:
            raise _bad(w)
    if addr is None:
        raise OSError(errno.EINVAL, "ifconfig: inet6: an address is needed")
    if eui64:
        ll = inet6.node.ifaddrs.ifs.get(ifp.index)
        lla = ll.linklocal(ready_only=False) if ll is not None else None
        if lla is None:
            raise OSError(errno.EINVAL, "ifconfig: could not determine link local address")
        addr = in6.with_ifid(addr, lla.addr & ((1 << 64) - 1))
    if delete:
        try:
            inet6.remove_address(ifp, addr)
        except OSError as e:
            raise OSError(e.errno, f"ifconfig: SIOCDIFADDR_IN6: {e.strerror}") from None
        return
    if plen is None:
        plen = 64        # in6_defmask
    if not 0 < plen <= 128:
        raise _bad(str(plen))
    try:
        inet6.add_address(ifp, addr, plen, flags, vltime, pltime)
    except OSError as e:
        raise OSError(e.errno, f"ifconfig: SIOCAIFADDR_IN6: {e.strerror}") from None


def _parse_addr(k: NetKernel, ifp: Ifnet, word: str) -> tuple[int, int | None]:
    """``ADDR[%zone][/PLEN]``: a zone must be the interface's own."""
    text, _, p = word.partition("/")
    try:
        addr, zone = scope6.parse_scoped(text, lambda n: k.ifnet.lookup(n).index)
    except OSError:
        raise _bad(word) from None
    if zone and zone != ifp.index:
        raise _bad(word)
    if p and (not p.isdigit() or not 0 <= int(p) <= 128):
        raise _bad(word)
    return addr, int(p) if p else None


def _tentative(k: NetKernel) -> bool:
    inet6 = k.inet6
    return inet6 is not None and any(ia.flags & IN6_IFF_TENTATIVE and not ia.flags & IN6_IFF_NODAD
                                     for ia in inet6.node.ifaddrs.all())


def _wait_call(ctx: SyscallCtx, k: NetKernel, seconds: float) -> str:
    """One system call that sleeps until no address is tentative, or ``seconds`` are up
    (NetBSD's ``ifconfig -w``: duplicate address detection is over)."""
    now = k.sched.now()
    if ctx.data is None:
        ctx.data = now + seconds
    ctx.timed_out = False
    ctx.deadline = None
    if not _tentative(k) or now >= ctx.data:
        return ""
    raise Sleep([], min(DAD_POLL, ctx.data - now))


def wait_dad(k: NetKernel, seconds: float) -> object:
    return k.sched.syscall(_wait_call, k, seconds)
