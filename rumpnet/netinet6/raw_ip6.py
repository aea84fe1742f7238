"""Raw IPv6 sockets (NetBSD's ``raw_ip6.c`` and ``icmp6.c``'s ``icmp6_rip6_input``;
RFC 3542 3).

Unlike raw IPv4 sockets, raw IPv6 sockets read and write the upper-layer message only:
the IPv6 header never shows, its fields come as ancillary data (IPV6_PKTINFO,
IPV6_HOPLIMIT, ...). An ICMPv6 socket sees every ICMPv6 message the node receives whose
type its ``ICMP6_FILTER`` passes (NetBSD's bit meaning: set = pass; all pass at first),
and the kernel computes the checksum of what it sends (RFC 3542 3.1: always for ICMPv6,
at ``IPV6_CHECKSUM``'s offset for other protocols, which then is checked on input too).
Other protocols reach their raw sockets through the node's protocol switch while one is
open; a packet for a protocol nobody takes gets a Parameter Problem (RFC 8200 4).
"""

from __future__ import annotations

import errno
import socket as pysocket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.icmp6 import Icmp6Filter, Icmp6RawInput
from rumpnet.netinet6.in6_cksum import in6_cksum, in6_cksum_ok
from rumpnet.netinet6.in6_pcb import IPV6_CHECKSUM, Dgram6Socket
from rumpnet.netinet6.ip6_input import Ip6Delivery
from rumpnet.netinet6.ip6_var import Counters
from rumpnet.uipc_socket import Cmsg

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain

IPPROTO_ICMPV6 = 58
ICMP6_FILTER = 1              # at level IPPROTO_ICMPV6 (NetBSD's and Linux's number)
IPV6_MAXPACKET = 65535
_TRANSPORTS = (6, 17, IPPROTO_ICMPV6)   # protocols with their own input (no raw copies)


@dataclass(slots=True)
class Rip6Stats(Counters):
    """``struct rip6stat`` (``net.inet6.raw6.stats``)."""

    rip6s_ipackets: int = 0
    rip6s_isum: int = 0
    rip6s_badsum: int = 0
    rip6s_nosock: int = 0
    rip6s_fullsock: int = 0
    rip6s_opackets: int = 0


class Raw6Socket(Dgram6Socket):
    so_type = pysocket.SOCK_RAW

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        super().__init__(kernel, proto)
        self.filter = Icmp6Filter()
        self.checksum = 2 if proto == IPPROTO_ICMPV6 else -1   # IPV6_CHECKSUM offset
        self.raw6: RawIp6 = self.inet6.raw6
        self.raw6.attach(self)

    def pcb_table(self) -> dict[int, list[Any]]:
        return {}

    def bind(self, addr: Any) -> None:
        laddr, _, _, zone = self.sockaddr(addr)
        if in6.is_v4mapped(laddr):
            raise kerr(errno.EADDRNOTAVAIL)
        self._check_local(laddr, zone)
        self.laddr, self.lzone = laddr, zone

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        faddr, _, _, zone = self.sockaddr(addr)
        self.faddr, self.fzone = faddr, zone

    def is_connected(self) -> bool:
        return self.faddr != 0

    def getpeername(self) -> tuple[str, int, int, int]:
        if self.faddr == 0:
            raise kerr(errno.ENOTCONN)
        return self.format(self.faddr, 0, self.fzone)

    def ctlnotify(self, kind: str) -> None:
        pass

    def close(self) -> None:
        self.raw6.detach(self)
        super().close()

    def sendmsg(self, ctx: SyscallCtx, data: bytes, ancdata: list[Cmsg], flags: int, addr: Any) -> int:
        """``rip6_output``: the message goes after an IPv6 header the kernel builds."""
        self.check_send(flags)
        if addr is not None:
            dst, _, _, zone = self.sockaddr(addr)
        elif self.faddr:
            dst, zone = self.faddr, self.fzone
        else:
            raise kerr(errno.ENOTCONN)
        if in6.is_v4mapped(dst):
            raise kerr(errno.EINVAL, "no v4-mapped addresses on raw IPv6 sockets")
        n = len(data)
        if n > IPV6_MAXPACKET - 40 or n > self.snd_hiwat:
            raise kerr(errno.EMSGSIZE)
        src, ifindex, hlim, tclass = self.parse_cmsgs(ancdata)
        zone = zone or (ifindex if in6.is_scoped(dst) or in6.is_multicast(dst) else 0)
        opts = self.pktopts(dst, hlim, tclass, ifindex)
        src = src or self.laddr
        if src == 0:
            src, _ = self.inet6.node.ip6_output.source_for(dst, self.inet6.default_zone(dst, zone), opts)
        msg = bytearray(data)
        if self.checksum >= 0:
            if self.checksum + 2 > n:
                raise kerr(errno.EINVAL, "message shorter than its checksum offset")
            msg[self.checksum:self.checksum + 2] = b"\0\0"
            struct.pack_into("!H", msg, self.checksum, in6_cksum(src, dst, self.protocol, msg))
        self.raw6.stats.rip6s_opackets += 1
        self.inet6.node.ip6stat.ip6s_rawout += 1
        self.inet6.output(src, dst, self.protocol, msg, opts, zone, loop=bool(self.mcast_loop))
        return n

    def ipv6_setsockopt(self, opt: int, value: int) -> None:
        if opt != IPV6_CHECKSUM:
            raise kerr(errno.ENOPROTOOPT)
        if self.protocol == IPPROTO_ICMPV6 or (value >= 0 and value % 2) or value < -1:
            raise kerr(errno.EINVAL)     # RFC 3542 3.1: ICMPv6's offset is fixed
        self.checksum = value

    def ipv6_getsockopt(self, opt: int) -> Any:
        if opt != IPV6_CHECKSUM:
            raise kerr(errno.ENOPROTOOPT)
        return self.checksum

    def other_setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level != IPPROTO_ICMPV6 or opt != ICMP6_FILTER or self.protocol != IPPROTO_ICMPV6:
            raise kerr(errno.ENOPROTOOPT)
        if not isinstance(value, (bytes, bytearray)):
            raise kerr(errno.EINVAL, "ICMP6_FILTER takes struct icmp6_filter (32 bytes)")
        self.filter = Icmp6Filter.from_bytes(bytes(value))

    def other_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        if level != IPPROTO_ICMPV6 or opt != ICMP6_FILTER or self.protocol != IPPROTO_ICMPV6:
            raise kerr(errno.ENOPROTOOPT)
        return self.filter.to_bytes()

    def wants(self, src: int, dst: int) -> bool:
        return (not self.laddr or self.laddr == dst) and (not self.faddr or self.faddr == src)


class RawIp6:
    """Raw IPv6 of the inet6 domain."""

    def __init__(self, domain: Inet6Domain) -> None:
        self.domain = domain
        self.stats = Rip6Stats()
        self.sockets: list[Raw6Socket] = []

    def attach(self, so: Raw6Socket) -> None:
        self.sockets.append(so)
        self._protosw()

    def detach(self, so: Raw6Socket) -> None:
        if so in self.sockets:
            self.sockets.remove(so)
        self._protosw()

    def _protosw(self) -> None:
        """Raw sockets open for a protocol take it from the protocol switch; ICMPv6
        copies are delivered while an ICMPv6 raw socket exists."""
        node = self.domain.node
        protos = {so.protocol for so in self.sockets}
        node.icmp6.deliver_raw = IPPROTO_ICMPV6 in protos
        for p in [p for p, h in node.protosw.items() if h == self.input and p not in protos]:
            del node.protosw[p]
        for p in protos:
            if p not in _TRANSPORTS and 0 < p < 256:
                node.protosw[p] = self.input

    def input(self, d: Ip6Delivery, now: float) -> None:
        """``rip6_input`` for a protocol only raw sockets take."""
        st = self.stats
        st.rip6s_ipackets += 1
        msg = bytes(d.packet[d.off:])
        src, dst = d.src, d.dst
        got = False
        for so in self.sockets:
            if so.protocol != d.nxt or not so.wants(src, dst):
                continue
            if so.checksum >= 0:
                st.rip6s_isum += 1
                if not in6_cksum_ok(src, dst, d.nxt, msg):
                    st.rip6s_badsum += 1
                    continue
            got = True
            self._deliver(so, msg, src, dst, d.hlim, d.tclass, d.ifindex)
        if not got:
            st.rip6s_nosock += 1

    def icmp6_input(self, ev: Icmp6RawInput, now: float) -> None:
        """``icmp6_rip6_input``: a copy for each ICMPv6 socket whose filter passes it."""
        for so in self.sockets:
            if so.protocol == IPPROTO_ICMPV6 and so.filter.willpass(ev.msg[0]) and so.wants(ev.src, ev.dst):
                self._deliver(so, ev.msg, ev.src, ev.dst, ev.hlim, 0, ev.ifindex)

    def _deliver(self, so: Raw6Socket, msg: bytes, src: int, dst: int, hlim: int, tclass: int, ifindex: int) -> None:
        control = so.control_for(hlim, tclass, dst, ifindex) if so.recvopts else []
        if not so.deliver(msg, so.format(src, 0, scope6.zone_of(src, ifindex)), control):
            self.stats.rip6s_fullsock += 1
