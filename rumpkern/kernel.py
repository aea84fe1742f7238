"""The kernel object and ``rump_init``.

``k = rump_init(clock="virtual", seed=1)`` boots a kernel: sysctl tree, process table,
interfaces, and the components in NetBSD's order. Many kernels can live in one process;
those booted from one thread with the same clock share a scheduler (one virtual CPU) and
can be wired together.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Callable
from typing import Any

from rumpkern.component import LIBRARY_ALIASES, registry
from rumpkern.errno import kerr
from rumpkern.lwproc import Proc, ProcTable
from rumpkern.sched import Scheduler, default_scheduler
from rumpkern.sysctl import CTL_KERN, KERN_HOSTNAME, SysctlTree
from rumpnet import sys_socket as S  # noqa: N812
from rumpnet.ifnet import IfnetRegistry

DEFAULT_COMPONENTS = ("net", "netinet", "wire", "shmif", "virtif", "netcfg")

_current = threading.local()
_last_booted: list[Kernel] = []


def parse_memlimit(text: str) -> int:
    """``RUMP_MEMLIMIT`` as rump(3) takes it: bytes, with an optional k/m/g suffix, or a
    percentage of the host's memory (``50%``)."""
    t = text.strip().lower()
    try:
        if t.endswith("%"):
            pct = float(t[:-1])
            if not 0 < pct <= 100:
                raise ValueError
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
            return int(total * pct / 100)
        mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(t[-1:], 1)
        value = int(t[:-1] if mult != 1 else t)
    except ValueError:
        raise kerr(errno.EINVAL, f"RUMP_MEMLIMIT: bad value {text!r}") from None
    if value <= 0:
        raise kerr(errno.EINVAL, f"RUMP_MEMLIMIT: bad value {text!r}")
    return value * mult


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


class Kernel:
    """One rump kernel. System calls are ``rump_sys_*`` methods; commands are
    ``ifconfig``/``route``/``arp``/``sysctl``/``netstat``/``ping``/``tc``."""

    def __init__(self, sched: Scheduler, seed: int, hostname: str, components: tuple[str, ...],
                 memlimit: int | None = None, verbose: bool = False) -> None:
        self.sched = sched
        self.seed = seed
        self.boot_index = sched.boots
        sched.boots += 1
        # The one random source: seeded from the user's seed and the boot order, so the
        # n-th kernel of a scenario draws the same numbers in every run.
        self.rng = random.Random(f"rumpnet:{seed}:{self.boot_index}")
        self.hostname = hostname
        self.memlimit = memlimit
        self.verbose = verbose
        self.halted = False
        self.sysctl_tree = SysctlTree()
        self.procs = ProcTable(self)
        self._lwp = threading.local()
        self.ifnet = IfnetRegistry(self)
        self.domains: dict[int, Any] = {}
        self.net: Any = None
        self.inet: Any = None
        self.components: list[str] = []
        # Largest socket buffer a process may ask for (SB_MAX), lowered by RUMP_MEMLIMIT.
        self.sb_max = 4 * 1024 * 1024
        self._sysctl_kern()
        self._boot(components)
        if memlimit:
            self._apply_memlimit(memlimit)
        sched.kernels.append(self)

    def __repr__(self) -> str:
        return f"<Kernel {self.hostname} seed={self.seed}>"

    # -- boot --------------------------------------------------------------------------
    def _boot(self, names: tuple[str, ...]) -> None:
        reg = registry()
        wanted: list[str] = []
        for given in names:
            name = LIBRARY_ALIASES.get(given, given)
            if name is None:
                continue  # a NetBSD library with nothing to load here (rumpvfs, ...)
            if name not in reg:
                raise kerr(errno.ENOENT, f"unknown component {name}")
            wanted.append(name)
        # Requirements pull in their dependencies.
        i = 0
        while i < len(wanted):
            for dep in reg[wanted[i]].requires:
                if dep not in wanted:
                    wanted.append(dep)
            i += 1
        for name in wanted:
            for other in reg[name].conflicts:
                if other in wanted:
                    raise kerr(errno.EINVAL, f"components {name} and {other} cannot be loaded together")
        for comp in sorted((reg[n] for n in set(wanted)), key=lambda c: (c.level, wanted.index(c.name))):
            comp.init(self)
            self.components.append(comp.name)

    def _sysctl_kern(self) -> None:
        t = self.sysctl_tree
        t.add_node("kern", num=CTL_KERN)
        t.add_string("kern.hostname", lambda: self.hostname, self._set_hostname, num=KERN_HOSTNAME)
        t.add_string("kern.ostype", lambda: "NetBSD", num=1)
        t.add_string("kern.osrelease", lambda: "10.0", num=2)
        t.add_int("kern.clockrate", lambda: 100, num=12)
        t.add_int("kern.sbmax", lambda: self.sb_max, num=81)
        # Strict mode of this kernel's scheduler (shared by the kernels on it): see
        # rumpkern/strict.py and rump_init(strict=).
        t.bind_int("kern.strict", self.sched.errors, "strict", minval=0, maxval=1,
                   desc="internal errors raise in the next call instead of being logged")

    def _apply_memlimit(self, limit: int) -> None:
        """Cap what packets can pin: socket buffers and reassembly queues get a share of
        the limit each (NetBSD sizes sb_max and the reassembly limits from physmem)."""
        share = max(4096, limit // 16)
        self.sb_max = min(self.sb_max, share)
        inet = self.inet
        if inet is None:
            return
        inet.udp_params.sendspace = min(inet.udp_params.sendspace, share)
        inet.udp_params.recvspace = min(inet.udp_params.recvspace, share)
        inet.ip_params.maxfrags = max(1, min(inet.ip_params.maxfrags, share // 1500))
        inet.ip_params.maxfragpackets = max(1, min(inet.ip_params.maxfragpackets, inet.ip_params.maxfrags))
        tcp = inet.tcp
        if tcp is not None:
            p = tcp.params
            p.sendspace = min(p.sendspace, share)
            p.recvspace = min(p.recvspace, share)
            p.recvbuf_max = min(p.recvbuf_max, share)
            p.sendbuf_max = min(p.sendbuf_max, share)
            p.reass_maxbytes = min(p.reass_maxbytes, share)

    def _set_hostname(self, name: str) -> None:
        if len(name) > 255:
            raise kerr(errno.EINVAL)
        self.hostname = name

    def clock_now(self) -> float:
        return self.sched.now()

    # -- processes -----------------------------------------------------------------------
    @property
    def curproc(self) -> Proc:
        p = getattr(self._lwp, "proc", None)
        return p if p is not None else self.procs.proc0

    def rump_pub_lwproc_rfork(self, flags: int) -> Proc:
        """Make a new process from the current one and switch this thread to it."""
        p = self.procs.rfork(self.curproc, flags)
        self._lwp.proc = p
        return p

    def rump_pub_lwproc_switch(self, p: Proc | None) -> None:
        self._lwp.proc = p

    def rump_pub_lwproc_releaselwp(self) -> None:
        """Exit the current process (its files close when their last reference goes)."""
        p = self.curproc
        if p is self.procs.proc0:
            raise kerr(errno.EINVAL)
        self.sched.run(lambda: self.procs.exit(p, S.close_file))
        self._lwp.proc = None

    def run_in(self, p: Proc, fn: Callable[..., Any], *args: Any) -> Any:
        return self.sched.syscall(fn, p, *args)

    # -- current-kernel context ------------------------------------------------------------
    def __enter__(self) -> Kernel:
        stack = getattr(_current, "stack", None)
        if stack is None:
            stack = _current.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.stack.pop()

    def halt(self) -> None:
        """``rump_sys_reboot``: detach interfaces (closing taps and buses), close sockets."""
        if self.halted:
            return

        def do_halt() -> None:
            for p in list(self.procs.procs.values()):
                for fd in list(p.fdt.files):
                    fp = p.fdt.files.pop(fd)
                    fp.refcount -= 1
                    if fp.refcount <= 0:
                        S.close_file(fp)
            for ifp in self.ifnet.all():
                ifp.detach_driver()

        with self.sched.errors.held():  # halting works after an internal error
            self.sched.run(do_halt)
        self.halted = True
        if self in self.sched.kernels:
            self.sched.kernels.remove(self)
        if self in _last_booted:
            _last_booted.remove(self)

    # -- running the CPU -------------------------------------------------------------------
    def run_for(self, seconds: float) -> None:
        """Let the kernels on this scheduler run for ``seconds`` of kernel time."""
        self.sched.run_for(seconds)

    def serve_background(self) -> None:
        self.sched.start_background()

    def stop_background(self) -> None:
        self.sched.stop_background()

    # -- system calls ----------------------------------------------------------------------
    def _sys(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.sched.syscall(fn, self.curproc, *args)

    def rump_sys_socket(self, domain: int, type: int, protocol: int = 0) -> int:  # noqa: A002
        return self._sys(S.sys_socket, domain, type, protocol)  # type: ignore[no-any-return]

    def rump_sys_bind(self, fd: int, addr: Any) -> None:
        return self._sys(S.sys_bind, fd, addr)  # type: ignore[no-any-return]

    def rump_sys_connect(self, fd: int, addr: Any) -> None:
        return self._sys(S.sys_connect, fd, addr)  # type: ignore[no-any-return]

    def rump_sys_listen(self, fd: int, backlog: int) -> None:
        return self._sys(S.sys_listen, fd, backlog)  # type: ignore[no-any-return]

    def rump_sys_accept(self, fd: int) -> tuple[int, Any]:
        return self._sys(S.sys_accept, fd)  # type: ignore[no-any-return]

    def rump_sys_send(self, fd: int, data: Any, flags: int = 0) -> int:
        return self._sys(S.sys_sendto, fd, data, flags, None)  # type: ignore[no-any-return]

    def rump_sys_sendto(self, fd: int, data: Any, flags: int, addr: Any) -> int:
        return self._sys(S.sys_sendto, fd, data, flags, addr)  # type: ignore[no-any-return]

    def rump_sys_recv(self, fd: int, n: int, flags: int = 0) -> bytes:
        result = self._sys(_recv_data, fd, n, flags)
        return result  # type: ignore[no-any-return]

    def rump_sys_recvfrom(self, fd: int, n: int, flags: int = 0) -> tuple[bytes, Any]:
        return self._sys(S.sys_recvfrom, fd, n, flags)  # type: ignore[no-any-return]

    def rump_sys_shutdown(self, fd: int, how: int) -> None:
        return self._sys(S.sys_shutdown, fd, how)  # type: ignore[no-any-return]

    def rump_sys_close(self, fd: int) -> None:
        return self._sys(S.sys_close, fd)  # type: ignore[no-any-return]

    def rump_sys_getsockname(self, fd: int) -> Any:
        return self._sys(S.sys_getsockname, fd)

    def rump_sys_getpeername(self, fd: int) -> Any:
        return self._sys(S.sys_getpeername, fd)

    def rump_sys_setsockopt(self, fd: int, level: int, opt: int, value: Any) -> None:
        return self._sys(S.sys_setsockopt, fd, level, opt, value)  # type: ignore[no-any-return]

    def rump_sys_getsockopt(self, fd: int, level: int, opt: int, buflen: int = 0) -> Any:
        return self._sys(S.sys_getsockopt, fd, level, opt, buflen)

    def rump_sys_poll(self, fds: Any, nfds: int | None = None, timeout: int = -1) -> int:
        return self._sys(S.sys_poll, fds, nfds, timeout)  # type: ignore[no-any-return]

    def rump_sys_fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        return self._sys(S.sys_fcntl, fd, cmd, arg)  # type: ignore[no-any-return]

    def rump_sys_ioctl(self, fd: int, request: int, arg: Any = 0) -> int:
        return self._sys(S.sys_ioctl, fd, request, arg)  # type: ignore[no-any-return]

    def rump_sys___sysctl(self, name: Any, namelen: int | None = None, oldp: Any = None,
                          oldlenp: Any = None, newp: Any = None, newlen: int = 0) -> Any:
        return self._sys(S.sys___sysctl, name, namelen, oldp, oldlenp, newp, newlen)

    def rump_sys_reboot(self, howto: int = 0, bootstr: Any = None) -> None:
        self.halt()

    # -- etfs (rump_etfs(3)): host files by key; see rumpnet/server/etfs.py -------------------
    def rump_pub_etfs_register(self, key: str, hostpath: str, ftype: int) -> None:
        _etfs().etfs_of(self).register(key, hostpath, ftype)

    def rump_pub_etfs_register_withsize(self, key: str, hostpath: str, ftype: int, begin: int, size: int) -> None:
        _etfs().etfs_of(self).register(key, hostpath, ftype, begin, size, windowed=True)

    def rump_pub_etfs_remove(self, key: str) -> None:
        _etfs().etfs_of(self).remove(key)

    def rump_sys_open(self, path: Any, flags: int, mode: int = 0) -> int:
        return self._sys(_etfs().sys_open, path, flags, mode)  # type: ignore[no-any-return]

    def rump_sys_read(self, fd: int, n: int) -> bytes:
        return self._sys(_etfs().sys_read, fd, n)  # type: ignore[no-any-return]

    def rump_sys_write(self, fd: int, data: Any) -> int:
        return self._sys(_etfs().sys_write, fd, data)  # type: ignore[no-any-return]

    def rump_sys_pread(self, fd: int, n: int, offset: int) -> bytes:
        return self._sys(_etfs().sys_pread, fd, n, offset)  # type: ignore[no-any-return]

    def rump_sys_pwrite(self, fd: int, data: Any, offset: int) -> int:
        return self._sys(_etfs().sys_pwrite, fd, data, offset)  # type: ignore[no-any-return]

    def rump_sys_lseek(self, fd: int, offset: int, whence: int) -> int:
        return self._sys(_etfs().sys_lseek, fd, offset, whence)  # type: ignore[no-any-return]

    def rump_sys_fstat(self, fd: int) -> Any:
        return self._sys(_etfs().sys_fstat, fd)

    def rump_sys_getdents(self, fd: int, count: int = 1024) -> list[str]:
        return self._sys(_etfs().sys_getdents, fd, count)  # type: ignore[no-any-return]

    # -- commands (NetBSD syntax, text output; OSError on failure) ------------------------------
    def _command(self, name: str, args: tuple[str, ...]) -> Any:
        from rumpnet.commands import run_command

        return run_command(self, name, [str(a) for a in args])

    def ifconfig(self, *args: Any) -> str:
        return self._command("ifconfig", args)  # type: ignore[no-any-return]

    def route(self, *args: Any) -> str:
        return self._command("route", args)  # type: ignore[no-any-return]

    def arp(self, *args: Any) -> str:
        return self._command("arp", args)  # type: ignore[no-any-return]

    def sysctl(self, *args: Any) -> str:
        return self._command("sysctl", args)  # type: ignore[no-any-return]

    def netstat(self, *args: Any) -> str:
        return self._command("netstat", args)  # type: ignore[no-any-return]

    def ping(self, *args: Any) -> Any:
        return self._command("ping", args)

    def tc(self, *args: Any) -> str:
        return self._command("tc", args)  # type: ignore[no-any-return]

    # -- the structured API ------------------------------------------------------------------
    @property
    def config(self) -> Any:
        from rumpnet.netconfig import NetConfig

        cfg = self.__dict__.get("_config")
        if cfg is None:
            cfg = self.__dict__["_config"] = NetConfig(self)
        return cfg

    def socket(self, family: int = 2, type: int = 1, proto: int = 0) -> Any:  # noqa: A002
        """A ``socket.socket``-shaped object on this kernel."""
        from rumpnet.socket import RumpSocket

        return RumpSocket(self, family, type, proto)


def _etfs() -> Any:
    from rumpnet.server import etfs

    return etfs


def _recv_data(ctx: Any, p: Proc, fd: int, n: int, flags: int) -> bytes:
    data, _ = S.sys_recvfrom(ctx, p, fd, n, flags)
    return data


def rump_init(clock: str = "real", seed: int | None = None, sockin: bool = False,
              hostname: str | None = None, scheduler: Scheduler | None = None,
              components: tuple[str, ...] | list[str] | None = None, memlimit: int | None = None,
              verbose: bool | None = None, strict: bool | None = None) -> Kernel:
    """Boot a kernel and make it the current one (the target of the module-level calls).

    ``clock``: ``"real"`` or ``"virtual"``. ``seed``: the one random source (default:
    ``$RUMP_SEED``, else 0 on virtual time and a fresh random seed on real time).
    ``sockin=True`` loads sockin instead of netinet. ``scheduler``: share (or supply) a
    CPU explicitly; by default kernels booted from one thread with one clock share one.
    ``strict``: strict mode for the scheduler (default ``$RUMP_STRICT``, else off): an
    exception out of protocol input, a timer or a callback raises ``KernelInternalError``
    in the next call instead of being logged (rumpkern/strict.py).
    """
    if clock not in ("real", "virtual"):
        raise ValueError(f"clock must be 'real' or 'virtual', not {clock!r}")
    virtual = clock == "virtual"
    if scheduler is None:
        scheduler = default_scheduler(virtual)
    elif scheduler.virtual != virtual and clock == "virtual":
        raise ValueError("scheduler's clock does not match clock=")
    if seed is None:
        env = os.environ.get("RUMP_SEED")
        if env is not None:
            seed = int(env)
        elif virtual:
            seed = 0
        else:
            seed = int.from_bytes(os.urandom(4), "big")
    if components is None:
        comps = list(DEFAULT_COMPONENTS)
        if sockin:
            comps = [c for c in comps if c != "netinet"] + ["sockin"]
    else:
        comps = list(components)
        if sockin and "sockin" not in comps:
            comps.append("sockin")
    if memlimit is None and os.environ.get("RUMP_MEMLIMIT"):
        memlimit = parse_memlimit(os.environ["RUMP_MEMLIMIT"])
    if verbose is None:
        verbose = bool(_env_int("RUMP_VERBOSE", 0))
    if hostname is None:
        hostname = f"rump{len(scheduler.kernels)}"
    if strict is not None:
        scheduler.errors.strict = strict
    k = Kernel(scheduler, seed, hostname, tuple(comps), memlimit=memlimit, verbose=verbose)
    _last_booted.append(k)
    return k


def current_kernel() -> Kernel:
    stack = getattr(_current, "stack", None)
    if stack:
        return stack[-1]  # type: ignore[no-any-return]
    if _last_booted:
        return _last_booted[-1]
    raise kerr(errno.ENXIO, "no kernel booted: call rump_init() first")
