"""Socket addresses for sockin: checked here, never resolved (no DNS from inside a kernel).

The checks give the errno netinet gives for the same bad input (EINVAL for a malformed
``sockaddr``), so a program sees one behaviour whichever stack carries its sockets.
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import Any

from rumpkern.errno import kerr
from rumpnet.netinet.in_addr import ntoa, sockaddr_in


def _port(port: Any) -> int:
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 0xFFFF:
        raise kerr(errno.EINVAL, "port must be 0-65535")
    return port


def host_sockaddr_in(addr: Any) -> tuple[str, int]:
    ip, port = sockaddr_in(addr)
    return ntoa(ip), port


def host_sockaddr_in6(addr: Any) -> tuple[str, int, int, int]:
    """``(host, port[, flowinfo[, scope_id]])`` with a numeric IPv6 host."""
    if not isinstance(addr, tuple) or not 2 <= len(addr) <= 4:
        raise kerr(errno.EINVAL, "address must be a (host, port[, flowinfo, scope_id]) tuple")
    host, port = addr[0], _port(addr[1])
    flowinfo = addr[2] if len(addr) > 2 else 0
    scope = addr[3] if len(addr) > 3 else 0
    for v, top in ((flowinfo, 0xFFFFF), (scope, 0xFFFFFFFF)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= top:
            raise kerr(errno.EINVAL, "bad flowinfo or scope_id")
    if host == "":
        host = "::"
    elif host == "localhost":
        host = "::1"
    if not isinstance(host, str):
        raise kerr(errno.EINVAL, "host must be a str")
    try:
        pysocket.inet_pton(pysocket.AF_INET6, host.split("%", 1)[0])
    except OSError:
        raise kerr(errno.EINVAL, f"{host}: not an IPv6 address") from None
    return host, port, flowinfo, scope


def host_sockaddr(family: int, addr: Any) -> Any:
    if family == pysocket.AF_INET6:
        return host_sockaddr_in6(addr)
    return host_sockaddr_in(addr)
