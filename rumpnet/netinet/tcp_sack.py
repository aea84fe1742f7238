"""SACK (RFC 2018): the sender's scoreboard and the receiver's blocks; NetBSD tcp_sack.c.

Sender side: :class:`SackScoreboard` records every transmission above SND.UNA as a run of
sequence space with its latest send time and what is known of it: SACKed, deemed lost
(by RFC 6675's IsLost or by RACK, RFC 8985), retransmitted since.  From it come RFC 6675's
Pipe (kept as running byte counts, as Linux keeps ``sacked_out``/``lost_out``/
``retrans_out``), the next segment to retransmit and RACK's per-segment send times.
Positions are unwrapped sequence numbers (``pos``): they only grow, so a cumulative ACK
drops runs from the front without renumbering the rest.

Receiver side: :func:`rcv_sack_update` produces the blocks to report, most recently
changed first (RFC 2018 section 4).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from rumpnet.netinet.tcp_seq import SEQ_MASK

# Flags of a run (index 3 of a record).
SACKED = 0x1        # selectively acknowledged
LOST = 0x2          # deemed lost (RFC 6675 IsLost, RACK, or an RTO)
RETRANS = 0x4       # retransmitted, and that copy is not yet deemed lost (Linux SACKED_RETRANS)
EVER_RETRANS = 0x8  # retransmitted at least once (RFC 8985 Segment.retransmitted)

# A record: [start_pos, end_pos, xmit_time, flags, tx]; tx numbers the transmissions of the
# connection, so that two sent within one tick of the clock are still ordered (RFC 8985
# 6.2 asks for a tie-break when timestamps are equal; SND order, not sequence order, is
# what it stands for, since a retransmission goes out after data of higher sequence).
# (A list, not a tuple, so that marking a run changes it in place; its fields mix
# positions, a time and bits, hence Any.)
Record = list[Any]


def _start(r: Record) -> int:
    return r[0]  # type: ignore[no-any-return]


class SackScoreboard:
    """What the sender has in flight, run by run (see the module docstring)."""

    __slots__ = ("base", "base_pos", "segs", "sacked", "lost", "retrans", "lost_rx", "tx")

    def __init__(self) -> None:
        self.clear(0)

    def clear(self, base: int) -> None:
        """Forget everything; SND.UNA is ``base``."""
        self.base = base            # SND.UNA (32-bit)
        self.base_pos = 0           # its position
        self.segs: list[Record] = []
        self.sacked = 0             # bytes SACKed above SND.UNA
        self.lost = 0               # bytes deemed lost and not SACKed
        self.retrans = 0            # bytes retransmitted, that copy not deemed lost
        self.lost_rx = 0            # bytes both LOST and RETRANS (lost, resent once)
        self.tx = 0                 # transmissions so far (the runs' send order)

    def __bool__(self) -> bool:
        return bool(self.sacked or self.lost)

    # ----- positions -----------------------------------------------------------------
    def pos(self, seq: int) -> int:
        return self.base_pos + ((seq - self.base) & SEQ_MASK)

    def seq(self, pos: int) -> int:
        return (self.base + pos - self.base_pos) & SEQ_MASK

    @property
    def blocks(self) -> list[list[int]]:
        """SACKed ranges, relative to SND.UNA, merged: [[start, end], ...]."""
        out: list[list[int]] = []
        b = self.base_pos
        for s, e, _, f, _ in self.segs:
            if f & SACKED:
                if out and out[-1][1] == s - b:
                    out[-1][1] = e - b
                else:
                    out.append([s - b, e - b])
        return out

    def _split(self, pos: int) -> int:
        """Make ``pos`` a run boundary; the index of the first run at or after it."""
        segs = self.segs
        i = bisect_right(segs, pos, key=_start) - 1
        if i < 0:
            return 0
        r = segs[i]
        if r[0] == pos:
            return i
        if pos >= r[1]:
            return i + 1
        segs.insert(i + 1, [pos, r[1], r[2], r[3], r[4]])
        r[1] = pos
        return i + 1

    # ----- transmissions ---------------------------------------------------------------
    def sent(self, seq: int, n: int, now: float) -> None:
        """``n`` units of sequence space from ``seq`` went out at ``now`` (new data, or a
        retransmission of what is recorded: RFC 8985 6.1 records the latest send time)."""
        if n <= 0:
            return
        s = self.pos(seq)
        e = s + n
        segs = self.segs
        tx = self.tx
        if not segs or s >= segs[-1][1]:
            last = segs[-1] if segs else None
            if last is not None and last[1] == s and last[2] == now and last[3] == 0 \
                    and last[4] == tx:
                last[1] = e              # straight after it, at the same instant: one run
            else:
                self.tx = tx = tx + 1
                segs.append([s, e, now, 0, tx])
            return
        self.tx = tx = tx + 1
        top = segs[-1][1]
        i = self._split(s)
        j = self._split(min(e, top))
        for r in segs[i:j]:
            f = r[3]
            if f & SACKED:
                continue
            if not f & RETRANS:
                k = r[1] - r[0]
                self.retrans += k
                if f & LOST:
                    self.lost_rx += k
            r[3] = f | RETRANS | EVER_RETRANS
            r[2] = now
            r[4] = tx
        if e > top:
            segs.append([top, e, now, 0, tx])

    # ----- acknowledgments -------------------------------------------------------------
    def update(self, sack_blocks: Iterable[tuple[int, int]], snd_max: int) -> tuple[int, list[Record], bool]:
        """Mark what SACK blocks cover (RFC 2018 section 4).  Returns (bytes newly SACKed,
        the runs newly SACKed, whether the first block is a D-SACK, RFC 2883 section 4).

        Blocks below SND.UNA or beyond SND.MAX, and empty ones, mark nothing."""
        newly = 0
        delivered: list[Record] = []
        dsack = False
        base = self.base
        top = (snd_max - base) & SEQ_MASK
        blocks = list(sack_blocks)
        for k, (s, e) in enumerate(blocks):
            a = (s - base) & SEQ_MASK
            b = (e - base) & SEQ_MASK
            if k == 0 and (a >= 0x80000000 or (len(blocks) > 1 and _within(s, e, blocks[1]))):
                dsack = True             # starts below the ACK, or inside the second block
                continue
            if a >= 0x80000000 or b > top or b <= a:
                continue
            n, runs = self._mark_sacked(self.base_pos + a, self.base_pos + b)
            newly += n
            delivered += runs
        return newly, delivered, dsack

    def _mark_sacked(self, s: int, e: int) -> tuple[int, list[Record]]:
        segs = self.segs
        if not segs or s >= segs[-1][1]:
            return 0, []
        i = self._split(s)
        j = self._split(min(e, segs[-1][1]))
        newly = 0
        runs = []
        for r in segs[i:j]:
            f = r[3]
            if f & SACKED:
                continue
            k = r[1] - r[0]
            self._forget(f, k)
            self.sacked += k
            r[3] = (f & EVER_RETRANS) | SACKED
            newly += k
            runs.append(r)
        return newly, runs

    def _forget(self, f: int, k: int) -> None:
        """Take a run of ``k`` bytes with flags ``f`` out of the lost/retransmitted counts."""
        if f & LOST:
            self.lost -= k
            if f & RETRANS:
                self.lost_rx -= k
        if f & RETRANS:
            self.retrans -= k

    def advance(self, snd_una: int) -> list[Record]:
        """SND.UNA moved to ``snd_una`` (cumulative ACK): drop what it covers.  Returns the
        runs delivered by it that were not SACKed before."""
        d = (snd_una - self.base) & SEQ_MASK
        if d == 0 or d >= 0x80000000:
            return []
        new_pos = self.base_pos + d
        self.base = snd_una
        self.base_pos = new_pos
        segs = self.segs
        if not segs:
            return []
        i = self._split(new_pos) if new_pos < segs[-1][1] else len(segs)
        delivered = []
        for r in segs[:i]:
            f = r[3]
            k = r[1] - r[0]
            if f & SACKED:
                self.sacked -= k
            else:
                self._forget(f, k)
                delivered.append(r)
        del segs[:i]
        return delivered

    # ----- loss ------------------------------------------------------------------------
    def mark_lost(self, r: Record) -> int:
        """Deem run ``r`` lost; a retransmission of it is then lost too.  Returns the bytes
        that were not deemed lost before (0 for a SACKed run)."""
        f = r[3]
        if f & SACKED:
            return 0
        k = r[1] - r[0]
        if f & RETRANS:
            self.retrans -= k
            if f & LOST:
                self.lost_rx -= k
            f &= ~RETRANS
        new = 0
        if not f & LOST:
            self.lost += k
            new = k
        r[3] = f | LOST
        return new

    def unmark_lost(self) -> None:
        """A spurious timeout (RFC 4015): nothing was lost after all."""
        for r in self.segs:
            r[3] &= ~LOST
        self.lost = 0
        self.lost_rx = 0

    def lost_pending(self) -> int:
        """Bytes deemed lost and not yet retransmitted since."""
        return self.lost - self.lost_rx

    def next_lost(self) -> Record | None:
        """RFC 6675 NextSeg rule 1: the lowest run deemed lost and not retransmitted since."""
        if self.lost == self.lost_rx:
            return None
        for r in self.segs:
            if r[3] & (LOST | RETRANS | SACKED) == LOST:
                return r
        return None

    def pipe(self, flight: int) -> int:
        """RFC 6675 section 4 SetPipe(), from running counts: what is in flight, less what
        is SACKed or deemed lost, plus the retransmissions of it still in flight."""
        return flight - self.sacked - self.lost + self.retrans

    def sacked_above(self, pos: int) -> tuple[int, int]:
        """(bytes SACKed above ``pos``, discontiguous SACKed ranges above it)."""
        by = ranges = 0
        prev_sacked = False
        for s, e, _, f, _ in reversed(self.segs):
            if e <= pos:
                break
            if f & SACKED:
                by += e - max(s, pos + 1)
                if not prev_sacked:
                    ranges += 1
                prev_sacked = True
            else:
                prev_sacked = False
        return by, ranges

    def is_lost(self, pos: int, smss: int, dupthresh: int) -> bool:
        """RFC 6675 section 4 IsLost(SeqNum): DupThresh discontiguous SACKed ranges above
        it, or more than (DupThresh - 1) * SMSS bytes SACKed above it."""
        by, ranges = self.sacked_above(pos)
        return ranges >= dupthresh or by > (dupthresh - 1) * smss

    def mark_lost_dupthresh(self, smss: int, dupthresh: int) -> int:
        """RFC 6675 section 5 (the scoreboard update): deem lost every un-SACKed run whose
        last octet IsLost().  IsLost is monotonic in the sequence number, so the scan from
        the top stops at the first run found lost and marks everything below it too."""
        by = ranges = 0
        prev_sacked = False
        segs = self.segs
        for i in range(len(segs) - 1, -1, -1):
            s, e, _, f, _ = segs[i]
            if f & SACKED:
                by += e - s
                if not prev_sacked:
                    ranges += 1
                prev_sacked = True
                continue
            prev_sacked = False
            if ranges >= dupthresh or by > (dupthresh - 1) * smss:
                return sum(self.mark_lost(r) for r in segs[:i + 1] if not r[3] & LOST)
        return 0


def _within(s: int, e: int, outer: tuple[int, int]) -> bool:
    """[s, e) lies inside ``outer`` (RFC 2883 section 4: a D-SACK inside the second block)."""
    a, b = outer
    return ((s - a) & SEQ_MASK) <= ((b - a) & SEQ_MASK) and ((e - a) & SEQ_MASK) <= ((b - a) & SEQ_MASK) \
        and ((e - s) & SEQ_MASK) < 0x80000000


def rcv_sack_update(prev: list[tuple[int, int]], ranges: list[tuple[int, int]],
                    latest: tuple[int, int] | None, limit: int) -> list[tuple[int, int]]:
    """Blocks to report: the range holding the latest segment first, then the previously
    reported ones still present (RFC 2018 section 4), at most ``limit``.

    ``ranges`` are the current out-of-order ranges (absolute seq, disjoint).
    """
    out: list[tuple[int, int]] = []
    if latest is not None:
        ls = latest[0]
        for a, b in ranges:
            if ((ls - a) & SEQ_MASK) < ((b - a) & SEQ_MASK) or ls == a:
                out.append((a, b))
                break
    for ps, _pe in prev:
        if len(out) >= limit:
            break
        for a, b in ranges:
            if ((ps - a) & SEQ_MASK) < ((b - a) & SEQ_MASK) and (a, b) not in out:
                out.append((a, b))
                break
    for r in ranges:  # fill up with any others
        if len(out) >= limit:
            break
        if r not in out:
            out.append(r)
    return out[:limit]
