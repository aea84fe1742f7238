"""Micro-benchmark: round-trip time of remote system calls (rump_server + RumpClient, issue 7).

A real ``rump_server`` process (``python -m rumpnet.server.rump_server -s -l rumpnet
-l rumpnet_netinet URL``) serves a kernel; a :class:`~rumpnet.rumpclient.RumpClient` in
this process makes N cheap calls one after another, each timed on its own:

* ``null``: the protocol's ``getpid`` request (no kernel work: the transport's cost);
  in-process, the same thing is a system call that returns ``curproc.pid``
  (``k.sched.syscall``, the path every ``k.rump_sys_*`` takes);
* ``sysctl``: ``rump_sys___sysctl("kern.hostname")``;
* ``socket_close``: ``rump_sys_socket(AF_INET, SOCK_DGRAM)`` then ``rump_sys_close`` (one
  pair = two calls, timed together).

The same calls run in the same run on kernels in this process, two ways: ``inproc``
(the calling thread drives the scheduler itself: the plain-pytest case) and
``inproc_bg`` (the kernel serves in a background thread, ``k.serve_background()``, and
each call is handed over to it). Remote calls run over a unix socket and over TCP on
127.0.0.1. Figures: median and p99 in microseconds per call (per pair for socket_close),
and remote/in-process ratios.

    python -m bench.micro_rsp [--quick] [--json FILE]

The server is started with PR_SET_PDEATHSIG, so it goes when this process goes even if
killed; it is stopped with SIGTERM (then SIGKILL) in ``finally`` and on SIGINT/SIGTERM.
Its log and socket live in ``$TMPDIR/rbmr-PID-*``, removed at exit (and by the next
run if this one was killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from bench.common import micro_main, signals_raise, time_op

OPS = ("null", "sysctl", "socket_close")
PREFIX = "rbmr"
MAX_WALL_PER_OP = 20.0  # seconds: a measurement loop stops early past this
SERVER_START_TIMEOUT = 20.0


def _log(msg: str) -> None:
    print(f"[micro_rsp] {msg}", file=sys.stderr, flush=True)




def _pdeathsig() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 -- only a safety net
        pass


def _ops(target: Any, null: Callable[[], Any]) -> dict[str, Callable[[], Any]]:
    def sysctl() -> Any:
        return target.rump_sys___sysctl("kern.hostname")

    def socket_close() -> None:
        fd = target.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
        target.rump_sys_close(fd)

    return {"null": null, "sysctl": sysctl, "socket_close": socket_close}


def _inproc_null(k: Any) -> Callable[[], Any]:
    def getpid(_ctx: Any, p: Any) -> int:
        return int(p.pid)

    sc = k.sched.syscall
    return lambda: sc(getpid, k.curproc)


def _measure_inproc(n: int, warmup: int, background: bool) -> dict[str, dict[str, float]]:
    from rumpkern import rump_init
    from rumpkern.sched import Scheduler

    sched = Scheduler(virtual=False)
    k = rump_init(hostname="bench", scheduler=sched)
    try:
        if background:
            k.serve_background()
        res = {}
        for name, fn in _ops(k, _inproc_null(k)).items():
            res[name] = time_op(fn, n, warmup, MAX_WALL_PER_OP)
        return res
    finally:
        try:
            k.stop_background()
            k.halt()
        finally:
            with contextlib.suppress(Exception):
                sched.loop.close()


def _start_server(url: str, logf: Any) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "rumpnet.server.rump_server", "-s", "-l", "rumpnet", "-l", "rumpnet_netinet", url]
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, start_new_session=True,
                            preexec_fn=_pdeathsig)


def _stop_server(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(5)


def _connect(url: str, p: subprocess.Popen[bytes], logpath: str) -> Any:
    from rumpnet.rumpclient import RumpClient

    deadline = time.monotonic() + SERVER_START_TIMEOUT
    last: Exception | None = None
    while time.monotonic() < deadline:
        if p.poll() is not None:
            with open(logpath, errors="replace") as f:
                raise RuntimeError(f"rump_server exited with {p.returncode}: {f.read()[-2000:]}")
        try:
            return RumpClient(url, retry=0, comm="micro_rsp")
        except OSError as e:
            last = e
            time.sleep(0.05)
    raise RuntimeError(f"rump_server at {url} did not answer in {SERVER_START_TIMEOUT:.0f} s: {last}")


def _cleanup_stale_dirs() -> None:
    """Remove the temporary directories (server logs) of runs killed with SIGKILL."""
    import re
    import shutil

    from rumpnet.testing.netns import pid_alive

    pat = re.compile(rf"^{PREFIX}-(\d+)-")
    tmpdir = tempfile.gettempdir()
    for name in os.listdir(tmpdir):
        m = pat.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(os.path.join(tmpdir, name), ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _measure_remote(url: str, tmp: str, n: int, warmup: int) -> dict[str, dict[str, float]]:
    logpath = os.path.join(tmp, f"server-{len(os.listdir(tmp))}.log")
    with open(logpath, "wb") as logf:
        p = _start_server(url, logf)
    client = None
    try:
        client = _connect(url, p, logpath)
        cl = client
        res = {}
        for name, fn in _ops(cl, lambda: cl.call("getpid")).items():
            res[name] = time_op(fn, n, warmup, MAX_WALL_PER_OP)
        return res
    finally:
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        _stop_server(p)


def run(quick: bool = False) -> dict[str, Any]:
    """Median/p99 µs per call: remote (unix, tcp) and in-process (direct, background thread)."""
    n = 300 if quick else 5000
    warmup = 20 if quick else 200
    results: dict[str, dict[str, dict[str, float]]] = {}
    with signals_raise():
        _cleanup_stale_dirs()
    with signals_raise(), tempfile.TemporaryDirectory(prefix=f"{PREFIX}-{os.getpid()}-") as tmp:
        _log(f"in-process, direct: {n} calls per op")
        results["inproc"] = _measure_inproc(n, warmup, background=False)
        _log(f"in-process, background thread: {n} calls per op")
        results["inproc_bg"] = _measure_inproc(n, warmup, background=True)
        url = f"unix://{os.path.join(tmp, 'rsp.sock')}"
        _log(f"remote over {url}: {n} calls per op")
        results["remote_unix"] = _measure_remote(url, tmp, n, warmup)
        url = f"tcp://127.0.0.1:{_free_port()}/"
        _log(f"remote over {url}: {n} calls per op")
        results["remote_tcp"] = _measure_remote(url, tmp, n, warmup)
    for where, ops in results.items():
        for op, r in ops.items():
            _log(f"{where:12s} {op:13s} median {r['median_us']:9.1f} us  p99 {r['p99_us']:9.1f} us")
    figures: dict[str, dict[str, Any]] = {}
    what_op = {"null": "null call (getpid)", "sysctl": "sysctl kern.hostname",
               "socket_close": "socket+close pair"}
    what_where = {"inproc": "in-process, caller drives the scheduler",
                  "inproc_bg": "in-process, kernel in a background thread",
                  "remote_unix": "RumpClient -> rump_server process, unix socket",
                  "remote_tcp": "RumpClient -> rump_server process, TCP 127.0.0.1"}
    for where, ops in results.items():
        for op, r in ops.items():
            for stat in ("median", "p99"):
                figures[f"{where}_{op}_{stat}"] = {"value": r[f"{stat}_us"], "unit": "us",
                                                   "what": f"{what_op[op]}, {stat}, {what_where[where]}"}
    for op in OPS:
        for remote in ("remote_unix", "remote_tcp"):
            for base in ("inproc", "inproc_bg"):
                figures[f"ratio_{remote}_vs_{base}_{op}"] = {
                    "value": results[remote][op]["median_us"] / results[base][op]["median_us"], "unit": "x",
                    "what": f"median {what_op[op]}: {remote} / {base}"}
    return {
        "benchmark": "micro_rsp",
        "quick": quick,
        "figures": figures,
        "meta": {"calls_per_op": n, "warmup": warmup, "python": platform.python_version(),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "runs": results,
    }


def format_table(res: dict[str, Any]) -> str:
    runs = res["runs"]
    wheres = list(runs)
    lines = [f"{res['benchmark']}{' (quick)' if res.get('quick') else ''}: median / p99, us per call"]
    lines.append(f"  {'op':<14}" + "".join(f"{w:>22}" for w in wheres))
    for op in OPS:
        cells = "".join(f"{runs[w][op]['median_us']:>12.1f} /{runs[w][op]['p99_us']:>8.1f}" for w in wheres)
        lines.append(f"  {op:<14}{cells}")
    lines.append("  ratios (median, remote / in-process):")
    for op in OPS:
        parts = [f"{r}/{b} {res['figures'][f'ratio_{r}_vs_{b}_{op}']['value']:.1f}x"
                 for r in ("remote_unix", "remote_tcp") for b in ("inproc", "inproc_bg")]
        lines.append(f"  {op:<14}  " + ", ".join(parts))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    return micro_main("bench.micro_rsp", __doc__, "few calls", run, format_table, argv)


if __name__ == "__main__":
    sys.exit(main())
