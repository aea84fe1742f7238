"""Same seed, same virtual-time scenario: byte-identical pcap files; another seed: not."""

from __future__ import annotations

import socket
from pathlib import Path

from rumpnet.bpf import PcapReader


def scenario(make_vnet, seed: int, path: Path) -> bytes:
    net = make_vnet()  # a fresh scheduler and clock per run, unique wire names
    try:
        a = net.kernel(seed)
        b = net.kernel(seed)
        net.attach(a, "wire0", "lan", "10.0.0.1/24")
        net.attach(b, "wire0", "lan", "10.0.0.2/24")
        cap = a.config.pcap("wire0", str(path))
        b.config.sysctl_set("net.inet.arp.keep", 30)
        for _ in range(3):
            assert net.ping(a, "10.0.0.2") is not None
            a.run_for(0.25)
        srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        b.rump_sys_bind(srv, ("0.0.0.0", 7))
        cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        for size in (10, 3000):
            a.rump_sys_sendto(cli, b"d" * size, 0, ("10.0.0.2", 7))
            data, peer = b.rump_sys_recvfrom(srv, 65535, 0)
            b.rump_sys_sendto(srv, data, 0, peer)
            assert a.rump_sys_recvfrom(cli, 65535, 0)[0] == data
        a.run_for(40)  # b's ARP entry expires: the next reply resolves again
        assert net.ping(b, "10.0.0.1") is not None
        a.rump_sys_sendto(cli, b"x", 0, ("10.0.0.2", 9))  # port unreachable
        a.run_for(1)
        cap.close()
    finally:
        net.close()
    return path.read_bytes()


def test_same_seed_same_pcap(vnet_factory, tmp_path: Path) -> None:
    one = scenario(vnet_factory, 42, tmp_path / "one.pcap")
    two = scenario(vnet_factory, 42, tmp_path / "two.pcap")
    assert one == two
    reader = PcapReader(tmp_path / "one.pcap")
    frames = list(reader)
    reader.close()
    assert len(frames) > 20


def test_different_seed_different_pcap(vnet_factory, tmp_path: Path) -> None:
    one = scenario(vnet_factory, 42, tmp_path / "one.pcap")
    other = scenario(vnet_factory, 43, tmp_path / "other.pcap")
    assert one != other
    assert len(one) == len(other)  # the same traffic, other MACs, IP ids and ports
