"""Command-line conventions every rumpnet program shares.

* ``--help`` prints the usage on standard output and exits 0, ``--version`` prints
  ``PROG (rumpnet) VERSION`` and exits 0; neither needs ``$RUMP_SERVER``.
* A bad option prints what was wrong and the usage on standard error, exit status 2.
  NetBSD's tools say it as their getopt(3) does: ``rump.ifconfig: unknown option -- Z``.
* A misspelt name in a configuration file is named with the nearest valid one.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterable, Sequence

from rumpkern._version import __version__
from rumpkern.bsdgetopt import BadOption, getopt_bsd

EXIT_USAGE = 2

__all__ = ["EXIT_USAGE", "BadOption", "did_you_mean", "getopt_bsd", "help_or_version", "one_of", "version_text"]


def version_text(prog: str) -> str:
    """What ``PROG --version`` prints."""
    return f"{prog} (rumpnet) {__version__}\n"


def help_or_version(prog: str, argv: Sequence[str], usage: str) -> int | None:
    """Answer ``--help`` or ``--version`` in ``argv`` (before any ``--``): print and return
    the exit status (0); None when neither was asked for."""
    for arg in argv:
        if arg == "--":
            break
        if arg == "--help":
            sys.stdout.write(usage if usage.endswith("\n") else usage + "\n")
            return 0
        if arg == "--version":
            sys.stdout.write(version_text(prog))
            return 0
    return None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'hostname'?)`` for the nearest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: the valid values of a field, for an error message."""
    items = [repr(c) for c in choices]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
