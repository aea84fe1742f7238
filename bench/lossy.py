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

``--ecn`` makes the path mark instead of drop (netem's ``ecn``: a loss event marks CE on an
ECN-capable packet, Not-ECT ones are still dropped) and turns ECN on at both ends: Linux's
``net.ipv4.tcp_ecn=1`` in both namespaces, rumpnet's ``net.inet.tcp.ecn.enable=1``.
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
DIRECTIONS = {"out": "bulk_out", "in": "bulk_in"}   # seen from the server
TARGET_RATIO = 0.8


@dataclass
class Server:
    """A server in ns A: its address, port offset and, for Linux, congestion control."""

    name: str
    addr: str
    port_offset: int = 0
    congestion: str | None = None


def servers_for(linux_ccs: list[str], rumpnet: bool) -> list[Server]:
    """``linux-CC`` for each congestion control (ports shifted by 1000 per extra one), then
    ``rumpnet``."""
    out = [Server(f"linux-{cc}", LINUX_A, 1000 * i, cc) for i, cc in enumerate(linux_ccs)]
    if rumpnet:
        out.append(Server("rumpnet", RUMP_A))
    return out


@dataclass
class Path:
    ns_a: Any
    ns_b: Any
    router: Any
    procs: dict[str, Any]


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
def impaired_path(servers: list[Server], sysctls: list[str], ecn: bool = False) -> Iterator[Path]:
    """Namespaces A and B, the router between them and the servers in A; all removed on
    exit. ``ecn``: Linux asks for and takes ECN in both namespaces (net.ipv4.tcp_ecn=1)."""
    from rumpnet.testing.netns import NetNS, move_link_to_netns, ns_configure, ns_popen, ns_run, unique_ifname
    from rumpnet.virtif.hostif import off_loop

    with contextlib.ExitStack() as stack:
        ns_a = stack.enter_context(NetNS(PREFIX))
        ns_b = stack.enter_context(NetNS(PREFIX))
        for ns in (ns_a, ns_b):
            ns_run(ns, ["sysctl", "-qw", f"net.ipv4.tcp_ecn={1 if ecn else 2}"], check=True)
        bridge, tap_a, tap_b, tap_s = (unique_ifname(PREFIX) for _ in range(4))
        off_loop(_bridge_add, ns_a.name, bridge, LINUX_A)
        proc = stack.enter_context(ns_popen(ns_a, [sys.executable, "-u", ROUTER, "--tap-a", tap_a, "--addr-a",
                                                   f"{ROUTER_A}/24", "--tap-b", tap_b, "--addr-b",
                                                   f"{ROUTER_B}/24"], stdin=True))
        _read_ready(proc, 30)
        off_loop(_enslave, ns_a.name, tap_a, bridge)
        move_link_to_netns(tap_b, ns_b, from_ns=ns_a)
        ns_configure(ns_b, tap_b, f"{LINUX_B}/24", routes=[("default", ROUTER_B)])
        procs: dict[str, Any] = {}
        for srv in servers:
            if srv.congestion is not None:
                argv = [sys.executable, "-u", SERVE, "--host-stack", "--congestion", srv.congestion,
                        "--port-offset", str(srv.port_offset)]
            else:
                argv = [sys.executable, "-u", SERVE, "--tap", tap_s, "--address", f"{RUMP_A}/24", "--gateway",
                        ROUTER_A, "--seed", "1"]
                for s in sysctls:
                    argv += ["--sysctl", s]
            procs[srv.name] = stack.enter_context(ns_popen(ns_a, argv))
            _read_ready(procs[srv.name], 30)
            if srv.congestion is None:
                off_loop(_enslave, ns_a.name, tap_s, bridge)
            wait_reachable(ns_b, srv.addr)
            wait_tcp(ns_b, srv.addr, 7 + srv.port_offset)
        yield Path(ns_a, ns_b, Router(proc), procs)


def _proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` and its reaped children."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return sum(int(x) for x in fields[11:15]) / tick


def transfer(path: Path, srv: Server, direction: str, size: int, netem: str, limit: float,
             client_cc: str) -> dict[str, Any]:
    """One transfer through the path, netem re-installed first; the client's result with
    the router's and the server's CPU share over it and the netem counters."""
    from rumpnet.testing.netns import ns_run

    path.router.ask(f"netem {netem}")
    before = path.router.ask("stats")
    pid = path.procs[srv.name].pid
    srv_cpu0 = _proc_cpu(pid)
    argv = [sys.executable, CLIENT, DIRECTIONS[direction], srv.addr, "--size", str(size),
            "--max-seconds", str(limit), "--congestion", srv.congestion or client_cc,
            "--port-offset", str(srv.port_offset)]
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
    res["server_cpu"] = (_proc_cpu(pid) - srv_cpu0) / seconds
    res["netem"] = {ifn: {k: v - (before["egress"][ifn] or {}).get(k, 0) for k, v in (c or {}).items()
                          if k in ("packets", "drop_loss", "drops", "ecn_marked")}
                    for ifn, c in after["egress"].items()}
    return res


def run(servers: list[Server], losses: list[float], delay: str, size: int, seed: int, limit: float,
        sysctls: list[str], ecn: bool = False) -> dict[str, Any]:
    """Rows ``loss P% DIR CC``: the Linux server with congestion control CC, and rumpnet
    where CC matters to it: as receiver ("in", the Linux client sending with CC) for every
    CC, as sender ("out", with its own congestion control) in the reference row only."""
    results: dict[str, Any] = {}
    linux = [srv for srv in servers if srv.congestion is not None]
    rump = next((srv for srv in servers if srv.congestion is None), None)
    with impaired_path(servers, sysctls, ecn) as path:
        for loss in losses:
            netem = f"delay {delay} loss {loss:g}% seed {seed}" + (" ecn" if ecn else "")
            for direction in DIRECTIONS:
                for i, lx in enumerate(linux):
                    key = f"loss {loss:g}% {direction} {lx.congestion}"
                    row = results.setdefault(key, {})
                    cc = lx.congestion or ""
                    runs = [(lx, "linux")]
                    if rump is not None and (direction == "in" or i == 0):
                        runs.append((rump, "rumpnet"))
                    for srv, col in runs:
                        log(f"{srv.name}: {key} ({netem}) ...")
                        t0 = time.monotonic()
                        res = transfer(path, srv, direction, size, netem, limit, cc)
                        log(f"{srv.name}: {key} -> {res.get('MBps', res.get('error'))} MB/s "
                            f"(router CPU {res['router_cpu']:.0%}, {time.monotonic() - t0:.1f}s)")
                        row[col] = res
    return results


def table(doc: dict[str, Any]) -> str:
    meta = doc["meta"]
    ref = meta["reference"]
    lines = [f"Bulk TCP through a rumpnet router kernel with netem ({meta['netem']}) on both egresses;",
             f"{meta['size'] / 1e6:g} MB per transfer, SHA-256 checked; rumpnet: {' '.join(meta['sysctl'])}; "
             f"load average {meta['loadavg_start'][0]:.2f} at start, {meta['loadavg_end'][0]:.2f} at end",
             "out: the server (Linux or rumpnet) sends to Linux; in: Linux sends to the server, with the CC named",
             f"{'path, Linux CC':<22}{'Linux MB/s':>12}{'rumpnet MB/s':>14}{'ratio':>8}{'router CPU':>12}"]
    met = []
    for key, row in doc["results"].items():
        lin, rn = row.get("linux", {}), row.get("rumpnet")
        cells = f"{lin['MBps']:>12.3f}" if "MBps" in lin else f"{'failed':>12}"
        if rn is None:
            cells += f"{'-':>14}{'':>8}"
        elif "MBps" in rn:
            q = rn["MBps"] / lin["MBps"] if "MBps" in lin else 0.0
            cells += f"{rn['MBps']:>14.3f}{q:>7.2f}x"
            if key.endswith(" " + ref):
                met.append((key, q))
        else:
            cells += f"{'failed':>14}{'':>8}"
        cpu = max((r.get("router_cpu", 0.0) for r in row.values() if r), default=0.0)
        lines.append(f"{key:<22}{cells}{cpu:>12.0%}")
    if met:
        worst = min(met, key=lambda m: m[1])
        lines += ["", "Targets (issue 13), from this run:",
                  f"  [{'met' if worst[1] >= TARGET_RATIO else 'NOT met'}] rumpnet >= {TARGET_RATIO}x Linux's "
                  f"goodput ({ref}) in both directions: weakest {worst[1]:.2f}x ({worst[0]})"]
    for key, row in doc["results"].items():
        for n, r in row.items():
            if r and "error" in r:
                lines.append(f"{n}: {key}: {r['error']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.lossy", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 MB per transfer, 1%% loss only (a functional run)")
    ap.add_argument("--size", type=int, default=50_000_000, help="bytes per transfer (default 50 MB)")
    ap.add_argument("--loss", default="1,3", help="comma-separated loss percentages (default 1,3)")
    ap.add_argument("--delay", default="10ms", help="netem delay on each egress (default 10ms)")
    ap.add_argument("--seed", type=int, default=7, help="netem seed, the same for every transfer")
    ap.add_argument("--linux-cc", default="cubic",
                    help="comma-separated Linux congestion controls, one row each; the first is the "
                         "reference of the target (default cubic, Linux's default)")
    ap.add_argument("--no-rumpnet", action="store_true", help="Linux servers only")
    ap.add_argument("--sysctl", action="append", default=[], metavar="NAME=VALUE",
                    help="for the rumpnet kernel (default: net.inet.tcp.congctl=cubic)")
    ap.add_argument("--ecn", action="store_true",
                    help="mark CE instead of dropping (netem ecn), ECN on at both ends (RFC 3168)")
    ap.add_argument("--max-seconds", type=float, default=600.0, help="limit per transfer")
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    try:
        losses = [float(x) for x in a.loss.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--loss {a.loss!r}: want comma-separated percentages")
    ccs = [c.strip() for c in a.linux_cc.split(",") if c.strip()]
    if not ccs:
        ap.error("--linux-cc: name at least one congestion control (e.g. cubic)")
    size = 2_000_000 if a.quick and a.size == 50_000_000 else a.size
    if a.quick and a.loss == "1,3":
        losses = [1.0]
    sysctls = a.sysctl or ["net.inet.tcp.congctl=cubic"]
    if a.ecn:
        sysctls = [*sysctls, "net.inet.tcp.ecn.enable=1"]
    servers = servers_for(ccs, not a.no_rumpnet)

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
        results = run(servers, losses, a.delay, size, a.seed, a.max_seconds, sysctls, a.ecn)
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
                    "seconds": round(time.time() - started, 1), "size": size,
                    "servers": [srv.name for srv in servers], "reference": ccs[0],
                    "netem": f"delay {a.delay} loss {'/'.join(f'{x:g}' for x in losses)}% seed {a.seed}"
                             + (" ecn" if a.ecn else ""),
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
