"""Replay from a seed holds whatever ran before: one virtual-time scenario on the default
scheduler gives the same frames (pcap bytes) and counters when it runs first in a fresh
process, after another scenario, and after its own earlier run was halted."""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys
from pathlib import Path

from rumpkern import rump_init


def scenario(pcap: Path, seeds: tuple[int, int] = (11, 12)) -> dict[str, str]:
    """Two kernels on a wire: ARP, ping, UDP (one datagram fragmented), a TCP transfer
    with a close, an ARP expiry; a capture of a's wire0. The kernels are halted at the end.
    Returns the pcap's digest and both kernels' ``netstat -s``."""
    a = rump_init(clock="virtual", seed=seeds[0], hostname="a")
    b = rump_init(clock="virtual", seed=seeds[1], hostname="b")
    try:
        for k, addr in ((a, "10.1.0.1/24"), (b, "10.1.0.2/24")):
            k.ifconfig("wire0", "create")
            k.ifconfig("wire0", "linkstr", "replay-lan")
            k.ifconfig("wire0", "inet", addr, "up")
        cap = a.config.pcap("wire0", str(pcap))
        b.sysctl("-w", "net.inet.arp.keep=20")
        a.ping("-c", "2", "10.1.0.2")
        srv = b.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        b.rump_sys_bind(srv, ("0.0.0.0", 7))
        cli = a.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        for size in (10, 3000):
            a.rump_sys_sendto(cli, b"u" * size, 0, ("10.1.0.2", 7))
            data, peer = b.rump_sys_recvfrom(srv, 65535, 0)
            b.rump_sys_sendto(srv, data, 0, peer)
            a.rump_sys_recvfrom(cli, 65535, 0)
        lfd = b.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        b.rump_sys_bind(lfd, ("0.0.0.0", 80))
        b.rump_sys_listen(lfd, 1)
        c = a.rump_sys_socket(socket.AF_INET, socket.SOCK_STREAM, 0)
        a.rump_sys_connect(c, ("10.1.0.2", 80))
        s, _ = b.rump_sys_accept(lfd)
        a.rump_sys_send(c, b"t" * 100_000, 0)
        a.rump_sys_shutdown(c, socket.SHUT_WR)
        got = 0
        while chunk := b.rump_sys_recv(s, 65536, 0):
            got += len(chunk)
        assert got == 100_000
        b.rump_sys_close(s)
        a.rump_sys_close(c)
        a.run_for(30)  # TIME_WAIT and b's ARP entry expire
        b.ping("-c", "1", "10.1.0.1")
        cap.close()
        return {"pcap": hashlib.sha256(pcap.read_bytes()).hexdigest(),
                "a": a.netstat("-s"), "b": b.netstat("-s")}
    finally:
        b.halt()
        a.halt()


def another_scenario() -> None:
    """Something else first: other seeds, one kernel, time passing, then halted."""
    k = rump_init(clock="virtual", seed=99)
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "linkstr", "replay-other")
    k.ifconfig("wire0", "inet", "10.2.0.1/24", "up")
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    k.rump_sys_sendto(fd, b"into the void", 0, ("10.2.0.9", 9))  # ARP retries, timers
    k.run_for(7.25)
    k.halt()


def _fresh_process(tmp_path: Path) -> dict[str, str]:
    code = f"""
import importlib.util, json, pathlib
spec = importlib.util.spec_from_file_location("replay", {str(Path(__file__))!r})
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
print(json.dumps(m.scenario(pathlib.Path({str(tmp_path / "fresh.pcap")!r}))))
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    result: dict[str, str] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def test_replay_is_the_same_first_after_another_and_after_a_halt(tmp_path: Path) -> None:
    fresh = _fresh_process(tmp_path)  # the first thing its process runs
    another_scenario()
    after_another = scenario(tmp_path / "after-another.pcap")
    after_halt = scenario(tmp_path / "after-halt.pcap")  # its own earlier run was halted
    assert after_another == fresh
    assert after_halt == fresh
    assert "packets sent" in fresh["a"] and fresh["pcap"] != hashlib.sha256(b"").hexdigest()


def test_kernels_left_running_on_a_scheduler_of_their_own_do_not_matter(vnet, tmp_path: Path) -> None:
    one = scenario(tmp_path / "one.pcap")
    busy = vnet.kernel(5)  # another CPU, still running while the scenario replays
    vnet.attach(busy, "wire0", "busy", "10.3.0.1/24")
    busy.rump_sys_sendto(busy.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0), b"x", 0, ("10.3.0.9", 9))
    busy.run_for(3)
    two = scenario(tmp_path / "two.pcap")
    assert one == two


def test_other_seeds_give_other_frames(tmp_path: Path) -> None:
    one = scenario(tmp_path / "one.pcap")
    other = scenario(tmp_path / "other.pcap", seeds=(21, 22))
    assert one["pcap"] != other["pcap"]
