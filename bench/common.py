"""Helpers shared by the benchmark modules."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
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
