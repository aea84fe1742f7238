"""The netinet6 cores against the Linux kernel, before they are part of a rumpnet kernel:
an :class:`~rumpnet.netinet6.in6_proto.Inet6` node on a host tap whose other end is in a
namespace the test makes, pumped by the test itself on the real clock (the cores only see
bytes and ``now``). Linux resolves us and pings us (fragmented too), we resolve and ping
Linux (global and link-local), our DAD sees Linux defend its address, Linux configures
itself (SLAAC and a default route) from our router advertisements, and a snooping Linux
bridge learns our multicast groups from our MLDv2 reports."""

from __future__ import annotations

import os
import random
import re
import select
import time
from collections.abc import Callable, Iterator

import pytest

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import Icmp6RawInput
from rumpnet.netinet6.in6_proto import Inet6
from rumpnet.netinet6.in6_var import IN6_IFF_DUPLICATED
from rumpnet.netinet6.nd6 import NdPrefixInfo
from rumpnet.netinet6.rtadvd import RtadvConfig
from rumpnet.testing.in6sim import StaticRoutes
from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    move_link_to_netns,
    ns_configure,
    ns_popen,
    ns_run,
    unique_ifname,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

P = in6.pton
LINUX, OURS = "fc00:61::1", "fc00:61::2"
ETHERTYPE_IPV6 = b"\x86\xdd"
IFINDEX = 2


class TapNode:
    """One Inet6 node on a tap (its Linux end moved into ``ns``), pumped from the test."""

    def __init__(self, ns: NetNS, forwarding: bool = False) -> None:
        import pytun

        self.tapname = unique_ifname("r6")
        self.dev = pytun.TunTapDevice(name=self.tapname, flags=pytun.IFF_TAP | pytun.IFF_NO_PI)
        self.fd = self.dev.fileno()
        os.set_blocking(self.fd, False)
        move_link_to_netns(self.tapname, ns)
        self.mac = bytes((0x02, 0x6E, 0x36, 0x00, 0x00, os.getpid() & 0xFF))
        self.t0 = time.monotonic()
        self.routes = StaticRoutes()
        self.node = Inet6(self.routes, random.Random(61))
        self.node.ip6_params.forwarding = int(forwarding)
        self.node.icmp6.deliver_raw = True
        self.node.if_attach(IFINDEX, "virt0", self.mac, 1500, self.now())
        self.events: list[object] = []

    def now(self) -> float:
        return time.monotonic() - self.t0

    def close(self) -> None:
        self.dev.close()

    def _flush(self) -> None:
        for f in self.node.frames_to_send():
            os.write(self.fd, f.lladdr + self.mac + ETHERTYPE_IPV6 + f.packet)
        while (ev := self.node.next_event()) is not None:
            self.routes.apply(ev)
            self.events.append(ev)

    def _read(self) -> None:
        for _ in range(256):
            try:
                frame = os.read(self.fd, 65536)
            except BlockingIOError:
                return
            if len(frame) < 14 or frame[12:14] != ETHERTYPE_IPV6:
                continue
            dst = frame[:6]
            if dst == self.mac or dst[0] & 1:
                self.node.input(IFINDEX, frame[14:], self.now(), bool(dst[0] & 1))

    def pump(self, until: Callable[[], bool], timeout: float) -> bool:
        """Run the node (I/O and timers) until ``until()`` or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                return False
            self._flush()
            t = self.node.get_timer()
            wait = 0.05 if t is None else max(0.0, min(0.05, t - self.now()))
            if select.select([self.fd], [], [], wait)[0]:
                self._read()
            t = self.node.get_timer()
            if t is not None and t <= self.now():
                self.node.handle_timer(self.now())
            self._flush()
        return True

    def replies(self) -> list[Icmp6RawInput]:
        return [e for e in self.events if isinstance(e, Icmp6RawInput) and e.msg[0] == 129]


@pytest.fixture
def linux() -> Iterator[tuple[NetNS, TapNode]]:
    with NetNS("r6t") as ns:
        tap = TapNode(ns)
        try:
            ns_run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{tap.tapname}.accept_dad=0"], check=True)
            ns_configure(ns, tap.tapname, f"{LINUX}/64")
            yield ns, tap
        finally:
            tap.close()


def _ready(tap: TapNode, addr: str) -> Callable[[], bool]:
    def check() -> bool:
        ia = tap.node.find_address(P(addr), IFINDEX)
        return ia is not None and ia.ready
    return check


def _run_while_pumping(ns: NetNS, tap: TapNode, argv: list[str], timeout: float) -> tuple[int, str]:
    with ns_popen(ns, argv) as proc:
        assert tap.pump(lambda: proc.poll() is not None, timeout), f"{argv} did not finish"
        out, _ = proc.communicate(timeout=5)
        return proc.popen.returncode, out


def test_linux_pings_us_small_and_fragmented(linux: tuple[NetNS, TapNode]) -> None:
    ns, tap = linux
    tap.node.add_address(IFINDEX, P(OURS), 64, 0, tap.now())
    assert tap.pump(_ready(tap, OURS), 10)
    rc, out = _run_while_pumping(ns, tap, ["ping", "-6", "-n", "-c", "3", "-i", "0.2", "-W", "2", OURS], 20)
    assert rc == 0 and "3 received" in out, out
    rc, out = _run_while_pumping(ns, tap, ["ping", "-6", "-n", "-c", "2", "-s", "4000", "-W", "2", OURS], 20)
    assert rc == 0 and "2 received" in out, out
    assert tap.node.ip6stat.ip6s_reassembled >= 2 and tap.node.ip6stat.ip6s_fragmented >= 2
    ln = tap.node.nd6.lookup(P(LINUX), IFINDEX)
    assert ln is not None and ln.lladdr is not None


def test_we_ping_linux_global_and_link_local(linux: tuple[NetNS, TapNode]) -> None:
    ns, tap = linux
    tap.node.add_address(IFINDEX, P(OURS), 64, 0, tap.now())
    assert tap.pump(_ready(tap, OURS), 10)
    tap.node.ping6(P(LINUX), 0x61, 1, b"to linux", tap.now())
    assert tap.pump(lambda: len(tap.replies()) == 1, 10)
    assert tap.replies()[0].src == P(LINUX) and tap.replies()[0].msg[8:] == b"to linux"
    out = ns_run(ns, ["ip", "-6", "-o", "addr", "show", "dev", tap.tapname, "scope", "link"], check=True).stdout
    ll = re.search(r"inet6 (fe80::[0-9a-f:]+)/64", out)
    assert ll, out
    assert tap.pump(lambda: tap.node.ifaddrs.get(IFINDEX).linklocal() is not None, 5)
    tap.node.ping6(P(ll.group(1)), 0x61, 2, b"link-local", tap.now(), zone=IFINDEX)
    assert tap.pump(lambda: len(tap.replies()) == 2, 10)
    assert tap.replies()[1].src == P(ll.group(1)) and tap.replies()[1].ifindex == IFINDEX


def test_our_dad_sees_linux_defend_its_address(linux: tuple[NetNS, TapNode]) -> None:
    ns, tap = linux
    assert tap.pump(lambda: tap.node.ifaddrs.get(IFINDEX).linklocal() is not None, 5)
    ia = tap.node.add_address(IFINDEX, P(LINUX), 64, 0, tap.now())
    assert tap.pump(lambda: bool(ia.flags & IN6_IFF_DUPLICATED) or ia.ready, 10)
    assert ia.flags & IN6_IFF_DUPLICATED


def test_linux_configures_itself_from_our_advertisements() -> None:
    with NetNS("r6t") as ns:
        tap = TapNode(ns, forwarding=True)
        try:
            ns_run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{tap.tapname}.accept_ra=2"], check=True)
            ns_configure(ns, tap.tapname)
            cfg = RtadvConfig([NdPrefixInfo(64, True, True, 3600, 1800, P("fc00:62::"))], maxinterval=4)
            tap.node.rtadvd.start(IFINDEX, cfg, tap.now())
            state = {"addr": "", "route": ""}

            def configured() -> bool:
                state["addr"] = ns_run(ns, ["ip", "-6", "-o", "addr", "show", "dev", tap.tapname]).stdout
                state["route"] = ns_run(ns, ["ip", "-6", "route", "show", "default"]).stdout
                return "fc00:62::" in state["addr"] and "via fe80::" in state["route"]

            deadline = time.monotonic() + 30
            while not configured() and time.monotonic() < deadline:
                tap.pump(lambda: False, 0.5)
            assert "fc00:62::" in state["addr"], state
            ll = in6.ntop(tap.node.ifaddrs.get(IFINDEX).linklocal().addr)
            assert f"via {ll}" in state["route"], state
        finally:
            tap.close()


def test_linux_bridge_snoops_our_mld_reports() -> None:
    """RFC 3810 reports well-formed enough for a snooping Linux bridge to learn the groups
    (the solicited-node groups ND depends on on such a switch)."""
    with NetNS("r6t") as ns:
        tap = TapNode(ns)
        try:
            for argv in (["ip", "link", "add", "br0", "type", "bridge", "mcast_snooping", "1"],
                         ["ip", "link", "set", tap.tapname, "master", "br0"],
                         ["ip", "link", "set", "br0", "up"], ["ip", "link", "set", tap.tapname, "up"]):
                ns_run(ns, argv, check=True)
            tap.node.add_address(IFINDEX, P(OURS), 64, 0, tap.now())
            tap.node.mld6.join(IFINDEX, P("ff05::1:3"), tap.now())
            ll = tap.node.ifaddrs.get(IFINDEX).linklocal(ready_only=False)
            assert ll is not None
            want = {"ff05::1:3", in6.ntop(in6.solicited_node(P(OURS))), in6.ntop(in6.solicited_node(ll.addr))}
            learned: set[str] = set()

            def snooped() -> bool:
                out = ns_run(ns, ["bridge", "mdb", "show"]).stdout
                learned.update(m.group(1) for m in re.finditer(rf"port {tap.tapname} grp (\S+)", out))
                return want <= learned

            deadline = time.monotonic() + 15
            while not snooped() and time.monotonic() < deadline:
                tap.pump(lambda: False, 0.5)
            assert want <= learned, learned
            assert "ff02::1" not in learned                       # all-nodes is never reported
        finally:
            tap.close()
