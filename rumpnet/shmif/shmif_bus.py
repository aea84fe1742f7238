"""The shmif(4) bus: a 1 MiB memory-mapped file that several kernels share as one L2 segment.

The file has NetBSD's layout (``sys/rump/net/lib/libshmif/shmifvar.h``), in host byte
order::

    struct shmif_mem {                 /* 32 bytes */
        uint32_t shm_magic;            /* 0xca11d054 */
        uint32_t shm_version;          /* 3 */
        uint64_t shm_gen;              /* times the writer wrapped around the ring */
        uint32_t shm_first;            /* offset of the oldest frame still in the ring */
        uint32_t shm_last;             /* offset of the newest frame */
        uint32_t shm_lock;             /* spin lock, 0 free, 1 held */
        uint32_t shm_spare[1];
        uint8_t  shm_data[];           /* the ring, BUSMEM_SIZE - 32 bytes */
    };
    struct shmif_pkthdr {              /* 24 bytes on LP64 (4 bytes of padding) */
        uint32_t sp_len; uint32_t sp_sec; uint32_t sp_usec; uint64_t sp_sender;
    };

Frames are written back to back (header, then frame), wrapping byte-wise at the end of
the ring. A writer appends after the newest frame (``shm_last``), pushes ``shm_first``
past every frame it overwrites and bumps ``shm_gen`` when it reaches the end of the ring.
A reader keeps its own offset and generation; when the writers lapped it, it resyncs to
the oldest frame still in the ring (as NetBSD's ``shmif_rcv`` does) and counts a
``resyncs``. After writing, a writer ``pwrite``s the version word: that write is what
wakes readers that watch the file (kqueue on NetBSD, inotify on Linux); stores through
the mapping do not.

Locking. NetBSD takes ``shm_lock`` with an atomic compare-and-swap and spins. Python
cannot CAS on an mmap by itself, so the lock is taken in layers: a ``threading.Lock`` per
handle (threads sharing a handle), ``fcntl.flock`` on the bus file (which serialises every
handle of every Python process, and which the OS releases if a process dies), then
``shm_lock`` itself, with a real compare-and-swap through libatomic when ctypes can load
it, else with a check-then-set that is safe only because the flock is already held.
``flock`` rather than ``lockf``: POSIX record locks belong to the process, so two handles
in one process (two kernels on one bus) would not exclude each other, and closing either
would drop the other's lock. So Python handles always interoperate with each other, and
with NetBSD rump kernels on the same bus when libatomic is present (it is on glibc
systems). A ``shm_lock`` left set by a process that died holding it is broken after
``LOCK_STALE_SECONDS`` (counted in ``lock_breaks``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import itertools
import mmap
import os
import struct
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

__all__ = [
    "BUSMEM_DATASIZE",
    "BUSMEM_SIZE",
    "IFMEM_DATA",
    "PKTHDR",
    "SHMIF_MAGIC",
    "SHMIF_VERSION",
    "BusHeader",
    "BusRecord",
    "ShmifBus",
    "ShmifBusError",
    "parse_header",
    "walk_bus",
]

SHMIF_MAGIC = 0xCA11D054
SHMIF_VERSION = 3
BUSMEM_SIZE = 1024 * 1024

# '=': host byte order, standard sizes, no implicit alignment (padding is explicit).
MEMHDR = struct.Struct("=IIQIIII")  # magic, version, gen, first, last, lock, spare
PKTHDR = struct.Struct("=III4xQ")  # len, sec, usec, (pad), sender
IFMEM_DATA = MEMHDR.size  # 32
IFMEM_WAKEUP = 4  # offsetof(struct shmif_mem, shm_version)
BUSMEM_DATASIZE = BUSMEM_SIZE - IFMEM_DATA

_OFF_GEN = 8
_OFF_FIRST = 16
_OFF_LAST = 20
_OFF_LOCK = 24
_U32 = struct.Struct("=I")
_U64 = struct.Struct("=Q")

LOCK_UNLOCKED = 0
LOCK_LOCKED = 1
LOCK_STALE_SECONDS = 1.0

#: NetBSD's buswrite asserts every chunk is shorter than half the ring.
MAX_FRAME = BUSMEM_DATASIZE // 2 - 1

_sender_ids = itertools.count(1)


class ShmifBusError(OSError):
    """The file is not a usable shmif bus (bad magic or version, corrupt ring)."""

    def __init__(self, path: str, msg: str, err: int = errno.ENOEXEC) -> None:
        super().__init__(err, f"{path}: {msg}")
        self.path = path


@dataclass(frozen=True)
class BusHeader:
    magic: int
    version: int
    gen: int
    first: int
    last: int
    lock: int


@dataclass(frozen=True)
class BusRecord:
    offset: int  # offset of the frame's pkthdr in the ring
    sec: int
    usec: int
    sender: int
    frame: bytes


def parse_header(buf: bytes | bytearray | memoryview | mmap.mmap) -> BusHeader:
    magic, version, gen, first, last, lock, _ = MEMHDR.unpack_from(buf, 0)
    return BusHeader(magic, version, gen, first, last, lock)


def check_header(path: str, hdr: BusHeader) -> None:
    """Raise ShmifBusError unless ``hdr`` is a NetBSD shmif bus header we can use."""
    if hdr.magic != SHMIF_MAGIC:
        raise ShmifBusError(path, f"not a shmif bus (magic 0x{hdr.magic:08x})")
    # A bus made by NetBSD keeps version 0 until its first wake-up write.
    if hdr.version not in (0, SHMIF_VERSION):
        raise ShmifBusError(path, f"bus version {hdr.version}, program {SHMIF_VERSION}")
    if hdr.first > BUSMEM_DATASIZE or hdr.last >= BUSMEM_DATASIZE:
        raise ShmifBusError(path, f"corrupt bus: first 0x{hdr.first:x}, last 0x{hdr.last:x}")


class _Corrupt(Exception):
    """A frame header in the ring makes no sense (internal; turned into a resync)."""


# --------------------------------------------------------------------------- ring access
# The ring functions work on any buffer holding a whole bus (the live mmap, or a copy
# for shmif_dumpbus); offsets are relative to shm_data.


def _busread(buf: Any, off: int, n: int) -> tuple[bytes, int, bool]:
    """Read ``n`` bytes at ring offset ``off``: (data, next offset, wrapped)."""
    chunk = min(n, BUSMEM_DATASIZE - off)
    base = IFMEM_DATA + off
    data = buf[base : base + chunk]
    wrap = off + chunk == BUSMEM_DATASIZE
    if chunk == n:
        return data, (off + chunk) % BUSMEM_DATASIZE, wrap
    rest = n - chunk
    return data + buf[IFMEM_DATA : IFMEM_DATA + rest], rest, wrap


def _pkthdr(buf: Any, off: int) -> tuple[int, int, int, int, int, bool]:
    """(len, sec, usec, sender, payload offset, wrapped) of the frame at ``off``."""
    raw, nxt, wrap = _busread(buf, off, PKTHDR.size)
    length, sec, usec, sender = PKTHDR.unpack(raw)
    if length > MAX_FRAME:
        raise _Corrupt(f"frame length {length} at offset 0x{off:x}")
    return length, sec, usec, sender, nxt, wrap


def _advance(off: int, delta: int) -> int:
    off += delta
    if off >= BUSMEM_DATASIZE:
        off -= BUSMEM_DATASIZE
    return off


def _nextpktoff(buf: Any, off: int) -> int:
    length = _pkthdr(buf, off)[0]
    return _advance(off, PKTHDR.size + length)


def walk_bus(buf: Any) -> Iterator[BusRecord]:
    """The frames in a bus image, oldest first (what shmif_dumpbus prints).

    Zero-length records (the empty slot at offset 0 of a new bus) are skipped. Raises
    ShmifBusError if the ring is corrupt.
    """
    if len(buf) < BUSMEM_SIZE:
        raise ShmifBusError("bus", f"bus image is {len(buf)} bytes, not {BUSMEM_SIZE}")
    hdr = parse_header(buf)
    check_header("bus", hdr)
    cur = 0 if hdr.first == BUSMEM_DATASIZE else hdr.first
    consumed = 0
    while True:
        try:
            length, sec, usec, sender, data_off, _ = _pkthdr(buf, cur)
        except _Corrupt as e:
            raise ShmifBusError("bus", f"corrupt ring: {e}") from None
        if length:
            frame, _, _ = _busread(buf, data_off, length)
            yield BusRecord(cur, sec, usec, sender, bytes(frame))
        if cur == hdr.last:
            return
        consumed += PKTHDR.size + length
        if consumed > BUSMEM_DATASIZE:
            raise ShmifBusError("bus", "corrupt ring: last frame not reachable from first")
        cur = _advance(cur, PKTHDR.size + length)


# --------------------------------------------------------------------------- CAS on shm_lock


def _load_libatomic() -> Any:
    name = ctypes.util.find_library("atomic")
    for cand in (name, "libatomic.so.1"):
        if not cand:
            continue
        try:
            lib = ctypes.CDLL(cand)
            cas = lib.__atomic_compare_exchange_4
            xchg = lib.__atomic_exchange_4
        except (OSError, AttributeError):
            continue
        cas.argtypes = [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_uint32,
            ctypes.c_int,
            ctypes.c_int,
        ]
        cas.restype = ctypes.c_bool
        xchg.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int]
        xchg.restype = ctypes.c_uint32
        return lib
    return None


_libatomic = _load_libatomic()
# Looked up here: inside a class body the dunder names would be mangled.
_cas: Any = getattr(_libatomic, "__atomic_compare_exchange_4", None)
_xchg: Any = getattr(_libatomic, "__atomic_exchange_4", None)
_SEQ_CST = 5


# --------------------------------------------------------------------------- the bus


class ShmifBus:
    """One process's handle on a shmif bus file.

    ``sender_id`` is this handle's ``sp_sender`` (NetBSD uses a random 64-bit id per
    interface); by default it is made unique on this host from the pid and a counter.
    The read cursor starts at the end of the bus: :meth:`read_new` returns the frames
    other senders wrote after the handle was opened (or after :meth:`seek_end`).
    """

    def __init__(self, path: str | os.PathLike[str], sender_id: int | None = None) -> None:
        self.path = os.fspath(path)
        if sender_id is None:
            sender_id = (os.getpid() << 24 | next(_sender_ids)) & 0xFFFFFFFFFFFFFFFF
        self.sender_id = sender_id
        # counters
        self.sent = 0
        self.received = 0
        self.resyncs = 0  # times this reader was lapped by the writers (frames lost)
        self.corrupt = 0  # frame headers that made no sense (resynced to the end)
        self.lock_breaks = 0  # stale shm_lock values broken
        self._mm: mmap.mmap | None = None
        self._tlock = threading.Lock()
        self._lockword: Any = None
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        fd = self._fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            if size > 0:
                head = os.pread(fd, 4, 0).ljust(4, b"\0")
                magic = _U32.unpack(head)[0]
                if magic not in (0, SHMIF_MAGIC) or (size < 4 and any(head)):
                    raise ShmifBusError(self.path, f"not a shmif bus (magic 0x{magic:08x})")
            if size < BUSMEM_SIZE:
                os.ftruncate(fd, BUSMEM_SIZE)
            mm = mmap.mmap(fd, BUSMEM_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            self._mm = mm
            if _cas is not None:
                self._lockword = ctypes.c_uint32.from_buffer(mm, _OFF_LOCK)
            self._lock_shm()
            try:
                if _U32.unpack_from(mm, 0)[0] == 0:
                    # We are first: initialise as NetBSD's initbackend does (and set the
                    # version, which NetBSD leaves to its first wake-up write).
                    MEMHDR.pack_into(
                        mm,
                        0,
                        SHMIF_MAGIC,
                        SHMIF_VERSION,
                        0,
                        BUSMEM_DATASIZE,
                        0,
                        LOCK_LOCKED,
                        0,
                    )
                check_header(self.path, parse_header(mm))
                self._seek_end_locked()
            finally:
                self._unlock_shm()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    # ------------------------------------------------------------------ locking

    def _lock_shm(self) -> None:
        mm = self._mm
        assert mm is not None
        deadline: float | None = None
        spins = 0
        while True:
            if self._lockword is not None:
                expected = ctypes.c_uint32(LOCK_UNLOCKED)
                if _cas(
                    ctypes.addressof(self._lockword),
                    ctypes.byref(expected),
                    LOCK_LOCKED,
                    _SEQ_CST,
                    _SEQ_CST,
                ):
                    return
            elif _U32.unpack_from(mm, _OFF_LOCK)[0] == LOCK_UNLOCKED:
                _U32.pack_into(mm, _OFF_LOCK, LOCK_LOCKED)
                return
            # Held by a NetBSD process (we hold the flock, so no Python one) or stale.
            spins += 1
            if spins < 100:
                continue
            now = time.monotonic()
            if deadline is None:
                deadline = now + LOCK_STALE_SECONDS
            elif now >= deadline:
                self.lock_breaks += 1
                _U32.pack_into(mm, _OFF_LOCK, LOCK_UNLOCKED)
                deadline = None
            time.sleep(0.0005)

    def _unlock_shm(self) -> None:
        mm = self._mm
        assert mm is not None
        if self._lockword is not None:
            _xchg(ctypes.addressof(self._lockword), LOCK_UNLOCKED, _SEQ_CST)
        else:
            _U32.pack_into(mm, _OFF_LOCK, LOCK_UNLOCKED)

    def _lock(self) -> mmap.mmap:
        self._tlock.acquire()
        try:
            mm = self._mm
            if mm is None:
                raise ValueError("shmif bus is closed")
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                self._lock_shm()
            except BaseException:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                raise
        except BaseException:
            self._tlock.release()
            raise
        return mm

    def _unlock(self) -> None:
        try:
            self._unlock_shm()
        finally:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                self._tlock.release()

    # ------------------------------------------------------------------ header fields

    def header(self) -> BusHeader:
        """The bus header as it is now (read without the lock)."""
        if self._mm is None:
            raise ValueError("shmif bus is closed")
        return parse_header(self._mm)

    def _get32(self, off: int) -> int:
        assert self._mm is not None
        return int(_U32.unpack_from(self._mm, off)[0])

    def _set32(self, off: int, value: int) -> None:
        assert self._mm is not None
        _U32.pack_into(self._mm, off, value)

    # ------------------------------------------------------------------ writing

    def _advancefirst(self, off: int, length: int) -> None:
        """Push shm_first past the frames that bytes [off, off+length) overwrite."""
        mm = self._mm
        first = self._get32(_OFF_FIRST)
        for _ in range(BUSMEM_DATASIZE // PKTHDR.size + 2):
            if not (off <= first + PKTHDR.size and off + length > first):
                break
            first = _nextpktoff(mm, first)
        else:
            raise _Corrupt("shm_first does not advance")
        self._set32(_OFF_FIRST, first)

    def _buswrite(self, off: int, data: bytes | bytearray | memoryview) -> tuple[int, bool]:
        mm = self._mm
        assert mm is not None
        n = len(data)
        chunk = min(n, BUSMEM_DATASIZE - off)
        filled = off + chunk == BUSMEM_DATASIZE
        self._advancefirst(off, chunk + (1 if filled else 0))
        base = IFMEM_DATA + off
        mm[base : base + chunk] = data[:chunk] if chunk < n else data
        if chunk == n:
            return (off + chunk) % BUSMEM_DATASIZE, filled
        rest = n - chunk
        self._advancefirst(0, rest)
        mm[IFMEM_DATA : IFMEM_DATA + rest] = data[chunk:]
        return rest, filled

    def send(
        self,
        frame: bytes | bytearray | memoryview,
        sec: int,
        usec: int,
        sender_id: int | None = None,
    ) -> None:
        """Append one frame to the bus and wake the readers.

        Raises ValueError for an empty or oversized frame, ShmifBusError if the bus
        header was overwritten with garbage, OSError for I/O trouble.
        """
        n = len(frame)
        if not 0 < n <= MAX_FRAME:
            raise ValueError(f"frame length {n} out of range 1..{MAX_FRAME}")
        sender = self.sender_id if sender_id is None else sender_id
        hdr = PKTHDR.pack(n, sec & 0xFFFFFFFF, usec & 0xFFFFFFFF, sender & 0xFFFFFFFFFFFFFFFF)
        mm = self._lock()
        try:
            check_header(self.path, parse_header(mm))
            try:
                last = _nextpktoff(mm, self._get32(_OFF_LAST))
                off, wrap1 = self._buswrite(last, hdr)
                _, wrap2 = self._buswrite(off, frame)
            except _Corrupt as e:
                raise ShmifBusError(self.path, f"corrupt ring: {e}") from None
            self._set32(_OFF_LAST, last)
            if wrap1 or wrap2:
                _U64.pack_into(
                    mm,
                    _OFF_GEN,
                    (_U64.unpack_from(mm, _OFF_GEN)[0] + 1) & 0xFFFFFFFFFFFFFFFF,
                )
        finally:
            self._unlock()
        self.sent += 1
        self.wakeup()

    def wakeup(self) -> None:
        """Write the version word through the file: watchers get IN_MODIFY / NOTE_WRITE."""
        with self._tlock:
            if self._fd >= 0:
                os.pwrite(self._fd, _U32.pack(SHMIF_VERSION), IFMEM_WAKEUP)

    # ------------------------------------------------------------------ reading

    def _seek_end_locked(self) -> None:
        mm = self._mm
        assert mm is not None
        try:
            self._nextpacket = _nextpktoff(mm, self._get32(_OFF_LAST))
        except _Corrupt:
            self.corrupt += 1
            self._nextpacket = self._get32(_OFF_LAST)
        self._devgen = int(_U64.unpack_from(mm, _OFF_GEN)[0])

    def seek_end(self) -> None:
        """Skip everything on the bus now: the next read_new() sees only newer frames."""
        self._lock()
        try:
            self._seek_end_locked()
        finally:
            self._unlock()

    def _stillvalid(self, gen: int, first: int, last: int) -> bool:
        """Has the cursor not been overwritten (NetBSD's stillvalid_p)?"""
        gendiff = gen - self._devgen
        if gendiff < 0 or gendiff > 1:
            return False
        devoff = self._nextpacket
        lastoff = _nextpktoff(self._mm, last)
        if first >= lastoff:
            lastoff += BUSMEM_DATASIZE
            if gendiff == 0:
                devoff += BUSMEM_DATASIZE
        elif gendiff:
            return False
        return first <= devoff <= lastoff

    def read_records(self, max_frames: int | None = None) -> list[BusRecord]:
        """New frames from other senders with their headers, oldest first.

        At most ``max_frames`` frames are returned (None: all there are); the rest stay
        for the next call. A reader lapped by the writers resyncs to the oldest frame
        still on the bus and counts ``resyncs``.
        """
        out: list[BusRecord] = []
        mm = self._lock()
        try:
            check_header(self.path, parse_header(mm))
            # The writers wait for our lock, so one pass sees at most a ring's worth of
            # records and needs at most one resync; more means the ring is garbage.
            budget = BUSMEM_DATASIZE // PKTHDR.size + 2
            resynced = False
            while max_frames is None or len(out) < max_frames:
                gen = int(_U64.unpack_from(mm, _OFF_GEN)[0])
                first = self._get32(_OFF_FIRST)
                last = self._get32(_OFF_LAST)
                try:
                    if self._devgen == gen and _nextpktoff(mm, last) == self._nextpacket:
                        break
                    budget -= 1
                    if budget < 0:
                        raise _Corrupt("the ring does not lead to its newest frame")
                    if not self._stillvalid(gen, first, last):
                        if resynced:
                            raise _Corrupt("cursor invalid right after a resync")
                        resynced = True
                        self.resyncs += 1
                        self._nextpacket = first
                        self._devgen = gen - 1 if first > last else gen
                    pos = self._nextpacket
                    length, sec, usec, sender, data_off, wrap = _pkthdr(mm, pos)
                    frame, nxt, wrap2 = _busread(mm, data_off, length)
                except _Corrupt:
                    # Garbage where a frame header should be: give up on what is
                    # between us and the newest frame.
                    self.corrupt += 1
                    self._seek_end_locked()
                    break
                self._nextpacket = nxt
                if wrap or wrap2:
                    self._devgen += 1
                if length == 0 or sender == self.sender_id:
                    continue
                out.append(BusRecord(pos, sec, usec, sender, bytes(frame)))
        finally:
            self._unlock()
        self.received += len(out)
        return out

    def read_new(self, max_frames: int | None = None) -> list[bytes]:
        """The frames other senders wrote since the last read, oldest first."""
        return [r.frame for r in self.read_records(max_frames)]

    def snapshot(self) -> bytes:
        """A consistent copy of the whole bus (taken under the lock)."""
        mm = self._lock()
        try:
            return bytes(mm[:BUSMEM_SIZE])
        finally:
            self._unlock()

    # ------------------------------------------------------------------ life cycle

    def fileno(self) -> int:
        return self._fd

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        with self._tlock:
            self._lockword = None  # release the buffer export before closing the mapping
            if self._mm is not None:
                self._mm.close()
                self._mm = None
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<ShmifBus {self.path!r} sender 0x{self.sender_id:x}>"
