"""``rump_packetdrill [-v] [--profile freebsd|none] [-j N] [-D SYM] [-U SYM] SCRIPT.pkt...``

Runs each script with real packetdrill against a fresh kernel on virtual time and prints
one line per script, ``PASS path`` or ``FAIL path: <packetdrill's first error line>``,
then ``N passed, M failed``. Exit status 0 iff every script passed, 1 otherwise, 2 for
a bad command line, 3 when packetdrill or the adapter cannot be built.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from rumpnet.packetdrill.build import BuildError, toolchain
from rumpnet.packetdrill.preprocess import DEFAULT_DEFINES
from rumpnet.packetdrill.profiles import PROFILES
from rumpnet.packetdrill.runner import DEFAULT_TIMEOUT, run_scripts
from rumpnet.usage import version_text

_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="rump_packetdrill",
        description="Run packetdrill scripts against a fresh rumpnet kernel each, on virtual time.",
        epilog="packetdrill comes from $PACKETDRILL, or is built once from $PACKETDRILL_SRC "
               "(default ../shared/conformance/packetdrill beside the repository) into "
               "$RUMP_PACKETDRILL_CACHE (default ~/.cache/rumpnet/packetdrill).")
    ap.add_argument("-v", "--verbose", action="store_true",
                    help="run packetdrill with --verbose and show its output for every script")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="freebsd",
                    help="kernel defaults to start each script from (default: freebsd, the "
                         "defaults the FreeBSD TCP test suite assumes; see docs/CONFORMANCE.md)")
    ap.add_argument("-j", "--jobs", type=int, default=1, metavar="N",
                    help="run N scripts at once (default 1)")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                    help=f"real seconds a script may take before it fails (default {DEFAULT_TIMEOUT:g})")
    ap.add_argument("-D", "--define", action="append", default=[], metavar="SYMBOL",
                    help="define SYMBOL for the scripts' #ifdef blocks (repeatable; "
                         f"defined unless -U: {', '.join(sorted(DEFAULT_DEFINES))})")
    ap.add_argument("-U", "--undefine", action="append", default=[], metavar="SYMBOL",
                    help="undefine SYMBOL, e.g. -U STANDARD -D FreeBSD for the FreeBSD "
                         "alternatives of the FreeBSD suite's scripts")
    ap.add_argument("--version", action="version", version=version_text("rump_packetdrill").rstrip())
    # "*", checked after parsing: a bad option is then named before a missing script.
    ap.add_argument("scripts", nargs="*", metavar="SCRIPT.pkt")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if not args.scripts:
        ap.error("no script given (SCRIPT.pkt...)")
    if args.jobs < 1:
        ap.error("-j takes a positive number")
    missing = [s for s in args.scripts if not Path(s).is_file()]
    if missing:
        ap.error(f"no such script: {', '.join(missing)}")
    bad = [s for s in args.define + args.undefine if not _SYMBOL.fullmatch(s)]
    if bad:
        ap.error(f"not a symbol name (letters, digits, _): {', '.join(bad)}")
    defines = (DEFAULT_DEFINES - set(args.undefine)) | set(args.define)
    try:
        toolchain()
    except BuildError as e:
        print(f"rump_packetdrill: {e}", file=sys.stderr)
        return 3
    passed = failed = 0
    ignored: set[str] = set()
    for r in run_scripts(args.scripts, args.profile, args.jobs, args.verbose, args.timeout, defines):
        if args.verbose:
            sys.stdout.write(r.stdout)
            sys.stdout.write(r.stderr)
        print(r.line, flush=True)
        passed += r.passed
        failed += not r.passed
        ignored |= r.ignored_sysctls
    if ignored:
        sys.stdout.flush()
        print("note: sysctls with no counterpart in rumpnet, set by the scripts and ignored: "
              + ", ".join(sorted(ignored)), file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
