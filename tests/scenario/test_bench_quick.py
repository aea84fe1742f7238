"""``python -m bench --quick`` keeps working: every workload gives a number or says why not.

Speeds are never asserted (they are measured in bench/, see bench/README.md). Without
root or /dev/net/tun the tap workloads report n/a with the reason and the in-process ones
still run, so this test runs everywhere.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TAP4 = ["tcp_bulk_in", "tcp_bulk_out", "tcp_rtt", "tcp_cps", "udp_rtt", "udp_rate", "ping_rtt"]
# every tap workload's IPv6 row right after its IPv4 row
WORKLOADS = [w for w4 in TAP4 for w in (w4, w4 + "6")] + ["boot", "k2k_bulk"]
STACKS = ["rumpnet-offload", "rumpnet-plain", "linux"]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_quick_json(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "bench.json"
    png = tmp_path / "bench.png"
    r = subprocess.run([sys.executable, "-m", "bench", "--quick", "--stacks", ",".join(STACKS), "--json", str(out),
                        "--plot", str(png)], cwd=ROOT, capture_output=True, text=True, timeout=360)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert doc["meta"]["quick"] is True
    assert doc["workloads"] == WORKLOADS
    assert list(doc["results"]) == STACKS
    for stack in STACKS:
        for w in WORKLOADS:
            res = doc["results"][stack][w]
            if "na" in res:
                assert isinstance(res["na"], str) and res["na"].strip(), (stack, w, res)
            else:
                assert res["metrics"], (stack, w, res)
                for name, v in res["metrics"].items():
                    assert isinstance(v, float) and math.isfinite(v) and v > 0, (stack, w, name, v)
    # the in-process workloads need no privileges: rumpnet-plain always measures them
    for w in ("boot", "k2k_bulk"):
        assert "metrics" in doc["results"]["rumpnet-plain"][w], doc["results"]["rumpnet-plain"][w]
    # where a tap workload ran over IPv4, it ran over IPv6 too, with its ratio to IPv4
    for stack in STACKS:
        for w in TAP4:
            if "metrics" in doc["results"][stack][w]:
                m6 = doc["results"][stack][w + "6"].get("metrics", {})
                assert any(m.startswith("ip6/ip4 ") for m in m6), (stack, w, doc["results"][stack][w + "6"])
    # the table names every stack; the plot is a PNG
    assert all(s in r.stdout for s in STACKS)
    if png.exists():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bench_rejects_unknown_names() -> None:
    r = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "unknown workload" in r.stderr


def test_ip6_rows_get_their_ratio_to_ip4() -> None:
    from bench.report import add_ip6_ratios

    results = {"tcp_bulk_in": {"metrics": {"MB/s": 100.0}}, "tcp_bulk_in6": {"metrics": {"MB/s": 90.0}},
               "ping_rtt": {"metrics": {"median us": 50.0}}, "ping_rtt6": {"metrics": {"median us": 100.0}},
               "udp_rtt": {"na": "failed"}, "udp_rtt6": {"metrics": {"median us": 10.0}}}
    add_ip6_ratios(results, ["tcp_bulk_in", "ping_rtt", "udp_rtt"], "6")
    assert results["tcp_bulk_in6"]["metrics"]["ip6/ip4 MB/s"] == pytest.approx(0.9)
    assert results["ping_rtt6"]["metrics"]["ip6/ip4 median us"] == pytest.approx(0.5)   # twice as slow
    assert "ip6/ip4 median us" not in results["udp_rtt6"]["metrics"]
    assert "ip6/ip4 MB/s" not in results["tcp_bulk_in"]["metrics"]
