"""What every command of every faction shares: usage errors, BSD messages, the CPU.

A command (``k.ifconfig``, ``k.sysctl``, ...) is a function ``(k, argv) -> output``
registered by the component that answers it (``rumpkern.component``); the kern core's own
is ``sysctl`` (``rumpkern/sysctl_cmd.py``). A tool that would fail raises ``OSError`` whose
message is what NetBSD's tool prints on standard error; bad usage raises
:class:`UsageError` (errno ``EINVAL``, the message is the usage text), which a CLI maps to
exit status 2.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from rumpkern.bsdgetopt import BadOption, getopt_bsd

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

T = TypeVar("T")


class UsageError(OSError):
    """Bad command-line usage: errno EINVAL, the message is the tool's usage text."""

    def __init__(self, usage: str) -> None:
        super().__init__(errno.EINVAL, usage)

    @property
    def usage(self) -> str:
        """The usage text."""
        return str(self.strerror)


def getopt(name: str, argv: list[str], optstring: str, usage: str) -> tuple[list[tuple[str, str]], list[str]]:
    """The tool's leading options, as NetBSD's getopt(3) reads them; a bad one is a
    UsageError whose text is getopt's line (``ifconfig: unknown option -- Z``) and the usage."""
    try:
        return getopt_bsd(argv, optstring, name)
    except BadOption as e:
        raise UsageError(f"{e}\n{usage}") from None


def on_cpu(k: Kernel, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the kernel's CPU (directly when the caller already holds it); ENXIO
    when the kernel is halted."""
    k.check_up()
    sched = k.sched
    if sched.holds_cpu():
        return fn()
    return sched.run(fn)


def strerror(code: int) -> str:
    """The BSD message for ``code`` (the host's strerror differs for a few)."""
    return _BSD_MESSAGES.get(code) or os.strerror(code)


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
