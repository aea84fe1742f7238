"""Host-side link plumbing for virtif, through pyroute2 (rtnetlink) and tun ioctls.

pyroute2 0.9's synchronous ``IPRoute`` drives an asyncio loop of its own with
``run_until_complete``, which fails ("This event loop is already running") when it is
called on a thread where a loop is running -- exactly where a driver's ``attach()`` runs.
:func:`off_loop` runs such calls on a short-lived worker thread in that case.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import struct
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

TUN_DEV = "/dev/net/tun"

# <linux/if_tun.h>: _IOR('T', 207, unsigned int), _IOR('T', 210, unsigned int), ...
TUNGETFEATURES = 0x800454CF
TUNGETIFF = 0x800454D2
TUNSETOFFLOAD = 0x400454D0
TUNSETVNETHDRSZ = 0x400454D8
TUNGETVNETHDRSZ = 0x800454D7

IFF_TUN = 0x0001
IFF_TAP = 0x0002
IFF_NAPI = 0x0010
IFF_NAPI_FRAGS = 0x0020
IFF_NO_CARRIER = 0x0040
IFF_MULTI_QUEUE = 0x0100
IFF_ATTACH_QUEUE = 0x0200
IFF_DETACH_QUEUE = 0x0400
IFF_PERSIST = 0x0800
IFF_NO_PI = 0x1000
IFF_ONE_QUEUE = 0x2000
IFF_VNET_HDR = 0x4000
IFF_TUN_EXCL = 0x8000

TUN_FEATURE_NAMES: tuple[tuple[int, str], ...] = (
    (IFF_TUN, "IFF_TUN"), (IFF_TAP, "IFF_TAP"), (IFF_NAPI, "IFF_NAPI"),
    (IFF_NAPI_FRAGS, "IFF_NAPI_FRAGS"), (IFF_NO_CARRIER, "IFF_NO_CARRIER"),
    (IFF_MULTI_QUEUE, "IFF_MULTI_QUEUE"), (IFF_ATTACH_QUEUE, "IFF_ATTACH_QUEUE"),
    (IFF_DETACH_QUEUE, "IFF_DETACH_QUEUE"), (IFF_PERSIST, "IFF_PERSIST"),
    (IFF_NO_PI, "IFF_NO_PI"), (IFF_ONE_QUEUE, "IFF_ONE_QUEUE"),
    (IFF_VNET_HDR, "IFF_VNET_HDR"), (IFF_TUN_EXCL, "IFF_TUN_EXCL"),
)

_UINT = struct.Struct("I")


def feature_names(mask: int) -> set[str]:
    """Names of the ``IFF_*`` tun flags set in ``mask``."""
    return {name for bit, name in TUN_FEATURE_NAMES if mask & bit}


def tun_features_mask(fd: int | None = None) -> int:
    """``TUNGETFEATURES`` on ``fd`` (or on a fresh ``/dev/net/tun`` fd): the flag bits the
    host's tun driver accepts in ``TUNSETIFF``."""
    own = fd is None
    if fd is None:
        fd = os.open(TUN_DEV, os.O_RDWR | os.O_CLOEXEC)
    try:
        buf = fcntl.ioctl(fd, TUNGETFEATURES, _UINT.pack(0))
        return int(_UINT.unpack(buf)[0])
    finally:
        if own:
            os.close(fd)


def tun_features(fd: int | None = None) -> set[str]:
    """``TUNGETFEATURES`` as a set of names (``{"IFF_TAP", "IFF_VNET_HDR", ...}``)."""
    return feature_names(tun_features_mask(fd))


def tun_getiff(fd: int) -> tuple[str, int]:
    """``TUNGETIFF``: (interface name, flags) of the tun/tap attached to ``fd``."""
    buf = fcntl.ioctl(fd, TUNGETIFF, bytes(40))
    name = buf[:16].split(b"\0", 1)[0].decode()
    (flags,) = struct.unpack_from("H", buf, 16)
    return name, int(flags)


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def off_loop(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``; on a worker thread if an asyncio loop runs on this one.

    For blocking host set-up calls (pyroute2) made from loop callbacks: they take
    milliseconds and happen at attach time only.
    """
    if not _loop_running_here():
        return fn(*args, **kwargs)
    result: list[T] = []
    error: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as e:  # re-raised on the caller's thread
            error.append(e)

    t = threading.Thread(target=run, name="rumpnet-netlink", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def _iproute(netns: str | None = None) -> Any:
    from pyroute2 import IPRoute

    # flags=0: never create the namespace as a side effect (pyroute2 defaults to O_CREAT)
    return IPRoute(netns=netns, flags=0) if netns else IPRoute()


def _link_index(ipr: Any, ifname: str) -> int:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        raise OSError(errno.ENODEV, f"no such host interface: {ifname}")
    return int(idx[0])


def _link_set(ifname: str, netns: str | None, **kw: Any) -> None:
    with _iproute(netns) as ipr:
        ipr.link("set", index=_link_index(ipr, ifname), **kw)


def link_set_up(ifname: str, netns: str | None = None) -> None:
    """Bring host interface ``ifname`` up (in ``netns``, or in this process's namespace)."""
    off_loop(_link_set, ifname, netns, state="up")


def link_set_down(ifname: str, netns: str | None = None) -> None:
    off_loop(_link_set, ifname, netns, state="down")


def _link_info(ifname: str, netns: str | None) -> dict[str, Any] | None:
    with _iproute(netns) as ipr:
        idx = ipr.link_lookup(ifname=ifname)
        if not idx:
            return None
        msg = ipr.get_links(idx[0])[0]
        return {
            "index": int(idx[0]),
            "ifname": msg.get_attr("IFLA_IFNAME"),
            "mtu": msg.get_attr("IFLA_MTU"),
            "address": msg.get_attr("IFLA_ADDRESS"),
            "operstate": msg.get_attr("IFLA_OPERSTATE"),
            "flags": int(msg["flags"]),
        }


def link_info(ifname: str, netns: str | None = None) -> dict[str, Any] | None:
    """index, mtu, address, operstate and flags of a host interface, or ``None`` if absent."""
    return off_loop(_link_info, ifname, netns)


def link_exists(ifname: str, netns: str | None = None) -> bool:
    return link_info(ifname, netns) is not None
