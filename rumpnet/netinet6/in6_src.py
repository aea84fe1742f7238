"""Source address selection (NetBSD's ``in6_src.c``, RFC 6724 section 5).

:func:`in6_selectsrc` picks, among the node's usable addresses, the one RFC 6724's rules
prefer for a destination: the same address (rule 1), an appropriate scope (2), not
deprecated (3), on the outgoing interface (5), with the destination's label in the default
policy table (6), the longest matching prefix (8). Rules 4 (home addresses) and 7
(temporary addresses) have nothing to choose between here: there are neither.
"""

from __future__ import annotations

from functools import lru_cache

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_var import IN6_IFF_ANYCAST, IN6_IFF_DEPRECATED, IN6_IFF_DETACHED, In6Ifaddr, In6Ifaddrs

# RFC 6724 2.1 default policy table: (prefix, plen, label), longest prefix first.
POLICY_LABELS: tuple[tuple[int, int, int], ...] = tuple(sorted((
    (in6.IN6ADDR_LOOPBACK, 128, 0),
    (0, 0, 1),
    (0xFFFF << 32, 96, 4),
    (0x2002 << 112, 16, 2),
    (0x2001 << 112, 32, 5),
    (0xFC << 120, 7, 13),
    (0, 96, 3),
    (0xFEC0 << 112, 10, 11),
    (0x3FFE << 112, 16, 12),
), key=lambda e: -e[1]))


@lru_cache(maxsize=4096)
def policy_label(addr: int) -> int:
    """The RFC 6724 2.1 label of ``addr`` (the table is constant: remembered per address,
    as every datagram of an unconnected socket asks again for its destination)."""
    for prefix, plen, label in POLICY_LABELS:
        if in6.are_prefix_equal(addr, prefix, plen):
            return label
    return 1


def _key(ia: In6Ifaddr, dst: int, dscope: int, dlabel: int, out_ifindex: int) -> tuple[int, ...]:
    """Larger is better; the fields in rule order."""
    s = in6.addrscope(ia.addr)
    scope_rank = (1, -s) if s >= dscope else (0, s)   # rule 2
    return (
        ia.addr == dst,                                 # rule 1
        *scope_rank,
        not ia.flags & IN6_IFF_DEPRECATED,              # rule 3
        ia.ifindex == out_ifindex,                      # rule 5
        policy_label(ia.addr) == dlabel,                # rule 6
        min(in6.matchlen(ia.addr, dst), ia.plen),       # rule 8
    )


def in6_selectsrc(dst: int, ifaddrs: In6Ifaddrs, out_ifindex: int = 0,
                  use_deprecated: bool = True) -> In6Ifaddr | None:
    """The source address for a packet to ``dst`` leaving through ``out_ifindex``; for a
    scoped destination only addresses of that interface's zone qualify (RFC 4007 6).
    None when no address is usable (the caller answers EADDRNOTAVAIL)."""
    dscope = in6.addrscope(dst)
    scoped = dscope <= in6.IPV6_ADDR_SCOPE_LINKLOCAL
    best: In6Ifaddr | None = None
    best_key: tuple[int, ...] = ()
    dlabel = policy_label(dst)
    for ia in ifaddrs.all():
        if not ia.ready or ia.flags & (IN6_IFF_ANYCAST | IN6_IFF_DETACHED):
            continue
        if ia.flags & IN6_IFF_DEPRECATED and not use_deprecated:
            continue
        if scoped and ia.ifindex != out_ifindex:
            continue
        if in6.is_scoped(ia.addr) and ia.ifindex != out_ifindex:
            continue   # a link-local source only makes sense on its own link
        k = _key(ia, dst, dscope, dlabel, out_ifindex)
        if best is None or k > best_key:
            best, best_key = ia, k
    return best
