"""The FreeBSD TCP test suite (github.com/freebsd-net/tcp-testsuite) under real packetdrill,
one fresh kernel per script, on virtual time.

Every script of the four areas runs once per test session (two at a time: the machine
has two cores); each is then one test. A script fails its test when it fails and is not
in ``freebsd_expected_failures.txt``, or when it is listed there and passes (so that the
list stays true). Each script exists for IPv4 and IPv6 (``--ip_version``); both run
(the IPv6 ones are skipped, with the reason, only if the session's kernel were built
without netinet6). The per-area counts, per IP version, and the wall time are printed at
the end of the run.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rumpnet.packetdrill.build import REPO, BuildError, toolchain
from rumpnet.packetdrill.runner import Result, ip_version, run_scripts

SUITE = Path(os.environ.get("FREEBSD_TCP_TESTSUITE") or REPO.parent / "shared" / "conformance" / "tcp-testsuite")
AREAS = ("state-event-engine", "socket-api", "rcv-icmp", "snippets")
EXPECTED_FILE = Path(__file__).parent / "freebsd_expected_failures.txt"
JOBS = 2


def _scripts() -> list[Path]:
    if not SUITE.is_dir():
        return []
    return sorted(p for area in AREAS for p in (SUITE / area).rglob("*.pkt"))


def load_expected(path: Path = EXPECTED_FILE) -> dict[str, tuple[str, str]]:
    """``script | owner | reason`` lines (paths relative to the suite; # comments)."""
    expected: dict[str, tuple[str, str]] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [x.strip() for x in line.split("|", 2)]
        if len(parts) != 3 or not all(parts):
            raise ValueError(f"{path.name}:{n}: want 'script | owner | reason', got {line!r}")
        expected[parts[0]] = (parts[1], parts[2])
    return expected


def _kernel_has_inet6() -> bool:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler
    from rumpnet.packetdrill.session import COMPONENTS

    k = rump_init(clock="virtual", scheduler=Scheduler(virtual=True), components=COMPONENTS)
    try:
        return socket.AF_INET6 in k.domains
    finally:
        k.halt()


SCRIPTS = _scripts()
HAS_INET6 = _kernel_has_inet6()
IPV4 = [p for p in SCRIPTS if ip_version(p) != "ipv6"]
IPV6 = [p for p in SCRIPTS if ip_version(p) == "ipv6"]
RUNNABLE = IPV4 + (IPV6 if HAS_INET6 else [])


def _rel(p: Path) -> str:
    return str(p.relative_to(SUITE))


@pytest.fixture(scope="module")
def results(suite_run: dict[str, object]) -> Iterator[dict[str, Result]]:
    try:
        toolchain()
    except BuildError as e:
        pytest.skip(f"packetdrill is not available: {e}")
    start = time.monotonic()
    out = {_rel(Path(r.path)): r for r in run_scripts(RUNNABLE, "freebsd", jobs=JOBS, timeout=120)}
    suite_run["wall"] = time.monotonic() - start
    suite_run["results"] = out
    yield out


@pytest.mark.skipif(not SCRIPTS, reason=f"no FreeBSD TCP test suite at {SUITE} (set $FREEBSD_TCP_TESTSUITE)")
def test_expected_failures_list_names_real_scripts() -> None:
    names = {_rel(p) for p in SCRIPTS}
    unknown = sorted(set(load_expected()) - names)
    assert not unknown, f"{EXPECTED_FILE.name} lists scripts the suite does not have: {unknown}"


def _params() -> list[object]:
    params: list[object] = [pytest.param(p, id=_rel(p)) for p in IPV4]
    for p in IPV6:
        marks = () if HAS_INET6 else (pytest.mark.skip(reason="IPv6 script: the packetdrill session kernel has no netinet6 yet"),)
        params.append(pytest.param(p, id=_rel(p), marks=marks))
    return params


@pytest.mark.parametrize("script", _params())
def test_script(script: Path, results: dict[str, Result]) -> None:
    name = _rel(script)
    r = results[name]
    listed = load_expected().get(name)
    if listed is None:
        assert r.passed, f"{name} fails: {r.error}"
    else:
        assert not r.passed, f"{name} passes now: remove it from {EXPECTED_FILE.name} ({listed[0]}: {listed[1]})"
