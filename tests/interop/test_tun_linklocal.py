"""A kernel's tun0 (point-to-point, no link layer) gets a link-local address, as NetBSD's
in6_ifattach gives one to tun(4), and Linux reaches it: ``ping -6 fe80::...%tunN`` from
a namespace whose host tun device carries tun0's packets (the test joins the two: each
bare IPv6 packet one side writes, the other reads), and the kernel's ping6 the other way
to Linux's link-local address with a zone."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from rumpnet.if_tun import TunIfnet
from rumpnet.testing.netns import (
    NetNS,
    have_netns_privileges,
    move_link_to_netns,
    ns_configure,
    ns_run,
    unique_ifname,
)

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why)]

LINUX_LL = "fe80::2"


@contextlib.contextmanager
def tun_peer(vnet_real: Any) -> Iterator[tuple[Any, NetNS, str]]:
    """A real-clock kernel with tun0 up, joined to a host tun (IFF_TUN|IFF_NO_PI) whose
    end is in a new namespace with ``LINUX_LL``/64. Yields (kernel, namespace, host tun
    name); the tun is closed (and disappears) and the namespace removed on exit."""
    import pytun

    k = vnet_real.kernel(seed=64, components=("net", "netinet", "netinet6", "tun"))
    host = pytun.TunTapDevice(name=unique_ifname("rtl"), flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
    fd = host.fileno()
    try:
        os.set_blocking(fd, False)
        with NetNS("rtl") as ns:
            move_link_to_netns(host.name, ns)
            ns_run(ns, ["sysctl", "-qw", f"net.ipv6.conf.{host.name}.accept_dad=0"], check=True)
            ns_configure(ns, host.name, f"{LINUX_LL}/64")
            tun = k.config.if_create("tun0")
            assert isinstance(tun, TunIfnet)
            tun.open(lambda pkt: os.write(fd, pkt))

            def from_linux() -> None:
                for _ in range(64):         # a batch, then back to the loop
                    try:
                        tun.write(os.read(fd, 65535))
                    except BlockingIOError:
                        return

            k.sched.loop.add_reader(fd, from_linux)
            try:
                k.config.if_up("tun0")
                k.ifconfig("-w", "10")      # DAD of the link-local address done
                k.serve_background()
                yield k, ns, host.name
            finally:
                k.stop_background()
                k.sched.loop.remove_reader(fd)
                k.config.if_destroy("tun0")
    finally:
        host.close()


@pytest.mark.timeout(90)
def test_linux_pings_the_link_local_address_of_tun0(vnet_real) -> None:
    with tun_peer(vnet_real) as (k, ns, host_tun):
        line = next(ln for ln in k.ifconfig("tun0", "inet6").splitlines() if "fe80:" in ln)
        assert "tentative" not in line and "duplicated" not in line, line
        ours = line.split()[1].split("%")[0]
        r = ns_run(ns, ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "3", f"{ours}%{host_tun}"], timeout=30)
        assert r.returncode == 0 and "3 received" in r.stdout, r.stdout + r.stderr
        tun = k.ifnet.lookup("tun0")
        assert tun.stats.ipackets >= 3 and tun.stats.opackets >= 3
        out = k.ping6("-n", "-c", "2", "-X", "5", f"{LINUX_LL}%tun0")
        assert "2 packets received" in out and re.search(rf"bytes from {LINUX_LL}%tun0, icmp_seq=0", out), out
