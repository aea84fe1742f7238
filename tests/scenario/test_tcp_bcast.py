"""TCP and broadcast/multicast (issue 13, part 3; RFC 1122 4.2.3.10 and 3.2.1.3).

Forged frames (scapy) reach a kernel with a listener: segments to its subnet broadcast,
the limited broadcast, or a unicast address inside a link-level broadcast frame, and
segments from a broadcast source, are dropped silently and counted (``tcps_rcvbcast``):
no SYN-ACK (before the fix one went out with the broadcast address as its source), no
RST. Nothing leaves with a broadcast or multicast source address."""

from __future__ import annotations

import errno
import socket

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from rumpnet.testing.vnet import capture

A, B = "10.0.0.1", "10.0.0.2"
PORT = 7200
BCAST_MAC = "ff:ff:ff:ff:ff:ff"


class Out:
    """The IP packets an interface sends."""

    def __init__(self, k, ifname: str) -> None:
        self.log = capture(k, ifname, sent_only=True)

    @property
    def pkts(self) -> list[IP]:
        return [IP(f[14:]) for f in self.log.frames if f[12:14] == b"\x08\x00"]


@pytest.fixture
def victim(vnet):
    a, b = vnet.pair(seeds=(21, 22))
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    b.rump_sys_listen(lfd, 5)
    ifp = b.ifnet.lookup("wire0")
    out = Out(b, "wire0")
    return a, b, ifp, out


def _send(k, ifp, frame: Ether) -> None:
    data = bytes(frame)
    k.sched.run(lambda: ifp.link_deliver(data))
    k.run_for(1.0)


@pytest.mark.parametrize("dst_mac,src,dst,dport", [
    (BCAST_MAC, A, "10.0.0.255", PORT),        # subnet broadcast, listening port
    (BCAST_MAC, A, "10.0.0.255", PORT + 1),    # subnet broadcast, closed port: no RST
    (BCAST_MAC, A, "255.255.255.255", PORT),   # limited broadcast
    (BCAST_MAC, A, B, PORT),                   # unicast address, link-level broadcast
    (None, "10.0.0.255", B, PORT),             # from the subnet broadcast address
    (None, "0.0.0.0", B, PORT + 1),            # from 0.0.0.0
], ids=["subnet-bcast", "subnet-bcast-closed", "limited-bcast", "link-bcast", "bcast-source", "zero-source"])
def test_segments_to_or_from_broadcast_are_dropped(victim, dst_mac, src, dst, dport) -> None:
    a, b, ifp, out = victim
    for flags in ("S", "A", "FA"):
        frame = (Ether(dst=dst_mac or ifp.lladdr, src=a.ifnet.lookup("wire0").lladdr)
                 / IP(src=src, dst=dst) / TCP(sport=40000, dport=dport, flags=flags, seq=1000, ack=1))
        _send(b, ifp, frame)
    assert [p for p in out.pkts if p.haslayer(TCP)] == []
    assert b.inet.tcp.stats.tcps_rcvbcast == 3
    assert b.inet.tcp.stats.tcps_sndrst == 0 and b.inet.tcp.proto.syn_cache_len() == 0


def test_unicast_syn_still_answered(victim) -> None:
    """The control: the same SYN to the unicast address gets its SYN-ACK."""
    a, b, ifp, out = victim
    frame = (Ether(dst=ifp.lladdr, src=a.ifnet.lookup("wire0").lladdr)
             / IP(src=A, dst=B) / TCP(sport=40000, dport=PORT, flags="S", seq=1000))
    _send(b, ifp, frame)
    synacks = [p for p in out.pkts if p.haslayer(TCP) and p[TCP].flags == "SA"]
    assert synacks and synacks[0].src == B
    assert b.inet.tcp.stats.tcps_rcvbcast == 0


def test_udp_bound_to_broadcast_sends_from_its_unicast_address(victim) -> None:
    """RFC 1122 3.2.1.3: a socket bound to the broadcast address (to receive) sends with
    the route's address as source; IP refuses a broadcast or multicast source."""
    a, b, ifp, out = victim
    fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(fd, ("10.0.0.255", 7300))
    b.rump_sys_sendto(fd, b"hi", 0, (A, 7300))
    b.run_for(0.5)
    udp = [p for p in out.pkts if p.proto == 17]
    assert udp and all(p.src == B for p in udp)

    def from_multicast() -> None:
        b.inet.output.output(0xE0000001, 0x0A000001, 1, b"\x08\x00\xf7\xff\x00\x00\x00\x00")

    with pytest.raises(OSError) as ei:
        b.sched.run(from_multicast)
    assert ei.value.errno == errno.EADDRNOTAVAIL
