"""TCP across impaired links: bulk transfer survives loss/dup/reorder/corruption; partitions
shorter than the retransmission limit recover, longer ones end in ETIMEDOUT (virtual time)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
from collections.abc import Iterator

import pytest

from rumpnet.faults.network import Host, Network


@pytest.fixture
def net() -> Iterator[Network]:
    n = Network(seed=17)
    n.add_host("a")
    n.add_host("b")
    n.add_link("wire", "a", "b")
    try:
        yield n
    finally:
        n.close()


def pattern(n: int) -> bytes:
    block = hashlib.sha256(b"rumpnet").digest() * 2048  # 64 KiB
    return (block * (n // len(block) + 1))[:n]


def transfer(net: Network, data: bytes, port: int = 5001, tos: int | None = None) -> bytes:
    """``data`` from host a to host b over TCP (``tos``: the client's IP_TOS)."""
    a, b = net.host("a"), net.host("b")
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", port))
    b.rump_sys_listen(lfd, 5)

    async def server() -> bytes:
        fd, _ = await b.rump_sys_accept(lfd)
        chunks = []
        while True:
            d = await b.rump_sys_recv(fd, 65536, 0)
            if not d:
                break
            chunks.append(d)
        await b.rump_sys_close(fd)
        return b"".join(chunks)

    async def client() -> None:
        fd = await a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        if tos is not None:
            await a.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_TOS, tos)
        await a.rump_sys_connect(fd, (b.addr(), port))
        view = memoryview(data)
        while view:
            n = await a.rump_sys_send(fd, view[:262144], 0)
            view = view[n:]
        await a.rump_sys_close(fd)

    async def main() -> bytes:
        srv = asyncio.ensure_future(server())
        await client()
        return await srv

    got: bytes = net.sched.run_coroutine(main())
    b.rump_sys_close(lfd)
    return got


def test_clean_transfer(net: Network) -> None:
    data = pattern(1_000_000)
    assert transfer(net, data) == data
    assert net.link("wire").counters()["dropped"] == 0


def test_10mb_survives_loss_dup_reorder_corruption(net: Network) -> None:
    net.link("wire").impair("delay 2ms loss 10% duplicate 5% reorder 5% corrupt 1%")
    data = pattern(10 * 1024 * 1024)
    got = transfer(net, data)
    assert len(got) == len(data) and hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    c = net.link("wire").counters()
    assert c["drop_loss"] > 100 and c["duplicated"] > 50 and c["reordered"] > 50 and c["corrupted"] > 10


def connected(net: Network, port: int = 5002) -> tuple[Host, int, Host, int]:
    a, b = net.host("a"), net.host("b")
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", port))
    b.rump_sys_listen(lfd, 5)
    cfd = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(cfd, (b.addr(), port))
    sfd, _ = b.rump_sys_accept(lfd)
    b.rump_sys_close(lfd)
    return a, cfd, b, sfd


def test_short_partition_recovers(net: Network) -> None:
    a, cfd, b, sfd = connected(net)
    net.schedule("at 0s partition wire for 20s")
    net.run_for(0.001)
    t0 = net.now()
    a.rump_sys_send(cfd, b"across the partition", 0)
    assert b.rump_sys_recv(sfd, 100, 0) == b"across the partition"
    assert net.now() - t0 >= 20.0 - 0.002
    assert net.link("wire").counters()["drop_partition"] >= 2
    b.rump_sys_send(sfd, b"and back", 0)
    assert a.rump_sys_recv(cfd, 100, 0) == b"and back"


def test_long_partition_times_out(net: Network) -> None:
    a, cfd, b, sfd = connected(net)
    net.partition("a-b")
    t0 = net.now()
    a.rump_sys_send(cfd, b"into the void", 0)
    with pytest.raises(OSError) as ei:
        a.rump_sys_recv(cfd, 100, 0)
    assert ei.value.errno == errno.ETIMEDOUT
    took = net.now() - t0
    assert 30.0 < took < 3600.0
    net.heal()


def captured_transfer(seed: int, path) -> bytes:  # noqa: ANN001
    with Network(seed=seed) as n:
        n.add_host("a")
        n.add_host("b")
        n.add_link("wire", "a", "b")
        n.link("wire").impair("delay 1ms 1ms loss 5% duplicate 2% reorder 5%")
        with n.pcap("wire", path):
            assert transfer(n, pattern(200_000)) == pattern(200_000)
        return path.read_bytes()


def test_tcp_replays_bit_for_bit(net: Network, tmp_path) -> None:  # noqa: ANN001
    one = captured_transfer(5, tmp_path / "1.pcap")
    assert one == captured_transfer(5, tmp_path / "2.pcap")
    assert one != captured_transfer(6, tmp_path / "3.pcap")
