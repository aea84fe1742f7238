"""tc(8) command syntax for netem (rumpnet.faults.tc), against a fake interface shaped
as docs/ARCHITECTURE.md's Ifnet hooks."""

from __future__ import annotations

import errno
import heapq
import random
from collections.abc import Callable
from typing import Any

import pytest

from rumpnet.faults.match import FrameMatch
from rumpnet.faults.netem import NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.faults.tc import (
    format_netem,
    format_rate,
    format_time,
    netem_params,
    parse_percent,
    parse_rate,
    parse_time,
    tc_command,
)


class Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeSched:
    def __init__(self) -> None:
        self.t = 0.0
        self.q: list[tuple[float, int, Handle, Callable[..., Any], tuple[Any, ...]]] = []
        self.n = 0

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Handle:
        h = Handle()
        self.n += 1
        heapq.heappush(self.q, (when, self.n, h, fn, args))
        return h

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return self.call_at(self.t, fn, *args)

    def run(self) -> None:
        while self.q:
            when, _, h, fn, args = heapq.heappop(self.q)
            self.t = max(self.t, when)
            if not h.cancelled:
                fn(*args)


class FakeIfp:
    def __init__(self, name: str) -> None:
        self.name = name
        self._q: dict[str, Any] = {"egress": None, "ingress": None}
        self.tx: list[bytes] = []
        self.rx: list[bytes] = []

    def set_qdisc(self, direction: str, runner: Any) -> None:
        self._q[direction] = runner

    def qdisc(self, direction: str) -> Any:
        return self._q[direction]

    def link_transmit(self, frame: bytes) -> None:
        self.tx.append(frame)

    def link_deliver(self, frame: bytes) -> None:
        self.rx.append(frame)

    # what the Ifnet does with its hooks
    def output(self, frame: bytes) -> None:
        r = self._q["egress"]
        (r.input if r is not None else self.link_transmit)(frame)

    def input(self, frame: bytes) -> None:
        r = self._q["ingress"]
        (r.input if r is not None else self.link_deliver)(frame)


@pytest.fixture
def env() -> tuple[Callable[..., str], dict[str, FakeIfp], FakeSched]:
    ifps = {"eth0": FakeIfp("eth0"), "wire0": FakeIfp("wire0")}
    sched = FakeSched()
    rng = random.Random(1)

    def get_ifp(name: str) -> FakeIfp:
        if name not in ifps:
            raise OSError(errno.ENXIO, "no such interface")
        return ifps[name]

    def tc(line: str) -> str:
        return tc_command(get_ifp, line.split(), rng, sched, all_ifps=lambda: list(ifps.values()))

    return tc, ifps, sched


# -- units -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,sec", [
    ("100ms", 0.1), ("1s", 1.0), ("500us", 500e-6), ("2sec", 2.0), ("10msec", 0.01), ("7usecs", 7e-6),
    ("250", 250e-6), ("0.5ms", 0.0005), ("1.5s", 1.5), ("20ns", 20e-9), ("100MS", 0.1),
])
def test_parse_time(text: str, sec: float) -> None:
    assert parse_time(text, "delay") == pytest.approx(sec)


@pytest.mark.parametrize("text,bps", [
    ("1mbit", 1e6), ("100kbps", 800e3), ("20000", 20000), ("1gbit", 1e9), ("1kibit", 1024),
    ("10Mbit", 10e6), ("5kbit", 5000), ("1bps", 8), ("2mibps", 2 * 8 * 1024 * 1024),
])
def test_parse_rate(text: str, bps: float) -> None:
    assert parse_rate(text) == pytest.approx(bps)


def test_parse_percent() -> None:
    assert parse_percent("1%", "loss") == pytest.approx(0.01)
    assert parse_percent("0.1%", "loss") == pytest.approx(0.001)
    assert parse_percent("25", "loss") == pytest.approx(0.25)
    for bad in ("101%", "-1%", "x%", "1%%"):
        with pytest.raises(OSError) as ei:
            parse_percent(bad, "loss")
        assert ei.value.errno == errno.EINVAL and "loss" in str(ei.value)


def test_formats() -> None:
    assert format_time(0.1) == "100ms"
    assert format_time(0.0001) == "100us"
    assert format_time(1.5) == "1.5s"
    assert format_time(1e-8) == "10ns"
    assert format_rate(20000) == "20Kbit"
    assert format_rate(1e6) == "1Mbit"
    assert format_rate(1500e3) == "1500Kbit"
    assert format_rate(999) == "999bit"


# -- netem option lines (tc-netem(8) examples, kernel tc-testing netem.json) ------------------

@pytest.mark.parametrize("opts,shown", [
    ("", "limit 1000"),
    ("limit 200", "limit 200"),
    ("delay 100ms", "limit 1000 delay 100ms"),
    ("delay 100ms 10ms", "limit 1000 delay 100ms  10ms"),
    ("delay 100ms 10ms 25%", "limit 1000 delay 100ms  10ms 25%"),
    ("delay 100ms 20ms distribution normal", "limit 1000 delay 100ms  20ms"),
    ("delay 100ms 10ms distribution normal corrupt 1%", "limit 1000 delay 100ms  10ms corrupt 1%"),
    ("delay 100ms 10ms distribution normal duplicate 1%", "limit 1000 delay 100ms  10ms duplicate 1%"),
    ("delay 100ms 10ms distribution pareto loss 1%", "limit 1000 delay 100ms  10ms loss 1%"),
    ("delay 100ms 10ms distribution paretonormal loss state 1",
     "limit 1000 delay 100ms  10ms loss state p13 1% p31 99% p32 0% p23 100% p14 0%"),
    ("loss gemodel 1%", "limit 1000 loss gemodel p 1% r 99% 1-h 100% 1-k 0%"),
    ("loss gemodel 1% 10% 70% 0.1%", "limit 1000 loss gemodel p 1% r 10% 1-h 70% 1-k 0.1%"),
    ("loss 0.1%", "limit 1000 loss 0.1%"),
    ("loss 0.3% 25%", "limit 1000 loss 0.3% 25%"),
    ("loss random 5%", "limit 1000 loss 5%"),
    ("drop 5%", "limit 1000 loss 5%"),
    ("loss state 1% 10% 70% 0.1% 2%", "limit 1000 loss state p13 1% p31 10% p32 70% p23 0.1% p14 2%"),
    ("duplicate 1%", "limit 1000 duplicate 1%"),
    ("corrupt 0.1%", "limit 1000 corrupt 0.1%"),
    ("delay 10ms reorder 25% 50%", "limit 1000 delay 10ms reorder 25% 50% gap 1"),
    ("delay 100ms 10ms reorder 2% gap 100", "limit 1000 delay 100ms  10ms reorder 2% gap 100"),
    ("gap 5 delay 10ms", "limit 1000 delay 10ms reorder 100% gap 5"),
    ("rate 20000", "limit 1000 rate 20Kbit"),
    ("rate 5kbit 20 100 5", "limit 1000 rate 5Kbit packetoverhead 20 cellsize 100 celloverhead 5"),
    ("delay 10ms rate 1mbit -14", "limit 1000 delay 10ms rate 1Mbit packetoverhead -14"),
    ("slot 10 200 packets 2000 bytes 9000", "limit 1000 slot 10ns 200ns packets 2000 bytes 9000"),
    ("slot distribution pareto 1ms 0.1ms", "limit 1000 slot distribution 1ms 100us"),
    ("loss 1% ecn", "limit 1000 loss 1% ecn "),
    ("lat 50ms dup 2% corr 3%", "limit 1000 delay 50ms duplicate 2% corrupt 3%"),
    ("partition", "limit 1000 partition"),
    ("nth 1,5,9", "limit 1000 nth 1,5,9"),
    ("match tcp dport 80 flags S/SA delay 1ms", "limit 1000 delay 1ms match tcp dport 80 flags S/SA"),
])
def test_add_and_show(env, opts: str, shown: str) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    assert tc(f"qdisc add dev eth0 root netem {opts}".strip()) == ""
    out = tc("qdisc show dev eth0")
    assert out == f"qdisc netem 8001: root refcnt 2 {shown}\n"


def test_parsed_values() -> None:
    p = netem_params("delay 100ms 10ms 25% distribution normal loss 0.3% 25% duplicate 1% 5% corrupt 0.1% 2% "
                     "reorder 25% 50% gap 5 rate 1mbit 20 48 5 limit 50".split())
    assert p == NetemParams(limit=50, delay=0.1, jitter=0.01, delay_corr=0.25, distribution="normal",
                            loss=0.003, loss_corr=0.25, duplicate=0.01, duplicate_corr=0.05, corrupt=0.001,
                            corrupt_corr=0.02, reorder=0.25, reorder_corr=0.5, gap=5, rate=1e6,
                            packetoverhead=20, cellsize=48, celloverhead=5)
    m = netem_params(["match", "udp port 53", "nth", "2,3"])
    assert m.drop_match == FrameMatch(proto="udp", port=53) and m.drop_nth == (2, 3)


def test_handle_change_replace_del(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    tc("qdisc add dev eth0 handle 1: root netem delay 100ms 10ms distribution normal loss 1%")
    r = ifps["eth0"].qdisc("egress")
    assert isinstance(r, QdiscRunner)
    tc("qdisc change dev eth0 handle 1: root netem delay 100ms 10ms distribution normal loss 2%")
    assert ifps["eth0"].qdisc("egress") is r  # same qdisc, new parameters
    assert "loss 2%" in tc("qdisc show dev eth0")
    tc("qdisc replace dev eth0 handle 1: root netem delay 200ms 10ms")
    assert tc("qdisc show dev eth0") == "qdisc netem 1: root refcnt 2 limit 1000 delay 200ms  10ms\n"
    tc("qdisc del dev eth0 handle 1: root")
    assert ifps["eth0"].qdisc("egress") is None
    assert tc("qdisc show dev eth0") == "qdisc noqueue 0: root refcnt 2 \n"
    # replace creates when absent; a new auto handle each time
    tc("qdisc replace dev eth0 root netem loss 1%")
    assert tc("qdisc show dev eth0").startswith("qdisc netem 8001: root")
    tc("qdisc del dev eth0 root netem")
    tc("qdisc add dev eth0 root netem loss 1%")
    assert tc("qdisc show dev eth0").startswith("qdisc netem 8002: root")


def test_ingress_netem(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, sched = env
    tc("qdisc add dev wire0 ingress netem delay 5ms")
    tc("qdisc add dev wire0 root netem loss 100%")
    out = tc("qdisc show dev wire0")
    assert out == ("qdisc netem 8001: root refcnt 2 limit 1000 loss 100%\n"
                   "qdisc netem ffff: ingress refcnt 2 limit 1000 delay 5ms\n")
    ifp = ifps["wire0"]
    ifp.input(b"in")
    ifp.output(b"out")
    assert ifp.rx == [] and ifp.tx == []
    sched.run()
    assert ifp.rx == [b"in"] and ifp.tx == []
    assert sched.t == pytest.approx(0.005)


def test_stats_show(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, sched = env
    tc("qdisc add dev eth0 root netem delay 100ms 10ms loss 1% nth 2")
    ifp = ifps["eth0"]
    for _ in range(1000):
        ifp.output(bytes(100))
    sched.run()
    r = ifp.qdisc("egress")
    st = r.stats
    assert st.packets == len(ifp.tx) and st.drops == 1000 - len(ifp.tx) and st.drop_nth == 1
    out = tc("-s qdisc show dev eth0").splitlines()
    assert out[0] == "qdisc netem 8001: root refcnt 2 limit 1000 delay 100ms  10ms loss 1% nth 2"
    assert out[1] == f" Sent {st.bytes} bytes {st.packets} pkt (dropped {st.drops}, overlimits 0 requeues 0) "
    assert out[2] == " backlog 0b 0p requeues 0"
    assert out[3].startswith(f" netem: loss {st.drop_loss} queue 0 partition 0 nth 1 match 0 corrupted 0")
    # all devices, "dev NAME" in each line as tc prints it without a dev filter
    out = tc("-s qdisc show").splitlines()
    assert out[0].startswith("qdisc netem 8001: dev eth0 root refcnt 2 limit 1000")
    assert "qdisc noqueue 0: dev wire0 root refcnt 2 " in out


def test_backlog_shown(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    tc("qdisc add dev eth0 root netem delay 1s")
    for _ in range(3):
        ifps["eth0"].output(bytes(1024))
    assert tc("-s qdisc show dev eth0").splitlines()[2] == " backlog 3Kb 3p requeues 0"


@pytest.mark.parametrize("line,field", [
    ("qdisc add dev eth0 root netem delay abc", "delay"),
    ("qdisc add dev eth0 root netem delay 10ms xyz", "xyz"),
    ("qdisc add dev eth0 root netem delay -5ms", "delay"),
    ("qdisc add dev eth0 root netem loss 150%", "loss"),
    ("qdisc add dev eth0 root netem loss", "loss"),
    ("qdisc add dev eth0 root netem loss 1% loss 2%", "duplicate loss"),
    ("qdisc add dev eth0 root netem loss bogus 1%", "bogus"),
    ("qdisc add dev eth0 root netem loss -5%", '"loss percent" value "-5%"'),  # was "Unknown loss parameter"
    ("qdisc add dev eth0 root netem loss state 1% 200%", "p31"),
    ("qdisc add dev eth0 root netem loss gemodel 1% 10% 170%", "loss gemodel h"),
    ("qdisc add dev eth0 root netem duplicate x", "duplicate"),
    ("qdisc add dev eth0 root netem corrupt 101", "corrupt"),
    ("qdisc add dev eth0 root netem delay 10ms 1ms distribution gaussian", "distribution"),
    ("qdisc add dev eth0 root netem distribution normal", "distribution"),
    ("qdisc add dev eth0 root netem reorder 25%", "reorder"),
    ("qdisc add dev eth0 root netem rate fast", "rate"),
    ("qdisc add dev eth0 root netem rate 50%", "rate"),
    ("qdisc add dev eth0 root netem limit -3", "limit"),
    ("qdisc add dev eth0 root netem limit many", "limit"),
    ("qdisc add dev eth0 root netem ecn", "ecn"),
    ("qdisc add dev eth0 root netem nth 0", "nth"),
    ("qdisc add dev eth0 root netem match tcp port 99999", "match"),
    ("qdisc add dev eth0 root netem slot 10ms 5ms", "slot max_delay"),
    ("qdisc add dev eth0 root tbf rate 1mbit", "qdisc"),
    ("qdisc add dev eth0 netem delay 1ms", "root"),
    ("qdisc add root netem delay 1ms", "dev"),
    ("qdisc add dev eth0 parent 1:1 netem delay 1ms", "parent"),
    ("qdisc add dev eth0 handle zz: root netem", "handle"),
    ("qdisc frob dev eth0 root netem", "frob"),
    ("filter add dev eth0", "filter"),
    ("-x qdisc show", "-x"),
])
def test_errors_name_field(env, line: str, field: str) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    with pytest.raises(OSError) as ei:
        tc(line)
    assert ei.value.errno == errno.EINVAL
    assert field in str(ei.value.strerror)
    assert ifps["eth0"].qdisc("egress") is None  # nothing applied


def test_unknown_device(env) -> None:  # type: ignore[no-untyped-def]
    tc, _, _ = env
    for line in ("qdisc add dev nope0 root netem delay 1ms", "qdisc show dev nope0"):
        with pytest.raises(OSError) as ei:
            tc(line)
        assert ei.value.errno == errno.ENODEV and "Cannot find device" in str(ei.value.strerror)


def test_rtnetlink_errors(env) -> None:  # type: ignore[no-untyped-def]
    tc, _, _ = env
    with pytest.raises(OSError) as ei:
        tc("qdisc del dev eth0 root")
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(OSError) as ei:
        tc("qdisc change dev eth0 root netem delay 1ms")
    assert ei.value.errno == errno.ENOENT
    tc("qdisc add dev eth0 root netem delay 1ms")
    with pytest.raises(OSError) as ei:
        tc("qdisc add dev eth0 root netem delay 2ms")
    assert ei.value.errno == errno.EEXIST


def test_bad_change_leaves_old_params(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    tc("qdisc add dev eth0 root netem delay 100ms loss 1%")
    before = ifps["eth0"].qdisc("egress").params
    for bad in ("qdisc change dev eth0 root netem delay 200ms loss 300%",
                "qdisc change dev eth0 root netem delay 200ms duplicate 1% bogus",
                "qdisc replace dev eth0 root netem delay 5ms distribution nope"):
        with pytest.raises(OSError):
            tc(bad)
        assert ifps["eth0"].qdisc("egress").params is before


def test_change_keeps_queue(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, sched = env
    tc("qdisc add dev eth0 root netem delay 1s")
    ifps["eth0"].output(b"queued")
    tc("qdisc change dev eth0 root netem delay 10ms")
    ifps["eth0"].output(b"later")
    sched.run()
    assert ifps["eth0"].tx == [b"later", b"queued"]


def test_del_drops_queue(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, sched = env
    tc("qdisc add dev eth0 root netem delay 1s")
    ifps["eth0"].output(b"queued")
    tc("qdisc del dev eth0 root")
    sched.run()
    assert ifps["eth0"].tx == []
    ifps["eth0"].output(b"direct")
    assert ifps["eth0"].tx == [b"direct"]


def test_format_roundtrip() -> None:
    for line in ("delay 100ms 10ms 25% loss 1% duplicate 2% 10% reorder 5% gap 3 corrupt 0.5% rate 10mbit",
                 "loss state 1% 10% 70% 0.1% 2%", "loss gemodel 1% 10% 70% 0.1%", "slot 1ms 2ms packets 3"):
        p = netem_params(line.split())
        shown = format_netem(p).split()[2:]  # drop "limit 1000"
        # tc's print syntax uses names for model parameters; parse back what tc accepts
        again = netem_params([w for w in shown if w not in ("p13", "p31", "p32", "p23", "p14", "p", "r", "1-h", "1-k")])
        assert again == p, (line, shown)


def test_seed_option_gives_own_generator(env) -> None:  # type: ignore[no-untyped-def]
    def run(seed: int) -> list[bytes]:
        tc, ifps, sched = env
        tc(f"qdisc replace dev eth0 root netem loss 30% corrupt 10% seed {seed}")
        ifp = ifps["eth0"]
        ifp.tx.clear()
        for i in range(500):
            ifp.output(i.to_bytes(4, "big") + bytes(60))
        sched.run()
        return list(ifp.tx)

    tc, _, _ = env
    a1, b, a2 = run(7), run(8), run(7)
    assert a1 == a2 and a1 != b
    assert tc("qdisc show dev eth0") == "qdisc netem 8001: root refcnt 2 limit 1000 loss 30% corrupt 10% seed 7\n"
    with pytest.raises(OSError) as ei:
        tc("qdisc change dev eth0 root netem seed x")
    assert "seed" in str(ei.value.strerror)


def test_on_real_kernels_and_wire() -> None:
    """tc netem on real Ifnets (egress on one kernel, ingress on the other), virtual time."""
    rumpkern = pytest.importorskip("rumpkern")
    if_wire = pytest.importorskip("rumpnet.if_wire")
    k1 = rumpkern.rump_init(clock="virtual", seed=1)
    k2 = rumpkern.rump_init(clock="virtual", seed=2)
    ifs = []
    for k in (k1, k2):
        ifp = k.ifnet.create("wire0")
        ifp.attach_driver(if_wire.WireDriver("faults-tc-test"))
        ifp.set_up(True)
        ifs.append(ifp)
    k1.run_for(5.0)  # IPv6's start-up traffic on the wire (DAD, MLD reports) is over

    class Tap:
        def __init__(self) -> None:
            self.got: list[tuple[float, bytes]] = []

        def write(self, frame: bytes, ts: float) -> None:
            self.got.append((ts, bytes(frame)))

    tap = Tap()
    ifs[1].bpf_attach(tap)

    def tc(k: Any, line: str) -> str:
        return tc_command(k.ifnet.lookup, line.split(), k.rng, k.sched, all_ifps=k.ifnet.all)

    try:
        tc(k1, "qdisc add dev wire0 root netem delay 100ms rate 1mbit")
        tc(k2, "qdisc add dev wire0 ingress netem delay 50ms")
        t0 = k1.sched.run(k1.sched.now)

        def send() -> None:
            for i in range(3):
                ifs[0].transmit_frame(b"\xff" * 6 + ifs[0].lladdr + b"\x88\xb5" + bytes([i]) * 100)

        k1.sched.run(send)
        k1.run_for(1.0)
        # 114-byte frames at 1 Mbit/s (0.912 ms each) + 100 ms egress + 50 ms ingress
        assert [(round(ts - t0, 6), f[14]) for ts, f in tap.got] == [(0.150912, 0), (0.151824, 1), (0.152736, 2)]
        shown = tc(k1, "-s qdisc show dev wire0").splitlines()
        assert shown[0] == "qdisc netem 8001: root refcnt 2 limit 1000 delay 100ms rate 1Mbit"
        assert shown[1] == " Sent 342 bytes 3 pkt (dropped 0, overlimits 0 requeues 0) "
        with pytest.raises(OSError) as ei:
            tc(k1, "qdisc show dev nope0")
        assert ei.value.errno == errno.ENODEV
    finally:
        for ifp in ifs:
            ifp.detach_driver()
        for k in (k2, k1):  # not left on the default scheduler for later scenarios
            k.halt()


def test_verb_abbreviations(env) -> None:  # type: ignore[no-untyped-def]
    tc, ifps, _ = env
    tc("q a dev eth0 root netem delay 1ms")
    tc("qd c dev eth0 root netem delay 2ms")
    assert "delay 2ms" in tc("q s dev eth0") and "delay 2ms" in tc("qdisc ls dev eth0") and tc("qdisc list dev eth0")
    tc("qdisc r dev eth0 root netem delay 3ms")
    assert "delay 3ms" in tc("qdisc dev eth0".split()[0])  # bare "qdisc": show all
    tc("qdisc d dev eth0 root")
    assert ifps["eth0"].qdisc("egress") is None
