"""The nplab packetdrill fork's conditional blocks, evaluated before Google's packetdrill
reads a script.

The FreeBSD TCP test suite was written for the nplab fork (github.com/nplab/packetdrill),
whose lexer knows ``#ifdef NAME`` ... ``#endif``: the block is read when NAME is defined
(the fork defines the host's OS name, ``FreeBSD`` on FreeBSD, and every ``-D``/``--define``
symbol), and skipped otherwise. The suite uses it for ``#ifdef STANDARD`` (the RFC
behaviour) and ``#ifdef FreeBSD`` (FreeBSD's own) alternatives. Google's packetdrill, the
one this project runs, cannot parse them; :func:`preprocess` evaluates them instead and
hands packetdrill the lines that remain. Every directive line and every skipped line
becomes an empty line, so the result has the script's line numbers: packetdrill's error
messages point at the script's own lines.

Beyond the fork (which knows only ``#ifdef``/``#endif``, not nested): ``#ifndef`` and
``#else``, and nesting. A script the fork accepts means the same here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# The symbols rump_packetdrill defines unless told otherwise: the stack follows the RFCs,
# so the suite's "#ifdef STANDARD" alternatives are the ones it is judged on.
DEFAULT_DEFINES = frozenset({"STANDARD"})

_DIRECTIVE = re.compile(r"^\s*#\s*(ifdef|ifndef|else|endif)\b(.*)$")
_NAME = re.compile(r"^\s+([A-Za-z_][A-Za-z0-9_]*)\s*(?://.*)?$")
_NOTHING = re.compile(r"^\s*(?://.*)?$")


class ScriptSyntaxError(ValueError):
    """A malformed conditional: ``path:line: message``, as packetdrill words its own."""


@dataclass
class _Block:
    line: int           # where the #ifdef/#ifndef is
    taking: bool        # this branch is read
    enclosing: bool     # the blocks around it are read
    seen_else: bool = False


def has_conditionals(text: str) -> bool:
    return any(_DIRECTIVE.match(line) for line in text.splitlines())


def preprocess(text: str, defines: Iterable[str] = DEFAULT_DEFINES, path: str = "<script>") -> str:
    """``text`` with its conditional blocks evaluated against ``defines``; the same number
    of lines (directives and skipped lines are emptied). ScriptSyntaxError for an
    ``#ifdef`` without a name, an ``#else``/``#endif`` without an ``#ifdef``, a second
    ``#else``, or an ``#ifdef`` never closed."""
    defined = frozenset(defines)
    stack: list[_Block] = []
    out: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        m = _DIRECTIVE.match(line.rstrip("\r\n"))
        reading = not stack or (stack[-1].taking and stack[-1].enclosing)
        if m is None:
            out.append(line if reading else _blank(line))
            continue
        _directive(m.group(1), m.group(2), defined, stack, f"{path}:{number}", number)
        out.append(_blank(line))
    if stack:
        raise ScriptSyntaxError(f"{path}:{stack[-1].line}: #ifdef without #endif")
    return "".join(out)


def _directive(word: str, rest: str, defined: frozenset[str], stack: list[_Block],
               where: str, number: int) -> None:
    if word in ("ifdef", "ifndef"):
        m = _NAME.match(rest)
        if m is None:
            raise ScriptSyntaxError(f"{where}: #{word} must be followed by a name")
        enclosing = not stack or (stack[-1].taking and stack[-1].enclosing)
        stack.append(_Block(number, (m.group(1) in defined) == (word == "ifdef"), enclosing))
        return
    if not _NOTHING.match(rest):
        raise ScriptSyntaxError(f"{where}: unexpected text after #{word}")
    if not stack:
        raise ScriptSyntaxError(f"{where}: #{word} without #ifdef")
    if word == "endif":
        stack.pop()
        return
    block = stack[-1]
    if block.seen_else:
        raise ScriptSyntaxError(f"{where}: second #else for the #ifdef at line {block.line}")
    block.seen_else = True
    block.taking = not block.taking


def _blank(line: str) -> str:
    """An empty line with the line's own ending (none for a last line without one)."""
    return line[len(line.rstrip("\r\n")):]
