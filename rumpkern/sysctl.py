"""A sysctl(3) tree: named, numbered nodes bound to kernel variables.

Leaves read and write through getter/setter callables, so a node is usually bound to an
attribute of the object that uses the value (``net.inet.ip.forwarding`` to the IP
layer's ``forwarding`` field). Struct nodes (the ``*.stats`` counters) are read-only.
"""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, SupportsInt, cast

from rumpkern.errno import kerr

if TYPE_CHECKING:
    from rumpkern.lwproc import Proc
    from rumpkern.sched import SyscallCtx

# Top-level MIB numbers from NetBSD's sys/sysctl.h.
CTL_KERN = 1
CTL_NET = 4
KERN_HOSTNAME = 10
# Numbers handed out to nodes that NetBSD creates dynamically (CTL_CREATE).
_DYNAMIC_BASE = 100


@dataclass(frozen=True)
class Clockinfo:
    """``struct clockinfo`` (kern.clockrate): a rump kernel's clock runs at HZ=100."""

    tick: int = 10000  # microseconds per hardclock tick
    tickadj: int = 40  # NetBSD's 240000 / (60 * hz)
    hz: int = 100
    profhz: int = 100
    stathz: int = 100


CLOCKINFO = Clockinfo()


@dataclass
class SysctlNode:
    name: str
    num: int
    kind: str  # "node", "int", "string", "struct", "handler"
    getter: Callable[[], object] | None = None
    # Takes an int for "int" nodes and a str for "string" nodes (write_node converts).
    setter: Callable[[Any], None] | None = None
    desc: str = ""
    minval: int | None = None
    maxval: int | None = None
    choices: tuple[str, ...] | None = None
    children: dict[str, SysctlNode] = field(default_factory=dict)
    parent: SysctlNode | None = None
    # A "handler" node reads the rest of the MIB as its arguments and answers bytes
    # (NetBSD's CTLTYPE_NODE with a function, such as net.route's sysctl_rtable).
    handler: Callable[[list[int]], bytes] | None = None

    @property
    def path(self) -> str:
        parts = []
        node: SysctlNode | None = self
        while node is not None and node.parent is not None:
            parts.append(node.name)
            node = node.parent
        return ".".join(reversed(parts))

    @property
    def readonly(self) -> bool:
        return self.setter is None


class SysctlTree:
    def __init__(self) -> None:
        self.root = SysctlNode("", 0, "node")
        self._next_dynamic: dict[int, int] = {}

    # -- building ------------------------------------------------------------------
    def _child_num(self, parent: SysctlNode, num: int | None) -> int:
        if num is not None:
            return num
        n = self._next_dynamic.get(id(parent), _DYNAMIC_BASE)
        self._next_dynamic[id(parent)] = n + 1
        return n

    def add_node(self, path: str, num: int | None = None, desc: str = "") -> SysctlNode:
        node = self.root
        parts = path.split(".")
        for i, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                child = SysctlNode(part, self._child_num(node, num if i == len(parts) - 1 else None), "node", parent=node)
                child.desc = desc if i == len(parts) - 1 else ""
                node.children[part] = child
            node = child
        return node

    def _add_leaf(self, path: str, kind: str, num: int | None, **kw: Any) -> SysctlNode:
        parent_path, _, name = path.rpartition(".")
        parent = self.add_node(parent_path) if parent_path else self.root
        if name in parent.children:
            raise kerr(errno.EEXIST, f"sysctl node {path} exists")
        leaf = SysctlNode(name, self._child_num(parent, num), kind, parent=parent, **kw)
        parent.children[name] = leaf
        return leaf

    def add_int(self, path: str, getter: Callable[[], int], setter: Callable[[int], None] | None = None,
                num: int | None = None, desc: str = "", minval: int | None = None, maxval: int | None = None) -> SysctlNode:
        return self._add_leaf(path, "int", num, getter=getter, setter=setter, desc=desc, minval=minval, maxval=maxval)

    def add_string(self, path: str, getter: Callable[[], str], setter: Callable[[str], None] | None = None,
                   num: int | None = None, desc: str = "", choices: tuple[str, ...] | None = None) -> SysctlNode:
        return self._add_leaf(path, "string", num, getter=getter, setter=setter, desc=desc, choices=choices)

    def add_struct(self, path: str, getter: Callable[[], object], num: int | None = None, desc: str = "") -> SysctlNode:
        return self._add_leaf(path, "struct", num, getter=getter, desc=desc)

    def add_handler(self, path: str, handler: Callable[[list[int]], bytes], num: int | None = None,
                    desc: str = "") -> SysctlNode:
        """A node whose MIB continues with arguments for ``handler`` (``net.route.0.AF.OP.ARG``);
        it answers only through ``__sysctl`` with a MIB, and ``sysctl -a`` skips it."""
        return self._add_leaf(path, "handler", num, handler=handler, desc=desc)

    def bind_int(self, path: str, obj: object, attr: str, num: int | None = None, readonly: bool = False,
                 minval: int | None = None, maxval: int | None = None, desc: str = "") -> SysctlNode:
        """A read-write int node backed by ``obj.attr``."""
        setter = None if readonly else (lambda v: setattr(obj, attr, int(v)))
        return self.add_int(path, lambda: int(getattr(obj, attr)), setter, num=num, desc=desc, minval=minval, maxval=maxval)

    def bind_string(self, path: str, obj: object, attr: str, num: int | None = None, readonly: bool = False,
                    choices: tuple[str, ...] | None = None, desc: str = "") -> SysctlNode:
        setter = None if readonly else (lambda v: setattr(obj, attr, str(v)))
        return self.add_string(path, lambda: str(getattr(obj, attr)), setter, num=num, desc=desc, choices=choices)

    # -- lookup ----------------------------------------------------------------------
    def lookup(self, path: str) -> SysctlNode:
        node = self.root
        parts = path.split(".")
        levels = ("top", "second", "third", "fourth", "fifth", "sixth")
        for i, part in enumerate(parts):
            child = node.children.get(part)
            if child is None:
                level = levels[i] if i < len(levels) else f"level {i + 1}"
                raise kerr(errno.ENOENT, f"{level} level name `{part}' in `{path}' is invalid")
            node = child
        return node

    def lookup_mib(self, mib: list[int] | tuple[int, ...]) -> SysctlNode:
        return self.lookup_mib_args(mib)[0]

    def lookup_mib_args(self, mib: list[int] | tuple[int, ...]) -> tuple[SysctlNode, list[int]]:
        """The node ``mib`` names and, past a handler node, the rest as its arguments."""
        node = self.root
        for i, num in enumerate(mib):
            if node.kind == "handler":
                return node, list(mib[i:])
            for child in node.children.values():
                if child.num == num:
                    node = child
                    break
            else:
                raise kerr(errno.ENOENT)
        return node, []

    def mib_of(self, path: str) -> list[int]:
        node: SysctlNode | None = self.lookup(path)
        nums = []
        while node is not None and node.parent is not None:
            nums.append(node.num)
            node = node.parent
        return list(reversed(nums))

    def remove(self, path: str) -> None:
        """Remove the node at ``path`` with everything under it (a destroyed interface's
        ``net.interfaces.IF``, as NetBSD's sysctl_teardown); nothing if there is none."""
        parent_path, _, name = path.rpartition(".")
        try:
            parent = self.lookup(parent_path) if parent_path else self.root
        except OSError:
            return
        parent.children.pop(name, None)

    # -- reading and writing -----------------------------------------------------------
    @staticmethod
    def read_node(node: SysctlNode) -> object:
        if node.kind == "node" or node.getter is None:
            raise kerr(errno.EISDIR, f"`{node.path}' is a node")
        return node.getter()

    @staticmethod
    def write_node(node: SysctlNode, value: object) -> None:
        if node.kind == "node":
            raise kerr(errno.EISDIR, f"`{node.path}' is a node")
        if node.setter is None:
            raise kerr(errno.EPERM, f"{node.path}: Operation not permitted")
        if node.kind == "int":
            try:
                ivalue = int(value, 0) if isinstance(value, str) else int(cast("SupportsInt", value))
            except (TypeError, ValueError):
                raise kerr(errno.EINVAL, f"{node.path}: invalid integer `{value}'") from None
            if (node.minval is not None and ivalue < node.minval) or (node.maxval is not None and ivalue > node.maxval):
                raise kerr(errno.EINVAL, f"{node.path}: {ivalue}: Invalid argument")
            node.setter(ivalue)
        else:
            svalue = value.decode() if isinstance(value, bytes) else str(value)
            if node.choices is not None and svalue not in node.choices:
                raise kerr(errno.EINVAL, f"{node.path}: {svalue}: Invalid argument")
            node.setter(svalue)

    def read(self, path: str) -> object:
        return self.read_node(self.lookup(path))

    def write(self, path: str, value: object) -> object:
        node = self.lookup(path)
        old = self.read_node(node)
        self.write_node(node, value)
        return old

    def walk(self, node: SysctlNode | None = None) -> Iterator[SysctlNode]:
        """All leaves under ``node`` in name order (``sysctl -a``)."""
        node = node or self.root
        if node.kind == "handler":
            return
        if node.kind != "node":
            yield node
            return
        for name in sorted(node.children):
            yield from self.walk(node.children[name])


def format_value(node: SysctlNode, value: object) -> str:
    if isinstance(value, bytes):  # a struct array without a display handler: hex, as sysctl -x
        return value.hex()
    if node.kind == "struct":
        if hasattr(value, "__dataclass_fields__") or hasattr(value, "__dict__") or hasattr(value, "__slots__"):
            return " ".join(str(v) for v in stats_values(value))
    return str(value)


def stats_values(stats: object) -> list[int]:
    """The counters in declaration order; histogram fields (lists) are flattened, as the
    C struct lays its arrays out inline."""
    values: list[int] = []
    for n in stats_names(stats):
        v = getattr(stats, n)
        if isinstance(v, (list, tuple)):
            values.extend(int(x) for x in v)
        else:
            values.append(int(v))
    return values


def stats_names(stats: object) -> list[str]:
    slots = getattr(type(stats), "__slots__", None)
    if slots:
        return list(slots)
    return [n for n in vars(stats) if not n.startswith("_")]


# -- __sysctl(2) (kern_sysctl.c) -----------------------------------------------------------


def sys___sysctl(ctx: SyscallCtx, p: Proc, name: str | Sequence[int], namelen: int | None = None,
                 oldp: bytearray | None = None, oldlenp: object = None, newp: object = None,
                 newlen: int = 0) -> int | str | bytes:
    """``__sysctl(2)``: ``name`` is a MIB (list of ints) or a dotted name.

    Returns the old value (int, str, or bytes for struct nodes). When ``oldp`` is a
    ``bytearray`` it is also filled with the binary value, as C callers expect.
    When ``newp`` is not None the node is written.
    """
    tree = p.kernel.sysctl_tree
    args: list[int] = []
    if isinstance(name, str):
        node = tree.lookup(name)
    else:
        mib = list(name)[: len(name) if namelen is None else int(namelen)]
        node, args = tree.lookup_mib_args(mib)
    if node.handler is not None:
        return _handler_call(node.handler, args, oldp, newp)
    value = tree.read_node(node)
    old: int | str | bytes
    if isinstance(value, bytes):  # a struct the node packed itself (kinfo_pcb arrays)
        old = value
    elif node.kind == "struct":
        vals = stats_values(value)
        old = struct.pack(f"{len(vals)}Q", *vals)
    elif isinstance(value, (int, str)):
        old = value
    else:
        raise kerr(errno.EINVAL, f"{node.path}: no scalar value")
    if isinstance(oldp, bytearray):
        if isinstance(old, int):
            raw = struct.pack("i", old)
        elif isinstance(old, str):
            raw = old.encode() + b"\0"
        else:
            raw = old
        if len(oldp) < len(raw) and node.kind != "string":
            raise kerr(errno.ENOMEM)
        oldp[: len(raw)] = raw[: len(oldp)]
    if newp is not None:
        new: object = newp
        if isinstance(newp, (bytes, bytearray)) and node.kind == "int":
            new = struct.unpack("i", bytes(newp[:4]))[0]
        elif isinstance(newp, (bytes, bytearray)):
            new = bytes(newp).rstrip(b"\0").decode()
        tree.write_node(node, new)
    return old


def _handler_call(handler: Callable[[list[int]], bytes], args: list[int], oldp: bytearray | None,
                  newp: object) -> bytes:
    """A handler node: read-only (EPERM for a new value, as sysctl_rtable's), its bytes
    copied to ``oldp`` when given (ENOMEM when they do not fit, as kern_sysctl.c)."""
    if newp is not None:
        raise kerr(errno.EPERM)
    raw = handler(args)
    if isinstance(oldp, bytearray):
        if len(oldp) < len(raw):
            raise kerr(errno.ENOMEM)
        oldp[: len(raw)] = raw
    return raw
