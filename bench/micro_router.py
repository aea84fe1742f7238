"""Micro-benchmark: forwarding rate and RTT of the rump router vs the Linux kernel (issue 7).

Two topologies are built in the same run, with Linux hosts in namespaces on both sides:

    rumpnet: ns1 10.95.1.1 --tap-- [virt0 .1.254 | rump router | virt1 .2.254] --tap-- ns2 10.95.2.1
    linux:   ns3 10.95.3.1 --veth-- [nsR .3.254 | Linux, ip_forward=1 | .4.254] --veth-- ns4 10.95.4.1

The rump router is a kernel in this process (real clock, ``serve_background``), forwarding
on, its two virtif interfaces on plain taps (one frame per read/write, 1500 MTU).

Per topology, interleaved and repeated:

* ``ping`` from the left host to the right one (Linux ping, 10 ms interval): median, mean
  and p99 RTT in microseconds;
* a UDP flood: a Python sender in the left namespace sends small datagrams at its maximum
  rate for a fixed time to a counting Python receiver in the right namespace. Reported:
  datagrams delivered per second (receiver's count / time from first to last datagram),
  datagrams forwarded per second by the router (rump ``ips_forward``, Linux
  ``ForwDatagrams``), the sender's rate, and the loss (1 - received / sent).

Ratios are rumpnet / Linux for rates and Linux / rumpnet for times (<1x: rumpnet is worse).

    python -m bench.micro_router [--quick] [--json FILE]

Needs root, /dev/net/tun and ``ip netns`` (otherwise ``run`` returns ``na`` with the
reason). Everything it makes is named ``rbm-PID-N`` (namespaces) and ``rbmPIDxN`` (taps,
veths); it is removed on exit, on errors and on SIGINT/SIGTERM, and a run's leftovers
after a kill -9 are removed by the next run (``cleanup_stale("rbm")``). Traffic goes only
to addresses inside its own namespaces.
"""

from __future__ import annotations

import contextlib
import platform
import re
import statistics
import sys
import time
from typing import Any

from bench.common import micro_main, signals_raise

PREFIX = "rbm"
PORT = 9
NET = "10.95"
FLOOD_HARD_LIMIT = 30.0  # seconds beyond the flood time before a peer is killed

SENDER = r"""
import socket, sys, time
dst, port, size, dur = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
s.connect((dst, port))
msg = b"\x00" * size
send = s.send
n = errs = 0
t0 = time.monotonic()
end = t0 + dur
while True:
    for _ in range(128):
        try:
            send(msg)
        except OSError:
            errs += 1
    n += 128
    if time.monotonic() >= end:
        break
el = time.monotonic() - t0
print(n - errs, errs, el, flush=True)
"""

RECEIVER = r"""
import socket, sys, time
host, port, hard, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((host, port))
s.settimeout(idle)
print("ready", flush=True)
buf = bytearray(65536)
rx = s.recv_into
mono = time.monotonic
n = 0
first = last = 0.0
end = mono() + hard
while True:
    try:
        rx(buf)
    except socket.timeout:
        if n or mono() > end:
            break
        continue
    last = mono()
    if not n:
        first = last
    n += 1
    if last > end:
        break
print(n, last - first, flush=True)
"""


def _log(msg: str) -> None:
    print(f"[micro_router] {msg}", file=sys.stderr, flush=True)




def _pctl(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


# -- topologies --------------------------------------------------------------------------
class Bed:
    """Both topologies; ``close()`` removes everything (idempotent)."""

    def __init__(self) -> None:
        self.k: Any = None
        self.ns: dict[str, Any] = {}
        self.host_links: list[str] = []  # veths made in this namespace (until moved)

    def build(self) -> None:
        from rumpkern import rump_init
        from rumpnet.testing.netns import NetNS, move_link_to_netns, ns_configure, ns_run, unique_ifname

        for name in ("ns1", "ns2", "ns3", "nsR", "ns4"):
            ns = NetNS(PREFIX)
            self.ns[name] = ns
            ns.create()
        # rumpnet router between ns1 and ns2
        tap1, tap2 = unique_ifname(PREFIX), unique_ifname(PREFIX)
        k = rump_init(hostname="router")
        self.k = k
        for ifname, tap, addr in (("virt0", tap1, f"{NET}.1.254/24"), ("virt1", tap2, f"{NET}.2.254/24")):
            k.config.if_create(ifname)
            k.config.if_set_linkstr(ifname, f"{tap},nooffload")  # plain frames, as documented
            k.config.addr_add(ifname, addr)
            k.config.if_up(ifname)
        k.config.sysctl_set("net.inet.ip.forwarding", 1)
        k.serve_background()
        move_link_to_netns(tap1, self.ns["ns1"])
        move_link_to_netns(tap2, self.ns["ns2"])
        ns_configure(self.ns["ns1"], tap1, f"{NET}.1.1/24", routes=[("default", f"{NET}.1.254")])
        ns_configure(self.ns["ns2"], tap2, f"{NET}.2.1/24", routes=[("default", f"{NET}.2.254")])
        self.links = {"rumpnet": (self.ns["ns1"], tap1)}
        # Linux router nsR between ns3 and ns4
        pairs = []
        for left, right in (("ns3", "nsR"), ("nsR", "ns4")):
            a, b = unique_ifname(PREFIX), unique_ifname(PREFIX)
            self._veth(a, b)
            move_link_to_netns(a, self.ns[left])
            move_link_to_netns(b, self.ns[right])
            self.host_links = [x for x in self.host_links if x not in (a, b)]
            pairs.append((a, b))
        (h3, r3), (r4, h4) = pairs
        ns_configure(self.ns["ns3"], h3, f"{NET}.3.1/24", routes=[("default", f"{NET}.3.254")])
        ns_configure(self.ns["nsR"], r3, f"{NET}.3.254/24")
        ns_configure(self.ns["nsR"], r4, f"{NET}.4.254/24")
        ns_configure(self.ns["ns4"], h4, f"{NET}.4.1/24", routes=[("default", f"{NET}.4.254")])
        r = ns_run(self.ns["nsR"], ["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"], timeout=10)
        if r.returncode != 0:
            raise RuntimeError(f"ip_forward=1 in the Linux router namespace failed: {r.stderr.strip()}")
        self.links["linux"] = (self.ns["ns3"], h3)

    def _veth(self, a: str, b: str) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.link("add", ifname=a, kind="veth", peer=b)
        self.host_links += [a, b]

    def hosts(self, stack: str) -> tuple[Any, Any, str]:
        """(left ns, right ns, right host address) of ``stack``."""
        if stack == "rumpnet":
            return self.ns["ns1"], self.ns["ns2"], f"{NET}.2.1"
        return self.ns["ns3"], self.ns["ns4"], f"{NET}.4.1"

    def forwarded(self, stack: str) -> int:
        """The router's count of forwarded datagrams."""
        from rumpnet.testing.netns import ns_run

        if stack == "rumpnet":
            return int(self.k.inet.ipstat.ips_forward)
        r = ns_run(self.ns["nsR"], ["cat", "/proc/net/snmp"], timeout=10)
        lines = [ln.split() for ln in r.stdout.splitlines() if ln.startswith("Ip:")]
        return int(lines[1][lines[0].index("ForwDatagrams")])

    def left_tx_dropped(self, stack: str) -> int:
        from rumpnet.testing.netns import ns_run

        ns, ifname = self.links[stack]
        r = ns_run(ns, ["cat", f"/sys/class/net/{ifname}/statistics/tx_dropped"], timeout=10)
        try:
            return int(r.stdout.strip())
        except ValueError:
            return 0

    def close(self) -> None:
        k, self.k = self.k, None
        if k is not None:
            with contextlib.suppress(Exception):
                k.stop_background()
            with contextlib.suppress(Exception):
                k.halt()
        for ns in self.ns.values():
            try:
                ns.remove()
            except Exception as e:  # noqa: BLE001 -- keep removing the rest
                _log(f"removing {ns}: {e}")
        self.ns = {}
        if self.host_links:
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                for name in self.host_links:
                    idx = ipr.link_lookup(ifname=name)
                    if idx:
                        with contextlib.suppress(Exception):
                            ipr.link("del", index=idx[0])
            self.host_links = []


# -- workloads ---------------------------------------------------------------------------
_PING_TIME = re.compile(r"time=([\d.]+) ms")


def ping_rtt(bed: Bed, stack: str, count: int) -> dict[str, float]:
    from rumpnet.testing.netns import ns_run

    left, _right, dst = bed.hosts(stack)
    ns_run(left, ["ping", "-c", "3", "-i", "0.05", "-W", "2", dst], timeout=20)  # ARP everywhere
    r = ns_run(left, ["ping", "-c", str(count), "-i", "0.01", "-W", "2", dst], timeout=30 + count * 0.05)
    us = [float(x) * 1000.0 for x in _PING_TIME.findall(r.stdout)]
    if not us:
        raise RuntimeError(f"ping through {stack} got no replies: {r.stdout[-500:]} {r.stderr[-500:]}")
    return {"median_us": statistics.median(us), "mean_us": statistics.fmean(us), "p99_us": _pctl(us, 0.99),
            "received": float(len(us)), "sent": float(count)}


def udp_flood(bed: Bed, stack: str, size: int, seconds: float) -> dict[str, float]:
    from rumpnet.testing.netns import ns_python, ns_python_popen

    left, right, dst = bed.hosts(stack)
    fwd0 = bed.forwarded(stack)
    drop0 = bed.left_tx_dropped(stack)
    hard = seconds + FLOOD_HARD_LIMIT
    with ns_python_popen(right, RECEIVER, args=[dst, str(PORT), str(hard), "1.0"]) as rcv:
        line = rcv.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"receiver did not start: {line!r} {rcv.communicate(timeout=5)[1][-500:]}")
        r = ns_python(left, SENDER, args=[dst, str(PORT), str(size), str(seconds)], timeout=hard)
        if r.returncode != 0:
            raise RuntimeError(f"sender failed: {r.stderr[-500:]}")
        sent_s, errs_s, el_s = r.stdout.split()
        out, err = rcv.communicate(timeout=hard)
        try:
            got_s, span_s = out.split()
        except ValueError:
            raise RuntimeError(f"receiver gave {out!r}: {err[-500:]}") from None
    sent, errs, el = int(sent_s), int(errs_s), float(el_s)
    got, span = int(got_s), float(span_s)
    fwd = bed.forwarded(stack) - fwd0
    return {
        "sent": float(sent), "send_errors": float(errs), "send_s": el, "sent_pps": sent / el,
        "received": float(got), "recv_span_s": span,
        "delivered_pps": got / span if span > 0 else 0.0,
        "forwarded": float(fwd), "forwarded_pps": fwd / el,
        "loss": 1.0 - got / sent if sent else 1.0,
        "left_tx_dropped": float(bed.left_tx_dropped(stack) - drop0),
    }


# -- the benchmark -----------------------------------------------------------------------
def run(quick: bool = False) -> dict[str, Any]:
    """Forwarding rate, loss and ping RTT through the rump router and through Linux."""
    from rumpnet.testing.netns import cleanup_stale, have_netns_privileges

    meta: dict[str, Any] = {"python": platform.python_version(),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    ok, why = have_netns_privileges()
    if not ok:
        return {"benchmark": "micro_router", "quick": quick, "na": why, "figures": {}, "meta": meta, "runs": {}}
    reps = 1 if quick else 3
    seconds = 1.0 if quick else 5.0
    pings = 20 if quick else 200
    sizes = (64,) if quick else (64, 1472)
    meta.update({"reps": reps, "flood_seconds": seconds, "ping_count": pings, "sizes": list(sizes)})
    stacks = ("rumpnet", "linux")
    runs: dict[str, dict[str, list[dict[str, float]]]] = {s: {} for s in stacks}
    with signals_raise():
        removed = cleanup_stale(PREFIX)
        if removed:
            _log(f"removed leftovers of killed runs: {', '.join(removed)}")
        bed = Bed()
        try:
            _log("building namespaces, taps, veths and the rump router")
            bed.build()
            for rep in range(reps):
                for stack in stacks:
                    r = ping_rtt(bed, stack, pings)
                    runs[stack].setdefault("ping", []).append(r)
                    _log(f"rep {rep + 1}/{reps} {stack:8s} ping: median {r['median_us']:.0f} us,"
                         f" p99 {r['p99_us']:.0f} us ({int(r['received'])}/{pings})")
                for size in sizes:
                    for stack in stacks:
                        r = udp_flood(bed, stack, size, seconds)
                        runs[stack].setdefault(f"udp{size}", []).append(r)
                        _log(f"rep {rep + 1}/{reps} {stack:8s} udp {size:4d} B: sent {r['sent_pps']:,.0f}/s,"
                             f" forwarded {r['forwarded_pps']:,.0f}/s, delivered {r['delivered_pps']:,.0f}/s,"
                             f" loss {r['loss'] * 100:.1f}%")
        finally:
            _log("cleaning up")
            bed.close()

    def med(stack: str, key: str, field: str) -> float:
        return float(statistics.median(r[field] for r in runs[stack][key]))

    figures: dict[str, dict[str, Any]] = {}
    for stack in stacks:
        for stat in ("median", "mean", "p99"):
            figures[f"{stack}_ping_rtt_{stat}"] = {"value": med(stack, "ping", f"{stat}_us"), "unit": "us",
                                                   "what": f"ping RTT {stat}, Linux host to Linux host via {stack}"}
        for size in sizes:
            key = f"udp{size}"
            figures[f"{stack}_{key}_delivered_pps"] = {
                "value": med(stack, key, "delivered_pps"), "unit": "packets/s",
                "what": f"{size} B UDP datagrams received per second across the {stack} router"}
            figures[f"{stack}_{key}_forwarded_pps"] = {
                "value": med(stack, key, "forwarded_pps"), "unit": "packets/s",
                "what": f"{size} B datagrams the {stack} router forwarded per second of flood"}
            figures[f"{stack}_{key}_sent_pps"] = {
                "value": med(stack, key, "sent_pps"), "unit": "packets/s",
                "what": f"{size} B datagrams the Python sender offered per second"}
            figures[f"{stack}_{key}_loss"] = {
                "value": med(stack, key, "loss"), "unit": "fraction",
                "what": f"1 - received/sent at the sender's full rate via {stack}"}
    for size in sizes:
        key = f"udp{size}"
        for what in ("delivered", "forwarded"):
            figures[f"ratio_{key}_{what}_pps"] = {
                "value": figures[f"rumpnet_{key}_{what}_pps"]["value"] / figures[f"linux_{key}_{what}_pps"]["value"],
                "unit": "x", "what": f"{size} B {what} packets/s, rumpnet / linux"}
    for stat in ("median", "p99"):
        figures[f"ratio_ping_rtt_{stat}"] = {
            "value": figures[f"linux_ping_rtt_{stat}"]["value"] / figures[f"rumpnet_ping_rtt_{stat}"]["value"],
            "unit": "x", "what": f"ping RTT {stat}, linux / rumpnet (<1: rumpnet slower)"}
    return {"benchmark": "micro_router", "quick": quick, "figures": figures, "meta": meta, "runs": runs}


def format_table(res: dict[str, Any]) -> str:
    lines = [f"{res['benchmark']}{' (quick)' if res.get('quick') else ''}"]
    if res.get("na"):
        lines.append(f"  n/a: {res['na']}")
        return "\n".join(lines)
    figs = res["figures"]
    lines.append(f"  {'metric':<26}{'rumpnet':>14}{'linux':>14}{'ratio':>9}  unit")
    rows: list[tuple[str, str, str | None, str]] = [("ping RTT median", "ping_rtt_median", "ratio_ping_rtt_median", "us"),
            ("ping RTT p99", "ping_rtt_p99", "ratio_ping_rtt_p99", "us")]
    for size in res["meta"]["sizes"]:
        rows += [(f"UDP {size} B delivered", f"udp{size}_delivered_pps", f"ratio_udp{size}_delivered_pps", "pkt/s"),
                 (f"UDP {size} B forwarded", f"udp{size}_forwarded_pps", f"ratio_udp{size}_forwarded_pps", "pkt/s"),
                 (f"UDP {size} B offered", f"udp{size}_sent_pps", None, "pkt/s"),
                 (f"UDP {size} B loss", f"udp{size}_loss", None, "fraction")]
    for label, key, ratio, unit in rows:
        rv, lv = figs[f"rumpnet_{key}"]["value"], figs[f"linux_{key}"]["value"]
        rt = f"{figs[ratio]['value']:>8.2f}x" if ratio else " " * 9
        fmt = "{:>14,.3f}" if unit == "fraction" else "{:>14,.0f}"
        lines.append(f"  {label:<26}{fmt.format(rv)}{fmt.format(lv)}{rt}  {unit}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return micro_main("bench.micro_router", __doc__, "1 s floods, 20 pings, one repetition", run, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())
