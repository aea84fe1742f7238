"""Where hijacked sockets live: an in-process kernel, or a ``rump_server`` via rumpclient.

A backend makes kernel sockets (always non-blocking in the kernel), runs the socket calls
on them by name (``"recvfrom"``, ``"sendto"``, ... as ``rump_sys_*`` takes them), and keeps
each socket's :class:`~rumpnet.hijack.hsocket.ReadySignal` equal to the kernel socket's
readiness:

* :class:`LocalBackend`: calls run on the kernel's CPU; after each call, and whenever the
  socket is woken up (a wait channel of ours sits in ``so.poll_chans``), the readiness is
  read with ``poll_events()`` and mirrored. No thread of its own.
* :class:`RemoteBackend`: after each call the readiness is read with a zero-timeout
  ``rump_sys_poll``; one watcher thread blocks in ``rump_sys_poll`` in the server for the
  events the sockets do not have yet, and is woken (to change what it waits for) by a
  datagram to a UDP socket of its own in the remote kernel.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket as pysocket
import threading
from typing import TYPE_CHECKING, Any

from rumpkern.lwproc import Proc
from rumpkern.sched import SyscallCtx, WaitChannel
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.uipc_socket import POLLERR, POLLHUP, POLLIN, POLLIN_SET, POLLNVAL, POLLOUT, POLLOUT_SET

if TYPE_CHECKING:
    from rumpnet.hijack.hsocket import HijackSocket

SOCK_NONBLOCK = getattr(pysocket, "SOCK_NONBLOCK", 0o4000)

_LOCAL_OPS = {
    "bind": S.sys_bind, "connect": S.sys_connect, "listen": S.sys_listen, "accept": S.sys_accept,
    "sendto": S.sys_sendto, "recvfrom": S.sys_recvfrom, "shutdown": S.sys_shutdown,
    "getsockname": S.sys_getsockname, "getpeername": S.sys_getpeername, "setsockopt": S.sys_setsockopt,
    "getsockopt": S.sys_getsockopt, "ioctl": S.sys_ioctl, "fcntl": S.sys_fcntl,
}


def _ready(ev: int) -> tuple[bool, bool]:
    return bool(ev & (POLLIN_SET | POLLERR | POLLHUP)), bool(ev & (POLLOUT_SET | POLLERR | POLLHUP))


class _ReadinessChannel(WaitChannel):
    """Kept in the kernel socket's ``poll_chans``: a wakeup schedules a readiness sync."""

    __slots__ = ("backend", "hs")

    def __init__(self, backend: LocalBackend, hs: HijackSocket) -> None:
        super().__init__("hijack")
        self.backend = backend
        self.hs = hs

    def wakeup(self) -> None:
        super().wakeup()
        self.backend.schedule_sync(self.hs)


class LocalBackend:
    remote = False

    def __init__(self, kernel: Any, proc: Proc) -> None:
        self.kernel = kernel
        self.proc = proc
        self.sched = kernel.sched

    def families(self) -> set[int]:
        return set(self.kernel.domains)

    # -- on the CPU ----------------------------------------------------------------------------
    def _sync(self, hs: HijackSocket) -> None:
        so = hs._so
        if so is None or hs._sig.closed:
            return
        if so.closed:
            hs._sig.set(True, True)
            return
        hs._sig.set(*_ready(so.poll_events()))

    def schedule_sync(self, hs: HijackSocket) -> None:
        if not hs._sync_pending:
            hs._sync_pending = True
            self.sched.call_soon(self._deferred_sync, hs)

    def _deferred_sync(self, hs: HijackSocket) -> None:
        hs._sync_pending = False
        self._sync(hs)

    def _attach(self, ctx: SyscallCtx, hs: HijackSocket, kfd: int | None) -> int:
        p = self.proc
        if kfd is None:
            kfd = S.sys_socket(ctx, p, hs._family, hs._type | SOCK_NONBLOCK, hs._proto)
        else:
            S.sys_fcntl(ctx, p, kfd, fcntl.F_SETFL, os.O_NONBLOCK)
        so = S.getsock(p, kfd)
        hs._chan = _ReadinessChannel(self, hs)
        so.poll_chans.append(hs._chan)
        hs._so = so
        hs._kfd = kfd
        self._sync(hs)
        return kfd

    # -- from any thread -----------------------------------------------------------------------
    def _run(self, fn: Any, *args: Any) -> Any:
        """Run a (never sleeping: the kernel fd is non-blocking) call on the CPU; directly
        when the caller already is the CPU (code on the kernel's loop, a finalizer there)."""
        if self.sched.holds_cpu():
            return fn(SyscallCtx(), *args)
        return self.sched.syscall(fn, *args)

    def attach(self, hs: HijackSocket, kfd: int | None) -> int:
        return self._run(self._attach, hs, kfd)  # type: ignore[no-any-return]

    def call(self, hs: HijackSocket, name: str, *args: Any) -> Any:
        fn: Any = _LOCAL_OPS[name]

        def run(ctx: SyscallCtx) -> Any:
            try:
                return fn(ctx, self.proc, hs._kfd, *args)
            finally:
                self._sync(hs)

        return self._run(run)

    def dup(self, hs: HijackSocket) -> int:
        def dup_fd(ctx: SyscallCtx) -> int:
            fp = self.proc.fdt.get(hs._kfd)
            nfd = self.proc.fdt.alloc(fp)
            fp.refcount += 1
            return nfd

        return self._run(dup_fd)  # type: ignore[no-any-return]

    def close_fd(self, kfd: int) -> None:
        if not self.kernel.halted:
            self._run(lambda ctx: S.sys_close(ctx, self.proc, kfd))

    def detach(self, hs: HijackSocket) -> None:
        def close_k(ctx: SyscallCtx) -> None:
            so = hs._so
            if so is not None and hs._chan in so.poll_chans:
                so.poll_chans.remove(hs._chan)
            hs._so = None
            try:
                S.sys_close(ctx, self.proc, hs._kfd)
            except OSError:
                pass  # the process already exited (the hijack ended)

        if not self.kernel.halted:
            self._run(close_k)

    def stop(self) -> None:
        pass


class RemoteBackend:
    """Sockets in a ``rump_server``'s kernel, through a :class:`rumpnet.rumpclient.RumpClient`."""

    remote = True

    def __init__(self, client: Any) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._socks: dict[int, HijackSocket] = {}
        self._families: dict[int, bool] = {}
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._wake_fd: int | None = None
        self._wake_addr: Any = None
        try:
            fd = client.rump_sys_socket(pysocket.AF_INET, pysocket.SOCK_DGRAM | SOCK_NONBLOCK, 0)
            try:
                client.rump_sys_bind(fd, ("127.0.0.1", 0))
                self._wake_addr = client.rump_sys_getsockname(fd)
                self._wake_fd = fd
            except OSError:
                client.rump_sys_close(fd)
        except OSError:
            pass  # no loopback in that kernel: the watcher polls with a short timeout

    def families(self) -> set[int]:
        out: set[int] = set()
        for fam in (pysocket.AF_INET, pysocket.AF_INET6):
            if fam not in self._families:
                try:
                    fd = self.client.rump_sys_socket(fam, pysocket.SOCK_DGRAM, 0)
                    self.client.rump_sys_close(fd)
                    self._families[fam] = True
                except OSError:
                    self._families[fam] = False
            if self._families[fam]:
                out.add(fam)
        return out

    def _sync(self, hs: HijackSocket) -> None:
        if hs._sig.closed:
            return
        entry = [[hs._kfd, POLLIN | POLLOUT, 0]]
        try:
            self.client.rump_sys_poll(entry, 1, 0)
        except OSError:
            hs._sig.set(True, True)  # make waiters retry and see the error
            return
        rev = entry[0][2]
        r, w = _ready(rev) if not rev & POLLNVAL else (True, True)
        was = hs._sig.readable, hs._sig.writable
        hs._sig.set(r, w)
        if (was[0] and not r) or (was[1] and not w):
            self.kick()  # the watcher must now wait for what we lost

    def kick(self) -> None:
        if self._wake_fd is not None:
            try:
                self.client.rump_sys_sendto(self._wake_fd, b"k", pysocket.MSG_DONTWAIT, self._wake_addr)
            except OSError:
                pass

    def _watch(self) -> None:
        c = self.client
        while not self._stopped:
            with self._lock:
                socks = list(self._socks.values())
            entries: list[tuple[HijackSocket, list[int]]] = []
            for hs in socks:
                ev = (0 if hs._sig.readable else POLLIN) | (0 if hs._sig.writable else POLLOUT)
                if ev and not hs._sig.closed:
                    entries.append((hs, [hs._kfd, ev, 0]))
            fds = [e for _, e in entries]
            if self._wake_fd is not None:
                fds.append([self._wake_fd, POLLIN, 0])
            try:
                c.rump_sys_poll(fds, len(fds), 1000 if self._wake_fd is not None else 50)
            except OSError:
                if self._stopped:
                    return
                threading.Event().wait(0.05)
                continue
            for hs, e in entries:
                rev = e[2]
                if rev and not rev & POLLNVAL:
                    r, w = _ready(rev)
                    hs._sig.raise_ready(r, w)
            if self._wake_fd is not None and fds[-1][2]:
                while True:
                    try:
                        c.rump_sys_recv(self._wake_fd, 64, pysocket.MSG_DONTWAIT)
                    except OSError:
                        break

    def attach(self, hs: HijackSocket, kfd: int | None) -> int:
        c = self.client
        if kfd is None:
            kfd = c.rump_sys_socket(hs._family, hs._type | SOCK_NONBLOCK, hs._proto)
        else:
            c.rump_sys_fcntl(kfd, fcntl.F_SETFL, os.O_NONBLOCK)
        hs._kfd = kfd
        with self._lock:
            self._socks[kfd] = hs
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="rumphijack-watch", daemon=True)
                self._thread.start()
        self._sync(hs)
        self.kick()
        return kfd

    def call(self, hs: HijackSocket, name: str, *args: Any) -> Any:
        try:
            return getattr(self.client, "rump_sys_" + name)(hs._kfd, *args)
        finally:
            self._sync(hs)

    def dup(self, hs: HijackSocket) -> int:
        raise OSError(errno.EOPNOTSUPP, "dup() of a socket in a remote kernel")

    def close_fd(self, kfd: int) -> None:
        self.client.rump_sys_close(kfd)

    def detach(self, hs: HijackSocket) -> None:
        with self._lock:
            if self._socks.get(hs._kfd) is hs:
                del self._socks[hs._kfd]
        try:
            self.client.rump_sys_close(hs._kfd)
        except OSError:
            pass

    def stop(self) -> None:
        """The hijack ends: close the sockets it made (a process exiting) and the watcher."""
        with self._lock:
            socks = list(self._socks.values())
        for hs in socks:
            try:
                hs._real_close()
            except OSError:
                pass
        self._stopped = True
        self.kick()
        t = self._thread
        if t is not None:
            t.join(5)
        if self._wake_fd is not None:
            try:
                self.client.rump_sys_close(self._wake_fd)
            except OSError:
                pass
            self._wake_fd = None
