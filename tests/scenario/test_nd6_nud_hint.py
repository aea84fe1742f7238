"""NUD hints from TCP (RFC 4861 7.3.1; NetBSD's ND6_HINT in tcp_input): an ACK of new
data confirms that the path's first hop is reachable, so a neighbour a connection makes
forward progress through stays REACHABLE (or goes back to it from STALE or DELAY)
without a unicast Neighbor Solicitation. Traffic that only flows the other way does not
confirm anything: the same neighbour is probed. h1 -- r -- h2 on virtual time."""

from __future__ import annotations

import socket

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.nd6 import ND6_LLINFO_REACHABLE
from rumpnet.route import RTF_GATEWAY, RTF_STATIC, RTF_UP, Rtentry6
from rumpnet.testing.vnet import VNet, capture, tcp_connection

H1, R1, R2, H2 = "fc00:0:0:1::2", "fc00:0:0:1::1", "fc00:0:0:2::1", "fc00:0:0:2::2"
ND_NEIGHBOR_SOLICIT = 135
RUN_FOR = 150.0          # several ReachableTimes (at most 45 s, RFC 4861 6.3.2) and DELAYs


@pytest.fixture
def routed(vnet: VNet):
    h1, r, h2 = vnet.kernel(1, hostname="h1"), vnet.kernel(2, hostname="r"), vnet.kernel(3, hostname="h2")
    for k, ifname, seg, addr in ((h1, "wire0", "n1", H1), (r, "wire0", "n1", R1), (r, "wire1", "n2", R2),
                                 (h2, "wire0", "n2", H2)):
        k.inet6.add_address(vnet.attach(k, ifname, seg, None), in6.pton(addr), 64)
    for k, gw in ((h1, R1), (h2, R2)):
        k.inet6.routes.add(Rtentry6(0, 0, in6.pton(gw), RTF_UP | RTF_GATEWAY | RTF_STATIC, k.ifnet.lookup("wire0")))
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    vnet.sched.run_for(3)
    return h1, r, h2


def unicast_probes(frames: list[bytes], target: str) -> int:
    """Neighbor Solicitations sent to ``target`` itself (NUD's probes, RFC 4861 7.3.3),
    not to its solicited-node group (address resolution)."""
    dst = in6.pack(in6.pton(target))
    return sum(1 for f in frames if f[12:14] == b"\x86\xdd" and f[14 + 6] == 58 and f[14 + 40] == ND_NEIGHBOR_SOLICIT
               and f[14 + 24:14 + 40] == dst)


def trickle(vnet: VNet, sender, fd_out: int, receiver, fd_in: int) -> None:
    """A little data every 4 s for RUN_FOR seconds, all of it read at the other end."""
    for _ in range(int(RUN_FOR / 4)):
        sender.rump_sys_send(fd_out, b"x" * 500, 0)
        vnet.sched.run_for(4)
        assert receiver.rump_sys_recv(fd_in, 4096, socket.MSG_DONTWAIT) == b"x" * 500


def test_acks_of_new_data_keep_the_first_hop_reachable_without_probes(vnet: VNet, routed) -> None:
    h1, _, h2 = routed
    _, c, s = tcp_connection(h1, h2, (H2, 80), family=socket.AF_INET6)
    sent = capture(h1, "wire0", sent_only=True)
    nd6 = h1.inet6.node.nd6
    hints = h1.inet6.node.nd6stat.nd6s_nudhint
    trickle(vnet, h1, c, h2, s)
    assert unicast_probes(sent.frames, R1) == 0
    assert h1.inet6.node.nd6stat.nd6s_nudhint > hints
    ln = nd6.lookup(in6.pton(R1), h1.ifnet.lookup("wire0").index)
    assert ln is not None and ln.state == ND6_LLINFO_REACHABLE


def test_traffic_the_other_way_confirms_nothing_and_the_neighbour_is_probed(vnet: VNet, routed) -> None:
    h1, _, h2 = routed
    _, c, s = tcp_connection(h1, h2, (H2, 80), family=socket.AF_INET6)
    sent = capture(h1, "wire0", sent_only=True)
    hints = h1.inet6.node.nd6stat.nd6s_nudhint
    trickle(vnet, h2, s, h1, c)       # h1 only acknowledges: its snd_una never moves
    assert h1.inet6.node.nd6stat.nd6s_nudhint == hints
    assert unicast_probes(sent.frames, R1) >= 1
