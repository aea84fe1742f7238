"""ifconfig(8): interface configuration, NetBSD syntax and output, through socket ioctls
(SIOCGIFFLAGS, SIOCAIFADDR, SIOCIFCREATE, ... on an AF_INET datagram socket) and sysctl,
as NetBSD's ifconfig is a program in userland."""

from __future__ import annotations

import errno
import socket as pysocket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rumpnet.commands import UsageError, getopt, strerror
from rumpnet.commands.ifaddrs import IfAddrs, IfSock, Syscalls, cloner_names, fail, getifaddrs, sysctl_value
from rumpnet.commands.ifconfig6 import address_lines, configure6, wait_dad
from rumpnet.if_ioctl import (
    IFLINKSTR_QUERYLEN,
    IFLINKSTR_UNSET,
    IFLR_ACTIVE,
    IFM_ACTIVE,
    IFM_AUTO,
    IFM_ETHER,
    IFM_NONE,
    IFT_ETHER,
    SIOCALIFADDR,
    SIOCGIFCAP,
    SIOCGIFDATA,
    SIOCGIFFLAGS,
    SIOCGIFMEDIA,
    SIOCGIFMTU,
    SIOCGLINKSTR,
    SIOCIFCREATE,
    SIOCIFDESTROY,
    SIOCSIFFLAGS,
    SIOCSIFMEDIA,
    SIOCSIFMTU,
    SIOCSLINKSTR,
    IfCapreq,
    IfData,
    IfDatareq,
    IfDrv,
    IfLaddrreq,
    IfMediareq,
    Ifreq,
    SockaddrDl,
    SockaddrIn,
)
from rumpnet.ifnet import (
    IFF_BROADCAST,
    IFF_LOOPBACK,
    IFF_NAMES,
    IFF_POINTOPOINT,
    IFF_PROMISC,
    IFF_RUNNING,
    IFF_UP,
    ifcap_string,
)
from rumpnet.netconfig import format_mac, parse_mac
from rumpnet.netinet.in_addr import aton_strict, classful_plen, ntoa, parse_prefix
from rumpnet.netinet.in_control import SIOCAIFADDR, SIOCDIFADDR, SIOCGIFADDR, SIOCGIFALIAS, InAliasreq
from rumpnet.route import plen_to_mask

USAGE = """usage: ifconfig [-h] [-v] [-z] [-L] [-C] [-l [-b] [-d] [-s] [-u]]
	[-a [-b] [-d] [-s] [-u]] [-w n] interface
	[ af [ address [ dest_addr ] ] [ netmask mask ] [ prefixlen n ]
		[ alias | -alias ] ]
	[ up ] [ down ] [ mtu n ] [ media type ] [ link address ]
	[ linkstr str ] [ -linkstr ] [ promisc ] [ -promisc ]
       ifconfig -a [-b] [-d] [-s] [-u] [-v] [-z] [ af ]
       ifconfig -l [-b] [-d] [-s] [-u]
       ifconfig -C
       ifconfig -w n
       ifconfig interface create
       ifconfig interface destroy"""

OPTSTRING = "AabCdhLlsuvw:z"  # sbin/ifconfig/ifconfig.c's flags that mean something here

# Keywords that take one argument.
_ONE_ARG = {"netmask", "broadcast", "mtu", "linkstr", "media", "link", "lladdr", "prefixlen", "metric"}


def _err(op: str, e: OSError, name: str | None = None) -> OSError:
    code = e.errno if e.errno is not None else errno.EINVAL
    where = f"{op} {name}" if name else op
    return OSError(code, f"ifconfig: {where}: {strerror(code)}")


def flags_text(flags: int) -> str:
    """``flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>`` as ifconfig prints it."""
    names = ",".join(n for bit, n in IFF_NAMES if flags & bit)
    return f"flags=0x{flags:x}<{names}>" if names else f"flags=0x{flags:x}"


def _cloner_of(name: str) -> str:
    return name.rstrip("0123456789")


def _media_lines(s: IfSock, ifa: IfAddrs, flags: int) -> tuple[list[str], bool]:
    """``media:`` and ``status:`` (SIOCGIFMEDIA), and whether the media is none."""
    med = IfMediareq.unpack(s.ioctl(SIOCGIFMEDIA, IfMediareq(ifa.name).pack()))
    none = med.current & 0x1F == IFM_NONE
    active = bool(med.status & IFM_ACTIVE)
    return ["\tmedia: Ethernet " + ("none" if none else "autoselect"),
            "\tstatus: " + ("active" if active else "no carrier")], none


def _linkstr(s: IfSock, name: str) -> str | None:
    """The link string (SIOCGLINKSTR: asked for its length first), None when unset."""
    try:
        q = IfDrv.unpack(s.ioctl(SIOCGLINKSTR, IfDrv(name, IFLINKSTR_QUERYLEN).pack()))
        got = IfDrv.unpack(s.ioctl(SIOCGLINKSTR, IfDrv(name, 0, q.length, bytes(q.length)).pack()))
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ENOTTY):
            return None
        raise
    return got.data.split(b"\0", 1)[0].decode(errors="replace")


def _counter_lines(st: IfData, oqdrops: int) -> list[str]:
    """``ifconfig -v``'s input and output lines (SIOCGIFDATA): packets and bytes, then
    the counters that are not zero."""
    rows = (("input", st.ipackets, st.ibytes, ((st.imcasts, "multicasts"), (st.ierrors, "errors"),
                                                (st.iqdrops, "queue drops"), (st.noproto, "unknown protocol"))),
            ("output", st.opackets, st.obytes, ((st.omcasts, "multicasts"), (st.oerrors, "errors"),
                                                 (st.collisions, "collisions"), (oqdrops, "queue drops"))))
    return [f"\t{what}: {pkts} packets, {nbytes} bytes" + "".join(f", {n} {word}" for n, word in extra if n)
            for what, pkts, nbytes, extra in rows]


def _link_lines(s: IfSock, ifa: IfAddrs, flags: int, verbose: bool) -> list[str]:
    """Everything between the first line and the addresses."""
    lines: list[str] = []
    caps = IfCapreq.unpack(s.ioctl(SIOCGIFCAP, IfCapreq(ifa.name).pack()))
    if caps.capabilities:
        # NetBSD prints capabilities= and enabled= for interfaces with offloads.
        lines.append(f"\tcapabilities={ifcap_string(caps.capabilities)}")
        lines.append(f"\tenabled={ifcap_string(caps.capenable)}")
    if _cloner_of(ifa.name) == "virt":
        # Which vnet-header mode the host granted: rumpnet's own line.
        mode = sysctl_value(s.sys, f"net.link.virt.{ifa.name}.offload")
        lines.append(f"\toffload: {mode if isinstance(mode, str) else 'none'}")
    loopback = bool(flags & IFF_LOOPBACK)
    media_none = False
    if not loopback:
        lines.append(f"\taddress: {format_mac(ifa.lladdr)}")
        linkstr = _linkstr(s, ifa.name)
        if linkstr is not None:
            lines.append(f"\tlinkstr: {linkstr}")
        media, media_none = _media_lines(s, ifa, flags)
        lines += media
    else:
        lines.append("\tstatus: active")
    if verbose:
        # NetBSD's ifconfig -v prints the link state (tests/net/if_shmif/t_shmif.sh greps
        # it): shmif's link is up once it has a bus (RUNNING), down with media none.
        if loopback:
            ls = "up"
        elif not flags & IFF_RUNNING:
            ls = "unknown"
        else:
            ls = "down" if media_none else "up"
        lines.append(f"\tlinkstate: {ls}")
        st = IfDatareq.unpack(s.ioctl(SIOCGIFDATA, IfDatareq(ifa.name).pack())).data
        drops = sysctl_value(s.sys, f"net.interfaces.{ifa.name}.sndq.drops")
        lines += _counter_lines(st, drops if isinstance(drops, int) else 0)
    return lines


def _inet_lines(s: IfSock, ifa: IfAddrs, flags: int) -> list[str]:
    lines = []
    for addr in ifa.ipv4:
        req = InAliasreq.unpack(s.ioctl(SIOCGIFALIAS, InAliasreq(ifa.name, addr).pack()))
        plen = bin(req.mask or 0).count("1")
        line = f"\tinet {ntoa(addr)}/{plen}"
        if flags & IFF_POINTOPOINT and req.dstaddr:
            line += f" -> {ntoa(req.dstaddr)}"
        elif flags & IFF_BROADCAST and req.dstaddr:
            line += f" broadcast {ntoa(req.dstaddr)}"
        lines.append(line + " flags 0x0")
    return lines


def status(s: IfSock, ifa: IfAddrs, names: dict[int, str], verbose: bool = False, af: str | None = None,
           lifetimes: bool = False) -> str:
    """One interface as ``ifconfig IF [af]`` prints it (-L: IPv6 lifetimes)."""
    flags = Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq(ifa.name).pack())).flags
    mtu = Ifreq.unpack(s.ioctl(SIOCGIFMTU, Ifreq(ifa.name).pack())).value
    lines = [f"{ifa.name}: {flags_text(flags)} mtu {mtu}"]
    lines += _link_lines(s, ifa, flags, verbose)
    if af in (None, "inet"):
        lines += _inet_lines(s, ifa, flags)
    if af in (None, "inet6"):
        lines += address_lines(s, ifa, names, lifetimes)
    return "\n".join(lines) + "\n"


def _link_words(words: list[str], actions: list[tuple[str, str | None]]) -> list[str]:
    """The words after ``inet6``: ``up``/``down`` and the link's own keywords become
    actions (as for inet); the rest is the inet6 address and its modifiers."""
    rest: list[str] = []
    for w in words:
        if w in ("up", "down"):
            actions.append((w, None))
        else:
            rest.append(w)
    return rest


def _check_addr(s: str) -> None:
    base = s.split("/", 1)[0]
    try:
        aton_strict(base)
    except OSError:
        raise OSError(errno.EINVAL, f"ifconfig: {s}: bad value") from None
    if "/" in s:
        p = s.split("/", 1)[1]
        if not p.isdigit() or int(p) > 32:
            raise OSError(errno.EINVAL, f"ifconfig: {s}: bad value")


def ifconfig(k: Syscalls, argv: list[str]) -> Any:
    """ifconfig(8) through system calls on ``k`` (a kernel or a rumpclient; see
    rumpnet.commands); ``-w N`` then waits up to N seconds for duplicate address
    detection to end."""
    opts, _ = getopt("ifconfig", argv, OPTSTRING, USAGE)
    with _open(k) as s:
        out = _ifconfig(s, argv)
    waits = [value for ch, value in opts if ch == "w"]
    waited = wait_dad(k, float(waits[-1])) if waits else None
    if waited is not None:
        return _then(waited, out)
    return out


async def _then(waited: Awaitable[None], out: str) -> str:
    await waited
    return out


def _open(k: Syscalls) -> IfSock:
    """ifconfig's socket (an AF_INET datagram socket, as NetBSD's ifconfig opens one)."""
    try:
        return IfSock(k, pysocket.AF_INET)
    except OSError as e:
        raise fail("ifconfig", "socket", e) from None


def _ifconfig(s: IfSock, argv: list[str]) -> str:
    opts, args = getopt("ifconfig", argv, OPTSTRING, USAGE)
    letters = {ch for ch, _ in opts}
    all_, listnames, cloners, verbose = "a" in letters, "l" in letters, "C" in letters, "v" in letters
    only_up, only_down, lifetimes = "u" in letters, "d" in letters, "L" in letters
    for ch, value in opts:
        if ch == "w" and not value.isdigit():
            raise UsageError(f"ifconfig: -w {value}: not a number of seconds\n{USAGE}")
    if "w" in letters and not args:
        return ""   # ifconfig() waits for DAD
    if not argv:
        # NetBSD's ifconfig with no arguments lists all interfaces (as -a); tests/net
        # scripts run plain ``rump.ifconfig``.
        all_ = True
    if cloners:
        if args or all_ or listnames:
            raise UsageError(USAGE)
        return " ".join(_ask(lambda: cloner_names(s), "SIOCIFGCLONERS")) + "\n"
    if listnames or all_:
        if args and args not in (["inet"], ["inet6"]):
            raise UsageError(USAGE)
        return _list(s, listnames, only_up, only_down, verbose, args[0] if args else None, lifetimes)
    if not args:
        raise UsageError(USAGE)
    name = args.pop(0)
    if name.startswith("-"):
        raise UsageError(USAGE)
    if not args or args in (["inet"], ["inet6"]):
        # "ifconfig IF inet" / "ifconfig IF inet6" show the interface with that
        # family's addresses (NetBSD).
        ifas = _ask(lambda: getifaddrs(s), "getifaddrs")
        ifa = next((i for i in ifas if i.name == name), None)
        if ifa is None:
            raise OSError(errno.ENXIO, f"ifconfig: SIOCGIFFLAGS {name}: Device not configured")
        return status(s, ifa, {i.index: i.name for i in ifas}, verbose, args[0] if args else None, lifetimes)
    return _configure(s, name, args)


T = TypeVar("T")


def _ask(fn: Callable[[], T], what: str) -> T:
    try:
        return fn()
    except OSError as e:
        raise fail("ifconfig", what, e) from None


def _list(s: IfSock, names_only: bool, only_up: bool, only_down: bool, verbose: bool, af: str | None,
          lifetimes: bool) -> str:
    """``ifconfig -l`` / ``ifconfig -a`` (``-u``: up ones only, ``-d``: down ones only)."""
    ifas = _ask(lambda: getifaddrs(s), "getifaddrs")
    names = {i.index: i.name for i in ifas}
    wanted = []
    for ifa in ifas:
        up = bool(Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq(ifa.name).pack())).flags & IFF_UP)
        if not ((only_up and not up) or (only_down and up)):
            wanted.append(ifa)
    if names_only:
        return " ".join(i.name for i in wanted) + "\n"
    return "".join(status(s, i, names, verbose, af, lifetimes) for i in wanted)


def _configure(s: IfSock, name: str, args: list[str]) -> str:
    rest = _create_or_destroy(s, name, args)
    if not rest:
        return ""
    try:
        flags = Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq(name).pack())).flags
    except OSError as e:
        raise _err("SIOCGIFFLAGS", e, name) from None
    req = _parse_words(rest)
    _apply_link_actions(s, name, flags, req.actions)
    if req.inet6_args is not None:
        configure6(s.sys, name, req.inet6_args)
    _apply_inet(s, name, req)
    return ""


def _create_or_destroy(s: IfSock, name: str, args: list[str]) -> list[str]:
    """create/destroy come first, as NetBSD's ifconfig handles them before anything else;
    the words left to apply (none after a destroy)."""
    if args[0] == "create":
        try:
            s.ioctl(SIOCIFCREATE, Ifreq(name).pack())
        except OSError as e:
            raise _err("SIOCIFCREATE", e) from None
        return args[1:]
    if args[0] == "destroy":
        if len(args) > 1:
            raise UsageError(USAGE)
        try:
            s.ioctl(SIOCIFDESTROY, Ifreq(name).pack())
        except OSError as e:
            raise _err("SIOCIFDESTROY", e) from None
        return []
    return args


@dataclass
class _IfRequest:
    """What one ``ifconfig IF WORDS...`` asks for, parsed before anything is changed."""

    addr: str | None = None
    netmask: str | None = None
    broadcast: str | None = None
    alias: bool = False
    delete: bool = False
    actions: list[tuple[str, str | None]] = field(default_factory=list)
    inet6_args: list[str] | None = None


# Words accepted and without effect here: ARP and debug flags, link0-2, media options,
# "metric", and "active" ("link ADDR active" makes the new link address the active one:
# "link" here always replaces the active address; t_ifconfig.sh uses it).
_NO_EFFECT = {"-arp", "arp", "debug", "-debug", "link0", "-link0", "link1", "-link1", "link2", "-link2",
              "mediaopt", "-mediaopt", "metric", "active", "inet"}
_FLAG_ACTIONS = {"up", "down", "promisc", "-promisc", "-linkstr"}
_VALUE_ACTIONS = {"mtu", "linkstr", "media", "link", "lladdr"}


def _parse_words(args: list[str]) -> _IfRequest:
    req = _IfRequest()
    i = 0
    while i < len(args):
        w = args[i]
        i += 1
        val: str | None = None
        if w in _ONE_ARG:
            if i >= len(args):
                raise UsageError(f"ifconfig: {w}: missing argument\n{USAGE}")
            val = args[i]
            i += 1
        if w == "inet6":
            req.inet6_args = _link_words(args[i:], req.actions)
            break
        _parse_word(req, w, val)
    return req


def _parse_word(req: _IfRequest, w: str, val: str | None) -> None:
    """One inet or link word (with its value, for the words in _ONE_ARG)."""
    if w in _NO_EFFECT:
        return
    if w in ("link6", "atalk", "iso"):
        raise OSError(errno.EAFNOSUPPORT, f"ifconfig: {w}: address family not supported")
    if w in _FLAG_ACTIONS or w in _VALUE_ACTIONS:
        req.actions.append((w, val))
    elif w == "netmask" and val is not None:
        if not val.lower().startswith("0x"):
            _check_addr(val)
        req.netmask = val
    elif w == "prefixlen" and val is not None:
        if not val.isdigit() or int(val) > 32:
            raise OSError(errno.EINVAL, f"ifconfig: {val}: bad value")
        plen = int(val)
        req.netmask = ntoa((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0)
    elif w == "broadcast" and val is not None:
        _check_addr(val)
        req.broadcast = val
    elif w in ("alias", "add"):
        req.alias = True
    elif w in ("-alias", "delete", "remove"):
        req.delete = True
    elif w[:1].isdigit() and req.addr is None:
        _check_addr(w)
        req.addr = w
    else:
        raise UsageError(USAGE)


def _set_mtu(s: IfSock, name: str, val: str | None) -> None:
    if val is None or not val.isdigit():
        raise OSError(errno.EINVAL, f"ifconfig: mtu: bad value: {val}")
    s.ioctl(SIOCSIFMTU, Ifreq.with_int(name, int(val)).pack())


def _set_media(s: IfSock, name: str, val: str | None) -> None:
    sub = {"auto": IFM_AUTO, "autoselect": IFM_AUTO, "none": IFM_NONE}.get(val or "")
    if sub is None:
        raise OSError(errno.EINVAL, f"ifconfig: unknown media subtype: {val}")
    s.ioctl(SIOCSIFMEDIA, Ifreq.with_int(name, IFM_ETHER | sub).pack())


def _set_flag(bit: int, on: bool) -> Callable[[IfSock, str, str | None], None]:
    """SIOCGIFFLAGS, then SIOCSIFFLAGS with ``bit`` set or cleared (ifconfig's setifflags)."""
    def run(s: IfSock, name: str, val: str | None) -> None:
        flags = Ifreq.unpack(s.ioctl(SIOCGIFFLAGS, Ifreq(name).pack())).flags
        s.ioctl(SIOCSIFFLAGS, Ifreq.with_short(name, flags | bit if on else flags & ~bit).pack())

    return run


def _set_linkstr(s: IfSock, name: str, val: str | None) -> None:
    if val is None:
        s.ioctl(SIOCSLINKSTR, IfDrv(name, IFLINKSTR_UNSET).pack())
        return
    raw = val.encode() + b"\0"
    s.ioctl(SIOCSLINKSTR, IfDrv(name, 0, len(raw), raw).pack())


def _set_lladdr(s: IfSock, name: str, val: str | None) -> None:
    mac = parse_mac(val or "")
    s.ioctl(SIOCALIFADDR, IfLaddrreq(name, IFLR_ACTIVE, 0, SockaddrDl(0, IFT_ETHER, "", mac)).pack())


# Each link word: the ioctl NetBSD's ifconfig issues for it (named in errors) and what it does.
_LINK_ACTIONS: dict[str, tuple[str, Callable[[IfSock, str, str | None], None]]] = {
    "up": ("SIOCSIFFLAGS", _set_flag(IFF_UP, True)),
    "down": ("SIOCSIFFLAGS", _set_flag(IFF_UP, False)),
    "promisc": ("SIOCSIFFLAGS", _set_flag(IFF_PROMISC, True)),
    "-promisc": ("SIOCSIFFLAGS", _set_flag(IFF_PROMISC, False)),
    "linkstr": ("SIOCSLINKSTR", _set_linkstr),
    "-linkstr": ("SIOCSLINKSTR", lambda s, name, val: _set_linkstr(s, name, None)),
    "mtu": ("SIOCSIFMTU", _set_mtu),
    "media": ("SIOCSIFMEDIA", _set_media),
    "link": ("SIOCALIFADDR", _set_lladdr),
    "lladdr": ("SIOCALIFADDR", _set_lladdr),
}


def _apply_link_actions(s: IfSock, name: str, flags: int, actions: list[tuple[str, str | None]]) -> None:
    for what, val in actions:
        op, do = _LINK_ACTIONS[what]
        try:
            do(s, name, val)
        except OSError as e:
            if str(e.strerror or "").startswith("ifconfig: "):
                raise
            raise _err(op, e) from None


def _mask_of(netmask: str) -> int:
    return int(netmask, 16) if netmask.lower().startswith("0x") else aton_strict(netmask)


def _apply_inet(s: IfSock, name: str, req: _IfRequest) -> None:
    """The inet address words: add or delete ADDR, or change the primary address's
    netmask/broadcast when no address is given."""
    if req.addr is not None:
        ip, plen = parse_prefix(req.addr)
        try:
            if req.delete:
                s.ioctl(SIOCDIFADDR, Ifreq.with_addr(name, SockaddrIn(ip)).pack())
                return
            mask = _mask_of(req.netmask) if req.netmask is not None else plen_to_mask(
                plen if plen is not None else classful_plen(ip))
            bcast = aton_strict(req.broadcast) if req.broadcast else None
            old = None if req.alias else _replaced(s, name, ip)
            # Added first and the old one removed after: a refused address loses nothing.
            s.ioctl(SIOCAIFADDR, InAliasreq(name, ip, bcast, mask).pack())
            if old is not None:
                s.ioctl(SIOCDIFADDR, Ifreq.with_addr(name, SockaddrIn(old)).pack())
        except OSError as e:
            raise _err("SIOCDIFADDR" if req.delete else "SIOCAIFADDR", e) from None
        return
    if not (req.delete or req.netmask is not None or req.broadcast is not None):
        return
    if req.delete:
        raise UsageError(USAGE)
    try:
        first = Ifreq.unpack(s.ioctl(SIOCGIFADDR, Ifreq(name).pack())).addr
        if not isinstance(first, SockaddrIn):
            raise OSError(errno.EADDRNOTAVAIL, "no IPv4 address")
        cur = InAliasreq.unpack(s.ioctl(SIOCGIFALIAS, InAliasreq(name, first.addr).pack()))
        mask = _mask_of(req.netmask) if req.netmask is not None else (cur.mask or 0)
        bcast = aton_strict(req.broadcast) if req.broadcast else None
        s.ioctl(SIOCAIFADDR, InAliasreq(name, first.addr, bcast, mask).pack())
    except OSError as e:
        raise _err("SIOCAIFADDR", e) from None


def _replaced(s: IfSock, name: str, new: int) -> int | None:
    """Without ``alias`` a new address replaces the interface's first one (NetBSD's
    ifconfig removes it with SIOCDIFADDR); an address already there is changed in place."""
    ifa = next((i for i in getifaddrs(s) if i.name == name), None)
    if ifa is None or not ifa.ipv4 or new in ifa.ipv4:
        return None
    return ifa.ipv4[0]
