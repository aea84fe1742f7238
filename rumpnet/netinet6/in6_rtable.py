"""The AF_INET6 route table of a kernel and what the netinet6 cores ask of it (NetBSD's
``in6_ifaddlocal``/``in6_ifremlocal`` and ``nd6_prefix_onlink`` for connected and local
routes, ``defrouter_select``'s default route, ``icmp6_redirect_input``'s dynamic host
routes, ``icmp6_mtudisc_update``'s path MTU clones).

:class:`Route6Adapter` is the cores' ``Route6Lookup`` seam over
:class:`~rumpnet.route.RouteTable6`: an ``Rtentry6`` becomes the ``Route6`` that output
and forwarding need (interface, gateway, MTU, reject/blackhole, made by a redirect).
:class:`In6Routes` mirrors the node's events into the table:

* an address: a connected route for its prefix (unless it is a /128) on its interface,
  and a local host route (``RTF_LOCAL``) through lo0, zoned when the address is scoped;
* a default router (RA): the default route through ``defrouter_select()``, unless a
  static default route is there (the user's wins, as in NetBSD);
* an on-link prefix (RA): a connected route;
* a redirect: a dynamic host route, expiring after ``net.inet6.icmp6.redirtimeout``
  (at most ``net.inet6.ip6.maxdynroutes`` of them);
* a path MTU learned from Packet Too Big: a dynamic host route carrying ``rmx_mtu`` while
  ``Pmtu6`` keeps the entry (``route get`` shows it, as NetBSD's t_mtudisc6 reads it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from rumpnet.netinet6 import in6, scope6
from rumpnet.netinet6.in6_proto import In6AddrAdded, In6AddrRemoved
from rumpnet.netinet6.ip6_output import Route6
from rumpnet.netinet6.nd6_rtr import Nd6Redirect, PrefixOffLink, PrefixOnLink, RouterAdded, RouterRemoved
from rumpnet.route import (
    RTF_BLACKHOLE,
    RTF_CONNECTED,
    RTF_DYNAMIC,
    RTF_GATEWAY,
    RTF_HOST,
    RTF_LOCAL,
    RTF_MODIFIED,
    RTF_REJECT,
    RTF_STATIC,
    RTF_UP,
    RouteTable6,
    Rtentry,
    Rtentry6,
)

if TYPE_CHECKING:
    from rumpnet.ifnet import Ifnet
    from rumpnet.netinet6.in6_proto import Inet6
    from rumpnet.netinet6.in6_var import In6Ifaddr

# Redirect-made host routes at most (NetBSD's net.inet6.ip6.maxdynroutes default).
MAXDYNROUTES = 4096


class Route6Adapter:
    """``Route6Lookup`` over the kernel's AF_INET6 table (see the module docstring)."""

    def __init__(self, table: RouteTable6) -> None:
        self.table = table
        self._made: dict[int, tuple[Rtentry, Route6]] = {}   # id(rt) -> (rt, its Route6)
        self._generation = -1

    def lookup6(self, dst: int, zone: int) -> Route6 | None:
        rt = self.table.lookup(dst, zone)
        if rt is None or not rt.flags & RTF_UP or rt.ifp is None:
            return None
        if self._generation != self.table.generation:
            self._made.clear()
            self._generation = self.table.generation
        made = self._made.get(id(rt))
        if made is not None and made[0] is rt:
            return made[1]
        f = rt.flags
        gw = rt.gateway if f & RTF_GATEWAY and rt.gateway else 0
        r6 = Route6(rt.ifp.index, gw, rt.mtu, bool(f & RTF_REJECT), bool(f & RTF_BLACKHOLE),
                    bool(f & (RTF_DYNAMIC | RTF_MODIFIED)))
        self._made[id(rt)] = (rt, r6)
        return r6


class In6Routes:
    """Mirrors the node's events into the route table (see the module docstring)."""

    def __init__(self, table: RouteTable6, node: Inet6, ifp_of: Callable[[int], Ifnet | None],
                 lo0: Callable[[], Ifnet | None]) -> None:
        self.table = table
        self.node = node
        self.ifp_of = ifp_of
        self.lo0 = lo0
        self.dynamic: dict[tuple[int, int], float] = {}    # (dst, zone) -> expiry, redirects
        self.pmtu_routes: set[int] = set()                 # host routes mirroring Pmtu6
        self._pmtu_changes = 0
        self.maxdynroutes = MAXDYNROUTES

    # -- addresses -------------------------------------------------------------------------
    def addr_added(self, ev: In6AddrAdded, now: float) -> None:
        ia = ev.ia
        ifp = self.ifp_of(ia.ifindex)
        if ifp is None:
            return
        zone = scope6.zone_of(ia.addr, ia.ifindex)
        if ia.plen < 128:
            self._connected(ia.addr, ia.plen, zone, ifp, ia)
        if self.table.exact(ia.addr, 128, zone) is None:
            self.table.add(Rtentry6(ia.addr, 128, None, RTF_UP | RTF_HOST | RTF_LOCAL, self.lo0() or ifp, zone, ia))

    def _connected(self, prefix: int, plen: int, zone: int, ifp: Ifnet, ia: In6Ifaddr | None) -> None:
        if self.table.exact(prefix, plen, zone) is None:
            self.table.add(Rtentry6(prefix, plen, None, RTF_UP | RTF_CONNECTED, ifp, zone, ia))

    def addr_removed(self, ev: In6AddrRemoved, now: float) -> None:
        ia = ev.ia
        self.table.remove_matching(lambda rt: getattr(rt, "ia6", None) is ia)
        # Another address of the same prefix may still be there: its route comes back.
        for other in self.node.ifaddrs.all():
            if other.plen < 128 and in6.are_prefix_equal(other.addr, ia.addr, ia.plen) and other.plen == ia.plen:
                ifp = self.ifp_of(other.ifindex)
                if ifp is not None:
                    self._connected(other.addr, other.plen, scope6.zone_of(other.addr, other.ifindex), ifp, other)

    # -- routers and prefixes from RAs -------------------------------------------------------
    def router_changed(self, ev: RouterAdded | RouterRemoved, now: float) -> None:
        """The default route follows ``defrouter_select`` (RFC 4861 6.3.6) unless the
        user set one (RTF_STATIC)."""
        cur = self.table.exact(0, 0)
        if cur is not None and cur.flags & RTF_STATIC:
            return
        dr = self.node.nd6_rtr.defrouter_select()
        if dr is not None and cur is not None and cur.gateway == dr.addr and getattr(cur, "zone", 0) == 0 \
                and cur.ifp is not None and cur.ifp.index == dr.ifindex:
            return
        if cur is not None:
            self.table.delete(0, 0)
        if dr is None:
            return
        ifp = self.ifp_of(dr.ifindex)
        if ifp is not None:
            self.table.add(Rtentry6(0, 0, dr.addr, RTF_UP | RTF_GATEWAY, ifp))

    def prefix_onlink(self, ev: PrefixOnLink, now: float) -> None:
        ifp = self.ifp_of(ev.ifindex)
        if ifp is not None:
            self._connected(ev.prefix, ev.plen, 0, ifp, None)

    def prefix_offlink(self, ev: PrefixOffLink, now: float) -> None:
        rt = self.table.exact(ev.prefix, ev.plen)
        if rt is not None and getattr(rt, "ia6", None) is None and rt.flags & RTF_CONNECTED:
            self.table.delete(ev.prefix, ev.plen)

    # -- redirects -------------------------------------------------------------------------
    def redirect(self, ev: Nd6Redirect, now: float) -> None:
        """RFC 4861 8.3: a host route to the destination through the target (no gateway
        when the destination is the target, i.e. on-link), RTF_DYNAMIC, expiring."""
        ifp = self.ifp_of(ev.ifindex)
        if ifp is None:
            return
        zone = scope6.zone_of(ev.dst, ev.ifindex)
        key = (ev.dst, zone)
        old = self.table.exact(ev.dst, 128, zone)
        if old is not None:
            if not old.flags & RTF_DYNAMIC:
                return   # a static or local host route is not the redirect's to change
            self.table.delete(ev.dst, 128, zone)
        elif len(self.dynamic) >= self.maxdynroutes:
            return
        flags = RTF_UP | RTF_HOST | RTF_DYNAMIC | (0 if ev.onlink else RTF_GATEWAY)
        self.table.add(Rtentry6(ev.dst, 128, None if ev.onlink else ev.target, flags, ifp, zone))
        self.dynamic[key] = now + self.node.icmp6_params.redirtimeout

    # -- path MTU ------------------------------------------------------------------------------
    def pmtu_sync(self, now: float) -> None:
        """Routes follow ``Pmtu6`` (NetBSD's icmp6_mtudisc_update): a host route to the
        destination takes the MTU (``route add -inet6 HOST/128 GW`` then shows it, as
        t_mtudisc6 reads it); without one a dynamic host route is cloned from the route
        that covered it. When the entry ages out the MTU goes (the clone with it)."""
        entries = self.node.icmp6.pmtu.entries
        for dst in [d for d in self.pmtu_routes if d not in entries or entries[d][1] <= now] if self.pmtu_routes else ():
            self.pmtu_routes.discard(dst)
            rt = self.table.exact(dst, 128)
            if rt is None or not rt.mtu:
                continue
            if rt.flags & RTF_DYNAMIC and (dst, 0) not in self.dynamic:
                self.table.delete(dst, 128)
            else:
                rt.mtu = 0
                self.table.invalidate()
        changes = self.node.icmp6stat.icp6s_pmtuchg
        if changes == self._pmtu_changes:
            return     # nothing learned since the last look (the common case, per packet)
        self._pmtu_changes = changes
        for dst, (mtu, expiry) in entries.items():
            if expiry > now and (dst not in self.pmtu_routes or self._mtu_of(dst) != mtu):
                self._pmtu_route(dst, mtu)

    def _mtu_of(self, dst: int) -> int:
        rt = self.table.exact(dst, 128)
        return rt.mtu if rt is not None else 0

    def _pmtu_route(self, dst: int, mtu: int) -> None:
        rt = self.table.exact(dst, 128)
        if rt is not None:
            if not rt.flags & RTF_LOCAL:
                rt.mtu = mtu
                self.table.invalidate()
                self.pmtu_routes.add(dst)
            return
        via = self.table.lookup(dst)
        if via is None or via.ifp is None or via.flags & (RTF_REJECT | RTF_BLACKHOLE | RTF_LOCAL):
            return
        gw = via.gateway if via.flags & RTF_GATEWAY else None
        self.table.add(Rtentry6(dst, 128, gw, RTF_UP | RTF_HOST | RTF_DYNAMIC | (via.flags & RTF_GATEWAY),
                                via.ifp, 0, None, mtu))
        self.pmtu_routes.add(dst)

    # -- expiry --------------------------------------------------------------------------------
    def next_expiry(self) -> float | None:
        return min(self.dynamic.values(), default=None)

    def expire(self, now: float) -> None:
        for (dst, zone), when in list(self.dynamic.items()):
            if when <= now:
                del self.dynamic[(dst, zone)]
                rt = self.table.exact(dst, 128, zone)
                if rt is not None and rt.flags & RTF_DYNAMIC and not rt.mtu:
                    self.table.delete(dst, 128, zone)

    def if_gone(self, ifp: Ifnet) -> None:
        self.table.remove_matching(lambda rt: rt.ifp is ifp)
        self.dynamic = {k: v for k, v in self.dynamic.items() if self.table.exact(k[0], 128, k[1]) is not None}
