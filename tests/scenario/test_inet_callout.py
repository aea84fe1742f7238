"""The inet domains' timed behaviour between kernels on virtual time, through each one's
timer (``Inet.callout``, ``Inet6Domain.callout``): the ICMP error rate limit per second,
ARP expiry and PMTU aging, IPv6's TCP retransmissions."""

from __future__ import annotations

import errno
import fcntl
import math
import os
import socket

import pytest

from rumpnet.netinet.in_addr import aton
from rumpnet.testing.families import INET6
from rumpnet.testing.vnet import VNet

ICMP_UNREACH = 3
A = aton("10.0.0.1")
FAR = aton("192.0.2.7")


def test_icmp_errors_limited_per_second_on_virtual_time(vnet: VNet) -> None:
    """net.inet.icmp.errppslimit (NetBSD's icmperrppslim, RFC 1812 4.3.2.8): at most that
    many errors in one second of the kernel clock; the rest are counted in icps_toofreq,
    and the next second allows as many again."""
    a, b = vnet.pair()
    b.config.sysctl_set("net.inet.icmp.errppslimit", 3)
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_sendto(fd, b"x", 0, ("10.0.0.2", 9))  # ARP resolved, one error sent
    a.run_for(0.1)
    # Start the burst just after a second boundary, so all of it falls in one second.
    a.run_for(math.ceil(a.sched.now()) - a.sched.now() + 0.01)
    base_out = b.inet.icmpstat.icps_outhist[ICMP_UNREACH]
    for _ in range(10):
        a.rump_sys_sendto(fd, b"x", 0, ("10.0.0.2", 9))
    a.run_for(0.1)
    st = b.inet.icmpstat
    assert b.inet.udpstat.udps_noport >= 11
    assert st.icps_outhist[ICMP_UNREACH] - base_out == 3 and st.icps_toofreq == 7
    a.run_for(1.0)  # a new second
    for _ in range(5):
        a.rump_sys_sendto(fd, b"x", 0, ("10.0.0.2", 9))
    a.run_for(0.1)
    assert st.icps_outhist[ICMP_UNREACH] - base_out == 6 and st.icps_toofreq == 9


def test_arp_expiry_and_pmtu_aging_each_at_their_time(vnet: VNet) -> None:
    """A learned ARP entry (net.inet.arp.keep) and a learned path MTU
    (net.inet.ip.mtudisctimeout) on one kernel each end at their own time, both from the
    domain's one timer (reassembly's: tests/scenario/test_ipv4_reass.py)."""
    a, b = vnet.pair()
    b.config.sysctl_set("net.inet.arp.keep", 50)
    b.config.sysctl_set("net.inet.ip.mtudisctimeout", 70)
    b.config.route_add("default", "10.0.0.1")
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    t0 = b.sched.now()
    a.rump_sys_sendto(fd, b"x", 0, ("10.0.0.2", 9))
    a.run_for(0.1)
    inet = b.inet
    assert inet.arp.lookup(A) is not None  # learned from a's request
    assert inet.icmp.mtudisc(FAR, 1280, 0, b.sched.now()) == 1280
    b.run_for(t0 + 49.9 - b.sched.now())
    assert inet.arp.lookup(A) is not None and inet.routes.exact(FAR, 32) is not None
    b.run_for(0.5)
    assert inet.arp.lookup(A) is None  # keep ran out 50 s after it was learned
    assert inet.routes.exact(FAR, 32) is not None
    b.run_for(t0 + 69.9 - b.sched.now())
    assert inet.routes.exact(FAR, 32) is not None
    b.run_for(0.5)
    assert inet.routes.exact(FAR, 32) is None  # the learned MTU aged out


def test_halted_kernel_keeps_no_inet_timer(vnet: VNet) -> None:
    """A halted kernel's domain timer is stopped: an ARP request waiting for its retry
    is not sent again while the other kernels on the scheduler run on."""
    a, b = vnet.pair()
    fd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    inet = b.inet
    sent = inet.arpstat.as_sndrequest  # the gratuitous ARP at configuration
    b.rump_sys_sendto(fd, b"x", 0, ("10.0.0.77", 9))  # nobody answers: retried each second
    assert inet.arpstat.as_sndrequest == sent + 1 and inet.callout.callout.when is not None
    b.halt()
    assert inet.callout.callout.when is None
    a.run_for(5.0)
    assert inet.arpstat.as_sndrequest == sent + 1


def test_tcp6_retransmits_from_the_inet6_domain_timer(vnet: VNet) -> None:
    """IPv6's TCP arms the inet6 domain's one timer (``Inet6Domain.callout``, issue 14
    part 3), as IPv4's arms ``Inet.callout``: a SYN nobody answers is sent again at each
    retransmission timeout (RFC 6298 5.5) from that timer, and a halted kernel's timer is
    stopped, so no more SYNs leave while the other kernel runs on."""
    a, b = INET6.pair(vnet)
    inet6 = a.inet6
    tcp6 = INET6.tcp(a)
    fd = a.rump_sys_socket(socket.AF_INET6, socket.SOCK_STREAM, 0)
    a.rump_sys_fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
    with pytest.raises(OSError) as exc:
        a.rump_sys_connect(fd, (INET6.nowhere, 9, 0, 0))   # nobody has fc00::9: no answer
    assert exc.value.errno == errno.EINPROGRESS
    rto = tcp6.proto.get_timer()
    assert rto is not None and inet6.callout.callout.when is not None
    assert inet6.callout.callout.when <= rto and inet6.callout.get_timer() <= rto
    timeouts = tcp6.stats.tcps_rexmttimeo
    a.run_for(rto - a.sched.now() + 0.01)
    assert tcp6.stats.tcps_rexmttimeo == timeouts + 1
    a.run_for(8.0)
    fired = tcp6.stats.tcps_rexmttimeo
    assert fired >= timeouts + 3
    a.halt()
    assert inet6.callout.callout.when is None
    b.run_for(60.0)
    assert tcp6.stats.tcps_rexmttimeo == fired


def test_ipv6_path_mtu_ages_out_from_the_inet6_domain_timer(vnet: VNet) -> None:
    """A learned IPv6 path MTU (RFC 8201 4: try a larger one again after a while) leaves
    the table at ``net.inet6.ip6.mtudisctimeout`` through the domain's one timer, with no
    traffic or call into the domain to notice it; a halted kernel's table stays as it was."""
    a, b = INET6.pair(vnet)
    a.config.sysctl_set("net.inet6.ip6.mtudisctimeout", 30)
    inet6 = a.inet6
    pmtu = inet6.node.icmp6.pmtu
    far = 0xFC00_0000_0000_0000_0000_0000_0000_0077
    t0 = a.sched.now()
    assert pmtu.update(far, 1300, t0, True, 1500)
    inet6.settle(t0)                     # arms the domain's timer by the entry's end
    when = inet6.callout.callout.when
    assert when is not None and when <= t0 + 30 and pmtu.earliest() == t0 + 30
    a.run_for(29.9)
    assert far in pmtu.entries
    a.run_for(0.2)
    assert far not in pmtu.entries       # aged by the timer alone
    assert pmtu.update(far, 1300, a.sched.now(), True, 1500)
    inet6.settle()
    a.halt()
    b.run_for(60.0)
    assert far in pmtu.entries           # no timer of a halted kernel fires
