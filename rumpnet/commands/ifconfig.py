"""ifconfig(8): interface configuration, NetBSD syntax and output."""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from rumpnet.commands import UsageError, getopt, on_cpu, strerror
from rumpnet.ifnet import IFF_BROADCAST, IFF_NAMES, IFF_POINTOPOINT, LINK_STATE_UP, Ifnet, ifcap_string
from rumpnet.netconfig import format_mac
from rumpnet.netinet.in_addr import aton_strict, ntoa

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

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


def flags_text(ifp: Ifnet) -> str:
    """``flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>`` as ifconfig prints it."""
    names = ",".join(n for bit, n in IFF_NAMES if ifp.flags & bit)
    return f"flags=0x{ifp.flags:x}<{names}>" if names else f"flags=0x{ifp.flags:x}"


def status(ifp: Ifnet, verbose: bool = False) -> str:
    """One interface as ``ifconfig IF`` prints it."""
    lines = [f"{ifp.name}: {flags_text(ifp)} mtu {ifp.mtu}"]
    caps = ifp.capabilities
    if caps:
        # NetBSD prints capabilities= and enabled= for interfaces with offloads; the
        # offload line (which vnet-header mode the host granted) is rumpnet's own.
        # Every capability a driver reports is in use (there is no ifconfig to turn
        # one off; the offload sysctl renegotiates them all), so enabled= repeats it.
        lines.append(f"\tcapabilities={ifcap_string(caps)}")
        lines.append(f"\tenabled={ifcap_string(caps)}")
    if ifp.cloner == "virt":
        lines.append(f"\toffload: {ifp.offload_mode}")
    if not ifp.loopback:
        lines.append(f"\taddress: {format_mac(ifp.lladdr)}")
        if ifp.linkstr is not None:
            lines.append(f"\tlinkstr: {ifp.linkstr}")
        lines.append("\tmedia: Ethernet " + ("none" if ifp.media == "none" else "autoselect"))
        active = ifp.media != "none" and ifp.running and ifp.link_state == LINK_STATE_UP
        lines.append("\tstatus: " + ("active" if active else "no carrier"))
    else:
        lines.append("\tstatus: active")
    if verbose:
        # NetBSD's ifconfig -v prints the link state (tests/net/if_shmif/t_shmif.sh greps
        # it). shmif's link is up once it has a bus (linkstr), whether IFF_UP or not,
        # down with media none, unknown without a bus; before this fix it was not shown.
        if ifp.loopback:
            ls = "up"
        elif ifp.driver is None:
            ls = "unknown"
        else:
            ls = "down" if ifp.media == "none" else "up"
        lines.append(f"\tlinkstate: {ls}")
        st: Any = ifp.stats
        inp = f"\tinput: {st.ipackets} packets, {st.ibytes} bytes"
        if st.imcasts:
            inp += f", {st.imcasts} multicasts"
        if st.ierrors:
            inp += f", {st.ierrors} errors"
        if st.iqdrops:
            inp += f", {st.iqdrops} queue drops"
        if st.noproto:
            inp += f", {st.noproto} unknown protocol"
        out = f"\toutput: {st.opackets} packets, {st.obytes} bytes"
        if st.omcasts:
            out += f", {st.omcasts} multicasts"
        if st.oerrors:
            out += f", {st.oerrors} errors"
        if st.collisions:
            out += f", {st.collisions} collisions"
        if st.oqdrops:
            out += f", {st.oqdrops} queue drops"
        lines += [inp, out]
    for ifa in ifp.addrs:
        s = f"\tinet {ntoa(ifa.addr)}/{ifa.plen}"
        if ifp.flags & IFF_POINTOPOINT and ifa.dstaddr:
            s += f" -> {ntoa(ifa.dstaddr)}"
        elif ifp.flags & IFF_BROADCAST and ifa.broadaddr:
            s += f" broadcast {ntoa(ifa.broadaddr)}"
        s += " flags 0x0"
        lines.append(s)
    return "\n".join(lines) + "\n"


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


def ifconfig(k: NetKernel, argv: list[str]) -> str:
    """ifconfig(8) on kernel ``k`` (see rumpnet.commands)."""
    return on_cpu(k, lambda: _ifconfig(k, argv))


def _ifconfig(k: NetKernel, argv: list[str]) -> str:
    opts, args = getopt("ifconfig", argv, OPTSTRING, USAGE)
    letters = {ch for ch, _ in opts}
    all_, listnames, cloners, verbose = "a" in letters, "l" in letters, "C" in letters, "v" in letters
    only_up, only_down = "u" in letters, "d" in letters
    for ch, value in opts:
        # -w n: wait for duplicate address detection; there is none here, so done at once.
        if ch == "w" and not value.isdigit():
            raise UsageError(f"ifconfig: -w {value}: not a number of seconds\n{USAGE}")
    if "w" in letters and not args:
        return ""
    if not argv:
        # NetBSD's ifconfig with no arguments lists all interfaces (as -a); tests/net
        # scripts run plain ``rump.ifconfig``. Before this fix it was a usage error.
        all_ = True
    if cloners:
        if args or all_ or listnames:
            raise UsageError(USAGE)
        return " ".join(k.ifnet.cloners) + "\n"

    def wanted(ifp: Ifnet) -> bool:
        return not ((only_up and not ifp.is_up) or (only_down and ifp.is_up))

    if listnames:
        if args and args != ["inet"]:
            raise UsageError(USAGE)
        return " ".join(i.name for i in k.ifnet.all() if wanted(i)) + "\n"
    if all_:
        if args and args != ["inet"]:
            raise UsageError(USAGE)
        return "".join(status(i, verbose) for i in k.ifnet.all() if wanted(i))
    if not args:
        raise UsageError(USAGE)
    name = args.pop(0)
    if name.startswith("-"):
        raise UsageError(USAGE)
    if not args or args == ["inet"]:
        # "ifconfig IF inet" shows the interface with its inet addresses (NetBSD; the
        # only family here). Before this fix it printed nothing.
        ifp = k.ifnet.get(name)
        if ifp is None:
            raise OSError(errno.ENXIO, f"ifconfig: SIOCGIFFLAGS {name}: Device not configured")
        return status(ifp, verbose)
    return _configure(k, name, args)


def _configure(k: NetKernel, name: str, args: list[str]) -> str:
    cfg = k.config
    # create/destroy come first, as NetBSD's ifconfig handles them before anything else.
    if args[0] == "create":
        try:
            cfg.if_create(name)
        except OSError as e:
            raise _err("SIOCIFCREATE", e) from None
        args = args[1:]
        if not args:
            return ""
    elif args[0] == "destroy":
        if len(args) > 1:
            raise UsageError(USAGE)
        try:
            cfg.if_destroy(name)
        except OSError as e:
            raise _err("SIOCIFDESTROY", e) from None
        return ""
    if k.ifnet.get(name) is None:
        raise OSError(errno.ENXIO, f"ifconfig: SIOCGIFFLAGS {name}: Device not configured")
    addr: str | None = None
    netmask: str | None = None
    broadcast: str | None = None
    alias = delete = False
    actions: list[tuple[str, str | None]] = []
    i = 0
    while i < len(args):
        w = args[i]
        i += 1
        if w in _ONE_ARG:
            if i >= len(args):
                raise UsageError(f"ifconfig: {w}: missing argument\n{USAGE}")
            val: str | None = args[i]
            i += 1
        else:
            val = None
        if w == "inet":
            continue
        if w in ("inet6", "link6", "atalk", "iso"):
            raise OSError(errno.EAFNOSUPPORT, f"ifconfig: {w}: address family not supported")
        if w in ("up", "down", "promisc", "-promisc", "-linkstr"):
            actions.append((w, None))
        elif w in ("mtu", "linkstr", "media", "link", "lladdr"):
            actions.append((w, val))
        elif w == "netmask":
            assert val is not None
            if not val.lower().startswith("0x"):
                _check_addr(val)
            netmask = val
        elif w == "prefixlen":
            assert val is not None
            if not val.isdigit() or int(val) > 32:
                raise OSError(errno.EINVAL, f"ifconfig: {val}: bad value")
            plen = int(val)
            netmask = ntoa((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0)
        elif w == "broadcast":
            assert val is not None
            _check_addr(val)
            broadcast = val
        elif w == "metric":
            pass
        elif w == "alias" or w == "add":
            alias = True
        elif w in ("-alias", "delete", "remove"):
            delete = True
        elif w in ("-arp", "arp", "debug", "-debug", "link0", "-link0", "link1", "-link1", "link2", "-link2",
                   "mediaopt", "-mediaopt"):
            pass
        elif w == "active":
            # "link ADDR active" (NetBSD: make the new link address the active one):
            # "link" here always replaces the active address, so nothing more to do.
            # Before this fix "active" was a usage error (t_ifconfig.sh uses it).
            pass
        elif w[:1].isdigit() and addr is None:
            _check_addr(w)
            addr = w
        else:
            raise UsageError(USAGE)
    for what, val in actions:
        try:
            if what == "up":
                cfg.if_up(name)
            elif what == "down":
                cfg.if_down(name)
            elif what == "promisc":
                cfg.if_set_promisc(name, True)
            elif what == "-promisc":
                cfg.if_set_promisc(name, False)
            elif what == "-linkstr":
                cfg.if_set_linkstr(name, None)
            elif what == "linkstr":
                cfg.if_set_linkstr(name, val)
            elif what == "mtu":
                assert val is not None
                if not val.isdigit():
                    raise OSError(errno.EINVAL, f"ifconfig: mtu: bad value: {val}")
                cfg.if_set_mtu(name, int(val))
            elif what == "media":
                assert val is not None
                m = {"auto": "auto", "autoselect": "auto", "none": "none"}.get(val)
                if m is None:
                    raise OSError(errno.EINVAL, f"ifconfig: unknown media subtype: {val}")
                cfg.if_set_media(name, m)
            elif what in ("link", "lladdr"):
                assert val is not None
                cfg.if_set_lladdr(name, val)
        except OSError as e:
            if str(e.strerror or "").startswith("ifconfig: "):
                raise
            op = {"up": "SIOCSIFFLAGS", "down": "SIOCSIFFLAGS", "promisc": "SIOCSIFFLAGS",
                  "-promisc": "SIOCSIFFLAGS", "linkstr": "SIOCSLINKSTR", "-linkstr": "SIOCSLINKSTR",
                  "mtu": "SIOCSIFMTU", "media": "SIOCSIFMEDIA", "link": "SIOCALIFADDR",
                  "lladdr": "SIOCALIFADDR"}[what]
            raise _err(op, e) from None
    if addr is not None:
        try:
            if delete:
                cfg.addr_delete(name, addr)
            else:
                cfg.addr_add(name, addr, netmask=netmask, broadcast=broadcast, alias=alias)
        except OSError as e:
            raise _err("SIOCDIFADDR" if delete else "SIOCAIFADDR", e) from None
    elif delete or netmask is not None or broadcast is not None:
        if delete:
            raise UsageError(USAGE)
        # netmask/broadcast alone change the primary address's parameters.
        ifp = k.ifnet.lookup(name)
        if not ifp.addrs:
            raise OSError(errno.EADDRNOTAVAIL, "ifconfig: SIOCAIFADDR: Can't assign requested address")
        ifa = ifp.addrs[0]
        try:
            cfg.addr_add(name, ntoa(ifa.addr) + ("" if netmask is not None else f"/{ifa.plen}"),
                         netmask=netmask, broadcast=broadcast, alias=True)
        except OSError as e:
            raise _err("SIOCAIFADDR", e) from None
    return ""
