"""In-process wires: L2 segments joining interfaces of kernels in one process.

An interface of cloner ``wire`` joins the segment its linkstr names. The segment behaves
as a learning switch: unicast frames go to the port that last sent from that MAC, others
are flooded. Delivery is a ``call_soon`` on the receiving kernel's scheduler (thread-safe
when the kernels run on different schedulers), so a frame never re-enters the sender's
call stack and the order of events is deterministic. Frames are immutable ``bytes`` shared
by sender and receivers, so nothing is serialised or copied on the way.

A wire takes an MTU up to 65535 - 14 (``ifconfig wire0 mtu 65000``). A port joined with
``linkstr SEGMENT,tso`` also offers offloads, like a veth pair with GSO: TCP superframes
(``Mbuf`` with ``M_CSUM_TSOv4`` or ``M_CSUM_TSOv6``) and partial TCP checksums cross the
wire as they are,
and a port with offloads receives them through ``deliver_offload`` (one TCP input per
superframe, no checksum verification).

The wire carries what it is given and cuts nothing: a ``tso`` port reports its
offloads (``capabilities``) only while every other port on its segment takes them too,
so toward a plain port the sender's IP cuts its superframes into MSS-sized frames with
full checksums (``IpOutput``, ``ip_gso``), as it does for any interface without TSO. The
segment tells the ports when that changes (a port joins or leaves), and each tells its
interface (``Ifnet.take_offload_caps``). A frame with offload state that reaches a plain
port all the same (sent while a plain port was joining, from another thread) is
dropped and counted (``offload_drops``).
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpnet.ifnet import (
    M_CSUM_PARTIAL,
    IFCAP_CSUM_TCPv4_Rx,
    IFCAP_CSUM_TCPv4_Tx,
    IFCAP_CSUM_TCPv6_Rx,
    IFCAP_TSOv4,
    IFCAP_TSOv6,
    M_CSUM_TCPv4,
    M_CSUM_TCPv6,
    M_CSUM_TSOv4,
    M_CSUM_TSOv6,
    Mbuf,
)

if TYPE_CHECKING:
    from rumpkern.sched import Scheduler

WIRE_MTU_MAX = 65535 - 14

_segments: dict[str, WireSegment] = {}
_lock = threading.Lock()


class WireSegment:
    def __init__(self, name: str) -> None:
        self.name = name
        self.ports: list[WireDriver] = []
        self.by_mac: dict[bytes, WireDriver] = {}
        self.frames = 0

    def forward(self, src: WireDriver, frame: bytes, csum_flags: int = 0, segsz: int = 0) -> None:
        self.frames += 1
        smac = frame[6:12]
        if self.by_mac.get(smac) is not src:
            self.by_mac[smac] = src
        # The sender runs on its own scheduler's CPU: a receiver on that scheduler is
        # posted to with call_soon, one elsewhere with call_soon_threadsafe.
        via = src._sched
        ports: list[WireDriver] | tuple[WireDriver] = self.ports
        if not frame[0] & 1:
            dst = self.by_mac.get(frame[0:6])
            if dst is not None:
                ports = (dst,)          # learned unicast: that port only (none if it is src)
        for port in ports:
            if port is not src:
                if csum_flags:
                    port._receive_offload(frame, csum_flags, segsz, via)
                else:
                    port._receive(frame, via)


    def ports_changed(self) -> None:
        """A port joined or left (called with ``_lock`` held): each ``tso`` port offers
        its offloads only while every other port takes them."""
        for port in self.ports:
            if isinstance(port, TsoWireDriver):
                port.peers_take_offloads(all(isinstance(p, TsoWireDriver) for p in self.ports if p is not port))


def segment(name: str) -> WireSegment:
    with _lock:
        seg = _segments.get(name)
        if seg is None:
            seg = _segments[name] = WireSegment(name)
        return seg


def segments() -> dict[str, WireSegment]:
    return dict(_segments)


class WireDriver:
    """The LinkDriver of a ``wireN`` interface (``TsoWireDriver`` for ``SEGMENT,tso``)."""

    def __new__(cls, segment_name: str, *args: Any, **kwargs: Any) -> WireDriver:
        if cls is WireDriver and segment_name.partition(",")[2] in ("tso", "offload"):
            cls = TsoWireDriver
        return object.__new__(cls)

    def __init__(self, segment_name: str) -> None:
        name, _, opt = segment_name.partition(",")
        if opt not in ("", "tso", "offload"):
            raise OSError(errno.EINVAL, f"unknown wire linkstr option {opt!r}")
        self.segment_name = name
        self._seg: WireSegment | None = None
        self._sched: Scheduler | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self.oerrors = 0
        self.offload_drops = 0   # frames with offload state this plain port could not take

    def attach(self, sched: Scheduler, deliver: Callable[[bytes], None]) -> None:
        self._sched = sched
        self._deliver = deliver
        seg = segment(self.segment_name)
        with _lock:
            seg.ports.append(self)
            seg.ports_changed()
        self._seg = seg

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        seg = self._seg
        if seg is None:
            self.oerrors += 1
            return
        if type(frame) is Mbuf:
            if frame.csum_flags:
                seg.forward(self, bytes(frame), frame.csum_flags, frame.segsz)
                return
            frame = bytes(frame)
        elif not isinstance(frame, bytes):
            frame = bytes(frame)
        seg.forward(self, frame)

    def _receive_offload(self, frame: bytes, csum_flags: int, segsz: int, via: Scheduler | None) -> None:
        """A frame with offload state at a port without offloads: the sender decided on
        offloads this port does not have (it was joining meanwhile). A NIC cannot take it."""
        self.offload_drops += 1

    def _receive(self, frame: bytes, via: Scheduler | None) -> None:
        sched, deliver = self._sched, self._deliver
        if sched is None or deliver is None:
            return
        if sched is via:
            sched.loop.call_soon(deliver, frame)
        else:
            sched.loop.call_soon_threadsafe(deliver, frame)

    def detach(self) -> None:
        seg, self._seg = self._seg, None
        if seg is None:
            return
        with _lock:
            if self in seg.ports:
                seg.ports.remove(self)
            for mac, port in list(seg.by_mac.items()):
                if port is self:
                    del seg.by_mac[mac]
            if not seg.ports:
                _segments.pop(seg.name, None)
            seg.ports_changed()
        self._deliver = None


class TsoWireDriver(WireDriver):
    """A wire port with TSO and TCP checksum offload (``linkstr SEGMENT,tso``); it offers
    them (``capabilities``, ``tso_mtu``) while every other port of the segment takes them."""

    CAPABILITIES = IFCAP_TSOv4 | IFCAP_CSUM_TCPv4_Rx | IFCAP_CSUM_TCPv4_Tx | IFCAP_TSOv6 | IFCAP_CSUM_TCPv6_Rx
    TSO_MTU = 65535
    offload_mode = "tso"

    def __init__(self, segment_name: str) -> None:
        super().__init__(segment_name)
        self._deliver_offload: Callable[[bytes, int, int], None] | None = None
        self._caps_changed: Callable[[], None] | None = None
        self.capabilities = self.CAPABILITIES
        self.tso_mtu = self.TSO_MTU

    def attach_offload(self, deliver_offload: Callable[[bytes, int, int], None]) -> None:
        self._deliver_offload = deliver_offload

    def notify_caps(self, caps_changed: Callable[[], None]) -> None:
        """Called by ``Ifnet.attach_driver``: whom to tell when the offloads offered change."""
        self._caps_changed = caps_changed

    def peers_take_offloads(self, yes: bool) -> None:
        """What the segment says of the other ports: offer the offloads or not."""
        caps, tso_mtu = (self.CAPABILITIES, self.TSO_MTU) if yes else (0, 0)
        if (caps, tso_mtu) != (self.capabilities, self.tso_mtu):
            self.capabilities, self.tso_mtu = caps, tso_mtu
            if self._caps_changed is not None:
                self._caps_changed()

    def _receive_offload(self, frame: bytes, csum_flags: int, segsz: int, via: Scheduler | None) -> None:
        sched, deliver = self._sched, self._deliver_offload
        if sched is None or deliver is None:
            return
        # Over the wire a superframe stands for segments the sender checksummed (or
        # asked the "NIC" to): the receiver trusts it as a host's GRO frame.
        flags = (M_CSUM_TCPv6 if csum_flags & M_CSUM_TSOv6 else M_CSUM_TCPv4) | (csum_flags & M_CSUM_PARTIAL)
        size = segsz if csum_flags & (M_CSUM_TSOv4 | M_CSUM_TSOv6) else 0
        if sched is via:
            sched.loop.call_soon(deliver, frame, flags, size)
        else:
            sched.loop.call_soon_threadsafe(deliver, frame, flags, size)

    def detach(self) -> None:
        super().detach()
        self._deliver_offload = None
        self._caps_changed = None
