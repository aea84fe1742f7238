"""TCP socket semantics as NetBSD gives them, through ``rump_sys_*`` on two kernels on a
virtual-time wire: listen/accept, connect (blocking and not), send/recv flags, shutdown,
buffer and TCP options, SO_REUSEADDR over TIME_WAIT, poll readiness, backlog."""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import socket
import struct

import pytest

from rumpnet.sys_socket import pollfd
from rumpnet.testing.families import INET, Family, family_matrix  # noqa: F401  (the fixture)
from rumpnet.uipc_socket import POLLERR, POLLHUP, POLLIN, POLLOUT

PORT = 5000

# Every test runs over IPv4 and IPv6: family_matrix sets F, A and B for each.
pytestmark = [pytest.mark.timeout(60), pytest.mark.usefixtures("family_matrix")]
F: Family = INET
A, B = INET.a, INET.b


def _sock(k, nonblock: bool = False) -> int:
    fd = k.rump_sys_socket(F.af, socket.SOCK_STREAM, 0)
    if nonblock:
        k.rump_sys_fcntl(fd, fcntl.F_SETFL, os.O_NONBLOCK)
    return fd


def _listener(k, port: int = PORT, backlog: int = 16, reuse: bool = False) -> int:
    fd = _sock(k)
    if reuse:
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    k.rump_sys_bind(fd, (F.any, port))
    k.rump_sys_listen(fd, backlog)
    return fd


def _pair(a, b, port: int = PORT) -> tuple[int, int, int]:
    """(listener on b, connected client on a, accepted socket on b)."""
    lfd = _listener(b, port)
    c = _sock(a)
    a.rump_sys_connect(c, (B, port))
    s, peer = b.rump_sys_accept(lfd)
    assert peer == a.rump_sys_getsockname(c)
    return lfd, c, s


def _poll(k, fd: int, events: int, timeout_ms: int = 0) -> int:
    p = pollfd(fd, events)
    k.rump_sys_poll([p], 1, timeout_ms)
    return p.revents


def _errno(fn, *args) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# -- listen / accept ---------------------------------------------------------------------
def test_accept_blocking_and_nonblocking(vnet) -> None:
    a, b = F.pair(vnet)
    lfd = _listener(b)
    assert b.rump_sys_getsockopt(lfd, socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
    b.rump_sys_fcntl(lfd, fcntl.F_SETFL, os.O_NONBLOCK)
    assert _errno(b.rump_sys_accept, lfd) == errno.EWOULDBLOCK
    assert _poll(b, lfd, POLLIN) == 0
    c = _sock(a)
    a.rump_sys_connect(c, (B, PORT))
    # the handshake completed through the SYN cache: the listener is readable
    assert _poll(b, lfd, POLLIN, 1000) & POLLIN
    s, peer = b.rump_sys_accept(lfd)
    assert peer == a.rump_sys_getsockname(c)
    assert b.rump_sys_getpeername(s) == peer
    assert b.rump_sys_getsockname(s) == F.sa(B, PORT)
    # BSD: the accepted socket inherits the listener's O_NONBLOCK
    assert b.rump_sys_fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK
    # blocking accept: sleeps until a client arrives (the client's connect drives it)
    b.rump_sys_fcntl(lfd, fcntl.F_SETFL, 0)
    c2 = _sock(a, nonblock=True)
    assert _errno(a.rump_sys_connect, c2, (B, PORT)) == errno.EINPROGRESS
    s2, peer2 = b.rump_sys_accept(lfd)
    assert peer2 == a.rump_sys_getsockname(c2)
    assert not b.rump_sys_fcntl(s2, fcntl.F_GETFL) & os.O_NONBLOCK
    for fd in (s, s2, lfd):
        b.rump_sys_close(fd)
    for fd in (c, c2):
        a.rump_sys_close(fd)


def test_accept_with_timeout(vnet) -> None:
    a, b = F.pair(vnet)
    lfd = _listener(b)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 2.5)
    t0 = b.clock_now()
    assert _errno(b.rump_sys_accept, lfd) == errno.EWOULDBLOCK
    assert b.clock_now() - t0 == pytest.approx(2.5, abs=0.01)


def test_listen_errors(vnet) -> None:
    a, b = F.pair(vnet)
    lfd = _listener(b)
    fd = _sock(b)
    assert _errno(b.rump_sys_bind, fd, (F.any, PORT)) == errno.EADDRINUSE
    assert _errno(b.rump_sys_bind, fd, (F.nowhere, 0)) == errno.EADDRNOTAVAIL
    assert _errno(b.rump_sys_accept, fd) == errno.EINVAL  # not listening
    assert _errno(b.rump_sys_connect, lfd, (A, 1)) == errno.EOPNOTSUPP
    assert _errno(b.rump_sys_recv, fd, 10, 0) == errno.ENOTCONN
    assert _errno(b.rump_sys_send, fd, b"x", 0) == errno.ENOTCONN
    assert _errno(b.rump_sys_getpeername, fd) == errno.ENOTCONN
    assert _errno(b.rump_sys_shutdown, fd, socket.SHUT_WR) == errno.ENOTCONN
    # listen without bind picks an ephemeral port
    b.rump_sys_listen(fd, 1)
    assert b.rump_sys_getsockname(fd)[1] >= 49152


def test_backlog_honoured(vnet) -> None:
    """With backlog 2 and nobody accepting, only two connections complete; the others'
    handshakes are dropped (the peer keeps retrying) and complete once there is room."""
    a, b = F.pair(vnet)
    lfd = _listener(b, backlog=2)
    clients = []
    for _ in range(4):
        c = _sock(a, nonblock=True)
        assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EINPROGRESS
        clients.append(c)
    vnet.sched.run_for(0.5)
    est = [c for c in clients if _poll(a, c, POLLOUT) & POLLOUT]
    # a client whose final ACK was dropped believes it is connected (SYN-ACK came), so
    # count on the server side: exactly backlog connections queued.
    assert F.tcp(b).stats.tcps_listendrop >= 2
    b.rump_sys_fcntl(lfd, fcntl.F_SETFL, os.O_NONBLOCK)
    first = [b.rump_sys_accept(lfd)[0], b.rump_sys_accept(lfd)[0]]
    assert _errno(b.rump_sys_accept, lfd) == errno.EWOULDBLOCK
    assert len(est) >= 2
    # room again: the waiting clients' retransmissions complete their handshakes
    b.rump_sys_fcntl(lfd, fcntl.F_SETFL, 0)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 30.0)
    rest = [b.rump_sys_accept(lfd)[0], b.rump_sys_accept(lfd)[0]]
    peers = {b.rump_sys_getpeername(s) for s in first + rest}
    assert peers == {a.rump_sys_getsockname(c) for c in clients}
    # every connection carries data
    for s in first + rest:
        b.rump_sys_send(s, b"hi", 0)
    for c in clients:
        a.rump_sys_fcntl(c, fcntl.F_SETFL, 0)
        assert a.rump_sys_recv(c, 2, socket.MSG_WAITALL) == b"hi"


# -- connect ----------------------------------------------------------------------------
def test_connect_nonblocking_sequence(vnet) -> None:
    a, b = F.pair(vnet)
    lfd = _listener(b)
    c = _sock(a, nonblock=True)
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EINPROGRESS
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EALREADY
    rev = _poll(a, c, POLLOUT, 5000)
    assert rev & POLLOUT and not rev & POLLERR
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EISCONN
    assert a.rump_sys_getpeername(c) == F.sa(B, PORT)
    s, _ = b.rump_sys_accept(lfd)
    a.rump_sys_send(c, b"ping", 0)
    assert b.rump_sys_recv(s, 10, 0) == b"ping"


def test_connect_blocking_then_eisconn(vnet) -> None:
    a, b = F.pair(vnet)
    _listener(b)
    c = _sock(a)
    a.rump_sys_connect(c, (B, PORT))
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EISCONN


def test_connect_refused_nonblocking_reports_so_error(vnet) -> None:
    a, b = F.pair(vnet)
    c = _sock(a, nonblock=True)
    assert _errno(a.rump_sys_connect, c, (B, 9)) == errno.EINPROGRESS
    rev = _poll(a, c, POLLOUT, 5000)
    assert rev & (POLLERR | POLLHUP)
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == errno.ECONNREFUSED
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == 0  # read once


def test_connect_refused_blocking(vnet) -> None:
    a, b = F.pair(vnet)
    c = _sock(a)
    assert _errno(a.rump_sys_connect, c, (B, 9)) == errno.ECONNREFUSED
    assert F.tcp(b).stats.tcps_noport >= 1


# -- data ---------------------------------------------------------------------------------
def test_send_recv_flags(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    assert _errno(b.rump_sys_recv, s, 10, socket.MSG_DONTWAIT) == errno.EWOULDBLOCK
    a.rump_sys_send(c, b"hello world", 0)
    assert b.rump_sys_recv(s, 5, socket.MSG_PEEK) == b"hello"
    assert b.rump_sys_recv(s, 100, socket.MSG_PEEK) == b"hello world"
    assert b.rump_sys_ioctl(s, 0x541B) == 11  # FIONREAD
    assert b.rump_sys_recv(s, 6, 0) == b"hello "
    assert b.rump_sys_recv(s, 100, socket.MSG_DONTWAIT) == b"world"
    assert _errno(b.rump_sys_recv, s, 10, socket.MSG_DONTWAIT) == errno.EWOULDBLOCK
    # MSG_WAITALL: sleeps until all n bytes are there, across several segments
    a.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    a.rump_sys_send(c, b"abc", 0)
    blob = os.urandom(100_000)

    def writer() -> None:  # a callback on the loop: the call is an awaitable, run as a task
        asyncio.ensure_future(a.rump_sys_send(c, blob, 0))

    vnet.sched.call_later(0.2, writer)
    got = b.rump_sys_recv(s, 100_003, socket.MSG_WAITALL)
    assert got == b"abc" + blob
    # MSG_WAITALL returns short at EOF
    a.rump_sys_send(c, b"tail", 0)
    a.rump_sys_shutdown(c, socket.SHUT_WR)
    assert b.rump_sys_recv(s, 100, socket.MSG_WAITALL) == b"tail"
    assert b.rump_sys_recv(s, 100, 0) == b""


def test_recv_timeout(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 1.5)
    t0 = b.clock_now()
    assert _errno(b.rump_sys_recv, s, 10, 0) == errno.EWOULDBLOCK
    assert b.clock_now() - t0 == pytest.approx(1.5, abs=0.01)
    # WAITALL with a timeout returns what it has
    a.rump_sys_send(c, b"part", 0)
    assert b.rump_sys_recv(s, 100, socket.MSG_WAITALL) == b"part"


def test_send_nonblocking_fills_buffer(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_SNDBUF) == 32768
    assert b.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_RCVBUF) == 16384
    total = 0
    chunk = b"x" * 8192
    while True:
        try:
            n = a.rump_sys_send(c, chunk, socket.MSG_DONTWAIT)
        except OSError as e:
            assert e.errno == errno.EWOULDBLOCK
            break
        total += n
        vnet.sched.run_for(0.01)
        assert total < 10_000_000
    # filled: our send buffer and the peer's (small) receive window
    assert total >= 32768
    assert not _poll(a, c, POLLOUT) & POLLOUT
    got = 0
    while got < total:
        got += len(b.rump_sys_recv(s, 65536, 0))
    assert got == total
    assert _poll(a, c, POLLOUT, 5000) & POLLOUT


def test_shutdown_wr_peer_sees_eof_send_epipe(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_send(c, b"last words", 0)
    a.rump_sys_shutdown(c, socket.SHUT_WR)
    assert _errno(a.rump_sys_send, c, b"more", 0) == errno.EPIPE
    assert b.rump_sys_recv(s, 100, socket.MSG_WAITALL) == b"last words"
    assert b.rump_sys_recv(s, 100, 0) == b""
    assert _poll(b, s, POLLIN) & POLLIN
    # half-close: the other direction still works
    b.rump_sys_send(s, b"reply", 0)
    assert a.rump_sys_recv(c, 100, 0) == b"reply"
    b.rump_sys_close(s)
    assert a.rump_sys_recv(c, 100, 0) == b""
    assert _poll(a, c, POLLIN) & (POLLIN | POLLHUP)


def test_shutdown_rd(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_send(c, b"discard me", 0)
    vnet.sched.run_for(0.3)
    b.rump_sys_shutdown(s, socket.SHUT_RD)
    assert b.rump_sys_recv(s, 100, 0) == b""
    assert _poll(b, s, POLLIN) & POLLIN
    # sending still works
    b.rump_sys_send(s, b"still here", 0)
    assert a.rump_sys_recv(c, 100, 0) == b"still here"


def test_shutdown_rdwr(vnet) -> None:
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    a.rump_sys_shutdown(c, socket.SHUT_RDWR)
    assert _errno(a.rump_sys_send, c, b"x", 0) == errno.EPIPE
    assert a.rump_sys_recv(c, 10, 0) == b""
    assert b.rump_sys_recv(s, 10, 0) == b""
    assert _errno(a.rump_sys_shutdown, c, 7) == errno.EINVAL


def test_send_after_peer_closed_gets_epipe_or_reset(vnet) -> None:
    """Writing to a connection whose peer has gone: the first write is accepted and draws
    a RST; later writes fail with EPIPE (NetBSD: ECONNRESET is reported once)."""
    a, b = F.pair(vnet)
    _, c, s = _pair(a, b)
    b.rump_sys_close(s)
    assert a.rump_sys_recv(c, 10, 0) == b""
    a.rump_sys_send(c, b"into the void", 0)
    vnet.sched.run_for(0.5)
    errs = set()
    for _ in range(3):
        try:
            a.rump_sys_send(c, b"again", 0)
        except OSError as e:
            errs.add(e.errno)
    assert errs and errs <= {errno.EPIPE, errno.ECONNRESET}
    assert errno.EPIPE in errs


def test_tcp_options(vnet) -> None:
    a, b = F.pair(vnet)
    c = _sock(a)
    assert a.rump_sys_getsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0
    a.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert a.rump_sys_getsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    a.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_MAXSEG, 500)
    assert a.rump_sys_getsockopt(c, socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 500
    assert _errno(a.rump_sys_setsockopt, c, socket.IPPROTO_TCP, socket.TCP_MAXSEG, 0) == errno.EINVAL
    assert _errno(a.rump_sys_getsockopt, c, socket.IPPROTO_TCP, 9999) == errno.ENOPROTOOPT
    assert a.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_TYPE) == socket.SOCK_STREAM
    lfd = _listener(b)
    a.rump_sys_connect(c, (B, PORT))
    s, _ = b.rump_sys_accept(lfd)
    assert a.rump_sys_getsockopt(c, socket.IPPROTO_TCP, socket.TCP_MAXSEG) <= 500
    # segments the client sends are at most 500 bytes of payload
    sizes: list[int] = []
    ifp = b.ifnet.lookup("wire0")

    class Tap:
        def write(self, frame, ts):  # noqa: ANN001 - a bpf writer
            f = bytes(frame)
            if f[12:14] == b"\x08\x00" and f[23] == 6 and f[26:30] == socket.inet_aton(A):
                ihl = (f[14] & 15) * 4
            elif f[12:14] == b"\x86\xdd" and f[20] == 6 and f[22:38] == socket.inet_pton(socket.AF_INET6, A):
                ihl = 40
            else:
                return
            doff = (f[14 + ihl + 12] >> 4) * 4
            sizes.append(len(f) - 14 - ihl - doff)

        def close(self) -> None:
            pass

    ifp.bpf_attach(Tap())
    a.rump_sys_send(c, os.urandom(5000), 0)
    got = b.rump_sys_recv(s, 5000, socket.MSG_WAITALL)
    assert len(got) == 5000
    assert max(sizes) <= 500 and sum(sizes) >= 5000


def test_nodelay_sends_small_segments_at_once(vnet) -> None:
    """Nagle holds a second small segment while the first is unacknowledged; with
    TCP_NODELAY both go out at once."""
    a, b = F.pair(vnet)
    # a delay on the wire so that the first segment is unacknowledged for a while
    from rumpnet.faults.netem import Netem, NetemParams
    from rumpnet.faults.runner import QdiscRunner

    for k in (a, b):
        ifp = k.ifnet.lookup("wire0")
        ifp.set_qdisc("egress", QdiscRunner(Netem(NetemParams(delay=0.05), k.rng), k.sched, ifp.link_transmit))
    for nodelay, port in ((False, PORT), (True, PORT + 1)):
        _, c, s = _pair(a, b, port)
        if nodelay:
            a.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = F.tcp(a).stats.tcps_sndpack
        a.rump_sys_send(c, b"a", 0)
        a.rump_sys_send(c, b"b", 0)
        a.rump_sys_send(c, b"c", 0)
        sent_now = F.tcp(a).stats.tcps_sndpack - before
        assert sent_now == (3 if nodelay else 1)
        assert b.rump_sys_recv(s, 3, socket.MSG_WAITALL) == b"abc"


def test_reuseaddr_rebind_in_time_wait(vnet) -> None:
    a, b = F.pair(vnet)
    lfd, c, s = _pair(a, b)
    cport = a.rump_sys_getsockname(c)[1]
    # the server closes first: its side goes to TIME_WAIT
    b.rump_sys_close(s)
    b.rump_sys_close(lfd)
    assert a.rump_sys_recv(c, 10, 0) == b""
    a.rump_sys_close(c)
    vnet.sched.run_for(0.5)
    states = [p.state.name for p in F.tcp(b).pcbs() if getattr(p, "fport", 0) == cport]
    assert states == ["TIME_WAIT"]
    fd = _sock(b)
    assert _errno(b.rump_sys_bind, fd, (F.any, PORT)) == errno.EADDRINUSE
    b.rump_sys_close(fd)
    lfd2 = _listener(b, reuse=True)
    c2 = _sock(a)
    a.rump_sys_connect(c2, (B, PORT))
    s2, _ = b.rump_sys_accept(lfd2)
    a.rump_sys_send(c2, b"again", 0)
    assert b.rump_sys_recv(s2, 10, 0) == b"again"
    # and after 2*MSL the TIME_WAIT is gone and a plain bind works too
    vnet.sched.run_for(2 * F.tcp(b).params.msl + 1)
    assert not [p for p in F.tcp(b).pcbs() if p.state.name == "TIME_WAIT"]


def test_poll_readiness(vnet) -> None:
    a, b = F.pair(vnet)
    lfd = _listener(b)
    c = _sock(a, nonblock=True)
    assert _errno(a.rump_sys_connect, c, (B, PORT)) == errno.EINPROGRESS
    assert not _poll(a, c, POLLIN | POLLOUT)  # connecting: neither readable nor writable
    assert _poll(b, lfd, POLLIN, 1000) & POLLIN
    s, _ = b.rump_sys_accept(lfd)
    assert _poll(a, c, POLLOUT, 1000) & POLLOUT
    assert _poll(b, s, POLLIN | POLLOUT) == POLLOUT
    a.rump_sys_send(c, b"data", 0)
    assert _poll(b, s, POLLIN, 1000) & POLLIN
    b.rump_sys_recv(s, 10, 0)
    assert not _poll(b, s, POLLIN) & POLLIN
    # EOF: readable
    a.rump_sys_shutdown(c, socket.SHUT_WR)
    assert _poll(b, s, POLLIN, 1000) & POLLIN
    assert b.rump_sys_recv(s, 10, 0) == b""
    # error: reset by peer -> POLLERR / POLLHUP, and recv reports ECONNRESET
    a.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    a.rump_sys_close(c)
    vnet.sched.run_for(0.5)  # (s is readable already, at EOF: let the RST arrive)
    rev = _poll(b, s, POLLIN)
    assert rev & POLLIN and rev & (POLLERR | POLLHUP)
    assert _errno(b.rump_sys_recv, s, 10, 0) == errno.ECONNRESET
    # poll with a timeout and nothing to do passes virtual time only
    lfd2 = _listener(b, PORT + 1)
    t0 = b.clock_now()
    assert _poll(b, lfd2, POLLIN, 750) == 0
    assert b.clock_now() - t0 == pytest.approx(0.75, abs=0.01)


def test_poll_wakes_on_any_of_several(vnet) -> None:
    a, b = F.pair(vnet)
    _, c1, s1 = _pair(a, b, PORT)
    _, c2, s2 = _pair(a, b, PORT + 1)
    vnet.sched.call_later(1.0, lambda: asyncio.ensure_future(a.rump_sys_send(c2, b"second", 0)))
    fds = [pollfd(s1, POLLIN), pollfd(s2, POLLIN)]
    t0 = b.clock_now()
    assert b.rump_sys_poll(fds, 2, 10_000) == 1
    assert fds[0].revents == 0 and fds[1].revents & POLLIN
    assert 1.0 <= b.clock_now() - t0 < 1.5
