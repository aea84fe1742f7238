"""QdiscRunner, FaultInjector and FaultSchedule on a tiny fake scheduler."""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

import pytest

from rumpnet.faults.injector import FaultInjector
from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner
from rumpnet.faults.schedule import FaultSchedule, Heal, Partition, SetParams, Update


class Handle:
    def __init__(self, when: float, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when, self.fn, self.args = when, fn, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeSched:
    """now(), call_at(), call_later(), call_soon(); virtual time moved by run_until()."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t
        self.q: list[tuple[float, int, Handle]] = []
        self.seq = 0
        self.timers_made = 0

    def now(self) -> float:
        return self.t

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Handle:
        h = Handle(when, fn, args)
        self.seq += 1
        self.timers_made += 1
        heapq.heappush(self.q, (when, self.seq, h))
        return h

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Handle:
        return self.call_at(self.t + delay, fn, *args)

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> Handle:
        return self.call_at(self.t, fn, *args)

    def pending(self) -> int:
        return sum(1 for _, _, h in self.q if not h.cancelled)

    def run_until(self, t: float) -> None:
        while self.q and self.q[0][0] <= t:
            when, _, h = heapq.heappop(self.q)
            self.t = max(self.t, when)
            if not h.cancelled:
                h.fn(*h.args)
        self.t = max(self.t, t)

    def run(self) -> None:
        while self.q:
            self.run_until(self.q[0][0])


def fr(i: int, size: int = 64) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def make(params: NetemParams, seed: int = 1) -> tuple[FakeSched, QdiscRunner, list[tuple[float, bytes]]]:
    s = FakeSched()
    got: list[tuple[float, bytes]] = []
    r = QdiscRunner(Netem(params, random.Random(seed)), s, lambda f: got.append((s.now(), f)))
    return s, r, got


# -- runner ----------------------------------------------------------------------------------

def test_zero_cost_path_calls_out_directly() -> None:
    s, r, got = make(NetemParams())
    buf = bytearray(b"abc")
    r.input(buf)
    assert got == [(1000.0, buf)] and got[0][1] is buf  # no copy, no timer
    assert s.timers_made == 0
    assert r.stats.packets == 1 and r.stats.bytes == 3


def test_delay_on_scheduler_one_timer() -> None:
    s, r, got = make(NetemParams(delay=0.1))
    for i in range(100):
        s.run_until(1000.0 + i * 0.001)
        r.input(fr(i))
    # one loop timer for the head deadline; later deadlines don't re-arm
    assert s.pending() == 1
    s.run()
    assert [round(t - 1000.0 - int.from_bytes(f[:4], "big") * 0.001, 9) for t, f in got] == [0.1] * 100
    assert s.pending() == 0
    # each timer firing delivers what is due and arms the next: no per-packet timer piles up
    assert s.timers_made <= 101


def test_timer_rearmed_only_when_deadline_moves_earlier() -> None:
    s, r, got = make(NetemParams(delay=1.0))
    r.input(fr(0))
    assert s.timers_made == 1
    r.set_params(NetemParams(delay=0.1))  # later arrivals due earlier than the queued one
    r.input(fr(1))
    assert s.timers_made == 2 and s.pending() == 1
    s.run()
    assert [(round(t - 1000.0, 9), f[:4]) for t, f in got] == [(0.1, fr(1)[:4]), (1.0, fr(0)[:4])]


def test_idle_runner_holds_no_timer() -> None:
    s, r, got = make(NetemParams(loss=0.5))
    for i in range(100):
        r.input(fr(i))
    assert s.timers_made == 0
    assert len(got) + r.stats.drop_loss == 100


def test_early_timer_treated_as_on_time() -> None:
    class EarlySched(FakeSched):
        def run_until(self, t: float) -> None:
            # fire timers 1 ns early, as an event loop within its clock resolution may
            while self.q and self.q[0][0] - 1e-9 <= t:
                when, _, h = heapq.heappop(self.q)
                self.t = max(self.t, when - 1e-9)
                if not h.cancelled:
                    h.fn(*h.args)
            self.t = max(self.t, t)

    s = EarlySched()
    got: list[bytes] = []
    r = QdiscRunner(Netem(NetemParams(delay=0.5), random.Random(1)), s, got.append)
    r.input(b"x" * 20)
    s.run()
    assert got == [b"x" * 20] and s.timers_made == 1


def test_rate_on_scheduler() -> None:
    s, r, got = make(NetemParams(rate=8e6))  # 1 byte per us
    for i in range(10):
        r.input(fr(i, 1000))
    s.run()
    assert [t - 1000.0 for t, _ in got] == pytest.approx([(k + 1) * 1e-3 for k in range(10)])


def test_close_cancels_and_flushes() -> None:
    s, r, got = make(NetemParams(delay=0.1))
    r.input(fr(0))
    r.close()
    s.run()
    assert got == [] and r.netem.qlen == 0


def test_update_validates_first() -> None:
    s, r, _ = make(NetemParams(delay=0.1))
    with pytest.raises(ValueError, match="^loss"):
        r.update(loss=5)
    assert r.params == NetemParams(delay=0.1)


def test_runner_reentrancy() -> None:
    # out() feeding the runner again (a loop) must not lose or duplicate frames
    s = FakeSched()
    got: list[bytes] = []
    r: QdiscRunner

    def out(f: bytes) -> None:
        got.append(f)
        if len(got) < 5:
            r.input(f)

    r = QdiscRunner(Netem(NetemParams(delay=0.01), random.Random(1)), s, out)
    r.input(b"ping")
    s.run()
    assert got == [b"ping"] * 5


# -- injector ----------------------------------------------------------------------------------

class FakeDriver:
    def __init__(self, log: Callable[[bytes], None] | None = None) -> None:
        self.log = log
        self.sent: list[bytes] = []
        self.deliver: Callable[[bytes], None] | None = None
        self.oerrors = 0
        self.detached = False

    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        self.deliver = deliver

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        self.sent.append(bytes(frame))
        if self.log is not None:
            self.log(bytes(frame))

    def detach(self) -> None:
        self.detached = True


def test_fault_injector_both_directions() -> None:
    s = FakeSched()
    inner = FakeDriver()
    inj = FaultInjector(inner, random.Random(3), egress=NetemParams(delay=0.05), ingress=NetemParams(loss=1.0))
    received: list[bytes] = []
    inj.attach(s, received.append)
    inj.transmit(b"out1")
    assert inner.sent == []
    s.run()
    assert inner.sent == [b"out1"]
    assert inner.deliver is not None
    inner.deliver(b"in1")
    assert received == [] and inj.ingress.stats.drop_loss == 1
    inj.ingress.set_params(NetemParams())
    inner.deliver(b"in2")
    assert received == [b"in2"]
    assert inj.oerrors == 0  # driver attributes pass through
    inj.detach()
    assert inner.detached


def test_fault_injector_partition_one_way_and_heal() -> None:
    s = FakeSched()
    inner = FakeDriver()
    inj = FaultInjector(inner, random.Random(3))
    received: list[bytes] = []
    inj.partition("egress")  # before attach is fine
    inj.attach(s, received.append)
    assert inner.deliver is not None
    inj.transmit(b"a")
    inner.deliver(b"b")
    assert inner.sent == [] and received == [b"b"]
    inj.heal()
    inj.transmit(b"c")
    assert inner.sent == [b"c"]
    inj.partition()
    inj.transmit(b"d")
    inner.deliver(b"e")
    assert inner.sent == [b"c"] and received == [b"b"]
    with pytest.raises(ValueError, match="direction"):
        inj.partition("sideways")


def test_injector_same_seed_same_sequence() -> None:
    def run(seed: int) -> list[tuple[float, bytes]]:
        s = FakeSched()
        got: list[tuple[float, bytes]] = []
        inner = FakeDriver(lambda f: got.append((s.now(), f)))
        p = NetemParams(delay=0.01, jitter=0.005, loss=0.1, duplicate=0.05, corrupt=0.05)
        inj = FaultInjector(inner, random.Random(seed), egress=p, ingress=p)
        inj.attach(s, lambda f: got.append((s.now(), f)))
        for i in range(2000):
            s.run_until(1000.0 + i * 0.001)
            inj.transmit(fr(i))
            assert inner.deliver is not None
            inner.deliver(fr(100000 + i))
        s.run()
        return got

    assert run(5) == run(5)
    assert run(5) != run(6)


# -- schedules ----------------------------------------------------------------------------------

def test_schedule_text_partition_for_and_loss() -> None:
    fs = FaultSchedule.parse("at 5s partition for 3s; at 8s loss 10%")
    assert [(at, type(a).__name__, d) for at, a, d in fs.events] == [(5.0, "Partition", 3.0), (8.0, "Update", None)]
    s, r, got = make(NetemParams(delay=0.01))
    fs.start(s, r)
    sent_at = []
    for k in range(1200):  # one frame every 10 ms for 12 s
        t = 1000.0 + k * 0.01
        s.run_until(t)
        r.input(fr(k))
        sent_at.append(t)
    s.run()
    delivered = {int.from_bytes(f[:4], "big") for _, f in got}
    during = [k for k in range(1200) if 1005.0 <= sent_at[k] < 1008.0 - 0.01]
    assert not delivered & set(during)
    assert r.stats.drop_partition >= len(during)  # dropped by the partition, and counted
    before = [k for k in range(1200) if sent_at[k] < 1005.0 - 0.01]
    assert set(before) <= delivered
    after = [k for k in range(1200) if sent_at[k] >= 1008.0]
    lost_after = len([k for k in after if k not in delivered])
    assert 0.04 < lost_after / len(after) < 0.16
    assert r.params.loss == 0.1 and not r.params.partition and r.params.delay == 0.01
    assert [round(t - 1000.0, 6) for t, _ in fs.log] == [5.0, 8.0, 8.0]


def test_schedule_for_restores_previous_values() -> None:
    s, r, _ = make(NetemParams(delay=0.05, loss=0.01))
    FaultSchedule([(1.0, Update(delay=0.5, jitter=0.1), 2.0)]).start(s, r)
    s.run_until(1001.5)
    assert (r.params.delay, r.params.jitter, r.params.loss) == (0.5, 0.1, 0.01)
    s.run_until(1003.5)
    assert (r.params.delay, r.params.jitter, r.params.loss) == (0.05, 0.0, 0.01)


def test_schedule_objects_and_injector_target() -> None:
    s = FakeSched()
    inj = FaultInjector(FakeDriver(), random.Random(1))
    inj.attach(s, lambda f: None)
    fs = FaultSchedule([(2, Heal()), (1, Partition()), (3, SetParams(NetemParams(delay=0.2))), (4, "clear"),
                        (5, {"rate": 1e6})])
    fs.start(s, inj)
    s.run_until(1001.0)
    assert inj.egress.params.partition and inj.ingress.params.partition
    s.run_until(1002.0)
    assert not inj.egress.params.partition
    s.run_until(1003.0)
    assert inj.ingress.params.delay == 0.2
    s.run_until(1004.0)
    assert inj.egress.params == NetemParams()
    s.run_until(1005.0)
    assert inj.egress.params.rate == 1e6


def test_schedule_cancel() -> None:
    s, r, _ = make(NetemParams())
    fs = FaultSchedule.parse("at 1 partition").start(s, r)
    fs.cancel()
    s.run()
    assert not r.params.partition


@pytest.mark.parametrize("text,field", [
    ("at 5x partition", "at"),
    ("after 5s partition", "at"),
    ("at 5s loss 200%", "action"),
    ("at 5s frobnicate", "action"),
    ("at 5s partition for -1s", "for"),
    ("at 5s", "at"),
])
def test_schedule_parse_errors(text: str, field: str) -> None:
    with pytest.raises(ValueError) as ei:
        FaultSchedule.parse(text)
    assert str(ei.value).startswith(field)


def test_schedule_bad_update_rejected_up_front() -> None:
    with pytest.raises(ValueError, match="^loss"):
        Update(loss=2.0)
    with pytest.raises(ValueError, match="^bogus"):
        Update(bogus=1)
    with pytest.raises(ValueError, match="^at"):
        FaultSchedule([(-1, Partition())])


# -- with the real scheduler (virtual time) and an in-process wire ------------------------------

def test_injector_on_real_virtual_scheduler_and_wire() -> None:
    sched_mod = pytest.importorskip("rumpkern.sched")
    wire = pytest.importorskip("rumpnet.if_wire")
    s = sched_mod.Scheduler(virtual=True)
    a = FaultInjector(wire.WireDriver("faults-test-lan"), random.Random(1),
                      egress=NetemParams(delay=0.05, jitter=0.01, rate=1e6))
    b = wire.WireDriver("faults-test-lan")
    got: list[tuple[float, bytes]] = []
    a.attach(s, lambda f: None)
    b.attach(s, lambda f: got.append((s.now(), f)))
    try:
        t0 = s.run(s.now)

        def send() -> None:
            for i in range(20):
                a.transmit(b"\xff" * 6 + b"\x02" * 6 + b"\x08\x00" + fr(i, 986))

        s.run(send)
        s.run_for(1.0)
        assert [int.from_bytes(f[14:18], "big") for _, f in got] == list(range(20))
        # 1000-byte frames at 1 Mbit/s: 8 ms apart once queued, after 40-60 ms of delay
        times = [t - t0 for t, _ in got]
        assert 0.04 + 0.008 <= times[0] <= 0.06 + 0.008 + 1e-6
        assert all(b - a >= 0.008 - 1e-9 for a, b in zip(times, times[1:]))
    finally:
        a.detach()
        b.detach()


def test_schedule_clauses_set_whole_groups() -> None:
    s, r, _ = make(NetemParams(delay=0.1, jitter=0.02, delay_corr=0.5, loss_gemodel=(0.01, 0.1, 1.0, 0.0)))
    FaultSchedule.parse("at 1 loss 5%; at 2 delay 30ms; at 3 loss gemodel 2% for 1s").start(s, r)
    s.run_until(1001.0)
    assert r.params.loss == 0.05 and r.params.loss_gemodel is None
    s.run_until(1002.0)
    assert (r.params.delay, r.params.jitter, r.params.delay_corr) == (0.03, 0.0, 0.0)
    s.run_until(1003.0)
    assert r.params.loss == 0.0 and r.params.loss_gemodel == (0.02, 0.98, 1.0, 0.0)
    s.run_until(1004.0)
    assert r.params.loss == 0.05 and r.params.loss_gemodel is None


def test_schedule_action_that_cannot_apply_is_recorded_not_raised() -> None:
    s, r, _ = make(NetemParams(loss_gemodel=(0.01, 0.1, 1.0, 0.0)))
    fs = FaultSchedule([(1, Update(loss=0.1))]).start(s, r)  # two loss models at once
    s.run()
    assert r.params.loss == 0.0 and len(fs.errors) == 1 and "loss" in fs.errors[0][1]


def test_drop_nth_counts_from_when_set() -> None:
    s, r, got = make(NetemParams())
    for i in range(5):
        r.input(fr(i))
    r.update(drop_nth=(2,))
    for i in range(5, 10):
        r.input(fr(i))
    s.run()
    assert [int.from_bytes(f[:4], "big") for _, f in got] == [0, 1, 2, 3, 4, 5, 7, 8, 9]


def test_injector_takes_tc_text() -> None:
    inj = FaultInjector(FakeDriver(), random.Random(1), egress="delay 100ms 10ms loss 1%", ingress="rate 1mbit")
    assert inj.egress.params == NetemParams(delay=0.1, jitter=0.01, loss=0.01)
    assert inj.ingress.params == NetemParams(rate=1e6)
    with pytest.raises(ValueError, match="loss"):
        FaultInjector(FakeDriver(), random.Random(1), egress="loss 200%")
    with pytest.raises(ValueError, match="reorder"):
        NetemParams.parse("reorder 10%")
