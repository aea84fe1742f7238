"""route(8): manipulate and show the routing table, NetBSD syntax and output."""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpnet.commands import UsageError, getopt, strerror
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.netconfig import NetConfig, format_mac
from rumpnet.netinet.in_addr import aton_strict, ntoa
from rumpnet.route import (
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_DONE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_LOCAL,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    flags_letters,
    plen_to_mask,
)
from rumpnet.route_msg import (
    AF_INET,
    RTA_DST,
    RTA_GATEWAY,
    RTA_IFA,
    RTA_IFP,
    RTA_NETMASK,
    RTM_ADD,
    RTM_CHANGE,
    RTM_DELETE,
    RTM_GET,
    RTV_MTU,
    RtMsghdr,
    Sockaddr,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    mask_sockaddr,
    netmask_of,
)

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

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


class RouteRow:
    """A route (or an ARP entry) as a routing message describes it: what netstat -r and
    route get print."""

    def __init__(self, msg: RtMsghdr, client: RouteClient) -> None:
        dst = msg.addrs.get(RTA_DST)
        self.dst = dst.addr if isinstance(dst, (SockaddrIn, SockaddrIn6)) else 0
        self.zone = dst.scope_id if isinstance(dst, SockaddrIn6) else 0
        bits = 128 if isinstance(dst, SockaddrIn6) else 32
        plen = netmask_of(msg.addrs.get(RTA_NETMASK), bits)
        self.plen: int = bits if plen is None else plen
        self.mask = plen_to_mask(self.plen) if bits == 32 else 0
        self.flags = msg.rtm_flags
        self.gateway = msg.addrs.get(RTA_GATEWAY)
        ifp = msg.addrs.get(RTA_IFP)
        self.ifname = ifp.name if isinstance(ifp, SockaddrDl) and ifp.name else client.ifname(msg.rtm_index)
        self.iface = client.ifaces().get(msg.rtm_index)
        ifa = msg.addrs.get(RTA_IFA)
        self.ifa = ifa if isinstance(ifa, (SockaddrIn, SockaddrIn6)) else None
        self.ifa_owner = client.owner(self.ifa)
        self.mtu = msg.rtm_rmx.rmx_mtu
        self.expire = max(0, msg.rtm_rmx.rmx_expire)

    def mtu_col(self) -> str:
        """The Mtu column: the route's, or for a route of the loopback interface (whose
        address, if any, is the loopback's too) the interface's, as lortrequest sets it."""
        if self.mtu:
            return str(self.mtu)
        iface = self.iface
        if iface is not None and iface.loopback and (self.ifa is None or (self.ifa_owner is not None
                                                                          and self.ifa_owner.loopback)):
            return str(iface.mtu)
        return "-"


def dest_name(rt: RouteRow | Any) -> str:
    """``default``, a host's address, or a network as netname4 writes it (a RouteRow or
    anything with ``dst``, ``plen`` and ``flags``)."""
    if rt.flags & RTF_HOST:
        return "default" if rt.dst == 0 else ntoa(rt.dst)
    return netname(rt.dst, rt.plen)


def gateway_text(sa: Sockaddr | None) -> str:
    """A gateway as netstat's p_sockaddr prints it: an address (0.0.0.0 is ``default``),
    an interface's link-level sockaddr by name, or ``link#N`` when it has none."""
    if isinstance(sa, SockaddrIn):
        return ntoa(sa.addr) if sa.addr else "default"
    if isinstance(sa, SockaddrDl):
        if sa.lladdr:
            return format_mac(sa.lladdr)
        return sa.name if sa.name else f"link#{sa.index}"
    return "-"


def _row(dst: str, gw: str, flags: int, mtu: str, ifname: str) -> str:
    return f"{dst:<18} {gw:<18} {flag_letters(flags):<6.6} {'-':>6} {'-':>8} {mtu:>6}  {ifname}"


def rttable(client: RouteClient) -> str:
    """``netstat -rn -f inet`` / ``route -n show``: the Internet section.

    The routing dump (NET_RT_DUMP), then the ARP cache (NET_RT_FLAGS with RTF_LLINFO):
    ``UHL`` (``S`` when permanent, ``p`` when published), gateway the MAC address. NetBSD
    keeps link-layer entries out of its routing table since 8.0, but netstat -rn still
    lists them: tests/net/arp/t_arp.sh (2024) checks ``check_route IP MAC UHLS shmif0``
    and finds a cached neighbour in ``netstat -nr -f inet``.
    """
    out = ["Routing tables", "", "Internet:",
           f"{'Destination':<18} {'Gateway':<18} {'Flags':<6} {'Refs':>6} {'Use':>8} {'Mtu':>6} Interface"]
    for msg in client.dump(AF_INET):
        rt = RouteRow(msg, client)
        out.append(_row(dest_name(rt), gateway_text(rt.gateway), rt.flags, rt.mtu_col(), rt.ifname or "-"))
    for msg in client.lldump(AF_INET):
        rt = RouteRow(msg, client)
        out.append(_row(ntoa(rt.dst), gateway_text(rt.gateway), rt.flags, "-", rt.ifname or "-"))
    return "\n".join(out) + "\n"


def kernel_rttable(k: Kernel, family: str | None = None) -> str:
    """``netstat -rn [-f inet|inet6]``: every family's section unless one is named."""
    with RouteClient(k) as client:
        return rttables(client, family)


def rttables(client: RouteClient, family: str | None = None) -> str:
    from rumpnet.commands.route6 import rttable6

    if family == "inet6":
        return "Routing tables\n\n" + rttable6(client)
    text = rttable(client)
    if family is None and client.has_family(pysocket.AF_INET6):
        text += "\n" + rttable6(client)
    return text


def metrics_lines(mtu: int, expire: int) -> list[str]:
    """route get's metrics table (route.c print_getmsg)."""
    vals = [0, 0, 0, 0, 0, 0, mtu, expire]
    return [" recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire",
            "".join(f"{v:8d}  " for v in vals[:-1]) + f"{vals[-1]:8d} "]


def route_get_text(target: str, rt: RouteRow) -> str:
    lines = [f"   route to: {target}"]
    dst = dest_name(rt) if rt.flags & RTF_HOST else ("default" if rt.plen == 0 else ntoa(rt.dst))
    lines.append(f"destination: {dst}")
    if not rt.flags & RTF_HOST:
        lines.append(f"       mask: {'default' if rt.plen == 0 else ntoa(rt.mask)}")
    if rt.flags & RTF_GATEWAY and isinstance(rt.gateway, SockaddrIn):
        lines.append(f"    gateway: {ntoa(rt.gateway.addr)}")
    if rt.ifa is not None:
        lines.append(f" local addr: {ntoa(rt.ifa.addr)}")
    if rt.ifname is not None:
        lines.append(f"  interface: {rt.ifname}")
    lines.append(f"      flags: {flag_names(rt.flags | RTF_DONE)}")
    lines += metrics_lines(rt.mtu, rt.expire)
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


def _dest_sockaddrs(r: _Req) -> tuple[int, dict[int, Sockaddr], int]:
    """RTA_DST and RTA_NETMASK of a request, and RTF_HOST when it is a host route."""
    assert r.dest is not None
    ip, plen = NetConfig.parse_dest(r.dest, r.host, r.net, r.netmask)
    addrs: dict[int, Sockaddr] = {RTA_DST: SockaddrIn(ip)}
    if plen < 32 or r.net:
        addrs[RTA_NETMASK] = mask_sockaddr(AF_INET, plen)
    return ip, addrs, RTF_HOST if plen == 32 else 0


def _request_msg(cmd: str, r: _Req) -> RtMsghdr:
    """The RTM_ADD/RTM_CHANGE message route(8) writes for a parsed command line."""
    _, addrs, host = _dest_sockaddrs(r)
    iface = r.iface or r.link
    flags = RTF_UP | host | (r.set_flags & ~r.clear_flags)
    if not r.clear_flags & RTF_STATIC:
        flags |= RTF_STATIC
    if r.gateway is not None:
        try:
            addrs[RTA_GATEWAY] = SockaddrIn(aton_strict(r.gateway))
            if not iface:
                flags |= RTF_GATEWAY
        except OSError:
            if not iface:
                raise OSError(errno.EINVAL, "Invalid argument") from None
            # "-link -iface shmif0": the gateway is the interface itself, a sockaddr_dl
            # (t_route.sh route_non_subnet_gateway).
            addrs[RTA_GATEWAY] = SockaddrDl(name=r.gateway)
    if r.ifp is not None:
        addrs[RTA_IFP] = SockaddrDl(name=r.ifp)
    if r.ifa is not None:
        addrs[RTA_IFA] = SockaddrIn(aton_strict(r.ifa))
    msg = RtMsghdr(RTM_ADD if cmd == "add" else RTM_CHANGE, flags, addrs=addrs)
    if r.mtu is not None:
        msg.rtm_inits |= RTV_MTU
        msg.rtm_rmx.rmx_mtu = r.mtu
    return msg


def route(k: Kernel, argv: list[str]) -> str:
    """route(8) on kernel ``k`` (see rumpnet.commands): through a routing socket and
    sysctl net.route only, as NetBSD's."""
    with RouteClient(k) as client:
        return _route(client, argv)


def _route(client: RouteClient, argv: list[str]) -> str:
    opts, args = getopt("route", argv, OPTSTRING, USAGE)
    quiet = any(ch == "q" for ch, _ in opts)
    flush_first = any(ch == "f" for ch, _ in opts)
    if not client.has_family(pysocket.AF_INET):
        raise OSError(errno.EAFNOSUPPORT, "route: socket: Address family not supported by protocol family")
    out: list[str] = []
    if flush_first:
        out.append(_flush(client, quiet))
    if not args:
        if flush_first:
            return "".join(out)
        raise UsageError(USAGE)
    cmd = args.pop(0)
    if "-inet6" in args:
        from rumpnet.commands.route6 import route6

        return "".join(out) + route6(client, cmd, [a for a in args if a != "-inet6"], quiet, USAGE)
    if cmd == "flush":
        for a in args:
            if a not in ("-inet", "-n"):
                raise UsageError(USAGE)
        out.append(_flush(client, quiet))
        return "".join(out)
    if cmd == "show":
        for a in args:
            if a not in ("-inet", "-n", "-v"):
                raise UsageError(USAGE)
        return "".join(out) + rttables(client, "inet" if "-inet" in args else None)
    if cmd == "monitor":
        raise OSError(errno.EOPNOTSUPP, "route: monitor: Operation not supported")
    if cmd not in ("add", "delete", "change", "get"):
        raise UsageError(f"route: {cmd}: unknown command\n{USAGE}")
    r = _parse(cmd, args)
    if cmd == "get":
        return "".join(out) + _get(client, r)
    try:
        if cmd == "delete":
            _, addrs, host = _dest_sockaddrs(r)
            client.request(RtMsghdr(RTM_DELETE, host, addrs=addrs))
        else:
            client.request(_request_msg(cmd, r))
    except OSError as e:
        raise _failure(cmd, r, e) from None
    if not quiet:
        out.append(_msg(cmd, r) + "\n")
    return "".join(out)


def _get(client: RouteClient, r: _Req) -> str:
    """route get: RTM_GET with the destination; the answer names the route."""
    assert r.dest is not None
    try:
        ip = 0 if r.dest == "default" else aton_strict(r.dest.split("/", 1)[0])
        reply = client.request(RtMsghdr(RTM_GET, addrs={RTA_DST: SockaddrIn(ip), RTA_IFP: SockaddrDl()}))
    except OSError as e:
        raise OSError(errno.ESRCH, f"route: writing to routing socket: {strerror(errno.ESRCH)}\n"
                                   f"get {'net' if r.net else 'host'} {r.dest}: not in table") from e
    return route_get_text(r.dest if r.dest == "default" else ntoa(ip), RouteRow(reply, client))


def flushable(flags: int) -> bool:
    """What route flush removes: gateway routes and static ones that are not an
    interface's own (NetBSD keeps interface routes)."""
    return bool(flags & RTF_GATEWAY) or bool(flags & RTF_STATIC and not flags & (RTF_CONNECTED | RTF_LOCAL))


def _flush(client: RouteClient, quiet: bool) -> str:
    """route flush: dump, then RTM_DELETE each flushable route (route.c flushroutes)."""
    gone: list[RouteRow] = []
    for msg in client.dump(AF_INET):
        if not flushable(msg.rtm_flags):
            continue
        addrs = {bit: sa for bit, sa in msg.addrs.items() if bit in (RTA_DST, RTA_NETMASK)}
        client.request(RtMsghdr(RTM_DELETE, msg.rtm_flags, addrs=addrs))
        gone.append(RouteRow(msg, client))
    if quiet:
        return ""
    gone.sort(key=lambda rt: (rt.dst, rt.plen))
    return "".join(f"{dest_name(rt):<20.20} done\n" for rt in gone)


__all__ = ["RTF_CONNECTED", "RouteRow", "dest_name", "flag_letters", "flag_names", "gateway_text", "kernel_rttable",
           "netname", "route", "rttable"]
