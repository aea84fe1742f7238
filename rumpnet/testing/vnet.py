"""Test networks: kernels on a scheduler of their own, wired on in-process segments.

``VNet`` boots kernels (virtual time unless asked otherwise) whose wires have names unique
to the process, and halts them in ``close()``. ``VNet.ping`` sends one ICMP echo through a
raw socket and returns the IP packet that answers it (an echo reply or an ICMP error
quoting it). The pytest fixtures ``vnet``/``vnet_real``/``vnet_factory`` in the test suite
are built on it; import it from here in your own tests.
"""

from __future__ import annotations

import errno
import itertools
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from rumpkern import rump_init
from rumpkern.kernel import Kernel
from rumpkern.sched import Scheduler
from rumpnet.ifnet import Ifnet
from rumpnet.net_kernel import net_kernel
from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.sys_socket import pollfd
from rumpnet.uipc_socket import POLLIN, POLLOUT

_ids = itertools.count(1)


def icmp_echo(ident: int, seq: int, payload: bytes = b"rumpnet ping") -> bytes:
    """An ICMP echo request with a correct checksum."""
    msg = bytearray(struct.pack("!BBHHH", 8, 0, 0, ident, seq) + payload)
    c = in_cksum(msg)
    msg[2:4] = struct.pack("!H", c)
    return bytes(msg)


def _answers(pkt: bytes, ident: int, seq: int) -> bool:
    """Does IP packet ``pkt`` answer our echo (reply, or an error quoting the request)?"""
    hl = (pkt[0] & 0xF) * 4
    icmp = pkt[hl:]
    if len(icmp) < 8:
        return False
    if icmp[0] == 0:
        return struct.unpack_from("!HH", icmp, 4) == (ident, seq)
    if icmp[0] in (3, 11, 12) and len(icmp) >= 8 + 20 + 8:
        inner = icmp[8:]
        ihl = (inner[0] & 0xF) * 4
        return inner[9] == 1 and struct.unpack_from("!HH", inner, ihl + 4) == (ident, seq)
    return False


class FrameLog:
    """A bpf writer keeping the frames an interface sees (:func:`capture`)."""

    def __init__(self, mac: bytes | None = None) -> None:
        self.frames: list[bytes] = []
        self._mac = mac

    def write(self, frame: bytes | bytearray | memoryview, ts: float) -> None:
        """Keep ``frame`` (bpf calls this for every frame the interface sees)."""
        if self._mac is None or bytes(frame[6:12]) == self._mac:
            self.frames.append(bytes(frame))


def capture(k: Kernel, ifname: str, sent_only: bool = False) -> FrameLog:
    """Tap ``k``'s interface ``ifname``: every frame it sends and receives from now on
    (with ``sent_only``, only those it sends) lands in the returned log's ``frames``."""
    ifp = net_kernel(k).ifnet.lookup(ifname)
    log = FrameLog(ifp.lladdr if sent_only else None)
    k.sched.run(lambda: ifp.bpf_attach(log))
    return log


def tcp_connection(a: Kernel, b: Kernel, addr: tuple[str, int],
                   family: int = socket.AF_INET) -> tuple[int, int, int]:
    """A blocking TCP connection from kernel ``a`` to a listener on ``b`` at ``addr``:
    (listening fd on ``b``, client fd on ``a``, accepted fd on ``b``)."""
    lfd = b.rump_sys_socket(family, socket.SOCK_STREAM, 0)
    b.rump_sys_bind(lfd, addr)
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(family, socket.SOCK_STREAM, 0)
    a.rump_sys_connect(c, addr)
    s, _ = b.rump_sys_accept(lfd)
    return lfd, c, s


def tcp_transfer(a: Kernel, b: Kernel, data: bytes, addr: tuple[str, int], *, chunk: int = 256 * 1024,
                 hook: Callable[[int], None] | None = None, limit: float | None = None,
                 family: int = socket.AF_INET) -> bytes:
    """Send ``data`` from kernel ``a`` to a listener on kernel ``b`` at ``addr`` with
    non-blocking sockets and poll (as a single-threaded event loop would), one kernel
    call at a time so that it runs on virtual time too; ``hook(bytes_sent)`` runs every
    turn. Returns what ``b`` received (all of it, or what came within ``limit`` seconds
    on ``a``'s clock). Every socket is closed at the end."""
    lfd = b.rump_sys_socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    b.rump_sys_setsockopt(lfd, socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    b.rump_sys_bind(lfd, ("::" if family == socket.AF_INET6 else "0.0.0.0", addr[1]))
    b.rump_sys_listen(lfd, 1)
    c = a.rump_sys_socket(family, socket.SOCK_STREAM | socket.SOCK_NONBLOCK, 0)
    try:
        a.rump_sys_connect(c, addr)
    except BlockingIOError:
        pass
    if b.rump_sys_poll([pollfd(lfd, POLLIN)], 1, 30_000) != 1:
        raise TimeoutError("no connection within 30 s")
    s, _ = b.rump_sys_accept(lfd)
    view = memoryview(data)
    sent, got, total = 0, bytearray(), len(data)
    start = a.clock_now()
    while len(got) < total and (limit is None or a.clock_now() - start < limit):
        if hook is not None:
            hook(sent)
        busy = False
        if sent < total:
            try:
                sent += a.rump_sys_send(c, view[sent:sent + chunk], 0)
                busy = True
            except BlockingIOError:
                pass
            if sent == total:
                a.rump_sys_shutdown(c, socket.SHUT_WR)
        try:
            part = b.rump_sys_recv(s, 1 << 20, 0)
            got += part
            busy = busy or bool(part)
        except OSError as e:
            if e.errno != errno.EWOULDBLOCK:
                raise
        if not busy:
            a.rump_sys_poll([pollfd(c, POLLOUT if sent < total else POLLIN)], 1, 100)
            b.rump_sys_poll([pollfd(s, POLLIN)], 1, 100)
    for k, fd in ((a, c), (b, s), (b, lfd)):
        k.rump_sys_close(fd)
    return bytes(got)


class VNet:
    """Kernels on a scheduler of their own, wired together on segments whose names are unique to this VNet; ``close()`` halts them."""

    def __init__(self, virtual: bool = True) -> None:
        self.virtual = virtual
        self.sched = Scheduler(virtual=virtual)
        self.kernels: list[Kernel] = []
        self.tag = f"t{os.getpid()}x{next(_ids)}"
        self._ping_ids = itertools.count(0x100)

    def kernel(self, seed: int = 1, **kw: Any) -> Kernel:
        """Boot a kernel on this VNet's scheduler with ``seed`` (``kw``: other rump_init options, such as ``hostname``)."""
        k = rump_init(clock="virtual" if self.virtual else "real", seed=seed, scheduler=self.sched, **kw)
        self.kernels.append(k)
        return k

    def seg(self, name: str) -> str:
        """A wire segment name unique to this test."""
        return f"{self.tag}-{name}"

    def attach(self, k: Kernel, ifname: str, seg: str, addr: str | None) -> Ifnet:
        """Give kernel ``k`` interface ``ifname`` on segment ``seg`` with address ``addr`` (``a.b.c.d/n``), up."""
        k.config.if_create(ifname)
        k.config.if_set_linkstr(ifname, self.seg(seg))
        if addr is not None:
            k.config.addr_add(ifname, addr)
        k.config.if_up(ifname)
        return net_kernel(k).ifnet.lookup(ifname)

    def pair(self, a_addr: str = "10.0.0.1/24", b_addr: str = "10.0.0.2/24", seg: str = "lan",
             seeds: tuple[int, int] = (1, 2)) -> tuple[Kernel, Kernel]:
        """Two kernels on one segment, 10.0.0.1 and 10.0.0.2."""
        a, b = self.kernel(seeds[0]), self.kernel(seeds[1])
        self.attach(a, "wire0", seg, a_addr)
        self.attach(b, "wire0", seg, b_addr)
        return a, b

    def ping(self, k: Kernel, dst: str, *, ttl: int | None = None, payload: bytes = b"rumpnet ping",
             timeout: float = 3.0, fd: int | None = None) -> bytes | None:
        """One echo request to ``dst``; the answering IP packet or None after ``timeout``."""
        own = fd is None
        if fd is None:
            fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        try:
            k.rump_sys_setsockopt(fd, socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeout)
            if ttl is not None:
                k.rump_sys_setsockopt(fd, socket.IPPROTO_IP, socket.IP_TTL, ttl)
            ident, seq = next(self._ping_ids), 1
            k.rump_sys_sendto(fd, icmp_echo(ident, seq, payload), 0, (dst, 0))
            deadline = k.clock_now() + timeout
            while True:
                try:
                    pkt, _ = k.rump_sys_recvfrom(fd, 65535, 0)
                except OSError as e:
                    if e.errno == errno.EAGAIN:
                        return None
                    raise
                if _answers(pkt, ident, seq):
                    return pkt
                if k.clock_now() >= deadline:
                    return None
        finally:
            if own:
                k.rump_sys_close(fd)

    def close(self) -> None:
        """Halt every kernel of this VNet."""
        if self.sched.background:
            self.sched.stop_background()
        for k in reversed(self.kernels):
            try:
                k.halt()
            except Exception:  # noqa: BLE001 -- teardown must go on
                pass
        self.kernels.clear()
        if not self.sched.loop.is_running():
            self.sched.loop.close()
