"""route(8) and netstat(1) for AF_INET6 (``route add|delete|change|get|flush|show -inet6``,
``netstat -rn -f inet6``), NetBSD syntax and output.

``route add -inet6 default fc00:0:0:1::1`` answers ``add net default: gateway
fc00:0:0:1::1``; a link-local gateway is written with its zone (``fe80::1%shmif0``);
``-prefixlen N`` or ``ADDR/N`` give the prefix length (64 by default for ``-net``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rumpnet.commands import UsageError, strerror
from rumpnet.netinet6 import in6, scope6
from rumpnet.route import RTF_BLACKHOLE, RTF_DONE, RTF_GATEWAY, RTF_HOST, RTF_LOCAL, RTF_REJECT, RTF_STATIC, Rtentry

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

# netstat -rn's column widths for AF_INET6 (NetBSD rtutil.c WID_DST/WID_GW with -n).
WID_DST6 = 34
WID_GW6 = 30


def _zone(rt: Rtentry) -> int:
    return int(getattr(rt, "zone", 0))


def _name(k: NetKernel, addr: int, zone: int) -> str:
    return scope6.format_scoped(addr, zone, k.inet6.ifname if k.inet6 is not None else None)


def dest_name6(k: NetKernel, rt: Rtentry) -> str:
    """NetBSD's netname6: ``default``, ``fc00:0:0:1::/64``, ``fe80::%shmif0/64``, a host."""
    if rt.plen == 0:
        return "default"
    if rt.flags & RTF_HOST or rt.plen == 128:
        return _name(k, rt.dst, _zone(rt))
    text = in6.ntop(rt.dst)
    if _zone(rt) and scope6.shows_zone(rt.dst, _zone(rt)):
        name = k.inet6.ifname(_zone(rt)) if k.inet6 is not None else None
        text += f"%{name or _zone(rt)}"
    return f"{text}/{rt.plen}"


def gateway_name6(k: NetKernel, rt: Rtentry) -> str:
    if rt.gateway is not None:
        zone = rt.ifp.index if rt.ifp is not None and in6.is_scoped(rt.gateway) else 0
        return _name(k, rt.gateway, zone)
    ia6 = getattr(rt, "ia6", None)
    if rt.flags & RTF_LOCAL and ia6 is not None:
        owner = k.ifnet.by_index(ia6.ifindex)
        if owner is not None:
            return owner.name if owner.loopback else f"link#{owner.index}"
    return f"link#{rt.ifp.index}" if rt.ifp is not None else "-"


def rttable6(k: NetKernel, routes: list[Rtentry]) -> str:
    """The ``Internet6:`` section of ``netstat -rn``."""
    out = ["Internet6:",
           f"{'Destination':<{WID_DST6}} {'Gateway':<{WID_GW6}} {'Flags':<6} {'Refs':>6} {'Use':>8} {'Mtu':>6} Interface"]
    from rumpnet.commands.route import flag_letters

    for rt in routes:
        ifname = rt.ifp.name if rt.ifp is not None else "-"
        ia6 = getattr(rt, "ia6", None)
        on_lo = rt.ifp is not None and rt.ifp.loopback and (ia6 is None or ia6.ifindex == rt.ifp.index)
        mtu = str(rt.mtu) if rt.mtu else (str(rt.ifp.mtu) if on_lo and rt.ifp is not None else "-")
        out.append(f"{dest_name6(k, rt):<{WID_DST6}} {gateway_name6(k, rt):<{WID_GW6}} "
                   f"{flag_letters(rt.flags):<6.6} {'-':>6} {'-':>8} {mtu:>6}  {ifname}")
    return "\n".join(out) + "\n"


def kernel_rttable6(k: NetKernel) -> str:
    return rttable6(k, list(k.inet6.routes)) if k.inet6 is not None else ""


def route_get_text6(k: NetKernel, target: str, rt: Rtentry) -> str:
    from rumpnet.commands.route import flag_names

    lines = [f"   route to: {target}", f"destination: {dest_name6(k, rt).split('/')[0]}"]
    if not rt.flags & RTF_HOST and rt.plen < 128:
        lines.append(f"       mask: {'default' if rt.plen == 0 else in6.ntop(in6.prefixlen2mask(rt.plen))}")
    if rt.flags & RTF_GATEWAY and rt.gateway is not None:
        lines.append(f"    gateway: {gateway_name6(k, rt)}")
    ia6 = getattr(rt, "ia6", None)
    if ia6 is not None:
        lines.append(f" local addr: {_name(k, ia6.addr, scope6.zone_of(ia6.addr, ia6.ifindex))}")
    if rt.ifp is not None:
        lines.append(f"  interface: {rt.ifp.name}")
    lines.append(f"      flags: {flag_names(rt.flags | RTF_DONE)}")
    lines.append(" recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire")
    vals = [0, 0, 0, 0, 0, 0, rt.mtu, 0]
    lines.append("".join(f"{v:8d}  " for v in vals[:-1]) + f"{vals[-1]:8d} ")
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


def route6(k: NetKernel, cmd: str, args: list[str], quiet: bool, usage: str) -> str:
    """One ``route CMD -inet6 ...`` (on the kernel's CPU)."""
    if k.inet6 is None:
        raise OSError(errno.EAFNOSUPPORT, "route: inet6: address family not supported")
    cfg = k.config
    if cmd == "show":
        return "Routing tables\n\n" + kernel_rttable6(k)
    if cmd == "flush":
        gone = cfg.route6_flush()
        return "" if quiet else "".join(f"{dest_name6(k, rt):<20.20} done\n" for rt in gone)
    r = parse6(cmd, args, usage)
    try:
        if cmd == "get":
            return route_get_text6(k, r.dest, cfg.route6_get(r.dest))
        if cmd == "add":
            cfg.route6_add(r.dest, r.gateway, host=r.host, net=r.net, prefixlen=r.prefixlen, interface=r.iface, ifp=r.ifp,
                           reject=bool(r.flags & RTF_REJECT), blackhole=bool(r.flags & RTF_BLACKHOLE), mtu=r.mtu)
        elif cmd == "delete":
            cfg.route6_delete(r.dest, host=r.host, net=r.net, prefixlen=r.prefixlen)
        elif cmd == "change":
            cfg.route6_delete(r.dest, host=r.host, net=r.net, prefixlen=r.prefixlen)
            cfg.route6_add(r.dest, r.gateway, host=r.host, net=r.net, prefixlen=r.prefixlen, interface=r.iface, ifp=r.ifp,
                           reject=bool(r.flags & RTF_REJECT), blackhole=bool(r.flags & RTF_BLACKHOLE), mtu=r.mtu)
        else:
            raise UsageError(f"route: {cmd}: unknown command\n{usage}")
    except OSError as e:
        if isinstance(e, UsageError):
            raise
        code = e.errno if e.errno is not None else errno.EINVAL
        word = {errno.ESRCH: "not in table", errno.EEXIST: "entry already exists"}.get(code, strerror(code))
        raise OSError(code, f"route: writing to routing socket: {strerror(code)}\n{_msg(cmd, r)}: {word}") from None
    return "" if quiet else _msg(cmd, r) + "\n"
