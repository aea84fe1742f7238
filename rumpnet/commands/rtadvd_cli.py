"""``rump.rtadvd``: rtadvd(8) as a daemon of the rump_server at ``$RUMP_SERVER``.

``rump.rtadvd [-DdfRs] [-c configfile] [-M ifname] [-p pidfile] interface ...`` starts
the advertising in the server (the in-kernel ``rtadvd`` command,
:mod:`rumpnet.commands.rtadvd`, reading ``configfile`` from the host), writes its pid to
``pidfile`` (default ``/var/run/rtadvd.pid``) and, unless ``-f``, goes to the
background, the parent exiting 0 once the advertising runs (1 with rtadvd's message if
it could not start). The daemon holds its connection: SIGTERM (or SIGINT) sends the
final advertisements with router lifetime 0 (``rtadvd -t``), removes the pidfile and
exits; SIGKILL drops the connection, and the server stops advertising at once, as when
NetBSD's rtadvd is killed. The daemon also ends, removing its pidfile, when the server
goes away.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

from rumpnet.commands.rtadvd import OPTSTRING, USAGE
from rumpnet.usage import EXIT_USAGE, BadOption, getopt_bsd, help_or_version

PROG = "rump.rtadvd"
DEFAULT_PIDFILE = "/var/run/rtadvd.pid"


class _Terminate(Exception):
    pass


def _on_term(signum: int, frame: Any) -> None:
    raise _Terminate


def main(argv: list[str] | None = None) -> int:
    """``rump.rtadvd``'s entry point (see the module docstring)."""
    args = sys.argv[1:] if argv is None else list(argv)
    usage = USAGE.replace("usage: rtadvd", f"usage: {PROG}")
    status = help_or_version(PROG, args, usage)
    if status is not None:
        return status
    try:
        opts, names = getopt_bsd(args, OPTSTRING, PROG)
    except BadOption as e:
        sys.stderr.write(f"{e}\n{usage}\n")
        return EXIT_USAGE
    letters = dict(opts)
    from rumpnet.rumpclient import RumpClient

    try:  # the server first, as the other rump.* tools (and before going to the background)
        RumpClient(retry=0, comm="rtadvd").close()
    except OSError as e:
        print(f"{PROG}: rumpclient init failed: {e.strerror or e}", file=sys.stderr)
        return 1
    if not names or "t" in letters:
        sys.stderr.write(usage + "\n")
        return EXIT_USAGE
    pidfile = os.path.abspath(letters.get("p", DEFAULT_PIDFILE))
    # The server reads the configuration from the host: give it a path that does not
    # depend on its working directory.
    kernel_args: list[str] = []
    if "c" in letters:
        conf = os.path.abspath(letters["c"])
        if not os.access(conf, os.R_OK):
            print(f"{PROG}: {letters['c']}: cannot read the configuration file", file=sys.stderr)
            return 1
        kernel_args += ["-c", conf]
    kernel_args += names
    if "f" in letters:
        return _daemon(kernel_args, names, pidfile, None)
    r, w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(w)
        with os.fdopen(r, "rb") as f:
            answer = f.read().decode(errors="replace")
        if answer.startswith("ok"):
            return 0
        print(answer or f"{PROG}: the daemon did not start", file=sys.stderr)
        return 1
    os.close(r)
    os.setsid()
    code = 1
    try:
        code = _daemon(kernel_args, names, pidfile, w)
    finally:
        os._exit(code)


def _daemon(kernel_args: list[str], names: list[str], pidfile: str, ready: int | None) -> int:
    from rumpnet.rumpclient import RumpClient

    def report(text: str) -> None:
        if ready is None:
            if text != "ok":
                print(text, file=sys.stderr)
            return
        os.write(ready, text.encode())
        os.close(ready)

    try:
        client = RumpClient(retry=0, comm="rtadvd")
        client.command("rtadvd", *kernel_args)
        with open(pidfile, "w", encoding="ascii") as f:
            f.write(f"{os.getpid()}\n")
    except OSError as e:
        msg = str(e.strerror or e)
        report(f"{PROG}: {msg[len('rtadvd: '):] if msg.startswith('rtadvd: ') else msg}")
        return 1
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    if ready is not None:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.close(devnull)
    report("ok")
    try:
        while client.connected:
            time.sleep(0.2)
    except _Terminate:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            client.command("rtadvd", "-t", *names)
        except OSError:
            pass
    finally:
        try:
            os.unlink(pidfile)
        except OSError:
            pass
        client.close()
    return 0
