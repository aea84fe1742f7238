"""What the commands' libc would do for them: interface and address queries through
``rump_sys_socket`` + ``rump_sys_ioctl`` and ``rump_sys___sysctl`` only.

``getifaddrs`` (NetBSD's ``getifaddrs(3)``, here over SIOCGIFCONF) lists the interfaces
with their addresses; :class:`IfSock` is the datagram socket ifconfig(8) issues its
requests on. Everything takes a :class:`Syscalls`: an in-process kernel or a
``RumpClient``, so the commands run the same against either.
"""

from __future__ import annotations

import errno
import socket as pysocket
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Protocol

from rumpkern.commands import strerror
from rumpnet.if_ioctl import (
    IFREQ_SIZE,
    SIOCGIFCONF,
    SIOCIFGCLONERS,
    IfCloneReq,
    IfConf,
    SockaddrDl,
    SockaddrIn,
    SockaddrIn6,
    iocparm_len,
)


class Syscalls(Protocol):
    """The system calls the commands use (``Kernel`` and ``RumpClient`` have them)."""

    def rump_sys_socket(self, domain: int, type: int, protocol: int = 0) -> int: ...  # noqa: A002

    def rump_sys_ioctl(self, fd: int, request: int, arg: int | bytearray = 0) -> int: ...

    def rump_sys_close(self, fd: int) -> None: ...

    def rump_sys_poll(self, fds: Sequence[object], nfds: int | None = None, timeout: int = -1) -> int: ...

    def rump_sys___sysctl(self, name: str | Sequence[int], namelen: int | None = None,
                          oldp: bytearray | None = None, oldlenp: object = None, newp: object = None,
                          newlen: int = 0) -> int | str | bytes: ...


def fail(prog: str, what: str, e: OSError) -> OSError:
    """``prog: what: message`` as NetBSD's err(3) prints it, with the errno."""
    code = e.errno if e.errno is not None else errno.EINVAL
    return OSError(code, f"{prog}: {what}: {strerror(code)}")


class IfSock:
    """A datagram socket of ``family`` to issue interface ioctls on (closed on exit)."""

    def __init__(self, sys: Syscalls, family: int = pysocket.AF_INET) -> None:
        self.sys = sys
        self.fd = sys.rump_sys_socket(family, pysocket.SOCK_DGRAM, 0)
        self._inet6: IfSock | None = None

    def sibling6(self) -> IfSock:
        """An AF_INET6 socket beside this one for netinet6's requests (opened once, closed
        with this one)."""
        if self._inet6 is None:
            self._inet6 = IfSock(self.sys, pysocket.AF_INET6)
        return self._inet6

    def __enter__(self) -> IfSock:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        if self._inet6 is not None:
            six, self._inet6 = self._inet6, None
            six.close()
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            self.sys.rump_sys_close(fd)

    def ioctl(self, request: int, buf: bytearray) -> bytearray:
        """Issue ``request`` with ``buf`` (padded to the request's size); returns the
        answer the kernel wrote into it."""
        if len(buf) < iocparm_len(request):
            buf.extend(bytes(iocparm_len(request) - len(buf)))
        self.sys.rump_sys_ioctl(self.fd, request, buf)
        return buf


@dataclass
class IfAddrs:
    """One interface as getifaddrs(3) reports it: its link address and its addresses."""

    name: str
    index: int
    type: int
    lladdr: bytes
    ipv4: list[int] = field(default_factory=list)
    ipv6: list[SockaddrIn6] = field(default_factory=list)


def getifaddrs(s: IfSock) -> list[IfAddrs]:
    """Every interface (in index order) with its addresses, through SIOCGIFCONF (asked
    again with twice the room while the answer fills the buffer)."""
    room = 32
    while True:
        conf = IfConf.unpack(s.ioctl(SIOCGIFCONF, IfConf.request(room)))
        if conf.length + IFREQ_SIZE <= room * IFREQ_SIZE:
            break
        room *= 2
    out: list[IfAddrs] = []
    by_name: dict[str, IfAddrs] = {}
    for req in conf.entries:
        sa = req.addr
        if isinstance(sa, SockaddrDl):
            by_name[req.name] = entry = IfAddrs(req.name, sa.index, sa.type, sa.lladdr)
            out.append(entry)
        elif isinstance(sa, SockaddrIn) and req.name in by_name:
            by_name[req.name].ipv4.append(sa.addr)
        elif isinstance(sa, SockaddrIn6) and req.name in by_name:
            by_name[req.name].ipv6.append(sa)
    return out


def cloner_names(s: IfSock) -> list[str]:
    """The interface cloners (SIOCIFGCLONERS: ``ifconfig -C``)."""
    first = IfCloneReq.unpack(s.ioctl(SIOCIFGCLONERS, IfCloneReq.request(0)))
    return IfCloneReq.unpack(s.ioctl(SIOCIFGCLONERS, IfCloneReq.request(first.total))).names


def sysctl_value(sys: Syscalls, name: str) -> int | str | bytes | None:
    """The value of sysctl ``name``, or None when the node does not exist (ENOENT)."""
    try:
        return sys.rump_sys___sysctl(name)
    except OSError as e:
        if e.errno == errno.ENOENT:
            return None
        raise
