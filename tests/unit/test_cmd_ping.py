"""ping(8) command: through a router, failures, ICMP errors, and the three ways to call it."""

from __future__ import annotations

import errno
import re
import threading
from typing import Any

import pytest

from rumpkern.kernel import Kernel
from rumpnet.commands import PingFailed, UsageError


def iface(vnet: Any, k: Kernel, ifname: str, seg: str, addr: str) -> None:
    k.ifconfig(ifname, "create")
    k.ifconfig(ifname, "linkstr", vnet.seg(seg))
    k.ifconfig(ifname, "inet", addr)


def routed(vnet: Any, forwarding: bool = True) -> tuple[Kernel, Kernel, Kernel]:
    """a 10.0.1.1 -- 10.0.1.254 r 10.0.2.254 -- 10.0.2.1 b"""
    a, r, b = vnet.kernel(1), vnet.kernel(2), vnet.kernel(3)
    iface(vnet, a, "wire0", "lan1", "10.0.1.1/24")
    iface(vnet, r, "wire0", "lan1", "10.0.1.254/24")
    iface(vnet, r, "wire1", "lan2", "10.0.2.254/24")
    iface(vnet, b, "wire0", "lan2", "10.0.2.1/24")
    a.route("add", "default", "10.0.1.254")
    b.route("add", "default", "10.0.2.254")
    if forwarding:
        r.sysctl("-w", "net.inet.ip.forwarding=1")
    return a, r, b


OK3 = ("PING 10.0.2.1 (10.0.2.1): 56 data bytes\n"
       "64 bytes from 10.0.2.1: icmp_seq=0 ttl=63 time=0.000 ms\n"
       "64 bytes from 10.0.2.1: icmp_seq=1 ttl=63 time=0.000 ms\n"
       "64 bytes from 10.0.2.1: icmp_seq=2 ttl=63 time=0.000 ms\n"
       "\n"
       "----10.0.2.1 PING Statistics----\n"
       "3 packets transmitted, 3 packets received, 0.0% packet loss\n"
       "round-trip min/avg/max/stddev = 0.000/0.000/0.000/0.000 ms\n")


def test_ping_through_router(vnet: Any) -> None:
    a, r, _ = routed(vnet)
    t0 = a.clock_now()
    assert a.ping("-n", "-c", "3", "10.0.2.1") == OK3
    assert a.clock_now() - t0 == pytest.approx(2.0)  # one second between packets
    assert "\t6 packets forwarded\n" in r.netstat("-s", "-p", "ip")  # requests and replies
    assert "\t\techo reply: 3\n" in a.netstat("-s", "-p", "icmp")


def test_ping_fails_without_forwarding(vnet: Any) -> None:
    a, r, _ = routed(vnet, forwarding=False)
    with pytest.raises(PingFailed) as ei:
        a.ping("-n", "-c", "2", "10.0.2.1")
    e = ei.value
    assert e.exit_status == 2
    assert e.errno == errno.ETIMEDOUT
    assert e.output == ("PING 10.0.2.1 (10.0.2.1): 56 data bytes\n"
                        "\n"
                        "----10.0.2.1 PING Statistics----\n"
                        "2 packets transmitted, 0 packets received, 100.0% packet loss\n")
    assert e.strerror == "2 packets transmitted, 0 packets received, 100.0% packet loss"
    assert "\t2 packets not forwardable\n" in r.netstat("-s", "-p", "ip")


def test_ping_ttl_1_time_exceeded(vnet: Any) -> None:
    a, _, _ = routed(vnet)
    with pytest.raises(PingFailed) as ei:
        a.ping("-n", "-c", "1", "-w", "2", "-T", "1", "10.0.2.1")
    assert ei.value.output == ("PING 10.0.2.1 (10.0.2.1): 56 data bytes\n"
                               "36 bytes from 10.0.1.254: Time To Live exceeded for icmp_seq=0\n"
                               "\n"
                               "----10.0.2.1 PING Statistics----\n"
                               "1 packets transmitted, 0 packets received, 100.0% packet loss\n")


def test_ping_no_route(vnet: Any) -> None:
    a = vnet.kernel(1)
    iface(vnet, a, "wire0", "lan1", "10.0.1.1/24")
    with pytest.raises(PingFailed) as ei:
        a.ping("-n", "-c", "1", "-w", "1", "192.0.2.1")
    e = ei.value
    assert (e.errno, e.strerror, e.exit_status) == (errno.EHOSTUNREACH, "ping: sendto: No route to host", 2)
    assert "ping: sendto: No route to host\n" in e.output


def test_ping_local_quiet_size_and_partial_loss(vnet: Any) -> None:
    a = vnet.kernel(1)
    iface(vnet, a, "wire0", "lan1", "10.0.1.1/24")
    out = a.ping("-c", "2", "-i", "0.5", "-s", "100", "10.0.1.1")
    assert out.splitlines()[:3] == ["PING 10.0.1.1 (10.0.1.1): 100 data bytes",
                                    "108 bytes from 10.0.1.1: icmp_seq=0 ttl=64 time=0.000 ms",
                                    "108 bytes from 10.0.1.1: icmp_seq=1 ttl=64 time=0.000 ms"]
    assert a.ping("-q", "-c", "1", "127.0.0.1") == (
        "PING 127.0.0.1 (127.0.0.1): 56 data bytes\n\n----127.0.0.1 PING Statistics----\n"
        "1 packets transmitted, 1 packets received, 0.0% packet loss\n"
        "round-trip min/avg/max/stddev = 0.000/0.000/0.000/0.000 ms\n")
    assert a.ping("-n", "-c", "1", "-s", "4", "localhost").splitlines()[1] == \
        "12 bytes from 127.0.0.1: icmp_seq=0 ttl=64"


def test_ping_deadline_counts_packets(vnet: Any) -> None:
    a, _, b = routed(vnet)
    b.ifconfig("wire0", "down")
    with pytest.raises(PingFailed) as ei:
        a.ping("-n", "-w", "3", "10.0.2.1")
    assert "3 packets transmitted, 0 packets received, 100.0% packet loss" in ei.value.output


def test_ping_awaited_on_the_scheduler_loop(vnet: Any) -> None:
    a, _, _ = routed(vnet)

    async def main() -> str:
        out: str = await a.ping("-n", "-c", "3", "10.0.2.1")
        return out

    assert vnet.sched.run_coroutine(main()) == OK3


def test_ping_against_background_kernel_and_from_threads(vnet: Any) -> None:
    a, _, _ = routed(vnet)
    a.serve_background()
    assert a.ping("-n", "-c", "3", "10.0.2.1") == OK3
    results: list[str] = []
    t = threading.Thread(target=lambda: results.append(a.ping("-n", "-c", "1", "10.0.1.254")))
    t.start()
    t.join(30)
    assert results and "1 packets received" in results[0]
    a.stop_background()


@pytest.mark.parametrize("argv", [[], ["-c"], ["-Z", "10.0.0.1"], ["10.0.0.1", "10.0.0.2"]])
def test_usage(vnet: Any, argv: list[str]) -> None:
    a = vnet.kernel(1)
    with pytest.raises(UsageError) as ei:
        a.ping(*argv)
    assert re.match(r"(ping: (unknown option|option requires an argument) -- .\n)?usage: ping", str(ei.value.strerror))


@pytest.mark.parametrize("argv,msg", [
    (["nosuchhost"], 'ping: Cannot resolve "nosuchhost" (Unknown host)'),
    (["-c", "0", "10.0.0.1"], "ping: Bad/invalid number of packets: 0"),
    (["-c", "x", "10.0.0.1"], "ping: invalid count value: `x'"),
    (["-T", "300", "10.0.0.1"], "ping: ttl 300 out of range"),
])
def test_errors(vnet: Any, argv: list[str], msg: str) -> None:
    a = vnet.kernel(1)
    with pytest.raises(OSError) as ei:
        a.ping(*argv)
    assert not isinstance(ei.value, (UsageError, PingFailed))
    assert ei.value.strerror == msg


def test_awaited_failure_and_other_commands_on_the_loop(vnet: Any) -> None:
    a, _, _ = routed(vnet, forwarding=False)

    async def main() -> tuple[str, int, str]:
        names = a.ifconfig("-l")  # plain commands run at once on the CPU
        try:
            await a.ping("-n", "-c", "1", "10.0.2.1")
        except PingFailed as e:
            return names, e.exit_status, e.output
        raise AssertionError("ping should have failed")

    names, status, output = vnet.sched.run_coroutine(main())
    assert names == "lo0 wire0\n"
    assert status == 2
    assert output.endswith("1 packets transmitted, 0 packets received, 100.0% packet loss\n")


def test_round_trip_times_with_netem_delay(vnet: Any) -> None:
    a, _, _ = routed(vnet)
    a.tc("qdisc", "add", "dev", "wire0", "root", "netem", "delay", "10ms")
    out = a.ping("-n", "-c", "2", "10.0.2.1")
    assert out.splitlines()[1:3] == ["64 bytes from 10.0.2.1: icmp_seq=0 ttl=63 time=10.000 ms",
                                     "64 bytes from 10.0.2.1: icmp_seq=1 ttl=63 time=10.000 ms"]
    assert out.endswith("round-trip min/avg/max/stddev = 10.000/10.000/10.000/0.000 ms\n")


def test_without_count_or_deadline_one_packet(vnet: Any) -> None:
    a = vnet.kernel(1)
    iface(vnet, a, "wire0", "lan1", "10.0.1.1/24")
    assert "1 packets transmitted, 1 packets received, 0.0% packet loss" in a.ping("10.0.1.1")
    out = a.ping("-n", "-w", "2.5", "-i", "1", "10.0.1.1")
    assert "3 packets transmitted, 3 packets received" in out
