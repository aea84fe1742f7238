"""Property tests for the shmif bus: ordering, loss accounting, garbage never crashes."""

from __future__ import annotations

import struct
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rumpnet.shmif.shmif_bus import BUSMEM_DATASIZE, BUSMEM_SIZE, SHMIF_MAGIC, ShmifBus, ShmifBusError, walk_bus


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 1514), min_size=1, max_size=60),
    repeat=st.integers(1, 80),
    read_every=st.integers(1, 4000),
)
def test_reader_sees_an_ordered_tail_without_duplicates(sizes: list[int], repeat: int, read_every: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bus"
        w = ShmifBus(path)
        r = ShmifBus(path)
        got: list[int] = []
        n = len(sizes) * repeat
        for i in range(n):
            size = max(4, sizes[i % len(sizes)])
            w.send(i.to_bytes(4, "big") + bytes(size - 4), i, 0)
            if i % read_every == read_every - 1:
                got.extend(x.sec for x in r.read_records())
        got.extend(x.sec for x in r.read_records())
        # strictly increasing, ends at the newest frame
        assert all(a < b for a, b in zip(got, got[1:], strict=False))
        assert got[-1] == n - 1
        if r.resyncs == 0:
            assert got == list(range(n))
        assert r.corrupt == 0
        image = w.snapshot()
        secs = [x.sec for x in walk_bus(image)]
        assert secs == list(range(secs[0], n))
        w.close()
        r.close()


@settings(max_examples=60, deadline=None)
@given(
    first=st.integers(0, BUSMEM_DATASIZE),
    last=st.integers(0, BUSMEM_DATASIZE - 1),
    gen=st.integers(0, 2**64 - 1),
    ring=st.binary(min_size=64, max_size=4096),
    at=st.integers(0, BUSMEM_DATASIZE - 4096),
)
def test_garbage_ring_never_crashes(first: int, last: int, gen: int, ring: bytes, at: int) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "bus"
        img = bytearray(BUSMEM_SIZE)
        struct.pack_into("=IIQIIII", img, 0, SHMIF_MAGIC, 3, gen, first, last, 0, 0)
        img[32 + at : 32 + at + len(ring)] = ring
        # sprinkle the ring bytes at the offsets the header points to as well
        for off in (first, last):
            if off < BUSMEM_DATASIZE - len(ring):
                img[32 + off : 32 + off + len(ring)] = ring
        path.write_bytes(bytes(img))
        try:
            b = ShmifBus(path)
        except ShmifBusError:
            return
        other = ShmifBus(path)
        for _ in range(3):
            try:
                b.read_new(100)
            except ShmifBusError:
                pass
            try:
                other.send(b"\x01" * 60, 0, 0)
            except ShmifBusError:
                pass
        try:
            list(walk_bus(b.snapshot()))
        except ShmifBusError:
            pass
        b.close()
        other.close()
