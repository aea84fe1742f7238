"""``python -m bench.lossy``: bulk TCP through an impaired path, with Linux as the yardstick.

See bench/README.md, "Bulk TCP through an impaired path". The path::

    ns A: bridge 10.96.1.0/24                               ns B
      Linux 10.96.1.1 (serve.py --host-stack)
      rumpnet 10.96.1.3 (serve.py --tap)  --br--  tap  [router kernel]  tap --  Linux 10.96.2.1
                                                       netem on both egresses     (bench/client.py)

A rump kernel (``bench/peers/impaired_router.py``, its own process) routes between two
host taps with ``netem delay D loss P% seed S`` on both of its egresses, re-installed with
the same seed before every transfer. The client (always Linux, in ns B) fetches N bytes
from chargen (the server sends: "out") and sends N bytes to the sink (the server
receives: "in"), SHA-256 checked; the servers are Linux (ns A's own stack) and rumpnet
(a kernel on a tap bridged into ns A). Goodput is bytes over the client's time from
connect to EOF (out) or to the sink's answer (in). The router's CPU time over each
transfer is reported, to show it is not the bottleneck.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.run import Interrupted, _on_signal
from bench.stacks import ROOT, SERVE, StackUnavailable, _read_ready, log, wait_reachable, wait_tcp

PREFIX = "rbl"
CLIENT = os.path.join(ROOT, "bench", "client.py")
ROUTER = os.path.join(ROOT, "bench", "peers", "impaired_router.py")
NET_A, NET_B = "10.96.1", "10.96.2"
LINUX_A, RUMP_A, ROUTER_A, ROUTER_B, LINUX_B = (f"{NET_A}.1", f"{NET_A}.3", f"{NET_A}.254",
                                                 f"{NET_B}.254", f"{NET_B}.1")
SERVERS = {"linux": LINUX_A, "rumpnet": RUMP_A}
DIRECTIONS = {"out": "bulk_out", "in": "bulk_in"}   # seen from the server
TARGET_RATIO = 0.8


@dataclass
class Path:
    ns_a: Any
    ns_b: Any
    router: Any
    servers: dict[str, Any]


def _bridge_add(ns: str, name: str, addr: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns, flags=0) as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        idx = ipr.link_lookup(ifname=name)[0]
        ipr.addr("add", index=idx, address=addr, prefixlen=24)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", gateway=ROUTER_A, oif=idx)


def _enslave(ns: str, port: str, bridge: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=ns, flags=0) as ipr:
        br = ipr.link_lookup(ifname=bridge)[0]
        idx = ipr.link_lookup(ifname=port)[0]
        ipr.link("set", index=idx, master=br, state="up")


class Router:
    """The router process: one JSON command, one JSON answer."""

    def __init__(self, proc: Any) -> None:
        self.proc = proc

    def ask(self, line: str) -> dict[str, Any]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        reply = self.proc.stdout.readline()
        if not reply:
            raise StackUnavailable(f"router exited: {self.proc.popen.stderr.read()[-500:]}")
        msg: dict[str, Any] = json.loads(reply)
        if "error" in msg:
            raise StackUnavailable(f"router: {msg['error']}")
        return msg


@contextlib.contextmanager
def impaired_path(stacks: list[str], sysctls: list[str]) -> Iterator[Path]:
    """Namespaces A and B, the router between them and the servers in A; all removed on exit."""
    from rumpnet.testing.netns import NetNS, move_link_to_netns, ns_configure, ns_popen, unique_ifname
    from rumpnet.virtif.hostif import off_loop

    with contextlib.ExitStack() as stack:
        ns_a = stack.enter_context(NetNS(PREFIX))
        ns_b = stack.enter_context(NetNS(PREFIX))
        bridge, tap_a, tap_b, tap_s = (unique_ifname(PREFIX) for _ in range(4))
        off_loop(_bridge_add, ns_a.name, bridge, LINUX_A)
        proc = stack.enter_context(ns_popen(ns_a, [sys.executable, "-u", ROUTER, "--tap-a", tap_a, "--addr-a",
                                                   f"{ROUTER_A}/24", "--tap-b", tap_b, "--addr-b",
                                                   f"{ROUTER_B}/24"], stdin=True))
        _read_ready(proc, 30)
        off_loop(_enslave, ns_a.name, tap_a, bridge)
        move_link_to_netns(tap_b, ns_b, from_ns=ns_a)
        ns_configure(ns_b, tap_b, f"{LINUX_B}/24", routes=[("default", ROUTER_B)])
        servers: dict[str, Any] = {}
        if "linux" in stacks:
            servers["linux"] = stack.enter_context(ns_popen(ns_a, [sys.executable, "-u", SERVE, "--host-stack"]))
            _read_ready(servers["linux"], 30)
        if "rumpnet" in stacks:
            argv = [sys.executable, "-u", SERVE, "--tap", tap_s, "--address", f"{RUMP_A}/24", "--gateway",
                    ROUTER_A, "--seed", "1"]
            for s in sysctls:
                argv += ["--sysctl", s]
            servers["rumpnet"] = stack.enter_context(ns_popen(ns_a, argv))
            _read_ready(servers["rumpnet"], 30)
            off_loop(_enslave, ns_a.name, tap_s, bridge)
        for name in servers:
            wait_reachable(ns_b, SERVERS[name])
            wait_tcp(ns_b, SERVERS[name])
        yield Path(ns_a, ns_b, Router(proc), servers)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / tick


def transfer(path: Path, server: str, direction: str, size: int, netem: str, limit: float) -> dict[str, Any]:
    from rumpnet.testing.netns import ns_run

    path.router.ask(f"netem {netem}")
    before = path.router.ask("stats")
    srv_cpu0 = _proc_cpu(path.servers[server].pid)
    argv = [sys.executable, CLIENT, DIRECTIONS[direction], SERVERS[server], "--size", str(size),
            "--max-seconds", str(limit)]
    try:
        r = ns_run(path.ns_b, argv, timeout=limit + 30)
        res: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    except subprocess.TimeoutExpired:
        res = {"error": f"client timed out after {limit + 30:.0f}s"}
    except (ValueError, IndexError):
        res = {"error": f"client failed: {r.stderr.strip()[-300:]}"}
    after = path.router.ask("stats")
    path.router.ask("netem delay 0ms")   # no loss between runs (the next run re-seeds)
    seconds = float(res.get("seconds", 0.0)) or 1e-9
    res["router_cpu"] = (after["cpu_s"] - before["cpu_s"]) / seconds
    res["server_cpu"] = (_proc_cpu(path.servers[server].pid) - srv_cpu0) / seconds
    res["netem"] = {ifn: {k: v - (before["egress"][ifn] or {}).get(k, 0) for k, v in (c or {}).items()
                          if k in ("packets", "drop_loss", "drops")}
                    for ifn, c in after["egress"].items()}
    return res


def run(stacks: list[str], losses: list[float], delay: str, size: int, seed: int, limit: float,
        sysctls: list[str]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with impaired_path(stacks, sysctls) as path:
        for loss in losses:
            netem = f"delay {delay} loss {loss:g}% seed {seed}"
            for direction in DIRECTIONS:
                for server in stacks:
                    key = f"loss {loss:g}% {direction}"
                    log(f"{server}: {key} ({netem}) ...")
                    t0 = time.monotonic()
                    res = transfer(path, server, direction, size, netem, limit)
                    log(f"{server}: {key} -> {res.get('MBps', res.get('error'))} MB/s "
                        f"(router CPU {res['router_cpu']:.0%}, {time.monotonic() - t0:.1f}s)")
                    results.setdefault(key, {})[server] = res
    return results


def table(doc: dict[str, Any]) -> str:
    stacks = doc["meta"]["stacks"]
    lines = [f"Bulk TCP through a rumpnet router with netem ({doc['meta']['netem']}) on both egresses; "
             f"{doc['meta']['size'] / 1e6:g} MB, SHA-256 checked; load average {doc['meta']['loadavg_start']}",
             "direction is seen from the server: out = server sends to Linux, in = Linux sends to the server",
             f"{'path':<18}" + "".join(f"{s + ' MB/s':>16}" for s in stacks)
             + ("     ratio" if len(stacks) > 1 else "") + "   router CPU (max)"]
    met = []
    for key, row in doc["results"].items():
        cells = []
        for s in stacks:
            r = row.get(s, {})
            cells.append(f"{r['MBps']:>16.3f}" if "MBps" in r else f"{'failed':>16}")
        ratio = ""
        lin, rn = row.get("linux", {}), row.get("rumpnet", {})
        if "MBps" in lin and "MBps" in rn:
            q = rn["MBps"] / lin["MBps"]
            ratio = f"{q:>9.2f}x"
            met.append((key, q))
        cpu = max((r.get("router_cpu", 0.0) for r in row.values()), default=0.0)
        lines.append(f"{key:<18}" + "".join(cells) + f"{ratio:>10}" + f"{cpu:>12.0%}")
    if met:
        lines.append("")
        lines.append("Targets (issue 13), from this run:")
        worst = min(met, key=lambda m: m[1])
        ok = worst[1] >= TARGET_RATIO
        lines.append(f"  [{'met' if ok else 'NOT met'}] rumpnet >= {TARGET_RATIO}x Linux's goodput in both "
                     f"directions: weakest {worst[1]:.2f}x ({worst[0]})")
    for key, row in doc["results"].items():
        for s, r in row.items():
            if "error" in r:
                lines.append(f"{s}: {key}: {r['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lossy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 MB per transfer, 1%% loss only (a functional run)")
    ap.add_argument("--size", type=int, default=50_000_000, help="bytes per transfer (default 50 MB)")
    ap.add_argument("--loss", default="1,3", help="comma-separated loss percentages (default 1,3)")
    ap.add_argument("--delay", default="10ms", help="netem delay on each egress (default 10ms)")
    ap.add_argument("--seed", type=int, default=7, help="netem seed, the same for every transfer")
    ap.add_argument("--stacks", default="linux,rumpnet", help="servers: linux, rumpnet (default both)")
    ap.add_argument("--sysctl", action="append", default=[], metavar="NAME=VALUE",
                    help="for the rumpnet kernel (default: net.inet.tcp.congctl=cubic, as Linux)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="limit per transfer")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    try:
        losses = [float(x) for x in a.loss.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--loss {a.loss!r}: want comma-separated percentages")
    stacks = [s.strip() for s in a.stacks.split(",") if s.strip()]
    for s in stacks:
        if s not in SERVERS:
            ap.error(f"unknown stack {s!r}; choose from {', '.join(SERVERS)}")
    size = 2_000_000 if a.quick and a.size == 50_000_000 else a.size
    if a.quick and a.loss == "1,3":
        losses = [1.0]
    sysctls = a.sysctl or ["net.inet.tcp.congctl=cubic"]

    from rumpnet.testing.netns import cleanup_stale, have_netns_privileges

    can, why = have_netns_privileges()
    if not can:
        print(f"bench.lossy: n/a: {why}", file=sys.stderr)
        return 1
    cleanup_stale(PREFIX)
    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    load0 = list(os.getloadavg())
    started = time.time()
    try:
        results = run(stacks, losses, a.delay, size, a.seed, a.max_seconds, sysctls)
    except Interrupted as e:
        log(f"interrupted ({e}); cleaned up")
        return 130
    except StackUnavailable as e:
        log(f"n/a: {e}")
        return 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    doc = {"meta": {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
                    "seconds": round(time.time() - started, 1), "size": size, "stacks": stacks,
                    "netem": f"delay {a.delay} loss {'/'.join(f'{x:g}' for x in losses)}% seed {a.seed}",
                    "sysctl": sysctls, "loadavg_start": load0, "loadavg_end": list(os.getloadavg()),
                    "cpus": os.cpu_count()},
           "results": results}
    print(table(doc))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
        log(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
