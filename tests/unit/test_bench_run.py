"""bench.run's repetition rule and bench.report's target lines, on made-up results (no
stacks are started)."""

from __future__ import annotations

from typing import Any

import pytest

from bench import report, run


def _results(monkeypatch: pytest.MonkeyPatch, outcomes: list[dict[str, Any]]) -> dict[str, Any]:
    calls = iter(outcomes)
    monkeypatch.setitem(run.TAP_FUNCS, "tcp_rtt", lambda target, sz: next(calls))
    return run.repeated("stack", "tcp_rtt", None, run.FULL)  # type: ignore[arg-type]


def test_a_failed_run_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    res = _results(monkeypatch, [run.na("failed: TimeoutError: timed out"),
                                 run.ok({"median us": 100.0}), run.ok({"median us": 120.0})])
    assert res["metrics"] == {"median us": 110.0}
    assert "1 failed (failed: TimeoutError" in res["detail"]["combined"]


def test_not_available_is_not_repeated(monkeypatch: pytest.MonkeyPatch) -> None:
    res = _results(monkeypatch, [run.na("not available: no offload mode"), run.ok({"median us": 1.0})])
    assert res == {"na": "not available: no offload mode"}


def test_every_run_failing_gives_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    res = _results(monkeypatch, [run.na("failed: a"), run.na("failed: b"), run.na("failed: c")])
    assert res == {"na": "failed: a"}


def _doc(values: dict[tuple[str, str, str], float]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for (stack, w, m), v in values.items():
        results.setdefault(stack, {}).setdefault(w, {"metrics": {}})["metrics"][m] = v
    return {"results": results, "workloads": sorted({w for _, w, _ in values})}


def test_targets_use_pytcps_best_figure() -> None:
    doc = _doc({
        ("rumpnet-offload", "tcp_bulk_in", "MB/s"): 600.0, ("rumpnet-offload", "tcp_bulk_out", "MB/s"): 900.0,
        ("rumpnet-plain", "tcp_bulk_in", "MB/s"): 70.0, ("rumpnet-plain", "tcp_bulk_out", "MB/s"): 60.0,
        ("pytcp", "tcp_bulk_in", "MB/s"): 0.5, ("pmd-pytcp", "tcp_bulk_in", "MB/s"): 10.0,
        ("pmd-pytcp", "tcp_bulk_out", "MB/s"): 7.0,
        ("rumpnet-offload", "tcp_cps", "conn/s"): 3000.0, ("rumpnet-plain", "tcp_cps", "conn/s"): 2900.0,
        ("pytcp", "tcp_cps", "conn/s"): 100.0, ("pmd-pytcp", "tcp_cps", "conn/s"): 300.0,
        ("rumpnet-plain", "k2k_bulk", "MB/s mtu64k"): 240.0,
    })
    lines = report.targets(doc)
    assert any(line.startswith("  [met] rumpnet-offload bulk") for line in lines)
    assert any(line.startswith("  [NOT met] rumpnet-plain bulk") and "0.48 out" in line for line in lines)
    assert any(line.startswith("  [met] bulk >= 50x") and "60x" in line for line in lines)   # 600 / 10
    assert any(line.startswith("  [NOT met] connections/s") and "9.7x" in line for line in lines)
    assert any(line.startswith("  [NOT met] in-process") for line in lines)
    assert not any("RTT" in line for line in lines)          # no RTT figures: no RTT line


# ----- bench.lossy's table and target (issue 13) ----------------------------------------
def _lossy_doc(rows: dict[str, tuple[float | None, float | None]]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for key, (lin, rn) in rows.items():
        row: dict[str, Any] = {"linux": {"MBps": lin, "router_cpu": 0.2} if lin is not None
                               else {"error": "stalled", "router_cpu": 0.0}}
        if rn is not None:
            row["rumpnet"] = {"MBps": rn, "router_cpu": 0.1}
        results[key] = row
    meta = {"reference": "cubic", "netem": "delay 10ms loss 1% seed 7", "size": 50e6,
            "sysctl": ["net.inet.tcp.congctl=cubic"], "loadavg_start": [0.5], "loadavg_end": [0.6]}
    return {"meta": meta, "results": results}


def test_lossy_target_takes_the_weakest_reference_row() -> None:
    from bench import lossy

    doc = _lossy_doc({"loss 1% out cubic": (1.0, 0.95), "loss 1% out bbr": (20.0, None),
                      "loss 1% in cubic": (1.0, 0.79), "loss 1% in bbr": (20.0, 2.0)})
    text = lossy.table(doc)
    assert "[NOT met]" in text and "weakest 0.79x (loss 1% in cubic)" in text   # bbr rows aside
    doc["results"]["loss 1% in cubic"]["rumpnet"]["MBps"] = 0.85
    assert "[met]" in lossy.table(doc) and "weakest 0.85x" in lossy.table(doc)
    doc["results"]["loss 1% in cubic"]["linux"] = {"error": "stalled after 3 of 50 MB", "router_cpu": 0.0}
    assert "linux: loss 1% in cubic: stalled after 3 of 50 MB" in lossy.table(doc)


def test_lossy_bad_arguments_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    from bench import lossy

    with pytest.raises(SystemExit) as ei:
        lossy.main(["--loss", "one"])
    assert ei.value.code == 2 and "--loss" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ei:
        lossy.main(["--linux-cc", ","])
    assert ei.value.code == 2
