"""Port of NetBSD's tests/net/ndp/t_ra.sh (v1.12, the script of the kernels that took
router advertisements themselves): rump_servers with netinet6 on a shmif bus, one or two
of them routers running ``rump.rtadvd``, a host with ``net.inet6.ip6.accept_rtadv``
learning its default routers, prefixes, link MTU and an autoconfigured address from
them; ``ndp -r``, ``-p``, ``-i``, ``-P`` and ``-R``.

Differences from the script: ``init_server``'s ``mkdir -p /rump/var/chroot/rtadvd``
through librumphijack is left out (our rtadvd runs in the kernel and chroots nowhere).
``ra_flush_prefix_entries`` expects ``ndp -n -a`` to still list an ``fc00:1:`` address
after ``ndp -P`` took the autoconfigured address away: NetBSD's kernel of that time kept
the neighbour-cache entry of a removed local address; ours lists its own addresses only
while they exist, so the port expects it gone (as ``ifconfig`` shows it).
``ra_delete_address`` finds the address with ``awk '/AUTOCONF/'`` where ifconfig prints
``autoconf`` (so NetBSD's run deleted nothing); the port matches ``autoconf``, kills the
router (SIGKILL) before the delete rather than after it, and checks the address is gone.
"""

from __future__ import annotations

import os
import re
import signal
import time

RUMPSRV, RUMPCLI, RUMPSRV3 = "unix://r1", "unix://r2", "unix://r3"
IP6SRV, IP6SRV_PREFIX = "fc00:1::1", "fc00:1:"
IP6CLI = "fc00:2::2"
IP6SRV3, IP6SRV3_PREFIX = "fc00:3::1", "fc00:3:"
PIDFILE, PIDFILE3 = "./rump.rtadvd.pid", "./rump.rtadvd.pid3"
CONFIG = "./rtadvd.conf"


def init_server(atf, sock):
    atf.export(RUMP_SERVER=sock)
    atf.check("-s exit:0 -o 'match:0.->.1' rump.sysctl -w net.inet6.ip6.forwarding=1")
    atf.unset("RUMP_SERVER")


def setup_shmif0(atf, sock, ip6addr):
    atf.rump_server_add_iface(sock, "shmif0", "bus1")
    atf.export(RUMP_SERVER=sock)
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {ip6addr}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")


def wait_term(atf, pidfile, timeout=30.0):
    path = atf.path(pidfile)
    end = time.monotonic() + timeout
    while os.path.exists(path):
        assert time.monotonic() < end, f"{pidfile} still there after {timeout}s"
        time.sleep(0.2)


def kill_rtadvd(atf, pidfile, sig=signal.SIGTERM):
    """``kill -SIG `cat pidfile```; for SIGKILL, until the daemon is gone (and a moment
    for the server to see its connection drop), so no advertisement follows."""
    with open(atf.path(pidfile), encoding="ascii") as f:
        pid = int(f.read().strip())
    os.kill(pid, sig)
    if sig == signal.SIGKILL:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        time.sleep(0.5)


def create_rtadvdconfig(atf):
    with open(atf.path(CONFIG), "w", encoding="ascii") as f:
        f.write("shmif0:\\\n\t:mtu#1300:maxinterval#4:mininterval#3:\n")


def start_rtadvd(atf, sock, pidfile):
    atf.export(RUMP_SERVER=sock)
    atf.check(f"-s exit:0 rump.rtadvd -c {CONFIG} -p {pidfile} shmif0")
    time.sleep(3)
    atf.check(f"-s exit:0 -o ignore -e empty cat {pidfile}")
    atf.unset("RUMP_SERVER")


def check_entries(atf, cli, srv, addr_prefix):
    ll_srv = atf.get_linklocal_addr(srv, "shmif0")
    mac_srv = atf.get_macaddr(srv, "shmif0")
    atf.export(RUMP_SERVER=cli)
    atf.check("-s exit:0 -o match:if=shmif0 rump.ndp -r")
    atf.check("-s exit:0 -o match:advertised rump.ndp -p")
    atf.check(f"-s exit:0 -o 'match:{re.escape(ll_srv)}%shmif0 \\(reachable\\)' rump.ndp -p")
    atf.check("-s exit:0 -o match:linkmtu=1300 rump.ndp -n -i shmif0")
    atf.check(f"-s exit:0 -o 'match:{re.escape(ll_srv)}%shmif0 +{mac_srv} +shmif0 +(23h59m|1d0h0m)..s S R' "
              "rump.ndp -n -a")
    atf.check(f"-s exit:0 -o match:{addr_prefix} rump.ndp -n -a")
    atf.check(f"-s exit:0 -o match:{addr_prefix} rump.ifconfig shmif0 inet6")
    atf.unset("RUMP_SERVER")


def start_routers(atf, *routers):
    for sock, _addr, _pidfile in routers:
        atf.rump_server_start(sock, "netinet6")
    atf.rump_server_start(RUMPCLI, "netinet6")
    for sock, addr, _pidfile in routers:
        setup_shmif0(atf, sock, addr)
    setup_shmif0(atf, RUMPCLI, IP6CLI)
    for sock, _addr, _pidfile in routers:
        init_server(atf, sock)
    create_rtadvdconfig(atf)
    atf.export(RUMP_SERVER=RUMPCLI)
    atf.check("-s exit:0 -o 'match:0.->.1' rump.sysctl -w net.inet6.ip6.accept_rtadv=1")
    atf.unset("RUMP_SERVER")
    for sock, _addr, pidfile in routers:
        start_rtadvd(atf, sock, pidfile)


def stop_all(atf, *pidfiles):
    for pidfile in pidfiles:
        if os.path.exists(atf.path(pidfile)):
            kill_rtadvd(atf, pidfile)
            wait_term(atf, pidfile)


def test_ra_basic(atf):
    try:
        atf.rump_server_start(RUMPSRV, "netinet6")
        atf.rump_server_start(RUMPCLI, "netinet6")
        setup_shmif0(atf, RUMPSRV, IP6SRV)
        init_server(atf, RUMPSRV)
        setup_shmif0(atf, RUMPCLI, IP6CLI)
        atf.export(RUMP_SERVER=RUMPCLI)
        atf.check("-s exit:0 -o 'match:= 0' rump.sysctl net.inet6.ip6.accept_rtadv")
        atf.unset("RUMP_SERVER")

        create_rtadvdconfig(atf)
        start_rtadvd(atf, RUMPSRV, PIDFILE)
        # accept_rtadv=0: the advertisements change nothing
        atf.export(RUMP_SERVER=RUMPCLI)
        atf.check("-s exit:0 -o empty rump.ndp -r")
        atf.check("-s exit:0 -o not-match:advertised rump.ndp -p")
        atf.check("-s exit:0 -o match:linkmtu=0 rump.ndp -n -i shmif0")
        atf.check("-s exit:0 -o 'not-match:S R' rump.ndp -n -a")
        atf.check("-s exit:0 -o not-match:fc00:1: rump.ndp -n -a")
        atf.check("-s exit:0 -o not-match:fc00:1: rump.ifconfig shmif0 inet6")
        atf.unset("RUMP_SERVER")

        kill_rtadvd(atf, PIDFILE)
        wait_term(atf, PIDFILE)

        atf.export(RUMP_SERVER=RUMPCLI)
        atf.check("-s exit:0 -o 'match:0.->.1' rump.sysctl -w net.inet6.ip6.accept_rtadv=1")
        atf.unset("RUMP_SERVER")
        start_rtadvd(atf, RUMPSRV, PIDFILE)
        check_entries(atf, RUMPCLI, RUMPSRV, IP6SRV_PREFIX)
        kill_rtadvd(atf, PIDFILE)
        wait_term(atf, PIDFILE)
        atf.rump_server_destroy_ifaces()
    finally:
        stop_all(atf, PIDFILE)


def flush_after_kill(atf, flag, checks):
    """Routers up and learned, the daemon killed (no new advertisements), ``ndp FLAG``,
    then ``checks`` (atf_check lines) on the host."""
    try:
        start_routers(atf, (RUMPSRV, IP6SRV, PIDFILE))
        check_entries(atf, RUMPCLI, RUMPSRV, IP6SRV_PREFIX)
        atf.export(RUMP_SERVER=RUMPCLI)
        # Terminate rtadvd to prevent new RA messages from coming
        kill_rtadvd(atf, PIDFILE, signal.SIGKILL)
        atf.check(f"-s exit:0 rump.ndp {flag}")
        for line in checks:
            atf.check(line)
        atf.check("-s exit:0 -o match:linkmtu=1300 rump.ndp -n -i shmif0")
        atf.check("-s exit:0 -o 'match:(23h59m|1d0h0m)..s S R' rump.ndp -n -a")
        atf.unset("RUMP_SERVER")
        atf.rump_server_destroy_ifaces()
    finally:
        os.unlink(atf.path(PIDFILE)) if os.path.exists(atf.path(PIDFILE)) else None


def test_ra_flush_prefix_entries(atf):
    # Flush all the entries in the prefix list
    flush_after_kill(atf, "-P", ["-s exit:0 -o match:if=shmif0 rump.ndp -r",
                                 "-s exit:0 -o empty rump.ndp -p",
                                 "-s exit:0 -o not-match:fc00:1: rump.ndp -n -a",   # NetBSD 7: match (see above)
                                 "-s exit:0 -o not-match:fc00:1: rump.ifconfig shmif0 inet6"])


def test_ra_flush_defrouter_entries(atf):
    # Flush all the entries in the default router list
    flush_after_kill(atf, "-R", ["-s exit:0 -o empty rump.ndp -r",
                                 "-s exit:0 -o 'match:No advertising router' rump.ndp -p",
                                 "-s exit:0 -o match:fc00:1: rump.ndp -n -a",
                                 "-s exit:0 -o match:fc00:1: rump.ifconfig shmif0 inet6"])


def test_ra_delete_address(atf):
    try:
        start_routers(atf, (RUMPSRV, IP6SRV, PIDFILE))
        check_entries(atf, RUMPCLI, RUMPSRV, IP6SRV_PREFIX)
        # The router stops first (the script kills it after the delete): the next
        # advertisement would autoconfigure the address again (RFC 4862 5.5.3 e), and
        # the check that it is gone would race with it.
        kill_rtadvd(atf, PIDFILE, signal.SIGKILL)
        atf.export(RUMP_SERVER=RUMPCLI)
        out = atf.run("rump.ifconfig shmif0").stdout
        autoconf = [line.split()[1] for line in out.splitlines() if "autoconf" in line]
        assert len(autoconf) == 1, out
        atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {autoconf[0]} delete")
        atf.check(f"-s exit:0 -o not-match:{autoconf[0].split('%')[0]} rump.ifconfig shmif0 inet6")
        atf.unset("RUMP_SERVER")
        atf.rump_server_destroy_ifaces()
    finally:
        os.unlink(atf.path(PIDFILE)) if os.path.exists(atf.path(PIDFILE)) else None


def test_ra_multiple_routers(atf):
    try:
        start_routers(atf, (RUMPSRV, IP6SRV, PIDFILE), (RUMPSRV3, IP6SRV3, PIDFILE3))
        check_entries(atf, RUMPCLI, RUMPSRV, IP6SRV_PREFIX)
        check_entries(atf, RUMPCLI, RUMPSRV3, IP6SRV3_PREFIX)
        kill_rtadvd(atf, PIDFILE)
        wait_term(atf, PIDFILE)
        kill_rtadvd(atf, PIDFILE3)
        wait_term(atf, PIDFILE3)
        atf.rump_server_destroy_ifaces()
    finally:
        stop_all(atf, PIDFILE, PIDFILE3)
