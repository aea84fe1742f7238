"""route(8) and netstat(1) for AF_INET6 (``route add|delete|change|get|flush|show -inet6``,
``netstat -rn -f inet6``), NetBSD syntax and output.

``route add -inet6 default fc00:0:0:1::1`` answers ``add net default: gateway
fc00:0:0:1::1``; a link-local gateway is written with its zone (``fe80::1%shmif0``);
``-prefixlen N`` or ``ADDR/N`` give the prefix length (64 by default for ``-net``).
"""

from __future__ import annotations

import errno
import socket as pysocket

from rumpnet.commands import UsageError, strerror
from rumpnet.commands.route import RouteRow, flag_letters, flag_names, flushable, metrics_lines
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.netinet6 import in6, scope6
from rumpnet.route import RTF_BLACKHOLE, RTF_DONE, RTF_GATEWAY, RTF_HOST, RTF_REJECT, RTF_STATIC, RTF_UP
from rumpnet.route_msg import (
    AF_INET6,
    RTA_DST,
    RTA_GATEWAY,
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
    SockaddrIn6,
    mask_sockaddr,
)

# netstat -rn's column widths for AF_INET6 (NetBSD rtutil.c WID_DST/WID_GW with -n).
WID_DST6 = 34
WID_GW6 = 30


def _name(client: RouteClient, addr: int, zone: int) -> str:
    return scope6.format_scoped(addr, zone, client.ifname)


def dest_name6(client: RouteClient, rt: RouteRow) -> str:
    """NetBSD's netname6: ``default``, ``fc00:0:0:1::/64``, ``fe80::%shmif0/64``, a host."""
    if rt.plen == 0:
        return "default"
    if rt.flags & RTF_HOST or rt.plen == 128:
        return _name(client, rt.dst, rt.zone)
    text = in6.ntop(rt.dst)
    if rt.zone and scope6.shows_zone(rt.dst, rt.zone):
        text += f"%{client.ifname(rt.zone) or rt.zone}"
    return f"{text}/{rt.plen}"


def gateway_name6(client: RouteClient, rt: RouteRow) -> str:
    gw = rt.gateway
    if isinstance(gw, SockaddrIn6):
        return _name(client, gw.addr, gw.scope_id)
    if isinstance(gw, SockaddrDl):
        return gw.name if gw.name else f"link#{gw.index}"
    return "-"


def _mtu6(rt: RouteRow) -> str:
    """The route's MTU, or a loopback route's (its address on the loopback too) lo0's."""
    iface = rt.iface
    on_lo = iface is not None and iface.loopback and (rt.ifa is None or (rt.ifa_owner is not None
                                                                          and rt.ifa_owner.index == iface.index))
    return str(rt.mtu) if rt.mtu else (str(iface.mtu) if on_lo and iface is not None else "-")


def rttable6(client: RouteClient) -> str:
    """The ``Internet6:`` section of ``netstat -rn``, from the NET_RT_DUMP of AF_INET6."""
    out = ["Internet6:",
           f"{'Destination':<{WID_DST6}} {'Gateway':<{WID_GW6}} {'Flags':<6} {'Refs':>6} {'Use':>8} {'Mtu':>6} Interface"]
    for msg in client.dump(AF_INET6):
        rt = RouteRow(msg, client)
        out.append(f"{dest_name6(client, rt):<{WID_DST6}} {gateway_name6(client, rt):<{WID_GW6}} "
                   f"{flag_letters(rt.flags):<6.6} {'-':>6} {'-':>8} {_mtu6(rt):>6}  {rt.ifname or '-'}")
    return "\n".join(out) + "\n"


def route_get_text6(client: RouteClient, target: str, rt: RouteRow) -> str:
    lines = [f"   route to: {target}", f"destination: {dest_name6(client, rt).split('/')[0]}"]
    if not rt.flags & RTF_HOST and rt.plen < 128:
        lines.append(f"       mask: {'default' if rt.plen == 0 else in6.ntop(in6.prefixlen2mask(rt.plen))}")
    if rt.flags & RTF_GATEWAY and rt.gateway is not None:
        lines.append(f"    gateway: {gateway_name6(client, rt)}")
    if isinstance(rt.ifa, SockaddrIn6):
        lines.append(f" local addr: {_name(client, rt.ifa.addr, rt.ifa.scope_id)}")
    if rt.ifname is not None:
        lines.append(f"  interface: {rt.ifname}")
    lines.append(f"      flags: {flag_names(rt.flags | RTF_DONE)}")
    lines += metrics_lines(rt.mtu, 0)
    return "\n".join(lines) + "\n"


class Req6:
    def __init__(self) -> None:
        self.dest = ""
        self.gateway: str | None = None
        self.host = False
        self.net = False
        self.prefixlen: int | None = None
        self.iface = False
        self.ifp: str | None = None
        self.flags = 0
        self.mtu = 0


_FLAG_WORDS = {"reject": RTF_REJECT, "blackhole": RTF_BLACKHOLE, "static": RTF_STATIC}


def parse6(cmd: str, args: list[str], usage: str) -> Req6:
    r = Req6()
    pos: list[str] = []
    it = iter(args)
    for w in it:
        kw = w[1:] if w.startswith("-") and len(w) > 1 else None
        if kw is None:
            pos.append(w)
        elif kw in ("inet6", "n", "cloning", "llinfo"):
            continue
        elif kw in ("host", "net"):
            setattr(r, kw, True)
        elif kw in ("iface", "interface", "link"):
            r.iface = True
        elif kw in _FLAG_WORDS:
            r.flags |= _FLAG_WORDS[kw]
        elif kw in ("prefixlen", "mtu", "ifp"):
            v = next(it, None)
            if v is None:
                raise UsageError(f"route: {w}: missing argument\n{usage}")
            if kw == "ifp":
                r.ifp = v
            elif not v.isdigit() or (kw == "prefixlen" and int(v) > 128):
                raise OSError(errno.EINVAL, f"route: {v}: invalid number")
            else:
                setattr(r, kw, int(v))
                r.net = r.net or kw == "prefixlen"
        else:
            raise UsageError(f"route: {w}: invalid option\n{usage}")
    if not pos or len(pos) > 2 or (cmd == "get" and len(pos) > 1):
        raise UsageError(usage)
    r.dest = pos[0]
    r.gateway = pos[1] if len(pos) > 1 else None
    if r.dest == "default" or "/" in r.dest:
        r.net = not r.host
    return r


def _msg(cmd: str, r: Req6) -> str:
    s = f"{cmd} {'net' if r.net else 'host'} {r.dest.split('/', 1)[0]}"
    if r.gateway is not None:
        s += f": gateway {r.gateway}"
    return s


def parse_scoped6(client: RouteClient, text: str) -> SockaddrIn6:
    """``ADDR[%zone]`` as a sockaddr_in6 (EINVAL for anything else)."""
    try:
        addr, zone = scope6.parse_scoped(text, client.ifindex)
    except OSError as e:
        raise OSError(errno.EINVAL, f"{text}: bad address ({e.strerror})") from None
    return SockaddrIn6(addr, zone)


def _dest6(client: RouteClient, r: Req6) -> tuple[dict[int, Sockaddr], int]:
    """RTA_DST (and RTA_NETMASK) and RTF_HOST: ``ADDR[/PLEN]`` is a host, or with -net a
    /64 (route(8)'s default), -prefixlen giving the length."""
    if r.dest == "default":
        prefix, plen, zone = 0, 0, 0
    else:
        head, _, p = r.dest.partition("/")
        sa = parse_scoped6(client, head)
        if p and (not p.isdigit() or int(p) > 128):
            raise OSError(errno.EINVAL, f"{r.dest}: bad prefix length")
        plen = int(p) if p else (64 if r.net and not r.host else 128)
        prefix, zone = sa.addr, sa.scope_id
    if r.prefixlen is not None:
        plen = r.prefixlen
    if r.host:
        plen = 128
    addrs: dict[int, Sockaddr] = {RTA_DST: SockaddrIn6(in6.prefix_of(prefix, plen), zone)}
    if plen < 128:
        addrs[RTA_NETMASK] = mask_sockaddr(AF_INET6, plen)
    return addrs, RTF_HOST if plen == 128 else 0


def _request6(client: RouteClient, cmd: str, r: Req6) -> RtMsghdr:
    addrs, host = _dest6(client, r)
    flags = RTF_UP | RTF_STATIC | host | r.flags
    if r.gateway is not None:
        addrs[RTA_GATEWAY] = parse_scoped6(client, r.gateway)
        if not r.iface:
            flags |= RTF_GATEWAY
    if r.ifp is not None:
        addrs[RTA_IFP] = SockaddrDl(name=r.ifp)
    msg = RtMsghdr({"add": RTM_ADD, "change": RTM_CHANGE, "delete": RTM_DELETE}[cmd], flags, addrs=addrs)
    if r.mtu:
        msg.rtm_inits, msg.rtm_rmx.rmx_mtu = RTV_MTU, r.mtu
    return msg


def _flush6(client: RouteClient, quiet: bool) -> str:
    gone = [RouteRow(m, client) for m in client.dump(AF_INET6) if flushable(m.rtm_flags)]
    gone.sort(key=lambda rt: rt.plen)  # the order the table's prefix lengths come in
    for rt in gone:
        addrs: dict[int, Sockaddr] = {RTA_DST: SockaddrIn6(rt.dst, rt.zone)}
        if rt.plen < 128:
            addrs[RTA_NETMASK] = mask_sockaddr(AF_INET6, rt.plen)
        client.request(RtMsghdr(RTM_DELETE, rt.flags, addrs=addrs))
    return "" if quiet else "".join(f"{dest_name6(client, rt):<20.20} done\n" for rt in gone)


def route6(client: RouteClient, cmd: str, args: list[str], quiet: bool, usage: str) -> str:
    """One ``route CMD -inet6 ...``, through the routing socket."""
    if not client.has_family(pysocket.AF_INET6):
        raise OSError(errno.EAFNOSUPPORT, "route: inet6: address family not supported")
    if cmd == "show":
        return "Routing tables\n\n" + rttable6(client)
    if cmd == "flush":
        return _flush6(client, quiet)
    if cmd not in ("get", "add", "delete", "change"):
        parse6(cmd, args, usage)
        raise UsageError(f"route: {cmd}: unknown command\n{usage}")
    r = parse6(cmd, args, usage)
    try:
        if cmd == "get":
            dst = parse_scoped6(client, r.dest) if r.dest != "default" else SockaddrIn6(0)
            reply = client.request(RtMsghdr(RTM_GET, addrs={RTA_DST: dst, RTA_IFP: SockaddrDl()}))
            return route_get_text6(client, r.dest, RouteRow(reply, client))
        client.request(_request6(client, cmd, r))
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EINVAL
        word = {errno.ESRCH: "not in table", errno.EEXIST: "entry already exists"}.get(code, strerror(code))
        raise OSError(code, f"route: writing to routing socket: {strerror(code)}\n{_msg(cmd, r)}: {word}") from None
    return "" if quiet else _msg(cmd, r) + "\n"
