"""Per-packet costs over IPv6 beside IPv4, in one process (no tap, no root): the
workloads where no superframe helps.

    python -m bench.micro_pkt6 [--count N] [--rounds R] [--only W,..] [--profile W | --one W] [--family 4|6]

Two kernels on an in-process wire (virtual clock: only CPU is measured). Per workload
and family: CPU microseconds per operation (``time.process_time``, the steadier figure on
a shared machine; the families take turns round by round), best of ``--rounds``, and the IPv6/IPv4 ratio from the same run:

* ``udp_rr``: a 64-byte UDP request and its echo (connected client, unconnected
  server answering with sendto), as the tap bench's udp_rtt does;
* ``tcp_cc``: a TCP connect, accept and close on both sides (tcp_cps);
* ``ping``: one ICMP/ICMPv6 echo request and reply through a raw socket (ping's path).

Prints one JSON object. ``--profile`` runs one workload under cProfile instead and
prints the top of its cumulative and own-time tables.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import socket
import struct
import time
from collections.abc import Callable
from typing import Any

from rumpnet.netinet6 import in6
from rumpnet.testing.vnet import VNet

ADDRS = {4: ("10.97.0.1", "10.97.0.2", 24), 6: ("fc00:97::1", "fc00:97::2", 64)}
AF = {4: socket.AF_INET, 6: socket.AF_INET6}
Op = Callable[[], None]


def _pair(net: VNet, family: int) -> tuple[Any, Any]:
    a, b = net.kernel(1), net.kernel(2)
    a_addr, b_addr, plen = ADDRS[family]
    for k, addr in ((a, a_addr), (b, b_addr)):
        if family == 6:
            k.inet6.add_address(net.attach(k, "wire0", "pkt6", None), in6.pton(addr), plen)
        else:
            net.attach(k, "wire0", "pkt6", f"{addr}/{plen}")
    net.sched.run_for(3)             # DAD done
    return a, b


def _recv(k: Any, fd: int, net: VNet) -> bytes:
    """One datagram (the virtual clock runs until it is there, bounded)."""
    for _ in range(100):
        try:
            data: bytes = k.rump_sys_recvfrom(fd, 2048, socket.MSG_DONTWAIT)[0]
            return data
        except BlockingIOError:
            net.sched.run_for(0.001)
    raise TimeoutError("no datagram")


def udp_rr(net: VNet, family: int) -> Op:
    a, b = _pair(net, family)
    _, b_addr, _ = ADDRS[family]
    srv = b.rump_sys_socket(AF[family], socket.SOCK_DGRAM, 0)
    b.rump_sys_bind(srv, ("::" if family == 6 else "0.0.0.0", 7))
    cli = a.rump_sys_socket(AF[family], socket.SOCK_DGRAM, 0)
    a.rump_sys_connect(cli, (b_addr, 7))
    payload = bytes(64)

    def op() -> None:
        a.rump_sys_send(cli, payload, 0)
        data, peer = b.rump_sys_recvfrom(srv, 2048, 0)
        b.rump_sys_sendto(srv, data, 0, peer)
        if len(_recv(a, cli, net)) != 64:
            raise AssertionError("short echo")

    return op


def tcp_cc(net: VNet, family: int) -> Op:
    a, b = _pair(net, family)
    _, b_addr, _ = ADDRS[family]
    lfd = b.rump_sys_socket(AF[family], socket.SOCK_STREAM, 0)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    b.rump_sys_bind(lfd, ("::" if family == 6 else "0.0.0.0", 80))
    b.rump_sys_listen(lfd, 16)

    def op() -> None:
        c = a.rump_sys_socket(AF[family], socket.SOCK_STREAM, 0)
        a.rump_sys_connect(c, (b_addr, 80))
        s, _ = b.rump_sys_accept(lfd)
        a.rump_sys_close(c)
        b.rump_sys_close(s)
        net.sched.run_for(0.01)

    return op


_ECHO = {4: (8, 0, socket.IPPROTO_ICMP), 6: (128, 129, socket.IPPROTO_ICMPV6)}


def ping(net: VNet, family: int) -> Op:
    a, _ = _pair(net, family)
    _, b_addr, _ = ADDRS[family]
    req, _, proto = _ECHO[family]
    fd = a.rump_sys_socket(AF[family], socket.SOCK_RAW, proto)
    seq = [0]

    def op() -> None:
        seq[0] = (seq[0] + 1) & 0xFFFF
        body = struct.pack("!BBHHH", req, 0, 0, 0x1234, seq[0]) + bytes(56)
        if family == 4:
            c = _cksum(body)
            body = body[:2] + struct.pack("!H", c) + body[4:]
        a.rump_sys_sendto(fd, body, 0, (b_addr, 0))
        for _ in range(4):      # our own request may come back first on a raw socket
            got = _recv(a, fd, net)
            off = (got[0] & 0xF) * 4 if family == 4 else 0
            if got[off] in (0, 129):
                return
        raise AssertionError("no echo reply")

    return op


def _cksum(data: bytes) -> int:
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


WORKLOADS: dict[str, Callable[[VNet, int], Op]] = {"udp_rr": udp_rr, "tcp_cc": tcp_cc, "ping": ping}


def _timed(op: Op, count: int) -> float:
    """CPU seconds per call of ``op`` (the collector held off: its pauses are not the
    workload's and land on whichever family runs when they fall due)."""
    gc.collect()
    gc.disable()
    try:
        c0 = time.process_time()
        for _ in range(count):
            op()
        return (time.process_time() - c0) / count
    finally:
        gc.enable()


def measure(name: str, count: int, rounds: int) -> dict[str, float]:
    """CPU microseconds per operation over IPv4 and IPv6, best of ``rounds``; the two
    families take turns, round by round, so a neighbour's load falls on both."""
    nets = {4: VNet(virtual=True), 6: VNet(virtual=True)}
    try:
        ops = {fam: WORKLOADS[name](net, fam) for fam, net in nets.items()}
        best = {4: float("inf"), 6: float("inf")}
        for op in ops.values():
            for _ in range(min(count, 50)):
                op()                # warm: caches filled, neighbours resolved
        for _ in range(rounds):
            for fam, op in ops.items():
                best[fam] = min(best[fam], _timed(op, count))
        return {"ip4_us": round(best[4] * 1e6, 1), "ip6_us": round(best[6] * 1e6, 1),
                "ip6_per_ip4_cost": round(best[6] / best[4], 3)}
    finally:
        for net in nets.values():
            net.close()


def profile(name: str, family: int, count: int) -> None:
    net = VNet(virtual=True)
    try:
        op = WORKLOADS[name](net, family)
        for _ in range(50):
            op()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(count):
            op()
        pr.disable()
        st = pstats.Stats(pr)
        st.sort_stats("tottime").print_stats(30)
    finally:
        net.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", default=",".join(WORKLOADS), help="workloads, comma-separated")
    ap.add_argument("--profile", choices=sorted(WORKLOADS))
    ap.add_argument("--one", choices=sorted(WORKLOADS), help="run only this workload, --count times after a warm-up")
    ap.add_argument("--family", type=int, choices=(4, 6), default=6)
    args = ap.parse_args()
    if args.count < 0 or args.rounds < 1 or (args.count == 0 and not args.one):
        ap.error("--count must be at least 1 (0 only with --one) and --rounds at least 1")
    names = [n for n in args.only.split(",") if n]
    bad = [n for n in names if n not in WORKLOADS]
    if bad:
        ap.error(f"unknown workload {bad[0]!r}; valid: {', '.join(WORKLOADS)}")
    if args.profile:
        profile(args.profile, args.family, args.count)
        return
    if args.one:
        # For an instruction count (valgrind --tool=cachegrind): one family's workload,
        # warmed, then --count operations; the difference of two counts is the cost.
        net = VNet(virtual=True)
        try:
            op = WORKLOADS[args.one](net, args.family)
            for _ in range(50 + args.count):
                op()
        finally:
            net.close()
        return
    out: dict[str, Any] = {}
    for name in names:
        out[name] = measure(name, args.count, args.rounds)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
