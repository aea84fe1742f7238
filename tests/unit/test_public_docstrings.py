"""Every public name of the modules users call has a docstring (issue 16: 43 of 48 Kernel
methods, NetConfig and the stream classes had none), so help() and ``make docs`` say what
each does. Internal modules (the protocol implementations) are not held to this here."""

from __future__ import annotations

import importlib
import inspect

import pytest

PUBLIC_MODULES = [
    "rumpkern", "rumpkern.kernel", "rumpkern.sched", "rumpkern.unawaited", "rumpkern.options",
    "rumpkern.syscall_docs", "rumpkern.lwproc", "rumpnet", "rumpnet.netconfig", "rumpnet.socket",
    "rumpnet.streams", "rumpnet.rumpclient", "rumpnet.bpf", "rumpnet.usage", "rumpnet.mirror",
    "rumpnet.commands", "rumpnet.commands.cli", "rumpnet.hijack", "rumpnet.server.rump_server",
    "rumpnet.faults.network", "rumpnet.faults.toxics", "rumpnet.faults.http_api", "rumpnet.faults.scenario",
    "rumpnet.faults.params", "rumpnet.faults.schedule", "rumpnet.faults.netem", "rumpnet.faults.runner",
    "rumpnet.faults.injector", "rumpnet.faults.tc", "rumpnet.testing.pytest_plugin", "rumpnet.testing.vnet",
    "rumpnet.testing.netns", "rumpnet.testing.procs", "rumpnet.router", "rumpnet.router.config",
    "rumpnet.router.main",
]


def _undocumented(modname: str) -> list[str]:
    mod = importlib.import_module(modname)
    missing = [] if inspect.getdoc(mod) else [modname]
    exported = getattr(mod, "__all__", None)
    for name, obj in vars(mod).items():
        if name.startswith("_") or (exported is not None and name not in exported):
            continue
        if not (inspect.isclass(obj) or inspect.isfunction(obj)) or getattr(obj, "__module__", modname) != modname:
            if not (modname == "rumpkern" and name.startswith("rump_sys_")):
                continue
        if not (obj.__doc__ or "").strip():
            missing.append(name)
        if inspect.isclass(obj):
            for mname, member in vars(obj).items():
                if mname.startswith("_"):
                    continue
                if (inspect.isfunction(member) or isinstance(member, property)) and not (member.__doc__ or "").strip():
                    missing.append(f"{name}.{mname}")
    return missing


@pytest.mark.parametrize("modname", PUBLIC_MODULES)
def test_public_names_have_docstrings(modname: str) -> None:
    assert _undocumented(modname) == []


def test_the_kernel_calls_say_what_they_do() -> None:
    from rumpkern import Kernel, rump_sys_recv
    from rumpnet.rumpclient import RumpClient

    assert Kernel.rump_sys_bind.__doc__.startswith("bind(2): ")
    assert RumpClient.rump_sys_bind.__doc__.startswith("bind(2): ") and "rump_server" in RumpClient.rump_sys_bind.__doc__
    assert rump_sys_recv.__doc__.startswith("recv(2): ") and "current kernel" in rump_sys_recv.__doc__
    assert "ifconfig(8)" in Kernel.ifconfig.__doc__
