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

EXIT_USAGE = 2


class BadOption(ValueError):
    """An option getopt(3) would refuse; the message is getopt's line."""


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


def getopt_bsd(argv: Sequence[str], optstring: str, prog: str) -> tuple[list[tuple[str, str]], list[str]]:
    """POSIX getopt(3) as NetBSD's libc does it: options up to the first operand or ``--``.

    Returns ``([(letter, argument), ...], operands)``; raises :class:`BadOption` with
    NetBSD's messages (``prog: unknown option -- Z``, ``prog: option requires an argument
    -- c``). A word starting with ``-`` followed by a digit is an operand (a negative
    number), as the NetBSD tools that take them expect.
    """
    opts: list[tuple[str, str]] = []
    args = list(argv)
    i = 0
    while i < len(args):
        word = args[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-" or word[1:2].isdigit():
            break
        j = 1
        while j < len(word):
            ch = word[j]
            pos = optstring.find(ch)
            if ch == ":" or pos < 0:
                raise BadOption(f"{prog}: unknown option -- {ch}")
            if optstring[pos + 1:pos + 2] == ":":
                value = word[j + 1:]
                if not value:
                    i += 1
                    if i >= len(args):
                        raise BadOption(f"{prog}: option requires an argument -- {ch}")
                    value = args[i]
                opts.append((ch, value))
                break
            opts.append((ch, ""))
            j += 1
        i += 1
    return opts, args[i:]


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'hostname'?)`` for the nearest of ``choices``, or ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def one_of(choices: Iterable[str]) -> str:
    """``'a', 'b' or 'c'``: the valid values of a field, for an error message."""
    items = [repr(c) for c in choices]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " or " + items[-1]
