"""Components (NetBSD's ``RUMP_COMPONENT()``): what factions and drivers add to a kernel.

The kern core knows no faction. A faction is a Python module that registers its components
here when it is imported; the kern finds the installed factions through the entry-point
group ``rumpkern.factions`` (NetBSD finds its components in a link set) and imports them
the first time a component is looked up, i.e. at the first boot that asks for one. A
kernel booted with ``components=()`` loads no faction at all.

A component brings, besides its ``init(k)`` (run at ``rump_init`` in level order, the
order of ``sys/rump/include/rump/rumpuser_component.h``: the kernel first, then the
networking domains, interface cloners, interface configuration):

* ``syscalls``: implementations for entries of the syscall table (``rumpkern.syscalls``),
  as a faction fills NetBSD's ``sysent``; ``k.rump_sys_socket`` dispatches through it;
* ``commands``: the tools it answers (``k.ifconfig`` runs the ``ifconfig`` entry);
* ``apis``: other kernel entry points it implements (``k.config``, ``k.socket``,
  ``rump_pub_etfs_register``);
* ``memlimit``: a hook that caps what it can pin when ``RUMP_MEMLIMIT`` is set;
* ``halt``: a hook run when the kernel halts, after its files are closed.

Factions also register NetBSD's library names (``rump_library``: ``rumpnet_netinet`` ->
``netinet``, as ``rump_server -l`` takes them) and the meaning of boot options
(``rump_boot_option``: what ``rump_init(sockin=True)`` loads).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import warnings
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

RUMP_COMPONENT_KERN = 0
RUMP_COMPONENT_DEV = 10
RUMP_COMPONENT_VFS = 15
RUMP_COMPONENT_NET = 20
RUMP_COMPONENT_NET_ROUTE = 21
RUMP_COMPONENT_NET_IF = 22
RUMP_COMPONENT_NET_IFCFG = 23

# Where installed factions announce themselves (pyproject's [project.entry-points]).
FACTION_ENTRY_POINTS = "rumpkern.factions"

# A command: the kernel and the tool's arguments in, the tool's output out (an awaitable
# of it where the tool waits, as ping does when called on the scheduler's loop).
Command = Callable[["Kernel", list[str]], "str | Awaitable[str]"]
# A system call implementation: (ctx, proc, *args) -> result; see rumpkern.syscalls.
SyscallImpl = Callable[..., object]
# Any other kernel entry point a faction implements: (kernel, *args) -> result.
KernelApi = Callable[..., object]
# A boot option's meaning: (the components asked for, were they named explicitly) -> the
# components to load.
BootOption = Callable[[list[str], bool], list[str]]


@dataclass
class Component:
    name: str
    level: int
    init: Callable[[Kernel], None]
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()
    default: bool = False  # loaded by rump_init() when no components are named
    syscalls: Mapping[str, SyscallImpl] = field(default_factory=dict)
    commands: Mapping[str, Command] = field(default_factory=dict)
    apis: Mapping[str, KernelApi] = field(default_factory=dict)
    memlimit: Callable[[Kernel, int], None] | None = None
    halt: Callable[[Kernel], None] | None = None


_registry: dict[str, Component] = {}
_boot_options: dict[str, BootOption] = {}

# NetBSD's library names, as rump_server -l takes them; None: nothing to load here.
# The kern core's own; factions add theirs with rump_library().
LIBRARY_ALIASES: dict[str, str | None] = {"rumpkern": None, "rumpdev": None}

_factions_lock = threading.Lock()
_factions_loaded = False


def rump_component(name: str, level: int, requires: tuple[str, ...] = (), conflicts: tuple[str, ...] = (),
                   *, default: bool = False, syscalls: Mapping[str, SyscallImpl] | None = None,
                   commands: Mapping[str, Command] | None = None, apis: Mapping[str, KernelApi] | None = None,
                   memlimit: Callable[[Kernel, int], None] | None = None,
                   halt: Callable[[Kernel], None] | None = None) -> Callable[[Callable[[Kernel], None]], Callable[[Kernel], None]]:
    """Decorator registering ``init`` as component ``name`` (``RUMP_COMPONENT(level)``)."""

    def register(init: Callable[[Kernel], None]) -> Callable[[Kernel], None]:
        _registry[name] = Component(name, level, init, requires, conflicts, default, dict(syscalls or {}),
                                    dict(commands or {}), dict(apis or {}), memlimit, halt)
        return init

    return register


def rump_library(library: str, component: str | None) -> None:
    """Map a NetBSD library name (``rumpnet_shmif``) to the component it loads."""
    LIBRARY_ALIASES[library] = component


def rump_boot_option(name: str, meaning: BootOption) -> None:
    """Give ``rump_init(name=True)`` its meaning: a rewrite of the component list."""
    _boot_options[name] = meaning


def load_factions() -> None:
    """Import every installed faction once (they register their components)."""
    global _factions_loaded
    if _factions_loaded:
        return
    with _factions_lock:
        if _factions_loaded:
            return
        found = entry_points(FACTION_ENTRY_POINTS)
        if not found:
            warnings.warn(f"no faction is installed (entry-point group {FACTION_ENTRY_POINTS!r} is empty): "
                          "kernels boot with the kern core only; is the package installed (pip install -e .)?",
                          RuntimeWarning, stacklevel=3)
        for name in sorted(found):
            importlib.import_module(found[name].partition(":")[0])
        _factions_loaded = True


def entry_points(group: str) -> dict[str, str]:
    """The entry points of ``group`` (name -> "module:attr") of the installed
    distributions, first on ``sys.path`` first, as ``importlib.metadata`` finds them: read
    from their ``entry_points.txt`` directly, because importing ``importlib.metadata``
    costs a tenth of a second of every program's start."""
    found: dict[str, str] = {}
    for entry in sys.path:
        try:
            names = sorted(os.listdir(entry or "."))
        except OSError:
            continue
        for name in names:
            if name.endswith((".dist-info", ".egg-info")):
                for ep_name, value in _group_of(os.path.join(entry or ".", name, "entry_points.txt"), group):
                    found.setdefault(ep_name, value)
    return found


def _group_of(path: str, group: str) -> list[tuple[str, str]]:
    """``name = value`` lines of section ``[group]`` of an entry_points.txt (INI)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    out: list[tuple[str, str]] = []
    section = None
    for line in lines:
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1].strip()
        elif section == group and "=" in line and not line.startswith(("#", ";")):
            name, _, value = line.partition("=")
            out.append((name.strip(), value.strip()))
    return out


def registry() -> dict[str, Component]:
    """All components of the installed factions, by name."""
    load_factions()
    return _registry


def library_component(library: str) -> str | None:
    """The component a NetBSD library name loads (the name itself when it is no alias)."""
    load_factions()
    return LIBRARY_ALIASES.get(library, library)


def default_components() -> list[str]:
    """What ``rump_init()`` loads when no components are named, in registration order."""
    return [c.name for c in registry().values() if c.default]


def boot_option(name: str) -> BootOption:
    load_factions()
    try:
        return _boot_options[name]
    except KeyError:
        raise ValueError(f"no installed faction gives the boot option {name}=") from None
