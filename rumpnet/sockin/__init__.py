"""sockin: PF_INET and PF_INET6 carried by host sockets (NetBSD's ``rumpnet_sockin``).

A kernel booted with ``rump_init(sockin=True)`` has no TCP/IP stack of its own: each
PF_INET/PF_INET6 socket is a non-blocking host socket (see :mod:`.sockin_socket`), so the
``rump_sys_*`` calls reach the host's network, and there are no interfaces and no routes to
configure (``ifconfig``/``route``/``arp`` fail with EOPNOTSUPP, as NetBSD's sockin does).

Use the real clock with sockin: host I/O takes real time, and a virtual clock would jump
over it (an SO_RCVTIMEO would expire at once).
"""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpkern.errno import kerr
from rumpnet.sockin.sockin_socket import SockinSocket

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel

__all__ = ["Sockin", "SockinDomain", "SockinSocket", "refuse_command", "sockin_attach"]

# Commands that configure interfaces, routes or link-layer tables: nothing to act on.
UNSUPPORTED_COMMANDS = ("ifconfig", "route", "arp")


class SockinDomain:
    """``struct domain`` for one address family: makes sockets."""

    def __init__(self, sockin: Sockin, family: int) -> None:
        self.sockin = sockin
        self.family = family

    def socket(self, so_type: int, proto: int) -> SockinSocket:
        if so_type == pysocket.SOCK_STREAM:
            ok = proto in (0, pysocket.IPPROTO_TCP)
        elif so_type == pysocket.SOCK_DGRAM:
            ok = proto in (0, pysocket.IPPROTO_UDP)
        else:
            ok = False
        if not ok:
            # socreate(): no protosw for (type, proto).
            raise kerr(errno.EPROTOTYPE if proto == 0 else errno.EPROTONOSUPPORT)
        if so_type == pysocket.SOCK_STREAM and proto == 0:
            proto = pysocket.IPPROTO_TCP
        elif so_type == pysocket.SOCK_DGRAM and proto == 0:
            proto = pysocket.IPPROTO_UDP
        return SockinSocket(self.sockin.kernel, self.family, so_type, proto)


class Sockin:
    """The sockin instance of a kernel (``k.sockin``)."""

    def __init__(self, kernel: NetKernel) -> None:
        self.kernel = kernel
        self.domains: dict[int, SockinDomain] = {pysocket.AF_INET: SockinDomain(self, pysocket.AF_INET)}
        if pysocket.has_ipv6:
            self.domains[pysocket.AF_INET6] = SockinDomain(self, pysocket.AF_INET6)

    def check_command(self, name: str) -> None:
        """Raise EOPNOTSUPP for a command that would configure interfaces or routes."""
        if name in UNSUPPORTED_COMMANDS:
            raise kerr(errno.EOPNOTSUPP, f"{name}: Operation not supported (sockin kernel: no interfaces, no routes)")


def sockin_attach(k: NetKernel) -> Sockin:
    """Component init: install the PF_INET/PF_INET6 domains of a sockin kernel."""
    s = Sockin(k)
    k.inet = None
    k.sockin = s  # type: ignore[attr-defined]
    k.domains.update(s.domains)
    return s


def refuse_command(k: Any, name: str) -> None:
    """What the command layer calls first: EOPNOTSUPP for ifconfig/route/arp on sockin."""
    s = getattr(k, "sockin", None)
    if s is not None:
        s.check_command(name)
