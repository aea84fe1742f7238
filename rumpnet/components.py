"""The net faction's components, registered with the kern core (``RUMP_COMPONENT()``).

``net`` (interfaces, routes, the socket layer and its system calls, the commands, the
structured API), ``netinet`` (PF_INET), ``sockin`` (PF_INET over host sockets instead),
the cloners ``wire``, ``shmif`` and ``virtif``, ``netcfg``, and ``vfs`` (etfs: host files
as rump_etfs(3) exposes them). The kern finds this module through the entry point
``rumpkern.factions`` (pyproject.toml) and imports it at the first boot that looks a
component up; nothing under ``rumpkern/`` imports it.
"""

from __future__ import annotations

import socket as pysocket
from typing import TYPE_CHECKING, cast

from rumpkern.component import (
    RUMP_COMPONENT_NET,
    RUMP_COMPONENT_NET_IF,
    RUMP_COMPONENT_NET_IFCFG,
    RUMP_COMPONENT_VFS,
    rump_boot_option,
    rump_component,
    rump_library,
)
from rumpnet.commands import COMMANDS
from rumpnet.ifnet import Cloner, Ifnet, IfnetRegistry, LinkDriver
from rumpnet.net import Net, create_ether
from rumpnet.net_kernel import net_kernel
from rumpnet.server import etfs
from rumpnet.sys_socket import SYSCALLS

if TYPE_CHECKING:
    from rumpkern.kernel import Kernel
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netconfig import NetConfig
    from rumpnet.socket import RumpSocket

for _library, _component in (("rumpnet", "net"), ("rumpnet_net", "net"), ("rumpnet_netinet", "netinet"),
                             ("rumpnet_netinet6", "netinet6"), ("rumpnet_shmif", "shmif"), ("rumpnet_virtif", "virtif"), ("rumpnet_sockin", "sockin"),
                             ("rumpnet_wire", "wire"), ("rumpnet_local", None), ("rumpvfs", "vfs")):
    rump_library(_library, _component)


# -- net: interfaces, routes, sockets, commands --------------------------------------------------


def _config(k: Kernel) -> NetConfig:
    from rumpnet.netconfig import NetConfig

    return NetConfig(net_kernel(k))


def _socket(k: Kernel, family: int, type: int, proto: int) -> RumpSocket:  # noqa: A002
    from rumpnet.socket import RumpSocket

    return RumpSocket(k, family, type, proto)


def _net_memlimit(k: Kernel, share: int) -> None:
    """RUMP_MEMLIMIT: socket buffers and reassembly queues of UDP, IP and TCP."""
    inet = net_kernel(k).inet
    if inet is None:
        return
    inet.udp_params.sendspace = min(inet.udp_params.sendspace, share)
    inet.udp_params.recvspace = min(inet.udp_params.recvspace, share)
    ip = inet.ip_params
    ip.maxfrags = max(1, min(ip.maxfrags, share // 1500))
    ip.maxfragpackets = max(1, min(ip.maxfragpackets, ip.maxfrags))
    tcp = inet.tcp
    if tcp is not None:
        p = tcp.params
        p.sendspace = min(p.sendspace, share)
        p.recvspace = min(p.recvspace, share)
        p.recvbuf_max = min(p.recvbuf_max, share)
        p.sendbuf_max = min(p.sendbuf_max, share)
        p.reass_maxbytes = min(p.reass_maxbytes, share)


def _net_halt(k: Kernel) -> None:
    """After the files are closed: detach every interface's link (taps, buses, wires)."""
    for ifp in net_kernel(k).ifnet.all():
        ifp.detach_driver()


@rump_component("net", RUMP_COMPONENT_NET, default=True, syscalls=SYSCALLS, commands=COMMANDS,
                apis={"config": _config, "socket": _socket}, memlimit=_net_memlimit, halt=_net_halt)
def _net_init(k: Kernel) -> None:
    nk = cast("NetKernel", k)  # it becomes one here: these are the attributes NetKernel adds
    nk.ifnet = IfnetRegistry(nk)
    nk.domains = {}
    nk.inet = None
    nk.inet6 = None
    nk.net = Net(nk)
    k.sysctl_tree.add_node("net", num=4)
    # PF_ROUTE and sysctl net.route (net/rtsock.c is part of librumpnet_net too).
    from rumpnet.rtsock import rtsock_attach

    rtsock_attach(nk)


def _netinet_halt(k: Kernel) -> None:
    """The kernel halts: the inet domain's timer never fires again."""
    inet = net_kernel(k).inet
    if inet is not None:
        inet.halt()


@rump_component("netinet", RUMP_COMPONENT_NET + 1, requires=("net",), conflicts=("sockin",), default=True,
                halt=_netinet_halt)
def _netinet_init(k: Kernel) -> None:
    from rumpnet.netinet.in_pcblist import pcblist_sysctl
    from rumpnet.netinet.in_proto import Inet
    from rumpnet.netinet.tcp_usrreq import tcp_attach

    nk = net_kernel(k)
    # lo0 exists before the domain so that 127.0.0.1 can be configured on it.
    nk.net.boot_loopback()
    inet = nk.inet = Inet(nk)
    nk.domains[pysocket.AF_INET] = inet
    tcp_attach(nk)
    pcblist_sysctl(k.sysctl_tree, inet)


def _netinet6_halt(k: Kernel) -> None:
    inet6 = net_kernel(k).inet6
    if inet6 is not None:
        inet6.halt()


@rump_component("netinet6", RUMP_COMPONENT_NET + 2, requires=("net", "netinet"), conflicts=("sockin",),
                default=True, halt=_netinet6_halt)
def _netinet6_init(k: Kernel) -> None:
    """PF_INET6 (NetBSD's rumpnet_netinet6): after netinet, whose lo0 it configures too."""
    from rumpnet.netinet6.in6_domain import Inet6Domain
    from rumpnet.rtsock import rtsock_watch

    nk = net_kernel(k)
    nk.inet6 = Inet6Domain(nk)
    rtsock_watch(nk, nk.inet6.routes, inet6=True)  # routing sockets announce its changes


@rump_component("wire", RUMP_COMPONENT_NET_IF, requires=("net",), default=True)
def _wire_init(k: Kernel) -> None:
    """In-process wires (cloner ``wire``, registered by the net faction itself)."""


def _shmif_link(ifp: Ifnet, linkstr: str) -> LinkDriver:
    from rumpnet.shmif.if_shmif import ShmifDriver

    return ShmifDriver(linkstr, boottime=ifp.kernel.boottime)


@rump_component("shmif", RUMP_COMPONENT_NET_IF, requires=("net",), default=True)
def _shmif_init(k: Kernel) -> None:
    net_kernel(k).ifnet.add_cloner(Cloner("shmif", create_ether("shmif"), lambda ifp: None))
    Net.link_factories["shmif"] = _shmif_link


def _virt_link(ifp: Ifnet, linkstr: str) -> LinkDriver:
    from rumpnet.virtif.if_virt import VirtifDriver

    # Offloads (vnet header, TSO/GRO, checksum) by default; the driver steps down by itself
    # when the host refuses them, and ``linkstr tapN,nooffload`` turns them off.
    return VirtifDriver(linkstr, offload=True)


@rump_component("virtif", RUMP_COMPONENT_NET_IF, requires=("net",), default=True)
def _virtif_init(k: Kernel) -> None:
    net_kernel(k).ifnet.add_cloner(Cloner("virt", create_ether("virt"), lambda ifp: None))
    Net.link_factories["virt"] = _virt_link
    Net.default_links["virt"] = lambda ifp: f"tun{ifp.unit}"  # virtN binds to tap tunN


@rump_component("tun", RUMP_COMPONENT_NET_IF, requires=("net",))
def _tun_init(k: Kernel) -> None:
    """tun(4): point-to-point interfaces carrying bare IP packets (``rumpnet.if_tun``)."""
    from rumpnet.if_tun import create_tun, destroy_tun

    net_kernel(k).ifnet.add_cloner(Cloner("tun", create_tun, destroy_tun))


@rump_component("sockin", RUMP_COMPONENT_NET + 1, requires=("net",), conflicts=("netinet",))
def _sockin_init(k: Kernel) -> None:
    from rumpnet.sockin import sockin_attach

    sockin_attach(net_kernel(k))


def _sockin_option(components: list[str], named: bool) -> list[str]:
    """``rump_init(sockin=True)``: sockin instead of netinet and netinet6 (added to a named
    list)."""
    if named:
        return components if "sockin" in components else [*components, "sockin"]
    return [c for c in components if c not in ("netinet", "netinet6")] + ["sockin"]


rump_boot_option("sockin", _sockin_option)


@rump_component("netcfg", RUMP_COMPONENT_NET_IFCFG, requires=("net",), default=True)
def _netcfg_init(k: Kernel) -> None:
    """Interface configuration at boot: nothing beyond lo0 (done by netinet)."""


# -- vfs: etfs (librumpvfs's rump_etfs(3)) ------------------------------------------------------


@rump_component("vfs", RUMP_COMPONENT_VFS, default=True, syscalls=etfs.SYSCALLS, apis=etfs.APIS)
def _vfs_init(k: Kernel) -> None:
    """Host files and directories registered by key (``rump_pub_etfs_register``)."""
