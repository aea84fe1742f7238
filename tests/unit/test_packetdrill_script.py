"""rump_packetdrill's rewriting of a script for Google's packetdrill, line by line:
the nplab fork's conditionals (preprocess.py)."""

from __future__ import annotations

import pytest

from rumpnet.packetdrill.preprocess import ScriptSyntaxError, preprocess

SCRIPT = """\
a
#ifdef STANDARD
b
#else
c
#endif
#ifndef STANDARD
d
#ifdef FreeBSD
e
#endif
#endif
f"""


def test_conditionals_keep_every_line_in_place() -> None:
    out = preprocess(SCRIPT, {"STANDARD"})
    assert out.split("\n") == ["a", "", "b", "", "", "", "", "", "", "", "", "", "f"]


def test_else_ifndef_and_nesting() -> None:
    assert preprocess(SCRIPT, {"FreeBSD"}).split("\n") == ["a", "", "", "", "c", "", "", "d", "", "e", "", "", "f"]
    assert preprocess(SCRIPT, set()).split("\n")[7:10] == ["d", "", ""]


def test_line_endings_survive() -> None:
    assert preprocess("#ifdef X\r\nx\r\n#endif\r\ny", {"X"}) == "\r\nx\r\n\r\ny"
    assert preprocess("#ifdef X\nx\n#endif\n", set()) == "\n\n\n"


@pytest.mark.parametrize(("text", "message"), [
    ("#ifdef X\nx\n", "s.pkt:1: #ifdef without #endif"),
    ("x\n#endif\n", "s.pkt:2: #endif without #ifdef"),
    ("#else\n", "s.pkt:1: #else without #ifdef"),
    ("#ifdef X\n#else\n#else\n#endif\n", "s.pkt:3: second #else for the #ifdef at line 1"),
    ("#ifdef\n#endif\n", "s.pkt:1: #ifdef must be followed by a name"),
    ("#ifdef 9x\n#endif\n", "s.pkt:1: #ifdef must be followed by a name"),
    ("#ifdef X\n#endif junk\n", "s.pkt:2: unexpected text after #endif"),
])
def test_malformed_conditionals(text: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError) as e:
        preprocess(text, {"X"}, "s.pkt")
    assert str(e.value) == message


def test_comment_after_a_directive_is_allowed() -> None:
    assert preprocess("#ifdef X // why\nx\n#endif // done\n", {"X"}) == "\nx\n\n"


