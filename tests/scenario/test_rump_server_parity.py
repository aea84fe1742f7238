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
