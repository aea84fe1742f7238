"""A host program in a network namespace talks through a tap to a service behind the
fault harness and sees the configured faults (issue 6).

    ns (10.78.1.1) --tap-- [virt0 10.78.1.254 | router kernel | wire0 10.78.2.254] --wire-- [server kernel 10.78.2.1, UDP echo]

The in-process wire between the router and the server carries a netem qdisc (delay,
then a partition); the Linux program measures what it sees.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from rumpkern import Kernel, rump_init
from rumpkern.sched import Scheduler
from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    move_link_to_netns,
    ns_configure,
    ns_python,
    unique_ifname,
    unique_name,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(120)]

HOST, R_OUT, R_IN, SERVER = "10.78.1.1", "10.78.1.254", "10.78.2.254", "10.78.2.1"

CLIENT = (
    "import socket,time,json\n"
    "c=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); c.settimeout(1.0)\n"
    "rtts=[]; lost=0\n"
    "for i in range(N):\n"
    "    t=time.monotonic(); c.sendto(b'%d'%i,(SERVER,7))\n"
    "    try:\n"
    "        d,_=c.recvfrom(100); rtts.append(time.monotonic()-t)\n"
    "    except socket.timeout:\n"
    "        lost+=1\n"
    "print(json.dumps({'rtts':rtts,'lost':lost}))\n"
)


@dataclass
class Harness:
    router: Kernel
    server: Kernel
    ns: NetNS
    wire_runner: QdiscRunner


@pytest.fixture
def harness() -> Iterator[Harness]:
    ns = NetNS("rnft")
    sched = Scheduler(virtual=False)
    kernels: list[Kernel] = []
    stop = threading.Event()
    try:
        ns.create()
        tap = unique_ifname("rft")
        seg = unique_name("ftwire")
        router = rump_init(hostname="router", scheduler=sched)
        server = rump_init(hostname="server", scheduler=sched)
        kernels += [router, server]
        router.config.if_create("virt0")
        router.config.if_set_linkstr("virt0", tap)
        router.config.addr_add("virt0", f"{R_OUT}/24")
        router.config.if_up("virt0")
        for k, addr in ((router, R_IN), (server, SERVER)):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", f"{addr}/24")
            k.config.if_up("wire0")
        router.config.sysctl_set("net.inet.ip.forwarding", 1)
        server.config.route_add("default", R_IN)
        # The harness: a netem qdisc on the router's side of the wire (toward the server).
        ifp = router.ifnet.lookup("wire0")
        runner = QdiscRunner(Netem(NetemParams(), router.rng), sched, ifp.link_transmit)
        sched.run(lambda: ifp.set_qdisc("egress", runner))
        # The service behind the harness: UDP echo on the server kernel, in a thread.
        fd = server.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        server.rump_sys_bind(fd, ("0.0.0.0", 7))
        server.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.2)
        sched.start_background()

        def echo() -> None:
            while not stop.is_set():
                try:
                    data, src = server.rump_sys_recvfrom(fd, 1500, 0)
                except OSError:
                    continue
                server.rump_sys_sendto(fd, data, 0, src)

        t = threading.Thread(target=echo, daemon=True)
        t.start()
        move_link_to_netns(tap, ns)
        ns_configure(ns, tap, f"{HOST}/24", routes=[("default", R_OUT)])
        yield Harness(router, server, ns, runner)
        stop.set()
        t.join(5)
    finally:
        # Each step runs even if an earlier one fails: the namespace must always go.
        try:
            stop.set()
            sched.stop_background()
            for k in kernels:
                k.halt()
        finally:
            ns.remove()


def _measure(h: Harness, n: int) -> dict[str, object]:
    import json

    r = ns_python(h.ns, f"N={n}; SERVER={SERVER!r}\n" + CLIENT, timeout=60)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)  # type: ignore[no-any-return]


def test_linux_program_sees_delay_then_partition_then_heal(harness: Harness) -> None:
    base = _measure(harness, 5)
    assert base["lost"] == 0
    harness.router.sched.run(lambda: harness.wire_runner.set_params(NetemParams(delay=0.150)))
    delayed = _measure(harness, 5)
    assert delayed["lost"] == 0
    assert min(delayed["rtts"]) >= 0.150  # type: ignore[type-var]
    assert max(base["rtts"]) < 0.150  # type: ignore[type-var]
    harness.router.sched.run(harness.wire_runner.partition)
    cut = _measure(harness, 3)
    assert cut["lost"] == 3
    harness.router.sched.run(harness.wire_runner.heal)
    healed = _measure(harness, 3)
    assert healed["lost"] == 0
    stats = harness.wire_runner.netem.stats
    assert stats.drop_partition >= 3 and stats.delayed >= 5
