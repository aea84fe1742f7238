"""rump_packetdrill's rewriting of a script for Google's packetdrill, line by line:
the nplab fork's conditionals (preprocess.py), its passive connection for sockets that
are only bound and its absolute sequence numbers (nplab.py)."""

from __future__ import annotations

import pytest

from rumpnet.packetdrill.nplab import PACKETDRILL_ONLY_BACKLOG, adapt
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


BOUND = """\
0.000 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
0.000 bind(3, ..., ...) = 0
+0.10 < S 0:0(0) win 32767
+0.00 > R. 0:0(0)! ack 1 win 0
+0.10 < . 1:1(0) ack 5 win 32767
"""


def test_bound_only_socket_gets_a_packetdrill_only_listen_on_the_same_line() -> None:
    out = adapt(BOUND).split("\n")
    assert len(out) == len(BOUND.split("\n"))
    assert out[2] == f"+0 listen(3, {PACKETDRILL_ONLY_BACKLOG}) = 0 +0.10 < S 0:0(0) win 32767"
    assert out[3] == "+0.00 > R. 0:0(0)  ack 1 win 0"        # the '!' dropped, columns kept
    assert out[4] == "+0.10 < . 1:1(0) ack 5 win 32767"        # one listen only


@pytest.mark.parametrize("between", [
    "0.000 listen(3, 1) = 0",                       # a listener: packetdrill's own rules
    "0.000 connect(3, ..., ...) = -1 EINPROGRESS (Operation now in progress)",
])
def test_no_listen_for_a_socket_that_listens_or_connects(between: str) -> None:
    text = BOUND.replace("0.000 bind(3, ..., ...) = 0", "0.000 bind(3, ..., ...) = 0\n" + between)
    text = text.replace("0:0(0)!", "0:0(0)")
    assert adapt(text) == text


def test_udp_and_icmp_are_left_alone() -> None:
    text = "0.000 socket(..., SOCK_DGRAM, IPPROTO_UDP) = 3\n0.000 bind(3, ..., ...) = 0\n+0 < udp(10)\n"
    assert adapt(text) == text


@pytest.mark.parametrize(("text", "message"), [
    # after the kernel's SYN,ACK packetdrill maps outbound sequence numbers
    ("0.0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n0.0 listen(3, 1) = 0\n+0 < S 0:0(0) win 1\n"
     "+0 > S. 0:0(0) ack 1\n+0 > R. 1:1(0)! ack 1\n", "s.pkt:5: an absolute sequence number ('!') on or after"),
    ("0.0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 > S 0:0(0)! win 1\n", "s.pkt:2: an absolute sequence number ('!') on or after"),
    ("0.0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3\n+0 < S 0:0(0)! win 1\n",
     "s.pkt:2: an absolute sequence number ('!') on an injected segment"),
    ("+0 < . 1:1(0) ack 1 win 1 <nop,nop,TS val 1 ecr 2!>\n", "s.pkt:1: an absolute TS ecr"),
])
def test_absolute_numbers_packetdrill_cannot_give_are_refused(text: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError) as e:
        adapt(text, "s.pkt")
    assert str(e.value).startswith(message)


def test_ipv6_field_names_only_in_a_packets_ip_fields() -> None:
    """The fork's (hlim N)/(class X) become Google's (ttl N)/(tos X), same columns."""
    text = ("0.1 < (hlim 3) S 0:0(0) win 1 <mss 1440>\n"
            "0.2 > (class 0x20) . 1:1(0) ack 1 // (hlim 3) stays in a comment\n"
            "0.3 `echo hlim class`\n")
    assert adapt(text) == ("0.1 < (ttl  3) S 0:0(0) win 1 <mss 1440>\n"
                           "0.2 > (tos   0x20) . 1:1(0) ack 1 // (hlim 3) stays in a comment\n"
                           "0.3 `echo hlim class`\n")
