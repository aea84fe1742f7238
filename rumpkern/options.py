"""Checks of ``rump_init``'s options: a wrong type or value is an error that names the
option and what it takes, before anything boots (``rump_init(seed="abc")`` used to boot a
kernel whose seed was a string)."""

from __future__ import annotations

import os
from typing import Any


def _fail(name: str, wanted: str, value: Any) -> TypeError:
    return TypeError(f"rump_init: {name} must be {wanted}, not {type(value).__name__} {value!r}")


def check_options(seed: Any, sockin: Any, hostname: Any, components: Any, memlimit: Any, verbose: Any) -> None:
    """Raise TypeError/ValueError naming the first bad option of ``rump_init``."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _fail("seed", "an int", seed)
    if not isinstance(sockin, bool):
        raise _fail("sockin", "True or False", sockin)
    if hostname is not None and not isinstance(hostname, str):
        raise _fail("hostname", "a str", hostname)
    if components is not None and (isinstance(components, str)
                                   or not all(isinstance(c, str) for c in components)):
        raise _fail("components", "a list of component names", components)
    if memlimit is not None and (isinstance(memlimit, bool) or not isinstance(memlimit, int) or memlimit <= 0):
        raise _fail("memlimit", "a positive int (bytes)", memlimit) if not isinstance(memlimit, int) \
            else ValueError(f"rump_init: memlimit must be a positive number of bytes, not {memlimit!r}")
    if verbose is not None and not isinstance(verbose, bool):
        raise _fail("verbose", "True, False or None", verbose)


def env_number(name: str, default: float, what: str = "a number") -> float:
    """``$NAME`` as a number (``default`` when unset); a value that is none is an error
    naming the variable (it used to be a bare ``could not convert string to float``)."""
    text = os.environ.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: not {what}") from None


def env_seed() -> int | None:
    """``$RUMP_SEED`` as an int (None when unset); a value that is no integer is an error."""
    env = os.environ.get("RUMP_SEED")
    if env is None:
        return None
    try:
        return int(env, 0)
    except ValueError:
        raise ValueError(f"RUMP_SEED={env!r}: not an integer") from None
