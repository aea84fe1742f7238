"""The modules of netinet import each other without a cycle.

Before, TCP's modules imported each other in a knot (tcp_output <-> tcp_recovery,
tcp_var -> tcp_timer -> tcp_recovery -> tcp_var, ...), kept loadable by ``import module as
alias`` and by copies of constants. Every import counts here: top-level ones and those
inside functions (a function-local import is another way to hide a cycle); only imports
under ``if TYPE_CHECKING:`` are left out, since they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rumpnet.netinet

PKG = "rumpnet.netinet"
ROOT = Path(rumpnet.netinet.__file__).parent


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, modules: set[str]) -> set[str]:
    """The netinet modules ``tree`` imports at run time."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith(PKG + "."):
                    found.add(alias.name.split(".")[2])
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            if node.module == PKG:
                found.update(a.name for a in node.names if a.name in modules)
            elif node.module.startswith(PKG + "."):
                found.add(node.module.split(".")[2])
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the netinet modules it imports at run time (by short name)."""
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    return {m: _imports(ast.parse((ROOT / f"{m}.py").read_text()), modules) - {m} for m in modules}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (its modules in order, the first repeated at the end),
    or None."""
    state: dict[str, int] = {}          # 1: on the current path, 2: done
    path: list[str] = []

    def dfs(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                cycle = dfs(n)
                if cycle:
                    return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = dfs(m)
            if cycle:
                return cycle
    return None


def test_find_cycle_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_function_local_imports() -> None:
    src = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import rumpnet.netinet.x\n" \
          "def f():\n    from rumpnet.netinet import y\n    from rumpnet.netinet.z import q\n"
    assert _imports(ast.parse(src), {"x", "y", "z"}) == {"y", "z"}


def test_netinet_imports_have_no_cycle() -> None:
    graph = import_graph()
    assert "tcp_output" in graph and "tcp_const" in graph
    assert graph["tcp_const"] == set(), "tcp_const is a leaf: it imports nothing"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or ())
