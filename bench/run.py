"""``python -m bench``: every workload against every stack, one table, JSON and a plot.

See bench/README.md. Stacks: rumpnet-offload, rumpnet-plain, linux, pytcp, pmd-pytcp.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bench import report
from bench.stacks import (
    PREFIX,
    ROOT,
    StackUnavailable,
    Target,
    linux_stack,
    log,
    peer_stack,
    rumpnet_stack,
    virtif_offload,
)

STACKS = ["rumpnet-offload", "rumpnet-plain", "linux", "pytcp", "pmd-pytcp"]
TAP_WORKLOADS4 = ["tcp_bulk_in", "tcp_bulk_out", "tcp_rtt", "tcp_cps", "udp_rtt", "udp_rate", "ping_rtt"]
# Each tap workload over IPv6 too ("tcp_bulk_in6"), against the same server in the same
# run, its row beside the IPv4 one: Linux over IPv6 is the peer of rumpnet over IPv6.
IP6_SUFFIX = "6"
TAP_WORKLOADS = [w for w4 in TAP_WORKLOADS4 for w in (w4, w4 + IP6_SUFFIX)]
INPROC_WORKLOADS = ["boot", "k2k_bulk"]
WORKLOADS = TAP_WORKLOADS + INPROC_WORKLOADS
CLIENT = os.path.join(ROOT, "bench", "client.py")


@dataclass
class Sizes:
    bulk: int
    rtt_count: int
    cps_count: int
    cps_seconds: float
    udp_seconds: float
    ping_count: int
    ping_interval: float
    k2k: int
    boot_count: int
    boot_seconds: float
    max_seconds: float
    repeat: int = 1


FULL = Sizes(bulk=25_000_000, rtt_count=5000, cps_count=5000, cps_seconds=8, udp_seconds=5, ping_count=500,
             ping_interval=0.005, k2k=25_000_000, boot_count=200, boot_seconds=3, max_seconds=150, repeat=3)
QUICK = Sizes(bulk=2_000_000, rtt_count=200, cps_count=100, cps_seconds=1.5, udp_seconds=1, ping_count=20,
              ping_interval=0.01, k2k=2_000_000, boot_count=10, boot_seconds=0.5, max_seconds=30)


class Interrupted(BaseException):
    pass


_MAIN_PID = os.getpid()


def _on_signal(signum: int, _frame: Any) -> None:
    if os.getpid() != _MAIN_PID:
        # A child forked by a library (pyroute2 forks to create namespaces and ends the
        # child with SIGTERM): act as if we had no handler.
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise Interrupted(signal.Signals(signum).name)


def na(reason: str) -> dict[str, Any]:
    return {"na": reason}


def ok(metrics: dict[str, float], detail: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"metrics": metrics, "detail": detail or {}}


# -- tap workloads (client in the namespace) ---------------------------------------------
def client(t: Target, workload: str, args: list[str], sz: Sizes) -> dict[str, Any]:
    from rumpnet.testing.netns import ns_run

    argv = [sys.executable, CLIENT, workload, t.host, *args, "--max-seconds", str(sz.max_seconds)]
    try:
        r = ns_run(t.ns, argv, timeout=sz.max_seconds + 30)
    except subprocess.TimeoutExpired:
        return {"error": f"client timed out after {sz.max_seconds + 30:.0f}s"}
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (ValueError, IndexError):
        return {"error": f"client failed: {r.stderr.strip()[-300:]}"}


def _from(res: dict[str, Any], keys: dict[str, str]) -> dict[str, Any]:
    if "error" in res:
        return na(f"failed: {res['error']}")
    return ok({name: float(res[k]) for name, k in keys.items()}, res)


def w_tcp_bulk_in(t: Target, sz: Sizes) -> dict[str, Any]:
    return _from(client(t, "bulk_in", ["--size", str(sz.bulk)], sz), {"MB/s": "MBps"})


def w_tcp_bulk_out(t: Target, sz: Sizes) -> dict[str, Any]:
    return _from(client(t, "bulk_out", ["--size", str(sz.bulk)], sz), {"MB/s": "MBps"})


def w_tcp_rtt(t: Target, sz: Sizes) -> dict[str, Any]:
    return _from(client(t, "tcp_rtt", ["--count", str(sz.rtt_count), "--msg", "64"], sz),
                 {"median us": "median_us", "p99 us": "p99_us"})


def w_tcp_cps(t: Target, sz: Sizes) -> dict[str, Any]:
    s = Sizes(**{**sz.__dict__, "max_seconds": sz.cps_seconds})
    return _from(client(t, "tcp_cps", ["--count", str(sz.cps_count)], s), {"conn/s": "per_s"})


def w_udp_rtt(t: Target, sz: Sizes) -> dict[str, Any]:
    return _from(client(t, "udp_rtt", ["--count", str(sz.rtt_count), "--msg", "64"], sz),
                 {"median us": "median_us", "p99 us": "p99_us"})


def w_udp_rate(t: Target, sz: Sizes) -> dict[str, Any]:
    return _from(client(t, "udp_rate", ["--seconds", str(sz.udp_seconds), "--window", "16", "--msg", "64"], sz),
                 {"dgram/s": "per_s"})


_TIME = re.compile(r"icmp_seq=(\d+) .*time=([\d.]+) ms")


def w_ping_rtt(t: Target, sz: Sizes) -> dict[str, Any]:
    from rumpnet.testing.netns import ns_run

    argv = ["ping", "-n", "-c", str(sz.ping_count), "-i", str(sz.ping_interval), "-W", "1", "-s", "56", t.host]
    try:
        r = ns_run(t.ns, argv, timeout=sz.ping_count * (sz.ping_interval + 0.01) + 30)
    except subprocess.TimeoutExpired:
        return na("failed: ping timed out")
    rtts = [float(m.group(2)) * 1e3 for m in _TIME.finditer(r.stdout)]
    if not rtts:
        return na(f"failed: no replies ({r.stdout.strip()[-200:]} {r.stderr.strip()[-200:]})")
    rtts.sort()
    return ok({"median us": statistics.median(rtts), "p99 us": rtts[int(0.99 * (len(rtts) - 1))]},
              {"n": len(rtts), "asked": sz.ping_count, "min_us": rtts[0]})


TAP_FUNCS: dict[str, Callable[[Target, Sizes], dict[str, Any]]] = {
    "tcp_bulk_in": w_tcp_bulk_in, "tcp_bulk_out": w_tcp_bulk_out, "tcp_rtt": w_tcp_rtt, "tcp_cps": w_tcp_cps,
    "udp_rtt": w_udp_rtt, "udp_rate": w_udp_rate, "ping_rtt": w_ping_rtt,
}


# -- in-process workloads ------------------------------------------------------------------
def inproc(args: list[str], timeout: float) -> dict[str, Any]:
    p = subprocess.Popen([sys.executable, "-m", "bench.inproc", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    finally:
        _kill(p)
    try:
        return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]
    except (ValueError, IndexError):
        return {"error": f"failed: {err.strip()[-300:]}"}


def _kill(p: subprocess.Popen[str]) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(5)


def w_boot(sz: Sizes) -> dict[str, Any]:
    r = inproc(["boot", "--count", str(sz.boot_count), "--seconds", str(sz.boot_seconds)], 120)
    return _from(r, {"boot ms": "boot_ms", "boots/s": "boots_per_s"})


def w_k2k(sz: Sizes) -> dict[str, Any]:
    """The same transfer over IPv4 and IPv6, ``sz.repeat + 2`` rounds (one in quick mode;
    each round an IPv4 run then an IPv6 one, back to back, so each pair's ratio compares
    figures taken under the same load). MB/s: the median of the rounds; ``ip6/ip4``: the median of the pairs'
    wall-clock ratios; ``ip6/ip4 cpu``: the same of their CPU seconds over the transfer
    (IPv4's over IPv6's: > 1 means IPv6 did it with less CPU), the steadier figure on a
    loaded machine. Every run is in the detail."""
    metrics: dict[str, float] = {}
    detail: dict[str, Any] = {}
    rounds = sz.repeat + 2 if sz.repeat > 1 else 1
    for label, mtu in (("mtu1500", 1500), ("mtu64k", 65521)):  # 65535 less the Ethernet header
        runs: dict[int, list[dict[str, Any]]] = {4: [], 6: []}
        for i in range(rounds):
            log(f"k2k_bulk: {label} round {i + 1}/{rounds} ...")
            for family in (4, 6):
                runs[family].append(inproc(["k2k", "--size", str(sz.k2k), "--mtu", str(mtu), "--max-seconds",
                                            str(sz.max_seconds), "--family", str(family)], sz.max_seconds + 30))
        detail[str(mtu)], detail[f"{mtu}ip6"] = runs[4], runs[6]
        metrics.update(_k2k_metrics(label, runs))
    if not metrics:
        return na(f"failed: {detail}")
    return ok(metrics, detail)


def _k2k_metrics(label: str, runs: dict[int, list[dict[str, Any]]]) -> dict[str, float]:
    """Medians of one MTU's rounds (see :func:`w_k2k`); a failed run leaves its pair out."""
    metrics: dict[str, float] = {}
    for family, suffix in ((4, ""), (6, " ip6")):
        rates = [float(r["MBps"]) for r in runs[family] if "error" not in r]
        if rates:
            metrics[f"MB/s {label}{suffix}"] = statistics.median(rates)
    pairs = [(r4, r6) for r4, r6 in zip(runs[4], runs[6]) if "error" not in r4 and "error" not in r6]
    if pairs:
        metrics[f"ip6/ip4 {label}"] = statistics.median(float(r6["MBps"]) / float(r4["MBps"]) for r4, r6 in pairs)
        metrics[f"ip6/ip4 cpu {label}"] = statistics.median(
            float(r4["cpu_seconds"]) / float(r6["cpu_seconds"]) for r4, r6 in pairs)
    return metrics


# -- the run ---------------------------------------------------------------------------------
def repeated(name: str, w: str, target: Target, sz: Sizes) -> dict[str, Any]:
    """Run a tap workload ``sz.repeat`` times (once if a run takes over 15 s) and keep the
    median of each metric; the runs are in ``detail["runs"]``."""
    runs: list[dict[str, Any]] = []
    for i in range(sz.repeat):
        log(f"{name}: {w} ({i + 1}/{sz.repeat}) ...")
        t0 = time.monotonic()
        try:
            if w in TAP_FUNCS:
                res = TAP_FUNCS[w](target, sz)
            else:               # the IPv6 row: the same workload to the server's IPv6 address
                res = TAP_FUNCS[w.removesuffix(IP6_SUFFIX)](target.over_ip6(), sz)
        except StackUnavailable as e:
            res = na(str(e))
        dt = time.monotonic() - t0
        log(f"{name}: {w} -> {report.brief(res)} ({dt:.1f}s)")
        runs.append(res)
        failed = "na" in res and str(res["na"]).startswith("failed")
        # A run that failed quickly (PyTCP 2.7.6's echo timing out after 10 s) is tried
        # again, so that one bad run does not blank the row; a slow failure (a 20 s
        # stall, a max_seconds timeout) is not repeated, nor is "not available".
        if dt > 15 or ("na" in res and not failed):
            break
    good = [r for r in runs if "metrics" in r]
    if not good:
        return runs[0]
    if len(runs) == 1:
        return runs[0]
    metrics = {m: statistics.median(r["metrics"][m] for r in good) for m in good[0]["metrics"]}
    note = f"median of {len(good)} runs"
    if len(good) < len(runs):
        note += f"; {len(runs) - len(good)} failed ({'; '.join(str(r['na']) for r in runs if 'na' in r)})"
    return ok(metrics, {"runs": runs, "combined": note})


def run_stack(name: str, index: int, workloads: list[str], sz: Sizes, quick: bool,
              offload: tuple[str | None, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    results: dict[str, Any] = {}
    info: dict[str, Any] = {}
    tap_w = [w for w in workloads if w in TAP_WORKLOADS]
    in_w = [w for w in workloads if w in INPROC_WORKLOADS]
    for w in in_w:
        if name == "rumpnet-plain":
            log(f"{name}: {w} ...")
            t0 = time.monotonic()
            results[w] = w_boot(sz) if w == "boot" else w_k2k(sz)
            log(f"{name}: {w} -> {report.brief(results[w])} ({time.monotonic() - t0:.1f}s)")
        elif name == "rumpnet-offload":
            results[w] = na("in-process: no tap involved, see rumpnet-plain")
        elif name == "linux":
            results[w] = na("no Linux kernel to boot in-process" if w == "boot"
                            else "in-process kernel-to-kernel applies to rump kernels only")
        else:
            results[w] = na("one stack per process (module-level state): cannot boot several or wire two in-process")
    if not tap_w:
        return results, info
    try:
        if name in ("rumpnet-plain", "rumpnet-offload"):
            mode = None
            if name == "rumpnet-offload":
                mode, why = offload
                info["virtif"] = why
                if mode is None:
                    raise StackUnavailable(why)
            cm: Any = rumpnet_stack(index, mode)
        elif name == "linux":
            cm = linux_stack(index)
        else:
            cm = peer_stack(name, index, create_venv=not quick)
        log(f"{name}: bringing up ...")
        with cm as target:
            info.update(target.info)
            for w in tap_w:
                results[w] = repeated(name, w, target, sz)
            report.add_ip6_ratios(results, TAP_WORKLOADS4, IP6_SUFFIX)
    except StackUnavailable as e:
        log(f"{name}: n/a: {e}")
        info["unavailable"] = str(e)
        for w in tap_w:
            results.setdefault(w, na(str(e)))
    return results, info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description="rumpnet benchmarks against Linux and PyTCP")
    ap.add_argument("--quick", action="store_true", help="small sizes, a few seconds per stack (CI)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--plot", metavar="FILE", help="write a PNG plot (matplotlib, Agg)")
    ap.add_argument("--only", metavar="WORKLOADS", help=f"comma-separated subset of {','.join(WORKLOADS)}")
    ap.add_argument("--stacks", metavar="STACKS", help=f"comma-separated subset of {','.join(STACKS)}")
    a = ap.parse_args(argv)

    workloads = WORKLOADS if not a.only else [w.strip() for w in a.only.split(",") if w.strip()]
    stacks = STACKS if not a.stacks else [s.strip() for s in a.stacks.split(",") if s.strip()]
    for w in workloads:
        if w not in WORKLOADS:
            ap.error(f"unknown workload {w!r}; choose from {', '.join(WORKLOADS)}")
    for s in stacks:
        if s not in STACKS:
            ap.error(f"unknown stack {s!r}; choose from {', '.join(STACKS)}")
    sz = QUICK if a.quick else FULL

    from rumpnet.testing.netns import cleanup_stale, have_netns_privileges

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    results: dict[str, dict[str, Any]] = {}
    infos: dict[str, dict[str, Any]] = {}
    started = time.time()
    load0 = list(os.getloadavg())
    try:
        can, why = (True, "")
        if any(w in TAP_WORKLOADS for w in workloads):
            removed = cleanup_stale(PREFIX)
            if removed:
                log(f"removed leftovers of killed runs: {', '.join(removed)}")
            can, why = have_netns_privileges()
            cleanup_stale("rnchk")
        offload = virtif_offload()
        for i, name in enumerate(stacks):
            if not can:
                run_w = [w for w in workloads if w in INPROC_WORKLOADS]
                res, info = run_stack(name, 10 + i, run_w, sz, a.quick, offload)
                for w in workloads:
                    res.setdefault(w, na(f"needs root + netns: {why}"))
            else:
                res, info = run_stack(name, 10 + i, workloads, sz, a.quick, offload)
            results[name] = {w: res[w] for w in workloads}
            infos[name] = info
    except Interrupted as e:
        log(f"interrupted ({e}); cleaned up")
        return 130
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    doc = {
        "meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                 "seconds": round(time.time() - started, 1), "quick": a.quick, "host": platform.node(),
                 "python": platform.python_version(), "cpus": os.cpu_count(), "kernel": platform.release(),
                 "sizes": sz.__dict__, "loadavg_start": load0, "loadavg_end": list(os.getloadavg())},
        "stacks": infos,
        "workloads": workloads,
        "units": report.UNITS,
        "results": results,
    }
    report.add_ratios(doc)
    print(report.table(doc))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {a.json}")
    if a.plot:
        try:
            report.plot(doc, a.plot)
            log(f"wrote {a.plot}")
        except ImportError as e:
            log(f"no plot: {e} (pip install -e '.[bench]')")
    return 0


if __name__ == "__main__":
    sys.exit(main())
