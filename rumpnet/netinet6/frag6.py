"""IPv6 fragmentation at the source and reassembly (NetBSD's ``frag6.c``, RFC 8200 4.5).

Reassembly follows RFC 8200 4.5 with its updates: overlapping fragments abandon the whole
datagram, including fragments still to come (RFC 5722; exact duplicates are dropped
alone, as 4.5 allows); an atomic fragment (offset 0, M clear) is processed on its own
and never joins a queue (RFC 6946); a first fragment without the whole header chain is
refused with a Parameter Problem code 3 (RFC 7112); a queue lives 60 seconds, after which
a Time Exceeded (code 1) goes to the source if the first fragment had arrived. Queues,
fragments and bytes held are capped (``net.inet6.ip6.maxfragpackets``, ``maxfrags``,
``maxfragsperpacket``, ``maxfragbytes``); every fragment dropped is counted.

Sans-IO: :meth:`Frag6.input` takes a packet, the fragment header's offset and ``now``;
errors come out as :class:`~rumpnet.netinet6.ip6_var.Icmp6ErrorRequest` events, deadlines
through ``get_timer``/``handle_timer``.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass
from typing import cast

from rumpkern.errno import kerr
from rumpnet.netinet6.ip6 import (
    IP6_EXTHDRS,
    IP6_FRAG_LEN,
    IP6_HDR_LEN,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ICMPV6,
    IPPROTO_NONE,
    IPPROTO_ROUTING,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPV6_MAXPACKET,
    OFF_NXT,
    OFF_PLEN,
    Ip6FragRepr,
    Ip6ParseError,
    emit_frag,
    ext_len,
    parse_frag,
    walk_exthdrs,
)
from rumpnet.netinet6.ip6_var import IPV6_FRAGTTL, Icmp6ErrorRequest, Ip6Core, Ip6Params, Ip6Stats, Outbox

ICMP6_PARAM_PROB = 4
ICMP6_PARAMPROB_HEADER = 0
ICMP6_PARAMPROB_FIRSTFRAG = 3     # RFC 7112: first fragment lacks the header chain
ICMP6_TIME_EXCEEDED = 3
ICMP6_TIME_EXCEED_REASSEMBLY = 1

# Smallest upper-layer header a first fragment must hold whole (RFC 7112 5).
_UPPER_MIN = {IPPROTO_TCP: 20, IPPROTO_UDP: 8, IPPROTO_ICMPV6: 4, IPPROTO_NONE: 0}
_U16 = struct.Struct("!H")

FragKey = tuple[int, int, int]   # (src, dst, identification)


@dataclass(slots=True)
class Reassembled:
    """A datagram made whole: ``packet`` without its fragment header; the header chain
    goes on at ``off`` with header type ``nxt`` (the first fragment's), named by the
    byte at ``nxt_field``."""

    packet: bytes
    off: int
    nxt: int
    nxt_field: int


class _Queue:
    __slots__ = ("frags", "total", "first", "nbytes", "dead", "ifindex")

    def __init__(self, ifindex: int) -> None:
        self.frags: list[tuple[int, int, bytes]] = []   # (start, end, data) by start
        self.total = -1                 # fragmentable length, once the last fragment came
        # The first fragment up to its fragment header: (bytes, header offset, the
        # offset of the byte naming the header, the header's next header).
        self.first: tuple[bytes, int, int, int] | None = None
        self.nbytes = 0
        self.dead = False               # RFC 5722: abandoned, later fragments dropped too
        self.ifindex = ifindex


class Frag6(Ip6Core):
    """Reassembly queues of one node (``ip6q``)."""

    def __init__(self, params: Ip6Params, stats: Ip6Stats, out: Outbox | None = None) -> None:
        super().__init__(out)
        self.params = params
        self.stats = stats
        self.queues: dict[FragKey, _Queue] = {}
        self.nfrags = 0
        self.nbytes = 0

    # -- input -------------------------------------------------------------------------
    def input(self, pkt: bytes, foff: int, nxt_field: int, src: int, dst: int, ifindex: int,
              now: float) -> Reassembled | None:
        """``frag6_input``: ``pkt`` is a whole received packet whose fragment header sits
        at ``foff`` and is named by the byte at ``nxt_field``. Returns the datagram when
        this fragment completes it (at once for an atomic fragment), else None."""
        st = self.stats
        st.ip6s_fragments += 1
        try:
            fr = parse_frag(pkt, foff)
        except Ip6ParseError as e:
            st.bump(e.kind)
            st.ip6s_fragdropped += 1
            return None
        data_off = foff + IP6_FRAG_LEN
        flen = len(pkt) - data_off
        if not fr.offset and not fr.more:
            st.ip6s_atomicfrags += 1   # RFC 6946 4: a datagram of its own, no queue
            return self._unfragment(pkt, foff, nxt_field, fr.nxt, pkt[data_off:])
        if fr.more and (flen == 0 or flen & 7):
            # RFC 8200 4.5: not a multiple of 8 octets and not the last fragment.
            self._refuse(pkt, ifindex, ICMP6_PARAMPROB_HEADER, OFF_PLEN)
            return None
        if fr.offset + flen > IPV6_MAXPACKET:
            self._refuse(pkt, ifindex, ICMP6_PARAMPROB_HEADER, foff + 2)
            return None
        if fr.offset == 0 and not self._has_header_chain(pkt, data_off, fr.nxt):
            self._refuse(pkt, ifindex, ICMP6_PARAMPROB_FIRSTFRAG, 0)
            return None
        key = (src, dst, fr.ident)
        q = self.queues.get(key)
        if q is None:
            q = self._new_queue(key, ifindex, now)
            if q is None:
                return None
        if q.dead:
            st.ip6s_fragdropped += 1
            return None
        if not self._insert(key, q, fr, bytes(pkt[data_off:])):
            if not q.frags and not q.dead:
                del self.queues[key]            # nothing held: no slot taken
                self.timers.cancel(key)
            return None
        if fr.offset == 0:
            q.first = (bytes(pkt[:data_off]), foff, nxt_field, fr.nxt)
        return self._complete(key, q)

    def _refuse(self, pkt: bytes, ifindex: int, code: int, pointer: int) -> None:
        self.stats.ip6s_fragdropped += 1
        self.out.event(Icmp6ErrorRequest(bytes(pkt), ifindex, ICMP6_PARAM_PROB, code, pointer))

    @staticmethod
    def _has_header_chain(pkt: bytes, off: int, nxt: int) -> bool:
        """RFC 7112 5: does the first fragment hold every extension header and the
        upper-layer header? Unknown upper layers only need to start in it."""
        try:
            for hnxt, hoff, hlen, _ in walk_exthdrs(pkt, nxt, off, 64):
                if hlen == 0:
                    need = _UPPER_MIN.get(hnxt, 0 if hnxt not in IP6_EXTHDRS else 1)
                    return hoff + need <= len(pkt)
        except Ip6ParseError:
            return False
        return False

    def _new_queue(self, key: FragKey, ifindex: int, now: float) -> _Queue | None:
        p, st = self.params, self.stats
        if p.maxfragpackets == 0 or 0 < p.maxfragpackets <= len(self.queues):
            st.ip6s_fragoverflow += 1
            st.ip6s_fragdropped += 1
            return None
        q = _Queue(ifindex)
        self.queues[key] = q
        # RFC 8200 4.5: 60 seconds from the first-arriving fragment.
        self.timers.set(key, now + IPV6_FRAGTTL)
        return q

    def _insert(self, key: FragKey, q: _Queue, fr: Ip6FragRepr, data: bytes) -> bool:
        st, p = self.stats, self.params
        start, end = fr.offset, fr.offset + len(data)
        if self.nfrags >= p.maxfrags or self.nbytes + len(data) > p.maxfragbytes:
            st.ip6s_fragoverflow += 1          # node-wide caps: this fragment goes
            st.ip6s_fragdropped += 1
            return False
        if len(q.frags) >= p.maxfragsperpacket:
            st.ip6s_fragoverflow += 1          # this datagram cannot complete: it goes
            self._abandon(q, extra=1)
            return False
        if not fr.more:
            if (q.total >= 0 and q.total != end) or (q.frags and q.frags[-1][1] > end):
                self._abandon(q, extra=1)      # a second, different end: inconsistent
                return False
            q.total = end
        elif q.total >= 0 and end > q.total:
            self._abandon(q, extra=1)
            return False
        frags = q.frags
        i = 0
        while i < len(frags) and frags[i][0] < start:
            i += 1
        if i < len(frags) and frags[i][:2] == (start, end) and frags[i][2] == data:
            st.ip6s_fragdropped += 1           # an exact duplicate (RFC 8200 4.5)
            return False
        if (i > 0 and frags[i - 1][1] > start) or (i < len(frags) and frags[i][0] < end):
            st.ip6s_fragoverlap += 1           # RFC 5722 3: the whole datagram goes
            self._abandon(q, extra=1)
            return False
        frags.insert(i, (start, end, data))
        q.nbytes += len(data)
        self.nfrags += 1
        self.nbytes += len(data)
        return True

    def _abandon(self, q: _Queue, extra: int = 0) -> None:
        """Free a queue's fragments and keep it as a tombstone until its deadline, so
        fragments of the same datagram still on their way are dropped too (RFC 5722 3)."""
        self.stats.ip6s_fragdropped += len(q.frags) + extra
        self._release(q)
        q.dead = True
        q.first = None

    def _release(self, q: _Queue) -> None:
        self.nfrags -= len(q.frags)
        self.nbytes -= q.nbytes
        q.frags = []
        q.nbytes = 0

    def _complete(self, key: FragKey, q: _Queue) -> Reassembled | None:
        if q.total < 0 or q.first is None:
            return None
        pos = 0
        for s, e, _ in q.frags:
            if s != pos:
                return None
            pos = e
        if pos != q.total:
            return None
        # RFC 8200 4.5: every header before the fragment header comes from the first
        # fragment, and so does the next header value.
        first_pkt, foff, nxt_field, nxt = q.first
        data = b"".join(f[2] for f in q.frags)
        del self.queues[key]
        self.timers.cancel(key)
        self._release(q)
        if foff - IP6_HDR_LEN + len(data) > IPV6_MAXPACKET:
            self.stats.ip6s_fragdropped += 1   # would need a jumbogram
            return None
        self.stats.ip6s_reassembled += 1
        return self._unfragment(first_pkt, foff, nxt_field, nxt, data)

    def _unfragment(self, pkt: bytes, foff: int, nxt_field: int, nxt: int,
                    data: bytes | memoryview) -> Reassembled:
        hdr = bytearray(pkt[:foff])
        hdr[nxt_field] = nxt
        _U16.pack_into(hdr, OFF_PLEN, len(hdr) - IP6_HDR_LEN + len(data))
        return Reassembled(bytes(hdr) + bytes(data), foff, nxt, nxt_field)

    # -- timers ------------------------------------------------------------------------
    def timeout(self, key: object, now: float) -> None:
        q = self.queues.pop(cast(FragKey, key), None)
        if q is None or q.dead:
            return
        self.stats.ip6s_fragtimeout += len(q.frags)
        self.stats.ip6s_fragdropped += len(q.frags)
        # RFC 8200 4.5: Time Exceeded, fragment reassembly time exceeded, about the first
        # fragment (as it came: its headers and its data, RFC 4443 3.3), to its source.
        first = q.first[0] + q.frags[0][2] if q.first is not None and q.frags and q.frags[0][0] == 0 else None
        self._release(q)
        if first is not None:
            self.out.event(Icmp6ErrorRequest(first, q.ifindex, ICMP6_TIME_EXCEEDED, ICMP6_TIME_EXCEED_REASSEMBLY))

    def drain(self) -> None:
        """``frag6_drain``: drop everything held (memory pressure)."""
        for key, q in list(self.queues.items()):
            if not q.dead:
                self.stats.ip6s_fragdropped += len(q.frags)
            self._release(q)
            self.timers.cancel(key)
        self.queues.clear()


# -- source fragmentation ----------------------------------------------------------------
def unfragmentable_len(pkt: bytes | bytearray | memoryview) -> tuple[int, int]:
    """(length of the unfragmentable part, offset of the byte naming what follows it):
    the IPv6 header and every header up to and including the Routing header if there is
    one, else up to the Hop-by-Hop header if there is one (RFC 8200 4.5)."""
    nxt, off = pkt[OFF_NXT], IP6_HDR_LEN
    end, field = IP6_HDR_LEN, OFF_NXT
    while nxt in (IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING):
        hlen = ext_len(pkt, off, nxt)
        if nxt != IPPROTO_DSTOPTS:
            end, field = off + hlen, off
        if nxt == IPPROTO_ROUTING:
            break
        nxt, off = pkt[off], off + hlen
    return end, field


def ip6_fragment(pkt: bytes | bytearray | memoryview, mtu: int, ident: int) -> list[bytes]:
    """``ip6_fragment``: cut a whole packet into fragments of at most ``mtu`` bytes.

    Each fragment carries the unfragmentable part, a fragment header and a multiple of 8
    octets of the rest (RFC 8200 4.5). EMSGSIZE when the MTU leaves no room, or when the
    first fragment could not hold the whole header chain (RFC 7112).
    """
    ulen, field = unfragmentable_len(pkt)
    per = (mtu - ulen - IP6_FRAG_LEN) & ~7
    rest = memoryview(pkt)[ulen:]
    if per <= 0:
        raise kerr(errno.EMSGSIZE, "MTU too small for the unfragmentable part")
    if not Frag6._has_header_chain(bytes(pkt[:ulen]) + bytes(rest[:per]), ulen, pkt[field]):
        raise kerr(errno.EMSGSIZE, "header chain longer than the first fragment")
    head = bytearray(pkt[:ulen])
    nxt = head[field]
    head[field] = IPPROTO_FRAGMENT
    out = []
    for start in range(0, len(rest), per):
        chunk = rest[start:start + per]
        more = start + per < len(rest)
        _U16.pack_into(head, OFF_PLEN, ulen - IP6_HDR_LEN + IP6_FRAG_LEN + len(chunk))
        out.append(bytes(head) + emit_frag(Ip6FragRepr(nxt, start, more, ident)) + bytes(chunk))
    return out
