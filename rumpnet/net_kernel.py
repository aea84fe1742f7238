"""The kernel as the net faction sees it: a :class:`rumpkern.kernel.Kernel` whose ``net``
component is loaded, with the state that component hangs on it.

The kern core knows no faction, so its ``Kernel`` declares none of the faction's state;
the ``net`` component sets it at boot (``rumpnet/components.py``):

* ``k.net``: :class:`rumpnet.net.Net` (route table, Ethernet dispatch, loopback, links);
* ``k.ifnet``: :class:`rumpnet.ifnet.IfnetRegistry` (interfaces and cloners);
* ``k.domains``: address family -> :class:`rumpnet.uipc_domain.Domain` (``socket(2)``);
* ``k.inet``: the netinet domain (:class:`rumpnet.netinet.in_proto.Inet`) when the
  ``netinet`` component is loaded, else None (a kernel with sockin, or with net alone);
* ``k.inet6``: the netinet6 domain (:class:`rumpnet.netinet6.in6_domain.Inet6Domain`)
  when ``netinet6`` is loaded, else None.

Code of the faction is typed against :class:`NetKernel`; where a plain ``Kernel`` comes
in (a command, the structured API, a user's object), :func:`net_kernel` checks that the
net component is there and returns the same object under that type.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING, cast

from rumpkern.errno import kerr
from rumpkern.kernel import Kernel

if TYPE_CHECKING:
    from rumpnet.ifnet import IfnetRegistry
    from rumpnet.net import Net
    from rumpnet.netinet.in_proto import Inet
    from rumpnet.netinet6.in6_domain import Inet6Domain
    from rumpnet.uipc_domain import Domain

    class NetKernel(Kernel):
        """A Kernel with the net component loaded (a view for the type checker)."""

        net: Net
        ifnet: IfnetRegistry
        domains: dict[int, Domain]
        inet: Inet | None
        inet6: Inet6Domain | None
else:
    NetKernel = Kernel


def net_kernel(k: Kernel) -> NetKernel:
    """``k`` as the net faction sees it; EAFNOSUPPORT if the net component is not loaded."""
    if "net" not in k.__dict__:
        raise kerr(errno.EAFNOSUPPORT, f"kernel {k.hostname} has no net component")
    return cast("NetKernel", k)


def netinet(k: NetKernel) -> Inet:
    """The kernel's netinet domain; EOPNOTSUPP where netinet is not loaded (sockin)."""
    inet = k.inet
    if inet is None:
        raise kerr(errno.EOPNOTSUPP, "Operation not supported (no netinet in this kernel)")
    return inet


def netinet6(k: NetKernel) -> Inet6Domain:
    """The kernel's netinet6 domain; EOPNOTSUPP where netinet6 is not loaded."""
    inet6 = k.inet6
    if inet6 is None:
        raise kerr(errno.EOPNOTSUPP, "Operation not supported (no netinet6 in this kernel)")
    return inet6
