"""The Linux side of every tap workload: a plain-socket client run inside the benchmark's
namespace (``ip netns exec NS python bench/client.py WORKLOAD HOST [options]``).

It prints one JSON object on stdout. Every loop is bounded by a count and by
``--max-seconds``; a timeout or a checksum mismatch is reported as ``{"error": ...}``.
Services and ports: see examples/services/services.py (echo 7, chargen 19, sink 5001).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import sys
import time
from typing import Any

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "peers"))
from pattern import BLOCK, CYCLE  # noqa: E402

ECHO, CHARGEN, SINK = 7, 19, 5001


def pattern_sha(n: int) -> str:
    h = hashlib.sha256()
    off = 0
    while off < n:
        take = min(n - off, 256 * 1024)
        st = off % len(CYCLE)
        h.update(BLOCK[st:st + take])
        off += take
    return h.hexdigest()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


IDLE = 20.0  # seconds without progress: the peer stalled


def family(host: str) -> int:
    """The socket family of ``host``: IPv6 rows give an IPv6 address."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def connect(host: str, port: int, timeout: float, congestion: str | None = None) -> socket.socket:
    """A connected TCP socket; ``congestion`` names Linux's congestion control for it
    (TCP_CONGESTION: root may pick any available algorithm, whatever the namespace's
    default or allowed list says)."""
    s = socket.socket(family(host), socket.SOCK_STREAM)
    try:
        s.settimeout(timeout)
        if congestion:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CONGESTION, congestion.encode())
        s.connect((host, port))
    except BaseException:
        s.close()
        raise
    return s


def bulk_in(host: str, size: int, limit: float, congestion: str | None = None) -> dict[str, Any]:
    """Send ``size`` bytes of the pattern to the sink; it answers with count and SHA-256."""
    chunk = 256 * 1024
    t0 = time.perf_counter()
    s = connect(host, SINK, min(limit, IDLE), congestion)
    off = 0
    try:
        while off < size:
            if time.perf_counter() - t0 > limit:
                return {"error": f"timeout after {off} of {size} bytes ({limit:.0f}s)"}
            take = min(chunk, size - off)
            st = off % len(CYCLE)
            s.sendall(BLOCK[st:st + take])
            off += take
        s.shutdown(socket.SHUT_WR)
        reply = b""
        while not reply.endswith(b"\n"):
            d = s.recv(200)
            if not d:
                break
            reply += d
    except TimeoutError:
        return {"error": f"stalled: no progress for {IDLE:.0f}s after sending {off} of {size} bytes"}
    dt = time.perf_counter() - t0
    s.close()
    parts = reply.split()
    want = pattern_sha(size)
    if len(parts) != 2 or int(parts[0]) != size or parts[1].decode() != want:
        return {"error": f"sink answered {reply!r}, want {size} {want}"}
    return {"bytes": size, "seconds": dt, "MBps": size / dt / 1e6, "sha256": want, "verified": True}


def bulk_out(host: str, size: int, limit: float, congestion: str | None = None) -> dict[str, Any]:
    """Ask chargen for ``size`` bytes; read to EOF; check SHA-256."""
    t0 = time.perf_counter()
    s = connect(host, CHARGEN, min(limit, IDLE), congestion)
    s.sendall(f"{size}\n".encode())
    h = hashlib.sha256()
    n = 0
    buf = bytearray(1 << 20)
    while True:
        if time.perf_counter() - t0 > limit:
            return {"error": f"timeout after {n} of {size} bytes ({limit:.0f}s)"}
        try:
            k = s.recv_into(buf)
        except TimeoutError:
            return {"error": f"stalled: no data for {IDLE:.0f}s after receiving {n} of {size} bytes"}
        if not k:
            break
        h.update(memoryview(buf)[:k])
        n += k
    dt = time.perf_counter() - t0
    s.close()
    want = pattern_sha(size)
    if n != size or h.hexdigest() != want:
        return {"error": f"got {n} bytes sha {h.hexdigest()}, want {size} {want}"}
    return {"bytes": size, "seconds": dt, "MBps": size / dt / 1e6, "sha256": want, "verified": True}


def tcp_rtt(host: str, count: int, size: int, limit: float) -> dict[str, Any]:
    s = socket.create_connection((host, ECHO), timeout=5)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    msg = b"x" * size
    rtts: list[float] = []
    t_end = time.perf_counter() + limit
    for _ in range(count):
        t = time.perf_counter()
        if t > t_end:
            break
        s.sendall(msg)
        got = 0
        while got < size:
            d = s.recv(size - got)
            if not d:
                return {"error": "echo closed"}
            got += len(d)
        rtts.append(time.perf_counter() - t)
    s.close()
    return _rtt_summary(rtts, count)


def _rtt_summary(rtts: list[float], count: int, lost: int = 0) -> dict[str, Any]:
    if not rtts:
        return {"error": "no round trips completed"}
    return {"n": len(rtts), "asked": count, "lost": lost, "median_us": statistics.median(rtts) * 1e6,
            "p99_us": pct(rtts, 99) * 1e6, "mean_us": statistics.fmean(rtts) * 1e6, "min_us": min(rtts) * 1e6}


def tcp_cps(host: str, count: int, limit: float) -> dict[str, Any]:
    """connect, 16-byte echo, close; as many as possible up to ``count`` or ``limit``."""
    msg = b"c" * 16
    n = fails = 0
    t0 = time.perf_counter()
    while n < count and time.perf_counter() - t0 < limit:
        try:
            s = socket.create_connection((host, ECHO), timeout=3)
            s.sendall(msg)
            got = 0
            while got < 16:
                d = s.recv(16)
                if not d:
                    break
                got += len(d)
            s.close()
            n += 1
        except OSError:
            fails += 1
            if fails > 20:
                break
    dt = time.perf_counter() - t0
    if not n:
        return {"error": f"no connection completed ({fails} failures)"}
    return {"connections": n, "failures": fails, "seconds": dt, "per_s": n / dt}


def udp_rtt(host: str, count: int, size: int, limit: float) -> dict[str, Any]:
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, ECHO))
    s.settimeout(0.5)
    rtts: list[float] = []
    lost = 0
    t_end = time.perf_counter() + limit
    for i in range(count):
        if time.perf_counter() > t_end:
            break
        msg = i.to_bytes(4, "big") + b"u" * (size - 4)
        t = time.perf_counter()
        s.send(msg)
        try:
            while True:
                d = s.recv(65535)
                if d[:4] == msg[:4]:
                    break
            rtts.append(time.perf_counter() - t)
        except TimeoutError:
            lost += 1
    return _rtt_summary(rtts, count, lost)


def udp_rate(host: str, seconds: float, window: int, size: int) -> dict[str, Any]:
    """Keep ``window`` datagrams in flight for ``seconds``: echoed datagrams per second."""
    s = socket.socket(family(host), socket.SOCK_DGRAM)
    s.connect((host, ECHO))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.settimeout(0.2)
    msg = b"r" * size
    sent = got = 0
    t0 = time.perf_counter()
    t_end = t0 + seconds
    for _ in range(window):
        s.send(msg)
        sent += 1
    while time.perf_counter() < t_end:
        try:
            s.recv(65535)
            got += 1
            s.send(msg)
            sent += 1
        except TimeoutError:  # the window drained (losses): refill it
            for _ in range(window):
                s.send(msg)
                sent += 1
    dt = time.perf_counter() - t0
    return {"sent": sent, "echoed": got, "seconds": dt, "per_s": got / dt, "size": size, "window": window,
            "loss_pct": 100.0 * max(0, sent - got - window) / max(1, sent)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["bulk_in", "bulk_out", "tcp_rtt", "tcp_cps", "udp_rtt", "udp_rate"])
    ap.add_argument("host")
    ap.add_argument("--size", type=int, default=20_000_000)
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--msg", type=int, default=64)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--congestion", help="Linux congestion control for the bulk connection (TCP_CONGESTION)")
    ap.add_argument("--port-offset", type=int, default=0, help="the server's ports are shifted by this")
    a = ap.parse_args()
    global ECHO, CHARGEN, SINK
    ECHO, CHARGEN, SINK = ECHO + a.port_offset, CHARGEN + a.port_offset, SINK + a.port_offset
    try:
        if a.workload == "bulk_in":
            r = bulk_in(a.host, a.size, a.max_seconds, a.congestion)
        elif a.workload == "bulk_out":
            r = bulk_out(a.host, a.size, a.max_seconds, a.congestion)
        elif a.workload == "tcp_rtt":
            r = tcp_rtt(a.host, a.count, a.msg, a.max_seconds)
        elif a.workload == "tcp_cps":
            r = tcp_cps(a.host, a.count, a.max_seconds)
        elif a.workload == "udp_rtt":
            r = udp_rtt(a.host, a.count, a.msg, a.max_seconds)
        else:
            r = udp_rate(a.host, min(a.seconds, a.max_seconds), a.window, a.msg)
    except (OSError, ValueError) as e:
        r = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
