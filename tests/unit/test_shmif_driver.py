"""The shmifN LinkDriver (rumpnet/shmif/if_shmif.py): inotify wake-ups, batches, errors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rumpnet.shmif import ShmifBus, ShmifBusError, ShmifDriver

REPO = Path(__file__).resolve().parents[2]


class FakeSched:
    """What a LinkDriver needs of the scheduler: ``loop`` and ``now()``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, t: float = 1000.25) -> None:
        self.loop = loop
        self.t = t

    def now(self) -> float:
        return self.t


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def run_until(loop: asyncio.AbstractEventLoop, pred: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run the loop until pred() holds. The drivers arm no timers: frames arrive only
    through the inotify fd registered with add_reader; the sleeps just re-check pred."""

    async def main() -> None:
        while not pred():
            await asyncio.sleep(0.001)

    loop.run_until_complete(asyncio.wait_for(main(), timeout))


def at_least(frames: list[bytes], n: int) -> Callable[[], bool]:
    return lambda: len(frames) >= n


def eth(i: int, size: int = 60) -> bytes:
    dst = b"\xff" * 6
    src = b"\x02\x00\x00\x00\x00\x01"
    body = (i.to_bytes(4, "big") * (size // 4 + 1))[: size - 14]
    return dst + src + b"\x08\x00" + body


def test_two_drivers_one_bus(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    sched = FakeSched(loop)
    got_a: list[bytes] = []
    got_b: list[bytes] = []
    a = ShmifDriver(path)
    b = ShmifDriver(path)
    a.attach(sched, got_a.append)
    b.attach(sched, got_b.append)
    assert a.linkstr == str(path)
    for i in range(20):
        a.transmit(eth(i))
    b.transmit(bytearray(eth(100)))
    b.transmit(memoryview(eth(101)))
    run_until(loop, lambda: len(got_b) == 20 and len(got_a) == 2)
    assert got_b == [eth(i) for i in range(20)]
    assert got_a == [eth(100), eth(101)]
    assert (a.opackets, a.ipackets, b.opackets, b.ipackets) == (20, 2, 2, 20)
    # the kernel clock stamped the frames
    watcher = ShmifBus(path)
    sched.t = 2000.5
    a.transmit(eth(7))
    (rec,) = watcher.read_records()
    assert (rec.sec, rec.usec, rec.sender) == (2000, 500000, a.bus.sender_id)
    a.detach()
    b.detach()


def test_driver_wakes_on_frames_from_plain_bus_writer(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    got: list[bytes] = []
    d = ShmifDriver(path)
    d.attach(FakeSched(loop), got.append)
    w = ShmifBus(path)
    w.send(eth(1), 0, 0)
    w.send(b"short", 0, 0)  # shorter than an Ethernet header: dropped, counted
    w.send(eth(2), 0, 0)
    run_until(loop, lambda: len(got) == 2)
    assert got == [eth(1), eth(2)]
    assert d.ierrors == 1
    d.detach()


def test_driver_starts_at_end_of_bus(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    w = ShmifBus(path)
    d = ShmifDriver(path)
    w.send(eth(1), 0, 0)  # before attach: not delivered
    got: list[bytes] = []
    d.attach(FakeSched(loop), got.append)
    w.send(eth(2), 0, 0)
    run_until(loop, lambda: len(got) >= 1)
    assert got == [eth(2)]
    d.detach()


def test_driver_batches(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    got: list[bytes] = []
    d = ShmifDriver(path, batch=4)
    d.attach(FakeSched(loop), got.append)
    w = ShmifBus(path)
    for i in range(10):
        w.send(eth(i), 0, 0)
    assert d.drain() == 4  # one batch now, the rest from the loop
    assert got == [eth(i) for i in range(4)]
    run_until(loop, lambda: len(got) == 10)
    assert got == [eth(i) for i in range(10)]
    d.detach()


def test_transmit_errors_are_counted(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    d = ShmifDriver(path)
    d.transmit(eth(1))  # not attached
    assert d.oerrors == 1
    d.attach(FakeSched(loop), lambda f: None)
    d.transmit(b"\x00" * 10)
    d.transmit(b"\x00" * 1515)
    assert (d.oerrors, d.opackets) == (3, 0)
    big = ShmifDriver(path, max_frame=9000)
    big.attach(FakeSched(loop), lambda f: None)
    big.transmit(b"\x00" * 9000)
    assert (big.oerrors, big.opackets) == (0, 1)
    # the bus file overwritten with garbage: counted, not raised
    with open(path, "r+b") as fp:
        fp.write(b"JUNK")
    d.transmit(eth(2))
    assert d.oerrors == 4
    d.drain()
    assert d.ierrors == 1
    d.detach()
    big.detach()


def test_detach_is_idempotent_and_reattach_works(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    got: list[bytes] = []
    d = ShmifDriver(path)
    sched = FakeSched(loop)
    d.attach(sched, got.append)
    with pytest.raises(RuntimeError):
        d.attach(sched, got.append)
    d.detach()
    d.detach()
    w = ShmifBus(path)
    w.send(eth(1), 0, 0)
    loop.run_until_complete(asyncio.sleep(0.05))
    assert got == []
    d.transmit(eth(9))
    assert d.oerrors == 1
    d.attach(sched, got.append)
    w.send(eth(2), 0, 0)
    run_until(loop, lambda: len(got) == 1)
    assert got == [eth(2)]
    d.detach()


def test_detach_from_within_deliver(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = tmp_path / "bus"
    got: list[bytes] = []
    d = ShmifDriver(path)

    def deliver(f: bytes) -> None:
        got.append(f)
        d.detach()

    d.attach(FakeSched(loop), deliver)
    w = ShmifBus(path)
    w.send(eth(1), 0, 0)
    w.send(eth(2), 0, 0)
    run_until(loop, lambda: len(got) >= 1)
    loop.run_until_complete(asyncio.sleep(0.02))
    assert got == [eth(1)]


def test_garbage_bus_fails_at_linkstr_time(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    path.write_bytes(b"not a bus at all" * 4096)
    with pytest.raises(ShmifBusError, match="not a shmif bus"):
        ShmifDriver(path)


CHILD = textwrap.dedent(
    """
    import asyncio, sys
    sys.path.insert(0, {repo!r})
    from rumpnet.shmif import ShmifDriver

    class Sched:
        def __init__(self, loop):
            self.loop = loop
        def now(self):
            return self.loop.time()

    loop = asyncio.new_event_loop()
    drv = ShmifDriver({path!r})
    done = loop.create_future()
    count = 0

    def deliver(frame):
        global count
        if frame[14:18] == b"STOP":
            done.set_result(None)
            return
        drv.transmit(frame[6:12] + frame[0:6] + frame[12:14] + b"ECHO" + frame[18:])
        count += 1

    drv.attach(Sched(loop), deliver)
    drv.transmit(b"\\xff" * 6 + b"\\x02" * 6 + b"\\x08\\x00" + b"HELO" + bytes(50))
    loop.run_until_complete(asyncio.wait_for(done, 60))
    drv.detach()
    print(count)
    """
)


def test_drivers_in_two_processes(tmp_path: Path, loop: asyncio.AbstractEventLoop) -> None:
    path = str(tmp_path / "bus")
    got: list[bytes] = []
    d = ShmifDriver(path)
    d.attach(FakeSched(loop), got.append)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.format(repo=str(REPO), path=path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        run_until(loop, lambda: any(f[14:18] == b"HELO" for f in got), timeout=30)
        got.clear()
        n = 300
        t0 = time.monotonic()
        for i in range(n):
            d.transmit(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + b"DATA" + i.to_bytes(4, "big") * 10)
            if i % 20 == 19:  # keep under the ring size in flight
                run_until(loop, at_least(got, i - 19), timeout=30)
        run_until(loop, lambda: len(got) == n, timeout=30)
        assert time.monotonic() - t0 < 30
        assert [f[18:] for f in got] == [i.to_bytes(4, "big") * 10 for i in range(n)]
        assert all(f[14:18] == b"ECHO" and f[0:6] == b"\x04" * 6 for f in got)
        d.transmit(b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + b"STOP" + bytes(46))
        out, _ = child.communicate(timeout=30)
        assert child.returncode == 0
        assert out.strip() == str(n)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        d.detach()
