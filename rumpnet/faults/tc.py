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
from dataclasses import dataclass
from typing import Any

from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.q_netem import NETEM_USAGE, netem_keyword, parse_netem_args
from rumpnet.faults.runner import QdiscRunner
from rumpnet.faults.tc_util import (
    einval,
    format_percent,
    format_rate,
    format_size,
    format_time,
    parse_int,
    parse_percent,
    parse_rate,
    parse_time,
    percent_value,
)

__all__ = ["NETEM_USAGE", "OPTIONS", "USAGE", "format_netem", "format_percent", "format_rate", "format_size",
           "format_stats", "format_time", "netem_keyword", "netem_params", "parse_int", "parse_netem_args",
           "parse_percent", "parse_rate", "parse_time", "percent_value", "tc_command"]

USAGE = ("Usage: tc [ -s ] qdisc { add | change | replace | del | show } dev STRING\n"
         "       [ root | ingress ] [ handle QHANDLE ] [ netem OPTIONS ]")

# tc's global options that mean something here (-s and its long forms; the others change
# nothing in our output)
OPTIONS = ("-s", "-stats", "-statistics", "-d", "-details", "-p", "-pretty", "-iec")

def netem_params(argv: list[str], base: NetemParams | None = None) -> NetemParams:
    """Parse OPTIONS into validated NetemParams (on top of ``base``, default: defaults)."""
    ch = parse_netem_args(argv)
    try:
        return (base or NetemParams()).replace(**ch)
    except ValueError as e:
        raise einval(f"Illegal {e}") from None


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
        raise einval(f'Illegal "handle" value "{text}"') from None
    if not 0 < h <= 0xFFFF:
        raise einval(f'Illegal "handle" value "{text}"')
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


@dataclass
class _QdiscArgs:
    """What ``tc qdisc VERB`` names before the qdisc kind's OPTIONS."""

    dev: str
    direction: str  # "egress" (root) or "ingress"
    handle: int | None
    kind: str | None
    rest: list[str]  # the kind's OPTIONS


# tc.c do_qdisc(): the verbs are tried in this order with matches() (abbreviations)
_VERBS = (("add", "add"), ("change", "change"), ("replace", "replace"), ("link", "replace"), ("delete", "del"))


def tc_command(get_ifp: Callable[[str], Any], argv: list[str], rng: random.Random, sched: Any,
               *, all_ifps: Callable[[], list[Any]] | None = None) -> str:
    """Run one tc command line (without the leading ``tc``); returns its output."""
    args = list(argv)
    stats = False
    while args and args[0].startswith("-") and len(args[0]) > 1:
        o = args.pop(0)
        if o not in OPTIONS:
            raise einval(f'Option "{o}" is unknown, try "tc -help".')
        stats = stats or o in ("-s", "-stats", "-statistics")
    if not args:
        raise einval(USAGE)
    obj = args.pop(0)
    if not _matches(obj, "qdisc"):
        raise einval(f'Object "{obj}" is unknown, try "tc help".')
    verb = args.pop(0) if args else "show"
    op = next((op for word, op in _VERBS if _matches(verb, word)), None)
    if op is None:
        if verb == "ls" or any(_matches(verb, w) for w in ("list", "show", "lst")):
            return _cmd_show(get_ifp, args, stats, all_ifps)
        raise einval(f'Command "{verb}" is unknown, try "tc qdisc help".')
    q = _parse_qdisc_args(op, args)
    rest, seed = _take_seed(q.rest)
    params = netem_params(rest) if op != "del" else None  # all parsing before any change
    ifp = _lookup(get_ifp, q.dev)
    cur = ifp.qdisc(q.direction)
    if cur is not None and not isinstance(cur, QdiscRunner):
        raise OSError(errno.EEXIST, "RTNETLINK answers: File exists (another qdisc hook is set)")
    if params is None:
        _delete_qdisc(ifp, q.direction, cur)
    elif cur is not None:
        _change_qdisc(op, q, cur, params, seed)
    else:
        _add_qdisc(op, q, ifp, params, seed, rng, sched)
    return ""


def _parse_qdisc_args(op: str, args: list[str]) -> _QdiscArgs:
    """``dev IF``, ``root``|``ingress``, ``handle H:`` and the kind, in any order (tc.c)."""
    dev: str | None = None
    direction: str | None = None
    handle: int | None = None
    i = 0
    while i < len(args):
        w = args[i]
        if w in ("dev", "handle") and i + 1 >= len(args):
            raise einval(f'Illegal "{w}": missing value')
        if w == "dev":
            if dev is not None:
                raise einval(f'Illegal "dev": given twice ("{args[i + 1]}")')
            dev = args[i + 1]
            i += 2
        elif w in ("root", "ingress"):
            if direction is not None:
                raise einval(f'Illegal "{w}": only one of root and ingress')
            direction = "egress" if w == "root" else "ingress"
            i += 1
        elif w == "handle":
            handle = _parse_handle(args[i + 1])
            i += 2
        elif w in ("parent", "estimator", "stab"):
            raise einval(f'Illegal "{w}": only root or ingress netem qdiscs are supported')
        else:
            break
    kind, rest = (args[i], args[i + 1:]) if i < len(args) else (None, [])
    if dev is None:
        raise einval('Illegal "dev": "dev" is required')
    if direction is None:
        raise einval('Illegal "root": one of "root" or "ingress" is required')
    if kind is not None and kind != "netem":
        raise einval(f'Illegal "qdisc" value "{kind}": only netem is supported')
    if kind is None and op != "del":
        raise einval(f'Illegal "qdisc": a qdisc kind ("netem") is required\n{USAGE}')
    if op == "del" and rest:
        raise einval(f'Illegal "del": unexpected "{rest[0]}"')
    return _QdiscArgs(dev, direction, handle, kind, rest)


def _delete_qdisc(ifp: Any, direction: str, cur: QdiscRunner | None) -> None:
    if cur is None:
        raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory"
                      if direction == "egress" else "Error: Cannot find specified qdisc on specified device.")
    ifp.set_qdisc(direction, None)
    cur.close()


def _change_qdisc(op: str, q: _QdiscArgs, cur: QdiscRunner, params: NetemParams, seed: int | None) -> None:
    """add/change/replace on an interface that has our qdisc in that direction."""
    if op == "add":
        raise OSError(errno.EEXIST, "RTNETLINK answers: File exists")
    if op == "change" and q.handle is not None and cur.handle != f"{q.handle:x}:":
        raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory")
    if seed is not None:
        # netem_change() reseeds its prng from TCA_NETEM_PRNG_SEED; without a seed we
        # keep drawing from the same generator (Linux would reseed at random)
        cur.netem.rng = random.Random(seed)
        cur.seed = seed
    cur.set_params(params)
    if q.handle is not None:
        cur.handle = f"{q.handle:x}:"


def _add_qdisc(op: str, q: _QdiscArgs, ifp: Any, params: NetemParams, seed: int | None,
               rng: random.Random, sched: Any) -> None:
    """add/change/replace on an interface without a qdisc in that direction."""
    if op == "change":
        raise OSError(errno.ENOENT, "RTNETLINK answers: No such file or directory")
    handle = q.handle
    if handle is None:
        handle = _alloc_handle(ifp) if q.direction == "egress" else 0xFFFF
    out = ifp.link_transmit if q.direction == "egress" else ifp.link_deliver
    runner = QdiscRunner(Netem(params, random.Random(seed) if seed is not None else rng), sched, out,
                         handle=f"{handle:x}:")
    runner.seed = seed
    ifp.set_qdisc(q.direction, runner)


def _take_seed(words: list[str]) -> tuple[list[str], int | None]:
    """tc-netem(8) ``seed SEED``: this qdisc draws from its own generator seeded so."""
    if "seed" not in words:
        return words, None
    i = words.index("seed")
    if i + 1 >= len(words):
        raise einval('Illegal "seed": missing value')
    seed = parse_int(words[i + 1], "seed")
    rest = words[:i] + words[i + 2:]
    if "seed" in rest:
        raise einval('Illegal "seed": given twice')
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
                raise einval('Illegal "dev": missing value')
            dev = args[i + 1]
            i += 2
        elif w in ("root", "ingress"):
            i += 1
        else:
            raise einval(f'Illegal "show": unexpected "{w}"')
    if dev is not None:
        ifps = [_lookup(get_ifp, dev)]
    elif all_ifps is not None:
        ifps = list(all_ifps())
    else:
        raise einval('Illegal "dev": "show" needs "dev" here')
    lines: list[str] = []
    for ifp in ifps:
        shown = _show(ifp, stats)
        if dev is None:
            shown = [ln.replace(" root ", f" dev {ifp.name} root ", 1).replace(" ingress ", f" dev {ifp.name} ingress ", 1)
                     if ln.startswith("qdisc ") else ln for ln in shown]
        lines.extend(shown)
    return "\n".join(lines) + ("\n" if lines else "")
