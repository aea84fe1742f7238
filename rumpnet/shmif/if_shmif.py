"""shmifN: an Ethernet interface on a shmif bus file (NetBSD's ``if_shmem.c``).

:class:`ShmifDriver` is the LinkDriver of ``docs/ARCHITECTURE.md``. Frames sent go onto
the bus with the kernel's uptime as their timestamp (as NetBSD's getmicrouptime()); frames other senders put on the bus
are delivered in batches. The driver watches the bus file with inotify (``IN_MODIFY``,
which the writers' wake-up ``pwrite`` raises), registers the inotify fd with the
scheduler's loop and, when it is readable, drains the bus.

Unlike NetBSD's receive thread, the driver delivers every frame of other senders,
whatever its destination MAC: the interface above filters by address (and knows about
promiscuous mode). Frames shorter than an Ethernet header are dropped (``ierrors``), as
are frames larger than ``max_frame`` on transmit (``oerrors``): NetBSD peers accept
nothing beyond ETHER_MAX_LEN without the FCS (1514 bytes).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Protocol

from rumpnet.shmif.shmif_bus import ShmifBus

try:
    from inotify_simple import INotify
    from inotify_simple import flags as inotify_flags
except ImportError:  # pragma: no cover - inotify_simple is a dependency
    INotify = None
    inotify_flags = None

__all__ = ["ETHER_HDR_LEN", "SHMIF_MAX_FRAME", "ShmifDriver"]

ETHER_HDR_LEN = 14
SHMIF_MAX_FRAME = 1514  # ETHERMTU + ETHER_HDR_LEN: what NetBSD's shmif accepts
DRAIN_BATCH = 256  # frames per loop callback before yielding to the loop
POLL_INTERVAL = 0.05  # seconds, only when inotify is unavailable


class _Sched(Protocol):
    @property
    def loop(self) -> Any: ...

    def now(self) -> float: ...


class ShmifDriver:
    """The LinkDriver of a ``shmifN`` interface whose linkstr is ``path``.

    The bus is opened (created and initialised if needed) in the constructor, so a bad
    bus file fails at ``ifconfig shmif0 linkstr PATH`` time with ShmifBusError (an
    OSError with ENOEXEC, as NetBSD returns).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        sender_id: int | None = None,
        max_frame: int = SHMIF_MAX_FRAME,
        batch: int = DRAIN_BATCH,
        boottime: float = 0.0,
    ) -> None:
        self.path = os.fspath(path)
        self.boottime = boottime  # the kernel clock at boot: frames carry the kernel's uptime
        self.bus = ShmifBus(self.path, sender_id)
        self.max_frame = max_frame
        self.batch = batch
        self._sched: _Sched | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self._inotify: Any = None
        self._poll_handle: Any = None
        self._drain_pending = False
        self.ipackets = 0
        self.ierrors = 0
        self.opackets = 0
        self.oerrors = 0

    @property
    def linkstr(self) -> str:
        return self.path

    @property
    def attached(self) -> bool:
        return self._sched is not None

    def attach(self, sched: _Sched, deliver: Callable[[bytes], None]) -> None:
        if self._sched is not None:
            raise RuntimeError(f"shmif driver on {self.path} is already attached")
        if self.bus.closed:  # re-attached after a detach: open the bus again
            self.bus = ShmifBus(self.path, self.bus.sender_id)
        self._sched = sched
        self._deliver = deliver
        # As shmif_init: start reading at the current end of the bus.
        self.bus.seek_end()
        if INotify is not None:
            ino = INotify(nonblocking=True)
            ino.add_watch(self.path, inotify_flags.MODIFY)
            self._inotify = ino
            sched.loop.add_reader(ino.fileno(), self._readable)
        else:  # pragma: no cover
            self._poll_handle = sched.loop.call_later(POLL_INTERVAL, self._poll)

    def _readable(self) -> None:
        ino = self._inotify
        if ino is None:
            return
        try:
            ino.read(timeout=0)  # consume the events; the bus itself says what is new
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self.ierrors += 1
        self._drain()

    def _poll(self) -> None:  # pragma: no cover - only without inotify
        if self._sched is None:
            return
        self._drain()
        self._poll_handle = self._sched.loop.call_later(POLL_INTERVAL, self._poll)

    def _drain(self) -> None:
        """Deliver up to ``batch`` new frames; reschedule if more are waiting."""
        self._drain_pending = False
        deliver = self._deliver
        if deliver is None or self._sched is None:
            return
        try:
            frames = self.bus.read_new(self.batch)
        except (OSError, ValueError):
            self.ierrors += 1
            return
        for frame in frames:
            if len(frame) < ETHER_HDR_LEN:
                self.ierrors += 1
                continue
            self.ipackets += 1
            deliver(frame)
            if self._deliver is None:  # detached from within deliver
                return
        if len(frames) >= self.batch and not self._drain_pending:
            self._drain_pending = True
            self._sched.loop.call_soon(self._drain)

    def drain(self) -> int:
        """Read the bus now (without waiting for inotify); returns frames delivered."""
        before = self.ipackets
        self._drain()
        return self.ipackets - before

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        if self._sched is None or self.bus.closed:
            self.oerrors += 1
            return
        n = len(frame)
        if n < ETHER_HDR_LEN or n > self.max_frame:
            self.oerrors += 1
            return
        # if_shmem.c's shmif_start stamps each frame with getmicrouptime(): the time since
        # the rump kernel booted (shmif_dumpbus -p shows it as 1970-01-01 plus uptime).
        now = max(0.0, self._sched.now() - self.boottime)
        sec = int(now)
        usec = round((now - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        try:
            self.bus.send(frame, sec, usec)
        except (OSError, ValueError):
            self.oerrors += 1
            return
        self.opackets += 1

    def detach(self) -> None:
        sched, self._sched = self._sched, None
        self._deliver = None
        if self._inotify is not None:
            if sched is not None:
                try:
                    sched.loop.remove_reader(self._inotify.fileno())
                except (ValueError, OSError, RuntimeError):
                    pass
            self._inotify.close()
            self._inotify = None
        if self._poll_handle is not None:
            self._poll_handle.cancel()
            self._poll_handle = None
        self.bus.close()

    def __repr__(self) -> str:
        return f"<ShmifDriver {self.path!r} sender 0x{self.bus.sender_id:x}>"
