"""rtadvd(8) in a kernel and what a host learns from it, on virtual time: ndp -r, -p, -i,
-P and -R as NetBSD 7's ndp prints them, rtadvd.conf(5) parsing, the daemon's life tied
to its process (killed: no more advertisements; -t: final ones with lifetime 0)."""

from __future__ import annotations

import errno
import re
import socket

import pytest

from rumpkern.lwproc import RUMP_RFCFDG
from rumpnet.commands.rtadvd import parse_conf
from rumpnet.if_ioctl import SockaddrIn6
from rumpnet.netinet6.in6_control import In6Ifreq
from rumpnet.netinet6.nd6_control import (
    ICMPV6CTL_ND6_DRLIST,
    ICMPV6CTL_ND6_PRLIST,
    PRF_AUTONOMOUS,
    PRF_ONLINK,
    SIOCSPFXFLUSH_IN6,
    SIOCSRTRFLUSH_IN6,
    In6Defrouter,
    In6Prefix,
)
from rumpnet.testing.vnet import VNet

MIB_ICMP6 = [4, 24, 58]      # CTL_NET, PF_INET6, IPPROTO_ICMPV6
CONF = "wire0:\\\n\t:mtu#1300:maxinterval#4:mininterval#3:\n"


@pytest.fixture
def lan(vnet: VNet, tmp_path):
    """A router (forwarding on, fc00:1::1) and a host (accept_rtadv on) on one segment."""
    r, h = vnet.kernel(1, hostname="r"), vnet.kernel(2, hostname="h")
    for k, addr in ((r, "fc00:1::1"), (h, "fc00:2::2")):
        k.ifconfig("wire0", "create")
        k.ifconfig("wire0", "linkstr", vnet.seg("lan"))
        k.ifconfig("wire0", "inet6", addr)
        k.ifconfig("wire0", "up")
        k.ifconfig("-w", "10")
    r.sysctl("-w", "net.inet6.ip6.forwarding=1")
    assert h.sysctl("-w", "net.inet6.ip6.accept_rtadv=1") == "net.inet6.ip6.accept_rtadv: 0 -> 1\n"
    conf = tmp_path / "rtadvd.conf"
    conf.write_text(CONF)
    return r, h, str(conf)


def _ll(k) -> str:
    line = next(ln for ln in k.ifconfig("wire0", "inet6").splitlines() if "fe80" in ln)
    return line.split()[1]


def test_host_learns_router_prefix_mtu_and_address(lan) -> None:
    r, h, conf = lan
    assert h.ndp("-r") == "" and h.ndp("-p") == ""
    assert h.ndp("-n", "-i", "wire0").startswith("linkmtu=0, maxmtu=1500, curhlim=64, basereachable=30s0ms, ")
    assert r.rtadvd("-c", conf, "wire0") == ""
    h.run_for(5)
    rtr = _ll(r)
    assert re.fullmatch(rf"{re.escape(rtr)} if=wire0, flags=, pref=medium, expire=\d+s\n", h.ndp("-r"))
    assert re.fullmatch(r"fc00:1::/64 if=wire0\n"
                        r"flags=LAO vltime=2592000, pltime=604800, expire=29d23h59m5\ds, ref=1\n"
                        rf"  advertised by\n    {re.escape(rtr)} \(reachable\)\n", h.ndp("-p"))
    info = h.ndp("-n", "-i", "wire0")
    assert info.startswith("linkmtu=1300, maxmtu=1500, ") and "Flags: nud auto_linklocal" in info
    assert re.search(rf"^{re.escape(rtr)} +\S+ +wire0 23h59m5\ds S R$", h.ndp("-n", "-a"), re.M)
    auto = [ln for ln in h.ifconfig("wire0", "inet6").splitlines() if "autoconf" in ln]
    assert len(auto) == 1 and auto[0].split()[1].startswith("fc00:1::")
    default = next(ln for ln in h.netstat("-rn", "-f", "inet6").splitlines() if ln.startswith("default"))
    assert default.split()[1] == rtr


def test_flushes(lan) -> None:
    r, h, conf = lan
    r.rtadvd("-c", conf, "wire0")
    h.run_for(5)
    assert h.ndp("-R") == ""
    assert h.ndp("-r") == ""
    assert h.ndp("-p").endswith("  No advertising router\n")      # the prefix stays
    assert "fc00:1::" in h.ifconfig("wire0", "inet6")
    assert h.ndp("-P") == ""
    assert h.ndp("-p") == ""
    assert "fc00:1::" not in h.ifconfig("wire0", "inet6")        # its address went with it
    h.run_for(5)                                                  # the next advertisement
    assert "if=wire0" in h.ndp("-r") and "fc00:1::/64" in h.ndp("-p")


def _ioctl6(k, request: int, data: bytearray) -> None:
    fd = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
    try:
        k.rump_sys_ioctl(fd, request, data)
    finally:
        k.rump_sys_close(fd)


def test_what_ndp_reads_sysctl_lists_and_flush_ioctls(lan) -> None:
    """nd6_drlist/nd6_prlist as structs, SIOCSRTRFLUSH_IN6/SIOCSPFXFLUSH_IN6 (ndp -r -p -R -P)."""
    r, h, conf = lan
    r.rtadvd("-c", conf, "wire0")
    h.run_for(5)
    index = h.ifnet.lookup("wire0").index
    rtr_addr = int.from_bytes(socket.inet_pton(socket.AF_INET6, _ll(r).split("%")[0]), "big")

    def lists() -> tuple[list[In6Defrouter], list[In6Prefix]]:
        return (In6Defrouter.unpack_list(bytes(h.rump_sys___sysctl(MIB_ICMP6 + [ICMPV6CTL_ND6_DRLIST], None, None, None, None, 0))),
                In6Prefix.unpack_list(bytes(h.rump_sys___sysctl(MIB_ICMP6 + [ICMPV6CTL_ND6_PRLIST], None, None, None, None, 0))))

    drs, prs = lists()   # AdvDefaultLifetime: 3 * MaxRtrAdvInterval (RFC 4861 6.2.1), 12 s
    assert len(drs) == 1 and drs[0].rtaddr == SockaddrIn6(rtr_addr, scope_id=index)
    assert drs[0].if_index == index and drs[0].rtlifetime == 12 and 0 < drs[0].expire <= 12
    assert len(prs) == 1
    pr = prs[0]
    assert (pr.prefix.addr >> 64, pr.prefixlen, pr.raflags, pr.vltime, pr.pltime, pr.refcnt, pr.if_index) == \
        (0xFC00_0001_0000_0000, 64, PRF_ONLINK | PRF_AUTONOMOUS, 2592000, 604800, 1, index)
    assert pr.advrtrs == [SockaddrIn6(rtr_addr, scope_id=index)] and 0 < pr.expire <= 2592000
    assert re.fullmatch(r"\S+ if=wire0, flags=, pref=medium, expire=\d+s\n", h.ndp("-r"))
    _ioctl6(h, SIOCSRTRFLUSH_IN6, In6Ifreq("lo0").pack())
    drs, prs = lists()
    assert drs == [] and len(prs) == 1 and prs[0].advrtrs == []        # the prefix stays
    _ioctl6(h, SIOCSPFXFLUSH_IN6, In6Ifreq("lo0").pack())
    assert lists() == ([], [])
    assert "fc00:1::" not in h.ifconfig("wire0", "inet6")              # its address went with it


def test_accept_rtadv_off_changes_nothing(lan) -> None:
    r, h, conf = lan
    h.sysctl("-w", "net.inet6.ip6.accept_rtadv=0")
    r.rtadvd("-c", conf, "wire0")
    h.run_for(10)
    assert h.ndp("-r") == "" and h.ndp("-p") == ""
    assert "linkmtu=0," in h.ndp("-n", "-i", "wire0")
    assert " S R" not in h.ndp("-n", "-a") and "fc00:1:" not in h.ndp("-n", "-a")


def test_a_killed_daemon_stops_at_once_and_terminate_sends_lifetime_zero(lan) -> None:
    r, h, conf = lan
    r.rump_pub_lwproc_rfork(RUMP_RFCFDG)          # the daemon's process
    r.rtadvd("-c", conf, "wire0")
    r.rump_pub_lwproc_releaselwp()                # killed: its files close
    h.run_for(10)
    assert h.ndp("-r") == ""                      # nothing was ever advertised after the kill...
    sent = r.netstat("-s", "-p", "icmp6")
    r.rtadvd("-c", conf, "wire0")                 # proc0's daemon
    h.run_for(5)
    assert "if=wire0" in h.ndp("-r")
    r.rtadvd("-t")                                # SIGTERM: final advertisements, lifetime 0
    h.run_for(1)
    assert h.ndp("-r") == ""
    assert sent != r.netstat("-s", "-p", "icmp6")
    with pytest.raises(OSError) as ei:
        r.rtadvd("wire9")
    assert ei.value.errno == errno.ENXIO


def test_second_daemon_on_an_interface_is_refused(lan) -> None:
    r, _h, conf = lan
    r.rtadvd("-c", conf, "wire0")
    with pytest.raises(OSError) as ei:
        r.rtadvd("wire0")
    assert ei.value.errno == errno.EBUSY


def test_parse_conf_termcap() -> None:
    conf = parse_conf("# comment\nether:\\\n\t:mtu#1400:raflags=\"mo\":\n"
                      "wire0|wire1:\\\n\t:maxinterval#30:tc=ether:mtu#1300:noifprefix:\n")
    assert conf["wire0"] == conf["wire1"]
    assert conf["wire0"]["maxinterval"] == 30 and conf["wire0"]["mtu"] == 1300   # its own value first
    assert conf["wire0"]["noifprefix"] is True and conf["ether"]["mtu"] == 1400
    with pytest.raises(OSError):
        parse_conf("a:tc=b:\n")


def test_config_ranges_and_an_explicit_prefix(lan, tmp_path) -> None:
    r, h, _conf = lan
    bad = tmp_path / "bad.conf"
    bad.write_text("wire0:maxinterval#2:\n")
    with pytest.raises(OSError) as ei:
        r.rtadvd("-c", str(bad), "wire0")
    assert ei.value.errno == errno.EINVAL and "maxinterval" in ei.value.strerror
    good = tmp_path / "good.conf"
    good.write_text("wire0:maxinterval#4:mininterval#3:addr=\"fc00:9::\":prefixlen#64:vltime#7200:pltime#3600:\n")
    r.rtadvd("-c", str(good), "wire0")
    h.run_for(5)
    p = h.ndp("-p")
    assert p.startswith("fc00:9::/64 if=wire0\nflags=LAO vltime=7200, pltime=3600, ") and "fc00:1::" not in p


def test_a_prefix_without_the_a_flag_shows_lo_and_no_address(lan, tmp_path) -> None:
    r, h, _ = lan
    conf = tmp_path / "onlink-only.conf"
    conf.write_text("wire0:\\\n\t:maxinterval#4:mininterval#3:pinfoflags#128:\n")   # L only
    r.rtadvd("-c", str(conf), "wire0")
    h.run_for(5)
    assert re.match(r"fc00:1::/64 if=wire0\nflags=LO vltime=2592000, pltime=604800, expire=\S+, ref=0\n",
                    h.ndp("-p"))
