"""How route(8), arp(8) and ndp(8) talk to the kernel: a PF_ROUTE socket and sysctl
``net.route``, as NetBSD's userland programs do (``rumpnet.rtsock`` is the kernel side).

Nothing here touches a kernel object: every call is a system call, ``k.rump_sys_*`` from
an application thread, or, when the caller already runs on the kernel's CPU (a command
called from a coroutine on the scheduler's loop), the same entry of the system call table
(``k.sysent``) called directly, as a kernel thread would. ``k`` may as well be a
``RumpClient``: the program then runs in the client's process against a rump_server.
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any, cast

from rumpkern.sched import Sleep, SyscallCtx
from rumpnet.route_msg import (
    CTL_NET,
    NET_RT_DUMP,
    NET_RT_FLAGS,
    NET_RT_IFLIST,
    PF_ROUTE,
    RTA_IFA,
    RTA_IFP,
    IfaMsghdr,
    IfMsghdr,
    RouteMessage,
    RtMsghdr,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    decode_msg,
    iter_msgs,
)

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel
    from rumpnet.rumpclient import RumpClient

_READ_MAX = 0x10000


class Iface:
    """An interface as NET_RT_IFLIST describes it."""

    def __init__(self, msg: IfMsghdr) -> None:
        sdl = msg.addrs.get(RTA_IFP)
        self.index = msg.ifm_index
        self.name = sdl.name if isinstance(sdl, SockaddrDl) else f"if{msg.ifm_index}"
        self.flags = msg.ifm_flags
        self.mtu = msg.ifm_data.ifi_mtu
        self.loopback = msg.ifm_data.ifi_type == 0x18  # IFT_LOOP
        self.addrs: list[SockaddrIn | SockaddrIn6] = []


class RouteClient:
    """One program's routing socket (opened at the first request) and its sysctl calls."""

    def __init__(self, k: Kernel | RumpClient) -> None:
        self.k = k
        self.fd: int | None = None
        self.seq = 0
        self._ifaces: dict[int, Iface] | None = None

    # -- system calls -------------------------------------------------------------------------
    def _sys(self, name: str, *args: Any) -> Any:
        k = self.k
        sched = getattr(k, "sched", None)  # none: a RumpClient, whose calls go to the server
        if sched is not None and sched.holds_cpu():
            kern = cast("Kernel", k)
            kern.check_up()
            try:
                return kern.sysent[name](SyscallCtx(), kern.curproc, *args)
            except Sleep:
                raise OSError(errno.EWOULDBLOCK, "Resource temporarily unavailable") from None
        return getattr(k, f"rump_sys_{name}")(*args)

    def sysctl(self, mib: list[int]) -> bytes:
        """``__sysctl(mib)``: a node's value as bytes."""
        return bytes(self._sys("__sysctl", mib, None, None, None, None, 0))

    def ioctl6(self, request: int, data: bytearray) -> bytearray:
        """ioctl(2) ``request`` on an AF_INET6 datagram socket (``nd6_ioctl``'s requests);
        the kernel's answer is written into ``data``."""
        fd = int(self._sys("socket", pysocket.AF_INET6, pysocket.SOCK_DGRAM, 0))
        try:
            self._sys("ioctl", fd, request, data)
        finally:
            self._sys("close", fd)
        return data

    def sysctl_rtable(self, af: int, op: int, arg: int = 0) -> list[RouteMessage]:
        return list(iter_msgs(self.sysctl([CTL_NET, PF_ROUTE, 0, af, op, arg])))

    def dump(self, af: int) -> list[RtMsghdr]:
        """NET_RT_DUMP: the routes of ``af``, in table order."""
        return [m for m in self.sysctl_rtable(af, NET_RT_DUMP) if isinstance(m, RtMsghdr)]

    def lldump(self, af: int) -> list[RtMsghdr]:
        """NET_RT_FLAGS with RTF_LLINFO: the ARP (AF_INET) or neighbour (AF_INET6) cache."""
        return [m for m in self.sysctl_rtable(af, NET_RT_FLAGS, 0x400) if isinstance(m, RtMsghdr)]

    def ifaces(self) -> dict[int, Iface]:
        """NET_RT_IFLIST: interfaces by index, each with its addresses."""
        if self._ifaces is None:
            out: dict[int, Iface] = {}
            cur: Iface | None = None
            for m in self.sysctl_rtable(0, NET_RT_IFLIST):
                if isinstance(m, IfMsghdr):
                    cur = out[m.ifm_index] = Iface(m)
                elif isinstance(m, IfaMsghdr) and cur is not None:
                    sa = m.addrs.get(RTA_IFA)
                    if isinstance(sa, (SockaddrIn, SockaddrIn6)):
                        cur.addrs.append(sa)
            self._ifaces = out
        return self._ifaces

    def ifname(self, index: int) -> str | None:
        iface = self.ifaces().get(index)
        return iface.name if iface is not None else None

    def ifindex(self, name: str) -> int:
        """The index of interface ``name`` (ENXIO when there is none, as if_nametoindex)."""
        for iface in self.ifaces().values():
            if iface.name == name:
                return iface.index
        raise OSError(errno.ENXIO, "Device not configured")

    def owner(self, sa: SockaddrIn | SockaddrIn6 | None) -> Iface | None:
        """The interface that holds address ``sa`` (by address and zone)."""
        if sa is None:
            return None
        for iface in self.ifaces().values():
            if sa in iface.addrs:
                return iface
        return None

    # -- the routing socket -----------------------------------------------------------------
    def _socket(self) -> int:
        if self.fd is None:
            self.fd = int(self._sys("socket", PF_ROUTE, pysocket.SOCK_RAW, 0))
        return self.fd

    def request(self, rtm: RtMsghdr) -> RtMsghdr:
        """Write ``rtm`` and read the kernel's answer to it (same type and sequence
        number); an error is the OSError write(2) failed with."""
        fd = self._socket()
        self.seq += 1
        rtm.rtm_seq = self.seq
        self._sys("sendto", fd, rtm.encode(), 0, None)
        while True:
            try:
                raw = self._sys("recvfrom", fd, _READ_MAX, pysocket.MSG_DONTWAIT)[0]
            except BlockingIOError:
                raise OSError(errno.EIO, "routing socket: no answer") from None
            msg = decode_msg(raw)
            if isinstance(msg, RtMsghdr) and msg.rtm_seq == self.seq and msg.rtm_type == rtm.rtm_type:
                return msg

    def has_family(self, family: int) -> bool:
        """Is the protocol domain ``family`` (the host's AF_INET/AF_INET6) in the kernel?
        A plain socket(2) tells (EAFNOSUPPORT when not)."""
        try:
            fd = int(self._sys("socket", family, pysocket.SOCK_DGRAM, 0))
        except OSError as e:
            if e.errno == errno.EAFNOSUPPORT:
                return False
            raise
        self._sys("close", fd)
        return True

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            self._sys("close", fd)

    def __enter__(self) -> RouteClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
