"""Processes with their own fd tables (rump's lwproc).

A kernel starts with proc0. ``rfork`` makes a new process whose fd table is shared with,
copied from, or empty relative to the current one (RUMP_RFFDG / RUMP_RFCFDG), so a remote
client of ``rump_server`` can be a process of its own.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from rumpkern.errno import kerr
from rumpkern.unawaited import not_an_fd

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel
    from rumpkern.sched import Sleep

RUMP_RFFDG = 0x01  # copy the fd table
RUMP_RFCFDG = 0x02  # start with an empty fd table

FNONBLOCK = 0x04  # NetBSD's O_NONBLOCK value; os.O_NONBLOCK is accepted too
MAXFILES = 1024


class FileOps(Protocol):
    """What the kern needs of the object behind a file descriptor (NetBSD's ``struct
    fileops``): a socket of the net faction, an etfs file of the vfs component, ..."""

    def close(self) -> None:
        """The last reference to the file is gone (``fo_close``)."""

    def close_wait(self) -> Sleep | None:
        """After close(): what close(2) must sleep on before it returns (a socket with
        SO_LINGER: NetBSD's soclose sleeps until the connection is gone or the linger
        time has passed), or None."""


class File:
    """An open file: the object behind it (a socket, an etfs file) plus per-open flags."""

    __slots__ = ("obj", "flags", "refcount")

    def __init__(self, obj: FileOps, flags: int = 0) -> None:
        self.obj = obj
        self.flags = flags
        self.refcount = 1


class FdTable:
    """A process's descriptor table: fd -> File."""

    __slots__ = ("files", "refcount")

    def __init__(self) -> None:
        self.files: dict[int, File] = {}
        self.refcount = 1

    def alloc(self, fp: File, lowest: int = 0) -> int:
        """Put ``fp`` in the lowest free slot at or above ``lowest``; returns the fd (EMFILE when full)."""
        fd = lowest
        while fd in self.files:
            fd += 1
        if fd >= MAXFILES:
            raise kerr(errno.EMFILE)
        self.files[fd] = fp
        return fd

    def get(self, fd: int) -> File:
        """The File of ``fd`` (EBADF for a number that is no descriptor; TypeError for what is no number)."""
        try:
            return self.files[fd]
        except (KeyError, TypeError):
            raise _bad_fd(fd) from None

    def remove(self, fd: int) -> File:
        """Take ``fd`` out of the table and return its File (EBADF / TypeError as :meth:`get`)."""
        try:
            return self.files.pop(fd)
        except (KeyError, TypeError):
            raise _bad_fd(fd) from None

    def copy(self) -> FdTable:
        """A copy of the table sharing the open files (RUMP_RFFDG)."""
        new = FdTable()
        for fd, fp in self.files.items():
            fp.refcount += 1
            new.files[fd] = fp
        return new


def _bad_fd(fd: object) -> Exception:
    """EBADF for a number that is no open descriptor; TypeError for what is no number (an
    un-awaited call's awaitable, a string), which no errno describes."""
    if isinstance(fd, int):
        return kerr(errno.EBADF)
    return not_an_fd(fd)


class Proc:
    """A process of a kernel: pid, fd table, the kernel, its command name."""

    __slots__ = ("pid", "fdt", "kernel", "comm")

    def __init__(self, kernel: Kernel, pid: int, fdt: FdTable, comm: str = "rump") -> None:
        self.kernel = kernel
        self.pid = pid
        self.fdt = fdt
        self.comm = comm


class ProcTable:
    """The processes of a kernel (proc0 first)."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.procs: dict[int, Proc] = {}
        self._next_pid = 1
        self.proc0 = self._new(FdTable(), "proc0")

    def _new(self, fdt: FdTable, comm: str) -> Proc:
        pid = self._next_pid
        self._next_pid += 1
        p = Proc(self.kernel, pid, fdt, comm)
        self.procs[pid] = p
        return p

    def rfork(self, parent: Proc, flags: int, comm: str = "rump") -> Proc:
        """A new process from ``parent``: its fd table copied (RUMP_RFFDG), shared (0) or empty (RUMP_RFCFDG)."""
        if flags & RUMP_RFFDG and flags & RUMP_RFCFDG:
            raise kerr(errno.EINVAL)
        if flags & RUMP_RFCFDG:
            fdt = FdTable()
        elif flags & RUMP_RFFDG:
            fdt = parent.fdt.copy()
        else:
            fdt = parent.fdt
            fdt.refcount += 1
        return self._new(fdt, comm)

    def exit(self, p: Proc, close: Callable[[File], None] | None = None) -> None:
        """Release ``p``; files whose last reference goes are closed (with ``close`` when
        given, else :func:`close_file`)."""
        self.procs.pop(p.pid, None)
        p.fdt.refcount -= 1
        if p.fdt.refcount > 0:
            return
        for fd in sorted(p.fdt.files):
            fp = p.fdt.files.pop(fd)
            fp.refcount -= 1
            if fp.refcount == 0:
                (close or close_file)(fp)


def close_file(fp: File) -> None:
    """The last reference to ``fp`` is gone: close the object behind it."""
    fp.obj.close()
