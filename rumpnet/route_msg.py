"""Routing socket messages in NetBSD's binary layout (``net/route.h``, ``net/if.h``, amd64).

A message is a fixed header (``struct rt_msghdr``, ``if_msghdr`` or ``ifa_msghdr``)
followed by the sockaddrs its ``*_addrs`` bitmask names, in ``RTAX_*`` order, each padded
with ``RT_ROUNDUP`` to ``sizeof(long)``. The sockaddrs are BSD ones: a length byte, then
the family (NetBSD's numbers: AF_INET 2, AF_LINK 18, AF_INET6 24).

Both the kernel side (``rumpnet.rtsock``) and the userland commands (route, arp, ndp) build
and parse messages with these dataclasses: ``encode()`` gives the bytes, ``decode_msg`` and
``iter_msgs`` give them back.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field

from rumpkern.errno import kerr

# Address families as NetBSD numbers them (sys/socket.h).
AF_UNSPEC = 0
AF_INET = 2
AF_LINK = 18
AF_INET6 = 24
AF_ROUTE = 34
PF_ROUTE = AF_ROUTE

RTM_VERSION = 4  # NetBSD's, since rt_metrics became 64-bit

# Message types (net/route.h).
RTM_ADD = 0x1
RTM_DELETE = 0x2
RTM_CHANGE = 0x3
RTM_GET = 0x4
RTM_LOSING = 0x5
RTM_REDIRECT = 0x6
RTM_MISS = 0x7
RTM_LOCK = 0x8
RTM_RESOLVE = 0xB
RTM_IFANNOUNCE = 0x10
RTM_IFINFO = 0x14
RTM_NEWADDR = 0x16
RTM_DELADDR = 0x17
RTM_CHGADDR = 0x18

RTM_NAMES = {RTM_ADD: "RTM_ADD", RTM_DELETE: "RTM_DELETE", RTM_CHANGE: "RTM_CHANGE", RTM_GET: "RTM_GET",
             RTM_LOSING: "RTM_LOSING", RTM_REDIRECT: "RTM_REDIRECT", RTM_MISS: "RTM_MISS",
             RTM_LOCK: "RTM_LOCK", RTM_RESOLVE: "RTM_RESOLVE", RTM_IFANNOUNCE: "RTM_IFANNOUNCE",
             RTM_IFINFO: "RTM_IFINFO", RTM_NEWADDR: "RTM_NEWADDR", RTM_DELADDR: "RTM_DELADDR",
             RTM_CHGADDR: "RTM_CHGADDR"}

# Which sockaddrs follow the header (rtm_addrs bits), in this order (RTAX_*).
RTA_DST = 0x1
RTA_GATEWAY = 0x2
RTA_NETMASK = 0x4
RTA_GENMASK = 0x8
RTA_IFP = 0x10
RTA_IFA = 0x20
RTA_AUTHOR = 0x40
RTA_BRD = 0x80
RTA_TAG = 0x100
RTAX_MAX = 9

# sysctl net.route (CTL_NET, PF_ROUTE, 0, af, op, arg): the ops (sys/socket.h).
CTL_NET = 4
NET_RT_DUMP = 1
NET_RT_FLAGS = 2
NET_RT_IFLIST = 6

# On an inet6 LLINFO entry of a dump, RTF_PROTO1 marks a router (and rtm_use carries the
# ND state): where NetBSD's ndp asks SIOCGNBRINFO_IN6, this kernel's dump says it.
RTF_LLINFO_ROUTER = 0x8000

# Metrics in rtm_inits/rmx_locks.
RTV_MTU = 0x1
RTV_EXPIRE = 0x4

SOCKADDR_IN_LEN = 16
SOCKADDR_IN6_LEN = 28
SOCKADDR_DL_LEN = 32  # sizeof(struct sockaddr_dl): sdl_data[24]
IFT_ETHER = 0x6
IFT_LOOP = 0x18
LONG = 8


def rt_roundup(n: int) -> int:
    """NetBSD's RT_ROUNDUP: a sockaddr's room, a multiple of sizeof(long), at least one."""
    return 1 + ((n - 1) | (LONG - 1)) if n > 0 else LONG


# -- sockaddrs ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SockaddrIn:
    """``struct sockaddr_in``; ``addr`` as an int. A netmask is one too (``sin_len`` may be
    cut short after its last non-zero byte, as route(8) writes masks)."""

    addr: int
    port: int = 0
    family: int = AF_INET

    def encode(self) -> bytes:
        return struct.pack("!BBHI8x", SOCKADDR_IN_LEN, self.family, self.port, self.addr)


@dataclass(frozen=True)
class SockaddrIn6:
    """``struct sockaddr_in6``; ``scope_id`` is the zone (an interface index) of a scoped
    address (RFC 4007 11)."""

    addr: int
    scope_id: int = 0
    port: int = 0
    flowinfo: int = 0
    family: int = AF_INET6

    def encode(self) -> bytes:
        return (struct.pack("!BBHI", SOCKADDR_IN6_LEN, self.family, self.port, self.flowinfo)
                + self.addr.to_bytes(16, "big") + struct.pack("<I", self.scope_id))


@dataclass(frozen=True)
class SockaddrDl:
    """``struct sockaddr_dl``: an interface (index, name) and its link-layer address. A
    gateway with neither name nor address is printed ``link#INDEX`` by netstat."""

    index: int = 0
    name: str = ""
    lladdr: bytes = b""
    if_type: int = 0

    def encode(self) -> bytes:
        name = self.name.encode()
        data = name + self.lladdr
        size = max(SOCKADDR_DL_LEN, 8 + len(data))
        return struct.pack("<BBHBBBB", size, AF_LINK, self.index, self.if_type, len(name), len(self.lladdr), 0) \
            + data.ljust(size - 8, b"\0")


Sockaddr = SockaddrIn | SockaddrIn6 | SockaddrDl


def _decode_in(raw: bytes) -> SockaddrIn:
    raw = raw.ljust(SOCKADDR_IN_LEN, b"\0")
    port, addr = struct.unpack_from("!HI", raw, 2)
    return SockaddrIn(addr, port)


def _decode_in6(raw: bytes) -> SockaddrIn6:
    raw = raw.ljust(SOCKADDR_IN6_LEN, b"\0")
    port, flowinfo = struct.unpack_from("!HI", raw, 2)
    return SockaddrIn6(int.from_bytes(raw[8:24], "big"), struct.unpack_from("<I", raw, 24)[0], port, flowinfo)


def _decode_dl(raw: bytes) -> SockaddrDl:
    if len(raw) < 8:
        raise kerr(errno.EINVAL, "sockaddr_dl shorter than its header")
    index, if_type, nlen, alen = struct.unpack_from("<HBBB", raw, 2)
    if 8 + nlen + alen > len(raw):
        raise kerr(errno.EINVAL, "sockaddr_dl name and address overrun its length")
    return SockaddrDl(index, raw[8:8 + nlen].decode(errors="replace"), bytes(raw[8 + nlen:8 + nlen + alen]), if_type)


def decode_sockaddr(raw: bytes, family_hint: int = AF_UNSPEC) -> Sockaddr:
    """One sockaddr (``raw`` cut to its ``sa_len``). A netmask of family 0 or a trimmed
    one takes the destination's family (``family_hint``), as NetBSD's rt_xaddrs allows."""
    family = raw[1] if len(raw) > 1 else AF_UNSPEC
    family = family or family_hint
    if family == AF_INET:
        return _decode_in(raw)
    if family == AF_INET6:
        return _decode_in6(raw)
    if family == AF_LINK:
        return _decode_dl(raw)
    raise kerr(errno.EAFNOSUPPORT, f"sockaddr family {family}")


def encode_addrs(addrs: dict[int, Sockaddr]) -> tuple[int, bytes]:
    """The ``*_addrs`` bitmask and the padded sockaddrs, in RTAX order."""
    mask = 0
    out = bytearray()
    for bit in sorted(addrs):
        mask |= bit
        raw = addrs[bit].encode()
        out += raw.ljust(rt_roundup(len(raw)), b"\0")
    return mask, bytes(out)


def decode_addrs(mask: int, buf: bytes | memoryview) -> dict[int, Sockaddr]:
    """The sockaddrs ``mask`` names, from ``buf`` (EINVAL when they overrun it)."""
    addrs: dict[int, Sockaddr] = {}
    off = 0
    hint = AF_UNSPEC
    for i in range(RTAX_MAX):
        bit = 1 << i
        if not mask & bit:
            continue
        if off >= len(buf):
            raise kerr(errno.EINVAL, "rtm_addrs names more sockaddrs than the message holds")
        sa_len = buf[off]
        if off + sa_len > len(buf):
            raise kerr(errno.EINVAL, "a sockaddr overruns the message")
        sa = decode_sockaddr(bytes(buf[off:off + sa_len]), hint)
        if bit == RTA_DST and not isinstance(sa, SockaddrDl):
            hint = AF_INET if isinstance(sa, SockaddrIn) else AF_INET6
        addrs[bit] = sa
        off += rt_roundup(sa_len)
    return addrs


# -- messages -------------------------------------------------------------------------------

# struct rt_metrics: 8 x uint64_t, then rmx_expire and rmx_pksent (time_t).
_RMX = struct.Struct("<8Qqq")
# struct rt_msghdr: msglen version type index (pad) flags addrs pid seq errno use inits (pad), rmx
_RTM = struct.Struct("<HBBH2xiiiiiii4x")
RTM_HDRLEN = _RTM.size + _RMX.size  # 120
# struct if_msghdr: msglen version type addrs flags index (pad), struct if_data
_IFM = struct.Struct("<HBBiiH2x")
_IFDATA = struct.Struct("<BBBxi3Q11Qqq")
IFM_HDRLEN = _IFM.size + _IFDATA.size  # 152
# struct ifa_msghdr: msglen version type index (pad) flags addrs pid addrflags metric (pad)
_IFAM = struct.Struct("<HBBH2xiiiii4x")
IFAM_HDRLEN = _IFAM.size  # 32


@dataclass
class RtMetrics:
    """``struct rt_metrics``. ``rmx_expire`` is the seconds left (negative: already
    expired; 0: never), where NetBSD gives the wall-clock time of expiry."""

    rmx_locks: int = 0
    rmx_mtu: int = 0
    rmx_hopcount: int = 0
    rmx_recvpipe: int = 0
    rmx_sendpipe: int = 0
    rmx_ssthresh: int = 0
    rmx_rtt: int = 0
    rmx_rttvar: int = 0
    rmx_expire: int = 0
    rmx_pksent: int = 0


@dataclass
class RtMsghdr:
    """``struct rt_msghdr`` and its sockaddrs (``addrs``: RTA_* bit -> sockaddr)."""

    rtm_type: int
    rtm_flags: int = 0
    rtm_index: int = 0
    rtm_pid: int = 0
    rtm_seq: int = 0
    rtm_errno: int = 0
    rtm_use: int = 0
    rtm_inits: int = 0
    rtm_rmx: RtMetrics = field(default_factory=RtMetrics)
    addrs: dict[int, Sockaddr] = field(default_factory=dict)
    rtm_version: int = RTM_VERSION

    def encode(self) -> bytes:
        mask, tail = encode_addrs(self.addrs)
        m = self.rtm_rmx
        rmx = _RMX.pack(m.rmx_locks, m.rmx_mtu, m.rmx_hopcount, m.rmx_recvpipe, m.rmx_sendpipe,
                        m.rmx_ssthresh, m.rmx_rtt, m.rmx_rttvar, m.rmx_expire, m.rmx_pksent)
        head = _RTM.pack(RTM_HDRLEN + len(tail), self.rtm_version, self.rtm_type, self.rtm_index,
                         self.rtm_flags, mask, self.rtm_pid, self.rtm_seq, self.rtm_errno, self.rtm_use,
                         self.rtm_inits)
        return head + rmx + tail


@dataclass
class IfData:
    """The part of ``struct if_data`` this kernel fills (counters stay 0)."""

    ifi_type: int = 0
    ifi_addrlen: int = 0
    ifi_hdrlen: int = 0
    ifi_link_state: int = 0
    ifi_mtu: int = 0
    ifi_metric: int = 0
    ifi_baudrate: int = 0


@dataclass
class IfMsghdr:
    """``struct if_msghdr`` (RTM_IFINFO): an interface's flags; in a NET_RT_IFLIST dump
    its sockaddr_dl (name and link address) follows as RTA_IFP."""

    ifm_type: int
    ifm_flags: int = 0
    ifm_index: int = 0
    ifm_data: IfData = field(default_factory=IfData)
    addrs: dict[int, Sockaddr] = field(default_factory=dict)
    ifm_version: int = RTM_VERSION

    def encode(self) -> bytes:
        mask, tail = encode_addrs(self.addrs)
        d = self.ifm_data
        data = _IFDATA.pack(d.ifi_type, d.ifi_addrlen, d.ifi_hdrlen, d.ifi_link_state, d.ifi_mtu, d.ifi_metric,
                            d.ifi_baudrate, *([0] * 11), 0, 0)
        return _IFM.pack(IFM_HDRLEN + len(tail), self.ifm_version, self.ifm_type, mask, self.ifm_flags,
                         self.ifm_index) + data + tail


@dataclass
class IfaMsghdr:
    """``struct ifa_msghdr`` (RTM_NEWADDR, RTM_DELADDR): an address (RTA_IFA), its
    netmask and interface (RTA_IFP)."""

    ifam_type: int
    ifam_index: int = 0
    ifam_flags: int = 0
    ifam_pid: int = 0
    ifam_addrflags: int = 0
    ifam_metric: int = 0
    addrs: dict[int, Sockaddr] = field(default_factory=dict)
    ifam_version: int = RTM_VERSION

    def encode(self) -> bytes:
        mask, tail = encode_addrs(self.addrs)
        return _IFAM.pack(IFAM_HDRLEN + len(tail), self.ifam_version, self.ifam_type, self.ifam_index,
                          self.ifam_flags, mask, self.ifam_pid, self.ifam_addrflags, self.ifam_metric) + tail


RouteMessage = RtMsghdr | IfMsghdr | IfaMsghdr
_IF_TYPES = (RTM_IFINFO,)
_IFA_TYPES = (RTM_NEWADDR, RTM_DELADDR, RTM_CHGADDR)


def _decode_rtm(buf: memoryview) -> RtMsghdr:
    (msglen, version, rtm_type, index, flags, mask, pid, seq, err, use, inits) = _RTM.unpack_from(buf)
    rmx = RtMetrics(*_RMX.unpack_from(buf, _RTM.size))
    return RtMsghdr(rtm_type, flags, index, pid, seq, err, use, inits, rmx,
                    decode_addrs(mask, buf[RTM_HDRLEN:msglen]), version)


def _decode_ifm(buf: memoryview) -> IfMsghdr:
    msglen, version, ifm_type, mask, flags, index = _IFM.unpack_from(buf)
    t, alen, hlen, link, mtu, metric, baud = _IFDATA.unpack_from(buf, _IFM.size)[:7]
    return IfMsghdr(ifm_type, flags, index, IfData(t, alen, hlen, link, mtu, metric, baud),
                    decode_addrs(mask, buf[IFM_HDRLEN:msglen]), version)


def _decode_ifam(buf: memoryview) -> IfaMsghdr:
    msglen, version, ifam_type, index, flags, mask, pid, addrflags, metric = _IFAM.unpack_from(buf)
    return IfaMsghdr(ifam_type, index, flags, pid, addrflags, metric, decode_addrs(mask, buf[IFAM_HDRLEN:msglen]),
                     version)


def decode_msg(data: bytes | memoryview, request: bool = False) -> RouteMessage:
    """One message; EINVAL for a short or inconsistent one, EPROTONOSUPPORT for another
    version (NetBSD's route_output answers these). A ``request`` (what a program writes)
    is always an rt_msghdr, whatever its type says."""
    buf = memoryview(data)
    if len(buf) < 4:
        raise kerr(errno.EINVAL, "routing message shorter than its header")
    msglen, version, mtype = struct.unpack_from("<HBB", buf)
    if msglen > len(buf) or msglen < 4:
        raise kerr(errno.EINVAL, f"rtm_msglen {msglen} does not match the {len(buf)} bytes written")
    if version != RTM_VERSION:
        raise kerr(errno.EPROTONOSUPPORT, f"rtm_version {version}, not {RTM_VERSION}")
    buf = buf[:msglen]
    if request:
        mtype = RTM_GET
    need = IFM_HDRLEN if mtype in _IF_TYPES else IFAM_HDRLEN if mtype in _IFA_TYPES else RTM_HDRLEN
    if msglen < need:
        raise kerr(errno.EINVAL, f"rtm_msglen {msglen} shorter than the {need}-byte header")
    if mtype in _IF_TYPES:
        return _decode_ifm(buf)
    if mtype in _IFA_TYPES:
        return _decode_ifam(buf)
    return _decode_rtm(buf)


def iter_msgs(buf: bytes | memoryview) -> Iterator[RouteMessage]:
    """Every message of a sysctl dump (back to back, each ``*_msglen`` long)."""
    view = memoryview(buf)
    off = 0
    while off + 4 <= len(view):
        msglen = struct.unpack_from("<H", view, off)[0]
        if msglen < 4:
            raise kerr(errno.EINVAL, "zero-length routing message in a dump")
        yield decode_msg(view[off:off + msglen])
        off += msglen


def netmask_of(sa: Sockaddr | None, bits: int) -> int | None:
    """The prefix length a netmask sockaddr stands for (None: none given)."""
    if sa is None:
        return None
    if isinstance(sa, SockaddrIn):
        mask = sa.addr
    elif isinstance(sa, SockaddrIn6):
        mask = sa.addr
    else:
        raise kerr(errno.EINVAL, "a netmask must be an inet or inet6 sockaddr")
    plen = bin(mask).count("1")
    if mask != ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1):
        raise kerr(errno.EINVAL, "non-contiguous netmask")
    return plen


def mask_sockaddr(family: int, plen: int) -> Sockaddr:
    """A netmask as a sockaddr of ``family`` (AF_INET or AF_INET6)."""
    bits = 32 if family == AF_INET else 128
    mask = ((1 << bits) - 1) ^ ((1 << (bits - plen)) - 1)
    return SockaddrIn(mask) if family == AF_INET else SockaddrIn6(mask)
