"""rump_server, rump_allserver: a rump kernel serving remote system calls (rump_server(1)).

    rump_server [-sv] [-c ncpu] [-d drivespec] [-l library] [-m module] [-r total_ram] url

The kernel's scheduler loop runs in its background thread; the server lives on that loop
(asyncio). Each connecting client becomes a process of the kernel with an empty fd table
(``rfork(proc0, RUMP_RFCFDG)``); each request runs as its own task, so a client blocked in
``recvfrom`` blocks neither its own other requests nor anybody else. In-kernel commands
(``command`` requests: ifconfig, ping, ...) run in worker threads whose kernel calls are
handed to the loop. A client that goes away has its blocked calls cancelled and its
process exited (files closed). Anything a client sends that breaks the protocol closes
that client's connection, after an error reply where possible, and nothing else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import errno
import inspect
import itertools
import os
import signal
import socket
import stat
import sys
import threading
import traceback
from typing import Any

from rumpkern.lwproc import RUMP_RFCFDG, Proc
from rumpkern.strict import KernelInternalError
from rumpnet.server.protocol import (
    MAX_FRAME,
    PROTO_NAME,
    PROTO_VERSION,
    ProtocolError,
    decode,
    frame,
    frame_length,
    parse_url,
)
from rumpnet.usage import EXIT_USAGE, BadOption, getopt_bsd, help_or_version

USAGE = "usage: {prog} [-sv] [-c ncpu] [-d drivespec] [-l library] [-m module] [-r total_ram] url\n"
HANDSHAKE_TIMEOUT = 10.0
MAX_INFLIGHT = 256
MAX_WRITE_BUFFER = 8 * MAX_FRAME
# Calls a remote client may make besides rump_sys_*: see docs/RUMP_SP.md.
EXTRA_CALLS = ("command", "halt", "procs", "getpid")
_NOT_REMOTE = {"rump_sys_reboot"}  # use "halt"


def remote_syscalls() -> frozenset[str]:
    """The ``rump_sys_*`` calls a remote client may make (all of Kernel's but reboot: use ``halt``)."""
    from rumpkern.kernel import Kernel

    return frozenset(n for n in dir(Kernel) if n.startswith("rump_sys_") and n not in _NOT_REMOTE)


class _Conn:
    __slots__ = ("cid", "writer", "proc", "tasks", "closed", "peer")

    def __init__(self, cid: int, writer: asyncio.StreamWriter) -> None:
        self.cid = cid
        self.writer = writer
        self.proc: Proc | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        self.peer = ""

    def send(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self.writer.write(data)
            if self.writer.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self.abort()  # a client that does not read its replies
        except (ConnectionError, RuntimeError):
            self.abort()

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except RuntimeError:  # loop already closing
                pass


class RumpServer:
    """Serves remote system calls for kernel ``k`` on a listening socket (on ``k``'s loop)."""

    def __init__(self, k: Any, verbose: bool = False) -> None:
        self.k = k
        self.verbose = verbose
        self.syscalls = remote_syscalls()
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="rump-cmd")
        self.conns: dict[int, _Conn] = {}
        self._ids = itertools.count(1)
        self._server: asyncio.base_events.Server | None = None
        self.stop_event = threading.Event()

    def log(self, msg: str) -> None:
        """``msg`` on standard error when verbose (``-v``)."""
        if self.verbose:
            print(f"rump_server: {msg}", file=sys.stderr, flush=True)

    # -- life cycle (called on the loop) ----------------------------------------------------
    async def start(self, sock: socket.socket) -> None:
        """Serve on the listening socket ``sock`` (on the kernel's loop)."""
        if sock.family == socket.AF_UNIX:
            self._server = await asyncio.start_unix_server(self._serve_client, sock=sock, limit=1 << 16)
        else:
            self._server = await asyncio.start_server(self._serve_client, sock=sock, limit=1 << 16)

    async def aclose(self) -> None:
        """Stop listening and drop every client (their blocked calls cancelled)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.conns.values()):
            for t in list(conn.tasks):
                t.cancel()
            conn.abort()
        await asyncio.sleep(0)

    def request_stop(self) -> None:
        """Ask the server to halt (a client's ``halt``, a signal)."""
        self.stop_event.set()

    # -- one client -------------------------------------------------------------------------
    async def _read_msg(self, reader: asyncio.StreamReader) -> Any:
        try:
            header = await reader.readexactly(4)
        except asyncio.IncompleteReadError as e:
            if not e.partial:
                return _EOF
            raise ProtocolError("truncated frame header") from None
        n = frame_length(header)
        payload = await reader.readexactly(n)
        return decode(payload)

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        k = self.k
        conn = _Conn(next(self._ids), writer)
        self.conns[conn.cid] = conn
        try:
            info = {"server_pid": os.getpid(), "hostname": k.hostname, "components": list(k.components),
                    "max_frame": MAX_FRAME}
            conn.send(frame((PROTO_NAME, PROTO_VERSION, info)))
            hello = await asyncio.wait_for(self._read_msg(reader), HANDSHAKE_TIMEOUT)
            if hello is _EOF:
                return
            if not (isinstance(hello, tuple) and len(hello) == 3 and hello[0] == "hello"
                    and isinstance(hello[2], dict)):
                raise ProtocolError("expected a hello message")
            if hello[1] != PROTO_VERSION:
                conn.send(frame(("err", 0, errno.EPROTONOSUPPORT,
                                 f"protocol version {hello[1]!r} not supported (server speaks {PROTO_VERSION})",
                                 "ProtocolError", {})))
                return
            comm = str(hello[2].get("comm", "rumpclient"))[:64]
            conn.proc = k.procs.rfork(k.procs.proc0, RUMP_RFCFDG, comm)  # we are the CPU here
            conn.peer = f"pid {conn.proc.pid} ({comm})"
            self.log(f"client {conn.peer} connected")
            conn.send(frame(("welcome", conn.proc.pid)))
            while not conn.closed:
                msg = await self._read_msg(reader)
                if msg is _EOF:
                    break
                if not (isinstance(msg, tuple) and len(msg) == 4 and msg[0] == "call" and isinstance(msg[1], int)
                        and not isinstance(msg[1], bool) and isinstance(msg[2], str) and isinstance(msg[3], (tuple, list))):
                    raise ProtocolError("malformed request")
                reqno, name, args = msg[1], msg[2], tuple(msg[3])
                if name not in self.syscalls and name not in EXTRA_CALLS:
                    conn.send(frame(("err", reqno, errno.ENOSYS, f"unknown call {name[:64]!r}", "ProtocolError", {})))
                    break
                if len(conn.tasks) >= MAX_INFLIGHT:
                    raise ProtocolError("too many requests in flight")
                task = asyncio.get_running_loop().create_task(self._run(conn, reqno, name, args))
                conn.tasks.add(task)
                task.add_done_callback(conn.tasks.discard)
        except ProtocolError as e:
            self.log(f"client {conn.peer or conn.cid}: protocol error: {e}")
            try:
                conn.send(frame(("err", 0, errno.EPROTO, str(e)[:1000], "ProtocolError", {})))
            except ProtocolError:
                pass
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError, OSError):
            pass
        finally:
            await self._drop(conn)

    async def _drop(self, conn: _Conn) -> None:
        for t in list(conn.tasks):
            t.cancel()
        if conn.tasks:
            await asyncio.gather(*conn.tasks, return_exceptions=True)
        self.conns.pop(conn.cid, None)
        if conn.proc is not None:
            from rumpnet.sys_socket import close_file

            try:
                self.k.procs.exit(conn.proc, close_file)
            except Exception as e:  # never let a client's exit take the server down
                self.log(f"exit of {conn.peer}: {e!r}")
            self.log(f"client {conn.peer} disconnected")
        if not conn.closed:
            try:
                await conn.writer.drain()
            except (ConnectionError, RuntimeError, OSError):
                pass
        conn.abort()

    async def _run(self, conn: _Conn, reqno: int, name: str, args: tuple[Any, ...]) -> None:
        try:
            result, outs = await self._call(conn, name, args)
            if dataclasses.is_dataclass(result) and not isinstance(result, type):
                result = dataclasses.asdict(result)
            data = frame(("ok", reqno, result, outs))
        except asyncio.CancelledError:
            raise
        except ProtocolError as e:
            data = frame(("err", reqno, errno.EINVAL, f"result cannot be sent: {e}", "ValueError", {}))
        except OSError as e:
            code = e.errno if isinstance(e.errno, int) else errno.EIO
            data = frame(("err", reqno, code, str(e.strerror or os.strerror(code)), type(e).__name__, _extra(e)))
        except KernelInternalError as e:  # strict mode: the client sees the server's bug
            text = "".join(traceback.format_exception(e))
            self.log(text)
            data = frame(("err", reqno, errno.EIO, text[-8000:], "KernelInternalError", {}))
        except Exception as e:  # a bad argument reaching kernel code: report, keep serving
            data = frame(("err", reqno, errno.EINVAL, f"{type(e).__name__}: {e}"[:1000], type(e).__name__, {}))
        conn.send(data)
        if name == "halt":
            asyncio.get_running_loop().call_later(0.05, self.request_stop)

    async def _call(self, conn: _Conn, name: str, args: tuple[Any, ...]) -> tuple[Any, list[Any]]:
        k = self.k
        proc = conn.proc
        assert proc is not None
        k.sched.errors.check()  # strict mode: any request reports a pending internal error
        if name.startswith("rump_sys_"):
            k.rump_pub_lwproc_switch(proc)
            try:
                res = getattr(k, name)(*args)
            finally:
                k.rump_pub_lwproc_switch(None)
            if inspect.isawaitable(res):
                res = await res
            # In/out arguments (poll's fd list, sysctl's oldp buffer) go back to the caller.
            return res, [a for a in args if isinstance(a, (list, bytearray))]
        loop = asyncio.get_running_loop()
        if name == "command":
            if len(args) != 2 or not isinstance(args[0], str) or not isinstance(args[1], (list, tuple)):
                raise OSError(errno.EINVAL, "command takes (name, argv)")
            cmd, argv = args[0], [str(a) for a in args[1]]
            res = await loop.run_in_executor(self.pool, self._command, proc, cmd, argv)
            if inspect.isawaitable(res):
                res = await res
            return res, []
        if name == "halt":
            return None, []
        if name == "getpid":
            return proc.pid, []
        if name == "procs":
            return self.proc_list(), []
        raise OSError(errno.ENOSYS, f"unknown call {name}")

    def _command(self, proc: Proc, name: str, argv: list[str]) -> Any:
        try:
            from rumpnet.commands import run_command
        except ImportError:
            raise OSError(errno.ENOSYS, "in-kernel commands are not available in this build") from None
        self.k.rump_pub_lwproc_switch(proc)
        try:
            return run_command(self.k, name, argv)
        finally:
            self.k.rump_pub_lwproc_switch(None)

    def proc_list(self) -> list[tuple[int, str, list[tuple[int, str]]]]:
        """``(pid, comm, [(fd, kind), ...])`` for every process (a debugging aid)."""
        out = []
        for p in sorted(self.k.procs.procs.values(), key=lambda p: p.pid):
            fds = [(fd, type(fp.obj).__name__) for fd, fp in sorted(p.fdt.files.items())]
            out.append((p.pid, p.comm, fds))
        return out


def _extra(e: OSError) -> dict[str, Any]:
    """Attributes of command errors that a client needs (PingFailed's output and status)."""
    extra = {}
    for name in ("output", "exit_status"):
        value = getattr(e, name, None)
        if isinstance(value, (str, int)):
            extra[name] = value
    return extra


class _EOFType:
    pass


_EOF = _EOFType()


# -- listening sockets ---------------------------------------------------------------------------
def listen_socket(url: str) -> tuple[socket.socket, str | None]:
    """Bind and listen at ``url``; returns the socket and the unix path to remove at exit.
    An OSError names the url (``unix:///no/dir/s: cannot listen: No such file or directory``)."""
    try:
        return _listen(url)
    except OSError as e:
        msg = str(e.strerror or e)
        raise OSError(e.errno, msg if url in msg or msg.startswith("/") else f"{url}: cannot listen: {msg}") from None


def bound_url(sock: socket.socket, url: str) -> str:
    """``url`` with the port the system chose when it asked for port 0."""
    if sock.family == socket.AF_UNIX:
        return url
    host, port = sock.getsockname()[:2]
    return f"tcp://[{host}]:{port}/" if ":" in host else f"tcp://{host}:{port}/"


def _listen(url: str) -> tuple[socket.socket, str | None]:
    kind, where = parse_url(url)
    if kind == "unix":
        path = os.path.abspath(where)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError(errno.EEXIST, f"{path} exists and is not a socket")
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(path)
            except OSError:
                os.unlink(path)  # stale socket of a dead server
            else:
                raise OSError(errno.EADDRINUSE, f"{path}: a server is already listening")
            finally:
                probe.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        return sock, path
    host, port = where
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock, None


# -- command line -------------------------------------------------------------------------------
@dataclasses.dataclass
class Options:
    url: str
    foreground: bool = False
    verbose: bool = False
    ncpu: int | None = None
    drives: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    libs: list[str] = dataclasses.field(default_factory=list)
    memlimit: int | None = None


class UsageError(Exception):
    """A bad command line (the message says what; the usage follows it)."""

    pass


def component_name(lib: str) -> str | None:
    """``rumpnet_shmif``, ``librumpnet_shmif.so``, ``/usr/lib/librumpnet_shmif.so.0`` or
    ``shmif`` -> ``shmif``; libraries with nothing to load here -> None."""
    from rumpkern.component import library_component

    name = os.path.basename(lib)
    if name.startswith("lib") and name != "lib":
        name = name[3:]
    return library_component(name.split(".so")[0])


def parse_args(argv: list[str]) -> Options:
    """rump_server's command line as Options (UsageError naming what is wrong)."""
    from rumpnet.server.etfs import parse_drivespec, parse_size

    try:
        opts, rest = getopt_bsd(argv, "c:d:l:m:r:sv", "rump_server")
    except BadOption as e:
        raise UsageError(str(e).split(": ", 1)[1]) from None
    if len(rest) != 1:
        raise UsageError("exactly one url is needed" if rest == [] else "too many arguments")
    o = Options(url=rest[0])
    for letter, value in opts:
        flag = f"-{letter}"
        try:
            if flag == "-s":
                o.foreground = True
            elif flag == "-v":
                o.verbose = True
            elif flag == "-c":
                o.ncpu = int(value)
                if o.ncpu < 1:
                    raise ValueError("ncpu must be positive")
            elif flag == "-d":
                o.drives.append(parse_drivespec(value))
            elif flag in ("-l", "-m"):
                o.libs.append(value)
            elif flag == "-r":
                o.memlimit = parse_size(value)
        except ValueError as e:
            raise UsageError(f"{flag} {value}: {e}") from None
    try:
        parse_url(o.url)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return o


def _components(o: Options, allserver: bool) -> list[str]:
    from rumpkern.component import registry

    reg = registry()
    # NetBSD links rump_server with librump and librumpvfs always (etfs, -d); the rest
    # comes with -l (rump_allserver: everything).
    names: list[str] = [n for n in reg if n != "sockin"] if allserver else ["vfs"]
    for lib in o.libs:
        name = component_name(lib)
        if name is None:
            continue
        if name not in reg:
            raise OSError(errno.ENOENT, f"{lib}: no such component")
        if name == "sockin" and "netinet" in names and allserver:
            names.remove("netinet")
        if name not in names:
            names.append(name)
    return names


class EmbeddedServer:
    """A running :class:`RumpServer` for a kernel booted elsewhere (``serve_kernel``)."""

    def __init__(self, server: RumpServer, path: str | None) -> None:
        self.server = server
        self.path = path

    @property
    def stop_event(self) -> threading.Event:
        """Set when a client asked the server to halt (``rump.halt``)."""
        return self.server.stop_event

    def close(self) -> None:
        """Stop serving and remove the unix socket file."""
        k = self.server.k
        try:
            asyncio.run_coroutine_threadsafe(self.server.aclose(), k.sched.loop).result(5)
        except Exception:
            pass
        self.server.pool.shutdown(wait=False, cancel_futures=True)
        if self.path is not None:
            try:
                os.unlink(self.path)
            except OSError:
                pass


def serve_kernel(k: Any, url: str, verbose: bool = False) -> EmbeddedServer:
    """Serve remote system calls for an already booted kernel at ``url`` (the kernel's
    scheduler is put in the background if it is not already there)."""
    sock, path = listen_socket(url)
    server = RumpServer(k, verbose=verbose)
    k.sched.start_background()
    asyncio.run_coroutine_threadsafe(server.start(sock), k.sched.loop).result(10)
    return EmbeddedServer(server, path)


def serve(o: Options, allserver: bool, ready: Any = None) -> int:
    """Boot, listen and serve until halted or signalled. ``ready(error_or_None, url)`` is
    called once the server accepts connections (or failed to start); ``url`` is where it
    listens, with the port the system chose for ``tcp://host:0/``, which is printed."""
    from rumpkern.kernel import rump_init
    from rumpnet.server.etfs import apply_drivespec

    path: str | None = None
    try:
        comps = _components(o, allserver)
        k = rump_init(clock="real", components=comps, memlimit=o.memlimit, verbose=o.verbose)
        for d in o.drives:
            apply_drivespec(k, d)
        sock, path = listen_socket(o.url)
        server = RumpServer(k, verbose=o.verbose)
        k.sched.start_background()
        asyncio.run_coroutine_threadsafe(server.start(sock), k.sched.loop).result(10)
    except Exception as e:
        msg = f"{e.strerror or e}" if isinstance(e, OSError) else f"{e}"
        if isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {msg}"
        if ready is not None:
            ready(msg, "")
        else:
            print(f"{_prog(allserver)}: {msg}", file=sys.stderr)
        return 1
    stop = server.stop_event
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    server.log(f"kernel {k.hostname} up with {', '.join(k.components) or 'no components'}; serving {o.url}")
    bound = bound_url(sock, o.url)
    if ready is not None:
        ready(None, bound)
    elif bound != o.url:
        print(bound, flush=True)
    while not stop.wait(0.5):
        pass
    server.log("halting")
    try:
        asyncio.run_coroutine_threadsafe(server.aclose(), k.sched.loop).result(5)
    except Exception:
        pass
    try:
        k.halt()
    except Exception:
        pass
    k.stop_background()
    server.pool.shutdown(wait=False, cancel_futures=True)
    if path is not None:
        try:
            os.unlink(path)
        except OSError:
            pass
    return _strict_exit_status(k)


def _strict_exit_status(k: Any) -> int:
    """0, or in strict mode after internal errors 70 (EX_SOFTWARE), with the tracebacks
    of those no client was sent on stderr."""
    from rumpkern.strict import take_unraised

    errors = k.sched.errors
    if not (errors.strict and errors.count):
        return 0
    for err in take_unraised():
        print(f"rump_server: {err.format()}", file=sys.stderr)
    print(f"rump_server: {errors.count} internal error(s) (strict mode)", file=sys.stderr)
    return 70


def _detach(o: Options, allserver: bool) -> int:
    """Double fork; the parent exits (0) once the server accepts connections."""
    r, w = os.pipe()
    pid = os.fork()
    if pid > 0:
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 4096)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        answer = b"".join(chunks).decode(errors="replace")
        if answer.startswith("ok "):
            if answer[3:] != o.url:
                print(answer[3:], flush=True)  # tcp://127.0.0.1:0/: the port it got
            return 0
        print(f"{_prog(allserver)}: {answer or 'server failed to start'}", file=sys.stderr)
        return 1
    # first child
    try:
        os.close(r)
        os.setsid()
        if os.fork() > 0:
            os._exit(0)
        devnull = os.open(os.devnull, os.O_RDWR)
        os.dup2(devnull, 0)
        os.dup2(devnull, 1)
        if not o.verbose:
            os.dup2(devnull, 2)
        os.close(devnull)

        def ready(err: str | None, url: str) -> None:
            try:
                os.write(w, f"ok {url}".encode() if err is None else err.encode())
            finally:
                os.close(w)

        code = serve(o, allserver, ready)
    except BaseException:
        code = 1
    os._exit(code)


def _prog(allserver: bool) -> str:
    return "rump_allserver" if allserver else "rump_server"


def _main(argv: list[str] | None, allserver: bool) -> int:
    prog = _prog(allserver)
    args = sys.argv[1:] if argv is None else argv
    status = help_or_version(prog, args, USAGE.format(prog=prog))
    if status is not None:
        return status
    try:
        o = parse_args(args)
    except UsageError as e:
        sys.stderr.write(f"{prog}: {e}\n" + USAGE.format(prog=prog))
        return EXIT_USAGE
    if o.foreground:
        return serve(o, allserver)
    return _detach(o, allserver)


def main(argv: list[str] | None = None) -> int:
    """``rump_server``: see the module docstring; returns the exit status."""
    return _main(argv, allserver=False)


def main_all(argv: list[str] | None = None) -> int:
    """``rump_allserver``: rump_server with every component loaded."""
    return _main(argv, allserver=True)


if __name__ == "__main__":
    if os.path.basename(sys.argv[0]).startswith("rump_allserver") or os.environ.get("RUMP_ALLSERVER"):
        sys.exit(main_all())
    sys.exit(main())
