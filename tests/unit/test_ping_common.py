"""ping and ping6 share their run (rumpnet.commands.ping_common) but keep their own
tool's words: the statistics header, stddev (ping.c: the sample's) against std-dev
(ping6.c: the population's), " (DUP!)" against "(DUP!)", and both tools' messages for
bad option values."""

from __future__ import annotations

import errno

import pytest

from rumpkern import rump_init
from rumpnet.commands.ping import _Ping4State, parse
from rumpnet.commands.ping6 import _Ping6State, parse6

# three replies: seq 0 after 10 ms, seq 1 after 30 ms, and seq 1 again (a duplicate)
REPLIES = ((0, 0.010), (1, 0.030), (1, 0.030))


@pytest.fixture
def k():
    kern = rump_init(clock="virtual", seed=1)
    yield kern
    kern.halt()


def _run(st) -> None:  # noqa: ANN001
    st.ntransmitted = 2
    for seq, rtt in REPLIES:
        st.sent_at[seq] = 0.0
        t, dup = st.record_reply(seq, bytes(8), rtt)      # no send time in 8 bytes: sent_at's
        st.emit_reply(f"reply {seq}", t, dup)


def test_ping_words(k) -> None:  # noqa: ANN001
    st = _Ping4State(k, k.curproc, parse(["-c", "2", "10.0.0.1"]), 0x0A000001)
    _run(st)
    assert st.lines == ["reply 0 time=10.000 ms", "reply 1 time=30.000 ms", "reply 1 time=30.000 ms (DUP!)"]
    assert st.summary().splitlines() == [
        "----10.0.0.1 PING Statistics----",
        "2 packets transmitted, 2 packets received, +1 duplicates, 0.0% packet loss",
        "round-trip min/avg/max/stddev = 10.000/23.333/30.000/11.547 ms"]
    st.nreceived = 3
    assert "-- somebody's duplicating packets!" in st.summary()


def test_ping6_words(k) -> None:  # noqa: ANN001
    st = _Ping6State(k, k.curproc, parse6(["-c", "2", "fc00::1"]), 1, 0)
    _run(st)
    assert st.lines[-1] == "reply 1 time=30.000 ms(DUP!)"       # ping6.c prints no space
    assert st.summary().splitlines() == [
        "--- fc00::1 ping6 statistics ---",
        "2 packets transmitted, 2 packets received, +1 duplicates, 0.0% packet loss",
        "round-trip min/avg/max/std-dev = 10.000/23.333/30.000/9.428 ms"]
    st.o.quiet = True
    st.emit_reply("quiet", 0.0, False)
    assert st.lines[-1] != "quiet"


@pytest.mark.parametrize(("argv", "message"), [
    (["-c", "0", "h"], "ping: Bad/invalid number of packets: 0"),
    (["-s", "70000", "h"], "ping: Bad/invalid packet size: 70000"),
    (["-w", "0", "h"], "ping: Bad/invalid maxwait time: 0"),
    (["-T", "300", "h"], "ping: ttl 300 out of range"),
    (["-i", "x", "h"], "ping: invalid interval value: `x'"),
])
def test_ping_option_errors(argv: list[str], message: str) -> None:
    with pytest.raises(OSError) as ei:
        parse(argv)
    assert ei.value.errno == errno.EINVAL and ei.value.strerror == message


@pytest.mark.parametrize(("argv", "message"), [
    (["-c", "0", "h"], "ping6: illegal number of packets -- 0"),
    (["-h", "256", "h"], "ping6: illegal hoplimit 256"),
    (["-i", "0", "h"], "ping6: illegal timing interval 0"),
    (["-s", "70000", "h"], "ping6: illegal datalen value -- 70000"),
    (["-X", "-1", "h"], "ping6: illegal timeout -- -1"),
])
def test_ping6_option_errors(argv: list[str], message: str) -> None:
    with pytest.raises(OSError) as ei:
        parse6(argv)
    assert ei.value.errno == errno.EINVAL and ei.value.strerror == message


def test_options_set_their_fields() -> None:
    o = parse6(["-n", "-q", "-S", "fc00::2", "-I", "wire0", "-g", "fc00::9", "-l", "2", "-i", "0.5", "fc00::1"])
    assert (o.numeric, o.quiet, o.source, o.interface, o.gateway, o.preload, o.interval, o.count) == (
        True, True, "fc00::2", "wire0", "fc00::9", 2, 0.5, 1)
    o4 = parse(["-W", "3", "-I", "10.0.0.2", "-T", "5", "-o", "10.0.0.1"])
    assert (o4.maxwait, o4.source, o4.ttl, o4.once, o4.count) == (3.0, "10.0.0.2", 5, True, None)
