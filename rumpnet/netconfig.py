"""The structured configuration API: what ``ifconfig``, ``route`` and ``arp`` do, as methods.

``k.config`` is a :class:`NetConfig`. Every method runs on the kernel's CPU (safe from any
thread), takes addresses as strings, and raises ``OSError`` with the errno NetBSD gives.
The commands in :mod:`rumpnet.commands` parse argv and call these.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rumpkern.commands import on_cpu
from rumpkern.errno import kerr
from rumpnet.ifnet import Ifnet
from rumpnet.net_kernel import netinet
from rumpnet.netconfig6 import Inet6Config
from rumpnet.netinet.in_addr import aton_strict, classful_plen, ntoa, parse_prefix
from rumpnet.route import (
    RTF_BLACKHOLE,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    Rtentry,
    mask_to_plen,
)

if TYPE_CHECKING:
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet.if_arp import LlEntry
    from rumpnet.netinet.in_proto import Inet

T = TypeVar("T")


def parse_mac(s: str) -> bytes:
    """``b2:a0:00:00:00:01`` -> 6 bytes (EINVAL naming the text when it is no MAC)."""
    parts = s.split(":")
    if len(parts) != 6:
        raise kerr(errno.EINVAL, f"invalid Ethernet address '{s}'")
    try:
        mac = bytes(int(p, 16) for p in parts)
    except ValueError:
        raise kerr(errno.EINVAL, f"invalid Ethernet address '{s}'") from None
    return mac


def format_mac(mac: bytes) -> str:
    """6 bytes -> ``b2:a0:00:00:00:01``."""
    return ":".join(f"{b:02x}" for b in mac)


class NetConfig(Inet6Config):
    """``k.config``: the structured configuration API of kernel ``k`` (see the module
    docstring); its IPv6 methods come from :class:`rumpnet.netconfig6.Inet6Config`."""

    def __init__(self, kernel: NetKernel) -> None:
        self.k = kernel

    def _run(self, fn: Callable[[], T]) -> T:
        return on_cpu(self.k, fn)  # ENXIO once the kernel is halted

    @property
    def _inet(self) -> Inet:
        return netinet(self.k)

    # -- interfaces ----------------------------------------------------------------------
    def if_create(self, name: str) -> Ifnet:
        """``ifconfig NAME create``: a new interface of the cloner its name says (``wire0``, ``shmif1``, ``virt0``)."""
        return self._run(lambda: self.k.ifnet.create(name))

    def if_destroy(self, name: str) -> None:
        """``ifconfig NAME destroy``: detach the interface and remove it with its addresses and routes."""
        self._run(lambda: self.k.ifnet.destroy(name))

    def if_get(self, name: str) -> Ifnet:
        """The interface called ``name`` (ENXIO if there is none)."""
        self.k.check_up()
        return self.k.ifnet.lookup(name)

    def if_list(self) -> list[Ifnet]:
        """Every interface, in creation order (lo0 first)."""
        self.k.check_up()
        return self.k.ifnet.all()

    def if_up(self, name: str) -> None:
        """``ifconfig NAME up``."""
        self._run(lambda: self.k.ifnet.lookup(name).set_up(True))

    def if_down(self, name: str) -> None:
        """``ifconfig NAME down``."""
        self._run(lambda: self.k.ifnet.lookup(name).set_up(False))

    def if_set_linkstr(self, name: str, linkstr: str | None) -> None:
        """``ifconfig NAME linkstr STR``: the wire's segment, the shmif bus file or the host tap (None: ``-linkstr``)."""
        self._run(lambda: self.k.net.set_linkstr(self.k.ifnet.lookup(name), linkstr))

    def if_set_mtu(self, name: str, mtu: int) -> None:
        """``ifconfig NAME mtu N``."""
        self._run(lambda: self.k.ifnet.lookup(name).set_mtu(int(mtu)))

    def if_set_media(self, name: str, media: str) -> None:
        """``ifconfig NAME media TYPE`` (``autoselect`` or ``none``: no carrier)."""
        self._run(lambda: self.k.ifnet.lookup(name).set_media(media))

    def if_set_lladdr(self, name: str, mac: str) -> None:
        """``ifconfig NAME link MAC``: a new Ethernet address."""
        self._run(lambda: self.k.ifnet.lookup(name).set_lladdr(parse_mac(mac)))

    def if_set_promisc(self, name: str, on: bool) -> None:
        """``ifconfig NAME [-]promisc``."""
        self._run(lambda: self.k.ifnet.lookup(name).set_promisc(on))

    def addr_add(self, name: str, addr: str, netmask: str | None = None, broadcast: str | None = None,
                 alias: bool = False) -> None:
        """``ifconfig NAME inet ADDR[/LEN] [netmask M] [broadcast B] [alias]``."""
        ip, plen = parse_prefix(addr)
        if netmask is not None:
            m = int(netmask, 16) if netmask.lower().startswith("0x") else aton_strict(netmask)
            plen = mask_to_plen(m)
        if plen is None:
            plen = classful_plen(ip)
        bcast = aton_strict(broadcast) if broadcast else None

        def add() -> None:
            ifp = self.k.ifnet.lookup(name)
            self._inet.add_address(ifp, ip, plen, bcast, alias=alias)

        self._run(add)

    def addr_delete(self, name: str, addr: str) -> None:
        """``ifconfig NAME inet ADDR delete``: remove the address and its connected route."""
        ip, _ = parse_prefix(addr)
        self._run(lambda: self._inet.delete_address(self.k.ifnet.lookup(name), ip))

    # -- routes --------------------------------------------------------------------------
    @staticmethod
    def parse_dest(dst: str, host: bool = False, net: bool = False, netmask: str | None = None) -> tuple[int, int]:
        """A route destination (``default``, ``a.b.c.d/n``, a host or a network as route(8) reads it) as ``(address, prefix length)``."""
        if dst == "default":
            return 0, 0
        ip, plen = parse_prefix(dst)
        if netmask is not None:
            m = aton_strict(netmask)
            plen = mask_to_plen(m)
        if plen is None:
            if host:
                plen = 32
            elif net:
                # route(8): a network number without a mask takes its classful length,
                # narrowed to cover the bits that are set.
                plen = classful_plen(ip)
                while plen < 32 and ip & ~((0xFFFFFFFF << (32 - plen)) & 0xFFFFFFFF) & 0xFFFFFFFF:
                    plen += 8
            else:
                plen = 32
        return ip, plen

    def route_add(self, dst: str, gateway: str | None = None, *, host: bool = False, net: bool = False,
                  netmask: str | None = None, interface: bool = False, ifp: str | None = None,
                  reject: bool = False, blackhole: bool = False, mtu: int = 0, static: bool = True) -> Rtentry:
        """``route add``: ``gateway`` is an address, or with ``interface=True`` the route
        goes straight out of the interface that owns that address (or ``ifp``)."""
        ip, plen = self.parse_dest(dst, host, net, netmask)

        def add() -> Rtentry:
            inet = self._inet
            flags = RTF_UP | (RTF_STATIC if static else 0)
            if plen == 32:
                flags |= RTF_HOST
            if reject:
                flags |= RTF_REJECT
            if blackhole:
                flags |= RTF_BLACKHOLE
            out_ifp = self.k.ifnet.lookup(ifp) if ifp else None
            gw: int | None = None
            ifa = None
            if gateway is not None and not interface:
                gw = aton_strict(gateway)
                if gw in inet.local_addrs and (reject or blackhole):
                    ifa = inet.local_addrs[gw]
                    out_ifp = self.k.net.lo0 if (reject or blackhole) else ifa.ifp
                    gw = None
                else:
                    # rtrequest: the gateway must be on a directly connected network.
                    ifa = inet.ifa_on_link(gw) if out_ifp is None else (out_ifp.addrs[0] if out_ifp.addrs else None)
                    if ifa is None and out_ifp is None:
                        # NetBSD's rtrequest also takes a gateway reached by a route that
                        # is not itself through a gateway (an interface route such as
                        # "add -net 10.0.3.0/24 -connected -link -iface shmif0";
                        # t_route.sh route_command_add). Before this fix: ENETUNREACH.
                        via = inet.routes.lookup(gw)
                        if via is not None and via.ifp is not None and via.ifa is not None and \
                                not via.flags & (RTF_GATEWAY | RTF_REJECT | RTF_BLACKHOLE):
                            ifa = via.ifa
                    if ifa is None:
                        raise kerr(errno.ENETUNREACH, "Network is unreachable")
                    out_ifp = ifa.ifp
                    flags |= RTF_GATEWAY
            elif gateway is not None:
                gwip = aton_strict(gateway)
                ifa = inet.local_addrs.get(gwip) or inet.ifa_on_link(gwip)
                if ifa is None:
                    raise kerr(errno.ENETUNREACH, "Network is unreachable")
                out_ifp = ifa.ifp
            else:
                if out_ifp is None:
                    if not (reject or blackhole):
                        raise kerr(errno.EINVAL, "Invalid argument")
                    out_ifp = self.k.net.lo0
                ifa = out_ifp.addrs[0] if out_ifp is not None and out_ifp.addrs else None
            rt = Rtentry(ip, plen, gw, flags, out_ifp, ifa, mtu=mtu)
            return inet.routes.add(rt)

        return self._run(add)

    def route_delete(self, dst: str, *, host: bool = False, net: bool = False, netmask: str | None = None) -> Rtentry:
        """``route delete``: remove the route to exactly ``dst`` (ESRCH if there is none); returns it."""
        ip, plen = self.parse_dest(dst, host, net, netmask)
        return self._run(lambda: self.k.net.routes.delete(ip, plen))

    def route_change(self, dst: str, gateway: str | None = None, **kw: Any) -> Rtentry:
        """``route change``: replace the route to ``dst`` with one through ``gateway`` (the old one stays if the new one cannot be made)."""
        ip, plen = self.parse_dest(dst, kw.get("host", False), kw.get("net", False), kw.get("netmask"))

        def change() -> Rtentry:
            old = self.k.net.routes.exact(ip, plen)
            if old is None:
                raise kerr(errno.ESRCH, "No such process")
            self.k.net.routes.delete(ip, plen)
            try:
                return self.route_add(dst, gateway, **kw)
            except OSError:
                self.k.net.routes.add(old)
                raise

        return self._run(change)

    def route_get(self, dst: str) -> Rtentry:
        """``route get``: the route a packet to ``dst`` takes (longest prefix match; ESRCH when none)."""
        ip = 0 if dst == "default" else parse_prefix(dst)[0]

        def get() -> Rtentry:
            rt = self.k.net.routes.lookup(ip)
            if rt is None:
                raise kerr(errno.ESRCH, "not in table")
            return rt

        return self._run(get)

    def routes(self) -> list[Rtentry]:
        """Every route, in table order."""
        return self._run(lambda: list(self.k.net.routes))

    def route_flush(self) -> list[Rtentry]:
        """``route flush``: remove every route that is not an interface's own; returns them."""
        return self._run(self.k.net.routes.flush)

    # -- ARP -----------------------------------------------------------------------------
    def arp_add(self, ip: str, mac: str, temp: bool = False, pub: bool = False) -> LlEntry:
        """``arp -s IP MAC [temp] [pub]``: a static entry (``temp``: it expires; ``pub``: answer for it, proxy ARP)."""
        a = aton_strict(ip)
        m = parse_mac(mac)
        return self._run(lambda: self._inet.arp.add_static(a, m, self._inet.now(), temp=temp, published=pub))

    def arp_delete(self, ip: str) -> None:
        """``arp -d IP``."""
        a = aton_strict(ip)
        self._run(lambda: self._inet.arp.remove(a))

    def arp_entries(self) -> list[LlEntry]:
        """The ARP cache's entries."""
        return self._run(lambda: self._inet.arp.entries())

    def arp_flush(self) -> None:
        """``arp -d -a``: empty the ARP cache."""
        def flush() -> None:
            arp = self._inet.arp
            for lle in list(arp.entries()):
                arp.remove(lle.ip)

        self._run(flush)

    # -- sysctl --------------------------------------------------------------------------
    def sysctl_get(self, name: str) -> Any:
        """The value of sysctl ``name`` (ENOENT for an unknown one)."""
        return self._run(lambda: self.k.sysctl_tree.read(name))

    def sysctl_set(self, name: str, value: Any) -> Any:
        """Set sysctl ``name`` to ``value`` (checked as ``sysctl -w`` checks it)."""
        return self._run(lambda: self.k.sysctl_tree.write(name, value))

    # -- capture -------------------------------------------------------------------------
    def pcap(self, name: str, sink: Any, filter: str | None = None) -> Capture:  # noqa: A002
        """Write every frame in and out of interface ``name`` to a pcap file."""
        from rumpnet.bpf import PcapWriter, compile_filter

        writer = PcapWriter(sink)
        pred = compile_filter(filter) if filter else None

        def attach() -> Any:
            return self.k.ifnet.lookup(name).bpf_attach(writer, pred)

        tap = self._run(attach)
        return Capture(self, name, writer, tap)


class Capture:
    """A running capture; ``close()`` detaches it and closes the file."""

    def __init__(self, cfg: NetConfig, ifname: str, writer: Any, tap: Any) -> None:
        self.cfg = cfg
        self.ifname = ifname
        self.writer = writer
        self.tap = tap

    def close(self) -> None:
        """Stop capturing and close the file (also at the end of a ``with`` block)."""
        def detach() -> None:
            ifp = self.cfg.k.ifnet.get(self.ifname)
            if ifp is not None:
                ifp.bpf_detach(self.tap)

        if not self.cfg.k.halted:  # a halt detached the links already; the file still closes
            self.cfg._run(detach)
        self.writer.close()

    def __enter__(self) -> Capture:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def describe_route(rt: Rtentry) -> dict[str, Any]:
    """A route as plain data (for JSON, the live view and tests); the gateway and flags as
    ``netstat -rn`` shows them (``link#2``, ``UC``)."""
    from rumpnet.commands.route import gateway_text
    from rumpnet.route import flags_letters
    from rumpnet.rtsock import gateway_sockaddr4

    return {
        "destination": "default" if rt.plen == 0 else f"{ntoa(rt.dst)}/{rt.plen}",
        "gateway": gateway_text(gateway_sockaddr4(rt)),
        "flags": flags_letters(rt.flags),
        "interface": rt.ifp.name if rt.ifp else None,
        "mtu": rt.mtu,
        "use": rt.use,
    }
