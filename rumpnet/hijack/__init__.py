"""hijack: run unmodified Python networking code over a rump kernel (rumphijack(3)'s idea).

::

    with hijack(k):                       # socket="inet:inet6", nolocal=True
        urllib.request.urlopen("http://10.0.0.2:8000/file")

Inside the block ``socket.socket(...)`` of a hijacked family makes a socket in the kernel
(:class:`~rumpnet.hijack.hsocket.HijackSocket`), other families (AF_UNIX with
``nolocal``) stay on the host. ``socket.getaddrinfo`` answers numerically for hijacked
families (the kernel has no resolver; ``localhost`` and ``None`` are understood), so
``socket.create_connection``, ``socket.create_server``, ``http.client``, ``urllib`` and
``socketserver``/``http.server`` work unchanged. Every hijacked socket's ``fileno()`` is a
real fd whose readiness follows the kernel socket's, so ``select``, ``selectors`` and
asyncio's selector event loop (streams, ``start_server``, ``open_connection``, transports)
need no patching.

The patch is process-wide, as LD_PRELOAD's is; hijacks nest (the innermost wins). The
hijacked program is one process of the kernel (``rfork``); its sockets close when the
block ends. An in-process kernel is served in the background while hijacked (started,
and stopped again at the end, if it was not already). A ``rump_server`` is reached through
a :class:`rumpnet.rumpclient.RumpClient` passed instead of the kernel (the client is one
process in the server's kernel; the hijack closes the sockets it made when it ends).
"""

from __future__ import annotations

import socket as pysocket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rumpkern.lwproc import RUMP_RFCFDG, Proc
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.hijack import patches
from rumpnet.hijack.backend import LocalBackend, RemoteBackend
from rumpnet.hijack.hsocket import HijackSocket, hijacked_fd, is_hijacked
from rumpnet.hijack.scope import SocketScope, parse_rumphijack, parse_socket_spec

__all__ = ["Hijack", "HijackSocket", "SocketScope", "hijack", "is_hijacked", "parse_rumphijack",
           "parse_socket_spec"]

_OrigSocket = pysocket.socket
_orig_getaddrinfo = pysocket.getaddrinfo

_lock = threading.RLock()
_stack: list[Hijack] = []


def active() -> Hijack | None:
    """The innermost hijack in force, or None."""
    return _stack[-1] if _stack else None


# Code that talks to the rump_server itself (rumpclient reconnecting) keeps host sockets,
# as rumphijack(3)'s rumpclient uses the host's system calls.
_EXEMPT_MODULES = frozenset({"rumpnet.rumpclient", "rumpnet.server.protocol", "rumpnet.server.rump_server"})


class _SocketMeta(type):
    def __call__(cls, family: int = -1, type: int = -1, proto: int = -1, fileno: Any = None) -> Any:  # noqa: A002
        hj = active()
        if hj is not None and sys._getframe(1).f_globals.get("__name__") not in _EXEMPT_MODULES:
            if fileno is not None:
                # socket(fileno=fd) on a hijacked socket's fd: that socket (a duplicate),
                # not a host socket on its readiness signal
                hs = hijacked_fd(fileno)
                if hs is not None:
                    return hs.dup()
            else:
                fam = pysocket.AF_INET if family == -1 else int(family)
                if hj.scope.covers(fam):
                    return HijackSocket(hj, fam, pysocket.SOCK_STREAM if type == -1 else int(type),
                                        0 if proto == -1 else int(proto))
        return _OrigSocket(family, type, proto, fileno)

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, (_OrigSocket, HijackSocket))

    def __subclasscheck__(cls, sub: Any) -> bool:
        return isinstance(sub, type) and issubclass(sub, (_OrigSocket, HijackSocket))


class HijackedSocketType(metaclass=_SocketMeta):
    """What ``socket.socket`` is while hijacked: makes kernel sockets for hijacked families
    and host sockets for the rest; ``isinstance`` accepts both."""

    __doc__ = _OrigSocket.__doc__


def _port_number(port: Any, socktype: int) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii")
    if isinstance(port, int):
        if not 0 <= port <= 0xFFFF:
            raise OverflowError("getaddrinfo(): port must be 0-65535.")
        return port
    if isinstance(port, str):
        if port.isdigit():
            return int(port)
        try:
            return pysocket.getservbyname(port, "udp" if socktype == pysocket.SOCK_DGRAM else "tcp")
        except OSError:
            raise pysocket.gaierror(pysocket.EAI_SERVICE, "Servname not supported for ai_socktype") from None
    raise TypeError("getaddrinfo() argument 2 must be integer or string")


def _numeric(host: str, family: int) -> str | None:
    try:
        pysocket.inet_pton(family, host.split("%", 1)[0] if family == pysocket.AF_INET6 else host)
    except (OSError, ValueError):
        return None
    return host


def _getaddrinfo(host: Any, port: Any, family: int = 0, type: int = 0, proto: int = 0, flags: int = 0) -> list[Any]:  # noqa: A002
    hj = active()
    if hj is None:
        return _orig_getaddrinfo(host, port, family, type, proto, flags)
    fams: list[int]
    kinds: list[tuple[int, int]]
    if family == pysocket.AF_UNSPEC:
        fams = [f for f in (pysocket.AF_INET, pysocket.AF_INET6) if hj.handles(f)]
        if not fams:
            return _orig_getaddrinfo(host, port, family, type, proto, flags)
    elif hj.scope.covers(family):
        fams = [family] if hj.handles(family) else []
    else:
        return _orig_getaddrinfo(host, port, family, type, proto, flags)
    if isinstance(host, bytes):
        host = host.decode("ascii")
    if type == 0:
        kinds = [(pysocket.SOCK_STREAM, pysocket.IPPROTO_TCP), (pysocket.SOCK_DGRAM, pysocket.IPPROTO_UDP)]
    elif type == pysocket.SOCK_STREAM:
        kinds = [(type, proto or pysocket.IPPROTO_TCP)]
    elif type == pysocket.SOCK_DGRAM:
        kinds = [(type, proto or pysocket.IPPROTO_UDP)]
    else:
        kinds = [(type, proto)]
    portnum = _port_number(port, type)
    addrs: list[tuple[int, str]] = []
    passive = bool(flags & pysocket.AI_PASSIVE)
    for fam in fams:
        if host is None:
            addrs.append((fam, ("0.0.0.0" if passive else "127.0.0.1") if fam == pysocket.AF_INET
                          else ("::" if passive else "::1")))
        elif host == "localhost":
            addrs.append((fam, "127.0.0.1" if fam == pysocket.AF_INET else "::1"))
        elif isinstance(host, str):
            num = _numeric(host, fam)
            if num is not None:
                addrs.append((fam, num))
        else:
            raise TypeError("getaddrinfo() argument 1 must be string or None")
    if not addrs:
        raise pysocket.gaierror(pysocket.EAI_NONAME, "Name or service not known (rump kernels resolve numeric hosts only)")
    out = []
    for afam, addr in addrs:
        sa: tuple[Any, ...] = (addr, portnum) if afam == pysocket.AF_INET else (addr, portnum, 0, 0)
        for kind, pr in kinds:
            out.append((pysocket.AddressFamily(afam), pysocket.SocketKind(kind), pr, "", sa))
    return out


def _install() -> None:
    pysocket.socket = HijackedSocketType  # type: ignore[misc,assignment]
    pysocket.getaddrinfo = _getaddrinfo
    patches.install()  # sendfile on every loop class, os.sendfile, fromfd, uvloop


def _uninstall() -> None:
    pysocket.socket = _OrigSocket  # type: ignore[misc]
    pysocket.getaddrinfo = _orig_getaddrinfo
    patches.uninstall()


class Hijack:
    """One hijack of the process's sockets onto a kernel (use :func:`hijack`).

    ``kernel`` is an in-process :class:`rumpkern.kernel.Kernel` or a
    :class:`rumpnet.rumpclient.RumpClient` connected to a ``rump_server``.
    """

    def __init__(self, kernel: Any, socket: str = "inet:inet6", nolocal: bool | None = True) -> None:  # noqa: A002
        self.kernel = kernel
        self.scope: SocketScope = parse_socket_spec(socket, nolocal)
        self.remote = not (hasattr(kernel, "sched") and hasattr(kernel, "procs"))
        if self.remote and not (hasattr(kernel, "rump_sys_poll") and hasattr(kernel, "rump_sys_socket")):
            raise TypeError("hijack() takes a rump kernel or a rumpclient.RumpClient")
        self.proc: Proc | None = None
        self.backend: Any = None
        self._families: set[int] | None = None
        self._started_bg = False

    def handles(self, family: int) -> bool:
        """Hijacked and served by the kernel (getaddrinfo offers only these)."""
        if not self.scope.covers(family):
            return False
        if self._families is None:
            self._families = self.backend.families() if self.backend is not None else set()
        return family in self._families

    def start(self) -> None:
        """Put the kernel's sockets in place of the host's (``socket``, ``selectors``, asyncio)."""
        k = self.kernel
        if self.remote:
            self.backend = RemoteBackend(k)
        else:
            if not k.sched.background:
                k.serve_background()
                self._started_bg = True
            # The hijacked program is a process of the kernel, as a rumpclient would be.
            self.proc = k.sched.run(lambda: k.procs.rfork(k.procs.proc0, RUMP_RFCFDG))
            self.backend = LocalBackend(k, self.proc)
        self._families = None
        with _lock:
            if not _stack:
                _install()
            _stack.append(self)

    def stop(self) -> None:
        """Give the host's sockets back."""
        k = self.kernel
        with _lock:
            if self in _stack:
                _stack.remove(self)
            if not _stack:
                _uninstall()
        if self.remote:
            self.backend.stop()
            return
        if not k.halted and self.proc is not None:
            p = self.proc
            k.sched.run(lambda: k.procs.exit(p, S.close_file))
        if self._started_bg:
            k.stop_background()
            self._started_bg = False

    def __enter__(self) -> Hijack:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def hijack(kernel: Any, socket: str = "inet:inet6", nolocal: bool | None = True) -> Iterator[Hijack]:  # noqa: A002
    """Send the standard library's sockets of the families in ``socket`` to ``kernel``."""
    hj = Hijack(kernel, socket=socket, nolocal=nolocal)
    hj.start()
    try:
        yield hj
    finally:
        hj.stop()
