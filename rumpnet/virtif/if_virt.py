"""virtif: an Ethernet interface bound to a host tap device (NetBSD's ``if_virt.c``).

NetBSD's rump ``virtN`` opens the host's ``/dev/tap`` through the rumpuser hypercall
layer (``virtif_user.c``); here the driver opens a Linux tap (``IFF_TAP|IFF_NO_PI``) with
python-pytun and does the I/O itself on the raw fd: pytun raises ``pytun.Error`` rather
than ``BlockingIOError`` on EAGAIN and only writes ``bytes``.

Receive: the fd is non-blocking and registered with ``sched.loop.add_reader``; each
readiness callback drains up to ``batch`` frames with ``os.read`` (stopping early at
EAGAIN) and hands them to ``deliver`` one by one, then returns to the loop.

``deliver`` runs on the loop; an exception it raises propagates to the loop's exception
handler and ends that batch (the frames not yet read stay queued on the tap).

Transmit: one ``os.write`` per frame; a full tap queue (EAGAIN) or any other I/O error
counts ``oerrors`` (and ``oqdrops`` for EAGAIN) and drops the frame, never blocks or raises.

``vnet_hdr=True`` opens the tap with ``IFF_VNET_HDR`` and carries the 10-byte
``struct virtio_net_hdr`` in front of every frame, without any offload yet
(``offload_mode == "none"``): received frames have it stripped (completing a checksum
the host left partial), sent frames get an all-zero one. TSO/GRO superframes through
``TUNSETOFFLOAD`` are a later step.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from rumpnet.virtif import hostif

if TYPE_CHECKING:
    import asyncio


class SchedLike(Protocol):
    """What the driver uses of ``rumpkern.sched.Scheduler``."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def now(self) -> float: ...


# struct virtio_net_hdr (<linux/virtio_net.h>), the header IFF_VNET_HDR adds by default.
VNET_HDR = struct.Struct("=BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start, csum_offset
VNET_HDR_LEN = VNET_HDR.size  # 10
VIRTIO_NET_HDR_F_NEEDS_CSUM = 1
VIRTIO_NET_HDR_GSO_NONE = 0
_ZERO_VNET_HDR = bytes(VNET_HDR_LEN)

DEFAULT_BATCH = 64
# Big enough for any frame the host may queue (a 64 KB MTU tap), whatever the MTU now.
DEFAULT_BUFSIZE = 65536 + 14 + 4


class VirtifDriver:
    """The LinkDriver of a ``virtN`` interface: one host tap named ``tapname``.

    The tap is opened (created if absent, as NetBSD's virtif creates its tap) and its
    host side brought up when the driver is made; ``attach`` starts delivering frames,
    ``detach`` closes the fd (a non-persistent tap then disappears from the host).
    """

    def __init__(self, tapname: str, vnet_hdr: bool = False, *, batch: int = DEFAULT_BATCH,
                 bufsize: int = DEFAULT_BUFSIZE, host_up: bool = True) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        self.tapname = tapname
        self.vnet_hdr = vnet_hdr
        self.offload_mode = "none"  # later: "csum", "tso" via TUNSETOFFLOAD
        self.batch = batch
        self.bufsize = bufsize
        self.host_up = host_up
        # counters (plain ints, read by tests and netstat)
        self.ipackets = 0
        self.ibytes = 0
        self.ierrors = 0
        self.iqdrops = 0
        self.opackets = 0
        self.obytes = 0
        self.oerrors = 0
        self.oqdrops = 0
        self.rx_wakeups = 0  # readiness callbacks that read at least one frame
        self.rx_batch_max = 0  # most frames drained by one callback
        self.last_error: OSError | None = None

        self._dev: Any = None  # pytun.TunTapDevice
        self._fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sched: SchedLike | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self._reading = False
        self.open()

    def __repr__(self) -> str:
        state = "attached" if self._reading else ("open" if self._fd >= 0 else "closed")
        return f"<VirtifDriver {self.tapname} {state}>"

    # -- host tap --------------------------------------------------------------------
    @property
    def fd(self) -> int:
        """The tap's fd, -1 when closed."""
        return self._fd

    @property
    def is_open(self) -> bool:
        return self._fd >= 0

    @property
    def attached(self) -> bool:
        return self._reading

    def open(self) -> None:
        """Open (creating if needed) the host tap; idempotent."""
        if self._fd >= 0:
            return
        import pytun

        flags = pytun.IFF_TAP | pytun.IFF_NO_PI
        if self.vnet_hdr:
            flags |= pytun.IFF_VNET_HDR
        try:
            dev = pytun.TunTapDevice(name=self.tapname, flags=flags)
        except pytun.Error as e:  # an OSError subclass with errno set
            raise OSError(e.errno or errno.EIO, f"cannot open tap {self.tapname!r}: {e.strerror or e}") from e
        fd = dev.fileno()
        try:
            os.set_blocking(fd, False)
            if self.vnet_hdr:
                import fcntl

                fcntl.ioctl(fd, hostif.TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            self.tapname = dev.name  # the kernel may have filled in a "tap%d" template
            if self.host_up:
                hostif.link_set_up(self.tapname)
        except BaseException:
            dev.close()
            raise
        self._dev = dev
        self._fd = fd

    def host_features(self) -> set[str]:
        """What the host's tun driver supports (``TUNGETFEATURES``), as ``IFF_*`` names."""
        return hostif.tun_features(self._fd if self._fd >= 0 else None)

    def host_flags(self) -> set[str]:
        """The flags this tap was opened with (``TUNGETIFF``)."""
        if self._fd < 0:
            return set()
        return hostif.feature_names(hostif.tun_getiff(self._fd)[1])

    # -- LinkDriver ------------------------------------------------------------------
    def attach(self, sched: SchedLike, deliver: Callable[[bytes], None]) -> None:
        if self._reading:
            raise OSError(errno.EBUSY, f"{self.tapname}: already attached")
        self.open()
        self._sched = sched
        self._loop = sched.loop
        self._deliver = deliver
        self._loop.add_reader(self._fd, self._rx_ready)
        self._reading = True

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        fd = self._fd
        if fd < 0:
            self.oerrors += 1
            return
        try:
            if self.vnet_hdr:
                n = os.writev(fd, (_ZERO_VNET_HDR, frame)) - VNET_HDR_LEN
            else:
                n = os.write(fd, frame)
        except BlockingIOError:
            self.oerrors += 1
            self.oqdrops += 1
            return
        except OSError as e:
            self.oerrors += 1
            self.last_error = e
            return
        self.opackets += 1
        self.obytes += n

    def detach(self) -> None:
        self._stop_reading()
        self._deliver = None
        self._sched = None
        dev, self._dev = self._dev, None
        self._fd = -1
        if dev is not None:
            try:
                dev.close()
            except OSError:
                pass

    close = detach

    def __enter__(self) -> VirtifDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def stats(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in (
            "ipackets", "ibytes", "ierrors", "iqdrops", "opackets", "obytes", "oerrors", "oqdrops",
            "rx_wakeups", "rx_batch_max")}

    # -- receive ---------------------------------------------------------------------
    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self._fd)
        self._loop = None

    def _rx_ready(self) -> None:
        fd, bufsize, deliver = self._fd, self.bufsize, self._deliver
        n = 0
        while n < self.batch and deliver is not None:
            try:
                data = os.read(fd, bufsize)
            except BlockingIOError:
                break
            except OSError as e:
                # EBADFD: the tap was destroyed under us (its namespace went away), EIO, ...
                # Stop reading rather than spin on a permanently readable fd.
                self.ierrors += 1
                self.last_error = e
                self._stop_reading()
                break
            if not data:
                self._stop_reading()
                break
            n += 1
            if self.vnet_hdr:
                frame = self._strip_vnet_hdr(data)
                if frame is None:
                    continue
            else:
                frame = data
            self.ipackets += 1
            self.ibytes += len(frame)
            deliver(frame)
            deliver = self._deliver  # deliver may have detached us
        if n:
            self.rx_wakeups += 1
            if n > self.rx_batch_max:
                self.rx_batch_max = n

    def _strip_vnet_hdr(self, data: bytes) -> bytes | None:
        if len(data) < VNET_HDR_LEN + 14:
            self.ierrors += 1
            return None
        flags, gso_type, _hdr_len, _gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
        if gso_type != VIRTIO_NET_HDR_GSO_NONE:
            # Only with offloads enabled (TUNSETOFFLOAD), which this driver does not yet do.
            self.iqdrops += 1
            return None
        if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return data[VNET_HDR_LEN:]
        frame = complete_partial_csum(data[VNET_HDR_LEN:], csum_start, csum_offset)
        if frame is None:
            self.ierrors += 1
        return frame


def complete_partial_csum(frame: bytes | bytearray, csum_start: int, csum_offset: int) -> bytes | None:
    """Finish a checksum the host left partial (``VIRTIO_NET_HDR_F_NEEDS_CSUM``): the field
    at ``csum_start + csum_offset`` holds the pseudo-header sum; the internet checksum of
    ``frame[csum_start:]`` goes there (as Linux's ``skb_checksum_help``). ``None`` if the
    offsets do not fit the frame."""
    at = csum_start + csum_offset
    if csum_start >= len(frame) or at + 2 > len(frame) or csum_offset < 0:
        return None
    from rumpnet.netinet.in_cksum import in_cksum

    out = bytearray(frame)
    struct.pack_into("!H", out, at, in_cksum(memoryview(out)[csum_start:]) or 0xFFFF)
    return bytes(out)
