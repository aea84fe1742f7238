"""Two behaviours of the nplab packetdrill fork that Google's packetdrill lacks, given
to Google's packetdrill by rewriting the script it reads (line for line: the same
line numbers), never by changing what the kernel sees.

**Segments for a socket that is only bound.** packetdrill maps every segment a script
injects or expects onto "the socket under test". A socket that has only been made and
bound (no ``listen``, no ``connect``: the suite's ``rcv-*-closed`` scripts test a TCP
endpoint in CLOSED this way) has no addresses yet. Google's packetdrill then injects the
segment from 0.0.0.0 port 0 to 0.0.0.0 port 0, and compares every packet the kernel sends
with that socket's empty 4-tuple, which no IPv4 or IPv6 packet can equal (the tuple's
address family is unset): the kernel's answer can never be matched. The nplab fork
(``do_inbound_script_packet`` in its run_packet.c) sees the wildcard source when it
injects and gives the segment a new passive connection instead (``setup_new_child_socket``):
from the remote address and an ephemeral port, to the local address and the bound port;
that connection becomes the socket under test, so the kernel's answer matches it.
Google's packetdrill makes exactly that connection (``handle_listen_for_script_packet``)
for a segment that reaches a *listening* socket under test. So before the first
inbound TCP segment for a socket that is only made or bound, :func:`adapt` puts, on that
same line, a ``listen(FD, PACKETDRILL_ONLY_BACKLOG)`` call: packetdrill marks the socket
listening, and the session answers that call with 0 WITHOUT calling the kernel (the
kernel's socket stays only bound, and is judged as such). The segment, the kernel's
answer and every check packetdrill makes on it are as with the fork.

**The ``!`` suffix** after a segment's sequence numbers (``R. 0:0(0)! ack 1``) means, in
the fork's parser, "absolute: not mapped by the connection's initial sequence number".
Google's packetdrill maps an outbound segment's sequence number by the local ISN it has
learned from the kernel's SYN or SYN-ACK; until it has seen one, the mapping is the
identity, and absolute and relative are the same number. :func:`adapt` drops the ``!``
there, and refuses a script that uses it anywhere else (after the kernel's SYN, on a
SYN, on an injected segment): a meaning Google's packetdrill cannot give.

**IPv6 header fields** in a packet's ``(...)``: the fork names the Traffic Class
``class`` and the Hop Limit ``hlim`` (``< (hlim 3) S ...``); Google's packetdrill names
them as IPv4's, ``tos`` and ``ttl``, and on an IPv6 packet sets and checks the Traffic
Class and the Hop Limit with them (``set_ipv6_header``, ``verify_outbound_live_ttl_or_hl``).
:func:`adapt` renames them, padded to the same columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rumpnet.packetdrill.preprocess import ScriptSyntaxError

# The backlog that marks rump_packetdrill's packetdrill-only listen() (see above); the
# session never passes a listen() with it to the kernel.
PACKETDRILL_ONLY_BACKLOG = -0x52505244     # "RPRD"

_SOCKET = re.compile(r"\bsocket\s*\(.*\)\s*=\s*(\d+)")
_LISTEN = re.compile(r"\blisten\s*\(\s*(\d+)\s*,.*\)\s*=\s*0\b")
_CONNECT = re.compile(r"\b(?:connect|sendto|sendmsg)\s*\(\s*(\d+)\s*,")
# A packet event: its time, then < or > (packetdrill's grammar: event_time direction).
_PACKET = re.compile(r"^(?P<indent>\s*)(?P<time>[+*]?[0-9.~+*]*)\s*(?P<dir>[<>])")
_NOT_TCP = re.compile(r"\b(?:udp|udplite|icmp|sctp|gre|mpls)\b")
# Flags then seq: "S.  0:0(0)!" (the ! of an absolute sequence number).
_SEQ = re.compile(r"(?P<flags>[A-Z.\-]+)\s+\d+:\d+\(\d+\)(?P<bang>!)")
_TCP_FLAGS = re.compile(r"[<>]\s*(?:\([^)]*\)\s*)?(?P<flags>[FSRPEWU.\-]+)\s+\d+:\d+\(")
_ABSOLUTE_ECR = re.compile(r"\becr\s+\d+!")
# A packet's IP fields "(...)" right after its direction, and the fork's IPv6 names in it.
_IP_INFO = re.compile(r"(?<=[<>])\s*\([^)]*\)")
_IPV6_FIELD = re.compile(r"\b(class|hlim)\b")
_GOOGLE_NAME = {"class": "tos  ", "hlim": "ttl "}


@dataclass
class _UnderTest:
    """What packetdrill knows of its socket under test, as far as the rewriting needs."""

    fd: int = -1
    state: str = "none"           # none, new (made or bound), listening, active, connection
    local_isn_known: bool = False  # packetdrill has seen the kernel's SYN or SYN-ACK


def adapt(text: str, path: str = "<script>") -> str:
    """``text`` as Google's packetdrill is to read it (see the module docstring)."""
    sut = _UnderTest()
    out: list[str] = []
    for number, line in enumerate(text.splitlines(keepends=True), 1):
        out.append(_line(line, sut, f"{path}:{number}"))
    return "".join(out)


def _line(line: str, sut: _UnderTest, where: str) -> str:
    code = line.split("//", 1)[0]
    m = _PACKET.match(code)
    if m is None or not m.group("time"):
        _syscalls(code, sut)
        return line
    line = _ipv6_field_names(line, m.end())
    if _NOT_TCP.search(code):
        return line
    if _ABSOLUTE_ECR.search(code):
        raise ScriptSyntaxError(f"{where}: an absolute TS ecr ('!') cannot be given to Google's packetdrill")
    flags_m = _TCP_FLAGS.search(code)
    syn = flags_m is not None and "S" in flags_m.group("flags")
    if m.group("dir") == "<":
        return _inbound(line, m, code, sut, where)
    line = _outbound_bang(line, code, sut, syn, where)
    if syn:
        sut.local_isn_known = True
    return line


def _ipv6_field_names(line: str, after_dir: int) -> str:
    """``(class X)``/``(hlim N)`` after the direction as ``(tos X)``/``(ttl N)``."""
    info = _IP_INFO.match(line, after_dir)
    if info is None:
        return line
    fields = _IPV6_FIELD.sub(lambda f: _GOOGLE_NAME[f.group(1)], info.group(0))
    return line[:info.start()] + fields + line[info.end():]


def _inbound(line: str, m: re.Match[str], code: str, sut: _UnderTest, where: str) -> str:
    if _SEQ.search(code):
        raise ScriptSyntaxError(f"{where}: an absolute sequence number ('!') on an injected "
                                "segment cannot be given to Google's packetdrill")
    if sut.state == "new":
        sut.state, sut.local_isn_known = "connection", False
        listen = f"+0 listen({sut.fd}, {PACKETDRILL_ONLY_BACKLOG}) = 0 "
        return line[:m.start("time")] + listen + line[m.start("time"):]
    if sut.state == "listening":
        # packetdrill makes a new connection the socket under test.
        sut.state, sut.local_isn_known = "connection", False
    return line


def _outbound_bang(line: str, code: str, sut: _UnderTest, syn: bool, where: str) -> str:
    seq = _SEQ.search(code)
    if seq is None:
        return line
    if syn or sut.local_isn_known:
        raise ScriptSyntaxError(
            f"{where}: an absolute sequence number ('!') on or after the kernel's SYN cannot "
            "be given to Google's packetdrill (it maps them by the kernel's ISN)")
    at = seq.start("bang")
    return line[:at] + " " + line[at + 1:]       # same length, same columns


def _syscalls(code: str, sut: _UnderTest) -> None:
    """packetdrill's socket-under-test rules (run_system_call.c) for the calls seen."""
    if m := _SOCKET.search(code):
        sut.fd, sut.state, sut.local_isn_known = int(m.group(1)), "new", False
    elif (m := _LISTEN.search(code)) and int(m.group(1)) == sut.fd and sut.state == "new":
        sut.state = "listening"
    elif (m := _CONNECT.search(code)) and int(m.group(1)) == sut.fd and sut.state == "new":
        sut.state = "active"
