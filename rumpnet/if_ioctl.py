"""Socket ioctls on interfaces as bytes: NetBSD's request numbers and ``net/if.h`` structs.

The request numbers are NetBSD's for amd64 (``sys/ioccom.h``: direction, parameter length,
group and number in one word), so ``SIOCGIFFLAGS`` is ``0xc0906911`` here as there. Each
struct is a dataclass with ``pack()`` to the C layout and ``unpack(bytes)`` from it
(``struct ifreq`` is 144 bytes: a 16-byte name and a 128-byte union).

Python has no pointers, so a struct whose C form points at a buffer (``struct ifconf``'s
``ifc_buf``, ``struct ifdrv``'s ``ifd_data``, ``struct if_clonereq``'s ``ifcr_buffer``)
carries the buffer right after the struct in the same ``bytearray``; the pointer field is
zero and ignored. The kernel writes its answer into the caller's ``bytearray`` in place,
as ``fcntl.ioctl`` with a mutable buffer does (and rumpclient copies it back).

Addresses inside these structs are NetBSD sockaddrs (``sa_len`` first, NetBSD's family
numbers: AF_INET 2, AF_LINK 18, AF_INET6 24), not the host's.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

IOCPARM_MASK = 0x1FFF
IOC_OUT = 0x40000000     # the kernel copies the struct out
IOC_IN = 0x80000000      # the kernel copies the struct in
IOC_INOUT = IOC_IN | IOC_OUT


def _ioc(inout: int, group: str, num: int, size: int) -> int:
    return inout | ((size & IOCPARM_MASK) << 16) | (ord(group) << 8) | num


def iow(group: str, num: int, size: int) -> int:
    """``_IOW(group, num, type)`` with ``sizeof(type) == size``."""
    return _ioc(IOC_IN, group, num, size)


def iowr(group: str, num: int, size: int) -> int:
    """``_IOWR(group, num, type)``."""
    return _ioc(IOC_INOUT, group, num, size)


def iocparm_len(request: int) -> int:
    return (request >> 16) & IOCPARM_MASK


def iocgroup(request: int) -> str:
    return chr((request >> 8) & 0xFF)


# NetBSD's address family numbers (sys/socket.h), as they appear inside the structs.
AF_INET = 2
AF_LINK = 18
AF_INET6 = 24
IFNAMSIZ = 16
IFT_ETHER = 0x06         # net/if_types.h
IFT_LOOP = 0x18

IFREQ_SIZE = 144         # char ifr_name[16] + union (struct sockaddr_storage: 128)
IFDATA_SIZE = 136        # struct if_data
IFDATAREQ_SIZE = IFNAMSIZ + IFDATA_SIZE
IFMEDIAREQ_SIZE = 48
IFDRV_SIZE = 40
IFCONF_SIZE = 16
IFCLONEREQ_SIZE = 16
IFCAPREQ_SIZE = 32
IF_LADDRREQ_SIZE = 280

# sys/sockio.h (NetBSD), generic interface requests.
SIOCSIFFLAGS = iow("i", 16, IFREQ_SIZE)
SIOCGIFFLAGS = iowr("i", 17, IFREQ_SIZE)
SIOCALIFADDR = iow("i", 28, IF_LADDRREQ_SIZE)
SIOCGIFCONF = iowr("i", 38, IFCONF_SIZE)
SIOCSIFMEDIA = iowr("i", 53, IFREQ_SIZE)
SIOCGIFMEDIA = iowr("i", 54, IFMEDIAREQ_SIZE)
SIOCSIFCAP = iow("i", 117, IFCAPREQ_SIZE)
SIOCGIFCAP = iowr("i", 118, IFCAPREQ_SIZE)
SIOCIFDESTROY = iow("i", 121, IFREQ_SIZE)
SIOCIFCREATE = iow("i", 122, IFREQ_SIZE)
SIOCGIFMTU = iowr("i", 126, IFREQ_SIZE)
SIOCSIFMTU = iow("i", 127, IFREQ_SIZE)
SIOCIFGCLONERS = iowr("i", 120, IFCLONEREQ_SIZE)
SIOCGIFDATA = iowr("i", 133, IFDATAREQ_SIZE)
SIOCGLINKSTR = iowr("i", 135, IFDRV_SIZE)
SIOCSLINKSTR = iow("i", 136, IFDRV_SIZE)

IFLINKSTR_QUERYLEN = 0x01   # ifd_cmd of SIOCGLINKSTR: only say how long it is
IFLINKSTR_UNSET = 0x02      # ifd_cmd of SIOCSLINKSTR: remove the linkstr (-linkstr)
IFLR_ACTIVE = 0x8000        # if_laddrreq flags: make the new link address the active one

# net/if_media.h: the Ethernet media words rumpnet's interfaces have.
IFM_ETHER = 0x20
IFM_AUTO = 0
IFM_NONE = 2
IFM_AVALID = 0x1
IFM_ACTIVE = 0x2


def pack_name(name: str) -> bytes:
    raw = name.encode()
    if len(raw) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} longer than {IFNAMSIZ - 1} bytes")
    return raw.ljust(IFNAMSIZ, b"\0")


def unpack_name(raw: bytes | bytearray | memoryview) -> str:
    return bytes(raw[:IFNAMSIZ]).split(b"\0", 1)[0].decode(errors="replace")


# -- sockaddrs ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SockaddrIn:
    """``struct sockaddr_in`` (16 bytes); ``addr`` as an int in host order."""

    addr: int
    port: int = 0

    def pack(self) -> bytes:
        return struct.pack("!BBHI8x", 16, AF_INET, self.port, self.addr)


@dataclass(frozen=True)
class SockaddrIn6:
    """``struct sockaddr_in6`` (28 bytes)."""

    addr: int
    port: int = 0
    flowinfo: int = 0
    scope_id: int = 0

    def pack(self) -> bytes:
        return (struct.pack("!BBHI", 28, AF_INET6, self.port, self.flowinfo) + self.addr.to_bytes(16, "big")
                + struct.pack("=I", self.scope_id))


@dataclass(frozen=True)
class SockaddrDl:
    """``struct sockaddr_dl``: interface index, type, name and link-level address."""

    index: int
    type: int
    name: str = ""
    lladdr: bytes = b""

    def pack(self) -> bytes:
        nm = self.name.encode()
        body = nm + self.lladdr
        data = body.ljust(12, b"\0")
        return struct.pack("=BBHBBBB", 8 + len(data), AF_LINK, self.index, self.type, len(nm), len(self.lladdr), 0) + data


Sockaddr = SockaddrIn | SockaddrIn6 | SockaddrDl


def unpack_sockaddr(raw: bytes | bytearray | memoryview) -> Sockaddr | None:
    """The sockaddr at the start of ``raw`` (None for family 0 or one not known here)."""
    b = bytes(raw)
    if len(b) < 2:
        return None
    family = b[1]
    if family == AF_INET and len(b) >= 16:
        port, addr = struct.unpack_from("!HI", b, 2)
        return SockaddrIn(addr, port)
    if family == AF_INET6 and len(b) >= 28:
        port, flowinfo = struct.unpack_from("!HI", b, 2)
        (scope_id,) = struct.unpack_from("=I", b, 24)
        return SockaddrIn6(int.from_bytes(b[8:24], "big"), port, flowinfo, scope_id)
    if family == AF_LINK and len(b) >= 8:
        index, typ, nlen, alen = struct.unpack_from("=HBBB", b, 2)
        data = b[8: 8 + nlen + alen]
        return SockaddrDl(index, typ, data[:nlen].decode(errors="replace"), data[nlen:])
    return None


# -- struct ifreq and friends -------------------------------------------------------------------
@dataclass
class Ifreq:
    """``struct ifreq``: a name and a 128-byte union read as flags, an int or a sockaddr."""

    name: str
    ifru: bytes = bytes(IFREQ_SIZE - IFNAMSIZ)

    def __post_init__(self) -> None:
        self.ifru = bytes(self.ifru).ljust(IFREQ_SIZE - IFNAMSIZ, b"\0")[: IFREQ_SIZE - IFNAMSIZ]

    def pack(self) -> bytearray:
        return bytearray(pack_name(self.name) + self.ifru)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> Ifreq:
        return cls(unpack_name(raw), bytes(raw[IFNAMSIZ:IFREQ_SIZE]))

    @classmethod
    def with_short(cls, name: str, value: int) -> Ifreq:
        return cls(name, struct.pack("=H", value & 0xFFFF))

    @classmethod
    def with_int(cls, name: str, value: int) -> Ifreq:
        return cls(name, struct.pack("=i", value))

    @classmethod
    def with_addr(cls, name: str, sa: Sockaddr) -> Ifreq:
        return cls(name, sa.pack())

    @property
    def flags(self) -> int:
        """``ifr_flags`` (a short: the low 16 IFF_* bits)."""
        return int(struct.unpack_from("=H", self.ifru)[0])

    @property
    def value(self) -> int:
        """``ifr_mtu`` / ``ifr_media`` / ``ifr_metric`` (an int)."""
        return int(struct.unpack_from("=i", self.ifru)[0])

    @property
    def addr(self) -> Sockaddr | None:
        return unpack_sockaddr(self.ifru)


@dataclass
class IfData:
    """``struct if_data`` (136 bytes)."""

    type: int = 0
    addrlen: int = 0
    hdrlen: int = 0
    link_state: int = 0
    mtu: int = 0
    metric: int = 0
    baudrate: int = 0
    ipackets: int = 0
    ierrors: int = 0
    opackets: int = 0
    oerrors: int = 0
    collisions: int = 0
    ibytes: int = 0
    obytes: int = 0
    imcasts: int = 0
    omcasts: int = 0
    iqdrops: int = 0
    noproto: int = 0
    lastchange_sec: int = 0
    lastchange_nsec: int = 0

    _FMT = struct.Struct("=BBBxi14Qqq")
    _COUNTERS = ("mtu", "metric", "baudrate", "ipackets", "ierrors", "opackets", "oerrors", "collisions",
                 "ibytes", "obytes", "imcasts", "omcasts", "iqdrops", "noproto")

    def pack(self) -> bytes:
        return self._FMT.pack(self.type, self.addrlen, self.hdrlen, self.link_state,
                              *(getattr(self, n) for n in self._COUNTERS), self.lastchange_sec, self.lastchange_nsec)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfData:
        v = cls._FMT.unpack_from(bytes(raw))
        d = cls(v[0], v[1], v[2], v[3])
        for name, x in zip(cls._COUNTERS, v[4:18], strict=True):
            setattr(d, name, x)
        d.lastchange_sec, d.lastchange_nsec = v[18], v[19]
        return d


@dataclass
class IfDatareq:
    """``struct ifdatareq``: SIOCGIFDATA."""

    name: str
    data: IfData = field(default_factory=IfData)

    def pack(self) -> bytearray:
        return bytearray(pack_name(self.name) + self.data.pack())

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfDatareq:
        return cls(unpack_name(raw), IfData.unpack(bytes(raw[IFNAMSIZ:IFDATAREQ_SIZE])))


@dataclass
class IfMediareq:
    """``struct ifmediareq``: SIOCGIFMEDIA (the ``ifm_ulist`` pointer is not used)."""

    name: str
    current: int = 0
    mask: int = 0
    status: int = 0
    active: int = 0
    count: int = 0

    _FMT = struct.Struct("=16s5i4xQ")

    def pack(self) -> bytearray:
        return bytearray(self._FMT.pack(pack_name(self.name), self.current, self.mask, self.status, self.active,
                                        self.count, 0))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfMediareq:
        _, cur, mask, status, active, count, _ptr = cls._FMT.unpack_from(bytes(raw))
        return cls(unpack_name(raw), cur, mask, status, active, count)


@dataclass
class IfDrv:
    """``struct ifdrv`` (SIOCGLINKSTR/SIOCSLINKSTR) with its ``ifd_len`` bytes of data
    following the struct instead of behind ``ifd_data``."""

    name: str
    cmd: int = 0
    length: int = 0
    data: bytes = b""

    _FMT = struct.Struct("=16sQQQ")

    def pack(self) -> bytearray:
        return bytearray(self._FMT.pack(pack_name(self.name), self.cmd, self.length, 0) + self.data)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfDrv:
        _, cmd, length, _ptr = cls._FMT.unpack_from(bytes(raw))
        return cls(unpack_name(raw), cmd, length, bytes(raw[IFDRV_SIZE: IFDRV_SIZE + length]))


@dataclass
class IfCapreq:
    """``struct ifcapreq``: SIOCGIFCAP / SIOCSIFCAP."""

    name: str
    capabilities: int = 0
    capenable: int = 0

    def pack(self) -> bytearray:
        return bytearray(struct.pack("=16sQQ", pack_name(self.name), self.capabilities, self.capenable))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfCapreq:
        _, caps, enabled = struct.unpack_from("=16sQQ", bytes(raw))
        return cls(unpack_name(raw), caps, enabled)


@dataclass
class IfConf:
    """``struct ifconf`` (SIOCGIFCONF): ``ifc_len`` bytes of ``struct ifreq`` entries
    follow the struct. Ask with ``IfConf.request(n)`` (room for ``n`` entries)."""

    length: int = 0
    entries: list[Ifreq] = field(default_factory=list)

    @staticmethod
    def request(n: int) -> bytearray:
        return bytearray(struct.pack("=i4xQ", n * IFREQ_SIZE, 0)) + bytearray(n * IFREQ_SIZE)

    def pack(self) -> bytearray:
        body = b"".join(bytes(e.pack()) for e in self.entries)
        return bytearray(struct.pack("=i4xQ", len(body), 0) + body)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfConf:
        (length,) = struct.unpack_from("=i", bytes(raw[:4]))
        body = bytes(raw[IFCONF_SIZE: IFCONF_SIZE + length])
        return cls(length, [Ifreq.unpack(body[i: i + IFREQ_SIZE]) for i in range(0, len(body), IFREQ_SIZE)])


@dataclass
class IfCloneReq:
    """``struct if_clonereq`` (SIOCIFGCLONERS): ``count`` names of IFNAMSIZ bytes follow."""

    total: int = 0
    count: int = 0
    names: list[str] = field(default_factory=list)

    @staticmethod
    def request(n: int) -> bytearray:
        return bytearray(struct.pack("=iiQ", 0, n, 0)) + bytearray(n * IFNAMSIZ)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfCloneReq:
        total, count, _ = struct.unpack_from("=iiQ", bytes(raw))
        body = bytes(raw[IFCLONEREQ_SIZE:])
        n = min(total, count, len(body) // IFNAMSIZ)
        return cls(total, count, [unpack_name(body[i * IFNAMSIZ:]) for i in range(n)])


@dataclass
class IfLaddrreq:
    """``struct if_laddrreq`` (SIOCALIFADDR): a link-level address for the interface."""

    name: str
    flags: int = 0
    prefixlen: int = 0
    addr: SockaddrDl | None = None

    def pack(self) -> bytearray:
        sa = self.addr.pack() if self.addr is not None else b""
        return bytearray(struct.pack("=16sII", pack_name(self.name), self.flags, self.prefixlen)
                         + sa.ljust(128, b"\0") + bytes(128))

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> IfLaddrreq:
        _, flags, plen = struct.unpack_from("=16sII", bytes(raw))
        sa = unpack_sockaddr(bytes(raw[24:152]))
        return cls(unpack_name(raw), flags, plen, sa if isinstance(sa, SockaddrDl) else None)
