"""IPv4 address helpers (``in.h``): addresses are ints inside the stack."""

from __future__ import annotations

import errno
import socket
import struct

from rumpkern.errno import kerr

INADDR_ANY = 0
INADDR_BROADCAST = 0xFFFFFFFF
INADDR_LOOPBACK = 0x7F000001

_U32 = struct.Struct("!I")


def aton(s: str) -> int:
    try:
        return _U32.unpack(socket.inet_aton(s))[0]  # type: ignore[no-any-return]
    except (OSError, TypeError):
        raise kerr(errno.EINVAL, f"{s}: bad address") from None


def aton_strict(s: str) -> int:
    """Dotted quad only (``socket.inet_pton``), as ifconfig and route want them."""
    try:
        return _U32.unpack(socket.inet_pton(socket.AF_INET, s))[0]  # type: ignore[no-any-return]
    except (OSError, TypeError):
        raise kerr(errno.EINVAL, f"{s}: bad address") from None


def ntoa(a: int) -> str:
    return socket.inet_ntoa(_U32.pack(a & 0xFFFFFFFF))


def pack(a: int) -> bytes:
    return _U32.pack(a)


def is_multicast(a: int) -> bool:
    return (a >> 28) == 0xE


def is_loopback(a: int) -> bool:
    return (a >> 24) == 127


def is_zeronet(a: int) -> bool:
    return (a >> 24) == 0


def sockaddr_in(addr: object) -> tuple[int, int]:
    """Check a Python-style ``(host, port)`` address and return ``(ip, port)``.

    Malformed addresses give EINVAL, as a BSD kernel does for a bad ``sockaddr_in``;
    host names are not resolved here (the kernel has no resolver).
    """
    if not isinstance(addr, tuple) or len(addr) != 2:
        raise kerr(errno.EINVAL, "address must be a (host, port) tuple")
    host, port = addr
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise kerr(errno.EINVAL, "port must be 0-65535")
    if host in ("", "0.0.0.0"):
        return INADDR_ANY, port
    if host == "<broadcast>":
        return INADDR_BROADCAST, port
    if host == "localhost":
        return INADDR_LOOPBACK, port
    if not isinstance(host, str):
        raise kerr(errno.EINVAL, "host must be a str")
    try:
        return _U32.unpack(socket.inet_pton(socket.AF_INET, host))[0], port
    except OSError:
        raise kerr(errno.EINVAL, f"{host}: not an IPv4 address") from None


def parse_prefix(s: str) -> tuple[int, int | None]:
    """``10.0.1.1/24`` -> (addr, 24); ``10.0.1.1`` -> (addr, None)."""
    if "/" in s:
        a, _, p = s.partition("/")
        try:
            plen = int(p)
        except ValueError:
            raise kerr(errno.EINVAL, f"{s}: bad prefix length") from None
        if not 0 <= plen <= 32:
            raise kerr(errno.EINVAL, f"{s}: bad prefix length")
        return aton_strict(a), plen
    return aton_strict(s), None


def classful_plen(a: int) -> int:
    """Prefix length a classful address implies (ifconfig without a netmask)."""
    if a >> 31 == 0:
        return 8
    if a >> 30 == 0b10:
        return 16
    return 24
