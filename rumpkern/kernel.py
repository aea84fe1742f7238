"""The kernel object and ``rump_init``.

``k = rump_init(clock="virtual", seed=1)`` boots a kernel: sysctl tree, process table,
and the components in NetBSD's order (``rumpkern.component``; by default those of every
installed faction that asks to be loaded by default: the net faction's interfaces, netinet
and link drivers). Many kernels can live in one process; those booted from one thread with
the same clock share a scheduler (one virtual CPU) and can be wired together.
"""

from __future__ import annotations

import errno
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

from rumpkern.component import (
    Command,
    Component,
    KernelApi,
    SyscallImpl,
    boot_option,
    default_components,
    library_component,
    registry,
)
from rumpkern.errno import kerr
from rumpkern.lwproc import Proc, ProcTable, close_file
from rumpkern.options import check_options, env_number, env_seed
from rumpkern.sched import Scheduler, default_scheduler
from rumpkern.syscall_docs import document
from rumpkern.syscalls import (
    Buffer,
    SockAddr,
    SYS___sysctl,
    SYS_accept,
    SYS_bind,
    SYS_close,
    SYS_connect,
    SYS_fcntl,
    SYS_fstat,
    SYS_getdents,
    SYS_getpeername,
    SYS_getsockname,
    SYS_getsockopt,
    SYS_ioctl,
    SYS_listen,
    SYS_lseek,
    SYS_open,
    SYS_poll,
    SYS_pread,
    SYS_pwrite,
    SYS_read,
    SYS_recv,
    SYS_recvfrom,
    SYS_recvmsg,
    SYS_sendmsg,
    SYS_sendto,
    SYS_setsockopt,
    SYS_shutdown,
    SYS_socket,
    SYS_write,
    SysEnt,
    sys_close,
    sys_nosys,
)
from rumpkern.sysctl import CLOCKINFO, CTL_KERN, KERN_HOSTNAME, SysctlTree, sys___sysctl
from rumpkern.sysctl_cmd import sysctl as sysctl_command

T = TypeVar("T")

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
    """``$NAME`` as an integer; a value that is none is an error naming the variable
    (``RUMP_VERBOSE=yes`` was silently 0)."""
    value = env_number(name, default, "an integer")
    if value != int(value):
        raise ValueError(f"{name}={os.environ.get(name)!r}: not an integer")
    return int(value)


class Kernel:
    """One rump kernel. System calls are ``rump_sys_*`` methods; commands are
    ``ifconfig``/``route``/``arp``/``sysctl``/``netstat``/``ping``/``tc``.

    The kern core itself has the sysctl tree, processes and their fd tables, ``close`` and
    ``__sysctl``, and the ``sysctl`` command. Everything else comes from the components
    loaded at boot (``rumpkern.component``): the net faction adds ``k.net``, ``k.ifnet``,
    ``k.domains`` and, with netinet, ``k.inet``, and fills the syscall and command tables.
    A halted kernel refuses every call with ENXIO.
    """

    def __init__(self, sched: Scheduler, seed: int, hostname: str, components: tuple[str, ...],
                 memlimit: int | None = None, verbose: bool = False) -> None:
        self.sched = sched
        self.seed = seed
        self.boottime = sched.now()  # kernel clock at boot: uptime is now() - boottime
        self.boot_index = sched.boots
        sched.boots += 1
        # The one random source: seeded from the user's seed and the boot order on this
        # scheduler, so the n-th kernel of a scenario draws the same numbers in every run
        # (a scenario on the thread's default virtual scheduler starts on a fresh one once
        # the kernels of the previous one are all halted: rumpkern.sched.default_scheduler).
        self.rng = random.Random(f"rumpnet:{seed}:{self.boot_index}")
        self.hostname = hostname
        self.memlimit = memlimit
        self.verbose = verbose
        self.halted = False
        self.sysctl_tree = SysctlTree()
        self.procs = ProcTable(self)
        self._lwp = threading.local()
        self.components: list[str] = []
        # What the components loaded at boot provide (the kern's own entries first).
        self.sysent: dict[str, SyscallImpl] = {SYS_close.name: sys_close, SYS___sysctl.name: sys___sysctl}
        self.commands: dict[str, Command] = {"sysctl": sysctl_command}
        self.apis: dict[str, KernelApi] = {}
        self._memlimit_hooks: list[Callable[[Kernel, int], None]] = []
        self._halt_hooks: list[Callable[[Kernel], None]] = []
        # Largest socket buffer a process may ask for (SB_MAX), lowered by RUMP_MEMLIMIT.
        self.sb_max = 4 * 1024 * 1024
        self._sysctl_kern()
        self._boot(components)
        if memlimit:
            self._apply_memlimit(memlimit)
        sched.kernel_booted(self)

    def __repr__(self) -> str:
        return f"<Kernel {self.hostname} seed={self.seed}>"

    # -- boot --------------------------------------------------------------------------
    def _boot(self, names: tuple[str, ...]) -> None:
        if not names:
            return  # the kern core alone: no faction is even looked up
        reg = registry()
        wanted: list[str] = []
        for given in names:
            name = library_component(given)
            if name is None:
                continue  # a NetBSD library with nothing to load here (rumpkern, ...)
            if name not in reg:
                raise kerr(errno.ENOENT, f"unknown component {name} (components: {', '.join(sorted(reg))})")
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
            self._attach(comp)

    def _attach(self, comp: Component) -> None:
        """Install what ``comp`` provides, then run its init (``rump_component_init``)."""
        self.sysent.update(comp.syscalls)
        self.commands.update(comp.commands)
        self.apis.update(comp.apis)
        if comp.memlimit is not None:
            self._memlimit_hooks.append(comp.memlimit)
        if comp.halt is not None:
            self._halt_hooks.append(comp.halt)
        comp.init(self)
        self.components.append(comp.name)

    def _sysctl_kern(self) -> None:
        t = self.sysctl_tree
        t.add_node("kern", num=CTL_KERN)
        t.add_string("kern.hostname", lambda: self.hostname, self._set_hostname, num=KERN_HOSTNAME)
        t.add_string("kern.ostype", lambda: "NetBSD", num=1)
        t.add_string("kern.osrelease", lambda: "10.0", num=2)
        t.add_struct("kern.clockrate", lambda: CLOCKINFO, num=12)
        t.add_int("kern.sbmax", lambda: self.sb_max, self._set_sb_max, num=81)
        # Strict mode of this kernel's scheduler (shared by the kernels on it): see
        # rumpkern/strict.py and rump_init(strict=).
        t.bind_int("kern.strict", self.sched.errors, "strict", minval=0, maxval=1,
                   desc="internal errors raise in the next call instead of being logged")

    def _set_sb_max(self, value: int) -> None:
        """NetBSD's sb_max_set: the largest socket buffer, at least 16 KB."""
        if value < 16 * 1024:
            raise kerr(errno.EINVAL)
        self.sb_max = value

    def _apply_memlimit(self, limit: int) -> None:
        """Cap what packets can pin: socket buffers and reassembly queues get a share of
        the limit each (NetBSD sizes sb_max and the reassembly limits from physmem); each
        component caps its own through its memlimit hook."""
        share = max(4096, limit // 16)
        self.sb_max = min(self.sb_max, share)
        for hook in self._memlimit_hooks:
            hook(self, share)

    def _set_hostname(self, name: str) -> None:
        if len(name) > 255:
            raise kerr(errno.EINVAL)
        self.hostname = name

    def clock_now(self) -> float:
        """The kernel clock in seconds (virtual or real, as the kernel was booted)."""
        return self.sched.now()

    def check_up(self) -> None:
        """Refuse a call to a halted kernel (ENXIO), as every entry point does."""
        if self.halted:
            raise kerr(errno.ENXIO, f"kernel {self.hostname} is halted")

    # -- processes -----------------------------------------------------------------------
    @property
    def curproc(self) -> Proc:
        """The calling thread's current process in this kernel (proc0 unless switched)."""
        p: Proc | None = getattr(self._lwp, "proc", None)
        return p if p is not None else self.procs.proc0

    def rump_pub_lwproc_rfork(self, flags: int) -> Proc:
        """Make a new process from the current one and switch this thread to it."""
        self.check_up()
        p = self.procs.rfork(self.curproc, flags)
        self._lwp.proc = p
        return p

    def rump_pub_lwproc_switch(self, p: Proc | None) -> None:
        self.check_up()
        self._lwp.proc = p

    def rump_pub_lwproc_releaselwp(self) -> None:
        """Exit the current process (its files close when their last reference goes)."""
        self.check_up()
        p = self.curproc
        if p is self.procs.proc0:
            raise kerr(errno.EINVAL)
        self.sched.run(lambda: self.procs.exit(p))
        self._lwp.proc = None

    def run_in(self, p: Proc, fn: Callable[..., T], *args: object) -> T:
        """Run system call ``fn(ctx, p, *args)`` as process ``p`` (how rump_server runs a
        client's calls)."""
        self.check_up()
        return self.sched.syscall(fn, p, *args)

    # -- current-kernel context ------------------------------------------------------------
    def __enter__(self) -> Kernel:
        stack: list[Kernel] | None = getattr(_current, "stack", None)
        if stack is None:
            stack = _current.stack = []
        stack.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _current.stack.pop()

    def halt(self) -> None:
        """``rump_sys_reboot``: close every file, then let the components stop (the net
        faction detaches interfaces, closing taps and buses). Idempotent; afterwards every
        call on this kernel fails with ENXIO."""
        if self.halted:
            return

        def do_halt() -> None:
            for p in list(self.procs.procs.values()):
                for fd in list(p.fdt.files):
                    fp = p.fdt.files.pop(fd)
                    fp.refcount -= 1
                    if fp.refcount <= 0:
                        close_file(fp)
            for hook in self._halt_hooks:
                hook(self)

        with self.sched.errors.held():  # halting works after an internal error
            self.sched.run(do_halt)
        self.halted = True
        if self in _last_booted:
            _last_booted.remove(self)
        self.sched.kernel_halted(self)  # may raise SchedulerStuck: the kernel is halted first

    # -- running the CPU -------------------------------------------------------------------
    def run_for(self, seconds: float) -> None:
        """Let the kernels on this scheduler run for ``seconds`` of kernel time."""
        self.check_up()
        self.sched.run_for(seconds)

    def serve_background(self) -> None:
        """Serve this kernel's scheduler from a thread of its own (the default for a
        real-clock kernel unless ``RUMP_THREADS=0``)."""
        self.check_up()
        self.sched.start_background()

    def stop_background(self) -> None:
        """Stop serving in the background: the kernels are driven by calls from then on."""
        self.sched.stop_background()

    # -- system calls ----------------------------------------------------------------------
    def _sys(self, ent: SysEnt[T], *args: object) -> T:
        self.check_up()
        fn = self.sysent.get(ent.name)
        if fn is None:
            raise sys_nosys(ent.name)
        return cast(T, self.sched.syscall(fn, self.curproc, *args))

    def rump_sys_socket(self, domain: int, type: int, protocol: int = 0) -> int:  # noqa: A002
        return self._sys(SYS_socket, domain, type, protocol)

    def rump_sys_bind(self, fd: int, addr: SockAddr) -> None:
        return self._sys(SYS_bind, fd, addr)

    def rump_sys_connect(self, fd: int, addr: SockAddr) -> None:
        return self._sys(SYS_connect, fd, addr)

    def rump_sys_listen(self, fd: int, backlog: int) -> None:
        return self._sys(SYS_listen, fd, backlog)

    def rump_sys_accept(self, fd: int) -> tuple[int, SockAddr]:
        return self._sys(SYS_accept, fd)

    def rump_sys_send(self, fd: int, data: Buffer, flags: int = 0) -> int:
        return self._sys(SYS_sendto, fd, data, flags, None)

    def rump_sys_sendto(self, fd: int, data: Buffer, flags: int, addr: SockAddr) -> int:
        return self._sys(SYS_sendto, fd, data, flags, addr)

    def rump_sys_recv(self, fd: int, n: int, flags: int = 0) -> bytes:
        return self._sys(SYS_recv, fd, n, flags)

    def rump_sys_recvfrom(self, fd: int, n: int, flags: int = 0) -> tuple[bytes, SockAddr]:
        return self._sys(SYS_recvfrom, fd, n, flags)

    def rump_sys_recvmsg(self, fd: int, n: int, ancbufsize: int = 0,
                         flags: int = 0) -> tuple[bytes, list[tuple[int, int, bytes]], int, SockAddr]:
        """recvmsg(2) as Python's ``socket.recvmsg``: (data, ancillary data, flags, address)."""
        return self._sys(SYS_recvmsg, fd, n, ancbufsize, flags)

    def rump_sys_sendmsg(self, fd: int, buffers: Sequence[Buffer], ancdata: Sequence[tuple[int, int, Buffer]] = (),
                         flags: int = 0, addr: SockAddr | None = None) -> int:
        """sendmsg(2) as Python's ``socket.sendmsg``."""
        return self._sys(SYS_sendmsg, fd, buffers, ancdata, flags, addr)

    def rump_sys_shutdown(self, fd: int, how: int) -> None:
        return self._sys(SYS_shutdown, fd, how)

    def rump_sys_close(self, fd: int) -> None:
        return self._sys(SYS_close, fd)

    def rump_sys_getsockname(self, fd: int) -> SockAddr:
        return self._sys(SYS_getsockname, fd)

    def rump_sys_getpeername(self, fd: int) -> SockAddr:
        return self._sys(SYS_getpeername, fd)

    def rump_sys_setsockopt(self, fd: int, level: int, opt: int, value: object) -> None:
        return self._sys(SYS_setsockopt, fd, level, opt, value)

    def rump_sys_getsockopt(self, fd: int, level: int, opt: int, buflen: int = 0) -> int | bytes:
        return self._sys(SYS_getsockopt, fd, level, opt, buflen)

    def rump_sys_poll(self, fds: Sequence[object], nfds: int | None = None, timeout: int = -1) -> int:
        return self._sys(SYS_poll, fds, nfds, timeout)

    def rump_sys_fcntl(self, fd: int, cmd: int, arg: int = 0) -> int:
        return self._sys(SYS_fcntl, fd, cmd, arg)

    def rump_sys_ioctl(self, fd: int, request: int, arg: int | Buffer = 0) -> int:
        return self._sys(SYS_ioctl, fd, request, arg)

    def rump_sys___sysctl(self, name: str | Sequence[int], namelen: int | None = None,
                          oldp: bytearray | None = None, oldlenp: object = None, newp: object = None,
                          newlen: int = 0) -> int | str | bytes:
        return self._sys(SYS___sysctl, name, namelen, oldp, oldlenp, newp, newlen)

    def rump_sys_reboot(self, howto: int = 0, bootstr: object = None) -> None:
        self.check_up()
        self.halt()

    # -- files of the vfs component (etfs, rump_etfs(3)) ---------------------------------------
    def _pub(self, name: str, *args: object) -> object:
        """A ``rump_pub_*`` entry point or API some component provides (ENOSYS if none)."""
        self.check_up()
        fn = self.apis.get(name)
        if fn is None:
            raise sys_nosys(name)
        return fn(self, *args)

    def rump_pub_etfs_register(self, key: str, hostpath: str, ftype: int) -> None:
        self._pub("etfs_register", key, hostpath, ftype)

    def rump_pub_etfs_register_withsize(self, key: str, hostpath: str, ftype: int, begin: int, size: int) -> None:
        self._pub("etfs_register_withsize", key, hostpath, ftype, begin, size)

    def rump_pub_etfs_remove(self, key: str) -> None:
        self._pub("etfs_remove", key)

    def rump_sys_open(self, path: str | bytes, flags: int, mode: int = 0) -> int:
        return self._sys(SYS_open, path, flags, mode)

    def rump_sys_read(self, fd: int, n: int) -> bytes:
        return self._sys(SYS_read, fd, n)

    def rump_sys_write(self, fd: int, data: Buffer) -> int:
        return self._sys(SYS_write, fd, data)

    def rump_sys_pread(self, fd: int, n: int, offset: int) -> bytes:
        return self._sys(SYS_pread, fd, n, offset)

    def rump_sys_pwrite(self, fd: int, data: Buffer, offset: int) -> int:
        return self._sys(SYS_pwrite, fd, data, offset)

    def rump_sys_lseek(self, fd: int, offset: int, whence: int) -> int:
        return self._sys(SYS_lseek, fd, offset, whence)

    def rump_sys_fstat(self, fd: int) -> object:
        return self._sys(SYS_fstat, fd)

    def rump_sys_getdents(self, fd: int, count: int = 1024) -> list[str]:
        return self._sys(SYS_getdents, fd, count)

    # -- commands (NetBSD syntax, text output; OSError on failure) ------------------------------
    def run_command(self, name: str, argv: Sequence[object]) -> str | Awaitable[str]:
        """Run the command ``name`` of whatever component provides it (ENOENT if none)."""
        self.check_up()
        fn = self.commands.get(name)
        if fn is None:
            raise OSError(errno.ENOENT, f"{name}: command not found")
        return fn(self, [str(a) for a in argv])

    def _text(self, name: str, args: tuple[object, ...]) -> str:
        out = self.run_command(name, args)
        if not isinstance(out, str):  # only ping waits, and only on the scheduler's loop
            raise TypeError(f"{name} returned {type(out).__name__}, not its output")
        return out

    def ifconfig(self, *args: object) -> str:
        return self._text("ifconfig", args)

    def route(self, *args: object) -> str:
        return self._text("route", args)

    def arp(self, *args: object) -> str:
        return self._text("arp", args)

    def sysctl(self, *args: object) -> str:
        return self._text("sysctl", args)

    def netstat(self, *args: object) -> str:
        return self._text("netstat", args)

    def ping(self, *args: object) -> str | Awaitable[str]:
        """ping's output; an awaitable of it when called from a coroutine on the loop."""
        return self.run_command("ping", args)

    def ping6(self, *args: object) -> str | Awaitable[str]:
        """ping6's output; an awaitable of it when called from a coroutine on the loop."""
        return self.run_command("ping6", args)

    def ndp(self, *args: object) -> str:
        return self._text("ndp", args)

    def rtadvd(self, *args: object) -> str:
        return self._text("rtadvd", args)

    def tc(self, *args: object) -> str:
        return self._text("tc", args)

    # -- the structured API (provided by the net faction) ------------------------------------
    @property
    def config(self) -> Any:
        """The structured configuration API of the faction that provides ``config``
        (rumpnet.netconfig.NetConfig: its type belongs to the faction, so the kern core
        can only say Any; the faction's own code uses NetConfig directly)."""
        self.check_up()
        cfg = self.__dict__.get("_config")
        if cfg is None:
            cfg = self.__dict__["_config"] = self._pub("config")
        return cfg

    def socket(self, family: int = 2, type: int = 1, proto: int = 0) -> Any:  # noqa: A002
        """A ``socket.socket``-shaped object on this kernel (rumpnet.socket.RumpSocket)."""
        return self._pub("socket", family, type, proto)


def rump_init(clock: str = "real", seed: int | None = None, sockin: bool = False,
              hostname: str | None = None, scheduler: Scheduler | None = None,
              components: tuple[str, ...] | list[str] | None = None, memlimit: int | None = None,
              verbose: bool | None = None, threads: bool | None = None,
              strict: bool | None = None) -> Kernel:
    """Boot a kernel and make it the current one (the target of the module-level calls).

    ``clock``: ``"real"`` or ``"virtual"``. ``seed``: the one random source (default:
    ``$RUMP_SEED``, else 0 on virtual time and a fresh random seed on real time).
    ``sockin=True`` loads sockin instead of netinet. ``scheduler``: share (or supply) a
    CPU explicitly; by default kernels booted from one thread with one clock share one.
    ``components``: the components (or NetBSD library names) to load; by default those the
    installed factions load by default; ``()`` boots the kern core alone. ``threads``: a
    real-clock kernel's scheduler serves its loop from a thread of its own, so the kernel
    answers the network and runs its timers while the application is outside any call
    (default ``$RUMP_THREADS``, on unless 0); ``False`` keeps it driven by the calls made
    to it. The mode belongs to the scheduler, so it applies to every kernel on it.
    Virtual-clock kernels are always driven by calls (deterministic).
    ``strict``: strict mode for the scheduler (default ``$RUMP_STRICT``, else off): an
    exception out of protocol input, a timer or a callback raises ``KernelInternalError``
    in the next call instead of being logged (rumpkern/strict.py).
    """
    if clock not in ("real", "virtual"):
        raise ValueError(f"clock must be 'real' or 'virtual', not {clock!r}")
    check_options(seed, sockin, hostname, components, memlimit, verbose)
    virtual = clock == "virtual"
    if virtual and threads:
        raise ValueError("virtual-clock kernels are driven by calls: threads=True needs clock='real'")
    if scheduler is None:
        scheduler = default_scheduler(virtual, threads)
    elif scheduler.virtual != virtual and clock == "virtual":
        raise ValueError("scheduler's clock does not match clock=")
    if threads is not None and not virtual and threads != scheduler.threads:
        if threads:
            if not scheduler.owns_loop:
                raise ValueError("threads=True: this scheduler's loop is run by someone else (a coroutine)")
            scheduler.threads = True  # starts serving when this kernel has booted
        else:
            scheduler.stop_background()
    if seed is None:
        env = env_seed()
        if env is not None:
            seed = env
        elif virtual:
            seed = 0
        else:
            seed = int.from_bytes(os.urandom(4), "big")
    comps = default_components() if components is None else list(components)
    if sockin:  # the faction that provides sockin says what it means
        comps = boot_option("sockin")(comps, components is not None)
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
    """The kernel the module-level ``rump_sys_*`` calls act on: the innermost ``with k:``
    of this thread, else the last booted (ENXIO when none is)."""
    stack: list[Kernel] | None = getattr(_current, "stack", None)
    if stack:
        return stack[-1]
    if _last_booted:
        return _last_booted[-1]
    raise kerr(errno.ENXIO, "no kernel booted: call rump_init() first")


document(Kernel)  # the rump_sys_*/rump_pub_* methods' docstrings (rumpkern.syscall_docs)
