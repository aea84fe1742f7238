"""pcap capture and a bpf-like filter (NetBSD's ``net/bpf.c`` seen from user space).

* :class:`PcapWriter` writes classic pcap files (magic ``0xa1b2c3d4``, version 2.4,
  LINKTYPE_ETHERNET, microsecond timestamps) that tcpdump, Wireshark and scapy read.
  The same frames and timestamps always give the same bytes: the file header has no
  host-dependent field and the byte order is fixed (little-endian).
* :class:`PcapReader` iterates ``(ts, frame)`` over a pcap file (either byte order,
  microsecond or nanosecond magic); a truncated last record ends the iteration quietly.
* :func:`compile_filter` compiles a subset of pcap-filter(7) into a predicate over
  Ethernet frames. Malformed frames never raise: they do not match.
* :class:`BpfTap` joins a writer and a filter: the interface calls ``tap(frame)`` for
  every frame it receives or transmits.

The filter language is :mod:`rumpnet.bpf_filter`'s.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator
from typing import IO, Any, Self

from rumpnet.bpf_filter import Frame, FrameFilter, compile_filter

__all__ = [
    "LINKTYPE_ETHERNET",
    "PCAP_MAGIC",
    "PCAP_SNAPLEN",
    "BpfTap",
    "FrameFilter",
    "PcapReader",
    "PcapWriter",
    "compile_filter",
]

PCAP_MAGIC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_VERSION_MAJOR = 2
PCAP_VERSION_MINOR = 4
PCAP_SNAPLEN = 262144
LINKTYPE_ETHERNET = 1

_FILE_HDR = struct.Struct("<IHHiIII")
_REC_HDR = struct.Struct("<IIII")



# --------------------------------------------------------------------------- pcap files


class PcapWriter:
    """Write Ethernet frames to a classic pcap file.

    ``sink`` is a path (str or os.PathLike, created or truncated) or a binary file
    object opened for writing; a file object passed in is flushed but not closed by
    :meth:`close`.
    """

    def __init__(
        self,
        sink: str | os.PathLike[str] | IO[bytes],
        snaplen: int = PCAP_SNAPLEN,
        linktype: int = LINKTYPE_ETHERNET,
    ) -> None:
        if snaplen <= 0:
            raise ValueError("snaplen must be positive")
        self.snaplen = snaplen
        self.linktype = linktype
        self.frames = 0
        self.closed = False
        if isinstance(sink, (str, os.PathLike)):
            self._fp: IO[bytes] = open(sink, "wb")  # noqa: SIM115 - owned, closed by close()
            self._owned = True
        else:
            self._fp = sink
            self._owned = False
        self._fp.write(
            _FILE_HDR.pack(
                PCAP_MAGIC,
                PCAP_VERSION_MAJOR,
                PCAP_VERSION_MINOR,
                0,
                0,
                snaplen,
                linktype,
            )
        )

    def write(self, frame: Frame, ts: float) -> None:
        """Append one frame captured at ``ts`` (seconds; stored with microsecond precision)."""
        sec = int(ts // 1)
        usec = round((ts - sec) * 1_000_000)
        if usec >= 1_000_000:
            sec += 1
            usec -= 1_000_000
        self.write_record(frame, sec, usec)

    def write_record(self, frame: Frame, sec: int, usec: int) -> None:
        """Append one frame with an exact ``sec``/``usec`` timestamp."""
        if self.closed:
            raise ValueError("write to a closed PcapWriter")
        n = len(frame)
        caplen = min(n, self.snaplen)
        self._fp.write(_REC_HDR.pack(sec & 0xFFFFFFFF, usec, caplen, n))
        self._fp.write(frame[:caplen] if caplen < n else frame)
        self.frames += 1

    def flush(self) -> None:
        """Push what was written to the file."""
        if not self.closed:
            self._fp.flush()

    def close(self) -> None:
        """Flush and close (the file only if this writer opened it)."""
        if self.closed:
            return
        self.closed = True
        if self._owned:
            self._fp.close()
        else:
            self._fp.flush()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PcapReader:
    """Iterate ``(ts, frame)`` over a classic pcap file (path or binary file object).

    Both byte orders and the nanosecond variant are read. A last record cut short (a
    capture still being written, or a crash) ends the iteration without an error.
    Raises ValueError for a file that is not pcap.
    """

    def __init__(self, source: str | os.PathLike[str] | IO[bytes]) -> None:
        if isinstance(source, (str, os.PathLike)):
            self._fp: IO[bytes] = open(source, "rb")  # noqa: SIM115 - owned, closed by close()
            self._owned = True
        else:
            self._fp = source
            self._owned = False
        hdr = self._fp.read(_FILE_HDR.size)
        if len(hdr) < _FILE_HDR.size:
            self.close()
            raise ValueError("not a pcap file: header truncated")
        magic_le = struct.unpack_from("<I", hdr)[0]
        magic_be = struct.unpack_from(">I", hdr)[0]
        if magic_le in (PCAP_MAGIC, PCAP_MAGIC_NSEC):
            order, magic = "<", magic_le
        elif magic_be in (PCAP_MAGIC, PCAP_MAGIC_NSEC):
            order, magic = ">", magic_be
        else:
            self.close()
            raise ValueError(f"not a pcap file: magic 0x{magic_le:08x}")
        self._tsdiv = 1e9 if magic == PCAP_MAGIC_NSEC else 1e6
        (
            _,
            self.version_major,
            self.version_minor,
            _,
            _,
            self.snaplen,
            self.linktype,
        ) = struct.unpack(order + "IHHiIII", hdr)
        self._rec = struct.Struct(order + "IIII")
        self.truncated = False

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        rec = self._rec
        fp = self._fp
        while True:
            hdr = fp.read(rec.size)
            if len(hdr) < rec.size:
                self.truncated = bool(hdr)
                return
            sec, frac, caplen, _origlen = rec.unpack(hdr)
            data = fp.read(caplen)
            if len(data) < caplen:
                self.truncated = True
                return
            yield sec + frac / self._tsdiv, data

    def close(self) -> None:
        """Close the file (only if this reader opened it)."""
        if self._owned:
            self._fp.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- the tap


class BpfTap:
    """A capture point: ``tap(frame)`` writes the frame if it passes the filter.

    ``writer`` is a :class:`PcapWriter` (or anything with ``write(frame, ts)``),
    ``filter`` an expression or a predicate, ``clock`` gives the capture time (the
    kernel clock, so virtual-time runs give identical files). Counters follow NetBSD's
    ``struct bpf_stat``: ``bs_recv`` frames seen, ``bs_capt`` frames written,
    ``bs_drop`` frames the writer failed on.
    """

    def __init__(
        self,
        writer: Any,
        filter: str | FrameFilter | None = None,  # noqa: A002 - pcap's and the brief's name
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.writer = writer
        self.filter: FrameFilter | None = compile_filter(filter) if isinstance(filter, str) else filter
        if clock is None:
            raise TypeError("BpfTap needs a clock (the kernel's clock_now)")
        self.clock = clock
        self.bs_recv = 0
        self.bs_capt = 0
        self.bs_drop = 0

    def tap(self, frame: Frame) -> None:
        """One frame seen by the interface: counted (bs_recv) and, when it passes the filter, written."""
        self.bs_recv += 1
        flt = self.filter
        if flt is not None and not flt(frame):
            return
        try:
            self.writer.write(frame, self.clock())
        except (OSError, ValueError):
            self.bs_drop += 1
            return
        self.bs_capt += 1

    __call__ = tap

    def flush(self) -> None:
        """Flush the writer."""
        flush = getattr(self.writer, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Close the writer."""
        self.writer.close()
