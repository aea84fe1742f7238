"""``rumphijack [--server URL] [--sockin] -- prog args``: run a Python program over a rump kernel.

As rumphijack(3) does for C programs (with LD_PRELOAD), the program's sockets go to a rump
kernel; ``RUMPHIJACK`` chooses which families (default ``path=/rump,socket=all:nolocal``).
``prog`` is a Python script, ``-m module`` or ``-c code`` (a leading ``python``/``python3``
is skipped), run in this process under :func:`rumpnet.hijack.hijack`.

With ``--server URL`` or ``$RUMP_SERVER`` (``unix://path``, ``tcp://127.0.0.1:port/``) the
kernel is a ``rump_server``'s, reached through rumpclient; otherwise one is booted
in-process: netinet with lo0 (127.0.0.1), or sockin with ``--sockin``.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from typing import Any

from rumpnet.hijack import Hijack
from rumpnet.hijack.scope import parse_rumphijack
from rumpnet.usage import EXIT_USAGE, version_text


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rumphijack", usage="rumphijack [--server URL] [--sockin] -- prog [args ...]",
                                 description="Run a Python program with its sockets in a rump kernel.")
    ap.add_argument("--server", default=None, help="rump_server URL (default: $RUMP_SERVER)")
    ap.add_argument("--sockin", action="store_true", help="boot a local sockin kernel instead of netinet")
    ap.add_argument("--version", action="version", version=version_text("rumphijack").rstrip())
    return ap


def _split(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    opts: list[str] = []
    i = 0
    while i < len(argv) and argv[i].startswith("--"):
        opts.append(argv[i])
        if argv[i] == "--server" and i + 1 < len(argv):
            opts.append(argv[i + 1])
            i += 1
        i += 1
    return opts, argv[i:]


def _run_prog(prog: list[str]) -> None:
    if prog and os.path.basename(prog[0]).startswith("python") and len(prog) > 1:
        prog = prog[1:]
    if prog[0] == "-m":
        if len(prog) < 2:
            raise SystemExit("rumphijack: -m needs a module name")
        sys.argv = [prog[1], *prog[2:]]
        runpy.run_module(prog[1], run_name="__main__", alter_sys=True)
    elif prog[0] == "-c":
        if len(prog) < 2:
            raise SystemExit("rumphijack: -c needs code")
        sys.argv = ["-c", *prog[2:]]
        glb: dict[str, Any] = {"__name__": "__main__", "__builtins__": __builtins__}
        exec(compile(prog[1], "<string>", "exec"), glb)  # noqa: S102 (running the user's program)
    else:
        sys.argv = list(prog)
        sys.path.insert(0, os.path.dirname(os.path.abspath(prog[0])))
        runpy.run_path(prog[0], run_name="__main__")


def _check(prog: list[str], server: str | None, from_option: bool) -> str | None:
    """What is wrong with the command line (None: nothing): no program, an option that is
    no program, a server URL that is no URL, a script that is not there."""
    if prog and os.path.basename(prog[0]).startswith("python") and len(prog) > 1:
        prog = prog[1:]
    if not prog:
        return "no program given"
    if prog[0].startswith("-") and prog[0] not in ("-m", "-c"):
        return f"unknown option {prog[0]!r} (options go before the program; a program is SCRIPT, -m MODULE or -c CODE)"
    if prog[0] in ("-m", "-c") and len(prog) < 2:
        return f"{prog[0]} needs {'a module name' if prog[0] == '-m' else 'code'}"
    if server:
        from rumpnet.server.protocol import parse_url

        try:
            parse_url(server)
        except ValueError as e:
            return f"{'--server' if from_option else 'RUMP_SERVER'}: {e}"
    if prog[0] not in ("-m", "-c") and not os.path.exists(prog[0]):
        return f"{prog[0]}: No such file or directory"
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = _parser()
    opts, prog = _split(argv)
    args = ap.parse_args(opts)
    server = args.server or os.environ.get("RUMP_SERVER")
    problem = _check(prog, server, args.server is not None)
    if problem:
        ap.print_usage(sys.stderr)
        print(f"rumphijack: {problem}", file=sys.stderr)
        return EXIT_USAGE
    client: Any = None
    k: Any = None
    try:
        conf = parse_rumphijack(os.environ.get("RUMPHIJACK"))
        spec = conf.get("socket", "all:nolocal")
        if server:
            from rumpnet.rumpclient import RumpClient

            client = RumpClient(server)
            hj = Hijack(client, socket=spec, nolocal=None)
        else:
            from rumpkern import rump_init

            k = rump_init(clock="real", sockin=args.sockin)
            hj = Hijack(k, socket=spec, nolocal=None)
    except (OSError, ValueError) as e:
        print(f"rumphijack: {e.strerror if isinstance(e, OSError) and e.strerror else e}", file=sys.stderr)
        if client is not None:
            client.close()
        return 1
    status = 0
    hj.start()
    try:
        _run_prog(prog)
    except SystemExit as e:
        code = e.code
        if code is None:
            status = 0
        elif isinstance(code, int):
            status = code
        else:
            print(code, file=sys.stderr)
            status = 1
    finally:
        hj.stop()
        if client is not None:
            client.close()
        if k is not None:
            k.halt()
    return status


if __name__ == "__main__":
    sys.exit(main())
