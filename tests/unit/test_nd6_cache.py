"""The neighbour cache state machine (netinet6/nd6.py, RFC 4861 7.3 and appendix C), on
explicit time: each transition, its timer, what is solicited, what waited and what is
dropped (by its counter); and the ND option parser."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import In6Ifaddrs, In6Ifextra
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Params, Ip6Send
from rumpnet.netinet6.nd6 import (
    ND6_LLINFO_DELAY,
    ND6_LLINFO_INCOMPLETE,
    ND6_LLINFO_PROBE,
    ND6_LLINFO_REACHABLE,
    ND6_LLINFO_STALE,
    ND_OPT_SOURCE_LINKADDR,
    Nd6,
    Nd6Params,
    Nd6Stats,
    Nd6Unreachable,
    NdOptError,
    NdPrefixInfo,
    nd6_options,
    opt_lladdr,
    opt_mtu,
    opt_nonce,
    opt_prefix,
    opt_redirected,
)

NB = in6.pton("fe80::2")
MAC, MAC2 = b"\x02\0\0\0\0\x02", b"\x02\0\0\0\0\x09"


class Cache:
    def __init__(self, **ip6: int) -> None:
        self.ifaddrs = In6Ifaddrs()
        self.ext = self.ifaddrs.attach(In6Ifextra(2, "wire0", b"\x02\0\0\0\0\x01"))
        self.ip6 = Ip6Params()
        for k, v in ip6.items():
            setattr(self.ip6, k, v)
        self.params = Nd6Params()
        self.stats = Nd6Stats()
        self.nd6 = Nd6(self.params, self.ip6, self.stats, self.ifaddrs, random.Random(3))
        self.ext.ndi.reachable = 30.0
        self.solicited: list[tuple[float, int, bytes | None]] = []
        self.nd6.solicit = lambda ifindex, target, lladdr, now: self.solicited.append((now, target, lladdr))

    def state(self, addr: int = NB) -> int | None:
        ln = self.nd6.lookup(addr, 2)
        return None if ln is None else ln.state

    def run(self, until: float) -> None:
        while (t := self.nd6.get_timer()) is not None and t <= until:
            self.nd6.handle_timer(t)

    def events(self) -> list[object]:
        out = []
        while (ev := self.nd6.next_event()) is not None:
            out.append(ev)
        return out


def test_resolution_and_the_queue() -> None:
    c = Cache()
    assert c.nd6.resolve(2, NB, b"p1", 0.0) is None
    assert c.nd6.resolve(2, NB, b"p2", 0.2) is None
    assert c.state() == ND6_LLINFO_INCOMPLETE
    assert c.solicited == [(0.0, NB, None)]                 # one multicast NS, not two
    ln = c.nd6.lookup(NB, 2)
    c.nd6.na_update(ln, MAC, solicited=True, override=True, isrouter=False, now=0.5)
    assert c.state() == ND6_LLINFO_REACHABLE
    assert c.nd6.packets_to_send() == [Ip6Send(b"p1", 2, MAC), Ip6Send(b"p2", 2, MAC)]
    assert c.nd6.resolve(2, NB, b"p3", 0.6) == MAC
    assert c.stats.nonzero() == {"nd6s_held": 2, "nd6s_heldsent": 2}


def test_incomplete_gives_up_with_unreachables() -> None:
    c = Cache()
    c.nd6.resolve(2, NB, b"held", 0.0)
    c.run(2.9)
    assert [t for t, _, _ in c.solicited] == [0.0, 1.0, 2.0]  # MAX_MULTICAST_SOLICIT, RetransTimer apart
    c.run(3.0)
    assert c.state() is None
    assert c.events() == [Icmp6ErrorRequest(b"held", 2, 1, 3), Nd6Unreachable(NB, 2, False)]
    assert c.stats.nd6s_unresolved == 1 and c.stats.nd6s_helddropped == 1


def test_queue_limit() -> None:
    c = Cache()
    c.params.nd6_maxqueuelen = 2
    for i in range(5):
        c.nd6.resolve(2, NB, bytes((i,)), 0.0)
    assert list(c.nd6.lookup(NB, 2).hold) == [b"\x03", b"\x04"]
    assert c.stats.nd6s_helddropped == 3


def test_reachable_stale_delay_probe_gone() -> None:
    c = Cache()
    c.nd6.resolve(2, NB, b"x", 0.0)
    c.nd6.na_update(c.nd6.lookup(NB, 2), MAC, True, True, False, 0.0)
    c.nd6.packets_to_send()
    c.run(29.9)
    assert c.state() == ND6_LLINFO_REACHABLE
    c.run(30.0)
    assert c.state() == ND6_LLINFO_STALE                      # ReachableTime
    assert c.nd6.resolve(2, NB, b"y", 100.0) == MAC             # sent at once...
    assert c.state() == ND6_LLINFO_DELAY                      # ...and DELAY starts
    assert c.nd6.get_timer() == 105.0
    c.run(105.0)
    assert c.state() == ND6_LLINFO_PROBE
    assert c.solicited[-1] == (105.0, NB, MAC)                 # unicast probe
    c.run(107.5)
    assert [s for s in c.solicited if s[0] >= 105] == [(105.0, NB, MAC), (106.0, NB, MAC), (107.0, NB, MAC)]
    c.run(108.0)
    assert c.state() is None
    assert c.events() == [Nd6Unreachable(NB, 2, False)]
    assert c.stats.nd6s_unreachable == 1


def test_confirmation_in_delay() -> None:
    c = Cache()
    c.nd6.cache_lladdr(2, NB, MAC, 0.0)
    assert c.state() == ND6_LLINFO_STALE
    c.nd6.resolve(2, NB, b"z", 1.0)
    c.nd6.nud_hint(NB, 2, 2.0)                                 # TCP saw progress
    assert c.state() == ND6_LLINFO_REACHABLE and c.nd6.get_timer() == 32.0
    c.run(40)
    assert c.solicited == []


def test_hints_rearm_reachable_only_past_half_its_time() -> None:
    """A hint per ACK must not push a timer per ACK: a REACHABLE entry with more than
    half of ReachableTime left stays as it is; past half, the hint re-arms it."""
    c = Cache()
    c.nd6.cache_lladdr(2, NB, MAC, 0.0)
    c.nd6.nud_hint(NB, 2, 1.0)
    assert c.state() == ND6_LLINFO_REACHABLE and c.nd6.get_timer() == 31.0 and c.stats.nd6s_nudhint == 1
    c.nd6.nud_hint(NB, 2, 10.0)                     # 21 s of 30 left: nothing to do
    assert c.nd6.get_timer() == 31.0 and c.stats.nd6s_nudhint == 1
    c.nd6.nud_hint(NB, 2, 20.0)                     # 11 s left: re-armed
    assert c.nd6.get_timer() == 50.0 and c.stats.nd6s_nudhint == 2
    c.nd6.nud_hint(in6.pton("fe80::9"), 2, 20.0)    # no entry: nothing made
    assert c.nd6.lookup(in6.pton("fe80::9"), 2) is None and c.stats.nd6s_nudhint == 2


def test_stale_entries_are_collected() -> None:
    c = Cache()
    c.nd6.cache_lladdr(2, NB, MAC, 0.0)
    c.run(86399)
    assert c.state() == ND6_LLINFO_STALE
    c.run(86400)
    assert c.state() is None and c.events() == []


def test_cache_lladdr_rules() -> None:
    c = Cache()
    assert c.nd6.cache_lladdr(2, 0, MAC, 0.0) is None          # never for ::
    assert c.nd6.cache_lladdr(2, NB, None, 0.0) is None        # nothing learned
    c.nd6.resolve(2, NB, b"w", 0.0)
    c.nd6.cache_lladdr(2, NB, MAC, 0.5, isrouter=True)         # INCOMPLETE -> STALE, queue out
    assert c.state() == ND6_LLINFO_STALE and c.nd6.lookup(NB, 2).isrouter
    assert c.nd6.packets_to_send() == [Ip6Send(b"w", 2, MAC)]
    c.nd6.na_update(c.nd6.lookup(NB, 2), MAC, True, False, True, 1.0)
    assert c.state() == ND6_LLINFO_REACHABLE
    c.nd6.cache_lladdr(2, NB, MAC, 1.5)                        # same address: no change
    assert c.state() == ND6_LLINFO_REACHABLE
    c.nd6.cache_lladdr(2, NB, MAC2, 2.0)                       # new address: STALE
    assert c.state() == ND6_LLINFO_STALE and c.nd6.lookup(NB, 2).lladdr == MAC2
    assert c.stats.nd6s_lladdrchange == 1


@pytest.mark.parametrize("state,solicited,override,lladdr,want_state,want_mac", [
    (ND6_LLINFO_REACHABLE, False, False, MAC2, ND6_LLINFO_STALE, MAC),      # 7.2.5: no override
    (ND6_LLINFO_STALE, False, False, MAC2, ND6_LLINFO_STALE, MAC),          # ignored
    (ND6_LLINFO_STALE, True, True, MAC2, ND6_LLINFO_REACHABLE, MAC2),
    (ND6_LLINFO_STALE, False, True, MAC2, ND6_LLINFO_STALE, MAC2),
    (ND6_LLINFO_STALE, True, False, MAC, ND6_LLINFO_REACHABLE, MAC),
    (ND6_LLINFO_PROBE, True, False, None, ND6_LLINFO_REACHABLE, MAC),
])
def test_advertisement_rules(state: int, solicited: bool, override: bool, lladdr: bytes | None,
                             want_state: int, want_mac: bytes) -> None:
    c = Cache()
    ln = c.nd6.cache_lladdr(2, NB, MAC, 0.0)
    ln.state = state
    c.nd6.na_update(ln, lladdr, solicited, override, False, 1.0)
    assert (ln.state, ln.lladdr) == (want_state, want_mac)


def test_static_entries_stay() -> None:
    c = Cache()
    c.nd6.resolve(2, NB, b"q", 0.0)
    ln = c.nd6.add_static(NB, 2, MAC)
    assert c.nd6.packets_to_send() == [Ip6Send(b"q", 2, MAC)]
    c.nd6.na_update(ln, MAC2, True, True, False, 1.0)
    c.nd6.cache_lladdr(2, NB, MAC2, 1.0)
    c.run(10**6)
    assert (c.state(), ln.lladdr) == (ND6_LLINFO_REACHABLE, MAC) and c.nd6.expiry(ln) is None
    assert c.nd6.remove(NB, 2) and not c.nd6.remove(NB, 2)


def test_cache_size_cap() -> None:
    c = Cache(neighborgcthresh=3)
    for i in range(3):
        c.nd6.cache_lladdr(2, NB + i, MAC, 0.0)
    c.nd6.cache_lladdr(2, NB + 9, MAC, 1.0)                   # a STALE one makes room
    assert len(c.nd6.table) == 3 and c.stats.nd6s_cacheoverflow == 1
    for ln in c.nd6.entries():
        ln.state = ND6_LLINFO_REACHABLE
    assert c.nd6.resolve(2, NB + 20, b"x", 2.0) is None       # nothing to evict: refused
    assert c.stats.nd6s_cacheoverflow == 2 and c.stats.nd6s_helddropped == 1


def test_purge_and_reachable_recalc() -> None:
    c = Cache()
    c.nd6.resolve(2, NB, b"q", 0.0)
    c.nd6.purge_if(2)
    assert c.nd6.table == {} and c.stats.nd6s_helddropped == 1
    c.nd6.recalc_reachable(2, 0.0)
    assert 15.0 <= c.ext.ndi.reachable <= 45.0
    assert c.nd6.get_timer() == 7200.0


# -- options ---------------------------------------------------------------------------------------
def test_options_round_trip() -> None:
    pi = NdPrefixInfo(64, True, True, 86400, 14400, in6.pton("2001:db8:1::"))
    buf = opt_lladdr(ND_OPT_SOURCE_LINKADDR, MAC) + opt_prefix(pi) + opt_mtu(1400) + opt_nonce(b"abcdef") \
        + opt_redirected(bytes(100), 60) + bytes((99, 1)) + bytes(6)
    o = nd6_options(buf, 0)
    assert (o.src_lladdr, o.prefixes, o.mtu, o.nonce) == (MAC, [pi], 1400, b"abcdef")
    assert o.redirected == bytes(48)


@pytest.mark.parametrize("buf", [bytes((1, 0)) + bytes(6), bytes((1, 2)) + bytes(6), bytes((1,)),
                                 bytes((3, 3)) + bytes(22), bytes((5, 2)) + bytes(14)])
def test_bad_options(buf: bytes) -> None:
    with pytest.raises(NdOptError):
        nd6_options(buf, 0)


def test_too_many_and_repeated_options() -> None:
    buf = opt_lladdr(ND_OPT_SOURCE_LINKADDR, MAC) + opt_lladdr(ND_OPT_SOURCE_LINKADDR, MAC2) + bytes((99, 1, 0, 0, 0, 0, 0, 0)) * 12
    o = nd6_options(buf, 0)
    assert o.src_lladdr == MAC and o.toomany


@given(st.binary(max_size=200))
def test_options_parser_raises_only_its_own_error(buf: bytes) -> None:
    try:
        nd6_options(buf, 0)
    except NdOptError:
        pass
