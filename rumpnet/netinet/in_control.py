"""IPv4 address ioctls: NetBSD's ``in_control`` (``netinet/in.c``) and ``struct in_aliasreq``.

Registered as netinet's ``ioctl_requests`` (``rumpnet.if_control`` asks the socket's
domain): SIOCAIFADDR adds an address or changes one that is there (its mask and
broadcast address), SIOCDIFADDR removes one (EADDRNOTAVAIL when it is not there),
SIOCGIFADDR / SIOCGIFNETMASK answer the interface's first address, SIOCGIFALIAS the mask
and broadcast (or destination) address of the address it is given.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.if_control import IoctlHandler, ifp_of
from rumpnet.if_ioctl import AF_INET, IFNAMSIZ, IFREQ_SIZE, Ifreq, SockaddrIn, iow, iowr, pack_name, unpack_name
from rumpnet.ifnet import IFF_POINTOPOINT
from rumpnet.net_kernel import netinet
from rumpnet.netinet.in_addr import classful_plen
from rumpnet.route import mask_to_plen

if TYPE_CHECKING:
    from rumpnet.ifnet import IfAddr, Ifnet
    from rumpnet.net_kernel import NetKernel

IN_ALIASREQ_SIZE = 64    # char ifra_name[16] + 3 * struct sockaddr_in

SIOCDIFADDR = iow("i", 25, IFREQ_SIZE)
SIOCAIFADDR = iow("i", 26, IN_ALIASREQ_SIZE)
SIOCGIFALIAS = iowr("i", 27, IN_ALIASREQ_SIZE)
SIOCGIFADDR = iowr("i", 33, IFREQ_SIZE)
SIOCGIFNETMASK = iowr("i", 37, IFREQ_SIZE)


@dataclass
class InAliasreq:
    """``struct in_aliasreq``: the address, its broadcast (or point-to-point destination)
    address and its mask; a zero field is an absent one (``sin_len`` 0)."""

    name: str
    addr: int = 0
    dstaddr: int | None = None
    mask: int | None = None

    def pack(self) -> bytearray:
        def sin(a: int | None) -> bytes:
            return SockaddrIn(a).pack() if a is not None else bytes(16)

        return bytearray(pack_name(self.name) + sin(self.addr) + sin(self.dstaddr) + sin(self.mask))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> InAliasreq:
        b = bytes(raw[:IN_ALIASREQ_SIZE])

        def sin(off: int) -> int | None:
            if b[off + 1] != AF_INET and b[off] == 0:
                return None
            return int(struct.unpack_from("!I", b, off + 4)[0])

        return cls(unpack_name(b), sin(IFNAMSIZ) or 0, sin(IFNAMSIZ + 16), sin(IFNAMSIZ + 32))


def _ifa(ifp: Ifnet, addr: int) -> IfAddr:
    for ifa in ifp.addrs:
        if ifa.addr == addr:
            return ifa
    raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")


def _aifaddr(k: NetKernel, data: bytearray) -> None:
    """Add or change an address (an alias: ifconfig removes the old primary first when
    it replaces it); a mask that is not contiguous is EINVAL."""
    req = InAliasreq.unpack(data)
    ifp = ifp_of(k, data)
    plen = classful_plen(req.addr) if req.mask is None else mask_to_plen(req.mask)
    netinet(k).add_address(ifp, req.addr, plen, req.dstaddr, alias=True)


def _difaddr(k: NetKernel, data: bytearray) -> None:
    ifp = ifp_of(k, data)
    sa = Ifreq.unpack(data).addr
    if not isinstance(sa, SockaddrIn):
        raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")
    netinet(k).delete_address(ifp, sa.addr)


def _first(k: NetKernel, data: bytearray) -> IfAddr:
    ifp = ifp_of(k, data)
    if not ifp.addrs:
        raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")
    return ifp.addrs[0]


def _gifaddr(k: NetKernel, data: bytearray) -> None:
    ifa = _first(k, data)
    data[:IFREQ_SIZE] = Ifreq.with_addr(ifa.ifp.name, SockaddrIn(ifa.addr)).pack()


def _gifnetmask(k: NetKernel, data: bytearray) -> None:
    ifa = _first(k, data)
    data[:IFREQ_SIZE] = Ifreq.with_addr(ifa.ifp.name, SockaddrIn(ifa.mask)).pack()


def _gifalias(k: NetKernel, data: bytearray) -> None:
    req = InAliasreq.unpack(data)
    ifa = _ifa(ifp_of(k, data), req.addr)
    # in_control: a point-to-point interface's address has a destination, others a broadcast.
    other = (ifa.dstaddr if ifa.ifp.flags & IFF_POINTOPOINT else ifa.broadaddr) or None
    data[:IN_ALIASREQ_SIZE] = InAliasreq(req.name, ifa.addr, other, ifa.mask).pack()


# netinet's requests (in_control's switch), registered with its domain.
IN_REQUESTS: dict[int, IoctlHandler] = {
    SIOCAIFADDR: _aifaddr, SIOCDIFADDR: _difaddr, SIOCGIFADDR: _gifaddr,
    SIOCGIFNETMASK: _gifnetmask, SIOCGIFALIAS: _gifalias,
}


def in_ifconf_addrs(ifp: Ifnet) -> list[bytes]:
    """The AF_INET sockaddrs of ``ifp``'s addresses, in order, for SIOCGIFCONF."""
    return [SockaddrIn(ifa.addr).pack() for ifa in ifp.addrs]
