"""route(8) command and ``netstat -rn``: NetBSD syntax, output and errors."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from rumpkern.kernel import Kernel
from rumpnet.commands import UsageError

HDR = ("Routing tables\n\nInternet:\n"
       "Destination        Gateway            Flags    Refs      Use    Mtu Interface\n")
METRICS = (" recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire\n"
           "       0         0         0         0         0         0         0         0 \n")


def host(vnet: Any, seed: int = 1, addr: str = "10.0.1.1/24") -> Kernel:
    k: Kernel = vnet.kernel(seed)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", vnet.seg("lan"))
    k.ifconfig("wire0", "inet", addr)
    return k




def test_netstat_rn_flags_connected_local_default(vnet: Any) -> None:
    k = host(vnet)
    assert k.route("add", "default", "10.0.1.254") == "add net default: gateway 10.0.1.254\n"
    expect = HDR + (
        "default            10.0.1.254         UGS         -        -      -  wire0\n"
        "10.0.1/24          link#2             UC          -        -      -  wire0\n"
        f"10.0.1.1           {'link#2':<18} UHl         -        -      -  lo0\n"
        "127/8              127.0.0.1          UGRS        -        -  33624  lo0\n"
        "127.0.0.1          lo0                UHl         -        -  33624  lo0\n"
    )
    # without -f every family's table: Internet, then Internet6 (netinet6 is loaded)
    assert k.netstat("-rn").startswith(expect + "\nInternet6:\n") and k.netstat("-r") == k.netstat("-rn")
    assert k.netstat("-rnf", "inet") == expect
    assert k.netstat("-rn", "-f", "inet") == expect
    assert k.route("-n", "show") == k.netstat("-rn")
    assert k.route("show", "-inet") == expect


def test_add_host_net_and_delete_messages(vnet: Any) -> None:
    k = host(vnet)
    assert k.route("add", "10.0.2.5", "10.0.1.254") == "add host 10.0.2.5: gateway 10.0.1.254\n"
    assert k.route("add", "-net", "10.0.2.0/24", "10.0.1.253") == "add net 10.0.2.0: gateway 10.0.1.253\n"
    assert k.route("add", "-net", "10.0.3.0", "-netmask", "255.255.255.0", "10.0.1.253", "-mtu", "1280") == \
        "add net 10.0.3.0: gateway 10.0.1.253\n"
    assert k.route("-q", "add", "10.0.4.0/24", "10.0.1.253") == ""
    rows = {ln.split()[0]: ln for ln in k.netstat("-rn", "-f", "inet").splitlines()[4:]}
    assert rows["10.0.2.5"] == "10.0.2.5           10.0.1.254         UGHS        -        -      -  wire0"
    assert rows["10.0.2/24"] == "10.0.2/24          10.0.1.253         UGS         -        -      -  wire0"
    assert rows["10.0.3/24"] == "10.0.3/24          10.0.1.253         UGS         -        -   1280  wire0"
    assert k.route("delete", "-net", "10.0.2.0/24", "10.0.1.253") == "delete net 10.0.2.0: gateway 10.0.1.253\n"
    assert k.route("delete", "10.0.2.5") == "delete host 10.0.2.5\n"
    assert "10.0.2" not in k.netstat("-rn", "-f", "inet")


def test_reject_blackhole_change_and_flush(vnet: Any) -> None:
    k = host(vnet)
    k.route("add", "207.46.197.32", "127.0.0.1", "-reject")
    row = [ln for ln in k.route("-n", "show").splitlines() if ln.startswith("207.46")][0]
    assert row.split()[2] == "UGHRS"
    assert k.route("change", "207.46.197.32", "127.0.0.1", "-blackhole") == \
        "change host 207.46.197.32: gateway 127.0.0.1\n"
    row = [ln for ln in k.netstat("-rn", "-f", "inet").splitlines() if ln.startswith("207.46")][0]
    assert row.split()[2] == "UGHBS"
    k.route("add", "default", "10.0.1.254")
    k.route("change", "default", "-reject")
    assert [ln.split()[2] for ln in k.netstat("-rn", "-f", "inet").splitlines() if ln.startswith("default")] == ["UGRS"]
    k.route("change", "default", "-noreject")
    k.route("change", "-net", "10.0.1.0/24", "-reject")
    assert [ln.split()[2] for ln in k.netstat("-rn", "-f", "inet").splitlines() if ln.startswith("10.0.1/24")] == ["URCS"]
    k.route("change", "-net", "10.0.1.0/24", "-noreject")
    k.route("change", "default", "10.0.1.250")
    assert [ln.split()[1] for ln in k.netstat("-rn", "-f", "inet").splitlines() if ln.startswith("default")] == ["10.0.1.250"]
    k.route("add", "10.0.7.0/24", "10.0.1.250")
    out = k.route("flush")
    # Every gateway route goes (127/8 too: it is a reject route via 127.0.0.1).
    assert out == ("default              done\n10.0.7/24            done\n"
                   "127/8                done\n207.46.197.32        done\n")
    rest = [ln.split()[0] for ln in k.netstat("-rn", "-f", "inet").splitlines()[4:]]
    assert rest == ["10.0.1/24", "10.0.1.1", "127.0.0.1"]


def test_route_get_default_connected_local(vnet: Any) -> None:
    k = host(vnet)
    k.route("add", "default", "10.0.1.254")
    assert k.route("get", "10.0.2.1") == (
        "   route to: 10.0.2.1\n"
        "destination: default\n"
        "       mask: default\n"
        "    gateway: 10.0.1.254\n"
        " local addr: 10.0.1.1\n"
        "  interface: wire0\n"
        "      flags: 0x843<UP,GATEWAY,DONE,STATIC>\n" + METRICS
    )
    assert k.route("-n", "get", "10.0.1.7") == (
        "   route to: 10.0.1.7\n"
        "destination: 10.0.1.0\n"
        "       mask: 255.255.255.0\n"
        " local addr: 10.0.1.1\n"
        "  interface: wire0\n"
        "      flags: 0x141<UP,DONE,CONNECTED>\n" + METRICS
    )
    assert k.route("get", "10.0.1.1") == (
        "   route to: 10.0.1.1\n"
        "destination: 10.0.1.1\n"
        " local addr: 10.0.1.1\n"
        "  interface: lo0\n"
        "      flags: 0x40045<UP,HOST,DONE,LOCAL>\n" + METRICS
    )
    k.route("add", "-net", "192.168.0.0/24", "10.0.1.1", "-ifa", "10.0.1.1")
    out = k.route("get", "192.168.0.1")
    assert "destination: 192.168.0.0\n       mask: 255.255.255.0\n    gateway: 10.0.1.1\n" in out


def test_route_get_not_in_table(vnet: Any) -> None:
    k = host(vnet)
    with pytest.raises(OSError) as ei:
        k.route("get", "192.0.2.1")
    assert ei.value.errno == errno.ESRCH
    assert ei.value.strerror == ("route: writing to routing socket: No such process\n"
                                 "get host 192.0.2.1: not in table")


@pytest.mark.parametrize("argv,code,msg", [
    (["add", "default", "10.0.9.1"], errno.ENETUNREACH,
     "route: writing to routing socket: Network is unreachable\n"
     "add net default: gateway 10.0.9.1: Network is unreachable"),
    (["add", "-net", "10.0.1.0/24", "10.0.1.5"], errno.EEXIST,
     "route: writing to routing socket: File exists\n"
     "add net 10.0.1.0: gateway 10.0.1.5: entry already exists"),
    (["delete", "-net", "10.0.8.0/24"], errno.ESRCH,
     "route: writing to routing socket: No such process\ndelete net 10.0.8.0: not in table"),
    (["change", "10.0.8.8", "10.0.1.5"], errno.ESRCH,
     "route: writing to routing socket: No such process\nchange host 10.0.8.8: gateway 10.0.1.5: not in table"),
    (["add", "10.0.x.1", "10.0.1.5"], errno.EINVAL, "route: 10.0.x.1: bad value"),
    (["monitor"], errno.EOPNOTSUPP, "route: monitor: Operation not supported"),
])
def test_errors(vnet: Any, argv: list[str], code: int, msg: str) -> None:
    k = host(vnet)
    with pytest.raises(OSError) as ei:
        k.route(*argv)
    assert not isinstance(ei.value, UsageError)
    assert (ei.value.errno, ei.value.strerror) == (code, msg)


@pytest.mark.parametrize("argv", [[], ["frob"], ["add"], ["add", "default", "-bogus"], ["-Z", "show"],
                                  ["get", "10.0.0.1", "10.0.0.2"]])
def test_usage(vnet: Any, argv: list[str]) -> None:
    k = host(vnet)
    with pytest.raises(UsageError) as ei:
        k.route(*argv)
    assert "usage: route [-dfLnqSsTtv] cmd [[-<qualifers>] args]" in str(ei.value.strerror)
