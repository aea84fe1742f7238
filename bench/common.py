"""Helpers shared by the benchmark modules."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def signals_raise() -> Iterator[None]:
    """SIGTERM (and SIGINT) raise in the main thread, so ``finally`` blocks clean up
    namespaces, taps and processes when a run is interrupted."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    owner = os.getpid()

    def handler(signum: int, _frame: Any) -> None:
        if os.getpid() != owner:  # a forked child (pyroute2 forks for netns sockets): die as by default
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt(f"signal {signum}")

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def micro_main(prog: str, doc: str | None, quick_help: str, run: Any, format_table: Any,
               argv: list[str] | None = None) -> int:
    """The command line every ``bench.micro_*`` module shares: ``[--quick] [--json FILE]``."""
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=(doc or "").split("\n")[0])
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--json", metavar="FILE", help="write the result dict as JSON")
    a = p.parse_args(sys.argv[1:] if argv is None else argv)
    try:
        res = run(quick=a.quick)
    except KeyboardInterrupt as e:
        print(f"interrupted ({e or 'SIGINT'}); cleaned up", file=sys.stderr)
        return 130
    print(format_table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


def pctl(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def time_op(fn: Callable[[], Any], n: int, warmup: int, max_wall: float = 20.0) -> dict[str, float]:
    """Time ``fn`` n times (after ``warmup`` calls; at most ``max_wall`` seconds): median,
    p99 and mean in microseconds, calls made, calls per second."""
    for _ in range(warmup):
        fn()
    pc = time.perf_counter
    out: list[float] = []
    deadline = pc() + max_wall
    t_start = pc()
    for _ in range(n):
        t0 = pc()
        fn()
        out.append(pc() - t0)
        if t0 > deadline:
            break
    total = pc() - t_start
    us = [x * 1e6 for x in out]
    return {"median_us": statistics.median(us), "p99_us": pctl(us, 0.99), "mean_us": statistics.fmean(us),
            "calls": float(len(us)), "per_s": len(us) / total}
