"""Port of NetBSD's tests/net/net/t_mtudisc6.sh, mtudisc6_basic: IPv6 path MTU discovery
(RFC 8201) across a gateway whose interface toward the local server has mtu 1280.

    [local]                   [gateway]                      [remote, httpd]
    shmif0 fc00:0:0:1::2 -- bus1 -- shmif0 fc00:0:0:1::1 (mtu 1280)
                                    shmif1 fc00:0:0:2::1 -- bus2 -- shmif0 fc00:0:0:2::2

The local server accepts no fragments (net.inet6.ip6.maxfragpackets=0). The remote's
1440-byte TCP segments do not fit the gateway's 1280-byte link; an IPv6 router never
fragments (RFC 8200 5), so the gateway answers Packet Too Big (RFC 4443 3.2), the remote
learns 1280 on its host route to the local server and the download works. The script
reads the learned MTU in ``netstat -nr -f inet6``.

NetBSD's httpd and ftp run over rumphijack(3); here Python's http.server and urllib run
under ``rumphijack`` (the helpers are t_mtudisc's). The fetch timeout is 3 s (5 in NetBSD).

Not in the script: ``test_mtudisc6_expiry`` runs the same topology in-process on virtual
time and checks that the learned MTU lives ``net.inet6.ip6.mtudisctimeout`` seconds
(RFC 8201 4: try a larger MTU again after at least 5 minutes, NetBSD's 10) and then leaves
the route, which ``netstat`` shows with ``-`` again.
"""

from __future__ import annotations

import re
import select
import socket
import time

from test_t_mtudisc import PY, do_http_get, prepare_download_file, setup_servers

from rumpnet.commands import run_command
from rumpnet.testing.vnet import VNet, tcp_connection

SOCKLOCAL = "unix://commsock1"
SOCKGATEWAY = "unix://commsock2"
SOCKREMOTE = "unix://commsock3"
HTML_FILE = "index.html"

LOCAL_IP = "fc00:0:0:1::2"
GATEWAY_LOCAL_IP = "fc00:0:0:1::1"
GATEWAY_REMOTE_IP = "fc00:0:0:2::1"
REMOTE_IP = "fc00:0:0:2::2"
PREFIXLEN = 64


def route_re(mtu: str, ifname: str = "shmif0") -> str:
    """The remote's host route to the local server in netstat -nr -f inet6, with ``mtu``."""
    return f"^{LOCAL_IP} +{GATEWAY_REMOTE_IP} +UGHS +- +- +{mtu} +{ifname}"


def start_httpd6(atf, sock, ip):
    """net_common.sh start_httpd for an IPv6 address. Our netstat -a lists IPv4's
    sockets only, so readiness is http.server's "Serving HTTP on" line, which it prints
    once its socket is bound and listening."""
    p = atf.spawn(f"rumphijack -- {PY} -m http.server --bind {ip} 80", env={"RUMP_SERVER": sock})
    assert p.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if select.select([p.stdout], [], [], 0.2)[0]:
            seen.append(p.stdout.readline())
            if seen[-1].startswith("Serving HTTP on"):
                return
        elif p.poll() is not None:
            break
    raise AssertionError("httpd did not start listening: " + "".join(seen) + p.stdout.read())


def test_mtudisc6_basic(atf):
    for sock in (SOCKLOCAL, SOCKGATEWAY, SOCKREMOTE):
        atf.rump_server_start(sock, "netinet6")

    setup_servers(atf, "inet6 ", (LOCAL_IP, GATEWAY_LOCAL_IP, GATEWAY_REMOTE_IP, REMOTE_IP), PREFIXLEN,
                  "net.inet6.ip6.forwarding")

    ### Setup remote server
    atf.export(RUMP_SERVER=SOCKREMOTE)
    # Start httpd daemon
    prepare_download_file(atf, HTML_FILE)
    start_httpd6(atf, SOCKREMOTE, REMOTE_IP)
    # Teach the peer that local server is behind gateway server
    atf.check(f"-s exit:0 -o ignore rump.route add -inet6 {LOCAL_IP}/128 {GATEWAY_REMOTE_IP}")
    # Check path MTU size on remote server
    atf.check(f"-s exit:0 -o 'match:{route_re('-')}' rump.netstat -nr -f inet6")

    ### Setup local server
    atf.export(RUMP_SERVER=SOCKLOCAL)
    # Teach the peer that remote server is behind gateway server
    atf.check(f"-s exit:0 -o ignore rump.route add -inet6 {REMOTE_IP}/128 {GATEWAY_LOCAL_IP}")
    # Don't accept fragmented packets
    atf.check("-s exit:0 -o ignore rump.sysctl -w -q net.inet6.ip6.maxfragpackets=0")

    # Test enabled path MTU discovery: get the webpage (expect: success)
    atf.export(RUMP_SERVER=SOCKLOCAL)
    do_http_get(atf, REMOTE_IP, 0)

    # Check path MTU size on remote server
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check(f"-s exit:0 -o 'match:{route_re('1280')}' rump.netstat -nr -f inet6")
    # (not in NetBSD's script) the gateway said so with a Packet Too Big, and route get
    # shows the learned MTU too
    atf.export(RUMP_SERVER=SOCKGATEWAY)
    atf.check("-s exit:0 -o 'match:^\t\t[Pp]acket too big: [1-9]' rump.netstat -s -p icmp6")
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check(f"-s exit:0 -o 'match: 1280 ' rump.route -n get -inet6 {LOCAL_IP}")

    atf.rump_server_destroy_ifaces()


def _setup_virtual(vnet: VNet):
    """The script's three servers, in-process on virtual time, on in-process wires (wire0
    for the script's shmif0, wire1 for shmif1)."""
    local, gateway, remote = (vnet.kernel(i, hostname=n) for i, n in ((1, "local"), (2, "gateway"), (3, "remote")))
    for k, ifname, bus, ip in ((local, "wire0", "bus1", LOCAL_IP), (gateway, "wire0", "bus1", GATEWAY_LOCAL_IP),
                               (gateway, "wire1", "bus2", GATEWAY_REMOTE_IP), (remote, "wire0", "bus2", REMOTE_IP)):
        vnet.attach(k, ifname, bus, None)
        run_command(k, "ifconfig", [ifname, "inet6", f"{ip}/{PREFIXLEN}"])
    run_command(gateway, "ifconfig", ["wire0", "mtu", "1280"])
    run_command(gateway, "sysctl", ["-w", "-q", "net.inet6.ip6.forwarding=1"])
    run_command(remote, "route", ["add", "-inet6", f"{LOCAL_IP}/128", GATEWAY_REMOTE_IP])
    run_command(local, "route", ["add", "-inet6", f"{REMOTE_IP}/128", GATEWAY_LOCAL_IP])
    run_command(local, "sysctl", ["-w", "-q", "net.inet6.ip6.maxfragpackets=0"])
    vnet.sched.run_for(3)          # DAD
    return local, gateway, remote


def _route_line(k) -> str:
    out = run_command(k, "netstat", ["-nr", "-f", "inet6"])
    assert isinstance(out, str)
    lines = [ln for ln in out.splitlines() if ln.startswith(LOCAL_IP + " ")]
    assert len(lines) == 1, out
    return lines[0]


def test_mtudisc6_expiry(vnet: VNet) -> None:
    local, gateway, remote = _setup_virtual(vnet)
    lfd, c, s = tcp_connection(local, remote, (REMOTE_IP, 80), family=socket.AF_INET6)
    page = b"0123456789\n" * 512
    remote.rump_sys_send(s, page, 0)
    got = b""
    while len(got) < len(page):
        got += local.rump_sys_recv(c, 65536, 0)
    assert got == page
    assert gateway.inet6.node.icmp6stat.icp6s_opacket_too_big >= 1
    assert re.match(route_re("1280", "wire0"), _route_line(remote))
    learned_at = remote.clock_now()
    timeout = remote.inet6.node.ip6_params.mtudisctimeout
    for k, fd in ((local, c), (remote, s), (remote, lfd)):
        k.rump_sys_close(fd)
    vnet.sched.run_for(learned_at + timeout - 1 - remote.clock_now())
    assert re.match(route_re("1280", "wire0"), _route_line(remote))      # still learned
    vnet.sched.run_for(2)
    # The static host route stays; only the learned MTU left it.
    assert re.match(route_re("-", "wire0"), _route_line(remote)), _route_line(remote)
