"""Raw IP sockets (NetBSD's ``raw_ip.c``): ping's ICMP socket and IP_HDRINCL.

Input delivers the whole IP packet (header included), as BSD and Linux do for raw
sockets; output takes the protocol's message unless IP_HDRINCL is set.
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx
from rumpnet.net_kernel import netinet
from rumpnet.netinet.in_addr import INADDR_ANY, ntoa, sockaddr_in
from rumpnet.netinet.in_pcb import InPcbMixin
from rumpnet.netinet.ip_var import IP_ALLOWBROADCAST, IP_HDR, IP_RAWOUTPUT, IP_ROUTETOIF
from rumpnet.uipc_socket import MSG_DONTROUTE, MSG_KNOWN, MSG_OOB, DgramSocket

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet.in_proto import Inet

IP_HDRINCL = pysocket.IP_HDRINCL


class RawSocket(InPcbMixin, DgramSocket):
    so_type = pysocket.SOCK_RAW

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        DgramSocket.__init__(self, kernel, proto)
        InPcbMixin.__init__(self)
        self.inet: Inet = netinet(kernel)
        self.hdrincl = proto == pysocket.IPPROTO_RAW
        self.inet.raw.attach(self)

    def pcb_table(self) -> dict[int, list[Any]]:
        return self.inet.raw.bound

    def bind(self, addr: Any) -> None:
        laddr, _ = sockaddr_in(addr)
        if laddr != INADDR_ANY and laddr not in self.inet.local_addrs:
            raise kerr(errno.EADDRNOTAVAIL)
        self.laddr = laddr

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        faddr, _ = sockaddr_in(addr)
        self.faddr = faddr
        self.fport = 0

    def is_connected(self) -> bool:
        return self.faddr != INADDR_ANY

    def getpeername(self) -> tuple[str, int]:
        if self.faddr == INADDR_ANY:
            raise kerr(errno.ENOTCONN)
        return (ntoa(self.faddr), 0)

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        if flags & ~MSG_KNOWN or flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        if self.cantsendmore:
            raise kerr(errno.EPIPE)
        if addr is not None:
            if self.faddr != INADDR_ANY:
                raise kerr(errno.EISCONN)
            dst, _ = sockaddr_in(addr)
        elif self.faddr != INADDR_ANY:
            dst = self.faddr
        else:
            raise kerr(errno.ENOTCONN)
        n = len(data)
        if n > 65535 or n > self.snd_hiwat:
            raise kerr(errno.EMSGSIZE)
        oflags = 0
        if pysocket.SO_BROADCAST in self.so_options:
            oflags |= IP_ALLOWBROADCAST
        if flags & MSG_DONTROUTE or pysocket.SO_DONTROUTE in self.so_options:
            oflags |= IP_ROUTETOIF
        out = self.inet.output
        if self.hdrincl:
            if n < 20:
                raise kerr(errno.EINVAL)
            buf = bytearray(data)
            _, _, _, _, _, _, _, _, src, hdst = IP_HDR.unpack_from(buf)
            out.output(src, hdst or dst, buf[9], buf, flags=oflags | IP_RAWOUTPUT)
            self.inet.ipstat.ips_rawout += 1
            return n
        out.output(self.laddr, dst, self.protocol, data, ttl=self.ttl, tos=self.tos, flags=oflags)
        return n

    def ip_setsockopt(self, opt: int, value: int) -> None:
        if opt == IP_HDRINCL:
            self.hdrincl = bool(value)
        else:
            raise kerr(errno.ENOPROTOOPT)

    def ip_getsockopt(self, opt: int) -> Any:
        if opt == IP_HDRINCL:
            return 1 if self.hdrincl else 0
        raise kerr(errno.ENOPROTOOPT)

    def close(self) -> None:
        self.inet.raw.detach(self)
        DgramSocket.close(self)


class RawIp:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.sockets: list[RawSocket] = []
        self.bound: dict[int, list[Any]] = {}

    def attach(self, so: RawSocket) -> None:
        self.sockets.append(so)
        self.inet.raw_listeners = len(self.sockets)

    def detach(self, so: RawSocket) -> None:
        if so in self.sockets:
            self.sockets.remove(so)
        self.inet.raw_listeners = len(self.sockets)

    def wants(self, proto: int) -> bool:
        return any(so.protocol in (proto, 0) for so in self.sockets)

    def ctlinput(self, kind: str, src: int, dst: int, inner: bytes, mtu: int) -> bool:
        """An ICMP error about a datagram of a protocol without its own ctlinput (ICMP
        echo, IP_HDRINCL packets): taken (True) if a raw socket could have sent it (its
        protocol, or IPPROTO_RAW; its addresses unset or matching); "fragmentation
        needed" then lowers the path MTU (Linux's raw_err, through the socket it finds).
        Raw sockets are not told (NetBSD's rip_ctlinput only tells connected ones)."""
        proto = inner[9]
        for so in self.sockets:
            if so.protocol not in (proto, 0, pysocket.IPPROTO_RAW):
                continue
            if so.laddr not in (INADDR_ANY, src) or so.faddr not in (INADDR_ANY, dst):
                continue
            if kind == "needfrag":
                self.inet.icmp.mtudisc(dst, mtu, (inner[2] << 8) | inner[3])
            return True
        return False

    def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, proto: int, src: int, dst: int) -> None:
        """``rip_input``: a copy of the packet to each matching raw socket."""
        data: bytes | None = None
        for so in self.sockets:
            if so.protocol not in (proto, 0) or so.protocol == pysocket.IPPROTO_RAW:
                continue
            if so.laddr != INADDR_ANY and so.laddr != dst:
                continue
            if so.faddr != INADDR_ANY and so.faddr != src:
                continue
            if data is None:
                data = bytes(pkt)
            so.sbappend(data, (ntoa(src), 0))
