"""A sans-IO model of Linux's netem qdisc (tc-netem(8), net/sched/sch_netem.c).

:class:`Netem` takes frames and times and hands frames back when their time has come;
it never reads a clock or a global random source: ``now`` is an argument and every
random draw comes from the ``random.Random`` passed in, so one seed replays a run.

The order of decisions per frame follows ``netem_enqueue()``:

1. our additions first, before any random draw: ``partition``, ``drop_nth``,
   ``drop_match`` (so that toggling them does not shift the random stream);
2. duplication draw (``duplicate``, correlated), then the loss event (random with
   correlation, 4-state Markov ``loss state``, or Gilbert-Elliott ``loss gemodel``);
   with ``ecn`` a loss event marks CE on ECN-capable IPv4 and IPv6 instead of dropping;
3. the duplicate, if any, is enqueued now and runs steps 2-6 itself with duplication
   off, as netem re-enqueues the clone at the root qdisc before touching the original;
4. corruption (one random bit of one random byte flipped, checksums left wrong);
5. the queue limit (tail drop, counted as an overlimit);
6. reordering (``reorder`` with correlation and ``gap``): one packet in the gap is put at
   the head of the queue and sent at once; the others get ``delay`` +/- ``jitter`` drawn
   from the distribution, plus the transmission time at ``rate``; the time-ordered queue
   (netem's tfifo) releases them when their time has come, so jitter without rate
   reorders, as it does in Linux.

Distributions are table-free versions of iproute2's ``normal``, ``pareto`` and
``paretonormal`` tables (``tabledist()``: ``delay + jitter * T(u)`` where ``T`` is the
table's quantile function, truncated at +/-4 as the tables' s16 entries are); with no
distribution the draw is uniform over ``[delay - jitter, delay + jitter)``.
Correlation is netem's ``get_crandom()``: ``u = (1 - rho) * fresh + rho * last``.

Probabilities in :class:`NetemParams` are fractions (0.01 is tc's ``1%``), times are
seconds, ``rate`` is bits per second.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import NormalDist

DISTRIBUTIONS = ("uniform", "normal", "pareto", "paretonormal")

# iproute2's tables store s16 values scaled by NETEM_DIST_SCALE (8192), so every
# table value lies within [-32768/8192, 32767/8192] = about +/-4.
_TABLE_MAX = 32767 / 8192
_TABLE_MIN = -32768 / 8192
_STDNORM = NormalDist()
_PARETO_A = 3.0  # iproute2 netem/pareto.c: a = 3


def _norm_q(u: float) -> float:
    u = min(max(u, 1e-12), 1.0 - 1e-12)
    return min(max(_STDNORM.inv_cdf(u), _TABLE_MIN), _TABLE_MAX)


def _pareto_q(u: float) -> float:
    # pareto.c: x = 1 / pow(v, 1/a) for v in (0, 1]; (x - 1.5) * 4/3, capped at 32767.
    # (Pareto with a = 3, x_m = 1 has mean 1.5, so the table has mean ~0.)
    v = 1.0 - u
    if v <= 0.0:
        return _TABLE_MAX
    x: float = (v ** (-1.0 / _PARETO_A) - 1.5) * (4.0 / 3.0)
    return min(x, _TABLE_MAX)


def _paretonormal_q(u: float) -> float:
    # paretonormal.c: (normal + 3 * pareto) / 4 at the same quantile.
    return (_norm_q(u) + 3.0 * _pareto_q(u)) / 4.0


QUANTILE: dict[str, Callable[[float], float]] = {
    "normal": _norm_q,
    "pareto": _pareto_q,
    "paretonormal": _paretonormal_q,
}


def _prob(name: str, v: float) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v):
        raise ValueError(f"{name}: not a number: {v!r}")
    if v < 0:
        raise ValueError(f"{name}: negative probability {v!r}")
    if v > 1:
        raise ValueError(f"{name}: probability {v * 100:g}% is over 100%")


def _nonneg(name: str, v: float) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool) or math.isnan(v) or math.isinf(v):
        raise ValueError(f"{name}: not a finite number: {v!r}")
    if v < 0:
        raise ValueError(f"{name}: negative value {v!r}")


def _int(name: str, v: int, lo: int | None = 0) -> None:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ValueError(f"{name}: not an integer: {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name}: {v!r} is below {lo}")


@dataclass(frozen=True)
class NetemParams:
    """netem's parameters, named as tc-netem(8) names them (plus our additions).

    Probabilities and correlations are fractions in [0, 1]; times are seconds; ``rate``
    is bits per second (0: unlimited).  Construction validates everything and raises
    ``ValueError`` naming the field.
    """

    limit: int = 1000
    # delay TIME [JITTER [CORRELATION]] [distribution DIST]
    delay: float = 0.0
    jitter: float = 0.0
    delay_corr: float = 0.0
    distribution: str = "uniform"
    # loss random PERCENT [CORRELATION]
    loss: float = 0.0
    loss_corr: float = 0.0
    # loss state P13 [P31 [P32 [P23 [P14]]]]  (tc's defaults: p31 = 1 - p13, p32 = 0,
    # p23 = 1, p14 = 0; see loss_state_params())
    loss_state: tuple[float, float, float, float, float] | None = None
    # loss gemodel P [R [1-H [1-K]]]  (defaults r = 1 - p, 1-h = 1, 1-k = 0)
    loss_gemodel: tuple[float, float, float, float] | None = None
    # ecn: mark CE on ECN-capable IPv4/IPv6 instead of dropping on a loss event
    ecn: bool = False
    duplicate: float = 0.0
    duplicate_corr: float = 0.0
    corrupt: float = 0.0
    corrupt_corr: float = 0.0
    # reorder PERCENT [CORRELATION] [gap DISTANCE]; gap 0 with reorder means gap 1 (tc)
    reorder: float = 0.0
    reorder_corr: float = 0.0
    gap: int = 0
    # rate RATE [PACKETOVERHEAD [CELLSIZE [CELLOVERHEAD]]]
    rate: float = 0.0
    packetoverhead: int = 0
    cellsize: int = 0
    celloverhead: int = 0
    # slot MIN_DELAY [MAX_DELAY] [packets N] [bytes N]
    # slot distribution DIST DELAY JITTER [packets N] [bytes N]
    slot_min: float = 0.0
    slot_max: float = 0.0
    slot_distribution: str | None = None
    slot_delay: float = 0.0
    slot_jitter: float = 0.0
    slot_packets: int = 0
    slot_bytes: int = 0
    # ours: partition (drop everything, both queued and new, until healed)
    partition: bool = False
    # ours: drop these arrivals (1-based numbers, counting every frame offered since
    # drop_nth was set)
    drop_nth: tuple[int, ...] = ()
    # ours: drop frames for which this returns True (e.g. a match.FrameMatch)
    drop_match: Callable[[bytes], bool] | None = field(default=None, compare=True)

    def __post_init__(self) -> None:
        _int("limit", self.limit)
        for name in ("delay", "jitter", "rate", "slot_min", "slot_max", "slot_delay", "slot_jitter"):
            _nonneg(name, getattr(self, name))
        for name in ("delay_corr", "loss", "loss_corr", "duplicate", "duplicate_corr", "corrupt",
                     "corrupt_corr", "reorder", "reorder_corr"):
            _prob(name, getattr(self, name))
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"distribution: unknown distribution {self.distribution!r} (one of {', '.join(DISTRIBUTIONS)})")
        if self.slot_distribution is not None and self.slot_distribution not in DISTRIBUTIONS:
            raise ValueError(f"slot_distribution: unknown distribution {self.slot_distribution!r}")
        if self.loss_state is not None:
            if len(self.loss_state) != 5:
                raise ValueError("loss_state: needs (p13, p31, p32, p23, p14)")
            for pname, v in zip(("p13", "p31", "p32", "p23", "p14"), self.loss_state):
                _prob(f"loss_state.{pname}", v)
        if self.loss_gemodel is not None:
            if len(self.loss_gemodel) != 4:
                raise ValueError("loss_gemodel: needs (p, r, 1-h, 1-k)")
            for pname, v in zip(("p", "r", "1-h", "1-k"), self.loss_gemodel):
                _prob(f"loss_gemodel.{pname}", v)
        models = sum((self.loss > 0, self.loss_state is not None, self.loss_gemodel is not None))
        if models > 1:
            raise ValueError("loss: only one loss model (random, state, gemodel) at a time")
        _int("gap", self.gap)
        _int("packetoverhead", self.packetoverhead, None)
        _int("cellsize", self.cellsize)
        _int("celloverhead", self.celloverhead, None)
        _int("slot_packets", self.slot_packets)
        _int("slot_bytes", self.slot_bytes)
        if self.slot_min and not self.slot_max:
            object.__setattr__(self, "slot_max", self.slot_min)  # "slot MIN": max = min, as tc
        if self.slot_max < self.slot_min:
            raise ValueError("slot_max: smaller than slot_min")
        if not isinstance(self.partition, bool):
            raise ValueError(f"partition: not a bool: {self.partition!r}")
        if not isinstance(self.ecn, bool):
            raise ValueError(f"ecn: not a bool: {self.ecn!r}")
        nth = self.drop_nth
        if not isinstance(nth, tuple):
            try:
                nth = tuple(nth)
            except TypeError:
                raise ValueError(f"drop_nth: not a sequence of packet numbers: {nth!r}") from None
            object.__setattr__(self, "drop_nth", nth)
        for n in nth:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"drop_nth: packet numbers are 1-based integers, got {n!r}")
        if self.drop_match is not None and not callable(self.drop_match):
            raise ValueError("drop_match: not callable")

    # -- helpers -------------------------------------------------------------------
    @classmethod
    def parse(cls, text: str | list[str]) -> NetemParams:
        """From tc-netem(8) options: ``NetemParams.parse("delay 100ms 10ms loss 1%")``.

        Raises ``ValueError`` naming the field (tc's own checks included).
        """
        from rumpnet.faults.tc import netem_params

        words = text.split() if isinstance(text, str) else list(text)
        try:
            return netem_params(words)
        except OSError as e:
            raise ValueError(e.strerror) from None

    def replace(self, **changes: object) -> NetemParams:
        """A validated copy with ``changes`` applied (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def is_noop(self) -> bool:
        """True when the qdisc does nothing to frames (all impairments off)."""
        return dataclasses.replace(self, limit=1000) == _DEFAULT

    @property
    def has_slot(self) -> bool:
        """True when slotting (``slot``) is configured."""
        return bool(self.slot_min or self.slot_max or self.slot_jitter)


_DEFAULT = NetemParams()


def loss_state_params(p13: float, p31: float | None = None, p32: float | None = None,
                      p23: float | None = None, p14: float | None = None) -> tuple[float, float, float, float, float]:
    """tc's defaults for ``loss state``: with only p13 the model is Bernoulli loss."""
    return (p13, 1.0 - p13 if p31 is None else p31, 0.0 if p32 is None else p32,
            1.0 if p23 is None else p23, 0.0 if p14 is None else p14)


def gemodel_params(p: float, r: float | None = None, one_minus_h: float | None = None,
                   one_minus_k: float | None = None) -> tuple[float, float, float, float]:
    """tc's defaults for ``loss gemodel``: r = 1 - p, 1-h = 1 (bad state loses all), 1-k = 0."""
    return (p, 1.0 - p if r is None else r, 1.0 if one_minus_h is None else one_minus_h,
            0.0 if one_minus_k is None else one_minus_k)


class NetemStats:
    """Counters: Linux's qdisc stats (``Sent`` bytes/packets, ``dropped``, ``overlimits``,
    ``requeues``) and our per-cause ones (``drop_*``, ``corrupted``, ...)."""

    __slots__ = ('bytes', 'packets', 'drops', 'overlimits', 'requeues', 'drop_loss', 'drop_queue', 'drop_partition', 'drop_nth', 'drop_match', 'corrupted', 'duplicated', 'reordered', 'delayed', 'ecn_marked')

    def __init__(self) -> None:
        self.bytes = 0
        self.packets = 0
        self.drops = 0
        self.overlimits = 0
        self.requeues = 0
        self.drop_loss = 0
        self.drop_queue = 0
        self.drop_partition = 0
        self.drop_nth = 0
        self.drop_match = 0
        self.corrupted = 0
        self.duplicated = 0
        self.reordered = 0
        self.delayed = 0
        self.ecn_marked = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return {name: getattr(self, name) for name in self.__slots__}

    def __repr__(self) -> str:
        return "NetemStats(" + ", ".join(f"{k}={v}" for k, v in self.as_dict().items() if v) + ")"


class _Crandom:
    """netem's ``struct crndstate`` and ``get_crandom()``, on floats in [0, 1)."""

    __slots__ = ("rho", "last")

    def __init__(self, rho: float, rng: random.Random) -> None:
        self.rho = rho
        # init_crandom(): last = a fresh random value (drawn only when correlated).
        self.last = rng.random() if rho else 0.0

    def draw(self, rng: random.Random) -> float:
        value = rng.random()
        rho = self.rho
        if not rho:
            return value
        answer = value * (1.0 - rho) + self.last * rho
        self.last = answer
        return answer


# 4-state loss model states (sch_netem.c, "loss_4state"), numbered as the paper does.
TX_IN_GAP_PERIOD = 1
TX_IN_BURST_PERIOD = 2
LOST_IN_BURST_PERIOD = 3
LOST_IN_GAP_PERIOD = 4
# Gilbert-Elliott states
GOOD_STATE = 1
BAD_STATE = 2


class Netem:
    """The qdisc: ``enqueue(frame, now)``, ``dequeue(now)``, ``next_deadline()``."""

    def __init__(self, params: NetemParams | None = None, rng: random.Random | None = None) -> None:
        if rng is None:
            raise ValueError("rng: a random.Random is required (one seeded source per run)")
        self.rng = rng
        self.stats = NetemStats()
        # tfifo: heap of (time_to_send, seq, frame); head: reordered frames, sent first.
        self._tfifo: list[tuple[float, int, bytes]] = []
        self._head: deque[tuple[float, bytes]] = deque()
        self._seq = 0
        self._last_tts: float | None = None  # latest time_to_send in the tfifo
        self.counter = 0  # netem's q->counter (packets since the last reorder)
        self.arrivals = 0  # frames offered to enqueue (drop_nth counts these)
        self._dup_off = False
        self.slot_next = 0.0
        self.slot_packets_left = 0
        self.slot_bytes_left = 0
        self.params = _DEFAULT
        self.set_params(params or _DEFAULT)

    # -- configuration ---------------------------------------------------------------
    def set_params(self, params: NetemParams, now: float | None = None) -> None:
        """Switch to new parameters (``tc qdisc change``): queued frames stay queued.

        As ``netem_change()`` does, the correlation states and loss-model state are
        re-initialised and the reorder counter reset; the slot restarts at ``now``.
        """
        if not isinstance(params, NetemParams):
            raise TypeError("params: not a NetemParams")
        rng = self.rng
        old = self.params
        self.params = params
        self._nth = frozenset(params.drop_nth)
        self._gap = params.gap or (1 if params.reorder else 0)
        self._delay_cor = _Crandom(params.delay_corr, rng)
        self._loss_cor = _Crandom(params.loss_corr, rng)
        self._dup_cor = _Crandom(params.duplicate_corr, rng)
        self._corrupt_cor = _Crandom(params.corrupt_corr, rng)
        self._reorder_cor = _Crandom(params.reorder_corr, rng)
        self._quantile = QUANTILE.get(params.distribution)
        self._slot_quantile = QUANTILE.get(params.slot_distribution or "uniform")
        self.counter = 0
        if params.drop_nth != old.drop_nth:
            self.arrivals = 0  # "nth N" counts from when it was set
        if params.loss_state != old.loss_state or params.loss_gemodel != old.loss_gemodel:
            self.clg_state = TX_IN_GAP_PERIOD if params.loss_state is not None else GOOD_STATE
        elif not hasattr(self, "clg_state"):
            self.clg_state = GOOD_STATE
        if params.has_slot:
            # get_slot(): the first slot opens at once (slot_next = now).
            self.slot_next = now if now is not None else -math.inf
            self.slot_packets_left = params.slot_packets or (1 << 31) - 1
            self.slot_bytes_left = params.slot_bytes or (1 << 31) - 1
        else:
            self.slot_next = 0.0
        self.passthrough = params.is_noop

    # -- state -----------------------------------------------------------------------
    @property
    def qlen(self) -> int:
        """Frames waiting in the queue."""
        return len(self._tfifo) + len(self._head)

    @property
    def backlog(self) -> int:
        """Bytes waiting in the queue."""
        return sum(len(f) for _, _, f in self._tfifo) + sum(len(f) for _, f in self._head)

    def idle(self) -> bool:
        """True when nothing is queued."""
        return not self._tfifo and not self._head

    # -- random helpers ----------------------------------------------------------------
    def _tabledist(self, mu: float, sigma: float, state: _Crandom | None,
                   quantile: Callable[[float], float] | None) -> float:
        # tabledist(): no jitter -> mu exactly, no draw.
        if sigma == 0:
            return mu
        u = state.draw(self.rng) if state is not None else self.rng.random()
        if quantile is None:
            return mu - sigma + 2.0 * sigma * u  # uniform over [mu - sigma, mu + sigma)
        return mu + sigma * quantile(u)

    def _loss_event(self) -> bool:
        p = self.params
        if p.loss_state is not None:
            return self._loss_4state(p.loss_state)
        if p.loss_gemodel is not None:
            return self._loss_gilb_ell(p.loss_gemodel)
        # CLG_RANDOM: q->loss && q->loss >= get_crandom(&q->loss_cor)
        return p.loss > 0 and p.loss >= self._loss_cor.draw(self.rng)

    def _loss_4state(self, m: tuple[float, float, float, float, float]) -> bool:
        # sch_netem.c loss_4state(), a1 = p13, a2 = p31, a3 = p32, a4 = p14, a5 = p23
        p13, p31, p32, p23, p14 = m
        rnd = self.rng.random()
        st = self.clg_state
        if st == TX_IN_GAP_PERIOD:
            if rnd < p14:
                self.clg_state = LOST_IN_GAP_PERIOD
                return True
            if rnd < p14 + p13:
                self.clg_state = LOST_IN_BURST_PERIOD
                return True
            return False
        if st == TX_IN_BURST_PERIOD:
            if rnd < p23:
                self.clg_state = LOST_IN_BURST_PERIOD
                return True
            return False
        if st == LOST_IN_BURST_PERIOD:
            if rnd < p32:
                self.clg_state = TX_IN_BURST_PERIOD
            elif rnd < p32 + p31:
                self.clg_state = TX_IN_GAP_PERIOD
            else:
                return True
            return False
        # LOST_IN_GAP_PERIOD: an isolated loss, back to the gap
        self.clg_state = TX_IN_GAP_PERIOD
        return False

    def _loss_gilb_ell(self, m: tuple[float, float, float, float]) -> bool:
        # sch_netem.c loss_gilb_ell(): transition draw, then a loss draw with the
        # loss probability of the state the packet found (1-k in good, 1-h in bad).
        p, r, one_minus_h, one_minus_k = m
        rng = self.rng
        if self.clg_state == GOOD_STATE:
            if rng.random() < p:
                self.clg_state = BAD_STATE
            return rng.random() < one_minus_k
        if rng.random() < r:
            self.clg_state = GOOD_STATE
        # kernel: "prandom > h" loses, i.e. with probability 1 - h
        return rng.random() < one_minus_h

    def packet_time(self, length: int) -> float:
        """Seconds to send ``length`` bytes at ``rate`` (sch_netem.c packet_time_ns())."""
        p = self.params
        length += p.packetoverhead
        if p.cellsize:
            cells = -(-length // p.cellsize) if length > 0 else 0
            length = cells * (p.cellsize + p.celloverhead)
        return max(length, 0) * 8.0 / p.rate

    # -- enqueue -----------------------------------------------------------------------
    def enqueue(self, frame: bytes | bytearray | memoryview, now: float) -> None:
        """Offer one frame at time ``now``; it comes out of :meth:`dequeue` later, or never."""
        if not isinstance(frame, bytes):
            frame = bytes(frame)
        p = self.params
        st = self.stats
        self.arrivals += 1
        if p.partition:
            st.drops += 1
            st.drop_partition += 1
            return
        if self._nth and self.arrivals in self._nth:
            st.drops += 1
            st.drop_nth += 1
            return
        if p.drop_match is not None and p.drop_match(frame):
            st.drops += 1
            st.drop_match += 1
            return
        self._netem_enqueue(frame, now)

    def _netem_enqueue(self, frame: bytes, now: float) -> None:
        p = self.params
        st = self.stats
        rng = self.rng
        count = 1
        # Random duplication
        if p.duplicate and not self._dup_off and p.duplicate >= self._dup_cor.draw(rng):
            count += 1
        # Drop packet?
        if self._loss_event():
            marked = self._ecn_mark(frame) if p.ecn else None
            if marked is not None:
                frame = marked
                st.ecn_marked += 1
            else:
                count -= 1
        if count == 0:
            st.drops += 1
            st.drop_loss += 1
            return
        if count > 1:
            # "If we need to duplicate packet, then re-insert at top of the qdisc tree":
            # the copy (uncorrupted) runs the whole enqueue first, with duplication off.
            st.duplicated += 1
            self._dup_off = True
            try:
                self._netem_enqueue(frame, now)
            finally:
                self._dup_off = False
        # Randomized packet corruption: one random bit of one random byte
        if p.corrupt and p.corrupt >= self._corrupt_cor.draw(rng) and frame:
            buf = bytearray(frame)
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
            frame = bytes(buf)
            st.corrupted += 1
        if self.qlen >= p.limit:
            st.drops += 1
            st.drop_queue += 1
            st.overlimits += 1
            return
        gap = self._gap
        if (gap == 0 or p.delay == 0 or self.counter < gap - 1
                or p.reorder < self._reorder_cor.draw(rng)):
            delay = self._tabledist(p.delay, p.jitter, self._delay_cor, self._quantile)
            ref = now
            if p.rate:
                last = self._last_tts
                if last is not None and self._tfifo:
                    # "Last packet in queue is reference point (now)"
                    delay = max(0.0, delay - (last - now))
                    ref = last
                delay += self.packet_time(len(frame))
            tts = ref + delay
            if tts > now:
                st.delayed += 1
            self.counter += 1
            self._seq += 1
            heapq.heappush(self._tfifo, (tts, self._seq, frame))
            if self._last_tts is None or tts > self._last_tts:
                self._last_tts = tts
        else:
            # "Do re-ordering by putting one out of N packets at the front of the queue."
            self.counter = 0
            self._head.appendleft((now, frame))
            st.reordered += 1
            st.requeues += 1

    @staticmethod
    def _ecn_mark(frame: bytes) -> bytes | None:
        """INET_ECN_set_ce() on an ECN-capable IPv4 or IPv6 frame (RFC 3168 section 5:
        ECT(0) or ECT(1) becomes CE, CE stays): the marked copy, or None for Not-ECT and
        anything else, which netem then drops."""
        off = 14
        if len(frame) >= off + 40 and frame[12:14] == b"\x86\xdd" and frame[off] >> 4 == 6:
            # The traffic class straddles the first two octets: its ECN bits are 0x30 of
            # the second; IPv6 has no header checksum.
            if not frame[off + 1] & 0x30:
                return None
            buf = bytearray(frame)
            buf[off + 1] |= 0x30
            return bytes(buf)
        if len(frame) < off + 20 or frame[12:14] != b"\x08\x00" or frame[off] >> 4 != 4:
            return None
        tos = frame[off + 1]
        if tos & 3 == 0:
            return None  # Not-ECT: netem drops it
        if tos & 3 == 3:
            return frame
        buf = bytearray(frame)
        buf[off + 1] = tos | 3
        # incremental checksum update (RFC 1624) of the 16-bit word holding TOS
        old = (frame[off] << 8) | tos
        new = (frame[off] << 8) | buf[off + 1]
        ck = (buf[off + 10] << 8) | buf[off + 11]
        s = (~ck & 0xFFFF) + (~old & 0xFFFF) + new
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        ck = ~s & 0xFFFF
        buf[off + 10] = ck >> 8
        buf[off + 11] = ck & 0xFF
        return bytes(buf)

    # -- dequeue -----------------------------------------------------------------------
    def _get_slot_next(self, now: float) -> None:
        # sch_netem.c get_slot_next()
        p = self.params
        if p.slot_distribution is None:
            nd = p.slot_min + self.rng.random() * (p.slot_max - p.slot_min)
        else:
            nd = self._tabledist(p.slot_delay, p.slot_jitter, None, self._slot_quantile)
        self.slot_next = now + nd
        self.slot_packets_left = p.slot_packets or (1 << 31) - 1
        self.slot_bytes_left = p.slot_bytes or (1 << 31) - 1

    def dequeue(self, now: float) -> list[bytes]:
        """Frames whose time has come by ``now``, in the order they leave."""
        out: list[bytes] = []
        st = self.stats
        partition = self.params.partition
        head = self._head
        while head:
            f = head.popleft()[1]
            if partition:
                st.drops += 1
                st.drop_partition += 1
                continue
            st.packets += 1
            st.bytes += len(f)
            out.append(f)
        tfifo = self._tfifo
        slotted = self.params.has_slot
        while tfifo:
            tts = tfifo[0][0]
            if slotted:
                if self.slot_next < tts:
                    self._get_slot_next(now)
                if not (tts <= now and self.slot_next <= now):
                    break
            elif tts > now:
                break
            f = heapq.heappop(tfifo)[2]
            if partition:
                st.drops += 1
                st.drop_partition += 1
                continue
            if slotted:
                self.slot_packets_left -= 1
                self.slot_bytes_left -= len(f)
                if self.slot_packets_left <= 0 or self.slot_bytes_left <= 0:
                    self._get_slot_next(now)
            st.packets += 1
            st.bytes += len(f)
            out.append(f)
        if not tfifo:
            self._last_tts = None
        return out

    def next_deadline(self) -> float | None:
        """When :meth:`dequeue` next has something to give (may be in the past), or None."""
        if self._head:
            return min(t for t, _ in self._head)
        if not self._tfifo:
            return None
        tts = self._tfifo[0][0]
        if self.params.has_slot and self.slot_next > tts:
            return self.slot_next
        return tts

    def flush(self) -> int:
        """Drop everything queued (``tc qdisc del``); returns how many frames."""
        n = self.qlen
        self._tfifo.clear()
        self._head.clear()
        self._last_tts = None
        return n
