"""UDP between kernels: echo, fragmentation, errors, socket options and system calls."""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import termios

import pytest

from rumpnet.sys_socket import pollfd


def _udp(k, bind: tuple[str, int] | None = None) -> int:
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    if bind is not None:
        k.rump_sys_bind(fd, bind)
    return fd


def test_udp_echo_between_kernels(vnet) -> None:
    a, b = vnet.pair()
    srv = _udp(b, ("0.0.0.0", 7))
    cli = _udp(a)
    assert a.rump_sys_sendto(cli, b"hello", 0, ("10.0.0.2", 7)) == 5
    data, src = b.rump_sys_recvfrom(srv, 1500, 0)
    assert data == b"hello" and src[0] == "10.0.0.1"
    assert 49152 <= src[1] <= 65535
    assert a.rump_sys_getsockname(cli) == ("0.0.0.0", src[1])  # sendto binds the port only
    b.rump_sys_sendto(srv, data.upper(), 0, src)
    data, src2 = a.rump_sys_recvfrom(cli, 1500, 0)
    assert data == b"HELLO" and src2 == ("10.0.0.2", 7)
    # connected socket: send/recv, getpeername
    a.rump_sys_connect(cli, ("10.0.0.2", 7))
    assert a.rump_sys_getpeername(cli) == ("10.0.0.2", 7)
    assert a.rump_sys_getsockname(cli) == ("10.0.0.1", src[1])  # connect picks the source
    a.rump_sys_send(cli, b"again", 0)
    data, src = b.rump_sys_recvfrom(srv, 1500, 0)
    b.rump_sys_sendto(srv, data, 0, src)
    assert a.rump_sys_recv(cli, 1500, 0) == b"again"
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(cli, b"x", 0, ("10.0.0.2", 7))
    assert ei.value.errno == errno.EISCONN
    st = b.inet.udpstat
    assert st.udps_ipackets == 2 and st.udps_opackets == 2


def test_big_datagram_fragmented_and_reassembled(vnet) -> None:
    a, b = vnet.pair()
    srv = _udp(b, ("0.0.0.0", 9000))
    cli = _udp(a)
    payload = os.urandom(5000)
    assert a.ifnet.lookup("wire0").mtu == 1500
    a.rump_sys_sendto(cli, payload, 0, ("10.0.0.2", 9000))
    data, _ = b.rump_sys_recvfrom(srv, 65535, 0)
    assert data == payload
    assert a.inet.ipstat.ips_fragmented == 1 and a.inet.ipstat.ips_ofragments == 4
    assert b.inet.ipstat.ips_fragments == 4 and b.inet.ipstat.ips_reassembled == 1
    # and the biggest UDP datagram there is
    big = os.urandom(65507)
    a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_SNDBUF, 70000)
    a.rump_sys_sendto(cli, big, 0, ("10.0.0.2", 9000))
    assert b.rump_sys_recvfrom(srv, 65535, 0)[0] == big
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(cli, big + b"x", 0, ("10.0.0.2", 9000))
    assert ei.value.errno == errno.EMSGSIZE


def test_port_unreachable_is_econnrefused_on_connected_socket(vnet) -> None:
    a, b = vnet.pair()
    cli = _udp(a)
    a.rump_sys_connect(cli, ("10.0.0.2", 4444))
    a.rump_sys_send(cli, b"anyone?", 0)
    a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recv(cli, 100, 0)
    assert ei.value.errno == errno.ECONNREFUSED
    assert b.inet.udpstat.udps_noport == 1
    assert b.inet.icmpstat.icps_outhist[3] == 1
    # the error is reported once
    with pytest.raises(OSError) as ei:
        a.rump_sys_recv(cli, 100, 0)
    assert ei.value.errno == errno.EAGAIN
    # an unconnected socket is not told
    un = _udp(a)
    a.rump_sys_sendto(un, b"x", 0, ("10.0.0.2", 4444))
    a.rump_sys_setsockopt(un, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1.0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recvfrom(un, 100, 0)
    assert ei.value.errno == errno.EAGAIN
    assert b.inet.udpstat.udps_noport == 2 and a.inet.icmpstat.icps_inhist[3] == 2  # the error came
    # SO_ERROR shows a pending error
    a.rump_sys_send(cli, b"again", 0)
    a.run_for(1)
    assert a.rump_sys_getsockopt(cli, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
    assert a.rump_sys_getsockopt(cli, socket.SOL_SOCKET, socket.SO_ERROR) == 0


def test_broadcast_needs_so_broadcast(vnet) -> None:
    a, b = vnet.pair()
    srv = _udp(b, ("0.0.0.0", 6000))
    cli = _udp(a)
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(cli, b"all", 0, ("255.255.255.255", 6000))
    assert ei.value.errno == errno.EHOSTUNREACH  # as NetBSD: the limited broadcast needs a route
    a.config.route_add("default", "10.0.0.2")
    for dst in ("10.0.0.255", "255.255.255.255"):
        with pytest.raises(OSError) as ei:
            a.rump_sys_sendto(cli, b"all", 0, (dst, 6000))
        assert ei.value.errno == errno.EACCES
    a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    assert a.rump_sys_getsockopt(cli, socket.SOL_SOCKET, socket.SO_BROADCAST) == 1
    a.rump_sys_sendto(cli, b"subnet", 0, ("10.0.0.255", 6000))
    a.rump_sys_sendto(cli, b"limited", 0, ("255.255.255.255", 6000))
    assert b.rump_sys_recvfrom(srv, 100, 0) == (b"subnet", ("10.0.0.1", a.rump_sys_getsockname(cli)[1]))
    assert b.rump_sys_recvfrom(srv, 100, 0)[0] == b"limited"
    # connect() to the limited broadcast means the first interface's broadcast address
    cb = _udp(b)
    b.rump_sys_connect(cb, ("255.255.255.255", 6002))
    assert b.rump_sys_getpeername(cb) == ("10.0.0.255", 6002)
    with pytest.raises(OSError) as ei:
        b.rump_sys_send(cb, b"x", 0)
    assert ei.value.errno == errno.EACCES
    # broadcasts to a port nobody has do not draw ICMP errors
    a.rump_sys_sendto(cli, b"x", 0, ("10.0.0.255", 6001))
    a.run_for(1)
    assert b.inet.udpstat.udps_noportbcast == 1 and b.inet.icmpstat.icps_outhist[3] == 0


def test_bind_errors(vnet) -> None:
    a, b = vnet.pair()
    _udp(a, ("0.0.0.0", 5353))
    s2 = _udp(a)
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(s2, ("0.0.0.0", 5353))
    assert ei.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(s2, ("10.0.0.1", 5353))
    assert ei.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(s2, ("10.0.0.2", 5354))  # b's address, not ours
    assert ei.value.errno == errno.EADDRNOTAVAIL
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(s2, ("192.0.2.1", 0))
    assert ei.value.errno == errno.EADDRNOTAVAIL
    # SO_REUSEADDR lets a specific address share the port with the wildcard
    a.rump_sys_setsockopt(s2, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    a.rump_sys_bind(s2, ("10.0.0.1", 5353))
    with pytest.raises(OSError) as ei:
        a.rump_sys_bind(s2, ("10.0.0.1", 5355))
    assert ei.value.errno == errno.EINVAL  # already bound
    # the more specific socket gets the datagram
    c = _udp(b)
    b.rump_sys_sendto(c, b"specific", 0, ("10.0.0.1", 5353))
    assert a.rump_sys_recvfrom(s2, 100, 0)[0] == b"specific"


def test_port_freed_on_close(vnet) -> None:
    a, _ = vnet.pair()
    s1 = _udp(a, ("0.0.0.0", 7777))
    a.rump_sys_close(s1)
    with pytest.raises(OSError) as ei:
        a.rump_sys_getsockname(s1)
    assert ei.value.errno == errno.EBADF
    s2 = _udp(a, ("0.0.0.0", 7777))
    assert a.rump_sys_getsockname(s2) == ("0.0.0.0", 7777)


def test_peek_dontwait_rcvtimeo_fionread(vnet) -> None:
    a, b = vnet.pair()
    srv = _udp(b, ("0.0.0.0", 8000))
    cli = _udp(a)
    with pytest.raises(OSError) as ei:
        b.rump_sys_recvfrom(srv, 100, socket.MSG_DONTWAIT)
    assert ei.value.errno == errno.EAGAIN
    assert b.rump_sys_ioctl(srv, termios.FIONREAD) == 0
    a.rump_sys_sendto(cli, b"first", 0, ("10.0.0.2", 8000))
    a.rump_sys_sendto(cli, b"second!", 0, ("10.0.0.2", 8000))
    b.run_for(0.5)
    assert b.rump_sys_ioctl(srv, termios.FIONREAD) == len(b"first") + len(b"second!")
    assert b.rump_sys_recvfrom(srv, 100, socket.MSG_PEEK)[0] == b"first"
    assert b.rump_sys_recvfrom(srv, 100, socket.MSG_PEEK)[0] == b"first"
    assert b.rump_sys_recvfrom(srv, 3, 0)[0] == b"fir"  # the rest of a datagram is lost
    assert b.rump_sys_recvfrom(srv, 100, socket.MSG_DONTWAIT)[0] == b"second!"
    assert b.rump_sys_ioctl(srv, termios.FIONREAD) == 0
    # SO_RCVTIMEO: EAGAIN after the timeout, on virtual time
    b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 2, 500000))
    assert b.rump_sys_getsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO) == struct.pack("qq", 2, 500000)
    t0 = b.clock_now()
    with pytest.raises(OSError) as ei:
        b.rump_sys_recvfrom(srv, 100, 0)
    assert ei.value.errno == errno.EAGAIN
    assert b.clock_now() - t0 == pytest.approx(2.5, abs=1e-3)


def test_fcntl_nonblock_and_poll(vnet) -> None:
    a, b = vnet.pair()
    srv = _udp(b, ("0.0.0.0", 8001))
    cli = _udp(a)
    assert b.rump_sys_fcntl(srv, fcntl.F_GETFL) & os.O_NONBLOCK == 0
    assert b.rump_sys_fcntl(srv, fcntl.F_SETFL, os.O_NONBLOCK) == 0
    assert b.rump_sys_fcntl(srv, fcntl.F_GETFL) & os.O_NONBLOCK
    with pytest.raises(OSError) as ei:
        b.rump_sys_recvfrom(srv, 100, 0)
    assert ei.value.errno == errno.EAGAIN
    fds = [pollfd(srv, select.POLLIN), pollfd(cli + 100, select.POLLIN)]
    assert b.rump_sys_poll(fds, 1, 0) == 0 and fds[0].revents == 0
    # poll with a timeout: nothing arrives, times out on virtual time
    t0 = b.clock_now()
    assert b.rump_sys_poll(fds[:1], 1, 1500) == 0
    assert b.clock_now() - t0 == pytest.approx(1.5, abs=1e-3)
    # a datagram on its way wakes the poll up
    a.rump_sys_sendto(cli, b"wake", 0, ("10.0.0.2", 8001))
    t0 = b.clock_now()
    assert b.rump_sys_poll(fds[:1], 1, 10_000) == 1
    assert fds[0].revents & select.POLLIN and b.clock_now() - t0 < 1
    # an fd that is not open is POLLNVAL
    assert b.rump_sys_poll(fds, 2, 0) == 2 and fds[1].revents == select.POLLNVAL
    assert b.rump_sys_recvfrom(srv, 100, 0)[0] == b"wake"
    # POLLOUT is always there for UDP
    out = [pollfd(cli, select.POLLOUT)]
    assert a.rump_sys_poll(out, 1, 0) == 1 and out[0].revents & select.POLLOUT
    b.rump_sys_fcntl(srv, fcntl.F_SETFL, 0)
    b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1.0)
    with pytest.raises(OSError) as ei:
        b.rump_sys_recvfrom(srv, 100, 0)  # blocking again: waits the timeout out
    assert ei.value.errno == errno.EAGAIN


def test_sysctl_by_name_and_mib(vnet) -> None:
    a, _ = vnet.pair()
    assert a.rump_sys___sysctl("net.inet.ip.forwarding") == 0
    assert a.rump_sys___sysctl([4, 2, 0, 1]) == 0
    old = a.rump_sys___sysctl([4, 2, 0, 1], 4, None, None, 1)
    assert old == 0
    assert a.rump_sys___sysctl("net.inet.ip.forwarding") == 1
    assert a.config.sysctl_get("net.inet.ip.forwarding") == 1
    assert a.inet.ip_params.forwarding == 1
    buf = bytearray(4)
    a.rump_sys___sysctl("net.inet.ip.ttl", None, buf)
    assert struct.unpack("i", buf)[0] == 64
    a.rump_sys___sysctl("net.inet.ip.ttl", None, None, None, struct.pack("i", 33))
    assert a.rump_sys___sysctl([4, 2, 0, 3]) == 33
    with pytest.raises(OSError):
        a.rump_sys___sysctl("net.inet.ip.forwarding", None, None, None, 7)  # out of range
    with pytest.raises(OSError):
        a.rump_sys___sysctl("net.inet.ip.nosuchthing")
    stats = a.rump_sys___sysctl("net.inet.udp.stats")
    assert isinstance(stats, bytes) and len(stats) % 8 == 0


def test_send_on_a_down_interface_is_enetdown(vnet) -> None:
    a, b = vnet.pair()
    fd = _udp(a)
    a.config.if_down("wire0")
    with pytest.raises(OSError) as ei:
        a.rump_sys_sendto(fd, b"x", 0, ("10.0.0.2", 9))
    assert ei.value.errno == errno.ENETDOWN
    assert a.inet.ipstat.ips_odropped == 1
    a.config.if_up("wire0")
    srv = _udp(b, ("0.0.0.0", 9))
    a.rump_sys_sendto(fd, b"up again", 0, ("10.0.0.2", 9))
    assert b.rump_sys_recvfrom(srv, 100, 0)[0] == b"up again"
