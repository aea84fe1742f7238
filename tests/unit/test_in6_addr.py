"""IPv6 addresses (in6), zones (scope6), the pseudo-header checksum (in6_cksum) and source
selection (in6_src), judged against the standard library's ipaddress and scapy."""

from __future__ import annotations

import errno
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import UDP
from scapy.layers.inet6 import IPv6
from scapy.pton_ntop import inet_pton
from scapy.utils6 import in6_getnsma, in6_getnsmac, in6_mactoifaceid

from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_cksum import in6_cksum, in6_cksum_ok, in6_pseudo_sum
from rumpnet.netinet6.in6_src import in6_selectsrc, policy_label
from rumpnet.netinet6.in6_var import IN6_IFF_DEPRECATED, IN6_IFF_TENTATIVE, In6Ifaddr, In6Ifaddrs, In6Ifextra

P = in6.pton
addrs = st.integers(min_value=0, max_value=in6.ALL_ONES)


@given(addrs)
def test_text_round_trip_is_rfc5952(a: int) -> None:
    text = in6.ntop(a)
    assert in6.pton(text) == a
    assert text == str(ipaddress.IPv6Address(a)) or in6.is_v4mapped(a) or in6.is_v4compat(a)


@pytest.mark.parametrize("bad", ["", "1:2:3", "fe80::1%wire0", "::g", "1::2::3", "10.0.0.1", "::1/64"])
def test_pton_refuses_with_einval(bad: str) -> None:
    with pytest.raises(OSError) as e:
        in6.pton(bad)
    assert e.value.errno == errno.EINVAL


def test_parse_prefix() -> None:
    assert in6.parse_prefix("fc00:0:0:1::1/64") == (P("fc00:0:0:1::1"), 64)
    assert in6.parse_prefix("fc00::1") == (P("fc00::1"), None)
    for bad in ("fc00::/129", "fc00::/-1", "fc00::/x", "fc00::/"):
        with pytest.raises(OSError):
            in6.parse_prefix(bad)


@pytest.mark.parametrize("text,scope", [
    ("fe80::1", in6.IPV6_ADDR_SCOPE_LINKLOCAL), ("::1", in6.IPV6_ADDR_SCOPE_LINKLOCAL),
    ("fec0::1", in6.IPV6_ADDR_SCOPE_SITELOCAL), ("fc00::1", in6.IPV6_ADDR_SCOPE_GLOBAL),
    ("2001:db8::1", in6.IPV6_ADDR_SCOPE_GLOBAL), ("ff02::1", 2), ("ff01::1", 1), ("ff05::2", 5),
    ("ff0e::1", 14),
])
def test_addrscope(text: str, scope: int) -> None:
    assert in6.addrscope(P(text)) == scope


# Addresses around every scope boundary: the first 16 bits from the interesting ones.
scoped_addrs = st.builds(lambda top, low: (top << 112) | low,
                         st.sampled_from([0, 0xFE7F, 0xFE80, 0xFEBF, 0xFEC0, 0xFC00, 0x2001] +
                                         [0xFF00 | flags << 4 | scope for flags in (0, 1, 3) for scope in range(16)]),
                         st.integers(min_value=0, max_value=(1 << 112) - 1)) | st.sampled_from([0, 1, 2])


@given(scoped_addrs)
def test_is_scoped_is_addrscope_up_to_link_local(a: int) -> None:
    assert in6.is_scoped(a) == (in6.addrscope(a) <= in6.IPV6_ADDR_SCOPE_LINKLOCAL)


@given(addrs)
def test_classification_agrees_with_ipaddress(a: int) -> None:
    ip = ipaddress.IPv6Address(a)
    assert in6.is_multicast(a) == ip.is_multicast
    assert in6.is_linklocal(a) == ip.is_link_local
    assert in6.is_loopback(a) == ip.is_loopback
    assert in6.is_unspecified(a) == ip.is_unspecified
    assert in6.is_sitelocal(a) == ip.is_site_local
    assert in6.is_v4mapped(a) == (ip.ipv4_mapped is not None)


@given(addrs, st.integers(min_value=0, max_value=128))
def test_prefix_helpers(a: int, plen: int) -> None:
    mask = in6.prefixlen2mask(plen)
    assert in6.mask2len(mask) == plen
    net = ipaddress.IPv6Network((a, plen), strict=False)
    assert in6.prefix_of(a, plen) == int(net.network_address)
    assert in6.are_prefix_equal(a, int(net.network_address), plen)
    assert in6.matchlen(a, a) == 128


def test_mask_with_holes_is_einval() -> None:
    with pytest.raises(OSError) as e:
        in6.mask2len(P("ffff:0:ffff::"))
    assert e.value.errno == errno.EINVAL


def test_matchlen() -> None:
    assert in6.matchlen(P("2001:db8::1"), P("2001:db8::2")) == 126
    assert in6.matchlen(P("8000::"), P("::")) == 0


@given(addrs)
def test_solicited_node_and_multicast_mac_agree_with_scapy(a: int) -> None:
    text = in6.ntop(a)
    assert in6.solicited_node(a) == in6.unpack(in6_getnsma(inet_pton(10, text)))
    assert in6.is_solicited_node(in6.solicited_node(a))
    mac = in6.ether_multicast(in6.solicited_node(a))
    assert mac.hex(":") == in6_getnsmac(in6.pack(in6.solicited_node(a)))


@given(st.binary(min_size=6, max_size=6))
def test_eui64_agrees_with_scapy(mac: bytes) -> None:
    ifid = in6.ifid_eui64(mac)
    ll = in6.linklocal(ifid)
    want = in6_mactoifaceid(mac.hex(":"))
    assert in6.ntop(ll) == str(ipaddress.IPv6Address("fe80::" + want))


def test_eui64_known_vector() -> None:
    # RFC 4291 appendix A: 34-56-78-9A-BC-DE -> 3656:78ff:fe9a:bcde (universal bit set).
    assert in6.ntop(in6.linklocal(in6.ifid_eui64(bytes.fromhex("3456789abcde")))) == "fe80::3656:78ff:fe9a:bcde"


def test_stable_ids_rfc7217() -> None:
    key = bytes(range(16))
    pfx = P("2001:db8:1:2::")
    a = in6.ifid_stable(pfx, "wire0", b"", 0, key)
    assert a == in6.ifid_stable(pfx, "wire0", b"", 0, key)          # stable
    assert a != in6.ifid_stable(P("2001:db8:1:3::"), "wire0", b"", 0, key)  # per prefix
    assert a != in6.ifid_stable(pfx, "wire1", b"", 0, key)           # per interface
    assert a != in6.ifid_stable(pfx, "wire0", b"", 1, key)           # DAD_Counter
    assert a != in6.ifid_stable(pfx, "wire0", b"", 0, bytes(16))      # secret
    assert not in6.is_reserved_iid(a)
    with pytest.raises(OSError):
        in6.ifid_stable(pfx, "wire0", b"", 0, b"short")


def test_reserved_iids() -> None:
    assert in6.is_reserved_iid(0)
    assert in6.is_reserved_iid(0xFDFFFFFFFFFFFF80)
    assert in6.is_reserved_iid(0x02005EFFFE000001)
    assert not in6.is_reserved_iid(1)


def test_v4mapped() -> None:
    m = in6.v4mapped(0x0A000001)
    assert in6.ntop(m) == "::ffff:10.0.0.1"
    assert in6.v4_of_mapped(m) == 0x0A000001
    with pytest.raises(OSError):
        in6.v4_of_mapped(P("2001:db8::1"))


# -- scope6 ---------------------------------------------------------------------------------
def _lookup(name: str) -> int:
    if name == "wire0":
        return 2
    raise OSError(errno.ENXIO, "no such interface")


def test_scoped_text() -> None:
    assert scope6.parse_scoped("fe80::1%wire0", _lookup) == (P("fe80::1"), 2)
    assert scope6.parse_scoped("fe80::1%7") == (P("fe80::1"), 7)
    assert scope6.parse_scoped("fc00::1") == (P("fc00::1"), 0)
    with pytest.raises(OSError) as e:
        scope6.parse_scoped("fc00::1%2")           # a zone on a global address
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        scope6.parse_scoped("fe80::1%wire9", _lookup)
    assert e.value.errno == errno.ENXIO
    with pytest.raises(OSError):
        scope6.parse_scoped("fe80::1%wire0")        # names need a table
    assert scope6.format_scoped(P("fe80::1"), 2, lambda i: "wire0") == "fe80::1%wire0"
    assert scope6.format_scoped(P("fe80::1"), 3) == "fe80::1%3"
    assert scope6.format_scoped(P("fc00::1"), 3) == "fc00::1"


def test_sockaddr_in6() -> None:
    assert scope6.sockaddr_in6(("fe80::1%wire0", 80), _lookup) == (P("fe80::1"), 80, 0, 2)
    assert scope6.sockaddr_in6(("fe80::1", 80, 5, 2)) == (P("fe80::1"), 80, 5, 2)
    assert scope6.sockaddr_in6(("::", 0)) == (0, 0, 0, 0)
    assert scope6.sockaddr_in6(("localhost", 1)) == (1, 1, 0, 0)
    assert scope6.sockaddr_in6(("fc00::1", 1, 7)) == (P("fc00::1"), 1, 7, 0)   # as Python takes it
    for bad in [("fc00::1", 1, 1 << 20), ("fe80::1", 70000), ("fe80::1%3", 1, 0, 2), ("2001:db8::1", 1, 0, 3), ("x", 1),
                ("fe80::1",), ("fe80::1", True), (1, 1), "fe80::1", ("fe80::1", 1, -1, 0)]:
        with pytest.raises(OSError) as e:
            scope6.sockaddr_in6(bad, _lookup)
        assert e.value.errno == errno.EINVAL, bad


def test_zones() -> None:
    assert scope6.zone_of(P("fe80::1"), 4) == 4
    assert scope6.zone_of(P("ff02::1"), 4) == 4
    assert scope6.zone_of(P("fc00::1"), 4) == 0
    assert scope6.crosses_zone(P("fe80::1"), 1, 2)
    assert not scope6.crosses_zone(P("fc00::1"), 1, 2)
    assert scope6.check_zone(P("fe80::1"), 0, use_defzone=True, defzone=9) == 9


# -- in6_cksum ---------------------------------------------------------------------------------
@given(addrs, addrs, st.binary(max_size=300), st.integers(min_value=0, max_value=65535),
       st.integers(min_value=0, max_value=65535))
def test_udp6_checksum_agrees_with_scapy(src: int, dst: int, payload: bytes, sport: int, dport: int) -> None:
    ref = bytes(IPv6(src=in6.ntop(src), dst=in6.ntop(dst)) / UDP(sport=sport, dport=dport) / payload)[40:]
    seg = bytearray(ref)
    seg[6:8] = b"\0\0"
    c = in6_cksum(src, dst, 17, seg) or 0xFFFF
    assert c == int.from_bytes(ref[6:8], "big")
    assert in6_cksum_ok(src, dst, 17, ref)
    bad = bytearray(ref)
    bad[-1 if payload else 0] ^= 0x01
    assert not in6_cksum_ok(src, dst, 17, bad)


def test_pseudo_sum_is_folded() -> None:
    assert 0 <= in6_pseudo_sum(in6.ALL_ONES, in6.ALL_ONES, 255, 0xFFFFFFFF) <= 0xFFFF
    assert in6_pseudo_sum(0, 0, 0, 0) == 0


# -- in6_src -------------------------------------------------------------------------------------
def _node() -> In6Ifaddrs:
    ifs = In6Ifaddrs()
    for idx in (1, 2):
        ifs.attach(In6Ifextra(idx, f"wire{idx}", bytes(5) + bytes((idx,))))
    for text, plen, idx, flags in [("fe80::1", 64, 1, 0), ("fe80::2", 64, 2, 0), ("fc00:1::1", 64, 1, 0),
                                   ("2001:db8:1::1", 64, 1, IN6_IFF_DEPRECATED), ("2001:db8:4::1", 64, 1, 0),
                                   ("2001:db8:2::1", 64, 2, 0), ("2001:db8:3::1", 64, 2, IN6_IFF_TENTATIVE)]:
        ifs.add(In6Ifaddr(P(text), plen, idx, flags))
    return ifs


def test_selectsrc_rules() -> None:
    ifs = _node()
    sel = lambda dst, out=0: in6.ntop(in6_selectsrc(P(dst), ifs, out).addr)  # noqa: E731
    assert sel("fe80::99", 2) == "fe80::2"                  # rule 2 + zone
    assert sel("fe80::99", 1) == "fe80::1"
    assert sel("2001:db8:1::1") == "2001:db8:1::1"          # rule 1, even deprecated
    assert sel("2001:db8:1::9", 1) == "2001:db8:4::1"       # rule 3 beats rule 8, 6 beats 8
    assert sel("2001:db8:1::9", 2) == "2001:db8:2::1"       # rule 5
    assert sel("fc00:2::9", 1) == "fc00:1::1"               # rule 6: the ULA label
    assert sel("2001:db8:4::9", 1) == "2001:db8:4::1"       # rule 8
    assert sel("2001:db8:3::9", 2) == "2001:db8:2::1"       # tentative never chosen
    assert in6_selectsrc(P("fe80::99"), ifs, 3) is None
    assert policy_label(P("::1")) == 0 and policy_label(P("2002::1")) == 2
