"""What rump_packetdrill gives Google's packetdrill of the nplab fork the FreeBSD suite
was written for: ``#ifdef`` blocks (preprocess.py), segments for a socket that is only
bound and the ``!`` of absolute sequence numbers (nplab.py).

Each of our scripts is run as written by Google's packetdrill first (it must fail: the
feature is what makes it pass), then through ``run_script``.
"""

from __future__ import annotations

from pathlib import Path

from rumpnet.packetdrill import runner
from rumpnet.packetdrill.build import Toolchain
from rumpnet.packetdrill.runner import Result, run_script

SCRIPTS = Path(__file__).parent / "scripts"


def _run(drill: Toolchain, name: str, **kw: object) -> Result:
    return run_script(SCRIPTS / name, drill, profile="none", timeout=60, **kw)  # type: ignore[arg-type]


def _as_written(drill: Toolchain, name: str) -> tuple[int, str]:
    """Google's packetdrill on the script itself: exit status and stderr."""
    rc, _, session_error, _, stderr = runner._run_packetdrill(drill, SCRIPTS / name, "none", False, 60)
    return rc, stderr + (session_error or "")


def test_ifdef_blocks_need_rump_packetdrill(drill: Toolchain) -> None:
    rc, err = _as_written(drill, "ifdef-standard.pkt")
    assert rc != 0 and "ifdef-standard.pkt:13: parse error" in err


def test_ifdef_standard_is_defined_by_default(drill: Toolchain) -> None:
    r = _run(drill, "ifdef-standard.pkt")
    assert r.passed, r.error


def test_ifdef_else_branch_and_line_numbers(drill: Toolchain) -> None:
    """Without STANDARD the #else line is read; packetdrill's error names the script
    (not the evaluated copy) and its own line number."""
    r = _run(drill, "ifdef-standard.pkt", defines=frozenset())
    assert not r.passed
    assert r.error == (f"{SCRIPTS / 'ifdef-standard.pkt'}:16: error handling packet: live packet "
                       "field tcp_ack_seq: expected: 2 (0x2) vs actual: 1 (0x1)")


def test_skipped_lines_keep_their_numbers(drill: Toolchain) -> None:
    r = _run(drill, "ifdef-standard.pkt", defines=frozenset({"STANDARD", "NO_SUCH_SYMBOL"}))
    assert not r.passed
    assert r.error.endswith("ifdef-standard.pkt:22: parse error at 'this': syntax error")


def test_bound_only_socket_needs_the_forks_connection(drill: Toolchain) -> None:
    """As written, Google's packetdrill injects the SYN from and to 0.0.0.0 and can never
    match the kernel's answer; given the fork's connection, the kernel's RSTs are checked
    (and a second SYN is refused again: the kernel's socket never listened)."""
    rc, err = _as_written(drill, "bound-only-closed.pkt")
    assert rc != 0 and "timed out waiting for a packet from the kernel" in err
    r = _run(drill, "bound-only-closed.pkt")
    assert r.passed, r.error


def test_absolute_sequence_number(drill: Toolchain) -> None:
    rc, err = _as_written(drill, "absolute-seq.pkt")
    assert rc != 0 and "absolute-seq.pkt:9: parse error at '!'" in err
    r = _run(drill, "absolute-seq.pkt")
    assert r.passed, r.error


def test_malformed_conditional_fails_with_its_line(tmp_path: Path, drill: Toolchain) -> None:
    bad = tmp_path / "bad.pkt"
    bad.write_text("--ip_version=ipv4\n#ifdef STANDARD\n0.000 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n")
    r = run_script(bad, drill, profile="none", timeout=60)
    assert not r.passed and r.error == f"{bad}:2: #ifdef without #endif"


def test_ipv6_header_field_names(drill: Toolchain) -> None:
    """The fork's (hlim N) and (class X) are Google's (ttl N) and (tos X) on IPv6: as
    written the script does not parse; given to packetdrill renamed, the kernel's hop
    limit and traffic class (IPV6_UNICAST_HOPS, IPV6_TCLASS) are checked with them."""
    rc, err = _as_written(drill, "ipv6-passive-hlim-class.pkt")
    assert rc != 0 and "ipv6-passive-hlim-class.pkt:13: parse error at 'hlim'" in err
    r = _run(drill, "ipv6-passive-hlim-class.pkt")
    assert r.passed, r.error

