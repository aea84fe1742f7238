"""One re-armable timer on a scheduler (NetBSD's ``callout(9)``), the glue timer a
protocol domain drives its sans-IO cores with: after every entry into a core the glue
calls :meth:`Callout.schedule` with the core's ``get_timer()``; the callout fires at the
earliest deadline asked for and the handler runs the core's ``handle_timer(now)``.

A later deadline than the armed one leaves the armed one alone (firing early is
harmless: the core runs nothing and is asked again), an earlier one re-arms it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

    from rumpkern.sched import Scheduler


class Callout:
    def __init__(self, sched: Scheduler, fn: Callable[[], None]) -> None:
        self.sched = sched
        self.fn = fn
        self._handle: asyncio.TimerHandle | None = None
        self.when: float | None = None

    def schedule(self, when: float | None) -> None:
        """Fire at ``when`` (None: nothing to do) unless armed for an earlier time."""
        if when is None or (self.when is not None and self.when <= when):
            return
        if self._handle is not None:
            self._handle.cancel()
        self.when = when
        self._handle = self.sched.call_at(when, self._run)

    def stop(self) -> None:
        """``callout_halt``: never fire again until scheduled again."""
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self.when = None

    def _run(self) -> None:
        self._handle = None
        self.when = None
        self.fn()
