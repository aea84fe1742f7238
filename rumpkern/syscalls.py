"""The syscall table (NetBSD's ``syscalls.master`` and ``sysent``).

The kern core names the system calls and their result types; the implementations come
from whoever provides them: the kern itself (``close``, ``__sysctl``), or the components
that are loaded (the net faction's ``socket``, ``bind``..., the vfs component's ``open``,
``read``...). A kernel builds its table at boot from its components, so a call whose
provider is not loaded fails with ENOSYS, as a NetBSD kernel answers a call of a module
that is not loaded.

An implementation is ``fn(ctx, proc, *args)``: the scheduler's per-call context, the
calling process, then the call's arguments; it returns the result or raises
:class:`rumpkern.sched.Sleep` to wait (see ``rumpkern/sched.py``).
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Generic, TypeVar

from rumpkern.errno import kerr
from rumpkern.sched import SyscallCtx

if TYPE_CHECKING:
    from rumpkern.lwproc import FileOps, Proc

T = TypeVar("T")

# An address as Python's socket module writes it (("10.0.0.1", 7), a 4-tuple for
# AF_INET6, a path for AF_LOCAL): its shape belongs to the domain, not to the kern.
SockAddr = object
# What a call takes as data to send or write.
Buffer = bytes | bytearray | memoryview


class SysEnt(Generic[T]):
    """One entry of the table: its name and, for the type checker, its result type."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"SysEnt({self.name!r})"


SYS_socket: SysEnt[int] = SysEnt("socket")
SYS_bind: SysEnt[None] = SysEnt("bind")
SYS_connect: SysEnt[None] = SysEnt("connect")
SYS_listen: SysEnt[None] = SysEnt("listen")
SYS_accept: SysEnt[tuple[int, SockAddr]] = SysEnt("accept")
SYS_sendto: SysEnt[int] = SysEnt("sendto")
SYS_recv: SysEnt[bytes] = SysEnt("recv")
SYS_recvfrom: SysEnt[tuple[bytes, SockAddr]] = SysEnt("recvfrom")
# recvmsg(2)/sendmsg(2) in the shape of Python's socket.recvmsg/sendmsg: (data,
# [(level, type, data), ...] ancillary data, msg_flags, address).
SYS_recvmsg: SysEnt[tuple[bytes, list[tuple[int, int, bytes]], int, SockAddr]] = SysEnt("recvmsg")
SYS_sendmsg: SysEnt[int] = SysEnt("sendmsg")
SYS_shutdown: SysEnt[None] = SysEnt("shutdown")
SYS_close: SysEnt[None] = SysEnt("close")
SYS_getsockname: SysEnt[SockAddr] = SysEnt("getsockname")
SYS_getpeername: SysEnt[SockAddr] = SysEnt("getpeername")
SYS_setsockopt: SysEnt[None] = SysEnt("setsockopt")
SYS_getsockopt: SysEnt[int | bytes] = SysEnt("getsockopt")
SYS_poll: SysEnt[int] = SysEnt("poll")
SYS_fcntl: SysEnt[int] = SysEnt("fcntl")
SYS_ioctl: SysEnt[int] = SysEnt("ioctl")
SYS___sysctl: SysEnt[int | str | bytes] = SysEnt("__sysctl")
SYS_open: SysEnt[int] = SysEnt("open")
SYS_read: SysEnt[bytes] = SysEnt("read")
SYS_write: SysEnt[int] = SysEnt("write")
SYS_pread: SysEnt[bytes] = SysEnt("pread")
SYS_pwrite: SysEnt[int] = SysEnt("pwrite")
SYS_lseek: SysEnt[int] = SysEnt("lseek")
SYS_fstat: SysEnt[object] = SysEnt("fstat")
SYS_getdents: SysEnt[list[str]] = SysEnt("getdents")


def sys_nosys(name: str) -> OSError:
    """What a call without a provider fails with (NetBSD's ``sys_nosys``)."""
    return kerr(errno.ENOSYS, f"{name}: Function not implemented (no loaded component provides it)")


# -- close(2), the kern's own (kern_descrip.c) ------------------------------------------------


class _Closing:
    """sys_close's restart state in ctx.data (a type of its own, so that callers that run
    sys_close inside their own call and keep other things in ctx.data are not confused)."""

    __slots__ = ("obj",)

    def __init__(self, obj: FileOps) -> None:
        self.obj = obj


def sys_close(ctx: SyscallCtx, p: Proc, fd: int) -> None:
    if isinstance(ctx.data, _Closing):
        obj = ctx.data.obj
    else:
        fp = p.fdt.remove(fd)
        fp.refcount -= 1
        if fp.refcount > 0:
            return
        obj = fp.obj
        obj.close()
        wait = obj.close_wait()  # a socket with SO_LINGER: soclose sleeps
        if wait is None:
            return
        ctx.data = _Closing(obj)
        raise wait
    if ctx.timed_out:
        return
    wait = obj.close_wait()
    if wait is not None:
        raise wait
