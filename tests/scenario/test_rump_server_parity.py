"""One test, two kernels: the in-process Kernel and a RumpClient to a rump_server give the
same answers to the same rump_sys_* calls."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

from rumpkern import rump_init
from rumpnet.rumpclient import RumpClient


@pytest.fixture(params=["kernel", "remote"])
def sysk(request):
    if request.param == "kernel":
        k = rump_init()
        k.serve_background()
        yield k
        k.halt()
        k.stop_background()
        return
    d = tempfile.mkdtemp(prefix="rp", dir="/tmp")
    path = os.path.join(d, "s")
    p = subprocess.Popen([sys.executable, "-m", "rumpnet.server.rump_server", "-s", "-lrumpnet_netinet",
                          f"unix://{path}"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                c = RumpClient(f"unix://{path}")
                break
            except OSError:
                assert p.poll() is None and time.monotonic() < deadline
                time.sleep(0.02)
        yield c
        c.close()
    finally:
        p.terminate()
        p.wait(5)
        os.rmdir(d) if not os.listdir(d) else None


def test_udp_echo_and_errors(sysk):
    a = sysk.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b = sysk.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    sysk.rump_sys_bind(a, ("127.0.0.1", 5000))
    assert sysk.rump_sys_getsockname(a) == ("127.0.0.1", 5000)
    assert sysk.rump_sys_sendto(b, b"abc", 0, ("127.0.0.1", 5000)) == 3
    data, addr = sysk.rump_sys_recvfrom(a, 10, 0)
    assert data == b"abc" and addr == ("127.0.0.1", sysk.rump_sys_getsockname(b)[1])
    with pytest.raises(OSError) as ei:
        sysk.rump_sys_bind(b, ("127.0.0.1", 5001))  # bound by the send already
    assert ei.value.errno == errno.EINVAL
    c = sysk.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    with pytest.raises(OSError) as ei:
        sysk.rump_sys_bind(c, ("127.0.0.1", 5000))
    assert ei.value.errno == errno.EADDRINUSE
    sysk.rump_sys_setsockopt(a, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.1)
    with pytest.raises(OSError) as ei:
        sysk.rump_sys_recv(a, 10)
    assert ei.value.errno == errno.EWOULDBLOCK
    sysk.rump_sys_close(a)
    with pytest.raises(OSError) as ei:
        sysk.rump_sys_close(a)
    assert ei.value.errno == errno.EBADF
    assert sysk.rump_sys___sysctl("kern.ostype") == "NetBSD"


def test_tcp_options_and_tcp_info(sysk):
    """The options real clients set, and TCP_INFO, the same in-process and remotely."""
    from rumpnet.netinet.tcp_ctloutput import TCP_INFO_STRUCT

    lfd = sysk.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    sysk.rump_sys_bind(lfd, ("127.0.0.1", 5100))
    sysk.rump_sys_listen(lfd, 1)
    c = sysk.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    sysk.rump_sys_setsockopt(c, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, v in ((socket.TCP_KEEPIDLE, 30), (socket.TCP_KEEPINTVL, 5), (socket.TCP_KEEPCNT, 3),
                   (socket.TCP_NODELAY, 1)):
        sysk.rump_sys_setsockopt(c, socket.IPPROTO_TCP, opt, v)
        assert sysk.rump_sys_getsockopt(c, socket.IPPROTO_TCP, opt) == v
    sysk.rump_sys_setsockopt(c, socket.IPPROTO_IP, socket.IP_TOS, 0x10)
    sysk.rump_sys_connect(c, ("127.0.0.1", 5100))
    s, _ = sysk.rump_sys_accept(lfd)
    f = TCP_INFO_STRUCT.unpack(sysk.rump_sys_getsockopt(c, socket.IPPROTO_TCP, socket.TCP_INFO, 236))
    assert f[0] == 4 and f[5] & 0x07 == 0x07  # ESTABLISHED; timestamps, SACK, wscale
    assert sysk.rump_sys_getsockopt(c, socket.IPPROTO_IP, socket.IP_TOS) == 0x10
    with pytest.raises(OSError) as ei:
        sysk.rump_sys_setsockopt(c, socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 0)
    assert ei.value.errno == errno.EINVAL
    for fd in (c, s, lfd):
        sysk.rump_sys_close(fd)
