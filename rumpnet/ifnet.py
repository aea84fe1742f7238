"""Network interfaces (NetBSD's ``struct ifnet``, ``if.c``, ``if_ethersubr.c``).

An interface is lwIP-shaped: received frames come in through ``link_deliver`` (the
driver calls it), ``output`` hands an IP packet down (resolving the link address), and
``link_transmit`` gives a finished frame to the driver. Traffic-control runners (faults)
and bpf taps hook in between without the protocol code knowing.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from rumpkern.errno import kerr

if TYPE_CHECKING:
    from rumpkern.sched import Scheduler
    from rumpnet.net_kernel import NetKernel

# if.h flags
IFF_UP = 0x0001
IFF_BROADCAST = 0x0002
IFF_DEBUG = 0x0004
IFF_LOOPBACK = 0x0008
IFF_POINTOPOINT = 0x0010
IFF_RUNNING = 0x0040
IFF_NOARP = 0x0080
IFF_PROMISC = 0x0100
IFF_ALLMULTI = 0x0200
IFF_SIMPLEX = 0x0800
IFF_LINK0 = 0x1000
IFF_MULTICAST = 0x8000

IFF_NAMES = [
    (IFF_UP, "UP"), (IFF_BROADCAST, "BROADCAST"), (IFF_DEBUG, "DEBUG"), (IFF_LOOPBACK, "LOOPBACK"),
    (IFF_POINTOPOINT, "POINTOPOINT"), (IFF_RUNNING, "RUNNING"), (IFF_NOARP, "NOARP"),
    (IFF_PROMISC, "PROMISC"), (IFF_ALLMULTI, "ALLMULTI"), (IFF_SIMPLEX, "SIMPLEX"),
    (IFF_MULTICAST, "MULTICAST"),
]

LINK_STATE_UNKNOWN = 0
LINK_STATE_DOWN = 1
LINK_STATE_UP = 2

ETHERTYPE_IP = 0x0800
ETHERTYPE_ARP = 0x0806
ETHER_HDR_LEN = 14
ETHER_ADDR_LEN = 6
ETHERMTU = 1500
ETHER_BROADCAST = b"\xff" * 6

_ETHER_HDR = struct.Struct("!6s6sH")
_ETHER_TYPE = struct.Struct("!H")

# Interface capabilities (NetBSD ``if.h`` IFCAP_*): what the driver does for the stack.
IFCAP_TSOv4 = 0x00080
IFCAP_CSUM_IPv4_Rx = 0x00100
IFCAP_CSUM_IPv4_Tx = 0x00200
IFCAP_CSUM_TCPv4_Rx = 0x00400
IFCAP_CSUM_TCPv4_Tx = 0x00800
IFCAP_CSUM_UDPv4_Rx = 0x01000
IFCAP_CSUM_UDPv4_Tx = 0x02000
IFCAP_CSUM_TCPv6_Rx = 0x04000
IFCAP_CSUM_TCPv6_Tx = 0x08000
IFCAP_CSUM_UDPv6_Rx = 0x10000
IFCAP_CSUM_UDPv6_Tx = 0x20000
IFCAP_TSOv6 = 0x40000

IFCAP_NAMES = [
    (IFCAP_TSOv4, "TSO4"), (IFCAP_CSUM_IPv4_Rx, "IP4CSUM_Rx"), (IFCAP_CSUM_IPv4_Tx, "IP4CSUM_Tx"),
    (IFCAP_CSUM_TCPv4_Rx, "TCP4CSUM_Rx"), (IFCAP_CSUM_TCPv4_Tx, "TCP4CSUM_Tx"),
    (IFCAP_CSUM_UDPv4_Rx, "UDP4CSUM_Rx"), (IFCAP_CSUM_UDPv4_Tx, "UDP4CSUM_Tx"),
    (IFCAP_CSUM_TCPv6_Rx, "TCP6CSUM_Rx"), (IFCAP_CSUM_TCPv6_Tx, "TCP6CSUM_Tx"),
    (IFCAP_CSUM_UDPv6_Rx, "UDP6CSUM_Rx"), (IFCAP_CSUM_UDPv6_Tx, "UDP6CSUM_Tx"),
    (IFCAP_TSOv6, "TSO6"),
]

# Per-packet checksum/segmentation state (NetBSD ``m_pkthdr.csum_flags``, ``segsz``).
M_CSUM_TCPv4 = 0x0001  # tx: the interface completes the TCP checksum; rx: it was checked
M_CSUM_UDPv4 = 0x0002
M_CSUM_TSOv4 = 0x0100  # tx: the interface cuts the packet into segsz-sized TCP segments
M_CSUM_TCPv6 = 0x0020  # as M_CSUM_TCPv4, for TCP over IPv6
M_CSUM_TSOv6 = 0x0200  # as M_CSUM_TSOv4, for an IPv6 packet
M_CSUM_PARTIAL = 0x1000  # the TCP checksum field holds only the pseudo-header sum


def ifcap_string(caps: int) -> str:
    """``ifconfig``'s ``capabilities=7ff80<TSO4,IP4CSUM_Rx,...>`` rendering of ``caps``."""
    names = ",".join(name for bit, name in IFCAP_NAMES if caps & bit)
    return f"{caps:x}<{names}>"


class Mbuf(bytearray):
    """A packet (or frame) with offload requests attached, as an mbuf's packet header
    carries them: ``csum_flags`` (``M_CSUM_*``), ``segsz`` (TSO: TCP payload bytes per
    segment) and ``csum_start`` (offset of the TCP header in this buffer).

    Plain packets are plain ``bytes``/``bytearray``: only packets that need the interface
    to finish them (a TSO superframe, a partial checksum) are ``Mbuf``, so the common path
    pays one ``type(x) is Mbuf`` test. ``ether_output`` keeps the attributes on the frame
    (``csum_start`` moved past the Ethernet header)."""

    __slots__ = ("csum_flags", "segsz", "csum_start")

    def __init__(self, data: bytes | bytearray | memoryview = b"", csum_flags: int = 0,
                 segsz: int = 0, csum_start: int = 0) -> None:
        super().__init__(data)
        self.csum_flags = csum_flags
        self.segsz = segsz
        self.csum_start = csum_start


class LinkDriver(Protocol):
    def attach(self, sched: Scheduler, deliver: Callable[[bytes], None]) -> None: ...
    def transmit(self, frame: bytes | bytearray | memoryview) -> None: ...
    def detach(self) -> None: ...


class IfAddr:
    """An IPv4 address on an interface (``struct in_ifaddr``)."""

    __slots__ = ("addr", "mask", "plen", "broadaddr", "ifp", "dstaddr")

    def __init__(self, ifp: Ifnet, addr: int, plen: int, broadaddr: int | None = None) -> None:
        self.ifp = ifp
        self.addr = addr
        self.plen = plen
        self.mask = (0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF if plen else 0
        if broadaddr is None:
            broadaddr = (addr & self.mask) | (~self.mask & 0xFFFFFFFF) if plen < 31 else 0
        self.broadaddr = broadaddr
        self.dstaddr = 0

    @property
    def net(self) -> int:
        return self.addr & self.mask


@dataclass(slots=True)
class IfStats:
    ipackets: int = 0
    ierrors: int = 0
    opackets: int = 0
    oerrors: int = 0
    ibytes: int = 0
    obytes: int = 0
    imcasts: int = 0
    omcasts: int = 0
    iqdrops: int = 0
    oqdrops: int = 0
    collisions: int = 0
    noproto: int = 0

class Ifnet:
    """One interface. Ethernet unless ``loopback``."""

    def __init__(self, kernel: NetKernel, name: str, cloner: str, unit: int, index: int,
                 lladdr: bytes | None = None, mtu: int = ETHERMTU, loopback: bool = False) -> None:
        self.kernel = kernel
        self.name = name
        self.cloner = cloner
        self.unit = unit
        self.index = index
        self.mtu = mtu
        self.lladdr = lladdr or b"\x00" * 6
        self.loopback = loopback
        self.flags = (IFF_LOOPBACK | IFF_MULTICAST) if loopback else (IFF_BROADCAST | IFF_SIMPLEX | IFF_MULTICAST)
        self.link_state = LINK_STATE_UP if loopback else LINK_STATE_UNKNOWN
        self.media = "auto"
        self.addrs: list[IfAddr] = []
        self.linkstr: str | None = None
        self.driver: Any = None
        self.stats = IfStats()
        self.bpf_taps: list[Callable[[bytes | bytearray | memoryview], None]] = []
        self._qdisc: dict[str, Any] = {"egress": None, "ingress": None}
        # Source MAC + ethertype, per ethertype: a frame header is dst_mac + this (one
        # concatenation per frame); rebuilt when the MAC changes.
        self._ether_src_type: dict[int, bytes] = {}
        # The net faction's ethertype table (filled in place by the domains).
        self._ether_dispatch: dict[int, Any] = kernel.net.ether_dispatch
        # Offloads (set from the driver at attach): IFCAP_* bits, and the largest IP
        # packet the driver takes for TSO (0: none).
        self.capabilities = 0
        self.tso_mtu = 0
        # Offload state of the frame being input right now (the synchronous path from
        # the driver to the transport): M_CSUM_* flags and the host's GSO segment size.
        self.rx_csum_flags = 0
        self.rx_segsz = 0
        # The frame being input was sent to a link-level broadcast or multicast address
        # (NetBSD's M_BCAST|M_MCAST): transports that must not answer one read it.
        self.rx_mcast = 0
        # lwIP's triple: input from the link, link output; ``output`` is IP's entry.
        self.link_transmit: Callable[[bytes | bytearray | memoryview], None] = self._driver_transmit
        self.link_deliver: Callable[[bytes], None] = self.ether_input
        self._input_entry: Callable[[bytes], None] = self.ether_input
        self._output_entry: Callable[[bytes | bytearray | memoryview], None] = self._driver_transmit
        # Interfaces without a link layer (tun) take IP packets here instead of frames:
        # IP output hands them over without ARP (NetBSD's per-type ``if_output``).
        self.l3_output: Callable[[bytes | bytearray | memoryview], None] | None = None

    def __repr__(self) -> str:
        return f"<Ifnet {self.name}>"

    # -- state ----------------------------------------------------------------------
    @property
    def is_up(self) -> bool:
        return bool(self.flags & IFF_UP)

    @property
    def running(self) -> bool:
        """Frames move: administratively up, driver attached (or loopback), media on."""
        return bool(self.flags & IFF_UP) and bool(self.flags & IFF_RUNNING) and self.media != "none"

    def _update_running(self) -> None:
        if self.loopback or self.driver is not None:
            self.flags |= IFF_RUNNING
        else:
            self.flags &= ~IFF_RUNNING
        if self.loopback:
            self.link_state = LINK_STATE_UP
        elif self.driver is None or self.media == "none":
            self.link_state = LINK_STATE_DOWN if self.driver is not None or self.media == "none" else LINK_STATE_UNKNOWN
        else:
            self.link_state = LINK_STATE_UP if self.is_up else LINK_STATE_UNKNOWN

    def set_up(self, up: bool) -> None:
        was = self.is_up
        if up and self.driver is None:
            # Cloners with a default link (virtN -> host tap tunN) attach it on first up,
            # however the interface comes up (ifconfig up, or setting an address).
            self.kernel.net.attach_default_link(self)
        if up:
            self.flags |= IFF_UP
        else:
            self.flags &= ~IFF_UP
        self._update_running()
        if up != was:
            self.kernel.net.if_updown(self, up)

    def set_media(self, media: str) -> None:
        if media not in ("auto", "none"):
            raise kerr(errno.EINVAL, f"unknown media type {media}")
        self.media = media
        self._update_running()

    def set_promisc(self, on: bool) -> None:
        self.flags = (self.flags | IFF_PROMISC) if on else (self.flags & ~IFF_PROMISC)

    def set_mtu(self, mtu: int) -> None:
        # An Ethernet frame (header included) holds at most 65535 bytes, as on Linux taps.
        limit = 65535 - ETHER_HDR_LEN if not self.loopback else 65535
        if mtu < 68 or mtu > limit:
            raise kerr(errno.EINVAL)
        self.mtu = mtu
        self.kernel.net.routes.invalidate()
        self.kernel.net.if_changed(self)

    def set_lladdr(self, mac: bytes) -> None:
        if len(mac) != 6 or mac[0] & 1:
            raise kerr(errno.EINVAL)
        self.lladdr = mac
        self._ether_src_type.clear()
        self.kernel.net.if_changed(self)

    # -- driver ------------------------------------------------------------------------
    def attach_driver(self, driver: LinkDriver) -> None:
        if self.driver is not None:
            self.detach_driver()
        self.driver = driver
        driver.attach(self.kernel.sched, self._deliver_from_driver)
        attach_offload = getattr(driver, "attach_offload", None)
        if attach_offload is not None:
            # A driver with offloads delivers (frame, csum_flags, segsz) through
            # _deliver_offload and reports what it can do, now and when that changes.
            attach_offload(self._deliver_offload)
            notify_caps = getattr(driver, "notify_caps", None)
            if notify_caps is not None:
                notify_caps(self.take_offload_caps)
            self.take_offload_caps()
            self._offload_sysctl()
        self._update_running()

    @property
    def offload_mode(self) -> str:
        """The driver's offload mode (``"none"``, ``"csum"``, ``"tso"``) for ifconfig."""
        return str(getattr(self.driver, "offload_mode", "none"))

    def take_offload_caps(self) -> None:
        """Capabilities and TSO size as the driver now reports them (at attach, and
        whenever the driver says they changed: IP reads them for every packet)."""
        driver = self.driver
        self.capabilities = int(getattr(driver, "capabilities", 0))
        self.tso_mtu = int(getattr(driver, "tso_mtu", 0))

    def _offload_sysctl(self) -> None:
        """``net.link.<cloner>.<ifname>.offload``: the offload mode, writable (the driver
        renegotiates with the host; capabilities follow)."""
        path = f"net.link.{self.cloner}.{self.name}.offload"
        tree = self.kernel.sysctl_tree
        try:
            tree.lookup(path)
            return
        except OSError:
            pass

        def setter(v: str) -> None:
            drv = self.driver
            if drv is None or not hasattr(drv, "set_offload"):
                raise kerr(errno.EOPNOTSUPP)
            drv.set_offload(v)
            self.take_offload_caps()

        tree.add_string(path, lambda: self.offload_mode, setter, choices=("none", "csum", "tso"),
                        desc="offloads in use: none, csum (checksums) or tso (checksums + TSO/GRO)")

    def detach_driver(self) -> None:
        drv, self.driver = self.driver, None
        if drv is not None:
            drv.detach()
        self.capabilities = 0
        self.tso_mtu = 0
        self._update_running()

    def _driver_transmit(self, frame: bytes | bytearray | memoryview) -> None:
        drv = self.driver
        if drv is None or self.media == "none":
            self.stats.oerrors += 1
            return
        drv.transmit(frame)

    # -- traffic control (faults) ------------------------------------------------------
    def set_qdisc(self, direction: str, runner: Any) -> None:
        """Put a traffic-control runner (an object with ``input(frame)``) on a direction.

        Egress runners hand frames to ``self.link_transmit``; ingress runners to
        ``self.link_deliver``. ``None`` removes the runner.
        """
        if direction not in self._qdisc:
            raise kerr(errno.EINVAL, f"bad qdisc direction {direction}")
        self._qdisc[direction] = runner
        if direction == "egress":
            self._output_entry = runner.input if runner is not None else self._driver_transmit
        else:
            self._input_entry = runner.input if runner is not None else self.ether_input

    def qdisc(self, direction: str) -> Any:
        return self._qdisc[direction]

    # -- bpf ---------------------------------------------------------------------------
    def bpf_attach(self, writer: Any, filter: Callable[[Any], bool] | None = None) -> Callable[[Any], None]:  # noqa: A002
        """Capture frames in both directions to ``writer`` (``write(frame, ts)``)."""
        clock = self.kernel.sched.now

        def tap(frame: bytes | bytearray | memoryview) -> None:
            if filter is None or filter(frame):
                writer.write(frame, clock())

        self.bpf_taps.append(tap)
        return tap

    def bpf_detach(self, tap: Callable[[Any], None]) -> None:
        if tap in self.bpf_taps:
            self.bpf_taps.remove(tap)

    # -- input -------------------------------------------------------------------------
    def _deliver_from_driver(self, frame: bytes) -> None:
        if not self.running:
            self.stats.iqdrops += 1
            return
        self._input_entry(frame)

    def _deliver_offload(self, frame: bytes, csum_flags: int, segsz: int = 0) -> None:
        """A received frame the driver flags: its TCP checksum was checked or is partial
        (``M_CSUM_TCPv4``, ``M_CSUM_PARTIAL``), or it is a superframe of ``segsz``-byte
        segments (GRO/TSO from the host). The flags hold for the synchronous input path
        (``rx_csum_flags``/``rx_segsz``, read by ip_input and the transport). Through an
        ingress qdisc the frame is delayed, so it goes on as plain frames: a superframe
        cut into its segments, a partial checksum completed."""
        if not self.running:
            self.stats.iqdrops += 1
            return
        if self._qdisc["ingress"] is not None:
            # Faults act on wire frames: the frames this one stands for go on plain, cut
            # by the domain that knows the protocol (netinet: ip_gso.wire_frames).
            segment = self.kernel.net.ether_segment.get((frame[12] << 8) | frame[13]) \
                if len(frame) >= ETHER_HDR_LEN else None
            frames = segment(frame, csum_flags, segsz) if segment is not None else None
            if frames is None:
                self.stats.ierrors += 1
                return
            for f in frames:
                self._input_entry(f)
            return
        self.rx_csum_flags = csum_flags
        self.rx_segsz = segsz
        try:
            self.ether_input(frame)
        finally:
            self.rx_csum_flags = 0
            self.rx_segsz = 0

    def ether_input(self, frame: bytes) -> None:
        """Ethernet II input: filter on destination, dispatch on ethertype."""
        st = self.stats
        n = len(frame)
        if n < ETHER_HDR_LEN:
            st.ierrors += 1
            return
        # NetBSD ether_input: a frame longer than ETHER_MAX_FRAME (MTU + header, plus
        # a VLAN tag's 4 bytes when tagged) is an input error. Without this check an
        # oversized frame was taken whole, whatever the interface's MTU.
        # (A GRO/TSO superframe from an offloading driver, rx_segsz set, is the exception.)
        if n > self.mtu + ETHER_HDR_LEN and not self.rx_segsz and not self.loopback and (
                n > self.mtu + ETHER_HDR_LEN + 4 or frame[12:14] != b"\x81\x00"):
            st.ierrors += 1
            return
        st.ipackets += 1
        st.ibytes += n
        for tap in self.bpf_taps:
            tap(frame)
        dst = frame[0:6]
        if dst[0] & 1:
            st.imcasts += 1
        elif dst != self.lladdr and not self.flags & IFF_PROMISC:
            return  # not for us (a flooded unicast on a shared segment)
        if frame[6:12] == self.lladdr and not self.loopback:
            return  # our own frame echoed back by a bus (shmif) or a switch
        ethertype = (frame[12] << 8) | frame[13]
        handler = self._ether_dispatch.get(ethertype)
        if handler is None:
            st.noproto += 1
            return
        self.rx_mcast = mcast = dst[0] & 1
        handler(self, memoryview(frame)[ETHER_HDR_LEN:], mcast)

    # -- output ------------------------------------------------------------------------
    def ether_output(self, payload: bytes | bytearray | memoryview, dst_mac: bytes, ethertype: int) -> None:
        """Frame ``payload`` and transmit it (lwIP's ``linkoutput``)."""
        src_type = self._ether_src_type.get(ethertype)
        if src_type is None:
            src_type = self._ether_src_type[ethertype] = self.lladdr + _ETHER_TYPE.pack(ethertype)
        hdr = dst_mac + src_type
        if type(payload) is Mbuf:
            # Offload requests ride on the frame to the driver.
            m = Mbuf(hdr, payload.csum_flags, payload.segsz, payload.csum_start + ETHER_HDR_LEN)
            m += payload
            self.transmit_frame(m)  # type: ignore[arg-type]
            return
        frame = hdr + payload
        self.transmit_frame(frame)

    def transmit_frame(self, frame: bytes) -> None:
        if not self.running:
            self.stats.oerrors += 1
            return
        st = self.stats
        st.opackets += 1
        st.obytes += len(frame)
        if frame[0] & 1:
            st.omcasts += 1
        for tap in self.bpf_taps:
            tap(frame)
        self._output_entry(frame)



class Cloner:
    """An interface cloner (``if_clone``): ``wire``, ``shmif``, ``virt``, ``lo``."""

    def __init__(self, name: str, create: Callable[[NetKernel, int], Ifnet],
                 destroy: Callable[[Ifnet], None] | None = None) -> None:
        self.name = name
        self.create = create
        self.destroy = destroy


class IfnetRegistry:
    """The kernel's list of interfaces (``ifnet_list``) and cloners."""

    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        self._ifs: dict[str, Ifnet] = {}
        self.cloners: dict[str, Cloner] = {}
        self._next_index = 1

    def add_cloner(self, cloner: Cloner) -> None:
        self.cloners[cloner.name] = cloner

    def next_index(self) -> int:
        idx = self._next_index
        self._next_index += 1
        return idx

    @staticmethod
    def split_name(name: str) -> tuple[str, int]:
        i = len(name)
        while i > 0 and name[i - 1].isdigit():
            i -= 1
        if i == len(name) or i == 0:
            raise kerr(errno.EINVAL, f"{name}: bad interface name")
        return name[:i], int(name[i:])

    def create(self, name: str) -> Ifnet:
        if name in self._ifs:
            raise kerr(errno.EEXIST, "SIOCIFCREATE: File exists")
        try:
            cname, unit = self.split_name(name)
        except OSError:
            cname, unit = name, -1
        cloner = self.cloners.get(cname)
        if cloner is None or unit < 0:
            # NetBSD's answer, then which names would do (ifconfig -C lists the cloners)
            raise kerr(errno.EINVAL, f"SIOCIFCREATE: Invalid argument ({name}: interfaces are named "
                                     f"{', '.join(c + 'N' for c in self.cloners)})")
        ifp = cloner.create(self.kernel, unit)
        self._ifs[name] = ifp
        self._sysctl_attach(ifp)
        return ifp

    def attach(self, ifp: Ifnet) -> None:
        self._ifs[ifp.name] = ifp
        self._sysctl_attach(ifp)

    def _sysctl_attach(self, ifp: Ifnet) -> None:
        """``net.interfaces.IF.sndq.drops`` (NetBSD's sysctl_sndq_setup): frames the
        output queue dropped, which ``struct if_data`` has no field for (ifconfig -v)."""
        tree = self.kernel.sysctl_tree
        path = f"net.interfaces.{ifp.name}"
        tree.remove(path)
        tree.add_int(f"{path}.sndq.drops", lambda: ifp.stats.oqdrops, desc="Total packets dropped due to full sndq")

    def destroy(self, name: str) -> None:
        ifp = self.lookup(name)
        cloner = self.cloners.get(ifp.cloner)
        if cloner is None or cloner.destroy is None:
            raise kerr(errno.EINVAL, "SIOCIFDESTROY: Invalid argument")
        self.kernel.net.if_detach(ifp)
        ifp.detach_driver()
        cloner.destroy(ifp)
        del self._ifs[name]
        self.kernel.sysctl_tree.remove(f"net.interfaces.{name}")

    def lookup(self, name: str) -> Ifnet:
        ifp = self._ifs.get(name)
        if ifp is None:
            raise kerr(errno.ENXIO, f"{name}: Device not configured")
        return ifp

    def get(self, name: str) -> Ifnet | None:
        return self._ifs.get(name)

    def by_index(self, index: int) -> Ifnet | None:
        for ifp in self._ifs.values():
            if ifp.index == index:
                return ifp
        return None

    def all(self) -> list[Ifnet]:
        return sorted(self._ifs.values(), key=lambda i: i.index)
