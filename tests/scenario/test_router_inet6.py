"""The router's IPv6 (rumpnet.router.config): inet6 addresses, IPv6 routes, forwarding for
both families and an [interface.rtadv] table that makes the router advertise, applied to a
kernel on virtual time with hosts on both sides; the configuration checks name the field."""

from __future__ import annotations

import tomllib

import pytest

from rumpnet.router.config import ConfigError, apply_config, validate
from rumpnet.testing.vnet import VNet

CONFIG = """
hostname = "r6"
[[interface]]
name = "wire0"
link = "{lan}"
address = "10.0.1.254/24"
inet6 = ["fc00:1::fe/64"]
[interface.rtadv]
maxinterval = 4
mininterval = 3
mtu = 1400
[[interface]]
name = "wire1"
link = "{wan}"
address = "10.0.2.254/24"
inet6 = ["fc00:2::fe/64"]
[[route]]
destination = "fc00:9::/32"
gateway = "fc00:2::1"
"""


def test_router_advertises_and_forwards_ipv6(vnet: VNet) -> None:
    r, h, s = vnet.kernel(1, hostname="r6"), vnet.kernel(2, hostname="h"), vnet.kernel(3, hostname="s")
    apply_config(r, tomllib.loads(CONFIG.format(lan=vnet.seg("lan"), wan=vnet.seg("wan"))))
    assert r.sysctl("net.inet6.ip6.forwarding") == "net.inet6.ip6.forwarding = 1\n"
    # h takes everything from the advertisements; s is configured by hand
    h.sysctl("-w", "net.inet6.ip6.accept_rtadv=1")
    for k, seg in ((h, "lan"), (s, "wan")):
        k.ifconfig("wire0", "create")
        k.ifconfig("wire0", "linkstr", vnet.seg(seg))
        k.ifconfig("wire0", "up")
    s.ifconfig("wire0", "inet6", "fc00:2::1/64")
    s.route("add", "-inet6", "default", "fc00:2::fe")
    h.run_for(10)
    assert "fc00:1::/64 if=wire0" in h.ndp("-p") and "linkmtu=1400" in h.ndp("-n", "-i", "wire0")
    auto = [ln.split()[1] for ln in h.ifconfig("wire0", "inet6").splitlines() if "autoconf" in ln]
    assert len(auto) == 1 and auto[0].startswith("fc00:1::")
    out = h.ping6("-n", "-c", "2", "fc00:2::1")          # across the router, by its default route
    assert "2 packets transmitted, 2 packets received" in out
    assert any(ln.split()[:2] == ["fc00:9::/32", "fc00:2::1"] for ln in r.netstat("-rn", "-f", "inet6").splitlines())
    # the neighbour table the live view shows
    assert {e.ifp.name for e in r.config.ndp_entries() if not e.local} >= {"wire0", "wire1"}


@pytest.mark.parametrize("extra,needle", [
    ('inet6 = ["10.0.0.1/24"]\n', "interface[0].inet6[0]: '10.0.0.1/24' is not an IPv6 address/prefix"),
    ('inet6 = ["fc00::1"]\n', "interface[0].inet6[0]: 'fc00::1' needs a prefix length (such as fc00::1/64)"),
    ('[interface.rtadv]\nmaxinterval = 2\n', "interface[0].rtadv: wire0: maxinterval (2) must be between 4 and 1800"),
    ('[interface.rtadv]\nmaxintreval = 30\n', "interface[0].rtadv.maxintreval: unknown field (did you mean 'maxinterval'?)"),
    ('[interface.rtadv]\nmtu = 9000\n', "interface[0].rtadv: wire0: advertised link mtu (9000) is invalid"),
    ('[interface.rtadv]\naddr = "10.0.0.0"\n', "interface[0].rtadv.addr: '10.0.0.0' is not an IPv6 address"),
    ('[[route]]\ndestination = "fc00:9::/32"\ngateway = "10.0.0.1"\n', "route[0].gateway: '10.0.0.1' is not an IPv6 address"),
])
def test_ipv6_config_errors_name_the_field(extra: str, needle: str) -> None:
    text = '[[interface]]\nname = "wire0"\naddress = "10.1.1.1/24"\nmtu = 1500\n' + extra
    with pytest.raises(ConfigError) as ei:
        validate(tomllib.loads(text), ["wire", "shmif", "virt"])
    assert str(ei.value) == needle or str(ei.value).startswith(needle), str(ei.value)
