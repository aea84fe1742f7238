"""tc-netem(8) OPTIONS, parsed as iproute2's ``q_netem.c`` parses them: keywords may be
abbreviated (tried in q_netem.c's order with ``matches()``), an optional positional value
is taken when the next word starts with a digit, and each clause sets its whole group.
Plus ours: ``partition``, ``nth N[,N...]`` and ``match EXPR``.

Each keyword's clause is one function in ``_CLAUSES`` (dispatch as data); they read words
through ``NetemWords`` and write the NetemParams fields they set into a dict.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rumpnet.faults.match import FrameMatch
from rumpnet.faults.netem import DISTRIBUTIONS, gemodel_params, loss_state_params
from rumpnet.faults.tc_util import einval, illegal, parse_int, parse_percent, parse_rate, parse_time

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

# q_netem.c tries the keywords in this order with matches() (abbreviations allowed)
_KEYWORDS = ("limit", "latency", "delay", "loss", "drop", "ecn", "reorder", "corrupt", "gap",
             "duplicate", "distribution", "rate", "slot")
_OURS = ("partition", "nth", "match", "help")
_MATCH_WORDS_1 = {"tcp", "udp", "icmp", "icmp6", "ip", "ip6", "arp", "and"}
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


def _is_signed_number(word: str | None) -> bool:
    return word is not None and (word[:1].isdigit() or word[:1] == "-")


class NetemWords:
    """A cursor over OPTIONS: ``i`` is the word being parsed (the clause's keyword until
    its clause takes values)."""

    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.i = 0
        self.loss_given = False

    def value(self, field: str) -> str:
        """The next word, which ``field`` requires."""
        if self.i + 1 >= len(self.argv):
            raise einval(f'Illegal "{field}": missing value')
        self.i += 1
        return self.argv[self.i]

    def peek(self) -> str | None:
        return self.argv[self.i + 1] if self.i + 1 < len(self.argv) else None

    def take_if(self, test: Callable[[str | None], bool]) -> str | None:
        """The next word when ``test`` accepts it (an optional positional value), else None."""
        if not test(self.peek()):
            return None
        self.i += 1
        return self.argv[self.i]

    def opt_percent(self, field: str) -> float | None:
        word = self.take_if(_is_number)
        return None if word is None else parse_percent(word, field)


Fields = dict[str, Any]
_Clause = Callable[[NetemWords, Fields, str], None]


def _limit(w: NetemWords, ch: Fields, kw: str) -> None:
    ch["limit"] = parse_int(w.value("limit"), "limit")


def _delay(w: NetemWords, ch: Fields, kw: str) -> None:
    ch.update(jitter=0.0, delay_corr=0.0)
    ch["delay"] = parse_time(w.value(kw), kw)
    jitter = w.take_if(_is_number)
    if jitter is not None:
        ch["jitter"] = parse_time(jitter, f"{kw} jitter")
        c = w.opt_percent(f"{kw} correlation")
        if c is not None:
            ch["delay_corr"] = c


def _loss(w: NetemWords, ch: Fields, kw: str) -> None:
    if w.loss_given:
        raise einval('Illegal "duplicate loss argument"')
    w.loss_given = True
    ch.update(loss=0.0, loss_corr=0.0, loss_state=None, loss_gemodel=None)
    sub = w.value("loss")
    # A number (even a bad one: "-5%", ".5%") is the loss percentage, so that its error
    # names the value rather than calling it an unknown model.
    if sub[:1].isdigit() or sub[:1] in "-+." or sub == "random":
        if sub == "random":
            sub = w.value("loss percent")
        ch["loss"] = parse_percent(sub, "loss percent")
        c = w.opt_percent("loss correlation")
        if c is not None:
            ch["loss_corr"] = c
    elif sub == "state":
        ch["loss_state"] = loss_state_params(*_percent_list(w, "loss", "p13", ("p31", "p32", "p23", "p14")))
    elif sub == "gemodel":
        ch["loss_gemodel"] = gemodel_params(*_percent_list(w, "loss gemodel", "p", ("r", "h", "k")))
    else:
        raise einval(f"Unknown loss parameter: {sub}")


def _percent_list(w: NetemWords, prefix: str, first: str, optional: tuple[str, ...]) -> list[float]:
    """A model's required first probability and as many optional ones as are given."""
    vals = [parse_percent(w.value(f"{prefix} {first}"), f"{prefix} {first}")]
    for name in optional:
        v = w.opt_percent(f"{prefix} {name}")
        if v is None:
            break
        vals.append(v)
    return vals


def _ecn(w: NetemWords, ch: Fields, kw: str) -> None:
    ch["ecn"] = True


def _probability(w: NetemWords, ch: Fields, kw: str) -> None:
    """reorder, corrupt, duplicate: PERCENT [CORRELATION]."""
    ch[f"{kw}_corr"] = 0.0
    ch[kw] = parse_percent(w.value(kw), kw)
    c = w.opt_percent(kw)
    if c is not None:
        ch[f"{kw}_corr"] = c


def _gap(w: NetemWords, ch: Fields, kw: str) -> None:
    ch["gap"] = parse_int(w.value("gap"), "gap")


def _distribution(w: NetemWords, ch: Fields, kw: str) -> None:
    d = w.value("distribution")
    if d not in DISTRIBUTIONS:
        raise einval(f'Illegal "distribution" value "{d}": No distribution data for {d}')
    ch["distribution"] = d


def _rate(w: NetemWords, ch: Fields, kw: str) -> None:
    ch.update(packetoverhead=0, cellsize=0, celloverhead=0)
    ch["rate"] = parse_rate(w.value("rate"), "rate")
    overhead = w.take_if(_is_signed_number)
    if overhead is None:
        return
    ch["packetoverhead"] = parse_int(overhead, "rate packetoverhead", signed=True)
    cellsize = w.take_if(_is_number)
    if cellsize is None:
        return
    ch["cellsize"] = parse_int(cellsize, "rate cellsize")
    celloverhead = w.take_if(_is_signed_number)
    if celloverhead is not None:
        ch["celloverhead"] = parse_int(celloverhead, "rate celloverhead", signed=True)


def _slot(w: NetemWords, ch: Fields, kw: str) -> None:
    # slot times are get_time64(): a bare number is nanoseconds
    ch.update(slot_min=0.0, slot_max=0.0, slot_distribution=None, slot_delay=0.0, slot_jitter=0.0,
              slot_packets=0, slot_bytes=0)
    if w.take_if(lambda word: word == "distribution") is not None:
        d = w.value("slot distribution")
        if d not in DISTRIBUTIONS:
            raise einval(f'Illegal "slot distribution" value "{d}"')
        ch["slot_distribution"] = d
        ch["slot_delay"] = parse_time(w.value("slot delay"), "slot delay", bare=1e-9)
        ch["slot_jitter"] = parse_time(w.value("slot jitter"), "slot jitter", bare=1e-9)
        if ch["slot_jitter"] <= 0:
            raise einval('Illegal "slot jitter": must be positive with a distribution')
    else:
        ch["slot_min"] = ch["slot_max"] = parse_time(w.value("slot min_delay"), "slot min_delay", bare=1e-9)
        max_delay = w.take_if(_is_number)
        if max_delay is not None:
            ch["slot_max"] = parse_time(max_delay, "slot max_delay", bare=1e-9)
        if ch["slot_max"] < ch["slot_min"]:
            raise einval('Illegal "slot max_delay": smaller than min_delay')
    while (what := w.take_if(lambda word: word in ("packets", "bytes"))) is not None:
        ch[f"slot_{what}"] = parse_int(w.value(f"slot {what}"), f"slot {what}")


def _partition(w: NetemWords, ch: Fields, kw: str) -> None:
    ch["partition"] = True


def _nth(w: NetemWords, ch: Fields, kw: str) -> None:
    raw = w.value("nth")
    try:
        nums = tuple(int(x) for x in raw.split(",") if x)
    except ValueError:
        raise illegal("nth", raw) from None
    if not nums or any(x < 1 for x in nums):
        raise illegal("nth", raw)
    ch["drop_nth"] = nums


def _match(w: NetemWords, ch: Fields, kw: str) -> None:
    """``match EXPR``: the filter's words run to the first word that is not one of its
    own (a quoted expression may come as one word)."""
    words: list[str] = []
    argv = w.argv
    while w.i + 1 < len(argv):
        word = argv[w.i + 1]
        if " " in word.strip():
            words.extend(word.split())
            w.i += 1
        elif word.lower() in _MATCH_WORDS_1:
            words.append(word)
            w.i += 1
        elif word.lower() in _MATCH_WORDS_2 and w.i + 2 < len(argv):
            words.extend((word, argv[w.i + 2]))
            w.i += 2
        else:
            break
    if not words:
        raise einval('Illegal "match": missing expression')
    try:
        ch["drop_match"] = FrameMatch.parse(words)
    except ValueError as e:
        raise einval(f'Illegal "match": {e}') from None


def _help(w: NetemWords, ch: Fields, kw: str) -> None:
    raise einval(NETEM_USAGE)


_CLAUSES: dict[str, _Clause] = {
    "limit": _limit, "latency": _delay, "delay": _delay, "loss": _loss, "drop": _loss,
    "ecn": _ecn, "reorder": _probability, "corrupt": _probability, "duplicate": _probability,
    "gap": _gap, "distribution": _distribution, "rate": _rate, "slot": _slot,
    "partition": _partition, "nth": _nth, "match": _match, "help": _help,
}


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
    ch: Fields = {}
    words = NetemWords(argv)
    while words.i < len(argv):
        word = argv[words.i]
        kw = netem_keyword(word)
        if kw is None:
            raise einval(f'What is "{word}"?\n{NETEM_USAGE}')
        _CLAUSES[kw](words, ch, kw)
        words.i += 1
    if checks:
        _cross_check(ch)
    return ch


def _cross_check(ch: Fields) -> None:
    """q_netem.c's cross-checks. A gap without a reorder probability means "every gap-th
    packet at once" (tc-netem(8)'s "gap 5 delay 10ms" example; sch_netem.c netem_change():
    "if gap is set, need to assume 100% probability")."""
    if ch.get("gap") and "reorder" not in ch:
        ch["reorder"] = 1.0
    if ch.get("reorder"):
        if not ch.get("delay"):
            raise einval('Illegal "reorder": reordering not possible without specifying some delay')
        if not ch.get("gap"):
            ch["gap"] = 1
    if ch.get("ecn") and not (ch.get("loss") or ch.get("loss_state") or ch.get("loss_gemodel")):
        raise einval('Illegal "ecn": ecn requested without loss model')
    if "distribution" in ch and not (ch.get("delay") and ch.get("jitter")):
        raise einval('Illegal "distribution": distribution specified but no latency and jitter values')
