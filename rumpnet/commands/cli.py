"""``rump.ifconfig``, ``rump.route``, ``rump.arp``, ``rump.sysctl``, ``rump.netstat``,
``rump.ping``, ``rump.ping6``, ``rump.ndp``, ``rump.tc`` and ``rump.halt``: the commands run against the rump_server at
``$RUMP_SERVER`` (rump_sp(7)).

Each tool is run inside the server (a ``command`` request, see docs/RUMP_SP.md) and its
output printed; exit status 0 on success, 1 with ``rump.NAME: message`` on stderr when the
tool fails, 2 with the usage text for bad usage (ping: 2 when no reply came back).

``--help`` and ``--version`` answer without a server, and so do bad leading options
(``rump.ifconfig: unknown option -- Z`` and the usage, as NetBSD's getopt(3) says it):
the tool's own option string is checked here before anything is sent. Usage and messages
name the tool as it was invoked (``usage: rump.ifconfig ...``), as NetBSD's tools do with
getprogname().
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from rumpnet.usage import EXIT_USAGE, BadOption, getopt_bsd, help_or_version

# Where each tool's USAGE and OPTSTRING live (the in-kernel command's own module).
_MODULES = {
    "ifconfig": "rumpnet.commands.ifconfig", "route": "rumpnet.commands.route", "arp": "rumpnet.commands.arp",
    "sysctl": "rumpkern.sysctl_cmd", "netstat": "rumpnet.commands.netstat", "ping": "rumpnet.commands.ping",
    "ping6": "rumpnet.commands.ping6", "ndp": "rumpnet.commands.ndp", "tc": "rumpnet.faults.tc",
}
_TC_HELP = ("help", "-help", "-h", "-?")  # iproute2's spellings of help
HALT_USAGE = "usage: rump.halt [-dhnp]"


def as_invoked(text: str, name: str, prog: str) -> str:
    """The tool's text with its name as invoked: ``usage: ifconfig`` -> ``usage:
    rump.ifconfig``, continuation lines and ``ifconfig: message`` lines alike."""
    out = []
    for line in text.split("\n"):
        stripped = line.lstrip(" \t")
        indent = line[:len(line) - len(stripped)]
        for head in ("usage: ", "Usage: "):
            if stripped.startswith(head + name + " ") or stripped == head + name:
                stripped = head + prog + stripped[len(head) + len(name):]
                break
        else:
            if (stripped.startswith(name + " ") and indent) or stripped.startswith(name + ": "):
                stripped = prog + stripped[len(name):]  # "       ifconfig -C" (NetBSD: 7 spaces)
        out.append(indent + stripped)
    return "\n".join(out)


def _usage(name: str, prog: str) -> str:
    return as_invoked(str(importlib.import_module(_MODULES[name]).USAGE), name, prog)


def _local(name: str, prog: str, args: list[str]) -> int | None:
    """Answer --help, --version and bad leading options here; None: ask the server."""
    usage = _usage(name, prog)
    if name == "tc" and args[:1] and args[0] in _TC_HELP:
        args = ["--help"]
    status = help_or_version(prog, args, usage)
    if status is not None:
        return status
    if name == "tc":
        from rumpnet.faults.tc import OPTIONS

        for arg in args:  # iproute2's options are words (-stats), before the object
            if not arg.startswith("-") or len(arg) < 2:
                break
            if arg not in OPTIONS:
                sys.stderr.write(f'{prog}: Option "{arg}" is unknown, try "{prog} -help".\n{usage}\n')
                return EXIT_USAGE
        return None
    try:
        getopt_bsd(args, importlib.import_module(_MODULES[name]).OPTSTRING, prog)
    except BadOption as e:
        sys.stderr.write(f"{e}\n{usage}\n")
        return EXIT_USAGE
    return None


def _message(prog: str, name: str, e: OSError) -> str:
    msg = str(e.strerror if e.strerror is not None else e)
    if msg.startswith(f"{name}: "):
        msg = msg[len(name) + 2:]
    return f"{prog}: {as_invoked(msg, name, prog)}"


def _run(name: str, argv: list[str] | None = None) -> int:
    from rumpnet.commands import PingFailed, UsageError
    from rumpnet.rumpclient import RumpClient

    args = sys.argv[1:] if argv is None else argv
    prog = f"rump.{name}"
    status = _local(name, prog, args)
    if status is not None:
        return status
    try:
        client = RumpClient()
    except OSError as e:
        print(f"{prog}: rumpclient init failed: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        out: Any = client.command(name, *args)
    except UsageError as e:
        usage = as_invoked(str(e.strerror or ""), name, prog)
        sys.stderr.write(usage if usage.endswith("\n") else usage + "\n")
        return EXIT_USAGE
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
        # warn(3) prefixes getprogname(): the tool as invoked
        warn = "".join("rump." + ln for ln in lines if ln.startswith(f"{name}: "))
        text = "".join(ln for ln in lines if not ln.startswith(f"{name}: "))
        if warn:
            sys.stdout.flush()
            sys.stderr.write(warn)
            sys.stderr.flush()
    sys.stdout.write(text)
    sys.stdout.flush()


def ifconfig_main(argv: list[str] | None = None) -> int:
    """``rump.ifconfig``: ifconfig(8) in the server at ``$RUMP_SERVER``."""
    return _run("ifconfig", argv)


def route_main(argv: list[str] | None = None) -> int:
    """``rump.route``: route(8) in the server at ``$RUMP_SERVER``."""
    return _run("route", argv)


def arp_main(argv: list[str] | None = None) -> int:
    """``rump.arp``: arp(8) in the server at ``$RUMP_SERVER``."""
    return _run("arp", argv)


def sysctl_main(argv: list[str] | None = None) -> int:
    """``rump.sysctl``: sysctl(8) in the server at ``$RUMP_SERVER``."""
    return _run("sysctl", argv)


def netstat_main(argv: list[str] | None = None) -> int:
    """``rump.netstat``: netstat(1) in the server at ``$RUMP_SERVER``."""
    return _run("netstat", argv)


def ping_main(argv: list[str] | None = None) -> int:
    """``rump.ping``: ping(8) in the server at ``$RUMP_SERVER``."""
    return _run("ping", argv)


def ping6_main(argv: list[str] | None = None) -> int:
    """``rump.ping6``: ping6(8) in the server at ``$RUMP_SERVER``."""
    return _run("ping6", argv)


def ndp_main(argv: list[str] | None = None) -> int:
    """``rump.ndp``: ndp(8) in the server at ``$RUMP_SERVER``."""
    return _run("ndp", argv)


def tc_main(argv: list[str] | None = None) -> int:
    """``rump.tc``: tc(8)'s netem qdiscs in the server at ``$RUMP_SERVER``."""
    return _run("tc", argv)


def halt_main(argv: list[str] | None = None) -> int:
    """``rump.halt [-dhnp]``: stop the server (the flags are accepted and ignored)."""
    from rumpnet.rumpclient import RumpClient

    prog = "rump.halt"
    args = sys.argv[1:] if argv is None else argv
    status = help_or_version(prog, args, HALT_USAGE)
    if status is not None:
        return status
    try:
        _, rest = getopt_bsd(args, "dhnp", prog)
        if rest:
            raise BadOption(f"{prog}: unexpected argument {rest[0]!r}")
    except BadOption as e:
        sys.stderr.write(f"{e}\n{HALT_USAGE}\n")
        return EXIT_USAGE
    try:
        client = RumpClient()
        client.halt()
    except OSError as e:
        where = os.environ.get("RUMP_SERVER", "")
        msg = str(e.strerror or e)
        print(f"{prog}: {msg if where in msg else f'{where}: {msg}'}", file=sys.stderr)
        return 1
    return 0
