"""``FaultInjector``: netem on both directions of any link driver (smoltcp's
``FaultInjector`` middleware, with tc-netem(8) semantics).

It is itself a LinkDriver (docs/ARCHITECTURE.md): wrap a wire, shmif or virtif driver
and attach the wrapper to an interface::

    drv = FaultInjector(WireDriver(...), k.rng, egress=NetemParams(loss=0.01),
                        ingress=NetemParams(delay=0.05, jitter=0.01))
    ifp.attach_driver(drv)

Egress frames go through ``drv.egress`` (a :class:`QdiscRunner`) before
``inner.transmit``; received frames go through ``drv.ingress`` before the interface's
deliver callback.  Both runners always exist (default parameters cost one check per
frame), so impairments can be switched on later: ``drv.egress.update(loss=0.1)``,
``drv.partition()`` / ``drv.heal()``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.runner import QdiscRunner


class _Unattached:
    """Before attach: parameters can be set (queues are empty, so no timer is needed)."""

    def now(self) -> float:
        return 0.0

    def call_at(self, when: float, fn: Callable[..., Any], *args: Any) -> Any:
        raise RuntimeError("FaultInjector: not attached")


class FaultInjector:
    """A LinkDriver wrapping ``inner`` with one netem per direction."""

    def __init__(self, inner: Any, rng: random.Random, egress: NetemParams | str | None = None,
                 ingress: NetemParams | str | None = None) -> None:
        # tc-netem(8) option text is accepted too: egress="delay 100ms loss 1%"
        if isinstance(egress, str):
            egress = NetemParams.parse(egress)
        if isinstance(ingress, str):
            ingress = NetemParams.parse(ingress)
        self.inner = inner
        self.rng = rng
        self._deliver: Callable[[bytes], None] | None = None
        sched: Any = _Unattached()
        self.egress = QdiscRunner(Netem(egress or NetemParams(), rng), sched, self._to_inner)
        self.ingress = QdiscRunner(Netem(ingress or NetemParams(), rng), sched, self._to_stack)

    # -- LinkDriver --------------------------------------------------------------------
    def attach(self, sched: Any, deliver: Callable[[bytes], None]) -> None:
        """LinkDriver.attach: start the inner driver, frames it delivers going through the ingress runner."""
        self._deliver = deliver
        self.egress.sched = sched
        self.ingress.sched = sched
        self.egress.closed = self.ingress.closed = False
        self.inner.attach(sched, self.ingress.input)

    def transmit(self, frame: bytes | bytearray | memoryview) -> None:
        """LinkDriver.transmit: the frame goes through the egress runner to the inner driver."""
        self.egress.input(frame)

    def detach(self) -> None:
        """LinkDriver.detach: stop both runners and the inner driver."""
        self.egress.close()
        self.ingress.close()
        self._deliver = None
        self.inner.detach()

    # -- plumbing ----------------------------------------------------------------------
    def _to_inner(self, frame: bytes) -> None:
        self.inner.transmit(frame)

    def _to_stack(self, frame: bytes) -> None:
        if self._deliver is not None:
            self._deliver(frame)

    # -- conveniences ------------------------------------------------------------------
    def runner(self, direction: str) -> QdiscRunner:
        """The runner of ``direction`` (``egress`` or ``ingress``)."""
        if direction == "egress":
            return self.egress
        if direction == "ingress":
            return self.ingress
        raise ValueError(f"direction: {direction!r} is not 'egress' or 'ingress'")

    def partition(self, direction: str = "both") -> None:
        """Cut the link (both ways, or one: "egress"/"ingress")."""
        for r in self._dirs(direction):
            r.partition()

    def heal(self, direction: str = "both") -> None:
        """End a partition of ``direction`` (egress, ingress or both)."""
        for r in self._dirs(direction):
            r.heal()

    def _dirs(self, direction: str) -> list[QdiscRunner]:
        if direction == "both":
            return [self.egress, self.ingress]
        return [self.runner(direction)]

    def __getattr__(self, name: str) -> Any:
        # counters such as oerrors, and driver specifics, come from the wrapped driver
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
