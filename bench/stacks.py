"""The stacks under test, each brought up as a server the Linux client in a namespace talks to.

Every stack is a context manager yielding a :class:`Target` (the namespace the client runs
in and the server's address). Everything is created under the ``rbn`` prefix
(``rbn-PID-N`` namespaces, ``rbnPIDxN`` links) and removed on exit; the server processes
run inside the namespaces, so removing a namespace also kills what runs there.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import rumpkern  # noqa: F401  (first: importing rumpnet.virtif before rumpkern can be circular)
from rumpnet.testing.netns import NetNS, move_link_to_netns, ns_configure, ns_popen, ns_run, unique_ifname
from rumpnet.virtif.hostif import off_loop

PREFIX = "rbn"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVE = os.path.join(ROOT, "examples", "services", "serve.py")
PEERS = os.path.join(ROOT, "bench", "peers")
VENVS = os.path.join(ROOT, "bench", ".venvs")

PEER_SPECS = {  # stack -> (venv dir, pip requirement, import name, server script)
    "pytcp": ("pytcp", "PyTCP==2.7.6", "pytcp", "pytcp_serve.py"),
    "pmd-pytcp": ("pmd-pytcp", "pmd-pytcp==0.3.8", "pmd_pytcp", "pmd_pytcp_serve.py"),
}


class StackUnavailable(Exception):
    """The stack cannot run here; the message says why (reported as n/a)."""


@dataclass
class Target:
    stack: str
    ns: NetNS
    host: str
    info: dict[str, Any] = field(default_factory=dict)
    host6: str | None = None     # the server's IPv6 address, for the IPv6 rows (None: no IPv6)

    def over_ip6(self) -> Target:
        """The same server reached over IPv6 (``host`` its IPv6 address)."""
        if self.host6 is None:
            raise StackUnavailable(f"{self.stack}: no IPv6 in this stack's server")
        return Target(self.stack, self.ns, self.host6, self.info, self.host6)


def ip6_of(index: int, host: int) -> str:
    """Host ``host`` of stack ``index``'s IPv6 prefix (fc00:97:INDEX::/64)."""
    return f"fc00:97:{index}::{host}"


def no_dad(ns: NetNS, ifname: str | None = None) -> None:
    """Linux in ``ns`` uses IPv6 addresses at once (no DAD, on the links it is given from
    now on and on ``ifname``): the namespaces are ours, nobody else is on their links."""
    names = ["default", "all"] + ([ifname] if ifname else [])
    script = "; ".join(f"echo 0 > /proc/sys/net/ipv6/conf/{n}/accept_dad" for n in names)
    ns_run(ns, ["sh", "-c", script], timeout=10, check=True)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _read_ready(proc: Any, timeout: float) -> dict[str, Any]:
    """The server's JSON "ready" line, or StackUnavailable with its stderr."""
    out = proc.stdout
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        r, _, _ = select.select([out], [], [], 0.2)
        if r:
            line = out.readline()
            if not line:
                break
            with contextlib.suppress(ValueError):
                msg = json.loads(line)
                if isinstance(msg, dict) and msg.get("ready"):
                    return msg
    err = ""
    if proc.poll() is not None:
        with contextlib.suppress(Exception):
            err = proc.popen.stderr.read()[-800:]
    raise StackUnavailable(f"server did not become ready in {timeout:.0f}s: {err.strip() or 'no output'}")


def wait_reachable(ns: NetNS, host: str, timeout: float = 30.0) -> float:
    """Ping until ``host`` answers (stacks differ in how long ARP/ACD/ND take); seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        r = ns_run(ns, ["ping", "-c", "1", "-W", "1", host], timeout=5)
        if r.returncode == 0:
            return time.monotonic() - t0
        time.sleep(0.2)
    raise StackUnavailable(f"{host} did not answer ping within {timeout:.0f}s")


def wait_tcp(ns: NetNS, host: str, port: int = 7, timeout: float = 20.0) -> None:
    code = ("import socket,sys,time\n"
            "t=time.time()\n"
            "while time.time()-t<float(sys.argv[3]):\n"
            "    try:\n"
            "        s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=1)\n"
            "        s.sendall(b'x'); s.recv(1); s.close(); sys.exit(0)\n"
            "    except OSError: time.sleep(0.2)\n"
            "sys.exit(1)\n")
    r = ns_run(ns, [sys.executable, "-c", code, host, str(port), str(timeout)], timeout=timeout + 10)
    if r.returncode != 0:
        raise StackUnavailable(f"TCP echo on {host}:{port} not answering within {timeout:.0f}s")


# -- virtif capabilities ---------------------------------------------------------------
def virtif_offload() -> tuple[str | None, str]:
    """(offload mode to ask for, description): TSO, which the driver steps down from by
    itself (to checksums only, or plain frames) if the host refuses; ``offload_mode`` in
    the server's ready line says what was granted."""
    from rumpnet.virtif.if_virt import OFFLOAD_MODES

    return "tso", f"offload=tso (modes: {list(OFFLOAD_MODES)})"


# -- the stacks ------------------------------------------------------------------------
def tune_client_ns(ns: NetNS) -> None:
    """The client namespace's Linux may reuse its TIME_WAIT ports for new connections
    (``tcp_tw_reuse=1``; the default 2 allows it on loopback only). Without it the
    connection-rate workload measures Linux's ephemeral-port search instead of the
    stack under test: three runs of 5,000 connections leave ~15,000 ports in TIME_WAIT
    and the rate of every stack falls by half, then by 85%. The same for every stack."""
    ns_run(ns, ["sh", "-c", "echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse"], timeout=10, check=True)


@contextlib.contextmanager
def rumpnet_stack(index: int, offload: str | None = None) -> Iterator[Target]:
    name = "rumpnet-offload" if offload else "rumpnet-plain"
    with NetNS(PREFIX) as ns:
        tap = unique_ifname(PREFIX)
        host, mine = f"10.97.{index}.2", f"10.97.{index}.1/24"
        host6 = ip6_of(index, 2)
        argv = [sys.executable, "-u", SERVE, "--tap", tap, "--address", f"{host}/24", "--seed", "1",
                "--address6", f"{host6}/64"]
        if offload:
            argv += ["--offload", offload]
        no_dad(ns)
        with ns_popen(ns, argv) as proc:
            info = _read_ready(proc, 30)
            ns_configure(ns, tap, [mine, f"{ip6_of(index, 1)}/64"])
            for addr in (host, host6):
                wait_reachable(ns, addr)
                wait_tcp(ns, addr)
            tune_client_ns(ns)
            yield Target(name, ns, host, info, host6)


@contextlib.contextmanager
def linux_stack(index: int) -> Iterator[Target]:
    """Linux on both ends: client namespace <-> veth <-> server namespace running the same
    Python services (asyncio, uvloop if installed) on kernel sockets."""
    with NetNS(PREFIX) as client_ns, NetNS(PREFIX) as server_ns:
        a, b = unique_ifname(PREFIX), unique_ifname(PREFIX)
        off_loop(_veth_add, a, b)
        try:
            move_link_to_netns(a, client_ns)
            move_link_to_netns(b, server_ns)
        except BaseException:
            off_loop(_link_del, a)
            raise
        host, host6 = f"10.97.{index}.2", ip6_of(index, 2)
        no_dad(client_ns, a)
        no_dad(server_ns, b)
        ns_configure(client_ns, a, [f"10.97.{index}.1/24", f"{ip6_of(index, 1)}/64"])
        ns_configure(server_ns, b, [f"{host}/24", f"{host6}/64"])
        with ns_popen(server_ns, [sys.executable, "-u", SERVE, "--host-stack", "--address6", "any"]) as proc:
            info = _read_ready(proc, 30)
            for addr in (host, host6):
                wait_reachable(client_ns, addr)
                wait_tcp(client_ns, addr)
            tune_client_ns(client_ns)
            yield Target("linux", client_ns, host, info, host6)


def _veth_add(a: str, b: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        ipr.link("add", ifname=a, kind="veth", peer=b)


def _link_del(name: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=name)
        if idx:
            ipr.link("del", index=idx[0])


def peer_python(stack: str) -> str:
    return os.path.join(VENVS, PEER_SPECS[stack][0], "bin", "python")


def peer_ready(stack: str) -> bool:
    py = peer_python(stack)
    if not os.path.exists(py):
        return False
    r = subprocess.run([py, "-c", f"import {PEER_SPECS[stack][2]}"], capture_output=True, timeout=60)
    return r.returncode == 0


def ensure_peer_venv(stack: str, create: bool) -> str:
    """The peer's venv python, creating the venv and installing from PyPI if asked."""
    venv, req, mod, _ = PEER_SPECS[stack]
    if peer_ready(stack):
        return peer_python(stack)
    if not create:
        raise StackUnavailable(f"skipped: venv bench/.venvs/{venv} absent (quick mode does not create it; "
                               f"a full run does)")
    path = os.path.join(VENVS, venv)
    log(f"{stack}: creating venv {path} and installing {req} from PyPI")
    base = getattr(sys, "_base_executable", sys.executable)
    r = subprocess.run([base, "-m", "venv", "--clear", path], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise StackUnavailable(f"cannot create venv: {r.stderr.strip()[-300:]}")
    r = subprocess.run([os.path.join(path, "bin", "pip"), "install", "-q", req], capture_output=True, text=True,
                       timeout=900)
    if r.returncode != 0 or not peer_ready(stack):
        raise StackUnavailable(f"cannot install {req}: {r.stderr.strip()[-300:]}")
    return peer_python(stack)


@contextlib.contextmanager
def peer_stack(stack: str, index: int, create_venv: bool) -> Iterator[Target]:
    py = ensure_peer_venv(stack, create_venv)
    script = os.path.join(PEERS, PEER_SPECS[stack][3])
    with NetNS(PREFIX) as ns:
        tap = unique_ifname(PREFIX)
        host = f"10.97.{index}.2"
        # -O: PyTCP guards its per-packet logging with ``__debug__ and log(...)``
        with ns_popen(ns, [py, "-O", "-u", script, tap, f"{host}/24"]) as proc:
            info = _read_ready(proc, 60)
            ns_configure(ns, tap, f"10.97.{index}.1/24")
            wait_reachable(ns, host, 60)
            wait_tcp(ns, host)
            r = subprocess.run([py, "-c", f"import importlib.metadata as m; print(m.version('{PEER_SPECS[stack][1].split('==')[0]}'))"],
                               capture_output=True, text=True, timeout=60)
            info["version"] = r.stdout.strip()
            tune_client_ns(ns)
            yield Target(stack, ns, host, info)

