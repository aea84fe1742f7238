"""Scoped addresses and zone ids (NetBSD's ``scope6.c``, RFC 4007).

A link-local address is only meaningful with the link it lives on: ``fe80::1%wire0``.
The zone of an interface-local or link-local address is the index of its interface (the
default zone layout of RFC 4007 6 and of NetBSD's ``scope6_ifattach``); every wider
scope has the one zone 0. Sockets write zones as ``sin6_scope_id`` (Python's 4-tuple
``(host, port, flowinfo, scope_id)``) or as a ``%`` suffix on the host
(``fe80::1%wire0``, ``fe80::1%2``, RFC 4007 11).
"""

from __future__ import annotations

import errno
from collections.abc import Callable

from rumpkern.errno import kerr
from rumpnet.netinet6 import in6

# Looks an interface name up and gives its index (ENXIO when absent).
IfIndexLookup = Callable[[str], int]


def zone_of(addr: int, ifindex: int) -> int:
    """``in6_setscope``: the zone ``addr`` belongs to when seen on interface ``ifindex``."""
    if in6.addrscope(addr) <= in6.IPV6_ADDR_SCOPE_LINKLOCAL:
        return ifindex
    return 0


def check_zone(addr: int, scope_id: int, use_defzone: bool = False, defzone: int = 0) -> int:
    """``sa6_checkzone``: the zone for a user-supplied (addr, scope_id).

    A scope id on an address whose scope has no zones is EINVAL (NetBSD); a scoped address
    without one takes the default zone when ``net.inet6.ip6.use_defzone`` is set, and is
    otherwise left at 0 for the caller (a route lookup or bind then fails with the errno
    that layer gives).
    """
    if scope_id < 0 or scope_id > 0xFFFFFFFF:
        raise kerr(errno.EINVAL, "scope id out of range")
    if not in6.is_scoped(addr):
        if scope_id != 0 and not in6.is_multicast(addr):
            raise kerr(errno.EINVAL, f"{in6.ntop(addr)}: a scope id on a global address")
        return 0
    if scope_id == 0 and use_defzone:
        return defzone
    return scope_id


def parse_scoped(host: str, lookup: IfIndexLookup | None = None) -> tuple[int, int]:
    """``fe80::1%wire0`` / ``fe80::1%2`` / ``fc00::1`` -> (addr, zone). A numeric zone is
    taken as it is; a name needs ``lookup`` (EINVAL without one, its error otherwise)."""
    text, sep, zone = host.partition("%")
    addr = in6.pton(text)
    if not sep:
        return addr, 0
    if not zone:
        raise kerr(errno.EINVAL, f"{host}: empty zone")
    if zone.isdigit():
        zid = int(zone)
    elif lookup is None:
        raise kerr(errno.EINVAL, f"{host}: zone names need an interface table")
    else:
        zid = lookup(zone)
    return addr, check_zone(addr, zid)


def shows_zone(addr: int, zone: int) -> bool:
    """Is the zone part of how the address is written (``%wire0``, ``sin6_scope_id``)?
    For link-local and interface-local addresses; ``::1`` has one zone only, lo0, and
    is written without it (as NetBSD's ifconfig and Python's socket module write it)."""
    return zone != 0 and in6.is_scoped(addr) and addr != in6.IN6ADDR_LOOPBACK


def format_scoped(addr: int, zone: int, name_of: Callable[[int], str | None] | None = None) -> str:
    """The text form with a ``%zone`` suffix for scoped addresses (RFC 4007 11.2): the
    interface name when ``name_of`` knows it, else the number."""
    text = in6.ntop(addr)
    if not shows_zone(addr, zone):
        return text
    name = name_of(zone) if name_of is not None else None
    return f"{text}%{name if name else zone}"


def sockaddr_in6(sa: object, lookup: IfIndexLookup | None = None) -> tuple[int, int, int, int]:
    """Check a Python-style AF_INET6 address and return ``(addr, port, flowinfo, scope_id)``.

    Python accepts ``(host, port)``, ``(host, port, flowinfo)`` and ``(host, port,
    flowinfo, scope_id)``, the flow information within 20 bits; the host may carry a
    ``%zone``, which must agree with a non-zero ``scope_id``. Malformed addresses give
    EINVAL as a BSD kernel does for a bad ``sockaddr_in6``; names are not resolved.
    """
    if not isinstance(sa, tuple) or not 2 <= len(sa) <= 4:
        raise kerr(errno.EINVAL, "address must be (host, port[, flowinfo[, scope_id]])")
    host, port = sa[0], sa[1]
    flowinfo = sa[2] if len(sa) > 2 else 0
    scope_id = sa[3] if len(sa) > 3 else 0
    for name, v, hi in (("port", port, 0xFFFF), ("flowinfo", flowinfo, 0xFFFFF),
                        ("scope_id", scope_id, 0xFFFFFFFF)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= hi:
            raise kerr(errno.EINVAL, f"{name} must be 0-{hi}")
    if not isinstance(host, str):
        raise kerr(errno.EINVAL, "host must be a str")
    if host in ("", "::"):
        return in6.IN6ADDR_ANY, port, flowinfo, 0
    if host == "localhost":
        return in6.IN6ADDR_LOOPBACK, port, flowinfo, 0
    addr, zone = parse_scoped(host, lookup)
    if zone and scope_id and zone != scope_id:
        raise kerr(errno.EINVAL, f"{host}: zone disagrees with scope_id {scope_id}")
    return addr, port, flowinfo, check_zone(addr, scope_id or zone)


def crosses_zone(addr: int, in_ifindex: int, out_ifindex: int) -> bool:
    """Would forwarding a packet with this address from ``in_ifindex`` to ``out_ifindex``
    take it out of its zone? (RFC 4007 9: a router must not, and answers with destination
    unreachable code 2, beyond scope of source address.)"""
    return zone_of(addr, in_ifindex) != zone_of(addr, out_ifindex)
