"""SACK (RFC 2018) and SACK-based loss recovery (RFC 6675); NetBSD tcp_sack.c.

Sender side: :class:`SackScoreboard` keeps the SACKed ranges above SND.UNA and answers
RFC 6675's IsLost, Pipe and NextSeg.  Receiver side: :func:`rcv_sack_update` produces the
blocks to report, most recently changed first (RFC 2018 section 4).
"""

from __future__ import annotations

from collections.abc import Iterable

from rumpnet.netinet.tcp_seq import SEQ_MASK


class SackScoreboard:
    """SACKed ranges, stored as offsets relative to ``base`` (= SND.UNA)."""

    __slots__ = ("base", "blocks", "high_rxt", "sacked")

    def __init__(self) -> None:
        self.base = 0
        self.blocks: list[list[int]] = []   # [[start_rel, end_rel], ...] sorted, disjoint
        self.high_rxt = 0                   # HighRxt, relative to base (RFC 6675 section 2)
        self.sacked = 0

    def clear(self, base: int) -> None:
        self.base = base
        self.blocks = []
        self.high_rxt = 0
        self.sacked = 0

    def __bool__(self) -> bool:
        return bool(self.blocks)

    def advance(self, snd_una: int) -> None:
        """SND.UNA moved forward: drop what it covers (cumulative ACK)."""
        d = (snd_una - self.base) & SEQ_MASK
        if d == 0:
            return
        self.base = snd_una
        self.high_rxt = max(0, self.high_rxt - d)
        if not self.blocks:
            return
        nb = []
        sacked = 0
        for a, b in self.blocks:
            a -= d
            b -= d
            if b <= 0:
                continue
            if a < 0:
                a = 0
            nb.append([a, b])
            sacked += b - a
        self.blocks = nb
        self.sacked = sacked

    def update(self, sack_blocks: Iterable[tuple[int, int]], flight: int) -> bool:
        """Merge received SACK blocks; returns True when new data was SACKed.

        Blocks at or below SND.UNA (D-SACK, RFC 2883) or beyond SND.MAX are ignored.
        """
        changed = False
        base = self.base
        for s, e in sack_blocks:
            a = (s - base) & SEQ_MASK
            b = (e - base) & SEQ_MASK
            if a >= 0x80000000:       # starts below snd_una
                if b >= 0x80000000 or b == 0:
                    continue          # entirely below: D-SACK, tolerated and ignored
                a = 0
            if b > flight or b <= a:
                continue
            changed |= self._insert(a, b)
        if changed:
            self.sacked = sum(b - a for a, b in self.blocks)
        return changed

    def _insert(self, a: int, b: int) -> bool:
        bl = self.blocks
        out: list[list[int]] = []
        i = 0
        n = len(bl)
        while i < n and bl[i][1] < a:
            out.append(bl[i])
            i += 1
        na, nb = a, b
        covered = False
        while i < n and bl[i][0] <= b:
            if bl[i][0] <= a and bl[i][1] >= b:
                covered = True
            na = min(na, bl[i][0])
            nb = max(nb, bl[i][1])
            i += 1
        if covered:
            return False
        out.append([na, nb])
        out.extend(bl[i:])
        self.blocks = out
        return True

    def holes(self, flight: int) -> list[tuple[int, int, bool]]:
        """(start_rel, end_rel, lost) for each un-SACKed range below the highest SACK."""
        return self._holes(flight, 0, 0)

    def _holes(self, flight: int, mss: int, dupthresh: int) -> list[tuple[int, int, bool]]:
        bl = self.blocks
        res = []
        prev = 0
        nblk = len(bl)
        above = self.sacked
        for i, (a, b) in enumerate(bl):
            if a > prev:
                # RFC 6675 IsLost for the hole's last octet: DupThresh discontiguous
                # SACKed ranges above it, or more than (DupThresh-1)*SMSS bytes SACKed.
                lost = (nblk - i) >= dupthresh or above > (dupthresh - 1) * mss
                res.append((prev, a, lost))
            above -= b - a
            prev = b
        return res

    def is_lost(self, rel: int, mss: int, dupthresh: int) -> bool:
        cnt = 0
        by = 0
        for a, b in self.blocks:
            if b > rel:
                cnt += 1
                by += b - max(a, rel + 1)
        return cnt >= dupthresh or by > (dupthresh - 1) * mss

    def pipe(self, flight: int, mss: int, dupthresh: int) -> int:
        """RFC 6675 section 4 SetPipe: octets believed to be in the network."""
        if not self.blocks:
            return flight
        hr = self.high_rxt
        pipe = flight - self.blocks[-1][1]     # tail above the highest SACK: not lost
        for a, b, lost in self._holes(flight, mss, dupthresh):
            if not lost:
                pipe += b - a
            if hr > a:                          # retransmitted octets count (again)
                pipe += min(hr, b) - a
        return pipe

    def next_seg(self, flight: int, mss: int, dupthresh: int,
                 rule3: bool = False) -> tuple[int, int] | None:
        """RFC 6675 NextSeg rules 1 (and 3): a range (start_rel, end_rel) to retransmit."""
        hr = self.high_rxt
        cand3 = None
        for a, b, lost in self._holes(flight, mss, dupthresh):
            if b <= hr:
                continue
            s = max(a, hr)
            if lost:
                return s, min(b, s + mss)
            if cand3 is None:
                cand3 = (s, min(b, s + mss))
        return cand3 if rule3 else None


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
