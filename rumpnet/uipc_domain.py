"""Communication domains (NetBSD's ``struct domain``, ``uipc_domain.c``).

``k.domains`` maps an address family to the domain that makes its sockets: netinet's
``Inet`` for PF_INET, or sockin's host-socket domains. ``socket(2)`` looks the family up
there (``rumpnet.sys_socket.sys_socket``); a family nobody attached is EAFNOSUPPORT.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rumpnet.uipc_socket import Socket


class Domain(Protocol):
    """A communication domain: makes the socket for ``(type, protocol)`` (``socreate``),
    raising EPROTONOSUPPORT / EPROTOTYPE / ESOCKTNOSUPPORT as NetBSD's does."""

    def socket(self, so_type: int, proto: int) -> Socket: ...
