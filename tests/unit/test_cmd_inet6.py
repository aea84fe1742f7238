"""The IPv6 commands with NetBSD syntax and output: ifconfig inet6, route -inet6,
netstat -rn -f inet6 and -s -p ip6/icmp6, ndp, ping6, sysctl net.inet6, the structured
config API, and bpf's ip6/icmp6 filters with pcap (virtual time, in-process wires)."""

from __future__ import annotations

import errno
import re

import pytest
from scapy.layers.inet import TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt
from scapy.layers.l2 import Ether

from rumpnet.bpf import PcapReader, compile_filter
from rumpnet.commands import PingFailed, UsageError
from rumpnet.testing.vnet import VNet

H1, R1, R2, H2 = "fc00:0:0:1::2", "fc00:0:0:1::1", "fc00:0:0:2::1", "fc00:0:0:2::2"


@pytest.fixture
def net6(vnet: VNet):
    """h1 -- r -- h2 configured with the commands, as NetBSD's t_forwarding basic6 does."""
    h1, r, h2 = vnet.kernel(1, hostname="h1"), vnet.kernel(2, hostname="r"), vnet.kernel(3, hostname="h2")
    for k, ifname, seg, addr in ((h1, "wire0", "n1", H1), (r, "wire0", "n1", R1), (r, "wire1", "n2", R2),
                                 (h2, "wire0", "n2", H2)):
        k.ifconfig(ifname, "create")
        k.ifconfig(ifname, "linkstr", vnet.seg(seg))
        k.ifconfig(ifname, "inet6", addr)
    assert h1.route("add", "-inet6", "default", R1) == f"add net default: gateway {R1}\n"
    h2.route("add", "-inet6", "default", R2)
    assert r.sysctl("-w", "net.inet6.ip6.forwarding=1") == "net.inet6.ip6.forwarding: 0 -> 1\n"
    for k in (h1, r, h2):
        assert k.ifconfig("-w", "10") == ""
    return h1, r, h2


def lladdr(k, ifname: str = "wire0") -> str:
    line = next(ln for ln in k.ifconfig(ifname, "inet6").splitlines() if "fe80" in ln)
    return line.split()[1].split("%")[0]


def test_ifconfig_inet6_lines_prefixlen_alias_and_flags(vnet) -> None:
    k = vnet.kernel(1)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", vnet.seg("a"))
    k.ifconfig("wire0", "inet6", "fc00::1")                   # brings it up: no DAD (NetBSD)
    k.ifconfig("wire0", "inet6", "fc00:1::1/48", "alias")      # up now: DAD, tentative
    k.ifconfig("wire0", "inet6", "fc00:2::1", "prefixlen", "56")
    out = k.ifconfig("wire0")
    assert "\tinet6 fc00::1 prefixlen 64\n" in out
    assert "\tinet6 fc00:1::1 prefixlen 48 tentative\n" in out
    assert re.search(r"\tinet6 fe80::[0-9a-f:]+%wire0 prefixlen 64 tentative scopeid 0x2\n", out)
    k.ifconfig("-w", "10")
    out = k.ifconfig("wire0", "inet6")
    assert "tentative" not in out and "\tinet6 fc00:2::1 prefixlen 56\n" in out and "inet " not in out
    assert "pltime" not in k.ifconfig("-L", "wire0", "inet6")       # infinite lifetimes: none shown
    k.ifconfig("wire0", "inet6", "fc00:3::1", "pltime", "100", "vltime", "200")
    k.run_for(10)
    assert "\tinet6 fc00:3::1 prefixlen 64 pltime 90 vltime 190\n" in k.ifconfig("-L", "wire0", "inet6")
    k.ifconfig("wire0", "inet6", "fc00:1::1", "-alias")
    assert "fc00:1::1" not in k.ifconfig("wire0")
    assert "\tinet6 ::1 prefixlen 128\n" in k.ifconfig("lo0")
    with pytest.raises(OSError) as ei:
        k.ifconfig("wire0", "inet6", "fc00:9::1", "delete")
    assert ei.value.errno == errno.EADDRNOTAVAIL and "SIOCDIFADDR_IN6" in str(ei.value)
    with pytest.raises(OSError) as ei:
        k.ifconfig("wire0", "inet6", "fc00::zz")
    assert ei.value.errno == errno.EINVAL and "bad value" in str(ei.value)
    with pytest.raises(OSError) as ei:
        k.ifconfig("wire0", "inet6", "ff02::1")               # multicast: not an interface address
    assert ei.value.errno == errno.EINVAL


def test_duplicated_shows_in_ifconfig(net6, vnet) -> None:
    h1, _, _ = net6
    dup = vnet.kernel(9)
    dup.ifconfig("wire0", "create")
    dup.ifconfig("wire0", "linkstr", vnet.seg("n1"))
    dup.ifconfig("wire0", "up")
    dup.ifconfig("-w", "10")
    dup.ifconfig("wire0", "inet6", H1)
    dup.ifconfig("-w", "10")
    assert re.search(rf"inet6 {H1} prefixlen 64 duplicated", dup.ifconfig("wire0"))
    assert "duplicated" not in h1.ifconfig("wire0")


def test_ping6_across_and_its_output(net6) -> None:
    h1, r, h2 = net6
    out = h1.ping6("-n", "-c", "2", "-X", "5", H2)
    lines = out.splitlines()
    assert lines[0] == f"PING6(56=40+8+8 bytes) {H1} --> {H2}"
    assert re.fullmatch(rf"16 bytes from {H2}, icmp_seq=0 hlim=63 time=\d+\.\d{{3}} ms", lines[1])
    assert f"--- {H2} ping6 statistics ---" in lines
    assert "2 packets transmitted, 2 packets received, 0.0% packet loss" in lines
    assert lines[-1].startswith("round-trip min/avg/max/std-dev = ")
    # hop limit 1: Time Exceeded from the router, shown with -v, and a failed ping6
    with pytest.raises(PingFailed) as ei:
        h1.ping6("-v", "-n", "-c", "1", "-h", "1", "-X", "1", H2)
    assert ei.value.exit_status == 2 and f"bytes from {R1}: Time to live exceeded" in ei.value.output
    assert "1 packets transmitted, 0 packets received, 100.0% packet loss" in ei.value.output
    assert "0.0% packet loss" in h1.ping6("-q", "-n", "-c", "1", "-h", "2", "-X", "1", H2)
    # forwarding off: no reply
    r.sysctl("-w", "net.inet6.ip6.forwarding=0")
    with pytest.raises(PingFailed):
        h1.ping6("-q", "-n", "-c", "1", "-X", "1", H2)


def _block(out: str, first: str) -> list[str]:
    """The lines ping6 -v printed from ``first`` on (an error and the packet it quotes)."""
    lines = out.splitlines()
    i = next(n for n, ln in enumerate(lines) if re.fullmatch(first, ln))
    return lines[i:i + 6]


def test_ping6_verbose_shows_errors_from_routers_as_ping6_c(net6) -> None:
    """ping6.c's pr_icmph and pr_retip for errors from a router on the way (RFC 4443 3):
    hop limit 1 gets Time Exceeded, a narrower next link Packet Too Big, a destination
    with no route No Route to Destination; each quotes our echo request."""
    h1, r, h2 = net6
    with pytest.raises(PingFailed) as ei:
        h1.ping6("-v", "-n", "-c", "1", "-h", "1", "-X", "1", H2)
    block = _block(ei.value.output, rf"64 bytes from {R1}: Time to live exceeded")
    assert block[1] == "Vr TC  Flow Plen Nxt Hlim"
    assert re.fullmatch(r" 6 00 [0-9a-f]{5} 0010  3a   01", block[2])      # the hop limit it had left
    assert block[3:] == [f"{H1}->{H2}", "ICMP6: type = 128, code = 0", ""]
    with pytest.raises(PingFailed) as ei:      # without -v: ICMP6_FILTER passes echo replies only
        h1.ping6("-n", "-c", "1", "-h", "1", "-X", "1", H2)
    assert "exceeded" not in ei.value.output and "bytes from" not in ei.value.output
    r.ifconfig("wire1", "mtu", "1280")
    h2.ifconfig("wire0", "mtu", "1280")
    out = h1.ping6("-v", "-n", "-c", "2", "-s", "1400", "-X", "3", H2)
    block = _block(out, rf"1240 bytes from {R1}: Packet too big mtu = 1280")
    assert re.fullmatch(r" 6 00 [0-9a-f]{5} 0580  3a   40", block[2]) and block[3] == f"{H1}->{H2}"
    assert re.search(rf"^1408 bytes from {H2}, icmp_seq=1 hlim=63", out, re.M)   # then fragmented
    with pytest.raises(PingFailed) as ei:
        h1.ping6("-v", "-n", "-c", "1", "-X", "1", "fc00:0:0:7::1")
    block = _block(ei.value.output, rf"64 bytes from {R1}: No Route to Destination")
    assert block[3:] == [f"{H1}->fc00:0:0:7::1", "ICMP6: type = 128, code = 0", ""]
    assert r.inet6.node.icmp6stat.icp6s_otime_exceed_transit == 2
    assert r.inet6.node.icmp6stat.icp6s_opacket_too_big == 1


def test_ping6_pr_icmph_and_pr_retip_words() -> None:
    """The rest of pr_icmph's words and pr_retip's walk of the quoted header chain."""
    from scapy.layers.inet6 import IPv6ExtHdrFragment, IPv6ExtHdrHopByHop

    from rumpnet.commands.ping6_pr import pr_icmph

    quoted = bytes(IPv6(src=H1, dst=H2, fl=5, tc=0xB8, hlim=9) / IPv6ExtHdrFragment(id=1) / UDP(sport=7, dport=9))
    assert pr_icmph(bytes([4, 1, 0, 0, 0, 0, 0, 40]) + quoted) == [
        "Parameter problem: Unknown Nextheader pointer = 0x28", "Vr TC  Flow Plen Nxt Hlim",
        " 6 b8 00005 0010  2c   09", f"{H1}->{H2}", "FRAG UDP: from port 7, to port 9 (decimal)", ""]
    hbh = bytes(IPv6(src=H1, dst=H2) / IPv6ExtHdrHopByHop() / TCP(sport=1, dport=2))
    assert pr_icmph(bytes([1, 4, 0, 0, 0, 0, 0, 0]) + hbh[:52])[0] == "Destination Port Unreachable"
    assert pr_icmph(bytes([1, 4, 0, 0, 0, 0, 0, 0]) + hbh[:52])[-2:] == ["HBH ...", ""]   # cut short
    assert pr_icmph(bytes([1, 4, 0, 0, 0, 0, 0, 0]) + hbh)[-2] == "HBH TCP: from port 1, to port 2 (decimal)"
    assert pr_icmph(bytes([3, 7, 0, 0, 0, 0, 0, 0]) + quoted[:20]) == ["Time exceeded, Bad Code: 7", "IP6...", ""]
    assert pr_icmph(bytes([4, 9, 0, 0, 0, 0, 0, 1]) + quoted)[0] == "Parameter problem: Bad code(9) pointer = 0x01"
    assert pr_icmph(bytes([135, 0, 0, 0, 0, 0, 0, 0])) == ["Neighbor Solicitation"]
    assert pr_icmph(bytes([200, 0, 0, 0, 0, 0, 0, 0])) == ["Bad ICMP type: 200"]


def test_ping6_link_local_needs_a_zone_and_takes_source_and_interface(net6) -> None:
    h1, r, _ = net6
    gw = lladdr(r)
    with pytest.raises(OSError) as ei:         # ping6.c's UDP connect finds no route
        h1.ping6("-n", "-c", "1", "-X", "1", gw)
    assert ei.value.errno == errno.EHOSTUNREACH and str(ei.value.strerror) == "ping6: UDP connect: No route to host"
    assert "0.0% packet loss" in h1.ping6("-n", "-c", "1", "-X", "1", f"{gw}%wire0")
    assert "0.0% packet loss" in h1.ping6("-n", "-c", "1", "-X", "1", "-I", "wire0", gw)
    for argv, code, text in ((["-I", "nosuch0", gw], errno.ENXIO, "ping6: nosuch0: bad interface name"),
                             ([f"{gw}%nosuch0"], errno.EINVAL, f"ping6: {gw}%nosuch0: No address associated")):
        with pytest.raises(OSError) as ei:     # if_nametoindex (sysctl NET_RT_IFLIST) knows no nosuch0
            h1.ping6("-n", "-c", "1", *argv)
        assert ei.value.errno == code and str(ei.value.strerror).startswith(text)
    h1.ifconfig("wire0", "inet6", "fc00:0:0:1::3")
    h1.ifconfig("-w", "10")
    out = h1.ping6("-n", "-c", "1", "-X", "1", "-S", "fc00:0:0:1::3", R1)
    assert out.startswith(f"PING6(56=40+8+8 bytes) fc00:0:0:1::3 --> {R1}")
    assert "0.0% packet loss" in h1.ping6("-n", "-c", "1", "-X", "1", "-g", R1, H2)
    with pytest.raises(UsageError):
        h1.ping6("-c")
    with pytest.raises(OSError) as e2:
        h1.ping6("-n", "-c", "0", H2)
    assert e2.value.errno == errno.EINVAL


def test_route_inet6_show_get_delete(net6) -> None:
    h1, r, _ = net6
    table = h1.netstat("-rn", "-f", "inet6")
    assert table.startswith("Routing tables\n\nInternet6:\nDestination ")
    rows = {ln.split()[0]: ln.split() for ln in table.splitlines()[4:]}
    assert rows["default"][1:3] == [R1, "UGS"]
    assert rows["fc00:0:0:1::/64"][1:3] == ["link#2", "UC"] and rows["fc00:0:0:1::/64"][-1] == "wire0"
    assert rows[H1][1:3] == ["link#2", "UHl"] and rows[H1][-1] == "lo0"
    assert rows["::1"][1:3] == ["lo0", "UHl"]
    assert any(d.startswith("fe80::%wire0/64") for d in rows)
    both = h1.netstat("-rn")
    assert "\nInternet:\n" in both and "\nInternet6:\n" in both
    assert h1.route("add", "-inet6", "fc00:9::/64", R1) == f"add net fc00:9::: gateway {R1}\n"
    assert h1.route("add", "-inet6", "-host", "fc00:9::5", R1) == f"add host fc00:9::5: gateway {R1}\n"
    got = h1.route("get", "-inet6", "fc00:9::7")
    assert "destination: fc00:9::" in got and f"gateway: {R1}" in got and "interface: wire0" in got
    with pytest.raises(OSError) as ei:
        h1.route("add", "-inet6", "fc00:8::/64", "fc00:7::1")          # not a neighbour
    assert ei.value.errno == errno.ENETUNREACH
    assert h1.route("delete", "-inet6", "fc00:9::/64") == "delete net fc00:9::\n"
    with pytest.raises(OSError) as ei:
        h1.route("delete", "-inet6", "fc00:9::/64")
    assert ei.value.errno == errno.ESRCH and "not in table" in str(ei.value)
    own_ll = lladdr(h1)
    assert own_ll in h1.route("get", "-inet6", f"{own_ll}%wire0")
    with pytest.raises(OSError) as ei:
        h1.route("get", "-inet6", own_ll)                      # a zone is needed
    assert "not in table" in str(ei.value)
    # a link-local gateway with its zone, as t_ipv6address sets its routes
    assert h1.route("add", "-inet6", "fc00:5::/64", f"{lladdr(r)}%wire0").startswith("add net fc00:5::")
    # deleting a neighbour (an LLINFO route in NetBSD): the cache entry goes
    h1.ping6("-n", "-c", "1", "-X", "1", R1)
    assert "no entry" not in h1.ndp("-n", R1)
    h1.route("delete", "-inet6", R1)
    with pytest.raises(OSError):
        h1.ndp("-n", R1)


def test_ndp_show_set_delete_flush(net6) -> None:
    h1, r, _ = net6
    h1.ping6("-n", "-c", "1", "-X", "1", R1)
    out = h1.ndp("-an")
    assert out.splitlines()[0].split() == ["Neighbor", "Linklayer", "Address", "Netif", "Expire", "S", "Flags"]
    mine = h1.ndp("-n", H1)
    assert "permanent" in mine and h1.ifnet.lookup("wire0").lladdr.hex(":") in mine
    theirs = h1.ndp("-n", R1).splitlines()[1].split()
    assert theirs[1] == r.ifnet.lookup("wire0").lladdr.hex(":") and theirs[3].endswith("s") and theirs[4] == "R"
    assert h1.ndp("-s", "fc00:0:0:1::10", "b2:a0:20:00:00:10") == ""
    assert "permanent" in h1.ndp("-n", "fc00:0:0:1::10")
    assert h1.ndp("-d", "fc00:0:0:1::10") == "fc00:0:0:1::10 (fc00:0:0:1::10) deleted\n"
    with pytest.raises(OSError) as ei:
        h1.ndp("-n", "fc00:0:0:1::10")
    assert "no entry" in str(ei.value)
    with pytest.raises(OSError):
        h1.ndp("-s", H1, "b2:a0:20:00:00:ff")                  # our own: permanent
    h1.ndp("-s", "fc00:0:0:1::11", "b2:a0:20:00:00:11")
    h1.ndp("-c")
    with pytest.raises(OSError):
        h1.ndp("-n", R1)
    assert "permanent" in h1.ndp("-n", "fc00:0:0:1::11")       # static ones stay
    with pytest.raises(UsageError):
        h1.ndp("-s", "fc00::1")


def test_ndp_entry_ages_to_stale_with_the_gc_timer(net6) -> None:
    h1, _, _ = net6
    h1.ping6("-n", "-c", "1", "-X", "1", R1)
    expire = h1.ndp("-n", R1).splitlines()[1].split()[3]
    h1.run_for(int(expire.rstrip("s")) + 1)
    row = h1.ndp("-n", R1).splitlines()[1].split()
    assert row[3].startswith("23h59m") and row[4] == "S"      # t_ndp cache_expiration


def test_netstat_s_ip6_icmp6_and_sysctl(net6) -> None:
    h1, r, _ = net6
    h1.ping6("-n", "-c", "1", "-X", "1", H2)
    ip6 = r.netstat("-s", "-p", "ip6")
    assert ip6.startswith("ip6:\n") and "\t2 packets forwarded\n" in ip6
    icmp6 = h1.netstat("-s", "-p", "icmp6")
    assert icmp6.startswith("icmp6:\n") and "\t\techo reply: 1\n" in icmp6
    assert "udp6:" in h1.netstat("-s", "-f", "inet6") and "tcp:" not in h1.netstat("-s", "-f", "inet6")
    assert h1.sysctl("net.inet6.ip6.hlim") == "net.inet6.ip6.hlim = 64\n"
    assert h1.sysctl("-n", "net.inet6.ip6.dad_count") == "1\n"
    assert h1.sysctl("-w", "net.inet6.ip6.hlim=7") == "net.inet6.ip6.hlim: 64 -> 7\n"
    with pytest.raises(OSError):
        h1.sysctl("-w", "net.inet6.ip6.hlim=300")
    names = h1.sysctl("-a")
    for leaf in ("net.inet6.ip6.forwarding", "net.inet6.ip6.v6only", "net.inet6.icmp6.nd6_delay",
                 "net.inet6.icmp6.errppslimit", "net.inet6.ip6.accept_rtadv"):
        assert leaf in names


def test_structured_config_api(vnet) -> None:
    k = vnet.kernel(1)
    k.config.if_create("wire0")
    k.config.if_set_linkstr("wire0", vnet.seg("cfg"))
    ia = k.config.addr6_add("wire0", "fc00:3::1/56")
    assert ia.plen == 56
    k.config.route6_add("fc00:4::/64", "fc00:3::9")
    rt = k.config.route6_get("fc00:4::1")
    assert rt.plen == 64 and rt.ifp is k.ifnet.lookup("wire0")
    from rumpnet.netconfig6 import describe_route6

    assert describe_route6(rt)["destination"] == "fc00:4::/64"
    k.config.ndp_add("fc00:3::9", "02:00:00:00:00:09")
    assert [e for e in k.config.ndp_entries() if str(e.lladdr.hex(":")) == "02:00:00:00:00:09"]
    assert [a.plen for a in k.config.addrs6("wire0") if a.plen == 56] == [56]
    k.config.addr6_delete("wire0", "fc00:3::1")
    with pytest.raises(OSError) as ei:
        k.config.route6_get("fc00:3::1")
    assert ei.value.errno == errno.ESRCH


def _frame(pkt) -> bytes:
    return bytes(Ether(dst="33:33:00:00:00:01", src="02:00:00:00:00:01") / pkt)


def test_bpf_ip6_and_icmp6_filters() -> None:
    echo = _frame(IPv6(src="fc00::1", dst="fc00::2") / ICMPv6EchoRequest())
    opts_udp = _frame(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrDestOpt() / UDP(sport=5, dport=53))
    tcp80 = _frame(IPv6(src="fc00::1", dst="fe80::9") / TCP(dport=80))
    assert compile_filter("icmp6")(echo) and not compile_filter("icmp6")(opts_udp)
    assert compile_filter("ip6")(tcp80) and not compile_filter("ip")(tcp80) and not compile_filter("icmp")(echo)
    assert compile_filter("ip6 proto 17")(opts_udp) and compile_filter("udp port 53")(opts_udp)
    assert compile_filter("tcp port 80")(tcp80) and compile_filter("tcp")(tcp80) and not compile_filter("udp")(tcp80)
    assert compile_filter("host fc00::2")(echo) and not compile_filter("dst host fc00::1")(echo)
    assert compile_filter("ip6 src net fc00::/64")(echo) and compile_filter("host fe80::9")(tcp80)
    assert compile_filter("ether host 02:00:00:00:00:01")(echo)
    with pytest.raises(ValueError):
        compile_filter("ip6 host fc00::zz")


def test_pcap_of_ping6_with_an_icmp6_filter(net6, tmp_path) -> None:
    h1, _, _ = net6
    path = tmp_path / "icmp6.pcap"
    with h1.config.pcap("wire0", str(path), filter="icmp6 and host " + H2):
        h1.ping6("-n", "-c", "1", "-X", "1", H2)
    with PcapReader(str(path)) as r:
        frames = [Ether(f) for _, f in r]
    assert [f[IPv6].payload.type for f in frames] == [128, 129]
