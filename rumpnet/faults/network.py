"""A network of kernels for fault injection: hosts, links, impairments, captures, one seed.

::

    net = Network(seed=7)                       # virtual clock, a fresh scheduler
    net.add_host("a"); net.add_host("r", router=True); net.add_host("b")
    net.add_link("lan", "a", "r")               # 10.0.1.0/24: a = .1, r = .2
    net.add_link("wan", "r", "b", subnet="10.0.2.0/24",
                 subnet6="fc00:0:0:2::/64")      # dual stack: r = ::1, b = ::2
    net.link("lan").impair("delay 10ms loss 1%")          # both directions
    net.link("wan").impair(direction="r->b", duplicate=0.05)
    net.partition("lan"); net.heal("lan")
    net.schedule("at 5s partition a-r for 3s; at 8s wan loss 10%")
    with net.pcap("lan", "/tmp/lan.pcap"): ...            # after impairment (the wire)
    net.link("lan").counters()                            # sent, dropped by cause, ...

Every interface a link joins gets two :class:`LinkRunner` qdiscs (tc-netem runners, see
:mod:`.runner`): egress, where impairments normally sit, and ingress (used for one-way
faults towards one host of a segment with more than two hosts).  Idle runners pass
frames straight through.  Every runner draws from its own ``random.Random`` derived from
the network's one seeded generator and the runner's name, so a run replays bit for bit
and changing one link does not shift the random stream of another.

Targets (``impair``, ``partition``, ``heal``, schedules) are named as::

    lan          a link (all its directions)
    a-b          the link(s) joining hosts a and b, both ways
    a->b         one way, a to b (a link of two hosts, or b's ingress on a larger one)
    a->*  *->b   everything a sends / everything b receives, on every link of the host
    a            host a: everything it sends and receives
"""

from __future__ import annotations

import ipaddress
import itertools
import random
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from rumpnet.faults.addressing import assign_addresses, check_name, subnet6_of
from rumpnet.faults.match import frame_family
from rumpnet.faults.netem import Netem, NetemParams
from rumpnet.faults.params import check, impairment
from rumpnet.faults.runner import QdiscRunner
from rumpnet.faults.schedule import FaultSchedule, parse_action, statement_times
from rumpnet.faults.tc import format_netem, netem_keyword

COUNTER_NAMES = ("offered", "sent", "bytes", "dropped", "drop_loss", "drop_queue", "drop_partition",
                 "drop_nth", "drop_match", "duplicated", "corrupted", "reordered", "delayed", "ecn_marked",
                 "offered_ip", "offered_ip6", "sent_ip", "sent_ip6")
# Frames by family (match.frame_family), into and out of a runner: what a fault did to
# IPv4 and to IPv6 traffic (dropped = offered - sent, less what is still queued).
FAMILY_COUNTERS = ("ip", "ip6")

_segment_ids = itertools.count(1)


class LinkRunner(QdiscRunner):
    """A netem runner on one direction of one interface, with capture taps on both sides."""

    def __init__(self, netem: Netem, sched: Any, out: Callable[[bytes], None], name: str) -> None:
        self._next = out
        super().__init__(netem, sched, self._out)
        self.name = name
        self.offered = 0
        self.by_family = {f"{way}_{fam}": 0 for way in ("offered", "sent") for fam in FAMILY_COUNTERS}
        self.before: list[Any] = []  # writers fed the frames entering the runner
        self.after: list[Any] = []  # writers fed the frames leaving it

    def input(self, frame: bytes | bytearray | memoryview) -> None:
        """A frame offered to this runner (the interface's qdisc hook): impaired, then passed on or dropped and counted."""
        self.offered += 1
        self._count("offered", frame)
        if self.before:
            now = self.sched.now()
            for w in self.before:
                w.write(frame, now)
        super().input(frame)

    def _count(self, way: str, frame: bytes | bytearray | memoryview) -> None:
        key = f"{way}_{frame_family(frame)}"
        if key in self.by_family:
            self.by_family[key] += 1

    def _out(self, frame: bytes) -> None:
        self._count("sent", frame)
        if self.after:
            now = self.sched.now()
            for w in self.after:
                w.write(frame, now)
        self._next(frame)

    def counters(self) -> dict[str, int]:
        """This runner's counters (offered, sent, bytes, dropped, drop_loss, ..., delayed)."""
        st = self.stats
        return {"offered": self.offered, "sent": st.packets, "bytes": st.bytes, "dropped": st.drops,
                "drop_loss": st.drop_loss, "drop_queue": st.drop_queue, "drop_partition": st.drop_partition,
                "drop_nth": st.drop_nth, "drop_match": st.drop_match, "duplicated": st.duplicated,
                "corrupted": st.corrupted, "reordered": st.reordered, "delayed": st.delayed,
                "ecn_marked": st.ecn_marked, **self.by_family}

    def __repr__(self) -> str:
        return f"<LinkRunner {self.name}>"


class Port:
    """One host's interface on one link."""

    def __init__(self, host: Host, link: Link, ifname: str, addr: str, plen: int,
                 addr6: str | None = None) -> None:
        self.host = host
        self.link = link
        self.ifname = ifname
        self.addr = addr
        self.plen = plen
        self.addr6 = addr6          # the IPv6 address on a link with a subnet6
        self.egress: LinkRunner
        self.ingress: LinkRunner

    @property
    def ifp(self) -> Any:
        """The interface (Ifnet) of this host on this link."""
        return self.host.kernel.ifnet.lookup(self.ifname)

    @property
    def mac(self) -> bytes:
        """The interface's Ethernet address."""
        return self.ifp.lladdr  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<Port {self.host.name}:{self.ifname} {self.addr}/{self.plen} on {self.link.name}>"


class Host:
    """A kernel in the network; ``rump_sys_*`` and the other kernel methods pass through."""

    def __init__(self, net: Network, name: str, kernel: Any, router: bool) -> None:
        self.net = net
        self.name = name
        self.kernel = kernel
        self.router = router
        self.ports: dict[str, Port] = {}  # link name -> port
        self.has_default = False
        self.has_default6 = False

    def addr(self, link: str | None = None) -> str:
        """The host's address on ``link`` (default: its first link)."""
        return self.port(link).addr

    def addr6(self, link: str | None = None) -> str:
        """The host's IPv6 address on ``link`` (default: its first link); KeyError
        when that link has no subnet6."""
        port = self.port(link)
        if port.addr6 is None:
            raise KeyError(f"host {self.name}: link {port.link.name!r} has no IPv6 subnet")
        return port.addr6

    def ifname(self, link: str | None = None) -> str:
        """The name of this host's interface on ``link`` (its first link when None)."""
        return self.port(link).ifname

    def port(self, link: str | None = None) -> Port:
        """This host's Port (interface, address) on ``link`` (its first link when None)."""
        if link is None:
            if not self.ports:
                raise KeyError(f"host {self.name}: on no link")
            return next(iter(self.ports.values()))
        try:
            return self.ports[link]
        except KeyError:
            raise KeyError(f"host {self.name}: not on link {link!r}") from None

    def __getattr__(self, name: str) -> Any:
        if name.startswith("rump_sys_") or name in ("config", "socket", "ifconfig", "route", "arp", "sysctl",
                                                     "netstat", "ping", "ping6", "ndp", "tc", "inet", "inet6",
                                                     "ifnet", "sched"):
            return getattr(self.kernel, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        return f"<Host {self.name}{' router' if self.router else ''}>"


class Link:
    """An L2 segment joining two or more hosts."""

    def __init__(self, net: Network, name: str, subnet: ipaddress.IPv4Network, mtu: int,
                 subnet6: ipaddress.IPv6Network | None = None) -> None:
        self.net = net
        self.name = name
        self.subnet = subnet
        self.subnet6 = subnet6
        self.mtu = mtu
        self.segment = f"rumpnet.faults.{next(_segment_ids)}.{name}"
        self.ports: dict[str, Port] = {}  # host name -> port

    @property
    def hosts(self) -> list[str]:
        """The names of the hosts on this link, in the order they joined."""
        return list(self.ports)

    def runners(self, direction: str = "both") -> list[LinkRunner]:
        """The runners a direction names on this link (see the module doc)."""
        d = direction.replace(" ", "")
        if d in ("both", "all", "*", "*->*"):
            return [p.egress for p in self.ports.values()]
        if d in ("egress", "ingress"):
            return [getattr(p, d) for p in self.ports.values()]
        if "->" not in d:
            raise ValueError(f"direction: {direction!r} is not 'both', 'A->B', 'A->*' or '*->B'")
        src, dst = d.split("->", 1)
        for h in (src, dst):
            if h != "*" and h not in self.ports:
                raise ValueError(f"direction: host {h!r} is not on link {self.name!r} (hosts: {', '.join(self.ports)})")
        if src == dst:
            raise ValueError(f"direction: {direction!r} goes nowhere")
        if dst == "*":
            return [self.ports[src].egress]
        if src == "*":
            return [self.ports[dst].ingress]
        if len(self.ports) == 2:
            return [self.ports[src].egress]
        return [self.ports[dst].ingress]

    def impair(self, spec: Any = None, direction: str = "both", **params: Any) -> Link:
        """Set the impairment of ``direction`` (``tc qdisc change``: the fields not given go
        back to their defaults; a partition stays until healed).  Validated first: on error
        nothing changes."""
        changes = impairment(spec, **params)
        runners = self.runners(direction)
        self.net._apply([(r, _fresh(r.params, changes)) for r in runners])
        return self

    def update(self, direction: str = "both", **params: Any) -> Link:
        """Change only the named parameters (``impair`` resets the others)."""
        changes = impairment(None, **params)
        self.net._apply([(r, check(changes, r.params)) for r in self.runners(direction)])
        return self

    def clear(self, direction: str = "both") -> Link:
        """Remove every impairment of ``direction`` (both: the ingress runners too), partition included."""
        self.net._apply([(r, NetemParams()) for r in self.runners(direction)] +
                        ([(p.ingress, NetemParams()) for p in self.ports.values()] if direction == "both" else []))
        return self

    def partition(self, direction: str = "both") -> Link:
        """Drop everything on ``direction`` until :meth:`heal`."""
        self.net._apply([(r, r.params.replace(partition=True)) for r in self.runners(direction)])
        return self

    def heal(self, direction: str = "both") -> Link:
        """End a partition of ``direction`` (the other impairments stay)."""
        rs = self.runners(direction)
        if direction == "both":
            rs = rs + [p.ingress for p in self.ports.values()]
        self.net._apply([(r, r.params.replace(partition=False)) for r in rs])
        return self

    @property
    def partitioned(self) -> bool:
        """True while any runner of the link is partitioned."""
        return any(r.params.partition for p in self.ports.values() for r in (p.egress, p.ingress))

    def counters(self, direction: str = "both") -> dict[str, int]:
        """Live counters summed over the runners of ``direction`` (default: every egress
        runner, i.e. what went onto the wire; drops include ingress drops)."""
        total = dict.fromkeys(COUNTER_NAMES, 0)
        rs = self.runners(direction)
        for r in rs:
            for k, v in r.counters().items():
                total[k] += v
        if direction.replace(" ", "") in ("both", "all", "*", "*->*"):
            for p in self.ports.values():
                c = p.ingress.counters()
                for k in COUNTER_NAMES:
                    if not k.startswith(("offered", "sent", "bytes")):
                        total[k] += c[k]
        return total

    def netem(self) -> dict[str, str]:
        """The tc-netem text of every runner that is not idle, keyed ``a->b`` / ``*->b``."""
        out: dict[str, str] = {}
        two = len(self.ports) == 2
        names = list(self.ports)
        for h, p in self.ports.items():
            if not p.egress.params.is_noop:
                key = f"{h}->{[n for n in names if n != h][0]}" if two else f"{h}->*"
                out[key] = format_netem(p.egress.params) or ""
            if not p.ingress.params.is_noop:
                out[f"*->{h}"] = format_netem(p.ingress.params) or ""
        return out

    def describe(self) -> dict[str, Any]:
        """The link as plain data (name, subnet, subnet6 when it has one, mtu, hosts, netem,
        partitioned, counters), as the HTTP API gives it."""
        hosts = {h: {"interface": p.ifname, "address": p.addr, **({"address6": p.addr6} if p.addr6 else {})}
                 for h, p in self.ports.items()}
        out = {"name": self.name, "subnet": str(self.subnet), "mtu": self.mtu, "hosts": hosts,
               "netem": self.netem(), "partitioned": self.partitioned, "counters": self.counters()}
        if self.subnet6 is not None:
            out["subnet6"] = str(self.subnet6)
        return out

    def __repr__(self) -> str:
        return f"<Link {self.name} {self.subnet} {'-'.join(self.ports)}>"


def _fresh(cur: NetemParams, changes: dict[str, Any]) -> NetemParams:
    return check({**changes, "partition": cur.partition, "drop_match": changes.get("drop_match", None)})


class PcapTap:
    """A running capture; ``close()`` detaches it and closes the file."""

    def __init__(self, net: Network, writer: Any, lists: list[list[Any]], target: str, before: bool) -> None:
        self.net = net
        self.writer = writer
        self.lists = lists
        self.target = target
        self.before = before

    @property
    def frames(self) -> int:
        """How many frames the capture has written so far."""
        return self.writer.frames  # type: ignore[no-any-return]

    def close(self) -> None:
        """Stop capturing and close the file (also at the end of a ``with`` block)."""
        def detach() -> None:
            for lst in self.lists:
                if self.writer in lst:
                    lst.remove(self.writer)

        self.net.call(detach)
        self.writer.close()
        if self in self.net.captures:
            self.net.captures.remove(self)

    def __enter__(self) -> PcapTap:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class NetSchedule:
    """The armed statements of :meth:`Network.schedule` (one FaultSchedule each)."""

    def __init__(self, parts: list[FaultSchedule]) -> None:
        self.parts = parts

    @property
    def log(self) -> list[tuple[float, str]]:
        """What the schedule did, as (time, description), in order."""
        return sorted((e for p in self.parts for e in p.log), key=lambda e: e[0])

    @property
    def errors(self) -> list[tuple[float, str]]:
        """Actions that could not apply when their time came (time, message)."""
        return sorted((e for p in self.parts for e in p.errors), key=lambda e: e[0])

    def cancel(self) -> None:
        """Disarm every statement that has not fired yet."""
        for p in self.parts:
            p.cancel()


class Network:
    """Kernels joined by in-process wires, with netem on every link."""

    def __init__(self, seed: int = 0, clock: str = "virtual", scheduler: Any = None) -> None:
        from rumpkern.sched import Scheduler

        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed: not an integer: {seed!r}")
        if clock not in ("virtual", "real"):
            raise ValueError(f"clock: must be 'virtual' or 'real', not {clock!r}")
        self.seed = seed
        self.clock = clock
        self._own_sched = scheduler is None
        self.sched = scheduler if scheduler is not None else Scheduler(virtual=clock == "virtual")
        # The scenario's one generator; every runner's generator is derived from it.
        self.rng = random.Random(f"rumpnet.faults.network:{seed}")
        self._rng_base = self.rng.getrandbits(64)
        self.hosts: dict[str, Host] = {}
        self.links: dict[str, Link] = {}
        self.captures: list[PcapTap] = []
        self.schedules: list[NetSchedule] = []
        self.proxies: dict[str, Any] = {}
        self.presets: list[tuple[str | None, str, dict[str, Any]]] = []  # (link or None, direction, changes)
        self.closed = False

    # -- running ---------------------------------------------------------------------------
    def now(self) -> float:
        """The network's clock (seconds, kernel time)."""
        return self.sched.now()

    def run_for(self, seconds: float) -> None:
        """Let the network run for ``seconds`` of kernel time (on virtual time, instantly)."""
        self.sched.run_for(seconds)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn()`` on the network's CPU (from any thread)."""
        return self.sched.run(fn)

    def runner_rng(self, name: str) -> random.Random:
        """The generator of the runner (or proxy, ...) called ``name``: derived from the seed."""
        return random.Random(f"{self._rng_base}:{name}")

    # -- building --------------------------------------------------------------------------
    def add_host(self, name: str, router: bool = False, hostname: str | None = None) -> Host:
        """Boot a kernel for host ``name`` (``router=True``: forwarding on, and hosts on its links route through it)."""
        from rumpkern import rump_init

        check_name(name, "host")
        if name in self.hosts:
            raise ValueError(f"host: {name!r} exists")
        k = rump_init(clock=self.clock, seed=self.seed, hostname=hostname or name, scheduler=self.sched)
        h = Host(self, name, k, router)
        if router:
            k.config.sysctl_set("net.inet.ip.forwarding", 1)
        self.hosts[name] = h
        return h

    def host(self, name: str) -> Host:
        """The Host called ``name`` (KeyError naming the hosts there are)."""
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"host: no host {name!r} (hosts: {', '.join(self.hosts) or 'none'})") from None

    def link(self, name: str) -> Link:
        """The Link called ``name`` (KeyError naming the links there are)."""
        try:
            return self.links[name]
        except KeyError:
            raise KeyError(f"link: no link {name!r} (links: {', '.join(self.links) or 'none'})") from None

    def add_link(self, name: str, host_a: str, host_b: str | Iterable[str] | None = None,
                 subnet: str | None = None, mtu: int = 1500, addresses: dict[str, str] | None = None,
                 subnet6: str | None = None, addresses6: dict[str, str] | None = None) -> Link:
        """Join hosts on a new segment; addresses are given out in host order (.1, .2, ...)
        unless ``addresses`` names them; a host that is not a router gets a default route
        via the first router on its first link that has one. With ``subnet6`` (an IPv6
        prefix, ``fc00:0:0:1::/64``) the link is dual stack: IPv6 addresses are given
        out the same way (::1, ::2, ... or ``addresses6``), routers on it forward IPv6
        (``net.inet6.ip6.forwarding``) and hosts get an IPv6 default route too."""
        check_name(name, "link")
        if name in self.links:
            raise ValueError(f"link: {name!r} exists")
        names = [host_a] + ([host_b] if isinstance(host_b, str) else list(host_b or []))
        if len(names) < 2:
            raise ValueError(f"link {name}: needs at least two hosts")
        if len(set(names)) != len(names):
            raise ValueError(f"link {name}: a host is named twice")
        hosts = [self.host(n) for n in names]
        if subnet is None:
            subnet = f"10.0.{len(self.links) + 1}.0/24"
        try:
            net4 = ipaddress.IPv4Network(subnet, strict=True)
        except ValueError as e:
            raise ValueError(f"link {name}: subnet: {e}") from None
        if not isinstance(mtu, int) or isinstance(mtu, bool) or not 68 <= mtu <= 65535 - 14:
            raise ValueError(f"link {name}: mtu: {mtu!r} is not in 68..65521")
        addrs = assign_addresses(name, net4, names, addresses or {}, "addresses")
        net6 = subnet6_of(name, subnet6, mtu) if subnet6 is not None or addresses6 else None
        addrs6 = assign_addresses(name, net6, names, addresses6 or {}, "addresses6") if net6 is not None else {}
        link = Link(self, name, net4, mtu, net6)
        for h in hosts:
            link.ports[h.name] = Port(h, link, f"wire{len(h.ports)}", addrs[h.name], net4.prefixlen,
                                      addrs6.get(h.name))
        self.links[name] = link
        for h in hosts:
            self._attach(h, link.ports[h.name])
        self._default_routes(link)
        for lk, direction, changes in self.presets:
            if lk is None or lk == name:
                link.impair(changes, direction=direction)
        return link

    def _attach(self, h: Host, port: Port) -> None:
        k = h.kernel
        cfg = k.config
        cfg.if_create(port.ifname)
        cfg.if_set_mtu(port.ifname, port.link.mtu)
        cfg.if_set_linkstr(port.ifname, port.link.segment)

        def hooks() -> None:
            ifp = k.ifnet.lookup(port.ifname)
            base = f"{port.link.name}:{h.name}"
            port.egress = LinkRunner(Netem(NetemParams(), self.runner_rng(f"{base}:egress")), self.sched,
                                     lambda f: ifp.link_transmit(f), f"{base}:egress")
            port.ingress = LinkRunner(Netem(NetemParams(), self.runner_rng(f"{base}:ingress")), self.sched,
                                      lambda f: ifp.link_deliver(f), f"{base}:ingress")
            port.egress.handle = "8001:"
            port.ingress.handle = "ffff:"
            ifp.set_qdisc("egress", port.egress)
            ifp.set_qdisc("ingress", port.ingress)

        self.call(hooks)
        net6 = port.link.subnet6
        if port.addr6 is not None and net6 is not None:
            # before the interface runs (IPv4's address brings it up): usable at once,
            # without DAD, as NetBSD's in6if_do_dad has it
            cfg.addr6_add(port.ifname, port.addr6, net6.prefixlen)
            if h.router:
                cfg.sysctl_set("net.inet6.ip6.forwarding", 1)
        cfg.addr_add(port.ifname, f"{port.addr}/{port.plen}")
        cfg.if_up(port.ifname)
        h.ports[port.link.name] = port

    def _default_routes(self, link: Link) -> None:
        """Hosts that are not routers route through the first router on the link, for
        each family the link carries, unless they already have a default route."""
        gw = next((p for p in link.ports.values() if p.host.router), None)
        for p in link.ports.values():
            if gw is None or p.host.router:
                continue
            if not p.host.has_default:
                self.route(p.host.name, "default", gw.addr)
            if gw.addr6 is not None and not p.host.has_default6:
                self.route(p.host.name, "default", gw.addr6)

    def route(self, host: str, dst: str, gateway: str) -> None:
        """A static route on ``host`` (``route add DST GATEWAY``; ``route add -inet6``
        when the gateway is an IPv6 address)."""
        h = self.host(host)
        if ":" in gateway:
            h.kernel.config.route6_add(dst, gateway)
            if dst == "default":
                h.has_default6 = True
            return
        h.kernel.config.route_add(dst, gateway)
        if dst == "default":
            h.has_default = True

    # -- impairments -----------------------------------------------------------------------
    def runners(self, target: str | None = None) -> list[LinkRunner]:
        """The runners a target names (see the module doc); None: every link, both ways."""
        if target is None:
            return [r for lk in self.links.values() for r in lk.runners("both")]
        t = target.replace(" ", "")
        if t in self.links:
            return self.links[t].runners("both")
        if "->" in t:
            src, dst = t.split("->", 1)
            if src == "*" and dst in self.hosts:
                return [p.ingress for p in self.hosts[dst].ports.values()]
            if dst == "*" and src in self.hosts:
                return [p.egress for p in self.hosts[src].ports.values()]
            links = self._between(src, dst, target)
            return [r for lk in links for r in lk.runners(f"{src}->{dst}")]
        if "-" in t:
            for i in [i for i, c in enumerate(t) if c == "-"]:
                src, dst = t[:i], t[i + 1:]
                if src in self.hosts and dst in self.hosts:
                    links = self._between(src, dst, target)
                    out: list[LinkRunner] = []
                    for lk in links:
                        out += lk.runners(f"{src}->{dst}") + lk.runners(f"{dst}->{src}")
                    return out
        if t in self.hosts:
            return [r for p in self.hosts[t].ports.values() for r in (p.egress, p.ingress)]
        raise KeyError(f"target: {target!r} is not a link, host, 'A-B' or 'A->B' "
                       f"(links: {', '.join(self.links) or '-'}; hosts: {', '.join(self.hosts) or '-'})")

    def _between(self, a: str, b: str, target: str) -> list[Link]:
        for h in (a, b):
            if h not in self.hosts:
                raise KeyError(f"target: {target!r}: no host {h!r}")
        links = [lk for lk in self.links.values() if a in lk.ports and b in lk.ports]
        if not links:
            raise KeyError(f"target: {target!r}: hosts {a} and {b} share no link")
        return links

    def _apply(self, news: list[tuple[LinkRunner, NetemParams]]) -> None:
        def go() -> None:
            for r, p in news:
                r.set_params(p)

        self.call(go)

    def impair(self, target: str | None = None, spec: Any = None, **params: Any) -> None:
        """``impair("lan", "loss 1%")``, ``impair("a->b", delay="10ms")``: as Link.impair."""
        changes = impairment(spec, **params)
        rs = self.runners(target)
        self._apply([(r, _fresh(r.params, changes)) for r in rs])

    def preset(self, spec: Any = None, link: str | None = None, direction: str = "both", **params: Any) -> None:
        """Impair ``link`` (or every link, when None) now if it exists and when it is added."""
        changes = impairment(spec, **params)
        self.presets.append((link, direction, changes))
        for lk in self.links.values():
            if link is None or lk.name == link:
                lk.impair(changes, direction=direction)

    def partition(self, target: str | None = None) -> None:
        """Cut ``target`` (every link when None) until :meth:`heal`."""
        self._apply([(r, r.params.replace(partition=True)) for r in self.runners(target)])

    def heal(self, target: str | None = None) -> None:
        """End the partitions of ``target`` (None: every link)."""
        rs = self.runners(target)
        if target is None:
            rs = [r for lk in self.links.values() for p in lk.ports.values() for r in (p.egress, p.ingress)]
        self._apply([(r, r.params.replace(partition=False)) for r in rs])

    def clear(self) -> None:
        """Every link back to no impairment (and healed)."""
        self._apply([(r, NetemParams()) for lk in self.links.values() for p in lk.ports.values()
                      for r in (p.egress, p.ingress)])

    # -- schedules ---------------------------------------------------------------------------
    def parse_schedule(self, text: str) -> list[tuple[float, Any, float | None, str | None]]:
        """Statements ``at TIME [TARGET] ACTION [for DURATION]``, ``at TIME ACTION TARGET``
        for partition/heal/clear, or ``at TIME ACTION on TARGET``; a statement without a
        target applies to every link.  Returns (at, action, duration, target)."""
        out: list[tuple[float, Any, float | None, str | None]] = []
        for stmt in text.replace("\n", ";").split(";"):
            words = stmt.split()
            if not words or words[0].startswith("#"):
                continue
            try:
                out.append(self._statement(words))
            except ValueError as e:
                raise ValueError(f"schedule: {stmt.strip()!r}: {e}") from None
        return out

    def _statement(self, words: list[str]) -> tuple[float, Any, float | None, str | None]:
        """One schedule statement (split into words): (at, action, duration, target)."""
        at, rest, dur = statement_times(words)
        target: str | None = None
        if len(rest) >= 3 and rest[-2] == "on":
            target, rest = rest[-1], rest[:-2]
        elif rest[0] in ("partition", "heal", "clear", "reset") and len(rest) == 2:
            target, rest = rest[1], rest[:1]
        elif self._is_target(rest[0]) and len(rest) >= 2:
            target, rest = rest[0].rstrip(":"), rest[1:]
        if target is None and rest[0] not in ("partition", "heal", "clear", "reset") and \
                not rest[0][:1].isdigit() and netem_keyword(rest[0]) is None:
            raise ValueError(f"{rest[0]!r} is not a link, host, direction or netem option "
                             f"(links: {', '.join(self.links) or 'none'}; hosts: {', '.join(self.hosts) or 'none'})")
        action = parse_action(rest)
        if target is not None:
            try:
                self.runners(target)
            except KeyError as e:
                raise ValueError(str(e.args[0])) from None
        return (at, action, dur, target)

    def _is_target(self, word: str) -> bool:
        try:
            self.runners(word.rstrip(":"))
            return True
        except KeyError:
            return False

    def schedule(self, text: str | Iterable[tuple[Any, ...]], base: float | None = None) -> NetSchedule:
        """Arm a timeline on the network's clock (seconds after now, or after ``base``).

        ``text`` is the statement form (see :meth:`parse_schedule`) or events
        ``(at, action[, duration[, target]])`` as FaultSchedule takes them."""
        if isinstance(text, str):
            events = self.parse_schedule(text)
        else:
            events = []
            for ev in text:
                ev = tuple(ev)
                if not 2 <= len(ev) <= 4:
                    raise ValueError(f"schedule: event {ev!r} is not (at, action[, duration[, target]])")
                at, act, dur, tgt = ev + (None,) * (4 - len(ev))
                events.append((at, act, dur, tgt))
        t0 = self.now() if base is None else base
        parts: list[FaultSchedule] = []
        plans = []
        for at, action, dur, target in events:  # build (and validate) everything first
            fs = FaultSchedule([(at, action, dur)] if dur is not None else [(at, action)])
            plans.append((fs, self.runners(target)))
        for fs, rs in plans:
            if rs:
                parts.append(fs.start(self.sched, *rs, base=t0))
        ns = NetSchedule(parts)
        self.schedules.append(ns)
        return ns

    # -- capture ---------------------------------------------------------------------------
    def pcap(self, target: str, path: Any, before_impairment: bool = False, filter: str | None = None) -> PcapTap:  # noqa: A002
        """Capture ``target`` to pcap: a link name (the wire: frames entering/leaving the
        egress runners of its interfaces), or an interface as ``host:ifname`` or
        ``host:link`` (both directions of that interface).  ``before_impairment`` taps the
        frames as they enter the runners, otherwise as they leave them."""
        from rumpnet.bpf import PcapWriter, compile_filter

        if target in self.links:
            runners = [p.egress for p in self.links[target].ports.values()]
        elif ":" in target:
            hname, ifname = target.split(":", 1)
            h = self.host(hname)
            ports = [p for p in h.ports.values() if p.ifname == ifname or p.link.name == ifname]
            if not ports:
                raise KeyError(f"pcap: host {hname} has no interface or link {ifname!r}")
            runners = [ports[0].egress, ports[0].ingress]
        else:
            raise KeyError(f"pcap: {target!r} is not a link or HOST:INTERFACE")
        writer: Any = PcapWriter(path)
        if filter:
            pred = compile_filter(filter)
            writer = _Filtered(writer, pred)
        lists = [r.before if before_impairment else r.after for r in runners]

        def attach() -> None:
            for lst in lists:
                lst.append(writer)

        self.call(attach)
        tap = PcapTap(self, writer, lists, target, before_impairment)
        self.captures.append(tap)
        return tap

    # -- reporting ------------------------------------------------------------------------------
    def counters(self) -> dict[str, dict[str, int]]:
        """Every link's counters, by link name."""
        return {name: lk.counters() for name, lk in self.links.items()}

    def describe(self) -> dict[str, Any]:
        """The network as plain data (seed, hosts, links), as the HTTP API gives it."""
        return {"seed": self.seed, "clock": self.clock,
                "hosts": {n: {"router": h.router, "addresses": {lk: p.addr for lk, p in h.ports.items()}}
                          for n, h in self.hosts.items()},
                "links": {n: lk.describe() for n, lk in self.links.items()}}

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop schedules, proxies and captures and halt every kernel (also at the end of ``with``)."""
        if self.closed:
            return
        self.closed = True
        for ns in self.schedules:
            ns.cancel()
        # Teardown never raises an internal error of the run (strict mode): it stays
        # recorded for the caller's harness, and the best-effort catch below cannot eat it.
        with self.sched.errors.held():
            for p in list(self.proxies.values()):
                try:
                    p.stop()
                except Exception:  # noqa: BLE001 - best effort at teardown
                    pass
            for tap in list(self.captures):
                tap.close()
            for h in self.hosts.values():
                h.kernel.halt()
        if self._own_sched:
            if self.sched.background:
                self.sched.stop_background()
            loop = self.sched.loop
            if not loop.is_running() and not loop.is_closed():
                loop.close()

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts.values())

    def __repr__(self) -> str:
        return f"<Network seed={self.seed} hosts={list(self.hosts)} links={list(self.links)}>"

    @classmethod
    def from_toml(cls, source: str | Path, **overrides: Any) -> Network:
        """Build a network from a scenario file (see :mod:`rumpnet.faults.scenario`)."""
        from rumpnet.faults.scenario import build, load

        net: Network = build(load(source), **overrides)
        return net


class _Filtered:
    def __init__(self, inner: Any, pred: Callable[[Any], bool]) -> None:
        self.inner = inner
        self.pred = pred

    def write(self, frame: Any, ts: float) -> None:
        if self.pred(frame):
            self.inner.write(frame, ts)

    @property
    def frames(self) -> int:
        return self.inner.frames  # type: ignore[no-any-return]

    def close(self) -> None:
        self.inner.close()

