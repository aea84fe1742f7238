#!/usr/bin/env python3
"""Do the tests see a broken input?  Plant a raise at one site, run tests, count.

    .venv/bin/python scripts/inject_raise.py SITE [pytest args...]
    .venv/bin/python scripts/inject_raise.py --list

The site's source file is patched in place for the run and restored afterwards (also on
an error, Ctrl-C or SIGTERM; never commit while it runs). Every time the planted code
runs it appends its process id and the running test's id (``PYTEST_CURRENT_TEST``) to a
log and raises ``RuntimeError("injected")``. ``RUMP_INJECT_OUT=path`` keeps pytest's
whole output. The report says how many tests ran and passed, and splits the passing ones
into those that reached the site in pytest's own process (a test that passes while its
input path raises: it passes on silence, give it the counter), those whose server was
hit (a server inherits the id of the test that started it, so on a server shared by a
module's tests the hit may be a later test's: check by hand) and those that never
reached it (fine; say why). Exit status: 0 if no test passed on silence, 1 otherwise, 2
on bad usage. docs/TESTING.md has the figures.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent

# One line that logs the test that got here and raises (the indentation is added).
_RAISE = ('_ij = __import__("os"); open(_ij.environ["RUMP_INJECT_LOG"], "a").write('
          'f"{_ij.getpid()} " + _ij.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" (", 1)[0] + "\\n"); '
          'raise RuntimeError("injected")')


@dataclass(frozen=True)
class Site:
    """Where to plant: after the first line of ``path`` equal to ``anchor`` (stripped),
    at that line's indentation (or one level deeper with ``indent``), ``code``."""

    path: str
    anchor: str
    what: str
    code: tuple[str, ...] = (_RAISE,)
    indent: bool = False


# Dispatch as data: each site is the first statement its routine runs.
SITES: dict[str, Site] = {
    "tcp-input": Site("rumpnet/netinet/tcp_subr.py", "def _input(self, src: int, dst: int, seg: TcpRepr, now: float) -> None:",
                      "every parsed segment, inside TcpProtocol.input's catch-all", indent=True),
    "icmp-input": Site("rumpnet/netinet/ip_icmp.py", "def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int, now: float) -> None:",
                       "Icmp.input: every ICMP message IP delivers", indent=True),
    "ip-input": Site("rumpnet/netinet/ip_input.py", "def input(self, ifp: Ifnet, pkt: memoryview, mcast: int = 0) -> None:",
                     "IpInput.input: every IPv4 packet an interface hands up", indent=True),
    "udp-input": Site("rumpnet/netinet/udp_usrreq.py", "def input(self, ifp: Ifnet, pkt: memoryview, hlen: int, src: int, dst: int) -> None:",
                      "Udp.input: every UDP datagram IP delivers", indent=True),
    "tcp-timer": Site("rumpnet/netinet/tcp_subr.py", "def handle_timer(self, now: float) -> None:",
                      "TcpProtocol.handle_timer: every TCP timer run (loop timer or sans-IO call)", indent=True),
    "arp-timer": Site("rumpnet/netinet/if_arp.py", "def _timer(self, lle: LlEntry, now: float) -> None:",
                      "Arp._timer: every ARP entry timer (retry, give up, expiry)", indent=True),
    "sched-callback": Site("rumpnet/if_wire.py", "sched, deliver = self._sched, self._deliver",
                           "the wire's delivery callback (call_soon on the receiving kernel's scheduler)",
                           code=("if deliver is not None:", "    def deliver(frame: bytes) -> None:",
                                 "        " + _RAISE)),
    "shmif-callback": Site("rumpnet/shmif/if_shmif.py", "def _readable(self) -> None:",
                           "the shmif bus reader (a loop reader callback: inotify says the bus grew)",
                           indent=True),
}


def plant(site: Site, text: str) -> str:
    """``text`` with the site's code after its anchor; ValueError if the anchor is gone."""
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line.strip() == site.anchor:
            pad = re.match(r"\s*", line).group(0) + ("    " if site.indent else "")  # type: ignore[union-attr]
            planted = [pad + c + "  # INJECTED (scripts/inject_raise.py)\n" for c in site.code]
            return "".join(lines[:i + 1] + planted + lines[i + 1:])
    raise ValueError(f"{site.path}: anchor line not found: {site.anchor!r}")


def _passed(output: str) -> list[str]:
    return sorted({m.group(1) for m in re.finditer(r"^PASSED (.+?)\s*$", output, re.M)})


def run(site_name: str, pytest_args: list[str]) -> int:
    site = SITES[site_name]
    path = ROOT / site.path
    original = path.read_text()
    patched = plant(site, original)

    def restore(signum: int | None = None, _frame: FrameType | None = None) -> None:
        path.write_text(original)
        if signum is not None:
            sys.exit(128 + signum)

    old = {s: signal.signal(s, restore) for s in (signal.SIGTERM, signal.SIGHUP)}
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        env = dict(os.environ, RUMP_INJECT_LOG=log.name)
        try:
            path.write_text(patched)
            cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "--tb=native", "-p", "no:cacheprovider", *pytest_args]
            proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out = proc.communicate()[0]
            Path(env.get("RUMP_INJECT_OUT", os.devnull)).write_text(out)  # the whole run, to read
        finally:
            restore()
            for s, h in old.items():
                signal.signal(s, h)
        hits = [line.split(" ", 1) for line in log.read().splitlines() if " " in line]
    here = {test for pid, test in hits if pid == str(proc.pid)}
    servers = {test for pid, test in hits if pid != str(proc.pid)} - here
    return report(site_name, site, out, here, servers)


def report(site_name: str, site: Site, out: str, reached: set[str], servers: set[str]) -> int:
    passed = _passed(out)
    summary = next((line for line in reversed(out.splitlines()) if re.match(r"=* ?\d+ (passed|failed)", line)),
                   "(no summary)")
    print(f"site {site_name}: {site.what} ({site.path})")
    print(f"pytest: {summary.strip('= ')}")
    print(f"tests that reached the site: {len(reached | servers)} ({len(servers)} only in a server they started)")
    bad = [t for t in passed if t in reached]
    print(f"passed: {len(passed)}; of them reached the site: {len(bad)}")
    for t in bad:
        print(f"  PASSED ON SILENCE: {t}")
    for t in passed:
        if t in servers:
            print(f"  passed, a server it started was hit (shared with later tests? check): {t}")
        elif t not in reached:
            print(f"  never reached: {t}")
    return 1 if bad else 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--list"]:
        for name, site in SITES.items():
            print(f"{name:15} {site.path}: {site.what}")
        return 0
    if not argv or argv[0] not in SITES:
        print(f"usage: inject_raise.py SITE [pytest args...] | --list\n  SITE: one of {', '.join(SITES)}",
              file=sys.stderr)
        return 2
    return run(argv[0], argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
