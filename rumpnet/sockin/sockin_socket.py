"""A rump socket carried by a host socket (NetBSD's ``sockin.c``).

Every :class:`SockinSocket` owns one non-blocking host socket. Operations run on the
kernel's CPU (the scheduler's loop) and never block it: when the host says EAGAIN the
call arms a one-shot ``loop.add_reader``/``add_writer`` on the host fd and sleeps on the
socket's wait channel; the callback disarms itself and calls ``sorwakeup``/``sowwakeup``,
and the scheduler retries the call. Nothing is armed while nobody waits, so an idle socket
costs the loop nothing, and there is no polling thread.

Host errno values are Linux's, which are Python's, which are the values the rest of the
stack uses: host errors pass through as ``OSError`` with the same errno. Where Linux and
BSD disagree on *which* errno a call gives (send on an unconnected stream, sendto on a
connected datagram socket, ...), the BSD answer is given, as netinet gives it.
"""

from __future__ import annotations

import _socket
import errno
import fcntl
import select
import socket as pysocket
import struct
import termios
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rumpkern.errno import kerr
from rumpkern.sched import Sleep, SyscallCtx
from rumpnet.netinet.tcp_ctloutput import TCP_CA_NAME_MAX, TCP_CONGESTION, TCP_INFO, TCP_INFO_STRUCT
from rumpnet.netinet.tcp_fsm import TcpState
from rumpnet.sockin.sockaddr import host_sockaddr
from rumpnet.uipc_socket import (
    MSG_DONTROUTE,
    MSG_DONTWAIT,
    MSG_NOSIGNAL,
    MSG_OOB,
    MSG_PEEK,
    MSG_WAITALL,
    POLLERR,
    POLLHUP,
    POLLIN_SET,
    POLLOUT_SET,
    POLLPRI,
    SOL_SOCKET,
    Cmsg,
    Socket,
    _int_value,
)

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

T = TypeVar("T")

# Connection states (our own bookkeeping; the host socket has the truth).
IDLE, CONNECTING, CONNECTED, LISTENING = range(4)

SO_REUSEPORT = getattr(pysocket, "SO_REUSEPORT", 15)
SO_OOBINLINE = getattr(pysocket, "SO_OOBINLINE", 10)
# SOL_SOCKET booleans that are also set on the host socket.
_HOST_BOOLS = {pysocket.SO_REUSEADDR, pysocket.SO_KEEPALIVE, pysocket.SO_BROADCAST,
               pysocket.SO_DONTROUTE, SO_REUSEPORT, SO_OOBINLINE}
_TCP_OPTS = {pysocket.TCP_NODELAY, pysocket.TCP_MAXSEG}
for _name in ("TCP_KEEPIDLE", "TCP_KEEPINTVL", "TCP_KEEPCNT"):
    if hasattr(pysocket, _name):
        _TCP_OPTS.add(getattr(pysocket, _name))
_IP_OPTS = {pysocket.IP_TTL, pysocket.IP_TOS}
_IPV6_OPTS = {getattr(pysocket, n) for n in (
    "IPV6_V6ONLY", "IPV6_UNICAST_HOPS", "IPV6_TCLASS", "IPV6_MULTICAST_IF", "IPV6_MULTICAST_HOPS",
    "IPV6_MULTICAST_LOOP", "IPV6_RECVPKTINFO", "IPV6_RECVHOPLIMIT", "IPV6_RECVTCLASS", "IPV6_DONTFRAG")
    if hasattr(pysocket, n)}
# IPPROTO_IPV6 options whose value is a struct (ipv6_mreq, in6_pktinfo): as the bytes given.
_IPV6_STRUCT_OPTS = {pysocket.IPV6_JOIN_GROUP, pysocket.IPV6_LEAVE_GROUP, pysocket.IPV6_PKTINFO}

# Flags handed to the host; the others (DONTWAIT, WAITALL, TRUNC) are ours to honour.
_HOST_SEND_FLAGS = MSG_OOB | MSG_DONTROUTE
_HOST_RECV_FLAGS = MSG_OOB | MSG_PEEK
_SEND_CHUNK = 256 * 1024


def host_error(e: OSError) -> OSError:
    """A host ``OSError`` as the kernel reports it (same errno, no host-specific fields)."""
    code = e.errno if e.errno is not None else errno.EIO
    return kerr(code)


class SockinSocket(Socket):
    """PF_INET/PF_INET6 stream or datagram socket proxied onto a host socket."""

    def __init__(self, kernel: NetKernel, family: int, so_type: int, proto: int,
                 hs: _socket.socket | None = None, state: int = IDLE) -> None:
        super().__init__(kernel, proto)
        self.family = pysocket.AddressFamily(family)
        self.so_type = so_type
        if hs is None:
            try:
                hs = _socket.socket(family, so_type, proto)
            except OSError as e:
                raise host_error(e) from None
        hs.setblocking(False)
        self.hs = hs
        self.fd = hs.fileno()
        self.state = state
        self.loop = kernel.sched.loop
        self._rd_armed = False
        self._wr_armed = False
        self._poller = select.poll()
        self._poller.register(self.fd, select.POLLIN | select.POLLOUT | select.POLLPRI)

    def __repr__(self) -> str:
        return f"<SockinSocket fd={self.fd} family={self.family} type={self.so_type} state={self.state}>"

    # -- host calls ------------------------------------------------------------------------
    def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Call the host; BlockingIOError is passed up as is, other errors become kernel
        errors, and malformed arguments EINVAL, never a Python exception."""
        while True:
            try:
                return fn(*args)
            except InterruptedError:
                continue
            except BlockingIOError:
                raise
            except OSError as e:
                raise host_error(e) from None
            except (TypeError, ValueError, OverflowError) as e:
                raise kerr(errno.EINVAL, str(e)) from None

    def _addr(self, addr: Any) -> Any:
        return host_sockaddr(self.family, addr)

    # -- readiness through the scheduler's loop -------------------------------------------
    def _want_read(self) -> None:
        if not self._rd_armed and not self.closed:
            self.loop.add_reader(self.fd, self._host_readable)
            self._rd_armed = True

    def _want_write(self) -> None:
        if not self._wr_armed and not self.closed:
            self.loop.add_writer(self.fd, self._host_writable)
            self._wr_armed = True

    def _disarm(self) -> None:
        if self._rd_armed:
            self.loop.remove_reader(self.fd)
            self._rd_armed = False
        if self._wr_armed:
            self.loop.remove_writer(self.fd)
            self._wr_armed = False

    def _host_readable(self) -> None:
        if self._rd_armed:
            self.loop.remove_reader(self.fd)
            self._rd_armed = False
        self.sorwakeup()

    def _host_writable(self) -> None:
        if self._wr_armed:
            self.loop.remove_writer(self.fd)
            self._wr_armed = False
        self.sowwakeup()

    def _host_events(self) -> int:
        if self.closed:
            return 0
        try:
            r = self._poller.poll(0)
        except InterruptedError:
            return 0
        return r[0][1] if r else 0

    def _wait_rcv(self, ctx: SyscallCtx, flags: int) -> Sleep:
        if self.nbio or flags & MSG_DONTWAIT or ctx.timed_out:
            raise kerr(errno.EWOULDBLOCK)
        self._want_read()
        return Sleep(self.rcv_chan, self.rcvtimeo)

    def _wait_snd(self, ctx: SyscallCtx, flags: int) -> Sleep:
        if self.nbio or flags & MSG_DONTWAIT or ctx.timed_out:
            raise kerr(errno.EWOULDBLOCK)
        self._want_write()
        return Sleep(self.snd_chan, self.sndtimeo)

    def _refresh_state(self) -> None:
        """A non-blocking connect finishes without us: learn it from the host."""
        if self.state == CONNECTING:
            try:
                self.hs.getpeername()
            except OSError:
                return
            self.state = CONNECTED

    # -- operations ------------------------------------------------------------------------
    def bind(self, addr: Any) -> None:
        self._call(self.hs.bind, self._addr(addr))

    def connect(self, ctx: SyscallCtx, addr: Any) -> None:
        if self.so_type != pysocket.SOCK_STREAM:
            a = self._addr(addr)
            if a[1] == 0:
                raise kerr(errno.EADDRNOTAVAIL)
            self._call(self.hs.connect, a)
            self.so_error = 0
            self.state = CONNECTED
            return
        if ctx.data == "connecting":  # retry of a blocking connect after a wakeup
            self._connect_finish()
            return
        if self.state == LISTENING:
            raise kerr(errno.EOPNOTSUPP)
        a = self._addr(addr)
        err = self._call(self.hs.connect_ex, a)
        if err == 0:
            self.state = CONNECTED
            return
        if err in (errno.EINPROGRESS, errno.EAGAIN) and self.state != CONNECTING:
            self.state = CONNECTING
            if self.nbio:
                raise kerr(errno.EINPROGRESS)
            ctx.data = "connecting"
            self._want_write()
            raise Sleep(self.snd_chan)
        if err == errno.EISCONN:
            self.state = CONNECTED
        elif err not in (errno.EALREADY, errno.EINPROGRESS):
            self.state = IDLE
        raise kerr(errno.EALREADY if err == errno.EINPROGRESS else err)

    def _connect_finish(self) -> None:
        err = self._call(self.hs.getsockopt, SOL_SOCKET, pysocket.SO_ERROR)
        if err:
            self.state = IDLE
            raise kerr(err)
        self._refresh_state()
        if self.state == CONNECTED:
            return
        self._want_write()
        raise Sleep(self.snd_chan)

    def listen(self, backlog: int) -> None:
        if self.so_type != pysocket.SOCK_STREAM:
            raise kerr(errno.EOPNOTSUPP)
        self._refresh_state()
        if self.state in (CONNECTED, CONNECTING):
            raise kerr(errno.EINVAL)
        self._call(self.hs.listen, max(0, backlog))
        self.state = LISTENING

    def is_listening(self) -> bool:
        return self.state == LISTENING

    def accept(self, ctx: SyscallCtx) -> tuple[Socket, Any]:
        if self.so_type != pysocket.SOCK_STREAM:
            raise kerr(errno.EOPNOTSUPP)
        if self.state != LISTENING:
            raise kerr(errno.EINVAL)
        try:
            fd, addr = self._call(self.hs._accept)  # type: ignore[attr-defined]
        except BlockingIOError:
            raise self._wait_rcv(ctx, 0) from None
        hs = _socket.socket(self.family, pysocket.SOCK_STREAM, self.protocol, fd)
        nso = SockinSocket(self.kernel, self.family, pysocket.SOCK_STREAM, self.protocol, hs, CONNECTED)
        # sonewconn: the new socket inherits the listener's options.
        nso.so_options = set(self.so_options)
        nso.rcvtimeo, nso.sndtimeo = self.rcvtimeo, self.sndtimeo
        nso.rcv_hiwat, nso.snd_hiwat = self.rcv_hiwat, self.snd_hiwat
        nso.linger = self.linger
        return nso, addr

    def is_connected(self) -> bool:
        self._refresh_state()
        return self.state == CONNECTED

    def send(self, ctx: SyscallCtx, data: bytes | memoryview, flags: int, addr: Any) -> int:
        hflags = (flags & _HOST_SEND_FLAGS) | MSG_NOSIGNAL
        if self.cantsendmore:
            raise kerr(errno.EPIPE)
        if self.so_type == pysocket.SOCK_STREAM:
            return self._send_stream(ctx, memoryview(data).cast("B"), flags, hflags)
        if flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        err = self.take_error()
        if err:
            raise kerr(err)
        try:
            if addr is not None:
                if self.state == CONNECTED:
                    raise kerr(errno.EISCONN)
                a = self._addr(addr)
                if a[1] == 0:
                    raise kerr(errno.EADDRNOTAVAIL)
                return self._call(self.hs.sendto, data, hflags, a)
            if self.state != CONNECTED:
                raise kerr(errno.ENOTCONN)
            return self._call(self.hs.send, data, hflags)
        except BlockingIOError:
            raise self._wait_snd(ctx, flags) from None

    def _send_stream(self, ctx: SyscallCtx, view: memoryview, flags: int, hflags: int) -> int:
        self._refresh_state()
        if self.state != CONNECTED:
            err = self.take_error() or self._call(self.hs.getsockopt, SOL_SOCKET, pysocket.SO_ERROR)
            if err:
                raise kerr(err)
            if self.state == CONNECTING:
                raise self._wait_snd(ctx, flags)
            raise kerr(errno.ENOTCONN)
        total = len(view)
        while ctx.progress < total:
            try:
                n = self._call(self.hs.send, view[ctx.progress:ctx.progress + _SEND_CHUNK], hflags)
            except BlockingIOError:
                if ctx.progress and (self.nbio or flags & MSG_DONTWAIT or ctx.timed_out):
                    return ctx.progress
                raise self._wait_snd(ctx, flags) from None
            except OSError:
                if ctx.progress:
                    return ctx.progress
                raise
            ctx.progress += n
        return total

    def recv(self, ctx: SyscallCtx, n: int, flags: int) -> tuple[bytes, Any]:
        if n < 0:
            raise kerr(errno.EINVAL)
        hflags = flags & _HOST_RECV_FLAGS
        if self.so_type == pysocket.SOCK_STREAM:
            return self._recv_stream(ctx, n, flags, hflags), None
        if flags & MSG_OOB:
            raise kerr(errno.EOPNOTSUPP)
        err = self.take_error()
        if err:
            raise kerr(err)
        try:
            data, src = self._call(self.hs.recvfrom, n, hflags)
        except BlockingIOError:
            if self.cantrcvmore or self.closed:
                return b"", None
            raise self._wait_rcv(ctx, flags) from None
        return data, src

    def recvmsg(self, ctx: SyscallCtx, n: int, ancbufsize: int, flags: int) -> tuple[bytes, list[Cmsg], int, Any]:
        """A datagram with the host's ancillary data (IPV6_PKTINFO, IPV6_HOPLIMIT, ...),
        as netinet6's sockets give it; a stream socket has none."""
        if self.so_type == pysocket.SOCK_STREAM or flags & MSG_OOB:
            return super().recvmsg(ctx, n, ancbufsize, flags)
        err = self.take_error()
        if err:
            raise kerr(err)
        try:
            data, anc, mflags, src = self._call(self.hs.recvmsg, n, ancbufsize, flags & _HOST_RECV_FLAGS)
        except BlockingIOError:
            if self.cantrcvmore or self.closed:
                return b"", [], 0, None
            raise self._wait_rcv(ctx, flags) from None
        return data, [(lv, t, bytes(d)) for lv, t, d in anc], mflags, src

    def sendmsg(self, ctx: SyscallCtx, data: bytes, ancdata: list[Cmsg], flags: int, addr: Any) -> int:
        if not ancdata or self.so_type == pysocket.SOCK_STREAM:
            return super().sendmsg(ctx, data, ancdata, flags, addr)
        if self.cantsendmore:
            raise kerr(errno.EPIPE)
        hflags = (flags & _HOST_SEND_FLAGS) | MSG_NOSIGNAL
        try:
            if addr is not None:
                return self._call(self.hs.sendmsg, [data], ancdata, hflags, self._addr(addr))
            return self._call(self.hs.sendmsg, [data], ancdata, hflags)
        except BlockingIOError:
            raise self._wait_snd(ctx, flags) from None

    def _recv_stream(self, ctx: SyscallCtx, n: int, flags: int, hflags: int) -> bytes:
        self._refresh_state()
        if self.state in (IDLE, LISTENING):
            err = self.take_error()
            raise kerr(err or errno.ENOTCONN)
        if self.cantrcvmore:
            return b""
        waitall = bool(flags & MSG_WAITALL) and not flags & MSG_PEEK
        have: bytearray = ctx.data if isinstance(ctx.data, bytearray) else bytearray()
        while True:
            try:
                chunk = self._call(self.hs.recv, n - len(have), hflags)
            except BlockingIOError:
                if self.state == CONNECTING or not (have and (self.nbio or flags & MSG_DONTWAIT or ctx.timed_out)):
                    ctx.data = have
                    raise self._wait_rcv(ctx, flags) from None
                return bytes(have)
            except OSError:
                if have:
                    return bytes(have)
                raise
            if not waitall:
                return chunk
            have += chunk
            if not chunk or len(have) >= n:
                return bytes(have)

    def shutdown(self, how: int) -> None:
        if how not in (pysocket.SHUT_RD, pysocket.SHUT_WR, pysocket.SHUT_RDWR):
            raise kerr(errno.EINVAL)
        if not self.is_connected():
            raise kerr(errno.ENOTCONN)
        self._call(self.hs.shutdown, how)
        super().shutdown(how)

    def close(self) -> None:
        if self.closed:
            return
        self._disarm()
        try:
            self._poller.unregister(self.fd)
        except (KeyError, ValueError):
            pass
        try:
            self.hs.close()
        except OSError:
            pass
        super().close()

    def getsockname(self) -> Any:
        return self._call(self.hs.getsockname)

    def getpeername(self) -> Any:
        return self._call(self.hs.getpeername)

    # -- readiness and FIONREAD ------------------------------------------------------------
    def poll_events(self) -> int:
        """Readiness from the host socket; when not ready, a one-shot reader/writer is armed
        so that the change is reported through ``sorwakeup``/``sowwakeup``."""
        if self.closed:
            return 0
        self._refresh_state()
        hev = self._host_events()
        ev = 0
        if hev & select.POLLIN:
            ev |= POLLIN_SET
        if hev & select.POLLOUT:
            ev |= POLLOUT_SET
        if hev & select.POLLPRI:
            ev |= POLLPRI
        if hev & select.POLLERR:
            ev |= POLLERR
        if hev & select.POLLHUP:
            ev |= POLLHUP
        if self.so_error:
            ev |= POLLERR | POLLIN_SET
        stream = self.so_type == pysocket.SOCK_STREAM
        if stream and self.state == IDLE:
            # A BSD stream socket that never connected is neither readable nor writable
            # (Linux says POLLOUT|POLLHUP).
            ev &= POLLERR if self.so_error else 0
            return ev
        if stream and self.state == LISTENING:
            ev &= ~(POLLOUT_SET | POLLHUP)
        if not ev & POLLIN_SET:
            self._want_read()
        if not ev & POLLOUT_SET and not (stream and self.state == LISTENING):
            self._want_write()
        return ev

    def nread(self) -> int:
        if self.state == LISTENING or self.closed:
            return 0
        try:
            buf = fcntl.ioctl(self.fd, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int(struct.unpack("i", buf)[0])

    # -- options ---------------------------------------------------------------------------
    def _host_set(self, level: int, opt: int, value: int | bytes) -> None:
        self._call(self.hs.setsockopt, level, opt, value)

    def setsockopt(self, level: int, opt: int, value: Any) -> None:
        if level == SOL_SOCKET:
            super().setsockopt(level, opt, value)  # checks, and keeps our copy
            if opt in _HOST_BOOLS:
                self._host_set(level, opt, 1 if opt in self.so_options else 0)
            elif opt == pysocket.SO_RCVLOWAT:
                self._host_set(level, opt, self.rcv_lowat)
            return
        if (level == pysocket.IPPROTO_IPV6 and self.family == pysocket.AF_INET6 and opt in _IPV6_STRUCT_OPTS
                and isinstance(value, (bytes, bytearray))):
            self._host_set(level, opt, bytes(value))
            return
        if level == pysocket.IPPROTO_TCP and opt == TCP_CONGESTION and self.so_type == pysocket.SOCK_STREAM:
            name = value.encode() if isinstance(value, str) else value
            if not isinstance(name, (bytes, bytearray)):
                raise kerr(errno.EINVAL)
            self._host_set(level, opt, bytes(name))
            return
        v = _int_value(value)
        if level == pysocket.IPPROTO_TCP and self.so_type == pysocket.SOCK_STREAM and opt in _TCP_OPTS:
            self._host_set(level, opt, v)
        elif level == pysocket.IPPROTO_IP and self.family == pysocket.AF_INET and opt in _IP_OPTS:
            if not 0 <= v <= 255:
                raise kerr(errno.EINVAL)
            self._host_set(level, opt, v)
        elif level == pysocket.IPPROTO_IPV6 and self.family == pysocket.AF_INET6 and opt in _IPV6_OPTS:
            self._host_set(level, opt, v)
        else:
            raise kerr(errno.ENOPROTOOPT)

    def getsockopt(self, level: int, opt: int, buflen: int = 0) -> Any:
        if level == pysocket.IPPROTO_TCP and self.so_type == pysocket.SOCK_STREAM and opt == TCP_INFO:
            info = tcp_info_from_linux(self._call(self.hs.getsockopt, level, opt, _LINUX_TCP_INFO.size))
            return info[:buflen] if buflen else struct.unpack_from("=i", info)[0]
        if level == pysocket.IPPROTO_TCP and self.so_type == pysocket.SOCK_STREAM and opt == TCP_CONGESTION:
            return self._call(self.hs.getsockopt, level, opt, buflen or TCP_CA_NAME_MAX)
        if level == SOL_SOCKET:
            if opt != pysocket.SO_ERROR:
                return super().getsockopt(level, opt, buflen)
            v = self.take_error() or self._call(self.hs.getsockopt, level, opt)
        elif ((level == pysocket.IPPROTO_TCP and self.so_type == pysocket.SOCK_STREAM and opt in _TCP_OPTS)
              or (level == pysocket.IPPROTO_IP and self.family == pysocket.AF_INET and opt in _IP_OPTS)
              or (level == pysocket.IPPROTO_IPV6 and self.family == pysocket.AF_INET6 and opt in _IPV6_OPTS)):
            v = self._call(self.hs.getsockopt, level, opt)
        else:
            raise kerr(errno.ENOPROTOOPT)
        if buflen:
            return struct.pack("i", v)[:buflen]
        return v

    def sb_resized(self) -> None:
        self._host_set(SOL_SOCKET, pysocket.SO_RCVBUF, self.rcv_hiwat)
        self._host_set(SOL_SOCKET, pysocket.SO_SNDBUF, self.snd_hiwat)

    def linger_changed(self) -> None:
        onoff, secs = self.linger
        if secs < 0:
            raise kerr(errno.EINVAL)
        self._host_set(SOL_SOCKET, pysocket.SO_LINGER, struct.pack("ii", onoff, secs))


# Linux's TCP states (include/net/tcp_states.h) -> NetBSD's TCPS_* (tcp_fsm.h).
_LINUX_TCP_STATES = {1: TcpState.ESTABLISHED, 2: TcpState.SYN_SENT, 3: TcpState.SYN_RECEIVED,
                     4: TcpState.FIN_WAIT_1, 5: TcpState.FIN_WAIT_2, 6: TcpState.TIME_WAIT,
                     7: TcpState.CLOSED, 8: TcpState.CLOSE_WAIT, 9: TcpState.LAST_ACK,
                     10: TcpState.LISTEN, 11: TcpState.CLOSING}
_LINUX_TCP_INFO = struct.Struct("=8B24I")  # the fields up to tcpi_total_retrans


def tcp_info_from_linux(raw: Any) -> bytes:
    """The host's (Linux's) ``struct tcp_info`` as the in-kernel stack gives TCP_INFO
    (NetBSD's layout, tcp_ctloutput.TCP_INFO_STRUCT): the shared fields as they are but
    the state (NetBSD's numbers) and ssthresh (bytes, not segments); the retransmission
    count from tcpi_total_retrans; what Linux does not report there stays zero."""
    f = list(_LINUX_TCP_INFO.unpack_from(raw.ljust(_LINUX_TCP_INFO.size, b"\0")))
    f[0] = int(_LINUX_TCP_STATES.get(f[0], TcpState.CLOSED))
    f[7] = 0
    mss = f[10]
    f[25] = min(f[25] * mss, 0xFFFFFFFF)   # tcpi_snd_ssthresh
    total_retrans = f.pop()
    return TCP_INFO_STRUCT.pack(*f, 0, 0, 0, 0, 0, total_retrans, 0, 0)
