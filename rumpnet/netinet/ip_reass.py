"""IPv4 reassembly with limits (NetBSD's ``ip_reass.c``).

Overlapping fragments (RFC 5722's rule, which NetBSD applies to IPv4 as a hardening) and
datagrams that would exceed 65535 bytes make the whole datagram go; exact duplicates are
dropped alone. The number of datagrams under reassembly (``net.inet.ip.maxfragpackets``)
and of fragments held are capped; queues time out after ``IPFRAGTTL`` seconds. The ECN
field of the datagram is made from its fragments' (RFC 3168 section 5.3, Linux's
``ip_frag_ecn_table``): CE on any, ECT on the rest, gives CE; Not-ECT mixed with ECT or CE
drops the datagram.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rumpnet.netinet.in_cksum import in_cksum
from rumpnet.netinet.ip_var import (
    IP_HDR,
    IP_MAXPACKET,
    IP_MF,
    IP_OFFMASK,
    IPFRAGTTL,
    IPTOS_ECN_CE,
    IPTOS_ECN_MASK,
    IPTOS_ECN_NOTECT,
)

_NOTECT_SEEN = 1 << IPTOS_ECN_NOTECT
_CE_SEEN = 1 << IPTOS_ECN_CE

if TYPE_CHECKING:
    from rumpnet.netinet.in_proto import Inet


class _Queue:
    __slots__ = ("frags", "total", "held", "first_hdr", "expire", "timer", "nbytes", "ecn")

    def __init__(self, expire: float) -> None:
        self.frags: list[tuple[int, int, bytes]] = []  # (start, end, data), sorted by start
        self.total = -1  # payload length once the last fragment arrived
        self.first_hdr: bytes | None = None
        self.expire = expire
        self.timer: Any = None
        self.nbytes = 0
        self.ecn = 0     # a bit per ECN codepoint the fragments carried (1 << codepoint)


class Reassembler:
    def __init__(self, inet: Inet) -> None:
        self.inet = inet
        self.stats = inet.ipstat
        self.params = inet.ip_params
        self.queues: dict[tuple[int, int, int, int], _Queue] = {}
        self.nfrags = 0

    def _drop_queue(self, key: tuple[int, int, int, int], count_as: str | None = None) -> None:
        q = self.queues.pop(key, None)
        if q is None:
            return
        if q.timer is not None:
            q.timer.cancel()
        self.nfrags -= len(q.frags)
        if count_as:
            setattr(self.stats, count_as, getattr(self.stats, count_as) + 1)
        self.stats.ips_fragdropped += len(q.frags)

    def _timeout(self, key: tuple[int, int, int, int]) -> None:
        if key in self.queues:
            self.stats.ips_fragtimeout += 1
            self._drop_queue(key)

    def insert(self, pkt: memoryview, hlen: int, src: int, dst: int, ip_id: int, proto: int,
               ip_off: int, ifp: Any) -> bytes | None:
        """Add a fragment; return the whole datagram (header + data) when complete."""
        st = self.stats
        start = (ip_off & IP_OFFMASK) << 3
        data = bytes(pkt[hlen:])
        end = start + len(data)
        more = bool(ip_off & IP_MF)
        # RFC 791: every fragment but the last carries a multiple of 8 bytes.
        if more and (len(data) == 0 or len(data) & 7):
            st.ips_badlen += 1
            st.ips_fragdropped += 1
            return None
        key = (src, dst, ip_id, proto)
        if end + hlen > IP_MAXPACKET:
            st.ips_toolong += 1
            st.ips_fragdropped += 1
            self._drop_queue(key)
            return None
        q = self.queues.get(key)
        if q is None:
            # net.inet.ip.maxfragpackets: 0 accepts no fragments, -1 any number of
            # datagrams (NetBSD's ip_maxfragpackets); before this fix -1 dropped all.
            maxq = self.params.maxfragpackets
            if maxq == 0:
                st.ips_fragdropped += 1
                return None
            if 0 < maxq <= len(self.queues):
                # Make room by dropping the oldest queue (NetBSD ip_reass_drophalf idea).
                oldest = next(iter(self.queues))
                self._drop_queue(oldest)
            now = self.inet.now()
            q = _Queue(now + IPFRAGTTL)
            q.timer = self.inet.kernel.sched.call_at(q.expire, self._timeout, key)
            self.queues[key] = q
        if self.nfrags >= self.params.maxfrags or len(q.frags) >= self.params.maxfragsperpacket:
            st.ips_fragdropped += 1
            self._drop_queue(key)
            return None
        if not more:
            # A last fragment must not end before data already held (Linux's "end <
            # q.len" check); before this fix such a queue could never complete and sat
            # there until the timeout.
            if (q.total >= 0 and q.total != end) or (q.frags and q.frags[-1][1] > end):
                st.ips_fragoverlap += 1
                self._drop_queue(key)
                return None
            q.total = end
        elif q.total >= 0 and end > q.total:
            st.ips_fragoverlap += 1
            self._drop_queue(key)
            return None
        # Find the insertion point; reject duplicates and overlaps.
        frags = q.frags
        i = 0
        while i < len(frags) and frags[i][0] < start:
            i += 1
        if i < len(frags) and frags[i][0] == start and frags[i][1] == end:
            if frags[i][2] == data:
                st.ips_fragduplicate += 1
                st.ips_fragdropped += 1
                return None
        if (i > 0 and frags[i - 1][1] > start) or (i < len(frags) and frags[i][0] < end):
            st.ips_fragoverlap += 1
            self._drop_queue(key)
            st.ips_fragdropped += 1
            return None
        frags.insert(i, (start, end, data))
        self.nfrags += 1
        q.nbytes += len(data)
        q.ecn |= 1 << (pkt[1] & IPTOS_ECN_MASK)
        if start == 0:
            q.first_hdr = bytes(pkt[:hlen])
        if q.total < 0 or q.first_hdr is None:
            return None
        # Complete when the fragments tile [0, total).
        pos = 0
        for s, e, _ in frags:
            if s != pos:
                return None
            pos = e
        if pos != q.total:
            return None
        return self._reassemble(key, q)

    def _reassemble(self, key: tuple[int, int, int, int], q: _Queue) -> bytes | None:
        """The datagram of a complete queue ``q``: the first fragment's header with the
        total length and the ECN field of all fragments (RFC 3168 5.3), then the data;
        None when the fragments' ECN fields do not go together."""
        frags = q.frags
        if q.first_hdr is None:
            return None
        if q.ecn & _NOTECT_SEEN and q.ecn != _NOTECT_SEEN:
            # RFC 3168 5.3: Not-ECT fragments mixed with ECN-capable ones: drop.
            self._drop_queue(key)
            return None
        del self.queues[key]
        if q.timer is not None:
            q.timer.cancel()
        self.nfrags -= len(frags)
        hdr = bytearray(q.first_hdr)
        flen = len(hdr) + q.total
        vhl, tos, _, pid, _, ttl, p, _, s_, d_ = IP_HDR.unpack_from(hdr)
        if q.ecn & _CE_SEEN:
            tos |= IPTOS_ECN_CE         # RFC 3168 5.3: congestion on any fragment
        IP_HDR.pack_into(hdr, 0, vhl, tos, flen, pid, 0, ttl, p, 0, s_, d_)
        c = in_cksum(hdr)
        hdr[10] = c >> 8
        hdr[11] = c & 0xFF
        return bytes(hdr) + b"".join(f[2] for f in frags)
