"""The shmif bus file (rumpnet/shmif/shmif_bus.py): NetBSD's layout, ring, readers."""

from __future__ import annotations

import errno
import os
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from rumpnet.shmif.shmif_bus import (
    BUSMEM_DATASIZE,
    BUSMEM_SIZE,
    IFMEM_DATA,
    SHMIF_MAGIC,
    SHMIF_VERSION,
    ShmifBus,
    ShmifBusError,
    walk_bus,
)

REPO = Path(__file__).resolve().parents[2]
HDR = struct.Struct("<IIQIIII")
PKT = struct.Struct("<III4xQ")


def frame(i: int, size: int = 60) -> bytes:
    body = i.to_bytes(4, "big")
    return (body * (size // 4 + 1))[:size]


def test_layout_matches_netbsd(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    with ShmifBus(path, sender_id=0x1122334455667788) as bus:
        assert os.path.getsize(path) == BUSMEM_SIZE == 1024 * 1024
        raw = path.read_bytes()
        magic, version, gen, first, last, lock, spare = HDR.unpack_from(raw)
        assert (magic, version, gen, first, last, lock) == (0xCA11D054, 3, 0, BUSMEM_DATASIZE, 0, 0)
        assert IFMEM_DATA == 32 and PKT.size == 24
        bus.send(b"\xaa" * 42, 7, 123456)
        raw = path.read_bytes()
        magic, version, gen, first, last, lock, _ = HDR.unpack_from(raw)
        # a new bus has an empty record at offset 0; the first frame follows it
        assert (gen, first, last, lock) == (0, BUSMEM_DATASIZE, 24, 0)
        assert PKT.unpack_from(raw, IFMEM_DATA) == (0, 0, 0, 0)
        assert PKT.unpack_from(raw, IFMEM_DATA + 24) == (42, 7, 123456, 0x1122334455667788)
        assert raw[IFMEM_DATA + 48 : IFMEM_DATA + 48 + 42] == b"\xaa" * 42
        bus.send(b"\xbb" * 20, 8, 0)
        assert HDR.unpack_from(path.read_bytes())[4] == 24 + 24 + 42


def test_two_handles_exchange_frames(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    a = ShmifBus(path)
    b = ShmifBus(path)
    c = ShmifBus(path)
    assert len({a.sender_id, b.sender_id, c.sender_id}) == 3
    a.send(frame(1), 1, 0)
    b.send(frame(2), 2, 0)
    a.send(frame(3), 3, 0)
    assert b.read_new() == [frame(1), frame(3)]
    assert a.read_new() == [frame(2)]
    assert c.read_new() == [frame(1), frame(2), frame(3)]
    assert b.read_new() == [] and a.read_new() == [] and c.read_new() == []
    recs = c.read_records()
    assert recs == []
    b.send(frame(4), 4, 5)
    (rec,) = c.read_records()
    assert (rec.sec, rec.usec, rec.sender, rec.frame) == (4, 5, b.sender_id, frame(4))
    # a handle opened later sees only newer frames
    d = ShmifBus(path)
    assert d.read_new() == []
    a.send(frame(5), 5, 0)
    assert d.read_new() == [frame(5)]
    for h in (a, b, c, d):
        h.close()
    assert a.closed
    a.close()  # idempotent


def test_same_sender_id_is_not_echoed(tmp_path: Path) -> None:
    a = ShmifBus(tmp_path / "bus", sender_id=42)
    b = ShmifBus(tmp_path / "bus", sender_id=42)
    a.send(frame(1), 0, 0)
    assert b.read_new() == []
    b.send(frame(2), 0, 0, sender_id=43)  # explicit sender id per frame
    assert a.read_new() == [frame(2)]


def test_max_frames_batches(tmp_path: Path) -> None:
    a = ShmifBus(tmp_path / "bus")
    b = ShmifBus(tmp_path / "bus")
    for i in range(10):
        a.send(frame(i), i, 0)
    assert b.read_new(4) == [frame(i) for i in range(4)]
    assert b.read_new(4) == [frame(i) for i in range(4, 8)]
    assert b.read_new() == [frame(8), frame(9)]


def test_send_rejects_bad_lengths(tmp_path: Path) -> None:
    a = ShmifBus(tmp_path / "bus")
    with pytest.raises(ValueError):
        a.send(b"", 0, 0)
    with pytest.raises(ValueError):
        a.send(b"x" * (BUSMEM_DATASIZE // 2), 0, 0)
    assert a.sent == 0


def test_ring_wraps_many_times(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    w = ShmifBus(path)
    r = ShmifBus(path)
    got: list[bytes] = []
    sizes = [60, 1514, 98, 577, 1000, 14]
    total = 0
    n = 12000
    for i in range(n):
        f = frame(i, sizes[i % len(sizes)])
        w.send(f, i, 0)
        total += 24 + len(f)
        if i % 50 == 49:
            got.extend(r.read_new())
            h = w.header()
            assert h.last < BUSMEM_DATASIZE
            assert h.first < BUSMEM_DATASIZE or h.gen == 0  # DATASIZE: nothing lost yet
    got.extend(r.read_new())
    assert r.resyncs == 0
    assert got == [frame(i, sizes[i % len(sizes)]) for i in range(n)]
    h = w.header()
    # bytes written including the empty record at 0, over the ring size
    assert h.gen == (total + 24) // BUSMEM_DATASIZE
    assert h.gen >= 5
    # the bus image holds a contiguous tail of what was sent, newest last
    recs = list(walk_bus(w.snapshot()))
    assert recs[-1].frame == got[-1]
    assert recs[-1].offset == h.last and recs[0].offset == h.first
    first_i = recs[0].sec
    assert [x.sec for x in recs] == list(range(first_i, n))
    assert sum(24 + len(x.frame) for x in recs) <= BUSMEM_DATASIZE


def test_reader_that_falls_behind_resyncs(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    w = ShmifBus(path)
    r = ShmifBus(path)
    n = 30000  # ~3.5 rings of 124-byte records
    for i in range(n):
        w.send(frame(i, 100), i, 0)
    got = r.read_records()
    assert r.resyncs == 1
    # it gets what is still on the bus: the newest frames, in order, none missing
    secs = [x.sec for x in got]
    assert secs == list(range(secs[0], n))
    assert len(got) == BUSMEM_DATASIZE // 124 or len(got) == BUSMEM_DATASIZE // 124 - 1
    # and then carries on normally
    w.send(frame(n), n, 0)
    assert r.read_new() == [frame(n)]
    assert r.resyncs == 1


def test_reader_lapped_exactly_once_resyncs(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    w = ShmifBus(path)
    r = ShmifBus(path)
    for i in range(100):
        w.send(frame(i, 100), i, 0)
    assert len(r.read_new()) == 100
    # write a bit more than one ring so r's cursor is overwritten, gen differs by 1
    for i in range(100, 100 + BUSMEM_DATASIZE // 124 + 10):
        w.send(frame(i, 100), i, 0)
    got = r.read_records()
    assert r.resyncs == 1
    secs = [x.sec for x in got]
    assert secs[-1] == 100 + BUSMEM_DATASIZE // 124 + 9
    assert secs == list(range(secs[0], secs[-1] + 1))


def test_netbsd_made_bus_with_version_zero_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    img = bytearray(BUSMEM_SIZE)
    HDR.pack_into(img, 0, SHMIF_MAGIC, 0, 0, BUSMEM_DATASIZE, 0, 0, 0)
    path.write_bytes(bytes(img))
    a = ShmifBus(path)
    b = ShmifBus(path)
    a.send(frame(1), 1, 0)
    assert b.read_new() == [frame(1)]
    assert a.header().version == SHMIF_VERSION  # set by the wake-up write


def test_small_zero_file_is_initialised(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    path.write_bytes(b"")
    with ShmifBus(path) as a:
        assert a.header().magic == SHMIF_MAGIC
    assert os.path.getsize(path) == BUSMEM_SIZE


@pytest.mark.parametrize(
    ("content", "msg"),
    [
        (b"GARBAGE!" * 100, "not a shmif bus"),
        (b"ab", "not a shmif bus"),
        (HDR.pack(SHMIF_MAGIC, 7, 0, 0, 0, 0, 0) + bytes(BUSMEM_SIZE - 32), "bus version 7"),
        (HDR.pack(SHMIF_MAGIC, 3, 0, BUSMEM_DATASIZE + 5, 0, 0, 0) + bytes(BUSMEM_SIZE - 32), "corrupt"),
        (HDR.pack(SHMIF_MAGIC, 3, 0, 0, BUSMEM_DATASIZE, 0, 0) + bytes(BUSMEM_SIZE - 32), "corrupt"),
    ],
)
def test_garbage_bus_file_is_a_clear_error(tmp_path: Path, content: bytes, msg: str) -> None:
    path = tmp_path / "bus"
    path.write_bytes(content)
    with pytest.raises(ShmifBusError, match=msg) as ei:
        ShmifBus(path)
    assert isinstance(ei.value, OSError)
    assert ei.value.errno == errno.ENOEXEC
    assert str(path) in str(ei.value)
    assert path.read_bytes() == content  # untouched


def test_bus_overwritten_after_open(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    a = ShmifBus(path)
    b = ShmifBus(path)
    with open(path, "r+b") as fp:
        fp.write(b"\x00\x11\x22\x33")
    with pytest.raises(ShmifBusError, match="not a shmif bus"):
        a.send(frame(1), 0, 0)
    with pytest.raises(ShmifBusError):
        b.read_new()


def test_corrupt_frame_header_in_ring(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    a = ShmifBus(path)
    b = ShmifBus(path)
    a.send(frame(1), 0, 0)
    a.send(frame(2), 0, 0)
    # smash the length of the first frame (at ring offset 24)
    with open(path, "r+b") as fp:
        fp.seek(IFMEM_DATA + 24)
        fp.write(struct.pack("<I", 0x7FFFFFF0))
    assert b.read_new() == []  # no crash: counted and skipped to the end
    assert b.corrupt == 1
    with pytest.raises(ShmifBusError, match="corrupt"):
        list(walk_bus(a.snapshot()))


def test_stale_shm_lock_is_broken(tmp_path: Path) -> None:
    path = tmp_path / "bus"
    a = ShmifBus(path)
    b = ShmifBus(path)
    with open(path, "r+b") as fp:  # a process died holding the NetBSD lock word
        fp.seek(24)
        fp.write(struct.pack("<I", 1))
    t0 = time.monotonic()
    a.send(frame(1), 0, 0)
    assert time.monotonic() - t0 >= 0.9
    assert a.lock_breaks == 1
    assert a.header().lock == 0
    assert b.read_new() == [frame(1)]


CHILD = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {repo!r})
    from rumpnet.shmif.shmif_bus import ShmifBus
    bus = ShmifBus({path!r})
    bus.send(b"READY" + bytes(60), 0, 0)
    seen = 0
    deadline = time.monotonic() + 30
    while seen < {n} and time.monotonic() < deadline:
        frames = bus.read_new()
        if not frames:
            time.sleep(0.001)
        for f in frames:
            if f.startswith(b"PING"):
                bus.send(b"PONG" + f[4:], 1, 2)
                seen += 1
    bus.close()
    sys.exit(0 if seen == {n} else 1)
    """
)


def test_two_processes_exchange_frames(tmp_path: Path) -> None:
    path = str(tmp_path / "bus")
    n = 500
    parent = ShmifBus(path)
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(repo=str(REPO), path=path, n=n)])
    try:
        got: list[bytes] = []
        ready = False
        deadline = time.monotonic() + 30
        while not ready and time.monotonic() < deadline:
            ready = any(f.startswith(b"READY") for f in parent.read_new())
            time.sleep(0.001)
        assert ready
        for i in range(n):
            parent.send(b"PING" + i.to_bytes(4, "big") * 20, i, 0)
            if i % 10 == 0:
                got.extend(parent.read_new())
        while len(got) < n and time.monotonic() < deadline:
            got.extend(parent.read_new())
            time.sleep(0.001)
        assert got == [b"PONG" + i.to_bytes(4, "big") * 20 for i in range(n)]
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_threads_with_own_handles_in_one_process(tmp_path: Path) -> None:
    """Two kernels of one process on one bus: their handles must still exclude each other."""
    path = tmp_path / "bus"
    reader = ShmifBus(path)
    writers = [ShmifBus(path) for _ in range(3)]
    n = 3000

    def pump(w: ShmifBus, tag: int) -> None:
        for i in range(n):
            w.send(bytes([tag]) + i.to_bytes(4, "big") * 15, tag, i)

    threads = [threading.Thread(target=pump, args=(w, t)) for t, w in enumerate(writers)]
    got: list[bytes] = []
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        got.extend(reader.read_new())
    for t in threads:
        t.join()
    got.extend(reader.read_new())
    assert reader.resyncs == 0 and reader.corrupt == 0
    for tag in range(3):
        mine = [f for f in got if f[0] == tag]
        assert mine == [bytes([tag]) + i.to_bytes(4, "big") * 15 for i in range(n)]
    # closing one handle does not break the others' locking
    writers[0].close()
    writers[1].send(b"\x09" * 60, 0, 0)
    assert reader.read_new() == [b"\x09" * 60]
