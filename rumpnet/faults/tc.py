"""Linux tc(8) / tc-netem(8) command syntax for the fault model (``k.tc(...)``).

Supported::

    tc [-s] [-d] qdisc { add | change | replace | del | show } dev IF
       [ root | ingress ] [ handle MAJOR: ] [ netem OPTIONS ]

``root`` is the egress direction, as in Linux; ``ingress netem ...`` is our extension
(Linux needs an ifb device for that) and puts netem on received frames.  OPTIONS are
tc-netem(8)'s, parsed as iproute2's ``q_netem.c`` parses them (keywords may be
abbreviated, optional positional values are taken when the next word starts with a
digit), plus ours::

    partition                 drop everything (until a change without it)
    nth N[,N...]              drop the Nth frames offered (1-based)
    match EXPR...             drop frames matching EXPR (see rumpnet.faults.match)

Units as tc(8): times ``s``/``sec``/``ms``/``msec``/``us``/``usec``/``ns`` (a bare
number is microseconds), rates ``bit``/``kbit``/``mbit``/``gbit``/``tbit``, ``kibit``
..., ``bps``/``kbps``/... (bytes per second; a bare number is bits per second),
percentages with or without ``%``.

Errors are ``OSError(EINVAL, ...)`` naming the offending field (the kernel's command
layer turns them into the exit status and usage), ``OSError(ENODEV, "Cannot find
device ...")`` for an unknown interface, ``ENOENT``/``EEXIST`` as RTNETLINK answers.
Nothing is applied unless the whole command parsed and validated.
"""

from __future__ import annotations

import errno
import random
import weakref
from collections.abc import Callable
from typing import Any

from rumpnet.faults.match import FrameMatch
from rumpnet.faults.netem import DISTRIBUTIONS, Netem, NetemParams, gemodel_params, loss_state_params
from rumpnet.faults.runner import QdiscRunner

USAGE = ("Usage: tc [ -s ] qdisc { add | change | replace | del | show } dev STRING\n"
         "       [ root | ingress ] [ handle QHANDLE ] [ netem OPTIONS ]")

# tc's global options that mean something here (-s and its long forms; the others change
# nothing in our output)
OPTIONS = ("-s", "-stats", "-statistics", "-d", "-details", "-p", "-pretty", "-iec")

NETEM_USAGE = (
    "Usage: ... netem [ limit PACKETS ]\n"
    "                 [ delay TIME [ JITTER [CORRELATION]]]\n"
    "                 [ distribution {uniform|normal|pareto|paretonormal} ]\n"
    "                 [ corrupt PERCENT [CORRELATION]]\n"
    "                 [ duplicate PERCENT [CORRELATION]]\n"
    "                 [ loss random PERCENT [CORRELATION]]\n"
    "                 [ loss state P13 [P31 [P32 [P23 P14]]]\n"
    "                 [ loss gemodel PERCENT [R [1-H [1-K]]]\n"
    "                 [ ecn ]\n"
    "                 [ reorder PERCENT [CORRELATION] [ gap DISTANCE ]]\n"
    "                 [ rate RATE [PACKETOVERHEAD] [CELLSIZE] [CELLOVERHEAD]]\n"
    "                 [ slot MIN_DELAY [MAX_DELAY] [packets MAX_PACKETS] [bytes MAX_BYTES]]\n"
    "                 [ slot distribution {uniform|normal|pareto|paretonormal|custom}\n"
    "                   DELAY JITTER [packets MAX_PACKETS] [bytes MAX_BYTES]]\n"
    "                 [ seed SEED ] [ partition ] [ nth N[,N...] ] [ match EXPR ]")


def _einval(msg: str) -> OSError:
    return OSError(errno.EINVAL, msg)


def _illegal(field: str, value: str | None = None) -> OSError:
    # q_netem.c explain1(): 'Illegal "loss percent"'
    if value is None:
        return _einval(f'Illegal "{field}"')
    return _einval(f'Illegal "{field}" value "{value}"')


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
        raise _illegal(field, text)
    v, unit = sp
    if unit:
        scale = _TIME_UNITS.get(unit.lower())
        if scale is None:
            raise _illegal(field, text)
    else:
        scale = bare
    if v < 0 or v != v or v == float("inf"):
        raise _illegal(field, text)
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
        raise _illegal(field, text)
    if v < 0:
        raise _einval(f'Illegal "{field}" value "{text}": a percentage is 0% to 100%')
    if v > 100:
        raise _einval(f'Illegal "{field}" value "{text}": over 100%')
    return v / 100.0


def parse_rate(text: str, field: str = "rate") -> float:
    """tc's get_rate64(): bits per second; a bare number is bits per second."""
    if text.endswith("%"):
        raise _einval(f'Illegal "{field}" value "{text}": a percentage of the link speed is not supported')
    sp = _split_number(text)
    if sp is None:
        raise _illegal(field, text)
    v, unit = sp
    scale = _RATE_UNITS.get(unit.lower()) if unit else 1.0
    if scale is None or v < 0 or v != v:
        raise _illegal(field, text)
    return v * scale


def parse_int(text: str, field: str, signed: bool = False) -> int:
    """A tc integer (decimal, 0x hex or 0 octal) for ``field`` (EINVAL naming it; negative only when ``signed``)."""
    try:
        v = int(text, 0)
    except ValueError:
        raise _illegal(field, text) from None
    if v < 0 and not signed:
        raise _illegal(field, text)
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


# -- netem options ---------------------------------------------------------------------

# q_netem.c tries the keywords in this order with matches() (abbreviations allowed)
_KEYWORDS = ("limit", "latency", "delay", "loss", "drop", "ecn", "reorder", "corrupt", "gap",
             "duplicate", "distribution", "rate", "slot")
_OURS = ("partition", "nth", "match", "help")
_MATCH_WORDS_1 = {"tcp", "udp", "icmp", "ip", "arp", "and"}
_MATCH_WORDS_2 = {"proto", "src", "dst", "host", "sport", "dport", "port", "flags"}


def netem_keyword(word: str) -> str | None:
    """The netem keyword ``word`` abbreviates (as q_netem.c's matches()), or None."""
    if word in _OURS:
        return word
    for kw in _KEYWORDS:
        if word and len(word) <= len(kw) and kw.startswith(word):
            return kw
    return None


def _is_number(word: str | None) -> bool:
    return word is not None and word[:1].isdigit()


def parse_netem_args(argv: list[str], checks: bool = True) -> dict[str, Any]:
    """Parse netem OPTIONS into the NetemParams fields they set (tc's defaults filled in
    for the parts of a model given, e.g. ``loss state 1%`` sets all five).

    Each clause sets its whole group: ``delay 100ms`` also sets jitter and correlation to
    0, ``loss 1%`` sets the loss correlation to 0 and turns the other loss models off,
    ``rate 1mbit`` zeroes the overheads, so an incremental change (a schedule's
    ``at 5s loss 10%``) means what the same words mean to tc.

    Raises ``OSError(EINVAL)`` naming the field; with ``checks`` does the cross-checks
    q_netem.c does (reorder needs delay, ...), which incremental changes skip.
    """
    ch: dict[str, Any] = {}
    i = 0
    n = len(argv)

    def nxt(field: str) -> str:
        nonlocal i
        if i + 1 >= n:
            raise _einval(f'Illegal "{field}": missing value')
        i += 1
        return argv[i]

    def peek() -> str | None:
        return argv[i + 1] if i + 1 < n else None

    def opt_percent(field: str) -> float | None:
        nonlocal i
        if _is_number(peek()):
            i += 1
            return parse_percent(argv[i], field)
        return None

    loss_given = False
    while i < n:
        word = argv[i]
        kw = netem_keyword(word)
        if kw is None:
            raise _einval(f'What is "{word}"?\n{NETEM_USAGE}')
        if kw == "help":
            raise _einval(NETEM_USAGE)
        if kw == "limit":
            ch["limit"] = parse_int(nxt("limit"), "limit")
        elif kw in ("latency", "delay"):
            ch.update(jitter=0.0, delay_corr=0.0)
            ch["delay"] = parse_time(nxt(kw), kw)
            if _is_number(peek()):
                i += 1
                ch["jitter"] = parse_time(argv[i], f"{kw} jitter")
                c = opt_percent(f"{kw} correlation")
                if c is not None:
                    ch["delay_corr"] = c
        elif kw in ("loss", "drop"):
            if loss_given:
                raise _einval('Illegal "duplicate loss argument"')
            loss_given = True
            ch.update(loss=0.0, loss_corr=0.0, loss_state=None, loss_gemodel=None)
            sub = nxt("loss")
            # A number (even a bad one: "-5%", ".5%") is the loss percentage, so that its
            # error names the value rather than calling it an unknown model.
            if sub[:1].isdigit() or sub[:1] in "-+." or sub == "random":
                if sub == "random":
                    sub = nxt("loss percent")
                ch["loss"] = parse_percent(sub, "loss percent")
                c = opt_percent("loss correlation")
                if c is not None:
                    ch["loss_corr"] = c
            elif sub == "state":
                vals = [parse_percent(nxt("loss p13"), "loss p13")]
                for name in ("p31", "p32", "p23", "p14"):
                    v = opt_percent(f"loss {name}")
                    if v is None:
                        break
                    vals.append(v)
                ch["loss_state"] = loss_state_params(*vals)
            elif sub == "gemodel":
                vals = [parse_percent(nxt("loss gemodel p"), "loss gemodel p")]
                for name in ("r", "h", "k"):
                    v = opt_percent(f"loss gemodel {name}")
                    if v is None:
                        break
                    vals.append(v)
                ch["loss_gemodel"] = gemodel_params(*vals)
            else:
                raise _einval(f"Unknown loss parameter: {sub}")
        elif kw == "ecn":
            ch["ecn"] = True
        elif kw == "reorder":
            ch["reorder_corr"] = 0.0
            ch["reorder"] = parse_percent(nxt("reorder"), "reorder")
            c = opt_percent("reorder")
            if c is not None:
                ch["reorder_corr"] = c
        elif kw == "corrupt":
            ch["corrupt_corr"] = 0.0
            ch["corrupt"] = parse_percent(nxt("corrupt"), "corrupt")
            c = opt_percent("corrupt")
            if c is not None:
                ch["corrupt_corr"] = c
        elif kw == "gap":
            ch["gap"] = parse_int(nxt("gap"), "gap")
        elif kw == "duplicate":
            ch["duplicate_corr"] = 0.0
            ch["duplicate"] = parse_percent(nxt("duplicate"), "duplicate")
            c = opt_percent("duplicate")
            if c is not None:
                ch["duplicate_corr"] = c
        elif kw == "distribution":
            d = nxt("distribution")
            if d not in DISTRIBUTIONS:
                raise _einval(f'Illegal "distribution" value "{d}": No distribution data for {d}')
            ch["distribution"] = d
        elif kw == "rate":
            ch.update(packetoverhead=0, cellsize=0, celloverhead=0)
            ch["rate"] = parse_rate(nxt("rate"), "rate")
            p = peek()
            if p is not None and (p[:1].isdigit() or p[:1] == "-"):
                i += 1
                ch["packetoverhead"] = parse_int(argv[i], "rate packetoverhead", signed=True)
                if _is_number(peek()):
                    i += 1
                    ch["cellsize"] = parse_int(argv[i], "rate cellsize")
                    p = peek()
                    if p is not None and (p[:1].isdigit() or p[:1] == "-"):
                        i += 1
                        ch["celloverhead"] = parse_int(argv[i], "rate celloverhead", signed=True)
        elif kw == "slot":
            # slot times are get_time64(): a bare number is nanoseconds
            ch.update(slot_min=0.0, slot_max=0.0, slot_distribution=None, slot_delay=0.0, slot_jitter=0.0,
                      slot_packets=0, slot_bytes=0)
            if peek() == "distribution":
                i += 1
                d = nxt("slot distribution")
                if d not in DISTRIBUTIONS:
                    raise _einval(f'Illegal "slot distribution" value "{d}"')
                ch["slot_distribution"] = d
                ch["slot_delay"] = parse_time(nxt("slot delay"), "slot delay", bare=1e-9)
                ch["slot_jitter"] = parse_time(nxt("slot jitter"), "slot jitter", bare=1e-9)
                if ch["slot_jitter"] <= 0:
                    raise _einval('Illegal "slot jitter": must be positive with a distribution')
            else:
                ch["slot_min"] = parse_time(nxt("slot min_delay"), "slot min_delay", bare=1e-9)
                ch["slot_max"] = ch["slot_min"]
                if _is_number(peek()):
                    i += 1
                    ch["slot_max"] = parse_time(argv[i], "slot max_delay", bare=1e-9)
                if ch["slot_max"] < ch["slot_min"]:
                    raise _einval('Illegal "slot max_delay": smaller than min_delay')
            while peek() in ("packets", "bytes"):
                i += 1
                what = argv[i]
                ch["slot_packets" if what == "packets" else "slot_bytes"] = parse_int(nxt(f"slot {what}"), f"slot {what}")
        elif kw == "partition":
            ch["partition"] = True
        elif kw == "nth":
            raw = nxt("nth")
            try:
                nums = tuple(int(x) for x in raw.split(",") if x)
            except ValueError:
                raise _illegal("nth", raw) from None
            if not nums or any(x < 1 for x in nums):
                raise _illegal("nth", raw)
            ch["drop_nth"] = nums
        elif kw == "match":
            words: list[str] = []
            while i + 1 < n:
                w = argv[i + 1]
                if " " in w.strip():
                    words.extend(w.split())
                    i += 1
                    continue
                lw = w.lower()
                if lw in _MATCH_WORDS_1:
                    words.append(w)
                    i += 1
                elif lw in _MATCH_WORDS_2 and i + 2 < n:
                    words.extend((w, argv[i + 2]))
                    i += 2
                else:
                    break
            if not words:
                raise _einval('Illegal "match": missing expression')
            try:
                ch["drop_match"] = FrameMatch.parse(words)
            except ValueError as e:
                raise _einval(f'Illegal "match": {e}') from None
        i += 1

    if not checks:
        return ch
    # q_netem.c's cross-checks.  A gap without a reorder probability means "every gap-th
    # packet at once" (tc-netem(8)'s "gap 5 delay 10ms" example; sch_netem.c netem_change():
    # "if gap is set, need to assume 100% probability").
    if ch.get("gap") and "reorder" not in ch:
        ch["reorder"] = 1.0
    if ch.get("reorder"):
        if not ch.get("delay"):
            raise _einval('Illegal "reorder": reordering not possible without specifying some delay')
        if not ch.get("gap"):
            ch["gap"] = 1
    if ch.get("ecn") and not (ch.get("loss") or ch.get("loss_state") or ch.get("loss_gemodel")):
        raise _einval('Illegal "ecn": ecn requested without loss model')
    if "distribution" in ch and not (ch.get("delay") and ch.get("jitter")):
        raise _einval('Illegal "distribution": distribution specified but no latency and jitter values')
    return ch


def netem_params(argv: list[str], base: NetemParams | None = None) -> NetemParams:
    """Parse OPTIONS into validated NetemParams (on top of ``base``, default: defaults)."""
    ch = parse_netem_args(argv)
    try:
        return (base or NetemParams()).replace(**ch)
    except ValueError as e:
        raise _einval(f"Illegal {e}") from None


def format_netem(p: NetemParams) -> str:
    """q_netem.c netem_print_opt(), then our additions."""
    out = [f"limit {p.limit}"]
    if p.delay:
        out.append(f" delay {format_time(p.delay)}")
        if p.jitter:
            out.append(f"  {format_time(p.jitter)}")
            if p.delay_corr:
                out.append(f" {format_percent(p.delay_corr)}")
    if p.loss:
        out.append(f" loss {format_percent(p.loss)}")
        if p.loss_corr:
            out.append(f" {format_percent(p.loss_corr)}")
    if p.loss_state is not None:
        out.append(" loss state" + "".join(f" {nm} {format_percent(v)}" for nm, v in
                                           zip(("p13", "p31", "p32", "p23", "p14"), p.loss_state)))
    if p.loss_gemodel is not None:
        out.append(" loss gemodel" + "".join(f" {nm} {format_percent(v)}" for nm, v in
                                             zip(("p", "r", "1-h", "1-k"), p.loss_gemodel)))
    if p.duplicate:
        out.append(f" duplicate {format_percent(p.duplicate)}")
        if p.duplicate_corr:
            out.append(f" {format_percent(p.duplicate_corr)}")
    if p.reorder:
        out.append(f" reorder {format_percent(p.reorder)}")
        if p.reorder_corr:
            out.append(f" {format_percent(p.reorder_corr)}")
    if p.corrupt:
        out.append(f" corrupt {format_percent(p.corrupt)}")
        if p.corrupt_corr:
            out.append(f" {format_percent(p.corrupt_corr)}")
    if p.rate:
        out.append(f" rate {format_rate(p.rate)}")
        if p.packetoverhead:
            out.append(f" packetoverhead {p.packetoverhead}")
        if p.cellsize:
            out.append(f" cellsize {p.cellsize}")
        if p.celloverhead:
            out.append(f" celloverhead {p.celloverhead}")
    if p.has_slot:
        if p.slot_distribution is not None:
            out.append(f" slot distribution {format_time(p.slot_delay)} {format_time(p.slot_jitter)}")
        else:
            out.append(f" slot {format_time(p.slot_min)} {format_time(p.slot_max)}")
        if p.slot_packets:
            out.append(f" packets {p.slot_packets}")
        if p.slot_bytes:
            out.append(f" bytes {p.slot_bytes}")
    if p.ecn:
        out.append(" ecn ")
    gap = p.gap or (1 if p.reorder else 0)
    if gap:
        out.append(f" gap {gap}")
    # ours
    if p.partition:
        out.append(" partition")
    if p.drop_nth:
        out.append(" nth " + ",".join(str(x) for x in p.drop_nth))
    if p.drop_match is not None:
        out.append(f" match {p.drop_match}")
    return "".join(out)


def format_stats(r: QdiscRunner) -> list[str]:
    """``tc -s``'s statistics lines of runner ``r``."""
    st = r.stats
    nm = r.netem
    return [
        f" Sent {st.bytes} bytes {st.packets} pkt (dropped {st.drops}, overlimits {st.overlimits} requeues {st.requeues}) ",
        f" backlog {format_size(nm.backlog)} {nm.qlen}p requeues {st.requeues}",
        (f" netem: loss {st.drop_loss} queue {st.drop_queue} partition {st.drop_partition} nth {st.drop_nth}"
         f" match {st.drop_match} corrupted {st.corrupted} duplicated {st.duplicated}"
         f" reordered {st.reordered} delayed {st.delayed} ecn_marked {st.ecn_marked}"),
    ]


# -- the command -----------------------------------------------------------------------

_handles: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()


def _alloc_handle(ifp: Any) -> int:
    # Linux allocates 8001:, 8002:, ... for qdiscs added without a handle
    try:
        nxt = _handles.get(ifp, 0x8001)
        _handles[ifp] = nxt + 1
    except TypeError:
        return 0x8001
    return nxt


def _parse_handle(text: str) -> int:
    major = text[:-1] if text.endswith(":") else text.split(":", 1)[0]
    try:
        h = int(major, 16)
    except ValueError:
        raise _einval(f'Illegal "handle" value "{text}"') from None
    if not 0 < h <= 0xFFFF:
        raise _einval(f'Illegal "handle" value "{text}"')
    return h


def _matches(word: str, kw: str) -> bool:
    return bool(word) and len(word) <= len(kw) and kw.startswith(word)


def _show(ifp: Any, stats: bool) -> list[str]:
    lines: list[str] = []
    for direction in ("egress", "ingress"):
        r = ifp.qdisc(direction)
        where = "root" if direction == "egress" else "ingress"
        if r is None or not isinstance(r, QdiscRunner):
            if direction == "egress":
                lines.append("qdisc noqueue 0: root refcnt 2 ")
                if stats:
                    lines.append(" Sent 0 bytes 0 pkt (dropped 0, overlimits 0 requeues 0) ")
                    lines.append(" backlog 0b 0p requeues 0")
            continue
        seed = f" seed {r.seed}" if getattr(r, "seed", None) is not None else ""
        lines.append(f"qdisc netem {r.handle or '8001:'} {where} refcnt 2 {format_netem(r.params)}{seed}")
        if stats:
            lines.extend(format_stats(r))
    return lines


def tc_command(get_ifp: Callable[[str], Any], argv: list[str], rng: random.Random, sched: Any,
               *, all_ifps: Callable[[], list[Any]] | None = None) -> str:
    """Run one tc command line (without the leading ``tc``); returns its output."""
    args = list(argv)
    stats = False
    while args and args[0].startswith("-") and len(args[0]) > 1:
        o = args.pop(0)
        if o not in OPTIONS:
            raise _einval(f'Option "{o}" is unknown, try "tc -help".')
        stats = stats or o in ("-s", "-stats", "-statistics")
    if not args:
        raise _einval(USAGE)
    obj = args.pop(0)
    if not _matches(obj, "qdisc"):
        raise _einval(f'Object "{obj}" is unknown, try "tc help".')
    verb = args.pop(0) if args else "show"
    # tc.c do_qdisc(): the verbs are tried in this order with matches() (abbreviations)
    if _matches(verb, "add"):
        op = "add"
    elif _matches(verb, "change"):
        op = "change"
    elif _matches(verb, "replace") or _matches(verb, "link"):
        op = "replace"
    elif _matches(verb, "delete"):
        op = "del"
    elif verb == "ls" or _matches(verb, "list") or _matches(verb, "show") or _matches(verb, "lst"):
        return _cmd_show(get_ifp, args, stats, all_ifps)
    else:
        raise _einval(f'Command "{verb}" is unknown, try "tc qdisc help".')

    dev: str | None = None
    direction: str | None = None
    handle: int | None = None
    kind: str | None = None
    rest: list[str] = []
    i = 0
    while i < len(args):
        w = args[i]
        if w == "dev":
            if i + 1 >= len(args):
                raise _einval('Illegal "dev": missing value')
            if dev is not None:
                raise _einval(f'Illegal "dev": given twice ("{args[i + 1]}")')
            dev = args[i + 1]
            i += 2
        elif w == "root":
            if direction is not None:
                raise _einval('Illegal "root": only one of root and ingress')
            direction = "egress"
            i += 1
        elif w == "ingress":
            if direction is not None:
                raise _einval('Illegal "ingress": only one of root and ingress')
            direction = "ingress"
            i += 1
        elif w == "handle":
            if i + 1 >= len(args):
                raise _einval('Illegal "handle": missing value')
            handle = _parse_handle(args[i + 1])
            i += 2
        elif w in ("parent", "estimator", "stab"):
            raise _einval(f'Illegal "{w}": only root or ingress netem qdiscs are supported')
        else:
            kind = w
            rest = args[i + 1:]
            break
    if dev is None:
        raise _einval('Illegal "dev": "dev" is required')
    if direction is None:
        raise _einval('Illegal "root": one of "root" or "ingress" is required')
    if kind is not None and kind != "netem":
        raise _einval(f'Illegal "qdisc" value "{kind}": only netem is supported')
    if kind is None and op != "del":
        raise _einval(f'Illegal "qdisc": a qdisc kind ("netem") is required\n{USAGE}')
    if op == "del" and rest:
        raise _einval(f'Illegal "del": unexpected "{rest[0]}"')

    rest, seed = _take_seed(rest)
    params = netem_params(rest) if op != "del" else None  # all parsing before any change
    ifp = _lookup(get_ifp, dev)
    cur = ifp.qdisc(direction)
    if cur is not None and not isinstance(cur, QdiscRunner):
        raise OSError(errno.EEXIST, "RTNETLINK answers: File exists (another qdisc hook is set)")
    if op == "del":
        if cur is None:
            raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory"
                          if direction == "egress" else "Error: Cannot find specified qdisc on specified device.")
        ifp.set_qdisc(direction, None)
        cur.close()
        return ""
    assert params is not None
    if op == "add" and cur is not None:
        raise OSError(errno.EEXIST, "RTNETLINK answers: File exists")
    if op == "change" and cur is None:
        raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory")
    if cur is not None and handle is not None and cur.handle != f"{handle:x}:":
        if op == "change":
            raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory")
    if cur is not None:
        if seed is not None:
            # netem_change() reseeds its prng from TCA_NETEM_PRNG_SEED; without a seed we
            # keep drawing from the same generator (Linux would reseed at random)
            cur.netem.rng = random.Random(seed)
            cur.seed = seed
        cur.set_params(params)
        if handle is not None:
            cur.handle = f"{handle:x}:"
        return ""
    if handle is None:
        handle = _alloc_handle(ifp) if direction == "egress" else 0xFFFF
    out = ifp.link_transmit if direction == "egress" else ifp.link_deliver
    runner = QdiscRunner(Netem(params, random.Random(seed) if seed is not None else rng), sched, out,
                         handle=f"{handle:x}:")
    runner.seed = seed
    ifp.set_qdisc(direction, runner)
    return ""


def _take_seed(words: list[str]) -> tuple[list[str], int | None]:
    """tc-netem(8) ``seed SEED``: this qdisc draws from its own generator seeded so."""
    if "seed" not in words:
        return words, None
    i = words.index("seed")
    if i + 1 >= len(words):
        raise _einval('Illegal "seed": missing value')
    seed = parse_int(words[i + 1], "seed")
    rest = words[:i] + words[i + 2:]
    if "seed" in rest:
        raise _einval('Illegal "seed": given twice')
    return rest, seed


def _lookup(get_ifp: Callable[[str], Any], name: str) -> Any:
    try:
        ifp = get_ifp(name)
    except (OSError, KeyError, LookupError):
        ifp = None
    if ifp is None:
        raise OSError(errno.ENODEV, f'Cannot find device "{name}"')
    return ifp


def _cmd_show(get_ifp: Callable[[str], Any], args: list[str], stats: bool,
              all_ifps: Callable[[], list[Any]] | None) -> str:
    dev: str | None = None
    i = 0
    while i < len(args):
        w = args[i]
        if w == "dev":
            if i + 1 >= len(args):
                raise _einval('Illegal "dev": missing value')
            dev = args[i + 1]
            i += 2
        elif w in ("root", "ingress"):
            i += 1
        else:
            raise _einval(f'Illegal "show": unexpected "{w}"')
    if dev is not None:
        ifps = [_lookup(get_ifp, dev)]
    elif all_ifps is not None:
        ifps = list(all_ifps())
    else:
        raise _einval('Illegal "dev": "show" needs "dev" here')
    lines: list[str] = []
    for ifp in ifps:
        shown = _show(ifp, stats)
        if dev is None:
            shown = [ln.replace(" root ", f" dev {ifp.name} root ", 1).replace(" ingress ", f" dev {ifp.name} ingress ", 1)
                     if ln.startswith("qdisc ") else ln for ln in shown]
        lines.extend(shown)
    return "\n".join(lines) + ("\n" if lines else "")
