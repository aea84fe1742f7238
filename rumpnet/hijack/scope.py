"""Which protocol families go to the kernel: rumphijack(3)'s ``socket=`` specifier.

``socket=`` takes a colon-separated list: family names (``inet``, ``inet6``, ``local``
(alias ``unix``), ``route``, ``packet``), ``all``, and ``no<family>`` to exclude one;
``nolocal`` keeps AF_LOCAL sockets on the host. ``RUMPHIJACK`` is a comma-separated
``key=value`` list (``path=/rump,socket=all:nolocal``); only ``socket`` concerns sockets
here, the file-system keys (``path``, ``blanket``, ``vfs``, ``sysctl``, ``fdoff``) are
accepted and ignored.
"""

from __future__ import annotations

import socket as pysocket
from dataclasses import dataclass, field

# rumphijack(3)'s default when RUMPHIJACK is unset.
RUMPHIJACK_DEFAULT = "path=/rump,socket=all:nolocal"
_IGNORED_KEYS = {"path", "blanket", "vfs", "sysctl", "fdoff", "modctl", "fcntl"}

FAMILY_NAMES: dict[str, int] = {
    "inet": pysocket.AF_INET,
    "inet6": pysocket.AF_INET6,
    "local": pysocket.AF_UNIX,
    "unix": pysocket.AF_UNIX,
}
if hasattr(pysocket, "AF_ROUTE"):
    FAMILY_NAMES["route"] = pysocket.AF_ROUTE
if hasattr(pysocket, "AF_PACKET"):
    FAMILY_NAMES["packet"] = pysocket.AF_PACKET


@dataclass
class SocketScope:
    """The families a hijack sends to the kernel."""

    all: bool = False
    include: set[int] = field(default_factory=set)
    exclude: set[int] = field(default_factory=set)

    def covers(self, family: int) -> bool:
        if family in self.exclude:
            return False
        return self.all or family in self.include


def parse_socket_spec(spec: str, nolocal: bool | None = None) -> SocketScope:
    """``"inet:inet6"``, ``"all:nolocal"``, ... ; ``nolocal`` (when not None) overrides."""
    scope = SocketScope()
    for tok in filter(None, (t.strip().lower() for t in spec.split(":"))):
        if tok == "all":
            scope.all = True
        elif tok.startswith("no") and tok[2:] in FAMILY_NAMES:
            scope.exclude.add(FAMILY_NAMES[tok[2:]])
        elif tok in FAMILY_NAMES:
            scope.include.add(FAMILY_NAMES[tok])
        else:
            raise ValueError(f"rumphijack: unknown socket family {tok!r} in socket={spec!r}")
    if nolocal is True:
        scope.exclude.add(pysocket.AF_UNIX)
        scope.include.discard(pysocket.AF_UNIX)
    elif nolocal is False:
        scope.exclude.discard(pysocket.AF_UNIX)
    return scope


def parse_rumphijack(value: str | None) -> dict[str, str]:
    """``RUMPHIJACK``'s ``key=value,...`` into a dict (unknown keys are an error)."""
    out: dict[str, str] = {}
    for item in filter(None, (i.strip() for i in (value or RUMPHIJACK_DEFAULT).split(","))):
        key, sep, val = item.partition("=")
        if not sep:
            raise ValueError(f"RUMPHIJACK: {item!r} is not key=value")
        if key != "socket" and key not in _IGNORED_KEYS:
            raise ValueError(f"RUMPHIJACK: unknown key {key!r}")
        out[key] = val
    return out
