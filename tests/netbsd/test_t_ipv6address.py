"""Ports of NetBSD's tests/net/net/t_ipv6address.sh (``linklocal``, ``linklocal_ops``) and
tests/net/net/t_ping6_opts.sh (``ping6_opts_sourceaddr``, ``_interface``, ``_gateway``,
``_hops``): rump_servers with netinet6 on shmif buses, link-local addresses with and
without zones, routes through link-local gateways, ping6's -S, -I, -g and hops, the
packets checked on the bus with shmif_dumpbus and tcpdump.

Left out: t_ipv6address's checks that a bus carries no ICMPv6 at all (our kernels, like
NetBSD's, send MLD reports and DAD probes on every link that comes up).
"""

from __future__ import annotations

import re

SERVER6 = "rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif -lrumpnet_netinet6"
SOCKSRC, SOCKFWD, SOCKDST = "unix://commsock1", "unix://commsock2", "unix://commsock3"
IP6SRCNW, IP6SRC = "fc00:1::0/64", "fc00:1::1"
IP6DSTNW, IP6DST = "fc00:2::0/64", "fc00:2::1"
IP6FWD0 = "fc00:3::1"
TIMEOUT = 3


def ifcfg(atf, sock, pairs):
    atf.export(RUMP_SERVER=sock)
    for ifname, bus in pairs:
        atf.check(f"-s exit:0 rump.ifconfig {ifname} linkstr {bus}")
        atf.check(f"-s exit:0 rump.ifconfig {ifname} up")
    atf.check("-s exit:0 -o ignore rump.ifconfig -w 10")


def setup(atf):
    for sock in (SOCKSRC, SOCKFWD, SOCKDST):
        atf.check(f"-s exit:0 {SERVER6} {sock}")
        atf.export(RUMP_SERVER=sock)
        atf.check("-s exit:0 rump.ifconfig shmif0 create")
        atf.check("-s exit:0 rump.ifconfig shmif1 create")
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o 'match:0 -> 1' rump.sysctl -w net.inet6.ip6.forwarding=1")
    ifcfg(atf, SOCKSRC, (("shmif0", "bus1"), ("shmif1", "bus_src")))
    ifcfg(atf, SOCKDST, (("shmif0", "bus2"), ("shmif1", "bus_dst")))
    ifcfg(atf, SOCKFWD, (("shmif0", "bus1"), ("shmif1", "bus2")))


def test_linklocal(atf):
    setup(atf)
    src_if0 = atf.get_linklocal_addr(SOCKSRC, "shmif0")
    src_if1 = atf.get_linklocal_addr(SOCKSRC, "shmif1")
    fwd_if0 = atf.get_linklocal_addr(SOCKFWD, "shmif0")
    fwd_if1 = atf.get_linklocal_addr(SOCKFWD, "shmif1")
    atf.export(RUMP_SERVER=SOCKSRC)
    # link-local to link-local: a zone is needed
    atf.check(f"-s not-exit:0 -e 'match:No route to host' rump.ping6 -c 1 -X {TIMEOUT} -n {fwd_if0}")
    atf.check(f"-s exit:0 -o 'match:0.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n {fwd_if0}%shmif0")
    atf.check("-s ignore -o not-empty -e ignore -x 'shmif_dumpbus -p - bus1 | tcpdump -r - -n -p icmp6'")
    # a source on another link cannot reach it
    atf.check(f"-s not-exit:0 -o ignore -e ignore rump.ping6 -c 1 -X {TIMEOUT} -n -S {src_if1}%shmif1 "
              f"{fwd_if0}%shmif0")
    # link-local to a host address
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {IP6FWD0}")
    atf.check("-s exit:0 -o ignore rump.ifconfig -w 10")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o 'match:add net default:' rump.route add -inet6 default {fwd_if0}%shmif0")
    atf.check(f"-s exit:0 -o 'match:0.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n -S {src_if0}%shmif0 "
              f"{IP6FWD0}")
    # a host address to link-local addresses
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 -o 'match:0.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n {src_if0}%shmif0")
    atf.check(f"-s not-exit:0 -o 'match:100.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n {src_if1}%shmif0")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {IP6FWD0} delete")
    # forwarding with link-local gateways (setup_route)
    dst_if0 = atf.get_linklocal_addr(SOCKDST, "shmif0")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.run(f"rump.route delete -inet6 default {fwd_if0}%shmif0")
    atf.check(f"-s exit:0 -o 'match:add net default:' rump.route add -inet6 default {fwd_if0}%shmif0")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet6 {IP6SRC}")
    atf.check("-s exit:0 -o ignore rump.ifconfig -w 10")
    atf.export(RUMP_SERVER=SOCKDST)
    atf.check(f"-s exit:0 -o 'match:add net default:' rump.route add -inet6 default {fwd_if1}%shmif0")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet6 {IP6DST}")
    atf.check("-s exit:0 -o ignore rump.ifconfig -w 10")
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 -o 'match:add net' rump.route add -inet6 {IP6SRCNW} {src_if0}%shmif0")
    atf.check(f"-s exit:0 -o 'match:add net' rump.route add -inet6 {IP6DSTNW} {dst_if0}%shmif1")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o 'match:0.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n -S {IP6SRC} {IP6DST}")
    # a link-local source is never forwarded off its link (RFC 4291 2.5.6)
    atf.check(f"-s not-exit:0 -o 'match:100.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n "
              f"-S {src_if0}%shmif0 {IP6DST}")
    out = atf.run("shmif_dumpbus -p - bus2 | tcpdump -r - -n -p icmp6", shell=True).stdout
    assert src_if0 not in out, out
    # and a packet to a link-local address on another link never arrives
    atf.check(f"-s not-exit:0 -o 'match:100.0% packet loss' rump.ping6 -c 1 -X {TIMEOUT} -n "
              f"-S {IP6SRC} {dst_if0}%shmif0")


def test_linklocal_ops(atf):
    setup(atf)
    src_if0 = atf.get_linklocal_addr(SOCKSRC, "shmif0")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o 'match:{src_if0}' rump.route get -inet6 {src_if0}%shmif0")
    atf.check(f"-s not-exit:0 -e 'match:not in table' rump.route get -inet6 {src_if0}")
    atf.check(f"-s exit:0 -o 'match:{src_if0}' rump.ndp -n {src_if0}%shmif0")
    atf.check(f"-s not-exit:0 -o ignore -e 'match:no entry' rump.ndp -n {src_if0}")


# -- t_ping6_opts.sh -------------------------------------------------------------------------
P_SRC, P_SRCGW, P_DSTGW, P_DST = "fc00:0:0:1::2", "fc00:0:0:1::1", "fc00:0:0:2::1", "fc00:0:0:2::2"
P_SRC2, P_SRCGW2 = "fc00:0:0:1::3", "fc00:0:0:1::254"


def setup6(atf):
    for sock in (SOCKSRC, SOCKFWD, SOCKDST):
        atf.rump_server_start(sock, "netinet6")
    for sock, addr, bus, gw in ((SOCKSRC, P_SRC, "bus1", P_SRCGW), (SOCKDST, P_DST, "bus2", P_DSTGW)):
        atf.rump_server_add_iface(sock, "shmif0", bus)
        atf.export(RUMP_SERVER=sock)
        atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {addr}")
        atf.check(f"-s exit:0 -o ignore rump.route add -inet6 default {gw}")
        atf.check("-s exit:0 rump.ifconfig shmif0 up")
        atf.check("-s exit:0 rump.ifconfig -w 10")
    atf.rump_server_add_iface(SOCKFWD, "shmif0", "bus1")
    atf.rump_server_add_iface(SOCKFWD, "shmif1", "bus2")
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {P_SRCGW}")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet6 {P_DSTGW}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig shmif1 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet6.ip6.forwarding=1")


def echo_seen(atf, src, dst, smac=None, dmac=None):
    """check_echo_request_pkt[_with_macaddr]: the new packets on bus1 hold the request."""
    macs = f"{smac} > {dmac}, .+ " if smac else ""
    pkts = atf.extract_new_packets("bus1")
    assert re.search(f"{macs}{src} > {dst}: .+ echo request", pkts), pkts


def ping6_ok(atf, opts, dst):
    atf.check(f"-s exit:0 -o ignore rump.ping6 -n -c 1 -X {TIMEOUT} {opts} {dst}")


def test_ping6_opts_sourceaddr(atf):
    setup6(atf)
    atf.export(RUMP_SERVER=SOCKSRC)
    ping6_ok(atf, "", P_DST)
    echo_seen(atf, P_SRC, P_DST)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {P_SRC2}")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    ping6_ok(atf, "", P_DST)
    echo_seen(atf, P_SRC, P_DST)
    ping6_ok(atf, f"-S {P_SRC}", P_DST)
    echo_seen(atf, P_SRC, P_DST)
    ping6_ok(atf, f"-S {P_SRC2}", P_DST)
    echo_seen(atf, P_SRC2, P_DST)
    atf.rump_server_destroy_ifaces()


def test_ping6_opts_interface(atf):
    setup6(atf)
    shmif0_ll = atf.get_linklocal_addr(SOCKSRC, "shmif0")
    gw_ll = atf.get_linklocal_addr(SOCKFWD, "shmif0")
    atf.export(RUMP_SERVER=SOCKSRC)
    ping6_ok(atf, "", f"{gw_ll}%shmif0")      # NetBSD's takes it without a zone (use_defzone)
    echo_seen(atf, shmif0_ll, gw_ll)
    atf.rump_server_add_iface(SOCKSRC, "shmif1", "bus1")
    atf.check("-s exit:0 rump.ifconfig shmif1 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    shmif1_ll = atf.get_linklocal_addr(SOCKSRC, "shmif1")
    ping6_ok(atf, "-I shmif0", gw_ll)
    echo_seen(atf, shmif0_ll, gw_ll)
    ping6_ok(atf, "-I shmif1", gw_ll)
    echo_seen(atf, shmif1_ll, gw_ll)
    atf.rump_server_destroy_ifaces()


def setup_two_gateways(atf):
    """The first half of ping6_opts_gateway and ping6_opts_hops: a ping through the
    forwarder's shmif0, then a second forwarder interface (shmif2) on the source's bus.
    Returns the MAC addresses of the source, of shmif0 and of shmif2."""
    setup6(atf)
    my_mac = atf.get_macaddr(SOCKSRC, "shmif0")
    gw0_mac = atf.get_macaddr(SOCKFWD, "shmif0")
    atf.export(RUMP_SERVER=SOCKSRC)
    ping6_ok(atf, "", P_DST)
    echo_seen(atf, P_SRC, P_DST, my_mac, gw0_mac)
    atf.rump_server_add_iface(SOCKFWD, "shmif2", "bus1")
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 rump.ifconfig shmif2 inet6 {P_SRCGW2}")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    gw2_mac = atf.get_macaddr(SOCKFWD, "shmif2")
    atf.export(RUMP_SERVER=SOCKSRC)
    return my_mac, gw0_mac, gw2_mac


def test_ping6_opts_gateway(atf):
    my_mac, gw0_mac, gw2_mac = setup_two_gateways(atf)
    ping6_ok(atf, "", P_DST)
    echo_seen(atf, P_SRC, P_DST, my_mac, gw0_mac)
    ping6_ok(atf, f"-g {P_SRCGW}", P_DST)
    echo_seen(atf, P_SRC, P_DST, my_mac, gw0_mac)
    ping6_ok(atf, f"-g {P_SRCGW2}", P_DST)
    echo_seen(atf, P_SRC, P_DST, my_mac, gw2_mac)
    atf.rump_server_destroy_ifaces()


def echo_rthdr0_seen(atf, smac, dmac, src, hop, dst):
    """check_echo_request_pkt_with_macaddr_and_rthdr0: the request went to ``hop`` with a
    type 0 routing header naming ``dst``. NetBSD's tcpdump prints it ``srcrt (len=2,
    type=0, segleft=1, [0]DST)``; tcpdump 4.99 ``RT6 (len=2, type=0 [Deprecated], ...)``."""
    pkts = atf.extract_new_packets("bus1")
    srcrt = rf"(srcrt|RT6) \(len=2, type=0( \[Deprecated\])?, segleft=1, \[0\]{re.escape(dst)}\)"
    assert re.search(f"{smac} > {dmac}, .+ {src} > {hop}: {srcrt} .+ echo request", pkts), pkts


def test_ping6_opts_hops(atf):
    """ping6 with intermediate hops sends a type 0 routing header; the forwarder refuses to
    execute it (RFC 5095), so each ping fails, as NetBSD's script expects."""
    my_mac, gw0_mac, gw2_mac = setup_two_gateways(atf)
    for opts, hop, mac in (("", P_SRCGW, gw0_mac), ("", P_SRCGW2, gw2_mac),
                           (f"-g {P_SRCGW}", P_SRCGW, gw0_mac), (f"-g {P_SRCGW2}", P_SRCGW2, gw2_mac),
                           (f"-g {P_SRCGW}", P_SRCGW2, gw0_mac)):
        atf.check(f"-s not-exit:0 -o ignore rump.ping6 -n -c 1 -X {TIMEOUT} {opts} {hop} {P_DST}")
        echo_rthdr0_seen(atf, my_mac, mac, P_SRC, hop, P_DST)
    atf.rump_server_destroy_ifaces()
