"""The configuration commands of ``tests/net``, with NetBSD's syntax and output.

``run_command(k, name, argv)`` runs ``ifconfig``, ``route``, ``arp``, ``sysctl`` (the
kern core's, ``rumpkern/sysctl_cmd.py``), ``netstat``, ``ping`` or ``tc`` on kernel ``k``
and returns what the tool prints on standard output. A tool that would fail raises ``OSError`` whose message is what NetBSD's
tool prints on standard error (``ifconfig: SIOCIFCREATE: File exists``); bad usage raises
:class:`UsageError` (errno ``EINVAL``, message: the usage text). A later CLI maps
``UsageError`` to exit status 2 and other ``OSError`` to exit status 1.

``ping6`` and ``ndp`` (NetBSD's, for netinet6) are here too.

``ping`` (and ``ping6``) returns its output, or raises :class:`PingFailed` (carrying ``.output`` and
``.exit_status``) when no reply came back, as NetBSD's ping exits 2 then. Called from a
coroutine on the kernel's scheduler loop, ``k.ping(...)`` returns an awaitable instead.
"""

from __future__ import annotations

import errno
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from rumpkern.commands import UsageError, getopt, on_cpu, strerror
from rumpkern.component import Command

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

__all__ = ["COMMANDS", "OnCpuSyscalls", "PingFailed", "UsageError", "getopt", "on_cpu", "run_command", "strerror"]


class PingFailed(OSError):
    """ping received no reply (NetBSD's ping exits 2) or could not run at all (exit 1).

    ``output`` is everything ping printed (standard output and its warnings, in order),
    ``exit_status`` the status NetBSD's ping would exit with.
    """

    def __init__(self, code: int, message: str, output: str, exit_status: int) -> None:
        super().__init__(code, message)
        self.output = output
        self.exit_status = exit_status


def _tc(k: Kernel, argv: list[str]) -> str:
    from rumpnet.faults.tc import tc_command
    from rumpnet.net_kernel import net_kernel

    nk = net_kernel(k)
    return on_cpu(k, lambda: tc_command(nk.ifnet.lookup, argv, k.rng, k.sched, all_ifps=nk.ifnet.all))


# Commands that reach the kernel through system calls only: they are given the system
# calls to use (the kernel's own, or those of a command run on the kernel's CPU).
_SYSCALL_COMMANDS = ("ifconfig", "netstat")


class OnCpuSyscalls:
    """The system calls of a command run on the kernel's CPU (from a callback or a
    coroutine on its loop, where ``k.rump_sys_*`` return awaitables): each call runs its
    syscall-table entry at once, as the syscall fast path does, and one that would have to
    sleep fails with EWOULDBLOCK; ``rump_sys_poll`` alone stays the kernel's (an awaitable
    there), for a command that sleeps between looks (ifconfig -w)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.rump_sys_poll = k.rump_sys_poll

    def __getattr__(self, name: str) -> Callable[..., object]:
        fn = self.k.sysent.get(name.removeprefix("rump_sys_")) if name.startswith("rump_sys_") else None
        if fn is None:
            raise AttributeError(name)

        def call(*args: object) -> object:
            from rumpkern.sched import Sleep, SyscallCtx

            self.k.check_up()
            try:
                return fn(SyscallCtx(), self.k.curproc, *args)
            except Sleep:
                raise OSError(errno.EWOULDBLOCK, f"{name}: would sleep on the kernel's CPU") from None

        return call


def _lazy(modname: str, fname: str) -> Command:
    def run(k: Kernel, argv: list[str]) -> str | Awaitable[str]:
        import importlib

        mod = importlib.import_module(f"rumpnet.commands.{modname}")
        target: object = k
        if fname in _SYSCALL_COMMANDS and k.sched.on_cpu():
            target = OnCpuSyscalls(k)
        out: str | Awaitable[str] = getattr(mod, fname)(target, argv)
        return out

    return run


# The net faction's commands (registered with its ``net`` component); sysctl is the kern's.
COMMANDS: dict[str, Command] = {
    "ifconfig": _lazy("ifconfig", "ifconfig"),
    "route": _lazy("route", "route"),
    "arp": _lazy("arp", "arp"),
    "netstat": _lazy("netstat", "netstat"),
    "ping": _lazy("ping", "ping"),
    "ping6": _lazy("ping6", "ping6"),
    "ndp": _lazy("ndp", "ndp"),
    "rtadvd": _lazy("rtadvd", "rtadvd"),
    "tc": _tc,
}


def run_command(k: Kernel, name: str, argv: list[str]) -> str | Awaitable[str]:
    """Run command ``name`` with arguments ``argv`` (without the program name) on ``k``:
    whatever component answers it there (``k.run_command``).

    Returns the output text (an awaitable of it for ``ping`` on the scheduler's loop).
    """
    return k.run_command(name, [str(a) for a in argv])
