"""Drive a :class:`~rumpnet.faults.netem.Netem` on a scheduler (the qdisc watchdog).

``QdiscRunner`` is the object an interface's traffic-control hook holds
(``ifp.set_qdisc("egress", runner)``, see docs/ARCHITECTURE.md): ``input(frame)``
enqueues at ``sched.now()``, hands every frame that is due to ``out`` and keeps one loop
timer for the next deadline, as sch_netem.c keeps one ``qdisc_watchdog``.  The timer is
re-armed only when the deadline moves earlier; an idle qdisc holds no timer.

The runner needs only ``sched.now()`` and ``sched.call_at(when, fn) -> handle`` (with
``handle.cancel()``), so tests can drive it with a tiny fake scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rumpnet.faults.netem import Netem, NetemParams, NetemStats


class QdiscRunner:
    """One netem qdisc on one direction of a link."""

    kind = "netem"

    def __init__(self, netem: Netem, sched: Any, out: Callable[[bytes], None], handle: str | None = None) -> None:
        self.netem = netem
        self.sched = sched
        self.out = out
        self.handle = handle  # tc's "8001:" (set by tc.py)
        self.seed: int | None = None  # tc's "seed SEED", when given
        self._timer: Any = None
        self._timer_at: float | None = None
        self.closed = False

    # -- the hook --------------------------------------------------------------------
    def input(self, frame: bytes | bytearray | memoryview) -> None:
        """A frame offered to the qdisc: impaired and passed on (now or at its time) or dropped and counted."""
        nm = self.netem
        if nm.passthrough and nm.idle():
            # zero-cost path: nothing configured, nothing queued
            st = nm.stats
            st.packets += 1
            st.bytes += len(frame)
            self.out(frame)  # type: ignore[arg-type]
            return
        if self.closed:
            return
        now = self.sched.now()
        nm.enqueue(frame, now)
        self._run(now)

    # -- configuration -----------------------------------------------------------------
    @property
    def params(self) -> NetemParams:
        """The netem parameters in force."""
        return self.netem.params

    @property
    def stats(self) -> NetemStats:
        """The netem counters."""
        return self.netem.stats

    def set_params(self, params: NetemParams) -> None:
        """``tc qdisc change``: new parameters, queued frames stay (and may now be due)."""
        now = self.sched.now()
        self.netem.set_params(params, now)
        self._run(now)

    def update(self, **changes: Any) -> None:
        """Change some parameters (validated first: nothing changes on error)."""
        self.set_params(self.netem.params.replace(**changes))

    def partition(self) -> None:
        """Drop everything until :meth:`heal`."""
        self.update(partition=True)

    def heal(self) -> None:
        """End a partition."""
        self.update(partition=False)

    def close(self) -> None:
        """Stop: cancel the timer and drop whatever is queued (``tc qdisc del``)."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None
        self.netem.flush()

    # -- the watchdog --------------------------------------------------------------------
    def _run(self, now: float) -> None:
        frames = self.netem.dequeue(now)
        self._arm()
        out = self.out
        for f in frames:
            out(f)

    def _arm(self) -> None:
        deadline = self.netem.next_deadline()
        if deadline is None:
            return  # idle; a pending timer fires once and finds nothing
        cur = self._timer_at
        if cur is not None and deadline >= cur:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.sched.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        at = self._timer_at
        self._timer = None
        self._timer_at = None
        if self.closed:
            return
        now = self.sched.now()
        if at is not None and at > now:
            now = at  # loop timers may fire a clock-resolution early: treat as on time
        self._run(now)
