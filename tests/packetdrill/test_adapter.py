"""The packetdrill adapter itself: real packetdrill against a fresh kernel per script.

Each test runs one of our own scripts (tests/packetdrill/scripts) through
``run_script`` (the session is served in this process, so a kernel exception raised
here is seen) or the ``rump_packetdrill`` command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rumpnet.netinet import tcp_syncache
from rumpnet.packetdrill.build import Toolchain
from rumpnet.packetdrill.runner import run_script

SCRIPTS = Path(__file__).parent / "scripts"


def _run(drill: Toolchain, name: str, verbose: bool = False):  # noqa: ANN202 - Result
    return run_script(SCRIPTS / name, drill, profile="none", verbose=verbose, timeout=60)


def test_wrong_expected_packet_fails_with_packetdrills_message(drill: Toolchain) -> None:
    r = _run(drill, "wrong-packet.pkt")
    assert not r.passed
    assert r.error.endswith("wrong-packet.pkt:8: error handling packet: live packet field "
                            "tcp_ack_seq: expected: 2 (0x2) vs actual: 1 (0x1)")


def test_wrong_errno_fails_with_packetdrills_message(drill: Toolchain) -> None:
    r = _run(drill, "wrong-errno.pkt")
    assert not r.passed
    assert r.error.endswith("wrong-errno.pkt:9: runtime error in accept call: Expected errno 111 "
                            "(Connection refused) but got 11 (Resource temporarily unavailable)")


def test_backtick_sysctl_changes_the_kernel(drill: Toolchain) -> None:
    """The script reads SO_RCVBUF back from sockets made after each sysctl: it passes
    only if the kernel under test took the values (not the host)."""
    r = _run(drill, "backtick-sysctl.pkt")
    assert r.passed, r.error
    assert "net.inet.tcp.recvspace: 262144 -> 16384" in r.stdout
    assert "net.inet.tcp.recvspace: 16384 -> 32768" in r.stdout
    # A FreeBSD name with no counterpart is accepted, changes nothing, and is reported.
    assert r.ignored_sysctls == {"net.inet.tcp.blackhole"}


def test_blocking_accept_returns_when_the_handshake_completes(drill: Toolchain) -> None:
    """accept() runs in packetdrill's system-call thread from 0.100 and must return in
    0.100...0.300 (packetdrill checks): at 0.300, when the ACK of the handshake comes."""
    r = _run(drill, "passive-blocking-accept.pkt", verbose=True)
    assert r.passed, r.error
    assert "accept syscall: 1000000000.300" in r.stdout


def test_ecn_with_real_packetdrill(drill: Toolchain) -> None:
    """RFC 3168 6.1 judged by packetdrill's own IP ECN field checks ([ect0], [noecn]) and
    its CE injection ([ce]): negotiation, ECT(0) on new data only, ECE until CWR, CWR
    after an ECE."""
    r = _run(drill, "ecn.pkt")
    assert r.passed, r.error


def test_ecn_accecn_modes_refused_with_a_reason(drill: Toolchain) -> None:
    r = _run(drill, "ecn-accecn.pkt")
    assert not r.passed
    assert "AccECN is not implemented (0 off, 1 request and accept, 2 accept only)" in r.error


def test_same_script_twice_prints_the_same(drill: Toolchain) -> None:
    first = _run(drill, "passive-blocking-accept.pkt", verbose=True)
    second = _run(drill, "passive-blocking-accept.pkt", verbose=True)
    assert first.passed and second.passed
    assert "outbound sniffed packet" in first.stdout
    assert (first.stdout, first.stderr) == (second.stdout, second.stderr)


def test_a_kernel_exception_fails_the_script(drill: Toolchain, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception out of the kernel's TCP input must fail the script, not be counted
    and forgotten (the session runs TCP strict)."""
    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("injected fault in the SYN cache")

    monkeypatch.setattr(tcp_syncache.SynCache, "listen_input", broken)
    r = _run(drill, "passive-blocking-accept.pkt")
    assert not r.passed
    assert "rumpdrill" in r.error
    assert "injected fault in the SYN cache" in r.stderr


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rumpnet.packetdrill.cli", *args],
                          capture_output=True, text=True, timeout=300)


def test_cli_lines_and_exit_status(drill: Toolchain) -> None:
    ok = _cli("--profile", "none", str(SCRIPTS / "backtick-sysctl.pkt"))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines() == [f"PASS {SCRIPTS / 'backtick-sysctl.pkt'}", "1 passed, 0 failed"]
    assert "net.inet.tcp.blackhole" in ok.stderr           # the ignored sysctl, reported once
    bad = _cli("--profile", "none", str(SCRIPTS / "backtick-sysctl.pkt"), str(SCRIPTS / "wrong-packet.pkt"))
    assert bad.returncode == 1
    lines = bad.stdout.splitlines()
    assert lines[1].startswith(f"FAIL {SCRIPTS / 'wrong-packet.pkt'}: ")
    assert lines[-1] == "1 passed, 1 failed"


@pytest.mark.parametrize("args", [[], ["--profile", "bsd", "x.pkt"], ["/nonexistent/x.pkt"], ["-j", "0", "x.pkt"]])
def test_cli_usage_errors_exit_2(args: list[str]) -> None:
    r = _cli(*args)
    assert r.returncode == 2
    assert "usage: rump_packetdrill" in r.stderr


def test_packetdrill_run_by_hand_starts_its_own_session(drill: Toolchain) -> None:
    """Without a session (--so_flags with no fd=), librumpdrill.so starts one itself
    (python -m rumpnet.packetdrill.serve); without LD_PRELOAD it refuses, saying why."""
    cmd = [str(drill.packetdrill), f"--so_filename={drill.shim}", "--so_flags=profile=none",
           "--local_ip=192.168.0.2", "--remote_ip=192.0.2.1", str(SCRIPTS / "passive-blocking-accept.pkt")]
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    ok = subprocess.run(cmd, env=dict(env, LD_PRELOAD=str(drill.shim)), capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1
    assert "librumpdrill.so must also be in LD_PRELOAD" in bad.stderr


def test_ipv6_icmp_time_exceeded_codes(drill: Toolchain) -> None:
    """An IPv6 connection attempt from the kernel: reassembly time exceeded leaves it
    alone, hop limit exceeded in transit aborts it (EHOSTUNREACH)."""
    r = _run(drill, "ipv6-icmp-reass-exceeded.pkt")
    assert r.passed, r.error
