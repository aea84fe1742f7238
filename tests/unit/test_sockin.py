"""sockin: PF_INET/PF_INET6 over host sockets, against host peers on loopback."""

from __future__ import annotations

import errno
import select
import socket
import struct
import threading
import time

import pytest

from rumpkern import rump_init
from rumpnet.sockin import refuse_command
from rumpnet.sys_socket import pollfd

AF_PACKET = getattr(socket, "AF_PACKET", 17)


@pytest.fixture
def k():
    k = rump_init(clock="real", sockin=True)
    yield k
    k.halt()


def _errno(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    assert type(ei.value).__module__ == "builtins"
    return ei.value.errno


def test_components_and_domains(k):
    assert "sockin" in k.components and "netinet" not in k.components
    assert k.inet is None and k.sockin is not None
    assert socket.AF_INET in k.domains


def test_netinet_and_sockin_conflict():
    with pytest.raises(OSError) as ei:
        rump_init(components=("net", "netinet", "sockin"))
    assert ei.value.errno == errno.EINVAL
    assert "cannot be loaded together" in str(ei.value)


def test_commands_refused(k):
    for name in ("ifconfig", "route", "arp"):
        with pytest.raises(OSError) as ei:
            refuse_command(k, name)
        assert ei.value.errno == errno.EOPNOTSUPP
    refuse_command(k, "sysctl")  # still fine


def test_ifconfig_and_route_fail_with_eopnotsupp(k):
    for call in (lambda: k.ifconfig("wire0", "create"), lambda: k.ifconfig("-a"),
                 lambda: k.route("add", "default", "10.0.0.1")):
        with pytest.raises(OSError) as ei:
            call()
        assert ei.value.errno in (errno.EOPNOTSUPP, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP))


def test_tcp_client_reaches_host_server(k):
    srv = socket.create_server(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_connect(fd, srv.getsockname())
    c, addr = srv.accept()
    assert k.rump_sys_getsockname(fd) == addr
    assert k.rump_sys_getpeername(fd) == srv.getsockname()
    big = bytes(range(256)) * 4096  # 1 MiB: the blocking send must finish it all
    t = threading.Thread(target=lambda: c.sendall(c.recv(1) + b"!"))
    t.start()
    got = bytearray()

    def drain():
        while len(got) < len(big):
            got.extend(c.recv(65536))

    assert k.rump_sys_send(fd, b"?") == 1
    t.join()
    assert k.rump_sys_recv(fd, 2, socket.MSG_WAITALL) == b"?!"
    d = threading.Thread(target=drain)
    d.start()
    assert k.rump_sys_send(fd, big) == len(big)
    d.join()
    assert bytes(got) == big
    c.close()
    assert k.rump_sys_recv(fd, 10) == b""  # EOF
    k.rump_sys_close(fd)
    srv.close()


def test_host_client_reaches_sockin_server(k):
    lfd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    k.rump_sys_bind(lfd, ("127.0.0.1", 0))
    k.rump_sys_listen(lfd, 5)
    assert k.rump_sys_getsockopt(lfd, socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    port = k.rump_sys_getsockname(lfd)[1]
    result = {}

    def client():
        time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(b"ping")
            result["reply"] = s.recv(10)

    t = threading.Thread(target=client)
    t.start()
    cfd, addr = k.rump_sys_accept(lfd)  # blocks until the host client comes
    assert addr[0] == "127.0.0.1"
    assert k.rump_sys_recv(cfd, 4, socket.MSG_WAITALL) == b"ping"
    k.rump_sys_send(cfd, b"pong")
    t.join()
    assert result["reply"] == b"pong"
    k.rump_sys_close(cfd)
    k.rump_sys_close(lfd)


def test_nonblocking_connect(k):
    srv = socket.create_server(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    try:
        k.rump_sys_connect(fd, srv.getsockname())
    except OSError as e:
        assert e.errno == errno.EINPROGRESS
    p = pollfd(fd, select.POLLOUT)
    assert k.rump_sys_poll([p], 1, 2000) == 1 and p.revents & select.POLLOUT
    assert k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert _errno(k.rump_sys_recv, fd, 10) == errno.EAGAIN
    c, _ = srv.accept()
    c.sendall(b"x")
    p = pollfd(fd, select.POLLIN)
    assert k.rump_sys_poll([p], 1, 2000) == 1
    assert k.rump_sys_ioctl(fd, __import__("termios").FIONREAD) == 1
    assert k.rump_sys_recv(fd, 10) == b"x"
    c.close()
    srv.close()


def test_connect_refused(k):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert _errno(k.rump_sys_connect, fd, ("127.0.0.1", port)) == errno.ECONNREFUSED
    nb = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    assert _errno(k.rump_sys_connect, nb, ("127.0.0.1", port)) in (errno.EINPROGRESS, errno.ECONNREFUSED)
    p = pollfd(nb, select.POLLOUT)
    k.rump_sys_poll([p], 1, 2000)
    assert p.revents & (select.POLLOUT | select.POLLERR)
    assert k.rump_sys_getsockopt(nb, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED


def test_udp_both_ways(k):
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 0))
    me = k.rump_sys_getsockname(fd)
    assert k.rump_sys_sendto(fd, b"to host", 0, host.getsockname()) == 7
    data, src = host.recvfrom(100)
    assert (data, src) == (b"to host", me)
    host.sendto(b"to rump", me)
    assert k.rump_sys_recvfrom(fd, 100, 0) == (b"to rump", host.getsockname())
    host.close()


def test_ipv6_loopback(k):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 on this host")
    try:
        srv = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no ::1 on this host")
    fd = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_STREAM, 0)
    k.rump_sys_connect(fd, srv.getsockname()[:2])
    c, _ = srv.accept()
    c.sendall(b"six")
    assert k.rump_sys_recv(fd, 3, socket.MSG_WAITALL) == b"six"
    assert k.rump_sys_getpeername(fd)[:2] == srv.getsockname()[:2]
    c.close()
    srv.close()


def test_options_translated(k):
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    for level, opt in ((socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.SOL_SOCKET, socket.SO_REUSEADDR),
                       (socket.IPPROTO_TCP, socket.TCP_NODELAY)):
        k.rump_sys_setsockopt(fd, level, opt, 1)
        assert k.rump_sys_getsockopt(fd, level, opt) != 0
        k.rump_sys_setsockopt(fd, level, opt, 0)
        assert k.rump_sys_getsockopt(fd, level, opt) == 0
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    assert k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVBUF) == 65536
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert struct.unpack("ii", k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_LINGER)) == (1, 0)
    k.rump_sys_setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
    assert k.rump_sys_getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_MAXSEG) > 0
    k.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_TTL, 33)
    assert k.rump_sys_getsockopt(fd, socket.IPPROTO_IP, socket.IP_TTL) == 33
    assert k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    assert k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO, 0.5)
    assert struct.unpack("qq", k.rump_sys_getsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO)) == (0, 500000)
    # Unsupported options and levels: ENOPROTOOPT.
    assert _errno(k.rump_sys_setsockopt, fd, socket.SOL_SOCKET, 9999, 1) == errno.ENOPROTOOPT
    assert _errno(k.rump_sys_getsockopt, fd, socket.SOL_SOCKET, 9999) == errno.ENOPROTOOPT
    assert _errno(k.rump_sys_setsockopt, fd, 9999, 1, 1) == errno.ENOPROTOOPT
    assert _errno(k.rump_sys_setsockopt, fd, socket.IPPROTO_TCP, 9999, 1) == errno.ENOPROTOOPT
    u = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert _errno(k.rump_sys_setsockopt, u, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1) == errno.ENOPROTOOPT
    assert _errno(k.rump_sys_setsockopt, u, socket.IPPROTO_IP, socket.IP_TTL, 300) == errno.EINVAL


def test_bad_input_gives_errno(k):
    assert _errno(k.rump_sys_socket, socket.AF_UNIX, socket.SOCK_STREAM, 0) == errno.EAFNOSUPPORT
    assert _errno(k.rump_sys_socket, AF_PACKET, socket.SOCK_RAW, 0) == errno.EAFNOSUPPORT
    assert _errno(k.rump_sys_socket, socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_UDP) == errno.EPROTONOSUPPORT
    assert _errno(k.rump_sys_socket, socket.AF_INET, socket.SOCK_RAW, 0) == errno.EPROTOTYPE
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    assert _errno(k.rump_sys_sendto, fd, b"x", 0x40000000, ("127.0.0.1", 9)) == errno.EOPNOTSUPP
    assert _errno(k.rump_sys_recv, fd, 10, 0x40000000) == errno.EOPNOTSUPP
    assert _errno(k.rump_sys_recv, fd, 10, socket.MSG_OOB) == errno.EOPNOTSUPP
    for bad in ("127.0.0.1", ("127.0.0.1",), ("example.invalid", 80), ("127.0.0.1", -1), ("127.0.0.1", "80"),
                (b"127.0.0.1", 80), ("::1", 80), None):
        assert _errno(k.rump_sys_bind, fd, bad) == errno.EINVAL
        if bad is not None:
            assert _errno(k.rump_sys_sendto, fd, b"x", 0, bad) == errno.EINVAL
    assert _errno(k.rump_sys_sendto, fd, "text", 0, ("127.0.0.1", 9)) == errno.EFAULT
    assert _errno(k.rump_sys_recv, fd, -1) == errno.EINVAL
    assert _errno(k.rump_sys_listen, fd, 1) == errno.EOPNOTSUPP
    assert _errno(k.rump_sys_accept, fd) == errno.EOPNOTSUPP
    t = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    assert _errno(k.rump_sys_accept, t) == errno.EINVAL
    assert _errno(k.rump_sys_send, t, b"x") == errno.ENOTCONN
    assert _errno(k.rump_sys_recv, t, 1) == errno.ENOTCONN
    assert _errno(k.rump_sys_shutdown, t, socket.SHUT_RD) == errno.ENOTCONN
    assert _errno(k.rump_sys_shutdown, t, 7) == errno.EINVAL
    assert _errno(k.rump_sys_getpeername, t) == errno.ENOTCONN
    assert _errno(k.rump_sys_bind, t, ("192.0.2.1", 0)) == errno.EADDRNOTAVAIL
    if socket.has_ipv6:
        s6 = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
        assert _errno(k.rump_sys_bind, s6, ("127.0.0.1", 0)) == errno.EINVAL
        assert _errno(k.rump_sys_bind, s6, ("::1", 0, "x", 0)) == errno.EINVAL


def test_idle_socket_does_not_keep_loop_busy(k):
    """Nobody waits: no reader or writer is left on the loop (no spinning)."""
    host = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    host.bind(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 0))
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.05)
    assert _errno(k.rump_sys_recv, fd, 10) == errno.EAGAIN
    host.sendto(b"wake", k.rump_sys_getsockname(fd))
    k.run_for(0.05)  # the one-shot reader fires once and goes away
    assert k.rump_sys_recv(fd, 10) == b"wake"
    host.sendto(b"more", k.rump_sys_getsockname(fd))
    t0 = time.process_time()
    k.run_for(0.3)
    assert time.process_time() - t0 < 0.2  # not spinning on the unread datagram
    assert k.rump_sys_recv(fd, 10, socket.MSG_DONTWAIT) == b"more"
    host.close()


def test_halt_closes_host_sockets(k):
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_bind(fd, ("127.0.0.1", 0))
    k.rump_sys_listen(fd, 1)
    port = k.rump_sys_getsockname(fd)[1]
    k.halt()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_sndtimeo_returns_partial_count(k):
    srv = socket.create_server(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    k.rump_sys_connect(fd, srv.getsockname())
    c, _ = srv.accept()  # never reads
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_SNDTIMEO, 0.2)
    big = b"z" * (32 << 20)
    t0 = time.monotonic()
    n = k.rump_sys_send(fd, big)
    assert 0 < n < len(big)
    assert time.monotonic() - t0 < 5
    # Once the buffers are full, a non-blocking send says EAGAIN.
    for _ in range(1000):
        try:
            k.rump_sys_send(fd, big, socket.MSG_DONTWAIT)
        except OSError as e:
            assert e.errno == errno.EAGAIN
            break
    else:
        raise AssertionError("send buffers never filled")
    c.close()
    srv.close()


def test_rcvtimeo_with_waitall_returns_what_came(k):
    srv = socket.create_server(("127.0.0.1", 0))
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    k.rump_sys_connect(fd, srv.getsockname())
    c, _ = srv.accept()
    c.sendall(b"abc")
    k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.2)
    assert k.rump_sys_recv(fd, 10, socket.MSG_WAITALL) == b"abc"
    assert _errno(k.rump_sys_recv, fd, 10) == errno.EAGAIN
    c.close()
    srv.close()


def test_pf_inet6_datagrams_with_ancillary_data_as_netinet6_gives_them(k):
    """The same calls and shapes as netinet6's AF_INET6 sockets: 4-tuples, the
    IPPROTO_IPV6 options, recvmsg's IPV6_PKTINFO and IPV6_HOPLIMIT items."""
    assert "netinet6" not in k.components and k.inet6 is None
    s = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
    c = k.rump_sys_socket(socket.AF_INET6, socket.SOCK_DGRAM, 0)
    try:
        k.rump_sys_bind(s, ("::1", 0))
        port = k.rump_sys_getsockname(s)[1]
        k.rump_sys_setsockopt(s, socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
        k.rump_sys_setsockopt(s, socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
        k.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
        k.rump_sys_setsockopt(c, socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS, 9)
        k.rump_sys_sendto(c, b"six", 0, ("::1", port, 0, 0))
        data, anc, flags, src = k.rump_sys_recvmsg(s, 100, 256, 0)
        assert data == b"six" and flags == 0 and src[0] == "::1" and len(src) == 4
        got = {t: d for level, t, d in anc if level == socket.IPPROTO_IPV6}
        assert struct.unpack("=16sI", got[socket.IPV6_PKTINFO])[0] == socket.inet_pton(socket.AF_INET6, "::1")
        assert struct.unpack("=i", got[socket.IPV6_HOPLIMIT])[0] == 9
    finally:
        k.rump_sys_close(s)
        k.rump_sys_close(c)


def test_client_options_over_sockin(k):
    """redis-py's keepalive options reach the host socket; TCP_INFO comes back in the
    in-kernel stack's layout (NetBSD's struct tcp_info: state 4 = ESTABLISHED, 236
    bytes); TCP_CONGESTION passes through; TCP_KEEPINIT has no host counterpart."""
    from rumpnet.netinet.tcp_ctloutput import TCP_INFO_STRUCT, TCP_KEEPINIT

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    try:
        fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for opt, v in ((socket.TCP_KEEPIDLE, 30), (socket.TCP_KEEPINTVL, 5), (socket.TCP_KEEPCNT, 3)):
            k.rump_sys_setsockopt(fd, socket.IPPROTO_TCP, opt, v)
            assert k.rump_sys_getsockopt(fd, socket.IPPROTO_TCP, opt) == v
        k.rump_sys_connect(fd, srv.getsockname())
        peer, _ = srv.accept()
        f = TCP_INFO_STRUCT.unpack(k.rump_sys_getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_INFO, 236))
        assert f[0] == 4 and f[10] > 0  # ESTABLISHED, snd_mss
        k.rump_sys_setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_CONGESTION, b"reno")
        assert k.rump_sys_getsockopt(fd, socket.IPPROTO_TCP, socket.TCP_CONGESTION, 16).rstrip(b"\0") == b"reno"
        assert _errno(k.rump_sys_setsockopt, fd, socket.IPPROTO_TCP, TCP_KEEPINIT, 5) == errno.ENOPROTOOPT
        peer.close()
    finally:
        srv.close()


def test_route_and_arp_through_the_routing_socket_find_nothing(k):
    """route(8) and arp(8) reach a sockin kernel only through its routing socket and
    sysctl, as on any kernel (no special case in the command layer): the tables are
    empty, a change is refused with EOPNOTSUPP (sockin has no interfaces to route
    through), a delete finds nothing (ESRCH)."""
    shown = k.route("show")
    assert "Internet:" in shown and "10." not in shown
    assert k.arp("-a") == ""
    with pytest.raises(OSError) as ei:
        k.arp("-d", "10.0.0.1")
    assert ei.value.errno == errno.ESRCH
    with pytest.raises(OSError) as ei:
        k.route("get", "10.0.0.1")
    assert ei.value.errno == errno.ESRCH
