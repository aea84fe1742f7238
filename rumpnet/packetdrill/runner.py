"""Run one packetdrill script against a fresh kernel, and many of them in parallel.

packetdrill runs as its own (unmodified) process with ``librumpdrill.so`` preloaded and
as its ``--so_filename``; this process serves the session (:func:`serve.serve`) on two
socketpairs whose other ends packetdrill inherits.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rumpnet.packetdrill.build import Toolchain, toolchain
from rumpnet.packetdrill.nplab import adapt
from rumpnet.packetdrill.preprocess import DEFAULT_DEFINES, ScriptSyntaxError, has_conditionals, preprocess
from rumpnet.packetdrill.profiles import packetdrill_defines
from rumpnet.packetdrill.serve import serve
from rumpnet.packetdrill.tools import IGNORED_MARK

# Addresses of the two ends, per IP version (packetdrill's remote defaults; a fixed
# local address, where packetdrill would draw a random one).
ADDRESSES = {
    "ipv4": ("192.168.0.2", "192.0.2.1"),
    "ipv6": ("fd3d:fa7b:d17d::2", "2001:db8::1"),
}
DEFAULT_TIMEOUT = 120.0
_IP_VERSION = re.compile(r"^\s*--ip_version\s*=\s*(\S+)", re.M)
_IGNORED = re.compile(re.escape(IGNORED_MARK) + r" ([^=\s]+)=")


@dataclass
class Result:
    path: str
    passed: bool
    error: str = ""                     # packetdrill's first error line, if it failed
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    ignored_sysctls: set[str] = field(default_factory=set)

    @property
    def line(self) -> str:
        return f"PASS {self.path}" if self.passed else f"FAIL {self.path}: {self.error}"


def ip_version(path: Path) -> str:
    """The script's ``--ip_version`` (packetdrill's default: ipv4)."""
    m = _IP_VERSION.search(path.read_text(errors="replace"))
    return m.group(1) if m else "ipv4"


def packetdrill_command(tc: Toolchain, path: Path, fds: tuple[int, int], profile: str,
                        verbose: bool = False) -> list[str]:
    """``path`` is the script packetdrill reads (conditionals already evaluated)."""
    version = "ipv6" if ip_version(path) == "ipv6" else "ipv4"
    local, remote = ADDRESSES[version]
    # The session's tun0 holds both families' local addresses; a script's own family's
    # pair is the one it is given (its --so_flags key: local/remote or local6/remote6).
    suffix = "6" if version == "ipv6" else ""
    flags = f"fd={fds[0]},cfd={fds[1]},local{suffix}={local},remote{suffix}={remote},profile={profile}"
    cmd = [str(tc.packetdrill), f"--so_filename={tc.shim}", f"--so_flags={flags}",
           f"--local_ip={local}", f"--remote_ip={remote}",
           f"--code_command={sys.executable} -m rumpnet.packetdrill.code"]
    cmd += [f"--define={sym}={value}" for sym, value in packetdrill_defines(profile).items()]
    if verbose:
        cmd.append("--verbose")
    return cmd + [str(path)]


def first_error(stderr: str, returncode: int) -> str:
    for line in stderr.splitlines():
        if line.strip() and not line.startswith(IGNORED_MARK):
            return line.strip()
    return f"packetdrill exited with status {returncode}"


def run_script(path: str | Path, tc: Toolchain | None = None, profile: str = "freebsd",
               verbose: bool = False, timeout: float = DEFAULT_TIMEOUT,
               defines: frozenset[str] = DEFAULT_DEFINES) -> Result:
    """Run one script; its result (never raises for a failing script). ``defines`` are
    the symbols its ``#ifdef`` blocks see (:mod:`.preprocess`)."""
    tc = tc or toolchain()
    p = Path(path)
    start = time.monotonic()
    text = p.read_text(errors="replace")
    try:
        evaluated = for_google_packetdrill(text, defines, str(path))
    except ScriptSyntaxError as e:
        return Result(str(path), False, str(e), seconds=time.monotonic() - start)
    if evaluated == text:
        return _finish(path, start, timeout, *_run_packetdrill(tc, p, profile, verbose, timeout))
    with tempfile.TemporaryDirectory(prefix="rumpdrill-") as tmp:
        # Same file name, so packetdrill's messages name the script; its path is then
        # put back in front of them.
        copy = Path(tmp) / p.name
        copy.write_text(evaluated)
        outcome = _run_packetdrill(tc, copy, profile, verbose, timeout)
    rc, expired, session_error, stdout, stderr = outcome
    return _finish(path, start, timeout, rc, expired, session_error,
                   stdout.replace(str(copy), str(path)), stderr.replace(str(copy), str(path)))


def for_google_packetdrill(text: str, defines: frozenset[str] = DEFAULT_DEFINES,
                           path: str = "<script>") -> str:
    """The script as Google's packetdrill is to read it: the nplab fork's ``#ifdef``
    blocks evaluated (:mod:`.preprocess`), then its ways with sockets that are only
    bound and with ``!`` given to packetdrill (:mod:`.nplab`); line for line the same
    line numbers. ScriptSyntaxError when that cannot be done."""
    if has_conditionals(text):
        text = preprocess(text, defines, path)
    return adapt(text, path)


def _finish(path: str | Path, start: float, timeout: float, rc: int, expired: bool,
            session_error: str | None, stdout: str, stderr: str) -> Result:
    passed = rc == 0 and not expired
    if passed:
        error = ""
    elif expired:
        error = f"timed out after {timeout:g} s of real time"
    elif stderr.strip() or not session_error:
        error = first_error(stderr, rc)
    else:
        error = session_error.splitlines()[0]
    return Result(str(path), passed, error, stdout, stderr, time.monotonic() - start,
                  set(_IGNORED.findall(stderr)))


def _run_packetdrill(tc: Toolchain, p: Path, profile: str, verbose: bool,
                     timeout: float) -> tuple[int, bool, str | None, str, str]:
    """packetdrill on ``p`` against a session served here: its exit status, whether the
    watchdog killed it, the session's error, its stdout and stderr."""
    req_ours, req_theirs = socket.socketpair()
    done_ours, done_theirs = socket.socketpair()
    env = dict(os.environ, LD_PRELOAD=str(tc.shim))
    cmd = packetdrill_command(tc, p, (req_theirs.fileno(), done_theirs.fileno()), profile, verbose)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, pass_fds=(req_theirs.fileno(), done_theirs.fileno()), env=env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, start_new_session=True)
        req_theirs.close()
        done_theirs.close()
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            _kill(proc)

        watchdog = threading.Timer(timeout, expire)
        watchdog.start()
        try:
            session_error = serve(req_ours.fileno(), done_ours.fileno())
            req_ours.close()
            done_ours.close()
            rc = proc.wait()
        finally:
            watchdog.cancel()
            _kill(proc)
            req_ours.close()
            done_ours.close()
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return rc, expired.is_set(), session_error, stdout, stderr


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _worker_main() -> None:
    """A worker process (``python -m rumpnet.packetdrill.runner WORKFILE``): the scripts
    in WORKFILE as JSON lines (``[index, path, profile, verbose, timeout, defines]``), one
    JSON result per line on stdout, in that order."""
    results, sys.stdout = sys.stdout, sys.stderr  # anything else printed goes to stderr
    tc = toolchain()
    for line in Path(sys.argv[1]).read_text().splitlines():
        index, path, profile, verbose, timeout, defines = json.loads(line)
        r = run_script(path, tc, profile, verbose, timeout, frozenset(defines))
        d = asdict(r)
        d["ignored_sysctls"] = sorted(r.ignored_sysctls)
        results.write(json.dumps([index, d]) + "\n")
        results.flush()


def run_scripts(paths: Iterable[str | Path], profile: str = "freebsd", jobs: int = 1,
                verbose: bool = False, timeout: float = DEFAULT_TIMEOUT,
                defines: frozenset[str] = DEFAULT_DEFINES) -> Iterator[Result]:
    """Results in the order of ``paths``; ``jobs`` > 1 runs that many at once in worker
    processes (the sessions are Python: threads would share one interpreter lock)."""
    work = [(str(p), profile, verbose, timeout, defines) for p in paths]
    if jobs <= 1 or len(work) <= 1:
        tc = toolchain()
        for path, *_ in work:
            yield run_script(path, tc, profile, verbose, timeout, defines)
        return
    toolchain()  # build once, before the workers race for it
    yield from _run_in_workers(work, jobs)


def _run_in_workers(work: list[tuple[str, str, bool, float, frozenset[str]]], jobs: int) -> Iterator[Result]:
    """``jobs`` worker processes (plain subprocesses, not a ProcessPoolExecutor: its
    management thread and pipes live in the caller's process, and under pytest a close
    race there closed an fd number a second time, by then a scheduler's epoll), each
    given every jobs-th script; results yielded in the order of ``work`` as they come."""
    nprocs = min(jobs, len(work))
    with tempfile.TemporaryDirectory(prefix="rump-packetdrill-") as tmp:
        files = [Path(tmp) / f"work{n}.jsonl" for n in range(nprocs)]
        for n, f in enumerate(files):
            f.write_text("".join(json.dumps([i, w[0], w[1], w[2], w[3], sorted(w[4])]) + "\n"
                                 for i, w in enumerate(work) if i % nprocs == n))
        procs = [subprocess.Popen([sys.executable, "-m", "rumpnet.packetdrill.runner", str(f)],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True) for f in files]
        yield from _collect(procs, work)


def _collect(procs: list[subprocess.Popen[str]], work: list[tuple[str, str, bool, float, frozenset[str]]]) -> Iterator[Result]:
    try:
        done: dict[int, Result] = {}
        for i in range(len(work)):
            while i not in done:
                out = procs[i % len(procs)].stdout
                assert out is not None
                line = out.readline()
                if not line:
                    raise RuntimeError(f"a packetdrill worker ended before {work[i][0]}")
                index, d = json.loads(line)
                d["ignored_sysctls"] = set(d["ignored_sysctls"])
                done[index] = Result(**d)
            yield done.pop(i)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stdout is not None:
                p.stdout.close()


if __name__ == "__main__":
    _worker_main()
