"""``rumpnet.testing``'s Linux-peer helpers: ``tap_peer`` and the ``rump_linux_peer``
fixture users get from the pytest plugin. They must give a working link and leave no
namespace or tap behind, also when the test fails."""

from __future__ import annotations

import socket
import threading

import pytest

from rumpkern import rump_init
from rumpnet.testing.netns import have_netns_privileges, link_exists, tap_peer

_ok, _why = have_netns_privileges()
pytestmark = [pytest.mark.interop, pytest.mark.skipif(not _ok, reason=_why), pytest.mark.timeout(60)]


def test_rump_linux_peer_fixture(rump_linux_peer) -> None:
    peer = rump_linux_peer
    r = peer.run(["ping", "-c", "2", "-i", "0.2", "-W", "2", peer.kernel_addr], timeout=20)
    assert r.returncode == 0 and "2 received" in r.stdout, r.stdout + r.stderr
    k = peer.kernel
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_bind(fd, ("0.0.0.0", 7))
    code = ("import socket,sys; s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.settimeout(5);"
            "s.sendto(b'hello',(sys.argv[1],7)); print(s.recvfrom(100)[0].decode())")
    done = threading.Event()

    def echo() -> None:
        data, src = k.rump_sys_recvfrom(fd, 100, 0)
        k.rump_sys_sendto(fd, data, 0, src)
        done.set()

    t = threading.Thread(target=echo, daemon=True)
    t.start()
    r = peer.python(code, args=(peer.kernel_addr,))
    assert r.returncode == 0 and r.stdout.strip() == "hello", r.stderr
    assert done.wait(5)


def test_tap_peer_removes_everything_even_on_failure() -> None:
    k = rump_init(clock="real", seed=3, threads=False)  # driven by calls: tap_peer serves it
    try:
        with pytest.raises(RuntimeError, match="the test failed"):
            with tap_peer(k, "10.214.0.2/24", "10.214.0.1/24", linkopts="nooffload") as (ns, tap):
                assert link_exists(tap, ns.name) and ns.exists
                assert "offload: none" in k.ifconfig("virt0")
                raise RuntimeError("the test failed")
        assert not ns.exists and not link_exists(tap)
        with pytest.raises(OSError):
            k.ifnet.lookup("virt0")          # the interface went with its tap
        assert not k.sched.background        # the thread tap_peer started is stopped
    finally:
        k.halt()
