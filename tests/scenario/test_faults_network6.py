"""The fault model's Network over IPv6 (issue 15): dual-stack links from ``subnet6``
prefixes, addresses handed out or given, IPv6 default routes through the router, static
IPv6 routes, impairments acting on IPv6 traffic and counted by family, and the same from
a scenario file (virtual time)."""

from __future__ import annotations

import hashlib
import re
import socket

import pytest

from rumpnet.faults.network import Network
from rumpnet.faults.scenario import ScenarioError, load
from rumpnet.testing.vnet import tcp_transfer

AF6 = socket.AF_INET6


def routed6(seed: int = 3) -> Network:
    net = Network(seed=seed)
    for h in ("a", "b"):
        net.add_host(h)
    net.add_host("r", router=True)
    net.add_link("lan", "a", "r", subnet6="fc00:0:0:1::/64")
    net.add_link("wan", "r", "b", subnet="10.0.9.0/24", subnet6="fc00:0:0:2::/64",
                 addresses6={"b": "fc00:0:0:2::20"})
    return net


def test_dual_stack_addressing_routes_and_forwarding() -> None:
    with routed6() as net:
        a, r, b = net.host("a"), net.host("r"), net.host("b")
        assert (a.addr6(), r.addr6("lan"), r.addr6("wan"), b.addr6()) == (
            "fc00:0:0:1::1", "fc00:0:0:1::2", "fc00:0:0:2::1", "fc00:0:0:2::20")
        assert a.addr() == "10.0.1.1" and b.addr() == "10.0.9.2"       # IPv4 as before
        assert net.link("wan").describe()["subnet6"] == "fc00:0:0:2::/64"
        assert net.link("wan").describe()["hosts"]["b"]["address6"] == "fc00:0:0:2::20"
        assert r.kernel.config.sysctl_get("net.inet6.ip6.forwarding") == 1
        assert re.search(r"^default +fc00:0:0:1::2 +UGS ", a.kernel.netstat("-rn", "-f", "inet6"), re.M)
        sb = b.rump_sys_socket(AF6, socket.SOCK_DGRAM, 0)
        b.rump_sys_bind(sb, ("::", 7))
        sa = a.rump_sys_socket(AF6, socket.SOCK_DGRAM, 0)
        lan = net.link("lan")
        lan.impair("delay 10ms")
        t0 = net.now()
        a.rump_sys_sendto(sa, b"via r", 0, (b.addr6(), 7))
        data, src = b.rump_sys_recvfrom(sb, 100, 0)
        assert data == b"via r" and src[0] == a.addr6()
        assert net.now() - t0 >= 0.010 - 1e-6
        c = lan.counters("a->r")
        assert c["offered_ip6"] >= 1 and c["delayed"] >= 1
        assert r.kernel.inet6.node.ip6stat.ip6s_forward >= 1


def test_tcp_over_ipv6_through_a_lossy_link_arrives_whole() -> None:
    with routed6(seed=4) as net:
        a, b = net.host("a"), net.host("b")
        wan = net.link("wan")
        wan.impair("loss 5%", direction="r->b")
        data = bytes(range(256)) * 400
        got = tcp_transfer(a.kernel, b.kernel, data, (b.addr6(), 80), family=AF6)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        d = wan.counters("r->b")
        assert d["drop_loss"] >= 1 and d["offered_ip6"] >= d["drop_loss"]
        assert a.kernel.inet6.tcp6.stats.tcps_sndrexmitpack >= 1


def test_static_ipv6_routes_and_bad_ipv6_addressing_name_the_field() -> None:
    with Network(seed=1) as net:
        for h in ("a", "b", "c"):
            net.add_host(h)
        net.add_link("one", "a", "b", subnet6="fc00:1::/64")
        net.add_link("two", "b", "c", subnet6="fc00:2::/64")
        net.host("b").kernel.sysctl("-w", "net.inet6.ip6.forwarding=1")
        net.route("a", "fc00:2::/64", "fc00:1::2")
        net.route("c", "default", "fc00:2::1")
        assert net.host("c").has_default6 and not net.host("c").has_default
        assert "0.0% packet loss" in net.host("a").kernel.ping6("-n", "-c", "1", "-X", "2", "fc00:2::2")
        with pytest.raises(KeyError, match="no IPv6 subnet"):
            net.add_link("three", "a", "c")
            net.host("a").addr6("three")
        bad = [({"subnet6": "fc00::1/64"}, "subnet6: .*host bits set"),
               ({"subnet6": "ff02::/64"}, "subnet6: .*not a unicast prefix"),
               ({"subnet6": "fc00::/64", "mtu": 1200}, "mtu: 1200 is below IPv6's 1280"),
               ({"subnet6": "fc00::/64", "addresses6": {"a": "10.0.0.1"}}, r"addresses6.a: '10.0.0.1' is not an IPv6"),
               ({"subnet6": "fc00::/64", "addresses6": {"a": "fc00:9::1"}}, "addresses6.a: .*not a host address"),
               ({"addresses6": {"a": "fc00::1"}}, "addresses6: needs a subnet6")]
        for i, (kw, msg) in enumerate(bad):
            with pytest.raises(ValueError, match=msg):
                net.add_link(f"bad{i}", "a", "c", **kw)
            assert f"bad{i}" not in net.links


SCENARIO = """
seed = 9
[hosts.a]
[hosts.r]
router = true
[hosts.b]
[links.lan]
hosts = ["a", "r"]
subnet6 = "fc00:0:0:1::/64"
[links.wan]
hosts = ["r", "b"]
subnet6 = "fc00:0:0:2::/64"
addresses6 = { b = "fc00:0:0:2::9" }
loss = "0%"
"""


def test_scenario_files_take_subnet6_and_check_it() -> None:
    with Network.from_toml(SCENARIO) as net:
        a = net.host("a")
        assert net.host("b").addr6() == "fc00:0:0:2::9"
        out = a.kernel.ping6("-n", "-c", "1", "-X", "2", "fc00:0:0:2::9")
        assert "1 packets received" in out and "hlim=63" in out
    with pytest.raises(ScenarioError, match=r"^links.wan.addresses6: .*not a host address of fc00:0:0:2::/64"):
        load(SCENARIO.replace("fc00:0:0:2::9", "fc00:0:0:3::9"))
    with pytest.raises(ScenarioError, match=r"^links.wan.subnet6: "):
        load(SCENARIO.replace('subnet6 = "fc00:0:0:2::/64"', 'subnet6 = "fc00:0:0:2::1/64"'))
    with pytest.raises(ScenarioError, match=r"^links.wan.subnet6: must be an IPv6 prefix"):
        load(SCENARIO.replace('subnet6 = "fc00:0:0:2::/64"', ""))
