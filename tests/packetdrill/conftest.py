"""Fixtures for the packetdrill tests: the toolchain (packetdrill built from the shared
sources, librumpdrill.so), or a skip that says why it cannot be had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rumpnet.packetdrill.build import BuildError, Toolchain, toolchain
from rumpnet.packetdrill.runner import ip_version


@pytest.fixture(scope="session")
def drill() -> Toolchain:
    try:
        return toolchain()
    except BuildError as e:
        pytest.skip(f"packetdrill is not available: {e}")


# Filled by test_freebsd_suite's run: results by script, wall time. Reported at the end.
_SUITE_RUN: dict[str, Any] = {}


@pytest.fixture(scope="session")
def suite_run() -> dict[str, Any]:
    return _SUITE_RUN


def pytest_terminal_summary(terminalreporter: Any) -> None:
    results = _SUITE_RUN.get("results")
    if not results:
        return
    tr = terminalreporter
    tr.section("FreeBSD TCP test suite (packetdrill)")
    by_area: dict[str, list[int]] = {}
    for name, r in sorted(results.items()):
        version = "ipv6" if ip_version(Path(r.path)) == "ipv6" else "ipv4"
        for key in (name.split("/", 1)[0], f"all {version}"):
            counts = by_area.setdefault(key, [0, 0])
            counts[0 if r.passed else 1] += 1
    for area, (ok, bad) in sorted(by_area.items(), key=lambda kv: (kv[0].startswith("all "), kv[0])):
        tr.write_line(f"{area:20} {ok:4} passed {bad:4} failed")
    ok = sum(c[0] for k, c in by_area.items() if k.startswith("all "))
    total = sum(sum(c) for k, c in by_area.items() if k.startswith("all "))
    tr.write_line(f"{'all':20} {ok:4} passed {total - ok:4} failed ({100 * ok / total:.1f}% of {total}); "
                  f"wall time {_SUITE_RUN['wall']:.1f} s")
