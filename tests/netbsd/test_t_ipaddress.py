"""Port of NetBSD's tests/net/net/t_ipaddress.sh, ipaddr_same_address: assigning,
deleting and assigning again the same IPv4 address; the local (UHl, lo0) and connected
(UC, shmif0) routes come and go with it. (same_address6 and auto_linklocal need inet6.)
"""

from __future__ import annotations

SERVER = "rump_server -lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif -lrumpdev"
SOCK_LOCAL = "unix://commsock1"
BUS = "bus"


class GatewayNameDiffers(AssertionError):
    """Only the ``link#2`` gateway checks failed."""


def check_entry(atf, ip, word, soft=None):
    ip = ip.replace(".", "\\.")
    line = f"-s exit:0 -o 'match:{word}' -e ignore -x \"rump.netstat -rn | grep ^'{ip}'\""
    if soft is None:
        atf.check(line)
        return
    try:
        atf.check(line)
    except AssertionError as e:
        soft.append(str(e).splitlines()[0] + " ... " + " | ".join(str(e).splitlines()[-3:]))


def check_entry_fail(atf, ip):
    ip = ip.replace(".", "\\.")
    atf.check(f"-s not-exit:0 -e ignore -x \"rump.netstat -rn | grep ^'{ip}'\"")


def test_ipaddr_same_address(atf):
    ip = "10.0.0.1"
    net = "10.0.0/24"
    atf.check(f"-s exit:0 {SERVER} {SOCK_LOCAL}")
    atf.export(RUMP_SERVER=SOCK_LOCAL)

    atf.check("-s exit:0 -o ignore rump.ifconfig shmif0 create")
    atf.check(f"-s exit:0 -o ignore rump.ifconfig shmif0 linkstr {BUS}")
    for round_ in range(2):
        # (first round: assign; second: assign the same address again)
        atf.check(f"-s exit:0 -o ignore rump.ifconfig shmif0 {ip}/24")
        if round_ == 0:
            atf.check("-s exit:0 -o ignore rump.ifconfig shmif0 up")
        atf.check("-s exit:0 -o ignore rump.ifconfig -w 10")

        check_entry(atf, ip, "UHl")
        check_entry(atf, ip, "lo0")
        check_entry(atf, ip, "link#2")
        check_entry(atf, net, "UC")
        check_entry(atf, net, "shmif0")
        check_entry(atf, net, "link#2")

        # Delete the address
        atf.check(f"-s exit:0 -o ignore rump.ifconfig shmif0 {ip} delete")
        check_entry_fail(atf, ip)
        check_entry_fail(atf, net)


