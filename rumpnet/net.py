"""The net faction of a kernel: interfaces, the route table, Ethernet dispatch, loopback.

Cloners: ``lo`` (loopback), ``wire`` (in-process segments), ``shmif`` (a shared bus
file) and ``virt`` (a host tap). The ``wire``/``shmif``/``virt`` interfaces start without
a link; ``ifconfig IF linkstr NAME`` attaches one (for ``virt`` the tap ``tunN`` is the
default, as NetBSD's virtif opens ``/dev/tapN``... and our design binds ``virtN`` to
``tunN``).
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.ifnet import Cloner, Ifnet, IfnetRegistry
from rumpnet.route import RouteTable

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

LOMTU = 33624  # NetBSD's loopback MTU


class Net:
    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        self.routes = RouteTable()
        self.ether_dispatch: dict[int, Callable[[Ifnet, memoryview, int], None]] = {}
        # Per ethertype, the plain frames a received frame with offload state (a GRO
        # superframe of segsz-byte segments, a partial checksum) stands for, for an
        # ingress qdisc; filled by the domain that knows the protocol (netinet's
        # ip_gso.wire_frames), as ether_dispatch is. None: a malformed frame.
        self.ether_segment: dict[int, Callable[[bytes, int, int], list[bytes] | None]] = {}
        self.listeners: list[Any] = []  # domains told about interface events (Inet)
        self.loop_input: Callable[[Ifnet, memoryview, int], None] | None = None
        self.lo0: Ifnet | None = None
        # ICMP echo identifiers of ping runs (NetBSD's ping uses its pid): per kernel, so
        # that a replay does not depend on what pinged before in the process.
        self._ping_idents = 0
        reg: IfnetRegistry = kernel.ifnet
        reg.add_cloner(Cloner("lo", _create_lo, _destroy_plain))
        reg.add_cloner(Cloner("wire", _create_ether("wire", 1500), _destroy_plain))

    def next_ping_ident(self) -> int:
        self._ping_idents += 1
        return self._ping_idents

    def boot_loopback(self) -> None:
        self.lo0 = self.kernel.ifnet.create("lo0")
        self.lo0.set_up(True)

    # -- link attachment (``ifconfig IF linkstr STR``) -----------------------------------
    link_factories: dict[str, Callable[[Ifnet, str], Any]] = {}

    def set_linkstr(self, ifp: Ifnet, linkstr: str | None) -> None:
        factory = self.link_factories.get(ifp.cloner)
        if factory is None:
            raise kerr(errno.ENOTTY, "Inappropriate ioctl for device")
        if linkstr is None:
            ifp.detach_driver()
            ifp.linkstr = None
            return
        if ifp.is_up:
            # NetBSD's shmif refuses a new linkstr while up: EBUSY.
            raise kerr(errno.EBUSY, "Device busy")
        driver = factory(ifp, linkstr)
        ifp.attach_driver(driver)
        ifp.linkstr = linkstr

    # Links a cloner's interfaces get when brought up without a linkstr.
    default_links: dict[str, Callable[[Ifnet], str]] = {}

    def attach_default_link(self, ifp: Ifnet) -> None:
        name_of = self.default_links.get(ifp.cloner)
        factory = self.link_factories.get(ifp.cloner)
        if name_of is None or factory is None:
            return
        linkstr = name_of(ifp)
        ifp.attach_driver(factory(ifp, linkstr))
        ifp.linkstr = linkstr

    # -- events ------------------------------------------------------------------------
    def if_updown(self, ifp: Ifnet, up: bool) -> None:
        for listener in self.listeners:
            listener.if_updown(ifp, up)

    def if_changed(self, ifp: Ifnet) -> None:
        """The interface's MTU or link-layer address changed (domains that keep a copy,
        as netinet6's per-interface state does, follow)."""
        for listener in self.listeners:
            changed = getattr(listener, "if_changed", None)
            if changed is not None:
                changed(ifp)

    def addr_changed(self, ifp: Ifnet, family: int, addr: int, plen: int, added: bool) -> None:
        """An address was configured on or removed from ``ifp`` (``family`` NetBSD's AF_INET
        2 or AF_INET6 24): listeners that announce it (the routing sockets) follow."""
        for listener in self.listeners:
            changed = getattr(listener, "addr_changed", None)
            if changed is not None:
                changed(ifp, family, addr, plen, added)

    def if_detach(self, ifp: Ifnet) -> None:
        for listener in self.listeners:
            listener.if_detach(ifp)
        self.routes.remove_matching(lambda rt: rt.ifp is ifp)


def mac_for(kernel: NetKernel, cloner: str, unit: int) -> bytes:
    """A locally administered unicast MAC from the kernel's seeded random source."""
    rnd = kernel.rng.getrandbits(32)
    return bytes((0xB2, 0xA0, (rnd >> 24) & 0xFF, (rnd >> 16) & 0xFF, (rnd >> 8) & 0xFF, rnd & 0xFF))


class LoopDriver:
    """Loopback's link (NetBSD's ``looutput``): a frame transmitted comes back as input
    on a later turn of the scheduler, so the sender's call stack unwinds first. As a
    driver it sits behind ``transmit_frame``, so bpf, the interface counters and qdiscs
    (netem on lo0, either direction) act on loopback as on any interface. Frames carry
    an Ethernet header with zero addresses, as Linux's lo does."""

    def __init__(self) -> None:
        self._sched: Any = None
        self._deliver: Callable[[bytes], None] | None = None

    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        self._sched = sched
        self._deliver = deliver

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        if self._deliver is not None:
            self._sched.call_soon(self._deliver, bytes(frame))

    def detach(self) -> None:
        self._deliver = None


def _create_lo(kernel: NetKernel, unit: int) -> Ifnet:
    ifp = Ifnet(kernel, f"lo{unit}", "lo", unit, kernel.ifnet.next_index(), mtu=LOMTU, loopback=True)
    ifp.attach_driver(LoopDriver())
    return ifp


def _create_ether(cloner: str, mtu: int) -> Callable[[NetKernel, int], Ifnet]:
    def create(kernel: NetKernel, unit: int) -> Ifnet:
        return Ifnet(kernel, f"{cloner}{unit}", cloner, unit, kernel.ifnet.next_index(),
                     lladdr=mac_for(kernel, cloner, unit), mtu=mtu)

    return create


def create_ether(cloner: str, mtu: int = 1500) -> Callable[[NetKernel, int], Ifnet]:
    return _create_ether(cloner, mtu)


def _destroy_plain(ifp: Ifnet) -> None:
    ifp.flags = 0


def _wire_link(ifp: Ifnet, linkstr: str) -> Any:
    from rumpnet.if_wire import WireDriver

    return WireDriver(linkstr)


Net.link_factories["wire"] = _wire_link
