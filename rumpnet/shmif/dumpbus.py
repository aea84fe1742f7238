"""shmif_dumpbus(1): print a shmif bus's header and frames, or convert them to pcap.

    shmif_dumpbus [-h] [-p pcapfile] busfile

``-h`` prints only the bus header (as NetBSD's tool does; it is not "help": ``--help`` is). ``-p``
writes the frames on the bus, oldest first, to a pcap file (``-`` for standard output)
that tcpdump -r and Wireshark read. The bus is read without taking its lock, from a
copy taken at once, so a busy bus may show a torn newest frame, as with NetBSD's tool.
"""

from __future__ import annotations

import mmap
import os
import sys
from typing import IO

from rumpnet.bpf import PcapWriter
from rumpnet.shmif.shmif_bus import (
    BUSMEM_SIZE,
    ShmifBusError,
    check_header,
    parse_header,
    walk_bus,
)
from rumpnet.usage import EXIT_USAGE, BadOption, getopt_bsd, help_or_version

__all__ = ["main"]

PROG = "shmif_dumpbus"
USAGE = f"usage: {PROG} [-h] [-p pcapfile] busfile\n"


def _read_bus(path: str) -> bytes:
    with open(path, "rb") as fp:
        size = os.fstat(fp.fileno()).st_size
        if size < BUSMEM_SIZE:
            # Too short for a bus: still say what it is not, if the header tells.
            data = fp.read()
            if len(data) >= 32:
                check_header(path, parse_header(data))
            raise ShmifBusError(path, f"not a shmif bus ({size} bytes, want {BUSMEM_SIZE})")
        with mmap.mmap(fp.fileno(), BUSMEM_SIZE, mmap.MAP_SHARED, mmap.PROT_READ) as mm:
            return bytes(mm[:BUSMEM_SIZE])


def _parse_args(args: list[str]) -> tuple[bool, str | None, str]:
    """(-h given, -p's file or None, the bus file); BadOption as getopt(3) words it."""
    opts, rest = getopt_bsd(args, "hp:", PROG)
    if len(rest) != 1:
        raise BadOption(f"{PROG}: {'a bus file is needed' if not rest else 'one bus file only'}")
    pcapfile = next((value for letter, value in reversed(opts) if letter == "p"), None)
    return any(letter == "h" for letter, _ in opts), pcapfile, rest[0]


def main(argv: list[str] | None = None, stdout: IO[str] | None = None) -> int:
    """``shmif_dumpbus``: see the module docstring; returns the exit status."""
    out = sys.stdout if stdout is None else stdout
    args = sys.argv[1:] if argv is None else list(argv)
    status = help_or_version(PROG, args, USAGE)
    if status is not None:
        return status
    try:
        header_only, pcapfile, path = _parse_args(args)
    except BadOption as e:
        sys.stderr.write(f"{e}\n{USAGE}")
        return EXIT_USAGE

    try:
        image = _read_bus(path)
        hdr = parse_header(image)
        check_header(path, hdr)
    except OSError as e:
        msg = e.strerror or e
        sys.stderr.write(f"{PROG}: {msg}\n" if isinstance(e, ShmifBusError) else f"{PROG}: {path}: {msg}\n")
        return 1
    # With -p -, standard output carries the pcap: keep the text off it.
    text = pcapfile != "-"
    if text:
        out.write(
            f"bus magic 0x{hdr.magic:08x}, version {hdr.version}, lock: {hdr.lock}, "
            f"generation: {hdr.gen}, firstoff: 0x{hdr.first:04x}, lastoff: 0x{hdr.last:04x}\n"
        )
    if header_only:
        return 0

    writer: PcapWriter | None = None
    try:
        if pcapfile == "-":
            writer = PcapWriter(sys.stdout.buffer)
        elif pcapfile is not None:
            writer = PcapWriter(pcapfile)
    except OSError as e:
        sys.stderr.write(f"{PROG}: create pcap dump: {pcapfile}: {e.strerror or e}\n")
        return 1
    try:
        for i, rec in enumerate(walk_bus(image)):
            if text:
                out.write(
                    f"packet {i}, offset 0x{rec.offset:04x}, length 0x{len(rec.frame):04x}, "
                    f"ts {rec.sec}/{rec.usec:06d}, sender 0x{rec.sender:016x}\n"
                )
            if writer is not None:
                writer.write_record(rec.frame, rec.sec, rec.usec)
    except ShmifBusError as e:
        sys.stderr.write(f"{PROG}: {e.strerror}\n")
        return 1
    finally:
        if writer is not None:
            writer.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
