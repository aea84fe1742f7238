"""IPv6 input's cheap path in a kernel (virtual time, an in-process wire): the inet6
domain asks its cores for their earliest deadline only when one was armed or an event
was acted on, so a deadline armed by a received packet must still reach the callout;
a flow ``ip6_input`` remembered is refused once its address goes. Timing is measured in
bench/ (``bench.inproc k2k``), never here."""

from __future__ import annotations

import socket

from scapy.layers.inet import UDP
from scapy.layers.inet6 import ICMPv6TimeExceeded, IPv6, IPv6ExtHdrFragment
from scapy.layers.l2 import Ether

from rumpnet.netinet6 import in6
from rumpnet.netinet6.ip6_var import IPV6_FRAGTTL
from rumpnet.testing.vnet import capture

AF6, DGRAM = socket.AF_INET6, socket.SOCK_DGRAM
A, B = "fc00:0:0:7::1", "fc00:0:0:7::2"


def _pair(vnet):
    a, b = vnet.kernel(1), vnet.kernel(2)
    ifps = []
    for k, addr in ((a, A), (b, B)):
        ifp = vnet.attach(k, "wire0", "inp", None)
        k.inet6.add_address(ifp, in6.pton(addr), 64)
        ifps.append(ifp)
    vnet.sched.run_for(5)       # DAD done, the reports sent: no deadline of the start-up left
    return a, b, ifps[0], ifps[1]


def test_a_deadline_armed_by_a_received_packet_fires(vnet) -> None:
    """The first fragment of a datagram that never completes arms frag6's reassembly
    deadline (no frame out, no event): at IPV6_FRAGTTL the queue is dropped and the
    source gets Time Exceeded code 1 (RFC 8200 4.5)."""
    a, b, ifa, ifb = _pair(vnet)
    sent = capture(b, "wire0", sent_only=True)
    first = IPv6(src=A, dst=B) / IPv6ExtHdrFragment(id=77, m=1, offset=0) / UDP(sport=1, dport=9) / bytes(64)
    st = b.inet6.node.ip6stat
    ifb.ether_input(bytes(Ether(src=ifa.lladdr, dst=ifb.lladdr) / first))
    assert st.ip6s_fragments == 1 and st.ip6s_fragtimeout == 0
    vnet.sched.run_for(IPV6_FRAGTTL - 1)
    assert st.ip6s_fragtimeout == 0
    vnet.sched.run_for(2)
    assert st.ip6s_fragtimeout == 1
    assert any(p.haslayer(ICMPv6TimeExceeded) and p[ICMPv6TimeExceeded].code == 1 for p in map(Ether, sent.frames))


def test_a_removed_address_takes_its_remembered_flow_with_it(vnet) -> None:
    a, b, ifa, ifb = _pair(vnet)
    s = b.rump_sys_socket(AF6, DGRAM, 0)
    b.rump_sys_bind(s, ("::", 9))
    c = a.rump_sys_socket(AF6, DGRAM, 0)
    for data in (b"one", b"two"):
        a.rump_sys_sendto(c, data, 0, (B, 9))
        vnet.sched.run_for(0.1)
        assert b.rump_sys_recvfrom(s, 100, 0)[0] == data
    st = b.inet6.node.ip6stat
    assert st.ip6s_cantforward == 0
    b.inet6.remove_address(ifb, in6.pton(B))
    a.rump_sys_sendto(c, b"three", 0, (B, 9))   # a still knows b's link-layer address
    vnet.sched.run_for(0.1)
    assert st.ip6s_cantforward == 1
