"""route(8): manipulate and show the routing table, NetBSD syntax and output."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from rumpnet.commands import UsageError, getopt, on_cpu, strerror
from rumpnet.net_kernel import netinet
from rumpnet.netconfig import format_mac
from rumpnet.netinet.if_arp import LLE_VALID
from rumpnet.netinet.in_addr import aton_strict, ntoa
from rumpnet.route import (
    RTF_ANNOUNCE,
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_DONE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_LLDATA,
    RTF_LOCAL,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    Rtentry,
    flags_letters,
)

RTF_LLINFO = RTF_LLDATA

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

USAGE = "usage: route [-dfLnqSsTtv] cmd [[-<qualifers>] args]"
OPTSTRING = "dfLnqSsTtv"  # sbin/route/route.c

# route get's ``flags: 0x..<...>`` names, by bit (snprintb, NetBSD's ``routeflags``).
_NAMES = [
    (0x1, "UP"), (0x2, "GATEWAY"), (0x4, "HOST"), (0x8, "REJECT"), (0x10, "DYNAMIC"),
    (0x20, "MODIFIED"), (0x40, "DONE"), (0x80, "MASK_PRESENT"), (0x100, "CONNECTED"),
    (0x200, "XRESOLVE"), (0x400, "LLINFO"), (0x800, "STATIC"), (0x1000, "BLACKHOLE"),
    (0x2000, "CLONED"), (0x4000, "PROTO2"), (0x8000, "PROTO1"), (0x10000, "SRC"),
    (0x20000, "ANNOUNCE"), (0x40000, "LOCAL"), (0x80000, "BROADCAST"),
]

_ERRWORDS = {
    errno.ESRCH: "not in table",
    errno.EBUSY: "entry in use",
    errno.ENOBUFS: "routing table overflow",
    errno.EEXIST: "entry already exists",
}


def flag_letters(flags: int) -> str:
    """netstat -r / route show letters (``UGS``)."""
    return flags_letters(flags)


def flag_names(flags: int) -> str:
    """Route flags as route get prints them (``0x803<UP,GATEWAY,STATIC>``)."""
    names = ",".join(n for bit, n in _NAMES if flags & bit)
    return f"0x{flags:x}<{names}>" if names else f"0x{flags:x}"


def netname(dst: int, plen: int) -> str:
    """NetBSD's netname4 for -n: ``default``, ``127/8``, ``10.0.2/24``."""
    if dst == 0 and plen == 0:
        return "default"
    b = [(dst >> s) & 0xFF for s in (24, 16, 8, 0)]
    if plen < 9:
        return f"{b[0]}/{plen}"
    if plen < 17:
        return f"{b[0]}.{b[1]}/{plen}"
    if plen < 25:
        return f"{b[0]}.{b[1]}.{b[2]}/{plen}"
    return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}/{plen}"


def dest_name(rt: Rtentry) -> str:
    if rt.flags & RTF_HOST:
        return "default" if rt.dst == 0 else ntoa(rt.dst)
    return netname(rt.dst, rt.plen)


def gateway_name(rt: Rtentry) -> str:
    if rt.gateway is not None:
        return ntoa(rt.gateway) if rt.gateway else "default"
    if rt.flags & RTF_LOCAL and rt.ifa is not None:
        owner = rt.ifa.ifp
        # NetBSD shows the owning interface's empty link address (t_ipaddress.sh).
        return owner.name if owner.loopback else f"link#{owner.index}"
    return f"link#{rt.ifp.index}" if rt.ifp is not None else "-"


def _mtu_col(rt: Rtentry) -> str:
    if rt.mtu:
        return str(rt.mtu)
    ifp = rt.ifp
    if ifp is not None and ifp.loopback and (rt.ifa is None or rt.ifa.ifp.loopback):
        return str(ifp.mtu)
    return "-"


def _row(dst: str, gw: str, flags: int, mtu: str, ifname: str) -> str:
    return f"{dst:<18} {gw:<18} {flag_letters(flags):<6.6} {'-':>6} {'-':>8} {mtu:>6}  {ifname}"


def rttable(routes: list[Rtentry], llentries: list[Any] | None = None) -> str:
    """``netstat -rn -f inet`` / ``route -n show``: the Internet section.

    ARP entries follow the routes, as NetBSD's routing dump appends the lltable:
    ``UHL`` (``S`` when permanent, ``p`` when published), gateway the MAC address. NetBSD
    keeps link-layer entries out of its routing table since 8.0, but netstat -rn still
    lists them: tests/net/arp/t_arp.sh (2024) checks ``check_route IP MAC UHLS shmif0``
    and finds a cached neighbour in ``netstat -nr -f inet``.
    """
    out = ["Routing tables", "", "Internet:",
           f"{'Destination':<18} {'Gateway':<18} {'Flags':<6} {'Refs':>6} {'Use':>8} {'Mtu':>6} Interface"]
    for rt in routes:
        ifname = rt.ifp.name if rt.ifp is not None else "-"
        out.append(_row(dest_name(rt), gateway_name(rt), rt.flags, _mtu_col(rt), ifname))
    for lle in llentries or ():
        flags = RTF_UP | RTF_HOST | RTF_LLINFO | (RTF_STATIC if lle.static else 0) | (RTF_ANNOUNCE if lle.published else 0)
        gw = format_mac(lle.mac) if lle.mac is not None and lle.state == LLE_VALID else f"link#{lle.ifp.index}"
        out.append(_row(ntoa(lle.ip), gw, flags, "-", lle.ifp.name))
    return "\n".join(out) + "\n"


def kernel_rttable(k: NetKernel, family: str | None = None) -> str:
    """``netstat -rn [-f inet|inet6]``: every family's section unless one is named."""
    from rumpnet.commands.route6 import kernel_rttable6

    if family == "inet6":
        return "Routing tables\n\n" + kernel_rttable6(k)
    text = rttable(list(k.net.routes), k.inet.arp.entries() if k.inet is not None else None)
    if family is None and k.inet6 is not None:
        text += "\n" + kernel_rttable6(k)
    return text


def route_get_text(k: NetKernel, target: str, rt: Rtentry) -> str:
    lines = [f"   route to: {target}"]
    dst = dest_name(rt) if rt.flags & RTF_HOST else ("default" if rt.plen == 0 else ntoa(rt.dst))
    lines.append(f"destination: {dst}")
    if not rt.flags & RTF_HOST:
        lines.append(f"       mask: {'default' if rt.plen == 0 else ntoa(rt.mask)}")
    if rt.flags & RTF_GATEWAY and rt.gateway is not None:
        lines.append(f"    gateway: {ntoa(rt.gateway)}")
    if rt.ifa is not None:
        lines.append(f" local addr: {ntoa(rt.ifa.addr)}")
    if rt.ifp is not None:
        lines.append(f"  interface: {rt.ifp.name}")
    lines.append(f"      flags: {flag_names(rt.flags | RTF_DONE)}")
    lines.append(" recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire")
    expire = 0
    if rt.expire:
        expire = max(0, int(rt.expire - k.sched.now()))
    vals = [0, 0, 0, 0, 0, 0, rt.mtu, expire]
    lines.append("".join(f"{v:8d}  " for v in vals[:-1]) + f"{vals[-1]:8d} ")
    return "\n".join(lines) + "\n"


class _Req:
    """A parsed add/delete/change/get request."""

    def __init__(self) -> None:
        self.dest: str | None = None
        self.gateway: str | None = None
        self.netmask: str | None = None
        self.host = False
        self.net = False
        self.iface = False
        self.link = False
        self.ifa: str | None = None
        self.ifp: str | None = None
        self.set_flags = 0
        self.clear_flags = 0
        self.mtu: int | None = None


def _parse(cmd: str, args: list[str]) -> _Req:
    r = _Req()
    pos: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        i += 1
        if w.startswith("-") and len(w) > 1 and not w[1:2].isdigit():
            kw = w[1:]

            def arg(opt: str = w) -> str:
                nonlocal i
                if i >= len(args):
                    raise UsageError(f"route: {opt}: missing argument\n{USAGE}")
                i += 1
                return args[i - 1]

            if kw == "net":
                r.net = True
            elif kw == "host":
                r.host = True
            elif kw == "netmask":
                r.netmask = arg()
                r.net = True
            elif kw in ("iface", "interface"):
                r.iface = True
            elif kw == "link":
                r.link = True
            elif kw == "ifa":
                r.ifa = arg()
            elif kw == "ifp":
                r.ifp = arg()
            elif kw == "reject":
                r.set_flags |= RTF_REJECT
            elif kw == "noreject":
                r.clear_flags |= RTF_REJECT
            elif kw == "blackhole":
                r.set_flags |= RTF_BLACKHOLE
            elif kw == "noblackhole":
                r.clear_flags |= RTF_BLACKHOLE
            elif kw == "static":
                r.set_flags |= RTF_STATIC
            elif kw == "nostatic":
                r.clear_flags |= RTF_STATIC
            elif kw == "proxy":
                r.set_flags |= 0x20000
            elif kw == "connected":
                # NetBSD route(8) -connected (RTF_CONNECTED); tests/net/route/t_route.sh
                # uses it. Before this fix it was an invalid option.
                r.set_flags |= RTF_CONNECTED
            elif kw == "noconnected":
                r.clear_flags |= RTF_CONNECTED
            elif kw in ("cloning", "xresolve", "llinfo", "inet", "nocloning", "cloned", "nocloned"):
                pass
            elif kw == "mtu":
                v = arg()
                if not v.isdigit():
                    raise OSError(errno.EINVAL, f"route: {v}: invalid number")
                r.mtu = int(v)
            elif kw in ("hopcount", "expire", "recvpipe", "sendpipe", "ssthresh", "rtt", "rttvar", "tag"):
                arg()
            elif kw in ("lock", "lockrest"):
                pass
            elif kw in ("inet6", "atalk", "mpls", "iso"):
                raise OSError(errno.EAFNOSUPPORT, f"route: {kw}: address family not supported")
            else:
                raise UsageError(f"route: {w}: invalid option\n{USAGE}")
        else:
            pos.append(w)
    if not pos:
        raise UsageError(USAGE)
    r.dest = pos[0]
    if len(pos) > 1:
        r.gateway = pos[1]
    if len(pos) > 2:
        r.netmask = pos[2]
        r.net = True
    if len(pos) > 3 or (cmd == "get" and len(pos) > 1):
        raise UsageError(USAGE)
    if r.dest != "default":
        base = r.dest.split("/", 1)[0]
        try:
            aton_strict(base)
        except OSError:
            raise OSError(errno.EINVAL, f"route: {r.dest}: bad value") from None
        if "/" in r.dest:
            r.net = not r.host
    else:
        r.net = True
    if r.gateway is not None:
        try:
            aton_strict(r.gateway)
        except OSError:
            if r.ifp is None and not r.iface:
                raise OSError(errno.EINVAL, f"route: {r.gateway}: bad value") from None
    if r.host:
        r.net = False
    return r


def _msg(cmd: str, r: _Req) -> str:
    # NetBSD's route prints the destination as getaddr() left it: "10.0.2.0/24" becomes
    # "10.0.2.0" (it writes a NUL over the '/'); t_route.sh matches "add net 10.0.0.1:
    # gateway shmif0" for "add -net 10.0.0.1/32 ...". Before this fix the /len stayed.
    dest = (r.dest or "").split("/", 1)[0]
    s = f"{cmd} {'net' if r.net else 'host'} {dest}"
    if r.gateway is not None:
        s += f": gateway {r.gateway}"
    return s


def _failure(cmd: str, r: _Req, e: OSError) -> OSError:
    code = e.errno if e.errno is not None else errno.EINVAL
    word = _ERRWORDS.get(code, strerror(code))
    return OSError(code, f"route: writing to routing socket: {strerror(code)}\n{_msg(cmd, r)}: {word}")


def _do_add(k: NetKernel, r: _Req) -> Rtentry:
    cfg = k.config
    assert r.dest is not None
    gateway, ifp = r.gateway, r.ifp
    if gateway is not None and (r.iface or r.link) and k.ifnet.get(gateway) is not None:
        # "-link -iface shmif0": the gateway is the interface itself (a sockaddr_dl in
        # NetBSD); t_route.sh route_non_subnet_gateway. Before this fix: EINVAL.
        gateway, ifp = None, gateway
    rt: Rtentry = cfg.route_add(r.dest, gateway, host=r.host, net=r.net, netmask=r.netmask,
                       interface=r.iface or r.link, ifp=ifp,
                       reject=bool(r.set_flags & RTF_REJECT), blackhole=bool(r.set_flags & RTF_BLACKHOLE),
                       mtu=r.mtu or 0, static=not r.clear_flags & RTF_STATIC)
    if r.gateway is not None and rt.gateway is None and not (r.iface or r.link):
        # A reject/blackhole route through a local address keeps its gateway (UGHR).
        rt.gateway = aton_strict(r.gateway)
        rt.flags |= RTF_GATEWAY
    rt.flags |= r.set_flags & (0x20000 | RTF_CONNECTED)
    if r.ifa is not None:
        _set_ifa(k, rt, r.ifa)
    k.net.routes.invalidate()
    return rt


def _set_ifa(k: NetKernel, rt: Rtentry, addr: str) -> None:
    a = aton_strict(addr)
    inet = netinet(k)
    ifa = inet.local_addrs.get(a)
    if ifa is None:
        near = inet.ifa_on_link(a)
        if near is None:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        ifa = near
    rt.ifa = ifa
    if rt.ifp is None or not rt.ifp.loopback:
        rt.ifp = ifa.ifp


def _do_change(k: NetKernel, r: _Req) -> Rtentry:
    assert r.dest is not None
    ip, plen = k.config.parse_dest(r.dest, r.host, r.net, r.netmask)
    rt: Rtentry | None = k.net.routes.exact(ip, plen)
    if rt is None:
        raise OSError(errno.ESRCH, "No such process")
    inet = netinet(k)
    if r.gateway is not None and not (r.iface or r.link):
        gw = aton_strict(r.gateway)
        if r.ifp is not None:
            out = k.ifnet.lookup(r.ifp)
            ifa = out.addrs[0] if out.addrs else None
        elif r.ifa is not None:
            ifa = None
        else:
            ifa = inet.ifa_on_link(gw)
            if ifa is None and gw not in inet.local_addrs:
                raise OSError(errno.ENETUNREACH, "Network is unreachable")
        rt.gateway = gw
        rt.flags |= RTF_GATEWAY
        if ifa is not None:
            rt.ifa, rt.ifp = ifa, ifa.ifp
    elif r.ifp is not None:
        out = k.ifnet.lookup(r.ifp)
        rt.ifp = out
        if out.addrs:
            rt.ifa = out.addrs[0]
    if r.ifa is not None:
        _set_ifa(k, rt, r.ifa)
        if r.ifp is not None:
            rt.ifp = k.ifnet.lookup(r.ifp)
            for ifa2 in rt.ifp.addrs:
                if (ifa2.addr & ifa2.mask) == ((rt.gateway or 0) & ifa2.mask):
                    rt.ifa = ifa2
                    break
    # RTM_CHANGE carries REJECT and BLACKHOLE as the command states them (NetBSD's
    # rtm_fmask): "change ... -blackhole" on a reject route leaves a blackhole route.
    sticky = RTF_REJECT | RTF_BLACKHOLE
    rt.flags = ((rt.flags & ~sticky) | r.set_flags | RTF_STATIC) & ~r.clear_flags
    if r.clear_flags & RTF_STATIC:
        rt.flags &= ~RTF_STATIC
    if r.mtu is not None:
        rt.mtu = r.mtu
    k.net.routes.invalidate()
    return rt


def route(k: NetKernel, argv: list[str]) -> str:
    """route(8) on kernel ``k`` (see rumpnet.commands)."""
    return on_cpu(k, lambda: _route(k, argv))


def _route(k: NetKernel, argv: list[str]) -> str:
    opts, args = getopt("route", argv, OPTSTRING, USAGE)
    quiet = any(ch == "q" for ch, _ in opts)
    flush_first = any(ch == "f" for ch, _ in opts)
    if k.inet is None:
        raise OSError(errno.EAFNOSUPPORT, "route: socket: Address family not supported by protocol family")
    out: list[str] = []
    if flush_first:
        out.append(_flush(k, quiet))
    if not args:
        if flush_first:
            return "".join(out)
        raise UsageError(USAGE)
    cmd = args.pop(0)
    if "-inet6" in args:
        from rumpnet.commands.route6 import route6

        return "".join(out) + route6(k, cmd, [a for a in args if a != "-inet6"], quiet, USAGE)
    if cmd == "flush":
        for a in args:
            if a not in ("-inet", "-n"):
                raise UsageError(USAGE)
        out.append(_flush(k, quiet))
        return "".join(out)
    if cmd == "show":
        for a in args:
            if a not in ("-inet", "-n", "-v"):
                raise UsageError(USAGE)
        return "".join(out) + kernel_rttable(k, "inet" if "-inet" in args else None)
    if cmd == "monitor":
        raise OSError(errno.EOPNOTSUPP, "route: monitor: Operation not supported")
    if cmd not in ("add", "delete", "change", "get"):
        raise UsageError(f"route: {cmd}: unknown command\n{USAGE}")
    r = _parse(cmd, args)
    assert r.dest is not None
    if cmd == "get":
        try:
            ip = 0 if r.dest == "default" else aton_strict(r.dest.split("/", 1)[0])
            rt = k.net.routes.lookup(ip)
            if rt is None:
                raise OSError(errno.ESRCH, "No such process")
        except OSError as e:
            raise OSError(errno.ESRCH, f"route: writing to routing socket: {strerror(errno.ESRCH)}\n"
                                       f"get {'net' if r.net else 'host'} {r.dest}: not in table") from e
        return "".join(out) + route_get_text(k, r.dest if r.dest == "default" else ntoa(ip), rt)
    try:
        if cmd == "add":
            _do_add(k, r)
        elif cmd == "delete":
            try:
                k.config.route_delete(r.dest, host=r.host, net=r.net, netmask=r.netmask)
            except OSError as e:
                # In NetBSD an ARP entry is an LLINFO host route in the table (netstat -r
                # lists it, here too), so "route delete 10.0.1.1" removes it
                # (t_forwarding.sh test_ping_success). Before this fix: "not in table".
                lle = None
                if e.errno == errno.ESRCH and not r.net and r.dest != "default" and "/" not in r.dest \
                        and k.inet is not None:
                    lle = k.inet.arp.lookup(aton_strict(r.dest))
                if lle is None or lle.published:
                    raise
                k.config.arp_delete(ntoa(lle.ip))
        else:
            _do_change(k, r)
    except OSError as e:
        raise _failure(cmd, r, e) from None
    if not quiet:
        out.append(_msg(cmd, r) + "\n")
    return "".join(out)


def _flush(k: NetKernel, quiet: bool) -> str:
    gone: list[Any] = k.config.route_flush()
    if quiet:
        return ""
    gone.sort(key=lambda rt: (rt.dst, rt.plen))
    return "".join(f"{dest_name(rt):<20.20} done\n" for rt in gone)


__all__ = ["RTF_CONNECTED", "flag_letters", "flag_names", "kernel_rttable", "netname", "route", "rttable"]
