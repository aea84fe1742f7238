"""IPv6 address ioctls: NetBSD's ``in6_control`` (``netinet6/in6.c``), ``struct in6_ifreq``
and ``struct in6_aliasreq``.

netinet6 registers these as its domain's ``ioctl_requests`` (``rumpnet.if_control`` asks
the socket's domain, so they answer on AF_INET6 sockets only, as in NetBSD):
SIOCAIFADDR_IN6 adds an address (or replaces it: new prefix length, flags, lifetimes),
SIOCDIFADDR_IN6 removes one (EADDRNOTAVAIL when it is not there), SIOCGIFNETMASK_IN6,
SIOCGIFAFLAG_IN6 and SIOCGIFALIFETIME_IN6 describe one.

Lifetimes (``struct in6_addrlifetime``): ``ia6t_expire``/``ia6t_preferred`` are the
absolute times on the kernel's clock (whole seconds, 0: infinite); rumpnet's kernel clock
is not the host's wall clock, so ``ia6t_vltime``/``ia6t_pltime`` answer the seconds left
now (ND6_INFINITE_LIFETIME: infinite) where NetBSD answers the configured lifetimes.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.if_control import IoctlHandler, ifp_of
from rumpnet.if_ioctl import IFNAMSIZ, SockaddrIn6, iow, iowr, pack_name, unpack_name, unpack_sockaddr
from rumpnet.net_kernel import netinet6
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_var import ND6_INFINITE_LIFETIME, In6Ifaddr

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel

IN6_IFREQ_SIZE = 288       # name + union (struct icmp6_ifstat: 34 counters of 8 bytes)
IN6_ALIASREQ_SIZE = 128    # name + 3 * sockaddr_in6 + int flags + struct in6_addrlifetime

SIOCDIFADDR_IN6 = iow("i", 25, IN6_IFREQ_SIZE)
SIOCGIFNETMASK_IN6 = iowr("i", 37, IN6_IFREQ_SIZE)
SIOCGIFAFLAG_IN6 = iowr("i", 73, IN6_IFREQ_SIZE)
SIOCGIFALIFETIME_IN6 = iowr("i", 81, IN6_IFREQ_SIZE)
SIOCAIFADDR_IN6 = iow("i", 107, IN6_ALIASREQ_SIZE)

_SIN6 = 28
_LIFETIME = struct.Struct("=qqII")


@dataclass
class In6Addrlifetime:
    """``struct in6_addrlifetime`` (see the module docstring for what the fields hold)."""

    expire: int = 0
    preferred: int = 0
    vltime: int = ND6_INFINITE_LIFETIME
    pltime: int = ND6_INFINITE_LIFETIME

    def pack(self) -> bytes:
        return _LIFETIME.pack(self.expire, self.preferred, self.vltime, self.pltime)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> In6Addrlifetime:
        return cls(*_LIFETIME.unpack_from(bytes(raw)))


@dataclass
class In6Ifreq:
    """``struct in6_ifreq``: a name and a union read as a sockaddr_in6, ``ifru_flags6``
    or ``ifru_lifetime``."""

    name: str
    ifru: bytes = bytes(IN6_IFREQ_SIZE - IFNAMSIZ)

    def __post_init__(self) -> None:
        self.ifru = bytes(self.ifru).ljust(IN6_IFREQ_SIZE - IFNAMSIZ, b"\0")[: IN6_IFREQ_SIZE - IFNAMSIZ]

    def pack(self) -> bytearray:
        return bytearray(pack_name(self.name) + self.ifru)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> In6Ifreq:
        return cls(unpack_name(raw), bytes(raw[IFNAMSIZ:IN6_IFREQ_SIZE]))

    @classmethod
    def with_addr(cls, name: str, sa: SockaddrIn6) -> In6Ifreq:
        return cls(name, sa.pack())

    @property
    def addr(self) -> SockaddrIn6 | None:
        sa = unpack_sockaddr(self.ifru)
        return sa if isinstance(sa, SockaddrIn6) else None

    @property
    def flags6(self) -> int:
        return int(struct.unpack_from("=i", self.ifru)[0])

    @property
    def lifetime(self) -> In6Addrlifetime:
        return In6Addrlifetime.unpack(self.ifru)


@dataclass
class In6Aliasreq:
    """``struct in6_aliasreq``: the address, a destination, the prefix mask, address
    flags (IN6_IFF_*) and lifetimes (vltime/pltime in seconds)."""

    name: str
    addr: SockaddrIn6
    prefixmask: int = 0
    flags: int = 0
    lifetime: In6Addrlifetime | None = None
    dstaddr: SockaddrIn6 | None = None

    def pack(self) -> bytearray:
        dst = self.dstaddr.pack() if self.dstaddr is not None else bytes(_SIN6)
        lt = self.lifetime or In6Addrlifetime()
        return bytearray(pack_name(self.name) + self.addr.pack() + dst + SockaddrIn6(self.prefixmask).pack()
                         + struct.pack("=i", self.flags) + lt.pack())

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> In6Aliasreq:
        b = bytes(raw[:IN6_ALIASREQ_SIZE])
        addr = unpack_sockaddr(b[16:44])
        dst = unpack_sockaddr(b[44:72])
        mask = unpack_sockaddr(b[72:100])
        (flags,) = struct.unpack_from("=i", b, 100)
        return cls(unpack_name(b), addr if isinstance(addr, SockaddrIn6) else SockaddrIn6(0),
                   mask.addr if isinstance(mask, SockaddrIn6) else 0, flags,
                   In6Addrlifetime.unpack(b[104:]), dst if isinstance(dst, SockaddrIn6) else None)


def ifconf_sockaddr(ia: In6Ifaddr) -> SockaddrIn6:
    """How an address is reported (SIOCGIFCONF): the zone in ``sin6_scope_id`` for the
    addresses written with one (RFC 4007 11: link-local and interface-local ones)."""
    zone = scope6.zone_of(ia.addr, ia.ifindex) if scope6.shows_zone(ia.addr, ia.ifindex) else 0
    return SockaddrIn6(ia.addr, scope_id=zone)


def in6_ifconf_addrs(k: NetKernel, ifp: Ifnet) -> list[bytes]:
    return [ifconf_sockaddr(ia).pack() for ia in netinet6(k).addresses(ifp)]


def _target(k: NetKernel, data: bytearray) -> tuple[Ifnet, In6Ifaddr]:
    """The interface and its address the request's ``ifr_addr`` names (EADDRNOTAVAIL)."""
    ifp = ifp_of(k, data)
    sa = In6Ifreq.unpack(data).addr
    if sa is not None:
        for ia in netinet6(k).addresses(ifp):
            if ia.addr == sa.addr:
                return ifp, ia
    raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")


def _aifaddr(k: NetKernel, data: bytearray) -> None:
    req = In6Aliasreq.unpack(data)
    ifp = ifp_of(k, data)
    if req.addr.scope_id and req.addr.scope_id != ifp.index:
        raise kerr(errno.EINVAL, "the address's zone is another interface's")
    plen = in6.mask2len(req.prefixmask)
    if not 0 < plen <= 128:
        raise kerr(errno.EINVAL)
    lt = req.lifetime or In6Addrlifetime()
    netinet6(k).add_address(ifp, req.addr.addr, plen, req.flags, lt.vltime, lt.pltime)


def _difaddr(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    sa = In6Ifreq.unpack(data).addr
    if sa is None:
        raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")
    netinet6(k).remove_address(ifp, sa.addr)


def _gifnetmask(k: NetKernel, data: bytearray) -> None:
    ifp, ia = _target(k, data)
    data[:IN6_IFREQ_SIZE] = In6Ifreq.with_addr(ifp.name, SockaddrIn6(in6.prefixlen2mask(ia.plen))).pack()


def _gifaflag(k: NetKernel, data: bytearray) -> None:
    ifp, ia = _target(k, data)
    data[:IN6_IFREQ_SIZE] = In6Ifreq(ifp.name, struct.pack("=i", ia.flags)).pack()


def _gifalifetime(k: NetKernel, data: bytearray) -> None:
    ifp, ia = _target(k, data)
    now = netinet6(k).now()

    def left(t: float | None) -> int:
        return ND6_INFINITE_LIFETIME if t is None else int(max(0.0, t - now))

    lt = In6Addrlifetime(0 if ia.expire is None else int(ia.expire), 0 if ia.preferred is None else int(ia.preferred),
                         left(ia.expire), left(ia.preferred))
    data[:IN6_IFREQ_SIZE] = In6Ifreq(ifp.name, lt.pack()).pack()


# netinet6's requests (in6_control's switch), registered with its domain.
IN6_REQUESTS: dict[int, IoctlHandler] = {
    SIOCAIFADDR_IN6: _aifaddr, SIOCDIFADDR_IN6: _difaddr, SIOCGIFNETMASK_IN6: _gifnetmask,
    SIOCGIFAFLAG_IN6: _gifaflag, SIOCGIFALIFETIME_IN6: _gifalifetime,
}
