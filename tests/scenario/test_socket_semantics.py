"""One socket-semantics suite, two stacks: netinet kernels on an in-process wire, and a
sockin kernel on host loopback. The same calls must give the same results and errnos."""

from __future__ import annotations

import errno
import select
import socket
import struct
import termios
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from rumpkern import rump_init
from rumpkern.lwproc import File
from rumpnet.sys_socket import pollfd

AF_PACKET = getattr(socket, "AF_PACKET", 17)
DGRAM = socket.SOCK_DGRAM
STREAM = socket.SOCK_STREAM


@dataclass
class Stack:
    name: str
    ka: Any  # the "client" kernel
    kb: Any  # the "server" kernel (the same kernel for sockin)
    addr_a: str
    addr_b: str
    kernels: list[Any]

    def has_tcp(self) -> bool:
        return self.name == "sockin" or getattr(self.ka.inet, "tcp", None) is not None


def _netinet() -> Stack:
    lan = f"sem-{uuid.uuid4().hex[:8]}"
    ks = []
    for ip in ("10.0.0.1", "10.0.0.2"):
        k = rump_init(clock="real")
        cfg = k.config
        cfg.if_create("wire0")
        cfg.if_set_linkstr("wire0", lan)
        cfg.addr_add("wire0", f"{ip}/24")
        cfg.if_up("wire0")
        ks.append(k)
    return Stack("netinet", ks[0], ks[1], "10.0.0.1", "10.0.0.2", ks)


def _sockin() -> Stack:
    k = rump_init(clock="real", sockin=True)
    return Stack("sockin", k, k, "127.0.0.1", "127.0.0.1", [k])


@pytest.fixture(params=["netinet", "sockin"])
def st(request):
    s = _netinet() if request.param == "netinet" else _sockin()
    yield s
    for k in s.kernels:
        k.halt()


@pytest.fixture
def tcp(st):
    assert st.has_tcp(), "netinet kernels always have TCP"
    return st


def err(fn, *args) -> int:
    with pytest.raises(OSError) as ei:
        fn(*args)
    assert type(ei.value).__module__ == "builtins", "a Python exception from inside the stack"
    return ei.value.errno  # type: ignore[return-value]


def udp_pair(st: Stack) -> tuple[int, int, tuple[str, int]]:
    """An unbound-then-bound client on ka and a bound server on kb; returns (a, b, b's addr)."""
    a = st.ka.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    st.ka.rump_sys_bind(a, (st.addr_a, 0))
    b = st.kb.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    st.kb.rump_sys_bind(b, (st.addr_b, 0))
    return a, b, st.kb.rump_sys_getsockname(b)


def free_port(k, addr: str, so_type: int = DGRAM) -> int:
    s = k.rump_sys_socket(socket.AF_INET, so_type, 0)
    k.rump_sys_bind(s, (addr, 0))
    port = k.rump_sys_getsockname(s)[1]
    k.rump_sys_close(s)
    return port


def wait_readable(k, fd: int, ms: int = 3000) -> int:
    p = pollfd(fd, select.POLLIN)
    k.rump_sys_poll([p], 1, ms)
    return p.revents


# -- UDP -------------------------------------------------------------------------------------

def test_udp_bind_errors(st):
    k = st.kb
    s1 = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    k.rump_sys_bind(s1, (st.addr_b, 0))
    name = k.rump_sys_getsockname(s1)
    assert name[0] == st.addr_b and name[1] > 0
    s2 = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    assert err(k.rump_sys_bind, s2, name) == errno.EADDRINUSE
    assert err(k.rump_sys_bind, s1, (st.addr_b, 0)) == errno.EINVAL  # already bound
    assert err(k.rump_sys_bind, s2, ("192.0.2.1", 0)) == errno.EADDRNOTAVAIL
    assert err(k.rump_sys_bind, s2, ("not-an-address", 0)) == errno.EINVAL
    assert err(k.rump_sys_bind, s2, (st.addr_b, 70000)) == errno.EINVAL
    k.rump_sys_close(s1)
    k.rump_sys_bind(s2, name)  # free again after close


def test_udp_sendto_recvfrom(st):
    a, b, baddr = udp_pair(st)
    aaddr = st.ka.rump_sys_getsockname(a)
    assert st.ka.rump_sys_sendto(a, b"hello", 0, baddr) == 5
    assert wait_readable(st.kb, b) & select.POLLIN
    assert st.kb.rump_sys_recvfrom(b, 100, 0) == (b"hello", aaddr)
    assert st.kb.rump_sys_sendto(b, b"world!", 0, aaddr) == 6
    assert st.ka.rump_sys_recvfrom(a, 3, 0) == (b"wor", baddr)  # truncated, rest dropped
    assert err(st.ka.rump_sys_recv, a, 100, socket.MSG_DONTWAIT) == errno.EAGAIN


def test_udp_connect_and_port_unreachable(st):
    a = st.ka.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    port = free_port(st.kb, st.addr_b)
    st.ka.rump_sys_connect(a, (st.addr_b, port))
    assert st.ka.rump_sys_getpeername(a) == (st.addr_b, port)
    assert st.ka.rump_sys_getsockname(a)[0] == st.addr_a
    st.ka.rump_sys_send(a, b"anyone?")
    st.ka.rump_sys_setsockopt(a, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 3.0)
    assert err(st.ka.rump_sys_recv, a, 100) == errno.ECONNREFUSED
    # The error is reported once.
    assert err(st.ka.rump_sys_recv, a, 100, socket.MSG_DONTWAIT) == errno.EAGAIN


def test_udp_connected_rules(st):
    a, b, baddr = udp_pair(st)
    assert err(st.ka.rump_sys_send, a, b"x") == errno.ENOTCONN
    assert err(st.ka.rump_sys_getpeername, a) == errno.ENOTCONN
    assert err(st.ka.rump_sys_shutdown, a, socket.SHUT_RDWR) == errno.ENOTCONN
    st.ka.rump_sys_connect(a, baddr)
    assert err(st.ka.rump_sys_sendto, a, b"x", 0, baddr) == errno.EISCONN
    assert err(st.ka.rump_sys_connect, a, (st.addr_b, 0)) == errno.EADDRNOTAVAIL
    assert st.ka.rump_sys_send(a, b"conn") == 4
    assert wait_readable(st.kb, b)
    assert st.kb.rump_sys_recv(b, 10) == b"conn"


def test_udp_peek_dontwait_fionread_poll(st):
    a, b, baddr = udp_pair(st)
    kb = st.kb
    assert kb.rump_sys_ioctl(b, termios.FIONREAD) == 0
    p = pollfd(b, select.POLLIN | select.POLLOUT)
    assert kb.rump_sys_poll([p], 1, 0) == 1
    assert p.revents & select.POLLOUT and not p.revents & select.POLLIN
    assert err(kb.rump_sys_recv, b, 10, socket.MSG_DONTWAIT) == errno.EAGAIN
    st.ka.rump_sys_sendto(a, b"peekaboo", 0, baddr)
    assert wait_readable(kb, b) & select.POLLIN
    assert kb.rump_sys_ioctl(b, termios.FIONREAD) == 8
    assert kb.rump_sys_recv(b, 100, socket.MSG_PEEK) == b"peekaboo"
    assert kb.rump_sys_recv(b, 4, socket.MSG_PEEK) == b"peek"
    assert kb.rump_sys_recv(b, 100) == b"peekaboo"
    assert kb.rump_sys_ioctl(b, termios.FIONREAD) == 0
    assert kb.rump_sys_poll([pollfd(b, select.POLLIN)], 1, 0) == 0


def test_udp_rcvtimeo_and_nonblocking(st):
    k = st.kb
    s = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    k.rump_sys_bind(s, (st.addr_b, 0))
    k.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("qq", 0, 200_000))
    t0 = time.monotonic()
    assert err(k.rump_sys_recv, s, 10) == errno.EAGAIN
    assert 0.15 <= time.monotonic() - t0 < 2.0
    import fcntl
    import os

    k.rump_sys_fcntl(s, fcntl.F_SETFL, os.O_NONBLOCK)
    assert k.rump_sys_fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK
    t0 = time.monotonic()
    assert err(k.rump_sys_recv, s, 10) == errno.EAGAIN
    assert time.monotonic() - t0 < 0.1
    n = k.rump_sys_socket(socket.AF_INET, DGRAM | socket.SOCK_NONBLOCK, 0)
    k.rump_sys_bind(n, (st.addr_b, 0))
    assert err(k.rump_sys_recvfrom, n, 10, 0) == errno.EAGAIN


def test_getsockname_unbound(st):
    s = st.ka.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    assert st.ka.rump_sys_getsockname(s) == ("0.0.0.0", 0)


def test_sockopts_common(st):
    k = st.ka
    s = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    assert k.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_TYPE) == DGRAM
    assert k.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    k.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    assert k.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_REUSEADDR) == 1
    k.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    assert k.rump_sys_getsockopt(s, socket.SOL_SOCKET, socket.SO_RCVBUF) == 32768
    k.rump_sys_setsockopt(s, socket.IPPROTO_IP, socket.IP_TTL, 17)
    assert k.rump_sys_getsockopt(s, socket.IPPROTO_IP, socket.IP_TTL) == 17
    assert err(k.rump_sys_setsockopt, s, socket.SOL_SOCKET, 12345, 1) == errno.ENOPROTOOPT
    assert err(k.rump_sys_getsockopt, s, socket.IPPROTO_IP, 12345) == errno.ENOPROTOOPT
    assert err(k.rump_sys_setsockopt, s, socket.SOL_SOCKET, socket.SO_RCVBUF, -1) == errno.EINVAL


def test_bad_descriptors_and_domains(st):
    k = st.ka
    assert err(k.rump_sys_recv, 999, 10) == errno.EBADF
    assert err(k.rump_sys_close, 999) == errno.EBADF
    assert err(k.rump_sys_bind, -1, ("0.0.0.0", 0)) == errno.EBADF
    s = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    k.rump_sys_close(s)
    assert err(k.rump_sys_close, s) == errno.EBADF
    assert err(k.rump_sys_getsockname, s) == errno.EBADF
    # A descriptor that is not a socket.
    nfd = k.procs.proc0.fdt.alloc(File(object()))
    assert err(k.rump_sys_recv, nfd, 1) == errno.ENOTSOCK
    assert err(k.rump_sys_getsockopt, nfd, socket.SOL_SOCKET, socket.SO_TYPE) == errno.ENOTSOCK
    k.procs.proc0.fdt.remove(nfd)
    assert err(k.rump_sys_socket, socket.AF_UNIX, STREAM, 0) == errno.EAFNOSUPPORT
    assert err(k.rump_sys_socket, AF_PACKET, socket.SOCK_RAW, 0) == errno.EAFNOSUPPORT
    assert err(k.rump_sys_socket, socket.AF_INET, DGRAM, socket.IPPROTO_TCP) == errno.EPROTONOSUPPORT
    u = k.rump_sys_socket(socket.AF_INET, DGRAM, 0)
    assert err(k.rump_sys_sendto, u, b"x", 0x40000000, (st.addr_b, 9)) == errno.EOPNOTSUPP
    assert err(k.rump_sys_recv, u, 10, 0x40000000) == errno.EOPNOTSUPP
    assert err(k.rump_sys_listen, u, 5) == errno.EOPNOTSUPP
    assert err(k.rump_sys_recv, u, -1) == errno.EINVAL
    assert err(k.rump_sys_shutdown, u, 99) == errno.EINVAL


# -- TCP -------------------------------------------------------------------------------------

def tcp_listener(st: Stack) -> tuple[int, tuple[str, int]]:
    k = st.kb
    lfd = k.rump_sys_socket(socket.AF_INET, STREAM, 0)
    k.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    k.rump_sys_bind(lfd, (st.addr_b, 0))
    k.rump_sys_listen(lfd, 8)
    return lfd, k.rump_sys_getsockname(lfd)


def tcp_conn(st: Stack) -> tuple[int, int, int]:
    lfd, laddr = tcp_listener(st)
    c = st.ka.rump_sys_socket(socket.AF_INET, STREAM, 0)
    st.ka.rump_sys_connect(c, laddr)
    s, peer = st.kb.rump_sys_accept(lfd)
    assert peer == st.ka.rump_sys_getsockname(c)
    assert st.kb.rump_sys_getpeername(s) == st.ka.rump_sys_getsockname(c)
    assert st.ka.rump_sys_getpeername(c) == laddr
    return lfd, c, s


def test_tcp_exchange_and_eof(tcp):
    st = tcp
    _, c, s = tcp_conn(st)
    assert st.ka.rump_sys_send(c, b"hello") == 5
    assert st.kb.rump_sys_recv(s, 5, socket.MSG_WAITALL) == b"hello"
    data = bytes(range(256)) * 200
    assert st.kb.rump_sys_send(s, data) == len(data)
    got = b""
    while len(got) < len(data):
        chunk = st.ka.rump_sys_recv(c, 65536)
        assert chunk
        got += chunk
    assert got == data
    st.kb.rump_sys_send(s, b"peek")
    assert wait_readable(st.ka, c) & select.POLLIN
    assert st.ka.rump_sys_recv(c, 4, socket.MSG_PEEK | socket.MSG_WAITALL) in (b"peek", b"pe", b"p", b"pee")
    assert st.ka.rump_sys_recv(c, 4, socket.MSG_WAITALL) == b"peek"
    st.kb.rump_sys_shutdown(s, socket.SHUT_WR)
    assert st.ka.rump_sys_recv(c, 10) == b""  # EOF
    st.ka.rump_sys_send(c, b"still open")
    assert st.kb.rump_sys_recv(s, 10, socket.MSG_WAITALL) == b"still open"


def test_tcp_refused(tcp):
    st = tcp
    port = free_port(st.kb, st.addr_b, STREAM)
    c = st.ka.rump_sys_socket(socket.AF_INET, STREAM, 0)
    assert err(st.ka.rump_sys_connect, c, (st.addr_b, port)) == errno.ECONNREFUSED


def test_tcp_nonblocking_connect_and_accept(tcp):
    st = tcp
    lfd, laddr = tcp_listener(st)
    st.kb.rump_sys_ioctl(lfd, termios.FIONBIO, 1)
    assert err(st.kb.rump_sys_accept, lfd) == errno.EAGAIN
    c = st.ka.rump_sys_socket(socket.AF_INET, STREAM | socket.SOCK_NONBLOCK, 0)
    try:
        st.ka.rump_sys_connect(c, laddr)
    except OSError as e:
        assert e.errno == errno.EINPROGRESS
    p = pollfd(c, select.POLLOUT)
    assert st.ka.rump_sys_poll([p], 1, 3000) == 1 and p.revents & select.POLLOUT
    assert st.ka.rump_sys_getsockopt(c, socket.SOL_SOCKET, socket.SO_ERROR) == 0
    assert wait_readable(st.kb, lfd) & select.POLLIN
    s, _ = st.kb.rump_sys_accept(lfd)
    assert err(st.ka.rump_sys_recv, c, 10) == errno.EAGAIN
    st.kb.rump_sys_send(s, b"x")
    assert wait_readable(st.ka, c)
    assert st.ka.rump_sys_ioctl(c, termios.FIONREAD) == 1


def test_tcp_errors(tcp):
    st = tcp
    k = st.ka
    t = k.rump_sys_socket(socket.AF_INET, STREAM, 0)
    assert err(k.rump_sys_send, t, b"x") in (errno.ENOTCONN, errno.EPIPE)
    assert err(k.rump_sys_recv, t, 1) == errno.ENOTCONN
    assert err(k.rump_sys_getpeername, t) == errno.ENOTCONN
    assert err(k.rump_sys_accept, t) == errno.EINVAL
    assert err(k.rump_sys_shutdown, t, socket.SHUT_RDWR) == errno.ENOTCONN
    lfd, laddr = tcp_listener(st)
    t2 = st.kb.rump_sys_socket(socket.AF_INET, STREAM, 0)
    assert err(st.kb.rump_sys_bind, t2, laddr) == errno.EADDRINUSE
    assert st.kb.rump_sys_getsockopt(lfd, socket.SOL_SOCKET, socket.SO_TYPE) == STREAM
