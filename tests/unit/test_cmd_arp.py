"""arp(8) command: NetBSD syntax, output, errors and cache expiry on virtual time."""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Any

import pytest

from rumpkern.kernel import Kernel
from rumpnet.commands import PingFailed, UsageError
from rumpnet.netconfig import format_mac


def lan(vnet: Any) -> tuple[Kernel, Kernel]:
    a: Kernel = vnet.kernel(1)
    b: Kernel = vnet.kernel(2)
    for k, ip in ((a, "10.0.1.1/24"), (b, "10.0.1.2/24")):
        k.ifconfig("wire0", "create")
        k.ifconfig("wire0", "linkstr", vnet.seg("lan"))
        k.ifconfig("wire0", "inet", ip)
    return a, b


def mac(k: Kernel) -> str:
    return format_mac(k.ifnet.lookup("wire0").lladdr)


def test_learned_entry_shown_then_expires_after_keep(vnet: Any) -> None:
    a, b = lan(vnet)
    assert a.sysctl("-w", "net.inet.arp.keep=5") == "net.inet.arp.keep: 1200 -> 5\n"
    with pytest.raises(OSError) as ei:
        a.arp("-n", "10.0.1.2")
    assert ei.value.strerror == "arp: 10.0.1.2 (10.0.1.2) -- no entry"
    a.ping("-n", "-c", "1", "10.0.1.2")
    line = f"? (10.0.1.2) at {mac(b)} on wire0\n"
    assert a.arp("-n", "10.0.1.2") == line
    assert a.arp("-a") == line
    assert a.arp("-an") == line
    a.run_for(3)
    assert a.arp("-n", "10.0.1.2") == line
    a.run_for(3)
    with pytest.raises(OSError) as ei:
        a.arp("-n", "10.0.1.2")
    assert ei.value.errno == errno.ENOENT
    assert "-- no entry" in str(ei.value.strerror)
    assert a.arp("-a") == ""


def test_static_permanent_published_temp_and_delete(vnet: Any) -> None:
    a, _ = lan(vnet)
    assert a.arp("-s", "10.0.1.10", "b2:a0:20:00:00:10") == ""
    assert a.arp("-n", "10.0.1.10") == "? (10.0.1.10) at b2:a0:20:00:00:10 on wire0 permanent\n"
    a.arp("-s", "10.0.1.11", "b2:a0:20:00:00:11", "pub")
    assert a.arp("-n", "10.0.1.11") == \
        "? (10.0.1.11) at b2:a0:20:00:00:11 on wire0 permanent published (proxy only)\n"
    a.arp("-s", "10.0.1.12", "b2:a0:20:00:00:12", "temp")
    assert a.arp("-n", "10.0.1.12") == "? (10.0.1.12) at b2:a0:20:00:00:12 on wire0\n"
    # A temporary entry can be overwritten, a permanent one cannot.
    a.arp("-s", "10.0.1.12", "b2:a0:20:00:00:ff")
    assert a.arp("-n", "10.0.1.12") == "? (10.0.1.12) at b2:a0:20:00:00:ff on wire0 permanent\n"
    with pytest.raises(OSError) as ei:
        a.arp("-s", "10.0.1.10", "b2:a0:20:00:00:fe")
    assert (ei.value.errno, ei.value.strerror) == (errno.EEXIST, "arp: writing to routing socket: File exists")
    assert a.arp("-d", "10.0.1.10") == ""  # NetBSD prints "deleted" only with -v
    with pytest.raises(OSError) as ei:
        a.arp("-d", "10.0.1.10")
    assert (ei.value.errno, ei.value.strerror) == (errno.ESRCH, "arp: delete: can't locate 10.0.1.10")
    assert a.arp("-v", "-d", "-a") == "10.0.1.11 (10.0.1.11) deleted\n10.0.1.12 (10.0.1.12) deleted\n"
    assert a.arp("-a") == ""


def test_static_entry_survives_keep_and_dynamic_is_overwritten(vnet: Any) -> None:
    a, b = lan(vnet)
    a.sysctl("-w", "net.inet.arp.keep=2")
    a.arp("-s", "10.0.1.20", "b2:a0:20:00:00:20")
    a.ping("-n", "-c", "1", "10.0.1.2")
    a.arp("-s", "10.0.1.2", "b2:a0:20:00:00:00")  # a dynamic entry can be overwritten
    a.run_for(10)
    assert a.arp("-an") == ("? (10.0.1.2) at b2:a0:20:00:00:00 on wire0 permanent\n"
                            "? (10.0.1.20) at b2:a0:20:00:00:20 on wire0 permanent\n")


def test_incomplete_entry(vnet: Any) -> None:
    a, _ = lan(vnet)
    with pytest.raises(PingFailed):
        a.ping("-n", "-c", "1", "-w", "1", "10.0.1.9")
    assert a.arp("-an") == "? (10.0.1.9) at (incomplete) on wire0\n"


def test_file(vnet: Any, tmp_path: Path) -> None:
    a, _ = lan(vnet)
    f = tmp_path / "list"
    f.write_text("10.0.1.11 b2:a0:20:00:00:11\n10.0.1.12 b2:a0:20:00:00:12 temp\n\n")
    assert a.arp("-f", str(f)) == ""
    assert a.arp("-an") == ("? (10.0.1.11) at b2:a0:20:00:00:11 on wire0 permanent\n"
                            "? (10.0.1.12) at b2:a0:20:00:00:12 on wire0\n")
    with pytest.raises(OSError) as ei:
        a.arp("-f", str(tmp_path / "missing"))
    assert ei.value.strerror == f"arp: cannot open {tmp_path / 'missing'}"


@pytest.mark.parametrize("argv,code,msg", [
    (["-s", "10.0.1.30", "zz:zz"], errno.EINVAL, "arp: invalid Ethernet address 'zz:zz'"),
    (["-s", "10.9.9.9", "b2:a0:20:00:00:01"], errno.ENETUNREACH,
     "arp: writing to routing socket: Network is unreachable"),
    (["-n", "foo"], errno.EINVAL, "arp: foo: Unknown host"),
])
def test_errors(vnet: Any, argv: list[str], code: int, msg: str) -> None:
    a, _ = lan(vnet)
    with pytest.raises(OSError) as ei:
        a.arp(*argv)
    assert (ei.value.errno, ei.value.strerror) == (code, msg)


@pytest.mark.parametrize("argv", [[], ["-s", "10.0.1.2"], ["-d"], ["-x"], ["-a", "10.0.1.2"],
                                  ["-s", "10.0.1.2", "b2:a0:20:00:00:01", "bogus"]])
def test_usage(vnet: Any, argv: list[str]) -> None:
    a, _ = lan(vnet)
    with pytest.raises(UsageError) as ei:
        a.arp(*argv)
    assert re.match(r"(arp: (unknown option|option requires an argument) -- .\n)?Usage: arp \[\-n\] hostname", str(ei.value.strerror))


def test_entries_in_netstat_rn_like_netbsd(vnet: Any) -> None:
    a, b = lan(vnet)
    a.arp("-s", "10.0.1.10", "b2:a0:20:00:00:10")
    a.arp("-s", "10.0.1.11", "b2:a0:20:00:00:11", "temp")
    a.arp("-s", "10.0.1.12", "b2:a0:20:00:00:12", "pub")
    a.ping("-n", "-c", "1", "10.0.1.2")
    with pytest.raises(PingFailed):
        a.ping("-n", "-c", "1", "-w", "1", "10.0.1.9")
    rows = a.netstat("-rn", "-f", "inet").splitlines()[8:]
    assert rows == [
        f"10.0.1.2           {mac(b)}  UHL         -        -      -  wire0",
        "10.0.1.9           link#2             UHL         -        -      -  wire0",
        "10.0.1.10          b2:a0:20:00:00:10  UHLS        -        -      -  wire0",
        "10.0.1.11          b2:a0:20:00:00:11  UHL         -        -      -  wire0",
        "10.0.1.12          b2:a0:20:00:00:12  UHLSp       -        -      -  wire0",
    ]
    assert a.route("-n", "show") == a.netstat("-rn")
