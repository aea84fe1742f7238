"""Port of NetBSD's tests/net/net/t_forwarding.sh, test case ``basic`` (IPv4): three
rump_servers, src -- bus1 -- fwd -- bus2 -- dst; pings across with forwarding on, the
TTL check (``ping -T 1`` gets "Time To Live exceeded" from the router, ``-T 2`` gets
through), and with forwarding off again pings fail.

(basic6 is in test_t_forwarding6.py; fastforward needs bozohttpd: not ported.) TIMEOUT is 5 in NetBSD; the
pings that are expected to fail use 1 here, since they only wait for the loss.
"""

from __future__ import annotations

inetserver = "rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif"

SOCKSRC = "unix://commsock1"
SOCKFWD = "unix://commsock2"
SOCKDST = "unix://commsock3"
IP4SRC = "10.0.1.2"
IP4SRCGW = "10.0.1.1"
IP4DSTGW = "10.0.2.1"
IP4DST = "10.0.2.2"
TIMEOUT = 5
FAIL_TIMEOUT = 1


def setup_endpoint(atf, sock, addr, bus, gw):
    atf.export(RUMP_SERVER=sock)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 linkstr {bus}")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet {addr} netmask 0xffffff00")
    atf.check(f"-s exit:0 -o ignore rump.route add default {gw}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")


def test_endpoint(atf, sock, addr):
    atf.export(RUMP_SERVER=sock)
    atf.check("-s exit:0 -o match:shmif0 rump.ifconfig")
    atf.check(f"-s exit:0 -o ignore rump.ping -n -w {TIMEOUT} -c 1 {addr}")


test_endpoint.__test__ = False  # a helper of the script, not a pytest test


def setup_forwarder(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus1")
    atf.check("-s exit:0 rump.ifconfig shmif1 create")
    atf.check("-s exit:0 rump.ifconfig shmif1 linkstr bus2")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet {IP4SRCGW} netmask 0xffffff00")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet {IP4DSTGW} netmask 0xffffff00")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig shmif1 up")


def setup(atf):
    atf.check(f"-s exit:0 {inetserver} {SOCKSRC}")
    atf.check(f"-s exit:0 {inetserver} {SOCKFWD}")
    atf.check(f"-s exit:0 {inetserver} {SOCKDST}")
    setup_endpoint(atf, SOCKSRC, IP4SRC, "bus1", IP4SRCGW)
    setup_endpoint(atf, SOCKDST, IP4DST, "bus2", IP4DSTGW)
    setup_forwarder(atf)


def test_setup(atf):
    test_endpoint(atf, SOCKSRC, IP4SRC)
    test_endpoint(atf, SOCKDST, IP4DST)
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o match:shmif0 -o match:shmif1 rump.ifconfig")
    atf.check(f"-s exit:0 -o ignore rump.ping -n -w {TIMEOUT} -c 1 {IP4SRCGW}")
    atf.check(f"-s exit:0 -o ignore rump.ping -n -w {TIMEOUT} -c 1 {IP4DSTGW}")


test_setup.__test__ = False


def setup_forwarding(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet.ip.forwarding=1")


def teardown_forwarding(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet.ip.forwarding=0")


def test_setup_forwarding(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o 'match:net.inet.ip.forwarding = 1' rump.sysctl net.inet.ip.forwarding")


test_setup_forwarding.__test__ = False


def test_teardown_forwarding(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o 'match:net.inet.ip.forwarding = 0' rump.sysctl net.inet.ip.forwarding")


test_teardown_forwarding.__test__ = False


def test_ping_failure(atf):
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s not-exit:0 -o ignore rump.ping -q -n -w {FAIL_TIMEOUT} -c 1 {IP4DST}")
    atf.export(RUMP_SERVER=SOCKDST)
    atf.check(f"-s not-exit:0 -o ignore rump.ping -q -n -w {FAIL_TIMEOUT} -c 1 {IP4SRC}")


test_ping_failure.__test__ = False


def test_ping_success(atf):
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 {IP4SRCGW}")
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 {IP4DST}")

    atf.export(RUMP_SERVER=SOCKDST)
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 {IP4DSTGW}")
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 {IP4SRC}")

    # Check if nexthop lookup involving a rtentry creation on sending a packet works
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o ignore rump.route delete {IP4SRCGW}")
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 2 {IP4DST}")


test_ping_success.__test__ = False


def test_ttl(atf):
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 -T 1 {IP4SRCGW}")
    atf.check(f"-s not-exit:0 -o 'match:Time To Live exceeded' rump.ping -v -n -w {FAIL_TIMEOUT} -c 1 -T 1 {IP4DST}")
    atf.check(f"-s exit:0 -o ignore rump.ping -q -n -w {TIMEOUT} -c 1 -T 2 {IP4DST}")


test_ttl.__test__ = False


def test_basic(atf):
    """t_forwarding.sh basic: IPv4 forwarding."""
    setup(atf)
    test_setup(atf)

    setup_forwarding(atf)
    test_setup_forwarding(atf)
    test_ping_success(atf)
    test_ttl(atf)

    teardown_forwarding(atf)
    test_teardown_forwarding(atf)
    test_ping_failure(atf)
    # (not in NetBSD's script) the router dropped both echo requests as not forwardable,
    # so the failures are drops, not a crash on the way: 2, and 1 from the TTL test
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o 'match:^\t3 packets not forwardable$' rump.netstat -s -p ip")
