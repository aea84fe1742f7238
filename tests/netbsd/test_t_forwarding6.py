"""Port of the IPv6 half of NetBSD's tests/net/net/t_forwarding.sh, test case ``basic6``:
three rump_servers with netinet6, src -- bus1 -- fwd -- bus2 -- dst; ping6 across with
forwarding on, the hop-limit check (``ping6 -h 1`` gets "Time to live exceeded" from the
router, ``-h 2`` gets through), deleting the neighbour entry of the gateway (an LLINFO
route in NetBSD) and pinging again, and with forwarding off again ping6 fails.

TIMEOUT is 5 in NetBSD; the pings expected to fail use 1 here (they only wait for the loss).
"""

from __future__ import annotations

inet6server = "rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_netinet6 -lrumpnet_shmif"

SOCKSRC = "unix://commsock1"
SOCKFWD = "unix://commsock2"
SOCKDST = "unix://commsock3"
IP6SRC = "fc00:0:0:1::2"
IP6SRCGW = "fc00:0:0:1::1"
IP6DSTGW = "fc00:0:0:2::1"
IP6DST = "fc00:0:0:2::2"
TIMEOUT = 5
FAIL_TIMEOUT = 1


def setup_endpoint6(atf, sock, addr, bus, gw):
    atf.export(RUMP_SERVER=sock)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 linkstr {bus}")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {addr}")
    atf.check(f"-s exit:0 -o ignore rump.route add -inet6 default {gw}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")


def setup_forwarder6(atf):
    atf.export(RUMP_SERVER=SOCKFWD)
    for i, bus in ((0, "bus1"), (1, "bus2")):
        atf.check(f"-s exit:0 rump.ifconfig shmif{i} create")
        atf.check(f"-s exit:0 rump.ifconfig shmif{i} linkstr {bus}")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {IP6SRCGW}")
    atf.check(f"-s exit:0 rump.ifconfig shmif1 inet6 {IP6DSTGW}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig shmif1 up")


def ping6(atf, sock, opts, addr, ok=True, match=None):
    atf.export(RUMP_SERVER=sock)
    out = f"-o 'match:{match}'" if match else "-o ignore"
    status = "exit:0" if ok else "not-exit:0"
    timeout = TIMEOUT if ok else FAIL_TIMEOUT
    atf.check(f"-s {status} {out} rump.ping6 {opts} -c 1 -X {timeout} {addr}")


ping6.__test__ = False  # type: ignore[attr-defined]


def test_basic6(atf):
    for sock in (SOCKSRC, SOCKFWD, SOCKDST):
        atf.check(f"-s exit:0 {inet6server} {sock}")
    setup_endpoint6(atf, SOCKSRC, IP6SRC, "bus1", IP6SRCGW)
    setup_endpoint6(atf, SOCKDST, IP6DST, "bus2", IP6DSTGW)
    setup_forwarder6(atf)
    # test_setup6
    for sock, addr in ((SOCKSRC, IP6SRC), (SOCKDST, IP6DST)):
        atf.export(RUMP_SERVER=sock)
        atf.check("-s exit:0 -o match:shmif0 rump.ifconfig")
        ping6(atf, sock, "-n", addr)
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o match:shmif0 -o match:shmif1 rump.ifconfig")
    ping6(atf, SOCKFWD, "-n", IP6SRCGW)
    ping6(atf, SOCKFWD, "-n", IP6DSTGW)
    # setup_forwarding6 + test_setup_forwarding6
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet6.ip6.forwarding=1")
    atf.check("-s exit:0 -o 'match:net.inet6.ip6.forwarding = 1' rump.sysctl net.inet6.ip6.forwarding")
    # test_ping6_success
    ping6(atf, SOCKSRC, "-q -n", IP6SRCGW)
    ping6(atf, SOCKSRC, "-q -n", IP6DST)
    ping6(atf, SOCKDST, "-q -n", IP6DSTGW)
    ping6(atf, SOCKDST, "-q -n", IP6SRC)
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o ignore rump.route delete -inet6 {IP6SRCGW}")
    atf.check(f"-s exit:0 -o ignore rump.ping6 -q -n -c 2 -X {TIMEOUT} {IP6DST}")
    # test_hoplimit
    ping6(atf, SOCKSRC, "-q -n -h 1", IP6SRCGW)
    ping6(atf, SOCKSRC, "-v -n -h 1", IP6DST, ok=False, match="Time to live exceeded")
    ping6(atf, SOCKSRC, "-q -n -h 2", IP6DST)
    # teardown_forwarding6 + test_teardown_forwarding6 + test_ping6_failure
    atf.export(RUMP_SERVER=SOCKFWD)
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet6.ip6.forwarding=0")
    atf.check("-s exit:0 -o 'match:net.inet6.ip6.forwarding = 0' rump.sysctl net.inet6.ip6.forwarding")
    ping6(atf, SOCKSRC, "-q -n", IP6DST, ok=False)
    ping6(atf, SOCKDST, "-q -n", IP6SRC, ok=False)
