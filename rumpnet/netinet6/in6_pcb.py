"""IPv6 protocol control blocks (NetBSD's ``in6_pcb.c``, ``ip6_output.c``'s
``ip6_ctloutput``/``ip6_setmoptions``): what UDP and raw IPv6 sockets share.

:class:`In6Pcb` is mixed into a socket class: local and foreign address, port and zone;
binding and connecting (``in6_pcbbind``, ``in6_pcbconnect``), addresses in and out in
Python's 4-tuple form (``("fe80::1%wire0", 7, 0, 2)``: the zone as ``%name`` and as
``sin6_scope_id``), and the IPPROTO_IPV6 socket options: IPV6_V6ONLY (default from
``net.inet6.ip6.v6only``, 1 as NetBSD's), IPV6_UNICAST_HOPS, IPV6_MULTICAST_IF,
IPV6_MULTICAST_HOPS, IPV6_MULTICAST_LOOP, IPV6_JOIN_GROUP/IPV6_LEAVE_GROUP (MLD),
IPV6_TCLASS, IPV6_DONTFRAG, IPV6_RECVPKTINFO, IPV6_RECVHOPLIMIT, IPV6_RECVTCLASS and the
sticky IPV6_PKTINFO (RFC 3542); ``recvmsg`` gets IPV6_PKTINFO, IPV6_HOPLIMIT and
IPV6_TCLASS items for the options asked for, ``sendmsg`` takes the same three.

With IPV6_V6ONLY off a socket also speaks IPv4 through v4-mapped addresses
(``::ffff:10.0.0.1``, RFC 4291 2.5.5.2, RFC 3493 3.7): a :class:`Mapped4Pcb` stands for it
in the IPv4 protocol's table, so IPv4 input reaches it, port clashes with IPv4 sockets
are seen both ways, and datagrams it sends to a mapped address go out as IPv4.
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.net_kernel import netinet6
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_var import IN6_IFF_ANYCAST, IN6_IFF_DETACHED, IN6_IFF_NOTREADY
from rumpnet.netinet6.ip6 import IPV6_RTHDR_TYPE_0
from rumpnet.netinet6.ip6_output import Ip6Pktopts
from rumpnet.uipc_socket import Cmsg, DgramSocket

if TYPE_CHECKING:
    from rumpkern.sched import SyscallCtx
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain

IPPROTO_IPV6 = pysocket.IPPROTO_IPV6
IPV6_V6ONLY = pysocket.IPV6_V6ONLY
IPV6_UNICAST_HOPS = pysocket.IPV6_UNICAST_HOPS
IPV6_MULTICAST_IF = pysocket.IPV6_MULTICAST_IF
IPV6_MULTICAST_HOPS = pysocket.IPV6_MULTICAST_HOPS
IPV6_MULTICAST_LOOP = pysocket.IPV6_MULTICAST_LOOP
IPV6_JOIN_GROUP = pysocket.IPV6_JOIN_GROUP
IPV6_LEAVE_GROUP = pysocket.IPV6_LEAVE_GROUP
IPV6_RECVPKTINFO = pysocket.IPV6_RECVPKTINFO
IPV6_PKTINFO = pysocket.IPV6_PKTINFO
IPV6_RECVHOPLIMIT = pysocket.IPV6_RECVHOPLIMIT
IPV6_HOPLIMIT = pysocket.IPV6_HOPLIMIT
IPV6_RECVTCLASS = pysocket.IPV6_RECVTCLASS
IPV6_TCLASS = pysocket.IPV6_TCLASS
IPV6_DONTFRAG = pysocket.IPV6_DONTFRAG
IPV6_CHECKSUM = pysocket.IPV6_CHECKSUM
IPV6_NEXTHOP = getattr(pysocket, "IPV6_NEXTHOP", 9)
IPV6_RTHDR = getattr(pysocket, "IPV6_RTHDR", 57)

IPPORT_ANONMIN = 49152
IPPORT_ANONMAX = 65535
SO_REUSEPORT = getattr(pysocket, "SO_REUSEPORT", 15)
_PKTINFO = struct.Struct("=16sI")       # struct in6_pktinfo: address, interface index
_INT = struct.Struct("=i")

# Boolean options kept as flags on the pcb, and the RECV* ones that ask for ancillary data.
_RECV_FLAGS = {IPV6_RECVPKTINFO: "pktinfo", IPV6_RECVHOPLIMIT: "hoplimit", IPV6_RECVTCLASS: "tclass"}


def _int_opt(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 4:
        return int(_INT.unpack(value)[0])
    raise kerr(errno.EINVAL, "option value must be an int")


class Sockaddr6(tuple):  # type: ignore[type-arg]
    """A received datagram's source, ``(host, port, flowinfo, scope_id)``, carrying the
    ancillary data ``recvmsg`` returns with it (``control``)."""

    control: list[Cmsg]

    def __new__(cls, sa: tuple[str, int, int, int], control: list[Cmsg]) -> Sockaddr6:
        self = super().__new__(cls, sa)
        self.control = control
        return self


class Mapped4Pcb:
    """An IPv6 socket's stand-in in the IPv4 protocol's table (IPV6_V6ONLY off): the
    IPv4 side reads ``laddr``/``lport``/``faddr``/``fport``/``so_options`` and calls
    ``sbappend``/``ctlnotify``, as it does on its own sockets."""

    def __init__(self, so: In6Pcb, laddr: int, lport: int) -> None:
        self.so = so
        self.laddr = laddr
        self.lport = lport
        self.faddr = 0
        self.fport = 0

    @property
    def so_options(self) -> set[int]:
        return self.so.so_options

    def sbappend(self, data: bytes, src: tuple[str, int]) -> bool:
        return self.so.sbappend_mapped(data, src)

    def ctlnotify(self, kind: str) -> None:
        self.so.ctlnotify(kind)


class In6Pcb:
    """Mixed into an AF_INET6 socket class (see the module docstring)."""

    kernel: NetKernel
    so_options: set[int]
    so_type: int
    family = pysocket.AF_INET6

    def pcb_init(self, kernel: NetKernel) -> None:
        self.inet6: Inet6Domain = netinet6(kernel)
        self.laddr = 0
        self.lport = 0
        self.lzone = 0
        self.faddr = 0
        self.fport = 0
        self.fzone = 0
        self.flowinfo = 0
        self.v6only = bool(self.inet6.node.ip6_params.v6only)
        self.unicast_hops = -1
        self.mcast_hops = -1
        self.mcast_loop = 1
        self.mcast_ifindex = 0
        self.tclass = 0
        self.dontfrag = False
        self.recvopts: set[str] = set()
        self.sticky_pktinfo: tuple[int, int] | None = None
        self.nexthop: tuple[int, int] = (0, 0)
        self.rthdr = b""                    # sticky IPV6_RTHDR
        self.groups: list[tuple[int, int]] = []
        self.mapped: Mapped4Pcb | None = None

    # -- tables the subclass keeps ---------------------------------------------------------
    def pcb_table(self) -> dict[int, list[Any]]:
        raise NotImplementedError

    def pcb_table4(self) -> dict[int, list[Any]] | None:
        """The IPv4 protocol's table a v4-mapped stand-in goes into (None: no IPv4 side)."""
        return None

    # -- addresses -------------------------------------------------------------------------
    def ifindex_of(self, name: str) -> int:
        return self.kernel.ifnet.lookup(name).index

    def sockaddr(self, sa: Any) -> tuple[int, int, int, int]:
        """A Python AF_INET6 address checked: (addr, port, flowinfo, zone)."""
        addr, port, flowinfo, zone = scope6.sockaddr_in6(sa, self.ifindex_of)
        return addr, port, flowinfo, self.inet6.default_zone(addr, zone)

    def format(self, addr: int, port: int, zone: int, flowinfo: int = 0) -> tuple[str, int, int, int]:
        name_of = self.inet6.ifname
        return scope6.format_scoped(addr, zone, name_of), port, flowinfo, zone if scope6.shows_zone(addr, zone) else 0

    def getsockname(self) -> tuple[str, int, int, int]:
        if self.mapped is not None and self.laddr == 0 and self.mapped.laddr:
            return self.format(in6.v4mapped(self.mapped.laddr), self.lport, 0)
        return self.format(self.laddr, self.lport, self.lzone)

    def getpeername(self) -> tuple[str, int, int, int]:
        if not self.fport and self.faddr == 0:
            raise kerr(errno.ENOTCONN)
        return self.format(self.faddr, self.fport, self.fzone, self.flowinfo)

    # -- binding (in6_pcbbind) -------------------------------------------------------------
    def _check_local(self, addr: int, zone: int) -> None:
        """EADDRNOTAVAIL unless ``addr`` is unspecified, multicast or one of our usable
        unicast addresses (not tentative, duplicated, detached or anycast)."""
        if addr == 0 or in6.is_multicast(addr):
            return
        ia = self.inet6.node.ifaddrs.lookup(addr, zone)
        if ia is None or ia.flags & (IN6_IFF_NOTREADY | IN6_IFF_DETACHED | IN6_IFF_ANYCAST):
            raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")

    def _conflicts(self, table: dict[int, list[Any]], laddr: int, lport: int) -> bool:
        reuseport = SO_REUSEPORT in self.so_options
        reuseaddr = pysocket.SO_REUSEADDR in self.so_options
        for other in table.get(lport, ()):
            if other is self or other is self.mapped:
                continue
            same = other.laddr == laddr
            if not (same or other.laddr == 0 or laddr == 0):
                continue
            if reuseport and SO_REUSEPORT in other.so_options:
                continue
            if reuseaddr and not same:
                continue   # BSD: a specific address may share a port with a wildcard
            return True
        return False

    def pcb_bind(self, laddr: int, lport: int, zone: int = 0) -> None:
        if self.lport:
            raise kerr(errno.EINVAL)
        v4: int | None = None
        if in6.is_v4mapped(laddr):
            if self.v6only:
                raise kerr(errno.EINVAL, "a v4-mapped address on an IPV6_V6ONLY socket")
            v4 = in6.v4_of_mapped(laddr)
            if v4 and v4 not in self._inet4_locals():
                raise kerr(errno.EADDRNOTAVAIL, "Can't assign requested address")
        else:
            self._check_local(laddr, zone)
            if laddr == 0 and not self.v6only and self.pcb_table4() is not None:
                v4 = 0     # the wildcard of a dual-stack socket claims IPv4's too
        mapped_only = v4 is not None and laddr != 0
        if lport == 0:
            lport = self._ephemeral(laddr, v4, mapped_only)
        elif (not mapped_only and self._conflicts(self.pcb_table(), laddr, lport)) or self._v4_clash(v4, lport):
            raise kerr(errno.EADDRINUSE, "Address already in use")
        self.lport = lport
        if mapped_only:
            self.laddr = 0
        else:
            self.laddr, self.lzone = laddr, scope6.zone_of(laddr, zone) if zone else 0
            self.pcb_table().setdefault(lport, []).append(self)
        if v4 is not None:
            self.mapped = Mapped4Pcb(self, v4, lport)
            t4 = self.pcb_table4()
            assert t4 is not None
            t4.setdefault(lport, []).append(self.mapped)

    def _v4_clash(self, v4: int | None, lport: int) -> bool:
        t4 = self.pcb_table4()
        return v4 is not None and t4 is not None and self._conflicts(t4, v4, lport)

    def _inet4_locals(self) -> dict[int, Any]:
        inet = self.kernel.inet
        return inet.local_addrs if inet is not None else {}

    def _ephemeral(self, laddr: int, v4: int | None, mapped_only: bool) -> int:
        rng = self.kernel.rng
        span = IPPORT_ANONMAX - IPPORT_ANONMIN + 1
        start = rng.randrange(span)
        for i in range(span):
            cand = IPPORT_ANONMIN + (start + i) % span
            if (mapped_only or not self._conflicts(self.pcb_table(), laddr, cand)) and not self._v4_clash(v4, cand):
                return cand
        raise kerr(errno.EAGAIN)

    def pcb_unbind(self) -> None:
        for table, pcb in ((self.pcb_table(), self), (self.pcb_table4(), self.mapped)):
            if table is None or pcb is None or not self.lport:
                continue
            lst = table.get(self.lport)
            if lst is not None and pcb in lst:
                lst.remove(pcb)
                if not lst:
                    del table[self.lport]

    def bind(self, addr: Any) -> None:
        laddr, lport, _, zone = self.sockaddr(addr)
        self.pcb_bind(laddr, lport, zone)

    # -- connecting (in6_pcbconnect) ---------------------------------------------------------
    def pcb_connect(self, faddr: int, fport: int, zone: int, flowinfo: int = 0) -> None:
        if in6.is_v4mapped(faddr):
            self._connect_mapped(faddr, fport)
            return
        if self.mapped is not None and self.mapped.laddr:
            raise kerr(errno.EINVAL, "bound to an IPv4 address")
        if faddr == 0:
            faddr = in6.IN6ADDR_LOOPBACK     # connect to :: means ourselves (in6_pcbconnect)
            zone = self.inet6.lo0_zone()
        if self.laddr == 0:
            src, _ = self.inet6.node.ip6_output.source_for(faddr, zone, self.pktopts(faddr))
        else:
            src = self.laddr
        if not self.lport:
            self.pcb_bind(0, 0)
        self.laddr = src
        self.lzone = scope6.zone_of(src, zone) if zone else self.lzone
        self.faddr, self.fport, self.fzone, self.flowinfo = faddr, fport, zone, flowinfo

    def _connect_mapped(self, faddr: int, fport: int) -> None:
        if self.v6only:
            raise kerr(errno.EINVAL, "a v4-mapped address on an IPV6_V6ONLY socket")
        inet = self.kernel.inet
        if inet is None:
            raise kerr(errno.ENETUNREACH)
        dst4 = in6.v4_of_mapped(faddr)
        if not self.lport:
            self.pcb_bind(0, 0)
        if self.mapped is None:
            raise kerr(errno.EINVAL)
        if not self.mapped.laddr:
            self.mapped.laddr = inet.output.source_for(dst4)
        self.mapped.faddr, self.mapped.fport = dst4, fport
        self.faddr, self.fport = faddr, fport

    def sbappend_mapped(self, data: bytes, src: tuple[str, int]) -> bool:
        """An IPv4 datagram for this socket: its source as a v4-mapped address."""
        return self.deliver(data, self.format(in6.pton("::ffff:" + src[0]), src[1], 0), [])

    def deliver(self, data: bytes, src: tuple[str, int, int, int], control: list[Cmsg]) -> bool:
        raise NotImplementedError

    def ctlnotify(self, kind: str) -> None:
        raise NotImplementedError

    def pcb_close(self) -> None:
        self.pcb_unbind()
        now = self.inet6.now()
        for ifindex, group in self.groups:
            if ifindex in self.inet6.node.ifaddrs.ifs:
                self.inet6.node.mld6.leave(ifindex, group, now)
        self.groups.clear()
        self.inet6.settle(now)

    # -- output options ------------------------------------------------------------------------
    def pktopts(self, dst: int, hlim: int = -1, tclass: int = -1, ifindex: int = 0) -> Ip6Pktopts:
        """``ip6_pktopts`` for one datagram: the socket's options, then the datagram's
        own (ancillary data)."""
        if hlim < 0:
            hlim = self.mcast_hops if in6.is_multicast(dst) else self.unicast_hops
        return Ip6Pktopts(hlim=hlim, tclass=self.tclass if tclass < 0 else tclass, dontfrag=self.dontfrag,
                          multicast_ifindex=ifindex or self.mcast_ifindex, nexthop=self.nexthop[0],
                          nexthop_zone=self.nexthop[1], rthdr=self.rthdr)

    def control_for(self, hlim: int, tclass: int, dst: int, ifindex: int) -> list[Cmsg]:
        """Ancillary data for a received datagram, as asked for with IPV6_RECV*."""
        out: list[Cmsg] = []
        if "pktinfo" in self.recvopts:
            out.append((IPPROTO_IPV6, IPV6_PKTINFO, _PKTINFO.pack(in6.pack(dst), ifindex)))
        if "hoplimit" in self.recvopts:
            out.append((IPPROTO_IPV6, IPV6_HOPLIMIT, _INT.pack(hlim)))
        if "tclass" in self.recvopts:
            out.append((IPPROTO_IPV6, IPV6_TCLASS, _INT.pack(tclass)))
        return out

    def parse_cmsgs(self, ancdata: list[Cmsg]) -> tuple[int, int, int, int]:
        """(source, ifindex, hop limit, traffic class) a sendmsg asks for (-1/0: none)."""
        src, ifindex, hlim, tclass = 0, 0, -1, -1
        if self.sticky_pktinfo is not None:
            src, ifindex = self.sticky_pktinfo
        for level, ctype, data in ancdata:
            if level != IPPROTO_IPV6:
                raise kerr(errno.EINVAL, "ancillary data of another level")
            if ctype == IPV6_PKTINFO:
                src, ifindex = self._pktinfo(data)
            elif ctype == IPV6_HOPLIMIT:
                hlim = _int_opt(data)
                if not -1 <= hlim <= 255:
                    raise kerr(errno.EINVAL)
            elif ctype == IPV6_TCLASS:
                tclass = _int_opt(data)
                if not -1 <= tclass <= 255:
                    raise kerr(errno.EINVAL)
            else:
                raise kerr(errno.EINVAL, f"ancillary data type {ctype}")
        return src, ifindex, hlim, tclass

    def _pktinfo(self, data: bytes) -> tuple[int, int]:
        """RFC 3542 6.1: a source (one of ours, or ::) and an outgoing interface (0:
        any; it must exist)."""
        if len(data) != _PKTINFO.size:
            raise kerr(errno.EINVAL, "in6_pktinfo is 20 bytes")
        raw, ifindex = _PKTINFO.unpack(data)
        src = in6.unpack(raw)
        if ifindex and self.kernel.ifnet.by_index(ifindex) is None:
            raise kerr(errno.ENXIO, "no interface with that index")
        self._check_local(src, ifindex)
        return src, ifindex

    # -- IPPROTO_IPV6 options (ip6_ctloutput) ----------------------------------------------------
    def proto_setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level != IPPROTO_IPV6:
            self.other_setsockopt(level, opt, value)
            return
        if opt in (IPV6_JOIN_GROUP, IPV6_LEAVE_GROUP):
            self._membership(opt, value)
            return
        if opt == IPV6_NEXTHOP:
            # RFC 3542 6.1: a sockaddr_in6 (here Python's tuple); an empty value clears it.
            if value in (b"", None):
                self.nexthop = (0, 0)
            else:
                addr, _, _, zone = self.sockaddr(value)
                self.nexthop = (addr, zone)
            return
        if opt == IPV6_RTHDR:
            self.rthdr = _rthdr_opt(value)
            return
        if opt == IPV6_PKTINFO:
            if isinstance(value, (bytes, bytearray)) and len(value) == 0:
                self.sticky_pktinfo = None
            else:
                self.sticky_pktinfo = self._pktinfo(bytes(value))
            return
        v = _int_opt(value)
        if opt == IPV6_V6ONLY:
            if self.lport:
                raise kerr(errno.EINVAL, "IPV6_V6ONLY after bind")
            self.v6only = bool(v)
        elif opt in (IPV6_UNICAST_HOPS, IPV6_MULTICAST_HOPS):
            if not -1 <= v <= 255:
                raise kerr(errno.EINVAL)
            setattr(self, "unicast_hops" if opt == IPV6_UNICAST_HOPS else "mcast_hops", v)
        elif opt == IPV6_MULTICAST_LOOP:
            if v not in (0, 1):
                raise kerr(errno.EINVAL)
            self.mcast_loop = v
        elif opt == IPV6_MULTICAST_IF:
            if v and self.kernel.ifnet.by_index(v) is None:
                raise kerr(errno.ENXIO)
            self.mcast_ifindex = v
        elif opt == IPV6_TCLASS:
            if not -1 <= v <= 255:
                raise kerr(errno.EINVAL)
            self.tclass = max(v, 0)
        elif opt == IPV6_DONTFRAG:
            self.dontfrag = bool(v)
        elif opt in _RECV_FLAGS:
            (self.recvopts.add if v else self.recvopts.discard)(_RECV_FLAGS[opt])
        else:
            self.ipv6_setsockopt(opt, v)

    def proto_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        if level != IPPROTO_IPV6:
            return self.other_getsockopt(level, opt, buflen)
        if opt == IPV6_V6ONLY:
            return int(self.v6only)
        if opt == IPV6_UNICAST_HOPS:
            return self.unicast_hops if self.unicast_hops >= 0 else self.inet6.node.ip6_params.hlim
        if opt == IPV6_MULTICAST_HOPS:
            return self.mcast_hops if self.mcast_hops >= 0 else self.inet6.node.ip6_params.defmcasthlim
        if opt == IPV6_MULTICAST_LOOP:
            return self.mcast_loop
        if opt == IPV6_MULTICAST_IF:
            return self.mcast_ifindex
        if opt == IPV6_TCLASS:
            return self.tclass
        if opt == IPV6_DONTFRAG:
            return int(self.dontfrag)
        if opt in _RECV_FLAGS:
            return int(_RECV_FLAGS[opt] in self.recvopts)
        if opt == IPV6_RTHDR:
            return self.rthdr
        if opt == IPV6_PKTINFO:
            src, ifindex = self.sticky_pktinfo or (0, 0)
            return _PKTINFO.pack(in6.pack(src), ifindex)
        return self.ipv6_getsockopt(opt)

    def ipv6_setsockopt(self, opt: int, value: int) -> None:
        raise kerr(errno.ENOPROTOOPT)

    def ipv6_getsockopt(self, opt: int) -> Any:
        raise kerr(errno.ENOPROTOOPT)

    def other_setsockopt(self, level: int, opt: int, value: Any) -> None:
        raise kerr(errno.ENOPROTOOPT)

    def other_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        raise kerr(errno.ENOPROTOOPT)

    def _membership(self, opt: int, value: Any) -> None:
        """IPV6_JOIN_GROUP / IPV6_LEAVE_GROUP with a ``struct ipv6_mreq`` (group,
        interface index; 0: the interface a route to the group leaves by)."""
        if not isinstance(value, (bytes, bytearray)) or len(value) != _PKTINFO.size:
            raise kerr(errno.EINVAL, "ipv6_mreq is 20 bytes")
        raw, ifindex = _PKTINFO.unpack(value)
        group = in6.unpack(raw)
        if not in6.is_multicast(group):
            raise kerr(errno.EINVAL, "not a multicast address")
        if ifindex == 0:
            rt = self.inet6.routes.lookup(group)
            if rt is None or rt.ifp is None:
                raise kerr(errno.EADDRNOTAVAIL, "no interface for the group")
            ifindex = rt.ifp.index
        ifp = self.kernel.ifnet.by_index(ifindex)
        if ifp is None:
            raise kerr(errno.ENXIO)
        key = (ifindex, group)
        now = self.inet6.now()
        if opt == IPV6_JOIN_GROUP:
            if key in self.groups:
                raise kerr(errno.EADDRINUSE)
            self.inet6.attach(ifp)
            self.inet6.node.mld6.join(ifindex, group, now)
            self.groups.append(key)
        else:
            if key not in self.groups:
                raise kerr(errno.EADDRNOTAVAIL)
            self.groups.remove(key)
            self.inet6.node.mld6.leave(ifindex, group, now)
        self.inet6.settle(now)



class Dgram6Socket(In6Pcb, DgramSocket):
    """An AF_INET6 datagram socket (UDP, raw): received datagrams queue with their
    source and the ancillary data asked for."""

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        DgramSocket.__init__(self, kernel, proto)
        self.pcb_init(kernel)

    def deliver(self, data: bytes, src: tuple[str, int, int, int], control: list[Cmsg]) -> bool:
        return self.sbappend(data, Sockaddr6(src, control))

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        return self.sendmsg(ctx, bytes(data), [], flags, addr)

    def close(self) -> None:
        self.pcb_close()
        DgramSocket.close(self)


def _rthdr_opt(value: Any) -> bytes:
    """A sticky IPV6_RTHDR (RFC 3542 7), checked as NetBSD's ``ip6_setpktopt``: the
    length its header says, type 0 only, an even non-zero length and as many segments
    left as addresses. An empty value removes it."""
    if value in (b"", None):
        return b""
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise kerr(errno.EINVAL, "IPV6_RTHDR takes a routing header")
    rth = bytes(value)
    if len(rth) < 8 or len(rth) != (rth[1] + 1) * 8:
        raise kerr(errno.EINVAL, "routing header length")
    if rth[2] != IPV6_RTHDR_TYPE_0 or rth[1] == 0 or rth[1] % 2 or rth[1] // 2 != rth[3]:
        raise kerr(errno.EINVAL, "only type 0 routing headers with every address left")
    return rth
