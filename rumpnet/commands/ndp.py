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
from typing import TYPE_CHECKING

from rumpnet.commands import UsageError, getopt, on_cpu
from rumpnet.netconfig import format_mac
from rumpnet.netinet6 import scope6
from rumpnet.netinet6.nd6 import ND6_STATE_LETTER

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netconfig6 import NdEntry

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


def _line(k: NetKernel, e: NdEntry) -> str:
    name = scope6.format_scoped(e.addr, e.ifp.index, lambda i: e.ifp.name)
    ll = format_mac(e.lladdr) if e.lladdr else "(incomplete)"
    if e.expire is None:
        exp = "permanent"
    else:
        left = int(e.expire - k.sched.now())
        exp = sec2str(left) if left > 0 else "expired"
    flags = ("R" if e.isrouter else "") + ("l" if e.local else "")
    return (f"{name:<{W_ADDR}.{W_ADDR}} {ll:<{W_LL}.{W_LL}} {e.ifp.name:>{W_IF}.{W_IF}} {exp:<9.9} "
            f"{ND6_STATE_LETTER.get(e.state, '?')} {flags}").rstrip()


def ndp(k: NetKernel, argv: list[str]) -> str:
    return on_cpu(k, lambda: _ndp(k, argv))


def _ndp(k: NetKernel, argv: list[str]) -> str:
    if k.inet6 is None:
        raise OSError(errno.EAFNOSUPPORT, "ndp: socket: Address family not supported by protocol family")
    cfg = k.config
    opts, args = getopt("ndp", argv, OPTSTRING, USAGE)
    mode = None
    for ch, _ in opts:
        if ch in "nt":
            continue
        if ch in "acsd" and mode is None:
            mode = ch
        else:
            raise UsageError(USAGE)
    if mode == "a" or mode == "c":
        if args:
            raise UsageError(USAGE)
        if mode == "c":
            gone = cfg.ndp_flush()
            from rumpnet.netinet6 import in6

            return "".join(f"{in6.ntop(a)} ({in6.ntop(a)}) deleted\n" for a in gone)
        return HEADER + "\n" + "".join(_line(k, e) + "\n" for e in cfg.ndp_entries())
    if mode == "s":
        if len(args) < 2 or any(w not in ("temp", "proxy", "pub") for w in args[2:]):
            raise UsageError(USAGE)
        try:
            cfg.ndp_add(args[0], args[1], temp="temp" in args[2:])
        except OSError as e:
            raise OSError(e.errno, f"ndp: set: {e.strerror}") from None
        return ""
    if len(args) != 1:
        raise UsageError(USAGE)
    host = args[0]
    if mode == "d":
        try:
            cfg.ndp_delete(host)
        except OSError:
            raise OSError(errno.ENOENT, f"{host} ({host}) -- no entry") from None
        return f"{host} ({host}) deleted\n"
    try:
        entry = cfg.ndp_get(host)
    except OSError as err:
        if err.errno == errno.EINVAL:
            raise OSError(errno.EINVAL, f"ndp: {host}: bad address") from None
        raise OSError(errno.ENOENT, f"{host} ({host}) -- no entry") from None
    return HEADER + "\n" + _line(k, entry) + "\n"
