"""Serve one packetdrill run: requests on one socket, completions of pending calls on the
other, one fresh kernel (:class:`Session`) for the run.

``rump_packetdrill`` calls :func:`serve` in-process for each script; ``librumpdrill.so``
runs ``python -m rumpnet.packetdrill.serve --fds REQ,DONE`` itself when packetdrill is
started by hand without a session (``--so_flags`` without ``fd=``).
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Callable

from rumpnet.packetdrill.session import ScriptError, Session, SessionOptions
from rumpnet.packetdrill.wire import (
    ERR_FATAL,
    PROTO_VERSION,
    Op,
    Reply,
    Request,
    SessionClosed,
    fatal,
    read_request,
    write_reply,
)


def serve(req_fd: int, done_fd: int) -> str | None:
    """Serve until packetdrill frees the session or goes away. Returns the fatal error
    the session reported to packetdrill, if any (for the runner's report)."""
    def complete(reply: Reply) -> None:
        write_reply(done_fd, reply)

    try:
        return _serve_loop(req_fd, complete)
    except (BrokenPipeError, ConnectionResetError):
        return None  # packetdrill exited mid-reply: its exit status tells the story


def _serve_loop(req_fd: int, complete: Callable[[Reply], None]) -> str | None:
    session: Session | None = None
    error: str | None = None
    try:
        while True:
            try:
                req = read_request(req_fd)
            except SessionClosed:
                break
            if session is None:
                reply, session = _open(req, complete)
            else:
                reply = session.handle(req)
            if reply.err == ERR_FATAL and error is None:
                error = reply.payload.decode(errors="replace")
            write_reply(req_fd, reply)
            if req.op == Op.FREE:
                break
    finally:
        if session is not None:
            session.close()
    return error


def _open(req: Request, complete: Callable[[Reply], None]) -> tuple[Reply, Session | None]:
    """The session a HELLO asks for (a fatal reply, and none, if it cannot be had)."""
    if req.op != Op.HELLO:
        return fatal("the first request must be HELLO"), None
    if req.args[0] != PROTO_VERSION:
        return fatal(f"librumpdrill.so speaks protocol {req.args[0]}, this rumpnet {PROTO_VERSION}: rebuild it"), None
    try:
        return Reply(), Session(SessionOptions.parse(req.payload.decode()), complete)
    except ScriptError as e:
        return fatal(str(e)), None
    except Exception:  # noqa: BLE001 - a kernel that fails to boot fails the script
        return fatal("cannot start the kernel:\n" + traceback.format_exc()), None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rumpnet.packetdrill.serve",
                                 description="serve one packetdrill run (started by librumpdrill.so)")
    ap.add_argument("--fds", required=True, help="REQ,DONE: the two inherited socket fds")
    args = ap.parse_args(argv)
    try:
        req_fd, done_fd = (int(x) for x in args.fds.split(","))
    except ValueError:
        ap.error("--fds takes two fd numbers, REQ,DONE")
    serve(req_fd, done_fd)
    os.close(req_fd)
    os.close(done_fd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
