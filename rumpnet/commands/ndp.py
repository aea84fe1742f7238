"""ndp(8): the neighbour cache, NetBSD syntax and output (``usr.sbin/ndp/ndp.c``).

``ndp -a`` (all), ``ndp ADDR`` (one), ``ndp -s ADDR MAC [temp]``, ``ndp -d ADDR``,
``ndp -c`` (flush the dynamic entries), ``ndp -r``/``-p`` (default routers, prefixes),
``ndp -R``/``-P`` (flush them), ``ndp -i IF [flags]``; ``-n`` is accepted (nothing is
resolved here). A listing is NetBSD's::

    Neighbor                             Linklayer Address  Netif Expire    S Flags
    fc00::2                              b2:a0:59:f3:98:fe shmif0 23s       R
    fc00::1                              b2:a0:18:4e:7f:2c shmif0 permanent R

Our own addresses are shown as permanent entries, as NetBSD keeps them in its table.
"""

from __future__ import annotations

import errno
import socket as pysocket
from collections.abc import Callable
from typing import TYPE_CHECKING

from rumpnet.commands import UsageError, getopt, strerror
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.if_ioctl import SockaddrIn6 as Sin6
from rumpnet.netconfig import format_mac, parse_mac
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_control import In6Ifreq
from rumpnet.netinet6.in6_sysctl import IPPROTO_ICMPV6, PF_INET6
from rumpnet.netinet6.in6_var import (
    ND6_IFF_ACCEPT_RTADV,
    ND6_IFF_AUTO_LINKLOCAL,
    ND6_IFF_IFDISABLED,
    ND6_IFF_PERFORMNUD,
    ND6_INFINITE_LIFETIME,
)
from rumpnet.netinet6.nd6 import ND6_LLINFO_REACHABLE, ND6_STATE_LETTER
from rumpnet.netinet6.nd6_control import (
    ICMPV6CTL_ND6_DRLIST,
    ICMPV6CTL_ND6_PRLIST,
    PRF_AUTONOMOUS,
    SIOCGIFINFO_IN6,
    SIOCSIFINFO_IN6,
    SIOCSPFXFLUSH_IN6,
    SIOCSRTRFLUSH_IN6,
    In6Defrouter,
    In6Ndireq,
    In6Prefix,
)
from rumpnet.route import RTF_HOST, RTF_LLDATA, RTF_LOCAL, RTF_STATIC, RTF_UP
from rumpnet.route_msg import (
    AF_INET6,
    CTL_NET,
    RTA_DST,
    RTA_GATEWAY,
    RTA_IFP,
    RTF_LLINFO_ROUTER,
    RTM_ADD,
    RTM_DELETE,
    RtMsghdr,
    SockaddrDl,
    SockaddrIn6,
)

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

USAGE = """usage: ndp [-nt] hostname
       ndp [-nt] -a | -c | -p | -r | -H | -P | -R
       ndp [-nt] -A wait
       ndp [-nt] -d hostname
       ndp [-nt] -f filename
       ndp [-nt] -i interface [flags...]
       ndp [-nt] -I [interface|delete]
       ndp [-nt] -s nodename etheraddr [temp] [proxy]"""

# usr.sbin/ndp/ndp.c's getopt string; the modes this ndp has are -a, -c, -d, -s, -i, -p, -r, -P, -R.
OPTSTRING = "acdfIilnprstA:HPR"

RTPREF = ("medium", "high", "rsv", "low")   # RFC 4191 2.1's Prf, as ndp.c names it
W_ADDR, W_LL, W_IF = 36, 17, 6
_ICMP6_MIB = [CTL_NET, PF_INET6, IPPROTO_ICMPV6]   # net.inet6.icmp6
HEADER = f"{'Neighbor':<{W_ADDR}} {'Linklayer Address':<{W_LL}} {'Netif':>{W_IF}} {'Expire':<9} S Flags"


def sec2str(total: int) -> str:
    """ndp.c's sec2str: ``1d2h3m4s`` without the leading zero units."""
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    mins, secs = divmod(rest, 60)
    out = ""
    if days:
        out += f"{days}d"
    if days or hours:
        out += f"{hours}h"
    if days or hours or mins:
        out += f"{mins}m"
    return out + f"{secs}s"


class Neighbor:
    """A neighbour cache entry as the LLINFO dump (NET_RT_FLAGS, RTF_LLINFO) gives it."""

    def __init__(self, msg: RtMsghdr) -> None:
        dst, gw, ifp = msg.addrs.get(RTA_DST), msg.addrs.get(RTA_GATEWAY), msg.addrs.get(RTA_IFP)
        self.addr = dst.addr if isinstance(dst, SockaddrIn6) else 0
        self.zone = dst.scope_id if isinstance(dst, SockaddrIn6) else 0
        self.ifindex = msg.rtm_index
        self.ifname = ifp.name if isinstance(ifp, SockaddrDl) else str(msg.rtm_index)
        self.lladdr = gw.lladdr if isinstance(gw, SockaddrDl) else b""
        self.flags = msg.rtm_flags
        self.state = msg.rtm_use  # the ND state (ND6_LLINFO_*), where rtsock puts it
        self.expire = msg.rtm_rmx.rmx_expire  # seconds left; 0 never, negative past

    @property
    def static(self) -> bool:
        return bool(self.flags & RTF_STATIC)


def _neighbors(client: RouteClient) -> list[Neighbor]:
    return [Neighbor(m) for m in client.lldump(AF_INET6)]


def _line(e: Neighbor) -> str:
    name = scope6.format_scoped(e.addr, e.ifindex, lambda i: e.ifname)
    ll = format_mac(e.lladdr) if e.lladdr else "(incomplete)"
    if e.expire == 0:
        exp = "permanent"
    else:
        exp = sec2str(e.expire) if e.expire > 0 else "expired"
    flags = ("R" if e.flags & RTF_LLINFO_ROUTER else "") + ("l" if e.flags & RTF_LOCAL else "")
    # ndp.c widens a column for a long name, taking the room from the next ones.
    aw = max(len(name), W_ADDR)
    lw = max(len(ll), W_ADDR + W_LL - aw)
    iw = max(len(e.ifname), W_ADDR + W_LL + W_IF - aw - lw)
    return (f"{name:<{aw}} {ll:<{lw}} {e.ifname:>{iw}} {exp:<9.9} "
            f"{ND6_STATE_LETTER.get(e.state, '?')} {flags}").rstrip()


def _router_discovery(client: RouteClient, mode: str) -> str:
    """``ndp -r`` (sysctl nd6_drlist), ``-p`` (nd6_prlist), ``-R``/``-P`` (SIOCSRTRFLUSH_IN6,
    SIOCSPFXFLUSH_IN6 on ``lo0``, as ndp.c), printed as NetBSD 7's ndp.c prints them."""
    if mode in ("R", "P"):
        client.ioctl6(SIOCSRTRFLUSH_IN6 if mode == "R" else SIOCSPFXFLUSH_IN6, In6Ifreq("lo0").pack())
        return ""

    def host(sa: Sin6, ifindex: int) -> str:
        return scope6.format_scoped(sa.addr, ifindex, lambda i: client.ifname(i) or "?")

    if mode == "r":
        out = []
        for dr in In6Defrouter.unpack_list(client.sysctl(_ICMP6_MIB + [ICMPV6CTL_ND6_DRLIST])):
            flags = ("M" if dr.flags & 0x80 else "") + ("O" if dr.flags & 0x40 else "")
            expire = sec2str(dr.expire) if dr.expire else "Never"
            out.append(f"{host(dr.rtaddr, dr.if_index)} if={client.ifname(dr.if_index) or '?'}, flags={flags}, "
                       f"pref={RTPREF[(dr.flags >> 3) & 3]}, expire={expire}\n")
        return "".join(out)
    return "".join(_prefix_lines(client, pr, host)
                   for pr in In6Prefix.unpack_list(client.sysctl(_ICMP6_MIB + [ICMPV6CTL_ND6_PRLIST])))


def _prefix_lines(client: RouteClient, pr: In6Prefix, host: Callable[[Sin6, int], str]) -> str:
    """One prefix of ``ndp -p``; an advertising router's state comes from the neighbour
    cache (the LLINFO dump) where ndp.c asks SIOCGNBRINFO_IN6."""
    out = [f"{in6.ntop(pr.prefix.addr)}/{pr.prefixlen} if={client.ifname(pr.if_index) or '?'}\n"]
    life = ("infinity" if pr.vltime == ND6_INFINITE_LIFETIME else str(pr.vltime),
            "infinity" if pr.pltime == ND6_INFINITE_LIFETIME else str(pr.pltime))
    if pr.expire == 0:
        expire = ", expire=Never"
    else:
        expire = f", expire={sec2str(pr.expire)}" if pr.expire > 0 else ", expired"
    out.append(f"flags=L{'A' if pr.raflags & PRF_AUTONOMOUS else ''}O vltime={life[0]}, pltime={life[1]}{expire}, "
               f"ref={pr.refcnt}\n")
    if not pr.advrtrs:
        return "".join(out) + "  No advertising router\n"
    out.append("  advertised by\n")
    entries = {(e.addr, e.ifindex): e for e in _neighbors(client) if not e.flags & RTF_LOCAL}
    for rtr in pr.advrtrs:
        e = entries.get((rtr.addr, pr.if_index))
        state = ("no neighbor state" if e is None else
                 "reachable" if e.state >= ND6_LLINFO_REACHABLE else "unreachable")
        out.append(f"    {host(rtr, pr.if_index)} ({state})\n")
    return "".join(out)


_IFINFO_FLAGS = (("nud", ND6_IFF_PERFORMNUD), ("disabled", ND6_IFF_IFDISABLED),
                 ("accept_rtadv", ND6_IFF_ACCEPT_RTADV), ("auto_linklocal", ND6_IFF_AUTO_LINKLOCAL))


def _get_ifinfo(client: RouteClient, ifname: str) -> In6Ndireq:
    try:
        ndi = In6Ndireq.unpack(client.ioctl6(SIOCGIFINFO_IN6, In6Ndireq(ifname).pack()))
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EINVAL
        raise OSError(code, f"ndp: ioctl(SIOCGIFINFO_IN6): {strerror(code)}") from None
    if not ndi.initialized:
        raise OSError(errno.EINVAL, f"ndp: {ifname}: not initialized yet")
    return ndi


def _ifinfo(client: RouteClient, ifname: str, words: list[str]) -> str:
    """``ndp -i IF [[-]flag ...] [basereachable=ms] [retrans=ms] [curhlim=n]``: SIOCGIFINFO_IN6,
    then SIOCSIFINFO_IN6 with the changes and SIOCGIFINFO_IN6 again, as ndp.c."""
    ndi = _get_ifinfo(client, ifname)
    new = In6Ndireq(ifname, flags=ndi.flags)
    changed = False
    for w in words:
        name, _, value = w.partition("=")
        bit = dict(_IFINFO_FLAGS).get(name.lstrip("-"))
        if bit is not None and not value:
            new.flags = new.flags & ~bit if name.startswith("-") else new.flags | bit
        elif name in ("basereachable", "retrans", "curhlim") and value.isdigit():
            setattr(new, {"curhlim": "chlim"}.get(name, name), int(value))
        else:
            raise OSError(errno.EINVAL, f"ndp: syntax error in {name} field")
        changed = True
    if changed:
        client.ioctl6(SIOCSIFINFO_IN6, new.pack())
        ndi = _get_ifinfo(client, ifname)
    base, retrans = ndi.basereachable, ndi.retrans
    text = (f"linkmtu={ndi.linkmtu}, maxmtu={ndi.maxmtu}, curhlim={ndi.chlim}, "
            f"basereachable={base // 1000}s{base % 1000}ms, reachable={ndi.reachable}s, "
            f"retrans={retrans // 1000}s{retrans % 1000}ms")
    if ndi.flags:
        text += "\nFlags: " + "".join(f"{n} " for n, bit in _IFINFO_FLAGS if ndi.flags & bit)
    return text + "\n"


def ndp(k: Kernel, argv: list[str]) -> str:
    """ndp(8) on kernel ``k`` through system calls only: the neighbour cache through a
    routing socket and sysctl net.route (-a, -c, -d, -s, a host), the router and prefix
    lists through sysctl net.inet6.icmp6.nd6_drlist/nd6_prlist (-r, -p), their flushes
    (-R, -P) and the interface's ND parameters (-i) through nd6_ioctl's SIOC*_IN6."""
    with RouteClient(k) as client:
        return _ndp(client, argv)


def _parse(client: RouteClient, host: str) -> SockaddrIn6:
    try:
        addr, zone = scope6.parse_scoped(host, client.ifindex)
    except OSError:
        raise OSError(errno.EINVAL, f"ndp: {host}: bad address") from None
    return SockaddrIn6(addr, zone)


def _ndp(client: RouteClient, argv: list[str]) -> str:
    if not client.has_family(pysocket.AF_INET6):
        raise OSError(errno.EAFNOSUPPORT, "ndp: socket: Address family not supported by protocol family")
    opts, args = getopt("ndp", argv, OPTSTRING, USAGE)
    mode = None
    for ch, _ in opts:
        if ch in "nt":
            continue
        if ch in "acsdiprPR" and mode is None:
            mode = ch
        else:
            raise UsageError(USAGE)
    if mode in ("p", "r", "P", "R"):
        if args:
            raise UsageError(USAGE)
        return _router_discovery(client, mode)
    if mode == "i":
        if not args:
            raise UsageError(USAGE)
        return _ifinfo(client, args[0], args[1:])
    if mode == "a" or mode == "c":
        if args:
            raise UsageError(USAGE)
        if mode == "c":
            return _flush(client)
        return HEADER + "\n" + "".join(_line(e) + "\n" for e in _neighbors(client))
    if mode == "s":
        if len(args) < 2 or any(w not in ("temp", "proxy", "pub") for w in args[2:]):
            raise UsageError(USAGE)
        return _set(client, args[0], args[1], "temp" in args[2:])
    if len(args) != 1:
        raise UsageError(USAGE)
    host = args[0]
    if mode == "d":
        try:
            _delete(client, _parse(client, host))
        except OSError:
            raise OSError(errno.ENOENT, f"{host} ({host}) -- no entry") from None
        return f"{host} ({host}) deleted\n"
    sa = _parse(client, host)
    for e in _neighbors(client):
        if e.addr == sa.addr and (sa.scope_id == e.ifindex or (not sa.scope_id and not in6.is_scoped(sa.addr))):
            return HEADER + "\n" + _line(e) + "\n"
    raise OSError(errno.ENOENT, f"{host} ({host}) -- no entry")


def _set(client: RouteClient, host: str, mac: str, temp: bool) -> str:
    """ndp -s: RTM_ADD of an LLINFO host route, the address in an AF_LINK gateway."""
    try:
        dst = _parse(client, host)
        lladdr = parse_mac(mac)
    except OSError as e:
        raise OSError(e.errno, f"ndp: set: {e.strerror}") from None
    flags = RTF_UP | RTF_HOST | RTF_LLDATA | (0 if temp else RTF_STATIC)
    try:
        client.request(RtMsghdr(RTM_ADD, flags, addrs={RTA_DST: dst, RTA_GATEWAY: SockaddrDl(lladdr=lladdr)}))
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EINVAL
        raise OSError(code, f"ndp: set: {strerror(code)}") from None
    return ""


def _delete(client: RouteClient, dst: SockaddrIn6) -> None:
    client.request(RtMsghdr(RTM_DELETE, RTF_HOST | RTF_LLDATA, addrs={RTA_DST: dst}))


def _flush(client: RouteClient) -> str:
    """ndp -c: every dynamic entry goes (static ones, our own addresses included, stay)."""
    gone = [e for e in _neighbors(client) if not e.static]
    for e in gone:
        _delete(client, SockaddrIn6(e.addr, e.ifindex if in6.is_scoped(e.addr) else 0))
    return "".join(f"{in6.ntop(e.addr)} ({in6.ntop(e.addr)}) deleted\n" for e in gone)
