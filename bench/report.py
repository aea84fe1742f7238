"""Tables, ratios and the plot of a benchmark run (the JSON document ``bench.run`` builds)."""

from __future__ import annotations

from typing import Any

# metric name -> True if higher is better
UNITS: dict[str, bool] = {
    "MB/s": True, "MB/s mtu1500": True, "MB/s mtu64k": True, "conn/s": True, "dgram/s": True, "boots/s": True,
    "MB/s mtu1500 ip6": True, "MB/s mtu64k ip6": True, "ip6/ip4 mtu1500": True, "ip6/ip4 mtu64k": True,
    "ip6/ip4 cpu mtu1500": True, "ip6/ip4 cpu mtu64k": True,
    "median us": False, "p99 us": False, "boot ms": False,
}
REFS = (("linux", "L"), ("pytcp", "P"), ("pytcp_best", "B"))
PYTCPS = ("pytcp", "pmd-pytcp")


def add_ip6_ratios(results: dict[str, Any], workloads4: list[str], suffix: str) -> None:
    """Each IPv6 row (``w + suffix``) of one stack gets ``ip6/ip4 METRIC`` beside its
    metrics: its figure against the same stack's IPv4 figure from the same run, as
    performance (rates: ip6/ip4; times: ip4/ip6), so 1 is "as fast as over IPv4" and
    < 1 slower."""
    for w in workloads4:
        r4, r6 = results.get(w, {}), results.get(w + suffix, {})
        m4, m6 = r4.get("metrics"), r6.get("metrics")
        if not m4 or not m6:
            continue
        for m, v6 in list(m6.items()):
            v4 = m4.get(m)
            if v4 and v6 and not m.startswith("ip6/ip4"):
                m6[f"ip6/ip4 {m}"] = v6 / v4 if UNITS.get(m, True) else v4 / v6


def brief(res: dict[str, Any]) -> str:
    if "na" in res:
        return f"n/a ({res['na']})"
    return ", ".join(f"{_fmt(v)} {k}" for k, v in res["metrics"].items())


def _fmt(v: float) -> str:
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}" if v >= 1 else f"{v:.3g}"


def _rows(doc: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for w in doc["workloads"]:
        metrics: list[str] = []
        for stack in doc["results"]:
            res = doc["results"][stack].get(w, {})
            for m in res.get("metrics", {}):
                if m not in metrics:
                    metrics.append(m)
        if not metrics:
            rows.append((w, ""))
        rows.extend((w, m) for m in metrics)
    return rows


def _value(doc: dict[str, Any], stack: str, w: str, m: str) -> float | None:
    if stack == "pytcp_best":
        # PyTCP's best figure: the better of PyTCP 2.7.6 and pmd-pytcp 0.3.8 here.
        vals = [v for v in (_value(doc, p, w, m) for p in PYTCPS) if v is not None and v > 0]
        if not vals:
            return None
        return max(vals) if UNITS.get(m, True) else min(vals)
    res = doc["results"].get(stack, {}).get(w, {})
    v = res.get("metrics", {}).get(m)
    return float(v) if v is not None else None


def add_ratios(doc: dict[str, Any]) -> None:
    """doc["ratios"][stack][workload][metric] = {"vs_linux": r, "vs_pytcp": r}: performance
    relative to the reference (higher-is-better metrics: value/ref; times: ref/value), so
    > 1 means better than the reference and < 1 worse."""
    out: dict[str, Any] = {}
    for stack in doc["results"]:
        for w, m in _rows(doc):
            if not m or m.startswith("ip6/ip4"):
                continue        # already a ratio, within one stack
            v = _value(doc, stack, w, m)
            if v is None or v <= 0:
                continue
            for ref, _ in REFS:
                r = _value(doc, ref, w, m)
                if r is None or r <= 0 or ref == stack or (ref == "pytcp_best" and stack in PYTCPS):
                    continue
                ratio = v / r if UNITS.get(m, True) else r / v
                out.setdefault(stack, {}).setdefault(w, {}).setdefault(m, {})[f"vs_{ref}"] = ratio
    doc["ratios"] = out


def _grid(header: list[str], body: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = "  ".join(h.ljust(widths[i]) if i == 0 else h.rjust(widths[i]) for i, h in enumerate(header))
    out = [line, "-" * len(line)]
    for r in body:
        out.append("  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)))
    return "\n".join(out)


def table(doc: dict[str, Any]) -> str:
    stacks = list(doc["results"])
    rows = _rows(doc)
    body = []
    for w, m in rows:
        cells = [f"{w} [{m}]" if m else w]
        for s in stacks:
            v = _value(doc, s, w, m) if m else None
            cells.append(_fmt(v) if v is not None else "n/a")
        body.append(cells)
    meta = doc["meta"]
    head = "Results" + (" (--quick)" if meta.get("quick") else "")
    if "loadavg_start" in meta:
        head += (f"  [{meta.get('cpus')} CPUs; load average {meta['loadavg_start'][0]:.1f} at start, "
                 f"{meta['loadavg_end'][0]:.1f} at end]")
    parts = [head, _grid(["workload [unit]", *stacks], body)]
    ratios = doc.get("ratios", {})
    rbody = []
    for w, m in rows:
        if not m or m.startswith("ip6/ip4"):
            continue
        cells = [f"{w} [{m}]"]
        for s in stacks:
            r = ratios.get(s, {}).get(w, {}).get(m, {})
            txt = " ".join(f"{tag} {r['vs_' + ref]:.3g}x" for ref, tag in REFS if f"vs_{ref}" in r)
            cells.append(txt or "-")
        rbody.append(cells)
    if rbody:
        parts += ["", "Ratios: performance relative to Linux (L), to PyTCP 2.7.6 (P) and to the better of "
                  "PyTCP 2.7.6 and pmd-pytcp 0.3.8 (B);", ">1x better, <1x worse (for times: ref/value)",
                  _grid(["workload [unit]", *stacks], rbody)]
    checks = targets(doc)
    if checks:
        parts += ["", "Targets (issue 5), from this run:", *checks]
    notes = []
    for s in stacks:
        reasons: dict[str, list[str]] = {}
        for w in doc["workloads"]:
            res = doc["results"][s].get(w, {})
            if "na" in res:
                reasons.setdefault(res["na"], []).append(w)
        for why, ws in reasons.items():
            notes.append(f"  {s}: {', '.join(ws)}: {why}")
    if notes:
        parts += ["", "n/a:", *notes]
    return "\n".join(parts)


MBPS_PER_GBIT = 125.0


def targets(doc: dict[str, Any]) -> list[str]:
    """The issue's speed targets against this run's figures: one line each, "met" or
    "NOT met", for those whose stacks ran. PyTCP's figures are its best (either
    version, either direction for bulk)."""
    out: list[str] = []

    def line(ok: bool, text: str) -> None:
        out.append(f"  [{'met' if ok else 'NOT met'}] {text}")

    def v(stack: str, w: str, m: str) -> float | None:
        return _value(doc, stack, w, m)

    for stack, floor in (("rumpnet-offload", 2.0), ("rumpnet-plain", 0.5)):
        got = [v(stack, w, "MB/s") for w in ("tcp_bulk_in", "tcp_bulk_out")]
        if None not in got:
            gin, gout = (g / MBPS_PER_GBIT for g in got if g is not None)
            line(min(gin, gout) >= floor, f"{stack} bulk >= {floor} Gbit/s each way: "
                                          f"{gin:.2f} in, {gout:.2f} out")
    bulk_best = [x for x in (v(p, w, "MB/s") for p in PYTCPS for w in ("tcp_bulk_in", "tcp_bulk_out"))
                 if x is not None]
    ours = [v("rumpnet-offload", w, "MB/s") for w in ("tcp_bulk_in", "tcp_bulk_out")]
    if bulk_best and None not in ours:
        ref = max(bulk_best)
        worst = min(o for o in ours if o is not None) / ref
        line(worst >= 50, f"bulk >= 50x PyTCP's best bulk figure ({ref:.3g} MB/s): "
                          f"{worst:.0f}x in the weaker direction")
    cps_ref = v("pytcp_best", "tcp_cps", "conn/s")
    cps = [x for x in (v(s, "tcp_cps", "conn/s") for s in ("rumpnet-offload", "rumpnet-plain")) if x is not None]
    if cps_ref and cps:
        line(min(cps) >= 10 * cps_ref, f"connections/s >= 10x PyTCP's best ({cps_ref:,.0f}): "
                                       f"{min(cps) / cps_ref:.1f}x (the slower rumpnet mode)")
    rtt_ref = v("pytcp_best", "tcp_rtt", "median us")
    rtt = [x for x in (v(s, "tcp_rtt", "median us") for s in ("rumpnet-offload", "rumpnet-plain")) if x is not None]
    if rtt_ref and rtt:
        line(max(rtt) < rtt_ref / 4, f"TCP echo RTT < 1/4 of PyTCP's best ({rtt_ref:,.0f} us): "
                                     f"{max(rtt):.0f} us (the slower rumpnet mode)")
    k2k = v("rumpnet-plain", "k2k_bulk", "MB/s mtu64k")
    if k2k is not None:
        line(k2k / MBPS_PER_GBIT >= 2.0, f"in-process kernel-to-kernel >= 2 Gbit/s: {k2k / MBPS_PER_GBIT:.2f} "
                                         f"Gbit/s at 64K MTU")
    return out


def plot(doc: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(w, m) for w, m in _rows(doc) if m]
    stacks = list(doc["results"])
    n = len(rows)
    cols = 4
    nrows = max(1, (n + cols - 1) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    colors = ["#1f77b4", "#6baed6", "#2ca02c", "#d62728", "#ff7f0e", "#9467bd"]
    for i, (w, m) in enumerate(rows):
        ax = axes[i // cols][i % cols]
        vals = [_value(doc, s, w, m) for s in stacks]
        xs = list(range(len(stacks)))
        ax.bar(xs, [v or 0 for v in vals], color=[colors[j % len(colors)] for j in xs])
        for x, v in zip(xs, vals):
            ax.text(x, (v or 0), "n/a" if v is None else _fmt(v), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(xs)
        ax.set_xticklabels(stacks, rotation=30, ha="right", fontsize=7)
        better = "higher" if UNITS.get(m, True) else "lower"
        ax.set_title(f"{w}\n{m} ({better} is better)", fontsize=9)
        if any(v for v in vals) and max(v or 0 for v in vals) / max(min(v for v in vals if v) or 1e-9, 1e-9) > 50:
            ax.set_yscale("log")
    for j in range(n, nrows * cols):
        axes[j // cols][j % cols].axis("off")
    fig.suptitle(f"rumpnet bench {doc['meta']['started']}{' (quick)' if doc['meta'].get('quick') else ''}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Per stack and metric: old value, new value and the change (new/old for rates,
    old/new for times: >1x means the new run is better)."""
    body = []
    for stack in new["results"]:
        for w, m in _rows(new):
            if not m:
                continue
            a, b = _value(old, stack, w, m), _value(new, stack, w, m)
            if a is None and b is None:
                continue
            if a and b:
                change = f"{(b / a if UNITS.get(m, True) else a / b):.3g}x"
            else:
                change = "-"
            body.append([f"{stack} {w} [{m}]", _fmt(a) if a is not None else "n/a", _fmt(b) if b is not None else "n/a",
                         change])
    return _grid(["stack workload [unit]", old["meta"]["started"], new["meta"]["started"], "change"], body)


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.report RUN.json`` prints its table; with two files, the change."""
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m bench.report")
    ap.add_argument("json", nargs="+", help="one run to show, or two runs to compare (old new)")
    ap.add_argument("--plot", metavar="FILE", help="draw the (last) run")
    a = ap.parse_args(argv)
    docs = []
    for path in a.json[:2]:
        with open(path) as f:
            docs.append(json.load(f))
    if len(docs) == 1:
        add_ratios(docs[0])
        print(table(docs[0]))
    else:
        print(compare(docs[0], docs[1]))
    if a.plot:
        plot(docs[-1], a.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
