"""The TCP socket glue (tcp_usrreq.TcpSocket, sys_socket, streams) on two kernels on
virtual time: regressions for bugs found while writing the TCP scenario tests."""

from __future__ import annotations

import asyncio
import fcntl
import os
import socket
import struct

import pytest

from rumpkern import rump_init
from rumpkern.sched import VirtualEventLoop
from rumpnet import streams

B = "10.0.0.2"
PORT = 4000

pytestmark = pytest.mark.timeout(30)


def _connect(a, b, lfd: int) -> tuple[int, int]:
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, (B, PORT))
    s, _ = b.rump_sys_accept(lfd)
    return c, s


def test_accepted_fd_flags_follow_listener_nonblock(vnet) -> None:
    """F_GETFL on an accepted descriptor reports the O_NONBLOCK it inherited (it used to
    say blocking while the socket behaved non-blocking)."""
    a, b = vnet.pair()
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    b.rump_sys_listen(lfd, 4)
    c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, (B, PORT))
    s, _ = b.rump_sys_accept(lfd)
    assert b.rump_sys_fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK
    with pytest.raises(BlockingIOError):
        b.rump_sys_recv(s, 10, 0)
    b.rump_sys_fcntl(s, fcntl.F_SETFL, 0)
    assert not b.rump_sys_fcntl(s, fcntl.F_GETFL) & os.O_NONBLOCK


def test_accepted_socket_inherits_listener_options(vnet) -> None:
    """SO_RCVBUF, SO_SNDBUF, SO_KEEPALIVE, SO_LINGER, TCP_MAXSEG and TCP_NODELAY set on the
    listener apply to accepted connections (window and MSS in the SYN-ACK, keepalive
    probes), as BSD's sonewconn copies them."""
    a, b = vnet.pair()
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_SNDBUF, 20000)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 5))
    b.rump_sys_setsockopt(lfd, socket.IPPROTO_TCP, socket.TCP_MAXSEG, 700)
    b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    b.rump_sys_listen(lfd, 4)
    # options set after listen() count too
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    b.rump_sys_setsockopt(lfd, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c, s = _connect(a, b, lfd)
    g = b.rump_sys_getsockopt
    # the sizes rounded up to whole 700-byte segments once the MSS is known (tcp_mss)
    assert g(s, socket.SOL_SOCKET, socket.SO_RCVBUF) == 24 * 700
    assert g(s, socket.SOL_SOCKET, socket.SO_SNDBUF) == 29 * 700
    assert g(s, socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    assert g(s, socket.SOL_SOCKET, socket.SO_LINGER) == struct.pack("ii", 1, 5)
    assert g(s, socket.IPPROTO_TCP, socket.TCP_MAXSEG) == 700
    assert g(s, socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    # the peer saw the small window and MSS in the SYN-ACK
    (cli,) = [p for p in a.inet.tcp.pcbs() if getattr(p, "fport", 0) == PORT]
    assert cli.snd_wnd <= 16384 and cli.t_maxseg == 700
    # keepalive really runs on the accepted connection: probes after keepidle
    b.config.sysctl_set("net.inet.tcp.keepidle", 5)
    c2, s2 = _connect(a, b, lfd)
    vnet.sched.run_for(20)
    assert b.inet.tcp.stats.tcps_keepprobe > 0


def test_waitall_larger_than_receive_buffer(vnet) -> None:
    a, b = vnet.pair()
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", PORT))
    b.rump_sys_listen(lfd, 4)
    c, s = _connect(a, b, lfd)
    b.rump_sys_setsockopt(s, socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    blob = os.urandom(1_000_000)

    async def writer() -> None:  # a coroutine on the scheduler: awaits blocking sends
        view, n = memoryview(blob), 0
        while n < len(blob):
            n += await a.rump_sys_send(c, view[n:], 0)

    task = vnet.sched.loop.create_task(writer())
    assert b.rump_sys_recv(s, len(blob), socket.MSG_WAITALL) == blob
    assert task.done() and task.exception() is None


def test_stream_server_wait_closed_finishes_accept_loop() -> None:
    """RumpServer.wait_closed() returns only when the accept task is done, so no task is
    left pending when the loop closes."""
    seg = f"tcp-sock-unit-{os.getpid()}"

    async def main() -> bool:
        k = rump_init(clock="virtual", seed=3)
        try:
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.addr_add("wire0", "10.0.0.2/24")
            k.config.if_up("wire0")
            server = await streams.start_server(k, lambda r, w: None, "0.0.0.0", PORT)
            await asyncio.sleep(0)
            assert server.is_serving()
            server.close()
            await server.wait_closed()
            return asyncio.all_tasks() == {asyncio.current_task()}
        finally:
            k.halt()

    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        assert runner.run(main())


def test_stream_readline_over_limit_is_valueerror() -> None:
    """As asyncio.StreamReader.readline: a line longer than the limit raises ValueError
    (asyncio.LimitOverrunError used to leak out)."""
    seg = f"tcp-sock-unit-rl-{os.getpid()}"

    async def main() -> list:
        a = rump_init(clock="virtual", seed=4)
        b = rump_init(clock="virtual", seed=5)
        result: list = []
        done = asyncio.Event()
        try:
            for k, addr in ((a, "10.0.0.1/24"), (b, "10.0.0.2/24")):
                k.config.if_create("wire0")
                k.config.if_set_linkstr("wire0", seg)
                k.config.addr_add("wire0", addr)
                k.config.if_up("wire0")

            async def handler(reader, writer) -> None:
                for _ in range(2):
                    try:
                        await reader.readline()
                        result.append("no error")
                    except ValueError:
                        result.append("ValueError")
                    except Exception as e:  # noqa: BLE001
                        result.append(type(e).__name__)
                result.append(await reader.readline())  # the stream goes on
                writer.close()
                await writer.wait_closed()
                done.set()

            server = await streams.start_server(b, handler, "0.0.0.0", PORT, limit=1024)
            reader, writer = await streams.open_connection(a, B, PORT)
            writer.write(b"z" * 5000 + b"\n")  # arrives whole: separator beyond the limit
            await writer.drain()
            await asyncio.sleep(1)
            writer.write(b"y" * 3000)  # arrives without its separator: over the limit
            await writer.drain()
            await asyncio.sleep(1)
            writer.write(b"y\nshort line\n")
            await writer.drain()
            await asyncio.wait_for(done.wait(), 30)
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            return result
        finally:
            b.halt()
            a.halt()

    with asyncio.Runner(loop_factory=VirtualEventLoop) as runner:
        # (the rest of the over-long unterminated line is a line of its own, as in asyncio)
        assert runner.run(main()) == ["ValueError", "ValueError", b"y\n"]
