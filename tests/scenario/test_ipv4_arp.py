"""ARP: learning, expiry on virtual time, static and published entries, the hold queue,
and giving up after maxtries."""

from __future__ import annotations

import errno
import socket
import struct

import pytest

from rumpnet.netconfig import format_mac
from rumpnet.netinet.if_arp import LLE_DOWN, LLE_INCOMPLETE, LLE_VALID
from rumpnet.netinet.in_addr import aton


def _entry(k, ip: str):
    for e in k.config.arp_entries():
        if e.ip == aton(ip):
            return e
    return None


def k_entries(k):
    return [(e.ip, e.state) for e in k.config.arp_entries()]


def test_learned_entry_and_expiry(vnet) -> None:
    a, b = vnet.pair()
    a.run_for(1)  # b's gratuitous ARP (sent when a was already on the wire) arrives ...
    assert a.inet.arpstat.as_rcvrequest == 1
    assert k_entries(a) == [] and k_entries(b) == []  # ... and teaches nothing (RFC 5227 3)
    a.config.sysctl_set("net.inet.arp.keep", 60)
    assert vnet.ping(a, "10.0.0.2") is not None
    e = _entry(a, "10.0.0.2")
    assert e is not None and e.state == LLE_VALID and not e.static
    assert e.mac == b.ifnet.lookup("wire0").lladdr
    # b learned a from a's request for b's address
    assert _entry(b, "10.0.0.1") is not None
    a.run_for(59)
    assert _entry(a, "10.0.0.2") is not None
    a.run_for(2)
    assert _entry(a, "10.0.0.2") is None
    # traffic learns it again
    assert vnet.ping(a, "10.0.0.2") is not None
    assert _entry(a, "10.0.0.2") is not None


def test_static_entry_never_expires(vnet) -> None:
    a, b = vnet.pair()
    a.config.sysctl_set("net.inet.arp.keep", 10)
    bmac = format_mac(b.ifnet.lookup("wire0").lladdr)
    e = a.config.arp_add("10.0.0.2", bmac)
    assert e.static and e.state == LLE_VALID
    with pytest.raises(OSError) as ei:
        a.config.arp_add("10.0.0.2", bmac)
    assert ei.value.errno == errno.EEXIST
    with pytest.raises(OSError) as ei:
        a.config.arp_add("192.168.77.1", bmac)  # not on a connected network
    assert ei.value.errno == errno.ENETUNREACH
    reqs = a.inet.arpstat.as_sndrequest
    assert vnet.ping(a, "10.0.0.2") is not None
    assert a.inet.arpstat.as_sndrequest == reqs  # no resolution needed
    a.run_for(1000)
    e = _entry(a, "10.0.0.2")
    assert e is not None and e.static and e.mac == b.ifnet.lookup("wire0").lladdr
    # an ARP reply with another MAC does not move a static entry
    forged = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 2, b"\x02\x99\x99\x99\x99\x99",
                         socket.inet_aton("10.0.0.2"), a.ifnet.lookup("wire0").lladdr,
                         socket.inet_aton("10.0.0.1"))
    ifp = a.ifnet.lookup("wire0")
    frame = ifp.lladdr + b"\x02\x99\x99\x99\x99\x99" + b"\x08\x06" + forged
    a.sched.run(lambda: ifp.link_deliver(frame))
    assert a.inet.arpstat.as_rcvoverperm == 1
    assert _entry(a, "10.0.0.2").mac == b.ifnet.lookup("wire0").lladdr
    # temp entries do expire
    a.config.arp_add("10.0.0.50", "02:00:00:00:00:50", temp=True)
    assert not _entry(a, "10.0.0.50").static
    a.run_for(11)
    assert _entry(a, "10.0.0.50") is None
    a.config.arp_delete("10.0.0.2")
    assert _entry(a, "10.0.0.2") is None


def test_published_entry_answers_for_another_host(vnet) -> None:
    a, b = vnet.pair()
    amac = a.ifnet.lookup("wire0").lladdr
    e = a.config.arp_add("10.0.0.9", format_mac(amac), pub=True)
    assert e.published
    replies = a.inet.arpstat.as_sndreply
    # b wants 10.0.0.9 (nobody has it): a answers with the published MAC
    fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_sendto(fd, b"to the proxy", 0, ("10.0.0.9", 9))
    b.run_for(1)
    be = _entry(b, "10.0.0.9")
    assert be is not None and be.state == LLE_VALID and be.mac == amac
    assert a.inet.arpstat.as_sndreply == replies + 1
    # and the queued datagram went out to a (which does not forward it)
    assert a.inet.ipstat.ips_cantforward >= 1
    # a published entry for a foreign address with another MAC (proxy ARP proper)
    a.config.arp_add("10.0.0.10", "02:11:22:33:44:55", pub=True)
    b.rump_sys_sendto(fd, b"x", 0, ("10.0.0.10", 9))
    b.run_for(1)
    assert _entry(b, "10.0.0.10").mac == bytes.fromhex("021122334455")


def test_packets_queued_while_resolving_are_sent(vnet) -> None:
    a, b = vnet.pair()
    rx = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(rx, ("0.0.0.0", 5000))
    tx = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    for i in range(3):
        a.rump_sys_sendto(tx, b"msg%d" % i, 0, ("10.0.0.2", 5000))
    e = _entry(a, "10.0.0.2")
    assert e is not None and e.state == LLE_INCOMPLETE and len(e.hold) == 3
    got = [b.rump_sys_recvfrom(rx, 100, 0)[0] for _ in range(3)]
    assert got == [b"msg0", b"msg1", b"msg2"]
    st = a.inet.arpstat
    assert st.as_dfrtotal == 3 and st.as_dfrsent == 3 and st.as_dfrdropped == 0
    assert _entry(a, "10.0.0.2").state == LLE_VALID


def test_hold_queue_is_bounded(vnet) -> None:
    a, b = vnet.pair()
    a.config.sysctl_set("net.inet.arp.maxhold", 2)
    rx = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(rx, ("0.0.0.0", 5000))
    tx = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    for i in range(4):
        a.rump_sys_sendto(tx, b"m%d" % i, 0, ("10.0.0.2", 5000))
    b.run_for(1)
    b.rump_sys_setsockopt(rx, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1.0)
    got = []
    with pytest.raises(OSError):
        while True:
            got.append(b.rump_sys_recvfrom(rx, 100, 0)[0])
    assert got == [b"m2", b"m3"]  # the oldest were dropped
    assert a.inet.arpstat.as_dfrdropped == 2


def test_unanswered_resolution_gives_up(vnet) -> None:
    a, b = vnet.pair()
    a.config.sysctl_set("net.inet.arp.maxtries", 3)
    a.config.sysctl_set("net.inet.arp.down", 20)
    st = a.inet.arpstat
    reqs = st.as_sndrequest
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_sendto(fd, b"nobody", 0, ("10.0.0.99", 7))
    a.rump_sys_sendto(fd, b"home", 0, ("10.0.0.99", 7))
    a.run_for(10)
    assert st.as_sndrequest - reqs == 3
    assert st.as_dfrdropped == 2
    e = _entry(a, "10.0.0.99")
    assert e is not None and e.state == LLE_DOWN and e.hold == []
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, b"again", 0, ("10.0.0.99", 7))
    assert ei.value.errno == errno.EHOSTDOWN
    # after net.inet.arp.down seconds the host may be tried again
    a.run_for(20)
    assert _entry(a, "10.0.0.99") is None
    a.rump_sys_sendto(fd, b"again", 0, ("10.0.0.99", 7))
    assert st.as_sndrequest - reqs == 4
