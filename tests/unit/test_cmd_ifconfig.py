"""ifconfig(8) command: NetBSD syntax, output and error messages."""

from __future__ import annotations

import errno
from typing import Any

import pytest

from rumpkern.kernel import Kernel
from rumpnet.commands import UsageError, run_command
from rumpnet.netconfig import format_mac


def wire(vnet: Any, k: Kernel, ifname: str, seg: str, addr: str | None = None) -> None:
    k.ifconfig(ifname, "create")
    k.ifconfig(ifname, "linkstr", vnet.seg(seg))
    if addr is not None:
        k.ifconfig(ifname, "inet", addr)


def mac(k: Kernel, ifname: str) -> str:
    return format_mac(k.ifnet.lookup(ifname).lladdr)


def test_show_one_interface_and_lo0(vnet: Any) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan", "10.0.1.1/24")
    k.run_for(3)   # the link-local address's DAD is over
    m = mac(k, "wire0")
    b = [int(x, 16) for x in m.split(":")]
    eui64 = f"fe80::{b[0] ^ 2:x}{b[1]:02x}:{b[2]:x}ff:fe{b[3]:02x}:{b[4]:x}{b[5]:02x}"   # RFC 4291 A
    assert k.ifconfig("wire0") == (
        "wire0: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> mtu 1500\n"
        f"\taddress: {m}\n"
        f"\tlinkstr: {vnet.seg('lan')}\n"
        "\tmedia: Ethernet autoselect\n"
        "\tstatus: active\n"
        "\tinet 10.0.1.1/24 broadcast 10.0.1.255 flags 0x0\n"
        f"\tinet6 {eui64}%wire0 prefixlen 64 scopeid 0x2\n"
    )
    assert k.ifconfig("lo0") == (
        "lo0: flags=0x8049<UP,LOOPBACK,RUNNING,MULTICAST> mtu 33624\n"
        "\tstatus: active\n"
        "\tinet 127.0.0.1/8 flags 0x0\n"
        "\tinet6 ::1 prefixlen 128\n"
        "\tinet6 fe80::1%lo0 prefixlen 64 scopeid 0x1\n"
    )
    assert k.ifconfig("-a") == k.ifconfig("lo0") + k.ifconfig("wire0")
    assert k.ifconfig("-l") == "lo0 wire0\n"
    assert "wire" in k.ifconfig("-C").split()


def test_create_down_interface_and_up_down(vnet: Any) -> None:
    k = vnet.kernel(1)
    assert k.ifconfig("wire3", "create") == ""
    out = k.ifconfig("wire3")
    assert out.startswith("wire3: flags=0x8802<BROADCAST,SIMPLEX,MULTICAST> mtu 1500\n")
    assert "\tstatus: no carrier\n" in out
    assert "linkstr" not in out
    k.ifconfig("wire3", "linkstr", vnet.seg("x"))
    k.ifconfig("wire3", "up")
    assert k.ifconfig("wire3").startswith("wire3: flags=0x8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST>")
    k.ifconfig("wire3", "down")
    assert k.ifconfig("wire3").startswith("wire3: flags=0x8842<BROADCAST,RUNNING,SIMPLEX,MULTICAST>")
    assert k.ifconfig("-l", "-u") == "lo0\n"
    assert k.ifconfig("-l", "-d") == "wire3\n"
    k.ifconfig("wire3", "destroy")
    assert k.ifconfig("-l") == "lo0\n"


def test_addresses_alias_delete_and_implied_inet(vnet: Any) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan")
    k.ifconfig("wire0", "10.0.1.1/24")  # inet implied
    k.ifconfig("wire0", "inet", "10.0.1.2", "netmask", "255.255.255.0", "alias")
    k.ifconfig("wire0", "inet", "192.168.7.1", "netmask", "0xffff0000", "broadcast", "192.168.255.255", "alias")
    lines = [ln for ln in k.ifconfig("wire0").splitlines() if ln.startswith("\tinet ")]
    assert lines == [
        "\tinet 10.0.1.1/24 broadcast 10.0.1.255 flags 0x0",
        "\tinet 10.0.1.2/24 broadcast 10.0.1.255 flags 0x0",
        "\tinet 192.168.7.1/16 broadcast 192.168.255.255 flags 0x0",
    ]
    k.ifconfig("wire0", "inet", "10.0.1.2", "-alias")
    k.ifconfig("wire0", "inet", "192.168.7.1", "delete")
    lines = [ln for ln in k.ifconfig("wire0").splitlines() if ln.startswith("\tinet ")]
    assert lines == ["\tinet 10.0.1.1/24 broadcast 10.0.1.255 flags 0x0"]
    # Without alias the primary address is replaced.
    k.ifconfig("wire0", "inet", "10.0.5.1/24")
    lines = [ln for ln in k.ifconfig("wire0").splitlines() if ln.startswith("\tinet ")]
    assert lines == ["\tinet 10.0.5.1/24 broadcast 10.0.5.255 flags 0x0"]


def test_mtu_media_lladdr_promisc_linkstr(vnet: Any) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan", "10.0.1.1/24")
    k.ifconfig("wire0", "mtu", "1400")
    assert " mtu 1400\n" in k.ifconfig("wire0")
    k.ifconfig("wire0", "media", "none")
    out = k.ifconfig("wire0")
    assert "\tmedia: Ethernet none\n\tstatus: no carrier\n" in out
    k.ifconfig("wire0", "media", "auto")
    assert "\tstatus: active\n" in k.ifconfig("wire0")
    k.ifconfig("wire0", "link", "b2:a0:00:00:00:42")
    assert "\taddress: b2:a0:00:00:00:42\n" in k.ifconfig("wire0")
    k.ifconfig("wire0", "promisc")
    assert "<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST>" in k.ifconfig("wire0")
    k.ifconfig("wire0", "-promisc")
    assert "PROMISC" not in k.ifconfig("wire0")
    k.ifconfig("wire0", "down")
    k.ifconfig("wire0", "-linkstr")
    assert "linkstr" not in k.ifconfig("wire0")


def test_verbose_counters(vnet: Any) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan", "10.0.1.1/24")
    out = k.ifconfig("-v", "wire0")
    # The gratuitous ARP sent when the address was set.
    assert "\tinput: 0 packets, 0 bytes\n\toutput: 1 packets, 42 bytes, 1 multicasts\n" in out
    assert k.ifconfig("-w", "10") == ""


@pytest.mark.parametrize("argv,code,msg", [
    (["wire0", "create"], errno.EEXIST, "ifconfig: SIOCIFCREATE: File exists"),
    (["bogus0", "create"], errno.EINVAL, "ifconfig: SIOCIFCREATE: Invalid argument"),
    (["shmif9"], errno.ENXIO, "ifconfig: SIOCGIFFLAGS shmif9: Device not configured"),
    (["shmif9", "up"], errno.ENXIO, "ifconfig: SIOCGIFFLAGS shmif9: Device not configured"),
    (["wire9", "destroy"], errno.ENXIO, "ifconfig: SIOCIFDESTROY: Device not configured"),
    (["wire0", "mtu", "20"], errno.EINVAL, "ifconfig: SIOCSIFMTU: Invalid argument"),
    (["wire0", "linkstr", "other"], errno.EBUSY, "ifconfig: SIOCSLINKSTR: Device busy"),
    (["wire0", "inet", "10.0.1.300/24"], errno.EINVAL, "ifconfig: 10.0.1.300/24: bad value"),
    (["wire0", "inet", "10.0.9.9", "delete"], errno.EADDRNOTAVAIL,
     "ifconfig: SIOCDIFADDR: Can't assign requested address"),
    (["wire0", "media", "10baseT"], errno.EINVAL, "ifconfig: unknown media subtype: 10baseT"),
])
def test_errors(vnet: Any, argv: list[str], code: int, msg: str) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan", "10.0.1.1/24")
    with pytest.raises(OSError) as ei:
        k.ifconfig(*argv)
    assert not isinstance(ei.value, UsageError)
    assert ei.value.errno == code
    assert ei.value.strerror == msg


@pytest.mark.parametrize("argv", [["-x"], ["wire0", "frobnicate"], ["wire0", "mtu"], ["-C", "wire0"]])
def test_usage_errors(vnet: Any, argv: list[str]) -> None:
    k = vnet.kernel(1)
    wire(vnet, k, "wire0", "lan")
    with pytest.raises(UsageError) as ei:
        run_command(k, "ifconfig", argv)
    assert ei.value.errno == errno.EINVAL
    assert "usage: ifconfig" in str(ei.value.strerror)
