"""Software segmentation (GSO, ``net.inet.tcp.gso``) toward interfaces without TSO.

TCP builds superframes of whole segments and ``IpOutput`` cuts them just before the
interface. The claim is that this changes nothing on the wire: the same frames, byte for
byte, as one ``tcp_output`` round per segment. These tests capture both ways on virtual
time, with the same seeds, and compare the captures; with loss on the wire too, so that
retransmissions and recovery go through it."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from test_tcp_transfer import _impair, _transfer  # type: ignore[import-not-found]

from rumpnet.bpf import PcapReader


def _capture(make_vnet, gso: int, loss: float, path: Path, size: int) -> tuple[bytes, int, int]:
    """A sends ``size`` bytes to B with ``net.inet.tcp.gso`` = ``gso``; returns A's
    capture, the superframes A's IP cut in software and the frames they made."""
    net = make_vnet()
    try:
        a, b = net.pair(seeds=(5, 6))
        for k in (a, b):
            k.config.sysctl_set("net.inet.tcp.gso", gso)
        if loss:
            _impair(a, loss=loss)
        cap = a.config.pcap("wire0", str(path))
        data = random.Random(9).randbytes(size)
        got, _ = _transfer(a, b, data)
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
        a.run_for(5)
        cap.close()
        out = a.inet.output
        return path.read_bytes(), out.gso_sw, out.gso_segs
    finally:
        net.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("loss", [0.0, 0.02], ids=["clean", "lossy"])
def test_gso_puts_the_same_frames_on_the_wire(vnet_factory, tmp_path: Path, loss: float) -> None:
    size = 600_000 + 777  # not a multiple of the MSS: a short last segment
    on, sw_on, segs_on = _capture(vnet_factory, 1, loss, tmp_path / "gso.pcap", size)
    off, sw_off, _ = _capture(vnet_factory, 0, loss, tmp_path / "nogso.pcap", size)
    assert sw_off == 0
    assert sw_on > 0 and segs_on > 2 * sw_on  # superframes really were built and cut
    assert on == off

    # And what is on the wire is well formed: every frame of at most the MTU, both
    # checksums right (scapy recomputes them), sequence numbers covering the data.
    reader = PcapReader(tmp_path / "gso.pcap")
    frames = [frame for _ts, frame in reader]
    reader.close()
    payload_bytes = 0
    for raw in frames:
        pkt = Ether(raw)
        if IP not in pkt or TCP not in pkt or pkt[IP].src != "10.0.0.1":
            continue
        assert len(raw) <= 1514
        ip_sum, tcp_sum = pkt[IP].chksum, pkt[TCP].chksum
        del pkt[IP].chksum
        del pkt[TCP].chksum
        again = Ether(bytes(pkt))
        assert (again[IP].chksum, again[TCP].chksum) == (ip_sum, tcp_sum)
        payload_bytes += len(pkt[TCP].payload)
    assert payload_bytes >= size


@pytest.mark.timeout(120)
@pytest.mark.parametrize("linkopt", ["", ",tso"], ids=["gso", "tso-port"])
def test_superframes_respect_a_small_peer_mss(vnet_factory, tmp_path: Path, linkopt: str) -> None:
    """B announces MSS 536: A's superframes (two or three 524-byte segments fit in the
    1500-byte MTU) must still be cut at the segment size, by A's IP (GSO) or by A's TSO
    wire port toward B's plain one, with valid checksums; never sent as one big frame."""
    net = vnet_factory()
    try:
        a, b = net.kernel(5), net.kernel(6)
        net.attach(a, "wire0", "lan" + linkopt, "10.0.0.1/24")
        net.attach(b, "wire0", "lan", "10.0.0.2/24")
        cap = b.config.pcap("wire0", str(tmp_path / "b.pcap"))
        real_socket = b.rump_sys_socket

        def small_mss_socket(*args):
            fd = real_socket(*args)
            b.rump_sys_setsockopt(fd, socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
            return fd

        b.rump_sys_socket = small_mss_socket
        data = random.Random(4).randbytes(300_000)
        got, _ = _transfer(a, b, data)
        assert got == data
        a.run_for(1)
        cap.close()
        assert b.inet.tcp.stats.tcps_rcvbadsum == 0
        assert a.inet.tcp.stats.tcps_sndrexmitpack == 0
        assert a.inet.tcp.tso_superframes > 0          # superframes were built
    finally:
        net.close()
    reader = PcapReader(tmp_path / "b.pcap")
    sizes = [len(Ether(f)[TCP].payload) for _ts, f in reader
             if TCP in Ether(f) and Ether(f)[IP].src == "10.0.0.1"]
    reader.close()
    assert sizes and max(sizes) <= 536 - 12
