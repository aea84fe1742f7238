"""Port of NetBSD's tests/net/ndp/t_ndp.sh (test cases ``command`` and
``cache_overwriting``) and of tests/net/ndp/t_dad.sh (``dad_basic``, ``dad_duplicated``,
``dad_count``): rump_servers with netinet6 on a shmif bus, ndp(8) and ifconfig -w.

NetBSD's scripts ping6 through librumphijack (``LD_PRELOAD=... ping6``); ``rump.ping6``
does the same here. t_ndp's ``cache_expiration`` sleeps through a random ReachableTime
(up to 46 real seconds) and is not ported: test_cmd_inet6.py's
test_ndp_entry_ages_to_stale_with_the_gc_timer checks the same ``23h59m`` on virtual time.
"""

from __future__ import annotations

inetserver = "rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_netinet6 -lrumpnet_shmif -lrumpdev"
SOCKSRC = "unix://commsock1"
SOCKDST = "unix://commsock2"
IP6SRC = "fc00::1"
IP6DST = "fc00::2"
TIMEOUT = 1
DUPLICATED = "[Dd][Uu][Pp][Ll][Ii][Cc][Aa][Tt][Ee][Dd]"


def setup_server(atf, sock, ip):
    atf.export(RUMP_SERVER=sock)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus1")
    atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {ip}")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")


def setup_ndp(atf):
    atf.check(f"-s exit:0 {inetserver} {SOCKSRC}")
    atf.check(f"-s exit:0 {inetserver} {SOCKDST}")
    setup_server(atf, SOCKDST, IP6DST)
    setup_server(atf, SOCKSRC, IP6SRC)
    # setup_src_server's sanity check
    atf.check(f"-s exit:0 -o ignore rump.ndp -n {IP6SRC}")
    atf.check(f"-s not-exit:0 -o ignore -e ignore rump.ndp -n {IP6DST}")


def test_ndp_command(atf):
    setup_ndp(atf)
    # Not in NetBSD's script: it flushes the cache (ndp -c) and expects IP6DST gone within
    # DELAY_FIRST_PROBE_TIME (5 s) of the ping. Past that, DST's unicast NUD probe of SRC
    # (its entry went DELAY when it replied) re-creates the entry on SRC (RFC 4861
    # 7.2.3), and our commands, a Python start each, can take that long on a loaded
    # machine. A longer delay on DST keeps the check independent of speed.
    atf.export(RUMP_SERVER=SOCKDST)
    atf.check("-s exit:0 -o ignore rump.sysctl -w net.inet6.icmp6.nd6_delay=120")
    atf.export(RUMP_SERVER=SOCKSRC)
    # Add and delete a static entry
    atf.check("-s exit:0 -o ignore rump.ndp -s fc00::10 b2:a0:20:00:00:10")
    atf.check("-s exit:0 -o match:permanent rump.ndp -n fc00::10")
    atf.check("-s exit:0 -o match:deleted rump.ndp -d fc00::10")
    atf.check("-s not-exit:0 -o ignore -e ignore rump.ndp -n fc00::10")
    atf.check(f"-s exit:0 -o ignore rump.ping6 -n -X {TIMEOUT} -c 1 {IP6DST}")
    atf.check("-s exit:0 -o ignore rump.ndp -s fc00::11 b2:a0:20:00:00:11")
    atf.check("-s exit:0 -o ignore rump.ndp -s fc00::12 b2:a0:20:00:00:12")
    atf.check(f"-s exit:0 -o not-match:permanent rump.ndp -n {IP6DST}")
    atf.check("-s exit:0 -o match:permanent rump.ndp -n fc00::11")
    atf.check("-s exit:0 -o match:permanent rump.ndp -n fc00::12")
    # ndp -a
    atf.check("-s exit:0 -o match:fc00::11 rump.ndp -n -a")
    atf.check("-s exit:0 -o match:fc00::12 rump.ndp -n -a")
    # Flush all entries (-c): only the static ones stay
    atf.check("-s exit:0 -o ignore rump.ndp -c")
    atf.check(f"-s not-exit:0 -o ignore -e ignore rump.ndp -n {IP6DST}")
    atf.check("-s exit:0 -o ignore -e ignore rump.ndp -n fc00::11")
    atf.check("-s exit:0 -o ignore -e ignore rump.ndp -n fc00::12")
    # temp (NetBSD: "XXX it doesn't work"; here it makes a dynamic entry)
    atf.check("-s exit:0 -o ignore rump.ndp -s fc00::10 b2:a0:20:00:00:10 temp")
    atf.check("-s exit:0 -o not-match:permanent rump.ndp -n fc00::10")


def test_ndp_cache_overwriting(atf):
    setup_ndp(atf)
    atf.export(RUMP_SERVER=SOCKSRC)
    # Cannot overwrite a permanent cache
    atf.check(f"-s not-exit:0 -e ignore rump.ndp -s {IP6SRC} b2:a0:20:00:00:ff")
    atf.check(f"-s exit:0 -o ignore rump.ping6 -n -X {TIMEOUT} -c 1 {IP6DST}")
    # Can overwrite a dynamic cache
    atf.check(f"-s exit:0 -o ignore rump.ndp -s {IP6DST} b2:a0:20:00:00:00")
    atf.check(f"-s exit:0 -o match:permanent rump.ndp -n {IP6DST}")


def ns_pkt(ident, target):
    """t_dad.sh's make_ns_pkt_str: tcpdump's line for a DAD probe of ``target``. Our
    probes carry an RFC 7527 nonce option, 8 bytes more than the script's (86 and 32
    where it has 78 and 24)."""
    return (f"33:33:ff:00:00:0{ident}, ethertype IPv6 (0x86dd), length 86: :: > ff02::1:ff00:{ident}: "
            f"ICMP6, neighbor solicitation, who has {target}, length 32")


def test_dad_basic(atf):
    atf.check(f"-s exit:0 {inetserver} {SOCKSRC}")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus1")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet6 fc00::1")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet6 fc00::2")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    out = atf.run("rump.ifconfig shmif0").stdout
    # The primary address doesn't start with tentative state
    assert not any("fc00::1 " in ln and "tentative" in ln for ln in out.splitlines()), out
    atf.check("-s exit:0 sleep 2")
    pkts = atf.extract_new_packets("bus1")
    # DAD probes for the alias address, none for the primary one
    assert ns_pkt(2, "fc00::2") in pkts, pkts
    assert ns_pkt(1, "fc00::1") not in pkts, pkts
    atf.check("-s exit:0 rump.ifconfig -w 10")
    atf.extract_new_packets("bus1")
    atf.check("-s not-exit:0 -x 'rump.ifconfig shmif0 |grep fc00::2 |grep -q tentative'")
    # A new address on the fly
    atf.check("-s exit:0 rump.ifconfig shmif0 inet6 fc00::3")
    atf.check("-s exit:0 sleep 2")
    assert ns_pkt(3, "fc00::3") in atf.extract_new_packets("bus1")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    atf.check("-s not-exit:0 -x 'rump.ifconfig shmif0 |grep fc00::3 |grep -q tentative'")


def test_dad_duplicated(atf):
    atf.check(f"-s exit:0 {inetserver} {SOCKSRC}")
    atf.check(f"-s exit:0 {inetserver} {SOCKDST}")
    setup_server(atf, SOCKSRC, "fc00::1")
    setup_server(atf, SOCKDST, "fc00::2")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check(f"-s exit:0 -o 'not-match:fc00::1.+{DUPLICATED}' rump.ifconfig shmif0")
    # A new address that the peer has: duplicated
    atf.check("-s exit:0 rump.ifconfig shmif0 inet6 fc00::2")
    atf.check("-s exit:0 sleep 1")
    atf.check(f"-s exit:0 -o 'match:fc00::2.+{DUPLICATED}' rump.ifconfig shmif0")
    # A unique one is not
    atf.check("-s exit:0 rump.ifconfig shmif0 inet6 fc00::11")
    atf.check("-s exit:0 sleep 1")
    atf.check(f"-s exit:0 -o 'not-match:fc00::11.+{DUPLICATED}' rump.ifconfig shmif0")


def test_dad_count(atf):
    atf.check(f"-s exit:0 {inetserver} {SOCKSRC}")
    atf.export(RUMP_SERVER=SOCKSRC)
    atf.check("-s exit:0 -o match:1 rump.sysctl -n net.inet6.ip6.dad_count")
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr bus1")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 sleep 2")
    for count, ident, target in ((1, 1, "fc00::1"), (8, 2, "fc00::2")):
        atf.check(f"-s exit:0 rump.sysctl -w -q net.inet6.ip6.dad_count={count}")
        atf.check(f"-s exit:0 rump.ifconfig shmif0 inet6 {target}")
        atf.check("-s exit:0 rump.ifconfig -w 20")
        atf.check("-s exit:0 sleep 2")
        pkts = atf.extract_new_packets("bus1")
        assert pkts.count(ns_pkt(ident, target)) == count, pkts
