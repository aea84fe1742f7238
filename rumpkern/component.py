"""Components (NetBSD's ``RUMP_COMPONENT()``): initialised at ``rump_init`` in level order.

The levels follow ``sys/rump/include/rump/rumpuser_component.h``'s order: the kernel
first, then the networking domains, then interface cloners, then interface configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

RUMP_COMPONENT_KERN = 0
RUMP_COMPONENT_DEV = 10
RUMP_COMPONENT_NET = 20
RUMP_COMPONENT_NET_ROUTE = 21
RUMP_COMPONENT_NET_IF = 22
RUMP_COMPONENT_NET_IFCFG = 23


@dataclass
class Component:
    name: str
    level: int
    init: Callable[[Any], None]
    requires: tuple[str, ...] = ()
    conflicts: tuple[str, ...] = ()


_registry: dict[str, Component] = {}

# NetBSD's library names, as rump_server -l takes them.
LIBRARY_ALIASES = {
    "rumpnet": "net", "rumpnet_net": "net", "rumpnet_netinet": "netinet", "rumpnet_shmif": "shmif",
    "rumpnet_virtif": "virtif", "rumpnet_sockin": "sockin", "rumpnet_wire": "wire", "rumpdev": None,
    "rumpvfs": None, "rumpkern": None, "rumpnet_local": None,
}


def rump_component(name: str, level: int, requires: tuple[str, ...] = (),
                   conflicts: tuple[str, ...] = ()) -> Callable[[Callable[[Any], None]], Callable[[Any], None]]:
    def register(fn: Callable[[Any], None]) -> Callable[[Any], None]:
        _registry[name] = Component(name, level, fn, requires, conflicts)
        return fn

    return register


def registry() -> dict[str, Component]:
    import rumpnet.components  # noqa: F401  (registers the net components)

    return _registry
