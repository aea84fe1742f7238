"""tun(4): a point-to-point interface that carries bare IP packets to and from a user of
the kernel (NetBSD's ``net/if_tun.c``), without a link layer or ARP.

What NetBSD's tun device does with ``/dev/tunN`` reads and writes, the user does here
with :meth:`TunIfnet.open` (a callable that takes each packet the kernel sends out) and
:meth:`TunIfnet.write` (a packet the kernel receives, as if from the far end). The
packetdrill adapter (``rumpnet.packetdrill``) drives a kernel through one.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING

from rumpkern.errno import kerr
from rumpnet.ifnet import IFF_MULTICAST, IFF_NOARP, IFF_POINTOPOINT, Ifnet

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

TUNMTU = 1500
ETHERTYPE_IPV6 = 0x86DD
_FAKE_ETHER = b"\0" * 12  # bpf taps write Ethernet pcap: a zero header before each packet

Buffer = bytes | bytearray | memoryview


class _TunReader:
    """The open device: what a ``LinkDriver`` is to an Ethernet interface (its being
    attached makes the interface RUNNING)."""

    def __init__(self, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver

    def attach(self, sched: object, deliver: Callable[[bytes], None]) -> None:
        """Input comes through :meth:`TunIfnet.write`, not from a driver."""

    def transmit(self, frame: Buffer) -> None:
        self.deliver(bytes(frame))

    def detach(self) -> None:
        """Nothing to release: the reader is a callable."""


class TunIfnet(Ifnet):
    """``tunN``: IP packets in and out, no Ethernet header, no ARP."""

    def __init__(self, kernel: NetKernel, unit: int) -> None:
        super().__init__(kernel, f"tun{unit}", "tun", unit, kernel.ifnet.next_index(), mtu=TUNMTU)
        self.flags = IFF_POINTOPOINT | IFF_MULTICAST | IFF_NOARP
        self.l3_output = self._tun_output

    def open(self, reader: Callable[[bytes], None]) -> None:
        """Open the device: ``reader(packet)`` gets every IP packet the kernel sends out
        of this interface (EBUSY if it is open already, as a second open of /dev/tunN)."""
        if self.driver is not None:
            raise kerr(errno.EBUSY, f"{self.name}: device busy")
        self.attach_driver(_TunReader(reader))

    def close(self) -> None:
        self.detach_driver()

    def write(self, packet: Buffer) -> None:
        """A packet from the far end: IPv4 or IPv6 by its version nibble (tun_output's
        other direction, ``tunwrite``). Dropped and counted when the interface is down,
        closed, or the packet is not IP."""
        st = self.stats
        if not self.running:
            st.iqdrops += 1
            return
        if len(packet) < 1:
            st.ierrors += 1
            return
        version = packet[0] >> 4
        handler = self._ether_dispatch.get(0x0800 if version == 4 else ETHERTYPE_IPV6 if version == 6 else -1)
        if handler is None:
            st.noproto += 1
            return
        st.ipackets += 1
        st.ibytes += len(packet)
        if self.bpf_taps:
            self._tap(packet, version)
        handler(self, memoryview(bytes(packet)), 0)

    def _tun_output(self, packet: Buffer) -> None:
        """IP output toward the far end (``tun_output``): to the reader, if open."""
        if not self.running:
            self.stats.oerrors += 1
            return
        st = self.stats
        st.opackets += 1
        st.obytes += len(packet)
        if self.bpf_taps:
            self._tap(packet, packet[0] >> 4)
        self._driver_transmit(packet)

    def _tap(self, packet: Buffer, version: int) -> None:
        frame = _FAKE_ETHER + (b"\x86\xdd" if version == 6 else b"\x08\x00") + bytes(packet)
        for tap in self.bpf_taps:
            tap(frame)


def create_tun(kernel: NetKernel, unit: int) -> Ifnet:
    return TunIfnet(kernel, unit)


def destroy_tun(ifp: Ifnet) -> None:
    ifp.flags = 0
