"""IPv6 addresses (NetBSD's ``in6.h``, ``in6.c`` and ``in6_ifattach.c`` helpers).

Inside the stack an IPv6 address is an ``int`` of 128 bits (``0x20010db8 << 96`` is
2001:db8::), as IPv4 addresses are 32-bit ints: prefix matching is a shift and a compare,
and the checksum pseudo-header is the address itself (``in6_cksum``). Text goes through
:func:`pton` / :func:`ntop` (RFC 4291 section 2.2 in, RFC 5952 canonical form out),
wire bytes through :func:`pack` / :func:`unpack`. Zones (``fe80::1%wire0``) are
``scope6``'s business.
"""

from __future__ import annotations

import errno
import hashlib
import socket

from rumpkern.errno import kerr

ADDR_BITS = 128
ALL_ONES = (1 << ADDR_BITS) - 1
IFID_BITS = 64

IN6ADDR_ANY = 0
IN6ADDR_LOOPBACK = 1
IN6ADDR_LINKLOCAL_ALLNODES = 0xFF02 << 112 | 1          # ff02::1
IN6ADDR_LINKLOCAL_ALLROUTERS = 0xFF02 << 112 | 2        # ff02::2
IN6ADDR_LINKLOCAL_ALLV2ROUTERS = 0xFF02 << 112 | 0x16   # ff02::16, MLDv2 (RFC 3810 5.2.14)
IN6ADDR_INTFACELOCAL_ALLNODES = 0xFF01 << 112 | 1       # ff01::1
_LINKLOCAL_PREFIX = 0xFE80 << 112                       # fe80::/64 (RFC 4291 2.5.6)
_SOLICITED_PREFIX = (0xFF02 << 112) | (1 << 32) | (0xFF << 24)   # ff02::1:ff00:0/104
_V4MAPPED_PREFIX = 0xFFFF << 32                         # ::ffff:0:0/96 (RFC 4291 2.5.5.2)

# Scopes (RFC 4291 2.7, RFC 4007; NetBSD ``IPV6_ADDR_SCOPE_*``).
IPV6_ADDR_SCOPE_NODELOCAL = 0x01     # interface-local
IPV6_ADDR_SCOPE_INTFACELOCAL = 0x01
IPV6_ADDR_SCOPE_LINKLOCAL = 0x02
IPV6_ADDR_SCOPE_REALMLOCAL = 0x03
IPV6_ADDR_SCOPE_ADMINLOCAL = 0x04
IPV6_ADDR_SCOPE_SITELOCAL = 0x05
IPV6_ADDR_SCOPE_ORGLOCAL = 0x08
IPV6_ADDR_SCOPE_GLOBAL = 0x0E

# RFC 5453 reserved interface identifiers, as (first, last) ranges: the subnet-router
# anycast IID, the reserved subnet anycast range (RFC 2526) and the proxy MIPv6 range.
RESERVED_IIDS: tuple[tuple[int, int], ...] = (
    (0x0000000000000000, 0x0000000000000000),
    (0xFDFFFFFFFFFFFF80, 0xFDFFFFFFFFFFFFFF),
    (0x02005EFFFE000000, 0x02005EFFFEFFFFFF),
)


# -- text and wire -------------------------------------------------------------------
def pton(s: str) -> int:
    """Text to address (RFC 4291 2.2 forms, embedded dotted quads included); EINVAL on
    anything else, a zone suffix (``%wire0``) included: see ``scope6.parse_scoped``."""
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, s), "big")
    except (OSError, TypeError, ValueError):
        raise kerr(errno.EINVAL, f"{s}: bad IPv6 address") from None


def ntop(a: int) -> str:
    """Address to text in RFC 5952's canonical form (lower case, longest zero run as ``::``)."""
    return socket.inet_ntop(socket.AF_INET6, (a & ALL_ONES).to_bytes(16, "big"))


def pack(a: int) -> bytes:
    return (a & ALL_ONES).to_bytes(16, "big")


def unpack(b: bytes | bytearray | memoryview, off: int = 0) -> int:
    return int.from_bytes(b[off:off + 16], "big")


def parse_prefix(s: str) -> tuple[int, int | None]:
    """``fc00::1/64`` -> (addr, 64); ``fc00::1`` -> (addr, None). EINVAL for a bad length."""
    if "/" not in s:
        return pton(s), None
    a, _, p = s.partition("/")
    if not p.isdigit() or not 0 <= int(p) <= ADDR_BITS:
        raise kerr(errno.EINVAL, f"{s}: bad prefix length")
    return pton(a), int(p)


# -- classification (IN6_IS_ADDR_*) ---------------------------------------------------
def is_unspecified(a: int) -> bool:
    return a == 0


def is_loopback(a: int) -> bool:
    return a == IN6ADDR_LOOPBACK


def is_multicast(a: int) -> bool:
    return a >> 120 == 0xFF


def is_linklocal(a: int) -> bool:
    """fe80::/10 (RFC 4291 2.5.6)."""
    return a >> 118 == 0x3FA


def is_sitelocal(a: int) -> bool:
    """fec0::/10, deprecated by RFC 3879 but still scoped."""
    return a >> 118 == 0x3FB


def is_ula(a: int) -> bool:
    """fc00::/7, unique local (RFC 4193): global scope, not routed on the Internet."""
    return a >> 121 == 0x7E


def is_v4mapped(a: int) -> bool:
    return a >> 32 == 0xFFFF


def is_v4compat(a: int) -> bool:
    """::a.b.c.d (deprecated by RFC 4291 2.5.5.1), not :: and not ::1."""
    return a >> 32 == 0 and a > 1


def mc_scope(a: int) -> int:
    """Scope field of a multicast address (RFC 4291 2.7)."""
    return (a >> 112) & 0xF


def is_mc_linklocal(a: int) -> bool:
    return is_multicast(a) and mc_scope(a) == IPV6_ADDR_SCOPE_LINKLOCAL


def is_mc_intfacelocal(a: int) -> bool:
    return is_multicast(a) and mc_scope(a) == IPV6_ADDR_SCOPE_INTFACELOCAL


def addrscope(a: int) -> int:
    """``in6_addrscope``: the scope of any address. Loopback counts as link-local (RFC 6724
    3.1), ULAs and everything unknown as global."""
    if is_multicast(a):
        return mc_scope(a)
    if is_linklocal(a) or a == IN6ADDR_LOOPBACK:
        return IPV6_ADDR_SCOPE_LINKLOCAL
    if is_sitelocal(a):
        return IPV6_ADDR_SCOPE_SITELOCAL
    return IPV6_ADDR_SCOPE_GLOBAL


def is_scoped(a: int) -> bool:
    """Does the address need a zone to be meaningful (link-local or interface-local)?
    ``addrscope(a) <= IPV6_ADDR_SCOPE_LINKLOCAL`` without the walk through every scope
    (asked for the source of every TCP segment received over IPv6)."""
    top = a >> 112
    if top >> 8 == 0xFF:
        return top & 0xF <= IPV6_ADDR_SCOPE_LINKLOCAL
    return top >> 6 == 0x3FA or a == IN6ADDR_LOOPBACK


# -- prefixes ------------------------------------------------------------------------
def prefixlen2mask(plen: int) -> int:
    if not 0 <= plen <= ADDR_BITS:
        raise kerr(errno.EINVAL, f"{plen}: bad prefix length")
    return ALL_ONES ^ ((1 << (ADDR_BITS - plen)) - 1)


def mask2len(mask: int) -> int:
    """``in6_mask2len``: a contiguous mask's length; EINVAL for a mask with holes."""
    inv = ~mask & ALL_ONES
    if inv & (inv + 1):
        raise kerr(errno.EINVAL, "non-contiguous prefix mask")
    return ADDR_BITS - inv.bit_length()


def prefix_of(a: int, plen: int) -> int:
    return a & prefixlen2mask(plen)


def are_prefix_equal(a: int, b: int, plen: int) -> bool:
    """``in6_are_prefix_equal``: do the first ``plen`` bits agree?"""
    shift = ADDR_BITS - plen
    return (a >> shift) == (b >> shift)


def matchlen(a: int, b: int) -> int:
    """``in6_matchlen``: length of the common prefix (RFC 6724 rule 8's CommonPrefixLen)."""
    return ADDR_BITS - (a ^ b).bit_length()


# -- derived addresses ----------------------------------------------------------------
def solicited_node(a: int) -> int:
    """ff02::1:ffXX:XXXX from the low 24 bits of ``a`` (RFC 4291 2.7.1)."""
    return _SOLICITED_PREFIX | (a & 0xFFFFFF)


def is_solicited_node(a: int) -> bool:
    return a >> 24 == _SOLICITED_PREFIX >> 24


def ether_multicast(a: int) -> bytes:
    """Ethernet destination of a multicast packet: 33:33 and the low 32 bits (RFC 2464 7)."""
    return b"\x33\x33" + (a & 0xFFFFFFFF).to_bytes(4, "big")


def ifid_eui64(mac: bytes) -> int:
    """Modified EUI-64 interface identifier of a 48-bit MAC (RFC 4291 appendix A, RFC 2464
    4): ff:fe inserted in the middle and the universal/local bit inverted."""
    if len(mac) != 6:
        raise kerr(errno.EINVAL, "need a 6-byte MAC")
    eui = mac[:3] + b"\xff\xfe" + mac[3:]
    return int.from_bytes(eui, "big") ^ (0x02 << 56)


def is_reserved_iid(iid: int) -> bool:
    return any(lo <= iid <= hi for lo, hi in RESERVED_IIDS)


def ifid_stable(prefix: int, net_iface: str, network_id: bytes, dad_counter: int,
                secret_key: bytes) -> int:
    """RFC 7217 semantically opaque interface identifier: the low 64 bits of
    SHA-256(Prefix | Net_Iface | Network_ID | DAD_Counter | secret_key) (section 5), the
    same for one prefix on one interface across reboots, different across networks.
    A reserved IID (RFC 5453) makes the next DAD_Counter value be tried (section 5)."""
    if len(secret_key) < 16:
        raise kerr(errno.EINVAL, "RFC 7217 5: secret_key of at least 128 bits")
    counter = dad_counter
    while True:
        h = hashlib.sha256()
        h.update(pack(prefix_of(prefix, IFID_BITS))[:8])
        h.update(net_iface.encode())
        h.update(network_id)
        h.update(counter.to_bytes(4, "big"))
        h.update(secret_key)
        iid = int.from_bytes(h.digest()[-8:], "big")
        if not is_reserved_iid(iid):
            return iid
        counter += 1


def linklocal(ifid: int) -> int:
    """fe80::/64 with the interface identifier ``ifid`` (RFC 4862 5.3)."""
    return _LINKLOCAL_PREFIX | (ifid & ((1 << IFID_BITS) - 1))


def with_ifid(prefix: int, ifid: int) -> int:
    """A /64 prefix joined to a 64-bit interface identifier (RFC 4862 5.5.3 d)."""
    return prefix_of(prefix, IFID_BITS) | (ifid & ((1 << IFID_BITS) - 1))


def v4mapped(a4: int) -> int:
    """::ffff:a.b.c.d for an IPv4 address ``a4`` (an int, host order)."""
    return _V4MAPPED_PREFIX | (a4 & 0xFFFFFFFF)


def v4_of_mapped(a: int) -> int:
    """The IPv4 address inside a v4-mapped address; EINVAL for any other."""
    if not is_v4mapped(a):
        raise kerr(errno.EINVAL, f"{ntop(a)}: not a v4-mapped address")
    return a & 0xFFFFFFFF
