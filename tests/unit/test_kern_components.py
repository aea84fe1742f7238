"""The kern core knows no faction: rumpkern imports nothing of rumpnet, a kernel boots
without the net faction and answers sysctl, factions fill the syscall and command tables
through the component registry, and a halted kernel refuses every call."""

from __future__ import annotations

import ast
import errno
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from rumpkern import rump_init
from rumpkern.component import default_components, library_component, registry
from rumpkern.sched import Scheduler

RUMPKERN = Path(__file__).resolve().parents[2] / "rumpkern"


def _run_python(code: str) -> dict[str, object]:
    """Run ``code`` in a fresh interpreter; it prints one JSON object as its last line."""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    result: dict[str, object] = json.loads(r.stdout.strip().splitlines()[-1])
    return result


def test_no_module_under_rumpkern_imports_rumpnet() -> None:
    """Not at top level, not inside a function, not under TYPE_CHECKING."""
    offenders = []
    for path in sorted(RUMPKERN.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            offenders += [f"{path.name}:{node.lineno}: {n}" for n in names if n.split(".")[0] == "rumpnet"]
    assert offenders == []


def test_importing_rumpkern_loads_no_rumpnet_module() -> None:
    code = """
import importlib, json, pkgutil, sys
import rumpkern
from rumpkern import rump_init, Kernel, Scheduler, current_kernel, rump_sys_socket
for mod in pkgutil.iter_modules(rumpkern.__path__):
    importlib.import_module("rumpkern." + mod.name)
print(json.dumps({"rumpnet": sorted(m for m in sys.modules if m.split(".")[0] == "rumpnet"),
                  "rumpkern": sorted(m for m in sys.modules if m.startswith("rumpkern."))}))
"""
    out = _run_python(code)
    assert out["rumpnet"] == []
    assert "rumpkern.kernel" in out["rumpkern"] and "rumpkern.component" in out["rumpkern"]


def test_the_kern_core_boots_without_the_net_faction_and_answers_sysctl() -> None:
    code = """
import errno, json, socket, sys
from rumpkern import rump_init
k = rump_init(clock="virtual", components=(), hostname="bare")
out = {"components": k.components, "hostname": k.sysctl("kern.hostname"),
       "write": k.sysctl("-w", "kern.hostname=other"), "ostype": k.rump_sys___sysctl("kern.ostype"),
       "mib": k.rump_sys___sysctl([1, 10]), "all": k.sysctl("-a")}
def errno_of(fn, *args):
    try:
        fn(*args)
    except OSError as e:
        return e.errno
out["socket"] = errno_of(k.rump_sys_socket, socket.AF_INET, socket.SOCK_DGRAM, 0)
out["ifconfig"] = errno_of(k.ifconfig, "-a")
out["open"] = errno_of(k.rump_sys_open, "/x", 0)
out["close"] = errno_of(k.rump_sys_close, 3)
k.halt()
out["rumpnet"] = sorted(m for m in sys.modules if m.split(".")[0] == "rumpnet")
print(json.dumps(out))
"""
    out = _run_python(code)
    assert out["components"] == []
    assert out["hostname"] == "kern.hostname = bare\n"
    assert out["write"] == "kern.hostname: bare -> other\n"
    assert out["ostype"] == "NetBSD" and out["mib"] == "other"
    assert "kern.sbmax = " in str(out["all"]) and "net." not in str(out["all"])
    assert out["socket"] == errno.ENOSYS  # no component provides socket(2)
    assert out["ifconfig"] == errno.ENOENT  # ifconfig: command not found
    assert out["open"] == errno.ENOSYS
    assert out["close"] == errno.EBADF  # close(2) is the kern's own
    assert out["rumpnet"] == []  # booting the core alone never even looks a faction up


def test_rump_init_with_no_arguments_loads_the_default_components() -> None:
    k = rump_init(clock="virtual")
    assert k.components == ["vfs", "net", "netinet", "netinet6", "wire", "shmif", "virtif", "netcfg"]
    assert set(k.components) == set(default_components())
    assert {"socket", "sendto", "recvfrom", "close", "__sysctl", "open"} <= set(k.sysent)
    assert {"ifconfig", "route", "arp", "sysctl", "netstat", "ping", "tc"} <= set(k.commands)
    k.halt()


def test_factions_register_library_names_and_the_sockin_option() -> None:
    assert library_component("rumpnet_netinet") == "netinet"
    assert library_component("rumpvfs") == "vfs"
    assert library_component("rumpkern") is None and library_component("rumpnet_local") is None
    assert library_component("shmif") == "shmif"
    assert "sockin" in registry() and not registry()["sockin"].default
    k = rump_init(clock="virtual", sockin=True, scheduler=Scheduler(virtual=True))
    assert "sockin" in k.components and "netinet" not in k.components
    assert k.inet is None and socket.AF_INET in k.domains
    k.halt()


def test_sockin_kernel_refuses_what_it_cannot_configure_through_the_command_table() -> None:
    k = rump_init(clock="virtual", sockin=True, scheduler=Scheduler(virtual=True))
    with pytest.raises(OSError) as ei:
        k.ifconfig("-a")
    assert ei.value.errno == errno.EOPNOTSUPP
    assert k.sysctl("kern.ostype") == "kern.ostype = NetBSD\n"
    k.halt()


def test_a_halted_kernel_refuses_every_call() -> None:
    sched = Scheduler(virtual=True)
    k = rump_init(clock="virtual", scheduler=sched)
    cfg = k.config
    fd = k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0)
    proc = k.curproc
    k.rump_sys_reboot()
    assert k.halted
    calls = [
        lambda: k.rump_sys_socket(socket.AF_INET, socket.SOCK_DGRAM, 0),
        lambda: k.rump_sys_close(fd),
        lambda: k.rump_sys_sendto(fd, b"x", 0, ("127.0.0.1", 7)),
        lambda: k.rump_sys___sysctl("kern.hostname"),
        lambda: k.rump_sys_open("/x", 0),
        lambda: k.rump_pub_etfs_register("/x", "/etc/hostname", 0),
        lambda: k.rump_pub_lwproc_rfork(0),
        lambda: k.ifconfig("-a"),
        lambda: k.sysctl("kern.hostname"),
        lambda: k.sysctl("-a"),
        lambda: k.sysctl("-w", "kern.hostname=x"),
        lambda: k.route("show"),
        lambda: k.route("add", "default", "10.0.0.1"),
        lambda: k.arp("-a"),
        lambda: k.ndp("-a"),
        lambda: k.ping6("-c", "1", "::1"),
        lambda: k.rtadvd("lo0"),
        lambda: k.run_command("ifconfig", ["-a"]),
        lambda: k.run_in(proc, lambda ctx, p: None),
        lambda: k.rump_pub_lwproc_switch(proc),
        lambda: k.rump_pub_lwproc_releaselwp(),
        lambda: k.rump_pub_etfs_remove("/x"),
        lambda: k.netstat("-s"),
        lambda: k.ping("-c", "1", "127.0.0.1"),
        lambda: k.tc("qdisc", "show"),
        lambda: k.config,
        lambda: cfg.if_list(),
        lambda: cfg.if_create("wire0"),
        lambda: cfg.sysctl_get("kern.hostname"),
        lambda: k.socket(),
        lambda: k.run_for(1),
        lambda: k.serve_background(),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(OSError) as ei:
            call()
        assert ei.value.errno == errno.ENXIO, i
    k.halt()  # idempotent
