"""Port of NetBSD's tests/net/if/t_ifconfig.sh: ifconfig_create_destroy (interfaces
created and destroyed without an address, with one, and while up; the IPv6 step is
left out, rumpnet has no inet6) and the IPv4 part of ifconfig_parameters (link address
``active``, down/up with pings, alias/-alias, delete, netmask, broadcast, metric).
"""

from __future__ import annotations

RUMP_SERVER1 = "unix://./r1"
RUMP_SERVER2 = "unix://./r2"
# NetBSD's RUMP_FLAGS also load -lrumpnet_netinet6, a component rumpnet does not have
# (rump_server refuses unknown components), so it is left out.
RUMP_FLAGS = "-lrumpnet -lrumpnet_net -lrumpnet_netinet -lrumpnet_shmif -lrumpdev"
TIMEOUT = 3


def test_ifconfig_create_destroy(atf):
    """ifconfig_create_destroy (IPv4)."""
    atf.check(f"-s exit:0 rump_server {RUMP_FLAGS} {RUMP_SERVER1}")
    atf.export(RUMP_SERVER=RUMP_SERVER1)

    # Create and destroy (no address)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 destroy")

    # Create and destroy (with an IPv4 address)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr shmbus")
    atf.check("-s exit:0 rump.ifconfig shmif0 192.168.0.1/24")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig shmif0 destroy")

    # (not in NetBSD's script) the interface, its address and its routes are gone,
    # and the name can be created again
    atf.check("-s not-exit:0 -e 'match:Device not configured' rump.ifconfig shmif0")
    atf.check("-s exit:0 -o not-match:shmif0 -o not-match:192.168.0 rump.netstat -nr -f inet")
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 -o not-match:192.168.0.1 rump.ifconfig shmif0")
    atf.check("-s exit:0 rump.ifconfig shmif0 destroy")
    atf.unset("RUMP_SERVER")


def test_ifconfig_parameters(atf):
    """ifconfig_parameters (the IPv4 steps)."""
    atf.check(f"-s exit:0 rump_server {RUMP_FLAGS} {RUMP_SERVER1}")
    atf.check(f"-s exit:0 rump_server {RUMP_FLAGS} {RUMP_SERVER2}")

    atf.export(RUMP_SERVER=RUMP_SERVER1)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr shmbus")
    atf.check("-s exit:0 rump.ifconfig shmif0 192.168.0.1/24")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")

    atf.export(RUMP_SERVER=RUMP_SERVER2)
    atf.check("-s exit:0 rump.ifconfig shmif0 create")
    atf.check("-s exit:0 rump.ifconfig shmif0 linkstr shmbus")
    atf.check("-s exit:0 rump.ifconfig shmif0 192.168.0.2/24")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.0.3/24 alias")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")

    atf.export(RUMP_SERVER=RUMP_SERVER1)
    # active
    atf.check("-s exit:0 rump.ifconfig shmif0 link b2:a0:75:00:00:01 active")
    atf.check("-s exit:0 -o 'match:address:.b2:a0:75:00:00:01' rump.ifconfig shmif0")
    # down, up
    atf.check("-s exit:0 rump.ifconfig shmif0 down")
    atf.check("-s not-exit:0 -o ignore -e ignore rump.ping -c 1 -w 1 -n 192.168.0.2")
    atf.check("-s exit:0 rump.ifconfig shmif0 up")
    atf.check("-s exit:0 rump.ifconfig -w 10")
    atf.check(f"-s exit:0 -o ignore rump.ping -c 1 -w {TIMEOUT} -n 192.168.0.2")

    # alias
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.1.1/24 alias")
    atf.check("-s exit:0 -o match:192.168.1.1/24 rump.ifconfig shmif0")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.1.1/24 -alias")
    atf.check("-s exit:0 -o not-match:192.168.1.1/24 rump.ifconfig shmif0")

    # delete
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.1.1 alias")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.1.1 delete")
    atf.check("-s exit:0 -o not-match:192.168.1.1 rump.ifconfig shmif0 inet")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.0.1 delete")
    atf.check("-s exit:0 -o not-match:192.168.0.1 rump.ifconfig shmif0 inet")

    atf.check("-s exit:0 rump.ifconfig shmif0 inet 192.168.0.1/24")

    # netmask
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 172.16.0.1 netmask 255.255.255.0 alias")
    atf.check("-s exit:0 -o match:172.16.0/24 rump.netstat -rn -f inet")
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 172.16.0.1 delete")

    # broadcast (does it not work?)
    atf.check("-s exit:0 rump.ifconfig shmif0 inet 172.16.0.1 broadcast 255.255.255.255 alias")
    atf.check("-s exit:0 -o 'match:broadcast 255.255.255.255' rump.ifconfig shmif0 inet")

    # metric (external only)
    atf.check("-s exit:0 rump.ifconfig shmif0 metric 10")
    atf.check("-s exit:0 rump.ifconfig shmif0 metric 0")
    atf.unset("RUMP_SERVER")
