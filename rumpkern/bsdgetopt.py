"""getopt(3) as NetBSD's libc does it, for the commands (the kern core's sysctl and the
factions' tools) and the programs: options up to the first operand or ``--``, and
NetBSD's messages for a bad one (``ifconfig: unknown option -- Z``)."""

from __future__ import annotations

from collections.abc import Sequence


class BadOption(ValueError):
    """An option getopt(3) would refuse; the message is getopt's line."""


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
