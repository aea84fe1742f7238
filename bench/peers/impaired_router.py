"""The impaired path of ``bench.lossy``: a rump kernel routing between two host taps, with
a netem qdisc on each of its two egresses.

    python bench/peers/impaired_router.py --tap-a TAP --addr-a 10.96.1.254/24 \\
        --tap-b TAP --addr-b 10.96.2.254/24

Prints one JSON line ``{"ready": true, ...}`` when both taps exist, then reads commands on
stdin, one per line, and answers each with one JSON line:

``netem SPEC...``  (re)install ``tc qdisc replace dev virtN root netem SPEC`` on both
                   egresses (the same SPEC, seed included, so that every run starts the
                   loss draws from the same point)
``stats``          the process's CPU seconds (user + system), the netem counters of both
                   egresses and the forwarded-packet count
``quit``           (or end of input) halt the kernel and exit

The kernel runs on the real clock, served from its background thread.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import rumpkern  # noqa: E402,F401  (before rumpnet.virtif)
from rumpkern import rump_init  # noqa: E402

IFACES = ("virt0", "virt1")


def boot(tap_a: str, addr_a: str, tap_b: str, addr_b: str, seed: int) -> Any:
    k = rump_init(clock="real", seed=seed, hostname="router")
    for ifname, tap, addr in (("virt0", tap_a, addr_a), ("virt1", tap_b, addr_b)):
        k.config.if_create(ifname)
        k.config.if_set_linkstr(ifname, f"{tap},nooffload")
        k.config.addr_add(ifname, addr)
        k.config.if_up(ifname)
    k.config.sysctl_set("net.inet.ip.forwarding", 1)
    return k


def cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def counters(k: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for ifname in IFACES:
        q = k.ifnet.lookup(ifname).qdisc("egress")
        out[ifname] = q.netem.stats.as_dict() if q is not None else None
    return out


def handle(k: Any, line: str) -> dict[str, Any]:
    words = line.split()
    if not words:
        return {"error": "empty command"}
    if words[0] == "netem":
        for ifname in IFACES:
            k.sched.run(lambda ifname=ifname: k.tc("qdisc", "replace", "dev", ifname, "root", "netem", *words[1:]))
        return {"ok": True, "netem": " ".join(words[1:])}
    if words[0] == "stats":
        return {"cpu_s": cpu_seconds(), "egress": k.sched.run(lambda: counters(k)),
                "forwarded": k.inet.ipstat.ips_forward}
    return {"error": f"unknown command {words[0]!r} (netem SPEC | stats | quit)"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tap-a", required=True)
    ap.add_argument("--addr-a", required=True)
    ap.add_argument("--tap-b", required=True)
    ap.add_argument("--addr-b", required=True)
    ap.add_argument("--seed", type=int, default=2, help="the kernel's seed (MAC addresses derive from it)")
    a = ap.parse_args(argv)
    k = boot(a.tap_a, a.addr_a, a.tap_b, a.addr_b, a.seed)
    k.serve_background()
    try:
        print(json.dumps({"ready": True, "taps": [a.tap_a, a.tap_b]}), flush=True)
        for line in sys.stdin:
            if line.strip() == "quit":
                break
            try:
                reply = handle(k, line)
            except OSError as e:
                reply = {"error": str(e)}
            print(json.dumps(reply), flush=True)
    finally:
        k.halt()
        k.stop_background()
    return 0


if __name__ == "__main__":
    sys.exit(main())
