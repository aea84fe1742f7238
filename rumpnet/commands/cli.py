"""``rump.ifconfig``, ``rump.route``, ``rump.arp``, ``rump.sysctl``, ``rump.netstat``,
``rump.ping``, ``rump.ping6``, ``rump.ndp``, ``rump.tc`` and ``rump.halt``: the commands run against the rump_server at
``$RUMP_SERVER`` (rump_sp(7)).

Each tool is run inside the server (a ``command`` request, see docs/RUMP_SP.md) and its
output printed; exit status 0 on success, 1 with ``rump.NAME: message`` on stderr when the
tool fails, 2 with the usage text for bad usage (ping: 2 when no reply came back).
"""

from __future__ import annotations

import sys
from typing import Any


def _message(prog: str, name: str, e: OSError) -> str:
    msg = str(e.strerror if e.strerror is not None else e)
    if msg.startswith(f"{name}: "):
        msg = msg[len(name) + 2:]
    return f"{prog}: {msg}"


def _run(name: str, argv: list[str] | None = None) -> int:
    from rumpnet.commands import PingFailed, UsageError
    from rumpnet.rumpclient import RumpClient

    args = sys.argv[1:] if argv is None else argv
    prog = f"rump.{name}"
    try:
        client = RumpClient()
    except OSError as e:
        print(f"{prog}: rumpclient init failed: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        out: Any = client.command(name, *args)
    except UsageError as e:
        usage = str(e.strerror or "")
        sys.stderr.write(usage if usage.endswith("\n") else usage + "\n")
        return 2
    except PingFailed as e:
        if e.output:
            _write_output(name, e.output)
        else:
            print(_message(prog, name, e), file=sys.stderr)
        return int(e.exit_status)
    except OSError as e:
        print(_message(prog, name, e), file=sys.stderr)
        return 1
    finally:
        client.close()
    if out:
        _write_output(name, str(out))
    return 0


def _write_output(name: str, text: str) -> None:
    """The tool's output on stdout; ping's warnings ("ping: sendto: No route to host",
    NetBSD's warn(3)) on stderr as NetBSD's ping prints them (t_route.sh matches them
    there). Before this fix they went to stdout with the rest."""
    if not text.endswith("\n"):
        text += "\n"
    if name in ("ping", "ping6"):
        lines = text.splitlines(keepends=True)
        warn = "".join(ln for ln in lines if ln.startswith(f"{name}: "))
        text = "".join(ln for ln in lines if not ln.startswith(f"{name}: "))
        if warn:
            sys.stdout.flush()
            sys.stderr.write(warn)
            sys.stderr.flush()
    sys.stdout.write(text)
    sys.stdout.flush()


def ifconfig_main(argv: list[str] | None = None) -> int:
    return _run("ifconfig", argv)


def route_main(argv: list[str] | None = None) -> int:
    return _run("route", argv)


def arp_main(argv: list[str] | None = None) -> int:
    return _run("arp", argv)


def sysctl_main(argv: list[str] | None = None) -> int:
    return _run("sysctl", argv)


def netstat_main(argv: list[str] | None = None) -> int:
    return _run("netstat", argv)


def ping_main(argv: list[str] | None = None) -> int:
    return _run("ping", argv)


def ping6_main(argv: list[str] | None = None) -> int:
    return _run("ping6", argv)


def ndp_main(argv: list[str] | None = None) -> int:
    return _run("ndp", argv)


def tc_main(argv: list[str] | None = None) -> int:
    return _run("tc", argv)


def halt_main(argv: list[str] | None = None) -> int:
    """``rump.halt [-dhnp]``: stop the server (the flags are accepted and ignored)."""
    from rumpnet.rumpclient import RumpClient

    args = sys.argv[1:] if argv is None else argv
    for a in args:
        if not (a.startswith("-") and len(a) > 1 and set(a[1:]) <= set("dhnp")):
            sys.stderr.write("usage: rump.halt [-dhnp]\n")
            return 2
    try:
        client = RumpClient()
        client.halt()
    except OSError as e:
        print(f"rump.halt: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0
