"""ndp's router-discovery interface (NetBSD's nd6_ioctl and nd6 list sysctls): the structs'
amd64 layouts, request numbers, what the kernel answers and the errnos it answers with."""

from __future__ import annotations

import errno
import socket

import pytest

from rumpkern import rump_init
from rumpnet.if_ioctl import SockaddrIn6
from rumpnet.netinet6.in6_control import In6Ifreq
from rumpnet.netinet6.in6_var import ND6_IFF_AUTO_LINKLOCAL, ND6_IFF_PERFORMNUD, ND6_INFINITE_LIFETIME
from rumpnet.netinet6.nd6_control import (
    ICMPV6CTL_ND6_DRLIST,
    ICMPV6CTL_ND6_PRLIST,
    IN6_NDIREQ_SIZE,
    PRF_AUTONOMOUS,
    PRF_ONLINK,
    SIOCGIFINFO_IN6,
    SIOCSIFINFO_FLAGS,
    SIOCSIFINFO_IN6,
    SIOCSPFXFLUSH_IN6,
    SIOCSRTRFLUSH_IN6,
    In6Defrouter,
    In6Ndireq,
    In6Prefix,
    seconds_left,
)

MIB_ICMP6 = [4, 24, 58]      # CTL_NET, PF_INET6, IPPROTO_ICMPV6
LL = 0xFE80 << 112 | 0x1234


def _errno(fn, *args):
    with pytest.raises(OSError) as ei:
        fn(*args)
    return ei.value.errno


# -- the codec ---------------------------------------------------------------------------------
def test_request_numbers_are_netbsd_amd64s() -> None:
    # _IOWR('i', n, struct in6_ndireq) with sizeof 72; _IOWR('i', n, struct in6_ifreq), 288.
    assert (SIOCGIFINFO_IN6, SIOCSIFINFO_IN6, SIOCSIFINFO_FLAGS) == (0xC048696C, 0xC048696D, 0xC0486957)
    assert (SIOCSPFXFLUSH_IN6, SIOCSRTRFLUSH_IN6) == (0xC120694F, 0xC1206950)
    assert (ICMPV6CTL_ND6_DRLIST, ICMPV6CTL_ND6_PRLIST) == (20, 21)


def test_ndireq_layout_and_round_trip() -> None:
    req = In6Ndireq("wire0", 1280, 1500, 30000, 31, 1000, 0x21, 0, 64, 1)
    raw = req.pack()
    assert len(raw) == IN6_NDIREQ_SIZE == 72
    assert raw[:6] == b"wire0\0" and raw[16:20] == (1280).to_bytes(4, "little")
    assert raw[44] == 64 and raw[45] == 1          # chlim, initialized after recalctm
    assert In6Ndireq.unpack(raw) == req


def test_defrouter_and_prefix_layouts_and_lists() -> None:
    dr = In6Defrouter(SockaddrIn6(LL, scope_id=2), 0x48, 1800, 1799, 2)
    raw = dr.pack()
    assert len(raw) == 48 and raw[28] == 0x48 and raw[30:32] == (1800).to_bytes(2, "little")
    assert raw[32:40] == (1799).to_bytes(8, "little") and raw[40:42] == (2).to_bytes(2, "little")
    assert In6Defrouter.unpack_list(raw + raw) == [dr, dr]
    pr = In6Prefix(SockaddrIn6(0xFC00 << 112), PRF_ONLINK | PRF_AUTONOMOUS, 64, 0, 2592000, 604800, -1, 0, 1, 2,
                   [SockaddrIn6(LL, scope_id=2), SockaddrIn6(LL + 1, scope_id=2)])
    empty = In6Prefix(SockaddrIn6(0xFC01 << 112), PRF_ONLINK, 48, 0, ND6_INFINITE_LIFETIME, ND6_INFINITE_LIFETIME)
    raw = pr.pack()
    assert len(raw) == 64 + 2 * 28 and raw[28:30] == bytes([3, 64]) and raw[58:60] == (2).to_bytes(2, "little")
    assert In6Prefix.unpack_list(raw + empty.pack()) == [pr, empty]


def test_expire_is_seconds_left() -> None:
    assert seconds_left(None, 5.0) == 0                   # never
    assert seconds_left(15.7, 5.0) == 10
    assert seconds_left(5.5, 5.0) == 1                    # the last second is not "never"
    assert seconds_left(4.0, 5.0) == -1                   # expired


# -- the kernel --------------------------------------------------------------------------------
@pytest.fixture
def k():
    k = rump_init(clock="virtual")
    k.ifconfig("wire0", "create")
    k.ifconfig("wire0", "inet6", "fc00::1")
    k.ifconfig("wire0", "up")
    yield k
    k.halt()


def _ioctl(k, family: int, request: int, data: bytearray) -> bytearray:
    fd = k.rump_sys_socket(family, socket.SOCK_DGRAM, 0)
    try:
        k.rump_sys_ioctl(fd, request, data)
    finally:
        k.rump_sys_close(fd)
    return data


def _ifinfo(k, name: str = "wire0") -> In6Ndireq:
    return In6Ndireq.unpack(_ioctl(k, socket.AF_INET6, SIOCGIFINFO_IN6, In6Ndireq(name).pack()))


def test_gifinfo_answers_nd_ifinfo(k) -> None:
    ndi = _ifinfo(k)
    assert (ndi.ifname, ndi.linkmtu, ndi.maxmtu, ndi.basereachable, ndi.retrans, ndi.chlim, ndi.initialized) == \
        ("wire0", 0, 1500, 30000, 1000, 64, 1)
    assert ndi.flags == ND6_IFF_PERFORMNUD | ND6_IFF_AUTO_LINKLOCAL
    assert 15 <= ndi.reachable <= 45                      # RFC 4861 6.3.2: 0.5 to 1.5 BaseReachableTime


def test_sifinfo_zero_is_unspecified_and_flags_only_sets_flags(k) -> None:
    _ioctl(k, socket.AF_INET6, SIOCSIFINFO_IN6, In6Ndireq("wire0", retrans=2500, flags=ND6_IFF_PERFORMNUD).pack())
    ndi = _ifinfo(k)
    assert (ndi.retrans, ndi.basereachable, ndi.chlim, ndi.flags) == (2500, 30000, 64, ND6_IFF_PERFORMNUD)
    _ioctl(k, socket.AF_INET6, SIOCSIFINFO_FLAGS, In6Ndireq("wire0", retrans=7000, chlim=9, flags=0).pack())
    ndi = _ifinfo(k)
    assert (ndi.retrans, ndi.chlim, ndi.flags) == (2500, 64, 0)
    assert k.ndp("-i", "wire0", "basereachable=60000", "curhlim=10", "nud").startswith(
        "linkmtu=0, maxmtu=1500, curhlim=10, basereachable=60s0ms, ")
    assert 30 <= _ifinfo(k).reachable <= 90              # re-randomised from the new base


def test_errnos(k) -> None:
    assert _errno(_ifinfo, k, "nosuch0") == errno.ENXIO
    for req in (SIOCSRTRFLUSH_IN6, SIOCSPFXFLUSH_IN6):
        assert _errno(_ioctl, k, socket.AF_INET6, req, In6Ifreq("nosuch0").pack()) == errno.ENXIO
        # an AF_INET socket does not know netinet6's requests (in6_control answers on AF_INET6)
        assert _errno(_ioctl, k, socket.AF_INET, req, In6Ifreq("lo0").pack()) == errno.EOPNOTSUPP
    assert _errno(_ioctl, k, socket.AF_INET6, SIOCGIFINFO_IN6, bytearray(20)) == errno.EFAULT
    assert _errno(k.rump_sys___sysctl, MIB_ICMP6 + [ICMPV6CTL_ND6_DRLIST, 1], None, None, None, None, 0) \
        == errno.ENOTDIR
    with pytest.raises(OSError) as ei:
        k.ndp("-i", "nosuch0")
    assert ei.value.errno == errno.ENXIO and "SIOCGIFINFO_IN6" in str(ei.value)


def test_empty_lists(k) -> None:
    for which in (ICMPV6CTL_ND6_DRLIST, ICMPV6CTL_ND6_PRLIST):
        assert bytes(k.rump_sys___sysctl(MIB_ICMP6 + [which], None, None, None, None, 0)) == b""


def test_an_interface_ipv6_does_not_know_is_not_initialized(k) -> None:
    # in6_ifdetach's state: the interface is there, its nd_ifinfo is not.
    del k.inet6.node.ifaddrs.ifs[k.ifnet.lookup("wire0").index]
    ndi = _ifinfo(k)
    assert (ndi.ifname, ndi.initialized, ndi.maxmtu) == ("wire0", 0, 1500)
    assert _errno(_ioctl, k, socket.AF_INET6, SIOCSIFINFO_IN6, In6Ndireq("wire0", chlim=3).pack()) == errno.EINVAL
    with pytest.raises(OSError) as ei:
        k.ndp("-i", "wire0")
    assert ei.value.errno == errno.EINVAL and "wire0: not initialized yet" in str(ei.value)
