"""The same system calls from the four places a caller can be: a plain function (virtual
clock), a coroutine on the scheduler's loop, another thread while the kernel serves in the
background (the default on the real clock), and two threads at once with nobody serving
(driven by calls, as with RUMP_THREADS=0)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import itertools
import os
import socket
import threading

import pytest

from rumpkern import rump_init
from rumpnet.testing.vnet import icmp_echo

_n = itertools.count(1)


def _exchange(a, b, port: int) -> None:
    """Ping b from a, then a UDP round trip a -> b -> a (blocking calls)."""
    icmp = a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    a.rump_sys_setsockopt(icmp, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    a.rump_sys_sendto(icmp, icmp_echo(0x99, 1, b"modes"), 0, ("10.0.0.2", 0))
    while True:
        pkt, src = a.rump_sys_recvfrom(icmp, 1500, 0)
        if pkt[20] == 0:
            break
    assert src == ("10.0.0.2", 0) and pkt[24:26] == b"\x00\x99"
    a.rump_sys_close(icmp)
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", port))
    b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    a.rump_sys_sendto(cli, b"ping", 0, ("10.0.0.2", port))
    data, peer = b.rump_sys_recvfrom(srv, 100, 0)
    b.rump_sys_sendto(srv, data + b"-pong", 0, peer)
    assert a.rump_sys_recvfrom(cli, 100, 0) == (b"ping-pong", ("10.0.0.2", port))
    a.rump_sys_close(cli)
    b.rump_sys_close(srv)


@pytest.mark.timeout(20)
def test_plain_function_virtual_clock(vnet) -> None:
    a, b = vnet.pair()
    assert a.sched.virtual
    t0 = a.clock_now()
    _exchange(a, b, 7001)
    # an idle blocking call with a timeout passes virtual time only
    fd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 100.0)
    a.rump_sys_bind(fd, ("0.0.0.0", 7002))
    with pytest.raises(OSError) as ei:
        a.rump_sys_recvfrom(fd, 10, 0)
    assert ei.value.errno == errno.EAGAIN
    assert a.clock_now() - t0 == pytest.approx(100.0, abs=0.01)


@pytest.mark.timeout(20)
@pytest.mark.asyncio
async def test_await_from_coroutine() -> None:
    seg = f"modes-async-{os.getpid()}-{next(_n)}"
    a = rump_init(clock="real", seed=1)  # adopts the running loop
    b = rump_init(clock="real", seed=2)
    try:
        assert a.sched is b.sched and a.sched.loop is asyncio.get_running_loop()
        for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", addr)
            k.config.if_up("wire0")
        icmp = await a.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        await a.rump_sys_sendto(icmp, icmp_echo(0x55, 1, b"modes"), 0, ("10.0.0.2", 0))
        pkt, src = await asyncio.wait_for(a.rump_sys_recvfrom(icmp, 1500, 0), 5)
        assert pkt[20] == 0 and src == ("10.0.0.2", 0)
        srv = await b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        await b.rump_sys_bind(srv, ("0.0.0.0", 7003))
        cli = await a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)

        async def server() -> None:
            data, peer = await b.rump_sys_recvfrom(srv, 100, 0)
            await b.rump_sys_sendto(srv, data.upper(), 0, peer)

        task = asyncio.create_task(server())
        await asyncio.sleep(0)  # the server is now blocked in recvfrom
        await a.rump_sys_sendto(cli, b"hello", 0, ("10.0.0.2", 7003))
        data, peer = await asyncio.wait_for(a.rump_sys_recvfrom(cli, 100, 0), 5)
        assert (data, peer) == (b"HELLO", ("10.0.0.2", 7003))
        await asyncio.wait_for(task, 5)
        # errors come out of the await
        with pytest.raises(OSError) as ei:
            await a.rump_sys_recvfrom(cli, 100, socket.MSG_DONTWAIT)
        assert ei.value.errno == errno.EAGAIN
        await a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 0.2)
        with pytest.raises(OSError) as ei:
            await a.rump_sys_recvfrom(cli, 100, 0)
        assert ei.value.errno == errno.EAGAIN
    finally:
        b.halt()
        a.halt()


@pytest.mark.timeout(20)
def test_other_thread_while_serving_in_background(vnet_real) -> None:
    a, b = vnet_real.pair()
    a.serve_background()
    assert a.sched.background
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        ex.submit(_exchange, a, b, 7004).result(timeout=15)
        # two threads at once, both handed over to the serving thread
        f1 = ex.submit(vnet_real.ping, a, "10.0.0.2", timeout=5)
        f2 = ex.submit(vnet_real.ping, b, "10.0.0.1", timeout=5)
        assert f1.result(timeout=15) is not None and f2.result(timeout=15) is not None
    # and from the main thread too
    assert vnet_real.ping(a, "10.0.0.2", timeout=5) is not None
    a.stop_background()
    assert not a.sched.background
    _exchange(a, b, 7006)  # the calling thread drives again


@pytest.mark.timeout(20)
def test_two_threads_blocked_at_once(vnet_real) -> None:
    a, b = vnet_real.pair()
    assert a.sched.background  # a real-clock kernel serves itself by default ...
    a.stop_background()  # ... this test is about the mode driven by calls (RUMP_THREADS=0)
    assert not a.sched.background
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", 7007))
    b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
    ready = threading.Event()
    result: dict[str, object] = {}

    def server() -> None:
        try:
            ready.set()
            for _ in range(3):
                data, peer = b.rump_sys_recvfrom(srv, 100, 0)  # blocks, driving the CPU
                b.rump_sys_sendto(srv, data[::-1], 0, peer)
            result["ok"] = True
        except BaseException as e:  # reported by the main thread
            result["error"] = e

    t = threading.Thread(target=server, daemon=True)
    t.start()
    ready.wait(5)
    cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    a.rump_sys_setsockopt(cli, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
    for msg in (b"abc", b"hello", b"rump"):
        a.rump_sys_sendto(cli, msg, 0, ("10.0.0.2", 7007))  # handed over or driven
        assert a.rump_sys_recvfrom(cli, 100, 0) == (msg[::-1], ("10.0.0.2", 7007))
    t.join(10)
    assert not t.is_alive()
    assert result.get("ok"), result.get("error")


@pytest.mark.timeout(20)
def test_await_from_coroutine_on_virtual_time() -> None:
    """A coroutine on a virtual-time loop: rump_init adopts it, timeouts pass instantly."""
    from rumpkern.sched import VirtualEventLoop

    seg = f"modes-vasync-{os.getpid()}-{next(_n)}"

    async def main() -> float:
        a = rump_init(clock="virtual", seed=1)
        b = rump_init(clock="virtual", seed=2)
        try:
            assert a.sched.virtual and a.sched.loop is asyncio.get_running_loop()
            for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
                k.config.if_create("wire0")
                k.config.if_set_linkstr("wire0", seg)
                k.config.addr_add("wire0", addr)
                k.config.if_up("wire0")
            srv = await b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
            await b.rump_sys_bind(srv, ("0.0.0.0", 7008))
            cli = await a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
            await a.rump_sys_sendto(cli, b"v", 0, ("10.0.0.2", 7008))
            assert (await b.rump_sys_recvfrom(srv, 10, 0))[0] == b"v"
            await b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 3600.0)
            t0 = a.clock_now()
            with pytest.raises(OSError) as ei:
                await b.rump_sys_recvfrom(srv, 10, 0)
            assert ei.value.errno == errno.EAGAIN
            return a.clock_now() - t0
        finally:
            b.halt()
            a.halt()

    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        waited = runner.run(main())
    assert waited == pytest.approx(3600.0, abs=0.01)


@pytest.mark.timeout(20)
def test_blocked_thread_takes_over_when_background_stops(vnet_real) -> None:
    a, b = vnet_real.pair()
    b.serve_background()
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", 7010))
    b.rump_sys_setsockopt(srv, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 10.0)
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(b.rump_sys_recvfrom, srv, 100, 0)  # handed to the serving thread
        b.stop_background()  # ... which goes away while the call sleeps
        assert not fut.done()
        cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        a.rump_sys_sendto(cli, b"still there?", 0, ("10.0.0.2", 7010))
        data, peer = fut.result(timeout=10)
    assert data == b"still there?" and peer[0] == "10.0.0.1"
