"""sysctl(8): read and write the kernel's sysctl tree, NetBSD syntax and output.

The kern core's own command: a kernel without any faction answers it.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from rumpkern.commands import UsageError, getopt, on_cpu, strerror
from rumpkern.sysctl import SysctlNode, format_value

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel

USAGE = """usage: sysctl [-dneq] [-x[x]|-r] variable ...
       sysctl [-ne] [-q] -w variable=value ...
       sysctl [-dne] -a
       sysctl [-dne] -A
       sysctl [-ne] -M
       sysctl [-dne] [-q] -f file"""

OPTSTRING = "Aadenqw"  # NetBSD's sysctl takes more; these are the ones that mean something here

_LEVELS = ("top", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
           "tenth", "eleventh", "twelfth")


def _lookup(k: Kernel, name: str) -> SysctlNode:
    node = k.sysctl_tree.root
    for i, part in enumerate(name.split(".")):
        child = node.children.get(part) if node.kind == "node" else None
        if child is None:
            level = _LEVELS[i] if i < len(_LEVELS) else f"level {i + 1}"
            raise OSError(errno.ENOENT, f"sysctl: {level} level name '{part}' in '{name}' is invalid")
        node = child
    return node


def _value(node: SysctlNode) -> str:
    return format_value(node, node.getter() if node.getter is not None else None)


def sysctl(k: Kernel, argv: list[str]) -> str:
    """sysctl(8) on kernel ``k`` (see rumpkern.commands)."""
    return on_cpu(k, lambda: _sysctl(k, argv))


def _sysctl(k: Kernel, argv: list[str]) -> str:
    opts, args = getopt("sysctl", argv, OPTSTRING, USAGE)
    letters = {ch for ch, _ in opts}
    nflag, wflag, qflag = "n" in letters, "w" in letters, "q" in letters
    aflag = bool(letters & {"a", "A"})
    if aflag:
        if args or wflag:
            raise UsageError(USAGE)
        return _list(k.sysctl_tree.root, nflag)
    if not args:
        raise UsageError(USAGE)
    out: list[str] = []
    for arg in args:
        if "=" in arg:
            if not wflag:
                raise OSError(errno.EINVAL, "sysctl: Must specify -w to set variables")
            name, _, value = arg.partition("=")
            out.append(_write(k, name.strip(), value.strip(), nflag, qflag))
        elif wflag:
            raise UsageError(USAGE)
        else:
            node = _lookup(k, arg)
            if node.kind == "node" or node.path in _DISPLAY:
                out.append(_list(node, nflag))
            else:
                v = _value(node)
                out.append(v + "\n" if nflag else f"{arg} = {v}\n")
    return "".join(out)


def _list(node: SysctlNode, nflag: bool) -> str:
    lines: list[str] = []
    for leaf in _walk(node):
        display = _DISPLAY.get(leaf.path)
        if display is not None:  # sysctl.c's handlers: "kern.clockrate: tick = 10000, ..."
            text = display(leaf.getter() if leaf.getter is not None else None)
            lines.append(text if nflag else f"{leaf.path}: {text}")
            continue
        if leaf.kind == "struct":
            continue  # as NetBSD's sysctl -a: structures without a handler are for netstat -s
        v = _value(leaf)
        lines.append(v if nflag else f"{leaf.path} = {v}")
    return "".join(line + "\n" for line in lines)


def _walk(node: SysctlNode) -> list[SysctlNode]:
    """The leaves under ``node`` in MIB order, as NetBSD's sysctl -a walks them (children
    by number: fixed numbers from sysctl.h first, dynamic ones in the order created)."""
    if node.kind == "handler":
        return []  # a dump node (net.route.rtable): its MIB continues with arguments
    if node.kind != "node":
        return [node]
    out: list[SysctlNode] = []
    for child in sorted(node.children.values(), key=lambda c: c.num):
        out.extend(_walk(child))
    return out


def _clockrate(c: Any) -> str:
    return f"tick = {c.tick}, tickadj = {c.tickadj}, hz = {c.hz}, profhz = {c.profhz}, stathz = {c.stathz}"


# Structures sysctl(8) knows how to print (sbin/sysctl/sysctl.c's handlers).
_DISPLAY: dict[str, Any] = {"kern.clockrate": _clockrate}


def _write(k: Kernel, name: str, value: str, nflag: bool, qflag: bool) -> str:
    node = _lookup(k, name)
    if node.kind == "node":
        raise OSError(errno.EISDIR, f"sysctl: {name}: Is a directory")
    old = _value(node)
    if node.kind == "int":
        try:
            int(value, 0)
        except ValueError:
            raise OSError(errno.EINVAL, f"sysctl: {name}: Invalid argument") from None
    try:
        k.sysctl_tree.write_node(node, value)
    except OSError as e:
        code = e.errno if e.errno is not None else errno.EINVAL
        raise OSError(code, f"sysctl: {name}: {strerror(code)}") from None
    if qflag:
        return ""
    new = _value(node)
    return f"{old} -> {new}\n" if nflag else f"{name}: {old} -> {new}\n"
