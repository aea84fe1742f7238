"""The netinet6 faction of one node, sans-IO (NetBSD's ``in6_proto.c`` protocol switch,
with ``in6.c``'s address control and ``in6_ifattach.c``'s interface start-up).

:class:`Inet6` wires the cores together over one :class:`~rumpnet.netinet6.ip6_var.Outbox`:
``ip6_input`` and ``ip6_forward``, ``frag6``, ``icmp6``, ``nd6``/``nd6_nbr``/``nd6_rtr``
and ``mld6``. The stack drives it with bytes and ``now``:

    node = Inet6(routes, rng)                        # routes: the Route6Lookup seam
    node.if_attach(ifindex, "wire0", mac, mtu, now)  # link-local address, DAD, MLD, RS
    node.add_address(ifindex, addr, plen, 0, now)    # ifconfig inet6 ADDR/PLEN
    node.input(ifindex, packet, now, l2mcast)        # a received IPv6 packet
    node.output(src, dst, nxt, payload, now, opts, zone)   # a transport's datagram
    node.frames_to_send() -> [Ip6Frame]              # (interface, link address, packet)
    node.next_event()                                # what the stack must mirror
    node.get_timer() / node.handle_timer(now)        # the one timer idiom

Upper-layer protocols register in :attr:`Inet6.protosw` (next header -> handler of an
:class:`~rumpnet.netinet6.ip6_input.Ip6Delivery`); ICMPv6 is there from the start, an
unknown one gets a Parameter Problem (RFC 8200 4). Events the cores raise for one another
(ICMPv6 error requests, redirects to send, routers gone) are settled here; the rest (DAD
results, routers and prefixes, redirects, transport errors, addresses) are the stack's.
"""

from __future__ import annotations

import errno
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from rumpkern.errno import kerr
from rumpnet.netinet6 import in6
from rumpnet.netinet6.frag6 import Frag6
from rumpnet.netinet6.icmp6 import (
    ICMP6_PARAM_PROB,
    ICMP6_PARAMPROB_NEXTHEADER,
    MLD_LISTENER_QUERY,
    MLD_LISTENER_REPORT,
    ND_NEIGHBOR_ADVERT,
    ND_NEIGHBOR_SOLICIT,
    ND_REDIRECT,
    ND_ROUTER_ADVERT,
    ND_ROUTER_SOLICIT,
    Icmp6,
    Icmp6Params,
    Icmp6Stats,
)
from rumpnet.netinet6.in6_var import (
    IN6_IFF_AUTOCONF,
    IN6_IFF_NODAD,
    IN6_IFF_TENTATIVE,
    ND6_INFINITE_LIFETIME,
    In6Ifaddr,
    In6Ifaddrs,
    In6Ifextra,
)
from rumpnet.netinet6.ip6 import IPPROTO_ICMPV6
from rumpnet.netinet6.ip6_forward import Icmp6RedirectRequest, Ip6Forward
from rumpnet.netinet6.ip6_input import Ip6Delivery, Ip6ForwardRequest, Ip6Input
from rumpnet.netinet6.ip6_output import Ip6Output, Ip6Pktopts, Route6Lookup
from rumpnet.netinet6.ip6_var import Icmp6ErrorRequest, Ip6Core, Ip6Params, Ip6Send, Ip6Stats, Outbox
from rumpnet.netinet6.mld6 import Mld6, Mld6Stats
from rumpnet.netinet6.nd6 import Nd6, Nd6Params, Nd6Stats, Nd6Unreachable
from rumpnet.netinet6.nd6_nbr import MAX_RTR_SOLICITATION_DELAY, DadDuplicated, Nd6Nbr, Nd6NotRouter
from rumpnet.netinet6.nd6_rtr import Nd6Rtr, lifetime_end
from rumpnet.netinet6.rtadvd import Rtadvd

IDGEN_RETRIES = 3     # RFC 7217 6: new stable identifiers tried after DAD failures

Handler = Callable[[Ip6Delivery, float], None]


@dataclass(frozen=True, slots=True)
class Ip6Frame:
    """A packet for the link: hand ``packet`` to interface ``ifindex`` for link-layer
    address ``lladdr`` (``b""`` on links without link-layer addresses)."""

    ifindex: int
    lladdr: bytes
    packet: bytes


@dataclass(frozen=True, slots=True)
class In6AddrAdded:
    """An address is on an interface (the stack adds its connected and local routes)."""

    ia: In6Ifaddr


@dataclass(frozen=True, slots=True)
class In6AddrRemoved:
    ia: In6Ifaddr


class Inet6:
    """IPv6 of one node (see the module docstring)."""

    def __init__(self, routes: Route6Lookup, rng: random.Random) -> None:
        self.rng = rng
        self._ifid_secret: bytes | None = None   # RFC 7217's secret_key, when first needed
        self.routes = routes
        self.ip6_params, self.icmp6_params, self.nd6_params = Ip6Params(), Icmp6Params(), Nd6Params()
        self.ip6stat, self.icmp6stat = Ip6Stats(), Icmp6Stats()
        self.nd6stat, self.mld6stat = Nd6Stats(), Mld6Stats()
        self.ifaddrs = In6Ifaddrs()
        self.out = Outbox()
        self.frag6 = Frag6(self.ip6_params, self.ip6stat, self.out)
        self.ip6_input = Ip6Input(self.ip6_params, self.ip6stat, self.ifaddrs, self.frag6, self.out)
        self.icmp6 = Icmp6(self.ip6_params, self.icmp6_params, self.icmp6stat, self.ifaddrs, self.out)
        self.nd6 = Nd6(self.nd6_params, self.ip6_params, self.nd6stat, self.ifaddrs, rng, self.out)
        self.nd6_nbr = Nd6Nbr(self.ip6_params, self.icmp6stat, self.ifaddrs, self.nd6, rng, self.out)
        self.mld6 = Mld6(self.ifaddrs, self.mld6stat, rng, self.out)
        self.nd6_rtr = Nd6Rtr(self.ip6_params, self.icmp6, self.ifaddrs, self.nd6, routes, self, rng, self.out)
        self.ip6_output = Ip6Output(self.ip6_params, self.ip6stat, self.ifaddrs, routes, rng, self.icmp6.pmtu)
        self.ip6_forward = Ip6Forward(self.ip6_params, self.ip6stat, self.ifaddrs, routes, self.out)
        self.rtadvd = Rtadvd(self.ifaddrs, self.icmp6stat, self.nd6, rng, self.out)
        self.cores: tuple[Ip6Core, ...] = (self.frag6, self.icmp6, self.nd6, self.nd6_nbr, self.mld6, self.nd6_rtr,
                                           self.rtadvd)
        self.protosw: dict[int, Handler] = {IPPROTO_ICMPV6: self._icmp6_input}
        for t, h in ((ND_NEIGHBOR_SOLICIT, self.nd6_nbr.ns_input), (ND_NEIGHBOR_ADVERT, self.nd6_nbr.na_input),
                     (ND_ROUTER_ADVERT, self.nd6_rtr.ra_input), (ND_REDIRECT, self.nd6_rtr.redirect_input),
                     (ND_ROUTER_SOLICIT, self.rtadvd.rs_input),
                     (MLD_LISTENER_QUERY, self.mld6.input), (MLD_LISTENER_REPORT, self.mld6.input)):
            self.icmp6.handlers[t] = h
        self._frames: deque[Ip6Frame] = deque()
        self._events: deque[object] = deque()
        self._stable_tries: dict[tuple[int, int], int] = {}

    # -- interfaces ------------------------------------------------------------------------
    def if_attach(self, ifindex: int, name: str, lladdr: bytes, mtu: int, now: float,
                  loopback: bool = False, up: bool = True) -> In6Ifextra:
        """``in6_ifattach``: IPv6 state for a new interface; brought up when ``up``."""
        ext = self.ifaddrs.attach(In6Ifextra(ifindex, name, lladdr, mtu, loopback, up=False))
        self.nd6.recalc_reachable(ifindex, now)
        if up:
            self.if_up(ifindex, now)
        return ext

    def if_up(self, ifindex: int, now: float) -> None:
        """The interface came up: all-nodes joined, the link-local address made (RFC
        4862 5.3; fe80::1 and ::1 on loopback), DAD for every address after a random
        delay (5.4.2), and Router Solicitations when taking RAs."""
        ext = self.ifaddrs.get(ifindex)
        if ext.up:
            return
        ext.up = True
        self.mld6.join(ifindex, in6.IN6ADDR_LINKLOCAL_ALLNODES, now)
        if self.ip6_params.forwarding:
            self.mld6.join(ifindex, in6.IN6ADDR_LINKLOCAL_ALLROUTERS, now)
        self.mld6.report_all(ifindex, now, self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY))
        for ia in list(ext.addrs):
            self.nd6_nbr.dad_start(ia, now, random_delay=True)
        if ext.loopback and not ext.addrs:
            self.add_address(ifindex, in6.IN6ADDR_LOOPBACK, 128, 0, now)
            self.add_address(ifindex, in6.linklocal(1), 64, 0, now)
        elif self.ip6_params.auto_linklocal and ext.linklocal(ready_only=False) is None:
            self.add_address(ifindex, in6.linklocal(self._linklocal_ifid(ext)), 64, 0, now, random_delay=True)
        if not ext.loopback:
            self.nd6_rtr.rs_start(ifindex, now)

    def _linklocal_ifid(self, ext: In6Ifextra) -> int:
        """The interface identifier of ``ext``'s link-local address (NetBSD's
        ``get_ifid``): the modified EUI-64 of its own MAC (RFC 4291 2.5.1, appendix A);
        for an interface without one (tun, point-to-point) that of another interface
        with a MAC, as NetBSD borrows one (the zones differ, so they cannot clash); on a
        node with none, an RFC 7217 identifier from a secret drawn once from the node's
        generator (NetBSD hashes the hostname instead)."""
        if len(ext.lladdr) == 6:
            return in6.ifid_eui64(ext.lladdr)
        other = next((o for o in self.ifaddrs.ifs.values() if len(o.lladdr) == 6 and not o.loopback), None)
        if other is not None:
            return in6.ifid_eui64(other.lladdr)
        if self._ifid_secret is None:
            self._ifid_secret = self.rng.getrandbits(128).to_bytes(16, "big")
        return in6.ifid_stable(in6.linklocal(0), ext.name, b"", 0, self._ifid_secret)

    def if_down(self, ifindex: int, now: float) -> None:
        """``in6_if_down``: neighbours forgotten, addresses tentative again (DAD runs on
        the next up), probing stopped."""
        ext = self.ifaddrs.get(ifindex)
        ext.up = False
        self.nd6.purge_if(ifindex)
        for ia in ext.addrs:
            self.nd6_nbr.dad_stop(ia)
            if not ia.flags & IN6_IFF_NODAD and not ext.loopback:
                ia.flags |= IN6_IFF_TENTATIVE
        self.nd6_rtr.timers.cancel(("rs", ifindex))

    def if_detach(self, ifindex: int, now: float) -> None:
        ext = self.ifaddrs.ifs.get(ifindex)
        if ext is None:
            return
        for ia in list(ext.addrs):
            self.remove_address(ia, now)
        self.nd6.purge_if(ifindex)
        self.mld6.purge_if(ifindex)
        self.rtadvd.ifs.pop(ifindex, None)
        for dr in [d for d in self.nd6_rtr.defrouters.values() if d.ifindex == ifindex]:
            self.nd6_rtr.defrouter_remove(dr.addr, ifindex)
        self.ifaddrs.detach(ifindex)
        self._settle(now)

    # -- addresses ---------------------------------------------------------------------------
    def add_address(self, ifindex: int, addr: int, plen: int, flags: int, now: float,
                    vltime: int = ND6_INFINITE_LIFETIME, pltime: int = ND6_INFINITE_LIFETIME,
                    random_delay: bool = False) -> In6Ifaddr:
        """``in6_update_ifa``: put ``addr/plen`` on the interface, join its solicited-node
        group and start DAD. EINVAL for a multicast, unspecified or v4-mapped address or
        a prefix length out of range, EEXIST when it is there already."""
        if (in6.is_multicast(addr) or addr == in6.IN6ADDR_ANY or in6.is_v4mapped(addr)
                or not 0 < plen <= 128):
            raise kerr(errno.EINVAL, f"{in6.ntop(addr)}/{plen}: not an interface address")
        if pltime > vltime:
            raise kerr(errno.EINVAL, "preferred lifetime longer than the valid one")
        ext = self.ifaddrs.get(ifindex)
        ia = In6Ifaddr(addr, plen, ifindex, flags & ~IN6_IFF_TENTATIVE,
                       lifetime_end(now, vltime), lifetime_end(now, pltime))
        self.ifaddrs.add(ia)
        self.out.event(In6AddrAdded(ia))
        # RFC 4862 5.4.2: the solicited-node group is joined before the first probe.
        self.mld6.join(ifindex, in6.solicited_node(addr), now,
                       self.rng.uniform(0, MAX_RTR_SOLICITATION_DELAY) if random_delay else 0.0)
        if ext.up:
            self.nd6_nbr.dad_start(ia, now, random_delay=random_delay)
        elif not flags & IN6_IFF_NODAD and not ext.loopback:
            ia.flags |= IN6_IFF_TENTATIVE
        self._settle(now)
        return ia

    def remove_address(self, ia: In6Ifaddr, now: float) -> None:
        """``in6_purgeaddr``."""
        self.nd6_nbr.dad_stop(ia)
        self.nd6_rtr.timers.cancel(("ia", ia.ifindex, ia.addr))
        self.ifaddrs.remove(ia)
        self.mld6.leave(ia.ifindex, in6.solicited_node(ia.addr), now)
        self.out.event(In6AddrRemoved(ia))
        self._settle(now)

    def find_address(self, addr: int, ifindex: int = 0) -> In6Ifaddr | None:
        return self.ifaddrs.lookup(addr, ifindex)

    # -- input -------------------------------------------------------------------------------
    def input(self, ifindex: int, packet: bytes | bytearray | memoryview, now: float, l2mcast: bool = False) -> None:
        """``ip6_input`` and what follows from it. Never raises for what ``packet`` holds."""
        r = self.ip6_input.input(packet, ifindex, now, l2mcast)
        if isinstance(r, Ip6Delivery):
            handler = self.protosw.get(r.nxt)
            if handler is not None:
                handler(r, now)
            else:
                # RFC 8200 4: an unrecognized Next Header; NetBSD's rip6_input takes the
                # delivery back (no raw socket for it) and sends the Parameter Problem.
                self.ip6stat.ip6s_delivered -= 1
                self.out.event(Icmp6ErrorRequest(r.packet, ifindex, ICMP6_PARAM_PROB, ICMP6_PARAMPROB_NEXTHEADER,
                                                 r.nxt_field, l2mcast))
        elif isinstance(r, Ip6ForwardRequest):
            self.ip6_forward.forward(r, now)
        self._settle(now)

    def _icmp6_input(self, d: Ip6Delivery, now: float) -> None:
        self.icmp6.input(d.packet, d.off, d.ifindex, now, d.l2mcast, d.rtalert)

    # -- output ------------------------------------------------------------------------------
    def output(self, src: int, dst: int, nxt: int, payload: bytes | bytearray | memoryview, now: float,
               opts: Ip6Pktopts | None = None, zone: int = 0) -> None:
        """``ip6_output`` for a transport: the frames come out of :meth:`frames_to_send`.
        Raises the errno ``ip6_output`` gives (EHOSTUNREACH, EADDRNOTAVAIL, EMSGSIZE)."""
        for s in self.ip6_output.output(src, dst, nxt, payload, now, opts, zone):
            self._link(s, now)
        self._settle(now)

    def ping6(self, dst: int, ident: int, seq: int, data: bytes, now: float, src: int = 0,
              zone: int = 0, hlim: int | None = None) -> bytes:
        """An echo request (``ping6``), sent; the packet is returned."""
        pkt = self.icmp6.send_echo(src, dst, ident, seq, data, zone, hlim)
        self._settle(now)
        return pkt

    def _link(self, s: Ip6Send, now: float) -> None:
        """Link-layer output of one packet (``nd6_output``)."""
        ext = self.ifaddrs.ifs.get(s.ifindex)
        if ext is None or not ext.up or ext.disabled:
            self.ip6stat.ip6s_odropped += 1
            return
        if s.lladdr is not None or ext.loopback or not ext.lladdr:
            self._frames.append(Ip6Frame(s.ifindex, s.lladdr or b"", s.packet))
            return
        dst = in6.unpack(s.packet, 24)
        if in6.is_multicast(dst):
            self._frames.append(Ip6Frame(s.ifindex, in6.ether_multicast(dst), s.packet))
            return
        lladdr = self.nd6.resolve(s.ifindex, s.nexthop or dst, s.packet, now)
        if lladdr is not None:
            self._frames.append(Ip6Frame(s.ifindex, lladdr, s.packet))

    def _drain_packets(self, now: float) -> None:
        while self.out.packets:
            s = self.out.packets.popleft()
            zone = 0
            if s.ifindex:
                if not self._to_self(s):
                    self._link(s, now)
                    continue
                # To one of our own scoped addresses (a ping of our link-local address):
                # through the local route, i.e. lo0, with the zone kept.
                zone = s.ifindex
            try:
                for r in self.ip6_output.route(s.packet, now, zone):
                    self._link(r, now)
            except OSError:
                pass   # no route back: counted as ip6s_noroute by route()

    def _to_self(self, s: Ip6Send) -> bool:
        if s.lladdr is not None:
            return False
        dst = in6.unpack(s.packet, 24)
        return not in6.is_multicast(dst) and self.ifaddrs.lookup(dst, s.ifindex) is not None

    # -- events ------------------------------------------------------------------------------
    def _settle(self, now: float) -> None:
        """Act on what the cores asked of one another, then send what they queued."""
        if not (self.out.events or self.out.packets):
            return     # the common case, after every packet
        for _ in range(10000):
            if self.out.events:
                self._internal(self.out.events.popleft(), now)
            elif self.out.packets:
                self._drain_packets(now)
            else:
                return

    def _internal(self, ev: object, now: float) -> None:
        if isinstance(ev, Icmp6ErrorRequest):
            self.icmp6.error(ev.packet, ev.ifindex, ev.icmp6_type, ev.code, ev.param, now, ev.l2mcast)
            return
        if isinstance(ev, Icmp6RedirectRequest):
            if self.nd6_rtr.redirect_output(ev.packet, ev.ifindex, ev.target, ev.dst, now):
                self.ip6stat.ip6s_redirectsent += 1
            return
        if isinstance(ev, Nd6NotRouter) or (isinstance(ev, Nd6Unreachable) and ev.isrouter):
            self.nd6_rtr.defrouter_remove(ev.addr, ev.ifindex)
        if isinstance(ev, DadDuplicated):
            self._stable_retry(ev.ia, now)
        self._events.append(ev)

    def _stable_retry(self, ia: In6Ifaddr, now: float) -> None:
        """RFC 7217 6: a duplicate stable address is made again with the next
        DAD_Counter, up to IDGEN_RETRIES times."""
        if self.nd6_rtr.stable_secret is None or not ia.flags & IN6_IFF_AUTOCONF:
            return
        key = (ia.ifindex, in6.prefix_of(ia.addr, 64))
        tries = self._stable_tries.get(key, 0) + 1
        if tries > IDGEN_RETRIES:
            return
        self._stable_tries[key] = tries
        iid = self.nd6_rtr.ifid(ia.ifindex, key[1], tries)
        if iid is None:
            return
        vl = ND6_INFINITE_LIFETIME if ia.expire is None else max(0, int(ia.expire - now))
        pl = ND6_INFINITE_LIFETIME if ia.preferred is None else max(0, int(ia.preferred - now))
        self.remove_address(ia, now)
        made = self.add_address(ia.ifindex, in6.with_ifid(key[1], iid), ia.plen, IN6_IFF_AUTOCONF, now,
                                vl, min(pl, vl))
        made.dad_counter = tries

    def next_event(self) -> object | None:
        return self._events.popleft() if self._events else None

    def has_output(self) -> bool:
        """Frames or events wait to be pulled (:meth:`frames_to_send`, :meth:`next_event`)."""
        return bool(self._frames or self._events)

    def frames_to_send(self) -> list[Ip6Frame]:
        frames = list(self._frames)
        self._frames.clear()
        return frames

    # -- timers ------------------------------------------------------------------------------
    def get_timer(self) -> float | None:
        earliest = None    # asked when timer_epoch() moved (Inet6Domain.settle): a plain loop
        for c in self.cores:
            t = c.get_timer()
            if t is not None and (earliest is None or t < earliest):
                earliest = t
        return earliest

    def timer_epoch(self) -> int:
        """Moves whenever :meth:`get_timer` may have become earlier: a core armed a
        deadline (``Outbox.timers_armed``) or a path MTU was learned (``Pmtu6``, whose
        entries age out). A deadline that went away leaves the answer early, which is
        harmless: the timer fires, nothing is due, and it is asked again."""
        return self.out.timers_armed + self.icmp6stat.icp6s_pmtuchg

    def handle_timer(self, now: float) -> None:
        for c in self.cores:
            c.handle_timer(now)
            self._settle(now)

