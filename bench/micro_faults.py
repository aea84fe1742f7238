"""Micro-benchmark: what the fault-injection harness costs on an in-process wire (issue 6).

Two kernels on a fresh virtual-time scheduler share an in-process wire segment. Kernel A
sends pre-built Ethernet frames (an unused ethertype, addressed to B's MAC) with
``ifp.transmit_frame``; B counts them in ``ether_input`` and drops them (no protocol), so
what is timed is the link path, not the stack:

    transmit_frame -> [egress qdisc] -> link_transmit -> wire -> call_soon -> ether_input

on three configurations, interleaved and repeated; a figure is the best of the runs (as
``timeit`` reports: the machine's other load only ever slows a run down), and every run is
in ``runs``:

* ``none``: no qdisc on the interface at all;
* ``idle``: a ``QdiscRunner(Netem(NetemParams()))`` on egress with every impairment off
  (its pass-through path);
* ``impaired``: the same runner with ``delay 1ms loss 1%`` (queued in netem's tfifo,
  released by the watchdog timer on virtual time).

The sender paces itself on virtual time (``batch`` frames, then a 0.1 ms virtual sleep) so
that the 1 ms delay never overflows netem's 1000-frame limit; every configuration gets the
same pacing. Figures are frames per *wall-clock* second.

    python -m bench.micro_faults [--quick] [--json FILE]
"""

from __future__ import annotations

import asyncio
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.common import micro_main, signals_raise

MODES = ("none", "idle", "impaired")
ETHERTYPE_UNUSED = b"\x88\xb5"  # IEEE 802 local experimental ethertype 1: no handler
TICK = 1e-4  # virtual seconds between batches
BATCH = 32
MAX_WALL_PER_RUN = 20.0  # seconds: a run stops early past this
_seq = itertools.count(1)


def _log(msg: str) -> None:
    print(f"[micro_faults] {msg}", file=sys.stderr, flush=True)




def _one_run(mode: str, nframes: int, frame_len: int, seed: int) -> dict[str, float]:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler
    from rumpnet.faults.netem import Netem, NetemParams
    from rumpnet.faults.runner import QdiscRunner

    sched = Scheduler(virtual=True)
    seg = f"rbmf-{os.getpid()}-{next(_seq)}"
    kernels = []
    try:
        a = rump_init(clock="virtual", seed=seed, scheduler=sched, hostname="fa")
        kernels.append(a)
        b = rump_init(clock="virtual", seed=seed, scheduler=sched, hostname="fb")
        kernels.append(b)
        for k in (a, b):
            k.config.if_create("wire0")
            k.config.if_set_linkstr("wire0", seg)
            k.config.if_up("wire0")
        ifa, ifb = a.ifnet.lookup("wire0"), b.ifnet.lookup("wire0")
        runner = None
        if mode != "none":
            params = NetemParams() if mode == "idle" else NetemParams(delay=0.001, loss=0.01)
            runner = QdiscRunner(Netem(params, a.rng), sched, ifa.link_transmit)
            sched.run(lambda: ifa.set_qdisc("egress", runner))
        frame = bytes(ifb.lladdr) + bytes(ifa.lladdr) + ETHERTYPE_UNUSED
        frame += bytes(max(0, frame_len - len(frame)))
        rx_stats: Any = ifb.stats
        before = rx_stats.ipackets

        async def pump() -> tuple[int, float]:
            tx: Callable[[bytes], None] = ifa.transmit_frame
            sent = 0
            t0 = time.perf_counter()
            deadline = t0 + MAX_WALL_PER_RUN
            while sent < nframes:
                for _ in range(BATCH):
                    tx(frame)
                sent += BATCH
                await asyncio.sleep(TICK)
                if time.perf_counter() > deadline:
                    break
            await asyncio.sleep(0.01)  # virtual: lets delayed frames out
            return sent, time.perf_counter() - t0

        sent, wall = sched.run_coroutine(pump())
        delivered = rx_stats.ipackets - before
        out: dict[str, float] = {"sent": float(sent), "delivered": float(delivered), "wall_s": wall,
                                 "fps": sent / wall, "delivered_fps": delivered / wall}
        if runner is not None:
            out["qdisc_drops"] = float(getattr(runner.stats, "drops", 0) or 0)
        return out
    finally:
        for k in reversed(kernels):
            try:
                k.halt()
            except Exception as e:  # noqa: BLE001 -- best-effort cleanup
                _log(f"halt: {e}")
        try:
            sched.loop.close()
        except Exception:  # noqa: BLE001
            pass


def run(quick: bool = False) -> dict[str, Any]:
    """Frames per second through the wire with no qdisc, an idle qdisc and an impaired one."""
    nframes = 20_000 if quick else 200_000
    reps = 1 if quick else 7
    sizes = (60,) if quick else (60, 1514)
    with signals_raise():
        runs: dict[str, list[dict[str, float]]] = {}
        for size in sizes:
            for rep in range(reps):
                for mode in MODES:  # interleaved, so drift hits every mode alike
                    r = _one_run(mode, nframes, size, seed=rep)
                    runs.setdefault(f"{mode}@{size}", []).append(r)
                    _log(f"{mode:8s} {size:5d} B  rep {rep + 1}/{reps}: {r['fps']:>10,.0f} frames/s"
                         f" ({int(r['delivered'])}/{int(r['sent'])} delivered, {r['wall_s']:.2f} s)")
    figures: dict[str, dict[str, Any]] = {}

    def med(key: str, field: str) -> float:
        return float(statistics.median(r[field] for r in runs[key]))

    def best(key: str) -> float:
        return float(max(r["fps"] for r in runs[key]))

    for size in sizes:
        sfx = "" if size == sizes[0] else f"_{size}B"
        fps = {m: best(f"{m}@{size}") for m in MODES}
        figures[f"fps_no_qdisc{sfx}"] = {"value": fps["none"], "unit": "frames/s",
                                         "what": f"{size} B frames, no qdisc (best of {reps})"}
        figures[f"fps_idle_qdisc{sfx}"] = {"value": fps["idle"], "unit": "frames/s",
                                           "what": f"{size} B frames, netem qdisc with every impairment off"}
        figures[f"fps_impaired{sfx}"] = {"value": fps["impaired"], "unit": "frames/s",
                                         "what": f"{size} B frames offered, netem delay 1ms loss 1% (virtual time)"}
        figures[f"delivered_fraction_impaired{sfx}"] = {
            "value": med(f"impaired@{size}", "delivered") / med(f"impaired@{size}", "sent"), "unit": "fraction",
            "what": "frames delivered / offered with loss 1%"}
        figures[f"idle_overhead_ratio{sfx}"] = {"value": fps["none"] / fps["idle"], "unit": "x",
                                                "what": "time per frame, idle qdisc / no qdisc (1.0 = free)"}
        figures[f"idle_overhead_per_frame{sfx}"] = {"value": (1 / fps["idle"] - 1 / fps["none"]) * 1e6, "unit": "us",
                                                    "what": "extra wall time per frame with an idle qdisc"}
        figures[f"impaired_cost_ratio{sfx}"] = {"value": fps["none"] / fps["impaired"], "unit": "x",
                                                "what": "time per frame, delay+loss qdisc / no qdisc"}
    return {
        "benchmark": "micro_faults",
        "quick": quick,
        "figures": figures,
        "meta": {"frames_per_run": nframes, "reps": reps, "sizes": list(sizes), "batch": BATCH,
                 "virtual_tick_s": TICK, "python": platform.python_version(),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "runs": runs,
    }


def format_table(res: dict[str, Any]) -> str:
    rows = [(name, f["value"], f["unit"], f.get("what", "")) for name, f in res["figures"].items()]
    w = max((len(r[0]) for r in rows), default=10)
    lines = [f"{res['benchmark']}{' (quick)' if res.get('quick') else ''}"]
    if res.get("na"):
        lines.append(f"  n/a: {res['na']}")
    for name, v, unit, what in rows:
        lines.append(f"  {name:<{w}}  {v:>14,.3f} {unit:<9} {what}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return micro_main("bench.micro_faults", __doc__, "small and fast (one repetition)", run, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())
