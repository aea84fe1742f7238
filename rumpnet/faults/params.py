"""Impairment specifications as users write them: tc text, keyword arguments, TOML/JSON.

:func:`impairment` turns any of these into the dict of :class:`NetemParams` fields it sets
(validated: ``ValueError`` naming the field, e.g. ``loss: probability 150% is over 100%``)::

    impairment("delay 10ms 2ms loss 1%")                 # tc-netem(8) options
    impairment(loss=0.01, delay=0.010)                    # NetemParams fields (fractions, s, bit/s)
    impairment(loss="1%", delay="10ms 2ms", rate="1mbit")  # the same in tc units
    impairment({"netem": "delay 10ms", "loss": "1%"})     # a mapping (scenario files, HTTP)

Numbers are NetemParams' units (probabilities as fractions, times in seconds, rates in bits
per second); strings take tc's units (``"1%"``, ``"10ms"``, ``"1mbit"``) and may carry a
whole tc clause (``delay="10ms 2ms 25%"``). A string probability is a percentage with or
without ``%``, as tc reads it: ``loss="1"`` is 1%, like ``tc ... loss 1``. An integer
probability other than 0 is refused as ambiguous (``loss=1``: 1% or 100%?): write
``"1%"`` or a fraction such as ``0.01`` or ``1.0``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rumpnet.faults.netem import DISTRIBUTIONS, NetemParams
from rumpnet.faults.tc import parse_netem_args, percent_value
from rumpnet.usage import did_you_mean

FIELDS = tuple(f.name for f in dataclasses.fields(NetemParams))
PROB_FIELDS = ("delay_corr", "loss", "loss_corr", "duplicate", "duplicate_corr", "corrupt", "corrupt_corr",
               "reorder", "reorder_corr")
TIME_FIELDS = ("delay", "jitter", "slot_min", "slot_max", "slot_delay", "slot_jitter")
# tc keywords whose whole clause a string value may carry ("delay": "10ms 2ms 25%")
_CLAUSE_FIELDS = {"delay", "loss", "duplicate", "corrupt", "reorder", "rate", "slot", "limit", "gap"}


def _prob(field: str, v: Any) -> float:
    if isinstance(v, str):
        # tc units (iproute2's parse_percent): "1%" and "1" are both one percent.
        x = percent_value(v)
        if x is None:
            raise ValueError(f"{field}: not a percentage: {v!r} (tc units: \"1%\" or \"1\" is one percent)")
        if x < 0:
            raise ValueError(f"{field}: negative percentage {v!r}")
        return x / 100.0
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{field}: not a number: {v!r}")
    if isinstance(v, int) and v != 0:
        raise ValueError(f"{field}: {v!r} is ambiguous: write \"{v}%\" for {v} percent (tc units) "
                         f"or a fraction ({v / 100:g} is {v}%, 1.0 is 100%)")
    return float(v)


def _word_value(field: str, v: Any) -> dict[str, Any]:
    """A tc-unit string for ``field``: parse ``field v`` as netem options."""
    words = [field, *str(v).split()]
    try:
        return parse_netem_args(words, checks=False)
    except OSError as e:
        raise ValueError(f"{field}: {e.strerror}") from None


def _field_value(field: str, v: Any) -> dict[str, Any]:
    if field == "netem":
        if not isinstance(v, str):
            raise ValueError(f"netem: tc-netem options must be a string, not {v!r}")
        try:
            return parse_netem_args(v.split(), checks=False)
        except OSError as e:
            raise ValueError(f"netem: {e.strerror}") from None
    if field not in FIELDS:
        raise ValueError(f"{field}: not a netem parameter{did_you_mean(field, (*FIELDS, 'netem'))}")
    if field in PROB_FIELDS:
        if isinstance(v, str) and len(v.split()) > 1 and field in _CLAUSE_FIELDS:
            return _word_value(field, v)
        return {field: _prob(field, v)}
    if field == "distribution":
        if not isinstance(v, str) or v not in DISTRIBUTIONS:
            raise ValueError(f"distribution: unknown distribution {v!r} (one of {', '.join(DISTRIBUTIONS)})")
        return {field: v}
    if isinstance(v, str) and field in TIME_FIELDS + ("rate",):
        if field in _CLAUSE_FIELDS:
            return _word_value(field, v)
        from rumpnet.faults.tc import parse_time

        try:
            return {field: parse_time(v.strip(), field)}
        except OSError as e:
            raise ValueError(f"{field}: {e.strerror}") from None
    if field in ("limit", "gap") and isinstance(v, str):
        return _word_value(field, v)
    if isinstance(v, (int, float)) and not isinstance(v, bool) and field in TIME_FIELDS + ("rate",):
        if v < 0:
            raise ValueError(f"{field}: negative value {v!r}")
        return {field: float(v)}
    if isinstance(v, list) and field in ("loss_state", "loss_gemodel", "drop_nth"):
        v = tuple(v)
    return {field: v}


def impairment(spec: Any = None, **kw: Any) -> dict[str, Any]:
    """The NetemParams fields ``spec`` (tc text, a mapping or a NetemParams) and ``kw`` set.

    Validated against a default NetemParams; raises ``ValueError`` naming the field.
    """
    changes: dict[str, Any] = {}
    if isinstance(spec, NetemParams):
        changes.update({f: getattr(spec, f) for f in FIELDS})
    elif isinstance(spec, str):
        changes.update(_field_value("netem", spec))
    elif isinstance(spec, Mapping):
        kw = {**dict(spec), **kw}
    elif spec is not None:
        raise ValueError(f"netem: cannot make an impairment of {spec!r}")
    # "netem" text first, then the single fields on top of it
    if "netem" in kw:
        changes.update(_field_value("netem", kw.pop("netem")))
    for field, v in kw.items():
        changes.update(_field_value(field, v))
    check(changes)
    return changes


def check(changes: Mapping[str, Any], base: NetemParams | None = None) -> NetemParams:
    """Validate ``changes`` on top of ``base`` (default parameters); the resulting params."""
    try:
        return (base or NetemParams()).replace(**changes)
    except TypeError as e:  # a field name dataclasses.replace does not know
        raise ValueError(f"netem: {e}") from None
