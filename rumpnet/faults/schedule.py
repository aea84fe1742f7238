"""Fault timelines: change netem parameters on the kernel clock.

::

    sched_ = FaultSchedule([(5.0, Partition(), 3.0), (8.0, Update(loss=0.1))])
    sched_ = FaultSchedule.parse("at 5s partition for 3s; at 8s loss 10%")
    sched_.start(k.sched, injector)          # or one or more QdiscRunners

Times are seconds after ``start()`` (or after ``base=``).  Actions run through
``sched.call_at`` on the scheduler's clock, so on virtual time a schedule replays exactly.
A target is a :class:`~rumpnet.faults.runner.QdiscRunner` (one direction: a one-way
fault) or anything with ``egress`` and ``ingress`` runners, such as a
:class:`~rumpnet.faults.injector.FaultInjector` (both directions).

Text form, statements separated by ``;`` or newlines::

    at TIME ACTION [for DURATION]

TIME/DURATION take tc units (``5s``, ``250ms``); a bare number is seconds here.
ACTION is ``partition``, ``heal``, ``clear`` (all parameters back to defaults) or netem
options in tc-netem(8) syntax (``loss 10%``, ``delay 100ms 10ms``, ``rate 1mbit``), which
change only the parameters they name.  ``for`` undoes the change after DURATION
(restoring each target's previous values of the fields the action touched).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from rumpnet.faults.netem import NetemParams
from rumpnet.faults.tc import parse_netem_args, parse_time

_FIELDS = tuple(f.name for f in dataclasses.fields(NetemParams))


class Action:
    """Something a schedule does to each target runner."""

    fields: tuple[str, ...] = ()

    def check(self) -> None:
        """Validate before anything is scheduled (``ValueError`` names the field)."""

    def new_params(self, cur: NetemParams) -> NetemParams:
        """The parameters of a runner after this action, from its current ones ``cur``."""
        raise NotImplementedError


class Update(Action):
    """Change the named parameters, keep the rest."""

    def __init__(self, **changes: Any) -> None:
        unknown = [k for k in changes if k not in _FIELDS]
        if unknown:
            raise ValueError(f"{unknown[0]}: not a netem parameter")
        self.changes = changes
        self.fields = tuple(changes)
        self.check()

    def check(self) -> None:
        """Validate the changes on default parameters (``ValueError`` names the field)."""
        NetemParams().replace(**self.changes)

    def new_params(self, cur: NetemParams) -> NetemParams:
        """``cur`` with the fields this action names changed."""
        return cur.replace(**self.changes)

    def __repr__(self) -> str:
        return "Update(" + ", ".join(f"{k}={v!r}" for k, v in self.changes.items()) + ")"


class SetParams(Action):
    """Replace all parameters (``tc qdisc change``)."""

    fields = _FIELDS

    def __init__(self, params: NetemParams) -> None:
        if not isinstance(params, NetemParams):
            raise ValueError("params: not a NetemParams")
        self.params = params

    def new_params(self, cur: NetemParams) -> NetemParams:
        """The action's parameters, whatever ``cur`` was."""
        return self.params

    def __repr__(self) -> str:
        return f"SetParams({self.params!r})"


class Partition(Update):
    """``partition``: drop everything until healed."""

    def __init__(self) -> None:
        super().__init__(partition=True)

    def __repr__(self) -> str:
        return "Partition()"


class Heal(Update):
    """``heal``: end a partition."""

    def __init__(self) -> None:
        super().__init__(partition=False)

    def __repr__(self) -> str:
        return "Heal()"


class Clear(SetParams):
    """``clear``: back to no impairment at all."""

    def __init__(self) -> None:
        super().__init__(NetemParams())

    def __repr__(self) -> str:
        return "Clear()"


class Call(Action):
    """Call ``fn(runner)`` for each target (no undo)."""

    def __init__(self, fn: Callable[[Any], None]) -> None:
        if not callable(fn):
            raise ValueError("action: not callable")
        self.fn = fn


Event = tuple[float, Action, float | None]


def _as_action(a: Any) -> Action:
    if isinstance(a, Action):
        return a
    if isinstance(a, NetemParams):
        return SetParams(a)
    if isinstance(a, dict):
        return Update(**a)
    if isinstance(a, str):
        return parse_action(a.split())
    if callable(a):
        return Call(a)
    raise ValueError(f"action: cannot make an action of {a!r}")


def _targets(objs: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for t in objs:
        if hasattr(t, "set_params"):
            out.append(t)
        elif hasattr(t, "egress") and hasattr(t, "ingress"):
            out.extend((t.egress, t.ingress))
        else:
            raise ValueError(f"target: {t!r} is neither a qdisc runner nor has egress/ingress runners")
    return out


def sched_time(text: str, field: str) -> float:
    """A schedule's ``5s``/``250ms``/bare-seconds time in seconds (ValueError naming ``field``)."""
    try:
        return parse_time(text, field, bare=1.0)
    except OSError as e:
        raise ValueError(f"{field}: bad time {text!r} (5s, 250ms, or a bare number of seconds)") from e


def statement_times(words: list[str]) -> tuple[float, list[str], float | None]:
    """``at TIME WORDS... [for DURATION]`` (split into words) -> (at, WORDS, duration)."""
    if words[0] != "at" or len(words) < 3:
        raise ValueError("at: a statement is 'at TIME [TARGET] ACTION [for DURATION]'")
    at = sched_time(words[1], "at")
    rest = words[2:]
    dur = None
    if len(rest) >= 3 and rest[-2] == "for":
        dur = sched_time(rest[-1], "for")
        rest = rest[:-2]
    return at, rest, dur


def parse_action(words: list[str]) -> Action:
    """A statement's action words (``partition``, ``heal``, ``clear`` or netem options) as an Action."""
    if not words:
        raise ValueError("action: missing")
    if words == ["partition"]:
        return Partition()
    if words == ["heal"]:
        return Heal()
    if words in (["clear"], ["reset"]):
        return Clear()
    try:
        changes = parse_netem_args(words, checks=False)
    except OSError as e:
        # tc's answer is its message and then its usage text; the message is enough here
        first = str(e.strerror).split("\n", 1)[0]
        raise ValueError(f"action: {first}") from None
    return Update(**changes)


class FaultSchedule:
    """A timeline of actions on netem runners."""

    def __init__(self, events: Iterable[tuple[Any, ...]]) -> None:
        evs: list[Event] = []
        for ev in events:
            if len(ev) == 2:
                at, act = ev
                dur = None
            elif len(ev) == 3:
                at, act, dur = ev
            else:
                raise ValueError(f"event: {ev!r} is not (at, action[, duration])")
            if not isinstance(at, (int, float)) or at < 0:
                raise ValueError(f"at: bad time {at!r}")
            if dur is not None and (not isinstance(dur, (int, float)) or dur < 0):
                raise ValueError(f"for: bad duration {dur!r}")
            action = _as_action(act)
            if dur is not None and isinstance(action, Call):
                raise ValueError("for: a plain callable cannot be undone")
            evs.append((float(at), action, None if dur is None else float(dur)))
        evs.sort(key=lambda e: e[0])  # stable: same time keeps the given order
        self.events = evs
        self._handles: list[Any] = []
        self.log: list[tuple[float, str]] = []
        self.errors: list[tuple[float, str]] = []  # actions that could not apply (skipped)
        self.sched: Any = None

    @classmethod
    def parse(cls, text: str) -> FaultSchedule:
        events: list[tuple[Any, ...]] = []
        for stmt in text.replace("\n", ";").split(";"):
            words = stmt.split()
            if not words:
                continue
            try:
                at, rest, dur = statement_times(words)
                events.append((at, parse_action(rest), dur))
            except ValueError as e:
                raise ValueError(f"{e} (in {stmt.strip()!r})") from None
        return cls(events)

    def start(self, sched: Any, *targets: Any, base: float | None = None) -> FaultSchedule:
        """Arm every event on ``sched`` for ``targets``; returns self."""
        runners = _targets(targets)
        if not runners:
            raise ValueError("target: no targets given")
        self.sched = sched
        t0 = sched.now() if base is None else base
        for at, action, dur in self.events:
            self._handles.append(sched.call_at(t0 + at, self._fire, action, dur, runners))
        return self

    def cancel(self) -> None:
        """Disarm the statements that have not fired yet."""
        for h in self._handles:
            h.cancel()
        self._handles.clear()

    def _fire(self, action: Action, dur: float | None, runners: list[Any]) -> None:
        now = self.sched.now()
        self.log.append((now, repr(action)))
        if isinstance(action, Call):
            for r in runners:
                action.fn(r)
            return
        # compute every runner's new parameters first: nothing half-applied on error
        try:
            news = [(r, action.new_params(r.params)) for r in runners]
        except ValueError as e:
            self.errors.append((now, f"{action!r}: {e}"))
            return
        undo = [(r, {f: getattr(r.params, f) for f in action.fields}) for r in runners]
        for r, p in news:
            r.set_params(p)
        if dur is not None:
            self._handles.append(self.sched.call_at(now + dur, self._undo, undo, action))

    def _undo(self, undo: list[tuple[Any, dict[str, Any]]], action: Action) -> None:
        self.log.append((self.sched.now(), f"undo {action!r}"))
        try:
            news = [(r, r.params.replace(**old)) for r, old in undo]
        except ValueError as e:
            self.errors.append((self.sched.now(), f"undo {action!r}: {e}"))
            return
        for r, p in news:
            r.set_params(p)
