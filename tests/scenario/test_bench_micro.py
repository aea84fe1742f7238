"""The micro-benchmarks (bench/micro_*.py) keep working: ``run(quick=True)`` gives every
figure as a finite number with a unit. Speeds are never asserted (see bench/README.md).

micro_router needs root, /dev/net/tun and ``ip netns`` and skips with the reason without
them; micro_rsp starts a real rump_server process (a unix socket and TCP on 127.0.0.1);
micro_faults is in-process on virtual time.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from typing import Any

import pytest

from rumpnet.testing.netns import have_netns_privileges

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


SIGNED_FIGURES = ("idle_overhead_per_frame",)  # prefixes (some carry a frame-size suffix)


def check_figures(res: dict[str, Any], name: str, expected: set[str]) -> None:
    assert res["benchmark"] == name
    assert res["quick"] is True
    assert not res.get("na"), res.get("na")
    figs = res["figures"]
    assert expected <= set(figs), expected - set(figs)
    for key, fig in figs.items():
        v = fig["value"]
        assert isinstance(v, float) and math.isfinite(v), (key, v)
        # Differences of two timings (an overhead) may come out negative on a noisy
        # machine; everything else is a rate, time or ratio. No speed is asserted.
        if not key.startswith(SIGNED_FIGURES):
            assert v >= 0, (key, v)
        assert isinstance(fig["unit"], str) and fig["unit"], key


def test_micro_faults_quick() -> None:
    from bench import micro_faults

    res = micro_faults.run(quick=True)
    check_figures(res, "micro_faults", {"fps_no_qdisc", "fps_idle_qdisc", "fps_impaired", "idle_overhead_ratio",
                                        "idle_overhead_per_frame", "impaired_cost_ratio",
                                        "delivered_fraction_impaired"})
    for key in ("fps_no_qdisc", "fps_idle_qdisc", "fps_impaired"):
        assert res["figures"][key]["value"] > 0, key
    # delay+loss on virtual time still delivers (almost) everything, after the delay
    assert 0.5 < res["figures"]["delivered_fraction_impaired"]["value"] <= 1.0


@pytest.mark.timeout(120)
def test_micro_rsp_quick() -> None:
    from bench import micro_rsp

    res = micro_rsp.run(quick=True)
    expected = {f"{w}_{op}_{s}" for w in ("inproc", "inproc_bg", "remote_unix", "remote_tcp")
                for op in micro_rsp.OPS for s in ("median", "p99")}
    expected |= {f"ratio_remote_unix_vs_inproc_{op}" for op in micro_rsp.OPS}
    check_figures(res, "micro_rsp", expected)
    for w in res["runs"]:
        for op in micro_rsp.OPS:
            assert res["runs"][w][op]["calls"] >= 1


_ok, _why = have_netns_privileges()


@pytest.mark.interop
@pytest.mark.skipif(not _ok, reason=_why)
@pytest.mark.timeout(180)
def test_micro_router_quick() -> None:
    from bench import micro_router
    from rumpnet.testing.netns import list_netns

    res = micro_router.run(quick=True)
    expected = {f"{s}_{m}" for s in ("rumpnet", "linux")
                for m in ("ping_rtt_median", "ping_rtt_p99", "udp64_delivered_pps", "udp64_forwarded_pps",
                          "udp64_sent_pps", "udp64_loss")}
    expected |= {"ratio_udp64_delivered_pps", "ratio_udp64_forwarded_pps", "ratio_ping_rtt_median"}
    check_figures(res, "micro_router", expected)
    # everything it made is gone
    mine = f"{micro_router.PREFIX}-{os.getpid()}-"
    assert not [n for n in list_netns() if n.startswith(mine)]


def test_micro_router_without_privileges_says_why() -> None:
    if _ok:
        pytest.skip("privileges present: the n/a path is not reachable here")
    from bench import micro_router

    res = micro_router.run(quick=True)
    assert isinstance(res["na"], str) and res["na"].strip()
    assert res["figures"] == {}


@pytest.mark.parametrize("module", ["micro_faults", "micro_rsp"])
def test_main_prints_a_table_and_writes_json(module: str, tmp_path: Any) -> None:
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", f"bench.{module}", "--quick", "--json", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert module in r.stdout
    import json

    assert json.loads(out.read_text())["benchmark"] == module
