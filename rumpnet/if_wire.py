"""In-process wires: L2 segments joining interfaces of kernels in one process.

An interface of cloner ``wire`` joins the segment its linkstr names. The segment behaves
as a learning switch: unicast frames go to the port that last sent from that MAC, others
are flooded. Delivery is a ``call_soon`` on the receiving kernel's scheduler (thread-safe
when the kernels run on different schedulers), so a frame never re-enters the sender's
call stack and the order of events is deterministic. Frames are immutable ``bytes`` shared
by sender and receivers, so nothing is serialised or copied on the way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

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

    def forward(self, src: WireDriver, frame: bytes) -> None:
        self.frames += 1
        smac = frame[6:12]
        if self.by_mac.get(smac) is not src:
            self.by_mac[smac] = src
        if not frame[0] & 1:
            dst = self.by_mac.get(frame[0:6])
            if dst is not None:
                if dst is not src:
                    dst._receive(frame)
                return
        for port in self.ports:
            if port is not src:
                port._receive(frame)


def segment(name: str) -> WireSegment:
    with _lock:
        seg = _segments.get(name)
        if seg is None:
            seg = _segments[name] = WireSegment(name)
        return seg


def segments() -> dict[str, WireSegment]:
    return dict(_segments)


class WireDriver:
    """The LinkDriver of a ``wireN`` interface."""

    def __init__(self, segment_name: str) -> None:
        self.segment_name = segment_name
        self._seg: WireSegment | None = None
        self._sched: Scheduler | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self.oerrors = 0

    def attach(self, sched: Scheduler, deliver: Callable[[bytes], None]) -> None:
        self._sched = sched
        self._deliver = deliver
        seg = segment(self.segment_name)
        with _lock:
            seg.ports.append(self)
        self._seg = seg

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        seg = self._seg
        if seg is None:
            self.oerrors += 1
            return
        if not isinstance(frame, bytes):
            frame = bytes(frame)
        seg.forward(self, frame)

    def _receive(self, frame: bytes) -> None:
        sched, deliver = self._sched, self._deliver
        if sched is None or deliver is None:
            return
        if sched.holds_cpu():
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
        self._deliver = None
