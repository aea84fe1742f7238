"""``net.inet.{tcp,udp,raw}.pcblist``: the protocol control blocks as NetBSD's
``sysctl_inpcblist`` exports them, an array of ``struct kinfo_pcb`` (640 bytes each, from
``sys/sysctl.h``), which ``netstat -a`` reads.

The pointer fields (``ki_pcbaddr``, ``ki_sockaddr``, ...) are zero: there is no kernel
memory to point into. ``ki_rcvq``/``ki_sndq`` are the bytes queued (a listener's queue is
connections, not data: 0, as NetBSD shows ``sb_cc``), ``ki_tstate`` the TCP state
(``tcp_fsm.h`` order), the addresses ``struct sockaddr_in``.
"""

from __future__ import annotations

import socket as pysocket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rumpnet.if_ioctl import SockaddrIn, unpack_sockaddr

if TYPE_CHECKING:
    from rumpkern.sysctl import SysctlTree
    from rumpnet.netinet.in_proto import Inet

KINFO_PCB_SIZE = 640
_HEAD = struct.Struct("=QQQIIIIIIiIQQ")   # through ki_sndq: 72 bytes
_ADDR_PAD = 264                           # each address union: sockaddr padded to 256 + 8
_TAIL = struct.Struct("=5Q")
TCPS_LISTEN = 1


@dataclass
class KinfoPcb:
    """One ``struct kinfo_pcb`` (the fields netstat reads)."""

    family: int
    type: int
    protocol: int
    tstate: int = 0
    rcvq: int = 0
    sndq: int = 0
    laddr: int = 0
    lport: int = 0
    faddr: int = 0
    fport: int = 0

    def pack(self) -> bytes:
        head = _HEAD.pack(0, 0, 0, self.family, self.type, self.protocol, 0, 0, 0, self.tstate, 0,
                          self.rcvq, self.sndq)
        src = SockaddrIn(self.laddr, self.lport).pack().ljust(_ADDR_PAD, b"\0")
        dst = SockaddrIn(self.faddr, self.fport).pack().ljust(_ADDR_PAD, b"\0")
        return head + src + dst + _TAIL.pack(0, 0, 0, 0, 0)

    @classmethod
    def unpack(cls, raw: bytes | bytearray | memoryview) -> KinfoPcb:
        v = _HEAD.unpack_from(bytes(raw))
        src = unpack_sockaddr(bytes(raw[_HEAD.size: _HEAD.size + _ADDR_PAD]))
        dst = unpack_sockaddr(bytes(raw[_HEAD.size + _ADDR_PAD: _HEAD.size + 2 * _ADDR_PAD]))
        la, lp = (src.addr, src.port) if isinstance(src, SockaddrIn) else (0, 0)
        fa, fp = (dst.addr, dst.port) if isinstance(dst, SockaddrIn) else (0, 0)
        return cls(v[3], v[4], v[5], v[9], v[11], v[12], la, lp, fa, fp)


def unpack_pcblist(raw: bytes | bytearray | memoryview) -> list[KinfoPcb]:
    return [KinfoPcb.unpack(raw[i: i + KINFO_PCB_SIZE]) for i in range(0, len(raw) - KINFO_PCB_SIZE + 1,
                                                                         KINFO_PCB_SIZE)]


def tcp_pcbs(inet: Inet) -> bytes:
    tcp: Any = getattr(inet, "tcp", None)
    out = []
    for cb in tcp.pcbs() if tcp is not None else ():
        tstate = int(getattr(cb, "state", 0))
        listening = tstate == TCPS_LISTEN
        out.append(KinfoPcb(pysocket.AF_INET, pysocket.SOCK_STREAM, pysocket.IPPROTO_TCP, tstate,
                            0 if listening else int(getattr(cb, "recv_q", 0)),
                            0 if listening else int(getattr(cb, "send_q", 0)),
                            cb.laddr, cb.lport, cb.faddr, cb.fport).pack())
    return b"".join(out)


def udp_pcbs(inet: Inet) -> bytes:
    out = []
    seen: set[int] = set()
    for lst in inet.udp.pcbs.values():
        for so in lst:
            if id(so) in seen:
                continue
            seen.add(id(so))
            out.append(KinfoPcb(pysocket.AF_INET, pysocket.SOCK_DGRAM, pysocket.IPPROTO_UDP, 0,
                                int(getattr(so, "rcv_cc", 0)), 0, so.laddr, so.lport, so.faddr, so.fport).pack())
    return b"".join(out)


def raw_pcbs(inet: Inet) -> bytes:
    return b"".join(KinfoPcb(pysocket.AF_INET, pysocket.SOCK_RAW, int(getattr(so, "proto", 0)), 0,
                             int(getattr(so, "rcv_cc", 0)), 0, so.laddr, 0, so.faddr, 0).pack()
                    for so in inet.raw.sockets)


def pcblist_sysctl(t: SysctlTree, inet: Inet) -> None:
    """Create ``net.inet.{tcp,udp,raw}.pcblist`` (after the protocols' own nodes)."""
    t.add_node("net.inet.raw", num=pysocket.IPPROTO_RAW)
    t.add_struct("net.inet.tcp.pcblist", lambda: tcp_pcbs(inet), desc="TCP protocol control block list")
    t.add_struct("net.inet.udp.pcblist", lambda: udp_pcbs(inet), desc="UDP protocol control block list")
    t.add_struct("net.inet.raw.pcblist", lambda: raw_pcbs(inet), desc="raw IP protocol control block list")
