"""Socket system calls (NetBSD's ``uipc_syscalls.c``, ``sys_generic.c``, ``kern_descrip.c``).

Each ``sys_*`` takes the scheduler's per-call context and the calling process first. The
net faction's ``net`` component fills the kernel's syscall table with them
(``SYSCALLS``; ``rumpkern/syscalls.py``); the kernel's ``rump_sys_*`` methods run them
through :meth:`Scheduler.syscall`.
"""

from __future__ import annotations

import errno
import os
import select
import socket as pysocket
import struct
import termios
from collections.abc import Sequence
from typing import Any

from rumpkern.component import SyscallImpl
from rumpkern.errno import kerr
from rumpkern.lwproc import FNONBLOCK, File, Proc, close_file
from rumpkern.sched import Sleep, SyscallCtx, WaitChannel
from rumpkern.syscalls import sys_close
from rumpnet.if_control import ifioctl
from rumpnet.if_ioctl import iocgroup
from rumpnet.net_kernel import net_kernel
from rumpnet.uipc_socket import MSG_KNOWN, POLLNVAL, Cmsg, Socket

# close(2) and the last close of a file are the kern's (kern_descrip.c); a socket's part
# in them is Socket.close and Socket.close_wait (SO_LINGER).
__all__ = ["close_file", "sys_close"]

SOCK_NONBLOCK = getattr(pysocket, "SOCK_NONBLOCK", 0o4000)
SOCK_CLOEXEC = getattr(pysocket, "SOCK_CLOEXEC", 0o2000000)
FD_CLOEXEC = 1
O_NONBLOCK = os.O_NONBLOCK
# FIONREAD/FIONBIO: Linux's values (what Python's termios exports) and NetBSD's.
FIONREAD = {termios.FIONREAD, 0x4004667F}
FIONBIO = {termios.FIONBIO, 0x8004667E}
SIOCATMARK = {0x8905, 0x40047307}


class pollfd:  # noqa: N801  (the C name)
    """A ``struct pollfd`` for ``rump_sys_poll``: ``revents`` is filled in."""

    __slots__ = ("fd", "events", "revents")

    def __init__(self, fd: int, events: int, revents: int = 0) -> None:
        self.fd = fd
        self.events = events
        self.revents = revents

    def __repr__(self) -> str:
        return f"pollfd(fd={self.fd}, events={self.events:#x}, revents={self.revents:#x})"


def int_arg(name: str, v: Any) -> int:
    """An integer argument (Python's socket constants are ints). Anything else is a
    TypeError naming the argument, as Python's socket module answers: no BSD call receives
    a string where it takes an int, so no errno describes it."""
    if isinstance(v, int):
        return int(v)
    raise TypeError(f"{name} must be an int (such as a constant of Python's socket module), "
                    f"not {type(v).__name__} {v!r}")


def getsock(p: Proc, fd: int) -> Socket:
    fp = p.fdt.get(fd)
    if not isinstance(fp.obj, Socket):
        raise kerr(errno.ENOTSOCK)
    return fp.obj


def _data(buf: Any) -> bytes | memoryview:
    if isinstance(buf, (bytes, memoryview)):
        return buf
    if isinstance(buf, (bytearray,)):
        return bytes(buf)
    if isinstance(buf, str):
        raise kerr(errno.EFAULT, "data must be bytes-like, not str")
    try:
        return memoryview(buf)
    except TypeError:
        raise kerr(errno.EFAULT, "data must be bytes-like") from None


def sys_socket(ctx: SyscallCtx, p: Proc, domain: int, type_: int, protocol: int = 0) -> int:
    k = p.kernel
    domain, type_, protocol = int_arg("domain", domain), int_arg("type", type_), int_arg("protocol", protocol)
    nonblock = bool(type_ & SOCK_NONBLOCK)
    cloexec = bool(type_ & SOCK_CLOEXEC)
    base_type = type_ & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    dom = net_kernel(k).domains.get(domain)
    if dom is None:
        raise kerr(errno.EAFNOSUPPORT)
    so = dom.socket(base_type, protocol)
    so.nbio = nonblock
    fp = File(so, (FNONBLOCK if nonblock else 0) | (FD_CLOEXEC << 16 if cloexec else 0))
    try:
        return p.fdt.alloc(fp)
    except OSError:
        so.close()
        raise


def sys_bind(ctx: SyscallCtx, p: Proc, fd: int, addr: Any) -> None:
    getsock(p, fd).bind(addr)


def sys_connect(ctx: SyscallCtx, p: Proc, fd: int, addr: Any) -> None:
    getsock(p, fd).connect(ctx, addr)


def sys_listen(ctx: SyscallCtx, p: Proc, fd: int, backlog: int) -> None:
    getsock(p, fd).listen(int_arg("backlog", backlog))


def sys_accept(ctx: SyscallCtx, p: Proc, fd: int) -> tuple[int, Any]:
    so = getsock(p, fd)
    nso, addr = so.accept(ctx)
    try:
        # NetBSD do_sys_accept: the new file inherits the listener's FNONBLOCK (the
        # protocol already copied it to nso.nbio); F_GETFL must agree with it.
        return p.fdt.alloc(File(nso, FNONBLOCK if nso.nbio else 0)), addr
    except OSError:
        nso.close()
        raise


def sys_sendto(ctx: SyscallCtx, p: Proc, fd: int, data: Any, flags: int, addr: Any) -> int:
    so = getsock(p, fd)
    flags = int_arg("flags", flags)
    if flags & ~MSG_KNOWN:
        raise kerr(errno.EOPNOTSUPP)
    return so.send(ctx, _data(data), flags, addr)


def sys_recvfrom(ctx: SyscallCtx, p: Proc, fd: int, n: int, flags: int) -> tuple[bytes, Any]:
    so = getsock(p, fd)
    n, flags = int_arg("len", n), int_arg("flags", flags)
    if n < 0:
        raise kerr(errno.EINVAL)
    if flags & ~MSG_KNOWN:
        raise kerr(errno.EOPNOTSUPP)
    return so.recv(ctx, n, flags)


def sys_recvmsg(ctx: SyscallCtx, p: Proc, fd: int, n: int, ancbufsize: int = 0,
                flags: int = 0) -> tuple[bytes, list[Cmsg], int, Any]:
    """``recvmsg(2)``, shaped as Python's ``socket.recvmsg``."""
    so = getsock(p, fd)
    if n < 0 or ancbufsize < 0:
        raise kerr(errno.EINVAL)
    if flags & ~MSG_KNOWN:
        raise kerr(errno.EOPNOTSUPP)
    return so.recvmsg(ctx, int(n), int(ancbufsize), int(flags))


def sys_sendmsg(ctx: SyscallCtx, p: Proc, fd: int, buffers: Sequence[Any], ancdata: Sequence[Any] = (),
                flags: int = 0, addr: Any = None) -> int:
    """``sendmsg(2)``, shaped as Python's ``socket.sendmsg``: the buffers are sent as one
    datagram (or stream write); ancillary data is the protocol's to take (EINVAL for what
    it does not know)."""
    so = getsock(p, fd)
    if flags & ~MSG_KNOWN:
        raise kerr(errno.EOPNOTSUPP)
    data = b"".join(bytes(_data(b)) for b in buffers)
    cmsgs: list[Cmsg] = []
    for item in ancdata:
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise kerr(errno.EINVAL, "ancillary data items are (level, type, data)")
        cmsgs.append((int(item[0]), int(item[1]), bytes(_data(item[2]))))
    return so.sendmsg(ctx, data, cmsgs, int(flags), addr)


def sys_shutdown(ctx: SyscallCtx, p: Proc, fd: int, how: int) -> None:
    getsock(p, fd).shutdown(int_arg("how", how))


def sys_recv(ctx: SyscallCtx, p: Proc, fd: int, n: int, flags: int) -> bytes:
    data, _ = sys_recvfrom(ctx, p, fd, n, flags)
    return data


def sys_getsockname(ctx: SyscallCtx, p: Proc, fd: int) -> Any:
    return getsock(p, fd).getsockname()


def sys_getpeername(ctx: SyscallCtx, p: Proc, fd: int) -> Any:
    return getsock(p, fd).getpeername()


def sys_setsockopt(ctx: SyscallCtx, p: Proc, fd: int, level: int, opt: int, value: Any) -> None:
    getsock(p, fd).setsockopt(int_arg("level", level), int_arg("optname", opt), value)


def sys_getsockopt(ctx: SyscallCtx, p: Proc, fd: int, level: int, opt: int, buflen: int = 0) -> Any:
    return getsock(p, fd).getsockopt(int_arg("level", level), int_arg("optname", opt), int_arg("buflen", buflen))


def _poll_entry(entry: Any) -> tuple[int, int]:
    if isinstance(entry, pollfd):
        return entry.fd, entry.events
    if isinstance(entry, (list, tuple)) and len(entry) >= 2:
        return int(entry[0]), int(entry[1])
    raise kerr(errno.EFAULT, "poll entries are pollfd objects or [fd, events, revents] lists")


def _set_revents(entry: Any, revents: int) -> None:
    if isinstance(entry, pollfd):
        entry.revents = revents
    elif isinstance(entry, list):
        if len(entry) >= 3:
            entry[2] = revents
        else:
            entry.append(revents)


def sys_poll(ctx: SyscallCtx, p: Proc, fds: Sequence[Any], nfds: int | None, timeout: int) -> int:
    """``poll(2)``: timeout in milliseconds, -1 for none. ``revents`` is written into
    ``pollfd`` objects and ``[fd, events, revents]`` lists."""
    entries = list(fds)[: len(fds) if nfds is None else int(nfds)]
    ready = 0
    socks: list[Socket | None] = []
    for entry in entries:
        fd, events = _poll_entry(entry)
        if fd < 0:
            _set_revents(entry, 0)
            socks.append(None)
            continue
        try:
            so = getsock(p, fd)
        except OSError:
            _set_revents(entry, POLLNVAL)
            socks.append(None)
            ready += 1
            continue
        socks.append(so)
        rev = so.poll_events() & (events | select.POLLERR | select.POLLHUP)
        _set_revents(entry, rev)
        if rev:
            ready += 1
    chan: WaitChannel | None = ctx.data
    if ready or timeout == 0 or ctx.timed_out:
        if chan is not None:
            for sock in socks:
                if sock is not None and chan in sock.poll_chans:
                    sock.poll_chans.remove(chan)
        return ready
    if chan is None:
        chan = ctx.data = WaitChannel("poll")
    for sock in socks:
        if sock is not None and chan not in sock.poll_chans:
            sock.poll_chans.append(chan)
    raise Sleep(chan, None if timeout < 0 else timeout / 1000.0)


def sys_fcntl(ctx: SyscallCtx, p: Proc, fd: int, cmd: int, arg: int = 0) -> int:
    import fcntl as hostfcntl

    fp = p.fdt.get(fd)
    if cmd == hostfcntl.F_GETFL:
        return os.O_RDWR | (O_NONBLOCK if fp.flags & FNONBLOCK else 0)
    if cmd == hostfcntl.F_SETFL:
        nb = bool(int(arg) & O_NONBLOCK)
        fp.flags = (fp.flags | FNONBLOCK) if nb else (fp.flags & ~FNONBLOCK)
        if isinstance(fp.obj, Socket):
            fp.obj.nbio = nb
        return 0
    if cmd == hostfcntl.F_GETFD:
        return (fp.flags >> 16) & FD_CLOEXEC
    if cmd == hostfcntl.F_SETFD:
        fp.flags = (fp.flags & 0xFFFF) | ((int(arg) & FD_CLOEXEC) << 16)
        return 0
    raise kerr(errno.EINVAL)


def sys_ioctl(ctx: SyscallCtx, p: Proc, fd: int, request: int, arg: Any = 0) -> int:
    fp = p.fdt.get(fd)
    so = fp.obj
    if not isinstance(so, Socket):
        raise kerr(errno.ENOTTY)
    if request in FIONREAD:
        return so.nread()
    if request in FIONBIO:
        nb = bool(struct.unpack("i", arg)[0] if isinstance(arg, (bytes, bytearray)) else arg)
        so.nbio = nb
        fp.flags = (fp.flags | FNONBLOCK) if nb else (fp.flags & ~FNONBLOCK)
        return 0
    if request in SIOCATMARK:
        return int(getattr(so, "atmark", lambda: 0)())
    if iocgroup(request) == "i":   # soo_ioctl: interface requests go to ifioctl
        return ifioctl(net_kernel(p.kernel), so, request, arg)
    raise kerr(errno.ENOTTY)


# The entries of the syscall table the net faction provides (rumpkern.syscalls names).
SYSCALLS: dict[str, SyscallImpl] = {
    "socket": sys_socket, "bind": sys_bind, "connect": sys_connect, "listen": sys_listen,
    "accept": sys_accept, "sendto": sys_sendto, "recv": sys_recv, "recvfrom": sys_recvfrom,
    "recvmsg": sys_recvmsg, "sendmsg": sys_sendmsg,
    "shutdown": sys_shutdown, "getsockname": sys_getsockname, "getpeername": sys_getpeername,
    "setsockopt": sys_setsockopt, "getsockopt": sys_getsockopt, "poll": sys_poll, "fcntl": sys_fcntl,
    "ioctl": sys_ioctl,
}
