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
``struct virtio_net_hdr`` in front of every frame. Without offloads
(``offload_mode == "none"``) received frames have it stripped (completing a checksum the
host left partial) and sent frames get an all-zero one.

``offload=True`` (or ``"tso"``; ``"csum"`` for checksums only) also asks the host for
offloads with ``TUNSETOFFLOAD`` (``TUN_F_CSUM|TUN_F_TSO4|TUN_F_TSO6``), and the tap then
moves 64 KB superframes both ways:

* receive: the host hands over GSO/GRO superframes (``gso_type`` TCPV4 or TCPV6,
  ``gso_size`` the MSS) and leaves TCP checksums partial (``NEEDS_CSUM``) or vouches for
  them (``DATA_VALID``); such frames go to ``Ifnet._deliver_offload(frame, csum_flags,
  segsz)`` with ``M_CSUM_TCPv4`` or ``M_CSUM_TCPv6`` so that IP and TCP skip
  verification and TCP gets one input call per superframe (netinet6 takes IPv6 ones whole
  when they are for us, and cuts those it forwards: ``ip6_gso``). Partial checksums of
  other protocols are completed here. Plain frames take the plain ``deliver(frame)`` path.
* transmit: a frame that is an :class:`~rumpnet.ifnet.Mbuf` carrying ``M_CSUM_TSOv4``
  (or ``M_CSUM_TSOv6``) and/or ``M_CSUM_PARTIAL`` goes out with ``NEEDS_CSUM``
  (``csum_start``/``csum_offset``) and, for TSO, ``gso_type`` TCPV4 (TCPV6) and
  ``gso_size``: the host segments and checksums it.
  Header and frame go out in one ``os.writev``. The driver cuts nothing: IP asks only
  for the offloads ``capabilities`` reports (``ip_output.tx_offloads``); a frame asking
  for others is dropped and counted in ``oerrors``.

If the host refuses (no ``IFF_VNET_HDR``, ``TUNSETOFFLOAD`` failing) the driver falls back
to fewer offloads or plain frames; ``offload_mode`` says which: ``"tso"``, ``"csum"`` or
``"none"``, and ``capabilities`` holds the ``IFCAP_*`` bits the interface reports.
"""

from __future__ import annotations

import errno
import os
import struct
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from rumpnet.ifnet import (
    M_CSUM_PARTIAL,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    M_CSUM_UDPv4,
    Mbuf,
)
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
VIRTIO_NET_HDR_F_DATA_VALID = 2
VIRTIO_NET_HDR_GSO_NONE = 0
VIRTIO_NET_HDR_GSO_TCPV4 = 1
VIRTIO_NET_HDR_GSO_UDP = 3
VIRTIO_NET_HDR_GSO_TCPV6 = 4
VIRTIO_NET_HDR_GSO_UDP_L4 = 5
VIRTIO_NET_HDR_GSO_ECN = 0x80
_TH_CWR = 0x80
_ZERO_VNET_HDR = bytes(VNET_HDR_LEN)

# TUNSETOFFLOAD bits (<linux/if_tun.h>)
TUN_F_CSUM = 0x01
TUN_F_TSO4 = 0x02
TUN_F_TSO6 = 0x04
TUN_F_TSO_ECN = 0x08
TUN_F_UFO = 0x10
TUN_F_USO4 = 0x20
TUN_F_USO6 = 0x40

OFFLOAD_MODES = ("none", "csum", "tso")
# The largest IP packet (IPv4, or IPv6 header and payload) handed to the host as one TSO
# superframe.
TSO_MTU = 65535

DEFAULT_BATCH = 64
# Big enough for any frame the host may queue (a 64 KB MTU tap or a 64 KB superframe
# behind a vnet header), whatever the MTU now.
DEFAULT_BUFSIZE = VNET_HDR_LEN + 14 + 65535 + 4
_ETH = 14
_TCP_CSUM_OFF = 16
_IP6_HDR_LEN = 40
_TCP6_START = _ETH + _IP6_HDR_LEN    # a TCP header straight after the IPv6 header
# TSO on output, per family: (the Mbuf's M_CSUM_TSO* flag, virtio's gso_type, the
# TUN_F_* bit the host must have granted).
_TSO_FLAGS = ((M_CSUM_TSOv4, VIRTIO_NET_HDR_GSO_TCPV4, TUN_F_TSO4),
              (M_CSUM_TSOv6, VIRTIO_NET_HDR_GSO_TCPV6, TUN_F_TSO6))


class VirtifDriver:
    """The LinkDriver of a ``virtN`` interface: one host tap named ``tapname``.

    The tap is opened (created if absent, as NetBSD's virtif creates its tap) and its
    host side brought up when the driver is made; ``attach`` starts delivering frames,
    ``detach`` closes the fd (a non-persistent tap then disappears from the host).
    """

    def __init__(self, tapname: str, vnet_hdr: bool | None = None, *, offload: bool | str = False,
                 batch: int = DEFAULT_BATCH, bufsize: int = DEFAULT_BUFSIZE, host_up: bool = True) -> None:
        if batch < 1:
            raise ValueError("batch must be >= 1")
        if "," in tapname:
            # linkstr options (``ifconfig virt0 linkstr tap0,offload``): "offload",
            # "offload=tso|csum|none", "nooffload"; interface names have no commas.
            tapname, *opts = tapname.split(",")
            for opt in opts:
                key, _, val = opt.partition("=")
                if key == "offload":
                    offload = val or True
                elif key == "nooffload" and not val:
                    offload = False
                else:
                    raise OSError(errno.EINVAL, f"unknown virtif linkstr option {opt!r}")
        if offload is True:
            offload = "tso"
        elif offload is False or offload is None:
            offload = "none"
        if offload not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES} or a bool, not {offload!r}")
        self.tapname = tapname
        # offload implies the vnet header unless the caller insists on none (then the
        # driver falls back to plain frames, as on a host that refuses IFF_VNET_HDR).
        self.vnet_hdr = bool(vnet_hdr) if vnet_hdr is not None else offload != "none"
        self.offload_requested = offload
        self.offload_mode = "none"  # what the host granted: "none", "csum" or "tso"
        self.tun_offload = 0  # TUN_F_* bits set with TUNSETOFFLOAD
        self.capabilities = 0  # IFCAP_* bits for the interface
        self.tso_mtu = 0
        self.offload_error: OSError | None = None  # why the host refused, if it did
        self.host_uso = False  # the host takes TUN_F_USO4/6 (probed, not used)
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
        self.rx_gso = 0  # superframes received (gso_type TCPV4 or TCPV6)
        self.rx_gso6 = 0  # of which TCPV6
        self.rx_csum_trusted = 0  # frames whose checksum the host did or vouched for
        self.rx_csum_sw = 0  # partial checksums completed here
        self.tx_gso = 0  # superframes handed to the host for segmentation
        self.tx_gso6 = 0  # of which TCPV6
        self.tx_csum_offload = 0  # frames whose TCP checksum the host completes
        self.last_error: OSError | None = None
        self._deliver_offload: Callable[[Any, int, int], None] | None = None

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

        if self.vnet_hdr and self.offload_requested != "none":
            # TUNGETFEATURES: a host whose tun driver lacks IFF_VNET_HDR gets plain frames.
            try:
                if not hostif.tun_features_mask() & hostif.IFF_VNET_HDR:
                    self.vnet_hdr = False
                    self.offload_error = OSError(errno.EOPNOTSUPP, "host tun has no IFF_VNET_HDR")
            except OSError as e:
                self.offload_error = e
        flags = pytun.IFF_TAP | pytun.IFF_NO_PI
        if self.vnet_hdr:
            flags |= pytun.IFF_VNET_HDR
        try:
            dev = pytun.TunTapDevice(name=self.tapname, flags=flags)
        except pytun.Error as e:  # an OSError subclass with errno set
            if not (self.vnet_hdr and self.offload_requested != "none" and e.errno == errno.EINVAL):
                raise OSError(e.errno or errno.EIO, f"cannot open tap {self.tapname!r}: {e.strerror or e}") from e
            # The tap exists with other flags (a persistent tap without IFF_VNET_HDR):
            # take it as it is, with plain frames.
            self.vnet_hdr = False
            self.offload_error = OSError(e.errno, f"IFF_VNET_HDR refused: {e.strerror or e}")
            try:
                dev = pytun.TunTapDevice(name=self.tapname, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
            except pytun.Error as e2:
                raise OSError(e2.errno or errno.EIO, f"cannot open tap {self.tapname!r}: {e2.strerror or e2}") from e2
        fd = dev.fileno()
        try:
            os.set_blocking(fd, False)
            if self.vnet_hdr:
                import fcntl

                fcntl.ioctl(fd, hostif.TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
            self._fd = fd
            self._negotiate_offload(self.offload_requested)
            self.tapname = dev.name  # the kernel may have filled in a "tap%d" template
            if self.host_up:
                hostif.link_set_up(self.tapname)
        except BaseException:
            self._fd = -1
            dev.close()
            raise
        self._dev = dev
        self._fd = fd

    # -- offloads --------------------------------------------------------------------
    def _negotiate_offload(self, want: str) -> None:
        """``TUNSETOFFLOAD`` the strongest set of offloads up to ``want`` the host takes;
        set ``offload_mode``, ``tun_offload``, ``capabilities`` and ``tso_mtu``."""
        from rumpnet import ifnet

        self.offload_mode = "none"
        self.tun_offload = 0
        self.capabilities = 0
        self.tso_mtu = 0
        if want == "none" or not self.vnet_hdr:
            if want != "none" and self.offload_error is None:
                self.offload_error = OSError(errno.EOPNOTSUPP, "tap has no IFF_VNET_HDR")
            return
        import fcntl

        # Probe for UDP segmentation offload (Linux 6.2+) and record it, but do not keep
        # it on: nothing in rumpnet makes or takes UDP superframes, so it would only
        # move Linux's segmentation work into Python.
        try:
            fcntl.ioctl(self._fd, hostif.TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6
                        | TUN_F_USO4 | TUN_F_USO6)
            self.host_uso = True
        except OSError:
            self.host_uso = False
        tries = []
        if want == "tso":
            # TSO for both families; a host without TSO6 (never seen) still gives TSO4.
            tries += [("tso", TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6), ("tso", TUN_F_CSUM | TUN_F_TSO4)]
        tries.append(("csum", TUN_F_CSUM))
        for mode, bits in tries:
            try:
                fcntl.ioctl(self._fd, hostif.TUNSETOFFLOAD, bits)
            except OSError as e:
                self.offload_error = e
                continue
            self.offload_mode = mode
            self.tun_offload = bits
            # What the stack makes use of: TCP skips checks of host-checked/partial sums,
            # partial TCP checksums and TSO go out to the host (UDP still verifies).
            caps = ifnet.IFCAP_CSUM_TCPv4_Rx | ifnet.IFCAP_CSUM_TCPv4_Tx | ifnet.IFCAP_CSUM_TCPv6_Rx
            if bits & TUN_F_TSO4:
                caps |= ifnet.IFCAP_TSOv4
                self.tso_mtu = TSO_MTU
            if bits & TUN_F_TSO6:
                caps |= ifnet.IFCAP_TSOv6
            self.capabilities = caps
            return
        try:  # leave the tap in a known state
            fcntl.ioctl(self._fd, hostif.TUNSETOFFLOAD, 0)
        except OSError:
            pass

    def set_offload(self, mode: bool | str) -> str:
        """Change offloads at run time (the vnet header itself cannot be added to an open
        tap); returns the mode granted. The interface's ``capabilities`` follow on the
        next attach; :meth:`Ifnet.attach_driver` reads them."""
        if mode is True:
            mode = "tso"
        elif mode is False:
            mode = "none"
        if mode not in OFFLOAD_MODES:
            raise ValueError(f"offload must be one of {OFFLOAD_MODES}")
        if self._fd < 0:
            raise OSError(errno.EBADF, "tap is closed")
        self.offload_requested = mode
        self._negotiate_offload(mode)
        if mode == "none" and self.vnet_hdr:
            import fcntl

            try:
                fcntl.ioctl(self._fd, hostif.TUNSETOFFLOAD, 0)
            except OSError:
                pass
        return self.offload_mode

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
        self._loop.add_reader(self._fd, self._rx_ready_vnet if self.vnet_hdr else self._rx_ready)
        self._reading = True

    def attach_offload(self, deliver_offload: Callable[[Any, int, int], None]) -> None:
        """Called by ``Ifnet.attach_driver``: where frames with offload state go."""
        self._deliver_offload = deliver_offload

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        fd = self._fd
        if fd < 0:
            self.oerrors += 1
            return
        try:
            if self.vnet_hdr:
                if type(frame) is Mbuf:
                    hdr = self._tx_vnet_hdr(frame)
                    if hdr is None:
                        return
                else:
                    hdr = _ZERO_VNET_HDR
                n = os.writev(fd, (hdr, frame)) - VNET_HDR_LEN
            elif type(frame) is Mbuf and frame.csum_flags:
                self.oerrors += 1       # offloads this tap does not have: IP never asks
                return
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

    def _tx_vnet_hdr(self, m: Mbuf) -> bytes | None:
        """The vnet header asking the host to finish ``m`` (TSO and/or checksum)."""
        fl = m.csum_flags
        start = m.csum_start
        if not fl or start < _ETH + 20 or start + 20 > len(m):
            return _ZERO_VNET_HDR
        for tso_flag, gso_type, tun_bit in _TSO_FLAGS:
            if not fl & tso_flag or not m.segsz:
                continue
            if not self.tun_offload & tun_bit:
                self.oerrors += 1       # IP asks only for the offloads the host granted
                return None
            thl = (m[start + 12] >> 4) << 2
            self.tx_gso += 1
            self.tx_gso6 += gso_type == VIRTIO_NET_HDR_GSO_TCPV6
            # CWR on a superframe goes on its first segment only (RFC 3168 6.1.2); the host
            # is told so as Linux's tcp_output tells its devices (SKB_GSO_TCP_ECN).
            gso = gso_type | (VIRTIO_NET_HDR_GSO_ECN if m[start + 13] & _TH_CWR else 0)
            return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, gso, start + thl, m.segsz, start,
                                 _TCP_CSUM_OFF)
        if not self.tun_offload & TUN_F_CSUM:
            self.oerrors += 1
            return None
        self.tx_csum_offload += 1
        return VNET_HDR.pack(VIRTIO_NET_HDR_F_NEEDS_CSUM, VIRTIO_NET_HDR_GSO_NONE, 0, 0, start,
                             _TCP_CSUM_OFF)

    def detach(self) -> None:
        self._stop_reading()
        self._deliver = None
        self._deliver_offload = None
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
            "rx_wakeups", "rx_batch_max", "rx_gso", "rx_gso6", "rx_csum_trusted", "rx_csum_sw", "tx_gso",
            "tx_gso6", "tx_csum_offload")}

    # -- receive ---------------------------------------------------------------------
    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            loop = self._loop
            if loop is not None and not loop.is_closed():
                loop.remove_reader(self._fd)
        self._loop = None

    def _read_batch(self) -> Iterator[bytes]:
        """Frames read from the tap until EAGAIN, the batch cap or a detach. A read error
        (EBADFD: the tap was destroyed under us, its namespace gone; EIO, ...) or EOF is
        counted and stops reading rather than spin on a permanently readable fd."""
        fd, bufsize = self._fd, self.bufsize
        for _ in range(self.batch):
            if self._deliver is None:
                return
            try:
                data = os.read(fd, bufsize)
            except BlockingIOError:
                return
            except OSError as e:
                self.ierrors += 1
                self.last_error = e
                self._stop_reading()
                return
            if not data:
                self._stop_reading()
                return
            yield data

    def _batch_done(self, n: int) -> None:
        if n:
            self.rx_wakeups += 1
            if n > self.rx_batch_max:
                self.rx_batch_max = n

    def _rx_ready(self) -> None:
        """Drain a plain tap (vnet-header taps are drained by _rx_ready_vnet)."""
        n = nbytes = 0
        for data in self._read_batch():
            n += 1
            nbytes += len(data)
            deliver = self._deliver
            assert deliver is not None      # _read_batch yields only while attached
            deliver(data)
        self.ipackets += n
        self.ibytes += nbytes
        self._batch_done(n)

    def _rx_ready_vnet(self) -> None:
        """Drain the tap in vnet-header mode: plain frames to ``deliver``, superframes and
        frames with host-checked or partial checksums to ``deliver_offload``."""
        n = dropped = nbytes = 0
        for data in self._read_batch():
            n += 1
            deliver = self._deliver
            assert deliver is not None      # _read_batch yields only while attached
            offload = self._deliver_offload if self.offload_mode != "none" else None
            if len(data) < VNET_HDR_LEN + _ETH:
                self.ierrors += 1
                dropped += 1
                continue
            if not data[0] and not data[1]:
                # A plain frame: drivers deliver bytes (one copy of at most an MTU).
                frame = data[VNET_HDR_LEN:]
                nbytes += len(frame)
                deliver(frame)
            elif offload is None:
                if data[1] and self.offload_mode != "none":
                    # A superframe but nobody to take it whole (a driver attached
                    # without attach_offload): cut it into wire frames here.
                    k = self._rx_gso_software(data, deliver)
                    if not k:
                        dropped += 1
                        continue
                    nbytes += k
                else:
                    stripped = self._strip_vnet_hdr(data)
                    if stripped is None:
                        dropped += 1
                        continue
                    nbytes += len(stripped)
                    deliver(stripped)
            else:
                if not self._rx_offload(data, offload):
                    dropped += 1
                    continue
                nbytes += len(data) - VNET_HDR_LEN
        self.ipackets += n - dropped
        self.ibytes += nbytes
        self._batch_done(n)

    def _rx_offload(self, data: bytes, offload: Callable[[Any, int, int], None]) -> bool:
        """A frame with a non-zero vnet header in offload mode; False if dropped."""
        flags, gso_type, _hdr_len, gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
        frame = memoryview(data)[VNET_HDR_LEN:]
        gso = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
        tcp_csum = _tcp_csum_flag(frame, csum_start, csum_offset)
        if gso != VIRTIO_NET_HDR_GSO_NONE:
            if gso not in _GSO_TCP or _GSO_TCP[gso] != tcp_csum or not gso_size:
                # UDP superframes (no UDP GSO asked for), or a type its headers belie.
                self.iqdrops += 1
                return False
            self.rx_gso += 1
            self.rx_gso6 += gso == VIRTIO_NET_HDR_GSO_TCPV6
            self.rx_csum_trusted += 1
            offload(frame, tcp_csum | M_CSUM_PARTIAL if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM
                    else tcp_csum, gso_size)
            return True
        if flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            if tcp_csum:
                self.rx_csum_trusted += 1
                offload(frame, tcp_csum | M_CSUM_PARTIAL, 0)
                return True
            done = complete_partial_csum(frame, csum_start, csum_offset)
            if done is None:
                self.ierrors += 1
                return False
            self.rx_csum_sw += 1
            deliver = self._deliver
            if deliver is not None:
                deliver(done)
            return True
        if flags & VIRTIO_NET_HDR_F_DATA_VALID:
            self.rx_csum_trusted += 1
            offload(frame, M_CSUM_TCPv4 | M_CSUM_UDPv4 | M_CSUM_TCPv6, 0)
            return True
        deliver = self._deliver
        if deliver is not None:
            deliver(data[VNET_HDR_LEN:])
        return True

    def _rx_gso_software(self, data: bytes, deliver: Callable[[bytes], None]) -> int:
        """Deliver a TCP superframe (either family) as MSS-sized frames; bytes delivered
        (0: dropped)."""
        from rumpnet.netinet.ip_gso import GsoError, tcp_segment_superframe
        from rumpnet.netinet6.ip6_gso import tcp6_segment_superframe

        _flags, gso_type, _hl, gso_size, _cs, _co = VNET_HDR.unpack_from(data)
        gso = gso_type & ~VIRTIO_NET_HDR_GSO_ECN
        if gso not in _GSO_TCP or not gso_size:
            self.iqdrops += 1
            return 0
        cut = tcp6_segment_superframe if gso == VIRTIO_NET_HDR_GSO_TCPV6 else tcp_segment_superframe
        try:
            segs = cut(memoryview(data)[VNET_HDR_LEN + _ETH:], gso_size)
        except GsoError:
            self.ierrors += 1
            return 0
        self.rx_gso += 1
        self.rx_gso6 += gso == VIRTIO_NET_HDR_GSO_TCPV6
        head = data[VNET_HDR_LEN:VNET_HDR_LEN + _ETH]
        n = 0
        for seg in segs:
            frame = head + seg
            n += len(frame)
            deliver(frame)
        return n

    def _strip_vnet_hdr(self, data: bytes) -> bytes | None:
        if len(data) < VNET_HDR_LEN + 14:
            self.ierrors += 1
            return None
        flags, gso_type, _hdr_len, _gso_size, csum_start, csum_offset = VNET_HDR.unpack_from(data)
        if gso_type != VIRTIO_NET_HDR_GSO_NONE:
            # The host sends superframes only once TUNSETOFFLOAD granted TSO; unexpected here.
            self.iqdrops += 1
            return None
        if not flags & VIRTIO_NET_HDR_F_NEEDS_CSUM:
            return data[VNET_HDR_LEN:]
        frame = complete_partial_csum(data[VNET_HDR_LEN:], csum_start, csum_offset)
        if frame is None:
            self.ierrors += 1
        return frame


# TCP superframe types taken whole on input: gso_type -> the M_CSUM_* flag its frames
# carry (what _tcp_csum_flag finds in their headers).
_GSO_TCP = {VIRTIO_NET_HDR_GSO_TCPV4: M_CSUM_TCPv4, VIRTIO_NET_HDR_GSO_TCPV6: M_CSUM_TCPv6}


def _tcp_csum_flag(frame: memoryview, csum_start: int, csum_offset: int) -> int:
    """``M_CSUM_TCPv4`` or ``M_CSUM_TCPv6`` when ``frame`` is TCP straight over IPv4 or
    IPv6 and the host's checksum offsets point at its TCP checksum field; else 0 (the
    checksum is then completed here, or the superframe dropped)."""
    if csum_offset != _TCP_CSUM_OFF or len(frame) < _TCP6_START:
        return 0
    if frame[12] == 0x08 and frame[13] == 0x00:
        ok = frame[_ETH + 9] == 6 and csum_start == _ETH + ((frame[_ETH] & 0xF) << 2)
        return M_CSUM_TCPv4 if ok else 0
    if frame[12] == 0x86 and frame[13] == 0xDD:
        return M_CSUM_TCPv6 if frame[_ETH + 6] == 6 and csum_start == _TCP6_START else 0
    return 0


def complete_partial_csum(frame: bytes | bytearray | memoryview, csum_start: int,
                          csum_offset: int) -> bytes | None:
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
