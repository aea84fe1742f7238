"""The structured configuration API's IPv6 part (``k.config.addr6_add``, ``route6_add``,
``ndp_entries``, ...): what ``ifconfig inet6``, ``route -inet6`` and ``ndp`` do, as
methods. Addresses are strings (``"fe80::1%wire0"`` for scoped ones), every method runs on
the kernel's CPU and raises ``OSError`` with the errno NetBSD gives.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from rumpkern.commands import on_cpu
from rumpkern.errno import kerr
from rumpnet.net_kernel import netinet6
from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_var import ND6_INFINITE_LIFETIME, In6Ifaddr, NdIfinfo
from rumpnet.netinet6.nd6 import ND6_LLINFO_REACHABLE, Llinfo6
from rumpnet.netinet6.nd6_rtr import NdDefrouter, NdPrefix
from rumpnet.route import (
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_LLDATA,
    RTF_LOCAL,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    Rtentry,
    Rtentry6,
)

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.net_kernel import NetKernel
    from rumpnet.netinet6.in6_domain import Inet6Domain

T = TypeVar("T")


class NdEntry:
    """A neighbour as ``ndp`` shows it: the cache's entry, or one of our own addresses
    (NetBSD keeps those as permanent local entries)."""

    def __init__(self, addr: int, ifp: Ifnet, lladdr: bytes | None, state: int, expire: float | None,
                 isrouter: bool = False, static: bool = False, local: bool = False) -> None:
        self.addr = addr
        self.ifp = ifp
        self.lladdr = lladdr
        self.state = state
        self.expire = expire          # absolute kernel time; None: permanent
        self.isrouter = isrouter
        self.static = static
        self.local = local


class Inet6Config:
    """Mixed into :class:`rumpnet.netconfig.NetConfig`."""

    k: NetKernel

    def _run6(self, fn: Callable[[Inet6Domain], T]) -> T:
        k = self.k
        return on_cpu(k, lambda: fn(netinet6(k)))

    def parse6(self, text: str) -> tuple[int, int]:
        """``ADDR[%zone]`` -> (address, zone); EINVAL for anything else."""
        try:
            addr, zone = scope6.parse_scoped(text, lambda n: self.k.ifnet.lookup(n).index)
        except OSError as e:
            raise kerr(errno.EINVAL, f"{text}: bad address ({e.strerror})") from None
        return addr, zone

    def parse_prefix6(self, text: str, default_plen: int = 128) -> tuple[int, int, int]:
        """``default`` | ``ADDR[%zone][/PLEN]`` -> (prefix, plen, zone)."""
        if text == "default":
            return 0, 0, 0
        head, _, p = text.partition("/")
        addr, zone = self.parse6(head)
        if p and (not p.isdigit() or int(p) > 128):
            raise kerr(errno.EINVAL, f"{text}: bad prefix length")
        plen = int(p) if p else default_plen
        return in6.prefix_of(addr, plen), plen, zone

    # -- addresses -------------------------------------------------------------------------
    def addr6_add(self, name: str, addr: str, plen: int = 64, flags: int = 0,
                  vltime: int = ND6_INFINITE_LIFETIME, pltime: int = ND6_INFINITE_LIFETIME) -> In6Ifaddr:
        """``ifconfig NAME inet6 ADDR/PLEN`` (``addr`` may carry ``/PLEN``)."""
        head, _, p = addr.partition("/")
        a, _ = self.parse6(head)
        n = int(p) if p.isdigit() else plen
        return self._run6(lambda d: d.add_address(self.k.ifnet.lookup(name), a, n, flags, vltime, pltime))

    def addr6_delete(self, name: str, addr: str) -> None:
        a, _ = self.parse6(addr.partition("/")[0])
        self._run6(lambda d: d.remove_address(self.k.ifnet.lookup(name), a))

    def addrs6(self, name: str) -> list[In6Ifaddr]:
        return self._run6(lambda d: d.addresses(self.k.ifnet.lookup(name)))

    # -- routes ----------------------------------------------------------------------------
    def route6_add(self, dst: str, gateway: str | None = None, *, host: bool = False, net: bool = False,
                   prefixlen: int | None = None, interface: bool = False, ifp: str | None = None,
                   reject: bool = False, blackhole: bool = False, mtu: int = 0, static: bool = True) -> Rtentry:
        """``route add -inet6``: ``gateway`` a neighbour (``fe80::1%wire0`` for a
        link-local one), or with ``interface`` the route goes straight out of the
        interface that owns that address (or ``ifp``). ``dst`` without ``/PLEN`` is a
        host, or with ``net`` a /64 (route(8)'s default prefix length)."""
        prefix, plen, zone = self.parse_prefix6(dst, 64 if net and not host else 128)
        if prefixlen is not None:
            prefix, plen = in6.prefix_of(prefix, prefixlen), prefixlen
        if host:
            plen = 128
        gw = self.parse6(gateway) if gateway is not None else None

        def add(d: Inet6Domain) -> Rtentry:
            flags = RTF_UP | (RTF_STATIC if static else 0) | (RTF_HOST if plen == 128 else 0)
            flags |= (RTF_REJECT if reject else 0) | (RTF_BLACKHOLE if blackhole else 0)
            out = self.k.ifnet.lookup(ifp) if ifp else None
            gwaddr = None
            if gw is not None and not interface:
                out = out or self._neighbour_ifp(d, gw[0], gw[1])
                gwaddr = gw[0]
                flags |= RTF_GATEWAY
            elif gw is not None:
                ia = d.node.ifaddrs.lookup(gw[0], gw[1])
                if ia is None:
                    raise kerr(errno.ENETUNREACH, "Network is unreachable")
                out = self.k.ifnet.by_index(ia.ifindex)
            elif out is None:
                if not (reject or blackhole):
                    raise kerr(errno.EINVAL, "Invalid argument")
                out = self.k.net.lo0
            zone6 = zone or (gw[1] if gw is not None and in6.is_scoped(prefix) else 0)
            return d.routes.add(Rtentry6(prefix, plen, gwaddr, flags, out, zone6, mtu=mtu))

        return self._run6(add)

    def _neighbour_ifp(self, d: Inet6Domain, gw: int, zone: int) -> Ifnet:
        """``rtrequest``: a gateway must be a neighbour, i.e. reached by a route that is
        not itself through a gateway (a link-local one through its zone's interface)."""
        if in6.is_scoped(gw):
            out = self.k.ifnet.by_index(zone) if zone else None
            if out is None:
                raise kerr(errno.ENETUNREACH, "Network is unreachable")
            return out
        via = d.routes.lookup(gw)
        if via is None or via.ifp is None or via.flags & (RTF_GATEWAY | RTF_REJECT | RTF_BLACKHOLE):
            raise kerr(errno.ENETUNREACH, "Network is unreachable")
        ia6 = getattr(via, "ia6", None)
        if via.flags & RTF_LOCAL and ia6 is not None:
            return self.k.ifnet.by_index(ia6.ifindex) or via.ifp
        return via.ifp

    def route6_delete(self, dst: str, *, host: bool = False, net: bool = False,
                      prefixlen: int | None = None) -> Rtentry | None:
        """``route delete -inet6``: the route, or (as NetBSD keeps neighbours as LLINFO
        routes) the neighbour cache entry of a host with no route of its own (None)."""
        prefix, plen, zone = self.parse_prefix6(dst, 64 if net and not host else 128)
        if prefixlen is not None:
            prefix, plen = in6.prefix_of(prefix, prefixlen), prefixlen

        def delete(d: Inet6Domain) -> Rtentry | None:
            if d.routes.exact(prefix, plen, zone) is not None:
                return d.routes.delete(prefix, plen, zone)
            if plen == 128:
                for ln in d.node.nd6.entries():
                    if ln.addr == prefix and (not zone or ln.ifindex == zone):
                        d.node.nd6.remove(ln.addr, ln.ifindex)
                        return None
            raise kerr(errno.ESRCH, "No such process")

        return self._run6(delete)

    def route6_get(self, dst: str) -> Rtentry:
        """``route get -inet6``: ESRCH (``not in table``) when nothing matches, and for a
        scoped address without its zone."""
        addr, zone = self.parse6(dst) if dst != "default" else (0, 0)

        def get(d: Inet6Domain) -> Rtentry:
            rt = d.routes.lookup(addr, d.default_zone(addr, zone))
            if rt is None or (in6.is_scoped(addr) and not zone and addr != in6.IN6ADDR_LOOPBACK):
                raise kerr(errno.ESRCH, "not in table")
            return rt

        return self._run6(get)

    def routes6(self) -> list[Rtentry]:
        return self._run6(lambda d: list(d.routes))

    def route6_flush(self) -> list[Rtentry]:
        return self._run6(lambda d: d.routes.flush())

    # -- neighbours (ndp) --------------------------------------------------------------------
    def ndp_entries(self) -> list[NdEntry]:
        """Every neighbour, our own addresses first on each interface (``ndp -a``)."""
        return self._run6(self._entries)

    def _entries(self, d: Inet6Domain) -> list[NdEntry]:
        out: list[NdEntry] = []
        for ifp in self.k.ifnet.all():
            if ifp.loopback:
                continue
            for ia in d.addresses(ifp):
                out.append(NdEntry(ia.addr, ifp, ifp.lladdr, ND6_LLINFO_REACHABLE, None, local=True))
            for ln in d.node.nd6.entries():
                if ln.ifindex == ifp.index:
                    out.append(self._entry(d, ln, ifp))
        return out

    @staticmethod
    def _entry(d: Inet6Domain, ln: Llinfo6, ifp: Ifnet) -> NdEntry:
        return NdEntry(ln.addr, ifp, ln.lladdr, ln.state, None if ln.static else d.node.nd6.expiry(ln),
                       ln.isrouter, ln.static)

    def ndp_get(self, addr: str) -> NdEntry:
        """``ndp ADDR[%zone]``: ENOENT (``no entry``) when there is none; a scoped
        address needs its zone."""
        a, zone = self.parse6(addr)
        for e in self.ndp_entries():
            if e.addr == a and (zone == e.ifp.index or (not zone and not in6.is_scoped(a))):
                return e
        raise kerr(errno.ENOENT, "no entry")

    def ndp_add(self, addr: str, mac: str, temp: bool = False) -> NdEntry:
        """``ndp -s ADDR MAC [temp]``: a static entry on the interface whose prefix holds
        the address; EEXIST for one of our own addresses (a permanent local entry)."""
        from rumpnet.netconfig import parse_mac

        a, zone = self.parse6(addr)
        m = parse_mac(mac)

        def add(d: Inet6Domain) -> NdEntry:
            if d.node.ifaddrs.lookup(a, zone) is not None:
                raise kerr(errno.EEXIST, "cannot overwrite a permanent entry")
            ifindex = zone or self._onlink_ifindex(d, a)
            nd6 = d.node.nd6
            if temp:
                nd6.remove(a, ifindex)
                made = nd6.cache_lladdr(ifindex, a, m, d.now())
                if made is None:
                    raise kerr(errno.ENOBUFS, "neighbour cache full")
                ln = made
            else:
                ln = nd6.add_static(a, ifindex, m)
            d.settle()
            ifp = self.k.ifnet.by_index(ifindex)
            assert ifp is not None
            return self._entry(d, ln, ifp)

        return self._run6(add)

    @staticmethod
    def _onlink_ifindex(d: Inet6Domain, a: int) -> int:
        rt = d.routes.lookup(a)
        if rt is None or rt.ifp is None or rt.flags & RTF_GATEWAY or rt.ifp.loopback:
            raise kerr(errno.ENETUNREACH, "no on-link prefix for the address")
        return rt.ifp.index

    def ndp_delete(self, addr: str) -> None:
        a, zone = self.parse6(addr)

        def delete(d: Inet6Domain) -> None:
            for ln in d.node.nd6.entries():
                if ln.addr == a and (not zone or ln.ifindex == zone):
                    d.node.nd6.remove(ln.addr, ln.ifindex)
                    return
            raise kerr(errno.ENOENT, "no entry")

        self._run6(delete)

    def ndp_flush(self) -> list[int]:
        """``ndp -c``: every dynamic entry goes (static ones stay, as NetBSD's)."""
        def flush(d: Inet6Domain) -> list[int]:
            gone = [ln for ln in d.node.nd6.entries() if not ln.static]
            for ln in gone:
                d.node.nd6.remove(ln.addr, ln.ifindex)
            return [ln.addr for ln in gone]

        return self._run6(flush)


    # -- router discovery (ndp -r, -p, -i, -P, -R) ----------------------------------------------
    def nd_routers(self) -> list[NdDefrouter]:
        """The default router list (``ndp -r``): routers learned from advertisements."""
        return self._run6(lambda d: list(d.node.nd6_rtr.defrouters.values()))

    def nd_prefixes(self) -> list[NdPrefix]:
        """The prefix list (``ndp -p``): on-link prefixes learned from advertisements,
        each with the default routers that advertise it (``advrtrs``)."""
        return self._run6(lambda d: list(d.node.nd6_rtr.prefixes.values()))

    def nd_prefix_flush(self) -> None:
        """``ndp -P``: forget the prefixes, and the addresses autoconfigured from them."""
        def flush(d: Inet6Domain) -> None:
            d.node.nd6_rtr.prefix_flush(d.now())
            d.settle()

        self._run6(flush)

    def nd_router_flush(self) -> None:
        """``ndp -R``: forget the default routers (their prefixes stay)."""
        def flush(d: Inet6Domain) -> None:
            d.node.nd6_rtr.defrouter_flush()
            d.settle()

        self._run6(flush)

    def nd_ifinfo(self, ifname: str, changes: dict[str, Any] | None = None) -> NdIfinfo:
        """``ndp -i IF [flags...]``: the interface's ND parameters (``struct nd_ifinfo``),
        after ``changes`` (``{"flags": n, "basereachable": s, "retrans": s, "chlim": n}``);
        EINVAL before IPv6 knows the interface (NetBSD: "not initialized yet")."""
        ifp = self.k.ifnet.lookup(ifname)

        def info(d: Inet6Domain) -> NdIfinfo:
            ext = d.node.ifaddrs.ifs.get(ifp.index)
            if ext is None:
                raise kerr(errno.EINVAL, f"{ifname}: not initialized yet")
            for key, value in (changes or {}).items():
                setattr(ext.ndi, key, value)
                if key == "basereachable":
                    d.node.nd6.recalc_reachable(ifp.index, d.now())
            return ext.ndi

        return self._run6(info)


def describe_route6(rt: Any) -> dict[str, Any]:
    """An IPv6 route as plain data (for JSON, the live view and tests)."""
    from rumpnet.route import flags_letters

    dst = "default" if rt.plen == 0 else f"{scope6.format_scoped(rt.dst, rt.zone)}/{rt.plen}"
    gw = in6.ntop(rt.gateway) if rt.gateway is not None else (f"link#{rt.ifp.index}" if rt.ifp else "-")
    return {"destination": dst, "gateway": gw, "flags": flags_letters(rt.flags),
            "interface": rt.ifp.name if rt.ifp else None, "mtu": rt.mtu, "use": rt.use,
            "lldata": bool(rt.flags & RTF_LLDATA), "connected": bool(rt.flags & RTF_CONNECTED)}
