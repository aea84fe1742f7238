"""Micro-benchmark: in-process call latency of a real-clock kernel, by how its CPU runs.

Issue 14 gives a real-clock kernel a thread of its own (it answers the network and runs
its timers while the application is outside any call) and asks that a call still runs
kernel code directly when the CPU is free, so that in-process latency stays near what it
was when the calling thread drove the loop. The same workloads run in one process, in one
run, three ways:

* ``driven``: ``rump_init(threads=False)`` (``RUMP_THREADS=0``): the calling thread runs
  the call and, when it must wait, the loop (uvloop when installed): the mode every
  real-clock kernel had before, and still the path on a tree without ``threads=``;
* ``served``: the default now: the scheduler's thread serves the loop; a call takes the
  CPU while that thread waits in select and runs directly, handing over only what waits;
* ``handoff``: ``threads=False`` then ``serve_background()``: a serving thread on a loop
  the caller cannot share (uvloop), every call handed over (what ``serve_background``
  did before; the price of living on one's own without the direct path).

Workloads (two kernels on an in-process wire, 10.0.0.1 and 10.0.0.2):

* ``udp_rtt``: ``sendto`` a -> b, ``recvfrom`` on b, ``sendto`` back, ``recvfrom`` on a
  (one round trip, 32 bytes);
* ``tcp_echo``: 64 bytes a -> b and back on one TCP_NODELAY connection;
* ``socket_close``: ``socket(AF_INET, SOCK_DGRAM)`` + ``close`` on one kernel.

Figures: median and p99 in microseconds per operation, operations per second, and each
mode's median over ``driven``'s.

    python -m bench.micro_threads [--quick] [--json FILE]
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from bench.common import micro_main, signals_raise, time_op

MODES = ("driven", "served", "handoff")
OPS = ("udp_rtt", "tcp_echo", "socket_close")
MAX_WALL_PER_OP = 20.0
_segs = itertools.count(1)


def _has_threads_option() -> bool:
    from rumpkern import rump_init

    return "threads" in inspect.signature(rump_init).parameters


def _boot(mode: str) -> tuple[Any, Any, Any]:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    threads = {} if not _has_threads_option() else {"threads": mode == "served"}
    sched = Scheduler(virtual=False, **threads)
    seg = f"mt{os.getpid()}-{next(_segs)}"
    kernels = []
    for i, addr in enumerate(("10.0.0.1/24", "10.0.0.2/24"), 1):
        k = rump_init(hostname=f"b{i}", seed=i, scheduler=sched, **threads)
        k.config.if_create("wire0")
        k.config.if_set_linkstr("wire0", seg)
        k.config.addr_add("wire0", addr)
        k.config.if_up("wire0")
        kernels.append(k)
    if mode == "handoff":
        kernels[0].serve_background()
    return sched, kernels[0], kernels[1]


def _udp_rtt(a: Any, b: Any) -> Callable[[], None]:
    srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("0.0.0.0", 9000))
    cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    for fd, k in ((srv, b), (cli, a)):
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    msg = b"x" * 32

    def rtt() -> None:
        a.rump_sys_sendto(cli, msg, 0, ("10.0.0.2", 9000))
        data, peer = b.rump_sys_recvfrom(srv, 100, 0)
        b.rump_sys_sendto(srv, data, 0, peer)
        a.rump_sys_recvfrom(cli, 100, 0)

    return rtt


def _tcp_echo(a: Any, b: Any) -> Callable[[], None]:
    lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, ("0.0.0.0", 9001))
    b.rump_sys_listen(lfd, 1)
    cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(cli, ("10.0.0.2", 9001))
    srv, _ = b.rump_sys_accept(lfd)
    for fd, k in ((srv, b), (cli, a)):
        k.rump_sys_setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, 5.0)
    msg = b"y" * 64

    def read(k: Any, fd: int) -> bytes:
        got = b""
        while len(got) < len(msg):
            chunk = k.rump_sys_recv(fd, len(msg) - len(got), 0)
            if not chunk:
                raise ConnectionError("peer closed")
            got += chunk
        return got

    def echo() -> None:
        a.rump_sys_send(cli, msg, 0)
        b.rump_sys_send(srv, read(b, srv), 0)
        read(a, cli)

    return echo


def _socket_close(a: Any, b: Any) -> Callable[[], None]:
    def pair() -> None:
        a.rump_sys_close(a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0))

    return pair


def _measure(mode: str, n: int, warmup: int) -> dict[str, dict[str, float]]:
    sched, a, b = _boot(mode)
    try:
        out = {}
        for name, make in (("udp_rtt", _udp_rtt), ("tcp_echo", _tcp_echo), ("socket_close", _socket_close)):
            factor = 4 if name == "socket_close" else 1
            out[name] = time_op(make(a, b), n * factor, warmup, MAX_WALL_PER_OP)
        return out
    finally:
        for k in (a, b):
            with contextlib.suppress(Exception):
                k.halt()
        with contextlib.suppress(Exception):
            sched.stop_background()
        with contextlib.suppress(Exception):
            sched.loop.close()


def run(quick: bool = False) -> dict[str, Any]:
    n, warmup = (300, 50) if quick else (3000, 300)
    modes = MODES if _has_threads_option() else ("driven", "handoff")
    res: dict[str, Any] = {"n": n, "threads_option": _has_threads_option(), "modes": {}}
    with signals_raise():
        for mode in modes:
            res["modes"][mode] = _measure(mode, n, warmup)
    return res


def format_table(res: dict[str, Any]) -> str:
    modes = res["modes"]
    base = modes.get("driven", {})
    lines = [f"in-process call latency by CPU mode (n={res['n']}; median/p99 us, ops/s, median vs driven)"]
    lines.append(f"{'op':<14}" + "".join(f"{m:>34}" for m in modes))
    for op in OPS:
        cells = []
        for r in modes.values():
            x = r[op]
            ratio = x["median_us"] / base[op]["median_us"] if op in base else float("nan")
            cells.append(f"{x['median_us']:9.1f}/{x['p99_us']:8.1f} {x['per_s']:8.0f}/s x{ratio:4.2f}")
        lines.append(f"{op:<14}" + "".join(f"{c:>34}" for c in cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return micro_main("bench.micro_threads", __doc__, "300 operations per workload instead of 3000", run,
                      format_table, argv)


if __name__ == "__main__":
    raise SystemExit(main())
