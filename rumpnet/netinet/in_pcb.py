"""Internet protocol control blocks (NetBSD's ``in_pcb.c``): local/foreign address and
port binding shared by UDP and raw sockets (TCP keeps its own demux in ``tcp_subr``)."""

from __future__ import annotations

import errno
import socket as pysocket
from typing import Any

from rumpkern.errno import kerr
from rumpnet.ifnet import IFF_BROADCAST
from rumpnet.netinet.in_addr import INADDR_ANY, INADDR_BROADCAST, ntoa, sockaddr_in
from rumpnet.uipc_socket import _int_value

IPPORT_ANONMIN = 49152
IPPORT_ANONMAX = 65535
SO_REUSEPORT = getattr(pysocket, "SO_REUSEPORT", 15)


class InPcbMixin:
    """Mixed into a socket class: ``laddr``/``lport``/``faddr``/``fport`` and binding."""

    kernel: Any
    inet: Any
    so_options: set[int]

    def __init__(self) -> None:
        self.laddr = INADDR_ANY
        self.lport = 0
        self.faddr = INADDR_ANY
        self.fport = 0
        self.ttl: int | None = None
        self.tos = 0

    def pcb_table(self) -> dict[int, list[Any]]:
        raise NotImplementedError

    def _conflicts(self, laddr: int, lport: int) -> bool:
        reuseport = SO_REUSEPORT in self.so_options
        reuseaddr = pysocket.SO_REUSEADDR in self.so_options
        for other in self.pcb_table().get(lport, ()):
            if other is self:
                continue
            same = other.laddr == laddr
            wild = other.laddr == INADDR_ANY or laddr == INADDR_ANY
            if not (same or wild):
                continue
            if reuseport and SO_REUSEPORT in other.so_options:
                continue
            # BSD: SO_REUSEADDR lets a specific address share a port with a wildcard bind.
            if reuseaddr and not same:
                continue
            return True
        return False

    def pcb_bind(self, laddr: int, lport: int) -> None:
        if self.lport:
            raise kerr(errno.EINVAL)
        inet = self.inet
        if laddr != INADDR_ANY and laddr not in inet.local_addrs:
            if not (laddr == INADDR_BROADCAST or laddr in inet.bcast_addrs or (laddr >> 28) == 0xE):
                raise kerr(errno.EADDRNOTAVAIL)
        table = self.pcb_table()
        if lport == 0:
            rng = self.kernel.rng
            span = IPPORT_ANONMAX - IPPORT_ANONMIN + 1
            start = rng.randrange(span)
            for i in range(span):
                cand = IPPORT_ANONMIN + (start + i) % span
                if not self._conflicts(laddr, cand):
                    lport = cand
                    break
            else:
                raise kerr(errno.EAGAIN)
        elif self._conflicts(laddr, lport):
            raise kerr(errno.EADDRINUSE)
        self.laddr = laddr
        self.lport = lport
        table.setdefault(lport, []).append(self)

    def pcb_unbind(self) -> None:
        if self.lport:
            lst = self.pcb_table().get(self.lport)
            if lst is not None and self in lst:
                lst.remove(self)
                if not lst:
                    del self.pcb_table()[self.lport]

    def pcb_connect(self, faddr: int, fport: int) -> None:
        inet = self.inet
        if faddr == INADDR_ANY:
            faddr = inet.primary_addr()
        elif faddr == INADDR_BROADCAST:
            # NetBSD's in_pcbconnect: the limited broadcast becomes the broadcast address
            # of the first interface that can broadcast (so no route to 255.255.255.255
            # is needed); before this fix connect() failed with EHOSTUNREACH.
            for ifp in inet.kernel.ifnet.all():
                if ifp.flags & IFF_BROADCAST and not ifp.loopback and ifp.addrs and ifp.addrs[0].broadaddr:
                    faddr = ifp.addrs[0].broadaddr
                    break
        # A route must exist (in_pcbconnect -> in_selectsrc); pick the source now.
        src = self.laddr
        if src == INADDR_ANY:
            src = inet.output.source_for(faddr)
        if not self.lport:
            self.pcb_bind(INADDR_ANY, 0)
        self.laddr = src if self.laddr == INADDR_ANY else self.laddr
        self.faddr = faddr
        self.fport = fport

    def bind(self, addr: Any) -> None:
        laddr, lport = sockaddr_in(addr)
        self.pcb_bind(laddr, lport)

    def getsockname(self) -> tuple[str, int]:
        return (ntoa(self.laddr), self.lport)

    def getpeername(self) -> tuple[str, int]:
        if not self.fport and self.faddr == INADDR_ANY:
            raise kerr(errno.ENOTCONN)
        return (ntoa(self.faddr), self.fport)

    def close(self) -> None:
        self.pcb_unbind()
        super().close()  # type: ignore[misc]

    # IPPROTO_IP options shared by UDP and raw sockets.
    def proto_setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level != pysocket.IPPROTO_IP:
            raise kerr(errno.ENOPROTOOPT)
        if not ip_ttl_tos_set(self, opt, value):
            self.ip_setsockopt(opt, _int_value(value))

    def ip_setsockopt(self, opt: int, value: int) -> None:
        raise kerr(errno.ENOPROTOOPT)

    def proto_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        if level != pysocket.IPPROTO_IP:
            raise kerr(errno.ENOPROTOOPT)
        v = ip_ttl_tos_get(self, opt)
        return v if v is not None else self.ip_getsockopt(opt)

    def ip_getsockopt(self, opt: int) -> Any:
        raise kerr(errno.ENOPROTOOPT)


def ip_ttl_tos_set(pcb: Any, opt: int, value: Any) -> bool:
    """IP_TTL or IP_TOS (NetBSD's ip_ctloutput) on a socket with ``ttl`` (None: the
    net.inet.ip.ttl default) and ``tos`` attributes; False for any other option. The
    value goes into every datagram the socket sends (UDP, raw, TCP's segments)."""
    if opt == pysocket.IP_TTL:
        v = _int_value(value)
        if not 0 <= v <= 255:
            raise kerr(errno.EINVAL)
        pcb.ttl = v
    elif opt == pysocket.IP_TOS:
        pcb.tos = _int_value(value) & 0xFF
    else:
        return False
    return True


def ip_ttl_tos_get(pcb: Any, opt: int) -> int | None:
    if opt == pysocket.IP_TTL:
        return int(pcb.ttl if pcb.ttl is not None else pcb.kernel.inet.ip_params.ttl)
    if opt == pysocket.IP_TOS:
        return int(pcb.tos)
    return None
