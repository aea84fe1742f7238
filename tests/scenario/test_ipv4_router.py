"""Three kernels: 10.0.1.0/24 - router - 10.0.2.0/24 on two wires."""

from __future__ import annotations

import socket
import struct

from rumpnet.route import flags_letters


def test_ping_across_router_both_ways(vnet, routed) -> None:
    h1, r, h2 = routed
    rep = vnet.ping(h1, "10.0.2.2")
    assert rep is not None and rep[20] == 0
    assert rep[8] == 63  # the reply crossed one router
    rep = vnet.ping(h2, "10.0.1.2")
    assert rep is not None and rep[20] == 0
    assert r.inet.ipstat.ips_forward == 4


def test_no_forwarding_when_off(vnet, routed) -> None:
    h1, r, h2 = routed
    r.config.sysctl_set("net.inet.ip.forwarding", 0)
    assert vnet.ping(h1, "10.0.2.2", timeout=2) is None
    assert vnet.ping(h2, "10.0.1.2", timeout=2) is None
    assert r.inet.ipstat.ips_cantforward >= 2 and r.inet.ipstat.ips_forward == 0
    # the router itself is still reachable from both sides
    assert vnet.ping(h1, "10.0.1.1") is not None
    assert vnet.ping(h2, "10.0.2.1") is not None
    r.config.sysctl_set("net.inet.ip.forwarding", 1)
    assert vnet.ping(h1, "10.0.2.2") is not None


def test_ttl1_gets_time_exceeded_from_router(vnet, routed) -> None:
    h1, r, h2 = routed
    rep = vnet.ping(h1, "10.0.2.2", ttl=1)
    assert rep is not None
    hl = (rep[0] & 0xF) * 4
    assert rep[hl] == 11 and rep[hl + 1] == 0
    assert socket.inet_ntoa(rep[12:16]) == "10.0.1.1"  # the router's address on the incoming side
    inner = rep[hl + 8:]
    assert socket.inet_ntoa(inner[16:20]) == "10.0.2.2" and inner[9] == 1
    # from the other side the error comes from the router's other address
    rep = vnet.ping(h2, "10.0.1.2", ttl=1)
    assert rep is not None and rep[20] == 11
    assert socket.inet_ntoa(rep[12:16]) == "10.0.2.1"
    # TTL 2 is enough for one router
    rep = vnet.ping(h1, "10.0.2.2", ttl=2)
    assert rep is not None and rep[20] == 0


def test_route_table_flags(routed) -> None:
    h1, r, h2 = routed

    def table(k):
        return {(socket.inet_ntoa(struct.pack("!I", rt.dst)), rt.plen): flags_letters(rt.flags)
                for rt in k.config.routes()}

    t = table(h1)
    assert t[("10.0.1.0", 24)] == "UC"
    assert t[("10.0.1.2", 32)] == "UHl"
    assert t[("0.0.0.0", 0)] == "UGS"
    t = table(r)
    assert t[("10.0.1.0", 24)] == "UC" and t[("10.0.2.0", 24)] == "UC"
    assert t[("10.0.1.1", 32)] == "UHl" and t[("10.0.2.1", 32)] == "UHl"
    assert ("0.0.0.0", 0) not in t
    default = h1.config.route_get("10.9.9.9")
    assert default.plen == 0 and default.gateway == 0x0A000101 and default.ifp.name == "wire0"
