"""Router discovery, prefixes, address autoconfiguration and redirects on a host
(NetBSD's ``nd6_rtr.c`` and ``icmp6_redirect_*``; RFC 4861 6, 8; RFC 4862 5.5).

With ``net.inet6.ip6.accept_rtadv`` on (and forwarding off), an interface that comes up
sends Router Solicitations (:meth:`Nd6Rtr.rs_start`) and every valid Router Advertisement
updates the link's parameters (CurHopLimit, ReachableTime, RetransTimer, MTU), the
default router list, the prefix list (on-link prefixes) and, for prefixes with the A flag,
the addresses made from them by SLAAC with their lifetimes (RFC 4862 5.5.3, two-hour
rule included). What the route table must mirror comes out as events
(:class:`RouterAdded` ...); addresses are made and removed through the
:class:`In6AddrControl` seam, which also starts DAD and joins groups.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from rumpnet.netinet6 import in6
from rumpnet.netinet6.icmp6 import (
    ND_REDIRECT,
    ND_ROUTER_ADVERT,
    ND_ROUTER_SOLICIT,
    Icmp6,
    Icmp6Input,
    Icmp6Repr,
    emit,
)
from rumpnet.netinet6.in6_var import (
    IN6_IFF_AUTOCONF,
    IN6_IFF_DEPRECATED,
    ND6_INFINITE_LIFETIME,
    In6Ifaddr,
    In6Ifaddrs,
)
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6, IPV6_MMTU, ip6_build
from rumpnet.netinet6.ip6_output import Route6Lookup
from rumpnet.netinet6.ip6_var import Ip6Core, Ip6Params, Outbox
from rumpnet.netinet6.nd6 import (
    ND6_LLINFO_INCOMPLETE,
    ND_OPT_SOURCE_LINKADDR,
    ND_OPT_TARGET_LINKADDR,
    Nd6,
    NdOpts,
    NdPrefixInfo,
    nd6_recv_options,
    opt_lladdr,
    opt_redirected,
)
from rumpnet.netinet6.nd6_nbr import ND_HOPLIMIT

MAX_RTR_SOLICITATION_DELAY = 1.0
RTR_SOLICITATION_INTERVAL = 4.0
MAX_RTR_SOLICITATIONS = 3
TWO_HOURS = 7200          # RFC 4862 5.5.3 e
ND_RA_FLAG_MANAGED = 0x80
ND_RA_FLAG_OTHER = 0x40
RA_HDR = struct.Struct("!BBHBBHII")   # type code cksum curhoplimit flags lifetime reachable retrans
RA_LEN = 16
RS_LEN = 8
REDIRECT_LEN = 40


# -- wire --------------------------------------------------------------------------------------
@dataclass(slots=True)
class RaRepr:
    """A Router Advertisement (RFC 4861 4.2); times in the units of the wire (lifetime
    seconds, reachable and retrans milliseconds)."""

    chlim: int = 64
    flags: int = 0
    lifetime: int = 1800
    reachable: int = 0
    retrans: int = 0
    options: bytes = b""


def emit_ra(r: RaRepr, src: int, dst: int) -> bytes:
    data32 = (r.chlim & 0xFF) << 24 | (r.flags & 0xFF) << 16 | (r.lifetime & 0xFFFF)
    body = struct.pack("!II", r.reachable, r.retrans) + r.options
    return emit(Icmp6Repr(ND_ROUTER_ADVERT, 0, data32, body), src, dst)


def parse_ra(msg: bytes) -> RaRepr:
    _, _, _, chlim, flags, lifetime, reachable, retrans = RA_HDR.unpack_from(msg, 0)
    return RaRepr(chlim, flags, lifetime, reachable, retrans, msg[RA_LEN:])


# -- events -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RouterAdded:
    addr: int
    ifindex: int
    lifetime: int


@dataclass(frozen=True, slots=True)
class RouterRemoved:
    addr: int
    ifindex: int


@dataclass(frozen=True, slots=True)
class PrefixOnLink:
    """A prefix is on-link now (``nd6_prefix_onlink``): a connected route for it."""

    prefix: int
    plen: int
    ifindex: int


@dataclass(frozen=True, slots=True)
class PrefixOffLink:
    prefix: int
    plen: int
    ifindex: int


@dataclass(frozen=True, slots=True)
class Nd6Redirect:
    """A valid redirect (RFC 4861 8.3): send to ``dst`` through ``target`` from now on
    (``onlink``: the destination is a neighbour, no gateway); a dynamic host route."""

    dst: int
    target: int
    ifindex: int
    onlink: bool


class In6AddrControl(Protocol):
    """How SLAAC makes and removes addresses (``in6_update_ifa`` / ``in6_purgeaddr``):
    the node puts the address on the interface, joins its groups, starts DAD."""

    def add_address(self, ifindex: int, addr: int, plen: int, flags: int, now: float,
                    vltime: int = ND6_INFINITE_LIFETIME, pltime: int = ND6_INFINITE_LIFETIME) -> In6Ifaddr | None: ...

    def remove_address(self, ia: In6Ifaddr, now: float) -> None: ...


@dataclass(slots=True, eq=False)
class NdDefrouter:
    addr: int
    ifindex: int
    flags: int
    lifetime: int
    expire: float


@dataclass(slots=True, eq=False)
class NdPrefix:
    prefix: int
    plen: int
    ifindex: int
    vltime: int
    pltime: int
    expire: float | None     # None: infinite
    autonomous: bool = False                             # the A flag last advertised
    advrtrs: list[int] = field(default_factory=list)     # default routers advertising it


def lifetime_end(now: float, lifetime: int) -> float | None:
    return None if lifetime == ND6_INFINITE_LIFETIME else now + lifetime


class Nd6Rtr(Ip6Core):
    """Host-side router discovery of one node."""

    def __init__(self, ip6: Ip6Params, icmp6: Icmp6, ifaddrs: In6Ifaddrs, nd6: Nd6, routes: Route6Lookup,
                 addrs: In6AddrControl, rng: random.Random, out: Outbox | None = None) -> None:
        super().__init__(out)
        self.ip6 = ip6
        self.icmp6 = icmp6
        self.stats = icmp6.stats
        self.ifaddrs = ifaddrs
        self.nd6 = nd6
        self.routes = routes
        self.addrs = addrs
        self.rng = rng
        self.defrouters: dict[tuple[int, int], NdDefrouter] = {}
        self.prefixes: dict[tuple[int, int, int], NdPrefix] = {}
        self.rs_sent: dict[int, int] = {}
        self.stable_secret: bytes | None = None   # RFC 7217 ids instead of EUI-64 when set

    def accepting(self) -> bool:
        """Hosts only (RFC 4861 6.3.4: a router does not take RAs as a host would)."""
        return bool(self.ip6.accept_rtadv) and not self.ip6.forwarding

    # -- router solicitation -------------------------------------------------------------------
    def rs_start(self, ifindex: int, now: float) -> None:
        """RFC 4861 6.3.7: after a random delay up to MAX_RTR_SOLICITATION_DELAY, up to
        MAX_RTR_SOLICITATIONS solicitations RTR_SOLICITATION_INTERVAL apart."""
        if not self.accepting():
            return
        self.rs_sent[ifindex] = 0
        self.timers.set(("rs", ifindex), now + self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY))

    def rs_output(self, ifindex: int) -> None:
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or ext.disabled:
            return
        ll = ext.linklocal()
        src = ll.addr if ll is not None else in6.IN6ADDR_ANY
        options = b""
        if src != in6.IN6ADDR_ANY and ext.lladdr:
            options = opt_lladdr(ND_OPT_SOURCE_LINKADDR, ext.lladdr)   # 4.1: not from ::
        dst = in6.IN6ADDR_LINKLOCAL_ALLROUTERS
        msg = emit(Icmp6Repr(ND_ROUTER_SOLICIT, 0, 0, options), src, dst)
        self.out.send(ip6_build(src, dst, IPPROTO_ICMPV6, msg, ND_HOPLIMIT), ifindex)
        self.stats.icp6s_outhist[ND_ROUTER_SOLICIT] += 1

    # -- router advertisement --------------------------------------------------------------
    def _ra_opts(self, inp: Icmp6Input, minlen: int, counter: str) -> NdOpts | None:
        """RFC 4861 6.1.2 / 8.1: link-local source, hop limit 255, code 0, length."""
        if (not in6.is_linklocal(inp.src) or inp.hlim != ND_HOPLIMIT or inp.code != 0
                or len(inp.msg) < minlen):
            self.stats.bump(counter)
            return None
        return nd6_recv_options(inp.msg, minlen, self.ifaddrs.ifs.get(inp.ifindex), self.stats, counter)

    def ra_input(self, inp: Icmp6Input, now: float) -> None:
        """``nd6_ra_input`` (RFC 4861 6.3.4)."""
        opts = self._ra_opts(inp, RA_LEN, "icp6s_badra")
        if opts is None or not self.accepting():
            return
        ra = parse_ra(inp.msg)
        ext = self.ifaddrs.get(inp.ifindex)
        ndi = ext.ndi
        if ra.chlim:
            ndi.chlim = ra.chlim
        if ra.reachable and ra.reachable / 1000 != ndi.basereachable:
            ndi.basereachable = ra.reachable / 1000
            self.nd6.recalc_reachable(inp.ifindex, now)
        if ra.retrans:
            ndi.retrans = ra.retrans / 1000
        if opts.mtu is not None and IPV6_MMTU <= opts.mtu <= ext.mtu:
            ndi.linkmtu = opts.mtu
        self._defrtr_update(inp.src, inp.ifindex, ra, now)
        self.nd6.cache_lladdr(inp.ifindex, inp.src, opts.src_lladdr, now, isrouter=True)
        for pi in opts.prefixes:
            self._prefix_update(pi, inp.ifindex, now, inp.src)
        self.timers.cancel(("rs", inp.ifindex))   # an answer: no more solicitations

    def _room(self) -> bool:
        """``net.inet6.ip6.rtadv_maxroutes`` bounds what advertisements may make:
        routers, on-link prefixes and autoconfigured addresses together (a host on the
        link could otherwise advertise without end)."""
        made = sum(1 for ia in self.ifaddrs.all() if ia.flags & IN6_IFF_AUTOCONF)
        if len(self.defrouters) + len(self.prefixes) + made >= self.ip6.rtadv_maxroutes:
            self.stats.icp6s_dropped_raroute += 1
            return False
        return True

    def _defrtr_update(self, addr: int, ifindex: int, ra: RaRepr, now: float) -> None:
        key = (ifindex, addr)
        dr = self.defrouters.get(key)
        if ra.lifetime == 0:
            if dr is not None:
                self._defrtr_del(dr)
            return
        if dr is None:
            if not self._room():
                return
            dr = NdDefrouter(addr, ifindex, ra.flags, ra.lifetime, now + ra.lifetime)
            self.defrouters[key] = dr
            self.out.event(RouterAdded(addr, ifindex, ra.lifetime))
        dr.flags, dr.lifetime, dr.expire = ra.flags, ra.lifetime, now + ra.lifetime
        self.timers.set(("dr",) + key, dr.expire)

    def _defrtr_del(self, dr: NdDefrouter) -> None:
        key = (dr.ifindex, dr.addr)
        if self.defrouters.pop(key, None) is not None:
            self.timers.cancel(("dr",) + key)
            for pr in self.prefixes.values():     # pfxrtr_del
                if pr.ifindex == dr.ifindex and dr.addr in pr.advrtrs:
                    pr.advrtrs.remove(dr.addr)
            self.out.event(RouterRemoved(dr.addr, dr.ifindex))

    def defrouter_flush(self) -> None:
        """``ndp -R`` (SIOCSRTRFLUSH_IN6): forget every default router."""
        for dr in list(self.defrouters.values()):
            self._defrtr_del(dr)

    def prefix_flush(self, now: float) -> None:
        """``ndp -P`` (SIOCSPFXFLUSH_IN6): forget every prefix, and the addresses
        autoconfigured from it."""
        for pr in list(self.prefixes.values()):
            ext = self.ifaddrs.ifs.get(pr.ifindex)
            for ia in list(ext.addrs) if ext is not None else []:
                if ia.flags & IN6_IFF_AUTOCONF and ia.plen == pr.plen and in6.are_prefix_equal(ia.addr, pr.prefix, pr.plen):
                    self.timers.cancel(("ia", ia.ifindex, ia.addr))
                    self.addrs.remove_address(ia, now)
            self._prefix_del(pr)

    def defrouter_remove(self, addr: int, ifindex: int) -> None:
        """A router is no router any more, or unreachable (RFC 4861 7.2.5, 7.3.3)."""
        dr = self.defrouters.get((ifindex, addr))
        if dr is not None:
            self._defrtr_del(dr)

    def defrouter_select(self) -> NdDefrouter | None:
        """RFC 4861 6.3.6: a router not known to be unreachable (its neighbour entry in
        a state other than INCOMPLETE) before one that may be, in list order."""
        maybe = None
        for dr in self.defrouters.values():
            ln = self.nd6.lookup(dr.addr, dr.ifindex)
            if ln is not None and ln.state > ND6_LLINFO_INCOMPLETE:
                return dr
            if maybe is None:
                maybe = dr
        return maybe

    # -- prefixes and SLAAC ------------------------------------------------------------------
    def _prefix_update(self, pi: NdPrefixInfo, ifindex: int, now: float, router: int = 0) -> None:
        # RFC 4862 5.5.3 b, c; RFC 4861 6.3.4: link-local prefixes and lifetimes the
        # wrong way round are ignored.
        if pi.plen > 128 or in6.is_linklocal(pi.prefix) or in6.is_multicast(pi.prefix) or pi.pltime > pi.vltime:
            self.stats.icp6s_nd_badopt += 1
            return
        prefix = in6.prefix_of(pi.prefix, pi.plen)
        if pi.onlink:
            self._onlink_update(prefix, pi, ifindex, now, router)
        if pi.autonomous:
            self._slaac(prefix, pi, ifindex, now)

    def _onlink_update(self, prefix: int, pi: NdPrefixInfo, ifindex: int, now: float, router: int = 0) -> None:
        key = (ifindex, prefix, pi.plen)
        pr = self.prefixes.get(key)
        if pi.vltime == 0:
            if pr is not None:
                self._prefix_del(pr)
            return
        if pr is None:
            if not self._room():
                return
            pr = NdPrefix(prefix, pi.plen, ifindex, pi.vltime, pi.pltime, None)
            self.prefixes[key] = pr
            self.out.event(PrefixOnLink(prefix, pi.plen, ifindex))
        pr.vltime, pr.pltime, pr.expire = pi.vltime, pi.pltime, lifetime_end(now, pi.vltime)
        pr.autonomous = pi.autonomous
        if (ifindex, router) in self.defrouters and router not in pr.advrtrs:
            pr.advrtrs.append(router)      # pfxrtr_add: only routers on the default router list
        if pr.expire is None:
            self.timers.cancel(("pr",) + key)
        else:
            self.timers.set(("pr",) + key, pr.expire)

    def _prefix_del(self, pr: NdPrefix) -> None:
        key = (pr.ifindex, pr.prefix, pr.plen)
        if self.prefixes.pop(key, None) is not None:
            self.timers.cancel(("pr",) + key)
            self.out.event(PrefixOffLink(pr.prefix, pr.plen, pr.ifindex))

    def ifid(self, ifindex: int, prefix: int, dad_counter: int = 0) -> int | None:
        """The interface identifier SLAAC uses: RFC 7217's when a secret is set, else
        the modified EUI-64 of the MAC (RFC 4862 5.5.3 d)."""
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None or len(ext.lladdr) != 6:
            return None
        if self.stable_secret is not None:
            return in6.ifid_stable(prefix, ext.name, b"", dad_counter, self.stable_secret)
        return in6.ifid_eui64(ext.lladdr)

    def _slaac(self, prefix: int, pi: NdPrefixInfo, ifindex: int, now: float) -> None:
        """RFC 4862 5.5.3 d, e."""
        ext = self.ifaddrs.get(ifindex)
        mine = [ia for ia in ext.addrs if ia.flags & IN6_IFF_AUTOCONF and ia.plen == pi.plen
                and in6.are_prefix_equal(ia.addr, prefix, pi.plen)]
        if not mine:
            if pi.vltime == 0 or pi.plen != 64:
                if pi.plen != 64:
                    self.stats.icp6s_nd_badopt += 1   # 5.5.3 d: prefix + IID must be 128 bits
                return
            iid = self.ifid(ifindex, prefix)
            if iid is None or not self._room():
                return
            made = self.addrs.add_address(ifindex, in6.with_ifid(prefix, iid), pi.plen, IN6_IFF_AUTOCONF, now,
                                          pi.vltime, pi.pltime)
            if made is not None:
                self._arm_lifetimes(made, now)
            return
        for ia in mine:
            remaining = None if ia.expire is None else ia.expire - now
            if pi.vltime == ND6_INFINITE_LIFETIME or pi.vltime > TWO_HOURS or (
                    remaining is not None and pi.vltime > remaining):
                ia.expire = lifetime_end(now, pi.vltime)
            elif remaining is None or remaining > TWO_HOURS:
                ia.expire = now + TWO_HOURS          # the two-hour rule (5.5.3 e)
            ia.preferred = lifetime_end(now, pi.pltime)
            if pi.pltime:
                ia.flags &= ~IN6_IFF_DEPRECATED
            self._arm_lifetimes(ia, now)

    def _arm_lifetimes(self, ia: In6Ifaddr, now: float) -> None:
        key = ("ia", ia.ifindex, ia.addr)
        if ia.preferred is not None and ia.preferred <= now:
            ia.flags |= IN6_IFF_DEPRECATED
        ends = [t for t in (ia.preferred, ia.expire) if t is not None and t > now]
        if ia.expire is not None and ia.expire <= now:
            ends = [now]
        if ends:
            self.timers.set(key, min(ends))
        else:
            self.timers.cancel(key)

    # -- redirects --------------------------------------------------------------------------
    def redirect_input(self, inp: Icmp6Input, now: float) -> None:
        """``icmp6_redirect_input`` (RFC 4861 8.1, 8.3)."""
        opts = self._ra_opts(inp, REDIRECT_LEN, "icp6s_badredirect")
        if opts is None or not self.icmp6.params.rediraccept or self.ip6.forwarding:
            return
        target, dst = in6.unpack(inp.msg, 8), in6.unpack(inp.msg, 24)
        onlink = target == dst
        if in6.is_multicast(dst) or not (in6.is_linklocal(target) or onlink):
            self.stats.icp6s_badredirect += 1
            return
        rt = self.routes.lookup6(dst, inp.ifindex if in6.is_scoped(dst) else 0)
        if rt is None or rt.gateway != inp.src or rt.ifindex != inp.ifindex:
            self.stats.icp6s_badredirect += 1   # 8.1: only from our first hop for dst
            return
        self.nd6.cache_lladdr(inp.ifindex, target, opts.tgt_lladdr, now, isrouter=not onlink)
        self.out.event(Nd6Redirect(dst, target, inp.ifindex, onlink))

    def redirect_output(self, pkt: bytes, ifindex: int, target: int, dst: int, now: float) -> bool:
        """``icmp6_redirect_output`` (RFC 4861 8.2): to the packet's source, from our
        link-local address, with the target's link-layer address when we know it and as
        much of the packet as fits in 1280 bytes; under the ICMPv6 error rate limit."""
        ext = self.ifaddrs.ifs.get(ifindex)
        ll = ext.linklocal() if ext is not None else None
        if ll is None or not self.icmp6.rate_ok(now):
            return False
        src_of_pkt = in6.unpack(pkt, 8)
        body = in6.pack(target) + in6.pack(dst)
        ln = self.nd6.lookup(target, ifindex)
        if ln is not None and ln.lladdr is not None:
            body += opt_lladdr(ND_OPT_TARGET_LINKADDR, ln.lladdr)
        body += opt_redirected(pkt, IPV6_MMTU - 40 - 8 - len(body))
        msg = emit(Icmp6Repr(ND_REDIRECT, 0, 0, body), ll.addr, src_of_pkt)
        self.out.send(ip6_build(ll.addr, src_of_pkt, IPPROTO_ICMPV6, msg, ND_HOPLIMIT), ifindex)
        self.stats.icp6s_outhist[ND_REDIRECT] += 1
        self.icmp6.stats.icp6s_oredirect += 1
        return True

    # -- timers -------------------------------------------------------------------------------
    def timeout(self, key: object, now: float) -> None:
        k = cast(tuple[Any, ...], key)
        if k[0] == "rs":
            sent = self.rs_sent.get(k[1], 0)
            if sent < MAX_RTR_SOLICITATIONS and self.accepting():
                self.rs_sent[k[1]] = sent + 1
                self.rs_output(k[1])
                if sent + 1 < MAX_RTR_SOLICITATIONS:
                    self.timers.set(key, now + RTR_SOLICITATION_INTERVAL)
        elif k[0] == "dr":
            dr = self.defrouters.get((k[1], k[2]))
            if dr is not None:
                self._defrtr_del(dr)
        elif k[0] == "pr":
            pr = self.prefixes.get((k[1], k[2], k[3]))
            if pr is not None:
                self._prefix_del(pr)
        elif k[0] == "ia":
            self._lifetime_timeout(k[1], k[2], now)

    def _lifetime_timeout(self, ifindex: int, addr: int, now: float) -> None:
        ext = self.ifaddrs.ifs.get(ifindex)
        ia = next((a for a in ext.addrs if a.addr == addr), None) if ext is not None else None
        if ia is None:
            return
        if ia.expire is not None and ia.expire <= now:
            self.addrs.remove_address(ia, now)      # RFC 4862 5.5.4: invalid, it goes
            return
        self._arm_lifetimes(ia, now)                # deprecated now, expiry next
