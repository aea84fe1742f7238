"""packetdrill's system calls on the kernel: Linux's arguments in, Linux's results out.

Each handler decodes a request (``rumpdrill.h``), makes the kernel's ``rump_sys_*``
call as a task on its CPU (:meth:`Session.call`) and encodes the result; errno is
whatever the kernel gave. Fds are the kernel's own (the C side shows them to packetdrill
shifted by ``FD_BASE``).
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.netinet.tcp_usrreq import TcpSocket
from rumpnet.packetdrill import linux_abi as L  # noqa: N812
from rumpnet.packetdrill.nplab import PACKETDRILL_ONLY_BACKLOG
from rumpnet.packetdrill.wire import Op, Reply, Request
from rumpnet.sys_socket import getsock, pollfd

if TYPE_CHECKING:
    from rumpnet.packetdrill.session import Session

_POLLFD = struct.Struct("<ih")
_U32 = struct.Struct("<I")
_S16 = struct.Struct("<h")


class Syscalls:
    """The system-call half of a :class:`Session`."""

    def __init__(self, session: Session) -> None:
        self.s = session

    def handlers(self) -> dict[int, Callable[[Request], Reply]]:
        return {
            Op.SOCKET: self.socket, Op.BIND: self.bind, Op.LISTEN: self.listen,
            Op.ACCEPT: self.accept, Op.CONNECT: self.connect, Op.RECV: self.recv,
            Op.SEND: self.send, Op.FCNTL: self.fcntl, Op.IOCTL: self.ioctl,
            Op.CLOSE: self.close, Op.SHUTDOWN: self.shutdown, Op.GETSOCKOPT: self.getsockopt,
            Op.SETSOCKOPT: self.setsockopt, Op.POLL: self.poll, Op.INFO: self.info,
        }

    def _ret(self, req: Request, name: str, *args: Any) -> Reply:
        """A call whose result is its return value (an int, or None for 0)."""
        async def run() -> Reply:
            r = await self.s.sys(name, *args)
            return Reply(ret=int(r or 0))
        return self.s.call(req, run())

    # -- sockets -----------------------------------------------------------------------
    def socket(self, req: Request) -> Reply:
        domain, type_, proto = req.args[:3]
        return self._ret(req, "socket", domain, type_, proto)

    def bind(self, req: Request) -> Reply:
        return self._ret(req, "bind", req.args[0], L.decode_sockaddr(req.payload))

    def connect(self, req: Request) -> Reply:
        return self._ret(req, "connect", req.args[0], L.decode_sockaddr(req.payload))

    def listen(self, req: Request) -> Reply:
        if req.args[1] == PACKETDRILL_ONLY_BACKLOG:
            # rump_packetdrill's listen() for packetdrill's bookkeeping alone (nplab.py):
            # the kernel's socket stays as the script left it.
            return Reply()
        return self._ret(req, "listen", req.args[0], req.args[1])

    def accept(self, req: Request) -> Reply:
        async def run() -> Reply:
            fd, addr = await self.s.sys("accept", req.args[0])
            return Reply(ret=fd, payload=L.encode_sockaddr(addr) if req.args[1] else b"")
        return self.s.call(req, run())

    def shutdown(self, req: Request) -> Reply:
        return self._ret(req, "shutdown", req.args[0], req.args[1])

    def close(self, req: Request) -> Reply:
        return self._ret(req, "close", req.args[0])

    # -- data --------------------------------------------------------------------------
    def recv(self, req: Request) -> Reply:
        fd, n, flags, want_addr = req.args[:4]

        async def run() -> Reply:
            data, addr = await self.s.sys("recvfrom", fd, n, flags)
            raw = L.encode_sockaddr(addr) if want_addr and addr is not None else b""
            return Reply(ret=len(data), payload=_U32.pack(len(raw)) + raw + bytes(data))
        return self.s.call(req, run())

    def send(self, req: Request) -> Reply:
        fd, flags, addrlen = req.args[:3]
        addr = L.decode_sockaddr(req.payload[:addrlen]) if addrlen else None
        data = req.payload[addrlen:]
        if addr is None:
            return self._ret(req, "send", fd, data, flags)
        return self._ret(req, "sendto", fd, data, flags, addr)

    # -- control -----------------------------------------------------------------------
    def fcntl(self, req: Request) -> Reply:
        fd, cmd, arg = req.args[:3]
        return self._ret(req, "fcntl", fd, cmd, arg)

    def ioctl(self, req: Request) -> Reply:
        """``ioctl(fd, request, &int)``: the kernel returns the value (FIONREAD) or takes
        it (FIONBIO); packetdrill reads it back from the int."""
        fd, request, value, has_arg = req.args[:4]

        async def run() -> Reply:
            r = await self.s.sys("ioctl", fd, request, struct.pack("<i", value) if has_arg else 0)
            return Reply(ret=0, aux=int(r or 0) if has_arg else 0)
        return self.s.call(req, run())

    def setsockopt(self, req: Request) -> Reply:
        fd, level, opt = req.args[:3]
        ours = L.kernel_option(level, opt)
        return self._ret(req, "setsockopt", fd, level, ours, L.decode_optval(level, ours, req.payload))

    def getsockopt(self, req: Request) -> Reply:
        fd, level, opt, optlen = req.args[:4]
        ours = L.kernel_option(level, opt)

        async def run() -> Reply:
            value = await self.s.sys("getsockopt", fd, level, ours, optlen)
            return Reply(payload=L.encode_optval(value, optlen))
        return self.s.call(req, run())

    def poll(self, req: Request) -> Reply:
        nfds, timeout = req.args[:2]
        entries = [pollfd(*_POLLFD.unpack_from(req.payload, 6 * i)) for i in range(nfds)]

        async def run() -> Reply:
            n = await self.s.sys("poll", entries, nfds, timeout)
            return Reply(ret=n, payload=b"".join(_S16.pack(e.revents) for e in entries))
        return self.s.call(req, run())

    def info(self, req: Request) -> Reply:
        """The host's getsockopt() on one of the kernel's fds: what packetdrill's code
        snippets read (TCP_INFO, TCP_CC_INFO, SO_MEMINFO) in Linux's layouts."""
        fd, level, opt, optlen = req.args[:4]
        so = getsock(self.s.proc, fd)
        if level == L.SOL_TCP and opt == L.TCP_INFO:
            if not isinstance(so, TcpSocket):
                raise kerr(errno.ENOPROTOOPT)
            raw = L.tcp_info(so.cb, so.is_listening())
        elif level == L.SOL_TCP and opt == L.TCP_CC_INFO:
            raw = L.cc_info()
        elif level == L.SOL_SOCKET and opt == L.SO_MEMINFO:
            raw = L.meminfo()
        else:
            raise kerr(errno.ENOPROTOOPT)
        return Reply(payload=raw[:optlen])
