"""ndp(8): the neighbour cache, NetBSD syntax and output (``usr.sbin/ndp/ndp.c``).

``ndp -a`` (all), ``ndp ADDR`` (one), ``ndp -s ADDR MAC [temp]``, ``ndp -d ADDR``,
``ndp -c`` (flush the dynamic entries); ``-n`` is accepted (nothing is resolved here).
A listing is NetBSD's::

    Neighbor                             Linklayer Address  Netif Expire    S Flags
    fc00::2                              b2:a0:59:f3:98:fe shmif0 23s       R
    fc00::1                              b2:a0:18:4e:7f:2c shmif0 permanent R

Our own addresses are shown as permanent entries, as NetBSD keeps them in its table.
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, cast

from rumpnet.commands import UsageError, getopt, on_cpu, strerror
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.netconfig import format_mac, parse_mac
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_var import (
    IN6_IFF_AUTOCONF,
    ND6_IFF_ACCEPT_RTADV,
    ND6_IFF_AUTO_LINKLOCAL,
    ND6_IFF_IFDISABLED,
    ND6_IFF_PERFORMNUD,
    ND6_INFINITE_LIFETIME,
)
from rumpnet.netinet6.nd6 import ND6_LLINFO_REACHABLE, ND6_STATE_LETTER
from rumpnet.route import RTF_HOST, RTF_LLDATA, RTF_LOCAL, RTF_STATIC, RTF_UP
from rumpnet.route_msg import (
    AF_INET6,
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
    from rumpnet.net_kernel import NetKernel

USAGE = """usage: ndp [-nt] hostname
       ndp [-nt] -a | -c | -p | -r | -H | -P | -R
       ndp [-nt] -A wait
       ndp [-nt] -d hostname
       ndp [-nt] -f filename
       ndp [-nt] -i interface [flags...]
       ndp [-nt] -I [interface|delete]
       ndp [-nt] -s nodename etheraddr [temp] [proxy]"""

# usr.sbin/ndp/ndp.c's getopt string; the modes this ndp has are -a, -c, -d and -s.
OPTSTRING = "acdfIilnprstA:HPR"

RTPREF = ("medium", "high", "rsv", "low")   # RFC 4191 2.1's Prf, as ndp.c names it
W_ADDR, W_LL, W_IF = 36, 17, 6
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


def _ifname(k: NetKernel, ifindex: int) -> str:
    ifp = k.ifnet.by_index(ifindex)
    return ifp.name if ifp is not None else "?"


def _host(k: NetKernel, addr: int, ifindex: int) -> str:
    return scope6.format_scoped(addr, ifindex, lambda i: _ifname(k, i))


def _router_discovery(k: NetKernel, mode: str) -> str:
    """``ndp -r`` (default routers), ``-p`` (prefixes), ``-R``/``-P`` (flush them), as
    NetBSD 7's ndp.c prints them."""
    cfg = k.config
    if mode == "R":
        cfg.nd_router_flush()
        return ""
    if mode == "P":
        cfg.nd_prefix_flush()
        return ""
    now = k.sched.now()
    out = []
    if mode == "r":
        for dr in cfg.nd_routers():
            flags = ("M" if dr.flags & 0x80 else "") + ("O" if dr.flags & 0x40 else "")
            expire = sec2str(int(dr.expire - now)) if dr.expire else "Never"
            out.append(f"{_host(k, dr.addr, dr.ifindex)} if={_ifname(k, dr.ifindex)}, flags={flags}, "
                       f"pref={RTPREF[(dr.flags >> 3) & 3]}, expire={expire}\n")
        return "".join(out)
    entries = {(e.addr, e.ifp.index): e for e in cfg.ndp_entries() if not e.local}
    inet6 = k.inet6
    assert inet6 is not None
    addrs = [(ifp, ia) for ifp in k.ifnet.all() for ia in inet6.addresses(ifp)]
    for pr in cfg.nd_prefixes():
        out.append(f"{in6.ntop(pr.prefix)}/{pr.plen} if={_ifname(k, pr.ifindex)}\n")
        life = ("infinity" if pr.vltime == ND6_INFINITE_LIFETIME else str(pr.vltime),
                "infinity" if pr.pltime == ND6_INFINITE_LIFETIME else str(pr.pltime))
        if pr.expire is None:
            expire = ", expire=Never"
        elif pr.expire >= now:
            expire = f", expire={sec2str(int(pr.expire - now))}"
        else:
            expire = ", expired"
        refs = sum(1 for ifp, ia in addrs if ifp.index == pr.ifindex and ia.flags & IN6_IFF_AUTOCONF
                   and ia.plen == pr.plen and in6.are_prefix_equal(ia.addr, pr.prefix, pr.plen))
        out.append(f"flags=L{'A' if pr.autonomous else ''}O vltime={life[0]}, pltime={life[1]}{expire}, "
                   f"ref={refs}\n")
        if not pr.advrtrs:
            out.append("  No advertising router\n")
            continue
        out.append("  advertised by\n")
        for rtr in pr.advrtrs:
            e = entries.get((rtr, pr.ifindex))
            state = ("no neighbor state" if e is None else
                     "reachable" if e.state >= ND6_LLINFO_REACHABLE else "unreachable")
            out.append(f"    {_host(k, rtr, pr.ifindex)} ({state})\n")
    return "".join(out)


_IFINFO_FLAGS = (("nud", ND6_IFF_PERFORMNUD), ("disabled", ND6_IFF_IFDISABLED),
                 ("accept_rtadv", ND6_IFF_ACCEPT_RTADV), ("auto_linklocal", ND6_IFF_AUTO_LINKLOCAL))


def _ifinfo(k: NetKernel, ifname: str, words: list[str]) -> str:
    """``ndp -i IF [[-]flag ...] [basereachable=ms] [retrans=ms] [curhlim=n]``."""
    cfg = k.config
    try:
        ifp = k.ifnet.lookup(ifname)
    except OSError:
        raise OSError(errno.ENXIO, "ndp: ioctl(SIOCGIFINFO_IN6): Device not configured") from None
    try:
        ndi = cfg.nd_ifinfo(ifname)
    except OSError as e:
        raise OSError(e.errno, f"ndp: {e.strerror}") from None
    changes: dict[str, float | int] = {}
    flags = ndi.flags
    for w in words:
        name, _, value = w.partition("=")
        clear = name.startswith("-")
        bit = dict(_IFINFO_FLAGS).get(name.lstrip("-"))
        if bit is not None and not value:
            flags = flags & ~bit if clear else flags | bit
            changes["flags"] = flags
        elif name in ("basereachable", "retrans", "curhlim") and value.isdigit():
            key = {"curhlim": "chlim"}.get(name, name)
            changes[key] = int(value) if key == "chlim" else int(value) / 1000
        else:
            raise OSError(errno.EINVAL, f"ndp: syntax error in {name} field")
    if changes:
        ndi = cfg.nd_ifinfo(ifname, changes)
    base, retrans = round(ndi.basereachable * 1000), round(ndi.retrans * 1000)
    text = (f"linkmtu={ndi.linkmtu}, maxmtu={ifp.mtu}, curhlim={ndi.chlim}, "
            f"basereachable={base // 1000}s{base % 1000}ms, reachable={int(ndi.reachable)}s, "
            f"retrans={retrans // 1000}s{retrans % 1000}ms")
    if ndi.flags:
        text += "\nFlags: " + "".join(f"{n} " for n, bit in _IFINFO_FLAGS if ndi.flags & bit)
    return text + "\n"


def ndp(k: Kernel, argv: list[str]) -> str:
    """ndp(8) on kernel ``k``: the neighbour cache through a routing socket and sysctl
    (-a, -c, -d, -s, a host); -p, -r, -P, -R and -i still through ``k.config`` (NetBSD's
    ndp uses SIOC*_IN6 ioctls for those, which this kernel does not have yet)."""
    client = RouteClient(k)
    try:
        return _ndp(client, argv)
    finally:
        client.close()


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
    k = cast("NetKernel", client.k)  # -p -r -P -R -i: not through system calls yet
    if mode in ("p", "r", "P", "R"):
        if args:
            raise UsageError(USAGE)
        return on_cpu(k, lambda: _router_discovery(k, mode))
    if mode == "i":
        if not args:
            raise UsageError(USAGE)
        return on_cpu(k, lambda: _ifinfo(k, args[0], args[1:]))
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
