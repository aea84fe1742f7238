"""Ports of NetBSD's tests/net/route/t_route.sh (route_command_get, route_command_add,
route_non_subnet_gateway) and tests/net/route/t_change.sh (route_change_gateway,
route_change_ifa, route_change_flags, route_change_default_flags,
route_change_reject2blackhole). IPv6 cases are not ported (no netinet6).

``route -n get`` output is compared with NetBSD's expected text but for its last line
(the metrics values), which NetBSD's script drops too ("expire is unstable").
"""

from __future__ import annotations

import pytest

# route_command_get
SOCKSRC = "unix://commsock1"
SOCKFWD = "unix://commsock2"
SOCKDST = "unix://commsock3"
IP4SRC = "10.0.1.2"
IP4SRCGW = "10.0.1.1"
IP4DSTGW = "10.0.2.1"
IP4DST = "10.0.2.2"
BUS_SRCGW = "bus1"
BUS_DSTGW = "bus2"
# route_non_subnet_gateway
SOCK_CLIENT = "unix://commsock1"
SOCK_GW = "unix://commsock2"
BUS = "bus1"
# route_command_add
SOCKHOST = "unix://commsock1"

TIMEOUT = 1
PING_OPTS = f"-n -c 1 -w {TIMEOUT}"

HDR = " recvpipe  sendpipe  ssthresh  rtt,msec    rttvar  hopcount      mtu     expire\n"


def _route_get(atf, target, expect):
    """NetBSD: rump.route -n get X > ./output; sed -i '$d' ./output; diff ./expect ./output"""
    res = atf.check(f"-s exit:0 -o ignore rump.route -n get {target}")
    lines = res.stdout.splitlines(keepends=True)
    output = "".join(lines[:-1])
    assert output == expect, f"diff ./expect ./output:\n--- expect\n{expect}--- output\n{output}"


# -- t_route.sh ------------------------------------------------------------------------------
def setup_endpoint(atf, sock, addr, bus, gw):
    atf.export(RUMP_SERVER=sock)
    atf.rump_server_add_iface(sock, "shmif0", bus)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet {addr} netmask 0xffffff00")
    atf.check(f"-s exit:0 -o ignore rump.route add default {gw}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")


def setup_forwarder(atf):
    atf.rump_server_add_iface(SOCKFWD, "shmif0", BUS_SRCGW)
    atf.rump_server_add_iface(SOCKFWD, "shmif1", BUS_DSTGW)
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet {IP4SRCGW} netmask 0xffffff00")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet {IP4DSTGW} netmask 0xffffff00")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig shmif1 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")


def test_route_command_get(atf):
    """route_command_get: route get for a local address, a neighbor (connected route,
    with and without an ARP entry) and a remote host (default route)."""
    atf.rump_server_start(SOCKSRC)
    atf.rump_server_start(SOCKFWD)
    atf.rump_server_start(SOCKDST)
    setup_endpoint(atf, SOCKSRC, IP4SRC, BUS_SRCGW, IP4SRCGW)
    setup_endpoint(atf, SOCKDST, IP4DST, BUS_DSTGW, IP4DSTGW)
    setup_forwarder(atf)
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet.ip.forwarding=1")

    atf.export(RUMP_SERVER=SOCKSRC)
    # Make sure an ARP cache to the gateway doesn't exist
    atf.run(f"rump.arp -d {IP4SRCGW}")

    # Local
    _route_get(atf, IP4SRC, (
        "   route to: 10.0.1.2\n"
        "destination: 10.0.1.2\n"
        " local addr: 10.0.1.2\n"
        "  interface: lo0\n"
        "      flags: 0x40045<UP,HOST,DONE,LOCAL>\n" + HDR))
    # Neighbor
    neighbor = (
        "   route to: 10.0.1.1\n"
        "destination: 10.0.1.0\n"
        "       mask: 255.255.255.0\n"
        " local addr: 10.0.1.2\n"
        "  interface: shmif0\n"
        "      flags: 0x141<UP,DONE,CONNECTED>\n" + HDR)
    _route_get(atf, IP4SRCGW, neighbor)
    # Remote host
    _route_get(atf, IP4DST, (
        "   route to: 10.0.2.2\n"
        "destination: default\n"
        "       mask: default\n"
        "    gateway: 10.0.1.1\n"
        " local addr: 10.0.1.2\n"
        "  interface: shmif0\n"
        "      flags: 0x843<UP,GATEWAY,DONE,STATIC>\n" + HDR))
    # Create a ARP cache
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 {IP4SRCGW}")
    # Neighbor with a cache (no different from w/o cache)
    _route_get(atf, IP4SRCGW, neighbor)
    atf.rump_server_destroy_ifaces()


def test_route_command_add(atf):
    """route_command_add: gateways must be reachable; an unreachable one is rejected."""
    atf.rump_server_start(SOCKHOST)
    atf.export(RUMP_SERVER=SOCKHOST)
    atf.rump_server_add_iface(SOCKHOST, "shmif0", BUS)
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.1/24")

    # Accept the route whose gateway is in a subnet of interface address
    atf.check("-s exit:0 -o ignore rump.route add -net 10.0.1.0/24 10.0.0.2")
    atf.check("-s exit:0 -o ignore rump.route add -host 10.0.2.1 10.0.0.3")
    # Accept the route whose gateway is an interface
    atf.check("-s exit:0 -o ignore rump.route add -net 10.0.3.0/24 -connected -link -iface shmif0")
    # Accept the route whose gateway is reachable and not RTF_GATEWAY
    atf.check("-s exit:0 -o ignore rump.route add -net 10.0.4.0/24 10.0.3.1")
    # Don't accept the route whose destination is reachable and gateway is unreachable
    atf.check("-s not-exit:0 -o ignore -e match:unreachable rump.route add -net 10.0.1.0/26 10.0.5.1")
    # Don't accept the route whose gateway is reachable and RTF_GATEWAY
    atf.check("-s not-exit:0 -o ignore -e ignore rump.route add -net 10.0.6.0/24 10.0.1.1")
    atf.rump_server_destroy_ifaces()


def test_route_non_subnet_gateway(atf):
    """route_non_subnet_gateway: a gateway not on the local subnet, reached through a
    cloning interface route."""
    atf.rump_server_start(SOCK_CLIENT)
    atf.rump_server_start(SOCK_GW)

    atf.export(RUMP_SERVER=SOCK_GW)
    atf.rump_server_add_iface(SOCK_GW, "shmif0", BUS)
    atf.check("-s exit:0 rump.ifconfig shmif0 192.168.0.1")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    # The gateway knows the client
    atf.check("-s exit:0 -o 'match:add net 10.0.0.1: gateway shmif0' "
              "rump.route add -net 10.0.0.1/32 -link -cloning -iface shmif0")

    atf.export(RUMP_SERVER=SOCK_CLIENT)
    atf.rump_server_add_iface(SOCK_CLIENT, "shmif0", BUS)
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.1/32")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")

    # Don't know a route to the gateway yet
    atf.check(f"-s not-exit:0 -o 'match:100.0% packet loss' -e 'match:No route to host' "
              f"rump.ping {PING_OPTS} 192.168.0.1")
    # Teach a route to the gateway
    atf.check("-s exit:0 -o 'match:add net 192.168.0.1: gateway shmif0' "
              "rump.route add -net 192.168.0.1/32 -link -cloning -iface shmif0")
    atf.check("-s exit:0 -o 'match:add net default: gateway 192.168.0.1' "
              "rump.route add default -ifa 10.0.0.1 192.168.0.1")
    # Be reachable to the gateway
    atf.check(f"-s exit:0 -o ignore rump.ping {PING_OPTS} 192.168.0.1")
    atf.rump_server_destroy_ifaces()


# -- t_change.sh -----------------------------------------------------------------------------
netserver = "rump_server -lrumpdev -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif"
COMMSOCK = "unix://commsock"


@pytest.fixture
def change(atf):
    atf.export(RUMP_SERVER=COMMSOCK)
    atf.check(f"-s exit:0 {netserver} {COMMSOCK}")
    return atf


def test_route_change_reject2blackhole(change):
    atf = change
    atf.check("-s exit:0 -o ignore rump.route add 207.46.197.32 127.0.0.1 -reject")
    atf.check("-s exit:0 -o match:UGHR -x 'rump.route -n show -inet | grep ^207.46'")
    atf.check("-s exit:0 -o ignore rump.route change 207.46.197.32 127.0.0.1 -blackhole")
    atf.check("-s exit:0 -o 'match: UGHBS ' -e ignore -x 'rump.netstat -rn -f inet | grep ^207.46'")


def test_route_change_gateway(change):
    atf = change
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus")
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.10/24 up")

    atf.check("-s exit:0 -o ignore rump.route add -net 192.168.0.0/24 10.0.0.1")
    atf.check("-s exit:0 -o match:10.0.0.1 -x 'rump.route -n show -inet | grep ^192.168'")
    atf.check("-s exit:0 -o ignore rump.route change -net 192.168.0.0/24 10.0.0.254")
    atf.check("-s exit:0 -o match:10.0.0.254 -x 'rump.route -n show -inet | grep ^192.168'")


def test_route_change_ifa(change):
    atf = change
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus")
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.10/24")
    atf.check("-s exit:0 rump.ifconfig shmif0 alias 10.0.0.11/24")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")

    atf.check("-s exit:0 -o ignore rump.route add -net 192.168.0.0/24 10.0.0.1")
    atf.check("-s exit:0 -o match:10.0.0.1 -x 'rump.route -n show -inet | grep ^192.168'")
    expect = ("   route to: 192.168.0.1\n"
              "destination: 192.168.0.0\n"
              "       mask: 255.255.255.0\n"
              "    gateway: 10.0.0.1\n"
              " local addr: {ifa}\n"
              "  interface: shmif0\n"
              "      flags: 0x843<UP,GATEWAY,DONE,STATIC>\n" + HDR)
    _route_get(atf, "192.168.0.1", expect.format(ifa="10.0.0.10"))
    # Change the local address of the route
    atf.check("-s exit:0 -o ignore rump.route change -net 192.168.0.0/24 10.0.0.1 -ifa 10.0.0.11")
    _route_get(atf, "192.168.0.1", expect.format(ifa="10.0.0.11"))


def test_route_change_flags(change):
    atf = change
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus")
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.10/24 up")

    atf.check_route("10.0.0/24", "", "UC", "shmif0")
    # Set reject flag
    atf.check("-s exit:0 -o ignore rump.route change -net 10.0.0.0/24 -reject")
    atf.check_route("10.0.0/24", "", "URCS", "shmif0")
    # Clear reject flag
    atf.check("-s exit:0 -o ignore rump.route change -net 10.0.0.0/24 -noreject")
    atf.check_route("10.0.0/24", "", "UCS", "shmif0")


def test_route_change_default_flags(change):
    atf = change
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus")
    atf.check("-s exit:0 rump.ifconfig shmif0 10.0.0.10/24 up")

    atf.check("-s exit:0 -o ignore rump.route add default 10.0.0.1")
    atf.check_route("default", "10.0.0.1", "UGS", "shmif0")
    # Set reject flag
    atf.check("-s exit:0 -o ignore rump.route change default -reject")
    atf.check_route("default", "10.0.0.1", "UGRS", "shmif0")
    # Clear reject flag
    atf.check("-s exit:0 -o ignore rump.route change default -noreject")
    atf.check_route("default", "10.0.0.1", "UGS", "shmif0")
