"""tc(8)'s units and messages (iproute2's ``utils.c`` and ``tc_util.c``): times, rates,
percentages and sizes parsed and printed as tc does, and the EINVAL errors that name the
field (``Illegal "loss percent" value "x"``). Shared by ``tc`` and ``q_netem``."""

from __future__ import annotations

import errno


def einval(msg: str) -> OSError:
    return OSError(errno.EINVAL, msg)


def illegal(field: str, value: str | None = None) -> OSError:
    # q_netem.c explain1(): 'Illegal "loss percent"'
    if value is None:
        return einval(f'Illegal "{field}"')
    return einval(f'Illegal "{field}" value "{value}"')


# -- units (tc(8) "PARAMETERS"; iproute2 utils.c / tc_util.c) ----------------------------

_TIME_UNITS = {
    "s": 1.0, "sec": 1.0, "secs": 1.0,
    "ms": 1e-3, "msec": 1e-3, "msecs": 1e-3,
    "us": 1e-6, "usec": 1e-6, "usecs": 1e-6,
    "ns": 1e-9, "nsec": 1e-9, "nsecs": 1e-9,
}

_RATE_UNITS = {
    "bit": 1.0, "kibit": 1024.0, "kbit": 1000.0, "mibit": 1024.0 ** 2, "mbit": 1e6,
    "gibit": 1024.0 ** 3, "gbit": 1e9, "tibit": 1024.0 ** 4, "tbit": 1e12,
    "bps": 8.0, "kibps": 8.0 * 1024, "kbps": 8000.0, "mibps": 8.0 * 1024 ** 2, "mbps": 8e6,
    "gibps": 8.0 * 1024 ** 3, "gbps": 8e9, "tibps": 8.0 * 1024 ** 4, "tbps": 8e12,
}


def _split_number(text: str) -> tuple[float, str] | None:
    i = 0
    while i < len(text) and (text[i].isdigit() or text[i] in ".eE+-"):
        i += 1
    # back off trailing 'e'/'E' not followed by digits
    num = text[:i]
    while num and num[-1] in "eE+-":
        num = num[:-1]
        i -= 1
    try:
        return float(num), text[i:]
    except ValueError:
        return None


def parse_time(text: str, field: str, bare: float = 1e-6) -> float:
    """tc's get_time(): seconds; a bare number is in microseconds (``bare``)."""
    sp = _split_number(text)
    if sp is None:
        raise illegal(field, text)
    v, unit = sp
    if unit:
        scale = _TIME_UNITS.get(unit.lower())
        if scale is None:
            raise illegal(field, text)
    else:
        scale = bare
    if v < 0 or v != v or v == float("inf"):
        raise illegal(field, text)
    return v * scale


def percent_value(text: str) -> float | None:
    """``"1%"`` or ``"1"`` -> 1.0 (tc's percent units); None when not a number."""
    body = text.strip()
    body = body[:-1] if body.endswith("%") else body
    try:
        v = float(body)
    except ValueError:
        return None
    return None if v != v or v in (float("inf"), float("-inf")) else v


def parse_percent(text: str, field: str) -> float:
    """iproute2 parse_percent(): ``"1%"`` or ``"1"`` -> 0.01."""
    v = percent_value(text)
    if v is None:
        raise illegal(field, text)
    if v < 0:
        raise einval(f'Illegal "{field}" value "{text}": a percentage is 0% to 100%')
    if v > 100:
        raise einval(f'Illegal "{field}" value "{text}": over 100%')
    return v / 100.0


def parse_rate(text: str, field: str = "rate") -> float:
    """tc's get_rate64(): bits per second; a bare number is bits per second."""
    if text.endswith("%"):
        raise einval(f'Illegal "{field}" value "{text}": a percentage of the link speed is not supported')
    sp = _split_number(text)
    if sp is None:
        raise illegal(field, text)
    v, unit = sp
    scale = _RATE_UNITS.get(unit.lower()) if unit else 1.0
    if scale is None or v < 0 or v != v:
        raise illegal(field, text)
    return v * scale


def parse_int(text: str, field: str, signed: bool = False) -> int:
    """A tc integer (decimal, 0x hex or 0 octal) for ``field`` (EINVAL naming it; negative only when ``signed``)."""
    try:
        v = int(text, 0)
    except ValueError:
        raise illegal(field, text) from None
    if v < 0 and not signed:
        raise illegal(field, text)
    return v


def format_time(sec: float) -> str:
    """iproute2 sprint_time64(): ``%.3g`` in s, ms, us, else ns."""
    ns = sec * 1e9
    if ns >= 1e9:
        return f"{sec:.3g}s"
    if ns >= 1e6:
        return f"{ns / 1e6:.3g}ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.3g}us"
    return f"{round(ns)}ns"


def format_percent(p: float) -> str:
    """q_netem.c print_percent(): ``%g%%``."""
    return f"{p * 100:g}%"


def format_rate(bits_per_sec: float) -> str:
    """tc_util.c sprint_rate(): 1000-based units, kept exact (``20Kbit``, ``1500Kbit``)."""
    rate = int(round(bits_per_sec))
    units = ("", "K", "M", "G", "T")
    i = 0
    while i < len(units) - 1:
        if rate < 1000:
            break
        if rate % 1000 and rate < 1000 * 1000:
            break
        rate //= 1000
        i += 1
    return f"{rate}{units[i]}bit"


def format_size(n: int) -> str:
    """A byte count as tc prints one (``1Mb``, ``64Kb``, ``1500b``)."""
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)}Mb"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}Kb"
    return f"{n}b"
