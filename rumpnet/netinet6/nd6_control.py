"""Router discovery as ndp(8) reads and flushes it: NetBSD's ``nd6_ioctl`` requests and
the ``net.inet6.icmp6.nd6_drlist``/``nd6_prlist`` sysctls (``netinet6/nd6.c``), with
``struct in6_ndireq``/``nd_ifinfo``, ``struct in6_defrouter`` and ``struct in6_prefix``
in NetBSD's amd64 layouts (``netinet6/nd6.h``).

* SIOCGIFINFO_IN6 answers an interface's ``nd_ifinfo`` (``initialized`` 0 before IPv6
  knows the interface); SIOCSIFINFO_IN6 sets basereachable (ms), retrans (ms) and chlim
  where non-zero (0 means unspecified, as NetBSD's) and the flags; SIOCSIFINFO_FLAGS sets
  only the flags. ENXIO for an unknown interface name.
* SIOCSRTRFLUSH_IN6 forgets every default router, SIOCSPFXFLUSH_IN6 every prefix and the
  addresses autoconfigured from it (RFC 4862 5.5.3), whatever interface the
  ``in6_ifreq`` names (ndp names ``lo0``), as NetBSD's.
* ``nd6_drlist`` is an array of ``in6_defrouter``; ``nd6_prlist`` is, per prefix, an
  ``in6_prefix`` followed by ``advrtrs`` sockaddr_in6 (its advertising routers).

Times: rumpnet's kernel clock is not the host's wall clock, so the ``expire`` fields
answer the whole seconds left (as ``in6_control``'s lifetimes do) where NetBSD answers a
wall-clock time: 0 never expires, a finite one has at least 1 (its last second included),
-1 has expired.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.if_control import IoctlHandler, ifp_of
from rumpnet.if_ioctl import IFNAMSIZ, SockaddrIn6, iowr, pack_name, unpack_name, unpack_sockaddr
from rumpnet.net_kernel import netinet6
from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_control import IN6_IFREQ_SIZE
from rumpnet.netinet6.in6_var import IN6_IFF_AUTOCONF

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain
    from rumpnet.netinet6.in6_var import NdIfinfo

# netinet6/nd6.h: struct nd_ifinfo (u_int32 linkmtu, maxmtu, basereachable [ms], reachable [s],
# retrans [ms], flags; int recalctm; u_int8 chlim, initialized; three 8-byte privacy seeds).
_ND_IFINFO = struct.Struct("=IIIIIIiBB24x2x")
IN6_NDIREQ_SIZE = IFNAMSIZ + _ND_IFINFO.size           # 72
_DEFROUTER = struct.Struct("=28sBxHqH6x")               # 48: rtaddr, flags, rtlifetime, expire, if_index
_PREFIX = struct.Struct("=28sBBBxIIqIiHH4x")            # 64: prefix, raflags, plen, origin, vltime, pltime,
_SIN6 = 28                                              # expire, flags, refcnt, if_index, advrtrs
PRF_ONLINK, PRF_AUTONOMOUS = 0x01, 0x02                 # struct prf_ra's bit-fields, low bit first
PR_ORIG_RA = 0                                          # in6_prefix.origin: learned from an RA

# netinet6/in6_var.h
SIOCSPFXFLUSH_IN6 = iowr("i", 79, IN6_IFREQ_SIZE)
SIOCSRTRFLUSH_IN6 = iowr("i", 80, IN6_IFREQ_SIZE)
SIOCSIFINFO_FLAGS = iowr("i", 87, IN6_NDIREQ_SIZE)
SIOCGIFINFO_IN6 = iowr("i", 108, IN6_NDIREQ_SIZE)
SIOCSIFINFO_IN6 = iowr("i", 109, IN6_NDIREQ_SIZE)
# netinet/icmp6.h: net.inet6.icmp6's list nodes
ICMPV6CTL_ND6_DRLIST = 20
ICMPV6CTL_ND6_PRLIST = 21


def seconds_left(deadline: float | None, now: float) -> int:
    """An ``expire`` field (see the module docstring)."""
    if deadline is None:
        return 0
    return max(1, int(deadline - now)) if deadline >= now else -1


@dataclass
class In6Ndireq:
    """``struct in6_ndireq``: an interface name and its ``nd_ifinfo``."""

    ifname: str
    linkmtu: int = 0
    maxmtu: int = 0
    basereachable: int = 0      # ms
    reachable: int = 0          # s
    retrans: int = 0            # ms
    flags: int = 0
    recalctm: int = 0
    chlim: int = 0
    initialized: int = 0

    def pack(self) -> bytearray:
        return bytearray(pack_name(self.ifname) + _ND_IFINFO.pack(
            self.linkmtu, self.maxmtu, self.basereachable, self.reachable, self.retrans, self.flags,
            self.recalctm, self.chlim, self.initialized))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> In6Ndireq:
        return cls(unpack_name(raw), *_ND_IFINFO.unpack_from(bytes(raw[:IN6_NDIREQ_SIZE]), IFNAMSIZ))


@dataclass
class In6Defrouter:
    """``struct in6_defrouter``: a default router (``flags``: the RA's M, O and Prf bits)."""

    rtaddr: SockaddrIn6
    flags: int = 0
    rtlifetime: int = 0
    expire: int = 0
    if_index: int = 0

    def pack(self) -> bytes:
        return _DEFROUTER.pack(self.rtaddr.pack(), self.flags, self.rtlifetime, self.expire, self.if_index)

    @classmethod
    def unpack_list(cls, raw: bytes) -> list[In6Defrouter]:
        out = []
        for off in range(0, len(raw) - _DEFROUTER.size + 1, _DEFROUTER.size):
            sa, flags, life, expire, index = _DEFROUTER.unpack_from(raw, off)
            out.append(cls(_sin6(sa), flags, life, expire, index))
        return out


@dataclass
class In6Prefix:
    """``struct in6_prefix`` and the advertising routers that follow it."""

    prefix: SockaddrIn6
    raflags: int = 0
    prefixlen: int = 0
    origin: int = PR_ORIG_RA
    vltime: int = 0
    pltime: int = 0
    expire: int = 0
    flags: int = 0
    refcnt: int = 0
    if_index: int = 0
    advrtrs: list[SockaddrIn6] = field(default_factory=list)

    def pack(self) -> bytes:
        head = _PREFIX.pack(self.prefix.pack(), self.raflags, self.prefixlen, self.origin, self.vltime,
                            self.pltime, self.expire, self.flags, self.refcnt, self.if_index, len(self.advrtrs))
        return head + b"".join(sa.pack() for sa in self.advrtrs)

    @classmethod
    def unpack_list(cls, raw: bytes) -> list[In6Prefix]:
        out, off = [], 0
        while off + _PREFIX.size <= len(raw):
            sa, raflags, plen, origin, vl, pl, expire, flags, refcnt, index, n = _PREFIX.unpack_from(raw, off)
            off += _PREFIX.size
            rtrs = [_sin6(raw[off + i * _SIN6: off + (i + 1) * _SIN6]) for i in range(n)]
            off += n * _SIN6
            out.append(cls(_sin6(sa), raflags, plen, origin, vl, pl, expire, flags, refcnt, index, rtrs))
        return out


def _sin6(raw: bytes) -> SockaddrIn6:
    sa = unpack_sockaddr(raw)
    return sa if isinstance(sa, SockaddrIn6) else SockaddrIn6(0)


# -- the kernel side ---------------------------------------------------------------------------
def _ndi_of(d: Inet6Domain, ifindex: int) -> NdIfinfo | None:
    ext = d.node.ifaddrs.ifs.get(ifindex)
    return ext.ndi if ext is not None else None


def _gifinfo(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    ndi = _ndi_of(netinet6(k), ifp.index)
    req = In6Ndireq(ifp.name, maxmtu=ifp.mtu)
    if ndi is not None:
        req = In6Ndireq(ifp.name, ndi.linkmtu, ifp.mtu, round(ndi.basereachable * 1000), int(ndi.reachable),
                        round(ndi.retrans * 1000), ndi.flags, 0, ndi.chlim, 1)
    data[:IN6_NDIREQ_SIZE] = req.pack()


def _sifinfo(k: NetKernel, data: bytearray, flags_only: bool) -> None:
    ifp = ifp_of(k, data)
    d = netinet6(k)
    ndi = _ndi_of(d, ifp.index)
    if ndi is None:
        raise kerr(errno.EINVAL, f"{ifp.name}: not initialized yet")
    req = In6Ndireq.unpack(data)
    if not flags_only:   # nd6_ioctl: 0 means unspecified
        if req.basereachable:
            ndi.basereachable = req.basereachable / 1000
            d.node.nd6.recalc_reachable(ifp.index, d.now())
        if req.retrans:
            ndi.retrans = req.retrans / 1000
        if req.chlim:
            ndi.chlim = req.chlim
    ndi.flags = req.flags


def _flush_routers(k: NetKernel, data: bytearray) -> None:
    ifp_of(k, data)
    d = netinet6(k)
    d.node.nd6_rtr.defrouter_flush()
    d.settle()


def _flush_prefixes(k: NetKernel, data: bytearray) -> None:
    ifp_of(k, data)
    d = netinet6(k)
    d.node.nd6_rtr.prefix_flush(d.now())
    d.settle()


ND6_REQUESTS: dict[int, IoctlHandler] = {
    SIOCGIFINFO_IN6: _gifinfo,
    SIOCSIFINFO_IN6: lambda k, data: _sifinfo(k, data, False),
    SIOCSIFINFO_FLAGS: lambda k, data: _sifinfo(k, data, True),
    SIOCSRTRFLUSH_IN6: _flush_routers,
    SIOCSPFXFLUSH_IN6: _flush_prefixes,
}


def drlist(d: Inet6Domain) -> bytes:
    """``nd6_sysctl(ICMPV6CTL_ND6_DRLIST)``: the default router list."""
    now = d.now()
    return b"".join(In6Defrouter(SockaddrIn6(dr.addr, scope_id=dr.ifindex), dr.flags, dr.lifetime,
                                 seconds_left(dr.expire, now), dr.ifindex).pack()
                    for dr in d.node.nd6_rtr.defrouters.values())


def prlist(d: Inet6Domain) -> bytes:
    """``nd6_sysctl(ICMPV6CTL_ND6_PRLIST)``: the prefix list; ``refcnt`` counts the
    addresses autoconfigured from the prefix."""
    now = d.now()
    out = []
    for pr in d.node.nd6_rtr.prefixes.values():
        ext = d.node.ifaddrs.ifs.get(pr.ifindex)
        refs = sum(1 for ia in (ext.addrs if ext is not None else []) if ia.flags & IN6_IFF_AUTOCONF
                   and ia.plen == pr.plen and in6.are_prefix_equal(ia.addr, pr.prefix, pr.plen))
        out.append(In6Prefix(SockaddrIn6(pr.prefix), PRF_ONLINK | (PRF_AUTONOMOUS if pr.autonomous else 0),
                             pr.plen, PR_ORIG_RA, pr.vltime, pr.pltime, seconds_left(pr.expire, now), 0, refs,
                             pr.ifindex, [SockaddrIn6(a, scope_id=pr.ifindex) for a in pr.advrtrs]).pack())
    return b"".join(out)


def nd6_list_sysctl(d: Inet6Domain, which: int, args: list[int]) -> bytes:
    """The handler of both list nodes; they take no further MIB arguments."""
    if args:
        raise kerr(errno.ENOTDIR)
    return drlist(d) if which == ICMPV6CTL_ND6_DRLIST else prlist(d)

