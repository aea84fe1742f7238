"""netstat(1) command: -s, -i, -a and errors (-r is covered with route in test_cmd_route)."""

from __future__ import annotations

import errno
import re
import socket
from typing import Any

import pytest

from rumpkern.kernel import Kernel
from rumpnet.commands import UsageError, run_command
from rumpnet.netconfig import format_mac


def host(vnet: Any) -> Kernel:
    k: Kernel = vnet.kernel(1)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", vnet.seg("lan"))
    k.ifconfig("wire0", "inet", "10.0.1.1/24")
    return k


def test_stats_sections_and_protocol_filter(vnet: Any) -> None:
    k = host(vnet)
    k.ping("-n", "-c", "2", "10.0.1.1")
    out = k.netstat("-s")
    heads = [ln for ln in out.splitlines() if not ln.startswith("\t")]
    assert heads == ["tcp:", "udp:", "ip:", "icmp:", "arp:", "udp6:", "ip6:", "icmp6:", "rip6:"]
    assert [ln for ln in k.netstat("-s", "-f", "inet").splitlines() if not ln.startswith("\t")] == heads[:5]
    ip = k.netstat("-s", "-p", "ip")
    assert ip.startswith("ip:\n\t4 total packets received\n\t0 bad header checksums\n")
    assert "\t4 packets for this host\n" in ip
    assert "\t4 packets sent from this host\n" in ip
    assert ip in out
    icmp = k.netstat("-sp", "icmp")
    assert "\tOutput histogram:\n\t\techo reply: 2\n" in icmp
    assert "\tInput histogram:\n\t\techo reply: 2\n\t\techo: 2\n" in icmp
    assert "\t2 message responses generated\n" in icmp
    arp = k.netstat("-s", "-p", "arp")
    assert arp.startswith("arp:\n\t1 packet sent\n\t\t0 reply packets\n\t\t1 request packet\n")
    assert "\t1 entry overwritten" not in arp and "\t\t0 entries overwritten\n" in arp
    udp = k.netstat("-s", "-p", "udp")
    assert udp.startswith("udp:\n\t0 datagrams received\n\t0 with incomplete header\n")
    assert "\t0 delivered\n\t0 datagrams output\n" in udp
    assert k.netstat("-s", "-p", "tcp").startswith("tcp:\n\t0 packets sent\n\t\t0 data packets (0 bytes)\n")


def test_interfaces(vnet: Any) -> None:
    k = host(vnet)
    k.ifconfig("wire1", "create")
    mac = format_mac(k.ifnet.lookup("wire0").lladdr)
    mac1 = format_mac(k.ifnet.lookup("wire1").lladdr)
    assert k.netstat("-i") == (
        "Name  Mtu   Network       Address              Ipkts Ierrs    Opkts Oerrs Colls\n"
        "lo0   33624 <Link>                                 0     0        0     0     0\n"
        "lo0   33624 127/8         127.0.0.1                0     0        0     0     0\n"
        f"wire0 1500  <Link>        {mac}        0     0        1     0     0\n"
        f"wire0 1500  10.0.1/24     10.0.1.1                 0     0        1     0     0\n"
        f"wire1* 1500  <Link>        {mac1}        0     0        0     0     0\n"
    )
    assert k.netstat("-I", "wire0").splitlines()[1].startswith("wire0 1500  <Link>")


def test_active_connections(vnet: Any) -> None:
    k = host(vnet)
    u = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(u, ("0.0.0.0", 53))
    u2 = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(u2, ("10.0.1.1", 5000))
    k.rump_sys_connect(u2, ("10.0.1.7", 9))
    t = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(t, ("10.0.1.1", 80))
    k.rump_sys_listen(t, 5)
    out = k.netstat("-an")
    lines = out.splitlines()
    assert lines[:2] == ["Active Internet connections (including servers)",
                         "Proto Recv-Q Send-Q  Local Address          Foreign Address        State"]
    assert "tcp        0      0  10.0.1.1.80            *.*                    LISTEN" in lines
    assert "udp        0      0  *.53                   *.*                    " in lines
    assert "udp        0      0  10.0.1.1.5000          10.0.1.7.9             " in lines
    # Without -a, servers (no foreign address) are left out.
    assert k.netstat("-n").splitlines()[1:] == [
        "Proto Recv-Q Send-Q  Local Address          Foreign Address        State",
        "udp        0      0  10.0.1.1.5000          10.0.1.7.9             "]


def test_errors_and_usage(vnet: Any) -> None:
    k = host(vnet)
    with pytest.raises(OSError) as ei:
        k.netstat("-s", "-p", "xtp")
    assert (ei.value.errno, ei.value.strerror) == (errno.EINVAL, "netstat: xtp: unknown or uninstrumented protocol")
    with pytest.raises(OSError) as ei:
        k.netstat("-rn", "-f", "inet7")
    assert ei.value.strerror == "netstat: inet7: unknown address family"
    for argv in (["-Z"], ["-p"], ["extra"]):
        with pytest.raises(UsageError) as ue:
            run_command(k, "netstat", argv)
        assert re.match(r"(netstat: (unknown option|option requires an argument) -- .\n)?usage: netstat", str(ue.value.strerror))
    with pytest.raises(OSError) as ei:
        run_command(k, "frobctl", [])
    assert ei.value.errno == errno.ENOENT


def test_tc_delegates_to_the_fault_model(vnet: Any) -> None:
    k = host(vnet)
    assert k.tc("qdisc", "add", "dev", "wire0", "root", "netem", "delay", "10ms") == ""
    assert "netem" in k.tc("qdisc", "show", "dev", "wire0")
    with pytest.raises(OSError) as ei:
        k.tc("qdisc", "add", "dev", "nope0", "root", "netem", "delay", "10ms")
    assert ei.value.errno == errno.ENODEV
