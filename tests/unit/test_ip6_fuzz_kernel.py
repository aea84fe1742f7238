"""Hostile IPv6 input through a kernel's real input path (hypothesis): Ethernet frames of
type 0x86DD into ``Ifnet.ether_input`` of a booted kernel, the way a wire or tap hands
them over, then the glue (route table, transports, timer) acts on what the netinet6 node
made of them. Nothing raises out (an exception would fail the example), every frame
moves a counter besides ``ip6s_total``, off-link ND spoofing (hop limit below 255) is
refused and counted, and afterwards the kernel still answers a ping6 over a wire.

The strategies are test_ip6_fuzz.py's, which drive the bare node."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ip6_fuzz import GOOD, ME, PEER, chains, fragment_storms, icmp6_messages, outcome_total

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6Repr, emit
from rumpnet.netinet6.ip6 import ip6_build
from rumpnet.testing.vnet import VNet

KFUZZ = settings(max_examples=120, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


class Target:
    """One kernel with wire0 (fc00:1::1/64, fe80::1) on a segment of its own."""

    def __init__(self, vnet: VNet) -> None:
        self.vnet = vnet
        self.k = vnet.kernel(5)
        self.k.sysctl("-w", "net.inet6.ip6.dad_count=0")     # usable at once
        self.k.sysctl("-w", "net.inet6.ip6.accept_rtadv=1")  # RAs are processed too
        self.ifp = vnet.attach(self.k, "wire0", "fuzz", None)
        self.k.inet6.add_address(self.ifp, ME, 64)
        self.k.inet6.add_address(self.ifp, in6.pton("fe80::1"), 64)
        vnet.sched.run_for(3)
        self.node = self.k.inet6.node

    def feed(self, pkt: bytes, forwarding: bool = False) -> None:
        self.node.ip6_params.forwarding = int(forwarding)
        dst = in6.unpack(pkt, 24) if len(pkt) >= 40 else ME
        mac = in6.ether_multicast(dst) if in6.is_multicast(dst) else self.ifp.lladdr
        frame = mac + b"\x02\x00\x00\x00\x00\x02" + b"\x86\xdd" + pkt
        before, total = outcome_total(self.node), self.node.ip6stat.ip6s_total
        self.vnet.sched.run(lambda: self.ifp.ether_input(frame))
        assert self.node.ip6stat.ip6s_total == total + 1
        assert outcome_total(self.node) > before, "a frame left no trace in the counters"


@pytest.fixture(scope="module")
def target() -> Iterator[Target]:
    net = VNet(virtual=True)
    try:
        yield Target(net)
    finally:
        net.close()


@KFUZZ
@given(st.binary(min_size=1, max_size=200))
def test_random_payloads(target: Target, data: bytes) -> None:
    target.feed(data)


@KFUZZ
@given(chains(), st.booleans())
def test_extension_header_chains(target: Target, pkt: bytes, forwarding: bool) -> None:
    target.feed(pkt, forwarding)


@KFUZZ
@given(icmp6_messages())
def test_icmp6_nd_mld_messages(target: Target, pkt: bytes) -> None:
    target.feed(pkt)


@KFUZZ
@given(st.sampled_from(GOOD), st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_good_packets(target: Target, pkt: bytes, flips: list[tuple[int, int]]) -> None:
    b = bytearray(pkt)
    for pos, val in flips:
        b[pos % len(b)] ^= val or 1
    target.feed(bytes(b))


@KFUZZ
@given(fragment_storms())
def test_fragment_abuse_stays_bounded(target: Target, storm: list[tuple[float, bytes]]) -> None:
    p = target.node.ip6_params
    for _, pkt in storm:
        target.feed(pkt)
        f6 = target.node.frag6
        assert f6.nbytes <= p.maxfragbytes and f6.nfrags <= p.maxfrags


@pytest.mark.parametrize("hlim", [254, 64, 1])
def test_off_link_nd_spoofing_is_refused_and_counted(target: Target, hlim: int) -> None:
    """RFC 4861 7.1.1/7.1.2: an NA or NS that crossed a router (hop limit below 255)
    claiming a neighbour's address teaches the cache nothing."""
    spoofed = in6.pton("fc00:1::66")
    na = ip6_build(PEER, ME, 58, emit(Icmp6Repr(136, 0, 0x60000000, in6.pack(spoofed) + b"\x02\x01" + b"\x02\x66" * 3),
                                      PEER, ME), hlim)
    bad = target.node.icmp6stat.icp6s_badna
    target.feed(na)
    assert target.node.icmp6stat.icp6s_badna == bad + 1
    assert target.node.nd6.lookup(spoofed, target.ifp.index) is None


def test_the_kernel_still_answers_after_the_storms(target: Target) -> None:
    vnet = target.vnet
    vnet.sched.run_for(200)                      # every reassembly queue times out
    assert target.node.frag6.queues == {} and target.node.frag6.nbytes == 0
    peer = vnet.kernel(6)
    ifp = vnet.attach(peer, "wire0", "fuzz", None)
    peer.inet6.add_address(ifp, PEER, 64)
    vnet.sched.run_for(3)
    got = []
    peer.inet6.node.icmp6.deliver_raw = True
    peer.inet6.raw_input = lambda ev, now: got.append(ev)
    peer.inet6.node.ping6(ME, 1, 1, b"still there", peer.clock_now())
    peer.inet6.settle()
    vnet.sched.run_for(2)
    assert any(ev.msg[0] == 129 and ev.src == ME for ev in got)
