"""sysctl(8) command: NetBSD syntax, output and errors."""

from __future__ import annotations

import errno
import re
from typing import Any

import pytest

from rumpnet.commands import UsageError


def test_read_write_and_quiet(vnet: Any) -> None:
    k = vnet.kernel(1, hostname="gw")
    assert k.sysctl("net.inet.ip.forwarding") == "net.inet.ip.forwarding = 0\n"
    assert k.sysctl("-n", "net.inet.ip.ttl") == "64\n"
    assert k.sysctl("kern.hostname") == "kern.hostname = gw\n"
    assert k.sysctl("-w", "net.inet.ip.forwarding=1") == "net.inet.ip.forwarding: 0 -> 1\n"
    assert k.sysctl("net.inet.ip.forwarding") == "net.inet.ip.forwarding = 1\n"
    assert k.sysctl("-w", "net.inet.ip.ttl=32", "kern.hostname=rtr") == \
        "net.inet.ip.ttl: 64 -> 32\nkern.hostname: gw -> rtr\n"
    assert k.sysctl("-nw", "net.inet.ip.ttl=33") == "32 -> 33\n"
    assert k.sysctl("-qw", "net.inet.ip.ttl=34") == ""
    assert k.sysctl("-n", "net.inet.ip.ttl", "kern.hostname") == "34\nrtr\n"
    assert k.config.sysctl_get("net.inet.ip.ttl") == 34


def test_prefix_and_all(vnet: Any) -> None:
    k = vnet.kernel(1)
    out = k.sysctl("net.inet.arp")
    # MIB order, as NetBSD's sysctl walks the tree (it used to be sorted by name)
    assert out == ("net.inet.arp.keep = 1200\nnet.inet.arp.down = 20\nnet.inet.arp.maxtries = 5\n"
                   "net.inet.arp.maxhold = 16\nnet.inet.arp.log_movements = 1\n"
                   "net.inet.arp.log_permanent_modify = 1\n")
    everything = k.sysctl("-a")
    assert out in everything
    assert everything.startswith("kern.ostype = NetBSD\nkern.osrelease = 10.0\nkern.hostname = ")
    assert everything.index("kern.") < everything.index("net.inet.ip.forwarding = ") < everything.index("net.inet.tcp.")
    # a structure sysctl(8) has a handler for (sbin/sysctl/sysctl.c kern_clockrate)
    assert "kern.clockrate: tick = 10000, tickadj = 40, hz = 100, profhz = 100, stathz = 100\n" in everything
    assert k.sysctl("-n", "kern.clockrate") == "tick = 10000, tickadj = 40, hz = 100, profhz = 100, stathz = 100\n"
    assert "kern.ostype = NetBSD\n" in everything
    assert ".stats" not in everything  # structures are netstat -s's business
    assert k.sysctl("-n", "net.inet.arp.keep") == "1200\n"


@pytest.mark.parametrize("argv,code,msg", [
    (["net.inet.foo"], errno.ENOENT, "sysctl: third level name 'foo' in 'net.inet.foo' is invalid"),
    (["bogus"], errno.ENOENT, "sysctl: top level name 'bogus' in 'bogus' is invalid"),
    (["net.inet.ip.forwarding.x"], errno.ENOENT,
     "sysctl: fifth level name 'x' in 'net.inet.ip.forwarding.x' is invalid"),
    (["-w", "net.inet.ip.forwarding=7"], errno.EINVAL, "sysctl: net.inet.ip.forwarding: Invalid argument"),
    (["-w", "net.inet.ip.ttl=abc"], errno.EINVAL, "sysctl: net.inet.ip.ttl: Invalid argument"),
    (["-w", "net.inet.ip.stats=1"], errno.EPERM, "sysctl: net.inet.ip.stats: Operation not permitted"),
    (["net.inet.ip.ttl=3"], errno.EINVAL, "sysctl: Must specify -w to set variables"),
])
def test_errors(vnet: Any, argv: list[str], code: int, msg: str) -> None:
    k = vnet.kernel(1)
    with pytest.raises(OSError) as ei:
        k.sysctl(*argv)
    assert not isinstance(ei.value, UsageError)
    assert (ei.value.errno, ei.value.strerror) == (code, msg)
    assert k.sysctl("-n", "net.inet.ip.ttl") == "64\n"


@pytest.mark.parametrize("argv", [[], ["-x"], ["-a", "kern"], ["-w", "net.inet.ip.ttl"]])
def test_usage(vnet: Any, argv: list[str]) -> None:
    k = vnet.kernel(1)
    with pytest.raises(UsageError) as ei:
        k.sysctl(*argv)
    assert re.match(r"(sysctl: (unknown option|option requires an argument) -- .\n)?usage: sysctl", str(ei.value.strerror))
