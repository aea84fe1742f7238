"""Host-side test set-up: network namespaces, links and peer programs (pyroute2).

Interop tests put the Linux kernel on the other side of a tap inside a namespace the test
makes. Everything here is meant for fixtures that clean up in ``finally``::

    with NetNS("rnt") as ns:
        drv = VirtifDriver(unique_ifname("rnt"))
        try:
            move_link_to_netns(drv.tapname, ns)
            ns_configure(ns, drv.tapname, "10.99.1.1/24")
            ns_run(ns, ["ping", "-c1", "-W1", "10.99.1.2"])
        finally:
            drv.detach()

Names carry the creating process's pid and a counter (``rnt-4711-3``), so parallel runs
do not collide and :func:`cleanup_stale` can remove what killed runs left behind without
touching namespaces of runs still alive. Only namespaces, links and processes this module
created are ever removed or killed.

Address and link configuration goes through pyroute2; ``ip netns exec`` is used only to
run peer programs inside a namespace. Calls are safe from a thread running an asyncio
loop (pyroute2's synchronous API is then used on a worker thread).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from rumpnet.virtif.hostif import TUN_DEV, link_exists, link_info, off_loop

__all__ = [
    "NetNS", "have_netns_privileges", "unique_name", "unique_ifname", "netns_exists",
    "list_netns", "move_link_to_netns", "ns_configure", "ns_run", "ns_popen", "ns_python",
    "ns_python_popen", "ns_pids", "cleanup_stale", "link_exists", "link_info", "tap_peer",
    "pid_alive",
]

_counter = itertools.count(1)
_counter_lock = threading.Lock()
IFNAMSIZ = 16


def _next() -> int:
    with _counter_lock:
        return next(_counter)


def unique_name(prefix: str = "rn") -> str:
    """A namespace name unique to this process and call: ``{prefix}-{pid}-{n}``."""
    return f"{prefix}-{os.getpid()}-{_next()}"


def unique_ifname(prefix: str = "rn") -> str:
    """An interface name (at most 15 characters) unique to this process and call:
    ``{prefix}{pid}x{n}``."""
    name = f"{prefix}{os.getpid()}x{_next()}"
    if len(name) >= IFNAMSIZ:
        raise ValueError(f"interface name {name!r} too long; use a shorter prefix")
    return name


# -- privileges ------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def have_netns_privileges() -> tuple[bool, str]:
    """(True, "") if tests can make namespaces and taps here, else (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root (euid 0) for network namespaces and tap devices"
    if not os.path.exists(TUN_DEV):
        return False, f"{TUN_DEV} is missing"
    try:
        os.close(os.open(TUN_DEV, os.O_RDWR))
    except OSError as e:
        return False, f"cannot open {TUN_DEV}: {e}"
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` is not installed (needed for `ip netns exec`)"
    try:
        import pyroute2  # noqa: F401
        import pytun  # noqa: F401
    except ImportError as e:
        return False, f"missing module: {e}"
    try:
        with NetNS("rnchk") as ns:
            r = ns_run(ns, ["true"], timeout=10)
            if r.returncode != 0:
                return False, f"`ip netns exec` failed: {r.stderr.strip()}"
    except Exception as e:  # noqa: BLE001 -- any failure means "cannot"
        return False, f"cannot create a network namespace: {e}"
    return True, ""


# -- namespaces ------------------------------------------------------------------------
def list_netns() -> list[str]:
    """The names of the network namespaces ``ip netns`` knows."""
    from pyroute2 import netns

    return sorted(netns.listnetns())


def netns_exists(name: str) -> bool:
    """True when namespace ``name`` exists."""
    return name in list_netns()


def ns_pids(name: str) -> list[int]:
    """Pids of processes whose network namespace is ``name``."""
    path = f"/run/netns/{name}"
    try:
        st = os.stat(path)
    except OSError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            s = os.stat(f"/proc/{entry}/ns/net")
        except OSError:
            continue
        if (s.st_dev, s.st_ino) == (st.st_dev, st.st_ino):
            pids.append(int(entry))
    return pids


def _kill_ns_pids(name: str) -> None:
    me = os.getpid()
    for pid in ns_pids(name):
        if pid == me:
            continue
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_netns(name: str) -> None:
    from pyroute2 import netns

    _kill_ns_pids(name)
    if name in netns.listnetns():
        netns.remove(name)


class NetNS:
    """A uniquely named network namespace, deleted (with the processes still in it and
    the virtual links in it) when the ``with`` block exits, also on error. Its loopback
    is brought up unless ``lo_up=False``."""

    def __init__(self, name_prefix: str = "rn", *, lo_up: bool = True) -> None:
        self.name = unique_name(name_prefix)
        self.lo_up = lo_up
        self.created = False

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<NetNS {self.name}>"

    def create(self) -> NetNS:
        """Make the namespace (with its loopback up); returns self."""
        from pyroute2 import netns

        off_loop(netns.create, self.name)
        self.created = True
        if self.lo_up:
            try:
                off_loop(_link_set_up, self.name, "lo")
            except BaseException:
                self.remove()
                raise
        return self

    def remove(self) -> None:
        """Delete the namespace (and what is left in it)."""
        if self.created:
            self.created = False
            off_loop(_remove_netns, self.name)

    @property
    def exists(self) -> bool:
        """True while the namespace exists."""
        return netns_exists(self.name)

    def __enter__(self) -> NetNS:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


NsLike = NetNS | str


def _nsname(ns: NsLike) -> str:
    return ns.name if isinstance(ns, NetNS) else ns


# -- links and addresses ---------------------------------------------------------------
def _iproute(ns: str | None) -> Any:
    from pyroute2 import IPRoute

    return IPRoute(netns=ns, flags=0) if ns else IPRoute()


def _index(ipr: Any, ifname: str) -> int:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        raise LookupError(f"no interface {ifname!r}")
    return int(idx[0])


def _link_set_up(ns: str, ifname: str) -> None:
    with _iproute(ns) as ipr:
        ipr.link("set", index=_index(ipr, ifname), state="up")


def _move(ifname: str, dest: str, source: str | None) -> None:
    with _iproute(source) as ipr:
        ipr.link("set", index=_index(ipr, ifname), net_ns_fd=dest)


def move_link_to_netns(ifname: str, ns: NsLike, from_ns: NsLike | None = None) -> None:
    """Move host interface ``ifname`` (from ``from_ns``, default this namespace) into ``ns``.
    Linux brings a moved link down and drops its addresses."""
    off_loop(_move, ifname, _nsname(ns), _nsname(from_ns) if from_ns is not None else None)


Route = Mapping[str, Any] | tuple[str, str]


def _configure(ns: str | None, ifname: str, addrs: Sequence[str], up: bool, routes: Iterable[Route],
               lo_up: bool, mtu: int | None, lladdr: str | None) -> None:
    with _iproute(ns) as ipr:
        idx = _index(ipr, ifname)
        if lo_up:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
        kw: dict[str, Any] = {}
        if mtu is not None:
            kw["mtu"] = mtu
        if lladdr is not None:
            kw["address"] = lladdr
        if kw:
            ipr.link("set", index=idx, **kw)
        for a in addrs:
            iface = ipaddress.ip_interface(a)
            ipr.addr("add", index=idx, address=str(iface.ip), prefixlen=iface.network.prefixlen)
        if up:
            ipr.link("set", index=idx, state="up")
        for r in routes:
            if isinstance(r, tuple):
                dst, gw = r
                spec: dict[str, Any] = {"gateway": gw}
                if dst != "default":
                    spec["dst"] = dst
            else:
                spec = dict(r)
            spec.setdefault("oif", idx)
            ipr.route("add", **spec)


def ns_configure(ns: NsLike | None, ifname: str, addr: str | Sequence[str] | None = None, *, up: bool = True,
                 routes: Iterable[Route] = (), lo_up: bool = True, mtu: int | None = None,
                 lladdr: str | None = None) -> None:
    """Configure ``ifname`` inside ``ns`` (``None``: this namespace): addresses
    (``"10.99.1.2/24"`` or a list), MTU, MAC, link up, loopback up, then routes, each a
    ``(dst, gateway)`` tuple (``dst`` may be ``"default"`` or ``"10.1.0.0/16"``) or a dict
    of pyroute2 ``route("add", ...)`` arguments."""
    addrs = [] if addr is None else [addr] if isinstance(addr, str) else list(addr)
    off_loop(_configure, _nsname(ns) if ns is not None else None, ifname, addrs, up, list(routes), lo_up,
             mtu, lladdr)


# -- programs in a namespace -----------------------------------------------------------
def _ns_argv(ns: NsLike, argv: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", _nsname(ns), *argv]


def ns_run(ns: NsLike, argv: Sequence[str], timeout: float = 30.0, *, check: bool = False,
           stdin_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``argv`` inside ``ns`` and wait (text output captured). A process still running
    at ``timeout`` is killed and ``subprocess.TimeoutExpired`` raised."""
    return subprocess.run(_ns_argv(ns, argv), capture_output=True, text=True, timeout=timeout,
                          check=check, input=stdin_text)


class NsProcess:
    """A long-running process in a namespace (from :func:`ns_popen`)."""

    def __init__(self, popen: subprocess.Popen[str]) -> None:
        self.popen = popen
        self.pid = popen.pid

    def wait(self, timeout: float | None = None) -> int:
        return self.popen.wait(timeout)

    def communicate(self, data: str | None = None, timeout: float | None = None) -> tuple[str, str]:
        out, err = self.popen.communicate(data, timeout)
        return out or "", err or ""

    def poll(self) -> int | None:
        return self.popen.poll()

    @property
    def stdin(self) -> Any:
        return self.popen.stdin

    @property
    def stdout(self) -> Any:
        return self.popen.stdout

    def kill(self) -> None:
        """Kill the process group it leads (``ip netns exec`` and the program) and reap."""
        p = self.popen
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.communicate(timeout=5)


@contextlib.contextmanager
def ns_popen(ns: NsLike, argv: Sequence[str], *, stdin: bool = False, **kwargs: Any) -> Iterator[NsProcess]:
    """Start ``argv`` inside ``ns`` in its own session; it is killed when the block exits.

    stdout and stderr are pipes (text); ``stdin=True`` gives a stdin pipe as well."""
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    p = subprocess.Popen(_ns_argv(ns, argv), stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                         text=True, start_new_session=True, **kwargs)
    proc = NsProcess(p)
    try:
        yield proc
    finally:
        proc.kill()


def ns_python(ns: NsLike, code: str, timeout: float = 30.0, *, args: Sequence[str] = (),
              check: bool = False, stdin_text: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run a Python snippet inside ``ns`` (this interpreter, ``python -c code args...``)."""
    return ns_run(ns, [sys.executable, "-c", code, *args], timeout=timeout, check=check, stdin_text=stdin_text)


def ns_python_popen(ns: NsLike, code: str, *, args: Sequence[str] = (),
                    **kwargs: Any) -> contextlib.AbstractContextManager[NsProcess]:
    """:func:`ns_popen` of a Python snippet (unbuffered, so a peer can print "ready")."""
    return ns_popen(ns, [sys.executable, "-u", "-c", code, *args], **kwargs)


# -- leftovers of killed runs ----------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie (killed, not yet reaped)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    state = stat[stat.rfind(b")") + 2: stat.rfind(b")") + 3]
    return state not in (b"Z", b"X")


def _stale_links(prefix: str) -> list[str]:
    pat = re.compile(rf"^{re.escape(prefix)}(\d+)x\d+$")
    out = []
    with _iproute(None) as ipr:
        for msg in ipr.get_links():
            name = msg.get_attr("IFLA_IFNAME") or ""
            m = pat.match(name)
            if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
                out.append(name)
    return out


def _del_links(names: list[str]) -> None:
    with _iproute(None) as ipr:
        for name in names:
            idx = ipr.link_lookup(ifname=name)
            if idx:
                with contextlib.suppress(Exception):
                    ipr.link("del", index=idx[0])


def cleanup_stale(prefix: str = "rn") -> list[str]:
    """Remove namespaces ``{prefix}-{pid}-{n}`` and host links ``{prefix}{pid}x{n}`` left
    by runs whose process ``pid`` is gone (killing the processes still inside those
    namespaces). Returns the names removed. Live runs' objects are left alone."""
    pat = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+$")
    removed = []
    for name in list_netns():
        m = pat.match(name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            off_loop(_remove_netns, name)
            removed.append(name)
    links = off_loop(_stale_links, prefix)
    if links:
        off_loop(_del_links, links)
        removed.extend(links)
    return removed


@contextlib.contextmanager
def tap_peer(k: Any, kernel_addr: str, peer_addr: str, *, ifname: str = "virt0", prefix: str = "rtp",
             routes: Iterable[Route] = (), linkopts: str = "", serve: bool = True) -> Iterator[tuple[NetNS, str]]:
    """Kernel ``k``'s interface ``ifname`` on a new host tap whose Linux end is in a new
    network namespace: ``peer_addr`` (ADDR/LEN) there, with ``routes``; ``kernel_addr``
    (ADDR/LEN) on the kernel's interface. ``linkopts`` is appended to the tap's name in
    the interface's linkstr (``nooffload``, for plain frames).

    A real-clock kernel serves its scheduler from a thread of its own by default, so
    Linux programs in the namespace get answers while the test does other things; for a
    kernel driven by calls (``threads=False``, ``RUMP_THREADS=0``) ``serve`` (the default)
    has it served while the block runs. Yields (namespace, tap name). On exit, also when the
    block raised, the interface is destroyed (closing the tap, which then disappears) and
    the namespace removed with whatever still runs in it."""
    tap = unique_ifname(prefix)
    with NetNS(prefix) as ns:
        created = served = False
        try:
            k.config.if_create(ifname)
            created = True
            k.config.if_set_linkstr(ifname, f"{tap},{linkopts}" if linkopts else tap)
            move_link_to_netns(tap, ns)
            ns_configure(ns, tap, peer_addr, routes=routes)
            k.config.addr_add(ifname, kernel_addr)
            k.config.if_up(ifname)
            if serve and not k.sched.background:
                k.serve_background()
                served = True
            yield ns, tap
        finally:
            try:
                if created:
                    k.config.if_destroy(ifname)
            finally:
                if served:
                    k.stop_background()
