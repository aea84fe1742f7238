"""rumpkern: the kernel core. ``rump_init()`` boots a kernel; the ``rump_sys_*`` functions
here act on the current kernel (the last booted, or the one made current by ``with k:``)."""

from __future__ import annotations

from typing import Any

from rumpkern.kernel import Kernel, current_kernel, rump_init
from rumpkern.lwproc import RUMP_RFCFDG, RUMP_RFFDG
from rumpkern.sched import Scheduler, VirtualEventLoop, VirtualEventLoopPolicy

__all__ = ["Kernel", "Scheduler", "VirtualEventLoop", "VirtualEventLoopPolicy", "current_kernel",
           "rump_init", "RUMP_RFFDG", "RUMP_RFCFDG"]

_SYSCALLS = ("socket", "bind", "connect", "listen", "accept", "send", "sendto", "recv", "recvfrom",
             "shutdown", "close", "getsockname", "getpeername", "setsockopt", "getsockopt", "poll",
             "fcntl", "ioctl", "__sysctl", "reboot")


def _make(name: str) -> Any:
    method = f"rump_sys_{name}"

    def call(*args: Any, **kwargs: Any) -> Any:
        return getattr(current_kernel(), method)(*args, **kwargs)

    call.__name__ = method
    call.__qualname__ = method
    call.__doc__ = f"``{method}`` on the current kernel."
    return call


for _name in _SYSCALLS:
    globals()[f"rump_sys_{_name}"] = _make(_name)
    __all__.append(f"rump_sys_{_name}")
