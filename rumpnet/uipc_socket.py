"""Sockets (NetBSD's ``uipc_socket.c``/``uipc_socket2.c``): the protocol-independent part.

A socket's operations either complete, raise ``OSError`` with the BSD errno, or raise
:class:`rumpkern.sched.Sleep` naming the wait channel to sleep on (``so_rcv``/``so_snd``);
the scheduler retries them after a ``wakeup``. Protocols subclass :class:`Socket`
(datagram protocols :class:`DgramSocket`) and call ``sorwakeup``/``sowwakeup``.
"""

from __future__ import annotations

import errno
import select
import socket as pysocket
import struct
from collections import deque
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpkern.sched import Sleep, SyscallCtx, WaitChannel

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

POLLIN = select.POLLIN
POLLPRI = select.POLLPRI
POLLOUT = select.POLLOUT
POLLERR = select.POLLERR
POLLHUP = select.POLLHUP
POLLNVAL = select.POLLNVAL
POLLRDNORM = getattr(select, "POLLRDNORM", 0x40)
POLLWRNORM = getattr(select, "POLLWRNORM", POLLOUT)
POLLRDBAND = getattr(select, "POLLRDBAND", 0x80)
POLLIN_SET = POLLIN | POLLRDNORM
POLLOUT_SET = POLLOUT | POLLWRNORM

MSG_OOB = int(pysocket.MSG_OOB)  # plain ints: socket.MsgFlag's enum & costs ~1 us
MSG_PEEK = int(pysocket.MSG_PEEK)
MSG_DONTROUTE = int(pysocket.MSG_DONTROUTE)
MSG_DONTWAIT = int(pysocket.MSG_DONTWAIT)
MSG_WAITALL = int(pysocket.MSG_WAITALL)
MSG_TRUNC = int(pysocket.MSG_TRUNC)
MSG_NOSIGNAL = int(getattr(pysocket, "MSG_NOSIGNAL", 0x4000))
MSG_KNOWN = MSG_OOB | MSG_PEEK | MSG_DONTROUTE | MSG_DONTWAIT | MSG_WAITALL | MSG_TRUNC | MSG_NOSIGNAL

SOL_SOCKET = pysocket.SOL_SOCKET
MSG_CTRUNC = int(pysocket.MSG_CTRUNC)

# One item of ancillary data, as Python's socket.recvmsg/sendmsg write it.
Cmsg = tuple[int, int, bytes]
# SO_PROTOCOL of a socket made with protocol 0
_DEFAULT_PROTO: dict[int, int] = {int(pysocket.SOCK_STREAM): int(pysocket.IPPROTO_TCP),
                                  int(pysocket.SOCK_DGRAM): int(pysocket.IPPROTO_UDP)}

# Boolean socket options kept in so_options (SO_DEBUG is kept and reported only).
_BOOL_OPTIONS = {
    pysocket.SO_REUSEADDR, pysocket.SO_KEEPALIVE, pysocket.SO_DONTROUTE, pysocket.SO_BROADCAST,
    getattr(pysocket, "SO_REUSEPORT", 15), getattr(pysocket, "SO_OOBINLINE", 10), pysocket.SO_DEBUG,
}
SO_ACCEPTCONN = getattr(pysocket, "SO_ACCEPTCONN", 30)
SO_PROTOCOL = getattr(pysocket, "SO_PROTOCOL", 38)
SO_DOMAIN = getattr(pysocket, "SO_DOMAIN", 39)
LINGER_MAX = 0xFFFF  # NetBSD's sosetopt: l_linger up to USHRT_MAX, else EDOM

# Default socket buffer sizes (NetBSD: udp_recvspace 41600, sendspace 9216; we are more
# generous for datagrams so that a burst in a test is not dropped).
SB_MAX = 4 * 1024 * 1024


def CMSG_SPACE(n: int) -> int:  # noqa: N802 (the C macro's name)
    """Room one item of ancillary data with ``n`` bytes takes (Linux's layout, which
    Python's ``socket.CMSG_SPACE`` computes)."""
    return pysocket.CMSG_SPACE(n)


def _timeval_to_seconds(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, (bytes, bytearray)):
        if len(value) == 16:
            sec, usec = struct.unpack("qq", value)
        elif len(value) == 8:
            sec, usec = struct.unpack("ii", value)
        else:
            raise kerr(errno.EINVAL, "timeval must be 8 or 16 bytes")
        if usec < 0 or usec >= 1_000_000 or sec < 0:
            raise kerr(errno.EDOM)
        seconds = sec + usec / 1e6
    else:
        raise kerr(errno.EINVAL, "bad timeval")
    if seconds < 0:
        raise kerr(errno.EDOM)
    return seconds or None


def _seconds_to_timeval(seconds: float | None) -> bytes:
    s = seconds or 0.0
    return struct.pack("qq", int(s), int(round((s - int(s)) * 1e6)))


def _int_value(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, (bytes, bytearray)) and len(value) == 4:
        return int(struct.unpack("i", value)[0])
    raise kerr(errno.EINVAL, "option value must be an int")


class Socket:
    """``struct socket``: options, error, buffers' wait channels and poll support."""

    so_type = 0
    family = pysocket.AF_INET

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        self.kernel = kernel
        self.protocol = proto
        self.so_options: set[int] = set()
        self.so_error = 0
        self.nbio = False
        self.rcvtimeo: float | None = None
        self.sndtimeo: float | None = None
        self.rcv_hiwat = 256 * 1024
        self.rcv_auto = True      # SO_RCVBUF never set: the protocol may autosize
        self.snd_hiwat = 256 * 1024
        self.snd_auto = True      # and SO_SNDBUF
        self.rcv_lowat = 1
        self.snd_lowat = 2048
        self.linger: tuple[int, int] = (0, 0)
        self.cantrcvmore = False
        self.cantsendmore = False
        self.closed = False
        self.rcv_chan = WaitChannel("so_rcv")
        self.snd_chan = WaitChannel("so_snd")
        self.poll_chans: list[WaitChannel] = []

    # -- wakeups -------------------------------------------------------------------------
    def sorwakeup(self) -> None:
        self.rcv_chan.wakeup()
        if self.poll_chans:
            for chan in self.poll_chans:
                chan.wakeup()

    def sowwakeup(self) -> None:
        self.snd_chan.wakeup()
        if self.poll_chans:
            for chan in self.poll_chans:
                chan.wakeup()

    def wakeup_all(self) -> None:
        self.rcv_chan.wakeup()
        self.snd_chan.wakeup()
        for chan in self.poll_chans:
            chan.wakeup()

    def sleep_rcv(self, ctx: SyscallCtx, flags: int = 0) -> Sleep:
        """Raise EWOULDBLOCK when non-blocking, else the Sleep for the receive side."""
        if self.nbio or flags & MSG_DONTWAIT:
            raise kerr(errno.EWOULDBLOCK)
        return Sleep(self.rcv_chan, self.rcvtimeo)

    def sleep_snd(self, ctx: SyscallCtx, flags: int = 0) -> Sleep:
        if self.nbio or flags & MSG_DONTWAIT:
            raise kerr(errno.EWOULDBLOCK)
        return Sleep(self.snd_chan, self.sndtimeo)

    def take_error(self) -> int:
        err, self.so_error = self.so_error, 0
        return err

    # -- operations protocols implement ------------------------------------------------
    def bind(self, addr: Any) -> None:
        raise kerr(errno.EOPNOTSUPP)

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        raise kerr(errno.EOPNOTSUPP)

    def listen(self, backlog: int) -> None:
        raise kerr(errno.EOPNOTSUPP)

    def accept(self, ctx: SyscallCtx) -> tuple[Socket, Any]:
        raise kerr(errno.EOPNOTSUPP)

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        raise kerr(errno.EOPNOTSUPP)

    def recv(self, ctx: SyscallCtx, n: int, flags: int) -> tuple[bytes, Any]:
        raise kerr(errno.EOPNOTSUPP)

    def recvmsg(self, ctx: SyscallCtx, n: int, ancbufsize: int, flags: int) -> tuple[bytes, list[Cmsg], int, Any]:
        """``recvmsg``: what ``recv`` gives, with no ancillary data unless the protocol
        keeps some (``DgramSocket``)."""
        data, src = self.recv(ctx, n, flags)
        return data, [], 0, src

    def sendmsg(self, ctx: SyscallCtx, data: bytes, ancdata: list[Cmsg], flags: int, addr: Any) -> int:
        """``sendmsg``: ancillary data this protocol does not take is EINVAL."""
        if ancdata:
            raise kerr(errno.EINVAL, "no ancillary data is taken on this socket")
        return self.send(ctx, data, flags, addr)

    def shutdown(self, how: int) -> None:
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise kerr(errno.EINVAL)
        if not self.is_connected():
            raise kerr(errno.ENOTCONN)
        if how in (pysocket.SHUT_RD, pysocket.SHUT_RDWR):
            self.cantrcvmore = True
        if how in (pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            self.cantsendmore = True
        self.wakeup_all()

    def close(self) -> None:
        self.closed = True
        self.wakeup_all()

    def getsockname(self) -> Any:
        raise kerr(errno.EOPNOTSUPP)

    def getpeername(self) -> Any:
        raise kerr(errno.ENOTCONN)

    def is_connected(self) -> bool:
        return False

    def poll_events(self) -> int:
        """Current readiness as poll(2) revents bits (without POLLNVAL)."""
        return 0

    def nread(self) -> int:
        """FIONREAD."""
        return 0

    # -- options -----------------------------------------------------------------------
    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level != SOL_SOCKET:
            self.proto_setsockopt(level, opt, value)
            return
        if opt in _BOOL_OPTIONS:
            if _int_value(value):
                self.so_options.add(opt)
            else:
                self.so_options.discard(opt)
        elif opt == pysocket.SO_RCVTIMEO:
            self.rcvtimeo = _timeval_to_seconds(value)
        elif opt == pysocket.SO_SNDTIMEO:
            self.sndtimeo = _timeval_to_seconds(value)
        elif opt == pysocket.SO_RCVBUF:
            v = _int_value(value)
            sb_max = getattr(self.kernel, "sb_max", SB_MAX)
            if v <= 0 or v > sb_max:
                raise kerr(errno.ENOBUFS if v > sb_max else errno.EINVAL)
            self.rcv_hiwat = v
            self.rcv_auto = False
            self.sb_resized()
        elif opt == pysocket.SO_SNDBUF:
            v = _int_value(value)
            sb_max = getattr(self.kernel, "sb_max", SB_MAX)
            if v <= 0 or v > sb_max:
                raise kerr(errno.ENOBUFS if v > sb_max else errno.EINVAL)
            self.snd_hiwat = v
            self.snd_auto = False
            self.sb_resized()
        elif opt in (pysocket.SO_RCVLOWAT, pysocket.SO_SNDLOWAT):
            # NetBSD's sosetopt: below 1 is EINVAL; never above the buffer's high water.
            v = _int_value(value)
            if v < 1:
                raise kerr(errno.EINVAL)
            if opt == pysocket.SO_RCVLOWAT:
                self.rcv_lowat = min(v, self.buffer_size(rcv=True))
            else:
                self.snd_lowat = min(v, self.buffer_size(rcv=False))
        elif opt == pysocket.SO_LINGER:
            if isinstance(value, tuple):
                onoff, secs = value
            elif isinstance(value, (bytes, bytearray)) and len(value) == 8:
                onoff, secs = struct.unpack("ii", value)
            else:
                raise kerr(errno.EINVAL, "SO_LINGER takes struct linger")
            if not 0 <= int(secs) <= LINGER_MAX:
                raise kerr(errno.EDOM)
            self.linger = (int(onoff), int(secs))
            self.linger_changed()
        else:
            # SO_ERROR, SO_TYPE, SO_ACCEPTCONN, SO_DOMAIN, SO_PROTOCOL are read-only, the
            # rest unknown: NetBSD's sosetopt says ENOPROTOOPT to both.
            raise kerr(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, opt: int, buflen: int = 0) -> Any:
        if level != SOL_SOCKET:
            pv = self.proto_getsockopt(level, opt, buflen)
            if buflen and isinstance(pv, int):
                return struct.pack("i", pv)[:buflen]  # a buffer asked for: the int's bytes
            return pv
        if opt in _BOOL_OPTIONS:
            v: Any = 1 if opt in self.so_options else 0
        elif opt == pysocket.SO_ERROR:
            v = self.take_error()
        elif opt == pysocket.SO_TYPE:
            v = self.so_type
        elif opt == SO_ACCEPTCONN:
            v = 1 if self.is_listening() else 0
        elif opt == SO_DOMAIN:
            v = self.family
        elif opt == SO_PROTOCOL:
            v = self.protocol or _DEFAULT_PROTO.get(self.so_type, 0)
        elif opt == pysocket.SO_RCVBUF:
            v = self.buffer_size(rcv=True)
        elif opt == pysocket.SO_SNDBUF:
            v = self.buffer_size(rcv=False)
        elif opt == pysocket.SO_RCVLOWAT:
            v = self.rcv_lowat
        elif opt == pysocket.SO_SNDLOWAT:
            v = self.snd_lowat
        elif opt == pysocket.SO_RCVTIMEO:
            return _seconds_to_timeval(self.rcvtimeo)
        elif opt == pysocket.SO_SNDTIMEO:
            return _seconds_to_timeval(self.sndtimeo)
        elif opt == pysocket.SO_LINGER:
            return struct.pack("ii", *self.linger)
        else:
            raise kerr(errno.ENOPROTOOPT)
        if buflen:
            return struct.pack("i", v)[:buflen]
        return v

    def proto_setsockopt(self, level: int, opt: int, value: Any) -> None:
        raise kerr(errno.ENOPROTOOPT)

    def proto_getsockopt(self, level: int, opt: int, buflen: int) -> Any:
        raise kerr(errno.ENOPROTOOPT)

    def buffer_size(self, rcv: bool) -> int:
        """The receive or send buffer's high-water mark as SO_RCVBUF/SO_SNDBUF report it
        (a protocol may resize its buffers: TCP rounds them to whole segments)."""
        return self.rcv_hiwat if rcv else self.snd_hiwat

    def sb_resized(self) -> None:
        """Buffer sizes changed (protocols with their own buffers follow)."""

    def linger_changed(self) -> None:
        """SO_LINGER changed (TCP follows)."""

    def linger_pending(self) -> bool:
        """After close: must close(2) still wait (SO_LINGER with a positive time and the
        connection not yet disconnected)? Connection-oriented protocols override."""
        return False

    def close_wait(self) -> Sleep | None:
        """What close(2) sleeps on after close() (``rumpkern.lwproc.FileOps``).

        NetBSD's soclose sleeps, up to the SO_LINGER time, until the connection is
        disconnected, i.e. everything sent, FIN included, is acknowledged; a non-blocking
        socket does not wait."""
        if self.nbio or not self.linger_pending():
            return None
        return Sleep(self.snd_chan, float(self.linger[1]))

    def is_listening(self) -> bool:
        return False


class DgramSocket(Socket):
    """A socket whose receive buffer is a queue of datagrams with their sources."""

    def __init__(self, kernel: NetKernel, proto: int) -> None:
        super().__init__(kernel, proto)
        self.rcvq: deque[tuple[bytes, Any]] = deque()
        self.rcv_cc = 0
        self.rcv_hiwat = 256 * 1024
        self.drops_full = 0

    def sbappend(self, data: bytes, src: Any) -> bool:
        """Queue a received datagram; False (dropped) when the buffer is full."""
        if self.cantrcvmore:
            return True  # shut down for reading: silently discarded, as BSD does
        if self.rcv_cc + len(data) > self.rcv_hiwat:
            self.drops_full += 1
            return False
        self.rcvq.append((data, src))
        self.rcv_cc += len(data)
        self.sorwakeup()
        return True

    def recv(self, ctx: SyscallCtx, n: int, flags: int) -> tuple[bytes, Any]:
        if flags & ~MSG_KNOWN:
            raise kerr(errno.EOPNOTSUPP)
        if flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        if n < 0:
            raise kerr(errno.EINVAL)
        if not self.rcvq:
            err = self.take_error()
            if err:
                raise kerr(err)
            if self.cantrcvmore or self.closed:
                return b"", None
            raise self.sleep_rcv(ctx, flags)
        if flags & MSG_PEEK:
            data, src = self.rcvq[0]
        else:
            data, src = self.rcvq.popleft()
            self.rcv_cc -= len(data)
        if flags & MSG_TRUNC:
            return data[:n], src  # the caller learns the real length separately
        return data[:n], src

    def check_send(self, flags: int) -> None:
        """What every datagram send checks first: flags it knows (no MSG_OOB), not shut
        down for writing (EPIPE), and an error an ICMP message left (so_error)."""
        if flags & ~MSG_KNOWN or flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        if self.cantsendmore:
            raise kerr(errno.EPIPE)
        err = self.take_error()
        if err:
            raise kerr(err)

    def recvmsg(self, ctx: SyscallCtx, n: int, ancbufsize: int, flags: int) -> tuple[bytes, list[Cmsg], int, Any]:
        """The next datagram with MSG_TRUNC when it was longer than ``n``, and the
        ancillary data its protocol attached to its source address (``control``),
        MSG_CTRUNC when ``ancbufsize`` cannot hold it."""
        full = len(self.rcvq[0][0]) if self.rcvq else 0
        data, src = self.recv(ctx, n, flags)
        mflags = MSG_TRUNC if full > len(data) else 0
        control: list[Cmsg] = list(getattr(src, "control", ()))
        room = ancbufsize
        kept: list[Cmsg] = []
        for c in control:
            need = CMSG_SPACE(len(c[2]))
            if need > room:
                mflags |= MSG_CTRUNC
                break
            kept.append(c)
            room -= need
        return data, kept, mflags, src

    def nread(self) -> int:
        # FIONREAD on a datagram socket: bytes in the receive buffer (BSD sb_cc).
        return self.rcv_cc

    def poll_events(self) -> int:
        ev = POLLOUT_SET
        if self.rcvq or self.cantrcvmore or self.so_error:
            ev |= POLLIN_SET
        if self.so_error:
            ev |= POLLERR
        return ev
