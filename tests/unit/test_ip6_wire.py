"""The IPv6 header and extension header wire formats (netinet6/ip6.py), with scapy as the
independent judge of what we emit and as the builder of what we parse."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
    RouterAlert,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.ip6 import (
    IP6OPT_ROUTER_ALERT,
    IPPROTO_DSTOPTS,
    IPPROTO_FRAGMENT,
    IPPROTO_HOPOPTS,
    IPPROTO_ROUTING,
    IPPROTO_UDP,
    Ip6FragRepr,
    Ip6ParseError,
    Ip6Repr,
    emit_frag,
    emit_header,
    emit_options_header,
    emit_rthdr,
    ip6_build,
    ip6_lasthdr,
    ip6opt_type,
    parse_frag,
    parse_header,
    parse_options,
    parse_rthdr,
    router_alert_hbh,
    walk_exthdrs,
)

addrs = st.integers(min_value=0, max_value=in6.ALL_ONES)


@given(addrs, addrs, st.integers(0, 255), st.integers(0, 255), st.integers(0, 0xFFFFF), st.binary(max_size=64))
def test_header_against_scapy(src: int, dst: int, hlim: int, tc: int, fl: int, payload: bytes) -> None:
    ref = bytes(IPv6(src=in6.ntop(src), dst=in6.ntop(dst), hlim=hlim, tc=tc, fl=fl, nh=59) / payload)
    r = parse_header(ref)
    assert (r.src, r.dst, r.hlim, r.tclass, r.flow, r.nxt, r.plen) == (src, dst, hlim, tc, fl, 59, len(payload))
    assert emit_header(r) == ref[:40]
    assert ip6_build(src, dst, 59, payload, hlim, tc, fl) == ref


@pytest.mark.parametrize("data,kind", [
    (b"", "ip6s_tooshort"),
    (bytes(39), "ip6s_tooshort"),
    (b"\x40" + bytes(39), "ip6s_badvers"),
    (b"\x60\0\0\0\0\x09\x3b\x40" + bytes(32) + bytes(8), "ip6s_tooshort"),   # plen 9, 8 there
])
def test_header_errors_name_their_counter(data: bytes, kind: str) -> None:
    with pytest.raises(Ip6ParseError) as e:
        parse_header(data)
    assert e.value.kind == kind


def test_options_header_against_scapy() -> None:
    ours = router_alert_hbh(58)
    ref = bytes(IPv6ExtHdrHopByHop(nh=58, options=[RouterAlert(value=0)]))
    assert ours == ref
    opts = parse_options(ours, 2, len(ours))
    assert [(t, d) for _, t, d in opts] == [(IP6OPT_ROUTER_ALERT, b"\0\0")]
    # a header of several options, padded, parsed back by scapy
    h = emit_options_header(17, [(0x1E, b"abc"), (0x3E, b"")])
    assert len(h) % 8 == 0
    sc = IPv6ExtHdrDestOpt(h)
    assert sc.nh == 17 and sc.len == len(h) // 8 - 1
    assert [(o.otype, o.optdata) for o in sc.options if o.otype not in (0, 1)] == [(0x1E, b"abc"), (0x3E, b"")]


@given(st.lists(st.tuples(st.integers(2, 255), st.binary(max_size=20)), max_size=6))
def test_options_round_trip(options: list[tuple[int, bytes]]) -> None:
    h = emit_options_header(59, options)
    assert len(h) % 8 == 0 and h[1] == len(h) // 8 - 1
    assert [(t, d) for _, t, d in parse_options(h, 2, len(h))] == [(t, d) for t, d in options if t != 1]


def test_option_overrunning_header() -> None:
    with pytest.raises(Ip6ParseError) as e:
        parse_options(bytes((59, 0, 0x1E, 9)) + bytes(4), 2, 8)
    assert e.value.kind == "ip6s_toosmall"


def test_option_action_bits() -> None:
    assert [ip6opt_type(t) for t in (0x1E, 0x5E, 0x9E, 0xDE)] == [0x00, 0x40, 0x80, 0xC0]


@given(st.integers(0, 255), st.integers(0, 8191), st.booleans(), st.integers(0, 0xFFFFFFFF))
def test_fragment_header_against_scapy(nxt: int, off8: int, more: bool, ident: int) -> None:
    ours = emit_frag(Ip6FragRepr(nxt, off8 * 8, more, ident))
    assert ours == bytes(IPv6ExtHdrFragment(nh=nxt, offset=off8, m=int(more), id=ident))
    r = parse_frag(ours, 0)
    assert (r.nxt, r.offset, r.more, r.ident) == (nxt, off8 * 8, more, ident)


def test_fragment_header_refuses_bad_offsets() -> None:
    with pytest.raises(ValueError):
        emit_frag(Ip6FragRepr(17, 3, False, 1))
    with pytest.raises(Ip6ParseError):
        parse_frag(bytes(7), 0)


def test_routing_header() -> None:
    rh = emit_rthdr(17, 0, 1, bytes(4) + in6.pack(in6.pton("2001:db8::1")))
    sc = IPv6ExtHdrRouting(rh)
    assert (sc.nh, sc.type, sc.segleft, sc.addresses) == (17, 0, 1, ["2001:db8::1"])
    r = parse_rthdr(rh, 0)
    assert (r.nxt, r.rtype, r.segleft, r.hlen) == (17, 0, 1, 24)


def test_walk_a_chain_built_by_scapy() -> None:
    pkt = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrHopByHop(options=[RouterAlert()])
                / IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 4)])
                / IPv6ExtHdrRouting(addresses=[], segleft=0)
                / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(sport=1, dport=2) / (b"x" * 8))
    walked = list(walk_exthdrs(pkt, pkt[6], 40, 16))
    assert [w[0] for w in walked] == [IPPROTO_HOPOPTS, IPPROTO_DSTOPTS, IPPROTO_ROUTING, IPPROTO_FRAGMENT, IPPROTO_UDP]
    assert walked[0][3] == 6 and walked[1][3] == 40          # the bytes that named them
    assert walked[-1][2] == 0                                 # the upper layer ends it
    assert ip6_lasthdr(pkt) == (IPPROTO_UDP, walked[-1][1])


def test_walk_stops_after_a_later_fragment() -> None:
    pkt = bytes(IPv6(src="fc00::1", dst="fc00::2") / IPv6ExtHdrFragment(offset=10, m=0, nh=0) / (b"\0" * 16))
    walked = list(walk_exthdrs(pkt, pkt[6], 40, 16))
    assert [w[0] for w in walked] == [IPPROTO_FRAGMENT]
    assert ip6_lasthdr(pkt) is None


def test_walk_limits_and_truncation() -> None:
    chain = b"".join(emit_options_header(IPPROTO_DSTOPTS, []) for _ in range(20))
    pkt = ip6_build(1, 2, IPPROTO_DSTOPTS, chain)
    with pytest.raises(Ip6ParseError) as e:
        list(walk_exthdrs(pkt, IPPROTO_DSTOPTS, 40, 15))
    assert e.value.kind == "ip6s_toomanyhdr"
    with pytest.raises(Ip6ParseError) as e:
        list(walk_exthdrs(pkt[:45], IPPROTO_DSTOPTS, 40, 15))
    assert e.value.kind == "ip6s_tooshort"
    assert ip6_lasthdr(pkt[:30]) is None


def test_repr_defaults() -> None:
    r = Ip6Repr(1, 2, 59, 64)
    assert parse_header(emit_header(r)) == r
