"""The configuration commands of ``tests/net``, with NetBSD's syntax and output.

``run_command(k, name, argv)`` runs ``ifconfig``, ``route``, ``arp``, ``sysctl``,
``netstat``, ``ping`` or ``tc`` on kernel ``k`` and returns what the tool prints on
standard output. A tool that would fail raises ``OSError`` whose message is what NetBSD's
tool prints on standard error (``ifconfig: SIOCIFCREATE: File exists``); bad usage raises
:class:`UsageError` (errno ``EINVAL``, message: the usage text). A later CLI maps
``UsageError`` to exit status 2 and other ``OSError`` to exit status 1.

``ping`` returns its output, or raises :class:`PingFailed` (carrying ``.output`` and
``.exit_status``) when no reply came back, as NetBSD's ping exits 2 then. Called from a
coroutine on the kernel's scheduler loop, ``k.ping(...)`` returns an awaitable instead.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rumpnet.usage import BadOption, getopt_bsd

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

T = TypeVar("T")

__all__ = ["COMMANDS", "PingFailed", "UsageError", "run_command"]


class UsageError(OSError):
    """Bad command-line usage: errno EINVAL, the message is the tool's usage text."""

    def __init__(self, usage: str) -> None:
        super().__init__(errno.EINVAL, usage)

    @property
    def usage(self) -> str:
        """The usage text."""
        return str(self.strerror)


class PingFailed(OSError):
    """ping received no reply (NetBSD's ping exits 2) or could not run at all (exit 1).

    ``output`` is everything ping printed (standard output and its warnings, in order),
    ``exit_status`` the status NetBSD's ping would exit with.
    """

    def __init__(self, code: int, message: str, output: str, exit_status: int) -> None:
        super().__init__(code, message)
        self.output = output
        self.exit_status = exit_status


def getopt(name: str, argv: list[str], optstring: str, usage: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The tool's leading options, as NetBSD's getopt(3) reads them; a bad one is a
    UsageError whose text is getopt's line (``ifconfig: unknown option -- Z``) and the usage."""
    try:
        return getopt_bsd(argv, optstring, name)
    except BadOption as e:
        raise UsageError(f"{e}\n{usage}") from None


def on_cpu(k: Kernel, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the kernel's CPU (directly when the caller already holds it)."""
    return k.sched.run(fn)


def fail(code: int, msg: str) -> OSError:
    return OSError(code, msg)


def strerror(code: int) -> str:
    """The BSD message for ``code`` (the host's strerror differs for a few)."""
    return _BSD_MESSAGES.get(code) or __import__("os").strerror(code)


_BSD_MESSAGES = {
    errno.ENXIO: "Device not configured",
    errno.ESRCH: "No such process",
    errno.EEXIST: "File exists",
    errno.EINVAL: "Invalid argument",
    errno.ENETUNREACH: "Network is unreachable",
    errno.EHOSTUNREACH: "No route to host",
    errno.EADDRNOTAVAIL: "Can't assign requested address",
    errno.EBUSY: "Device busy",
    errno.ENOTTY: "Inappropriate ioctl for device",
    errno.EPERM: "Operation not permitted",
    errno.ENOENT: "No such file or directory",
    errno.EOPNOTSUPP: "Operation not supported",
    errno.EHOSTDOWN: "Host is down",
    errno.EMSGSIZE: "Message too long",
    errno.ENOBUFS: "No buffer space available",
}


def _tc(k: Kernel, argv: list[str]) -> str:
    from rumpnet.faults.tc import tc_command

    def get_ifp(name: str) -> Any:
        return k.ifnet.lookup(name)

    return on_cpu(k, lambda: tc_command(get_ifp, argv, k.rng, k.sched, all_ifps=k.ifnet.all))


def _lazy(modname: str, fname: str) -> Callable[[Kernel, list[str]], Any]:
    def run(k: Kernel, argv: list[str]) -> Any:
        import importlib

        mod = importlib.import_module(f"rumpnet.commands.{modname}")
        return getattr(mod, fname)(k, argv)

    return run


COMMANDS: dict[str, Callable[[Kernel, list[str]], Any]] = {
    "ifconfig": _lazy("ifconfig", "ifconfig"),
    "route": _lazy("route", "route"),
    "arp": _lazy("arp", "arp"),
    "sysctl": _lazy("sysctl", "sysctl"),
    "netstat": _lazy("netstat", "netstat"),
    "ping": _lazy("ping", "ping"),
    "tc": _tc,
}


def run_command(k: Kernel, name: str, argv: list[str]) -> Any:
    """Run command ``name`` with arguments ``argv`` (without the program name) on ``k``.

    Returns the output text (an awaitable of it for ``ping`` on the scheduler's loop).
    """
    fn = COMMANDS.get(name)
    if fn is None:
        raise OSError(errno.ENOENT, f"{name}: command not found")
    # A sockin kernel has no interfaces or routes: NetBSD's sockin answers EOPNOTSUPP.
    from rumpnet.sockin import refuse_command

    refuse_command(k, name)
    return fn(k, [str(a) for a in argv])
