"""rtadvd(8): router advertisements from a kernel, NetBSD's syntax and ``rtadvd.conf(5)``.

``rtadvd [-DdfRs] [-c configfile] [-M ifname] [-p pidfile] interface ...`` makes each
interface an advertising interface (:class:`rumpnet.netinet6.rtadvd.Rtadvd`, RFC 4861
6.2): unsolicited advertisements between ``mininterval`` and ``maxinterval`` seconds,
answers to solicitations, the interface's own prefixes unless the configuration names
others. The daemon's life is the calling process's: the advertising is held by a file in
its descriptor table, so when the process goes (a ``rump.rtadvd`` killed with SIGKILL,
its connection to the rump_server dropped) the advertisements stop at once, as they do
when NetBSD's daemon is killed. ``rtadvd -t [interface ...]`` (ours: what NetBSD's
rtadvd does on SIGTERM) sends the final advertisements with router lifetime 0 (RFC 4861
6.2.5) and ends; ``rump.rtadvd`` calls it on SIGTERM.

``rtadvd.conf``: termcap syntax (``shmif0:\\`` continued lines, ``:name#number:``,
``:name=string:`` (in double quotes when it has a colon), ``:name:``, ``tc=`` to
include another entry), read from the host
as the daemon reads it. Taken: maxinterval, mininterval, chlim, raflags, rltime, rtime,
retrans, mtu (a number or ``auto``), addr, prefixlen, pinfoflags, vltime, pltime,
noifprefix; the others are accepted and change nothing.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from rumpkern.lwproc import File
from rumpnet.commands import UsageError, getopt, on_cpu
from rumpnet.netinet6 import in6
from rumpnet.netinet6.ip6 import IPV6_MMTU
from rumpnet.netinet6.nd6 import NdPrefixInfo
from rumpnet.netinet6.rtadvd import RtadvConfig

if TYPE_CHECKING:
    from rumpkern.lwproc import Proc
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain

USAGE = "usage: rtadvd [-DdfRs] [-c configfile] [-M ifname] [-p pidfile] interface ..."
# usr.sbin/rtadvd/rtadvd.c's getopt string, and our -t (terminate, as on SIGTERM).
OPTSTRING = "c:dDfM:p:Rst"

DEF_MAXINTERVAL = 600
MIN_MAXINTERVAL, MAX_MAXINTERVAL = 4, 1800
MIN_MININTERVAL = 3
DEF_VLTIME, DEF_PLTIME = 2592000, 604800
DEF_PINFOFLAGS = 0xC0           # ND_OPT_PI_FLAG_ONLINK | ND_OPT_PI_FLAG_AUTO
MAX_ROUTER_LIFETIME = 9000
ND_RA_FLAG_MANAGED, ND_RA_FLAG_OTHER = 0x80, 0x40

Caps = dict[str, str | int | bool]


def parse_conf(text: str) -> dict[str, Caps]:
    """``rtadvd.conf``'s entries by name (each alias too): capabilities as ``int``
    (``name#n``), ``str`` (``name=s``) or ``True`` (``name``); ``tc=`` entries merged
    in (the entry's own values first); ``#`` comments."""
    records: list[str] = []
    cur = ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not cur and (not line or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1].strip()
            continue
        records.append(cur + line.strip())
        cur = ""
    if cur:
        records.append(cur)
    raw_entries: dict[str, list[str]] = {}
    for rec in records:
        names, _, rest = rec.partition(":")
        fields = [f.strip() for f in _fields(rest) if f.strip()]
        for name in names.split("|"):
            raw_entries[name.strip()] = fields
    return {name: _caps(name, raw_entries, set()) for name in raw_entries}


def _fields(text: str) -> list[str]:
    """The ``:``-separated capabilities of an entry; a ``:`` inside double quotes (an
    IPv6 address) belongs to the value (advcap.c's tskip), and the quotes go."""
    out, cur, quoted = [], "", False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == ":" and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return out + [cur]


def _caps(name: str, entries: dict[str, list[str]], seen: set[str]) -> Caps:
    if name in seen:
        raise OSError(errno.EINVAL, f"rtadvd: {name}: tc= loop")
    seen.add(name)
    caps: Caps = {}
    included: list[str] = []
    for f in entries.get(name, []):
        if "#" in f:
            key, _, val = f.partition("#")
            try:
                caps.setdefault(key, int(val, 0))
            except ValueError:
                raise OSError(errno.EINVAL, f"rtadvd: {name}: bad number for {key}: {val}") from None
        elif "=" in f:
            key, _, val = f.partition("=")
            if key == "tc":
                included.append(val)
            else:
                caps.setdefault(key, val)
        elif f.endswith("@"):
            caps.setdefault(f[:-1], False)      # termcap's "cancelled"
        else:
            caps.setdefault(f, True)
    for tc in included:
        if tc not in entries:
            raise OSError(errno.EINVAL, f"rtadvd: {name}: tc={tc}: no such entry")
        for cap, capval in _caps(tc, entries, seen).items():
            caps.setdefault(cap, capval)
    return caps


def _num(caps: Caps, key: str, default: int) -> int:
    v = caps.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int):
        raise OSError(errno.EINVAL, f"rtadvd: {key}: a number is needed")
    return v


def check_caps(name: str, caps: Caps, ifmtu: int) -> tuple[int, int, int, int, int]:
    """rtadvd's range checks (``getconfig()``, RFC 4861 6.2.1) on the capabilities of
    interface ``name`` with link MTU ``ifmtu``: (maxinterval, mininterval, router
    lifetime, RA flags, advertised MTU), or OSError(EINVAL) naming the capability."""
    maxi = _num(caps, "maxinterval", DEF_MAXINTERVAL)
    if not MIN_MAXINTERVAL <= maxi <= MAX_MAXINTERVAL:
        raise OSError(errno.EINVAL, f"rtadvd: {name}: maxinterval ({maxi}) must be between "
                                    f"{MIN_MAXINTERVAL} and {MAX_MAXINTERVAL}")
    mini = _num(caps, "mininterval", maxi // 3)
    if not MIN_MININTERVAL <= mini <= maxi * 3 // 4:
        raise OSError(errno.EINVAL, f"rtadvd: {name}: mininterval ({mini}) must be between "
                                    f"{MIN_MININTERVAL} and {maxi * 3 // 4}")
    raflags = caps.get("raflags", 0)
    if isinstance(raflags, str):   # rtadvd.conf(5): a string of m, o
        flags = (ND_RA_FLAG_MANAGED if "m" in raflags else 0) | (ND_RA_FLAG_OTHER if "o" in raflags else 0)
    else:
        flags = int(raflags)
    lifetime = _num(caps, "rltime", maxi * 3)
    if lifetime and not maxi <= lifetime <= MAX_ROUTER_LIFETIME:
        raise OSError(errno.EINVAL, f"rtadvd: {name}: router lifetime ({lifetime}) is out of range")
    mtu_cap = caps.get("mtu", 0)
    if mtu_cap == "auto":
        mtu = ifmtu
    elif isinstance(mtu_cap, int) and not isinstance(mtu_cap, bool):
        mtu = mtu_cap
        if mtu and not IPV6_MMTU <= mtu <= ifmtu:
            raise OSError(errno.EINVAL, f"rtadvd: {name}: advertised link mtu ({mtu}) is invalid")
    else:
        raise OSError(errno.EINVAL, f"rtadvd: {name}: mtu: a number or auto is needed")
    for key in ("chlim", "rtime", "retrans", "pinfoflags", "vltime", "pltime", "prefixlen"):
        _num(caps, key, 0)
    return maxi, mini, lifetime, flags, mtu


def config_for(inet6: Inet6Domain, ifp: Ifnet, caps: Caps) -> RtadvConfig:
    """``getconfig()``: the advertisement of ``ifp`` from its capabilities (rtadvd's
    defaults and range checks, RFC 4861 6.2.1)."""
    maxi, mini, lifetime, flags, mtu = check_caps(ifp.name, caps, ifp.mtu)
    return RtadvConfig(prefixes=_prefixes(inet6, ifp, caps), maxinterval=float(maxi),
                       mininterval=float(mini), lifetime=lifetime, chlim=_num(caps, "chlim", 64),
                       managed=bool(flags & ND_RA_FLAG_MANAGED), other=bool(flags & ND_RA_FLAG_OTHER),
                       reachable=_num(caps, "rtime", 0), retrans=_num(caps, "retrans", 0), mtu=mtu)


def _prefixes(inet6: Inet6Domain, ifp: Ifnet, caps: Caps) -> list[NdPrefixInfo]:
    pflags = _num(caps, "pinfoflags", DEF_PINFOFLAGS)
    vltime, pltime = _num(caps, "vltime", DEF_VLTIME), _num(caps, "pltime", DEF_PLTIME)

    def info(prefix: int, plen: int) -> NdPrefixInfo:
        return NdPrefixInfo(plen, bool(pflags & 0x80), bool(pflags & 0x40), vltime, pltime,
                            in6.prefix_of(prefix, plen))

    addr = caps.get("addr")
    if isinstance(addr, str):
        try:
            a = in6.pton(addr)
        except (OSError, ValueError):
            raise OSError(errno.EINVAL, f"rtadvd: {ifp.name}: inet_pton failed for {addr}") from None
        return [info(a, _num(caps, "prefixlen", 64))]
    if caps.get("noifprefix"):
        return []
    # The interface's own global prefixes (rtadvd's get_prefix(): not link-local, not
    # multicast, not ::1).
    out: list[NdPrefixInfo] = []
    for ia in inet6.addresses(ifp):
        if in6.is_linklocal(ia.addr) or in6.is_multicast(ia.addr) or ia.addr == in6.IN6ADDR_LOOPBACK:
            continue
        p = info(ia.addr, ia.plen)
        if all((q.prefix, q.plen) != (p.prefix, p.plen) for q in out):
            out.append(p)
    return out


class RtadvdFile:
    """The advertising of one daemon, in its process's descriptor table: when the last
    descriptor goes (the process exits), the interfaces it advertises on stop at once,
    without final advertisements (a killed daemon sends none)."""

    def __init__(self, inet6: Inet6Domain, ifindexes: list[int]) -> None:
        self.inet6 = inet6
        self.ifindexes = ifindexes

    def close(self) -> None:
        inet6 = self.inet6
        for ifindex in self.ifindexes:
            inet6.node.rtadvd.abort(ifindex)
        if not inet6.kernel.halted:
            inet6.settle()

    def close_wait(self) -> None:
        return None


def rtadvd(k: NetKernel, argv: list[str]) -> str:
    """rtadvd(8) in kernel ``k`` (see the module docstring)."""
    proc = k.curproc      # the caller's process: on_cpu may run fn on another thread
    return on_cpu(k, lambda: _rtadvd(k, proc, argv))


def _rtadvd(k: NetKernel, proc: Proc, argv: list[str]) -> str:
    inet6 = k.inet6
    if inet6 is None:
        raise OSError(errno.EAFNOSUPPORT, "rtadvd: socket: Address family not supported by protocol family")
    opts, names = getopt("rtadvd", argv, OPTSTRING, USAGE)
    letters = dict(opts)
    node = inet6.node
    now = inet6.now()
    if "t" in letters:
        targets = [k.ifnet.lookup(n).index for n in names] if names else list(node.rtadvd.ifs)
        for ifindex in targets:
            node.rtadvd.stop(ifindex, now)
        inet6.settle(now)
        return ""
    if not names:
        raise UsageError(USAGE)
    conf: dict[str, Caps] = {}
    path = letters.get("c")
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                conf = parse_conf(f.read())
        except OSError as e:
            if e.filename is None:
                raise
            raise OSError(e.errno, f"rtadvd: {path}: {e.strerror}") from None
    start(k, inet6, proc, conf, names)
    return ""


def start(k: NetKernel, inet6: Inet6Domain, proc: Proc, conf: dict[str, Caps], names: list[str]) -> None:
    """Advertise on the interfaces ``names`` with their entries of ``conf`` (or its
    ``default`` one), for as long as ``proc`` holds the descriptor this opens; all
    configurations are checked before any advertising starts. On the CPU."""
    node = inet6.node
    now = inet6.now()
    ifps = []
    for n in names:
        ifp = k.ifnet.get(n)
        if ifp is None:
            raise OSError(errno.ENXIO, f"rtadvd: {n}: no such interface")
        adv = node.rtadvd.ifs.get(ifp.index)
        if adv is not None and not adv.final:    # one whose final advertisements go on may be replaced
            raise OSError(errno.EBUSY, f"rtadvd: {n}: another rtadvd advertises on it")
        ifps.append(ifp)
    configs = [(ifp, config_for(inet6, ifp, conf.get(ifp.name, conf.get("default", {})))) for ifp in ifps]
    for ifp, config in configs:
        inet6.attach(ifp)
        node.rtadvd.start(ifp.index, config, now)
    proc.fdt.alloc(File(RtadvdFile(inet6, [ifp.index for ifp in ifps])))
    inet6.settle(now)
