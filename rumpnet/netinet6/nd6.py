"""Neighbour discovery: options and the neighbour cache (NetBSD's ``nd6.c``; RFC 4861).

The cache is RFC 4861's state machine (section 7.3.2, appendix C): an entry is made
INCOMPLETE when a packet needs a neighbour nobody has resolved (the packet waits in a
short queue while multicast solicitations go out every RetransTimer, at most
``nd6_mmaxtries`` of them, after which the queue is answered with Destination Unreachable
code 3); an advertisement or any message carrying the neighbour's link-layer address makes
it STALE or REACHABLE; REACHABLE falls back to STALE after ReachableTime; sending to a
STALE neighbour starts DELAY, which after ``nd6_delay`` seconds becomes PROBE with unicast
solicitations, ``nd6_umaxtries`` of them before the entry goes. Upper layers confirm
reachability with :meth:`Nd6.nud_hint`.

Sans-IO: :meth:`Nd6.resolve` is ``nd6_resolve`` (link address now, or the packet queued);
solicitations go out through the ``solicit`` hook that ``nd6_nbr`` installs; packets that
waited come out as :class:`~rumpnet.netinet6.ip6_var.Ip6Send` with their link address.
"""

from __future__ import annotations

import random
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import MAX_RANDOM_FACTOR, MIN_RANDOM_FACTOR, In6Ifaddrs, In6Ifextra
from rumpnet.netinet6.ip6_var import Counters, Icmp6ErrorRequest, Ip6Core, Ip6Params, Outbox

# ND options (RFC 4861 4.6, RFC 7527 for the nonce).
ND_OPT_SOURCE_LINKADDR = 1
ND_OPT_TARGET_LINKADDR = 2
ND_OPT_PREFIX_INFORMATION = 3
ND_OPT_REDIRECTED_HEADER = 4
ND_OPT_MTU = 5
ND_OPT_NONCE = 14
ND_OPT_PI_FLAG_ONLINK = 0x80
ND_OPT_PI_FLAG_AUTO = 0x40
ND6_MAXNDOPT = 10          # options processed per message (NetBSD nd6_maxndopt)
_PI = struct.Struct("!BBBBIII16s")
_MTU = struct.Struct("!BBHI")

# Cache states (``nd6.h`` ND6_LLINFO_*).
ND6_LLINFO_NOSTATE = -2
ND6_LLINFO_INCOMPLETE = 0
ND6_LLINFO_REACHABLE = 1
ND6_LLINFO_STALE = 2
ND6_LLINFO_DELAY = 3
ND6_LLINFO_PROBE = 4
ND6_STATE_LETTER = {ND6_LLINFO_NOSTATE: "N", ND6_LLINFO_INCOMPLETE: "I", ND6_LLINFO_REACHABLE: "R",
                    ND6_LLINFO_STALE: "S", ND6_LLINFO_DELAY: "D", ND6_LLINFO_PROBE: "P"}
RECALC_REACHABLE_INTERVAL = 2 * 3600.0   # RFC 4861 6.3.4: "at least every few hours"


class NdOptError(ValueError):
    def __init__(self, kind: str = "icp6s_nd_badopt") -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class NdPrefixInfo:
    """A Prefix Information option (RFC 4861 4.6.2)."""

    plen: int
    onlink: bool
    autonomous: bool
    vltime: int
    pltime: int
    prefix: int


@dataclass(slots=True)
class NdOpts:
    """``union nd_opts``: the options of one ND message."""

    src_lladdr: bytes | None = None
    tgt_lladdr: bytes | None = None
    prefixes: list[NdPrefixInfo] = field(default_factory=list)
    mtu: int | None = None
    redirected: bytes | None = None
    nonce: bytes | None = None
    toomany: bool = False


def nd6_options(buf: bytes | bytearray | memoryview, off: int) -> NdOpts:
    """``nd6_options``: parse the options from ``off`` to the end. Any option of length
    zero, or running past the message, spoils the whole message (RFC 4861 6.1, 7.1:
    ``icp6s_nd_badopt``); a repeated single option keeps its first copy; unknown ones are
    skipped (4.6); beyond ``ND6_MAXNDOPT`` options the rest is not looked at."""
    opts = NdOpts()
    count = 0
    while off < len(buf):
        if off + 2 > len(buf) or buf[off + 1] == 0 or off + buf[off + 1] * 8 > len(buf):
            raise NdOptError()
        otype, olen = buf[off], buf[off + 1] * 8
        body = bytes(buf[off + 2:off + olen])
        count += 1
        if count > ND6_MAXNDOPT:
            opts.toomany = True
            break
        if otype == ND_OPT_SOURCE_LINKADDR and opts.src_lladdr is None:
            opts.src_lladdr = body
        elif otype == ND_OPT_TARGET_LINKADDR and opts.tgt_lladdr is None:
            opts.tgt_lladdr = body
        elif otype == ND_OPT_PREFIX_INFORMATION:
            if olen != 32:
                raise NdOptError()   # RFC 4861 4.6.2: length 4
            _, _, plen, flags, vl, pl, _, prefix = _PI.unpack_from(buf, off)
            opts.prefixes.append(NdPrefixInfo(plen, bool(flags & ND_OPT_PI_FLAG_ONLINK),
                                              bool(flags & ND_OPT_PI_FLAG_AUTO), vl, pl,
                                              int.from_bytes(prefix, "big")))
        elif otype == ND_OPT_MTU and opts.mtu is None:
            if olen != 8:
                raise NdOptError()
            opts.mtu = _MTU.unpack_from(buf, off)[3]
        elif otype == ND_OPT_REDIRECTED_HEADER and opts.redirected is None:
            opts.redirected = body[6:]          # 6 reserved bytes, then the packet
        elif otype == ND_OPT_NONCE and opts.nonce is None:
            opts.nonce = body
        off += olen
    return opts


def nd6_recv_options(msg: bytes, off: int, ext: In6Ifextra | None, stats: Counters, bad: str) -> NdOpts | None:
    """The options of a received ND message, or None with the reason counted: malformed
    options (``icp6s_nd_badopt``), or a link-layer address option of the wrong size for
    the link (``bad``, the message's own counter). Links without link-layer addresses
    ignore those options (RFC 4861 4.6.1)."""
    if ext is None:
        stats.bump(bad)
        return None
    try:
        opts = nd6_options(msg, off)
    except NdOptError as e:
        stats.bump(e.kind)
        return None
    if opts.toomany:
        stats.bump("icp6s_nd_toomanyopt")
    want = ((len(ext.lladdr) + 2 + 7) & ~7) - 2
    for name in ("src_lladdr", "tgt_lladdr"):
        ll = getattr(opts, name)
        if ll is None:
            continue
        if not ext.lladdr:
            setattr(opts, name, None)
        elif len(ll) != want:
            stats.bump(bad)
            return None
        else:
            setattr(opts, name, ll[:len(ext.lladdr)])
    return opts


def opt_lladdr(otype: int, lladdr: bytes) -> bytes:
    """A Source/Target Link-Layer Address option, padded to 8-octet units (RFC 4861 4.6.1)."""
    body = bytes((otype, 0)) + lladdr
    body += bytes(-len(body) % 8)
    return bytes((otype, len(body) // 8)) + body[2:]


def opt_prefix(pi: NdPrefixInfo) -> bytes:
    flags = (ND_OPT_PI_FLAG_ONLINK if pi.onlink else 0) | (ND_OPT_PI_FLAG_AUTO if pi.autonomous else 0)
    return _PI.pack(ND_OPT_PREFIX_INFORMATION, 4, pi.plen, flags, pi.vltime, pi.pltime, 0, in6.pack(pi.prefix))


def opt_mtu(mtu: int) -> bytes:
    return _MTU.pack(ND_OPT_MTU, 1, 0, mtu)


def opt_nonce(nonce: bytes) -> bytes:
    """RFC 7527 / RFC 3971 5.3.2: a nonce of 6 bytes fills one 8-octet unit."""
    return bytes((ND_OPT_NONCE, (len(nonce) + 2 + 7) // 8)) + nonce + bytes(-(len(nonce) + 2) % 8)


def opt_redirected(pkt: bytes, room: int) -> bytes:
    """Redirected Header option with as much of ``pkt`` as fits in ``room`` bytes."""
    take = max(0, min(len(pkt), room - 8) & ~7)
    return bytes((ND_OPT_REDIRECTED_HEADER, (take + 8) // 8)) + bytes(6) + pkt[:take]


# -- the cache ------------------------------------------------------------------------------
class Nd6Params:
    """``net.inet6.icmp6.nd6_*`` tunables (NetBSD names and defaults; seconds)."""

    def __init__(self) -> None:
        self.nd6_delay = 5           # DELAY_FIRST_PROBE_TIME
        self.nd6_umaxtries = 3       # MAX_UNICAST_SOLICIT
        self.nd6_mmaxtries = 3       # MAX_MULTICAST_SOLICIT
        self.nd6_maxqueuelen = 16    # packets waiting per unresolved neighbour
        self.nd6_gctimer = 86400     # a STALE entry unused this long goes


@dataclass(slots=True)
class Nd6Stats(Counters):
    """Neighbour cache counters (rumpnet's, in the spirit of ``arpstat``)."""

    nd6s_held: int = 0            # packets queued waiting for resolution
    nd6s_heldsent: int = 0        # ... sent once resolved
    nd6s_helddropped: int = 0     # ... dropped (queue full, resolution failed, entry gone)
    nd6s_unresolved: int = 0      # resolutions given up (INCOMPLETE timed out)
    nd6s_unreachable: int = 0     # entries removed by NUD (PROBE timed out)
    nd6s_cacheoverflow: int = 0   # entries refused or evicted at neighborgcthresh
    nd6s_lladdrchange: int = 0    # a neighbour's link-layer address changed
    nd6s_nudhint: int = 0         # entries an upper layer's hint made REACHABLE (RFC 4861 7.3.1)


@dataclass(slots=True, eq=False)
class Llinfo6:
    """A neighbour cache entry (``llinfo_nd6``)."""

    addr: int
    ifindex: int
    state: int = ND6_LLINFO_INCOMPLETE
    lladdr: bytes | None = None
    isrouter: bool = False
    asked: int = 0
    static: bool = False
    hold: deque[bytes] = field(default_factory=deque)


@dataclass(frozen=True, slots=True)
class Nd6Unreachable:
    """A neighbour stopped answering (resolution or NUD failed): routes through it and a
    default router entry for it are stale (RFC 4861 7.3.3)."""

    addr: int
    ifindex: int
    isrouter: bool


# solicit(ifindex, target, unicast lladdr or None for multicast, now)
Solicit = Callable[[int, int, "bytes | None", float], None]
Key = tuple[int, int]


class Nd6(Ip6Core):
    """The neighbour cache of one node, all interfaces."""

    def __init__(self, params: Nd6Params, ip6: Ip6Params, stats: Nd6Stats, ifaddrs: In6Ifaddrs,
                 rng: random.Random, out: Outbox | None = None) -> None:
        super().__init__(out)
        self.params = params
        self.ip6 = ip6
        self.stats = stats
        self.ifaddrs = ifaddrs
        self.rng = rng
        self.table: dict[Key, Llinfo6] = {}
        self.solicit: Solicit = lambda ifindex, target, lladdr, now: None

    # -- per-link parameters -------------------------------------------------------------
    def recalc_reachable(self, ifindex: int, now: float) -> None:
        """ReachableTime: BaseReachableTime times a uniform factor in [0.5, 1.5]
        (RFC 4861 6.3.2), recomputed now and every couple of hours."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None:
            return
        ext.ndi.reachable = ext.ndi.basereachable * self.rng.uniform(MIN_RANDOM_FACTOR, MAX_RANDOM_FACTOR)
        self.timers.set(("recalc", ifindex), now + RECALC_REACHABLE_INTERVAL)

    def _retrans(self, ifindex: int) -> float:
        ext = self.ifaddrs.ifs.get(ifindex)
        return ext.ndi.retrans if ext is not None else 1.0

    def _reachable(self, ifindex: int) -> float:
        ext = self.ifaddrs.ifs.get(ifindex)
        return ext.ndi.reachable if ext is not None else 30.0

    # -- entries ----------------------------------------------------------------------------
    def lookup(self, addr: int, ifindex: int) -> Llinfo6 | None:
        return self.table.get((ifindex, addr))

    def entries(self) -> list[Llinfo6]:
        return sorted(self.table.values(), key=lambda e: (e.ifindex, e.addr))

    def expiry(self, ln: Llinfo6) -> float | None:
        """When the entry's current state ends (for ``ndp -a``), None for static ones."""
        return self.timers.get((ln.ifindex, ln.addr))

    def _create(self, addr: int, ifindex: int, state: int) -> Llinfo6 | None:
        if len(self.table) >= self.ip6.neighborgcthresh and not self._evict_one():
            self.stats.nd6s_cacheoverflow += 1
            return None
        ln = Llinfo6(addr, ifindex, state)
        self.table[(ifindex, addr)] = ln
        return ln

    def _evict_one(self) -> bool:
        """Make room: the first STALE entry goes (``nd6_gc``), counted."""
        for key, ln in self.table.items():
            if ln.state == ND6_LLINFO_STALE and not ln.static:
                self._free(key, ln)
                self.stats.nd6s_cacheoverflow += 1
                return True
        return False

    def _free(self, key: Key, ln: Llinfo6) -> None:
        self.stats.nd6s_helddropped += len(ln.hold)
        ln.hold.clear()
        self.table.pop(key, None)
        self.timers.cancel(key)

    def remove(self, addr: int, ifindex: int) -> bool:
        """``ndp -d``: True when there was an entry."""
        ln = self.table.get((ifindex, addr))
        if ln is None:
            return False
        self._free((ifindex, addr), ln)
        return True

    def purge_if(self, ifindex: int) -> None:
        """``nd6_purge``: every entry of an interface goes (interface down or gone)."""
        for key, ln in list(self.table.items()):
            if ln.ifindex == ifindex:
                self._free(key, ln)

    def add_static(self, addr: int, ifindex: int, lladdr: bytes) -> Llinfo6:
        """``ndp -s``: a permanent REACHABLE entry."""
        key = (ifindex, addr)
        old = self.table.pop(key, None)
        self.timers.cancel(key)
        ln = Llinfo6(addr, ifindex, ND6_LLINFO_REACHABLE, lladdr, static=True)
        self.table[key] = ln
        if old is not None:
            self._release_hold(old, ln)
        return ln

    def _set_state(self, ln: Llinfo6, state: int, now: float) -> None:
        """Enter ``state`` with its timer (RFC 4861 appendix C)."""
        ln.state = state
        key = (ln.ifindex, ln.addr)
        if ln.static:
            self.timers.cancel(key)
        elif state == ND6_LLINFO_REACHABLE:
            self.timers.set(key, now + self._reachable(ln.ifindex))
        elif state == ND6_LLINFO_STALE:
            self.timers.set(key, now + self.params.nd6_gctimer)
        elif state == ND6_LLINFO_DELAY:
            self.timers.set(key, now + self.params.nd6_delay)
        else:   # INCOMPLETE, PROBE: a solicitation goes now, the next one a RetransTimer on
            self.timers.set(key, now + self._retrans(ln.ifindex))

    def _release_hold(self, src: Llinfo6, ln: Llinfo6) -> None:
        """Send what waited for ``src``'s address to ``ln``'s link-layer address."""
        while src.hold:
            self.out.send(src.hold.popleft(), ln.ifindex, ln.lladdr)
            self.stats.nd6s_heldsent += 1

    # -- resolution ----------------------------------------------------------------------------
    def resolve(self, ifindex: int, nexthop: int, pkt: bytes, now: float) -> bytes | None:
        """``nd6_resolve``: the link-layer address to send ``pkt`` to ``nexthop`` on, or
        None after queueing it (at most ``nd6_maxqueuelen``; the oldest is dropped)."""
        key = (ifindex, nexthop)
        ln = self.table.get(key)
        if ln is not None and ln.lladdr is not None and ln.state > ND6_LLINFO_INCOMPLETE:
            if ln.state == ND6_LLINFO_STALE:
                # RFC 4861 7.3.3: sending to a STALE neighbour starts the DELAY timer.
                ln.asked = 0
                self._set_state(ln, ND6_LLINFO_DELAY, now)
            return ln.lladdr
        if ln is None:
            ln = self._create(nexthop, ifindex, ND6_LLINFO_INCOMPLETE)
            if ln is None:
                self.stats.nd6s_helddropped += 1
                return None
        if len(ln.hold) >= self.params.nd6_maxqueuelen:
            ln.hold.popleft()
            self.stats.nd6s_helddropped += 1
        ln.hold.append(pkt)
        self.stats.nd6s_held += 1
        if ln.state == ND6_LLINFO_NOSTATE or (ln.state == ND6_LLINFO_INCOMPLETE and key not in self.timers):
            ln.state = ND6_LLINFO_INCOMPLETE
            ln.asked = 1
            self._set_state(ln, ND6_LLINFO_INCOMPLETE, now)
            self.solicit(ifindex, nexthop, None, now)
        return None

    def nud_hint(self, addr: int, ifindex: int, now: float) -> None:
        """``nd6_nud_hint``: an upper layer saw forward progress (RFC 4861 7.3.1: TCP's
        acknowledgments of new data confirm the path), so the entry is REACHABLE again
        without a probe. One still REACHABLE for more than half its ReachableTime is
        left alone: hints come with every ACK, and re-arming it each time would only
        fill the timer heap. (NetBSD stops believing hints after ``nd6_maxnudhint`` of
        them in a row, 0 by default, so its TCP's hints do nothing; rumpnet takes them,
        as RFC 4861 7.3.1 says to and Linux's dst_confirm does.)"""
        key = (ifindex, addr)
        ln = self.table.get(key)
        if ln is None or ln.lladdr is None or ln.state <= ND6_LLINFO_INCOMPLETE or ln.static:
            return
        if ln.state == ND6_LLINFO_REACHABLE:
            due = self.timers.get(key)
            if due is not None and due - now > self._reachable(ifindex) / 2:
                return
        ln.asked = 0
        self.stats.nd6s_nudhint += 1
        self._set_state(ln, ND6_LLINFO_REACHABLE, now)

    def cache_lladdr(self, ifindex: int, addr: int, lladdr: bytes | None, now: float,
                     isrouter: bool | None = None) -> Llinfo6 | None:
        """``nd6_cache_lladdr``: a solicitation, router message or redirect told us
        ``addr``'s link-layer address (RFC 4861 7.2.3, 6.2.6, 6.3.4, 8.3): a new or
        changed address makes the entry STALE; an INCOMPLETE entry sends its queue."""
        if addr == in6.IN6ADDR_ANY or lladdr is None:
            return self.table.get((ifindex, addr))
        ln = self.table.get((ifindex, addr))
        if ln is None:
            ln = self._create(addr, ifindex, ND6_LLINFO_STALE)
            if ln is None:
                return None
            ln.lladdr = lladdr
            ln.isrouter = bool(isrouter)     # 7.2.3: a new entry is no router unless told
            self._set_state(ln, ND6_LLINFO_STALE, now)
            return ln
        elif not ln.static and ln.lladdr != lladdr:
            if ln.lladdr is not None:
                self.stats.nd6s_lladdrchange += 1
            ln.lladdr = lladdr
            ln.asked = 0
            self._set_state(ln, ND6_LLINFO_STALE, now)
            self._release_hold(ln, ln)
        if isrouter is not None:
            ln.isrouter = isrouter
        return ln

    def na_update(self, ln: Llinfo6, lladdr: bytes | None, solicited: bool, override: bool,
                  isrouter: bool, now: float) -> None:
        """The Neighbor Advertisement rules of RFC 4861 7.2.5 for an existing entry."""
        if ln.static:
            return
        if ln.state == ND6_LLINFO_INCOMPLETE:
            if lladdr is None:
                return            # 7.2.5: no target link-layer address, nothing learned
            ln.lladdr = lladdr
            ln.asked = 0
            self._set_state(ln, ND6_LLINFO_REACHABLE if solicited else ND6_LLINFO_STALE, now)
            ln.isrouter = isrouter
            self._release_hold(ln, ln)
            return
        changed = lladdr is not None and lladdr != ln.lladdr
        if not override and changed:
            # 7.2.5: a different address without Override only makes a REACHABLE entry
            # STALE; the cached address stays.
            if ln.state == ND6_LLINFO_REACHABLE:
                self._set_state(ln, ND6_LLINFO_STALE, now)
            return
        if changed:
            ln.lladdr = lladdr
            self.stats.nd6s_lladdrchange += 1
        if solicited:
            ln.asked = 0
            self._set_state(ln, ND6_LLINFO_REACHABLE, now)
        elif changed:
            self._set_state(ln, ND6_LLINFO_STALE, now)
        ln.isrouter = isrouter

    # -- timers ------------------------------------------------------------------------------
    def timeout(self, key: object, now: float) -> None:
        if isinstance(key, tuple) and key and key[0] == "recalc":
            self.recalc_reachable(key[1], now)
            return
        ln = self.table.get(cast(Key, key))
        if ln is None:
            return
        if ln.state == ND6_LLINFO_INCOMPLETE:
            self._incomplete_timeout(ln, now)
        elif ln.state == ND6_LLINFO_REACHABLE:
            self._set_state(ln, ND6_LLINFO_STALE, now)
        elif ln.state == ND6_LLINFO_DELAY:
            # 7.3.3: no confirmation within DELAY_FIRST_PROBE_TIME: probe, unicast.
            ln.asked = 1
            self._set_state(ln, ND6_LLINFO_PROBE, now)
            self.solicit(ln.ifindex, ln.addr, ln.lladdr, now)
        elif ln.state == ND6_LLINFO_PROBE:
            if ln.asked < self.params.nd6_umaxtries:
                ln.asked += 1
                self._set_state(ln, ND6_LLINFO_PROBE, now)
                self.solicit(ln.ifindex, ln.addr, ln.lladdr, now)
            else:
                self.stats.nd6s_unreachable += 1
                self._free((ln.ifindex, ln.addr), ln)
                self.out.event(Nd6Unreachable(ln.addr, ln.ifindex, ln.isrouter))
        else:   # STALE past nd6_gctimer
            self._free((ln.ifindex, ln.addr), ln)

    def _incomplete_timeout(self, ln: Llinfo6, now: float) -> None:
        if ln.asked < self.params.nd6_mmaxtries:
            ln.asked += 1
            self._set_state(ln, ND6_LLINFO_INCOMPLETE, now)
            self.solicit(ln.ifindex, ln.addr, None, now)
            return
        # RFC 4861 7.2.2: resolution failed; every queued packet gets a Destination
        # Unreachable (address unreachable) to its source.
        self.stats.nd6s_unresolved += 1
        for pkt in ln.hold:
            self.out.event(Icmp6ErrorRequest(pkt, ln.ifindex, 1, 3))
        self._free((ln.ifindex, ln.addr), ln)
        self.out.event(Nd6Unreachable(ln.addr, ln.ifindex, ln.isrouter))
