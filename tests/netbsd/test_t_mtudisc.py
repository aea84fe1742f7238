"""Port of NetBSD's tests/net/net/t_mtudisc.sh, mtudisc_basic: IPv4 path MTU discovery
across a gateway whose interface toward the local server has mtu 1280.

    [local]                   [gateway]                      [remote, httpd]
    shmif0 10.0.0.2 -- bus1 -- shmif0 10.0.0.1 (mtu 1280)
                               shmif1 10.0.1.1 -- bus2 -- shmif0 10.0.1.2

The local server accepts no fragments (net.inet.ip.maxfragpackets=0). With
net.inet.ip.mtudisc=0 on the remote, its 1500-byte TCP segments are fragmented by the
gateway, dropped by the local server, and the download fails; the remote's host route
to 10.0.0.2 keeps no MTU. With mtudisc=1 the segments carry DF, the gateway answers
"fragmentation needed", the remote learns 1280 on that route and the download works.

NetBSD's httpd and ftp run over rumphijack(3) (LD_PRELOAD); here Python's http.server
and urllib run under ``rumphijack`` (rumpnet.hijack). The fetch timeout is 3 s (5 in
NetBSD).
"""

from __future__ import annotations

import sys
import time

SOCKLOCAL = "unix://commsock1"
SOCKGATEWAY = "unix://commsock2"
SOCKREMOTE = "unix://commsock3"
HTML_FILE = "index.html"
PY = sys.executable


def setup_server(atf, sock, if_, bus, ip):
    atf.rump_server_add_iface(sock, if_, bus)
    atf.export(RUMP_SERVER=sock)
    atf.check(f"-s exit:0 rump.ifconfig {if_} {ip}")
    atf.check(f"-s exit:0 rump.ifconfig {if_} up")
    atf.check("-s exit:0 rump.ifconfig -w 10")


def setup_servers(atf, af, ips, prefixlen, forwarding):
    """Both scripts' first part: the addresses (``af`` is "" or "inet6 "), then the
    gateway's shmif0 at mtu 1280 and forwarding on (``forwarding``: the sysctl)."""
    local_ip, gateway_local_ip, gateway_remote_ip, remote_ip = ips
    # Assign IP addresses
    setup_server(atf, SOCKLOCAL, "shmif0", "bus1", f"{af}{local_ip}/{prefixlen}")
    setup_server(atf, SOCKGATEWAY, "shmif0", "bus1", f"{af}{gateway_local_ip}/{prefixlen}")
    setup_server(atf, SOCKGATEWAY, "shmif1", "bus2", f"{af}{gateway_remote_ip}/{prefixlen}")
    setup_server(atf, SOCKREMOTE, "shmif0", "bus2", f"{af}{remote_ip}/{prefixlen}")

    ### Setup gateway server
    atf.export(RUMP_SERVER=SOCKGATEWAY)
    # Set mtu of shmif0 to 1280
    atf.check("-s exit:0 rump.ifconfig shmif0 mtu 1280")
    # Enable IP forwarding
    atf.check(f"-s exit:0 rump.sysctl -w -q {forwarding}=1")


def prepare_download_file(atf, file):
    with open(atf.path(file), "w") as f:
        f.write("0123456789\n" * 512)


def start_httpd(atf, sock, ip):
    """net_common.sh start_httpd: an HTTP server in the kernel at ``sock`` on ip:80."""
    p = atf.spawn(f"rumphijack -- {PY} -m http.server --bind {ip} 80", env={"RUMP_SERVER": sock})
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise AssertionError(f"httpd exited: {p.stdout.read() if p.stdout else ''}")
        res = atf.run("rump.netstat -a -n", env={"RUMP_SERVER": sock})
        if "LISTEN" in res.stdout and ".80 " in res.stdout:
            return
        time.sleep(0.1)
    raise AssertionError("httpd did not start listening")


def do_http_get(atf, ip, ret):
    timeout = 3
    host = f"[{ip}]" if ":" in ip else ip     # t_mtudisc6: "http://[$ip]/$HTML_FILE"
    # NetBSD: env LD_PRELOAD=/usr/lib/librumphijack.so ftp -q $timeout -o ./out http://$ip/$HTML_FILE
    code = ("import urllib.request; "
            f"open('./out', 'wb').write(urllib.request.urlopen('http://{host}/{HTML_FILE}', timeout={timeout}).read())")
    atf.check(f"-s exit:{ret} -o ignore -e ignore rumphijack -- {PY} -c \"{code}\"")
    if ret == 0:
        with open(atf.path("out")) as f:  # (not in NetBSD's script) the whole file came
            assert f.read() == "0123456789\n" * 512


def test_mtudisc_basic(atf):
    local_ip = "10.0.0.2"
    gateway_local_ip = "10.0.0.1"
    gateway_remote_ip = "10.0.1.1"
    remote_ip = "10.0.1.2"
    prefixlen = 24

    atf.rump_server_start(SOCKLOCAL)
    atf.rump_server_start(SOCKGATEWAY)
    atf.rump_server_start(SOCKREMOTE)

    setup_servers(atf, "", (local_ip, gateway_local_ip, gateway_remote_ip, remote_ip), prefixlen,
                  "net.inet.ip.forwarding")

    ### Setup remote server
    atf.export(RUMP_SERVER=SOCKREMOTE)
    # Check default value
    atf.check("-s exit:0 -o match:1 rump.sysctl -n net.inet.ip.mtudisc")
    # Start httpd daemon
    prepare_download_file(atf, HTML_FILE)
    start_httpd(atf, SOCKREMOTE, remote_ip)
    # Teach the peer that 10.0.0.2 (local server) is behind 10.0.1.1 (gateway server)
    atf.check(f"-s exit:0 -o ignore rump.route add {local_ip}/32 {gateway_remote_ip}")

    ### Setup local server
    atf.export(RUMP_SERVER=SOCKLOCAL)
    # Teach the peer that 10.0.1.2 (remote server) is behind 10.0.0.1 (gateway server)
    atf.check(f"-s exit:0 -o ignore rump.route add {remote_ip}/32 {gateway_local_ip}")
    # Don't accept fragmented packets
    atf.check("-s exit:0 -o ignore rump.sysctl -w -q net.inet.ip.maxfragpackets=0")

    # Test disabled path mtu discovery
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check("-s exit:0 -o ignore rump.sysctl -w -q net.inet.ip.mtudisc=0")
    # Get the webpage (expect: failed)
    atf.export(RUMP_SERVER=SOCKLOCAL)
    do_http_get(atf, remote_ip, 1)
    # (not in NetBSD's script) ... because the local server dropped the gateway's
    # fragments (maxfragpackets=0 counts them as fragments dropped), not a crash
    atf.check("-s exit:0 -o 'match:^\t[1-9][0-9]* fragments? dropped [(]dup or out of space[)]$' "
              "rump.netstat -s -p ip")
    # Check path mtu size on remote server
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check("-s exit:0 -o 'match:^10.0.0.2 +10.0.1.1 +UGHS +- +- +- +shmif0' rump.netstat -nr -f inet")

    # Test enabled path mtu discovery
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check("-s exit:0 -o ignore rump.sysctl -w -q net.inet.ip.mtudisc=1")
    # Get the webpage (expect: success)
    atf.export(RUMP_SERVER=SOCKLOCAL)
    do_http_get(atf, remote_ip, 0)
    # Check path mtu size on remote server
    atf.export(RUMP_SERVER=SOCKREMOTE)
    atf.check("-s exit:0 -o 'match:^10.0.0.2 +10.0.1.1 +UGHS +- +- +1280 +shmif0' rump.netstat -nr -f inet")
    # (not in NetBSD's script) route get shows the learned MTU too
    atf.check(f"-s exit:0 -o 'match: 1280 ' rump.route -n get {local_ip}")

    atf.rump_server_destroy_ifaces()
