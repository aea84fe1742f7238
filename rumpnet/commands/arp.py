"""arp(8): show and edit the ARP cache, NetBSD syntax and output."""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING

from rumpnet.commands import UsageError, getopt, strerror
from rumpnet.commands.route import RouteRow, gateway_text
from rumpnet.commands.rtsock_client import RouteClient
from rumpnet.netconfig import parse_mac
from rumpnet.netinet.in_addr import aton_strict, ntoa
from rumpnet.route import RTF_ANNOUNCE, RTF_HOST, RTF_LLDATA, RTF_STATIC, RTF_UP
from rumpnet.route_msg import AF_INET, RTA_DST, RTA_GATEWAY, RTM_ADD, RTM_DELETE, RtMsghdr, SockaddrDl, SockaddrIn

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

# usr.sbin/arp/arp.c usage(), as NetBSD prints it (capital U)
USAGE = """Usage: arp [-n] hostname
       arp [-nv] -a
       arp [-v] -d [-a|hostname [proxy]]
       arp -s hostname ether_addr [temp] [pub [proxy]]
       arp -f filename"""

OPTSTRING = "andsfv"  # usr.sbin/arp/arp.c


def _addr(host: str) -> int:
    try:
        return aton_strict(host)
    except OSError:
        raise OSError(errno.EINVAL, f"arp: {host}: Unknown host") from None


def entry_line(e: RouteRow) -> str:
    """One ARP entry (an LLINFO message of the dump) as ``arp -a`` prints it."""
    gw = e.gateway
    mac = gateway_text(gw) if isinstance(gw, SockaddrDl) and gw.lladdr else "(incomplete)"
    s = f"? ({ntoa(e.dst)}) at {mac} on {e.ifname}"
    if e.flags & RTF_STATIC:
        s += " permanent"
    if e.flags & RTF_ANNOUNCE:
        s += " published (proxy only)"
    return s + "\n"


def _entries(client: RouteClient) -> list[RouteRow]:
    """The ARP cache: sysctl net.route.0.inet.NET_RT_FLAGS with RTF_LLINFO."""
    return [RouteRow(m, client) for m in client.lldump(AF_INET)]


def arp(k: Kernel, argv: list[str]) -> str:
    """arp(8) on kernel ``k`` (see rumpnet.commands): through a routing socket and sysctl."""
    with RouteClient(k) as client:
        return _arp(client, argv)


def _arp(client: RouteClient, argv: list[str]) -> str:
    if not client.has_family(pysocket.AF_INET):
        raise OSError(errno.EAFNOSUPPORT, "arp: socket: Address family not supported by protocol family")
    opts, args = getopt("arp", argv, OPTSTRING, USAGE)
    mode: str | None = None
    all_ = verbose = False
    for ch, _ in opts:
        if ch == "a":
            all_ = True
        elif ch == "v":
            verbose = True
        elif ch in "dsf":
            if mode is not None:
                raise UsageError(USAGE)
            mode = ch
    if mode == "s":
        if len(args) < 2 or all_:
            raise UsageError(USAGE)
        return _set(client, args)
    if mode == "f":
        if len(args) != 1 or all_:
            raise UsageError(USAGE)
        return _file(client, args[0])
    if mode == "d":
        if all_:
            if args:
                raise UsageError(USAGE)
            out = "".join(_delete(client, ntoa(e.dst)) for e in _entries(client))
        else:
            # arp -d hostname [proxy] (every entry is "proxy only" since the lltable)
            if not 1 <= len(args) <= 2 or (len(args) == 2 and not args[1].startswith("pro")):
                raise UsageError(USAGE)
            out = _delete(client, args[0])
        # NetBSD's arp(8) prints "host (addr) deleted" only with -v (usr.sbin/arp
        # delete(): ``if (vflag) printf(...)``; tests/net/arp/t_arp.sh expects empty
        # output from ``arp -d``).
        return out if verbose else ""
    if all_:
        if args:
            raise UsageError(USAGE)
        return "".join(entry_line(e) for e in _entries(client))
    if len(args) != 1:
        raise UsageError(USAGE)
    ip = _addr(args[0])
    for e in _entries(client):
        if e.dst == ip:
            return entry_line(e)
    raise OSError(errno.ENOENT, f"arp: {args[0]} ({ntoa(ip)}) -- no entry")


def _set(client: RouteClient, args: list[str]) -> str:
    host, mac = args[0], args[1]
    temp = pub = False
    for w in args[2:]:
        if w == "temp":
            temp = True
        elif w == "pub":
            pub = True
        elif w == "proxy":
            if not pub:
                raise UsageError(USAGE)
        elif w == "trail":
            pass
        else:
            raise UsageError(USAGE)
    ip = _addr(host)  # validates the host (usage error for a bad one)
    try:
        lladdr = parse_mac(mac)
    except OSError:
        raise OSError(errno.EINVAL, f"arp: invalid Ethernet address '{mac}'") from None
    # RTM_ADD of an LLINFO host route with the address in an AF_LINK gateway (arp.c set()).
    flags = RTF_UP | RTF_HOST | RTF_LLDATA | (0 if temp else RTF_STATIC) | (RTF_ANNOUNCE if pub else 0)
    try:
        client.request(RtMsghdr(RTM_ADD, flags, addrs={RTA_DST: SockaddrIn(ip), RTA_GATEWAY: SockaddrDl(lladdr=lladdr)}))
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EINVAL
        raise OSError(code, f"arp: writing to routing socket: {strerror(code)}") from None
    return ""


def _delete(client: RouteClient, host: str) -> str:
    """RTM_DELETE of the LLINFO entry (ESRCH from the kernel when there is none)."""
    ip = _addr(host)
    try:
        client.request(RtMsghdr(RTM_DELETE, RTF_HOST | RTF_LLDATA, addrs={RTA_DST: SockaddrIn(ip)}))
    except OSError as e:
        if e.errno != errno.ESRCH:
            raise
        raise OSError(errno.ESRCH, f"arp: delete: can't locate {host}") from None
    return f"{host} ({ntoa(ip)}) deleted\n"


def _file(client: RouteClient, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise OSError(e.errno or errno.ENOENT, f"arp: cannot open {path}") from None
    failed: list[str] = []
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if len(words) < 2:
            failed.append(f"arp: line {n}: syntax error")
            continue
        try:
            _set(client, words)
        except OSError as e:
            failed.append(str(e.strerror))
    if failed:
        raise OSError(errno.EINVAL, "\n".join(failed))
    return ""
