"""A sans-IO test bench for the netinet6 cores: :class:`~rumpnet.netinet6.in6_proto.Inet6`
nodes on simulated links, driven on explicit virtual time, with no kernel, scheduler or
socket involved (the cores' own contract, as smoltcp tests its interfaces).

    sim = In6Sim(seed=1)
    a, r = sim.node("a"), sim.node("r", forwarding=True)
    sim.attach(a, "lan1"); sim.attach(r, "lan1")
    sim.run_for(3)                    # DAD, MLD reports, router solicitations...
    a.node.ping6(dst, 1, 1, b"x", sim.now); sim.run_for(1)

Frames go to every other port of their link whose address they carry, multicast to
all; :attr:`In6Sim.log` keeps ``(time, link, sender, Ip6Frame)`` for assertions and
:attr:`In6Sim.drop` can lose frames on purpose. The route table is
:class:`StaticRoutes`, fed with the routes the node's events ask for (connected
prefixes, default routers, redirects) and with ``add``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rumpnet.netinet6 import in6
from rumpnet.netinet6.in6_proto import In6AddrAdded, In6AddrRemoved, Inet6, Ip6Frame
from rumpnet.netinet6.ip6_output import Route6
from rumpnet.netinet6.nd6_rtr import Nd6Redirect, PrefixOffLink, PrefixOnLink, RouterAdded, RouterRemoved


class StaticRoutes:
    """A longest-prefix table over 128 bits (the ``Route6Lookup`` seam) for tests."""

    def __init__(self) -> None:
        self.table: dict[tuple[int, int, int], Route6] = {}   # (prefix, plen, zone) -> route

    def add(self, prefix: int, plen: int, route: Route6, zone: int = 0) -> None:
        self.table[(in6.prefix_of(prefix, plen), plen, zone)] = route

    def delete(self, prefix: int, plen: int, zone: int = 0) -> None:
        self.table.pop((in6.prefix_of(prefix, plen), plen, zone), None)

    def lookup6(self, dst: int, zone: int) -> Route6 | None:
        best: tuple[int, Route6] | None = None
        for (prefix, plen, z), rt in self.table.items():
            if z in (0, zone) and in6.are_prefix_equal(dst, prefix, plen) and (best is None or plen > best[0]):
                best = (plen, rt)
        return best[1] if best is not None else None

    def apply(self, ev: object) -> None:
        """Mirror what a node's event asks of the route table."""
        if isinstance(ev, In6AddrAdded) and ev.ia.plen < 128:
            zone = ev.ia.ifindex if in6.is_scoped(ev.ia.addr) else 0
            self.add(ev.ia.addr, ev.ia.plen, Route6(ev.ia.ifindex), zone)
        elif isinstance(ev, In6AddrRemoved) and ev.ia.plen < 128:
            self.delete(ev.ia.addr, ev.ia.plen, ev.ia.ifindex if in6.is_scoped(ev.ia.addr) else 0)
        elif isinstance(ev, RouterAdded) and (0, 0, 0) not in self.table:
            self.add(0, 0, Route6(ev.ifindex, ev.addr))
        elif isinstance(ev, RouterRemoved):
            rt = self.table.get((0, 0, 0))
            if rt is not None and rt.gateway == ev.addr:
                self.delete(0, 0)
        elif isinstance(ev, PrefixOnLink):
            self.add(ev.prefix, ev.plen, Route6(ev.ifindex))
        elif isinstance(ev, PrefixOffLink):
            self.delete(ev.prefix, ev.plen)
        elif isinstance(ev, Nd6Redirect):
            self.add(ev.dst, 128, Route6(ev.ifindex, 0 if ev.onlink else ev.target, dynamic=True))


@dataclass(eq=False)
class SimNode:
    name: str
    node: Inet6
    routes: StaticRoutes
    ports: dict[int, tuple[str, bytes]] = field(default_factory=dict)   # ifindex -> (link, mac)
    events: list[object] = field(default_factory=list)

    def mac(self, ifindex: int) -> bytes:
        return self.ports[ifindex][1]

    def ifindex(self, link: str) -> int:
        return next(i for i, (lk, _) in self.ports.items() if lk == link)

    def drain_events(self) -> None:
        """Collect the node's events, doing for the route table what the stack would:
        a local route through lo0 for each address (RTF_LOCAL), the connected and
        learned routes, another default router when the one in use goes."""
        while (ev := self.node.next_event()) is not None:
            self.routes.apply(ev)
            if isinstance(ev, In6AddrAdded) and 1 in self.ports and ev.ia.ifindex != 1 and not in6.is_scoped(ev.ia.addr):
                self.routes.add(ev.ia.addr, 128, Route6(1))
            elif isinstance(ev, In6AddrRemoved) and not in6.is_scoped(ev.ia.addr):
                self.routes.delete(ev.ia.addr, 128)
            elif isinstance(ev, RouterRemoved) and self.routes.lookup6(1 << 127, 0) is None:
                dr = self.node.nd6_rtr.defrouter_select()
                if dr is not None:
                    self.routes.add(0, 0, Route6(dr.ifindex, dr.addr))
            self.events.append(ev)

    def events_of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


class In6Sim:
    """Nodes and links on one virtual clock (see the module docstring)."""

    def __init__(self, seed: int = 1, start: float = 0.0) -> None:
        self.rng = random.Random(seed)
        self.now = start
        self.nodes: list[SimNode] = []
        self.links: dict[str, list[tuple[SimNode, int]]] = {}
        self.log: list[tuple[float, str, str, Ip6Frame]] = []
        self.drop: Callable[[str, SimNode, Ip6Frame], bool] | None = None
        self._mac_seq = 0

    def node(self, name: str, forwarding: bool = False, accept_rtadv: bool = False,
             loopback: bool = True) -> SimNode:
        routes = StaticRoutes()
        n = SimNode(name, Inet6(routes, random.Random(self.rng.getrandbits(64))), routes)
        n.node.ip6_params.forwarding = int(forwarding)
        n.node.ip6_params.accept_rtadv = int(accept_rtadv)
        self.nodes.append(n)
        if loopback:
            n.node.if_attach(1, "lo0", b"", 33624, self.now, loopback=True)
            n.ports[1] = ("lo0:" + name, b"")
        n.drain_events()
        return n

    def attach(self, n: SimNode, link: str, mac: bytes | None = None, mtu: int = 1500, up: bool = True) -> int:
        """A new Ethernet-like interface of ``n`` on ``link``; its ifindex."""
        if mac is None:
            self._mac_seq += 1
            mac = bytes((0x02, 0, 0, 0, self._mac_seq >> 8, self._mac_seq & 0xFF))
        ifindex = max(n.ports, default=1) + 1
        n.ports[ifindex] = (link, mac)
        self.links.setdefault(link, []).append((n, ifindex))
        n.node.if_attach(ifindex, f"wire{ifindex - 2}", mac, mtu, self.now, up=up)
        n.drain_events()
        return ifindex

    def inject(self, n: SimNode, ifindex: int, packet: bytes, l2mcast: bool = False) -> None:
        n.node.input(ifindex, packet, self.now, l2mcast)
        n.drain_events()

    def _deliver(self) -> bool:
        moved = False
        for n in self.nodes:
            for f in n.node.frames_to_send():
                moved = True
                link, _ = n.ports[f.ifindex]
                self.log.append((self.now, link, n.name, f))
                if self.drop is not None and self.drop(link, n, f):
                    continue
                if link.startswith("lo0:"):
                    n.node.input(f.ifindex, f.packet, self.now)
                    continue
                for peer, ifindex in self.links.get(link, ()):
                    if (peer, ifindex) == (n, f.ifindex):
                        continue
                    mcast = bool(f.lladdr) and f.lladdr[0] & 1 == 1
                    if mcast or f.lladdr == peer.mac(ifindex):
                        peer.node.input(ifindex, f.packet, self.now, mcast)
            n.drain_events()
        for n in self.nodes:
            n.drain_events()
        return moved

    def settle(self, limit: int = 10000) -> None:
        """Deliver frames until none is left (at the current time)."""
        for _ in range(limit):
            if not self._deliver():
                return
        raise RuntimeError("frames still moving after many rounds: a packet storm")

    def run_until(self, until: float) -> None:
        self.settle()
        while True:
            timers = [t for t in (n.node.get_timer() for n in self.nodes) if t is not None]
            nxt = min(timers, default=None)
            if nxt is None or nxt > until:
                self.now = max(self.now, until)
                return
            self.now = max(self.now, nxt)
            for n in self.nodes:
                n.node.handle_timer(self.now)
                n.drain_events()
            self.settle()

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    def frames(self, link: str | None = None, since: float = -1.0) -> list[tuple[float, str, str, Ip6Frame]]:
        return [e for e in self.log if (link is None or e[1] == link) and e[0] >= since]
