"""rumpnet.streams over IPv6: start_server on an IPv6 address listens on AF_INET6 and
open_connection reaches it (the bench's k2k_bulk ip6 rows use them), on virtual time.
An AF_INET socket could not bind or reach ``::1``: the exchange itself shows the family."""

from __future__ import annotations

from typing import Any

from rumpkern import rump_init
from rumpkern.sched import Scheduler
from rumpnet import streams


def test_echo_over_loopback_v6_and_v4() -> None:
    sched = Scheduler(virtual=True)
    k = rump_init(clock="virtual", seed=3, scheduler=sched)
    peers: list[Any] = []

    async def run(host: str, port: int) -> bytes:
        async def echo(reader: Any, writer: Any) -> None:
            peers.append(writer.get_extra_info("peername"))
            writer.write(await reader.read(100))
            await writer.drain()
            writer.close()

        server = await streams.start_server(k, echo, host, port)
        r, w = await streams.open_connection(k, host, port)
        w.write(b"hello " + host.encode())
        await w.drain()
        got = await r.read(100)
        w.close()
        server.close()
        return got

    try:
        got6 = sched.run_coroutine(run("::1", 7007))
        got4 = sched.run_coroutine(run("127.0.0.1", 7007))
    finally:
        k.halt()
        sched.loop.close()
    assert got6 == b"hello ::1" and got4 == b"hello 127.0.0.1"
    assert [p[0] for p in peers] == ["::1", "127.0.0.1"]
