"""No module under rumpnet/netinet or rumpnet/netinet6 calls the scheduler: one timer
idiom (issue 14 part 3).

The cores take ``now`` and give deadlines out (``get_timer``/``handle_timer(now)``); each
domain's one loop timer, :class:`rumpnet.netinet.in_proto.InetCallout` (``Inet.callout``,
``Inet6Domain.callout``), is the only code that arms a callout for the domain, and the
domains' ``__init__`` the only code that takes the clock from the scheduler (``Inet.now``,
``Inet6Domain.now``, which the domain's entry points pass on). The inet6 domain also
queues a packet looped through a driverless lo0 to a later turn (``call_soon``, a softint,
not a timer). Before, ARP, reassembly and ICMP's route lifetimes each called
``kernel.sched.call_at`` and read the scheduler's clock themselves, TCP's glue armed a timer
of its own, and so did IPv6's TCP (``Tcp.deadline``/``_fire``) and read the clock in
``Tcp6`` and ``ip6_rtcache``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import rumpnet.netinet
import rumpnet.netinet6

ROOTS = [Path(rumpnet.netinet.__file__).parent, Path(rumpnet.netinet6.__file__).parent]
# Attributes that reach the scheduler or arm a callout, and modules that read a clock.
SCHEDULER_ATTRS = {"sched", "call_at", "call_later", "call_soon", "loop"}
CLOCK_MODULES = {"time", "asyncio", "datetime"}
# (module, enclosing class, enclosing function) allowed to use them: the domain's glue.
ALLOWED = {("in_proto", "InetCallout", None), ("in_proto", "Inet", "__init__"),
           ("in6_domain", "Inet6Domain", "__init__"),
           # looutput's later turn for lo0 without its driver, and ip6_mloopback's.
           ("in6_domain", "Inet6Domain", "loop_output"), ("in6_domain", "Inet6Domain", "_mloopback")}


def scheduler_uses(module: str, tree: ast.AST) -> list[str]:
    """Where ``tree`` names the scheduler or imports a clock, outside the allowed glue,
    as "module:line: what" strings."""
    found: list[str] = []

    def allowed(cls: str | None, fn: str | None) -> bool:
        return (module, cls, None) in ALLOWED or (module, cls, fn) in ALLOWED

    def visit(node: ast.AST, cls: str | None, fn: str | None) -> None:
        if isinstance(node, ast.ClassDef):
            cls, fn = node.name, None
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn is None:
            fn = node.name
        if isinstance(node, ast.Attribute) and node.attr in SCHEDULER_ATTRS and not allowed(cls, fn):
            found.append(f"{module}:{node.lineno}: .{node.attr}")
        if isinstance(node, ast.Import):
            found.extend(f"{module}:{node.lineno}: import {a.name}" for a in node.names
                         if a.name.split(".")[0] in CLOCK_MODULES)
        if isinstance(node, ast.ImportFrom) and node.module is not None and \
                node.module.split(".")[0] in CLOCK_MODULES:
            found.append(f"{module}:{node.lineno}: from {node.module}")
        for child in ast.iter_child_nodes(node):
            visit(child, cls, fn)

    visit(tree, None, None)
    return found


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: p.name)
def test_no_netinet_module_calls_the_scheduler(root: Path) -> None:
    found: list[str] = []
    for path in sorted(root.glob("*.py")):
        found += scheduler_uses(path.stem, ast.parse(path.read_text()))
    assert found == []


def test_the_check_sees_a_core_arming_a_callout() -> None:
    """The check itself: the shape ARP had before (a call_at in a core, a clock read)."""
    before = ast.parse(
        "import time\n"
        "class Arp:\n"
        "    def _arm(self, lle, when):\n"
        "        lle.timer = self.inet.kernel.sched.call_at(when, self._timer, lle)\n"
        "    def _timer(self, lle):\n"
        "        now = self.inet.kernel.sched.now()\n")
    assert scheduler_uses("if_arp", before) == [
        "if_arp:1: import time", "if_arp:4: .call_at", "if_arp:4: .sched", "if_arp:6: .sched"]
    # The glue's own class may arm the loop timer; anything else in in_proto may not.
    glue = ast.parse("class InetCallout:\n    def deadline(self, when):\n"
                     "        self.sched.call_at(when, self._fire)\n"
                     "class Inet:\n    def socket(self):\n        self.kernel.sched.now()\n")
    assert scheduler_uses("in_proto", glue) == ["in_proto:6: .sched"]
