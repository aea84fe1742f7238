"""One packetdrill script against one fresh kernel, on the kernel's virtual clock.

The kernel has a ``tun0`` (``rumpnet.if_tun``) holding the local address of each family
(the script's ``--ip_version`` picks which one it uses) and a default route of each
family out of it: packets packetdrill injects (IPv4 or IPv6, bare) go in there as if
from the remote end; packets the kernel sends out of it wait in a queue, with their send
times, for packetdrill to sniff.

Time: the kernel's virtual clock is packetdrill's clock. ``usleep`` runs the kernel that
much further; ``gettimeofday`` moves it one microsecond (packetdrill busy-polls it for
short waits, so a clock that stood still would spin forever); sniffing a packet runs the
kernel until it sends one. Nothing else moves the clock, so every run of a script is the
same run.

Threads: packetdrill makes blocking calls (``+0...0.1 accept(...)``) from a second
thread while its main thread goes on injecting packets. Every call is started at once,
as a task on the kernel's loop; a call from the main thread that sleeps runs the clock
until it completes (a real kernel would block packetdrill there), one from the
system-call thread is answered "pending" and completes when the main thread's calls
have moved the kernel far enough.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import os
import socket
import traceback
from collections import deque
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

from rumpkern import rump_init
from rumpkern.sched import Scheduler, VirtualEventLoop
from rumpnet.if_tun import TunIfnet
from rumpnet.net_kernel import net_kernel
from rumpnet.packetdrill import profiles
from rumpnet.packetdrill.wire import ERR_FATAL, ERR_PENDING, F_ABSOLUTE, Op, Reply, Request, fatal

USEC = 1_000_000
# How far the clock may run waiting for the kernel to send a packet packetdrill wants
# (packetdrill's own limit on a real kernel is the script's gap plus 2 s).
DEFAULT_SNIFF_LIMIT = 60.0


class ScriptError(Exception):
    """The script cannot go on (the kernel raised, a call can never complete, ...): the
    message goes to packetdrill, which fails the script with it."""


class DrillLoop(VirtualEventLoop):
    """The kernel's CPU, driven only by the session: the clock moves when the session
    moves it, and :meth:`settle` runs what is due without moving it."""

    def settle(self) -> None:
        """Run every ready callback and every timer due now, until none is left."""
        while self._ready or self._timer_due():  # type: ignore[attr-defined]
            self.call_soon(self.stop)
            self.run_forever()

    def _timer_due(self) -> bool:
        nxt = self.next_timer()
        return nxt is not None and nxt <= self.time() + self._clock_resolution

    def next_timer(self) -> float | None:
        """When the earliest live timer is due (None: nothing is scheduled)."""
        live = [h.when() for h in self._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
        return min(live) if live else None


@dataclass
class SessionOptions:
    """What ``--so_flags`` says (``key=value`` pairs, comma-separated)."""

    local: str = "192.168.0.2"
    remote: str = "192.0.2.1"
    local6: str = "fd3d:fa7b:d17d::2"
    remote6: str = "2001:db8::1"
    profile: str = "freebsd"
    seed: int = 0
    sniff_limit: float = DEFAULT_SNIFF_LIMIT
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, flags: str) -> SessionOptions:
        opts = cls()
        for item in filter(None, flags.split(",")):
            key, _, value = item.partition("=")
            if key in ("local", "remote", "local6", "remote6"):
                setattr(opts, key, value)
            elif key == "profile":
                if value not in profiles.PROFILES:
                    raise ScriptError(f"--so_flags profile={value}: valid profiles are {', '.join(profiles.PROFILES)}")
                opts.profile = value
            elif key == "seed":
                opts.seed = int(value)
            elif key == "sniff_limit":
                opts.sniff_limit = float(value)
            else:
                opts.extra[key] = value
        return opts


# The session kernel's components: both families (the FreeBSD suite has each script for
# IPv4 and for IPv6).
COMPONENTS = ("net", "netinet", "netinet6", "tun")


class Session:
    """A kernel serving one packetdrill run (see the module docstring)."""

    def __init__(self, options: SessionOptions, complete: Callable[[Reply], None]) -> None:
        from rumpnet.packetdrill import syscalls, tools

        self.options = options
        self._complete = complete
        self.loop = DrillLoop()
        self.loop.set_exception_handler(self._loop_exception)
        self._errors: list[str] = []
        self.sched = Scheduler(virtual=True, loop=self.loop)
        self.k = rump_init(clock="virtual", seed=options.seed, scheduler=self.sched,
                           components=COMPONENTS, hostname="rumpdrill")
        self.proc = self.k.rump_pub_lwproc_rfork(0x01)  # RFPROC: packetdrill's process
        self.proc.comm = "packetdrill"
        self.outq: deque[tuple[int, bytes]] = deque()
        self.tun = self._attach_tun()
        self.tools = tools.Tools(self)
        self.syscalls = syscalls.Syscalls(self)
        profiles.apply(self, options.profile)
        self._table = self._handlers()
        self.closed = False

    # -- set-up ------------------------------------------------------------------------
    def _attach_tun(self) -> TunIfnet:
        cfg = self.k.config
        tun = cfg.if_create("tun0")
        assert isinstance(tun, TunIfnet)
        tun.open(lambda pkt: self.outq.append((self.now_usecs(), pkt)))
        cfg.if_up("tun0")
        cfg.addr_add("tun0", f"{self.options.local}/16")
        cfg.route_add("default", self.options.local, interface=True)
        if socket.AF_INET6 in net_kernel(self.k).domains:
            self._attach_tun6()
        return tun

    def _attach_tun6(self) -> None:
        """IPv6 on tun0 as packetdrill's --ip_version=ipv6 set-up gives it (netdev.c,
        net_utils.c): the local address in fd3d:fa7b:d17d::/48 and the remote's prefix
        (2001:db8::/32) out of tun0, in NetBSD's ifconfig/route syntax. No DAD: the
        address is usable at once, as on Linux's tun (NOARP: addrconf skips DAD), where
        packetdrill does not wait for it (on the BSDs it sleeps 3 s instead). tun0 takes
        bare packets, so the kernel sends no Neighbor Solicitations there either."""
        self.k.sysctl("-w", "net.inet6.ip6.dad_count=0")
        self.k.ifconfig("tun0", "inet6", f"{self.options.local6}/48")
        self.k.route("add", "-inet6", "default", "-interface", self.options.local6)

    # -- the clock ---------------------------------------------------------------------
    def now_usecs(self) -> int:
        return round(self.loop.time() * USEC)

    def advance_to(self, t: float, until: Callable[[], bool] | None = None) -> None:
        """Run the kernel up to time ``t`` (timers fire at their own times), or only
        until ``until()`` holds."""
        loop = self.loop
        clock = loop.virtual_clock
        loop.settle()
        while until is None or not until():
            nxt = loop.next_timer()
            if nxt is None or nxt > t:
                if t > clock.now:
                    clock.now = t
                    loop.settle()
                break
            if nxt > clock.now:
                clock.now = nxt
            loop.settle()
        self._check_errors()

    def advance_by_usecs(self, usecs: int) -> None:
        self.advance_to((self.now_usecs() + usecs) / USEC)

    def run_until(self, done: Callable[[], bool], what: str, limit: float | None = None) -> None:
        """Run the kernel until ``done()``; ScriptError when nothing scheduled is left to
        make it happen, or (with ``limit``) after that many seconds."""
        deadline = None if limit is None else self.loop.time() + limit
        while not done():
            nxt = self.loop.next_timer()
            if nxt is None:
                raise ScriptError(f"{what}: the kernel has nothing scheduled, so it never will "
                                  f"(at {self.now_usecs() / USEC:.6f})")
            if deadline is not None and nxt > deadline:
                self.advance_to(deadline)
                if done():
                    return
                raise ScriptError(f"{what}: nothing within {limit:g} s of virtual time")
            self.advance_to(nxt, until=done)

    # -- calls into the kernel ---------------------------------------------------------
    def start(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = self.loop.create_task(coro)
        self.loop.settle()
        self._check_errors()
        return task

    async def sys(self, name: str, *args: Any) -> Any:
        """``k.rump_sys_<name>(*args)`` on the kernel's CPU."""
        r = getattr(self.k, "rump_sys_" + name)(*args)
        if inspect.isawaitable(r):
            r = await r
        return r

    def call(self, req: Request, coro: Coroutine[Any, Any, Reply]) -> Reply:
        """Start a call; finish it now (main thread) or answer "pending" (system-call
        thread) when it sleeps."""
        task = self.start(coro)
        if not task.done():
            if req.from_syscall_thread:
                task.add_done_callback(self._finish_async)
                return Reply(ret=-1, err=ERR_PENDING)
            self.run_until(task.done, "a system call that blocks packetdrill's main thread")
        return _task_reply(task)

    def _finish_async(self, task: asyncio.Task[Any]) -> None:
        reply = _task_reply(task)
        reply.now = self.now_usecs()
        self._complete(reply)

    # -- errors out of the kernel ------------------------------------------------------
    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        where = context.get("message", "callback")
        text = "".join(traceback.format_exception(exc)) if exc is not None else ""
        self._errors.append(f"kernel raised in {where}: {exc!r}\n{text}")

    def _check_errors(self) -> None:
        if self._errors:
            raise ScriptError(self._errors[0])

    # -- requests ----------------------------------------------------------------------
    def handle(self, req: Request) -> Reply:
        """Serve one request; a ScriptError or an exception out of the kernel becomes a
        fatal reply (packetdrill prints it and fails the script)."""
        try:
            handler = self._table.get(req.op)
            if handler is None:
                return fatal(f"unknown request {req.op}")
            reply = handler(req)
            self._check_errors()
            reply.now = self.now_usecs()
            return reply
        except ScriptError as e:
            return fatal(str(e))
        except OSError as e:
            return Reply(ret=-1, err=e.errno or errno.EIO)
        except Exception:  # noqa: BLE001 - a kernel bug must fail the script, loudly
            return fatal("internal error:\n" + traceback.format_exc())

    def _handlers(self) -> dict[int, Callable[[Request], Reply]]:
        table = self.syscalls.handlers()
        table.update({
            Op.HELLO: lambda req: Reply(),
            Op.FREE: self._free,
            Op.NETDEV_SEND: self._netdev_send,
            Op.NETDEV_RECEIVE: self._netdev_receive,
            Op.USLEEP: self._usleep,
            Op.GETTIMEOFDAY: self._gettimeofday,
            Op.COMMAND: self.tools.command,
        })
        return table

    def _free(self, req: Request) -> Reply:
        self.close()
        return Reply()

    def _netdev_send(self, req: Request) -> Reply:
        self.tun.write(req.payload)
        self.loop.settle()
        return Reply()

    def _netdev_receive(self, req: Request) -> Reply:
        self.run_until(lambda: bool(self.outq), "timed out waiting for a packet from the kernel",
                       limit=self.options.sniff_limit)
        when, pkt = self.outq.popleft()
        return Reply(ret=when, payload=pkt[: max(0, req.args[0])])

    def _usleep(self, req: Request) -> Reply:
        if req.flags & F_ABSOLUTE:
            # The system-call thread's wait timed from its last call's completion.
            self.advance_to(max(self.now_usecs(), req.args[1]) / USEC)
        else:
            self.advance_by_usecs(max(0, req.args[0]))
        return Reply()

    def _gettimeofday(self, req: Request) -> Reply:
        self.advance_by_usecs(1)
        return Reply(ret=self.now_usecs())

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.k.halt()
        finally:
            self.loop.close()


def _task_reply(task: asyncio.Task[Any]) -> Reply:
    exc = task.exception()
    if exc is None:
        result = task.result()
        assert isinstance(result, Reply)
        return result
    if isinstance(exc, OSError) and exc.errno:
        return Reply(ret=-1, err=exc.errno)
    if isinstance(exc, ScriptError):
        return fatal(str(exc))
    return Reply(ret=-1, err=ERR_FATAL, payload=(
        "internal error:\n" + "".join(traceback.format_exception(exc))).encode())


@contextlib.contextmanager
def strict_kernel() -> Iterator[None]:
    """Exceptions out of TCP input must fail the script, not be counted and forgotten
    (restored afterwards: the session may run inside another program's process)."""
    old = os.environ.get("RUMPNET_TCP_STRICT")
    os.environ["RUMPNET_TCP_STRICT"] = "1"
    try:
        yield
    finally:
        if old is None:
            del os.environ["RUMPNET_TCP_STRICT"]
        else:
            os.environ["RUMPNET_TCP_STRICT"] = old

