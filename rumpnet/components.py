"""The net components: ``net``, ``netinet``, and the cloners ``wire``, ``shmif``, ``virtif``."""

from __future__ import annotations

import errno
import socket as pysocket
from typing import TYPE_CHECKING, Any

from rumpkern.component import (
    RUMP_COMPONENT_NET,
    RUMP_COMPONENT_NET_IF,
    RUMP_COMPONENT_NET_IFCFG,
    rump_component,
)
from rumpkern.errno import kerr
from rumpnet.ifnet import Cloner, Ifnet
from rumpnet.net import Net, create_ether

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel


class _InetDomain:
    def __init__(self, k: Kernel) -> None:
        self.k = k

    def socket(self, so_type: int, proto: int) -> Any:
        return self.k.inet.socket(so_type, proto)


@rump_component("net", RUMP_COMPONENT_NET)
def _net_init(k: Kernel) -> None:
    k.net = Net(k)
    k.sysctl_tree.add_node("net", num=4)


@rump_component("netinet", RUMP_COMPONENT_NET + 1, requires=("net",), conflicts=("sockin",))
def _netinet_init(k: Kernel) -> None:
    from rumpnet.netinet.in_proto import Inet

    # lo0 exists before the domain so that 127.0.0.1 can be configured on it.
    k.net.boot_loopback()
    k.inet = Inet(k)
    k.domains[pysocket.AF_INET] = _InetDomain(k)
    from rumpnet.netinet.tcp_usrreq import tcp_attach

    tcp_attach(k)


@rump_component("wire", RUMP_COMPONENT_NET_IF, requires=("net",))
def _wire_init(k: Kernel) -> None:
    """In-process wires (cloner ``wire``, registered by the net faction itself)."""


def _shmif_link(ifp: Ifnet, linkstr: str) -> Any:
    from rumpnet.shmif.if_shmif import ShmifDriver

    return ShmifDriver(linkstr, boottime=ifp.kernel.boottime)


@rump_component("shmif", RUMP_COMPONENT_NET_IF, requires=("net",))
def _shmif_init(k: Kernel) -> None:
    k.ifnet.add_cloner(Cloner("shmif", create_ether("shmif"), lambda ifp: None))
    Net.link_factories["shmif"] = _shmif_link


def _virt_link(ifp: Ifnet, linkstr: str) -> Any:
    from rumpnet.virtif.if_virt import VirtifDriver

    # Offloads (vnet header, TSO/GRO, checksum) by default; the driver steps down by itself
    # when the host refuses them, and ``linkstr tapN,nooffload`` turns them off.
    return VirtifDriver(linkstr, offload=True)


def _create_virt(k: Kernel, unit: int) -> Ifnet:
    ifp = create_ether("virt")(k, unit)
    return ifp


@rump_component("virtif", RUMP_COMPONENT_NET_IF, requires=("net",))
def _virtif_init(k: Kernel) -> None:
    k.ifnet.add_cloner(Cloner("virt", _create_virt, lambda ifp: None))
    Net.link_factories["virt"] = _virt_link
    Net.default_links["virt"] = lambda ifp: f"tun{ifp.unit}"  # virtN binds to tap tunN


@rump_component("sockin", RUMP_COMPONENT_NET + 1, conflicts=("netinet",))
def _sockin_init(k: Kernel) -> None:
    try:
        from rumpnet.sockin import sockin_attach  # type: ignore[attr-defined]
    except ImportError:
        raise kerr(errno.EOPNOTSUPP, "sockin component is not available in this build") from None
    sockin_attach(k)


@rump_component("netcfg", RUMP_COMPONENT_NET_IFCFG, requires=("net",))
def _netcfg_init(k: Kernel) -> None:
    """Interface configuration at boot: nothing beyond lo0 (done by netinet)."""
