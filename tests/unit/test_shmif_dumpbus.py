"""shmif_dumpbus (rumpnet/shmif/dumpbus.py): header, frame list, pcap conversion."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

from rumpnet.bpf import PcapReader
from rumpnet.shmif.dumpbus import main
from rumpnet.shmif.shmif_bus import BUSMEM_DATASIZE, BUSMEM_SIZE, ShmifBus, walk_bus

REPO = Path(__file__).resolve().parents[2]


def icmp_frame(i: int) -> bytes:
    return bytes(
        Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / ICMP(type=8, seq=i)
        / (b"x" * (i % 50))
    )


@pytest.fixture
def bus(tmp_path: Path) -> tuple[Path, list[bytes]]:
    path = tmp_path / "bus"
    fs = [icmp_frame(i) for i in range(5)]
    with ShmifBus(path, sender_id=0xABC) as b:
        for i, f in enumerate(fs):
            b.send(f, 1_700_000_000 + i, 1000 * i)
    return path, fs


def test_prints_header_and_frames(bus: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, fs = bus
    assert main([str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"bus magic 0xca11d054, version 3, lock: 0, generation: 0, "
        f"firstoff: 0x{BUSMEM_DATASIZE:04x}, lastoff: 0x{24 + sum(24 + len(f) for f in fs[:-1]):04x}"
    )
    assert len(out) == 1 + len(fs)
    off = 24
    for i, (line, f) in enumerate(zip(out[1:], fs, strict=True)):
        assert line == (
            f"packet {i}, offset 0x{off:04x}, length 0x{len(f):04x}, ts {1_700_000_000 + i}/{1000 * i:06d}, sender 0x{0xABC:016x}"
        )
        off += 24 + len(f)


def test_header_only(bus: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = bus
    assert main(["-h", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("bus magic 0xca11d054, version 3")


def test_pcap_output(bus: tuple[Path, list[bytes]], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, fs = bus
    pcap = tmp_path / "out.pcap"
    assert main(["-p", str(pcap), str(path)]) == 0
    pkts = rdpcap(str(pcap))
    assert [bytes(p) for p in pkts] == fs
    assert [float(p.time) for p in pkts] == [1_700_000_000 + i + i / 1000 for i in range(5)]
    assert pkts[3][ICMP].seq == 3


def test_pcap_to_stdout_via_subprocess(bus: tuple[Path, list[bytes]], tmp_path: Path) -> None:
    path, fs = bus
    res = subprocess.run(
        [sys.executable, "-m", "rumpnet.shmif.dumpbus", "-p", "-", str(path)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    out = tmp_path / "stdout.pcap"
    out.write_bytes(res.stdout)
    assert [f for _, f in PcapReader(out)] == fs


def test_wrapped_bus_dumps_oldest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bus"
    with ShmifBus(path) as b:
        for i in range(20000):
            b.send(i.to_bytes(4, "big") * 20, i, 0)
        h = b.header()
    assert h.gen >= 1
    pcap = tmp_path / "w.pcap"
    assert main(["-p", str(pcap), str(path)]) == 0
    secs = [int(ts) for ts, _ in PcapReader(pcap)]
    assert secs[-1] == 19999
    assert secs == list(range(secs[0], 20000))
    out = capsys.readouterr().out.splitlines()
    assert f"generation: {h.gen}," in out[0]
    assert len(out) == 1 + len(secs)


@pytest.mark.parametrize("argv", [[], ["-x", "bus"], ["-p"], ["a", "b"]])
def test_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: shmif_dumpbus [-h] [-p pcapfile] busfile" in capsys.readouterr().err


def test_not_a_bus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    junk = tmp_path / "junk"
    junk.write_bytes(b"\x12\x34\x56\x78" * (BUSMEM_SIZE // 4))
    assert main([str(junk)]) == 1
    err = capsys.readouterr().err
    assert re.search(r"not a shmif bus \(magic 0x78563412\)", err)
    short = tmp_path / "short"
    short.write_bytes(b"hello")
    assert main([str(short)]) == 1
    assert "not a shmif bus" in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 1
    assert "No such file" in capsys.readouterr().err


def test_corrupt_ring(bus: tuple[Path, list[bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = bus
    with open(path, "r+b") as fp:
        fp.seek(32 + 24)  # length of the first frame
        fp.write(b"\xff\xff\xff\x7f")
    assert main([str(path)]) == 1
    assert "corrupt ring" in capsys.readouterr().err


def netbsd_dumpbus_offsets(image: bytes) -> list[tuple[int, int]]:
    """The walk of NetBSD's shmif_dumpbus.c main loop, written out independently:
    (offset of the data, length) of each non-empty record."""
    datasize = BUSMEM_SIZE - 32
    _, _, _, first, last, _, _ = struct.unpack_from("<IIQIIII", image)
    data = image[32:]

    def busread(off: int, n: int) -> tuple[bytes, int, bool]:
        chunk = min(n, datasize - off)
        out = data[off : off + chunk]
        wrap = off + chunk == datasize
        if n == chunk:
            return out, (off + chunk) % datasize, wrap
        return out + data[: n - chunk], n - chunk, wrap

    cur = 0 if first == datasize else first
    bonus = last < cur
    res = []
    while cur <= last or bonus:
        raw, cur, wrap = busread(cur, 24)
        if wrap:
            bonus = False
        length = struct.unpack_from("<I", raw)[0]
        if length == 0:
            continue
        res.append((cur, length))
        _, cur, wrap = busread(cur, length)
        if wrap:
            bonus = False
    return res


@pytest.mark.parametrize("count", [0, 1, 7, 9000, 20000, 31111])
def test_walk_agrees_with_netbsd_dumpbus_loop(tmp_path: Path, count: int) -> None:
    path = tmp_path / "bus"
    with ShmifBus(path) as b:
        for i in range(count):
            b.send(bytes([i % 251]) * (60 + (i * 37) % 1455), i, 0)
        image = b.snapshot()
    ours = [((r.offset + 24) % (BUSMEM_SIZE - 32), len(r.frame)) for r in walk_bus(image)]
    assert ours == netbsd_dumpbus_offsets(image)
    assert len(ours) == min(count, len(ours)) and (count == 0 or ours)
