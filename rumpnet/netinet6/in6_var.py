"""Per-interface IPv6 state: addresses, neighbour-discovery parameters and multicast
memberships (NetBSD's ``in6_var.h``, ``nd6.h``'s ``nd_ifinfo``, ``in6_ifextra``).

The seam between the cores and the interface layer: each interface has one
:class:`In6Ifextra` (NetBSD hangs it off ``ifp->if_afdata[AF_INET6]``), and a node keeps
them in one :class:`In6Ifaddrs` that the cores consult for "is this address ours, and
usable", "which groups are joined here" and "what is this link's MTU".
"""

from __future__ import annotations

import errno
from dataclasses import dataclass, field

from rumpkern.errno import kerr
from rumpnet.netinet6 import in6
from rumpnet.netinet6.ip6 import IPV6_DEFHLIM, IPV6_MMTU

# Address flags (``in6_var.h`` IN6_IFF_*).
IN6_IFF_ANYCAST = 0x01
IN6_IFF_TENTATIVE = 0x02     # DAD in progress (RFC 4862 5.4)
IN6_IFF_DUPLICATED = 0x04    # DAD found another owner
IN6_IFF_DETACHED = 0x08
IN6_IFF_DEPRECATED = 0x10    # preferred lifetime over (RFC 4862 5.5.4)
IN6_IFF_NODAD = 0x20
IN6_IFF_AUTOCONF = 0x40      # made by SLAAC
IN6_IFF_TEMPORARY = 0x80
IN6_IFF_NOTREADY = IN6_IFF_TENTATIVE | IN6_IFF_DUPLICATED

IN6_IFF_NAMES = ((IN6_IFF_ANYCAST, "anycast"), (IN6_IFF_TENTATIVE, "tentative"),
                 (IN6_IFF_DUPLICATED, "duplicated"), (IN6_IFF_DETACHED, "detached"),
                 (IN6_IFF_DEPRECATED, "deprecated"), (IN6_IFF_AUTOCONF, "autoconf"),
                 (IN6_IFF_TEMPORARY, "temporary"))

# nd_ifinfo flags (``nd6.h`` ND6_IFF_*).
ND6_IFF_PERFORMNUD = 0x01
ND6_IFF_ACCEPT_RTADV = 0x02
ND6_IFF_IFDISABLED = 0x08     # IPv6 off on this link (RFC 4862 5.4.5: duplicate link-local)
ND6_IFF_AUTO_LINKLOCAL = 0x20

ND6_INFINITE_LIFETIME = 0xFFFFFFFF
REACHABLE_TIME = 30.0          # seconds (RFC 4861 10)
RETRANS_TIMER = 1.0
MIN_RANDOM_FACTOR = 0.5
MAX_RANDOM_FACTOR = 1.5


@dataclass(slots=True, eq=False)
class In6Ifaddr:
    """An address on an interface (``struct in6_ifaddr``). ``expire`` and ``preferred``
    are absolute times on the kernel clock (None: infinite lifetime)."""

    addr: int
    plen: int
    ifindex: int
    flags: int = 0
    expire: float | None = None
    preferred: float | None = None
    dad_counter: int = 0          # RFC 7217 DAD_Counter used to make it

    @property
    def ready(self) -> bool:
        """Usable: not tentative and not a duplicate (RFC 4862 5.4)."""
        return not self.flags & IN6_IFF_NOTREADY

    def flag_names(self) -> list[str]:
        return [name for bit, name in IN6_IFF_NAMES if self.flags & bit]


@dataclass(slots=True, eq=False)
class NdIfinfo:
    """``struct nd_ifinfo``: the link's ND parameters (RFC 4861 6.3.2), seconds."""

    linkmtu: int = 0                   # from RAs; 0: the interface MTU
    basereachable: float = REACHABLE_TIME
    reachable: float = REACHABLE_TIME  # re-randomised from basereachable (RFC 4861 6.3.4)
    retrans: float = RETRANS_TIMER
    chlim: int = IPV6_DEFHLIM          # CurHopLimit
    flags: int = ND6_IFF_PERFORMNUD | ND6_IFF_AUTO_LINKLOCAL


@dataclass(slots=True, eq=False)
class In6Ifextra:
    """IPv6 state of one interface. ``lladdr`` is the MAC (``b""`` for links without
    link-layer addresses, loopback); ``groups`` counts joins per multicast group."""

    ifindex: int
    name: str
    lladdr: bytes = b""
    mtu: int = 1500
    loopback: bool = False
    up: bool = True
    ndi: NdIfinfo = field(default_factory=NdIfinfo)
    addrs: list[In6Ifaddr] = field(default_factory=list)
    groups: dict[int, int] = field(default_factory=dict)

    @property
    def linkmtu(self) -> int:
        """``IN6_LINKMTU``: an RA's MTU when smaller than the interface's, never below
        the IPv6 minimum."""
        mtu = self.ndi.linkmtu if 0 < self.ndi.linkmtu < self.mtu else self.mtu
        return max(mtu, IPV6_MMTU)

    @property
    def disabled(self) -> bool:
        return bool(self.ndi.flags & ND6_IFF_IFDISABLED)

    def linklocal(self, ready_only: bool = True) -> In6Ifaddr | None:
        for ia in self.addrs:
            if in6.is_linklocal(ia.addr) and (ia.ready or not ready_only):
                return ia
        return None

    def joined(self, group: int) -> bool:
        return group in self.groups


class In6Ifaddrs:
    """Every interface's IPv6 state on one node (the ``in6_ifaddr`` list)."""

    def __init__(self) -> None:
        self.ifs: dict[int, In6Ifextra] = {}
        # Bumped by every address or interface added or removed: what a cached output
        # path (ip6_rtcache) was built from is checked against it on every packet.
        self.generation = 0
        self._index: dict[int, In6Ifaddr] = {}
        self._index_gen = -1

    def attach(self, ext: In6Ifextra) -> In6Ifextra:
        self.ifs[ext.ifindex] = ext
        self.generation += 1
        return ext

    def detach(self, ifindex: int) -> None:
        self.ifs.pop(ifindex, None)
        self.generation += 1

    def get(self, ifindex: int) -> In6Ifextra:
        ext = self.ifs.get(ifindex)
        if ext is None:
            raise kerr(errno.ENXIO, f"no interface with index {ifindex}")
        return ext

    def lookup(self, addr: int, ifindex: int = 0) -> In6Ifaddr | None:
        """The interface address ``addr``: a scoped one only in the zone of ``ifindex``
        (RFC 4007), a global one on any interface (the weak host model NetBSD has)."""
        if in6.is_scoped(addr) and ifindex:
            ext = self.ifs.get(ifindex)
            return next((ia for ia in ext.addrs if ia.addr == addr), None) if ext else None
        if self._index_gen != self.generation:
            # Asked for every packet received (ip6_input): an index, rebuilt after each
            # change, keeping the first interface's entry as the walk below would.
            index: dict[int, In6Ifaddr] = {}
            for ext in self.ifs.values():
                for ia in ext.addrs:
                    index.setdefault(ia.addr, ia)
            self._index, self._index_gen = index, self.generation
        return self._index.get(addr)

    def add(self, ia: In6Ifaddr) -> In6Ifaddr:
        """Put ``ia`` on its interface (EEXIST when that address is already there)."""
        ext = self.get(ia.ifindex)
        if any(x.addr == ia.addr for x in ext.addrs):
            raise kerr(errno.EEXIST, f"{in6.ntop(ia.addr)} already on {ext.name}")
        ext.addrs.append(ia)
        self.generation += 1
        return ia

    def remove(self, ia: In6Ifaddr) -> None:
        ext = self.ifs.get(ia.ifindex)
        if ext is not None and ia in ext.addrs:
            ext.addrs.remove(ia)
            self.generation += 1

    def all(self) -> list[In6Ifaddr]:
        return [ia for ext in self.ifs.values() for ia in ext.addrs]

    def on_link(self, addr: int, ifindex: int) -> In6Ifaddr | None:
        """An address of ``ifindex`` whose prefix covers ``addr`` (a neighbour's), the
        link-local prefix for a link-local ``addr``."""
        ext = self.ifs.get(ifindex)
        if ext is None:
            return None
        for ia in ext.addrs:
            if ia.plen < 128 and in6.are_prefix_equal(ia.addr, addr, ia.plen):
                return ia
        return None

    def is_anycast(self, addr: int) -> bool:
        ia = self.lookup(addr)
        return ia is not None and bool(ia.flags & IN6_IFF_ANYCAST)
