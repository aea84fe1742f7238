"""ICMPv6 (netinet6/icmp6.py): the wire format against scapy, echo, errors and the RFC 4443
2.4 rules for not sending them, the token bucket, ICMP6_FILTER, upper-layer notification
and the path MTU table with its 1280-byte floor."""

from __future__ import annotations

import errno
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach,
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    ICMPv6ND_Redirect,
    ICMPv6PacketTooBig,
    ICMPv6ParamProblem,
    ICMPv6TimeExceeded,
    IPv6,
    IPv6ExtHdrHopByHop,
)

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import (
    ICMP6_ECHO_REQUEST,
    Icmp6,
    Icmp6Ctl,
    Icmp6Filter,
    Icmp6Params,
    Icmp6ParseError,
    Icmp6RawInput,
    Icmp6Repr,
    Icmp6Stats,
    echo_repr,
    emit,
    parse,
)
from rumpnet.netinet6.in6_var import IN6_IFF_ANYCAST, In6Ifaddr, In6Ifaddrs, In6Ifextra
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, IPPROTO_UDP, emit_options_header
from rumpnet.netinet6.ip6_var import Ip6Params

P = in6.pton
ME, PEER = "fc00:1::1", "fc00:1::2"


class Host:
    def __init__(self) -> None:
        self.ip6 = Ip6Params()
        self.params = Icmp6Params()
        self.stats = Icmp6Stats()
        self.ifaddrs = In6Ifaddrs()
        self.ifaddrs.attach(In6Ifextra(2, "wire0", b"\x02\0\0\0\0\x01"))
        self.ifaddrs.add(In6Ifaddr(P(ME), 64, 2))
        self.ifaddrs.add(In6Ifaddr(P("fe80::1"), 64, 2))
        self.ifaddrs.add(In6Ifaddr(P("fc00:1::a"), 64, 2, IN6_IFF_ANYCAST))
        self.icmp6 = Icmp6(self.ip6, self.params, self.stats, self.ifaddrs)

    def deliver(self, pkt: bytes, now: float = 0.0, l2mcast: bool = False) -> None:
        self.icmp6.input(pkt, 40, 2, now, l2mcast)

    def sent(self) -> list[IPv6]:
        return [IPv6(s.packet) for s in self.icmp6.packets_to_send()]

    def events(self) -> list[object]:
        out = []
        while (ev := self.icmp6.next_event()) is not None:
            out.append(ev)
        return out


# -- wire ---------------------------------------------------------------------------------------
@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=100))
def test_echo_against_scapy(ident: int, seq: int, data: bytes) -> None:
    src, dst = P(ME), P(PEER)
    ours = emit(echo_repr(ICMP6_ECHO_REQUEST, ident, seq, data), src, dst)
    ref = bytes(IPv6(src=ME, dst=PEER) / ICMPv6EchoRequest(id=ident, seq=seq, data=data))[40:]
    assert ours == ref
    r = parse(ref, src, dst)
    assert (r.icmp6_type, r.code, r.data32 >> 16, r.data32 & 0xFFFF, r.body) == (128, 0, ident, seq, data)


@pytest.mark.parametrize("msg,kind", [
    (b"\x80\0\0", "icp6s_tooshort"),
    (bytes(IPv6(src=ME, dst=PEER) / ICMPv6EchoRequest())[40:-1] + b"\x01", "icp6s_checksum"),
])
def test_parse_errors(msg: bytes, kind: str) -> None:
    with pytest.raises(Icmp6ParseError) as e:
        parse(msg, P(ME), P(PEER))
    assert e.value.kind == kind


def test_bad_codes() -> None:
    for t, code in ((3, 2), (1, 9), (4, 11)):
        msg = emit(Icmp6Repr(t, code, 0, bytes(48)), P(PEER), P(ME))
        with pytest.raises(Icmp6ParseError) as e:
            parse(msg, P(PEER), P(ME))
        assert e.value.kind == "icp6s_badcode"


# -- echo ---------------------------------------------------------------------------------------
def test_echo_reply() -> None:
    h = Host()
    h.deliver(bytes(IPv6(src=PEER, dst=ME, hlim=3) / ICMPv6EchoRequest(id=7, seq=9, data=b"ping")))
    (rep,) = h.sent()
    assert (rep.src, rep.dst, rep.hlim) == (ME, PEER, 64)
    e = rep[ICMPv6EchoReply]
    assert (e.id, e.seq, e.data) == (7, 9, b"ping")
    assert IPv6(bytes(rep))[ICMPv6EchoReply].cksum == e.cksum   # scapy agrees with the checksum
    assert h.stats.icp6s_inhist[128] == 1 and h.stats.icp6s_outhist[129] == 1


def test_echo_to_multicast_and_anycast_answers_from_unicast() -> None:
    h = Host()
    h.deliver(bytes(IPv6(src=PEER, dst="ff02::1") / ICMPv6EchoRequest(id=1)))
    h.deliver(bytes(IPv6(src=PEER, dst="fc00:1::a") / ICMPv6EchoRequest(id=2)))
    assert [(p.src, p.dst) for p in h.sent()] == [(ME, PEER), (ME, PEER)]


def test_raw_delivery_only_when_wanted() -> None:
    h = Host()
    h.deliver(bytes(IPv6(src=PEER, dst=ME) / ICMPv6EchoReply(id=1)))
    assert h.events() == []
    h.icmp6.deliver_raw = True
    h.deliver(bytes(IPv6(src=PEER, dst=ME) / ICMPv6EchoReply(id=1)))
    (ev,) = h.events()
    assert isinstance(ev, Icmp6RawInput) and ev.msg[0] == 129 and ev.src == P(PEER)


# -- errors out ---------------------------------------------------------------------------------
def offending(src: str = PEER, dst: str = ME, size: int = 20) -> bytes:
    return bytes(IPv6(src=src, dst=dst) / UDP(sport=5, dport=9) / bytes(size))


def test_error_format_and_size() -> None:
    h = Host()
    pkt = offending(size=3000)
    assert h.icmp6.error(pkt, 2, 1, 4, 0, 0.0)
    (e,) = h.sent()
    assert len(bytes(e)) == 1280                       # RFC 4443 2.4 c
    assert (e.src, e.dst) == (ME, PEER)
    du = e[ICMPv6DestUnreach]
    assert du.code == 4 and bytes(du.payload)[:48] == pkt[:48]
    assert h.stats.icp6s_odst_unreach_noport == 1 and h.stats.icp6s_outhist[1] == 1


def test_error_from_arrival_interface_when_not_to_us() -> None:
    h = Host()
    assert h.icmp6.error(offending(dst="2001:db8::9"), 2, 3, 0, 0, 0.0)
    assert h.icmp6.error(offending(src="fe80::2", dst="2001:db8::9"), 2, 3, 0, 0, 0.0)
    a, b = h.sent()
    assert a.src == ME and b.src == "fe80::1"          # scope of the destination
    assert a[ICMPv6TimeExceeded].code == 0


@pytest.mark.parametrize("pkt,l2mcast,t,code,param", [
    (offending(dst="ff02::1"), False, 1, 4, 0),                     # e.3
    (offending(), True, 1, 4, 0),                                   # e.4, e.5
    (offending(src="::"), False, 1, 4, 0),                          # e.6
    (offending(src="fc00:1::a"), False, 1, 4, 0),                   # e.6: our anycast
    (bytes(IPv6(src=PEER, dst=ME) / ICMPv6DestUnreach() / offending()), False, 1, 4, 0),   # e.1
    (bytes(IPv6(src=PEER, dst=ME) / ICMPv6ND_Redirect()), False, 4, 0, 0),                 # e.2
    (bytes(IPv6(src=PEER, dst="ff02::1") / IPv6ExtHdrHopByHop(emit_options_header(17, [(0xDE, b"")])) / UDP()),
     False, 4, 2, 42),                                              # 11-type option to multicast
])
def test_rfc4443_no_error_cases(pkt: bytes, l2mcast: bool, t: int, code: int, param: int) -> None:
    h = Host()
    assert not h.icmp6.error(pkt, 2, t, code, param, 0.0, l2mcast)
    assert h.sent() == []
    assert h.stats.icp6s_canterror == 1 and h.stats.icp6s_error == 1


@pytest.mark.parametrize("pkt,t,code,param,l2mcast", [
    (offending(dst="ff02::1"), 2, 0, 1280, True),                    # Packet Too Big is allowed
    (bytes(IPv6(src=PEER, dst="ff02::1") / IPv6ExtHdrHopByHop(emit_options_header(17, [(0x9E, b"")])) / UDP()),
     4, 2, 42, True),                                                # 10-type option: allowed
    (bytes(IPv6(src=PEER, dst=ME) / ICMPv6EchoRequest()), 1, 4, 0, False),   # about an informational one
])
def test_rfc4443_exceptions(pkt: bytes, t: int, code: int, param: int, l2mcast: bool) -> None:
    h = Host()
    assert h.icmp6.error(pkt, 2, t, code, param, 0.0, l2mcast)
    (e,) = h.sent()
    assert e.src == ME
    if t == 2:
        assert e[ICMPv6PacketTooBig].mtu == 1280
    if t == 4:
        assert e[ICMPv6ParamProblem].ptr == 42


def test_token_bucket_on_the_kernel_clock() -> None:
    h = Host()
    h.params.errppslimit = 10
    sent = sum(h.icmp6.error(offending(), 2, 1, 4, 0, 5.0) for _ in range(30))
    assert sent == 10 and h.stats.icp6s_toofreq == 20
    assert sum(h.icmp6.error(offending(), 2, 1, 4, 0, 5.5) for _ in range(30)) == 5   # half a second refills 5
    assert sum(h.icmp6.error(offending(), 2, 1, 4, 0, 100.0) for _ in range(30)) == 10  # capped at the burst
    h.params.errppslimit = 0
    assert not h.icmp6.error(offending(), 2, 1, 4, 0, 200.0)
    h.params.errppslimit = -1
    assert all(h.icmp6.error(offending(), 2, 1, 4, 0, 300.0) for _ in range(200))


# -- errors in ----------------------------------------------------------------------------------
def test_errors_reach_the_transport() -> None:
    h = Host()
    quoted = bytes(IPv6(src=ME, dst="2001:db8::5") / UDP(sport=4000, dport=53) / b"q")
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6DestUnreach(code=4) / quoted))
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6TimeExceeded() / quoted))
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6ParamProblem(code=1, ptr=6) / quoted))
    evs = h.events()
    assert [e.kind for e in evs] == ["portunreach", "timxceed", "protounreach"]
    e = evs[0]
    assert isinstance(e, Icmp6Ctl)
    assert (e.inner_src, e.inner_dst, e.nxt, e.upper_off) == (P(ME), P("2001:db8::5"), IPPROTO_UDP, 40)
    assert struct.unpack_from("!HH", e.inner, e.upper_off) == (4000, 53)


def test_reassembly_time_exceeded_is_not_a_path_error() -> None:
    """Time Exceeded code 1 (RFC 4443 3.3) is the kind IPv4's code 1 has, which no
    transport takes for an error; code 0 (in transit) stays "timxceed"."""
    h = Host()
    quoted = bytes(IPv6(src=ME, dst="2001:db8::5") / UDP(sport=4000, dport=53) / b"q")
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6TimeExceeded(code=1) / quoted))
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6TimeExceeded(code=0) / quoted))
    assert [e.kind for e in h.events()] == ["timxceed_reass", "timxceed"]


def test_error_without_the_quoted_header_is_counted() -> None:
    h = Host()
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6DestUnreach() / bytes(20)))
    assert h.events() == [] and h.stats.icp6s_tooshort == 1


def test_packet_too_big_floor_and_forgery() -> None:
    h = Host()
    quoted = bytes(IPv6(src=ME, dst="2001:db8::5") / UDP() / bytes(8))
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6PacketTooBig(mtu=1400) / quoted))
    (ev,) = h.events()
    assert ev.kind == "needfrag" and ev.mtu == 1400
    # RFC 8201 4: below 1280 it is discarded
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6PacketTooBig(mtu=1000) / quoted))
    # a packet we never sent (not from our address): forged
    forged = bytes(IPv6(src="fc00:7::7", dst="2001:db8::5") / UDP() / bytes(8))
    h.deliver(bytes(IPv6(src="fc00:9::1", dst=ME) / ICMPv6PacketTooBig(mtu=1300) / forged))
    assert h.events() == [] and h.stats.icp6s_pmtuignored == 2


def test_pmtu_table() -> None:
    h = Host()
    pm, d = h.icmp6.pmtu, P("2001:db8::5")
    assert pm.update(d, 1400, 10.0, validated=True, linkmtu=1500)
    assert pm.get(d, 10.0) == 1400
    assert not pm.update(d, 1450, 11.0, validated=True)        # never raised by a message
    assert not pm.update(d, 1279, 11.0, validated=True)        # the floor
    assert pm.update(d, 1280, 12.0, validated=True)
    assert h.stats.icp6s_pmtuchg == 2 and h.stats.icp6s_pmtuignored == 1
    assert h.icmp6.get_timer() == 12.0 + 600
    h.icmp6.handle_timer(12.0 + 600)
    assert pm.get(d, 700.0) is None and pm.entries == {}
    # unvalidated ones may only fill mtudisc_lowat entries
    h.params.mtudisc_lowat = 2
    assert pm.update(P("2001:db8::1"), 1300, 0.0, validated=False)
    assert pm.update(P("2001:db8::2"), 1300, 0.0, validated=False)
    assert not pm.update(P("2001:db8::3"), 1300, 0.0, validated=False)
    assert pm.update(P("2001:db8::3"), 1300, 0.0, validated=True)


def test_handlers_by_type() -> None:
    h = Host()
    seen = []
    h.icmp6.handlers[135] = lambda inp, now: seen.append((inp.icmp6_type, inp.hlim, inp.src))
    h.deliver(bytes(IPv6(src=PEER, dst=ME, hlim=255, nh=IPPROTO_ICMPV6) / bytes((135, 0, 0, 0)) / bytes(20)))
    assert seen == [] and h.stats.icp6s_checksum == 1       # a handler sees checked messages only
    msg = emit(Icmp6Repr(135, 0, 0, bytes(16)), P(PEER), P(ME))
    h.deliver(bytes(IPv6(src=PEER, dst=ME, hlim=255, nh=IPPROTO_ICMPV6)) + msg)
    assert seen == [(135, 255, P(PEER))]


# -- ICMP6_FILTER ---------------------------------------------------------------------------------
def test_filter_semantics() -> None:
    f = Icmp6Filter()
    assert all(f.willpass(t) for t in range(256))
    f.setblockall()
    f.setpass(129)
    assert f.willpass(129) and f.willblock(128)
    raw = f.to_bytes()
    assert len(raw) == 32
    words = struct.unpack("=8I", raw)
    assert words[129 >> 5] == 1 << (129 & 31) and sum(words) == words[4]   # NetBSD's layout
    g = Icmp6Filter.from_bytes(raw)
    assert g.willpass(129) and not g.willpass(1)
    g.setblock(129)
    assert g.willblock(129)
    g.setpassall()
    assert g.willpass(0)
    with pytest.raises(OSError) as e:
        Icmp6Filter.from_bytes(b"short")
    assert e.value.errno == errno.EINVAL
