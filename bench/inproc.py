"""In-process workloads (no tap, no root): kernel boot and kernel-to-kernel TCP bulk.

    python -m bench.inproc boot [--count N] [--seconds S]
    python -m bench.inproc k2k --size BYTES --mtu MTU [--max-seconds S] [--family 4|6]

Each prints one JSON object. The benchmark runs them in a subprocess with a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import itertools
import json
import os
import statistics
import time
from typing import Any

_seg = itertools.count(1)


def boot(count: int, seconds: float) -> dict[str, Any]:
    """Boot time (each kernel halted after) and kernels booted per second into one process
    (kept alive, as a process hosting many kernels does, then halted)."""
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=False)
    rump_init(clock="real", seed=1, scheduler=sched).halt()  # warm imports
    times = []
    for i in range(count):
        t = time.perf_counter()
        k = rump_init(clock="real", seed=i, scheduler=sched)
        times.append(time.perf_counter() - t)
        k.halt()
    kept: list[Any] = []
    gc.collect()
    t0 = time.perf_counter()
    while len(kept) < count * 20 and time.perf_counter() - t0 < seconds:
        kept.append(rump_init(clock="real", seed=len(kept), scheduler=sched))
    dt = time.perf_counter() - t0
    n = len(kept)
    for k in kept:
        k.halt()
    return {"boot_ms": statistics.median(times) * 1e3, "boot_p99_ms": sorted(times)[int(0.99 * (len(times) - 1))] * 1e3,
            "boots": count, "kernels_kept": n, "seconds": dt, "boots_per_s": n / dt}


ADDRS = {4: ("10.96.0.1", "10.96.0.2", 24), 6: ("fc00:96::1", "fc00:96::2", 64)}


def k2k(size: int, mtu: int, max_seconds: float, family: int = 4) -> dict[str, Any]:
    """Two kernels on an in-process wire (one scheduler, real clock): bulk TCP a -> b,
    over IPv4 or IPv6 (``family``)."""
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=False)
    seg = f"bench-k2k-{os.getpid()}-{next(_seg)}"
    a = rump_init(clock="real", seed=1, scheduler=sched)
    b = rump_init(clock="real", seed=2, scheduler=sched)
    a_addr, b_addr, plen = ADDRS[family]
    for k, addr in ((a, a_addr), (b, b_addr)):
        k.config.if_create("wire0")
        k.config.if_set_linkstr("wire0", seg)
        k.config.if_set_mtu("wire0", mtu)
        if family == 6:
            k.ifconfig("wire0", "inet6", f"{addr}/{plen}")
        else:
            k.config.addr_add("wire0", f"{addr}/{plen}")
        k.config.if_up("wire0")
    for k in (a, b):
        k.ifconfig("-w", "10")    # IPv6's DAD done: the addresses are usable
    chunk = bytes(range(256)) * 1024  # 256 KB
    want = hashlib.sha256()
    off = 0
    while off < size:
        want.update(chunk[: min(len(chunk), size - off)])
        off += len(chunk)

    async def run() -> dict[str, Any]:
        from rumpnet import streams

        done: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

        async def sink(reader: Any, writer: Any) -> None:
            h = hashlib.sha256()
            n = 0
            while True:
                d = await reader.read(256 * 1024)
                if not d:
                    break
                n += len(d)
                h.update(d)
            if not done.done():
                done.set_result((n, h.hexdigest()))
            writer.close()

        server = await streams.start_server(b, sink, b_addr, 5001)
        t0 = time.perf_counter()
        c0 = time.process_time()
        _r, w = await streams.open_connection(a, b_addr, 5001)
        off = 0
        while off < size:
            piece = chunk[: min(len(chunk), size - off)]
            w.write(piece)
            await w.drain()
            off += len(piece)
        w.write_eof()
        n, sha = await asyncio.wait_for(done, max_seconds)
        dt = time.perf_counter() - t0
        cpu = time.process_time() - c0
        w.close()
        server.close()
        return {"bytes": n, "seconds": dt, "MBps": n / dt / 1e6, "cpu_seconds": cpu, "verified": n == size and sha == want.hexdigest(),
                "mtu": mtu, "family": family}

    try:
        r = sched.run_coroutine(run())
    except TimeoutError:
        r = {"error": f"timeout after {max_seconds}s"}
    finally:
        a.halt()
        b.halt()
    if "verified" in r and not r["verified"]:
        r = {"error": "sha256 mismatch", **r}
    return r


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["boot", "k2k"])
    ap.add_argument("--count", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--size", type=int, default=20_000_000)
    ap.add_argument("--mtu", type=int, default=1500)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--family", type=int, choices=[4, 6], default=4)
    a = ap.parse_args()
    try:
        r = boot(a.count, a.seconds) if a.what == "boot" else k2k(a.size, a.mtu, a.max_seconds, a.family)
    except (OSError, ValueError, RuntimeError) as e:
        r = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
