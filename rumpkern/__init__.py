"""rumpkern: the kernel core. ``rump_init()`` boots a kernel; the ``rump_sys_*`` functions
here act on the current kernel (the last booted, or the one made current by ``with k:``).

The kern core knows no faction: nothing here imports ``rumpnet``; the factions register
their components (``rumpkern.component``) and are imported at the first boot that asks
for one. The exports are resolved lazily (PEP 562), so that a faction can import
low-level modules such as ``rumpkern.errno`` without loading the kernel module first.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rumpkern._version import __version__

if TYPE_CHECKING:  # what the lazy exports below resolve to, for type checkers (py.typed)
    from rumpkern.kernel import Kernel as Kernel
    from rumpkern.kernel import current_kernel as current_kernel
    from rumpkern.kernel import rump_init as rump_init
    from rumpkern.lwproc import RUMP_RFCFDG as RUMP_RFCFDG
    from rumpkern.lwproc import RUMP_RFFDG as RUMP_RFFDG
    from rumpkern.sched import Scheduler as Scheduler
    from rumpkern.sched import VirtualEventLoop as VirtualEventLoop
    from rumpkern.sched import VirtualEventLoopPolicy as VirtualEventLoopPolicy

_LAZY = {
    "Kernel": "rumpkern.kernel",
    "current_kernel": "rumpkern.kernel",
    "rump_init": "rumpkern.kernel",
    "RUMP_RFFDG": "rumpkern.lwproc",
    "RUMP_RFCFDG": "rumpkern.lwproc",
    "Scheduler": "rumpkern.sched",
    "VirtualEventLoop": "rumpkern.sched",
    "VirtualEventLoopPolicy": "rumpkern.sched",
}

_SYSCALLS = ("socket", "bind", "connect", "listen", "accept", "send", "sendto", "recv", "recvfrom", "recvmsg", "sendmsg",
             "shutdown", "close", "getsockname", "getpeername", "setsockopt", "getsockopt", "poll",
             "fcntl", "ioctl", "__sysctl", "reboot", "open", "read", "write", "pread", "pwrite",
             "lseek", "fstat", "getdents")

__all__ = sorted(_LAZY) + [f"rump_sys_{n}" for n in _SYSCALLS] + ["__version__"]


def _make(name: str) -> Any:
    method = f"rump_sys_{name}"

    def call(*args: Any, **kwargs: Any) -> Any:
        from rumpkern.kernel import current_kernel

        return getattr(current_kernel(), method)(*args, **kwargs)

    call.__name__ = method
    call.__qualname__ = method
    from rumpkern.syscall_docs import doc_of

    call.__doc__ = f"{doc_of(method)} On the current kernel (the last booted, or ``with k:``)."
    return call


for _name in _SYSCALLS:
    globals()[f"rump_sys_{_name}"] = _make(_name)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rumpkern' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
